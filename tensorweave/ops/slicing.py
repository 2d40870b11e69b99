"""Array ops that cut out part of a tensor, and pad, their adjoint: ``slice``,
``strided_slice`` (and ``x[...]``, numpy's basic indexing, built on it) and ``pad``. A slice's
gradient pads, and a pad's gradient slices.

``slice`` in this module is the tw op; Python's is spelled ``builtins.slice``.
"""

from __future__ import annotations

import builtins
import operator

import numpy as np

from tensorweave.graph import dtypes
from tensorweave.graph.core import Tensor
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops.common import constant_tensor, convert_to_tensor, output
from tensorweave.ops.creation import ones_like
from tensorweave.ops.layout import stack
from tensorweave.ops.registry import OpDef, apply_op, constant_value, register
from tensorweave.ops.shape_args import (_INDEX_DTYPES, _UNKNOWN, _check_index_dtype, _ints,
                                        _is_int, _same_dtype, _show, _spec_values,
                                        _strided_slice_elements, int_tensor, shape_from_tensor,
                                        slice_entries)
from tensorweave.ops.shape_ops import shape

__all__ = ["newaxis"]

newaxis = None  # ``x[:, tw.newaxis]`` inserts a dimension of size 1, as numpy's np.newaxis


# -- Slice --------------------------------------------------------------------------------------
def _slice_infer(op):
    x, begin, size = op.inputs
    _check_index_dtype(begin, "the begin of slice")
    _check_index_dtype(size, "the size of slice")
    if begin.dtype is not size.dtype:
        raise TypeError(f"the begin ({begin.dtype.name}) and size ({size.dtype.name}) of slice "
                        f"must have one dtype")
    b, s, dims = _spec_values(begin), _spec_values(size), x.shape.as_tuple()
    lengths = {len(v) for v in (b, s, dims) if v is not None}
    if not lengths:
        return [(x.dtype, TensorShape(None))]
    if len(lengths) > 1:
        raise ValueError(f"slice of a tensor of shape {x.shape} needs one begin and one size "
                         f"per dimension, got begin {_show(b or [])} and size {_show(s or [])}")
    r = lengths.pop()
    b, s, dims = b or [None] * r, s or [None] * r, dims or (None,) * r
    return [(x.dtype, [_slice_dim(i, d, bi, si) for i, (d, bi, si) in enumerate(zip(dims, b, s))])]


def _slice_dim(i, d, b, s):
    """The size of dimension ``i`` (of size ``d``) sliced from ``b`` for ``s`` (-1: the rest)."""
    if b is not None and b < 0:
        raise ValueError(f"the begin of slice must be >= 0, got {b} for dimension {i}")
    if s is not None and s < -1:
        raise ValueError(f"the size of slice must be >= -1, got {s} for dimension {i}")
    if d is not None and b is not None and b > d:
        raise ValueError(f"slice begins at {b}, past the end of dimension {i} (size {d})")
    if s == -1:
        return None if d is None or b is None else d - b
    if d is not None and b is not None and s is not None and b + s > d:
        raise ValueError(f"slice of size {s} from {b} goes past the end of dimension {i} "
                         f"(size {d})")
    return s


def _slice_kernel(attrs, xp):
    def slice_kernel(x, begin, size):
        b, s = _ints(begin), _ints(size)
        if len(b) != x.ndim or len(s) != x.ndim:
            raise ValueError(f"slice of a tensor of shape {x.shape} needs one begin and one size "
                             f"per dimension, got begin {b} and size {s}")
        index = tuple(builtins.slice(bi, bi + _slice_dim(i, d, bi, si))
                      for i, (d, bi, si) in enumerate(zip(x.shape, b, s)))
        return x[index]
    return slice_kernel


def _slice_grad(op, g):
    from tensorweave.ops.math import subtract
    x, begin, _ = op.inputs
    after = subtract(subtract(shape(x, out_type=begin.dtype), begin),
                     shape(g, out_type=begin.dtype))
    return [pad(g, stack([begin, after], axis=1)), None, None]


register(OpDef("Slice", _slice_infer, _slice_kernel, grad=_slice_grad))


def slice(input_, begin, size, name=None) -> Tensor:  # noqa: A001
    """The part of ``input_`` of shape ``size`` starting at ``begin`` (a size of -1: the rest)."""
    input_ = convert_to_tensor(input_)
    begin = int_tensor(begin, "the begin of slice")
    size = int_tensor(size, "the size of slice", dtype=begin.dtype)
    return output(apply_op("Slice", [input_, begin, size], name=name or "Slice"))


__all__ += ["slice"]


# -- StridedSlice -------------------------------------------------------------------------------
_MASKS = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")


def _sliced_shape(shape, entries) -> TensorShape:
    """The static shape of ``x[entries]`` for ``x`` of static ``shape``."""
    dims = shape.as_tuple()
    if dims is None:
        return TensorShape(None)
    consumed = sum(1 for e in entries if e is not None and e is not Ellipsis)
    if consumed > len(dims):
        raise ValueError(f"too many indices for a tensor of shape {shape}: {consumed} given")
    rest = [builtins.slice(None, None, 1)] * (len(dims) - consumed)
    expanded = []
    for e in entries:
        expanded.extend(rest if e is Ellipsis else [e])
    if not any(e is Ellipsis for e in entries):
        expanded.extend(rest)
    out, axis = [], 0
    for e in expanded:
        if e is None:
            out.append(1)
            continue
        if isinstance(e, builtins.slice):
            out.append(_slice_length(dims[axis], e))
        elif _is_int(e) and dims[axis] is not None and not -dims[axis] <= e < dims[axis]:
            raise ValueError(f"index {e} is out of bounds for dimension {axis} of a tensor of "
                             f"shape {shape}")
        axis += 1
    return TensorShape(out)


def _slice_length(d, s):
    """How many elements slice ``s`` picks from a dimension of size ``d`` (None: unknown)."""
    start, stop, step = s.start, s.stop, s.step
    if step is _UNKNOWN:
        return None
    if step == 0:
        raise ValueError("slice step cannot be zero")
    if start is None and stop is None and abs(step) == 1:
        return d
    if d is None or start is _UNKNOWN or stop is _UNKNOWN:
        return None
    return len(builtins.range(*builtins.slice(start, stop, step).indices(d)))


def _check_spec_dtypes(tensors, what):
    for t in tensors:
        _check_index_dtype(t, f"the spec of {what}")
    _same_dtype(tensors, f"the begin, end and strides of {what}")


def _spec_or_unknown(tensor):
    values = _spec_values(tensor)
    return None if values is None else [_UNKNOWN if v is None else v for v in values]


def _strided_slice_infer(op):
    x = op.inputs[0]
    _check_spec_dtypes(op.inputs[1:], "strided_slice")
    spec = [_spec_or_unknown(t) for t in op.inputs[1:]]
    if any(v is None for v in spec):
        return [(x.dtype, TensorShape(None))]
    return [(x.dtype, _sliced_shape(x.shape, slice_entries(op.attrs, *spec)))]


def _strided_slice_static_value(op):
    """The value of e.g. ``tw.shape(x)[1]`` when that dimension of x is static."""
    x = op.inputs[0]
    if not x.dtype.is_integer or x.shape.rank != 1:
        return None
    elements = _strided_slice_elements(op)
    if elements is None or not all(_is_int(e) for e in elements.reshape(-1)):
        return None
    return np.array(elements.tolist(), dtype=op.outputs[0].dtype.np)


def _strided_slice_kernel(attrs, xp):
    def strided_slice_kernel(x, begin, end, strides):
        index = slice_entries(attrs, _ints(begin), _ints(end), _ints(strides))
        return xp.asarray(x[tuple(index)])
    return strided_slice_kernel


def _strided_slice_grad(op, g):
    x, begin, end, strides = op.inputs
    masks = {m: op.attrs[m] for m in _MASKS}
    dx = apply_op("StridedSliceGrad", [shape(x, out_type=begin.dtype), begin, end, strides, g],
                  masks, name="StridedSliceGrad")
    return [output(dx), None, None, None]


register(OpDef("StridedSlice", _strided_slice_infer, _strided_slice_kernel,
               grad=_strided_slice_grad, static_value=_strided_slice_static_value))


def strided_slice(input_, begin, end, strides=None, begin_mask=0, end_mask=0, ellipsis_mask=0,
                  new_axis_mask=0, shrink_axis_mask=0, var=None, name=None) -> Tensor:
    """``input_[begin:end:strides]`` per dimension; the masks say which parts are absent.

    Bit i of ``begin_mask``/``end_mask`` ignores begin[i]/end[i] (as ``:`` does),
    ``ellipsis_mask`` marks ``...``, ``new_axis_mask`` a ``tw.newaxis``, and
    ``shrink_axis_mask`` an integer index. ``x[...]`` builds this op for you.
    """
    input_ = convert_to_tensor(input_)
    begin = int_tensor(begin, "the begin of strided_slice")
    end = int_tensor(end, "the end of strided_slice", dtype=begin.dtype)
    if strides is None:
        n = begin.shape[0].value if begin.shape.rank == 1 else None
        strides = np.ones(n, dtype=begin.dtype.np) if n is not None else ones_like(begin)
    strides = int_tensor(strides, "the strides of strided_slice", dtype=begin.dtype)
    masks = dict(zip(_MASKS, (int(m) for m in (begin_mask, end_mask, ellipsis_mask,
                                                new_axis_mask, shrink_axis_mask))))
    return output(apply_op("StridedSlice", [input_, begin, end, strides], masks,
                           name=name or "StridedSlice"))


def _strided_slice_grad_infer(op):
    shape_t, begin, end, strides, dy = op.inputs
    _check_spec_dtypes([begin, end, strides], "strided_slice_grad")
    _check_index_dtype(shape_t, "the shape of strided_slice_grad")
    return [(dy.dtype, shape_from_tensor(shape_t))]


def _strided_slice_grad_kernel(attrs, xp):
    def strided_slice_grad_kernel(shape, begin, end, strides, dy):
        index = slice_entries(attrs, _ints(begin), _ints(end), _ints(strides))
        dx = xp.zeros(_ints(shape), dtype=dy.dtype)
        dx[tuple(index)] = dy
        return dx
    return strided_slice_grad_kernel


def _strided_slice_grad_grad(op, g):
    _, begin, end, strides, _ = op.inputs
    masks = {m: op.attrs[m] for m in _MASKS}
    return [None, None, None, None, strided_slice(g, begin, end, strides, **masks)]


# The gradient of StridedSlice: dy scattered into zeros of the input's shape.
register(OpDef("StridedSliceGrad", _strided_slice_grad_infer, _strided_slice_grad_kernel,
               grad=_strided_slice_grad_grad))

__all__ += ["strided_slice"]


# -- Tensor.__getitem__ -------------------------------------------------------------------------
_BAD_INDEX = ("only integers, slices (`:`), ellipsis (`...`), tw.newaxis (`None`) and scalar "
              "int32/int64 tensors are valid indices")


def _getitem(tensor, key):
    """``tensor[key]`` with numpy's basic indexing, as a StridedSlice.

    ``key`` holds ints, slices (negative steps too), ``...``, ``tw.newaxis`` and scalar int
    tensors (in place of ints, or as slice bounds). Gather with ``tw.gather``.
    """
    items = key if isinstance(key, tuple) else (key,)
    begin, end, strides = [], [], []
    masks = dict.fromkeys(_MASKS, 0)
    for i, item in enumerate(items):
        b, e, s, set_masks = _index_item(item)
        begin.append(b)
        end.append(e)
        strides.append(s)
        for m in set_masks:
            masks[m] |= 1 << i
    dtype = _index_dtype(begin + end + strides)
    return strided_slice(tensor, _index_vector(begin, dtype), _index_vector(end, dtype),
                         _index_vector(strides, dtype), name="strided_slice", **masks)


def _index_item(item):
    """One element of an index as (begin, end, stride, the masks it sets)."""
    if item is Ellipsis:
        return 0, 0, 1, ("ellipsis_mask",)
    if item is None:
        return 0, 0, 1, ("new_axis_mask",)
    if isinstance(item, builtins.slice):
        start, stop = _index_value(item.start), _index_value(item.stop)
        step = 1 if item.step is None else _index_value(item.step)
        if _is_int(step) and step == 0:
            raise ValueError("slice step cannot be zero")
        set_masks = (("begin_mask",) if start is None else ()) + \
            (("end_mask",) if stop is None else ())
        return (0 if start is None else start), (0 if stop is None else stop), step, set_masks
    index = _index_value(item)
    if index is None:
        raise TypeError(f"{_BAD_INDEX}, got {item!r}")
    # The end of a shrunk dimension is implied; 0 stands in for a tensor index's.
    return index, (index + 1 if _is_int(index) else 0), 1, ("shrink_axis_mask",)


def _index_value(value):
    """An int, a scalar int tensor, or None, from one part of an index."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        if value.dtype.name not in _INDEX_DTYPES or value.shape.rank not in (None, 0):
            raise TypeError(f"{_BAD_INDEX}, got the {value.dtype.name} tensor {value.name} of "
                            f"shape {value.shape}")
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{_BAD_INDEX}, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{_BAD_INDEX}, got {value!r} (use tw.gather to pick elements by a "
                        f"list of indices)") from None


def _index_dtype(values):
    found = {v.dtype for v in values if isinstance(v, Tensor)}
    if len(found) > 1:
        raise TypeError("the tensors of one index must have one dtype, got "
                        + " and ".join(sorted(d.name for d in found)))
    if found:
        return found.pop()
    fits = all(np.iinfo(np.int32).min <= v <= np.iinfo(np.int32).max for v in values)
    return dtypes.int32 if fits else dtypes.int64


def _index_vector(values, dtype) -> Tensor:
    if any(isinstance(v, Tensor) for v in values):
        return stack([v if isinstance(v, Tensor) else convert_to_tensor(v, dtype=dtype)
                      for v in values])
    return constant_tensor(np.array(values, dtype=dtype.np))


Tensor.__getitem__ = _getitem


# -- Pad / PadV2 / MirrorPad --------------------------------------------------------------------
def _padded_shape(x, paddings, mode) -> TensorShape:
    """The static shape of ``x`` padded by ``paddings`` ([rank, 2]: before and after)."""
    _check_index_dtype(paddings, "the paddings of pad")
    p = paddings.shape
    if p.rank not in (None, 2) or (p.rank == 2 and p[1].value not in (None, 2)):
        raise ValueError(f"paddings must have shape [rank, 2], got {p}")
    dims = x.shape.as_tuple()
    n = p[0].value if p.rank == 2 else None
    if dims is not None and n is not None and n != len(dims):
        raise ValueError(f"paddings of shape {p} do not fit a tensor of shape {x.shape}; they "
                         f"need shape ({len(dims)}, 2)")
    value = constant_value(paddings)
    if value is None:
        r = len(dims) if dims is not None else n
        return TensorShape(None if r is None else [None] * r)
    pads = [(int(b), int(a)) for b, a in np.reshape(value, (-1, 2))]
    dims = dims if dims is not None else (None,) * len(pads)
    _check_paddings(pads, dims, mode)
    return TensorShape([None if d is None else d + b + a for d, (b, a) in zip(dims, pads)])


def _check_paddings(pads, dims, mode):
    for i, ((before, after), d) in enumerate(zip(pads, dims)):
        if before < 0 or after < 0:
            raise ValueError(f"paddings must be >= 0, got {pads}")
        # REFLECT mirrors around the edge element, SYMMETRIC includes it.
        limit = None if d is None else (d - 1 if mode == "REFLECT" else d)
        if mode != "CONSTANT" and limit is not None and max(before, after) > limit:
            raise ValueError(f"{mode} paddings of dimension {i} (size {d}) must be at most "
                             f"{limit}, got {before} and {after}")


def _run_time_paddings(x, paddings, mode):
    if tuple(paddings.shape) != (x.ndim, 2):
        raise ValueError(f"paddings of shape {tuple(paddings.shape)} do not fit a tensor of "
                         f"shape {x.shape}; they need shape ({x.ndim}, 2)")
    flat = _ints(paddings)
    pads = list(zip(flat[0::2], flat[1::2]))
    _check_paddings(pads, x.shape, mode)
    return pads


def _pad_kernel(attrs, xp):
    def pad_kernel(x, paddings, constant_values=0):
        pads = _run_time_paddings(x, paddings, "CONSTANT")
        return xp.pad(x, pads, mode="constant", constant_values=constant_values)
    return pad_kernel


def _pad_grad(op, g):
    """The gradient of a constant pad is the part of g where the input went."""
    x, paddings = op.inputs[:2]
    dx = slice(g, paddings[:, 0], shape(x, out_type=paddings.dtype))
    return [dx, None] + [None] * (len(op.inputs) - 2)


def _pad_v2_infer(op):
    x, paddings, value = op.inputs
    if value.dtype is not x.dtype:
        raise TypeError(f"constant_values ({value.dtype.name}) must have the dtype of the "
                        f"padded tensor ({x.dtype.name})")
    if value.shape.rank not in (None, 0):
        raise ValueError(f"constant_values must be a scalar, got shape {value.shape}")
    return [(x.dtype, _padded_shape(x, paddings, "CONSTANT"))]


register(OpDef("Pad", lambda op: [(op.inputs[0].dtype,
                                   _padded_shape(op.inputs[0], op.inputs[1], "CONSTANT"))],
               _pad_kernel, grad=_pad_grad))
register(OpDef("PadV2", _pad_v2_infer, _pad_kernel, grad=_pad_grad))


def _mirror_pad_infer(op):
    x, paddings = op.inputs
    return [(x.dtype, _padded_shape(x, paddings, op.attrs["mode"]))]


def _mirror_pad_kernel(attrs, xp):
    mode = attrs["mode"]

    def mirror_pad_kernel(x, paddings):
        return xp.pad(x, _run_time_paddings(x, paddings, mode), mode=mode.lower())
    return mirror_pad_kernel


def _mirror_pad_grad(op, g):
    dx = apply_op("MirrorPadGrad", [g, op.inputs[1]], {"mode": op.attrs["mode"]},
                  name="MirrorPadGrad")
    return [output(dx), None]


register(OpDef("MirrorPad", _mirror_pad_infer, _mirror_pad_kernel, grad=_mirror_pad_grad))


def _mirror_pad_grad_infer(op):
    g, paddings = op.inputs
    _check_index_dtype(paddings, "the paddings of pad")
    dims, value = g.shape.as_tuple(), constant_value(paddings)
    if dims is None or value is None:
        return [(g.dtype, TensorShape(None) if dims is None else [None] * len(dims))]
    pads = np.reshape(value, (-1, 2)).tolist()
    return [(g.dtype, [None if d is None else d - b - a for d, (b, a) in zip(dims, pads)])]


def _mirror_pad_grad_kernel(attrs, xp):
    # REFLECT's border copies start one element in from the edge; SYMMETRIC's at the edge.
    offset = 1 if attrs["mode"] == "REFLECT" else 0

    def mirror_pad_grad_kernel(g, paddings):
        flat = _ints(paddings)
        pads = list(zip(flat[0::2], flat[1::2]))
        if len(pads) != g.ndim:
            raise ValueError(f"paddings {pads} do not fit a gradient of shape {g.shape}")
        _check_paddings(pads, [d - b - a for d, (b, a) in zip(g.shape, pads)], attrs["mode"])
        dx = g
        for axis, (before, after) in enumerate(pads):
            dx = _fold_border(xp, dx, axis, before, after, offset)
        return dx
    return mirror_pad_grad_kernel


def _fold_border(xp, g, axis, before, after, offset):
    """Add the mirrored borders of ``g`` along ``axis`` onto the elements they copy."""
    g = xp.moveaxis(g, axis, 0)
    n = g.shape[0] - before - after
    core = g[before:before + n].copy()
    if before:
        core[offset:offset + before] += xp.flip(g[:before], axis=0)
    if after:
        core[n - offset - after:n - offset] += xp.flip(g[before + n:], axis=0)
    return xp.moveaxis(core, 0, axis)


# The gradient of MirrorPad: the padded gradient folded back onto the input's shape.
register(OpDef("MirrorPadGrad", _mirror_pad_grad_infer, _mirror_pad_grad_kernel,
               grad=lambda op, g: [output(apply_op("MirrorPad", [g, op.inputs[1]],
                                                   {"mode": op.attrs["mode"]})), None]))


def pad(tensor, paddings, mode="CONSTANT", name=None, constant_values=0) -> Tensor:
    """``tensor`` padded by ``paddings[i] = [before, after]`` elements along each dimension i.

    ``mode`` is "CONSTANT" (with ``constant_values``), "REFLECT" (mirror without the edge
    element) or "SYMMETRIC" (mirror with it), case-insensitive.
    """
    tensor = convert_to_tensor(tensor)
    paddings = int_tensor(paddings, "the paddings of pad")
    mode = str(mode).upper()
    if mode == "CONSTANT":
        if not isinstance(constant_values, Tensor) and np.all(np.equal(constant_values, 0)):
            return output(apply_op("Pad", [tensor, paddings], name=name or "Pad"))
        value = constant_values if isinstance(constant_values, Tensor) \
            else convert_to_tensor(constant_values, dtype=tensor.dtype)
        return output(apply_op("PadV2", [tensor, paddings, value], name=name or "PadV2"))
    if mode in ("REFLECT", "SYMMETRIC"):
        return output(apply_op("MirrorPad", [tensor, paddings], {"mode": mode},
                               name=name or "MirrorPad"))
    raise ValueError(f"unknown padding mode {mode!r}; use CONSTANT, REFLECT or SYMMETRIC")


__all__ += ["pad"]
