"""The compiled loops of ``ops/loops.py`` give numpy's results to the bit.

Each kernel that has a loop is run twice on the same inputs — with its loop, and with
``TENSORWEAVE_CPU_BACKEND=numpy``, which makes it run its numpy code — and the outputs must have
the same bytes: values, signed zeros, infinities and NaNs. Inputs are large enough for the loops
to run (``LOOP_MIN_ELEMENTS``, or ``SMALL_LOOP_MIN_ELEMENTS`` for the kernels that use it) and
hold the special values.
"""

from __future__ import annotations

import numpy as np
import pytest

from tensorweave.ops import loops, registry

pytestmark = pytest.mark.skipif(not loops.use_loops(np.zeros(loops.LOOP_MIN_ELEMENTS,
                                                            np.float32)),
                                reason="numba is not installed (the optional 'fast' extra)")

SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 3.0e38]


class FakeContext:
    """The part of a step context that update kernels use: variables and fresh buffers."""

    def __init__(self, values):
        self.values = dict(values)

    def read_variable(self, name, op=None):
        return self.values[name]

    def write_variable(self, name, value):
        self.values[name] = value

    def empty_like(self, like):
        return np.empty_like(like)


def with_specials(array, rng):
    flat = array.reshape(-1)
    positions = rng.choice(flat.size, size=4 * len(SPECIAL), replace=False)
    for i, p in enumerate(positions):
        flat[p] = SPECIAL[i % len(SPECIAL)]
    return array


def random_array(rng, shape, dtype, scale=1.0, specials=True):
    array = (rng.standard_normal(shape) * scale).astype(dtype)
    return with_specials(array, rng) if specials else array


def same_bytes(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def run_both(monkeypatch, run):
    """``run()`` with the loops, then with numpy only."""
    with np.errstate(all="ignore"):  # as in a step: inf and NaN are among the inputs
        monkeypatch.delenv("TENSORWEAVE_CPU_BACKEND", raising=False)
        with_loops = run()
        monkeypatch.setenv("TENSORWEAVE_CPU_BACKEND", "numpy")
        plain = run()
    return with_loops, plain


def test_use_loops_needs_numba_size_and_a_float_dtype(monkeypatch):
    big = np.zeros(loops.LOOP_MIN_ELEMENTS, np.float32)
    assert loops.use_loops(big, big)
    assert not loops.use_loops(big[:-1])
    assert not loops.use_loops(big.astype(np.float16))
    assert not loops.use_loops(big, big.astype(np.float64))
    monkeypatch.setenv("TENSORWEAVE_CPU_BACKEND", "numpy")
    assert not loops.use_loops(big)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_loop_equals_the_numpy_passes(monkeypatch, dtype):
    rng = np.random.default_rng(0)
    shape = (257, 131)  # not a multiple of any vector width
    values = {"w": random_array(rng, shape, dtype), "m": random_array(rng, shape, dtype, 0.1),
              "v": np.abs(random_array(rng, shape, dtype, 0.1))}
    values["v"].reshape(-1)[:3] = [np.nan, np.inf, -0.0]
    grad = random_array(rng, shape, dtype, 0.01)
    kernel = registry.get("ApplyAdam").kernel({"var": "w", "m": "m", "v": "v"}, np)
    scalars = [np.asarray(s, dtype) for s in (0.9 ** 3, 0.999 ** 3, 1e-3, 0.9, 0.999, 1e-8)]

    def run():
        ctx = FakeContext(values)
        result = kernel(ctx, *scalars, grad)
        return [result, ctx.values["m"], ctx.values["v"]]

    with_loops, plain = run_both(monkeypatch, run)
    for a, b in zip(with_loops, plain):
        assert same_bytes(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_descent_loop_equals_the_numpy_passes(monkeypatch, dtype):
    rng = np.random.default_rng(1)
    values = {"w": random_array(rng, (300, 200), dtype)}
    delta = random_array(rng, (300, 200), dtype).T.copy().T  # not C-contiguous: copied first
    kernel = registry.get("ApplyGradientDescent").kernel({"var": "w"}, np)

    def run():
        ctx = FakeContext(values)
        return kernel(ctx, np.asarray(0.1, dtype), delta)

    with_loops, plain = run_both(monkeypatch, run)
    assert same_bytes(with_loops, plain)


UPDATES = {"ApplyAdam": ({"var": "w", "m": "m", "v": "v"},
                         (0.9 ** 3, 0.999 ** 3, 1e-3, 0.9, 0.999, 1e-8)),
           "ApplyGradientDescent": ({"var": "w"}, (0.1,))}


@pytest.mark.parametrize("op_type", sorted(UPDATES))
@pytest.mark.parametrize("scaling", ["", "mul", "div"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_update_of_a_summed_gradient_equals_the_ops_it_replaces(monkeypatch, op_type,
                                                                   scaling, dtype):
    """``grad_terms=2`` (passes/fuse_updates.py): the loop and the numpy code of the folded
    update give the bytes of Add, then Mul/RealDiv, then the plain update."""
    rng = np.random.default_rng(2)
    shape = (257, 131)
    values = {"w": random_array(rng, shape, dtype), "m": random_array(rng, shape, dtype, 0.1),
              "v": np.abs(random_array(rng, shape, dtype, 0.1))}
    a = random_array(rng, shape, dtype, 0.01)
    b = random_array(rng, shape, dtype, 0.01)
    b.flags.writeable = False  # as a value read in place from shared memory
    scale = np.asarray(3.0, dtype)  # not a power of two: the division rounds
    attrs, hyper = UPDATES[op_type]
    scalars = [np.asarray(h, dtype) for h in hyper]
    plain = registry.get(op_type).kernel(attrs, np)
    folded = registry.get(op_type).kernel(dict(attrs, grad_terms=2, grad_scale=scaling), np)

    def run(kernel, *gradient):
        ctx = FakeContext(values)
        result = kernel(ctx, *scalars, *gradient)
        return [result] + [ctx.values[k] for k in ("m", "v") if k in ctx.values]

    def unfolded():
        grad = np.add(a, b)
        if scaling == "mul":
            grad = np.multiply(grad, scale)
        elif scaling == "div":
            grad = np.true_divide(grad, scale)
        return run(plain, grad)

    def fused():
        return run(folded, a, b, *([scale] if scaling else []))

    want = run_both(monkeypatch, unfolded)
    got = run_both(monkeypatch, fused)
    for results in want + got:
        for x, y in zip(results, want[1]):
            assert same_bytes(x, y)


def test_loops_read_inputs_through_read_only_views():
    a = np.arange(6, dtype=np.float32)
    flat = loops._flat(a.reshape(2, 3))  # noqa: SLF001
    assert not flat.flags.writeable and a.flags.writeable
    assert np.shares_memory(flat, a)


POOL_2X2 = {"ksize": [1, 2, 2, 1], "strides": [1, 2, 2, 1], "padding": "SAME",
            "data_format": "NHWC"}


def max_pool_case(rng, shape, dtype, ties: bool):
    x = rng.standard_normal(shape).astype(dtype)
    if ties:
        x = np.maximum(x, 0)  # relu outputs: windows of zeros tie everywhere
    x.reshape(-1)[:5] = [np.nan, -0.0, np.inf, -np.inf, 0.0]
    y = registry.get("MaxPool").kernel(POOL_2X2, np)(x)
    return x, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("finite", [True, False])
def test_max_pool_grad_loop_equals_the_numpy_path(monkeypatch, dtype, ties, finite):
    rng = np.random.default_rng(2)
    x, y = max_pool_case(rng, (3, 28, 26, 32), dtype, ties)
    g = rng.standard_normal(y.shape).astype(dtype)  # negative values: 0 * g is -0.0
    if not finite:
        g.reshape(-1)[:2] = [np.inf, np.nan]
    kernel = registry.get("MaxPoolGrad").kernel(POOL_2X2, np)
    with_loops, plain = run_both(monkeypatch, lambda: kernel(x, y, g))
    assert same_bytes(with_loops, plain)
    assert with_loops.flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_loop_equals_the_numpy_path(monkeypatch, dtype, ties):
    rng = np.random.default_rng(6)
    x, _ = max_pool_case(rng, (3, 28, 26, 32), dtype, ties)
    x[0, 0, 0, :4] = [-0.0, np.nan, 0.0, 1.0]   # windows mixing signed zeros, NaN, ties
    x[0, 0, 1, :4] = [0.0, 1.0, -0.0, np.nan]
    x[0, 1, 0, :4] = [-0.0, 2.0, 0.0, 1.0]
    kernel = registry.get("MaxPool").kernel(POOL_2X2, np)
    with_loops, plain = run_both(monkeypatch, lambda: kernel(x))
    assert same_bytes(with_loops, plain)


def test_max_pool_grad_with_padding_keeps_the_numpy_path(monkeypatch):
    rng = np.random.default_rng(3)
    x, y = max_pool_case(rng, (4, 27, 27, 64), np.float32, ties=True)  # SAME pads 27 -> 28
    g = rng.standard_normal(y.shape).astype(np.float32)
    kernel = registry.get("MaxPoolGrad").kernel(POOL_2X2, np)
    with_loops, plain = run_both(monkeypatch, lambda: kernel(x, y, g))
    assert same_bytes(with_loops, plain)


SUM_CASES = [  # (shape, axes): bias gradients and the edges of the rule
    ((50, 28, 28, 32), (0, 1, 2)),
    ((50, 14, 14, 64), (0, 1, 2)),
    ((1000, 256), (0,)),
    ((40000, 2), (0,)),
    ((3, 11000, 3), (0,)),
    ((9000, 4, 5), (0, 1)),
    ((100, 256), (0,)),      # small ones take the loop too (SMALL_LOOP_MIN_ELEMENTS)
    ((100, 10), (0,)),
    ((8, 8, 16), (0, 1)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, axes", SUM_CASES)
@pytest.mark.parametrize("keep", [False, True])
def test_sum_over_leading_axes_equals_numpy(monkeypatch, dtype, shape, axes, keep):
    rng = np.random.default_rng(4)
    x = random_array(rng, shape, dtype, scale=10.0)
    x[(0,) * (len(shape) - 1)] = -0.0  # a column starting with -0.0: numpy's sum starts at +0
    assert loops.sums_leading_axes(x, axes)
    kernel = registry.get("Sum").kernel({"keep_dims": keep, "all_axes": False}, np)
    with_loops, plain = run_both(monkeypatch, lambda: kernel(x, np.asarray(axes, np.int32)))
    assert same_bytes(with_loops, plain)
    with np.errstate(all="ignore"):  # inf - inf in a column
        assert same_bytes(plain, np.add.reduce(x, axis=axes, dtype=dtype, keepdims=keep))


@pytest.mark.parametrize("shape, axes", [((40000, 1), (0,)),     # one column: numpy pairs
                                         ((200, 300), (1,)),     # trailing axis: pairwise
                                         ((200, 300), (0, 1))])  # everything
def test_other_sums_keep_numpy(shape, axes):
    assert not loops.sums_leading_axes(np.zeros(shape, np.float32), axes)
    assert not loops.sums_leading_axes(np.zeros(shape[::-1], np.float32).T, (0,))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(100, 256), (50, 7, 7, 64), (40000,)])
def test_relu_grad_loop_equals_numpy(monkeypatch, dtype, shape):
    rng = np.random.default_rng(5)
    g, y = random_array(rng, shape, dtype), random_array(rng, shape, dtype)
    g.reshape(-1)[:4] = [np.nan, np.inf, -1.0, -np.inf]   # masked out: NaN, NaN, -0.0, NaN
    y.reshape(-1)[:4] = [-1.0, 0.0, -0.0, np.nan]
    assert loops.use_loops(g, y, min_elements=loops.SMALL_LOOP_MIN_ELEMENTS)
    kernel = registry.get("ReluGrad").kernel({}, np)
    with_loops, plain = run_both(monkeypatch, lambda: kernel(g, y))
    assert same_bytes(with_loops, plain)
    with np.errstate(all="ignore"):
        assert same_bytes(plain, g * (y > 0))
