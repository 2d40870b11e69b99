"""Rule tables of the expression IR: how each fusable op type computes, in every backend's terms.

``ELEMENTWISE[op_type]`` is an ``ElementwiseRule``; an op type missing from the table is simply
not fused (the default rule). Each rule gives

* ``numpy(xp, *args, out=None, **attrs)`` — the array computation, written so that it is
  *bitwise* equal to the unfused op's kernel (same ufuncs, same order, same dtype). With ``out``
  it writes into that array (whose shape is the broadcast of the args'). ``out_may_alias`` says
  whether ``out`` may be one of the args (true for single ufuncs; false where the rule reads an
  arg after writing ``out``).
* ``c`` — a C expression template for CUDA: ``{0}``, ``{1}`` ... are the args, ``{f}`` is the
  math-function suffix (``"f"`` for float32, ``""`` for float64: ``tanh{f}({0})``) and ``{T}`` is
  the C type of the result (``C_TYPES``). Args should be plain names (backends assign each node
  to a local variable), as some templates read an arg twice; other args are parenthesised.
* ``py`` — a scalar Python expression template for a numba loop, with ``{0}``... and ``{T}`` the
  numpy scalar type (``np.float32``); a backend casts each node's value to ``{T}`` so float32
  stays float32.
* ``dtype(arg_dtypes, attrs)`` — the result dtype name, as the unfused op's inference gives it.
* ``attrs`` — the names of the op attrs the rule reads (a node carries only these, dtypes as
  their names: ``{"DstT": "float32"}``).
* ``kinds`` — numpy dtype kinds (``f`` float, ``i`` signed, ``u`` unsigned, ``b`` bool) of the
  result for which fusing is exact; ``accepts`` checks kinds, dtypes and attrs together.

NaN handling follows numpy in the templates too: ``maximum``/``minimum``/``relu`` propagate NaN,
which C's ``fmax`` would not.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from typing import Callable

import numpy as np

__all__ = ["ElementwiseRule", "ReduceRule", "ELEMENTWISE", "REDUCTIONS", "FUSABLE_DTYPES",
           "C_TYPES", "c_type", "math_suffix"]

# dtypes whose arithmetic every backend does natively; float16/bfloat16 are left unfused.
FUSABLE_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                            "uint32", "uint64", "float32", "float64"})

C_TYPES = {"bool": "bool", "int8": "signed char", "int16": "short", "int32": "int",
           "int64": "long long", "uint8": "unsigned char", "uint16": "unsigned short",
           "uint32": "unsigned int", "uint64": "unsigned long long", "float32": "float",
           "float64": "double"}


def c_type(dtype: str) -> str:
    """The C type of a dtype name."""
    return C_TYPES[dtype]


def math_suffix(dtype: str) -> str:
    """``"f"`` for float32 (``tanhf``), ``""`` otherwise (``tanh``)."""
    return "f" if dtype == "float32" else ""


def _same_as_first(arg_dtypes, attrs):
    return arg_dtypes[0]


def _bool_result(arg_dtypes, attrs):
    return "bool"


@dataclasses.dataclass(frozen=True)
class ElementwiseRule:
    """How one elementwise op type computes; see the module docstring."""

    arity: int | None  # None: variadic, two or more args folded left to right
    numpy: Callable
    c: str
    py: str
    dtype: Callable = _same_as_first
    kinds: str = "fiub"
    out_may_alias: bool = True
    attrs_ok: Callable = lambda attrs: True
    attrs: tuple = ()  # the op attrs the rule reads (passed to ``numpy`` as keywords)

    def takes(self, n: int) -> bool:
        """Whether the rule takes ``n`` args."""
        return n >= 2 if self.arity is None else n == self.arity

    def result_dtype(self, arg_dtypes, attrs) -> str:
        return self.dtype(list(arg_dtypes), attrs)

    def accepts(self, arg_dtypes, attrs) -> bool:
        """Whether fusing an op with these arg dtypes and attrs computes exactly what it did."""
        if not self.takes(len(arg_dtypes)) or not self.attrs_ok(attrs):
            return False
        if any(d not in FUSABLE_DTYPES for d in arg_dtypes):
            return False
        result = self.result_dtype(arg_dtypes, attrs)
        return result in FUSABLE_DTYPES and np.dtype(result).kind in self.kinds

    def c_expr(self, dtype: str, args) -> str:
        """The C expression of this op on ``args`` (names), with result dtype ``dtype``."""
        return self._fill(self.c, dtype, args, c_type(dtype))

    def py_expr(self, dtype: str, args) -> str:
        """The scalar Python expression of this op on ``args`` (names) for a numba loop."""
        return self._fill(self.py, dtype, args, f"np.{dtype}" if dtype != "bool" else "np.bool_")

    def _fill(self, template, dtype, args, type_name) -> str:
        # a literal like -0.5 goes in parentheses, so "-{0}" never reads as "--0.5"
        args = [a if a.isidentifier() else f"({a})" for a in args]
        if self.arity is not None:
            return template.format(*args, f=math_suffix(dtype), T=type_name)
        text = args[0]  # variadic: fold the binary template left to right, as AddN adds
        for arg in args[1:]:
            text = template.format(text, arg, f=math_suffix(dtype), T=type_name)
        return text


# -- numpy implementations ------------------------------------------------------------------------
# Each is bitwise equal to its op's kernel (ops/math.py, ops/nn.py); where the kernel composes
# ufuncs, so does the rule, in the same order.
def _ufunc(name):
    def apply(xp, *args, out=None):
        return getattr(xp, name)(*args, out=out)
    apply.__name__ = name
    apply.ufunc_name = name  # lets a backend call the ufunc itself, without this wrapper
    return apply


def _empty_like_result(xp, out, *args):
    """``out``, or a new array of the args' broadcast shape and the first arg's dtype, laid out
    like the first arg of that shape (as a ufunc lays out its result: a transposed input gives
    a transposed result, which decides the order of any later sum over it)."""
    if out is not None:
        return out
    shape = np.broadcast_shapes(*(np.shape(a) for a in args))
    for a in args:
        if np.shape(a) == shape and hasattr(a, "flags"):
            return xp.empty_like(a, dtype=args[0].dtype)
    return xp.empty(shape, dtype=args[0].dtype)


_TEMPS = threading.local()
_MAX_CACHED_TEMP = 1 << 20  # elements; the chunked backend's arrays are far smaller


def _temp(xp, like, slot: str, dtype=None):
    """A scratch array shaped like ``like`` for use within one rule call; ``slot`` names which
    of the rule's temporaries it is. On the host it is kept per thread for the next call: a
    fresh temporary of a few hundred KB goes back to the OS when freed (malloc trims its heap)
    and page-faults again on every call, which made a fused sigmoid 5x slower than its math."""
    shape, dtype = np.shape(like), np.dtype(dtype or like.dtype)
    if xp is not np or math.prod(shape) > _MAX_CACHED_TEMP:
        return xp.empty(shape, dtype)
    cache = _TEMPS.__dict__.setdefault("arrays", {})
    key = (shape, dtype, slot)
    array = cache.get(key)
    if array is None:
        if len(cache) >= 64:
            cache.clear()
        array = cache[key] = np.empty(shape, dtype)
    return array


_INT_OF_SIZE = {1: "int8", 2: "int16", 4: "int32", 8: "int64"}


def _select_into(xp, mask, a, b, out):
    """``out[...] = where(mask, a, b)``, bit for bit, as a bitwise select through integer
    views: numpy's masked copy (``copyto(where=)``, ``where``) runs element by element and is
    2-4x slower on random masks. ``out`` may be ``a`` or ``b``."""
    itype = getattr(xp, _INT_OF_SIZE[out.dtype.itemsize])
    keep_a = xp.negative(mask, dtype=itype, out=_temp(xp, out, "select.keep", itype))
    from_b = xp.bitwise_and(xp.asarray(b).view(itype), xp.invert(keep_a),
                            out=_temp(xp, out, "select.b", itype))
    bits = out.view(itype)
    xp.bitwise_and(xp.asarray(a).view(itype), keep_a, out=bits)
    xp.bitwise_or(bits, from_b, out=bits)
    return out


def _sigmoid(xp, x, out=None):
    # as the Sigmoid kernel: e = exp(-|x|); x >= 0 ? 1 / (1 + e) : e / (1 + e)
    positive = xp.greater_equal(x, 0, out=_temp(xp, x, "sigmoid.positive", bool))
    e = xp.abs(x, out=_temp(xp, x, "sigmoid.e"))
    xp.negative(e, out=e)
    xp.exp(e, out=e)
    denominator = xp.add(e, 1, out=_temp(xp, x, "sigmoid.denominator"))
    out = _empty_like_result(xp, out, x)
    xp.divide(e, denominator, out=out)
    xp.divide(1, denominator, out=denominator)
    _select_into(xp, positive, denominator, out, out)
    return out


def _relu6(xp, x, out=None):
    return xp.clip(x, 0, 6, out=out)


def _elu(xp, x, out=None):
    # where(x > 0, x, expm1(min(x, 0)))
    positive = xp.greater(x, 0, out=_temp(xp, x, "elu.positive", bool))
    out = xp.minimum(x, 0, out=_empty_like_result(xp, out, x))
    xp.expm1(out, out=out)
    _select_into(xp, positive, x, out, out)
    return out


def _softplus(xp, x, out=None):
    # max(x, 0) + log1p(exp(-|x|))
    tail = xp.abs(x, out=_temp(xp, x, "softplus.tail"))
    xp.negative(tail, out=tail)
    xp.exp(tail, out=tail)
    xp.log1p(tail, out=tail)
    out = xp.maximum(x, 0, out=_empty_like_result(xp, out, x))
    return xp.add(out, tail, out=out)


def _relu_grad(xp, g, y, out=None):
    return xp.multiply(g, xp.greater(y, 0, out=_temp(xp, y, "relu_grad.mask", bool)), out=out)


def _relu6_grad(xp, g, x, out=None):
    above = xp.greater(x, 0, out=_temp(xp, x, "relu6_grad.above", bool))
    inside = xp.logical_and(above, xp.less(x, 6, out=_temp(xp, x, "relu6_grad.below", bool)),
                            out=above)
    return xp.multiply(g, inside, out=out)


def _elu_grad(xp, g, y, out=None):
    # where(y > 0, g, g * (y + 1))
    positive = xp.greater(y, 0, out=_temp(xp, y, "elu_grad.positive", bool))
    out = xp.add(y, 1, out=_empty_like_result(xp, out, g, y))
    xp.multiply(g, out, out=out)
    _select_into(xp, positive, g, out, out)
    return out


def _softplus_grad(xp, g, x, out=None):
    out = _sigmoid(xp, x, out=_empty_like_result(xp, out, g, x))
    return xp.multiply(g, out, out=out)


def _squared_difference(xp, x, y, out=None):
    out = xp.subtract(x, y, out=_empty_like_result(xp, out, x, y))
    return xp.square(out, out=out)


def _rsqrt(xp, x, out=None):
    out = xp.sqrt(x, out=_empty_like_result(xp, out, x))
    return xp.reciprocal(out, out=out)


def _round(xp, x, out=None):
    return xp.round(x, out=out)


def _identity(xp, x, out=None):
    if out is None:
        return x
    xp.copyto(out, x)
    return out


def _cast(xp, x, out=None, DstT=None):  # noqa: N803  (the op's attr name)
    if out is None:
        return xp.asarray(x).astype(np.dtype(DstT))
    xp.copyto(out, x, casting="unsafe")  # the same C conversion as astype
    return out


def _fill(value):
    def fill(xp, x, out=None):
        if out is None:
            return xp.full(np.shape(x), value, dtype=x.dtype)
        out[...] = value
        return out
    return fill


def _select(xp, condition, x, y, out=None):
    if out is None:
        return xp.where(condition, x, y)
    return _select_into(xp, condition, x, y, out)


def _clip(xp, t, low, high, out=None):
    # min then max, as TF1 composes clip_by_value
    out = xp.minimum(t, high, out=_empty_like_result(xp, out, t, low, high))
    return xp.maximum(out, low, out=out)


def _add_n(xp, *xs, out=None):
    out = xp.add(xs[0], xs[1], out=_empty_like_result(xp, out, *xs))
    for x in xs[2:]:
        xp.add(out, x, out=out)
    return out


def _bias_add(xp, value, bias, out=None, data_format="NHWC"):
    return xp.add(value, bias, out=out)


def _channel_last(attrs) -> bool:
    # With the channel last, BiasAdd is numpy broadcasting; NCHW would need a reshaped view.
    return not attrs.get("data_format", "NHWC").startswith("NC")


def _select_dtype(arg_dtypes, attrs):
    return arg_dtypes[1]


def _cast_dtype(arg_dtypes, attrs):
    return attrs["DstT"]


def _cast_ok(attrs) -> bool:
    return "DstT" in attrs


class _CastRule(ElementwiseRule):
    def accepts(self, arg_dtypes, attrs) -> bool:
        # float -> int truncation differs between numpy (nan, overflow) and C: left unfused.
        if not super().accepts(arg_dtypes, attrs):
            return False
        return not (np.dtype(arg_dtypes[0]).kind == "f" and np.dtype(attrs["DstT"]).kind in "iu")


# -- C / Python templates shared by several rules -------------------------------------------------
def _max_c(a, b):
    return f"((({a}) > ({b}) || ({a}) != ({a})) ? ({a}) : ({b}))"


def _min_c(a, b):
    return f"((({a}) < ({b}) || ({a}) != ({a})) ? ({a}) : ({b}))"


def _max_py(a, b):
    return f"(({a}) if (({a}) > ({b}) or ({a}) != ({a})) else ({b}))"


def _min_py(a, b):
    return f"(({a}) if (({a}) < ({b}) or ({a}) != ({a})) else ({b}))"


_SIGMOID_C = ("({X} >= 0 ? ({T})1 / (({T})1 + exp{f}(-{X})) "
              ": exp{f}({X}) / (({T})1 + exp{f}({X})))")
_SIGMOID_PY = ("({T}(1) / ({T}(1) + np.exp(-{X})) if {X} >= 0 "
               "else np.exp({X}) / ({T}(1) + np.exp({X})))")


def _binary(c_op, py_op=None):
    return f"({{0}} {c_op} {{1}})", f"({{0}} {py_op or c_op} {{1}})"


def _unary_math(name, kinds="f"):
    """A rule for a float function with the same name in C's math.h and numpy."""
    np_name = {"rint": "round"}.get(name, name)
    numpy_fn = _round if name == "rint" else _ufunc(name)
    return ElementwiseRule(1, numpy_fn, f"{name}{{f}}({{0}})", f"np.{np_name}({{0}})"
                           if name != "rint" else "np.rint({0})", kinds=kinds)


def _comparison(ufunc, op):
    c, py = _binary(op)
    return ElementwiseRule(2, _ufunc(ufunc), c, py, dtype=_bool_result, kinds="b")


ELEMENTWISE: dict[str, ElementwiseRule] = {
    # binary arithmetic with broadcasting
    "Add": ElementwiseRule(2, _ufunc("add"), *_binary("+"), kinds="fiu"),
    "Sub": ElementwiseRule(2, _ufunc("subtract"), *_binary("-"), kinds="fiu"),
    "Mul": ElementwiseRule(2, _ufunc("multiply"), *_binary("*"), kinds="fiu"),
    "RealDiv": ElementwiseRule(2, _ufunc("true_divide"), *_binary("/"), kinds="f"),
    "Maximum": ElementwiseRule(2, _ufunc("maximum"), _max_c("{0}", "{1}"),
                               _max_py("{0}", "{1}"), kinds="fiu"),
    "Minimum": ElementwiseRule(2, _ufunc("minimum"), _min_c("{0}", "{1}"),
                               _min_py("{0}", "{1}"), kinds="fiu"),
    "SquaredDifference": ElementwiseRule(2, _squared_difference, "(({0} - {1}) * ({0} - {1}))",
                                         "(({0} - {1}) * ({0} - {1}))", kinds="fi"),
    "Pow": ElementwiseRule(2, _ufunc("power"), "pow{f}({0}, {1})", "({0} ** {1})", kinds="f"),
    "BiasAdd": ElementwiseRule(2, _bias_add, *_binary("+"), kinds="fiu", attrs_ok=_channel_last,
                               attrs=("data_format",)),
    "AddN": ElementwiseRule(None, _add_n, *_binary("+"), kinds="fiu", out_may_alias=False),
    # unary arithmetic
    "Neg": ElementwiseRule(1, _ufunc("negative"), "(-{0})", "(-{0})", kinds="fi"),
    # "+ 0" turns -0.0 into +0.0, as numpy's abs, sign and maximum(x, 0) give it
    "Abs": ElementwiseRule(1, _ufunc("absolute"), "({0} < 0 ? -{0} : ({0} + ({T})0))",
                           "(-{0} if {0} < 0 else {0} + {T}(0))", kinds="fi"),
    "Sign": ElementwiseRule(1, _ufunc("sign"),
                            "({0} > 0 ? ({T})1 : ({0} < 0 ? ({T})-1 : ({0} + ({T})0)))",
                            "({T}(1) if {0} > 0 else ({T}(-1) if {0} < 0 else {0} + {T}(0)))",
                            kinds="fi"),
    "Square": ElementwiseRule(1, _ufunc("square"), "({0} * {0})", "({0} * {0})", kinds="fiu"),
    "Reciprocal": ElementwiseRule(1, _ufunc("reciprocal"), "(({T})1 / {0})", "({T}(1) / {0})",
                                  kinds="f"),
    "Rsqrt": ElementwiseRule(1, _rsqrt, "(({T})1 / sqrt{f}({0}))", "({T}(1) / np.sqrt({0}))",
                             kinds="f"),
    "Sqrt": _unary_math("sqrt"),
    "Exp": _unary_math("exp"),
    "Expm1": _unary_math("expm1"),
    "Log": _unary_math("log"),
    "Log1p": _unary_math("log1p"),
    "Sin": _unary_math("sin"),
    "Cos": _unary_math("cos"),
    "Tanh": _unary_math("tanh"),
    "Floor": _unary_math("floor"),
    "Ceil": _unary_math("ceil"),
    "Round": _unary_math("rint"),
    "Identity": ElementwiseRule(1, _identity, "{0}", "{0}"),
    "StopGradient": ElementwiseRule(1, _identity, "{0}", "{0}"),
    "ZerosLike": ElementwiseRule(1, _fill(0), "(({T})0)", "{T}(0)"),
    "OnesLike": ElementwiseRule(1, _fill(1), "(({T})1)", "{T}(1)"),
    "Cast": _CastRule(1, _cast, "(({T})({0}))", "{T}({0})", dtype=_cast_dtype, attrs_ok=_cast_ok,
                      attrs=("DstT",)),
    # activations and their gradients
    "Sigmoid": ElementwiseRule(1, _sigmoid, _SIGMOID_C.replace("{X}", "{0}"),
                               _SIGMOID_PY.replace("{X}", "{0}"), kinds="f",
                               out_may_alias=False),
    "Relu": ElementwiseRule(1, lambda xp, x, out=None: xp.maximum(x, 0, out=out),
                            "(({0} > 0 || {0} != {0}) ? {0} : ({T})0)",
                            "({0} if ({0} > 0 or {0} != {0}) else {T}(0))", kinds="fi"),
    "Relu6": ElementwiseRule(1, _relu6, "({0} < 0 ? ({T})0 : ({0} > 6 ? ({T})6 : {0}))",
                             "({T}(0) if {0} < 0 else ({T}(6) if {0} > 6 else {0}))",
                             kinds="fi"),
    # expm1 of min(x, 0), which is +0.0 for x = -0.0
    "Elu": ElementwiseRule(1, _elu,
                           "({0} > 0 ? {0} : expm1{f}(({0} < 0 || {0} != {0}) ? {0} : ({T})0))",
                           "({0} if {0} > 0 else np.expm1({0} if ({0} < 0 or {0} != {0}) "
                           "else {T}(0)))", kinds="f", out_may_alias=False),
    "Softplus": ElementwiseRule(1, _softplus,
                                "(({0} > 0 ? {0} : ({T})0) + log1p{f}(exp{f}(-fabs{f}({0}))))",
                                "(({0} if {0} > 0 else {T}(0)) + np.log1p(np.exp(-abs({0}))))",
                                kinds="f", out_may_alias=False),
    "ReluGrad": ElementwiseRule(2, _relu_grad, "({0} * ({T})({1} > 0))", "({0} * {T}({1} > 0))",
                                kinds="fi"),
    "Relu6Grad": ElementwiseRule(2, _relu6_grad, "({0} * ({T})({1} > 0 && {1} < 6))",
                                 "({0} * {T}({1} > 0 and {1} < 6))", kinds="fi"),
    "EluGrad": ElementwiseRule(2, _elu_grad, "({1} > 0 ? {0} : {0} * ({1} + ({T})1))",
                               "({0} if {1} > 0 else {0} * ({1} + {T}(1)))", kinds="f",
                               out_may_alias=False),
    "SoftplusGrad": ElementwiseRule(2, _softplus_grad,
                                    "({0} * " + _SIGMOID_C.replace("{X}", "{1}") + ")",
                                    "({0} * " + _SIGMOID_PY.replace("{X}", "{1}") + ")",
                                    kinds="f", out_may_alias=False),
    # selection and clipping
    "SelectV2": ElementwiseRule(3, _select, "({0} ? {1} : {2})", "({1} if {0} else {2})",
                                dtype=_select_dtype, out_may_alias=False),
    "ClipByValue": ElementwiseRule(3, _clip, _max_c(_min_c("{0}", "{2}"), "{1}"),
                                   _max_py(_min_py("{0}", "{2}"), "{1}"), kinds="fiu",
                                   out_may_alias=False),
    # comparisons and logic (bool results)
    "Equal": _comparison("equal", "=="),
    "NotEqual": _comparison("not_equal", "!="),
    "Less": _comparison("less", "<"),
    "LessEqual": _comparison("less_equal", "<="),
    "Greater": _comparison("greater", ">"),
    "GreaterEqual": _comparison("greater_equal", ">="),
    "LogicalAnd": ElementwiseRule(2, _ufunc("logical_and"), *_binary("&&", "and"), kinds="b"),
    "LogicalOr": ElementwiseRule(2, _ufunc("logical_or"), *_binary("||", "or"), kinds="b"),
    "LogicalNot": ElementwiseRule(1, _ufunc("logical_not"), "(!{0})", "(not {0})", kinds="b"),
}


# -- reductions -----------------------------------------------------------------------------------
def _reduced_shape(shape, axes, keepdims) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def in_c_order(x):
    """``x``, or a C-contiguous copy of it: as the Sum/Mean/Prod kernels, which add in logical
    order whatever the input's layout (numpy adds in memory order)."""
    return x if x.flags.c_contiguous else x.copy(order="C")


def _sum(xp, x, axes, keepdims, out=None):
    return xp.sum(in_c_order(x), axis=axes, keepdims=keepdims, dtype=x.dtype, out=out)


def _prod(xp, x, axes, keepdims, out=None):
    return xp.prod(in_c_order(x), axis=axes, keepdims=keepdims, dtype=x.dtype, out=out)


def _mean(xp, x, axes, keepdims, out=None):
    x = in_c_order(x)
    count = 1
    for a in axes:
        count *= x.shape[a]
    if count == 0:  # as the Mean kernel: nan, without numpy's warning
        return _fill_reduced(xp, x, axes, keepdims, np.nan, out)
    return xp.mean(x, axis=axes, keepdims=keepdims, out=out)


def _extremum(name, identity):
    def reduce(xp, x, axes, keepdims, out=None):
        if x.size == 0:
            return _fill_reduced(xp, x, axes, keepdims, identity(x.dtype.name), out)
        return getattr(xp, name)(x, axis=axes, keepdims=keepdims, out=out)
    return reduce


def _fill_reduced(xp, x, axes, keepdims, value, out):
    if out is None:
        return xp.full(_reduced_shape(x.shape, axes, keepdims), value, dtype=x.dtype)
    out[...] = value
    return out


def _lowest(dtype: str):
    d = np.dtype(dtype)
    return -np.inf if d.kind == "f" else np.iinfo(d).min


def _highest(dtype: str):
    d = np.dtype(dtype)
    return np.inf if d.kind == "f" else np.iinfo(d).max


@dataclasses.dataclass(frozen=True)
class ReduceRule:
    """How a reduction combines: ``numpy(xp, x, axes, keepdims, out=None)`` bitwise equal to the
    op's kernel; ``identity(dtype)`` the start value; ``c``/``py`` combine templates of (acc, x);
    ``combine`` names the ufunc that merges two partial results (chunked evaluation); ``mean``
    divides by the element count at the end."""

    numpy: Callable
    identity: Callable
    c: str
    py: str
    combine: str
    kinds: str = "fiu"
    mean: bool = False

    def accepts(self, dtype: str) -> bool:
        return dtype in FUSABLE_DTYPES and np.dtype(dtype).kind in self.kinds


REDUCTIONS: dict[str, ReduceRule] = {
    "Sum": ReduceRule(_sum, lambda dtype: 0, *_binary("+"), combine="add"),
    # the integer mean truncates toward zero in the op's kernel: only float means are fused
    "Mean": ReduceRule(_mean, lambda dtype: 0, *_binary("+"), combine="add", kinds="f",
                       mean=True),
    "Prod": ReduceRule(_prod, lambda dtype: 1, *_binary("*"), combine="multiply"),
    "Max": ReduceRule(_extremum("max", _lowest), _lowest, _max_c("{0}", "{1}"),
                      _max_py("{0}", "{1}"), combine="maximum"),
    "Min": ReduceRule(_extremum("min", _highest), _highest, _min_c("{0}", "{1}"),
                      _min_py("{0}", "{1}"), combine="minimum"),
}
