"""simplify: the rule table, each rule before/after on printed graphs."""

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.graph.printer import format_graph
from tensorweave.ops.registry import apply_op
from tensorweave.passes.simplify import RULES, simplify
from tests.passes.passtest import run, step_graph


def test_neutral_operands_on_either_side(graph):
    x = tw.placeholder(tw.float32, [2, 3], name="x")
    a = tw.multiply(x, 1.0, name="a")
    b = tw.multiply(tw.ones([3], name="ones"), a, name="b")
    c = tw.add(b, 0.0, name="c")
    d = tw.add(tw.zeros([1, 3], name="zeros"), c, name="d")
    e = tw.subtract(d, 0.0, name="e")
    f = tw.divide(e, 1.0, name="f")
    result = run(simplify, step_graph([f], [x]))
    assert format_graph(result.graph) == (
        "%_arg_x_0:0 f32[2,3] = _Arg() {dtype=f32, index=0, shape=[2,3]}\n"
        "%Const:0 f32[] = Const() {dtype=f32, value=<f32[] 1.0>}\n"
        "%ones:0 f32[3] = Const() {dtype=f32, value=<f32[3] [1.0, 1.0, 1.0]>}\n"
        "%Const_2:0 f32[] = Const() {dtype=f32, value=<f32[] 0.0>}\n"
        "%zeros:0 f32[1,3] = Const() {dtype=f32, value=<f32[1,3] [[0.0, 0.0, 0.0]]>}\n"
        "%Const_4:0 f32[] = Const() {dtype=f32, value=<f32[] 0.0>}\n"
        "%Const_5:0 f32[] = Const() {dtype=f32, value=<f32[] 1.0>}\n"
        "%_retval_f_0 = _Retval(%_arg_x_0:0) {index=0}\n")
    assert result.changes == [
        "simplify: a (Mul) -> _arg_x_0:0 (x*1)",
        "simplify: b (Mul) -> _arg_x_0:0 (1*x)",
        "simplify: c (Add) -> _arg_x_0:0 (x+0)",
        "simplify: d (Add) -> _arg_x_0:0 (0+x)",
        "simplify: e (Sub) -> _arg_x_0:0 (x-0)",
        "simplify: f (RealDiv) -> _arg_x_0:0 (x/1)"]


def test_neutral_operands_that_would_broadcast_x_are_kept(graph):
    x = tw.placeholder(tw.float32, [None, 3], name="x")
    y = tw.placeholder(tw.float32, [None], name="y")
    a = tw.multiply(x, tw.ones([4, 3], name="ones43"), name="a")   # [?,3] * [4,3] -> [4,3]
    b = tw.multiply(x, tw.ones([1], name="one1"), name="b")        # size-1 dim: no broadcast
    c = tw.multiply(y, tw.ones([3], name="ones3"), name="c")       # y may have 1 element
    d = tw.add(x, tw.constant([0.0, 0.0, 1.0], name="not_zero"), name="d")
    e = tw.subtract(tw.zeros([3], name="z"), x, name="e")          # 0-x is not x
    result = run(simplify, step_graph([a, b, c, d, e], [x, y]))
    assert result.changes == ["simplify: b (Mul) -> _arg_x_0:0 (x*1)"]
    assert "%_retval_a_0 = _Retval(%a:0) {index=0}" in format_graph(result.graph)


def test_constants_are_recognised_by_value_and_by_the_op_that_makes_them(graph):
    x = tw.placeholder(tw.int32, [3], name="x")
    a = tw.add(x, tw.zeros_like(x, name="zl"), name="a")
    b = tw.multiply(tw.ones_like(x, name="ol"), a, name="b")
    c = tw.multiply(b, tw.fill([3], 1, name="filled"), name="c")
    result = run(simplify, step_graph([c], [x]))
    assert result.changes == ["simplify: a (Add) -> _arg_x_0:0 (x+0)",
                              "simplify: b (Mul) -> _arg_x_0:0 (1*x)",
                              "simplify: c (Mul) -> _arg_x_0:0 (x*1)"]


def test_double_negation_chains(graph):
    x = tw.placeholder(tw.float32, [2], name="x")
    n = x
    for i in range(4):
        n = tw.negative(n, name=f"n{i + 1}")
    result = run(simplify, step_graph([n], [x]))
    assert format_graph(result.graph) == (
        "%_arg_x_0:0 f32[2] = _Arg() {dtype=f32, index=0, shape=[2]}\n"
        "%n1:0 f32[2] = Neg(%_arg_x_0:0)\n"
        "%n3:0 f32[2] = Neg(%_arg_x_0:0)\n"
        "%_retval_n4_0 = _Retval(%_arg_x_0:0) {index=0}\n")
    assert result.changes == ["simplify: n2 (Neg) -> _arg_x_0:0 (-(-x))",
                              "simplify: n4 (Neg) -> _arg_x_0:0 (-(-x))"]


def test_transposes_compose(graph):
    x = tw.placeholder(tw.float32, [2, 3, 4], name="x")
    t = tw.transpose(tw.transpose(x, [1, 2, 0], name="t1"), [2, 0, 1], name="t2")
    u = tw.transpose(tw.transpose(x, [1, 0, 2], name="u1"), [0, 2, 1], name="u2")
    v = tw.transpose(x, [0, 1, 2], name="v")
    result = run(simplify, step_graph([t, u, v], [x]))
    text = format_graph(result.graph)
    assert "%u2/perm:0 i32[3] = Const() {dtype=i32, value=<i32[3] [1, 2, 0]>}\n" \
           "%u2:0 f32[3,4,2] = Transpose(%_arg_x_0:0, %u2/perm:0)\n" in text
    assert result.changes == [
        "simplify: t2 (Transpose) -> _arg_x_0:0 (transpose of transpose)",
        "simplify: u2 (Transpose) -> Transpose(_arg_x_0:0, u2/perm:0) (transpose of transpose)",
        "simplify: v (Transpose) -> _arg_x_0:0 (identity perm)"]
    value = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    with tw.Session() as sess:
        got = sess.run([t, u, v], {x: value})
    np.testing.assert_array_equal(got[1], value.transpose(1, 0, 2).transpose(0, 2, 1))


def test_reshapes_compose_when_the_inner_one_cannot_fail(graph):
    x = tw.placeholder(tw.float32, [2, 3, 4], name="x")
    r = tw.reshape(tw.reshape(x, [6, 4], name="r1"), [4, 6], name="r2")
    s = tw.reshape(x, [2, 3, 4], name="s")
    y = tw.placeholder(tw.float32, [None], name="y")
    q = tw.reshape(tw.reshape(y, [2, -1], name="q1"), [-1], name="q2")  # q1 may fail
    result = run(simplify, step_graph([r, s, q], [x, y]))
    assert "%r2:0 f32[4,6] = Reshape(%_arg_x_0:0, %Const_1:0)\n" in format_graph(result.graph)
    assert result.changes == [
        "simplify: r2 (Reshape) -> Reshape(_arg_x_0:0, Const_1:0) (reshape of reshape)",
        "simplify: s (Reshape) -> _arg_x_0:0 (reshape to own shape)"]


def test_identities_are_bypassed_including_a_variables_read(graph):
    x = tw.placeholder(tw.float32, [2], name="x")
    w = tw.Variable(np.ones(2, np.float32), name="W")
    i = tw.identity(tw.identity(x, name="i1"), name="i2")
    s = tw.stop_gradient(x, name="s")
    wv = tw.add(w, 1.0, name="wv")
    result = run(simplify, step_graph([i, s, wv], [x]))
    assert "%wv:0 f32[2] = Add(%W:0, %Const:0)\n" in format_graph(result.graph)
    assert result.changes == ["simplify: W/read (Identity) -> W:0 (identity)",
                              "simplify: i1 (Identity) -> _arg_x_0:0 (identity)",
                              "simplify: i2 (Identity) -> _arg_x_0:0 (identity)",
                              "simplify: s (StopGradient) -> _arg_x_0:0 (stop_gradient)"]


def test_identities_that_order_or_move_a_value_are_kept(graph):
    x = tw.placeholder(tw.float32, [2], name="x")
    gate = tw.no_op(name="gate")
    with tw.control_dependencies([gate]):
        ordered = tw.identity(x, name="ordered")
    with tw.device("/device:GPU:0"):
        moved = tw.identity(x, name="moved")
    result = run(simplify, step_graph([ordered, moved], [x]))
    assert result.changes == []


def test_a_bypassed_op_stays_for_its_control_consumers(graph):
    x = tw.placeholder(tw.float32, [2], name="x")
    i = tw.identity(x, name="i")
    with tw.control_dependencies([i]):
        y = tw.negative(x, name="y")
    z = tw.add(i, y, name="z")
    result = run(simplify, step_graph([z], [x]))
    assert format_graph(result.graph) == (
        "%_arg_x_0:0 f32[2] = _Arg() {dtype=f32, index=0, shape=[2]}\n"
        "%i:0 f32[2] = Identity(%_arg_x_0:0)\n"
        "%y:0 f32[2] = Neg(%_arg_x_0:0) ^i\n"
        "%z:0 f32[2] = Add(%_arg_x_0:0, %y:0)\n"
        "%_retval_z_0 = _Retval(%z:0) {index=0}\n")


def test_cast_to_its_own_dtype(graph):
    x = tw.placeholder(tw.float32, [2], name="x")
    same = apply_op("Cast", [x], {"SrcT": tw.float32, "DstT": tw.float32}, name="same")
    other = tw.cast(x, tw.float64, name="other")
    result = run(simplify, step_graph([same.outputs[0], other], [x]))
    assert result.changes == ["simplify: same (Cast) -> _arg_x_0:0 (cast to own dtype)"]


def test_an_unfed_default_is_its_default(graph):
    d = tw.placeholder_with_default(tw.constant([1.0, 2.0], name="d"), [2], name="p")
    y = tw.square(d, name="y")
    result = run(simplify, step_graph([y]))
    assert result.changes == ["simplify: p (PlaceholderWithDefault) -> d:0 (unfed default)"]


@pytest.mark.parametrize("op_type", sorted(RULES))
def test_every_rule_is_about_a_registered_op(op_type):
    from tensorweave.ops import registry
    assert registry.lookup(op_type) is not None
