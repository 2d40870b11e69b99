"""A compact, exact text form of a graph: one op per line, in creation order.

    %x:0 f32[?,784] = Placeholder() {dtype=f32, shape=[?,784]}
    %MatMul:0 f32[?,10] = MatMul(%x:0, %W/read:0) {transpose_a=False, transpose_b=False}
    %init = NoOp() ^W/Assign ^b/Assign

Tests of passes compare these strings before and after, so the text is deterministic: attrs are
sorted by name, every value prints the same way each time (no ids, no addresses), large constant
values are abbreviated to their type (``<f32[784,10]>``) and small ones are shown in full.
"""

from __future__ import annotations

import numpy as np

from tensorweave.graph.dtypes import DType, as_dtype
from tensorweave.graph.shapes import TensorShape

__all__ = ["format_graph", "format_op", "format_type", "format_value", "short_dtype"]

# Arrays with at most this many elements print their values; larger ones only their type.
SMALL_ARRAY = 10

_SHORT_DTYPES = {
    "bool": "bool", "string": "str",
    "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64",
    "uint8": "u8", "uint16": "u16", "uint32": "u32", "uint64": "u64",
    "float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64",
}


def format_graph(graph, ops=None, *, devices: bool = True, locations: bool = False) -> str:
    """The text of ``graph`` (or of ``ops``, a subset of it), one op per line, ending in newline.

    ``devices`` shows each op's requested device (``@/device:CPU:0``) when it has one;
    ``locations`` appends where the op was created (``# file.py:12``).
    """
    if ops is None:
        ops = graph.get_operations()
    else:
        position = {op: i for i, op in enumerate(graph.get_operations())}
        ops = sorted(ops, key=lambda op: position.get(op, len(position)))
    return "".join(format_op(op, devices=devices, locations=locations) + "\n" for op in ops)


def format_op(op, *, devices: bool = True, locations: bool = False) -> str:
    """One line for one op: outputs, type, inputs, attrs, device, control inputs."""
    line = f"{_format_outputs(op)} = {op.type}({', '.join('%' + t.name for t in op.inputs)})"
    if op.attrs:
        attrs = ", ".join(f"{key}={format_value(op.attrs[key])}" for key in sorted(op.attrs))
        line += " {" + attrs + "}"
    if devices and op.device:
        line += f" @{op.device}"
    for control in op.control_inputs:
        line += f" ^{control.name}"
    if locations:
        line += f"  # {op.location_str()}"
    return line


def _format_outputs(op) -> str:
    if not op.outputs:
        return "%" + op.name
    return ", ".join(f"%{t.name} {format_type(t.dtype, t.shape)}" for t in op.outputs)


def short_dtype(dtype) -> str:
    """``f32`` for float32, ``i64`` for int64, ``bool``, ``str``..."""
    name = as_dtype(dtype).name
    return _SHORT_DTYPES.get(name, name)


def format_shape(shape: TensorShape) -> str:
    """``[?,10]`` with ``?`` for an unknown dimension; ``[*]`` for an unknown rank."""
    dims = shape.as_tuple()
    if dims is None:
        return "[*]"
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def format_type(dtype, shape: TensorShape) -> str:
    """``f32[?,10]``: the dtype and static shape of a tensor."""
    return short_dtype(dtype) + format_shape(shape)


def format_value(value) -> str:
    """A deterministic text for an attr value (containers are printed recursively)."""
    if isinstance(value, DType):
        return short_dtype(value)
    if isinstance(value, TensorShape):
        return format_shape(value)
    if isinstance(value, np.ndarray):
        return _format_array(value)
    if isinstance(value, np.generic):
        return _format_array(np.asarray(value))
    if value is None or isinstance(value, (bool, int, float, str, bytes, complex)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(format_value(v) for v in value)
        return "(" + inner + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: repr(kv[0]))
        return "{" + ", ".join(f"{format_value(k)}: {format_value(v)}" for k, v in items) + "}"
    # Anything else would print with a memory address; its type name is stable.
    return f"<{type(value).__name__}>"


def _format_array(array: np.ndarray) -> str:
    """``<f32[2] [1.0, 2.5]>`` for a small array, ``<f32[784,10]>`` for a large one."""
    try:
        kind = format_type(as_dtype(array.dtype), TensorShape(array.shape))
    except TypeError:
        kind = f"{array.dtype}" + format_shape(TensorShape(array.shape))
    if array.size > SMALL_ARRAY:
        return f"<{kind}>"
    return f"<{kind} {_format_elements(array)}>"


def _format_elements(array: np.ndarray) -> str:
    if array.ndim == 0:
        return _format_scalar(array[()])
    if array.ndim == 1:
        # Indexing (not iterating) keeps numpy scalars, whose str() has the right precision.
        return "[" + ", ".join(_format_scalar(array[i]) for i in range(len(array))) + "]"
    return "[" + ", ".join(_format_elements(array[i]) for i in range(len(array))) + "]"


def _format_scalar(x) -> str:
    # str() of a numpy float is the shortest text that reads back as the same value in its own
    # precision (0.1 for float32 0.1, where float(x) would print 0.10000000149011612).
    if isinstance(x, str):
        return repr(str(x))  # str(): a numpy str_ would repr as "np.str_('a')"
    if isinstance(x, bytes):
        return repr(bytes(x))
    if isinstance(x, np.bool_):
        return "True" if x else "False"
    return str(x)
