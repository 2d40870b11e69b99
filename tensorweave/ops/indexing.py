"""Array ops that index with tensors of indices: ``gather``, ``unsorted_segment_sum`` (its
adjoint, a scatter-add) and ``one_hot``. Slices and ``x[...]`` are in ``ops/slicing.py``."""

from __future__ import annotations

import numpy as np

from tensorweave.graph import dtypes
from tensorweave.graph.core import Tensor
from tensorweave.graph.dtypes import as_dtype
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops.common import (NUMBERS, check_dtype, constant_tensor, convert_to_tensor,
                                    normalize_axis, output, to_numpy)
from tensorweave.ops.creation import ones_like, range
from tensorweave.ops.layout import concat, transpose
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, register
from tensorweave.ops.shape_args import _check_index_dtype, const_int, int_tensor
from tensorweave.ops.shape_ops import rank, reshape, shape

__all__ = []  # each op's section adds its public function


# -- GatherV2 -----------------------------------------------------------------------------------
def _check_in_range(xp, indices, n, what, allow_negative=False):
    """Raise, naming the first offender, unless every index is in [0, n) (or negative)."""
    bad = indices >= n if allow_negative else (indices < 0) | (indices >= n)
    if indices.size and bool(xp.any(bad)):
        flat = int(xp.argmax(bad.reshape(-1)))
        where = [int(i) for i in np.unravel_index(flat, indices.shape)]
        value = int(indices.reshape(-1)[flat])
        raise ValueError(f"{what}{where} = {value} is not in [0, {n})")


def _gather_infer(op):
    params, indices, axis = op.inputs
    _check_index_dtype(indices, "the indices of gather")
    _check_index_dtype(axis, "the axis of gather")
    p, i = params.shape.as_tuple(), indices.shape.as_tuple()
    if p is not None and len(p) == 0:
        raise ValueError("gather needs params of rank >= 1, got a scalar")
    if p is None or i is None:
        return [(params.dtype, TensorShape(None))]
    a = const_int(axis)
    if a is None:
        return [(params.dtype, [None] * (len(p) + len(i) - 1))]
    a = normalize_axis(a, len(p), "the axis of gather")
    return [(params.dtype, p[:a] + i + p[a + 1:])]


def _gather_kernel(attrs, xp):
    def gather_kernel(params, indices, axis):
        a = normalize_axis(int(axis), params.ndim, "the axis of gather")
        _check_in_range(xp, indices, params.shape[a], "indices")
        return xp.asarray(xp.take(params, indices, axis=a))
    return gather_kernel


def _gather_grad(op, g):
    """Scatter-add g's rows back to where they were gathered from (a dense gradient)."""
    params, indices, axis = op.inputs
    a = _static_axis(axis, params)
    p_shape = shape(params)
    if isinstance(a, int) and a == 0:
        return [_scatter_rows(g, indices, p_shape[0], p_shape[1:]), None, None]
    # g is outer + indices + inner dims: move the indices' dims to the front, scatter the rows
    # back, and move the scattered dim to ``a``. Static ranks make every perm a constant.
    i_rank = _static_rank(indices)
    p_rank = _static_rank(params)
    perm = concat([range(a, a + i_rank), range(a), range(a + i_rank, p_rank + i_rank - 1)], 0)
    rows = concat([p_shape[:a], p_shape[a + 1:]], 0)
    summed = _scatter_rows(transpose(g, perm), indices, p_shape[a], rows)
    back = concat([range(1, a + 1), [0], range(a + 1, p_rank)], 0)
    return [transpose(summed, back), None, None]


def _static_rank(tensor):
    """The rank of ``tensor``: an int when static, else a scalar int32 tensor."""
    return tensor.shape.rank if tensor.shape.rank is not None else rank(tensor)


def _static_axis(axis, like):
    """An axis of ``like`` made non-negative: an int when static, else an int32 tensor."""
    from tensorweave.ops.math import cast, floormod
    a = const_int(axis)
    if a is not None and (a >= 0 or like.shape.rank is not None):
        return normalize_axis(a, like.shape.rank, "the axis of gather")
    axis = axis if axis.dtype is dtypes.int32 else cast(axis, dtypes.int32)
    return floormod(axis, rank(like))


def _scatter_rows(values, indices, n, row_shape):
    """Sum ``values`` (indices' shape + row_shape) into ``n`` rows at ``indices``."""
    flat = reshape(values, concat([[-1], row_shape], 0))
    return unsorted_segment_sum(flat, reshape(indices, [-1]), n)


register(OpDef("GatherV2", _gather_infer, _gather_kernel, grad=_gather_grad))


def gather(params, indices, validate_indices=None, name=None, axis=None) -> Tensor:
    """The slices of ``params`` along ``axis`` (default 0) at ``indices``, as numpy's take.

    The result has shape ``params.shape[:axis] + indices.shape + params.shape[axis + 1:]``; an
    index outside ``[0, params.shape[axis])`` is an error at run time.
    """
    params = convert_to_tensor(params)
    indices = int_tensor(indices, "the indices of gather")
    axis = int_tensor(0 if axis is None else axis, "the axis of gather")
    return output(apply_op("GatherV2", [params, indices, axis], name=name or "GatherV2"))


__all__ += ["gather"]


# -- UnsortedSegmentSum -------------------------------------------------------------------------
def _unsorted_segment_sum_infer(op):
    data, ids, num = op.inputs
    _check_index_dtype(ids, "the segment_ids of unsorted_segment_sum")
    _check_index_dtype(num, "the num_segments of unsorted_segment_sum")
    if num.shape.rank not in (None, 0):
        raise ValueError(f"num_segments must be a scalar, got shape {num.shape}")
    n = const_int(num)
    if n is not None and n < 0:
        raise ValueError(f"num_segments must be >= 0, got {n}")
    d, s = data.shape.as_tuple(), ids.shape.as_tuple()
    if d is None or s is None:
        return [(data.dtype, TensorShape(None))]
    if len(s) > len(d) or not TensorShape(d[:len(s)]).is_compatible_with(s):
        raise ValueError(f"the shape of segment_ids {ids.shape} must be a prefix of the shape "
                         f"of data {data.shape}")
    return [(data.dtype, (n,) + d[len(s):])]


def _unsorted_segment_sum_kernel(attrs, xp):
    def unsorted_segment_sum_kernel(data, ids, num):
        n, k = int(num), ids.ndim
        if data.shape[:k] != ids.shape:
            raise ValueError(f"the shape of segment_ids {ids.shape} must be a prefix of the "
                             f"shape of data {data.shape}")
        _check_in_range(xp, ids, n, "segment_ids", allow_negative=True)
        rows = data.shape[k:]
        flat_ids, flat_data = ids.reshape(-1), data.reshape((-1,) + rows)
        keep = flat_ids >= 0  # negative ids are dropped, as in TF
        if not bool(xp.all(keep)):
            flat_ids, flat_data = flat_ids[keep], flat_data[keep]
        result = xp.zeros((n,) + rows, dtype=data.dtype)
        xp.add.at(result, flat_ids, flat_data)
        return result
    return unsorted_segment_sum_kernel


def _unsorted_segment_sum_grad(op, g):
    from tensorweave.ops.math import cast, greater_equal, maximum, multiply
    _, ids, _ = op.inputs
    picked = gather(g, maximum(ids, 0))
    # Rows of dropped (negative) ids get no gradient: mask them out.
    kept = cast(greater_equal(ids, 0), g.dtype)
    trailing_ones = ones_like(shape(g)[1:])
    kept = reshape(kept, concat([shape(ids), trailing_ones], 0))
    return [multiply(picked, kept), None, None]


register(OpDef("UnsortedSegmentSum", _unsorted_segment_sum_infer, _unsorted_segment_sum_kernel,
               grad=_unsorted_segment_sum_grad))


def unsorted_segment_sum(data, segment_ids, num_segments, name=None) -> Tensor:
    """``result[i] = sum of data[j...]`` over j with ``segment_ids[j...] == i``.

    The result has shape ``[num_segments] + data.shape[segment_ids.ndim:]``; rows no id
    names are 0 and negative ids are dropped.
    """
    data = convert_to_tensor(data)
    check_dtype("UnsortedSegmentSum", data, NUMBERS, "data", name)
    segment_ids = int_tensor(segment_ids, "the segment_ids of unsorted_segment_sum")
    num_segments = int_tensor(num_segments, "num_segments")
    return output(apply_op("UnsortedSegmentSum", [data, segment_ids, num_segments],
                           name=name or "UnsortedSegmentSum"))


__all__ += ["unsorted_segment_sum"]


# -- OneHot -------------------------------------------------------------------------------------
_ONE_HOT_INDICES = frozenset({"uint8", "int32", "int64"})


def _one_hot_infer(op):
    indices, depth, on, off = op.inputs
    if indices.dtype.name not in _ONE_HOT_INDICES:
        raise TypeError(f"the indices of one_hot must be uint8, int32 or int64, got "
                        f"{indices.dtype.name}")
    _check_index_dtype(depth, "the depth of one_hot")
    if on.dtype is not off.dtype:
        raise TypeError(f"on_value ({on.dtype.name}) and off_value ({off.dtype.name}) of "
                        f"one_hot must have one dtype")
    for what, t in (("depth", depth), ("on_value", on), ("off_value", off)):
        if t.shape.rank not in (None, 0):
            raise ValueError(f"the {what} of one_hot must be a scalar, got shape {t.shape}")
    d = const_int(depth)
    if d is not None and d < 0:
        raise ValueError(f"the depth of one_hot must be >= 0, got {d}")
    dims = indices.shape.as_tuple()
    if dims is None:
        return [(on.dtype, TensorShape(None))]
    axis = op.attrs["axis"]
    if not -1 <= axis <= len(dims):
        raise ValueError(f"the axis of one_hot must be -1 or in [0, {len(dims)}], got {axis}")
    axis = len(dims) if axis == -1 else axis
    return [(on.dtype, dims[:axis] + (d,) + dims[axis:])]


def _one_hot_kernel(attrs, xp):
    axis = attrs["axis"]

    def one_hot_kernel(indices, depth, on, off):
        d = int(depth)
        if d < 0:
            raise ValueError(f"the depth of one_hot must be >= 0, got {d}")
        # An index outside [0, depth) matches no position: its row is all off_value, as in TF.
        hits = indices[..., None] == xp.arange(d)
        result = xp.where(hits, on, off)
        return result if axis == -1 else xp.moveaxis(result, -1, axis)
    return one_hot_kernel


register(OpDef("OneHot", _one_hot_infer, _one_hot_kernel, grad=NO_GRADIENT))


def one_hot(indices, depth, on_value=None, off_value=None, axis=None, dtype=None,
            name=None) -> Tensor:
    """A one-hot encoding: ``on_value`` at each index along a new ``axis`` (default last).

    ``dtype`` defaults to the dtype of ``on_value``/``off_value`` if given, else float32.
    """
    indices = convert_to_tensor(indices)
    if dtype is None:
        given = [v for v in (on_value, off_value) if v is not None]
        dtype = (given[0].dtype if isinstance(given[0], Tensor)
                 else as_dtype(to_numpy(given[0], None).dtype)) if given else dtypes.float32
    dtype = as_dtype(dtype)
    on = _one_hot_value(on_value, 1, dtype, "on_value")
    off = _one_hot_value(off_value, 0, dtype, "off_value")
    depth = int_tensor(depth, "the depth of one_hot", dtype=dtypes.int32)
    return output(apply_op("OneHot", [indices, depth, on, off],
                           {"axis": -1 if axis is None else int(axis)}, name=name or "one_hot"))


def _one_hot_value(value, default, dtype, what):
    if value is None:
        return constant_tensor(np.array(default, dtype=dtype.np))
    if isinstance(value, Tensor) and value.dtype is not dtype:
        raise TypeError(f"the {what} of one_hot has dtype {value.dtype.name}, but its dtype "
                        f"is {dtype.name}")
    return convert_to_tensor(value, dtype=dtype)


__all__ += ["one_hot"]
