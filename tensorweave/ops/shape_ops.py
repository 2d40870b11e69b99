"""Array ops about shapes: ``shape``, ``size`` and ``rank`` read them; ``reshape``,
``expand_dims``, ``squeeze`` and ``broadcast_to`` change them without reordering elements."""

from __future__ import annotations

import builtins

import numpy as np

from tensorweave.graph import dtypes
from tensorweave.graph.core import Tensor
from tensorweave.graph.dtypes import as_dtype
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops.common import convert_to_tensor, normalize_axis, output
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, register
from tensorweave.ops.shape_args import (DimOf, _check_index_dtype, _ints, _is_int, _show,
                                        const_ints, int_tensor, known_elements,
                                        shape_from_tensor)

__all__ = []  # each op's section adds its public function


# -- Shape / Size / Rank ------------------------------------------------------------------------
def _shape_infer(op):
    return [(op.attrs["out_type"], [op.inputs[0].shape.rank])]


def _shape_static_value(op):
    shape = op.inputs[0].shape
    if not shape.is_fully_defined():
        return None
    return np.array(shape.as_list(), dtype=op.attrs["out_type"].np)


def _shape_kernel(attrs, xp):
    np_dtype = attrs["out_type"].np
    return lambda x: np.array(x.shape, dtype=np_dtype)


register(OpDef("Shape", _shape_infer, _shape_kernel, grad=NO_GRADIENT,
               static_value=_shape_static_value))


def shape(input, name=None, out_type=None) -> Tensor:
    """The shape of ``input`` as a 1-D int32 (or ``out_type``) tensor, computed at run time."""
    input = convert_to_tensor(input)
    out_type = dtypes.int32 if out_type is None else as_dtype(out_type)
    return output(apply_op("Shape", [input], {"out_type": out_type}, name=name or "Shape"))


def _size_static_value(op):
    n = op.inputs[0].shape.num_elements()
    return None if n is None else np.array(n, dtype=op.attrs["out_type"].np)


def _size_kernel(attrs, xp):
    np_dtype = attrs["out_type"].np
    return lambda x: np.array(x.size, dtype=np_dtype)


register(OpDef("Size", lambda op: [(op.attrs["out_type"], [])], _size_kernel, grad=NO_GRADIENT,
               static_value=_size_static_value))


def size(input, name=None, out_type=None) -> Tensor:
    """The number of elements of ``input`` as a scalar int32 (or ``out_type``) tensor."""
    input = convert_to_tensor(input)
    out_type = dtypes.int32 if out_type is None else as_dtype(out_type)
    return output(apply_op("Size", [input], {"out_type": out_type}, name=name or "Size"))


def _rank_static_value(op):
    rank = op.inputs[0].shape.rank
    return None if rank is None else np.array(rank, dtype=np.int32)


register(OpDef("Rank", lambda op: [(dtypes.int32, [])],
               lambda attrs, xp: lambda x: np.array(x.ndim, dtype=np.int32),
               grad=NO_GRADIENT, static_value=_rank_static_value))


def rank(input, name=None) -> Tensor:
    """The number of dimensions of ``input`` as a scalar int32 tensor."""
    input = convert_to_tensor(input)
    return output(apply_op("Rank", [input], name=name or "Rank"))


__all__ += ["shape", "size", "rank"]


# -- Reshape ------------------------------------------------------------------------------------
def _reshape_infer(op):
    x, target = op.inputs
    _check_index_dtype(target, "the shape of reshape")
    elements = known_elements(target)
    if elements is None:
        return [(x.dtype, shape_from_tensor(target))]
    if elements.ndim != 1:
        raise ValueError(f"the shape of reshape must be a vector, got a scalar")
    dims = list(elements)
    known = [d for d in dims if _is_int(d)]
    _check_reshape_dims(known)
    wildcard = _reshape_wildcard(x, dims)
    out = [(wildcard if d == -1 else d) if _is_int(d) else None for d in dims]
    total = x.shape.num_elements()
    if total is not None and len(known) == len(dims):
        _check_reshape_count(total, known, x.shape)
    return [(x.dtype, out)]


def _reshape_wildcard(x, dims):
    """The size the -1 of ``dims`` stands for when reshaping ``x``, if static, else None."""
    if not any(_is_int(d) and d == -1 for d in dims) or x.shape.rank is None:
        return None
    remaining = x.shape.as_list()
    for d in dims:
        if _is_int(d):
            continue
        # The same unknown dimension on both sides cancels: reshape(x, [shape(x)[0], -1]).
        if isinstance(d, DimOf) and d.tensor is x and remaining[d.index] is None:
            remaining[d.index] = 1
        else:
            return None
    if any(r is None for r in remaining):
        return None
    in_total = int(np.prod(remaining))
    out_known = int(np.prod([d for d in dims if _is_int(d) and d != -1]))
    if out_known == 0 or in_total % out_known:
        raise ValueError(f"cannot reshape a tensor of shape {x.shape} to {_show(dims)}: "
                         f"{in_total} is not a multiple of {out_known}")
    return in_total // out_known


def _check_reshape_dims(dims):
    if sum(d == -1 for d in dims) > 1:
        raise ValueError(f"reshape to {dims}: at most one dimension may be -1")
    if any(d < -1 for d in dims):
        raise ValueError(f"reshape to {dims}: dimensions must be >= -1")


def _check_reshape_count(total, dims, from_shape):
    """Raise unless a tensor of ``total`` elements can be laid out in ``dims``."""
    known = int(np.prod([d for d in dims if d != -1]))
    if -1 in dims:
        if known == 0 or total % known:
            raise ValueError(f"cannot reshape a tensor of {total} elements (shape "
                             f"{from_shape}) to {dims}: {total} is not a multiple of {known}")
    elif total != known:
        raise ValueError(f"cannot reshape a tensor of {total} elements (shape {from_shape}) "
                         f"to shape {dims} ({known} elements)")


def _reshape_kernel(attrs, xp):
    def reshape_kernel(x, new_shape):
        dims = _ints(new_shape)
        _check_reshape_dims(dims)
        _check_reshape_count(x.size, dims, TensorShape(x.shape))
        return xp.reshape(x, dims)
    return reshape_kernel


register(OpDef("Reshape", _reshape_infer, _reshape_kernel,
               grad=lambda op, g: [reshape(g, shape(op.inputs[0])), None]))


def reshape(tensor, shape, name=None) -> Tensor:
    """``tensor`` with its elements in row-major order laid out in ``shape`` (one dim may be -1).

    ``shape`` may mix ints and scalar tensors: ``tw.reshape(x, [tw.shape(x)[0], -1])``.
    """
    tensor = convert_to_tensor(tensor)
    shape = int_tensor(shape, "the shape of reshape")
    return output(apply_op("Reshape", [tensor, shape], name=name or "Reshape"))


__all__ += ["reshape"]


# -- ExpandDims / Squeeze -----------------------------------------------------------------------
def _expand_dims_infer(op):
    x, axis = op.inputs
    _check_index_dtype(axis, "the axis of expand_dims")
    if axis.shape.num_elements() not in (None, 1):
        raise ValueError(f"the axis of expand_dims must be a scalar, got shape {axis.shape}")
    dims = x.shape.as_tuple()
    values = const_ints(axis)  # TF also takes a vector of one element
    if dims is None:
        return [(x.dtype, TensorShape(None))]
    if values is None:
        return [(x.dtype, [None] * (len(dims) + 1))]
    a = normalize_axis(values[0], len(dims) + 1, "the axis of expand_dims")
    return [(x.dtype, dims[:a] + (1,) + dims[a:])]


def _expand_dims_kernel(attrs, xp):
    def expand_dims_kernel(x, axis):
        a = _ints(axis)
        if len(a) != 1:
            raise ValueError(f"the axis of expand_dims must be a scalar, got {a}")
        a = normalize_axis(a[0], x.ndim + 1, "the axis of expand_dims")
        # the view expand_dims returns, without its Python-level argument handling
        return x.reshape(x.shape[:a] + (1,) + x.shape[a:])
    return expand_dims_kernel


register(OpDef("ExpandDims", _expand_dims_infer, _expand_dims_kernel,
               grad=lambda op, g: [reshape(g, shape(op.inputs[0])), None]))


def expand_dims(input, axis=None, name=None, dim=None) -> Tensor:
    """``input`` with a dimension of size 1 inserted at ``axis`` (negative counts from the end)."""
    if axis is None:
        axis = dim
    if axis is None:
        raise ValueError("expand_dims needs an axis")
    input = convert_to_tensor(input)
    axis = int_tensor(axis, "the axis of expand_dims")
    return output(apply_op("ExpandDims", [input, axis], name=name or "ExpandDims"))


def _squeeze_infer(op):
    x = op.inputs[0]
    dims = x.shape.as_tuple()
    if dims is None:
        return [(x.dtype, TensorShape(None))]
    axes = _squeeze_axes(op.attrs["squeeze_dims"], dims, x.shape)
    if axes is None:
        return [(x.dtype, TensorShape(None))]  # which dims are 1 is only known at run time
    return [(x.dtype, [d for i, d in enumerate(dims) if i not in axes])]


def _squeeze_axes(requested, dims, shape_for_errors):
    """The axes a squeeze removes (None: all of size 1, some of unknown size)."""
    if not requested:
        if any(d is None for d in dims):
            return None
        return {i for i, d in enumerate(dims) if d == 1}
    axes = {normalize_axis(a, len(dims), "the axis of squeeze") for a in requested}
    for a in sorted(axes):
        if dims[a] not in (None, 1):
            raise ValueError(f"cannot squeeze dimension {a} of a tensor of shape "
                             f"{shape_for_errors}: its size is {dims[a]}, not 1")
    return axes


def _squeeze_kernel(attrs, xp):
    def squeeze_kernel(x):
        axes = _squeeze_axes(attrs["squeeze_dims"], x.shape, TensorShape(x.shape))
        return xp.squeeze(x, axis=tuple(sorted(axes)))
    return squeeze_kernel


register(OpDef("Squeeze", _squeeze_infer, _squeeze_kernel,
               grad=lambda op, g: [reshape(g, shape(op.inputs[0]))]))


def squeeze(input, axis=None, name=None, squeeze_dims=None) -> Tensor:
    """``input`` without its dimensions of size 1 (only those in ``axis``, if given)."""
    if axis is None:
        axis = squeeze_dims
    if axis is None:
        axis = []
    elif _is_int(axis):
        axis = [axis]
    input = convert_to_tensor(input)
    return output(apply_op("Squeeze", [input], {"squeeze_dims": [int(a) for a in axis]},
                           name=name or "Squeeze"))


__all__ += ["expand_dims", "squeeze"]


# -- BroadcastTo --------------------------------------------------------------------------------
def _broadcast_to_infer(op):
    x, target = op.inputs
    _check_index_dtype(target, "the shape of broadcast_to")
    target = shape_from_tensor(target, "the shape of broadcast_to")
    s, t = x.shape.as_tuple(), target.as_tuple()
    if t is None:
        return [(x.dtype, TensorShape(None))]
    if s is None:
        return [(x.dtype, target)]
    if len(s) > len(t):
        raise ValueError(f"cannot broadcast a tensor of shape {x.shape} to shape {target}: it "
                         f"has more dimensions")
    out = list(t)
    for j, d in zip(builtins.range(len(t) - len(s), len(t)), s):
        if d is None or d == 1:
            continue
        if t[j] is not None and t[j] != d:
            raise ValueError(f"cannot broadcast a tensor of shape {x.shape} to shape {target}")
        out[j] = d
    return [(x.dtype, out)]


def _broadcast_to_grad(op, g):
    from tensorweave.ops.math import unbroadcast
    return [unbroadcast(g, op.inputs[0]), None]


register(OpDef("BroadcastTo", _broadcast_to_infer,
               lambda attrs, xp: lambda x, shape: xp.broadcast_to(x, _ints(shape)),
               grad=_broadcast_to_grad))


def broadcast_to(input, shape, name=None) -> Tensor:
    """``input`` broadcast to ``shape`` by numpy's rules (dims of size 1 repeat)."""
    input = convert_to_tensor(input)
    shape = int_tensor(shape, "the shape of broadcast_to")
    return output(apply_op("BroadcastTo", [input, shape], name=name or "BroadcastTo"))


__all__ += ["broadcast_to"]
