"""prune and dce: keep what the results need; dce also keeps every stateful op."""

import numpy as np

import tensorweave as tw
from tensorweave.graph.printer import format_graph
from tensorweave.passes import constant_fold, dce, prune
from tensorweave.passes.prune import needed_ops
from tests.passes.passtest import run, step_graph


def test_needed_ops_follows_data_and_control_edges_and_stops_at_feeds(graph):
    x = tw.placeholder(tw.float32, [], name="x")
    h = tw.exp(x, name="h")
    gate = tw.no_op(name="gate")
    with tw.control_dependencies([gate]):
        y = tw.negative(h, name="y")
    tw.square(x, name="unused")
    assert [op.name for op in needed_ops([y], [], [])] == ["x", "h", "gate", "y"]
    assert [op.name for op in needed_ops([y], [], [h])] == ["gate", "y"]


def test_prune_removes_unused_args(graph):
    x = tw.placeholder(tw.float32, [], name="x")
    c = tw.constant(1.0, name="c")
    result = run(prune.prune, step_graph([c], [x]))
    assert format_graph(result.graph) == (
        "%c:0 f32[] = Const() {dtype=f32, value=<f32[] 1.0>}\n"
        "%_retval_c_0 = _Retval(%c:0) {index=0}\n")
    assert result.changes == ["prune: removed _arg_x_0 (_Arg)"]
    with tw.Session() as sess:
        assert sess.run(c, {x: 5.0}) == 1.0


def test_prune_keeps_targets_and_what_they_wait_for(graph):
    v = tw.Variable(1.0, name="v")
    with tw.control_dependencies([v.initializer]):
        done = tw.no_op(name="done")
    step = step_graph([], [], [done])
    assert run(prune.prune, step).changes == []


def test_dce_removes_what_folding_left_behind(graph):
    a = tw.constant(2.0, name="a")
    y = tw.multiply(a, 3.0, name="y")
    folded = run(constant_fold.constant_fold, step_graph([y])).graph
    result = run(dce.dce, folded)
    assert format_graph(result.graph) == (
        "%y:0 f32[] = Const() {dtype=f32, value=<f32[] 6.0>}\n"
        "%_retval_y_0 = _Retval(%y:0) {index=0}\n")
    assert result.changes == ["dce: removed a (Const)", "dce: removed Const (Const)"]


def test_dce_keeps_stateful_ops_whose_values_are_no_longer_read(graph):
    v = tw.Variable(np.zeros(3, np.float32), name="v")
    update = tw.assign(v, np.ones(3, np.float32), name="update")
    s = tw.shape(update, name="s")  # folds from static shapes: the Assign's value is not read
    folded = run(constant_fold.constant_fold, step_graph([s]))
    assert "constant_fold: folded s (Shape) -> Const" in folded.changes
    result = run(dce.dce, folded.graph)
    assert "update" in [op.name for op in result.graph.get_operations()]
    # prune keeps only what the results read, which is why dce (not prune) follows folding
    pruned = run(prune.prune, folded.graph).graph
    assert "update" not in [op.name for op in pruned.get_operations()]
    with tw.Session() as sess:
        np.testing.assert_array_equal(sess.run(s), [3])
        np.testing.assert_array_equal(sess.run(v), [1.0, 1.0, 1.0])  # the update still ran
