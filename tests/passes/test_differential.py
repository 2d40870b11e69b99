"""Differential: a Session running the optimized step equals the reference interpreter.

Random forward graphs (the shared generator's ops plus "bait" for the passes: neutral
operands, double negations, identities, transposes and reshapes of transposes and reshapes,
duplicated subexpressions, constant subexpressions, placeholders of partly unknown shape) and
their gradient graphs. Our passes never reorder arithmetic, so results are bitwise equal (up to
the sign of zero, see ``passes.simplify``).
"""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensorweave as tw
from tensorweave.executor import reference
from tests.graphgen import random_graphs

SHAPES = [(3, 4), (4,), (1, 4), (3, 1), (), (2, 3, 4)]
_SETTINGS = settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _bait(draw, x, rng):
    """One op of ``x`` that some pass should rewrite (or must leave alone)."""
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return x * 1.0
    if kind == 1:
        return tw.zeros_like(x) + x
    if kind == 2:
        return tw.negative(tw.negative(x))
    if kind == 3:
        return tw.identity(tw.identity(x))
    if kind == 4:
        return tw.exp(tw.tanh(x)) + tw.exp(tw.tanh(x))  # duplicated subexpression
    if kind == 5:
        c = tw.constant(rng.uniform(-1, 1, size=(4,)).astype(np.float32))
        return x + tw.square(c) * 2.0  # a constant subexpression; broadcasts when it fits
    if kind == 6 and x.shape.rank:
        perm = list(range(x.shape.rank))[::-1]
        return tw.transpose(tw.transpose(x, perm), perm)
    if kind == 7 and x.shape.is_fully_defined():
        n = x.shape.num_elements()
        return tw.reshape(tw.reshape(x, [n]), x.shape.as_list())
    if kind == 8:
        return x * tw.ones([3, 1])  # broadcasts: must not be simplified away
    if kind == 9:
        return x - 0.0
    if kind == 10:
        return x / 1.0
    return tw.stop_gradient(x) * 2.0


@st.composite
def bait_graphs(draw):
    """(graph, placeholders, feeds, fetches): the shared random graph plus bait ops, and
    sometimes a placeholder of partly unknown shape."""
    graph, placeholders, feeds, fetches = draw(random_graphs())
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    with graph.as_default():
        if draw(st.booleans()):
            shape = draw(st.sampled_from(SHAPES))
            declared = [None if draw(st.booleans()) else d for d in shape]
            ph = tw.placeholder(tw.float32, declared, name="loose")
            placeholders.append(ph)
            feeds[ph] = rng.uniform(-2, 2, size=shape).astype(np.float32)
            fetches = fetches + [tw.sin(ph)]
        tensors = list(fetches) + placeholders
        for _ in range(draw(st.integers(1, 6))):
            x = tensors[draw(st.integers(0, len(tensors) - 1))]
            try:
                out = _bait(draw, x, rng)
            except (ValueError, TypeError):
                continue
            tensors.append(out)
            fetches = fetches + [out]
    return graph, placeholders, feeds, fetches


def _with_gradients(sample):
    graph, placeholders, feeds, fetches = sample
    with graph.as_default():
        loss = tw.add_n([tw.reduce_sum(f) for f in fetches])
        grads = [g for g in tw.gradients(loss, placeholders) if g is not None]
    return graph, feeds, [loss] + grads


def _assert_bitwise(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    if want.dtype.kind == "f":
        # Equal bits, except that x+0 -> x may keep a -0.0 where the step made +0.0.
        same = (got == want) & (want != 0)
        bits = f"u{want.dtype.itemsize}"
        np.testing.assert_array_equal(got[same].view(bits), want[same].view(bits))


def _check(graph, feeds, fetches, disabled):
    want = reference.evaluate(fetches, feeds)
    config = tw.ConfigProto(disabled_passes=disabled, verify_passes=True)
    with tw.Session(graph=graph, config=config) as sess:
        got = sess.run(fetches, feeds)
    return got, want


@_SETTINGS
@given(bait_graphs())
def test_optimized_forward_graphs_equal_the_reference_bitwise(sample):
    graph, _, feeds, fetches = sample
    got, want = _check(graph, feeds, fetches, ["fusion"])
    for g, w in zip(got, want):
        _assert_bitwise(g, w)


@_SETTINGS
@given(bait_graphs())
def test_optimized_gradient_graphs_equal_the_reference_bitwise(sample):
    graph, feeds, fetches = _with_gradients(sample)
    got, want = _check(graph, feeds, fetches, ["fusion"])
    for g, w in zip(got, want):
        _assert_bitwise(g, w)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bait_graphs())
def test_the_full_pipeline_equals_the_reference(sample):
    """Every pass of tw.passes.PIPELINE, fusion included when it is present."""
    graph, feeds, fetches = _with_gradients(sample)
    got, want = _check(graph, feeds, fetches, [])
    for g, w in zip(got, want):
        assert np.asarray(g).dtype == np.asarray(w).dtype
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
