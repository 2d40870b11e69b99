"""cse: duplicate computations merge into the first; never stateful ones."""

import numpy as np

import tensorweave as tw
from tensorweave.graph.printer import format_graph
from tensorweave.passes.cse import attr_key, cse
from tests.passes.passtest import run, step_graph


def test_duplicated_chains_collapse_into_the_first(graph):
    x = tw.placeholder(tw.float32, [2], name="x")
    b1 = tw.add(tw.exp(x, name="a1"), 1.0, name="b1")
    b2 = tw.add(tw.exp(x, name="a2"), 1.0, name="b2")
    y = tw.multiply(b1, b2, name="y")
    result = run(cse, step_graph([y], [x]))
    assert format_graph(result.graph) == (
        "%_arg_x_0:0 f32[2] = _Arg() {dtype=f32, index=0, shape=[2]}\n"
        "%a1:0 f32[2] = Exp(%_arg_x_0:0)\n"
        "%Const:0 f32[] = Const() {dtype=f32, value=<f32[] 1.0>}\n"
        "%b1:0 f32[2] = Add(%a1:0, %Const:0)\n"
        "%y:0 f32[2] = Mul(%b1:0, %b1:0)\n"
        "%_retval_y_0 = _Retval(%y:0) {index=0}\n")
    assert result.changes == ["cse: merged a2 (Exp) into a1",
                              "cse: merged Const_1 (Const) into Const",
                              "cse: merged b2 (Add) into b1"]


def test_different_attrs_devices_or_control_inputs_keep_ops_apart(graph):
    x = tw.placeholder(tw.float32, [2, 2], name="x")
    s1 = tw.reduce_sum(x, axis=0, name="s1")
    s2 = tw.reduce_sum(x, axis=0, keepdims=True, name="s2")
    with tw.device("/cpu:0"):
        e1 = tw.exp(x, name="e1")
    e2 = tw.exp(x, name="e2")
    gate = tw.no_op(name="gate")
    with tw.control_dependencies([gate]):
        e3 = tw.exp(x, name="e3")
    result = run(cse, step_graph([s1, s2, e1, e2, e3], [x]))
    # Only the axis constants of the two sums are equal.
    assert all("(Const)" in line for line in result.changes) and len(result.changes) == 1
    for name in ("s1", "s2", "e1", "e2", "e3"):
        assert result.graph.get_operation_by_name(name).type != "Const"


def test_constants_compare_by_dtype_shape_and_bytes(graph):
    a = tw.constant(np.array([0.0, 1.0], np.float32), name="a")
    b = tw.constant(np.array([0.0, 1.0], np.float32), name="b")
    c = tw.constant(np.array([-0.0, 1.0], np.float32), name="c")  # other bytes
    d = tw.constant(np.array([0.0, 1.0], np.float64), name="d")   # other dtype
    e = tw.constant(np.array([[0.0, 1.0]], np.float32), name="e")  # other shape
    result = run(cse, step_graph([a, b, c, d, e]))
    assert result.changes == ["cse: merged b (Const) into a"]
    assert attr_key(0.0) != attr_key(-0.0)
    assert attr_key(1) != attr_key(1.0) != attr_key(True)


def test_stateful_ops_are_never_merged(graph):
    v = tw.Variable(1.0, name="v")
    r1 = tw.random_uniform([2], seed=3, name="r1")
    r2 = tw.random_uniform([2], seed=3, name="r2")
    reads = [v.read_value(), v.read_value()]
    result = run(cse, step_graph([r1, r2] + reads))
    assert result.changes == ["cse: merged r2/shape (Const) into r1/shape"]
    types = [op.type for op in result.graph.get_operations()]
    assert types.count("RandomUniform") == 2 and types.count("ReadVariableOp") == 2


def test_fetching_two_merged_tensors_gives_equal_values(graph):
    x = tw.placeholder(tw.float32, [3], name="x")
    a = tw.square(x, name="a")
    b = tw.square(x, name="b")
    with tw.Session() as sess:
        got_a, got_b = sess.run([a, b], {x: [1.0, 2.0, 3.0]})
        step = sess._compiled_steps()[0]
    assert "cse: merged b (Square) into a" in step.changes
    np.testing.assert_array_equal(got_a, [1.0, 4.0, 9.0])
    np.testing.assert_array_equal(got_b, [1.0, 4.0, 9.0])


def test_a_scalar_and_a_one_element_vector_are_different_constants(graph):
    a = tw.constant(np.float32(1.0), name="a")
    b = tw.constant(np.array([1.0], np.float32), name="b")
    result = run(cse, step_graph([a, b]))
    assert result.changes == []
    assert attr_key(np.arange(6).reshape(2, 3).T) == \
        attr_key(np.ascontiguousarray(np.arange(6).reshape(2, 3).T))


def test_attr_keys_of_arrays_of_any_layout():
    column = np.arange(6.0).reshape(2, 3)[:, :1]
    broadcast = np.broadcast_to(np.float32(2.0), (1,))
    assert attr_key(column) == attr_key(np.array([[0.0], [3.0]]))
    assert attr_key(broadcast) == attr_key(np.array([2.0], np.float32))
