"""Math ops: elementwise arithmetic, comparisons, logic, selection, casts, matmul and reductions.

Elementwise ops share three rules from ``ops.common``: binary inputs take one dtype (a Python value
adopts the other input's), outputs broadcast, and gradients of broadcast inputs are summed back
to the input's shape (``unbroadcast``).

TF1 semantics kept here: ``x / y`` is truediv (int8/int16 -> float32, int32/int64 -> float64);
``//`` and ``%`` floor like Python (``-7 // 2 == -4``, ``-7 % 2 == 1``) and integer division by
zero is an error, not numpy's silent 0; reductions default to all axes and ``keepdims=False``;
``reduce_mean`` of ints truncates toward zero; ``argmax`` returns int64.

Kernels whose results are routinely inf or nan (``log(0)``, ``1 / 0``, ``sqrt(-1)``) run with
numpy's floating-point warnings off, since TF returns those values silently.
"""

from __future__ import annotations

import builtins

import numpy as np

from tensorweave.graph import dtypes
from tensorweave.graph.core import Tensor
from tensorweave.graph.dtypes import as_dtype, truediv_result
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops import array as array_ops
from tensorweave.ops.common import (ALL_TYPES, FLOATS, NUMBERS, SIGNED, binary_inputs,
                                    broadcast_inputs, broadcast_shape_of, check_dtype,
                                    convert_to_tensor, output)
from tensorweave.ops.registry import (NO_GRADIENT, Cost, OpDef, apply_op, constant_value,
                                      default_cost, register)

__all__ = ["add", "matmul"]

INDEX_TYPES = frozenset({"int32", "int64"})
BOOL = frozenset({"bool"})


def unbroadcast(grad: Tensor, like: Tensor) -> Tensor:
    """Sum ``grad`` over the axes along which ``like`` was broadcast, back to ``like``'s shape."""
    from tensorweave.ops.array import reshape, shape
    if grad.shape.is_fully_defined() and like.shape.is_fully_defined() \
            and grad.shape == like.shape:
        return grad
    axes = apply_op("BroadcastGradientArgs", [shape(grad), shape(like)]).outputs[0]
    summed = reduce_sum(grad, axis=axes, keepdims=True)
    return reshape(summed, shape(like))


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
    return [unbroadcast(gx, x), unbroadcast(gy, y)]


# -- Add ----------------------------------------------------------------------------------------
register(OpDef("Add", broadcast_inputs, lambda attrs, xp: xp.add, fusion="broadcast",
               grad=lambda op, g: [unbroadcast(g, op.inputs[0]), unbroadcast(g, op.inputs[1])]))


def add(x, y, name=None) -> Tensor:
    """``x + y`` elementwise, with broadcasting."""
    x, y = binary_inputs("Add", x, y, name)
    check_dtype("Add", x, NUMBERS, name=name)
    return output(apply_op("Add", [x, y], name=name or "Add"))


# -- MatMul -------------------------------------------------------------------------------------
def _matmul_infer(op):
    a, b = op.inputs
    if a.dtype is not b.dtype:
        raise TypeError(f"matmul of {a.dtype.name} and {b.dtype.name}")
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    sa, sb = a.shape.as_tuple(), b.shape.as_tuple()
    if sa is None or sb is None:
        return [(a.dtype, TensorShape(None))]
    if len(sa) < 2 or len(sb) < 2:
        raise ValueError(f"matmul needs tensors of rank >= 2, got shapes {a.shape} and {b.shape}")
    m, k1 = (sa[-1], sa[-2]) if ta else (sa[-2], sa[-1])
    k2, n = (sb[-1], sb[-2]) if tb else (sb[-2], sb[-1])
    if k1 is not None and k2 is not None and k1 != k2:
        raise ValueError(f"inner dimensions must agree, but are {k1} and {k2}: matmul of shapes "
                         f"{a.shape}{' (transposed)' if ta else ''} and "
                         f"{b.shape}{' (transposed)' if tb else ''}")
    batch = _batch_dims(TensorShape(sa[:-2]), TensorShape(sb[:-2]))
    return [(a.dtype, batch.concatenate([m, n]))]


def _batch_dims(a, b):
    from tensorweave.graph.shapes import broadcast_shapes
    return broadcast_shapes(a, b)


def _matmul_kernel(attrs, xp):
    ta, tb = attrs["transpose_a"], attrs["transpose_b"]
    if not ta and not tb:
        return xp.matmul

    def matmul_t(a, b):
        if ta:
            a = xp.swapaxes(a, -1, -2)
        if tb:
            b = xp.swapaxes(b, -1, -2)
        return xp.matmul(a, b)
    return matmul_t


def _matmul_grad(op, g):
    a, b = op.inputs
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    if not ta and not tb:
        ga, gb = matmul(g, b, transpose_b=True), matmul(a, g, transpose_a=True)
    elif not ta and tb:
        ga, gb = matmul(g, b), matmul(g, a, transpose_a=True)
    elif ta and not tb:
        ga, gb = matmul(b, g, transpose_b=True), matmul(a, g)
    else:
        ga, gb = matmul(b, g, transpose_a=True, transpose_b=True), \
            matmul(g, a, transpose_a=True, transpose_b=True)
    return [unbroadcast_batch(ga, a), unbroadcast_batch(gb, b)]


def unbroadcast_batch(grad, like):
    """Sum the gradient of a batch matmul operand over batch dims it was broadcast along."""
    if grad.shape.rank is not None and grad.shape.rank == like.shape.rank \
            and grad.shape.is_compatible_with(like.shape):
        return grad
    return unbroadcast(grad, like)


def _matmul_cost(op):
    base = default_cost(op)
    a = op.inputs[0]
    k = a.shape.as_tuple()[-2 if op.attrs["transpose_a"] else -1] if a.shape.rank else 1
    out = op.outputs[0].shape.num_elements() or 1
    return Cost(2.0 * out * (k or 1), base.bytes_read, base.bytes_written)


register(OpDef("MatMul", _matmul_infer, _matmul_kernel, grad=_matmul_grad, cost=_matmul_cost))


def matmul(a, b, transpose_a=False, transpose_b=False, name=None) -> Tensor:
    """Matrix product of the last two dims; leading dims are batch dims and broadcast."""
    a = convert_to_tensor(a)
    b = convert_to_tensor(b, dtype=a.dtype) if not isinstance(b, Tensor) else b
    return output(apply_op("MatMul", [a, b], {"transpose_a": bool(transpose_a),
                                              "transpose_b": bool(transpose_b)},
                           name=name or "MatMul"))


# -- AddN ---------------------------------------------------------------------------------------
def _add_n_infer(op):
    dtype = op.inputs[0].dtype
    for t in op.inputs[1:]:
        if t.dtype is not dtype:
            raise TypeError(f"all inputs of add_n must have one dtype; got {dtype.name} and "
                            f"{t.dtype.name}")
    shape = op.inputs[0].shape
    for t in op.inputs[1:]:
        if not shape.is_compatible_with(t.shape):
            raise ValueError(f"all inputs of add_n must have one shape; got {shape} and {t.shape}")
        shape = shape.merge_with(t.shape)
    return [(dtype, shape)]


def _add_n_kernel(attrs, xp):
    def add_n_kernel(*xs):
        total = xp.add(xs[0], xs[1]) if len(xs) > 1 else xp.array(xs[0], copy=True)
        for x in xs[2:]:
            if isinstance(total, xp.ndarray):
                xp.add(total, x, out=total)
            else:
                total = xp.add(total, x)
        return total
    return add_n_kernel


register(OpDef("AddN", _add_n_infer, _add_n_kernel, fusion="elementwise",
               grad=lambda op, g: [g] * len(op.inputs)))


def add_n(inputs, name=None) -> Tensor:
    """Elementwise sum of a list of tensors of one shape and dtype."""
    inputs = [convert_to_tensor(t) for t in inputs]
    if not inputs:
        raise ValueError("add_n needs at least one input")
    if len(inputs) == 1 and name is None:
        return inputs[0]
    return output(apply_op("AddN", inputs, {"N": len(inputs)}, name=name or "AddN"))


__all__ += ["add_n"]


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
    result = set()
    for a in axes.reshape(-1).tolist():  # tolist() works for numpy and cupy arrays
        if not -ndim <= a < ndim:
            raise ValueError(f"invalid reduction axis {a} for an input of rank {ndim}")
        result.add(a % ndim)
    return tuple(sorted(result))


def _reduction_kernel(reduce):
    """Kernel builder from ``reduce(xp, x, axis_tuple, keepdims)``."""
    def build(attrs, xp):
        keep, all_axes = attrs["keep_dims"], attrs.get("all_axes", False)

        def reduction(x, axes):
            axis = tuple(range(x.ndim)) if all_axes else _kernel_axes(axes, x.ndim)
            return reduce(xp, x, axis, keep)
        return reduction
    return build


def _reduce_cost(op):
    base = default_cost(op)
    n = op.inputs[0].shape.num_elements()
    return Cost(float(n) if n is not None else base.flops, base.bytes_read, base.bytes_written)


def _reduction_op(op_type, allowed, reduce, grad):
    return register(OpDef(op_type, _reduction_infer(allowed), _reduction_kernel(reduce),
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
    """``t`` (an output or output gradient of reduction ``op``) in the keep_dims shape."""
    if op.attrs["keep_dims"]:
        return t
    x, axes = op.inputs
    if op.attrs.get("all_axes", False):
        target = array_ops.ones_like(array_ops.shape(x))
    else:
        target = output(apply_op("ReducedShape", [array_ops.shape(x), axes]))
    return array_ops.reshape(t, target)


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


def _element_count(x: Tensor, y: Tensor, dtype):
    """How many elements of ``x`` went into each element of ``y``: an int, or a tensor."""
    nx, ny = x.shape.num_elements(), y.shape.num_elements()
    if nx is not None and ny is not None:
        return nx // builtins.max(ny, 1)
    sizes = [array_ops.size(t, out_type=dtypes.int64) for t in (x, y)]
    return cast(floordiv(sizes[0], maximum(sizes[1], 1)), dtype)


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
    return xp.sum(x, axis=axis, keepdims=keep, dtype=x.dtype)  # numpy widens small ints


def _sum_grad(op, g):
    return [_broadcast_like(_keepdims(op, g), op.inputs[0]), None]


_reduction_op("Sum", NUMBERS, _sum, _sum_grad)


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
    x, y = op.inputs[0], op.outputs[0]
    summed = _broadcast_like(_keepdims(op, g), x)
    return [realdiv(summed, _element_count(x, y, g.dtype)), None]


_reduction_op("Mean", NUMBERS, _mean, _mean_grad)


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


_reduction_op("Prod", NUMBERS, _prod, _prod_grad)


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


# -- Pow --
def _pow_grad(op, g):
    x, y = op.inputs
    z = op.outputs[0]
    gx = multiply(g, multiply(y, pow(x, subtract(y, array_ops.ones_like(y)))))
    # d/dy x**y = x**y * log(x), taken as 0 where x <= 0 (log undefined), as TF does
    log_x = select_v2(greater(x, array_ops.zeros_like(x)), log(x), array_ops.zeros_like(x))
    gy = multiply(g, multiply(z, log_x))
    return _unbroadcast_both(op, gx, gy)


register(OpDef("Pow", _binary_infer(NUMBERS), _ufunc("power"), fusion="broadcast",
               grad=_pow_grad))


def pow(x, y, name=None) -> Tensor:  # noqa: A001  (TF1's tf.pow)
    """``x ** y`` elementwise; integers to negative integer powers are an error."""
    return _binary("Pow", x, y, name)


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


__all__ += ["subtract", "multiply", "realdiv", "truediv", "divide", "div", "floordiv", "floor_div",
            "floormod", "mod", "pow", "maximum", "minimum", "squared_difference"]


# == Elementwise unary ops ========================================================================
# -- Neg / Abs / Sign / Square --
register(OpDef("Neg", _unary_infer(SIGNED | FLOATS), _ufunc("negative"), fusion="elementwise",
               grad=lambda op, g: [negative(g)]))
register(OpDef("Abs", _unary_infer(SIGNED | FLOATS), _ufunc("absolute"), fusion="elementwise",
               grad=lambda op, g: [multiply(g, sign(op.inputs[0]))]))
# TF's gradient of sign is zero everywhere (not "no gradient"): it keeps paths through sign alive.
register(OpDef("Sign", _unary_infer(SIGNED | FLOATS), _ufunc("sign"), fusion="elementwise",
               grad=lambda op, g: [array_ops.zeros_like(op.inputs[0])]))
register(OpDef("Square", _unary_infer(NUMBERS), _ufunc("square"), fusion="elementwise",
               grad=lambda op, g: [multiply(g, multiply(op.inputs[0], 2))]))


def negative(x, name=None) -> Tensor:
    """``-x`` elementwise."""
    return _unary("Neg", x, name)


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


__all__ += ["negative", "abs", "sign", "square", "sqrt", "rsqrt", "reciprocal", "exp", "expm1",
            "log", "log1p", "sin", "cos", "tanh", "sigmoid", "floor", "ceil", "round"]


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
# -- Select (TF1's where): a vector condition picks whole rows; otherwise everything broadcasts --
# TF1 accepts a condition of the shape of x and y, a scalar, or a vector over their first dim.
# We keep that row rule, decided at run time from the actual shapes (x and y of one shape, rank
# > 1, condition a vector of their first dim's length) and let every other combination broadcast
# as numpy does, where TF1 would raise. The rule depends only on shapes, never on how much of
# them was known when the graph was built.
def _select_infer(op):
    condition, x, y = op.inputs
    _require(condition, BOOL, "condition")
    _require_same_dtype(x, y, "x", "y")
    values_shape = broadcast_shape_of([x, y])
    by_rows = _rows_shape(condition, x, y)
    try:
        broadcast = broadcast_shape_of(op.inputs)
    except ValueError:
        broadcast = None
    if by_rows is None and broadcast is None:
        raise ValueError(f"condition of shape {condition.shape} fits neither x and y of shapes "
                         f"{x.shape} and {y.shape} (as a vector over their first dimension) nor "
                         f"their broadcast shape {values_shape}")
    if by_rows is None:
        return [(x.dtype, broadcast)]
    if broadcast is None:
        return [(x.dtype, by_rows)]
    return [(x.dtype, _agreement(by_rows, broadcast))]  # either rule may run


def _agreement(a: TensorShape, b: TensorShape) -> TensorShape:
    """The most specific shape compatible with both ``a`` and ``b``."""
    if a.rank is None or b.rank is None or a.rank != b.rank:
        return TensorShape(None)
    return TensorShape([p if p == q else None for p, q in zip(a.as_tuple(), b.as_tuple())])


def _rows_shape(condition, x, y):
    """The output shape if the row rule may apply at run time, else None."""
    rank = x.shape.rank if x.shape.rank is not None else y.shape.rank
    if condition.shape.rank != 1 or rank is None or rank < 2:
        return None
    if not x.shape.is_compatible_with(y.shape):
        return None
    shape = x.shape.merge_with(y.shape).with_rank(rank)
    if not shape[:1].is_compatible_with(condition.shape):
        return None
    return shape[:1].merge_with(condition.shape).concatenate(shape[1:])


def _select_kernel(attrs, xp):
    def select(condition, x, y):
        if condition.ndim == 1 and x.ndim > 1 and x.shape == y.shape \
                and condition.shape[0] == x.shape[0]:
            condition = condition.reshape((-1,) + (1,) * (x.ndim - 1))
        return xp.where(condition, x, y)
    return select


def _select_grad(op, g):
    condition, x, y = op.inputs
    zeros = array_ops.zeros_like(g)
    if x.shape.is_fully_defined() and x.shape == y.shape:
        return [None, _select(condition, g, zeros), _select(condition, zeros, g)]
    # Which rule ran depends on the shapes of x and y; replay it on masks of those shapes.
    takes_x = _select(condition, array_ops.ones_like(x, dtype=dtypes.bool_),
                     array_ops.zeros_like(y, dtype=dtypes.bool_))
    return [None, unbroadcast(select_v2(takes_x, g, zeros), x),
            unbroadcast(select_v2(takes_x, zeros, g), y)]


register(OpDef("Select", _select_infer, _select_kernel, grad=_select_grad))


def _select(condition, x, y, name=None) -> Tensor:
    """The Select op for ``where(condition, x, y)``."""
    x, y = binary_inputs("Select", x, y, name)
    condition = convert_to_tensor(condition)
    return output(apply_op("Select", [condition, x, y], name=name or "Select"))


# -- SelectV2: numpy-style broadcasting of condition, x and y --
def _select_v2_infer(op):
    condition, x, y = op.inputs
    _require(condition, BOOL, "condition")
    _require_same_dtype(x, y, "x", "y")
    return [(x.dtype, broadcast_shape_of(op.inputs))]


def _select_v2_grad(op, g):
    condition, x, y = op.inputs
    zeros = array_ops.zeros_like(g)
    return [None, unbroadcast(select_v2(condition, g, zeros), x),
            unbroadcast(select_v2(condition, zeros, g), y)]


register(OpDef("SelectV2", _select_v2_infer, _ufunc("where"), fusion="broadcast",
               grad=_select_v2_grad))


def select_v2(condition, x, y, name=None) -> Tensor:
    """``x`` where ``condition`` holds, else ``y``; all three broadcast together."""
    x, y = binary_inputs("SelectV2", x, y, name)
    condition = convert_to_tensor(condition)
    return output(apply_op("SelectV2", [condition, x, y], name=name or "SelectV2"))


# -- Where: coordinates of the true elements --
def _where_infer(op):
    condition = op.inputs[0]
    _require(condition, ALL_TYPES, "condition")
    return [(dtypes.int64, [None, condition.shape.rank])]


def _where_kernel(attrs, xp):
    def where_true(condition):
        return xp.argwhere(condition).astype(xp.int64, copy=False)
    return where_true


register(OpDef("Where", _where_infer, _where_kernel, grad=NO_GRADIENT))


def where(condition, x=None, y=None, name=None) -> Tensor:
    """With ``x`` and ``y``: ``x`` where ``condition`` holds, else ``y``. Without: the int64
    coordinates of the true elements of ``condition``, of shape ``[num_true, rank]``.

    As TF1, ``condition`` may be a scalar, have the shape of ``x`` and ``y``, or be a vector
    that picks whole rows (``where([True, False], a, b)`` takes row 0 of ``a``, row 1 of
    ``b``). Beyond TF1, shapes that fit none of these broadcast as in ``where_v2``.

        tw.where([True, False, True], [1, 2, 3], [10, 20, 30])  # [1, 20, 3]
    """
    if x is None and y is None:
        return output(apply_op("Where", [convert_to_tensor(condition)], name=name or "Where"))
    if x is None or y is None:
        raise ValueError("tw.where: x and y must both be given, or both be None")
    return _select(condition, x, y, name=name)


def where_v2(condition, x=None, y=None, name=None) -> Tensor:
    """``where`` with numpy broadcasting of ``condition``, ``x`` and ``y`` (TF's where_v2)."""
    if x is None and y is None:
        return where(condition, name=name)
    if x is None or y is None:
        raise ValueError("tw.where_v2: x and y must both be given, or both be None")
    return select_v2(condition, x, y, name=name)


__all__ += ["where", "where_v2"]


# == Casts, clipping, argmax ======================================================================
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


# -- ClipByValue --
def _clip_infer(op):
    t, low, high = op.inputs
    _require(t, NUMBERS, "t")
    _require_same_dtype(t, low, "t", "clip_value_min")
    _require_same_dtype(t, high, "t", "clip_value_max")
    shape = broadcast_shape_of(op.inputs)
    if not shape.is_compatible_with(t.shape):
        raise ValueError(f"clip_value_min (shape {low.shape}) and clip_value_max (shape "
                         f"{high.shape}) must broadcast to the shape of t, {t.shape}")
    return [(t.dtype, t.shape.merge_with(shape))]


def _clip_kernel(attrs, xp):
    def clip_by_value(t, low, high):
        # min then max, as TF1 composes it: with low > high the result is low
        return xp.maximum(xp.minimum(t, high), low)
    return clip_by_value


def _clip_grad(op, g):
    t, low, high = op.inputs
    zeros = array_ops.zeros_like(g)
    below, above = less(t, low), greater(t, high)
    inside = logical_not(logical_or(below, above))
    return [select_v2(inside, g, zeros), unbroadcast(select_v2(below, g, zeros), low),
            unbroadcast(select_v2(above, g, zeros), high)]


register(OpDef("ClipByValue", _clip_infer, _clip_kernel, grad=_clip_grad, fusion="broadcast"))


def clip_by_value(t, clip_value_min, clip_value_max, name=None) -> Tensor:
    """``t`` with values below ``clip_value_min`` raised to it and above ``clip_value_max``
    lowered to it; the gradient flows only where ``t`` was inside the range."""
    t = convert_to_tensor(t)
    low = convert_to_tensor(clip_value_min, dtype=t.dtype) \
        if not isinstance(clip_value_min, Tensor) else clip_value_min
    high = convert_to_tensor(clip_value_max, dtype=t.dtype) \
        if not isinstance(clip_value_max, Tensor) else clip_value_max
    return output(apply_op("ClipByValue", [t, low, high], name=name or "clip_by_value"))


__all__ += ["clip_by_value"]


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
