"""What the op families share: converting Python values to tensors, checking input dtypes, and
the shape/dtype inference rules most ops reuse."""

from __future__ import annotations

import numpy as np

from tensorweave.graph import core, dtypes
from tensorweave.graph.core import Tensor, get_default_graph
from tensorweave.graph.dtypes import DType, as_dtype
from tensorweave.graph.shapes import TensorShape, broadcast_shapes
from tensorweave.ops.registry import apply_op

FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})
INTEGERS = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})
SIGNED = frozenset({"int8", "int16", "int32", "int64"})
NUMBERS = FLOATS | INTEGERS
ALL_TYPES = NUMBERS | {"bool"}

_CONVERSIONS: list = []


def register_tensor_conversion_function(base_type, conversion_func):
    """Teach ``convert_to_tensor`` a new type: ``conversion_func(value, dtype, name) -> Tensor``."""
    _CONVERSIONS.append((base_type, conversion_func))


def convert_to_tensor(value, dtype=None, name=None, preferred_dtype=None) -> Tensor:
    """A Tensor for ``value``: Tensors pass through, Python and numpy values become constants."""
    dtype = None if dtype is None else as_dtype(dtype)
    if isinstance(value, Tensor):
        if dtype is not None and value.dtype is not dtype:
            raise ValueError(f"tensor conversion requested dtype {dtype.name} for tensor "
                             f"{value.name} of dtype {value.dtype.name}")
        return value
    for base_type, fn in _CONVERSIONS:
        if isinstance(value, base_type):
            return fn(value, dtype=dtype, name=name)
    if isinstance(value, core.Operation):
        raise TypeError(f"cannot use the operation {value.name} as a tensor (it has no value; "
                        f"use one of its outputs, e.g. op.outputs[0])")
    if _contains_tensor(value):
        return _pack(value, dtype, name)
    if dtype is None and preferred_dtype is not None:
        try:
            return constant_tensor(to_numpy(value, as_dtype(preferred_dtype)), name)
        except (TypeError, ValueError):
            pass
    return constant_tensor(to_numpy(value, dtype), name)


def constant_tensor(array: np.ndarray, name=None) -> Tensor:
    array = np.array(array, copy=True) if array.flags.writeable else array
    array.flags.writeable = False
    return apply_op("Const", [], {"value": array, "dtype": as_dtype(array.dtype)},
                    name=name or "Const").outputs[0]


def to_numpy(value, dtype: DType | None) -> np.ndarray:
    """Convert a Python or numpy value with TF1's rules (Python ints are int32, floats float32;
    a Python value that does not fit ``dtype`` is a TypeError; numpy values are cast)."""
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        return array if dtype is None else array.astype(dtype.np)
    try:
        array = np.array(value)
    except ValueError as e:
        raise ValueError(f"cannot convert {value!r} to a tensor: {e}") from None
    if array.dtype == object:
        raise TypeError(f"cannot convert {value!r} to a tensor: ragged or of mixed types")
    if dtype is None:
        return _default_python_array(array)
    _check_python_fits(value, array, dtype)
    return array.astype(dtype.np)


def _default_python_array(array):
    if array.dtype.kind == "i":
        info = np.iinfo(np.int32)
        if array.size == 0 or (array.min() >= info.min and array.max() <= info.max):
            return array.astype(np.int32)
        return array.astype(np.int64)
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    if array.dtype.kind in "US":
        return array.astype(object)
    return array


def _check_python_fits(value, array, dtype):
    kind = array.dtype.kind
    if array.size == 0:
        return
    if dtype.is_bool and kind != "b":
        raise TypeError(f"expected bool, got {value!r}")
    if dtype.is_integer:
        if kind not in "iu":
            raise TypeError(f"expected {dtype.name}, got {value!r} of type "
                            f"'{type(value).__name__}' instead")
        info = np.iinfo(dtype.np)
        if array.min() < info.min or array.max() > info.max:
            raise ValueError(f"value {value!r} is out of range for {dtype.name}")
    if dtype.is_floating and kind not in "iuf":
        raise TypeError(f"expected {dtype.name}, got {value!r} of type "
                        f"'{type(value).__name__}' instead")


def _contains_tensor(value) -> bool:
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, Tensor) or _contains_tensor(v) for v in value)
    return False


def _pack(value, dtype, name):
    """A list holding tensors becomes a ``Pack`` of its elements (TF1's auto-packing)."""
    elements = [_pack(v, dtype, None) if _contains_tensor(v) else v for v in value]
    tensors = [e for e in elements if isinstance(e, Tensor)]
    dtype = dtype or tensors[0].dtype
    elements = [convert_to_tensor(e, dtype=dtype) for e in elements]
    return apply_op("Pack", elements, {"axis": 0, "N": len(elements)},
                    name=name or "packed").outputs[0]


# -- input checks ---------------------------------------------------------------------------------
def user_location() -> str:
    frames = core.user_frames()
    return f"{frames[0][0]}:{frames[0][1]}" if frames else "<unknown location>"


def _would_be(op_type, name):
    graph = get_default_graph()
    full = graph.unique_name(name or op_type, mark_as_used=False)
    device = "".join(d for d in graph._device_stack if isinstance(d, str)) or "no device requested"
    return f"op '{full}' ({op_type} on {device}), created at {user_location()}"


def binary_inputs(op_type, x, y, name=None):
    """Convert ``x`` and ``y`` to tensors of one dtype (a Python value takes the other's dtype)."""
    if isinstance(y, Tensor) and not isinstance(x, Tensor):
        x = _convert_for(op_type, x, y.dtype, name, "x")
    x = _convert_for(op_type, x, None, name, "x")
    y = _convert_for(op_type, y, x.dtype, name, "y") if not isinstance(y, Tensor) else y
    if x.dtype is not y.dtype:
        raise TypeError(f"{_would_be(op_type, name)}: input 'y' has dtype {y.dtype.name}, which "
                        f"does not match dtype {x.dtype.name} of input 'x' (use tw.cast)")
    return x, y


def _convert_for(op_type, value, dtype, name, arg):
    if isinstance(value, Tensor):
        return value
    try:
        return convert_to_tensor(value, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{_would_be(op_type, name)}: input '{arg}': {e}") from None


def check_dtype(op_type, tensor: Tensor, allowed, arg="x", name=None):
    if tensor.dtype.name not in allowed:
        raise TypeError(f"{_would_be(op_type, name)}: input '{arg}' has dtype "
                        f"{tensor.dtype.name}; allowed: {', '.join(sorted(allowed))}")


# -- inference rules ------------------------------------------------------------------------------
def same_as_input(op):
    """One output with the dtype and shape of input 0."""
    x = op.inputs[0]
    return [(x.dtype, x.shape)]


def broadcast_inputs(op):
    """One output of the inputs' common dtype and their broadcast shape."""
    return [(op.inputs[0].dtype, broadcast_shape_of(op.inputs))]


def broadcast_to_bool(op):
    return [(dtypes.bool_, broadcast_shape_of(op.inputs))]


def broadcast_shape_of(tensors) -> TensorShape:
    shape = TensorShape([])
    for t in tensors:
        shape = broadcast_shapes(shape, t.shape)
    return shape


def normalize_axis(axis: int, rank: int | None, what="axis") -> int:
    if rank is None:
        return axis
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"{what} {axis} is out of range for a tensor of rank {rank}")
    return axis % rank if rank else 0


def output(op) -> Tensor:
    return op.outputs[0]
