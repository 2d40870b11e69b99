"""GraphDef JSON: a graph as plain data, for files, tests and remote workers.

    {"format": "tensorweave.graphdef", "version": 1, "seed": null,
     "nodes": [{"name": "MatMul", "op": "MatMul", "inputs": ["x:0", "W/read:0", "^init"],
                "device": "/device:CPU:0", "attrs": {"transpose_a": false, ...},
                "outputs": [{"dtype": "float32", "shape": [null, 10]}],
                "location": ["train.py", 12]}, ...]}

Nodes are listed in creation order (a reader must not rely on it: ``import_graph_def`` sorts
them). ``shape`` is null for an unknown rank and holds null for an unknown dimension.

Attr values round-trip exactly. JSON's own types carry bool, int, finite float, str, list and
dicts with string keys; everything else is an object tagged with ``"__type__"``:

    {"__type__": "float", "value": "nan" | "inf" | "-inf"}
    {"__type__": "tuple", "items": [...]}
    {"__type__": "dict", "items": [[key, value], ...]}     (non-string keys, or a "__type__" key)
    {"__type__": "dtype", "name": "float32"}
    {"__type__": "shape", "dims": null | [null, 10]}
    {"__type__": "tensor", "dtype": "bfloat16", "shape": [2, 3], "data": "<base64>"}
    {"__type__": "scalar", "dtype": "float32", "data": "<base64>"}   (a numpy scalar)
    {"__type__": "bytes", "data": "<base64>"}
    {"__type__": "complex", "real": 1.0, "imag": 2.0}

Tensor data is the raw little-endian bytes of the array in C order; string tensors carry their
elements in ``"items"`` instead of ``"data"``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import sys

import numpy as np

from tensorweave.graph.dtypes import DType, as_dtype
from tensorweave.graph.shapes import TensorShape

__all__ = ["FORMAT", "VERSION", "graph_to_dict", "to_json", "encode_attr", "decode_attr",
           "load_graph_def", "parse_graph_def", "NodeRecord"]

FORMAT = "tensorweave.graphdef"
VERSION = 1
_TAG = "__type__"


# -- writing --------------------------------------------------------------------------------------
def graph_to_dict(graph) -> dict:
    """The GraphDef of ``graph`` as a JSON-ready dict (see the module docstring)."""
    return {"format": FORMAT, "version": VERSION, "seed": graph.seed,
            "nodes": [_node_to_dict(op) for op in graph.get_operations()]}


def to_json(graph_or_dict, indent=None) -> str:
    """The GraphDef of a graph (or a GraphDef dict) as JSON text with sorted keys."""
    data = graph_or_dict if isinstance(graph_or_dict, dict) else graph_to_dict(graph_or_dict)
    separators = (",", ":") if indent is None else (",", ": ")
    # allow_nan=False: a NaN that escaped encoding would make text other readers reject.
    return json.dumps(data, sort_keys=True, indent=indent, separators=separators,
                      allow_nan=False)


def _node_to_dict(op) -> dict:
    attrs = {}
    for key, value in op.attrs.items():
        try:
            attrs[key] = encode_attr(value)
        except TypeError as e:
            raise TypeError(f"cannot serialize attr {key!r} of op {op.name!r} ({op.type}): "
                            f"{e}") from None
    location = op.location()
    return {
        "name": op.name,
        "op": op.type,
        "inputs": [t.name for t in op.inputs] + ["^" + c.name for c in op.control_inputs],
        "device": op.device,
        "attrs": attrs,
        "outputs": [{"dtype": t.dtype.name, "shape": _shape_to_json(t.shape)}
                    for t in op.outputs],
        "location": None if location is None else [location[0], location[1]],
    }


def _shape_to_json(shape: TensorShape):
    dims = shape.as_tuple()
    return None if dims is None else list(dims)


def encode_attr(value):
    """A JSON-ready form of an attr value; ``decode_attr`` gives back an equal value."""
    # Exact type checks: np.float64 is a float and np.str_ a str, but they must not read back
    # as Python values of another type.
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, (np.str_, np.bytes_)):
        return encode_attr(_plain(value))  # numpy has no fixed-size string dtype in tensorweave
    if isinstance(value, np.generic):
        return _encode_scalar(value)
    if isinstance(value, np.ndarray):
        return _encode_array(value)
    if type(value) is float:
        return value if math.isfinite(value) else {_TAG: "float", "value": repr(value)}
    if isinstance(value, DType):
        return {_TAG: "dtype", "name": value.name}
    if isinstance(value, TensorShape):
        return {_TAG: "shape", "dims": _shape_to_json(value)}
    if type(value) is list:
        return [encode_attr(v) for v in value]
    if type(value) is tuple:
        return {_TAG: "tuple", "items": [encode_attr(v) for v in value]}
    if type(value) is dict:
        return _encode_dict(value)
    if type(value) is bytes:
        return {_TAG: "bytes", "data": _b64(value)}
    if type(value) is complex:
        return {_TAG: "complex", "real": encode_attr(value.real), "imag": encode_attr(value.imag)}
    raise TypeError(f"values of type {type(value).__name__} have no GraphDef encoding")


def _encode_dict(value: dict):
    if all(type(k) is str for k in value) and _TAG not in value:
        return {k: encode_attr(v) for k, v in value.items()}
    return {_TAG: "dict", "items": [[encode_attr(k), encode_attr(v)] for k, v in value.items()]}


def _encode_array(array: np.ndarray) -> dict:
    if array.dtype.kind in "US":
        # Fixed-width strings would read back as object arrays: not the same value.
        raise TypeError(f"arrays of numpy dtype {array.dtype} have no GraphDef encoding "
                        f"(string tensors hold Python str/bytes in dtype=object arrays)")
    dtype = _dtype_name(array.dtype.newbyteorder("="))
    if dtype == "string":
        return {_TAG: "tensor", "dtype": dtype, "shape": list(array.shape),
                "items": [encode_attr(_plain(x)) for x in array.reshape(-1)]}
    return {_TAG: "tensor", "dtype": dtype, "shape": list(array.shape),
            "data": _b64(_little_endian_bytes(array))}


def _encode_scalar(value: np.generic) -> dict:
    dtype = _dtype_name(value.dtype)
    return {_TAG: "scalar", "dtype": dtype, "data": _b64(_little_endian_bytes(np.asarray(value)))}


def _dtype_name(np_dtype) -> str:
    try:
        return as_dtype(np_dtype).name
    except TypeError:
        raise TypeError(f"arrays of numpy dtype {np_dtype} have no GraphDef encoding") from None


def _plain(x):
    """A string-array element as a Python str or bytes."""
    if isinstance(x, str):
        return str(x)
    if isinstance(x, bytes):
        return bytes(x)
    raise TypeError(f"string tensors hold str or bytes, not {type(x).__name__}")


def _little_endian_bytes(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        array = array.byteswap()
    return array.tobytes()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- reading --------------------------------------------------------------------------------------
def decode_attr(value):
    """The attr value an ``encode_attr`` result stands for."""
    if isinstance(value, list):
        return [decode_attr(v) for v in value]
    if not isinstance(value, dict):
        return value
    if _TAG not in value:
        return {k: decode_attr(v) for k, v in value.items()}
    tag = value[_TAG]
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise ValueError(f"unknown encoded attr type {tag!r}")
    try:
        return decoder(value)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed encoded {tag!r} attr value: {e}") from None


def _decode_float(value):
    text = value["value"]
    if text not in ("nan", "inf", "-inf"):
        raise ValueError(f"{text!r} is not nan, inf or -inf")
    return float(text)


def _decode_array(value) -> np.ndarray:
    dtype = as_dtype(value["dtype"])
    shape = tuple(int(d) for d in value["shape"])
    if dtype.name == "string":
        items = [decode_attr(v) for v in value["items"]]
        array = np.empty(len(items), dtype=object)
        array[:] = items
        array = array.reshape(shape)
    else:
        array = _from_little_endian(value["data"], dtype.np).reshape(shape)
    array.flags.writeable = False  # attr arrays are shared by every run of the op
    return array


def _decode_scalar(value):
    return _from_little_endian(value["data"], as_dtype(value["dtype"]).np)[0]


def _from_little_endian(data: str, np_dtype) -> np.ndarray:
    array = np.frombuffer(base64.b64decode(data.encode("ascii"), validate=True), dtype=np_dtype)
    if sys.byteorder == "big":
        array = array.byteswap()
    return array.copy()


def _decode_dict(value) -> dict:
    return {decode_attr(k): decode_attr(v) for k, v in value["items"]}


_DECODERS = {
    "float": _decode_float,
    "tuple": lambda v: tuple(decode_attr(x) for x in v["items"]),
    "dict": _decode_dict,
    "dtype": lambda v: as_dtype(v["name"]),
    "shape": lambda v: TensorShape(v["dims"]),
    "tensor": _decode_array,
    "scalar": _decode_scalar,
    "bytes": lambda v: base64.b64decode(v["data"].encode("ascii"), validate=True),
    "complex": lambda v: complex(decode_attr(v["real"]), decode_attr(v["imag"])),
}


@dataclasses.dataclass
class NodeRecord:
    """One node of a parsed GraphDef, with its attrs decoded and its inputs split."""

    name: str
    op: str
    inputs: list          # [(node name, output index), ...]
    control_inputs: list  # [node name, ...]
    device: str
    attrs: dict
    outputs: list         # [(DType, TensorShape), ...]
    location: tuple | None


def load_graph_def(source) -> dict:
    """A GraphDef dict from a dict, a JSON string, or the path of a ``.json`` file."""
    if isinstance(source, dict):
        return source
    if isinstance(source, os.PathLike) or (isinstance(source, str)
                                           and source.endswith(".json")
                                           and not source.lstrip().startswith("{")):
        with open(source, encoding="utf-8") as f:
            text = f.read()
        where = f"GraphDef file {os.fspath(source)}"
    elif isinstance(source, (str, bytes)):
        text, where = source, "GraphDef JSON"
    else:
        raise TypeError(f"a GraphDef is a dict, a JSON string or a .json path, not "
                        f"{type(source).__name__}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object at the top level")
    return data


def parse_graph_def(source) -> tuple[list[NodeRecord], object]:
    """Check the structure of a GraphDef and decode it: ``(nodes, seed)``.

    Raises ValueError for a wrong format tag or version, a missing or mistyped field, or a
    malformed input reference, naming the node. References to unknown nodes, duplicate names
    and cycles are the importer's to check (they need the whole node list).
    """
    data = load_graph_def(source)
    if data.get("format") != FORMAT:
        raise ValueError(f"not a tensorweave GraphDef: format is {data.get('format')!r}, "
                         f"expected {FORMAT!r}")
    if data.get("version") != VERSION:
        raise ValueError(f"unsupported GraphDef version {data.get('version')!r} "
                         f"(this reader knows version {VERSION})")
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        raise ValueError("GraphDef: 'nodes' must be a list")
    return [_parse_node(i, node) for i, node in enumerate(nodes)], data.get("seed")


_NODE_FIELDS = {"name": str, "op": str, "inputs": list, "device": str, "attrs": dict,
                "outputs": list}


def _parse_node(index: int, node) -> NodeRecord:
    if not isinstance(node, dict):
        raise ValueError(f"GraphDef node #{index} is not an object")
    label = f"GraphDef node #{index} ({node.get('name')!r})"
    for field, kind in _NODE_FIELDS.items():
        if field not in node:
            raise ValueError(f"{label}: missing key {field!r}")
        if not isinstance(node[field], kind):
            raise ValueError(f"{label}: {field!r} must be a {kind.__name__}")
    label = f"GraphDef node {node['name']!r}"
    inputs, controls = _parse_inputs(label, node["inputs"])
    try:
        attrs = {key: decode_attr(value) for key, value in node["attrs"].items()}
        outputs = [_parse_output(spec) for spec in node["outputs"]]
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{label}: {e}") from None
    return NodeRecord(node["name"], node["op"], inputs, controls, node["device"], attrs, outputs,
                      _parse_location(label, node.get("location")))


def _parse_inputs(label, refs):
    """Split ``["a:0", "b", "^c"]`` into data inputs [("a", 0), ("b", 0)] and controls ["c"]."""
    inputs, controls = [], []
    for ref in refs:
        if not isinstance(ref, str) or ref in ("", "^"):
            raise ValueError(f"{label}: malformed input reference {ref!r}")
        if ref.startswith("^"):
            controls.append(ref[1:])
            continue
        if controls:
            raise ValueError(f"{label}: data input {ref!r} listed after a control input")
        name, sep, index = ref.rpartition(":")
        if not sep:
            inputs.append((ref, 0))
        elif name and index.isdigit():
            inputs.append((name, int(index)))
        else:
            raise ValueError(f"{label}: malformed input reference {ref!r} "
                             f"(expected 'node:index' or '^node')")
    return inputs, controls


def _parse_output(spec):
    if not isinstance(spec, dict) or "dtype" not in spec or "shape" not in spec:
        raise ValueError(f"output spec {spec!r} must have 'dtype' and 'shape'")
    dims = spec["shape"]
    if dims is not None and not (isinstance(dims, list)
                                 and all(d is None or type(d) is int for d in dims)):
        raise ValueError(f"output shape {dims!r} must be null or a list of ints and nulls")
    return as_dtype(spec["dtype"]), TensorShape(dims)


def _parse_location(label, location):
    if location is None:
        return None
    if not (isinstance(location, list) and len(location) == 2 and isinstance(location[0], str)
            and type(location[1]) is int):
        raise ValueError(f"{label}: 'location' must be null or [file, line]")
    return location[0], location[1]
