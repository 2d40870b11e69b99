"""GraphDef JSON: attr encoding, the exact round trip, import_graph_def, and write_graph."""

import importlib
import json
import math
import os
import pathlib

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import tensorweave as tw
from tensorweave.graph import dtypes
from tensorweave.graph.printer import format_graph
from tensorweave.graph.serialization import (FORMAT, VERSION, decode_attr, encode_attr,
                                             graph_to_dict, to_json)
from tensorweave.ops.importer import import_graph_def, verify_with_registry
from tensorweave.train import write_graph
from tests.graphgen import random_graphs


# -- attr values ----------------------------------------------------------------------------------
def _through_json(value):
    return decode_attr(json.loads(json.dumps(encode_attr(value), allow_nan=False)))


def _same(a, b) -> bool:
    """Equal values of the same types, all the way down (arrays: dtype, shape and bytes)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if a.dtype == object:
            return a.shape == b.shape and all(_same(x, y) for x, y in zip(a.ravel(), b.ravel()))
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, complex):
        return _same(a.real, b.real) and _same(a.imag, b.imag)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


ATTR_VALUES = {
    "none": None,
    "true": True,
    "false": False,
    "int": 3,
    "big_int": 2 ** 70,
    "negative_int": -5,
    "float": 0.1,
    "negative_zero": -0.0,
    "float_integral": 2.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "minus_inf": float("-inf"),
    "str": "SAME",
    "unicode": "ünï\u2603",
    "bytes": b"\x00\xff raw",
    "complex": complex(1.5, float("nan")),
    "list": [1, 2.5, "x", None],
    "empty_list": [],
    "tuple": (1, 2),
    "one_tuple": (1,),
    "empty_tuple": (),
    "nested": [(1, [2, (3,)]), {"k": (4,)}],
    "dict": {"b": 1, "a": [True]},
    "dict_int_keys": {1: "one", (2, 3): "pair"},
    "dict_with_tag_key": {"__type__": "tensor", "data": 1},
    "dtype": tw.bfloat16,
    "dtype_string": tw.string,
    "shape": tw.TensorShape([None, 3]),
    "shape_scalar": tw.TensorShape([]),
    "shape_unknown_rank": tw.TensorShape(None),
    "shapes_in_list": [tw.TensorShape([1]), tw.TensorShape(None)],
    "np_float32": np.float32(0.1),
    "np_float64": np.float64(1 / 3),
    "np_int8": np.int8(-3),
    "np_uint64": np.uint64(2 ** 64 - 1),
    "np_bool": np.bool_(True),
    "np_bfloat16": ml_dtypes.bfloat16(1.5),
    "array_2d": np.arange(12, dtype=np.float32).reshape(3, 4),
    "array_0d": np.array(7, np.int16),
    "array_empty": np.zeros((0, 3), np.float64),
    "array_bool": np.array([[True, False], [False, True]]),
    "array_bfloat16": np.array([1.5, -0.0, np.inf, np.nan], ml_dtypes.bfloat16),
    "array_float16": np.array([65504, -1e-4], np.float16),
    "array_nan_payload": np.array([np.nan, -np.nan], np.float32),
    "array_uint64": np.array([0, 2 ** 64 - 1], np.uint64),
    "array_int64": np.array([-(2 ** 63), 2 ** 63 - 1], np.int64),
    "array_strings": np.array(["a", "", "ü"], dtype=object),
    "array_bytes": np.array([[b"\x00", b"xy"]], dtype=object),
    "array_fortran": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
    "array_big_endian": np.array([1.5, 2.5], dtype=">f4"),
}


@pytest.mark.parametrize("key", sorted(ATTR_VALUES))
def test_attr_values_round_trip_exactly(key):
    value = ATTR_VALUES[key]
    decoded = _through_json(value)
    if key == "array_big_endian":  # read back in native byte order, same values
        assert decoded.dtype == np.float32 and decoded.tolist() == value.tolist()
        return
    assert _same(value, decoded), f"{value!r} came back as {decoded!r}"


@pytest.mark.parametrize("dtype", [d for d in dtypes.ALL if d is not dtypes.string],
                         ids=lambda d: d.name)
def test_every_dtype_round_trips_as_an_array_and_a_scalar(dtype):
    array = (np.arange(6) % 3).astype(dtype.np).reshape(2, 3)
    assert _same(array, _through_json(array))
    assert _same(array[0, 1], _through_json(array[0, 1]))


def test_decoded_arrays_are_read_only():
    decoded = _through_json(np.ones(3, np.float32))
    assert not decoded.flags.writeable


def test_nan_and_inf_never_reach_the_json_text():
    text = json.dumps(encode_attr([float("nan"), float("inf"), float("-inf")]), allow_nan=False)
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.parametrize("value", [object(), {1, 2}, np.array([1 + 2j], np.complex64),
                                   np.array(["a"], dtype="<U1")])
def test_values_without_an_encoding_are_a_type_error(value):
    with pytest.raises(TypeError, match="no GraphDef encoding"):
        encode_attr(value)


def test_an_unserializable_attr_names_the_op_and_attr():
    g = tw.Graph()
    g.create_op("Fake", [], {"callback": object()}, "fake", infer=lambda op: [])
    with pytest.raises(TypeError, match="attr 'callback' of op 'fake' \\(Fake\\)"):
        to_json(g)


@pytest.mark.parametrize("encoded, message", [
    ({"__type__": "mystery"}, "unknown encoded attr type 'mystery'"),
    ({"__type__": "float", "value": "1.5"}, "malformed encoded 'float'"),
    ({"__type__": "tensor", "dtype": "float32", "shape": [2], "data": "AAAA"},
     "malformed encoded 'tensor'"),
    ({"__type__": "tensor", "dtype": "nope", "shape": [], "data": ""}, "malformed"),
    ({"__type__": "dtype"}, "malformed encoded 'dtype'"),
])
def test_malformed_encoded_values_are_a_value_error(encoded, message):
    with pytest.raises(ValueError, match=message):
        decode_attr(encoded)


# -- the GraphDef dict ----------------------------------------------------------------------------
def _small_graph():
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [None, 3], name="x")
        u = tw.placeholder(tw.int32, name="u")
        init = tw.no_op(name="init")
        w = tw.constant(np.ones((3, 2), np.float32), name="W")
        with tw.control_dependencies([init]), tw.device("/gpu:0"):
            line = _next_line()
            y = tw.matmul(x, w, name="y")
    return g, x, u, y, line


def _next_line():
    import sys
    return sys._getframe(1).f_lineno + 1


def test_graph_to_dict_layout():
    g, x, u, y, line = _small_graph()
    g.seed = 42
    data = graph_to_dict(g)
    assert data["format"] == FORMAT == "tensorweave.graphdef"
    assert data["version"] == VERSION == 1
    assert data["seed"] == 42
    assert [n["name"] for n in data["nodes"]] == ["x", "u", "init", "W", "y"]
    node = data["nodes"][-1]
    assert node["op"] == "MatMul"
    assert node["inputs"] == ["x:0", "W:0", "^init"]
    assert node["device"] == "/device:GPU:0"
    assert node["attrs"] == {"transpose_a": False, "transpose_b": False}
    assert node["outputs"] == [{"dtype": "float32", "shape": [None, 2]}]
    assert node["location"][1] == line
    assert os.path.basename(node["location"][0]) == "test_serialization.py"
    assert data["nodes"][1]["outputs"] == [{"dtype": "int32", "shape": None}]
    assert data["nodes"][2]["outputs"] == []


def test_to_json_is_sorted_and_stable():
    g, *_ = _small_graph()
    text = to_json(g)
    assert text == to_json(g)
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert to_json(g, indent=1) == json.dumps(json.loads(text), sort_keys=True, indent=1)
    assert to_json(graph_to_dict(g)) == text


# -- the round trip -------------------------------------------------------------------------------
def _round_trip(graph, strict_shapes=True):
    """Check that importing the JSON of ``graph`` with no prefix rebuilds it exactly."""
    verify_with_registry(graph, strict_shapes=strict_shapes)
    text = to_json(graph)
    rebuilt = tw.Graph()
    with rebuilt.as_default():
        import_graph_def(text, name="")
    verify_with_registry(rebuilt, strict_shapes=strict_shapes)
    assert format_graph(rebuilt, locations=True) == format_graph(graph, locations=True)
    assert to_json(rebuilt) == text
    return rebuilt


def _build_mlp():
    x = tw.placeholder(tw.float32, [None, 4], name="x")
    with tw.name_scope("layer"):
        w = tw.constant(np.linspace(-1, 1, 8, dtype=np.float32).reshape(4, 2), name="w")
        h = tw.add(tw.matmul(x, w), tw.constant([0.5, -0.5]))
    return tw.add_n([h, h, tw.identity(h)])


def _build_with_gradients():
    x = tw.placeholder(tw.float32, [2, 3], name="x")
    w = tw.placeholder(tw.float32, [3, 1], name="w")
    b = tw.placeholder(tw.float32, [1], name="b")
    y = tw.add(tw.matmul(x, w), b)
    return tw.gradients(y, [x, w, b])


def _build_control_and_devices():
    a = tw.constant(1.0, name="a")
    with tw.device("/job:worker/task:1"):
        with tw.device("/gpu:0"):
            b = tw.identity(a, name="b")
        with tw.colocate_with(b):
            c = tw.identity(b, name="c")
    with tw.control_dependencies([b, c]):
        d = tw.no_op(name="d")
    return tw.group(d, c, name="all")


def _build_shapes_and_dtypes():
    tw.placeholder(tw.bfloat16, None, name="unknown_rank")
    tw.placeholder(tw.bool, [], name="flag")
    tw.placeholder_with_default(tw.constant([1, 2], tw.int64), [None], name="ids")
    s = tw.shape(tw.placeholder(tw.float16, [None, 5, None]), out_type=tw.int64)
    r = tw.reshape(tw.placeholder(tw.uint8, [4, 6]), [2, -1, 3])
    tw.zeros_like(r)
    tw.ones_like(tw.constant([["a", "b"]]))
    tw.constant(np.array([np.nan, np.inf], np.float32), name="special")
    return s


def _build_refined_shapes():
    x = tw.placeholder(tw.float32, [None, 3], name="x")
    y = tw.identity(x, name="y")
    y.set_shape([4, 3])  # more specific than inference
    x.set_shape([None, 3])
    return y


BUILDERS = [_build_mlp, _build_with_gradients, _build_control_and_devices,
            _build_shapes_and_dtypes, _build_refined_shapes]


@pytest.mark.parametrize("build", BUILDERS, ids=[b.__name__[len("_build_"):] for b in BUILDERS])
def test_round_trip_of_hand_built_graphs(build):
    g = tw.Graph()
    with g.as_default():
        build()
    _round_trip(g)


def test_round_trip_keeps_a_late_refinement_of_an_input():
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [None, 3], name="x")
        y = tw.identity(x, name="y")
        x.set_shape([5, 3])  # y keeps [?,3]: consumers are not re-inferred
    rebuilt = _round_trip(g, strict_shapes=False)
    assert rebuilt.get_tensor_by_name("y:0").shape == tw.TensorShape([None, 3])


def test_round_trip_keeps_the_seed():
    g = tw.Graph()
    g.seed = 7
    with g.as_default():
        tw.constant(1)
    rebuilt = _round_trip(g)
    assert rebuilt.seed == 7


def _registry_cases():
    """Every OpCase of the op tables (tests/ops/cases_*.py), as the op families grow."""
    folder = pathlib.Path(__file__).parent.parent / "ops"
    cases = []
    for path in sorted(folder.glob("cases_*.py")):
        cases.extend(importlib.import_module(f"tests.ops.{path.stem}").CASES)
    return cases


REGISTRY_CASES = _registry_cases()


@pytest.mark.parametrize("case", REGISTRY_CASES, ids=[c.id for c in REGISTRY_CASES])
def test_round_trip_of_every_registry_case(case):
    for known_shapes in (True, False):
        g = tw.Graph()
        with g.as_default():
            inputs = [tw.placeholder(tw.as_dtype(np.asarray(v).dtype),
                                     np.shape(v) if known_shapes else None)
                      for v in case.inputs]
            out = case.build(*inputs)
            outs = [o for o in (out if isinstance(out, (list, tuple)) else [out])
                    if isinstance(o, tw.Tensor)]
            floats = [i for i in inputs if i.dtype.is_floating]
            if case.grad and floats and known_shapes:
                differentiable = [o for o in outs if o.dtype.is_floating]
                if differentiable:
                    tw.gradients(differentiable, floats)
        _round_trip(g)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=random_graphs())
def test_round_trip_of_random_graphs(data):
    graph = data[0]
    _round_trip(graph)


# -- import_graph_def -----------------------------------------------------------------------------
def _json_of(build):
    g = tw.Graph()
    with g.as_default():
        build()
    return to_json(g)


def _two_layer():
    x = tw.placeholder(tw.float32, [None, 3], name="x")
    w = tw.constant(np.ones((3, 2), np.float32), name="w")
    with tw.device("/gpu:0"):
        y = tw.matmul(x, w, name="y")
    with tw.control_dependencies([y]):
        tw.no_op(name="train_op")


def test_import_prefixes_names_with_import_and_uniquifies_the_prefix():
    text = _json_of(_two_layer)
    g = tw.Graph()
    with g.as_default():
        import_graph_def(text)
        tw.import_graph_def(text)
    names = [op.name for op in g.get_operations()]
    assert names[:4] == ["import/x", "import/w", "import/y", "import/train_op"]
    assert names[4:] == ["import_1/x", "import_1/w", "import_1/y", "import_1/train_op"]
    y = g.get_tensor_by_name("import_1/y:0")
    assert [t.name for t in y.op.inputs] == ["import_1/x:0", "import_1/w:0"]
    assert [c.name for c in g.get_operation_by_name("import_1/train_op").control_inputs] == \
        ["import_1/y"]


def test_import_with_a_name_and_inside_a_name_scope():
    text = _json_of(_two_layer)
    g = tw.Graph()
    with g.as_default():
        import_graph_def(text, name="model")
        with tw.name_scope("outer"):
            import_graph_def(text, name="model")
            import_graph_def(text, name="")
    names = {op.name for op in g.get_operations()}
    assert {"model/y", "outer/model/y", "y"} <= names


def test_import_into_a_graph_with_taken_names_renames_and_keeps_references():
    text = _json_of(_two_layer)
    g = tw.Graph()
    with g.as_default():
        tw.constant(0, name="y")
        y, train = import_graph_def(text, name="", return_elements=["y:0", "train_op"])
    assert y.op.name == "y_1"
    assert train.control_inputs == (y.op,)
    verify_with_registry(g)


def test_return_elements_give_tensors_and_operations_in_order():
    g = tw.Graph()
    with g.as_default():
        result = import_graph_def(_json_of(_two_layer), return_elements=["train_op", "y:0", "x"])
        assert import_graph_def(_json_of(_two_layer)) is None
    train, y, x = result
    assert isinstance(train, tw.Operation) and train.name == "import/train_op"
    assert isinstance(y, tw.Tensor) and y.name == "import/y:0"
    assert isinstance(x, tw.Operation) and x.name == "import/x"


def test_input_map_replaces_a_tensor_and_refines_downstream_shapes():
    g = tw.Graph()
    with g.as_default():
        images = tw.placeholder(tw.float32, [8, 3], name="images")
        y, = import_graph_def(_json_of(_two_layer), input_map={"x:0": images},
                              return_elements=["y:0"])
    assert y.op.inputs[0] is images
    assert y.shape == tw.TensorShape([8, 2])
    assert images in [t for t in y.op.inputs]
    assert y.op in images.consumers()
    verify_with_registry(g)


def test_input_map_accepts_an_op_name_for_output_zero():
    g = tw.Graph()
    with g.as_default():
        images = tw.placeholder(tw.float32, [8, 3])
        y, = import_graph_def(_json_of(_two_layer), input_map={"x": images},
                              return_elements=["y:0"])
    assert y.op.inputs[0] is images


def test_import_keeps_devices_and_merges_an_enclosing_device_scope():
    g = tw.Graph()
    with g.as_default():
        with tw.device("/job:worker/task:3/cpu:0"):
            x, y = import_graph_def(_json_of(_two_layer), return_elements=["x:0", "y:0"])
    assert x.device == "/job:worker/task:3/device:CPU:0"
    assert y.device == "/job:worker/task:3/device:GPU:0"  # the file's own device wins


def test_enclosing_control_dependencies_apply_to_imported_ops_without_imported_inputs():
    g = tw.Graph()
    with g.as_default():
        gate = tw.no_op(name="gate")
        with tw.control_dependencies([gate]):
            x, w, y = import_graph_def(_json_of(_two_layer),
                                       return_elements=["x:0", "w:0", "y:0"])
    assert x.op.control_inputs == (gate,)
    assert w.op.control_inputs == (gate,)
    assert y.op.control_inputs == ()  # it already waits for x and w


def test_import_keeps_where_the_ops_were_created():
    source = tw.Graph()
    with source.as_default():
        line = _next_line()
        tw.constant(1.0, name="c")
    g = tw.Graph()
    with g.as_default():
        c, = import_graph_def(to_json(source), return_elements=["c"])
    assert c.location()[1] == line
    assert c.location_str().endswith(f"test_serialization.py:{line}")


def test_import_renames_colocation_groups_to_the_new_names():
    def build():
        v = tw.constant(1.0, name="v")
        with tw.colocate_with(v):
            tw.identity(v, name="read")

    g = tw.Graph()
    with g.as_default():
        read, = import_graph_def(_json_of(build), name="m", return_elements=["read"])
    assert read.get_attr("_class") == ["loc:@m/v"]


def test_import_accepts_a_dict_json_text_and_a_path(tmp_path):
    text = _json_of(_two_layer)
    path = tmp_path / "model.json"
    path.write_text(text)
    for source in (json.loads(text), text, text.encode(), str(path), path):
        g = tw.Graph()
        with g.as_default():
            import_graph_def(source, name="")
        assert to_json(g) == text


def test_nodes_may_be_listed_in_any_order():
    text = _json_of(_two_layer)
    data = json.loads(text)
    data["nodes"].reverse()
    g = tw.Graph()
    with g.as_default():
        import_graph_def(data, name="")
    verify_with_registry(g)
    by_name = {node["name"]: node for node in graph_to_dict(g)["nodes"]}
    assert by_name == {node["name"]: node for node in json.loads(text)["nodes"]}
    # Among nodes ready together, the one listed first in the file is created first.
    assert [op.name for op in g.get_operations()] == ["w", "x", "y", "train_op"]


def test_import_into_an_explicit_graph_argument():
    g = tw.Graph()
    import_graph_def(_json_of(_two_layer), graph=g)
    assert g.get_operation_by_name("import/y").type == "MatMul"
    assert tw.get_default_graph() is not g


# -- import errors --------------------------------------------------------------------------------
def _data():
    return json.loads(_json_of(_two_layer))


def _node(data, name):
    return next(n for n in data["nodes"] if n["name"] == name)


def _import_fails(source, error, *fragments, **kwargs):
    g = tw.Graph()
    with g.as_default():
        with pytest.raises(error) as info:
            import_graph_def(source, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return g


def _edit(change):
    data = _data()
    change(data)
    return data


@pytest.mark.parametrize("source, fragments", [
    ("{not json", ["not valid JSON"]),
    ("[1, 2]", ["JSON object"]),
    (_edit(lambda d: d.update(format="tf.GraphDef")), ["format is 'tf.GraphDef'"]),
    (_edit(lambda d: d.update(version=2)), ["unsupported GraphDef version 2"]),
    (_edit(lambda d: d.pop("nodes")), ["'nodes' must be a list"]),
    (_edit(lambda d: _node(d, "y").pop("op")), ["node #2 ('y')", "missing key 'op'"]),
    (_edit(lambda d: _node(d, "y").update(inputs="x:0")), ["'inputs' must be a list"]),
    (_edit(lambda d: _node(d, "y").update(inputs=["x:zero"])),
     ["node 'y'", "malformed input reference 'x:zero'"]),
    (_edit(lambda d: _node(d, "y").update(inputs=["^x", "w:0"])),
     ["node 'y'", "after a control input"]),
    (_edit(lambda d: _node(d, "y").update(outputs=[{"dtype": "float32"}])),
     ["node 'y'", "'dtype' and 'shape'"]),
    (_edit(lambda d: _node(d, "y").update(outputs=[{"dtype": "f32", "shape": None}])),
     ["node 'y'", "unknown dtype name 'f32'"]),
    (_edit(lambda d: _node(d, "y").update(location=["file.py"])), ["node 'y'", "location"]),
    (_edit(lambda d: _node(d, "w")["attrs"].update(value={"__type__": "mystery"})),
     ["node 'w'", "mystery"]),
    (_edit(lambda d: _node(d, "y").update(op="Conv9D")), ["node 'y'", "unknown op type 'Conv9D'"]),
    (_edit(lambda d: _node(d, "y").update(inputs=["x:0", "ghost:0"])),
     ["node 'y'", "ghost:0", "does not exist"]),
    (_edit(lambda d: _node(d, "y").update(inputs=["x:0", "w:1"])),
     ["node 'y'", "w:1", "has 1 outputs"]),
    (_edit(lambda d: _node(d, "train_op").update(inputs=["^ghost"])),
     ["node 'train_op'", "^ghost", "does not exist"]),
    (_edit(lambda d: d["nodes"].append(dict(_node(d, "w")))), ["duplicate node name 'w'"]),
])
def test_malformed_graph_defs_raise_before_creating_anything(source, fragments):
    g = _import_fails(source, ValueError, *fragments)
    assert len(g) == 0


def test_a_cycle_is_reported_with_its_nodes():
    def make_cycle(d):
        _node(d, "x").update(op="Identity", inputs=["y:0"], attrs={})
    g = _import_fails(_edit(make_cycle), ValueError, "cycle", "x -> y -> x")
    assert len(g) == 0


def test_a_control_edge_cycle_is_a_cycle_too():
    g = _import_fails(_edit(lambda d: _node(d, "x").update(inputs=["^train_op"])),
                      ValueError, "cycle")
    assert len(g) == 0


def test_a_recorded_output_dtype_that_inference_disagrees_with():
    data = _edit(lambda d: _node(d, "y")["outputs"][0].update(dtype="float64"))
    _import_fails(data, ValueError, "node 'y' (MatMul)", "recorded as f64[?,2]",
                  "inference gives f32[?,2]")


def test_a_recorded_output_shape_incompatible_with_inference():
    data = _edit(lambda d: _node(d, "y")["outputs"][0].update(shape=[None, 5]))
    _import_fails(data, ValueError, "node 'y' (MatMul)", "recorded as f32[?,5]")


def test_a_wrong_number_of_recorded_outputs():
    data = _edit(lambda d: _node(d, "train_op").update(outputs=[{"dtype": "bool",
                                                                 "shape": []}]))
    _import_fails(data, ValueError, "node 'train_op' (NoOp)", "records 1 outputs")


def test_inference_failures_name_the_node():
    data = _edit(lambda d: _node(d, "w")["attrs"].update(
        value=encode_attr(np.ones((4, 2), np.float32))))
    # the Const is now [4,2] as its recorded output says... but its consumer y is not
    _node(data, "w")["outputs"][0]["shape"] = [4, 2]
    _import_fails(data, ValueError, "importing GraphDef node 'y'", "inner dimensions")


def test_input_map_errors():
    text = _json_of(_two_layer)
    g = tw.Graph()
    with g.as_default():
        wrong_dtype = tw.placeholder(tw.int32, [None, 3])
        with pytest.raises(ValueError, match="not a tensor of the GraphDef"):
            import_graph_def(text, input_map={"nothere:0": wrong_dtype})
        with pytest.raises(ValueError, match="not a tensor of the GraphDef"):
            import_graph_def(text, input_map={"x:1": wrong_dtype})
        with pytest.raises(ValueError, match="has dtype int32, but x:0 is float32"):
            import_graph_def(text, input_map={"x:0": wrong_dtype})
        with pytest.raises(TypeError, match="must be a Tensor"):
            import_graph_def(text, input_map={"x:0": np.ones((2, 3), np.float32)})
        assert len(g) == 1
    other = tw.Graph()
    with other.as_default():
        foreign = tw.placeholder(tw.float32, [None, 3])
    with g.as_default(), pytest.raises(ValueError, match="belongs to another graph"):
        import_graph_def(text, input_map={"x:0": foreign})


def test_return_elements_errors():
    text = _json_of(_two_layer)
    g = tw.Graph()
    with g.as_default():
        with pytest.raises(ValueError, match="'ghost:0' is not in the GraphDef"):
            import_graph_def(text, return_elements=["ghost:0"])
        with pytest.raises(ValueError, match="'train_op:0' names an output"):
            import_graph_def(text, return_elements=["train_op:0"])
    assert len(g) == 0


# -- write_graph ----------------------------------------------------------------------------------
def test_write_graph_writes_readable_json_atomically(tmp_path):
    g = tw.Graph()
    with g.as_default():
        _two_layer()
    logdir = tmp_path / "logs" / "run1"
    path = write_graph(g, str(logdir), "graph.json")
    assert path == os.path.join(str(logdir), "graph.json")
    text = pathlib.Path(path).read_text()
    assert text.startswith("{\n") and json.loads(text) == graph_to_dict(g)
    assert os.listdir(logdir) == ["graph.json"]  # no temporary file left behind
    rebuilt = tw.Graph()
    with rebuilt.as_default():
        import_graph_def(path, name="")
    assert to_json(rebuilt) == to_json(g)


def test_write_graph_compact_and_from_a_dict_and_overwrites(tmp_path):
    g = tw.Graph()
    with g.as_default():
        _two_layer()
    path = write_graph(g, str(tmp_path), "g.json", as_text=False)
    assert pathlib.Path(path).read_text() == to_json(g) + "\n"
    empty = write_graph(graph_to_dict(tw.Graph()), str(tmp_path), "g.json")
    assert empty == path
    assert json.loads(pathlib.Path(path).read_text())["nodes"] == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = write_graph(graph_to_dict(tw.Graph()), str(tmp_path), "g.json")
    before = pathlib.Path(path).read_text()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    g = tw.Graph()
    with g.as_default():
        _two_layer()
    with pytest.raises(OSError, match="disk full"):
        write_graph(g, str(tmp_path), "g.json")
    assert pathlib.Path(path).read_text() == before
    assert os.listdir(tmp_path) == ["g.json"]
