"""Shape, axis and index arguments of the array ops: converting them and reading them early.

Shape, axis and index arguments are int32/int64 tensors, as in TF1; Python lists and numpy
arrays become constants. Inference reads them at graph-construction time when it can: fully
(``registry.constant_value``) or element by element (``known_elements``, which also sees
through ``tw.shape(x)[i]``, ``tw.stack`` and ``tw.concat`` of such pieces, as TF's
``constant_value_as_shape`` does). What is only known at run time leaves dims unknown.

Every array op module uses these helpers. ``slice_entries`` (what a strided-slice spec means)
lives here too, because ``known_elements`` sees through strided slices.
"""

from __future__ import annotations

import builtins

import numpy as np

from tensorweave.graph import dtypes
from tensorweave.graph.core import Tensor
from tensorweave.graph.shapes import Dimension, TensorShape
from tensorweave.ops.common import convert_to_tensor
from tensorweave.ops.registry import constant_value

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


def _spec_values(tensor):
    """A 1-D spec tensor's elements: ints, None where unknown; None if its length is unknown."""
    elements = known_elements(tensor)
    if elements is None or elements.ndim != 1:
        return None
    return [e if _is_int(e) else None for e in elements]


# -- what a strided-slice spec means -----------------------------------------------------------
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
