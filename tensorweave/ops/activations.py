"""Activation ops: ``relu``, ``relu6``, ``elu``, ``softplus``, ``softmax`` and ``log_softmax``.

The elementwise activations' gradients are ops of their own (``ReluGrad(g, y)`` and so on), each
with a gradient too, so second derivatives work.
"""

from __future__ import annotations

import numpy as np

from tensorweave.graph.core import Tensor
from tensorweave.ops import array as array_ops
from tensorweave.ops import loops
from tensorweave.ops import math as math_ops
from tensorweave.ops.common import (FLOATS, NUMBERS, check_dtype, convert_to_tensor,
                                    normalize_axis, output, same_as_input)
from tensorweave.ops.registry import OpDef, apply_op, register

__all__ = ["relu", "relu6", "elu", "softplus", "softmax", "log_softmax"]


# -- helpers shared by the elementwise activations ------------------------------------------------
def _float_input(op_type, x, name):
    x = convert_to_tensor(x)
    check_dtype(op_type, x, FLOATS, arg="features", name=name)
    return x


def _gradient_pair_infer(op):
    """Output like input 0 for ``XGrad(gradients, features)``: one dtype, compatible shapes."""
    g, x = op.inputs
    if g.dtype is not x.dtype:
        raise TypeError(f"gradients of dtype {g.dtype.name} do not match features of dtype "
                        f"{x.dtype.name}")
    if not g.shape.is_compatible_with(x.shape):
        raise ValueError(f"gradients of shape {g.shape} do not match features of shape "
                         f"{x.shape}")
    return [(g.dtype, g.shape.merge_with(x.shape))]


def _is_zero(t: Tensor) -> bool:
    """Whether ``t`` is the zeros ``tw.gradients`` supplies for an output nobody differentiated
    (lets a rule skip second-order terms that would be multiplied by zero)."""
    return t.op.type == "ZerosLike"


# -- Relu -----------------------------------------------------------------------------------------
def _relu_kernel(attrs, xp):
    def relu_kernel(x):
        return xp.maximum(x, 0)
    return relu_kernel


register(OpDef("Relu", same_as_input, _relu_kernel, fusion="elementwise",
               grad=lambda op, g: [_relu_grad(g, op.outputs[0])]))


def relu(features, name=None) -> Tensor:
    """``max(features, 0)`` elementwise."""
    features = convert_to_tensor(features)
    check_dtype("Relu", features, NUMBERS - {"uint8", "uint16", "uint32", "uint64"},
                arg="features", name=name)
    return output(apply_op("Relu", [features], name=name or "Relu"))


def _relu_grad_kernel(attrs, xp):
    def relu_grad(g, y):
        if xp is np and g.shape == y.shape and \
                loops.use_loops(g, y, min_elements=loops.SMALL_LOOP_MIN_ELEMENTS):
            return loops.relu_grad(g, y)
        return xp.multiply(g, y > 0)
    return relu_grad


# ReluGrad(g, y) = g * (y > 0); linear in g, piecewise constant in y.
register(OpDef("ReluGrad", _gradient_pair_infer, _relu_grad_kernel, fusion="elementwise",
               grad=lambda op, gg: [_relu_grad(gg, op.inputs[1]),
                                    array_ops.zeros_like(op.inputs[1])]))


def _relu_grad(g, y):
    return output(apply_op("ReluGrad", [g, y], name="ReluGrad"))


# -- Relu6 ----------------------------------------------------------------------------------------
def _relu6_kernel(attrs, xp):
    def relu6_kernel(x):
        return xp.clip(x, 0, 6)
    return relu6_kernel


register(OpDef("Relu6", same_as_input, _relu6_kernel, fusion="elementwise",
               grad=lambda op, g: [_relu6_grad(g, op.inputs[0])]))


def relu6(features, name=None) -> Tensor:
    """``min(max(features, 0), 6)`` elementwise."""
    features = convert_to_tensor(features)
    check_dtype("Relu6", features, NUMBERS - {"uint8", "uint16", "uint32", "uint64"},
                arg="features", name=name)
    return output(apply_op("Relu6", [features], name=name or "Relu6"))


def _relu6_grad_kernel(attrs, xp):
    def relu6_grad(g, x):
        return xp.multiply(g, (x > 0) & (x < 6))
    return relu6_grad


register(OpDef("Relu6Grad", _gradient_pair_infer, _relu6_grad_kernel, fusion="elementwise",
               grad=lambda op, gg: [_relu6_grad(gg, op.inputs[1]),
                                    array_ops.zeros_like(op.inputs[1])]))


def _relu6_grad(g, x):
    return output(apply_op("Relu6Grad", [g, x], name="Relu6Grad"))


# -- Elu ------------------------------------------------------------------------------------------
def _elu_kernel(attrs, xp):
    def elu_kernel(x):
        # expm1 of the clipped value: the positive branch is discarded, and must not overflow.
        return xp.where(x > 0, x, xp.expm1(xp.minimum(x, 0)))
    return elu_kernel


register(OpDef("Elu", same_as_input, _elu_kernel, fusion="elementwise",
               grad=lambda op, g: [_elu_grad(g, op.outputs[0])]))


def elu(features, name=None) -> Tensor:
    """``features`` where positive, else ``exp(features) - 1``."""
    features = _float_input("Elu", features, name)
    return output(apply_op("Elu", [features], name=name or "Elu"))


def _elu_grad_kernel(attrs, xp):
    def elu_grad(g, y):
        # For y <= 0, y = exp(x) - 1, so d/dx = exp(x) = y + 1.
        return xp.where(y > 0, g, g * (y + 1))
    return elu_grad


def _elu_grad_grad(op, gg):
    g, y = op.inputs
    # d/dy is g where y < 0 (the exp branch), else 0: a ReluGrad of g*gg masked by -y > 0.
    return [_elu_grad(gg, y), _relu_grad(math_ops.multiply(gg, g), math_ops.negative(y))]


register(OpDef("EluGrad", _gradient_pair_infer, _elu_grad_kernel, fusion="elementwise",
               grad=_elu_grad_grad))


def _elu_grad(g, y):
    return output(apply_op("EluGrad", [g, y], name="EluGrad"))


# -- Softplus -------------------------------------------------------------------------------------
def _softplus_kernel(attrs, xp):
    def softplus_kernel(x):
        # log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large |x|.
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))
    return softplus_kernel


register(OpDef("Softplus", same_as_input, _softplus_kernel, fusion="elementwise",
               grad=lambda op, g: [_softplus_grad(g, op.inputs[0])]))


def softplus(features, name=None) -> Tensor:
    """``log(exp(features) + 1)``, computed without overflow."""
    features = _float_input("Softplus", features, name)
    return output(apply_op("Softplus", [features], name=name or "Softplus"))


def _stable_sigmoid(xp, x):
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus_grad_kernel(attrs, xp):
    def softplus_grad(g, x):
        return g * _stable_sigmoid(xp, x)
    return softplus_grad


def _softplus_grad_grad(op, gg):
    g, x = op.inputs
    s = math_ops.sigmoid(x)
    ds = math_ops.multiply(s, math_ops.subtract(array_ops.ones_like(s), s))
    return [_softplus_grad(gg, x), math_ops.multiply(math_ops.multiply(gg, g), ds)]


# SoftplusGrad(g, x) = g * sigmoid(x).
register(OpDef("SoftplusGrad", _gradient_pair_infer, _softplus_grad_kernel, fusion="elementwise",
               grad=_softplus_grad_grad))


def _softplus_grad(g, x):
    return output(apply_op("SoftplusGrad", [g, x], name="SoftplusGrad"))


# -- Softmax / LogSoftmax -------------------------------------------------------------------------
def _softmax_axis_arg(axis, dim, default=-1):
    if axis is not None and dim is not None:
        raise ValueError("cannot specify both 'axis' and 'dim' (dim is its deprecated name)")
    axis = dim if axis is None else axis
    return default if axis is None else int(axis)


def _softmax_infer(op):
    x = op.inputs[0]
    rank = x.shape.rank
    if rank == 0:
        raise ValueError("logits must have rank >= 1, got a scalar")
    normalize_axis(op.attrs["axis"], rank)
    return [(x.dtype, x.shape)]


def _shifted_logits(xp, x, axis):
    """``x - max(x, axis)``: exponentials of it never overflow."""
    return x - xp.max(x, axis=axis, keepdims=True)


def _softmax_kernel(attrs, xp):
    axis = attrs["axis"]

    def softmax_kernel(x):
        if x.shape[axis] == 0:
            return x.copy()
        e = xp.exp(_shifted_logits(xp, x, axis))
        e /= xp.sum(e, axis=axis, keepdims=True)
        return e
    return softmax_kernel


def _softmax_grad(op, g):
    # dx = y * (g - sum(g * y)) along the axis.
    y, axis = op.outputs[0], op.attrs["axis"]
    inner = math_ops.reduce_sum(math_ops.multiply(g, y), axis=axis, keepdims=True)
    return [math_ops.multiply(math_ops.subtract(g, inner), y)]


register(OpDef("Softmax", _softmax_infer, _softmax_kernel, grad=_softmax_grad))


def softmax(logits, axis=None, name=None, dim=None) -> Tensor:
    """``exp(logits) / sum(exp(logits), axis)``, computed stably (default: the last axis)."""
    logits = _float_input("Softmax", logits, name)
    axis = _softmax_axis_arg(axis, dim)
    return output(apply_op("Softmax", [logits], {"axis": axis}, name=name or "Softmax"))


def _log_softmax_kernel(attrs, xp):
    axis = attrs["axis"]

    def log_softmax_kernel(x):
        if x.shape[axis] == 0:
            return x.copy()
        shifted = _shifted_logits(xp, x, axis)
        shifted -= xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))
        return shifted
    return log_softmax_kernel


def _log_softmax_grad(op, g):
    # dx = g - softmax(x) * sum(g) along the axis; softmax(x) = exp(y).
    y, axis = op.outputs[0], op.attrs["axis"]
    total = math_ops.reduce_sum(g, axis=axis, keepdims=True)
    return [math_ops.subtract(g, math_ops.multiply(math_ops.exp(y), total))]


register(OpDef("LogSoftmax", _softmax_infer, _log_softmax_kernel, grad=_log_softmax_grad))


def log_softmax(logits, axis=None, name=None, dim=None) -> Tensor:
    """``logits - log(sum(exp(logits), axis))``, computed stably (default: the last axis)."""
    logits = _float_input("LogSoftmax", logits, name)
    axis = _softmax_axis_arg(axis, dim)
    return output(apply_op("LogSoftmax", [logits], {"axis": axis}, name=name or "LogSoftmax"))
