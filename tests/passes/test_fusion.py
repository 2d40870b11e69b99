"""fusion: before/after printed graphs for each kind of group and each rule that keeps ops
apart, the changes lists, and the fused graph's results against the unfused one."""

import functools

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.codegen.expr import evaluate as evaluate_expr
from tensorweave.executor import reference
from tensorweave.graph import serialization
from tensorweave.graph.printer import format_graph
from tensorweave.ops import fused as fused_ops_module
from tensorweave.ops.fused import expr_of
from tensorweave.passes.fusion import MIN_FUSED_ELEMENTS, fusion
from tests.passes.passtest import run, step_graph

# Unit tests use small tensors: the size threshold of the cost check is tested on its own.
fuse = functools.partial(fusion, min_elements=0)


@pytest.fixture(autouse=True)
def fused_kernels_at_every_size(monkeypatch):
    """Fused ops run their kernels even on arrays below the break-even size."""
    monkeypatch.setattr(fused_ops_module, "MIN_FUSED_ELEMENTS", 0)


def fused_summary(graph) -> list:
    """``name = Type(inputs)`` per op, with what each Fused op replaced."""
    lines = []
    for op in graph.get_operations():
        inputs = ", ".join(t.name for t in op.inputs)
        line = f"{op.name} = {op.type}({inputs})"
        if op.type == "Fused":
            line += f" {op.attrs['fused_ops']}"
        lines.append(line)
    return lines


def evaluate_step(graph, feeds):
    """Values of a step graph's ``_Retval`` inputs given its ``_Arg`` values, by the
    reference interpreter."""
    ops = graph.get_operations()
    args = sorted((op for op in ops if op.type == "_Arg"), key=lambda op: op.attrs["index"])
    rets = sorted((op for op in ops if op.type == "_Retval"), key=lambda op: op.attrs["index"])
    return reference.evaluate([r.inputs[0] for r in rets],
                              {a.outputs[0]: feeds[a.attrs["index"]] for a in args})


def assert_same_results(before, after, feeds, rtol=0.0):
    for u, f in zip(evaluate_step(before, feeds), evaluate_step(after, feeds)):
        assert u.dtype == f.dtype and u.shape == f.shape
        if rtol:
            np.testing.assert_allclose(f, u, rtol=rtol)
        else:
            np.testing.assert_array_equal(f, u)


def floats(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-2, 2, size=shape).astype(np.float32)


# -- the three kinds of group ---------------------------------------------------------------------
def test_an_elementwise_chain_becomes_one_fused_op(graph):
    x = tw.placeholder(tw.float32, [4], name="x")
    w = tw.placeholder(tw.float32, [4], name="w")
    b = tw.placeholder(tw.float32, [4], name="b")
    h = tw.nn.relu(tw.add(tw.multiply(x, w, name="mul"), b, name="add"), name="relu")
    y = tw.add(tw.multiply(h, 0.5, name="half"), x, name="y")
    step = step_graph([y], [x, w, b])
    assert format_graph(step) == (
        "%_arg_x_0:0 f32[4] = _Arg() {dtype=f32, index=0, shape=[4]}\n"
        "%_arg_w_0:0 f32[4] = _Arg() {dtype=f32, index=1, shape=[4]}\n"
        "%_arg_b_0:0 f32[4] = _Arg() {dtype=f32, index=2, shape=[4]}\n"
        "%mul:0 f32[4] = Mul(%_arg_x_0:0, %_arg_w_0:0)\n"
        "%add:0 f32[4] = Add(%mul:0, %_arg_b_0:0)\n"
        "%relu:0 f32[4] = Relu(%add:0)\n"
        "%Const:0 f32[] = Const() {dtype=f32, value=<f32[] 0.5>}\n"
        "%half:0 f32[4] = Mul(%relu:0, %Const:0)\n"
        "%y:0 f32[4] = Add(%half:0, %_arg_x_0:0)\n"
        "%_retval_y_0 = _Retval(%y:0) {index=0}\n")
    result = run(fuse, step)
    expr = ('{"epilogue_of":null,"inputs":[{"dtype":"float32","shape":[4]},{"dtype":"float32",'
            '"shape":[4]},{"dtype":"float32","shape":[4]}],"nodes":[{"args":[["in",0],["in",1]],'
            '"attrs":{},"dtype":"float32","op":"Mul"},{"args":[["node",0],["in",2]],"attrs":{},'
            '"dtype":"float32","op":"Add"},{"args":[["node",1]],"attrs":{},"dtype":"float32",'
            '"op":"Relu"},{"args":[["node",2],["const",0.5,"float32"]],"attrs":{},'
            '"dtype":"float32","op":"Mul"},{"args":[["node",3],["in",0]],"attrs":{},'
            '"dtype":"float32","op":"Add"}],"outputs":[4],"reduce":null}')
    assert format_graph(result.graph) == (
        "%_arg_x_0:0 f32[4] = _Arg() {dtype=f32, index=0, shape=[4]}\n"
        "%_arg_w_0:0 f32[4] = _Arg() {dtype=f32, index=1, shape=[4]}\n"
        "%_arg_b_0:0 f32[4] = _Arg() {dtype=f32, index=2, shape=[4]}\n"
        "%fused:0 f32[4] = Fused(%_arg_x_0:0, %_arg_w_0:0, %_arg_b_0:0) "
        f"{{expr='{expr}', fused_ops=['Mul:mul', 'Add:add', 'Relu:relu', 'Mul:half', 'Add:y']}}\n"
        "%_retval_y_0 = _Retval(%fused:0) {index=0}\n")
    assert result.changes == ["fusion: fused 5 ops into fused (elementwise): Mul:mul, Add:add, "
                              "Relu:relu, Mul:half, Add:y"]
    assert_same_results(step, result.graph, [floats(4), floats(4, seed=1), floats(4, seed=2)])


def test_values_used_outside_become_extra_outputs(graph):
    x = tw.placeholder(tw.float32, [3, 4], name="x")
    b = tw.placeholder(tw.float32, [4], name="b")
    pre = tw.add(x, b, name="pre")
    act = tw.tanh(pre, name="act")
    out = tw.multiply(act, pre, name="out")
    other = tw.transpose(act, name="other")  # an opaque consumer of an inner value
    step = step_graph([out, other], [x, b])
    result = run(fuse, step)
    assert fused_summary(result.graph) == [
        "_arg_x_0 = _Arg()", "_arg_b_0 = _Arg()",
        "fused = Fused(_arg_x_0:0, _arg_b_0:0) ['Add:pre', 'Tanh:act', 'Mul:out']",
        "Const = Const()",
        "other = Transpose(fused:0, Const:0)",
        "_retval_out_0 = _Retval(fused:1)", "_retval_other_0 = _Retval(other:0)"]
    assert expr_of(result.graph.get_operation_by_name("fused")).outputs == (1, 2)
    assert_same_results(step, result.graph, [floats(3, 4), floats(4, seed=1)])


def test_a_reduction_closes_its_elementwise_producers(graph):
    x = tw.placeholder(tw.float32, [64, 128], name="x")
    y = tw.placeholder(tw.float32, [128], name="y")
    diff = tw.subtract(x, y, name="diff")
    loss = tw.reduce_sum(tw.square(diff, name="sq"), axis=1, name="loss")
    step = step_graph([loss], [x, y])
    result = run(fuse, step)
    expr = ('{"epilogue_of":null,"inputs":[{"dtype":"float32","shape":[64,128]},'
            '{"dtype":"float32","shape":[128]}],"nodes":[{"args":[["in",0],["in",1]],"attrs":{},'
            '"dtype":"float32","op":"Sub"},{"args":[["node",0]],"attrs":{},"dtype":"float32",'
            '"op":"Square"}],"outputs":[1],"reduce":{"axes":[1],"keepdims":false,"op":"Sum"}}')
    assert format_graph(result.graph) == (
        "%_arg_x_0:0 f32[64,128] = _Arg() {dtype=f32, index=0, shape=[64,128]}\n"
        "%_arg_y_0:0 f32[128] = _Arg() {dtype=f32, index=1, shape=[128]}\n"
        "%fused:0 f32[64] = Fused(%_arg_x_0:0, %_arg_y_0:0) "
        f"{{expr='{expr}', fused_ops=['Sub:diff', 'Square:sq', 'Sum:loss']}}\n"
        "%_retval_loss_0 = _Retval(%fused:0) {index=0}\n")  # the axes constant is gone too
    assert result.changes == ["fusion: fused 3 ops into fused (reduction): Sub:diff, Square:sq, "
                              "Sum:loss"]
    assert_same_results(step, result.graph, [floats(64, 128), floats(128, seed=1)], rtol=1e-5)


@pytest.mark.parametrize("reduce_fn, op_type", [(tw.reduce_mean, "Mean"),
                                                (tw.reduce_max, "Max"),
                                                (tw.reduce_min, "Min")])
def test_other_reductions_over_all_axes_keepdims(graph, reduce_fn, op_type):
    x = tw.placeholder(tw.float32, [5, 6], name="x")
    r = reduce_fn(tw.abs(tw.negative(x)), keepdims=True, name="r")
    step = step_graph([r], [x])
    result = run(fuse, step)
    (fused,) = [op for op in result.graph.get_operations() if op.type == "Fused"]
    assert expr_of(fused).reduce == {"op": op_type, "axes": [0, 1], "keepdims": True}
    assert_same_results(step, result.graph, [floats(5, 6)], rtol=1e-6)


def test_a_reduction_whose_input_is_also_read_elsewhere_stays_out(graph):
    # The kernel would write sq in full anyway; summing it chunk by chunk is only slower.
    x = tw.placeholder(tw.float32, [8, 3], name="x")
    sq = tw.square(tw.subtract(x, 1.0), name="sq")
    total = tw.reduce_sum(sq, axis=0, name="total")
    step = step_graph([total, sq], [x])
    result = run(fuse, step)
    (fused,) = [op for op in result.graph.get_operations() if op.type == "Fused"]
    assert expr_of(fused).reduce is None
    assert fused.get_attr("fused_ops") == ["Sub:Sub", "Square:sq"]
    assert [op.type for op in result.graph.get_operations()
            if op.name == "total"] == ["Sum"]
    assert_same_results(step, result.graph, [floats(8, 3)])  # bitwise: numpy's own sum


def test_a_bias_gradient_sum_stays_out_of_the_relu_gradient_group(graph):
    # ReluGrad's result feeds the weight gradient's MatMul and the bias gradient's Sum.
    x = tw.placeholder(tw.float32, [6, 5], name="x")
    w = tw.placeholder(tw.float32, [5, 4], name="w")
    b = tw.placeholder(tw.float32, [4], name="b")
    c = tw.placeholder(tw.float32, [6, 4], name="c")
    loss = tw.reduce_sum(tw.nn.relu(tw.matmul(x, w) + b) * c)
    gw, gb = tw.gradients(loss, [w, b])
    step = step_graph([gw, gb], [x, w, b, c])
    result = run(fuse, step)
    by_name = {op.name: op for op in result.graph.get_operations()}
    bias_grad = by_name["gradients/add_grad/Sum"]
    assert bias_grad.type == "Sum" and bias_grad.inputs[0].op.type == "Fused"
    relu_grad_group = bias_grad.inputs[0].op
    assert "ReluGrad:gradients/Relu_grad/ReluGrad" in relu_grad_group.get_attr("fused_ops")
    assert expr_of(relu_grad_group).reduce is None
    feeds = [floats(6, 5), floats(5, 4, seed=1), floats(4, seed=2), floats(6, 4, seed=3)]
    assert_same_results(step, result.graph, feeds)  # bitwise: nothing reorders the sum


def test_matmul_bias_add_activation_becomes_an_epilogue(graph):
    x = tw.placeholder(tw.float32, [2, 3], name="x")
    w = tw.placeholder(tw.float32, [3, 4], name="w")
    b = tw.placeholder(tw.float32, [4], name="b")
    y = tw.nn.relu(tw.nn.bias_add(tw.matmul(x, w, name="mm"), b, name="bias"), name="act")
    step = step_graph([y], [x, w, b])
    result = run(fuse, step)
    expr = ('{"epilogue_of":{"attrs":{"transpose_a":false,"transpose_b":false},"num_inputs":2,'
            '"op":"MatMul"},"inputs":[{"dtype":"float32","shape":[2,4]},{"dtype":"float32",'
            '"shape":[4]}],"nodes":[{"args":[["in",0],["in",1]],"attrs":{"data_format":"NHWC"},'
            '"dtype":"float32","op":"BiasAdd"},{"args":[["node",0]],"attrs":{},'
            '"dtype":"float32","op":"Relu"}],"outputs":[1],"reduce":null}')
    assert format_graph(result.graph) == (
        "%_arg_x_0:0 f32[2,3] = _Arg() {dtype=f32, index=0, shape=[2,3]}\n"
        "%_arg_w_0:0 f32[3,4] = _Arg() {dtype=f32, index=1, shape=[3,4]}\n"
        "%_arg_b_0:0 f32[4] = _Arg() {dtype=f32, index=2, shape=[4]}\n"
        "%fused:0 f32[2,4] = Fused(%_arg_x_0:0, %_arg_w_0:0, %_arg_b_0:0) "
        f"{{expr='{expr}', fused_ops=['MatMul:mm', 'BiasAdd:bias', 'Relu:act']}}\n"
        "%_retval_act_0 = _Retval(%fused:0) {index=0}\n")
    assert result.changes == ["fusion: fused 3 ops into fused (epilogue of MatMul): MatMul:mm, "
                              "BiasAdd:bias, Relu:act"]
    assert_same_results(step, result.graph, [floats(2, 3), floats(3, 4, seed=1),
                                             floats(4, seed=2)])


def test_no_epilogue_waits_for_an_independent_heavy_branch(graph):
    """add(matmul(a, a), matmul(c, c)): fusing the add into either matmul would make that
    matmul wait for the other one; a cheap input (a negation) may still join an epilogue."""
    a = tw.placeholder(tw.float32, [4, 4], name="a")
    c = tw.placeholder(tw.float32, [4, 4], name="c")
    y = tw.add(tw.matmul(a, a, name="b"), tw.matmul(c, c, name="d"), name="y")
    z = tw.add(tw.matmul(a, c, name="e"), tw.negative(c, name="neg"), name="z")
    step = step_graph([y, z], [a, c])
    result = run(fuse, step)
    assert fused_summary(result.graph)[2:6] == [
        "b = MatMul(_arg_a_0:0, _arg_a_0:0)",
        "d = MatMul(_arg_c_0:0, _arg_c_0:0)",
        "y = Add(b:0, d:0)",
        "fused = Fused(_arg_a_0:0, _arg_c_0:0, _arg_c_0:0) ['MatMul:e', 'Neg:neg', 'Add:z']",
    ]
    assert_same_results(step, result.graph, [floats(4, 4), floats(4, 4, seed=1)])


def test_conv2d_epilogue(graph):
    x = tw.placeholder(tw.float32, [2, 6, 6, 3], name="x")
    f = tw.placeholder(tw.float32, [3, 3, 3, 4], name="f")
    b = tw.placeholder(tw.float32, [4], name="b")
    conv = tw.nn.conv2d(x, f, strides=[1, 1, 1, 1], padding="SAME", name="conv")
    y = tw.nn.relu6(tw.nn.bias_add(conv, b, name="bias"), name="act")
    step = step_graph([y], [x, f, b])
    result = run(fuse, step)
    assert fused_summary(result.graph)[3] == (
        "fused = Fused(_arg_x_0:0, _arg_f_0:0, _arg_b_0:0) "
        "['Conv2D:conv', 'BiasAdd:bias', 'Relu6:act']")
    assert_same_results(step, result.graph, [floats(2, 6, 6, 3), floats(3, 3, 3, 4, seed=1),
                                             floats(4, seed=2)])


def test_a_heavy_result_read_outside_the_group_stays_a_separate_op(graph):
    x = tw.placeholder(tw.float32, [2, 3], name="x")
    w = tw.placeholder(tw.float32, [3, 4], name="w")
    mm = tw.matmul(x, w, name="mm")
    y = tw.tanh(tw.add(mm, 1.0, name="add"), name="act")
    step = step_graph([y, mm], [x, w])
    result = run(fuse, step)
    assert "mm = MatMul(_arg_x_0:0, _arg_w_0:0)" in fused_summary(result.graph)
    assert result.changes == ["fusion: fused 2 ops into fused (elementwise): Add:add, Tanh:act"]


def test_a_gradient_graph_fuses_relu_grad_and_the_update_arithmetic(graph):
    x = tw.placeholder(tw.float32, [8, 3], name="x")
    w = tw.placeholder(tw.float32, [3, 5], name="w")
    b = tw.placeholder(tw.float32, [5], name="b")
    h = tw.nn.relu(tw.nn.bias_add(tw.matmul(x, w), b))
    loss = tw.reduce_sum(tw.square(h))
    gw, gb = tw.gradients(loss, [w, b])
    new_w = w - 0.1 * gw
    step = step_graph([loss, new_w, gb], [x, w, b])
    result = run(fuse, step)
    fused = [op.attrs["fused_ops"] for op in result.graph.get_operations() if op.type == "Fused"]
    types = [entry.split(":")[0] for ops in fused for entry in ops]
    assert "ReluGrad" in types and "Sub" in types
    assert_same_results(step, result.graph, [floats(8, 3), floats(3, 5, seed=1),
                                             floats(5, seed=2)], rtol=1e-5)


# -- what is never fused -------------------------------------------------------------------------
def test_stateful_ops_are_never_fused(graph):
    x = tw.placeholder(tw.float32, [4], name="x")
    noise = tw.random_uniform([4], seed=1, name="noise")
    y = tw.add(tw.multiply(noise, 2.0, name="scale"), x, name="y")
    step = step_graph([y], [x])
    result = run(fuse, step)
    assert fused_summary(result.graph)[1:4] == [
        "noise/shape = Const()", "noise/RandomUniform = RandomUniform(noise/shape:0)",
        "fused = Fused(noise/RandomUniform:0, _arg_x_0:0) ['Mul:scale', 'Add:y']"]


def test_ops_on_different_devices_are_not_fused_together(graph):
    x = tw.placeholder(tw.float32, [4], name="x")
    with tw.device("/cpu:0"):
        a = tw.exp(x, name="a")
        b = tw.tanh(a, name="b")
    with tw.device("/cpu:1"):
        c = tw.sin(b, name="c")
        d = tw.cos(c, name="d")
    step = step_graph([d], [x])
    result = run(fuse, step)
    assert result.changes == ["fusion: fused 2 ops into fused (elementwise): Exp:a, Tanh:b",
                              "fusion: fused 2 ops into fused_1 (elementwise): Sin:c, Cos:d"]
    devices = {op.name: op.device for op in result.graph.get_operations()}
    assert devices["fused"] == "/device:CPU:0" and devices["fused_1"] == "/device:CPU:1"


def test_a_fusion_that_would_create_a_cycle_is_not_made(graph):
    # a feeds c directly and through an opaque transpose: {a, c} fused would need its own
    # output (a, through t) as an input (of c)
    x = tw.placeholder(tw.float32, [3, 3], name="x")
    a = tw.tanh(x, name="a")
    t = tw.transpose(a, name="t")
    c = tw.multiply(a, t, name="c")
    d = tw.exp(c, name="d")
    step = step_graph([d], [x])
    result = run(fuse, step)
    assert fused_summary(result.graph) == [
        "_arg_x_0 = _Arg()", "a = Tanh(_arg_x_0:0)", "Const = Const()",
        "t = Transpose(a:0, Const:0)", "fused = Fused(a:0, t:0) ['Mul:c', 'Exp:d']",
        "_retval_d_0 = _Retval(fused:0)"]
    assert_same_results(step, result.graph, [floats(3, 3)])


def test_the_size_cap_splits_a_long_chain(graph):
    x = tw.placeholder(tw.float32, [4], name="x")
    y = x
    for i in range(30):
        y = tw.tanh(y, name=f"t{i}")
    step = step_graph([y], [x])
    result = run(functools.partial(fusion, min_elements=0, max_ops=24), step)
    assert [line.split(":")[0] for line in result.changes] == ["fusion", "fusion"]
    assert result.changes[0].startswith("fusion: fused 24 ops into fused (elementwise): Tanh:t0")
    assert result.changes[1].startswith("fusion: fused 6 ops into fused_1 (elementwise): "
                                        "Tanh:t24")
    assert_same_results(step, result.graph, [floats(4)])


def test_control_edges_keep_ops_out_of_groups(graph):
    x = tw.placeholder(tw.float32, [4], name="x")
    a = tw.exp(x, name="a")
    with tw.control_dependencies([a]):
        b = tw.tanh(x, name="b")
    c = tw.sin(b, name="c")
    d = tw.cos(tw.add(a, c, name="s"), name="d")
    result = run(fuse, step_graph([d], [x]))
    # a is waited for by b, b waits for a: neither joins a group
    assert result.changes == ["fusion: fused 3 ops into fused (elementwise): Sin:c, Add:s, Cos:d"]


def test_opaque_and_unknown_rules_are_left_alone(graph):
    x = tw.placeholder(tw.int32, [4], name="x")
    y = tw.floordiv(tw.add(x, 1), 2)  # FloorDiv has no elementwise rule: not fused
    result = run(fuse, step_graph([y], [x]))
    assert result.changes == []


# -- the cost check --------------------------------------------------------------------------------
def test_single_ops_are_not_fused(graph):
    x = tw.placeholder(tw.float32, [100000], name="x")
    y = tw.transpose(tw.exp(x))
    result = run(fusion, step_graph([y], [x]))
    assert result.changes == [] and result.graph is not None


def test_small_tensors_are_not_fused_but_large_and_unknown_ones_are(graph):
    n = MIN_FUSED_ELEMENTS
    small = tw.placeholder(tw.float32, [n // 2], name="small")
    large = tw.placeholder(tw.float32, [n], name="large")
    loose = tw.placeholder(tw.float32, [None, 4], name="loose")
    outs = [tw.exp(tw.tanh(small)), tw.exp(tw.tanh(large)), tw.exp(tw.tanh(loose))]
    result = run(fusion, step_graph(outs, [small, large, loose]))
    assert [c.split(": ", 2)[2] for c in result.changes] == ["Tanh:Tanh_1, Exp:Exp_1",
                                                             "Tanh:Tanh_2, Exp:Exp_2"]


def test_fused_ops_below_the_break_even_size_at_run_time_evaluate_op_by_op(graph, monkeypatch):
    x = tw.placeholder(tw.float32, [None, 4], name="x")
    y = tw.nn.sigmoid(tw.square(x) - 1.0)
    step = step_graph([y], [x])
    fused_graph = run(fusion, step).graph  # the batch size is unknown: fused
    assert [op.type for op in fused_graph.get_operations()].count("Fused") == 1
    calls = []
    monkeypatch.setattr(fused_ops_module, "MIN_FUSED_ELEMENTS", 64)
    monkeypatch.setattr(fused_ops_module, "evaluate",
                        lambda *args: calls.append(1) or evaluate_expr(*args))
    for rows in (2, 100):  # 8 elements: op by op; 400: the compiled kernel
        assert_same_results(step, fused_graph, [floats(rows, 4)])
    assert calls == [1]


# -- round trips -----------------------------------------------------------------------------------
def test_a_fused_graph_round_trips_through_graph_def_json(graph):
    x = tw.placeholder(tw.float32, [None, 4], name="x")
    y = tw.reduce_max(tw.nn.sigmoid(x * 3.0 - 1.0), axis=1)
    fused_graph = run(fuse, step_graph([y], [x])).graph
    text = serialization.to_json(fused_graph)
    restored = tw.Graph()
    with restored.as_default():
        tw.import_graph_def(serialization.load_graph_def(text), name="")
    assert serialization.to_json(restored) == text
    assert format_graph(restored) == format_graph(fused_graph)


def test_fusion_is_deterministic(graph):
    x = tw.placeholder(tw.float32, [3, 4], name="x")
    y = tw.reduce_sum(tw.square(tw.nn.relu(x) - 1.0), axis=0) + tw.exp(x)[0]
    step = step_graph([y], [x])
    assert format_graph(run(fuse, step).graph) == format_graph(run(fuse, step).graph)


# -- through a Session ---------------------------------------------------------------------------
def _session_run(graph, fetches, feeds, config):
    metadata = tw.RunMetadata()
    with tw.Session(graph=graph, config=config) as sess:
        values = sess.run(fetches, feeds, options=tw.RunOptions(), run_metadata=metadata)
        values_again = sess.run(fetches, feeds)  # a second step reuses the kernels' buffers
    for a, b in zip(values, values_again):
        np.testing.assert_array_equal(a, b)
    return values, [(s.node_name, s.op_type) for s in metadata.step_stats]


def test_a_session_fuses_by_default_and_not_when_disabled(graph):
    x = tw.placeholder(tw.float32, [512, 128], name="x")
    w = tw.placeholder(tw.float32, [128], name="w")
    h = tw.nn.relu(x * w + 1.0, name="h")
    loss = tw.reduce_mean(tw.square(h - x), name="loss")
    (gx,) = tw.gradients(loss, [x])
    feeds = {x: floats(512, 128), w: floats(128, seed=1)}
    fused, fused_stats = _session_run(graph, [h, loss, gx], feeds, tw.ConfigProto())
    plain, plain_stats = _session_run(graph, [h, loss, gx], feeds,
                                      tw.ConfigProto(disabled_passes=["fusion"]))
    assert "fusion" in tw.passes.PIPELINE
    assert [t for _, t in plain_stats].count("Fused") == 0
    fused_names = [n for n, t in fused_stats if t == "Fused"]
    assert fused_names and all(n.startswith("fused") for n in fused_names)
    assert len(fused_stats) < len(plain_stats)
    np.testing.assert_array_equal(fused[0], plain[0])
    np.testing.assert_allclose(fused[1], plain[1], rtol=1e-5)
    np.testing.assert_allclose(fused[2], plain[2], rtol=1e-5, atol=1e-9)


def test_a_session_dump_shows_what_each_fused_op_replaced(graph, tmp_path):
    x = tw.placeholder(tw.float32, [512, 128], name="x")
    y = tw.tanh(tw.exp(x, name="e"), name="t")
    with tw.Session(graph=graph, config=tw.ConfigProto(dump_dir=str(tmp_path))) as sess:
        sess.run(y, {x: floats(512, 128)})
    (dump,) = [p for p in tmp_path.rglob("*fusion.txt")]
    assert "= Fused(" in dump.read_text() and "fused_ops=['Exp:e', 'Tanh:t']" in dump.read_text()
