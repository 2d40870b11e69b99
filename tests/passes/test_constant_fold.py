"""constant_fold: ops computable from constants become Const ops, within a size cap."""

import numpy as np

import tensorweave as tw
from tensorweave.graph.printer import format_graph
from tensorweave.passes.constant_fold import constant_fold
from tests.passes.passtest import run, step_graph


def test_chains_of_constants_fold_and_keep_their_names(graph):
    x = tw.placeholder(tw.float32, [None, 2], name="x")
    a = tw.constant([1.0, 2.0], name="a")
    b = tw.add(a, a, name="b")
    c = tw.multiply(b, 3.0, name="c")
    s = tw.shape(x, name="s")
    n = tw.size(a, name="n")
    y = tw.add(x, c, name="y")
    result = run(constant_fold, step_graph([y, s, n], [x]))
    assert format_graph(result.graph) == (
        "%_arg_x_0:0 f32[?,2] = _Arg() {dtype=f32, index=0, shape=[?,2]}\n"
        "%a:0 f32[2] = Const() {dtype=f32, value=<f32[2] [1.0, 2.0]>}\n"
        "%b:0 f32[2] = Const() {dtype=f32, value=<f32[2] [2.0, 4.0]>}\n"
        "%Const:0 f32[] = Const() {dtype=f32, value=<f32[] 3.0>}\n"
        "%c:0 f32[2] = Const() {dtype=f32, value=<f32[2] [6.0, 12.0]>}\n"
        "%s:0 i32[2] = Shape(%_arg_x_0:0) {out_type=i32}\n"
        "%n:0 i32[] = Const() {dtype=i32, value=<i32[] 2>}\n"
        "%y:0 f32[?,2] = Add(%_arg_x_0:0, %c:0)\n"
        "%_retval_y_0 = _Retval(%y:0) {index=0}\n"
        "%_retval_s_0 = _Retval(%s:0) {index=1}\n"
        "%_retval_n_0 = _Retval(%n:0) {index=2}\n")
    assert result.changes == ["constant_fold: folded b (Add) -> Const",
                              "constant_fold: folded c (Mul) -> Const",
                              "constant_fold: folded n (Size) -> Const"]


def test_static_shapes_fold_shape_ops_of_non_constants(graph):
    x = tw.placeholder(tw.float32, [4, 2], name="x")
    s = tw.shape(x, name="s")
    result = run(constant_fold, step_graph([s], [x]))
    assert "%s:0 i32[2] = Const() {dtype=i32, value=<i32[2] [4, 2]>}" in \
        format_graph(result.graph)
    assert result.changes == ["constant_fold: folded s (Shape) -> Const"]


def test_folded_values_are_bitwise_the_kernels_and_read_only(graph):
    a = tw.constant(np.linspace(-3, 3, 7, dtype=np.float32), name="a")
    y = tw.tanh(tw.exp(a) / 3.0, name="y")
    result = run(constant_fold, step_graph([y]))
    value = result.graph.get_operation_by_name("y").attrs["value"]
    want = np.tanh(np.exp(np.linspace(-3, 3, 7, dtype=np.float32)) / np.float32(3.0))
    assert value.dtype == np.float32 and value.tobytes() == want.tobytes()
    assert not value.flags.writeable


def test_stateful_random_and_context_ops_are_not_folded(graph):
    v = tw.Variable(1.0, name="v")
    r = tw.random_uniform([2], seed=1, name="r")
    y = tw.add(v.read_value(), 1.0, name="y")
    z = tw.add(r, 1.0, name="z")
    result = run(constant_fold, step_graph([y, z]))
    folded = [line for line in result.changes if "Random" in line or "Read" in line
              or "VariableV2" in line or " y " in line or " z " in line]
    assert folded == []


def test_an_op_with_control_inputs_is_not_folded(graph):
    init = tw.no_op(name="init")
    one, two = tw.constant(1.0, name="one"), tw.constant(2.0, name="two")
    with tw.control_dependencies([init]):
        y = tw.add(one, two, name="y")
        z = tw.add(tw.constant(3.0, name="three"), 1.0, name="z")
    result = run(constant_fold, step_graph([y, z]))
    assert result.changes == []  # y waits for init; z reads a constant that waits for it
    text = format_graph(result.graph)
    assert "%y:0 f32[] = Add(%one:0, %two:0) ^init" in text
    assert "%three:0 f32[] = Const() {dtype=f32, value=<f32[] 3.0>} ^init" in text


def test_control_consumers_of_a_folded_op_wait_for_its_constant(graph):
    y = tw.add(tw.constant(1.0, name="one"), 2.0, name="y")
    five = tw.constant(5.0, name="five")
    with tw.control_dependencies([y]):
        z = tw.identity(five, name="z")
    result = run(constant_fold, step_graph([z]))
    text = format_graph(result.graph)
    assert "%y:0 f32[] = Const() {dtype=f32, value=<f32[] 3.0>}\n" in text
    assert "%z:0 f32[] = Identity(%five:0) ^y\n" in text  # still after y, and not folded


def test_the_size_cap_keeps_large_results_unfolded(graph):
    big = tw.fill([1000, 1000], 2.0, name="big")  # 1M elements
    y = tw.reduce_sum(big, name="y")
    default = run(constant_fold, step_graph([y]))
    assert "constant_fold: folded big (Fill) -> Const" in default.changes
    capped = run(constant_fold, step_graph([y]), fold_limit=1000)
    assert capped.changes == []


def test_an_op_whose_kernel_fails_is_left_for_the_step_to_report(graph):
    x = tw.constant([1, 2], name="x")
    y = tw.floordiv(x, tw.constant([1, 0], name="zero"), name="y")
    result = run(constant_fold, step_graph([y]))
    assert result.changes == []
    with tw.Session() as sess:
        try:
            sess.run(y)
        except tw.errors.InvalidArgumentError as e:
            assert "division by zero" in str(e) and "'y'" in str(e)
        else:
            raise AssertionError("integer division by zero must fail")


def test_multi_output_ops_fold_to_one_const_per_output(graph):
    parts = tw.unstack(tw.constant([[1, 2], [3, 4]], name="m"), name="parts")
    y = tw.add(parts[0], parts[1], name="y")
    result = run(constant_fold, step_graph([y]))
    text = format_graph(result.graph)
    assert "%parts/output_0:0 i32[2] = Const() {dtype=i32, value=<i32[2] [1, 2]>}" in text
    assert "%parts/output_1:0 i32[2] = Const() {dtype=i32, value=<i32[2] [3, 4]>}" in text
    assert "%y:0 i32[2] = Const() {dtype=i32, value=<i32[2] [4, 6]>}" in text
    assert result.changes == ["constant_fold: folded parts (Unpack) -> Const",
                              "constant_fold: folded y (Add) -> Const"]


def test_the_session_cap_comes_from_the_config(graph):
    big = tw.fill([100, 100], 1.0, name="big")
    y = tw.reduce_sum(big, name="y")
    config = tw.ConfigProto(max_folded_constant_elements=10)
    with tw.Session(config=config) as sess:
        assert sess.run(y) == 10000.0
        step = sess._compiled_steps()[0]
        assert not any("big" in line for line in step.changes)
    with tw.Session() as sess:
        assert sess.run(y) == 10000.0
        step = sess._compiled_steps()[0]
        assert "constant_fold: folded big (Fill) -> Const" in step.changes
