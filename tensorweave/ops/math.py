"""Math ops: elementwise arithmetic, comparisons, logic, selection, casts, matmul and reductions.

Each op sits on one screen: its OpDef (inference, kernel, gradient, fusion kind) and then the
public function that builds it. The family is split over four modules, and this one gathers
their public names (``tw.*`` takes them from here):

* ``ops/elementwise.py`` — add, subtract, multiply, the divisions, maximum/minimum, negative,
  comparisons, logic, select_v2, cast, and the shared rules (``unbroadcast``)
* ``ops/unary.py`` — abs, sqrt, exp, log, the trigonometric functions, sigmoid, rounding
* ``ops/reduction.py`` — reduce_sum and the other reductions, count_nonzero, argmax/argmin
* this module — matmul, add_n, pow, where (TF1's Select) and clip_by_value

Each imports only the modules listed before it, so the family has no import cycle.

TF1 semantics kept here: ``x / y`` is truediv (int8/int16 -> float32, int32/int64 -> float64);
``//`` and ``%`` floor like Python (``-7 // 2 == -4``, ``-7 % 2 == 1``) and integer division by
zero is an error, not numpy's silent 0; reductions default to all axes and ``keepdims=False``;
``reduce_mean`` of ints truncates toward zero; ``argmax`` returns int64.

Kernels whose results are routinely inf or nan (``log(0)``, ``1 / 0``, ``sqrt(-1)``) run with
numpy's floating-point warnings off, since TF returns those values silently.
"""

from __future__ import annotations

import numpy as np

from tensorweave.graph import dtypes
from tensorweave.graph.core import Tensor
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops import array as array_ops
from tensorweave.ops import elementwise as _elementwise
from tensorweave.ops import reduction as _reduction
from tensorweave.ops import unary as _unary_ops
from tensorweave.ops.common import (ALL_TYPES, NUMBERS, binary_inputs, broadcast_shape_of,
                                    convert_to_tensor, output)
from tensorweave.ops.elementwise import *  # noqa: F401,F403
from tensorweave.ops.elementwise import (BOOL, INDEX_TYPES, _binary, _binary_infer,  # noqa: F401
                                         _require, _require_same_dtype, _ufunc,
                                         _unbroadcast_both, greater, less, logical_not, logical_or,
                                         multiply, select_v2, subtract, unbroadcast)
from tensorweave.ops.reduction import *  # noqa: F401,F403
from tensorweave.ops.registry import NO_GRADIENT, Cost, OpDef, apply_op, default_cost, register
from tensorweave.ops.unary import *  # noqa: F401,F403
from tensorweave.ops.unary import log

__all__ = _elementwise.__all__ + _unary_ops.__all__ + _reduction.__all__ + ["matmul"]


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


# a @ b.T with few rows in ``a`` and many in ``b``: BLAS runs the transposed product b @ a.T
# faster (Deep MNIST's fc1 input gradient, [50, 1024] @ [3136, 1024].T: 5.1-5.5 -> 4.9-5.0 ms
# with the transposing copy, on one OpenBLAS thread); below these sizes it is a wash or worse.
_TRANSPOSED_PRODUCT_MAX_ROWS = 64
_TRANSPOSED_PRODUCT_MIN_K = 512


def _matmul_kernel(attrs, xp):
    """The product; ``out=`` (an array of the result's shape and dtype) receives it, as for
    ``np.matmul`` (a task writes a product it sends to a neighbour into shared memory so)."""
    ta, tb = attrs["transpose_a"], attrs["transpose_b"]
    if not ta and not tb:
        return xp.matmul

    def matmul_t(a, b, out=None):
        if out is None and tb and not ta and xp is np and a.ndim == b.ndim == 2 \
                and a.shape[0] <= _TRANSPOSED_PRODUCT_MAX_ROWS \
                and a.shape[1] >= _TRANSPOSED_PRODUCT_MIN_K and b.shape[0] >= 8 * a.shape[0]:
            return np.ascontiguousarray(np.matmul(b, a.T).T)
        if ta:
            a = a.T if a.ndim == 2 else xp.swapaxes(a, -1, -2)  # .T: no Python-level call
        if tb:
            b = b.T if b.ndim == 2 else xp.swapaxes(b, -1, -2)
        return xp.matmul(a, b, out=out)
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


register(OpDef("MatMul", _matmul_infer, _matmul_kernel, grad=_matmul_grad, cost=_matmul_cost,
               blas=True))


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
__all__ += ["pow"]


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
    return [select_v2(inside, g, zeros), unbroadcast(select_v2(below, g, zeros), low, [t, high]),
            unbroadcast(select_v2(above, g, zeros), high, [t, low])]


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
