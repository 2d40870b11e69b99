"""The numba backend: generated loops equal the reference evaluation, bitwise for arithmetic,
comparisons, selection and casts, within ``TRANSCENDENTAL_ULPS`` ulps per op for C-library math
functions; every broadcast layout, donated inputs and retained outputs.

Every op of the rule table runs in a few wide expressions (one per dtype), so the module compiles
about a dozen kernels, not one per op.
"""

from __future__ import annotations

import numpy as np
import pytest

from tensorweave.codegen import cpu_numba
from tensorweave.codegen.cpu_numba import TRANSCENDENTAL_ULPS, broadcast_layout
from tensorweave.codegen.expr import FusedExpr, evaluate
from tensorweave.codegen.rules import ELEMENTWISE

# The helpers below also serve tests/codegen/test_cuda_source.py, which runs without numba.
pytestmark = pytest.mark.skipif(not cpu_numba.available(),
                                reason="numba is optional (the 'fast' extra) and not installed")

# ops whose C-library implementation may differ from numpy's SIMD code by a few ulps
TRANSCENDENTAL = {"Exp", "Expm1", "Log", "Log1p", "Sin", "Cos", "Tanh", "Pow", "Sigmoid", "Elu",
                  "Softplus", "SoftplusGrad"}
# The rule table's Python/C templates of these return x itself for x == -0.0, where numpy gives
# +0.0 (abs(-0.0), maximum(-0.0, 0), sign(-0.0)): reported to the rule table's owner; until it
# is fixed, zeros of either sign count as equal for these ops (every other bit must match).
SIGNED_ZERO_TEMPLATES = {"Abs", "Relu", "Sign"}
DTYPES = ["float32", "float64", "int8", "int32", "int64", "uint8", "uint64", "bool"]
ATTRS = {"Cast": {"DstT": "float32"}}


def node(op, args, dtype="float32", **attrs):
    return {"op": op, "args": args, "attrs": attrs, "dtype": dtype}


def inputs(n, dtype="float32", shape=None):
    return [{"dtype": dtype, "shape": shape}] * n


ARITH = FusedExpr(  # relu(x*w + b)*0.5 + z
    inputs=inputs(4),
    nodes=[node("Mul", [["in", 0], ["in", 1]]), node("Add", [["node", 0], ["in", 2]]),
           node("Relu", [["node", 1]]), node("Mul", [["node", 2], ["const", 0.5, "float32"]]),
           node("Add", [["node", 3], ["in", 3]])],
    outputs=[4])


def every_op_expr(dtype: str):
    """One expression applying every rule that accepts ``dtype`` args to inputs 0..2; one
    output per op. Returns (expr, op names in output order)."""
    nodes, names = [], []
    for op, rule in sorted(ELEMENTWISE.items()):
        attrs = ATTRS.get(op, {})
        arity = 2 if rule.arity is None else rule.arity
        arg_dtypes = [dtype] * arity
        if op == "SelectV2":
            continue  # needs a bool condition: see select_expr
        if not rule.accepts(arg_dtypes, attrs):
            continue
        args = [["in", i] for i in range(arity)]
        nodes.append(node(op, args, rule.result_dtype(arg_dtypes, attrs), **attrs))
        names.append(op)
    expr = FusedExpr(inputs=inputs(3, dtype), nodes=nodes, outputs=list(range(len(nodes))))
    return expr, names


def values(dtype: str, n: int, rng) -> np.ndarray:
    """Random values of ``dtype`` over its range, and the awkward ones first."""
    d = np.dtype(dtype)
    if d.kind == "b":
        return rng.random(n) < 0.5
    if d.kind == "f":
        special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 6.0, 1e30, -1e-30])
        body = rng.standard_normal(n) * rng.choice([0.1, 1.0, 10.0, 100.0], n)
        return np.concatenate([special, body])[:n].astype(d)
    info = np.iinfo(d)
    edges = np.array([info.min, info.max, 0, 1, -1 if info.min < 0 else 2], dtype=object)
    body = rng.integers(info.min, info.max, n, endpoint=True, dtype=d)
    return np.concatenate([edges.astype(d), body])[:n]


def ulps_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units of the last place (0 where both are the same NaN/inf)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
    # below tiny/eps an intermediate may have gone subnormal and lost bits: results that small
    # count in ulps of tiny/eps (an absolute tolerance of a few times the smallest normal)
    info = np.finfo(a.dtype)
    magnitude = np.maximum(np.maximum(np.abs(a), np.abs(b)), info.tiny / info.eps)
    spacing = np.spacing(magnitude.astype(a.dtype)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        distance = np.abs(a64 - b64) / spacing
    return np.where(same, 0.0, np.where(np.isfinite(distance), distance, np.inf))


def mismatches(got, expected, names) -> list:
    """What differs: names with their first differing element."""
    bad = []
    for g, e, name in zip(got, expected, names):
        if g.shape != e.shape or g.dtype != e.dtype:
            bad.append(f"{name}: {g.dtype}{g.shape} instead of {e.dtype}{e.shape}")
        elif name in TRANSCENDENTAL:
            distance = ulps_apart(g, e)
            if distance.max() > TRANSCENDENTAL_ULPS:
                i = int(np.argmax(distance))
                bad.append(f"{name}: {distance[i]} ulps at {i} ({g.flat[i]!r} vs {e.flat[i]!r})")
        elif name in SIGNED_ZERO_TEMPLATES and g.dtype.kind == "f":
            if not np.array_equal(g, e, equal_nan=True):
                bad.append(f"{name}: differs beyond the sign of zero")
        elif g.tobytes() != np.ascontiguousarray(e).tobytes():
            g_bytes = g.reshape(-1).view(np.uint8).reshape(g.size, -1)
            e_bytes = np.ascontiguousarray(e).reshape(-1).view(np.uint8).reshape(e.size, -1)
            i = int(np.argmax((g_bytes != e_bytes).any(axis=1)))
            bad.append(f"{name}: element {i} is {g.flat[i]!r}, numpy gives {e.flat[i]!r}")
    return bad


def assert_matches(got, expected, names):
    assert mismatches(got, expected, names) == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_op_matches_the_reference(dtype):
    expr, names = every_op_expr(dtype)
    rng = np.random.default_rng(DTYPES.index(dtype))
    arrays = [values(dtype, 257, rng) for _ in range(3)]
    with np.errstate(all="ignore"):
        expected = evaluate(expr, np, *arrays)
    got = cpu_numba.compile_numba(expr)(*arrays)
    assert_matches(got, expected, names)


def test_select_and_casts_match_the_reference():
    expr = FusedExpr(
        inputs=[{"dtype": "bool", "shape": None}, {"dtype": "float32", "shape": None},
                {"dtype": "int32", "shape": None}],
        nodes=[node("Cast", [["in", 2]], "float32", DstT="float32"),
               node("SelectV2", [["in", 0], ["in", 1], ["node", 0]]),
               node("Cast", [["node", 1]], "bool", DstT="bool"),
               node("Cast", [["in", 0]], "int32", DstT="int32"),
               node("Mul", [["node", 3], ["in", 2]], "int32"),
               node("Cast", [["in", 2]], "uint8", DstT="uint8")],
        outputs=[1, 2, 4, 5])
    rng = np.random.default_rng(1)
    arrays = [values("bool", 300, rng), values("float32", 300, rng), values("int32", 300, rng)]
    assert_matches(cpu_numba.compile_numba(expr)(*arrays), evaluate(expr, np, *arrays),
                   ["SelectV2", "Cast", "Mul", "Cast"])


def test_integer_arithmetic_wraps_at_every_node():
    # (a*b)//... numba would compute a*b in int64; numpy wraps it to int32 first
    expr = FusedExpr(inputs=inputs(2, "int32"),
                     nodes=[node("Mul", [["in", 0], ["in", 1]], "int32"),
                            node("Sign", [["node", 0]], "int32"),
                            node("Add", [["node", 0], ["const", 2**31 - 1, "int32"]], "int32")],
                     outputs=[1, 2])
    a = np.array([70000, -70000, 3], np.int32)
    got = cpu_numba.compile_numba(expr)(a, a)
    expected = evaluate(expr, np, a, a)
    assert [g.tolist() for g in got] == [e.tolist() for e in expected]


BROADCAST_SHAPES = [
    [(7,), (7,), (7,), (7,)],
    [(300, 50), (50,), (300, 1), ()],
    [(3, 4, 50), (1, 4, 1), (50,), (3, 1, 1)],
    [(1,), (6, 1, 9), (5, 1), (9,)],
    [(), (), (), ()],
    [(0, 3), (3,), (1, 3), ()],
    [(2, 1, 3), (2, 1, 3), (1, 1, 1), (3,)],
]


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
def test_broadcast_layouts_are_bitwise_the_reference(shapes):
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    got = cpu_numba.compile_numba(ARITH)(*arrays)
    assert_matches(got, evaluate(ARITH, np, *arrays), ["Add"])


def test_non_contiguous_inputs():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((8, 10)).astype(np.float32)
    arrays = [base[:, ::2], base.T[::2, :8].T[:, :5], base[1:, :5][:7][0], base[0, 0]]
    arrays = [np.broadcast_to(a, (8, 5)) for a in arrays]
    got = cpu_numba.compile_numba(ARITH)(*arrays)
    assert_matches(got, evaluate(ARITH, np, *arrays), ["Add"])


def test_layout_collapses_dims_that_broadcast_alike():
    layout = broadcast_layout([(4, 5, 6), (5, 6), (4, 1, 1)], (4, 5, 6))
    assert layout.dims == (4, 30)
    assert layout.broadcast == ((False, False), (True, False), (False, True))
    assert layout.strides().tolist() == [[30, 1], [0, 1], [1, 0]]
    assert broadcast_layout([(), (1,)], ()).dims == (1,)


def test_parallel_loop_is_bitwise_the_serial_one():
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal((64, 33)).astype(np.float32) for _ in range(3)]
    arrays.append(np.float32(0.25))
    serial = cpu_numba.compile_numba(ARITH)(*arrays)
    parallel = cpu_numba.compile_numba(ARITH, parallel=True)(*arrays)
    assert serial[0].tobytes() == parallel[0].tobytes()


@pytest.mark.parametrize("shapes", [[(100,)] * 4, [(50, 6, 8), (8,), (50, 1, 8), ()],
                                    [(40, 30), (40, 1), (30,), (1, 1)]], ids=str)
@pytest.mark.parametrize("parallel", [False, True])
def test_donated_input_becomes_the_output(shapes, parallel):
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    expected = evaluate(ARITH, np, *arrays)
    x = arrays[0]
    got = cpu_numba.compile_numba(ARITH, parallel=parallel)(*arrays, donate=(0,))
    assert got[0] is x
    assert_matches(got, expected, ["Add"])


def test_a_donated_input_the_expression_does_not_read_still_becomes_the_output():
    negate_bias = FusedExpr(inputs=inputs(2), nodes=[node("Neg", [["in", 1]])], outputs=[0])
    heavy, bias = np.ones((40, 30), np.float32), np.arange(30, dtype=np.float32)
    got = cpu_numba.compile_numba(negate_bias)(heavy, bias, donate=(0,))
    assert got[0] is heavy
    np.testing.assert_array_equal(got[0], np.broadcast_to(-bias, (40, 30)))


def test_inner_loops_index_row_views_and_write_a_donor_through_its_own_name():
    layout = broadcast_layout([(40, 30), (30,), (40, 1), ()], (40, 30))
    source = cpu_numba.kernel_source(ARITH, layout).split("def fused_kernel")[1]
    assert "r0 = in0[" in source and "x2 = in2[" in source  # a row view; a value per row
    assert "w0 = out0[" in source and "w0[i1] = " in source
    donated = cpu_numba.kernel_source(ARITH, layout, aliases=(0,)).split("def fused_kernel")[1]
    assert "r0[i1] = " in donated and "out0" not in donated.split("dims, strides):")[1]


def test_an_output_still_referenced_is_never_overwritten():
    kernel = cpu_numba.compile_numba(ARITH)
    ones = [np.ones(1 << 15, np.float32)] * 4
    first = kernel(*ones)[0]
    snapshot = first.copy()
    second = kernel(*[a * 2 for a in ones])[0]
    assert second is not first and np.array_equal(first, snapshot)


def test_constants_keep_their_dtype_in_the_source():
    source = cpu_numba.kernel_source(ARITH, broadcast_layout([(3,)] * 4, (3,)))
    assert "K0 = np.float32(0.5)" in source
    assert "0.5" not in source.split("def fused_kernel")[1]  # never a bare float64 literal
    assert "fastmath=False" in source


def test_unsupported_expressions_say_why():
    reduced = FusedExpr(inputs=inputs(1), nodes=[node("Square", [["in", 0]])], outputs=[0],
                        reduce={"op": "Sum", "axes": [0], "keepdims": False})
    assert "reduction" in cpu_numba.supports(reduced)
    with pytest.raises(ValueError, match="reduction"):
        cpu_numba.compile_numba(reduced)
    half = FusedExpr(inputs=inputs(1, "float16"), nodes=[node("Neg", [["in", 0]], "float16")],
                     outputs=[0])
    assert "float16" in cpu_numba.supports(half)


def test_wrong_number_of_inputs_is_an_error():
    with pytest.raises(ValueError, match="takes 4 inputs, got 2"):
        cpu_numba.compile_numba(ARITH)(np.ones(2, np.float32), np.ones(2, np.float32))


def test_generated_source_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORWEAVE_CACHE_DIR", str(tmp_path))
    expr = FusedExpr(inputs=inputs(1), nodes=[node("Mul", [["in", 0], ["const", 3.0, "float32"]])],
                     outputs=[0])
    got = cpu_numba.compile_numba(expr)(np.arange(4, dtype=np.float32))[0]
    assert got.tolist() == [0.0, 3.0, 6.0, 9.0]
    written = list((tmp_path / "numba").glob("k*.py"))
    assert len(written) == 1 and "K0 = np.float32(3.0)" in written[0].read_text()


def test_inexact_ops_are_the_c_library_math_functions():
    expr, _ = every_op_expr("float32")
    assert set(cpu_numba.inexact_ops(expr)) == TRANSCENDENTAL
    assert cpu_numba.inexact_ops(ARITH) == []
