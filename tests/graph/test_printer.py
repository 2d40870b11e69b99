"""The text form of graphs: exact, compact and deterministic."""

import ml_dtypes
import numpy as np
import pytest

import tensorweave as tw
from tensorweave.graph.printer import format_graph, format_op, format_value, short_dtype


def _build_model():
    x = tw.placeholder(tw.float32, [None, 784], name="x")
    W = tw.constant(np.zeros((784, 10), np.float32), name="W")
    with tw.name_scope("W/"):
        read = tw.identity(W, name="read")
    init = tw.no_op(name="init")
    with tw.control_dependencies([init]):
        with tw.device("/cpu:0"):
            y = tw.matmul(x, read)
    return y


def test_a_small_model_prints_exactly():
    g = tw.Graph()
    with g.as_default():
        _build_model()
    assert format_graph(g) == (
        "%x:0 f32[?,784] = Placeholder() {dtype=f32, shape=[?,784]}\n"
        "%W:0 f32[784,10] = Const() {dtype=f32, value=<f32[784,10]>}\n"
        "%W/read:0 f32[784,10] = Identity(%W:0)\n"
        "%init = NoOp()\n"
        "%MatMul:0 f32[?,10] = MatMul(%x:0, %W/read:0) {transpose_a=False, transpose_b=False}"
        " @/device:CPU:0 ^init\n")


def test_the_same_graph_built_twice_prints_byte_identical_text():
    texts = []
    for _ in range(2):
        g = tw.Graph()
        with g.as_default():
            _build_model()
        texts.append(format_graph(g))
    assert texts[0] == texts[1]


def test_devices_and_locations_are_optional():
    g = tw.Graph()
    with g.as_default():
        with tw.device("/gpu:0"):
            c = tw.constant(1.0, name="c")
    assert format_graph(g, devices=False) == \
        "%c:0 f32[] = Const() {dtype=f32, value=<f32[] 1.0>}\n"
    located = format_graph(g, locations=True)
    assert "@/device:GPU:0" in located
    assert located.rstrip().endswith(c.op.location_str())
    assert "test_printer.py:" in located


def test_a_subset_of_ops_prints_in_creation_order():
    g = tw.Graph()
    with g.as_default():
        a = tw.constant(1, name="a")
        tw.constant(2, name="b")
        c = tw.constant(3, name="c")
    text = format_graph(g, ops=[c.op, a.op])
    assert [line.split(" ")[0] for line in text.splitlines()] == ["%a:0", "%c:0"]


def test_ops_with_several_or_no_outputs_and_several_control_inputs():
    g = tw.Graph()
    with g.as_default():
        a = tw.constant(1, name="a")
        b = tw.no_op(name="b")
        x = tw.constant(0, name="x")
        with tw.control_dependencies([a, b]):
            split = g.create_op("FakeSplit", [x], {"num": 2}, "split",
                                infer=lambda op: [(tw.int32, []), (tw.int64, None)])
            sink = g.create_op("FakeSink", [split.outputs[1], split.outputs[0]], {}, "sink",
                               infer=lambda op: [])
    assert format_op(split) == \
        "%split:0 i32[], %split:1 i64[*] = FakeSplit(%x:0) {num=2} ^a ^b"
    assert format_op(sink) == "%sink = FakeSink(%split:1, %split:0)"


@pytest.mark.parametrize("dtype, short", [
    (tw.bool, "bool"), (tw.int8, "i8"), (tw.int16, "i16"), (tw.int32, "i32"),
    (tw.int64, "i64"), (tw.uint8, "u8"), (tw.uint16, "u16"), (tw.uint32, "u32"),
    (tw.uint64, "u64"), (tw.float16, "f16"), (tw.bfloat16, "bf16"), (tw.float32, "f32"),
    (tw.float64, "f64"), (tw.string, "str"),
])
def test_short_dtype_names(dtype, short):
    assert short_dtype(dtype) == short
    assert format_value(dtype) == short


@pytest.mark.parametrize("value, text", [
    (True, "True"),
    (3, "3"),
    (0.5, "0.5"),
    (float("nan"), "nan"),
    (float("-inf"), "-inf"),
    ("SAME", "'SAME'"),
    (b"\x00", "b'\\x00'"),
    (None, "None"),
    ([1, 2], "[1, 2]"),
    ((1,), "(1,)"),
    ((1, [2, (3, 4)]), "(1, [2, (3, 4)])"),
    ({"b": 1, "a": [tw.float32]}, "{'a': [f32], 'b': 1}"),
    (tw.TensorShape(None), "[*]"),
    (tw.TensorShape([]), "[]"),
    (tw.TensorShape([None, 3]), "[?,3]"),
    (np.float32(0.1), "<f32[] 0.1>"),
    (np.int64(-7), "<i64[] -7>"),
    (np.array([[1, 2], [3, 4]], np.int32), "<i32[2,2] [[1, 2], [3, 4]]>"),
    (np.array([0.1, 1e-8], np.float32), "<f32[2] [0.1, 1e-08]>"),
    (np.array([True, False]), "<bool[2] [True, False]>"),
    (np.array([1.5, -2], ml_dtypes.bfloat16), "<bf16[2] [1.5, -2]>"),
    (np.array(["a", b"b"], dtype=object), "<str[2] ['a', b'b']>"),
    (np.zeros((0, 3), np.float32), "<f32[0,3] []>"),
    (np.zeros(10, np.uint8), "<u8[10] [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]>"),
    (np.zeros(11, np.uint8), "<u8[11]>"),
    (np.zeros((784, 10), np.float16), "<f16[784,10]>"),
])
def test_attr_values(value, text):
    assert format_value(value) == text


def test_unknown_attr_objects_print_their_type_not_their_address():
    class Opaque:
        pass

    assert format_value(Opaque()) == "<Opaque>"
    assert format_value([Opaque(), len]) == "[<Opaque>, <builtin_function_or_method>]"


def test_attrs_are_sorted_by_name():
    g = tw.Graph()
    with g.as_default():
        op = g.create_op("Fake", [], {"zeta": 1, "alpha": 2, "_class": ["loc:@x"]}, "f",
                         infer=lambda op: [])
    assert format_op(op) == "%f = Fake() {_class=['loc:@x'], alpha=2, zeta=1}"
