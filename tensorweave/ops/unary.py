"""Elementwise math functions of one tensor: ``abs``, ``sign``, ``square``, ``sqrt``,
``rsqrt``, ``reciprocal``, ``exp``, ``expm1``, ``log``, ``log1p``, ``sin``, ``cos``, ``tanh``,
``sigmoid``, ``floor``, ``ceil`` and ``round`` (``negative`` is in ``ops/elementwise.py``).

Kernels whose results are routinely inf or nan (``log(0)``, ``sqrt(-1)``) run with numpy's
floating-point warnings off, since TF returns those values silently.
"""

from __future__ import annotations

from tensorweave.graph.core import Tensor
from tensorweave.ops import array as array_ops
from tensorweave.ops.common import FLOATS, NUMBERS, SIGNED
from tensorweave.ops.elementwise import (_ufunc, _unary, _unary_infer, add, multiply, negative,
                                         realdiv, subtract)
from tensorweave.ops.registry import NO_GRADIENT, OpDef, register

__all__ = []  # each group of ops adds its public functions


# -- Abs / Sign / Square --
register(OpDef("Abs", _unary_infer(SIGNED | FLOATS), _ufunc("absolute"), fusion="elementwise",
               grad=lambda op, g: [multiply(g, sign(op.inputs[0]))]))
# TF's gradient of sign is zero everywhere (not "no gradient"): it keeps paths through sign alive.
register(OpDef("Sign", _unary_infer(SIGNED | FLOATS), _ufunc("sign"), fusion="elementwise",
               grad=lambda op, g: [array_ops.zeros_like(op.inputs[0])]))
register(OpDef("Square", _unary_infer(NUMBERS), _ufunc("square"), fusion="elementwise",
               grad=lambda op, g: [multiply(g, multiply(op.inputs[0], 2))]))


def abs(x, name=None) -> Tensor:  # noqa: A001  (TF1's tf.abs)
    """``|x|`` elementwise."""
    return _unary("Abs", x, name)


def sign(x, name=None) -> Tensor:
    """-1, 0 or 1 by the sign of ``x``, elementwise."""
    return _unary("Sign", x, name)


def square(x, name=None) -> Tensor:
    """``x * x`` elementwise."""
    return _unary("Square", x, name)


# -- Sqrt / Rsqrt / Reciprocal --
def _rsqrt_kernel(attrs, xp):
    return lambda x: xp.reciprocal(xp.sqrt(x))


def _rsqrt_grad(op, g):
    y = op.outputs[0]  # d/dx x**-0.5 = -0.5 * y**3
    return [multiply(multiply(g, -0.5), multiply(square(y), y))]


register(OpDef("Sqrt", _unary_infer(FLOATS), _ufunc("sqrt"), fusion="elementwise",
               grad=lambda op, g: [realdiv(g, multiply(op.outputs[0], 2))]))
register(OpDef("Rsqrt", _unary_infer(FLOATS), _rsqrt_kernel, fusion="elementwise",
               grad=_rsqrt_grad))
register(OpDef("Reciprocal", _unary_infer(FLOATS), _ufunc("reciprocal"),
               fusion="elementwise",
               grad=lambda op, g: [multiply(negative(g), square(op.outputs[0]))]))


def sqrt(x, name=None) -> Tensor:
    """Square root elementwise (nan for negative inputs)."""
    return _unary("Sqrt", x, name)


def rsqrt(x, name=None) -> Tensor:
    """``1 / sqrt(x)`` elementwise."""
    return _unary("Rsqrt", x, name)


def reciprocal(x, name=None) -> Tensor:
    """``1 / x`` elementwise (inf at 0)."""
    return _unary("Reciprocal", x, name)


# -- Exp / Expm1 / Log / Log1p --
register(OpDef("Exp", _unary_infer(FLOATS), _ufunc("exp"), fusion="elementwise",
               grad=lambda op, g: [multiply(g, op.outputs[0])]))
register(OpDef("Expm1", _unary_infer(FLOATS), _ufunc("expm1"), fusion="elementwise",
               grad=lambda op, g: [multiply(g, exp(op.inputs[0]))]))
register(OpDef("Log", _unary_infer(FLOATS), _ufunc("log"), fusion="elementwise",
               grad=lambda op, g: [realdiv(g, op.inputs[0])]))
register(OpDef("Log1p", _unary_infer(FLOATS), _ufunc("log1p"), fusion="elementwise",
               grad=lambda op, g: [realdiv(g, add(op.inputs[0], 1))]))


def exp(x, name=None) -> Tensor:
    """``e ** x`` elementwise."""
    return _unary("Exp", x, name)


def expm1(x, name=None) -> Tensor:
    """``e ** x - 1`` elementwise, accurate for small ``x``."""
    return _unary("Expm1", x, name)


def log(x, name=None) -> Tensor:
    """Natural logarithm elementwise (-inf at 0, nan below)."""
    return _unary("Log", x, name)


def log1p(x, name=None) -> Tensor:
    """``log(1 + x)`` elementwise, accurate for small ``x``."""
    return _unary("Log1p", x, name)


# -- Sin / Cos / Tanh / Sigmoid --
def _sigmoid_kernel(attrs, xp):
    def sigmoid(x):
        # exp(-|x|) lies in (0, 1], so neither branch overflows for large |x|
        e = xp.exp(-xp.abs(x))
        denominator = 1 + e
        result = xp.where(x >= 0, 1 / denominator, e / denominator)
        return result.astype(x.dtype, copy=False)  # numpy < 2 widens float32 scalars
    return sigmoid


register(OpDef("Sin", _unary_infer(FLOATS), _ufunc("sin"), fusion="elementwise",
               grad=lambda op, g: [multiply(g, cos(op.inputs[0]))]))
register(OpDef("Cos", _unary_infer(FLOATS), _ufunc("cos"), fusion="elementwise",
               grad=lambda op, g: [negative(multiply(g, sin(op.inputs[0])))]))
register(OpDef("Tanh", _unary_infer(FLOATS), _ufunc("tanh"), fusion="elementwise",
               grad=lambda op, g: [multiply(g, subtract(1, square(op.outputs[0])))]))
register(OpDef("Sigmoid", _unary_infer(FLOATS), _sigmoid_kernel, fusion="elementwise",
               grad=lambda op, g: [multiply(g, multiply(op.outputs[0],
                                                        subtract(1, op.outputs[0])))]))


def sin(x, name=None) -> Tensor:
    """Sine elementwise."""
    return _unary("Sin", x, name)


def cos(x, name=None) -> Tensor:
    """Cosine elementwise."""
    return _unary("Cos", x, name)


def tanh(x, name=None) -> Tensor:
    """Hyperbolic tangent elementwise."""
    return _unary("Tanh", x, name)


def sigmoid(x, name=None) -> Tensor:
    """``1 / (1 + exp(-x))`` elementwise, without overflow for large ``|x|``."""
    return _unary("Sigmoid", x, name)


# -- Floor / Ceil / Round: piecewise constant, so no gradient (as TF) --
register(OpDef("Floor", _unary_infer(FLOATS), _ufunc("floor"), fusion="elementwise",
               grad=NO_GRADIENT))
register(OpDef("Ceil", _unary_infer(FLOATS), _ufunc("ceil"), fusion="elementwise",
               grad=NO_GRADIENT))


def _round_kernel(attrs, xp):
    # rounds halves to even, as TF's round does; integers come back unchanged. Older cupy
    # releases spell it ``around``.
    return getattr(xp, "round", None) or xp.around


register(OpDef("Round", _unary_infer(NUMBERS), _round_kernel, fusion="elementwise",
               grad=NO_GRADIENT))


def floor(x, name=None) -> Tensor:
    """The largest integer <= ``x``, elementwise (same float dtype)."""
    return _unary("Floor", x, name)


def ceil(x, name=None) -> Tensor:
    """The smallest integer >= ``x``, elementwise (same float dtype)."""
    return _unary("Ceil", x, name)


def round(x, name=None) -> Tensor:  # noqa: A001  (TF1's tf.round)
    """``x`` rounded to the nearest integer, halves to even (``round(2.5) == 2``)."""
    return _unary("Round", x, name)


__all__ += ["abs", "sign", "square", "sqrt", "rsqrt", "reciprocal", "exp", "expm1",
            "log", "log1p", "sin", "cos", "tanh", "sigmoid", "floor", "ceil", "round"]
