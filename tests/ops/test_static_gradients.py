"""Gradient graphs that static shapes decide at build time, before and after.

``unbroadcast`` sums a broadcast gradient over constant axes when static shapes decide them
(``Sum`` over ``[0]`` for a bias ``[256]`` added to ``[?, 256]``) instead of a
Shape/BroadcastGradientArgs/Sum/Reshape chain; a reduction's gradient reshapes to a constant
keep_dims shape and counts its elements from static dims; ``OnesLike``/``ZerosLike`` of a small
known shape are constants. Each rewrite must compute exactly what the run-time chain computed:
the tests build both forms (the run-time one by switching the static analysis off) and compare
values bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops import elementwise, reduction
from tensorweave.ops.elementwise import static_reduction_axes
from tensorweave.ops.registry import constant_value
from tensorweave.passes.constant_fold import constant_fold
from tests.passes.passtest import step_graph


def shapes(*dims):
    return [TensorShape(d) for d in dims]


# -- the axes, from static shapes ------------------------------------------------------------------
AXES_CASES = [
    # (grad, like, others (None: unknown), expected axes or None)
    ([None, 256], [256], [[None, 256]], [0]),            # bias add with an unknown batch
    ([None, 256], [None, 256], [[256]], []),             # the other side of that add
    ([None, 256], [None, 256], [[1, 256]], []),          # a known 1 cannot stretch it
    ([None, 256], [None, 256], [[None, 256]], None),     # the other may have stretched it
    ([None, 256], [None, 256], None, None),              # others unknown: ask at run time
    ([None, 3, 4], [3, 1], [[None, 3, 4]], [0, 2]),      # leading axis and a known 1
    ([None, 3], [1, 3], [[None, 3]], [0]),               # a 1 is summed even if N may be 1
    ([2, 3], [2, 1], [[2, 3]], [1]),
    ([2, 1], [2, 1], [[1, 1]], []),                      # a 1 against a 1: nothing to sum
    ([None, None], [None, 1], [[None, None]], None),
    ([None, 4], None, [[None, 4]], None),                # unknown rank
    (None, [4], [[4]], None),
    ([4], [2, 4], [[4]], None),                          # not a broadcast of like
]


@pytest.mark.parametrize("grad, like, others, expected", AXES_CASES)
def test_static_reduction_axes(grad, like, others, expected):
    other_shapes = None if others is None else shapes(*others)
    got = static_reduction_axes(TensorShape(grad), TensorShape(like), other_shapes)
    assert got == expected


# -- the graphs, before and after --------------------------------------------------------------
def gradient_op_types(fn, x_shape, y_shape):
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.float32, x_shape, name="x")
        y = tw.placeholder(tw.float32, y_shape, name="y")
        gx, gy = tw.gradients(tw.reduce_sum(fn(x, y)), [x, y])
    types = [op.type for op in graph.get_operations() if op.name.startswith("gradients/")]
    return types, gx, gy


def test_bias_add_gradient_is_one_constant_axes_sum():
    types, gx, gy = gradient_op_types(tw.add, [None, 256], [256])
    assert "BroadcastGradientArgs" not in types and "Reshape" not in types[-3:]
    assert gy.op.type == "Sum" and gy.shape.as_list() == [256]
    np.testing.assert_array_equal(constant_value(gy.op.inputs[1]), [0])
    assert gx.op.type != "Sum"  # the batch side needs no sum at all


def test_unknown_dims_both_sides_keep_the_run_time_chain():
    types, _, _ = gradient_op_types(tw.add, [None, 4], [None, 4])
    assert types.count("BroadcastGradientArgs") == 2


BINARY = [
    ("add", tw.add), ("sub", tw.subtract), ("mul", tw.multiply), ("div", tw.realdiv),
    ("maximum", tw.maximum), ("squared_difference", tw.squared_difference),
    ("where", lambda x, y: tw.where_v2(x > 0.5, x, y)),
    ("clip", lambda x, y: tw.clip_by_value(x, y, 1.5)),
]
SHAPES = [  # (x placeholder, y placeholder, x value, y value)
    ([None, 5], [5], (3, 5), (5,)),
    ([None, 5], [1, 5], (3, 5), (1, 5)),
    ([None, 5], [1, 5], (1, 5), (1, 5)),      # the batch turns out to be 1
    ([None, 2, 5], [2, 1], (4, 2, 5), (2, 1)),
    ([3, 1], [None, 3, 4], (3, 1), (2, 3, 4)),
    ([None, 4], [None, 4], (3, 4), (3, 4)),   # run-time chain either way
    ([None, 4], [None, 4], (3, 4), (1, 4)),   # ... because y may turn out to broadcast
]


def gradients_of(fn, x_shape, y_shape, x_value, y_value):
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.float32, x_shape)
        y = tw.placeholder(tw.float32, y_shape)
        out = fn(x, y)
        weights = tw.constant(np.linspace(-1.0, 2.0, 7, dtype=np.float32)[:1])
        grads = tw.gradients(tw.reduce_sum(out * weights), [x, y])
    config = tw.ConfigProto(disabled_passes=list(tw.passes.PIPELINE))
    with tw.Session(graph=graph, config=config) as sess:
        return sess.run([g for g in grads if g is not None], {x: x_value, y: y_value})


@pytest.mark.parametrize("x_shape, y_shape, x_size, y_size", SHAPES)
@pytest.mark.parametrize("name, fn", BINARY, ids=[n for n, _ in BINARY])
def test_static_and_run_time_gradients_are_bitwise_equal(monkeypatch, name, fn, x_shape,
                                                          y_shape, x_size, y_size):
    if name == "clip" and len(y_size) > len(x_size):
        pytest.skip("clip_by_value's bounds must broadcast to the shape of t")
    rng = np.random.default_rng(len(x_size) + 10 * len(y_size))
    x_value = rng.uniform(0.1, 2.0, x_size).astype(np.float32)
    y_value = rng.uniform(0.1, 2.0, y_size).astype(np.float32)
    static = gradients_of(fn, x_shape, y_shape, x_value, y_value)
    monkeypatch.setattr(elementwise, "static_reduction_axes", lambda *args: None)
    run_time = gradients_of(fn, x_shape, y_shape, x_value, y_value)
    assert len(static) == len(run_time)
    for a, b in zip(static, run_time):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert a.tobytes() == b.tobytes()


# -- reductions: constant keep_dims shapes and static element counts ------------------------------
REDUCTIONS = [
    ("mean_batch", tw.reduce_mean, [None], 0, (6,)),
    ("mean_rows", tw.reduce_mean, [None, 5], 1, (3, 5)),
    ("mean_all", tw.reduce_mean, [None, 5], None, (3, 5)),
    ("mean_cols", tw.reduce_mean, [None, 5], 0, (3, 5)),
    ("sum_rows", tw.reduce_sum, [None, 2, 5], [1, 2], (3, 2, 5)),
    ("max_rows", tw.reduce_max, [None, 5], 1, (3, 5)),
    ("mean_two_unknown", tw.reduce_mean, [None, None, 3], 2, (2, 4, 3)),
]


def reduction_gradient(fn, shape, axis, value):
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.float32, shape)
        y = fn(x, axis=axis)
        (g,) = tw.gradients(tw.reduce_sum(y * 3.0), [x])
    types = [op.type for op in graph.get_operations() if op.name.startswith("gradients/")]
    config = tw.ConfigProto(disabled_passes=list(tw.passes.PIPELINE))
    with tw.Session(graph=graph, config=config) as sess:
        return types, sess.run(g, {x: value})


@pytest.mark.parametrize("name, fn, shape, axis, size", REDUCTIONS,
                         ids=[r[0] for r in REDUCTIONS])
def test_reduction_gradients_static_and_run_time_are_bitwise_equal(monkeypatch, name, fn, shape,
                                                                    axis, size):
    value = np.random.default_rng(5).uniform(-2, 2, size).astype(np.float32)
    types, static = reduction_gradient(fn, shape, axis, value)
    if name != "mean_two_unknown":
        assert "ReducedShape" not in types
    monkeypatch.setattr(reduction, "_static_reduced_axes", lambda op: None)
    run_time_types, run_time = reduction_gradient(fn, shape, axis, value)
    assert "ReducedShape" in run_time_types or "all" in name
    assert static.tobytes() == run_time.tobytes()


def test_mean_over_known_dims_of_an_unknown_batch_counts_statically():
    types, _ = reduction_gradient(tw.reduce_mean, [None, 5], 1, np.ones((2, 5), np.float32))
    assert "Size" not in types and "FloorDiv" not in types


def test_mean_over_the_batch_counts_with_one_size_op():
    types, _ = reduction_gradient(tw.reduce_mean, [None], 0, np.ones(4, np.float32))
    assert types.count("Size") == 1 and "FloorDiv" not in types


# -- OnesLike / ZerosLike of small known shapes are constants -----------------------------------
def test_small_ones_like_of_a_known_shape_is_a_constant():
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.float32, [3, 2])
        ones, zeros = tw.ones_like(x), tw.zeros_like(x)
        big = tw.ones_like(tw.placeholder(tw.float32, [1000]))
        unknown = tw.ones_like(tw.placeholder(tw.float32, [None, 2]))
    np.testing.assert_array_equal(constant_value(ones), np.ones((3, 2), np.float32))
    np.testing.assert_array_equal(constant_value(zeros), np.zeros((3, 2), np.float32))
    assert constant_value(ones).dtype == np.float32
    assert constant_value(big) is None and constant_value(unknown) is None


def test_the_loss_gradient_seed_folds_away():
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.float32, [None, 3], name="x")
        loss = tw.reduce_mean(tw.square(x), name="loss")
        (g,) = tw.gradients(loss, [x])
    folded = constant_fold(step_graph([g], [x])).graph
    types = {op.name: op.type for op in folded.get_operations()}
    assert types["gradients/grad_ys_0"] == "Const"  # OnesLike(loss)
    assert types["gradients/loss_grad/Reshape"] == "Const"
    with tw.Session(graph=graph) as sess:
        value = sess.run(g, {x: np.ones((2, 3), np.float32)})
    np.testing.assert_array_equal(value, np.full((2, 3), np.float32(2.0) / np.float32(6.0)))
