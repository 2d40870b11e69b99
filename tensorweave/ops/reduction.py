"""Reductions: ``reduce_sum``, ``reduce_mean``, ``reduce_max``, ``reduce_min``, ``reduce_prod``,
``reduce_any``, ``reduce_all`` and ``count_nonzero``; and ``argmax``/``argmin``.

As TF1: reductions default to all axes and ``keepdims=False``; ``reduce_mean`` of ints
truncates toward zero; ``argmax`` returns int64 and reduces axis 0 by default.
"""

from __future__ import annotations

import builtins

import numpy as np

from tensorweave.codegen.rules import in_c_order
from tensorweave.graph import dtypes
from tensorweave.graph.core import Tensor
from tensorweave.graph.dtypes import as_dtype
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops import array as array_ops
from tensorweave.ops import loops
from tensorweave.ops.common import NUMBERS, convert_to_tensor, output
from tensorweave.ops.elementwise import (BOOL, INDEX_TYPES, _require, cast, equal, floordiv,
                                         logical_and, logical_not, maximum, multiply, not_equal,
                                         realdiv, select_v2, static_reshape_target)
from tensorweave.ops.registry import (NO_GRADIENT, Cost, OpDef, apply_op, constant_value,
                                      default_cost, register)

__all__ = []  # each group of ops adds its public functions


# == Reductions ===================================================================================
# Sum, Mean, Max, Min, Prod, Any, All take (input, axes) and attr keep_dims, as in TF. ``axis=None``
# reduces every axis: the axes are the constant range(rank) when the rank is known, else the op
# carries attr ``all_axes=True`` and its (empty) axes input is ignored. Repeated axes count once.
def _static_axes(value, rank: int) -> set:
    """The reduced axes as non-negative ints; ValueError for an axis outside the rank."""
    axes = set()
    for a in np.asarray(value).reshape(-1).tolist():
        if not -rank <= a < rank:
            raise ValueError(f"invalid reduction axis {a} for an input of rank {rank} "
                             f"(axes must be in [{-rank}, {rank}))")
        axes.add(a % rank)
    return axes


def _reduced_dims(dims, axes, keep):
    if keep:
        return [1 if i in axes else d for i, d in enumerate(dims)]
    return [d for i, d in enumerate(dims) if i not in axes]


def _reduction_shape(x: Tensor, axes: Tensor, attrs) -> TensorShape:
    keep, rank = attrs["keep_dims"], x.shape.rank
    if attrs.get("all_axes", False):
        if rank is None:
            return TensorShape(None if keep else [])
        return TensorShape([1] * rank if keep else [])
    value = constant_value(axes)
    if value is not None and rank is not None:
        return TensorShape(_reduced_dims(x.shape.as_tuple(), _static_axes(value, rank), keep))
    if value is not None and np.size(value) == 0:
        return x.shape
    if rank is None:
        return TensorShape(None)
    if keep:
        return TensorShape([None] * rank)
    if axes.shape.num_elements() == 1 and rank > 0:
        return TensorShape([None] * (rank - 1))
    return TensorShape(None)  # the number of distinct axes is not known


def _reduction_infer(allowed):
    def infer(op):
        x, axes = op.inputs
        _require(x, allowed, "input_tensor")
        _require(axes, INDEX_TYPES, "axis")
        return [(x.dtype, _reduction_shape(x, axes, op.attrs))]
    return infer


def _kernel_axes(axes, ndim: int) -> tuple:
    """The axes array of a running reduction as a sorted tuple of distinct non-negative ints."""
    if axes.size == 1:  # the usual case, in a fraction of the general path's time
        a = int(axes.reshape(-1)[0])
        if not -ndim <= a < ndim:
            raise ValueError(f"invalid reduction axis {a} for an input of rank {ndim}")
        return (a % ndim,)
    result = set()
    for a in axes.reshape(-1).tolist():  # tolist() works for numpy and cupy arrays
        if not -ndim <= a < ndim:
            raise ValueError(f"invalid reduction axis {a} for an input of rank {ndim}")
        result.add(a % ndim)
    return tuple(sorted(result))


def _reduction_kernel(reduce, ordered: bool = False):
    """Kernel builder from ``reduce(xp, x, axis_tuple, keepdims)``.

    ``ordered``: the result depends on the order of the additions (sums, means, products of
    floats). numpy adds in memory order, so the same values as a transposed view and as a
    contiguous array can sum to results an ulp apart; such reductions read a C-contiguous copy
    of a non-contiguous input, so a value's result never depends on whether the op that made
    it returned a view (which a pass may change)."""
    def build(attrs, xp):
        keep, all_axes = attrs["keep_dims"], attrs.get("all_axes", False)

        def reduction(x, axes):
            axis = tuple(range(x.ndim)) if all_axes else _kernel_axes(axes, x.ndim)
            return reduce(xp, in_c_order(x) if ordered else x, axis, keep)
        return reduction
    return build


def _reduce_cost(op):
    base = default_cost(op)
    n = op.inputs[0].shape.num_elements()
    return Cost(float(n) if n is not None else base.flops, base.bytes_read, base.bytes_written)


def _reduction_op(op_type, allowed, reduce, grad, ordered=False):
    return register(OpDef(op_type, _reduction_infer(allowed), _reduction_kernel(reduce, ordered),
                          grad=grad, fusion="reduce", cost=_reduce_cost))


def _pick_alias(name, value, alias_name, alias_value):
    if value is not None and alias_value is not None:
        raise ValueError(f"cannot specify both '{name}' and '{alias_name}'")
    return value if value is not None else alias_value


def _axes_tensor(x: Tensor, axis):
    """(axes tensor, all_axes flag) for the ``axis`` argument of a reduction."""
    if axis is None:
        if x.shape.rank is None:
            return convert_to_tensor(np.zeros([0], np.int32)), True
        return convert_to_tensor(np.arange(x.shape.rank, dtype=np.int32)), False
    if isinstance(axis, Tensor):
        return axis, False
    return convert_to_tensor(axis, dtype=dtypes.int32), False


def _reduce(op_type, input_tensor, axis, keepdims, name, reduction_indices, keep_dims):
    x = convert_to_tensor(input_tensor)
    axis = _pick_alias("axis", axis, "reduction_indices", reduction_indices)
    keep = _pick_alias("keepdims", keepdims, "keep_dims", keep_dims)
    axes, all_axes = _axes_tensor(x, axis)
    attrs = {"keep_dims": bool(keep), "all_axes": all_axes}
    return output(apply_op(op_type, [x, axes], attrs, name=name or op_type))


# -- gradient helpers shared by the reductions --
def _keepdims(op, t: Tensor) -> Tensor:
    """``t`` (an output or output gradient of reduction ``op``) in the keep_dims shape.

    When the rank and the axes are static, the shape is a constant (with -1 for one unknown
    dim) rather than a ReducedShape of a Shape computed at every step.
    """
    if op.attrs["keep_dims"]:
        return t
    x, axes = op.inputs
    dims = _static_keepdims_dims(op)
    target = None if dims is None else static_reshape_target(dims)
    if target is not None:
        return array_ops.reshape(t, target)
    if op.attrs.get("all_axes", False):
        target = array_ops.ones_like(array_ops.shape(x))
    else:
        target = output(apply_op("ReducedShape", [array_ops.shape(x), axes]))
    return array_ops.reshape(t, target)


def _static_reduced_axes(op):
    """The axes reduction ``op`` reduces, as a set, when static (the rank and the axes)."""
    x, axes = op.inputs
    rank = x.shape.rank
    if rank is None:
        return None
    if op.attrs.get("all_axes", False):
        return set(range(rank))
    value = constant_value(axes)
    return None if value is None else _static_axes(value, rank)


def _static_keepdims_dims(op):
    """The keep_dims shape of ``op``'s output (None for unknown dims), when the axes are static."""
    reduced = _static_reduced_axes(op)
    if reduced is None:
        return None
    return [1 if i in reduced else d for i, d in enumerate(op.inputs[0].shape.as_list())]


def _like_reduction(op_type, op, t: Tensor) -> Tensor:
    """Reduce ``t`` (shaped like ``op``'s input) as ``op`` did, in the keep_dims shape."""
    attrs = dict(op.attrs, keep_dims=True)
    attrs.pop("_class", None)
    return output(apply_op(op_type, [t, op.inputs[1]], attrs))


def _broadcast_like(t: Tensor, x: Tensor) -> Tensor:
    """``t`` (in a keep_dims shape) broadcast to the shape of ``x``."""
    if t.shape.is_fully_defined() and t.shape == x.shape:
        return t
    return array_ops.broadcast_to(t, array_ops.shape(x))


def _element_count(op, dtype):
    """How many elements of reduction ``op``'s input went into each element of its output: an
    int when static shapes tell (all of them, or the reduced dims), else a tensor."""
    x, y = op.inputs[0], op.outputs[0]
    nx, ny = x.shape.num_elements(), y.shape.num_elements()
    if nx is not None and ny is not None:
        return nx // builtins.max(ny, 1)
    reduced = _static_reduced_axes(op)
    dims = x.shape.as_list() if reduced is not None else None
    if reduced is not None and all(dims[a] is not None for a in reduced):
        # Equal to nx // ny whenever the gradient has elements (ny == 0 empties it).
        return int(np.prod([dims[a] for a in reduced], dtype=np.int64))
    size_x = array_ops.size(x, out_type=dtypes.int64)
    if ny is not None:  # one Size op instead of two, and no division by 1
        per_output = builtins.max(ny, 1)
        return cast(size_x if per_output == 1 else floordiv(size_x, per_output), dtype)
    size_y = array_ops.size(y, out_type=dtypes.int64)
    return cast(floordiv(size_x, maximum(size_y, 1)), dtype)


# -- ReducedShape: the keep_dims shape of a reduction, for gradients --
def _reduced_shape_kernel(attrs, xp):
    def reduced_shape(input_shape, axes):
        dims = input_shape.reshape(-1).tolist()
        for a in _kernel_axes(axes, len(dims)):
            dims[a] = 1
        return xp.asarray(dims, dtype=input_shape.dtype)
    return reduced_shape


def _reduced_shape_infer(op):
    input_shape, axes = op.inputs
    _require(input_shape, INDEX_TYPES, "input_shape")
    _require(axes, INDEX_TYPES, "axes")
    return [(input_shape.dtype, input_shape.shape)]


register(OpDef("ReducedShape", _reduced_shape_infer, _reduced_shape_kernel, grad=NO_GRADIENT))


# -- Sum --
def _sum(xp, x, axis, keep):
    # numpy widens small ints unless told the dtype; np.sum is np.add.reduce behind a wrapper
    # that costs as much as summing a few thousand floats
    if xp is np:
        if loops.use_loops(x, min_elements=loops.SMALL_LOOP_MIN_ELEMENTS) and \
                loops.sums_leading_axes(x, axis):  # bias gradients
            return loops.sum_leading_axes(x, len(axis), keep)
        return np.add.reduce(x, axis=axis, dtype=x.dtype, keepdims=keep)
    return xp.sum(x, axis=axis, keepdims=keep, dtype=x.dtype)


def _sum_grad(op, g):
    return [_broadcast_like(_keepdims(op, g), op.inputs[0]), None]


_reduction_op("Sum", NUMBERS, _sum, _sum_grad, ordered=True)


def reduce_sum(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
               keep_dims=None) -> Tensor:
    """Sum over ``axis`` (an int, a list, or None for all axes); ``keepdims`` keeps them as 1.

        tw.reduce_sum([[1, 2], [3, 4]], axis=1)  # [3, 7]
    """
    return _reduce("Sum", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


# -- Mean --
def _mean(xp, x, axis, keep):
    count = 1
    for a in axis:
        count *= x.shape[a]
    if x.dtype.kind in "iu":
        return _truncated_mean(xp, _sum(xp, x, axis, keep), count, x.dtype)
    if count == 0:  # numpy would warn; TF gives nan
        shape = _reduced_dims(x.shape, axis, keep)
        return xp.full(shape, np.nan, dtype=x.dtype)
    return xp.mean(x, axis=axis, keepdims=keep)


def _truncated_mean(xp, total, count, dtype):
    """``total / count`` for integers, rounded toward zero as TF's integer division does."""
    if count == 0:
        raise ZeroDivisionError("integer division by zero: reduce_mean over an empty axis of "
                                "an integer tensor")
    wide = total.astype(np.int64 if dtype.kind == "i" else np.uint64)
    quotient = wide // count
    if dtype.kind == "i":  # floor division rounds negative quotients down; TF rounds to zero
        quotient = xp.where((wide < 0) & (quotient * count != wide), quotient + 1, quotient)
    return quotient.astype(dtype)


def _mean_grad(op, g):
    summed = _broadcast_like(_keepdims(op, g), op.inputs[0])
    return [realdiv(summed, _element_count(op, g.dtype)), None]


_reduction_op("Mean", NUMBERS, _mean, _mean_grad, ordered=True)


def reduce_mean(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
                keep_dims=None) -> Tensor:
    """Mean over ``axis`` (all axes by default). The mean of integers truncates toward zero."""
    return _reduce("Mean", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


# -- Max / Min --
def _extremum(name, empty_float, empty_int):
    """Reduce with ``xp.<name>``; an empty reduction gives TF's identity (-inf/+inf, int limits)."""
    def reduce(xp, x, axis, keep):
        if x.size == 0:
            shape = _reduced_dims(x.shape, axis, keep)
            if x.dtype.kind in "fV":  # "V": bfloat16
                fill = empty_float
            else:
                fill = getattr(np.iinfo(x.dtype), empty_int)
            return xp.full(shape, fill, dtype=x.dtype)
        return getattr(xp, name)(x, axis=axis, keepdims=keep)
    return reduce


def _extremum_grad(op, g):
    """The gradient goes to the inputs equal to the result, split evenly among ties (as TF)."""
    x, y = op.inputs[0], op.outputs[0]
    hits = cast(equal(_keepdims(op, y), x), g.dtype)
    ties = _like_reduction("Sum", op, hits)
    return [multiply(realdiv(hits, ties), _keepdims(op, g)), None]


_reduction_op("Max", NUMBERS, _extremum("max", -np.inf, "min"), _extremum_grad)
_reduction_op("Min", NUMBERS, _extremum("min", np.inf, "max"), _extremum_grad)


def reduce_max(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
               keep_dims=None) -> Tensor:
    """Maximum over ``axis`` (all axes by default); -inf (or the int minimum) if empty."""
    return _reduce("Max", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_min(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
               keep_dims=None) -> Tensor:
    """Minimum over ``axis`` (all axes by default); +inf (or the int maximum) if empty."""
    return _reduce("Min", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


# -- Prod --
def _prod(xp, x, axis, keep):
    return xp.prod(x, axis=axis, keepdims=keep, dtype=x.dtype)


def _prod_grad(op, g):
    """d prod / d x_i is the product of the other elements, computed without dividing by zero:
    with no zero in the group it is prod / x_i; with one zero, only that zero's position gets
    the product of the rest; with two or more, every position gets 0."""
    x = op.inputs[0]
    nonzero = not_equal(x, array_ops.zeros_like(x))
    safe = select_v2(nonzero, x, array_ops.ones_like(x))
    prod_of_nonzero = _like_reduction("Prod", op, safe)
    zeros_in_group = _like_reduction("Sum", op, cast(logical_not(nonzero), x.dtype))
    lone_zero = logical_and(equal(zeros_in_group, array_ops.ones_like(zeros_in_group)),
                            logical_not(nonzero))
    at_lone_zero = select_v2(lone_zero, multiply(prod_of_nonzero, array_ops.ones_like(x)),
                             array_ops.zeros_like(x))
    no_zero = equal(zeros_in_group, array_ops.zeros_like(zeros_in_group))
    others = select_v2(no_zero, realdiv(prod_of_nonzero, safe), at_lone_zero)
    return [multiply(others, _keepdims(op, g)), None]


_reduction_op("Prod", NUMBERS, _prod, _prod_grad, ordered=True)


def reduce_prod(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
                keep_dims=None) -> Tensor:
    """Product over ``axis`` (all axes by default)."""
    return _reduce("Prod", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


# -- Any / All --
_reduction_op("Any", BOOL, lambda xp, x, axis, keep: xp.any(x, axis=axis, keepdims=keep),
              NO_GRADIENT)
_reduction_op("All", BOOL, lambda xp, x, axis, keep: xp.all(x, axis=axis, keepdims=keep),
              NO_GRADIENT)


def reduce_any(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
               keep_dims=None) -> Tensor:
    """Logical or over ``axis`` of a bool tensor (all axes by default)."""
    return _reduce("Any", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_all(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
               keep_dims=None) -> Tensor:
    """Logical and over ``axis`` of a bool tensor (all axes by default)."""
    return _reduce("All", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def count_nonzero(input_tensor, axis=None, keepdims=None, dtype=dtypes.int64, name=None,
                  reduction_indices=None, keep_dims=None) -> Tensor:
    """How many elements along ``axis`` are not zero (not False), as ``dtype`` (int64)."""
    x = convert_to_tensor(input_tensor)
    counted = cast(not_equal(x, array_ops.zeros_like(x)), dtypes.int64)
    total = reduce_sum(counted, axis=axis, keepdims=keepdims, reduction_indices=reduction_indices,
                       keep_dims=keep_dims)
    return cast(total, dtype, name=name)


__all__ += ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "reduce_any",
            "reduce_all", "count_nonzero"]


# -- ArgMax / ArgMin --
def _arg_infer(op):
    x, dimension = op.inputs
    _require(x, NUMBERS, "input")
    _require(dimension, INDEX_TYPES, "axis")
    out_type, rank = op.attrs["output_type"], x.shape.rank
    if out_type.name not in INDEX_TYPES:
        raise TypeError(f"output_type must be int32 or int64, got {out_type.name}")
    if rank == 0:
        raise ValueError(f"{op.type} needs an input of rank >= 1, got a scalar")
    value = constant_value(dimension)
    if rank is None:
        return [(out_type, TensorShape(None))]
    if value is None:
        return [(out_type, [None] * (rank - 1))]
    if np.size(value) != 1:
        raise ValueError(f"axis must be a scalar, got {np.asarray(value).tolist()}")
    (axis,) = _static_axes(value, rank)
    dims = list(x.shape.as_tuple())
    if dims[axis] == 0:
        raise ValueError(f"reduction axis {axis} is empty in shape {x.shape}")
    return [(out_type, dims[:axis] + dims[axis + 1:])]


def _arg_kernel(name):
    def build(attrs, xp):
        out_type = attrs["output_type"].np
        find = getattr(xp, name)

        def arg_extremum(x, dimension):
            return find(x, axis=int(dimension)).astype(out_type)
        return arg_extremum
    return build


register(OpDef("ArgMax", _arg_infer, _arg_kernel("argmax"), grad=NO_GRADIENT))
register(OpDef("ArgMin", _arg_infer, _arg_kernel("argmin"), grad=NO_GRADIENT))


def _arg(op_type, input, axis, name, dimension, output_type):
    x = convert_to_tensor(input)
    axis = _pick_alias("axis", axis, "dimension", dimension)
    axis = 0 if axis is None else axis
    if not isinstance(axis, Tensor):
        axis = convert_to_tensor(axis, dtype=dtypes.int32)
    attrs = {"output_type": as_dtype(output_type)}
    return output(apply_op(op_type, [x, axis], attrs, name=name or op_type))


def argmax(input, axis=None, name=None, dimension=None, output_type=dtypes.int64) -> Tensor:
    """Index of the largest value along ``axis`` (0 by default, as TF1), as int64 by default."""
    return _arg("ArgMax", input, axis, name, dimension, output_type)


def argmin(input, axis=None, name=None, dimension=None, output_type=dtypes.int64) -> Tensor:
    """Index of the smallest value along ``axis`` (0 by default, as TF1), as int64 by default."""
    return _arg("ArgMin", input, axis, name, dimension, output_type)


__all__ += ["argmax", "argmin"]
