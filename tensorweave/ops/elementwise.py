"""The core elementwise math ops, and the rules every math op shares.

``add``, ``subtract``, ``multiply``, the divisions (``realdiv``, ``truediv``, ``div``,
``floordiv``, ``floormod``), ``maximum``, ``minimum``, ``squared_difference`` and ``negative``;
the comparisons and logic ops; ``select_v2`` and ``cast``. The gradients of the other math
modules (``ops/unary.py``, ``ops/reduction.py``, ``ops/math.py``) are built from these, so this
module imports none of them (``unbroadcast`` imports ``reduce_sum`` when it runs).

Binary inputs take one dtype (a Python value adopts the other input's), outputs broadcast, and
gradients of broadcast inputs are summed back to the input's shape (``unbroadcast``).
"""

from __future__ import annotations

import numpy as np

from tensorweave.graph import dtypes
from tensorweave.graph.core import Tensor
from tensorweave.graph.dtypes import as_dtype, truediv_result
from tensorweave.ops import array as array_ops
from tensorweave.ops.common import (ALL_TYPES, FLOATS, NUMBERS, SIGNED, binary_inputs,
                                    broadcast_inputs, broadcast_shape_of, check_dtype,
                                    convert_to_tensor, output)
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, register

__all__ = ["add"]

INDEX_TYPES = frozenset({"int32", "int64"})
BOOL = frozenset({"bool"})


def unbroadcast(grad: Tensor, like: Tensor, others=None) -> Tensor:
    """Sum ``grad`` over the axes along which ``like`` was broadcast, back to ``like``'s shape.

    ``others`` are the other operands that broadcast with ``like`` into ``grad``'s shape, when
    the caller knows them (None: unknown). When static shapes decide the axes — as for a bias
    ``[256]`` added to ``[?, 256]`` — the gradient is one ``Sum`` over constant axes (or
    ``grad`` itself), built once here, instead of a Shape/BroadcastGradientArgs/Sum/Reshape
    chain that finds the same axes at every step. The sums are the same numpy reductions over
    the same axes either way, so the values are bitwise the same.
    """
    from tensorweave.ops.array import reshape, shape
    from tensorweave.ops.reduction import reduce_sum  # reduction imports this module
    if grad.shape.is_fully_defined() and like.shape.is_fully_defined() \
            and grad.shape == like.shape:
        return grad
    axes = static_reduction_axes(grad.shape, like.shape,
                                 None if others is None else [t.shape for t in others])
    if axes is not None:
        return _sum_to_like(grad, like, axes)
    axes = apply_op("BroadcastGradientArgs", [shape(grad), shape(like)]).outputs[0]
    summed = reduce_sum(grad, axis=axes, keepdims=True)
    return reshape(summed, shape(like))


def static_reduction_axes(grad_shape, like_shape, other_shapes=None):
    """The axes of a broadcast result (``grad_shape``) to sum to get back to ``like_shape``, as
    a sorted list, when static shapes decide them; None when only the running step can tell.

    ``other_shapes`` are the shapes of the operands broadcast with ``like`` (None: unknown).
    An axis where ``like`` has a known 1 is summed even when the result may also have a 1 there:
    a sum over one element is that element, bit for bit. An unknown dim of ``like`` needs no sum
    when no other operand can have stretched it: each of them lacks that axis or has a known 1
    there (then the result's dim is ``like``'s own).
    """
    grad_dims, like_dims = grad_shape.as_tuple(), like_shape.as_tuple()
    if grad_dims is None or like_dims is None or len(grad_dims) < len(like_dims):
        return None
    rank, lead = len(grad_dims), len(grad_dims) - len(like_dims)
    others = None if other_shapes is None else [s.as_tuple() for s in other_shapes]
    if others is not None and any(dims is None for dims in others):
        others = None
    axes = list(range(lead))
    for i, d in enumerate(like_dims):
        axis, g = lead + i, grad_dims[lead + i]
        if d == 1:
            if g != 1:
                axes.append(axis)
        elif d is None and g != 1 and not _only_like_sizes(axis, rank, others):
            return None
    return axes


def _only_like_sizes(axis, rank, others) -> bool:
    """True when no operand in ``others`` (dims tuples, or None: unknown) can have stretched
    the result's ``axis``: each lacks that axis or has a known 1 there."""
    if others is None:
        return False
    for dims in others:
        j = axis - (rank - len(dims))
        if j >= 0 and dims[j] != 1:
            return False
    return True


def _sum_to_like(grad: Tensor, like: Tensor, axes) -> Tensor:
    """``grad`` summed over the constant ``axes`` and shaped like ``like``."""
    from tensorweave.ops.array import reshape, shape
    from tensorweave.ops.reduction import reduce_sum
    lead = grad.shape.rank - like.shape.rank
    if not axes:
        return grad
    if axes[-1] < lead:  # only leading axes: dropping them gives like's shape
        return reduce_sum(grad, axis=axes, keepdims=False)
    summed = reduce_sum(grad, axis=axes, keepdims=True)
    if lead == 0:  # the summed axes are like's 1s: keeping them gives like's shape
        return summed
    return reshape(summed, static_reshape_target(like.shape.as_list()) or shape(like))


def static_reshape_target(dims):
    """``dims`` (ints, None for unknown) as a constant reshape target — -1 for the one unknown
    dim — or None when they need a Shape op: two unknowns, or an unknown next to a 0 (-1 cannot
    be resolved against a 0 dim)."""
    unknown = [d for d in dims if d is None]
    if len(unknown) > 1 or (unknown and 0 in dims):
        return None
    return [-1 if d is None else d for d in dims]


# -- shared pieces: dtype checks, inference factories, kernel wrappers ----------------------------
def _require(tensor: Tensor, allowed, arg: str):
    """Raise TypeError (in the user's terms) unless ``tensor``'s dtype is in ``allowed``."""
    if tensor.dtype.name not in allowed:
        raise TypeError(f"input '{arg}' has dtype {tensor.dtype.name}; allowed: "
                        f"{', '.join(sorted(allowed))}")


def _require_same_dtype(x: Tensor, y: Tensor, x_arg="x", y_arg="y"):
    if x.dtype is not y.dtype:
        raise TypeError(f"input '{y_arg}' has dtype {y.dtype.name}, which does not match dtype "
                        f"{x.dtype.name} of input '{x_arg}' (use tw.cast)")


def _unary_infer(allowed, out_dtype=None):
    """Inference of a one-input elementwise op on the dtypes ``allowed``."""
    def infer(op):
        x = op.inputs[0]
        _require(x, allowed, "x")
        return [(out_dtype or x.dtype, x.shape)]
    return infer


def _binary_infer(allowed, out_dtype=None):
    """Inference of a broadcasting two-input op whose inputs share a dtype in ``allowed``."""
    def infer(op):
        x, y = op.inputs
        _require(x, allowed, "x")
        _require_same_dtype(x, y)
        return [(out_dtype or x.dtype, broadcast_shape_of(op.inputs))]
    return infer


def _ufunc(name):
    """Kernel builder for an op that is exactly the array module's function ``name``.

    Floating-point warnings are off for whole steps (the executor's choice: TF returns inf/nan
    silently), so kernels need no wrapper of their own.
    """
    def build(attrs, xp):
        return getattr(xp, name)
    return build


def _unary(op_type, x, name):
    x = convert_to_tensor(x)
    return output(apply_op(op_type, [x], name=name or op_type))


def _binary(op_type, x, y, name, default_name=None):
    x, y = binary_inputs(op_type, x, y, name)
    return output(apply_op(op_type, [x, y], name=name or default_name or op_type))


def _unbroadcast_both(op, gx, gy):
    x, y = op.inputs
    return [unbroadcast(gx, x, [y]), unbroadcast(gy, y, [x])]


# -- Add ----------------------------------------------------------------------------------------
register(OpDef("Add", broadcast_inputs, lambda attrs, xp: xp.add, fusion="broadcast",
               grad=lambda op, g: _unbroadcast_both(op, g, g)))


def add(x, y, name=None) -> Tensor:
    """``x + y`` elementwise, with broadcasting."""
    x, y = binary_inputs("Add", x, y, name)
    check_dtype("Add", x, NUMBERS, name=name)
    return output(apply_op("Add", [x, y], name=name or "Add"))


# -- BroadcastGradientArgs ------------------------------------------------------------------------
def _broadcast_gradient_args_kernel(attrs, xp):
    def reduction_axes(grad_shape, input_shape):
        """Axes of a gradient of shape ``grad_shape`` to sum to get back to ``input_shape``."""
        grad_shape = [int(d) for d in grad_shape]
        input_shape = [int(d) for d in input_shape]
        lead = len(grad_shape) - len(input_shape)
        axes = list(range(lead))
        for i, d in enumerate(input_shape):
            if d == 1 and grad_shape[lead + i] != 1:
                axes.append(lead + i)
        return np.array(axes, dtype=np.int32)
    return reduction_axes


register(OpDef("BroadcastGradientArgs",
               lambda op: [(op.inputs[0].dtype, [None])],
               _broadcast_gradient_args_kernel, grad=None))


# == Elementwise binary arithmetic ================================================================
# -- Sub --
register(OpDef("Sub", _binary_infer(NUMBERS), _ufunc("subtract"), fusion="broadcast",
               grad=lambda op, g: _unbroadcast_both(op, g, negative(g))))


def subtract(x, y, name=None) -> Tensor:
    """``x - y`` elementwise, with broadcasting."""
    return _binary("Sub", x, y, name)


# -- Mul --
register(OpDef("Mul", _binary_infer(NUMBERS), _ufunc("multiply"), fusion="broadcast",
               grad=lambda op, g: _unbroadcast_both(op, multiply(g, op.inputs[1]),
                                                    multiply(op.inputs[0], g))))


def multiply(x, y, name=None) -> Tensor:
    """``x * y`` elementwise, with broadcasting."""
    return _binary("Mul", x, y, name)


# -- RealDiv --
def _realdiv_grad(op, g):
    x, y = op.inputs
    return _unbroadcast_both(op, realdiv(g, y),
                             multiply(g, realdiv(realdiv(negative(x), y), y)))


register(OpDef("RealDiv", _binary_infer(FLOATS), _ufunc("true_divide"),
               fusion="broadcast", grad=_realdiv_grad))


def realdiv(x, y, name=None) -> Tensor:
    """``x / y`` for float tensors (the raw op; ``truediv`` also accepts integers)."""
    return _binary("RealDiv", x, y, name)


def truediv(x, y, name=None) -> Tensor:
    """``x / y`` as Python 3 divides: int8/int16 become float32, int32/int64 float64 first."""
    x, y = binary_inputs("RealDiv", x, y, name)
    try:
        target = truediv_result(x.dtype)
    except TypeError as e:
        raise TypeError(f"truediv: {e}") from None
    if target is not x.dtype:
        x, y = cast(x, target), cast(y, target)
    return output(apply_op("RealDiv", [x, y], name=name or "truediv"))


def divide(x, y, name=None) -> Tensor:
    """``x / y`` (truediv: integers are divided as floats)."""
    return truediv(x, y, name=name)


def div(x, y, name=None) -> Tensor:
    """TF1's ``tf.div``: Python 2 division, floor division for integers, real for floats."""
    x, y = binary_inputs("FloorDiv", x, y, name)
    if x.dtype.is_floating:
        return output(apply_op("RealDiv", [x, y], name=name or "div"))
    return output(apply_op("FloorDiv", [x, y], name=name or "div"))


# -- FloorDiv / FloorMod --
def _check_int_divisor(xp, y):
    if not xp.all(y):
        raise ZeroDivisionError("integer division by zero")


def _floordiv_kernel(attrs, xp):

    def floordiv(x, y):
        if x.dtype.kind in "iu":
            _check_int_divisor(xp, y)
            return xp.floor_divide(x, y)
        return xp.floor(xp.true_divide(x, y))  # TF floors the float ratio: floor(1 / 0.1) == 10
    return floordiv


register(OpDef("FloorDiv", _binary_infer(NUMBERS), _floordiv_kernel, fusion="broadcast",
               grad=NO_GRADIENT))


def floordiv(x, y, name=None) -> Tensor:
    """``x // y``: the floor of the quotient (``-7 // 2 == -4``); integer division by 0 fails."""
    return _binary("FloorDiv", x, y, name, "floordiv")


def _floormod_kernel(attrs, xp):

    def floormod(x, y):
        if x.dtype.kind in "iu":
            _check_int_divisor(xp, y)
        return xp.remainder(x, y)  # the sign of the divisor, as Python's %
    return floormod


def _floormod_grad(op, g):
    x, y = op.inputs
    return _unbroadcast_both(op, g, multiply(negative(g), floordiv(x, y)))


register(OpDef("FloorMod", _binary_infer(NUMBERS), _floormod_kernel, fusion="broadcast",
               grad=_floormod_grad))


def floormod(x, y, name=None) -> Tensor:
    """``x % y`` with the sign of ``y`` (``-7 % 2 == 1``); integer modulo by 0 fails."""
    return _binary("FloorMod", x, y, name)


mod = floormod
floor_div = floordiv


# -- Maximum / Minimum --
def _pick_grad(mask_fn):
    """Gradient of an op that picks x where ``mask_fn(x, y)`` holds, else y (ties go to x)."""
    def grad(op, g):
        x, y = op.inputs
        mask = mask_fn(x, y)
        zeros = array_ops.zeros_like(g)
        return _unbroadcast_both(op, select_v2(mask, g, zeros), select_v2(mask, zeros, g))
    return grad


register(OpDef("Maximum", _binary_infer(NUMBERS), _ufunc("maximum"), fusion="broadcast",
               grad=_pick_grad(lambda x, y: greater_equal(x, y))))
register(OpDef("Minimum", _binary_infer(NUMBERS), _ufunc("minimum"), fusion="broadcast",
               grad=_pick_grad(lambda x, y: less_equal(x, y))))


def maximum(x, y, name=None) -> Tensor:
    """The larger of ``x`` and ``y``, elementwise with broadcasting."""
    return _binary("Maximum", x, y, name)


def minimum(x, y, name=None) -> Tensor:
    """The smaller of ``x`` and ``y``, elementwise with broadcasting."""
    return _binary("Minimum", x, y, name)


# -- SquaredDifference --
def _squared_difference_kernel(attrs, xp):
    def squared_difference(x, y):
        return xp.square(xp.subtract(x, y))
    return squared_difference


def _squared_difference_grad(op, g):
    x, y = op.inputs
    scaled = multiply(multiply(g, subtract(x, y)), 2)
    return _unbroadcast_both(op, scaled, negative(scaled))


register(OpDef("SquaredDifference", _binary_infer(NUMBERS), _squared_difference_kernel,
               fusion="broadcast", grad=_squared_difference_grad))


def squared_difference(x, y, name=None) -> Tensor:
    """``(x - y) ** 2`` elementwise, with broadcasting."""
    return _binary("SquaredDifference", x, y, name)


# -- Neg --
register(OpDef("Neg", _unary_infer(SIGNED | FLOATS), _ufunc("negative"), fusion="elementwise",
               grad=lambda op, g: [negative(g)]))


def negative(x, name=None) -> Tensor:
    """``-x`` elementwise."""
    return _unary("Neg", x, name)


__all__ += ["subtract", "multiply", "realdiv", "truediv", "divide", "div", "floordiv", "floor_div",
            "floormod", "mod", "maximum", "minimum", "squared_difference", "negative"]


# == Comparisons and logic ========================================================================
for _type, _fn, _allowed in [("Equal", "equal", ALL_TYPES | {"string"}),
                             ("NotEqual", "not_equal", ALL_TYPES | {"string"}),
                             ("Less", "less", NUMBERS),
                             ("LessEqual", "less_equal", NUMBERS),
                             ("Greater", "greater", NUMBERS),
                             ("GreaterEqual", "greater_equal", NUMBERS)]:
    register(OpDef(_type, _binary_infer(_allowed, out_dtype=dtypes.bool_), _ufunc(_fn),
                   fusion="broadcast", grad=NO_GRADIENT))
del _type, _fn, _allowed


def equal(x, y, name=None) -> Tensor:
    """``x == y`` elementwise, as a bool tensor (``==`` on tensors compares identity, as TF1)."""
    return _binary("Equal", x, y, name)


def not_equal(x, y, name=None) -> Tensor:
    """``x != y`` elementwise, as a bool tensor."""
    return _binary("NotEqual", x, y, name)


def less(x, y, name=None) -> Tensor:
    """``x < y`` elementwise, as a bool tensor."""
    return _binary("Less", x, y, name)


def less_equal(x, y, name=None) -> Tensor:
    """``x <= y`` elementwise, as a bool tensor."""
    return _binary("LessEqual", x, y, name)


def greater(x, y, name=None) -> Tensor:
    """``x > y`` elementwise, as a bool tensor."""
    return _binary("Greater", x, y, name)


def greater_equal(x, y, name=None) -> Tensor:
    """``x >= y`` elementwise, as a bool tensor."""
    return _binary("GreaterEqual", x, y, name)


register(OpDef("LogicalAnd", _binary_infer(BOOL), _ufunc("logical_and"), fusion="broadcast",
               grad=NO_GRADIENT))
register(OpDef("LogicalOr", _binary_infer(BOOL), _ufunc("logical_or"), fusion="broadcast",
               grad=NO_GRADIENT))
register(OpDef("LogicalNot", _unary_infer(BOOL), _ufunc("logical_not"), fusion="elementwise",
               grad=NO_GRADIENT))


def logical_and(x, y, name=None) -> Tensor:
    """``x and y`` elementwise for bool tensors."""
    return _binary("LogicalAnd", x, y, name)


def logical_or(x, y, name=None) -> Tensor:
    """``x or y`` elementwise for bool tensors."""
    return _binary("LogicalOr", x, y, name)


def logical_not(x, name=None) -> Tensor:
    """``not x`` elementwise for a bool tensor."""
    return _unary("LogicalNot", x, name)


def logical_xor(x, y, name="LogicalXor") -> Tensor:
    """``x != y`` for bool tensors, built as ``(x or y) and not (x and y)`` (as TF1)."""
    x, y = binary_inputs("LogicalAnd", x, y, name)
    either = logical_or(x, y)
    both = logical_and(x, y)
    return logical_and(either, logical_not(both), name=name)


__all__ += ["equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
            "logical_and", "logical_or", "logical_not", "logical_xor"]


# == Selection ====================================================================================
# -- SelectV2: numpy-style broadcasting of condition, x and y --
def _select_v2_infer(op):
    condition, x, y = op.inputs
    _require(condition, BOOL, "condition")
    _require_same_dtype(x, y, "x", "y")
    return [(x.dtype, broadcast_shape_of(op.inputs))]


def _select_v2_grad(op, g):
    condition, x, y = op.inputs
    zeros = array_ops.zeros_like(g)
    return [None, unbroadcast(select_v2(condition, g, zeros), x, [condition, y]),
            unbroadcast(select_v2(condition, zeros, g), y, [condition, x])]


register(OpDef("SelectV2", _select_v2_infer, _ufunc("where"), fusion="broadcast",
               grad=_select_v2_grad))


def select_v2(condition, x, y, name=None) -> Tensor:
    """``x`` where ``condition`` holds, else ``y``; all three broadcast together."""
    x, y = binary_inputs("SelectV2", x, y, name)
    condition = convert_to_tensor(condition)
    return output(apply_op("SelectV2", [condition, x, y], name=name or "SelectV2"))


# == Casts ========================================================================================
# -- Cast --
def _cast_infer(op):
    x, target = op.inputs[0], op.attrs["DstT"]
    if x.dtype is dtypes.string or target is dtypes.string:
        raise TypeError(f"cannot cast {x.dtype.name} to {target.name}: casts to or from "
                        f"strings are not supported")
    return [(target, x.shape)]


def _cast_kernel(attrs, xp):
    target = attrs["DstT"].np
    # float -> int truncates toward zero (C's conversion, as TF); nan -> int would warn
    return lambda x: x.astype(target)


def _cast_grad(op, g):
    source = op.inputs[0].dtype
    if source.is_floating and op.attrs["DstT"].is_floating:
        return [cast(g, source)]
    return [None]


register(OpDef("Cast", _cast_infer, _cast_kernel, grad=_cast_grad, fusion="elementwise"))


def cast(x, dtype, name=None) -> Tensor:
    """``x`` converted to ``dtype`` (floats to ints truncate toward zero); ``x`` itself if it
    already has that dtype, as in TF1."""
    dtype = as_dtype(dtype)
    x = convert_to_tensor(x)
    if x.dtype is dtype:
        return x
    return output(apply_op("Cast", [x], {"SrcT": x.dtype, "DstT": dtype}, name=name or "Cast"))


def to_float(x, name="ToFloat") -> Tensor:
    """``cast(x, tw.float32)`` (TF1 alias)."""
    return cast(x, dtypes.float32, name=name)


def to_double(x, name="ToDouble") -> Tensor:
    """``cast(x, tw.float64)`` (TF1 alias)."""
    return cast(x, dtypes.float64, name=name)


def to_int32(x, name="ToInt32") -> Tensor:
    """``cast(x, tw.int32)`` (TF1 alias)."""
    return cast(x, dtypes.int32, name=name)


def to_int64(x, name="ToInt64") -> Tensor:
    """``cast(x, tw.int64)`` (TF1 alias)."""
    return cast(x, dtypes.int64, name=name)


def to_bfloat16(x, name="ToBFloat16") -> Tensor:
    """``cast(x, tw.bfloat16)`` (TF1 alias)."""
    return cast(x, dtypes.bfloat16, name=name)


__all__ += ["cast", "to_float", "to_double", "to_int32", "to_int64", "to_bfloat16"]
