"""``fuse_updates``: an update op whose gradient is a sum (scaled, reshaped) reads the addends
itself, and training gives the reference interpreter's variables to the bit."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensorweave as tw
from tensorweave.executor import reference
from tensorweave.executor.context import VariableStore
from tensorweave.passes.fuse_updates import fuse_updates

SHAPES = {"small": (3, 4), "loop-sized": (200, 180)}  # 36,000 elements: the loops run


def _mean_update(dtype, shape, *, sum_kind="add", scale_kind="mul", flatten=False,
                 optimizer="adam", fetch_mean=False, pin=None):
    """A variable updated with the mean of two gradients, as data-parallel training makes it.
    Returns (graph, train op, fetches, feeds, variables)."""
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(dtype, shape, name="x")
        y = tw.placeholder(dtype, shape, name="y")
        w = tw.Variable(np.linspace(-1, 1, np.prod(shape)).reshape(shape).astype(dtype),
                        name="w")
        g0, g1 = x * w, tw.tanh(y)
        n = int(np.prod(shape))
        if flatten:  # as the all-reduce packs its buckets
            g0, g1 = tw.reshape(g0, [n]), tw.reshape(g1, [n])
        with tw.device(pin or ""):
            total = g0 + g1 if sum_kind == "add" else tw.add_n([g0, g1])
            if scale_kind == "mul":
                mean = total * tw.constant(0.5, dtype)
            elif scale_kind == "mul-left":
                mean = tw.constant(0.5, dtype) * total
            elif scale_kind == "div":
                mean = total / tw.constant(3.0, dtype)
            else:
                mean = total
            if flatten:
                mean = tw.reshape(mean, list(shape))
        opt = (tw.train.AdamOptimizer(0.01) if optimizer == "adam"
               else tw.train.GradientDescentOptimizer(0.1))
        train = opt.apply_gradients([(mean, w)])
        init = tw.global_variables_initializer()
    fetches = [train] + ([mean] if fetch_mean else [])
    rng = np.random.default_rng(0)
    feeds = {x: rng.standard_normal(shape).astype(dtype),
             y: rng.standard_normal(shape).astype(dtype)}
    with g.as_default():
        variables = tw.global_variables()
    return g, init, fetches, feeds, variables


def _changes(graph, fetches, feeds):
    with graph.as_default():
        sess = tw.Session(graph=graph)
        try:
            return [c for c in sess.step_plan(fetches, feeds).changes if "fuse_updates" in c]
        finally:
            sess.close()


def _train(graph, init, fetches, feeds, variables, steps=3, config=None):
    with tw.Session(graph=graph, config=config) as sess:
        sess.run(init)
        for _ in range(steps):
            sess.run(fetches, feeds)
        return [sess.run(v) for v in variables]


def _reference(init, fetches, feeds, variables, steps=3):
    store = VariableStore()
    reference.evaluate([init], store=store)
    for _ in range(steps):
        reference.evaluate(fetches, feeds, store=store)
    return reference.evaluate([v.op.outputs[0] for v in variables], store=store)


@pytest.mark.parametrize("optimizer", ["adam", "gd"])
@pytest.mark.parametrize("scale_kind", ["mul", "mul-left", "div", "none"])
def test_the_update_reads_the_addends_and_trains_bitwise_as_before(optimizer, scale_kind):
    case = _mean_update(np.float32, SHAPES["loop-sized"], scale_kind=scale_kind,
                        optimizer=optimizer, flatten=True)
    graph, init, fetches, feeds, variables = case
    changes = _changes(graph, fetches, feeds)
    assert len(changes) == 1 and "computes its gradient" in changes[0]
    got = _train(*case)
    unfused = _train(*case, config=tw.ConfigProto(disabled_passes=["fuse_updates"]))
    want = _reference(init, fetches, feeds, variables)
    for a, b, c in zip(got, unfused, want):
        assert a.tobytes() == b.tobytes() == c.tobytes()


def test_a_mean_read_elsewhere_is_left_alone():
    graph, init, fetches, feeds, variables = _mean_update(np.float32, (3, 4), fetch_mean=True)
    assert _changes(graph, fetches, feeds) == []


def test_a_sum_on_another_device_than_the_update_is_left_alone():
    graph, init, fetches, feeds, variables = _mean_update(np.float32, (3, 4), pin="/cpu:1")
    assert fuse_updates(graph).changes == []


def test_a_broadcasting_sum_is_left_alone():
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [3, 4])
        b = tw.placeholder(tw.float32, [4])
        w = tw.Variable(np.zeros((3, 4), np.float32))
        tw.train.GradientDescentOptimizer(0.1).apply_gradients([((x + b) * 0.5, w)])
    assert fuse_updates(g).changes == []


def test_a_scale_that_is_not_a_scalar_or_divides_from_the_left_is_left_alone():
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [3, 4])
        y = tw.placeholder(tw.float32, [3, 4])
        s = tw.placeholder(tw.float32, [3, 4])
        w = tw.Variable(np.zeros((3, 4), np.float32))
        v = tw.Variable(np.zeros((3, 4), np.float32))
        opt = tw.train.GradientDescentOptimizer(0.1)
        opt.apply_gradients([((x + y) * s, w), (tw.constant(2.0) / (x + y), v)])
    assert fuse_updates(g).changes == []


_SETTINGS = settings(max_examples=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(dtype=st.sampled_from([np.float32, np.float64]), size=st.sampled_from(sorted(SHAPES)),
       sum_kind=st.sampled_from(["add", "add_n"]),
       scale_kind=st.sampled_from(["mul", "mul-left", "div", "none"]),
       flatten=st.booleans(), optimizer=st.sampled_from(["adam", "gd"]),
       fetch_mean=st.booleans())
def test_training_with_every_pass_equals_the_reference_bitwise(dtype, size, sum_kind,
                                                                scale_kind, flatten, optimizer,
                                                                fetch_mean):
    case = _mean_update(dtype, SHAPES[size], sum_kind=sum_kind, scale_kind=scale_kind,
                        flatten=flatten, optimizer=optimizer, fetch_mean=fetch_mean)
    graph, init, fetches, feeds, variables = case
    got = _train(*case)
    want = _reference(init, fetches, feeds, variables)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_an_update_whose_inputs_do_not_match_its_gradient_form_is_rejected():
    from tensorweave.ops.registry import apply_op
    g = tw.Graph()
    with g.as_default():
        alpha, delta = tw.constant(0.1), tw.constant([1.0, 2.0])
        with pytest.raises(ValueError, match="asks? for 2 gradient terms"):
            apply_op("ApplyGradientDescent", [alpha, delta], {"var": "w", "grad_terms": 2})
