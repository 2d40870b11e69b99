"""The numpy backend: chunked evaluation equals the whole-array reference (bitwise for
elementwise expressions), buffers are reused only when provably dead, and calls are
thread-safe."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorweave import codegen
from tensorweave.codegen import buffers
from tensorweave.codegen.cpu_numpy import compile_expr
from tensorweave.codegen.expr import FusedExpr, evaluate


def node(op, args, dtype="float32", **attrs):
    return {"op": op, "args": args, "attrs": attrs, "dtype": dtype}


def inputs(n, dtype="float32"):
    return [{"dtype": dtype, "shape": None}] * n


CHAIN = FusedExpr(  # relu(x*w + b)*0.5 + z, sigmoid of it, and x*w + b used outside
    inputs=inputs(4),
    nodes=[node("Mul", [["in", 0], ["in", 1]]), node("Add", [["node", 0], ["in", 2]]),
           node("Relu", [["node", 1]]), node("Mul", [["node", 2], ["const", 0.5, "float32"]]),
           node("Add", [["node", 3], ["in", 3]]), node("Sigmoid", [["node", 4]])],
    outputs=[5, 1])

BROADCAST_SHAPES = [
    [(7,), (7,), (7,), (7,)],
    [(300, 500), (500,), (300, 1), ()],
    [(3, 4, 5000), (1, 4, 1), (5000,), (3, 1, 1)],
    [(20000,), (1,), (20000,), (20000,)],
    [(1,), (6, 1, 9), (5, 1), (9,)],          # the biggest shape is no single input's
    [(2, 3), (2, 3), (2, 3), (2, 3)],
]


def _arrays(shapes, rng, dtype=np.float32):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def assert_bitwise(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        assert g.tobytes() == np.ascontiguousarray(e).tobytes()


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("chunk", [64, 1000, 1 << 17])
def test_chunked_elementwise_is_bitwise_the_reference(shapes, chunk):
    arrays = _arrays(shapes, np.random.default_rng(0))
    kernel = compile_expr(CHAIN, np, chunk=chunk)
    expected = evaluate(CHAIN, np, *arrays)
    assert_bitwise(kernel(*arrays), expected)
    assert_bitwise(kernel(*arrays), expected)  # the second call reuses its buffers


def test_non_contiguous_inputs():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 80)).astype(np.float32).T  # Fortran order
    w = rng.standard_normal((80, 128)).astype(np.float32)[:, ::2]
    arrays = [x, w, np.float32(0.25), x[::-1]]
    assert_bitwise(compile_expr(CHAIN, np, chunk=100)(*arrays), evaluate(CHAIN, np, *arrays))


def test_invariant_nodes_and_outputs_run_once_over_their_own_shape():
    # t0 = b * 2 depends only on the bias: computed once, output with its own shape
    expr = FusedExpr(inputs=inputs(2),
                     nodes=[node("Mul", [["in", 1], ["const", 2.0, "float32"]]),
                            node("Add", [["in", 0], ["node", 0]]), node("Tanh", [["node", 1]])],
                     outputs=[2, 0])
    arrays = _arrays([(500, 40), (40,)], np.random.default_rng(2))
    got = compile_expr(expr, np, chunk=200)(*arrays)
    assert got[1].shape == (40,)
    assert_bitwise(got, evaluate(expr, np, *arrays))


def test_mixed_dtypes_bool_and_int_nodes():
    expr = FusedExpr(
        inputs=[{"dtype": "int32", "shape": None}, {"dtype": "float64", "shape": None}],
        nodes=[node("Greater", [["in", 0], ["const", 2, "int32"]], "bool"),
               node("Cast", [["node", 0]], "float64", DstT="float64"),
               node("Mul", [["node", 1], ["in", 1]], "float64"),
               node("SelectV2", [["node", 0], ["in", 1], ["node", 2]], "float64"),
               node("Square", [["in", 0]], "int32")],
        outputs=[3, 4, 0])
    rng = np.random.default_rng(3)
    arrays = [rng.integers(-5, 5, (300, 30)).astype(np.int32), rng.standard_normal(30)]
    assert_bitwise(compile_expr(expr, np, chunk=128)(*arrays), evaluate(expr, np, *arrays))


@pytest.mark.parametrize("chunk", [1 << 17, 64])
def test_transposed_inputs_give_results_laid_out_as_numpy_lays_them_out(chunk):
    # a later sum adds in memory order: the layout decides its rounding
    expr = FusedExpr(inputs=inputs(1),
                     nodes=[node("Abs", [["in", 0]]), node("Neg", [["node", 0]])],
                     outputs=[1])
    x = np.random.default_rng(10).uniform(-2, 2, (24, 40)).astype(np.float32).T
    (got,) = compile_expr(expr, np, chunk=chunk)(x)
    expected = np.negative(np.abs(x))
    assert got.strides == expected.strides and got.tobytes("A") == expected.tobytes("A")
    assert np.sum(got, dtype=np.float32).tobytes() == np.sum(expected, dtype=np.float32).tobytes()


def test_a_single_chunk_reduction_of_a_transposed_input_is_bitwise_the_op():
    expr = FusedExpr(inputs=inputs(1), nodes=[node("Neg", [["in", 0]])], outputs=[0],
                     reduce={"op": "Sum", "axes": [0, 1], "keepdims": False})
    x = np.random.default_rng(11).uniform(-2, 2, (50, 30)).astype(np.float32).T
    (got,) = compile_expr(expr, np)(x)
    assert got.tobytes() == np.sum(np.negative(x), axis=(0, 1), dtype=np.float32).tobytes()


def test_a_node_listed_twice_is_two_arrays():
    expr = FusedExpr(inputs=inputs(1), nodes=[node("Exp", [["in", 0]])], outputs=[0, 0])
    x = np.linspace(-1, 1, 50000, dtype=np.float32)
    a, b = compile_expr(expr, np, chunk=1000)(x)
    assert a is not b and a.tobytes() == b.tobytes() == np.exp(x).tobytes()


def test_scalars_and_empty_arrays_use_the_reference():
    kernel = compile_expr(CHAIN, np)
    scalars = [np.float32(v) for v in (1.5, 2.0, -1.0, 0.5)]
    assert_bitwise(kernel(*scalars), evaluate(CHAIN, np, *scalars))
    empty = [np.zeros((0, 3), np.float32)] * 4
    out = kernel(*empty)
    assert out[0].shape == (0, 3)


@pytest.mark.parametrize("op", ["Sum", "Mean", "Max", "Min", "Prod"])
@pytest.mark.parametrize("axes, keepdims", [([0, 1], False), ([1], True), ([0], False),
                                            ([], False), ([0, 1], True)])
@pytest.mark.parametrize("shapes", [[(300, 70), (300, 70)], [(300, 70), (70,)],
                                    [(1, 70), (70,)], [(3000, 7), (3000, 1)]], ids=str)
def test_chunked_reductions_equal_the_reference(op, axes, keepdims, shapes):
    expr = FusedExpr(inputs=inputs(2, "float64"),
                     nodes=[node("SquaredDifference", [["in", 0], ["in", 1]], "float64"),
                            node("Sqrt", [["node", 0]], "float64")],
                     outputs=[1, 0], reduce={"op": op, "axes": axes, "keepdims": keepdims})
    rng = np.random.default_rng(4)
    arrays = [rng.random(s) * 0.5 + 0.8 for s in shapes]
    expected = evaluate(expr, np, *arrays)
    got = compile_expr(expr, np, chunk=1000)(*arrays)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        if op in ("Max", "Min"):
            assert g.tobytes() == e.tobytes()  # max and min do not round
        else:
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-300)  # Prod underflows


@pytest.mark.parametrize("shape", [(2, 2), (400, 300)])
def test_the_reduced_node_may_also_be_an_unreduced_output(shape):
    expr = FusedExpr(inputs=inputs(2), nodes=[node("Add", [["in", 0], ["in", 1]])],
                     outputs=[0, 0], reduce={"op": "Sum", "axes": [1], "keepdims": False})
    rng = np.random.default_rng(9)
    arrays = _arrays([shape, shape[1:]], rng)
    total, elementwise = compile_expr(expr, np, chunk=1000)(*arrays)
    expected_total, expected = evaluate(expr, np, *arrays)
    assert elementwise.tobytes() == expected.tobytes()
    np.testing.assert_allclose(total, expected_total, rtol=1e-5)


def test_float32_sum_of_16m_scale_stays_within_the_stated_tolerance():
    expr = FusedExpr(inputs=inputs(2), nodes=[node("SquaredDifference", [["in", 0], ["in", 1]])],
                     outputs=[0], reduce={"op": "Sum", "axes": [0], "keepdims": False})
    rng = np.random.default_rng(5)
    x, y = _arrays([(1 << 21,), (1 << 21,)], rng)
    (got,) = compile_expr(expr, np)(x, y)
    (expected,) = evaluate(expr, np, x, y)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_integer_sum_overflows_like_the_op():
    expr = FusedExpr(inputs=inputs(1, "int8"), nodes=[node("Identity", [["in", 0]], "int8")],
                     outputs=[0], reduce={"op": "Sum", "axes": [0], "keepdims": False})
    x = np.full(1000, 100, np.int8)
    (got,) = compile_expr(expr, np, chunk=64)(x)
    assert got.dtype == np.int8 and got == np.sum(x, dtype=np.int8)


# -- random expressions ---------------------------------------------------------------------------
_UNARY = ["Neg", "Abs", "Square", "Tanh", "Sigmoid", "Relu", "Exp", "Softplus", "Elu", "Identity"]
_BINARY = ["Add", "Sub", "Mul", "Maximum", "Minimum", "SquaredDifference", "ReluGrad"]


@st.composite
def random_exprs(draw):
    n_in = draw(st.integers(1, 3))
    nodes = []
    for j in range(draw(st.integers(1, 8))):
        def operand():
            if nodes and draw(st.booleans()):
                return ["node", draw(st.integers(0, len(nodes) - 1))]
            if draw(st.integers(0, 5)) == 0:
                return ["const", draw(st.sampled_from([0.5, -2.0, 3.0])), "float32"]
            return ["in", draw(st.integers(0, n_in - 1))]
        if draw(st.booleans()):
            nodes.append(node(draw(st.sampled_from(_UNARY)), [operand()]))
        else:
            nodes.append(node(draw(st.sampled_from(_BINARY)), [operand(), operand()]))
    outputs = sorted(set(draw(st.lists(st.integers(0, len(nodes) - 1), min_size=1, max_size=3))))
    shapes = [draw(st.sampled_from([(40, 30), (30,), (40, 1), (), (1, 30)])) for _ in range(n_in)]
    return FusedExpr(inputs=inputs(n_in), nodes=nodes, outputs=outputs), shapes


@settings(max_examples=60, deadline=None)
@given(random_exprs(), st.sampled_from([16, 100, 5000]), st.integers(0, 2**16))
def test_random_expressions_are_bitwise_the_reference(case, chunk, seed):
    expr, shapes = case
    arrays = _arrays(shapes, np.random.default_rng(seed))
    with np.errstate(all="ignore"):
        expected = evaluate(expr, np, *arrays)
        got = compile_expr(expr, np, chunk=chunk)(*arrays)
    assert_bitwise(got, expected)


# -- buffers ---------------------------------------------------------------------------------------
def test_an_output_is_reused_only_once_nothing_references_it():
    expr = FusedExpr(inputs=inputs(1), nodes=[node("Neg", [["in", 0]])], outputs=[0])
    kernel = compile_expr(expr, np)
    x = np.ones(1 << 16, np.float32)
    (held,) = kernel(x)
    (second,) = kernel(x * 2)
    assert second is not held and np.all(held == -1)  # the held result was not overwritten
    address = second.__array_interface__["data"][0]
    del second
    (third,) = kernel(x * 3)
    assert third.__array_interface__["data"][0] == address and np.all(third == -3)
    view = third[:10]
    del third
    (fourth,) = kernel(x * 4)
    assert np.all(view == -3)  # a view keeps its base alive and out of reuse
    assert np.all(fourth == -4)


def test_donated_input_becomes_the_output_only_when_no_later_node_reads_it():
    add_relu = FusedExpr(inputs=inputs(2), nodes=[node("Add", [["in", 0], ["in", 1]]),
                                                  node("Relu", [["node", 0]])], outputs=[1])
    rng = np.random.default_rng(6)
    heavy, bias = rng.standard_normal((300, 64)).astype(np.float32), np.ones(64, np.float32)
    expected = np.maximum(heavy + bias, 0)
    (out,) = compile_expr(add_relu, np, chunk=500)(heavy, bias, donate=(0,))
    assert out is heavy and out.tobytes() == expected.tobytes()

    reads_late = FusedExpr(inputs=inputs(2), nodes=[node("Add", [["in", 0], ["in", 1]]),
                                                    node("Mul", [["node", 0], ["in", 0]])],
                           outputs=[0, 1])
    heavy = rng.standard_normal((300, 64)).astype(np.float32)
    expected = evaluate(reads_late, np, heavy, bias)
    got = compile_expr(reads_late, np, chunk=500)(heavy, bias, donate=(0,))
    assert got[0] is not heavy
    assert_bitwise(got, expected)


def test_concurrent_calls_do_not_share_scratch():
    kernel = compile_expr(CHAIN, np, chunk=512)
    rng = np.random.default_rng(7)
    cases = [_arrays([(200, 300), (300,), (200, 1), ()], rng) for _ in range(4)]
    expected = [evaluate(CHAIN, np, *arrays) for arrays in cases]
    failures = []

    def work(i):
        for _ in range(10):
            got = kernel(*cases[i])
            if any(g.tobytes() != e.tobytes() for g, e in zip(got, expected[i])):
                failures.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_buffer_pool_keeps_only_dead_arrays():
    pool = buffers.BufferPool()
    held = np.empty(1 << 16, np.float32)
    assert not pool.give(held)  # the caller still holds it
    values = {"a": np.empty(1 << 16, np.float32)}
    kept = pool.give(values.pop("a"))  # (pytest's assert would hold a reference itself)
    assert kept
    assert pool.take((1 << 15,), np.float32) is None
    taken = pool.take((1 << 16,), np.float32)
    assert taken is not None and pool.take((1 << 16,), np.float32) is None
    assert not pool.give(np.empty(10, np.float32))  # too small to page-fault
    base = np.empty(1 << 17, np.float32)
    assert not pool.give(base[: 1 << 16])  # a view does not own its memory


def test_pools_are_per_device():
    assert buffers.pool_for("/device:CPU:0") is buffers.pool_for("/device:CPU:0")
    assert buffers.pool_for("/device:CPU:0") is not buffers.pool_for("/device:CPU:1")


def test_compile_expr_dispatches_by_backend_name():
    kernel = codegen.compile_expr(CHAIN, np)
    arrays = _arrays(BROADCAST_SHAPES[1], np.random.default_rng(8))
    assert_bitwise(kernel(*arrays), evaluate(CHAIN, np, *arrays))
    with pytest.raises(ValueError, match="unknown codegen backend"):
        codegen.compile_expr(CHAIN, np, backend="fortran")
