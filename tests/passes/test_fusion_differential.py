"""Differential: fused graphs equal the reference interpreter on the unfused user graph.

Two generators: the shared ``random_graphs`` (tiny tensors, every fusion forced with
``min_elements=0``, every kernel one chunk: results bitwise equal), and a local one of larger
tensors built from the fusable op kinds (chains with broadcasting, reductions, bias adds, matmul
epilogues), run with a small chunk size so that every fused kernel is cut into many chunks. Both are checked for the forward graphs and for
their gradient graphs (gradients of the sum of the outputs).

Tolerance (DESIGN.md, "Kernel fusion"): fused elementwise code computes exactly what the ops did
(same ufuncs, same order, same dtypes), so results are bitwise equal up to the sign of a zero.
A fused Sum/Mean/Prod over more than one chunk adds partial results chunk by chunk, which
reorders the float32 rounding: those graphs are compared with rtol 1e-5.
"""

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensorweave as tw
from tensorweave.codegen import cpu_numpy
from tensorweave.executor import reference
from tensorweave.ops import fused as fused_ops
from tensorweave.passes import PassOptions, pipeline, run_pipeline
from tensorweave.passes.fusion import fusion
from tensorweave.passes.snapshot import snapshot
from tests.graphgen import random_graphs

_SETTINGS = settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.function_scoped_fixture])
REORDERING = {"Sum", "Mean", "Prod"}  # fused reductions that add chunk results in a new order


@pytest.fixture(autouse=True)
def fused_kernels_at_every_size(monkeypatch):
    """Fused ops run their kernels even on arrays below the break-even size."""
    monkeypatch.setattr(fused_ops, "MIN_FUSED_ELEMENTS", 0)


@pytest.fixture
def small_chunks(monkeypatch):
    """Kernels compiled in the test cut their work into chunks of 256 elements."""
    monkeypatch.setattr(cpu_numpy, "CHUNK_ELEMENTS", 256)
    monkeypatch.setenv("TENSORWEAVE_CPU_BACKEND", "numpy")


def _with_gradients(graph, placeholders, feeds, fetches):
    with graph.as_default():
        loss = tw.add_n([tw.reduce_sum(f) for f in fetches])
        grads = [g for g in tw.gradients(loss, placeholders) if g is not None]
    return graph, feeds, [loss] + grads


def _fused_step(fetches, feeds):
    """The step graph after the pipeline before fusion, then fusion with every group made."""
    step = snapshot(fetches[0].graph, fetches, list(feeds), [])
    before = run_pipeline(step, pipeline(["fusion"]), options=PassOptions(), verify=True).graph
    return run_pipeline(before, [("fusion", functools.partial(fusion, min_elements=0))],
                        options=PassOptions(), verify=True).graph


def _evaluate_step(graph, feed_values):
    ops = graph.get_operations()
    args = sorted((op for op in ops if op.type == "_Arg"), key=lambda op: op.attrs["index"])
    rets = sorted((op for op in ops if op.type == "_Retval"), key=lambda op: op.attrs["index"])
    return reference.evaluate([r.inputs[0] for r in rets],
                              {a.outputs[0]: feed_values[a.attrs["index"]] for a in args})


def _reorders(graph) -> bool:
    return any(op.type == "Fused" and (fused_ops.expr_of(op).reduce or {}).get("op") in REORDERING
               for op in graph.get_operations())


def _assert_bitwise(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    if want.dtype.kind == "f":
        same = (got == want) & (want != 0)  # equal bits, except the sign of a zero
        bits = f"u{want.dtype.itemsize}"
        np.testing.assert_array_equal(got[same].view(bits), want[same].view(bits))


def _check(graph, feeds, fetches, chunked=False):
    """Compare; ``chunked``: kernels may cut reductions into chunks (else one chunk each)."""
    want = reference.evaluate(fetches, feeds)
    fused_graph = _fused_step(fetches, feeds)
    got = _evaluate_step(fused_graph, list(feeds.values()))
    reorders = chunked and _reorders(fused_graph)
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        if reorders:
            assert g.dtype == w.dtype and g.shape == w.shape
            # A reordered float32 sum is off by a few ulps of its largest terms, not of its
            # result: where large terms cancel, the error is relative to the array's scale.
            finite = np.abs(w[np.isfinite(w)]) if w.dtype.kind == "f" else np.abs(w)
            scale = float(np.max(finite, initial=1.0))
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * scale)
        else:
            _assert_bitwise(g, w)
    return fused_graph


# -- the shared generator ------------------------------------------------------------------------
@_SETTINGS
@given(random_graphs())
def test_fused_forward_graphs_equal_the_reference(sample):
    graph, _, feeds, fetches = sample
    _check(graph, feeds, fetches)


@_SETTINGS
@given(random_graphs())
def test_fused_gradient_graphs_equal_the_reference(sample):
    graph, feeds, fetches = _with_gradients(*sample)
    _check(graph, feeds, fetches)


# -- larger graphs of fusable ops, many chunks per kernel -----------------------------------------
ROWS, COLS = 40, 24
SHAPES = [(ROWS, COLS), (COLS,), (ROWS, 1), (), (1, COLS)]
UNARY = [tw.nn.relu, tw.nn.sigmoid, tw.tanh, tw.nn.softplus, tw.nn.elu, tw.square, tw.abs,
         tw.negative, lambda x: tw.exp(tw.tanh(x)), lambda x: tw.sqrt(tw.abs(x) + 0.5)]
BINARY = [tw.add, tw.subtract, tw.multiply, tw.maximum, tw.minimum, tw.squared_difference,
          lambda x, y: x * 0.5 + y]
REDUCE = [tw.reduce_sum, tw.reduce_mean, tw.reduce_max, tw.reduce_min]


def _op(draw, kind, tensors, rng):
    pick = functools.partial(_pick, draw, tensors)
    if kind == "unary":
        return draw(st.sampled_from(UNARY))(pick())
    if kind == "binary":
        return draw(st.sampled_from(BINARY))(pick(), pick())
    if kind == "reduce":
        x = pick()
        axis = None if not x.shape.rank else draw(st.sampled_from([None, 0, -1]))
        return draw(st.sampled_from(REDUCE))(x, axis=axis, keepdims=draw(st.booleans()))
    if kind == "bias":
        bias = tw.constant(rng.uniform(-1, 1, size=(COLS,)).astype(np.float32))
        return tw.nn.bias_add(pick(), bias)
    w = tw.constant(rng.uniform(-0.3, 0.3, size=(COLS, COLS)).astype(np.float32))
    return tw.nn.relu(tw.nn.bias_add(tw.matmul(pick(), w), tw.zeros([COLS]) + 0.1))


def _pick(draw, tensors):
    return tensors[draw(st.integers(0, len(tensors) - 1))]


@st.composite
def fusable_graphs(draw, max_ops=10):
    """(graph, placeholders, feeds, fetches) of mostly fusable float32 ops on larger tensors."""
    graph = tw.Graph()
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    with graph.as_default():
        placeholders, feeds = [], {}
        for i in range(draw(st.integers(1, 3))):
            shape = draw(st.sampled_from(SHAPES))
            ph = tw.placeholder(tw.float32, shape, name=f"in{i}")
            placeholders.append(ph)
            feeds[ph] = rng.uniform(-2, 2, size=shape).astype(np.float32)
        tensors = list(placeholders)
        for _ in range(draw(st.integers(1, max_ops))):
            kind = draw(st.sampled_from(["unary", "unary", "binary", "binary", "reduce", "bias",
                                         "matmul"]))
            try:
                tensors.append(_op(draw, kind, tensors, rng))
            except (ValueError, TypeError):
                continue
        fetches = tensors[len(placeholders):][-draw(st.integers(1, 3)):] or tensors[-1:]
    return graph, placeholders, feeds, fetches


@_SETTINGS
@given(fusable_graphs())
def test_chunked_fused_forward_graphs_equal_the_reference(small_chunks, sample):
    graph, _, feeds, fetches = sample
    _check(graph, feeds, fetches, chunked=True)


@_SETTINGS
@given(fusable_graphs())
def test_chunked_fused_gradient_graphs_equal_the_reference(small_chunks, sample):
    graph, feeds, fetches = _with_gradients(*sample)
    _check(graph, feeds, fetches, chunked=True)


def test_the_generator_makes_every_kind_of_fused_op(small_chunks):
    """A fixed graph of the local generator's kinds: each kind of group appears."""
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.float32, [ROWS, COLS], name="x")
        w = tw.constant(np.full((COLS, COLS), 0.1, np.float32))
        h = tw.nn.relu(tw.nn.bias_add(tw.matmul(x, w), tw.ones([COLS])))
        out = tw.reduce_mean(tw.square(tw.nn.sigmoid(h) - x), axis=0)
        feeds = {x: np.random.default_rng(0).uniform(-2, 2, (ROWS, COLS)).astype(np.float32)}
        graph, feeds, fetches = _with_gradients(graph, [x], feeds, [out])
    fused_graph = _check(graph, feeds, fetches, chunked=True)
    kinds = set()
    for op in fused_graph.get_operations():
        if op.type == "Fused":
            expr = fused_ops.expr_of(op)
            kinds.add("epilogue" if expr.epilogue_of else "reduce" if expr.reduce else "chain")
    assert kinds == {"epilogue", "reduce", "chain"}
