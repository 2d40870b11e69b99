"""Array ops: constants, placeholders, identity, and the ops that move, select and reshape data.

Each op sits on one screen: its OpDef (inference, kernel, gradient, fusion kind) and then the
public function that builds it.

Shape, axis and index arguments are int32/int64 tensors, as in TF1; Python lists and numpy
arrays become constants. Inference reads them at graph-construction time when it can: fully
(``registry.constant_value``) or element by element (``known_elements``, which also sees
through ``tw.shape(x)[i]``, ``tw.stack`` and ``tw.concat`` of such pieces, as TF's
``constant_value_as_shape`` does). What is only known at run time leaves dims unknown.

``range`` and ``slice`` in this module are the tw ops; Python's are spelled ``builtins.range``
and ``builtins.slice``.
"""

from __future__ import annotations

import builtins
import operator

import numpy as np

from tensorweave.graph import dtypes
from tensorweave.graph.core import Tensor
from tensorweave.graph.dtypes import as_dtype
from tensorweave.graph.shapes import Dimension, TensorShape, as_shape
from tensorweave.ops.common import (NUMBERS, check_dtype, constant_tensor, convert_to_tensor,
                                    normalize_axis, output, same_as_input, to_numpy)
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, constant_value, register

__all__ = ["constant", "placeholder", "placeholder_with_default", "identity", "newaxis"]

newaxis = None  # ``x[:, tw.newaxis]`` inserts a dimension of size 1, as numpy's np.newaxis

_INDEX_DTYPES = frozenset({"int32", "int64"})


# -- reading shape, axis and index arguments ---------------------------------------------------
def int_tensor(value, what="argument", dtype=None) -> Tensor:
    """``value`` (list, numpy array, TensorShape or int tensor) as an int32/int64 tensor.

    Python lists become int32 (int64 when a value does not fit); numpy arrays keep their dtype;
    ``dtype`` requests one for non-tensor values.
    """
    if isinstance(value, TensorShape):
        if not value.is_fully_defined():
            raise ValueError(f"{what} {value} must be fully defined")
        value = value.as_list()
    if isinstance(value, Tensor):
        tensor = value
    elif isinstance(value, (np.ndarray, np.generic)):
        if np.asarray(value).dtype.kind not in "iu":  # never truncate floats silently
            raise TypeError(f"{what} must be int32 or int64, got a {value.dtype} array")
        tensor = convert_to_tensor(value, dtype=dtype)
    else:
        tensor = convert_to_tensor(_plain_ints(value), dtype=dtype,
                                   preferred_dtype=dtypes.int32)
    if tensor.dtype.name not in _INDEX_DTYPES:
        raise TypeError(f"{what} must be int32 or int64, got a {tensor.dtype.name} value")
    return tensor


def _plain_ints(value):
    """Dimensions and nested lists of them as plain Python values (tensors stay tensors)."""
    if isinstance(value, Dimension):
        if value.value is None:
            raise ValueError("an unknown dimension cannot be used as a value")
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain_ints(v) for v in value]
    return value


def _check_index_dtype(tensor, what):
    if tensor.dtype.name not in _INDEX_DTYPES:
        raise TypeError(f"{what} must be int32 or int64, got {tensor.dtype.name}")


def const_int(tensor):
    """The value of a scalar int tensor if known at graph-construction time, else None."""
    value = constant_value(tensor)
    if value is None or np.ndim(value) != 0:
        return None
    return int(value)


def const_ints(tensor):
    """The values of a 1-D (or scalar) int tensor as a list of ints if known, else None."""
    value = constant_value(tensor)
    if value is None:
        return None
    return [int(v) for v in np.reshape(value, -1)]


class DimOf:
    """Dimension ``index`` of ``tensor``, unknown statically (seen through ``tw.shape``).

    ``Reshape`` uses it to see that ``tw.reshape(x, [tw.shape(x)[0], -1])`` keeps x's first
    dimension, so the -1 is known even when the batch size is not.
    """

    __slots__ = ("tensor", "index")

    def __init__(self, tensor, index):
        self.tensor = tensor
        self.index = index

    def __repr__(self):
        return f"DimOf({self.tensor.name}, {self.index})"


_KNOWN_ELEMENTS_LIMIT = 1024


def known_elements(tensor):
    """The elements of an int scalar or vector known at construction time, else None.

    Returns an object array whose elements are ints, ``DimOf`` or None (unknown); None when
    even the tensor's length is unknown. See the module docstring.
    """
    value = constant_value(tensor)
    if value is not None:
        if np.ndim(value) > 1 or np.size(value) > _KNOWN_ELEMENTS_LIMIT:
            return None
        return _object_array([int(v) for v in np.reshape(value, -1)], np.shape(value))
    if not tensor.dtype.is_integer:
        return None
    rule = _KNOWN_ELEMENTS_RULES.get(tensor.op.type)
    result = rule(tensor.op) if rule is not None else None
    if result is None:
        shape = tensor.shape
        if not shape.is_fully_defined() or shape.rank > 1:
            return None
        result = _object_array([None] * shape.num_elements(), shape.as_list())
    return result if result.ndim <= 1 else None


def _object_array(items, shape=None):
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape if shape is not None else (len(items),))


def _shape_op_elements(op):
    dims = op.inputs[0].shape.as_tuple()
    if dims is None:
        return None
    return _object_array([DimOf(op.inputs[0], i) if d is None else d for i, d in enumerate(dims)])


def _pack_elements(op):
    parts = [known_elements(t) for t in op.inputs]
    if any(p is None or p.ndim != 0 for p in parts) or op.attrs["axis"] not in (0, -1):
        return None
    return _object_array([p[()] for p in parts])


def _concat_elements(op):
    parts = [known_elements(t) for t in op.inputs[:-1]]
    if any(p is None or p.ndim != 1 for p in parts) or const_int(op.inputs[-1]) not in (0, -1):
        return None
    return _object_array([v for p in parts for v in p])


def _strided_slice_elements(op):
    source = known_elements(op.inputs[0])
    specs = [const_ints(t) for t in op.inputs[1:4]]
    if source is None or source.ndim != 1 or any(s is None for s in specs):
        return None
    try:
        picked = source[tuple(slice_entries(op.attrs, *specs))]
    except (IndexError, ValueError):
        return None
    return picked if isinstance(picked, np.ndarray) else _object_array([picked], ())


def _passthrough_elements(op):
    return known_elements(op.inputs[0]) if op.inputs[0].dtype.is_integer else None


# How each op type's known elements follow from its inputs' (TF's constant_value_as_shape).
_KNOWN_ELEMENTS_RULES = {
    "Shape": _shape_op_elements,
    "Pack": _pack_elements,
    "ConcatV2": _concat_elements,
    "StridedSlice": _strided_slice_elements,
    "Identity": _passthrough_elements,
    "Cast": _passthrough_elements,
}


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def shape_from_tensor(tensor, what="shape") -> TensorShape:
    """The static shape a 1-D shape tensor describes (unknown elements are unknown dims)."""
    elements = known_elements(tensor)
    if elements is None:
        dims = tensor.shape.as_tuple()
        if dims is None or len(dims) != 1 or dims[0] is None:
            return TensorShape(None)
        return TensorShape([None] * dims[0])
    if elements.ndim != 1:
        raise ValueError(f"{what} must be a vector, got a scalar")
    result = []
    for d in elements:
        if _is_int(d) and d < 0:
            raise ValueError(f"{what} {_show(elements)} has a negative dimension")
        result.append(d if _is_int(d) else None)
    return TensorShape(result)


def _show(elements):
    return "[" + ", ".join(str(e) if _is_int(e) else "?" for e in elements) + "]"


def _ints(array):
    """A run-time int vector as a list of Python ints (works for numpy and cupy arrays)."""
    return [int(v) for v in array.reshape(-1).tolist()]


def _same_dtype(tensors, what):
    dtype = tensors[0].dtype
    for i, t in enumerate(tensors[1:], 1):
        if t.dtype is not dtype:
            raise TypeError(f"all inputs of {what} must have one dtype, but input 0 is "
                            f"{dtype.name} and input {i} is {t.dtype.name}")
    return dtype


def _tensors_of_one_dtype(values, what):
    """Convert ``values``: Python values adopt the dtype of the first tensor among them."""
    values = list(values)
    first = next((v for v in values if isinstance(v, Tensor)), None)
    dtype = None if first is None else first.dtype
    tensors = [v if isinstance(v, Tensor) else convert_to_tensor(v, dtype=dtype) for v in values]
    if not tensors:
        raise ValueError(f"{what} needs at least one input")
    return tensors


# -- Const --------------------------------------------------------------------------------------
def _const_infer(op):
    value = op.attrs["value"]
    return [(op.attrs["dtype"], value.shape)]


def _const_kernel(attrs, xp):
    value = attrs["value"] if xp is np else xp.asarray(attrs["value"])
    return lambda: value


register(OpDef("Const", _const_infer, _const_kernel, grad=NO_GRADIENT,
               static_value=lambda op: op.attrs["value"]))


def constant(value, dtype=None, shape=None, name="Const") -> Tensor:
    """A tensor with a fixed value. ``shape`` fills (from a scalar) or reshapes ``value``."""
    dtype = None if dtype is None else as_dtype(dtype)
    array = to_numpy(value, dtype)
    if shape is not None:
        shape = as_shape(shape).as_list()
        if any(d is None for d in shape):
            raise ValueError(f"constant {name}: shape {shape} must be fully defined")
        if array.size == 1:
            array = np.full(shape, array.reshape(()), dtype=array.dtype)
        elif array.size == int(np.prod(shape)):
            array = array.reshape(shape)
        else:
            raise TypeError(f"constant {name}: a value of {array.size} elements cannot have "
                            f"shape {shape}")
    return constant_tensor(array, name)


# -- Placeholder --------------------------------------------------------------------------------
def _placeholder_kernel(attrs, xp):
    def must_feed():
        # Normally caught when the step is compiled; kept so a direct call still says why.
        raise ValueError("a value must be fed for this placeholder")
    return must_feed


register(OpDef("Placeholder", lambda op: [(op.attrs["dtype"], op.attrs["shape"])],
               _placeholder_kernel, grad=NO_GRADIENT, stateful=True, must_feed=True))


def placeholder(dtype, shape=None, name=None) -> Tensor:
    """A tensor whose value must be fed to ``Session.run`` (``shape=None``: any shape)."""
    return output(apply_op("Placeholder", [], {"dtype": as_dtype(dtype), "shape": as_shape(shape)},
                           name=name or "Placeholder"))


def _placeholder_with_default_infer(op):
    default = op.inputs[0]
    shape = as_shape(op.attrs["shape"])
    if not default.shape.is_compatible_with(shape):
        raise ValueError(f"default value of shape {default.shape} does not match the declared "
                         f"shape {shape}")
    return [(default.dtype, shape)]


register(OpDef("PlaceholderWithDefault", _placeholder_with_default_infer,
               lambda attrs, xp: _identity, grad=lambda op, g: [g]))


def placeholder_with_default(input, shape, name=None) -> Tensor:
    """A tensor that takes its fed value when fed, else the value of ``input``."""
    input = convert_to_tensor(input)
    return output(apply_op("PlaceholderWithDefault", [input], {"shape": as_shape(shape)},
                           name=name or "PlaceholderWithDefault"))


# -- Identity -----------------------------------------------------------------------------------
def _identity(x):
    return x


register(OpDef("Identity", same_as_input, lambda attrs, xp: _identity,
               grad=lambda op, g: [g], fusion="elementwise"))


def identity(input, name=None) -> Tensor:
    """The same value as ``input`` (a new node, e.g. to read a variable at a point in time)."""
    return output(apply_op("Identity", [convert_to_tensor(input)], name=name or "Identity"))


# -- ZerosLike / OnesLike -----------------------------------------------------------------------
register(OpDef("ZerosLike", same_as_input, lambda attrs, xp: xp.zeros_like, grad=NO_GRADIENT,
               fusion="elementwise"))
register(OpDef("OnesLike", same_as_input, lambda attrs, xp: xp.ones_like, grad=NO_GRADIENT,
               fusion="elementwise"))


def zeros_like(tensor, dtype=None, name=None) -> Tensor:
    """Zeros with the shape (and dtype, unless given) of ``tensor``."""
    return _fill_like("ZerosLike", tensor, dtype, name)


def ones_like(tensor, dtype=None, name=None) -> Tensor:
    """Ones with the shape (and dtype, unless given) of ``tensor``."""
    return _fill_like("OnesLike", tensor, dtype, name)


def _fill_like(op_type, tensor, dtype, name):
    from tensorweave.ops.math import cast
    tensor = convert_to_tensor(tensor)
    result = output(apply_op(op_type, [tensor], name=name or op_type))
    if dtype is not None and as_dtype(dtype) is not tensor.dtype:
        result = cast(result, dtype)
    return result


__all__ += ["zeros_like", "ones_like"]


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


# -- Fill / zeros / ones ------------------------------------------------------------------------
def _fill_infer(op):
    dims, value = op.inputs
    _check_index_dtype(dims, "the dims of fill")
    if value.shape.rank not in (None, 0):
        raise ValueError(f"the value of fill must be a scalar, got shape {value.shape}")
    if dims.shape.rank not in (None, 1):
        raise ValueError(f"the dims of fill must be a vector, got shape {dims.shape}")
    return [(value.dtype, shape_from_tensor(dims, "the dims of fill"))]


def _fill_kernel(attrs, xp):
    def fill_kernel(dims, value):
        shape = _ints(dims)
        if any(d < 0 for d in shape):
            raise ValueError(f"the dims of fill must be non-negative, got {shape}")
        return xp.full(shape, value, dtype=value.dtype)
    return fill_kernel


def _fill_grad(op, g):
    from tensorweave.ops.math import reduce_sum
    return [None, reduce_sum(g)]


register(OpDef("Fill", _fill_infer, _fill_kernel, grad=_fill_grad))


def fill(dims, value, name=None) -> Tensor:
    """A tensor of shape ``dims`` with every element equal to the scalar ``value``."""
    dims = int_tensor(dims, "the dims of fill")
    value = convert_to_tensor(value)
    return output(apply_op("Fill", [dims, value], name=name or "Fill"))


_SMALL_CONSTANT = 1000  # elements; larger zeros/ones are a Fill so the graph stays small (TF1)


def zeros(shape, dtype=dtypes.float32, name=None) -> Tensor:
    """A tensor of ``shape`` filled with zeros (a constant when small and static)."""
    return _filled(shape, 0, as_dtype(dtype), name or "zeros")


def ones(shape, dtype=dtypes.float32, name=None) -> Tensor:
    """A tensor of ``shape`` filled with ones (a constant when small and static)."""
    return _filled(shape, 1, as_dtype(dtype), name or "ones")


def _filled(shape, scalar, dtype, name):
    dims = int_tensor([shape] if _is_int(shape) else shape, f"the shape of {name}")
    static = shape_from_tensor(dims, f"the shape of {name}")
    if static.is_fully_defined() and static.num_elements() < _SMALL_CONSTANT:
        return constant_tensor(np.full(static.as_list(), scalar, dtype=dtype.np), name)
    value = constant_tensor(np.array(scalar, dtype=dtype.np))
    return output(apply_op("Fill", [dims, value], name=name))


__all__ += ["fill", "zeros", "ones"]


# -- Range --------------------------------------------------------------------------------------
_RANGE_DTYPES = ("int32", "int64", "float32", "float64")  # in TF1's order of precedence


def _range_infer(op):
    start, limit, delta = op.inputs
    dtype = _same_dtype(op.inputs, "range")
    if dtype.name not in _RANGE_DTYPES:
        raise TypeError(f"range is not defined for {dtype.name}; use one of {_RANGE_DTYPES}")
    for what, t in zip(("start", "limit", "delta"), op.inputs):
        if t.shape.rank not in (None, 0):
            raise ValueError(f"the {what} of range must be a scalar, got shape {t.shape}")
    values = [constant_value(t) for t in op.inputs]
    if any(v is None for v in values):
        return [(dtype, [None])]
    return [(dtype, [range_length(*values)])]


def range_length(start, limit, delta) -> int:
    """How many elements ``range(start, limit, delta)`` has, computed in their dtype as TF does."""
    if delta == 0:
        raise ValueError(f"range requires delta != 0, got {delta}")
    if delta > 0 and start > limit:
        raise ValueError(f"range requires start <= limit when delta > 0, got start {start} and "
                         f"limit {limit}")
    if delta < 0 and start < limit:
        raise ValueError(f"range requires start >= limit when delta < 0, got start {start} and "
                         f"limit {limit}")
    if np.asarray(start).dtype.kind in "iu":
        span, step = abs(int(limit) - int(start)), abs(int(delta))
        return (span + step - 1) // step
    return int(np.ceil(np.abs((limit - start) / delta)))


def _range_kernel(attrs, xp):
    def range_kernel(start, limit, delta):
        n = range_length(*(np.asarray(v.get() if hasattr(v, "get") else v)
                           for v in (start, limit, delta)))
        return start + xp.arange(n, dtype=start.dtype) * delta
    return range_kernel


register(OpDef("Range", _range_infer, _range_kernel, grad=NO_GRADIENT))


def range(start, limit=None, delta=1, dtype=None, name="range") -> Tensor:  # noqa: A001
    """``[start, start + delta, ...]`` up to but excluding ``limit``, as Python's range.

    ``range(n)`` counts from 0. Without ``dtype``, the widest of the arguments' dtypes wins
    (int32 < int64 < float32 < float64; Python ints are int32 and floats float32).
    """
    if limit is None:
        start, limit = 0, start
    args = [start, limit, delta]
    dtype = _range_dtype(args) if dtype is None else as_dtype(dtype)
    tensors = [_range_arg(a, dtype) for a in args]
    return output(apply_op("Range", tensors, name=name or "range"))


def _range_dtype(args):
    found = [a.dtype if isinstance(a, Tensor) else as_dtype(to_numpy(a, None).dtype)
             for a in args]
    if all(d.name in _RANGE_DTYPES for d in found):
        return max(found, key=lambda d: _RANGE_DTYPES.index(d.name))
    return found[0]  # not a range dtype: inference reports it


def _range_arg(value, dtype):
    """``value`` as a ``dtype`` tensor: tensors of other dtypes are cast, as TF1's range does."""
    from tensorweave.ops.math import cast
    if isinstance(value, Tensor):
        return value if value.dtype is dtype else cast(value, dtype)
    return convert_to_tensor(value, dtype=dtype)


__all__ += ["range"]


# -- Transpose / InvertPermutation --------------------------------------------------------------
def _transpose_infer(op):
    x, perm = op.inputs
    _check_index_dtype(perm, "the perm of transpose")
    dims = x.shape.as_tuple()
    values = const_ints(perm)
    if values is None:
        length = perm.shape[0].value if perm.shape.rank == 1 else None
        rank = len(dims) if dims is not None else length
        return [(x.dtype, TensorShape(None if rank is None else [None] * rank))]
    if dims is None:
        dims = (None,) * len(values)
    _check_permutation(values, len(dims), "the perm of transpose")
    return [(x.dtype, [dims[i] for i in values])]


def _check_permutation(perm, rank, what):
    if len(perm) != rank:
        raise ValueError(f"{what} {perm} has {len(perm)} elements, but the tensor has rank {rank}")
    if sorted(perm) != list(builtins.range(rank)):
        raise ValueError(f"{what} {perm} is not a permutation of 0..{rank - 1}")


def _transpose_kernel(attrs, xp):
    def transpose_kernel(x, perm):
        perm = _ints(perm)
        _check_permutation(perm, x.ndim, "the perm of transpose")
        return xp.transpose(x, perm)
    return transpose_kernel


register(OpDef("Transpose", _transpose_infer, _transpose_kernel,
               grad=lambda op, g: [transpose(g, invert_permutation(op.inputs[1])), None]))


def transpose(a, perm=None, name="transpose", conjugate=False) -> Tensor:
    """``a`` with its dimensions permuted: output dim i is input dim ``perm[i]``.

    ``perm=None`` reverses the dimensions (a matrix transpose for rank 2). ``conjugate`` has no
    effect: tensorweave has no complex dtypes.
    """
    a = convert_to_tensor(a)
    if perm is None:
        r = a.shape.rank
        perm = np.arange(r - 1, -1, -1, dtype=np.int32) if r is not None \
            else reverse(range(rank(a)), [0])
    perm = int_tensor(perm, "the perm of transpose")
    return output(apply_op("Transpose", [a, perm], name=name or "transpose"))


def _invert_permutation_infer(op):
    x = op.inputs[0]
    _check_index_dtype(x, "the input of invert_permutation")
    if x.shape.rank not in (None, 1):
        raise ValueError(f"invert_permutation needs a vector, got shape {x.shape}")
    return [(x.dtype, x.shape if x.shape.rank is not None else [None])]


def _invert_permutation_kernel(attrs, xp):
    def invert_permutation_kernel(perm):
        _check_permutation(_ints(perm), perm.size, "the input of invert_permutation")
        inverse = xp.empty_like(perm)
        inverse[perm] = xp.arange(perm.size, dtype=perm.dtype)
        return inverse
    return invert_permutation_kernel


register(OpDef("InvertPermutation", _invert_permutation_infer, _invert_permutation_kernel,
               grad=NO_GRADIENT))


def invert_permutation(x, name=None) -> Tensor:
    """The inverse of the permutation ``x``: ``y[x[i]] = i``."""
    x = int_tensor(x, "the input of invert_permutation")
    return output(apply_op("InvertPermutation", [x], name=name or "InvertPermutation"))


__all__ += ["transpose", "invert_permutation"]


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
        return xp.expand_dims(x, normalize_axis(a[0], x.ndim + 1, "the axis of expand_dims"))
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


# -- ReverseV2 ----------------------------------------------------------------------------------
def _reverse_axes(axes, rank):
    normalized = [normalize_axis(a, rank, "the axis of reverse") for a in axes]
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"the axis of reverse {axes} names a dimension more than once")
    return tuple(normalized)


def _reverse_infer(op):
    x, axis = op.inputs
    _check_index_dtype(axis, "the axis of reverse")
    if axis.shape.rank not in (None, 1):
        raise ValueError(f"the axis of reverse must be a vector, got shape {axis.shape}")
    axes = const_ints(axis)
    if axes is not None and x.shape.rank is not None:
        _reverse_axes(axes, x.shape.rank)
    return [(x.dtype, x.shape)]


def _reverse_kernel(attrs, xp):
    def reverse_kernel(x, axis):
        return xp.asarray(xp.flip(x, axis=_reverse_axes(_ints(axis), x.ndim)))
    return reverse_kernel


register(OpDef("ReverseV2", _reverse_infer, _reverse_kernel,
               grad=lambda op, g: [reverse(g, op.inputs[1]), None]))


def reverse(tensor, axis, name=None) -> Tensor:
    """``tensor`` with the order of elements reversed along each dimension in ``axis``."""
    tensor = convert_to_tensor(tensor)
    axis = int_tensor([axis] if _is_int(axis) else axis, "the axis of reverse")
    return output(apply_op("ReverseV2", [tensor, axis], name=name or "ReverseV2"))


__all__ += ["reverse"]


def _outputs(xp, parts):
    """A multi-output kernel's result: one array for one output, else a tuple of arrays."""
    parts = [xp.asarray(p) for p in parts]  # numpy indexing may give scalars, not arrays
    return parts[0] if len(parts) == 1 else tuple(parts)


# -- ConcatV2 -----------------------------------------------------------------------------------
def _concat_infer(op):
    values, axis = op.inputs[:-1], op.inputs[-1]
    if len(values) != op.attrs["N"]:
        raise ValueError(f"concat of N={op.attrs['N']} tensors got {len(values)}")
    dtype = _same_dtype(values, "concat")
    _check_index_dtype(axis, "the axis of concat")
    known = [(i, t.shape) for i, t in enumerate(values) if t.shape.rank is not None]
    if not known:
        return [(dtype, TensorShape(None))]
    first, first_shape = known[0]
    for i, s in known[1:]:
        if s.rank != first_shape.rank:
            raise ValueError(f"all inputs of concat must have one rank, but input {first} has "
                             f"shape {first_shape} and input {i} has shape {s}")
    r = first_shape.rank
    if r == 0:
        raise ValueError("cannot concatenate scalars; use tw.stack to make a vector of them")
    a = const_int(axis)
    if a is None:
        return [(dtype, [None] * r)]
    a = normalize_axis(a, r, "the axis of concat")
    return [(dtype, _concat_dims(values, a, r))]


def _concat_dims(values, a, r):
    """The static dims of a concat along ``a``; other dims must agree (errors name both)."""
    dims = [None] * r
    source = [None] * r  # which input each known dim came from, for error messages
    total = 0
    for i, t in enumerate(values):
        shape = t.shape.as_tuple()
        if shape is None:
            total = None
            continue
        for j, d in enumerate(shape):
            if j == a or d is None:
                continue
            if dims[j] is not None and dims[j] != d:
                k = source[j]
                raise ValueError(f"dimension {j} of the inputs to concat must agree (they are "
                                 f"joined along axis {a}), but input {k} has shape "
                                 f"{values[k].shape} and input {i} has shape {t.shape}")
            dims[j], source[j] = d, i
        total = None if total is None or shape[a] is None else total + shape[a]
    dims[a] = total
    return dims


def _concat_kernel(attrs, xp):
    def concat_kernel(*args):
        return xp.concatenate(args[:-1], axis=int(args[-1]))
    return concat_kernel


def _concat_grad(op, g):
    values, axis = op.inputs[:-1], op.inputs[-1]
    a = const_int(axis)
    index = a if a is not None else axis
    sizes = stack([shape(v)[index] for v in values])
    return split(g, sizes, axis, num=len(values)) + [None]


register(OpDef("ConcatV2", _concat_infer, _concat_kernel, grad=_concat_grad))


def concat(values, axis, name="concat") -> Tensor:
    """The tensors ``values`` joined along dimension ``axis``; other dims must agree."""
    values = _tensors_of_one_dtype(values, "concat")
    axis = int_tensor(axis, "the axis of concat")
    if len(values) == 1:
        return identity(values[0], name=name)
    return output(apply_op("ConcatV2", values + [axis], {"N": len(values)},
                           name=name or "concat"))


__all__ += ["concat"]


# -- Pack / Unpack ------------------------------------------------------------------------------
def _pack_infer(op):
    values = op.inputs
    if len(values) != op.attrs["N"]:
        raise ValueError(f"stack of N={op.attrs['N']} tensors got {len(values)}")
    dtype = _same_dtype(values, "stack")
    merged = TensorShape(None)
    for i, t in enumerate(values):
        if not merged.is_compatible_with(t.shape):
            k = next(k for k, v in enumerate(values[:i])
                     if not v.shape.is_compatible_with(t.shape))
            raise ValueError(f"all inputs of stack must have one shape, but input {k} has shape "
                             f"{values[k].shape} and input {i} has shape {t.shape}")
        merged = merged.merge_with(t.shape)
    dims = merged.as_tuple()
    if dims is None:
        return [(dtype, TensorShape(None))]
    a = normalize_axis(op.attrs["axis"], len(dims) + 1, "the axis of stack")
    return [(dtype, dims[:a] + (len(values),) + dims[a:])]


register(OpDef("Pack", _pack_infer,
               lambda attrs, xp: lambda *xs: xp.stack(xs, axis=attrs["axis"]),
               grad=lambda op, g: unstack(g, num=op.attrs["N"], axis=op.attrs["axis"])))


def stack(values, axis=0, name="stack") -> Tensor:
    """The tensors ``values`` (all of one shape) stacked along a new dimension ``axis``."""
    values = _tensors_of_one_dtype(values, "stack")
    return output(apply_op("Pack", values, {"axis": int(axis), "N": len(values)},
                           name=name or "stack"))


def _unpack_infer(op):
    x = op.inputs[0]
    num = op.attrs["num"]
    dims = x.shape.as_tuple()
    if dims is None:
        return [(x.dtype, TensorShape(None))] * num
    a = normalize_axis(op.attrs["axis"], len(dims), "the axis of unstack")
    if dims[a] is not None and dims[a] != num:
        raise ValueError(f"cannot unstack dimension {a} of shape {x.shape} into {num} tensors")
    return [(x.dtype, dims[:a] + dims[a + 1:])] * num


def _unpack_kernel(attrs, xp):
    num = attrs["num"]

    def unstack_kernel(x):
        a = normalize_axis(attrs["axis"], x.ndim, "the axis of unstack")
        if x.shape[a] != num:
            raise ValueError(f"cannot unstack dimension {a} of shape {x.shape} into {num} "
                             f"tensors")
        moved = xp.moveaxis(x, a, 0)
        return _outputs(xp, [moved[i] for i in builtins.range(num)])
    return unstack_kernel


register(OpDef("Unpack", _unpack_infer, _unpack_kernel,
               grad=lambda op, *grads: [stack(list(grads), axis=op.attrs["axis"])]))


def unstack(value, num=None, axis=0, name="unstack") -> list:
    """The slices of ``value`` along dimension ``axis``, as a list of ``num`` tensors."""
    value = convert_to_tensor(value)
    if num is None:
        dims = value.shape.as_tuple()
        if dims is not None:
            num = dims[normalize_axis(axis, len(dims), "the axis of unstack")]
        if num is None:
            raise ValueError(f"cannot infer num from shape {value.shape}; pass num")
    op = apply_op("Unpack", [value], {"num": int(num), "axis": int(axis)}, name=name or "unstack")
    return list(op.outputs)


__all__ += ["stack", "unstack"]


# -- Split / SplitV -----------------------------------------------------------------------------
def _split_infer(op):
    axis, x = op.inputs
    n = op.attrs["num_split"]
    _check_index_dtype(axis, "the axis of split")
    dims = x.shape.as_tuple()
    a = const_int(axis)
    if dims is None:
        return [(x.dtype, TensorShape(None))] * n
    if a is None:
        return [(x.dtype, [None] * len(dims))] * n
    a = normalize_axis(a, len(dims), "the axis of split")
    d = dims[a]
    if d is not None and d % n:
        raise ValueError(f"cannot split dimension {a} of shape {x.shape} evenly into {n} pieces")
    piece = None if d is None else d // n
    return [(x.dtype, dims[:a] + (piece,) + dims[a + 1:])] * n


def _split_kernel(attrs, xp):
    n = attrs["num_split"]

    def split_kernel(axis, x):
        a = normalize_axis(int(axis), x.ndim, "the axis of split")
        if x.shape[a] % n:
            raise ValueError(f"cannot split dimension {a} of shape {x.shape} evenly into {n} "
                             f"pieces")
        return _outputs(xp, xp.split(x, n, axis=a))
    return split_kernel


register(OpDef("Split", _split_infer, _split_kernel,
               grad=lambda op, *grads: [None, concat(list(grads), op.inputs[0])]))


def _split_v_infer(op):
    x, size_splits, axis = op.inputs
    n = op.attrs["num_split"]
    _check_index_dtype(axis, "the axis of split")
    _check_index_dtype(size_splits, "the sizes of split")
    elements = known_elements(size_splits)
    sizes = [None] * n if elements is None else [s if _is_int(s) else None for s in elements]
    if len(sizes) != n:
        raise ValueError(f"split into num={n} pieces got {len(sizes)} sizes")
    dims = x.shape.as_tuple()
    a = const_int(axis)
    if dims is None:
        return [(x.dtype, TensorShape(None))] * n
    if a is None:
        return [(x.dtype, [None] * len(dims))] * n
    a = normalize_axis(a, len(dims), "the axis of split")
    sizes = _split_sizes(sizes, dims[a], f"dimension {a} of shape {x.shape}")
    return [(x.dtype, dims[:a] + (s,) + dims[a + 1:]) for s in sizes]


def _split_sizes(sizes, total, what):
    """Resolve a -1 among ``sizes`` (ints or None) and check they add up to ``total``."""
    known = [s for s in sizes if s is not None]
    if sum(s == -1 for s in known) > 1 or any(s < -1 for s in known):
        raise ValueError(f"split sizes {sizes}: each must be >= 0, except one that may be -1")
    if total is None or len(known) < len(sizes):
        return [None if s == -1 else s for s in sizes]
    rest = sum(s for s in known if s != -1)
    if -1 in sizes:
        if rest > total:
            raise ValueError(f"split sizes {sizes} add up to more than {what} ({total})")
        return [total - rest if s == -1 else s for s in sizes]
    if rest != total:
        raise ValueError(f"split sizes {sizes} add up to {rest}, but {what} is {total}")
    return sizes


def _split_v_kernel(attrs, xp):
    def split_v_kernel(x, size_splits, axis):
        a = normalize_axis(int(axis), x.ndim, "the axis of split")
        sizes = _split_sizes(_ints(size_splits), x.shape[a],
                             f"dimension {a} of shape {x.shape}")
        return _outputs(xp, xp.split(x, np.cumsum(sizes)[:-1].tolist(), axis=a))
    return split_v_kernel


register(OpDef("SplitV", _split_v_infer, _split_v_kernel,
               grad=lambda op, *grads: [concat(list(grads), op.inputs[2]), None, None]))


def split(value, num_or_size_splits, axis=0, num=None, name="split") -> list:
    """Split ``value`` along ``axis`` into equal pieces (an int) or pieces of given sizes.

    ``num_or_size_splits`` is a number of pieces that divides the dimension, or a list of sizes
    (one may be -1: the rest); ``num`` is needed when the sizes' length is not static.
    """
    value = convert_to_tensor(value)
    axis = int_tensor(axis, "the axis of split")
    if _is_int(num_or_size_splits):
        op = apply_op("Split", [axis, value], {"num_split": int(num_or_size_splits)},
                      name=name or "split")
        return list(op.outputs)
    sizes = int_tensor(num_or_size_splits, "the sizes of split")
    if sizes.shape.rank == 0 and const_int(sizes) is not None:
        return split(value, const_int(sizes), axis, name=name)
    if num is None:
        num = sizes.shape[0].value if sizes.shape.rank == 1 else None
        if num is None:
            raise ValueError(f"cannot infer the number of pieces from sizes of shape "
                             f"{sizes.shape}; pass num")
    op = apply_op("SplitV", [value, sizes, axis], {"num_split": int(num)}, name=name or "split")
    return list(op.outputs)


__all__ += ["split"]


# -- Slice --------------------------------------------------------------------------------------
def _spec_values(tensor):
    """A 1-D spec tensor's elements: ints, None where unknown; None if its length is unknown."""
    elements = known_elements(tensor)
    if elements is None or elements.ndim != 1:
        return None
    return [e if _is_int(e) else None for e in elements]


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


class _Unknown:
    """A part of a slice spec known only at run time."""

    def __repr__(self):
        return "?"


_UNKNOWN = _Unknown()


def slice_entries(attrs, begin, end, strides) -> list:
    """The numpy index a strided-slice spec stands for, one entry per spec element.

    An entry is ``Ellipsis``, ``None`` (new axis), an int (shrink: index, dropping the
    dimension) or a slice. Parts only known at run time are ``_UNKNOWN``.
    """
    if not len(begin) == len(end) == len(strides):
        raise ValueError(f"the begin, end and strides of a strided slice must have one length, "
                         f"got {len(begin)}, {len(end)} and {len(strides)}")
    entries = []
    for i, (b, e, s) in enumerate(zip(begin, end, strides)):
        bit = 1 << i
        if attrs["ellipsis_mask"] & bit:
            entries.append(Ellipsis)
        elif attrs["new_axis_mask"] & bit:
            entries.append(None)
        elif attrs["shrink_axis_mask"] & bit:
            entries.append(b)  # the end is implied (begin + 1), as in TF
        else:
            entries.append(builtins.slice(None if attrs["begin_mask"] & bit else b,
                                          None if attrs["end_mask"] & bit else e, s))
    if sum(e is Ellipsis for e in entries) > 1:
        raise ValueError("an index can have only one ellipsis (...)")
    return entries


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


# -- Tile ---------------------------------------------------------------------------------------
def _tile_infer(op):
    x, multiples = op.inputs
    _check_index_dtype(multiples, "the multiples of tile")
    m, dims = _spec_values(multiples), x.shape.as_tuple()
    if m is None and dims is None:
        return [(x.dtype, TensorShape(None))]
    if m is not None and dims is not None and len(m) != len(dims):
        raise ValueError(f"the multiples of tile {_show(m)} must have one element per "
                         f"dimension of the input, of shape {x.shape}")
    if m is not None and any(k is not None and k < 0 for k in m):
        raise ValueError(f"the multiples of tile must be >= 0, got {_show(m)}")
    m = m or [None] * len(dims)
    dims = dims or (None,) * len(m)
    return [(x.dtype, [_tiled_dim(d, k) for d, k in zip(dims, m)])]


def _tiled_dim(d, k):
    if d == 0 or k == 0:
        return 0
    return None if d is None or k is None else d * k


def _tile_kernel(attrs, xp):
    def tile_kernel(x, multiples):
        m = _ints(multiples)
        if len(m) != x.ndim or any(k < 0 for k in m):
            raise ValueError(f"the multiples of tile {m} must be >= 0, one per dimension of the "
                             f"input, of shape {x.shape}")
        return xp.tile(x, m)
    return tile_kernel


def _tile_grad(op, g):
    """Sum the tiles: view g as [m0, d0, m1, d1, ...] and sum the multiples' axes."""
    from tensorweave.ops.math import reduce_sum
    x, multiples = op.inputs
    pairs = reshape(stack([multiples, shape(x, out_type=multiples.dtype)], axis=1), [-1])
    return [reduce_sum(reshape(g, pairs), axis=range(0, size(pairs), 2)), None]


register(OpDef("Tile", _tile_infer, _tile_kernel, grad=_tile_grad))


def tile(input, multiples, name=None) -> Tensor:
    """``input`` repeated ``multiples[i]`` times along each dimension i."""
    input = convert_to_tensor(input)
    multiples = int_tensor(multiples, "the multiples of tile")
    return output(apply_op("Tile", [input, multiples], name=name or "Tile"))


__all__ += ["tile"]


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


# -- StopGradient -------------------------------------------------------------------------------
register(OpDef("StopGradient", same_as_input, lambda attrs, xp: _identity, grad=NO_GRADIENT,
               fusion="elementwise"))


def stop_gradient(input, name=None) -> Tensor:
    """The value of ``input``, through which ``tw.gradients`` passes no gradient."""
    input = convert_to_tensor(input)
    return output(apply_op("StopGradient", [input], name=name or "StopGradient"))


__all__ += ["stop_gradient"]


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
