"""TF1 semantics of the random ops: seeds and streams, distributions, dtypes, dropout."""

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.ops.random import DEFAULT_GRAPH_SEED, dropout

N = 100_000


def _run(fetches, graph, feed_dict=None):
    with tw.Session(graph=graph) as sess:
        return sess.run(fetches, feed_dict)


def _build(fn, graph_seed=None):
    graph = tw.Graph()
    with graph.as_default():
        if graph_seed is not None:
            tw.set_random_seed(graph_seed)
        return graph, fn()


def _within_standard_errors(samples, mean, std, k=4.0):
    """The sample mean and std agree with ``mean``/``std`` to ``k`` standard errors."""
    n = samples.size
    assert abs(samples.mean() - mean) < k * std / np.sqrt(n), (samples.mean(), mean)
    assert abs(samples.std() - std) < k * std / np.sqrt(2 * n), (samples.std(), std)


# -- seeds ----------------------------------------------------------------------------------------
def test_seed_pair_rules():
    graph = tw.Graph()
    with graph.as_default():
        assert tw.get_seed(None) == (None, None)
        assert tw.get_seed(5) == (DEFAULT_GRAPH_SEED, 5)
        tw.set_random_seed(42)
        assert graph.seed == 42
        assert tw.get_seed(5) == (42, 5)
        tw.constant(1.0)
        assert tw.get_seed(None) == (42, len(graph.get_operations()))


def test_seed_attrs_on_the_op():
    graph = tw.Graph()
    with graph.as_default():
        unseeded = tw.random_uniform([2]).op
        op_seeded = tw.random_uniform([2], seed=3).op
        tw.set_random_seed(7)
        n_before = len(graph.get_operations()) + 1  # the shape constant comes first
        graph_seeded = tw.random_uniform([2]).op
        both = tw.random_uniform([2], seed=3).op
    assert (unseeded.get_attr("seed"), unseeded.get_attr("seed2")) == (None, None)
    assert (op_seeded.get_attr("seed"), op_seeded.get_attr("seed2")) == (DEFAULT_GRAPH_SEED, 3)
    assert (graph_seeded.get_attr("seed"), graph_seeded.get_attr("seed2")) == (7, n_before)
    assert (both.get_attr("seed"), both.get_attr("seed2")) == (7, 3)


def _seeded_program():
    return [tw.random_normal([5], seed=1), tw.random_uniform([5], seed=2),
            tw.truncated_normal([5], seed=3),
            tw.random_uniform([5], maxval=100, dtype=tw.int32, seed=4),
            tw.random_shuffle(tw.constant(np.arange(10)), seed=5),
            tw.multinomial([[0.0, 1.0, 2.0]], 5, seed=6)]


@pytest.mark.parametrize("graph_seed", [None, 123])
def test_same_seeds_give_bitwise_same_numbers_in_two_sessions_and_two_graphs(graph_seed):
    g1, outs1 = _build(_seeded_program, graph_seed)
    g2, outs2 = _build(_seeded_program, graph_seed)
    first = _run(outs1, g1)
    again = _run(outs1, g1)
    other_graph = _run(outs2, g2)
    for a, b, c in zip(first, again, other_graph):
        assert a.tobytes() == b.tobytes() and a.tobytes() == c.tobytes()


def test_successive_runs_in_one_session_continue_the_stream():
    graph, outs = _build(_seeded_program)
    with tw.Session(graph=graph) as sess:
        first = sess.run(outs[:4])
        second = sess.run(outs[:4])
    for a, b in zip(first, second):
        assert not np.array_equal(a, b)


def test_a_new_session_restarts_the_stream():
    graph, x = _build(lambda: tw.random_normal([4], seed=9))
    with tw.Session(graph=graph) as sess:
        runs = [sess.run(x) for _ in range(3)]
    with tw.Session(graph=graph) as sess:
        assert np.array_equal(sess.run(x), runs[0])
        assert np.array_equal(sess.run(x), runs[1])


def test_graph_seed_only_same_construction_order_same_numbers():
    def program():
        return [tw.random_normal([6]), tw.random_uniform([6])]
    g1, outs1 = _build(program, graph_seed=5)
    g2, outs2 = _build(program, graph_seed=5)
    a, b = _run(outs1, g1), _run(outs2, g2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    # ops of one program get different op-level seeds, so different numbers
    assert outs1[0].op.get_attr("seed2") != outs1[1].op.get_attr("seed2")


def test_graph_seed_only_different_construction_order_different_numbers():
    def program(extra):
        if extra:
            tw.constant(0.0)
        return tw.random_normal([6])
    g1, x1 = _build(lambda: program(False), graph_seed=5)
    g2, x2 = _build(lambda: program(True), graph_seed=5)
    assert not np.array_equal(_run(x1, g1), _run(x2, g2))


def test_different_graph_seeds_give_different_numbers():
    g1, x1 = _build(lambda: tw.random_normal([6], seed=1), graph_seed=1)
    g2, x2 = _build(lambda: tw.random_normal([6], seed=1), graph_seed=2)
    assert not np.array_equal(_run(x1, g1), _run(x2, g2))


def test_ops_with_equal_seeds_repeat_each_other_but_keep_their_own_streams():
    graph, (a, b) = _build(lambda: (tw.random_normal([4], seed=1), tw.random_normal([4], seed=1)))
    with tw.Session(graph=graph) as sess:
        a1, b1 = sess.run([a, b])
        a2 = sess.run(a)
        b2 = sess.run(b)
    assert np.array_equal(a1, b1) and np.array_equal(a2, b2)
    assert not np.array_equal(a1, a2)


def test_unseeded_ops_differ_between_sessions():
    graph, x = _build(lambda: tw.random_normal([8]))
    assert not np.array_equal(_run(x, graph), _run(x, graph))


def test_imported_random_ops_get_streams_of_their_own():
    graph, x = _build(lambda: tw.random_uniform([4], seed=1, name="noise"))
    target = tw.Graph()
    with target.as_default():
        tw.import_graph_def(_graph_def(graph), name="a")
        tw.import_graph_def(_graph_def(graph), name="b")
        a = target.get_tensor_by_name(f"a/{x.name}")
        b = target.get_tensor_by_name(f"b/{x.name}")
    with tw.Session(graph=target) as sess:
        a1, b1 = sess.run([a, b])
        b2 = sess.run(b)
    assert np.array_equal(a1, b1) and not np.array_equal(b1, b2)
    assert np.array_equal(a1, _run(x, graph))


def _graph_def(graph):
    from tensorweave.graph.serialization import to_json
    return to_json(graph)


def test_parallel_and_straight_line_runs_give_the_same_numbers():
    def program():
        return [tw.random_normal([N], seed=1), tw.random_uniform([N], seed=2),
                tw.truncated_normal([N], seed=3)]
    graph, outs = _build(program)
    results = []
    for threads in (1, 0):
        config = tw.ConfigProto(inter_op_parallelism_threads=threads)
        with tw.Session(graph=graph, config=config) as sess:
            results.append([sess.run(outs), sess.run(outs)])
    for a, b in zip(np.concatenate(results[0]), np.concatenate(results[1])):
        assert a.tobytes() == b.tobytes()


# -- shapes ---------------------------------------------------------------------------------------
def test_run_time_shape():
    graph = tw.Graph()
    with graph.as_default():
        shape = tw.placeholder(tw.int32, [2])
        outs = [tw.random_normal(shape, seed=1), tw.truncated_normal(shape, seed=2),
                tw.random_uniform(shape, seed=3),
                tw.random_uniform(shape, maxval=4, dtype=tw.int64, seed=4)]
        for t in outs:
            assert t.shape.as_list() == [None, None]
        values = _run(outs, graph, {shape: [3, 2]})
    assert all(v.shape == (3, 2) for v in values)


def test_unknown_shape_of_unknown_length():
    graph = tw.Graph()
    with graph.as_default():
        shape = tw.placeholder(tw.int64)
        x = tw.random_uniform(shape, seed=1)
        assert x.shape.rank is None
        assert _run(x, graph, {shape: np.array([2, 1, 3])}).shape == (2, 1, 3)


def test_static_shape_from_tensor_shape():
    graph = tw.Graph()
    with graph.as_default():
        assert tw.random_normal(tw.TensorShape([2, 3])).shape.as_list() == [2, 3]
        with pytest.raises(ValueError, match="fully defined"):
            tw.random_normal(tw.TensorShape([None, 3]))


def test_shape_errors():
    graph = tw.Graph()
    with graph.as_default():
        with pytest.raises(ValueError, match="negative"):
            tw.random_normal([2, -1])
        with pytest.raises(ValueError, match="1-D"):
            tw.random_normal(tw.constant([[2, 3]]))
        with pytest.raises(TypeError, match="int32 or int64"):
            tw.random_normal(tw.constant([2.0, 3.0]))
        shape = tw.placeholder(tw.int32, [2])
        x = tw.random_normal(shape)
        with tw.Session() as sess:
            with pytest.raises(tw.errors.InvalidArgumentError, match="negative"):
                sess.run(x, {shape: [2, -3]})


# -- distributions --------------------------------------------------------------------------------
def test_normal_distribution():
    graph, x = _build(lambda: tw.random_normal([N], mean=3.0, stddev=2.0, seed=1))
    _within_standard_errors(_run(x, graph), 3.0, 2.0)


def test_truncated_normal_distribution():
    graph, x = _build(lambda: tw.truncated_normal([N], mean=-1.0, stddev=0.5, seed=2))
    samples = _run(x, graph)
    assert np.abs(samples + 1.0).max() <= 2 * 0.5 * (1 + 1e-6)
    # a standard normal truncated at +-2 has std sqrt(1 - 4 phi(2) / (2 Phi(2) - 1))
    truncated_std = 0.8796
    _within_standard_errors(samples, -1.0, 0.5 * truncated_std)


def test_uniform_distribution():
    graph, x = _build(lambda: tw.random_uniform([N], minval=-1.0, maxval=3.0, seed=3))
    samples = _run(x, graph)
    assert samples.min() >= -1.0 and samples.max() < 3.0
    _within_standard_errors(samples, 1.0, 4.0 / np.sqrt(12))


def test_unit_uniform_never_reaches_one_in_any_float_dtype():
    for dtype in (tw.float16, tw.bfloat16, tw.float32, tw.float64):
        graph, x = _build(lambda: tw.random_uniform([N], dtype=dtype, seed=4))
        samples = _run(x, graph).astype(np.float64)
        assert samples.min() >= 0.0 and samples.max() < 1.0, dtype
        assert abs(samples.mean() - 0.5) < 4 * np.sqrt(1 / 12 / N) + 2.0 ** -8, dtype


class _LargestDraws:
    """A generator stub whose every integer draw is the largest allowed."""

    def integers(self, low, high, size, dtype):
        return np.full(size, high - 1, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_largest_unit_uniform_is_below_one_even_after_adding_one(dtype):
    from tensorweave.ops.random import _unit_uniform
    dt = tw.as_dtype(dtype)
    u = _unit_uniform(_LargestDraws(), (1,), dt)
    assert u.dtype == dt.np and u[0] < 1
    # dropout's mask is floor(keep_prob + u): with keep_prob 1 it must stay 1
    assert np.floor(dt.np.type(1) + u)[0] == 1


def test_int_uniform_covers_the_range():
    graph, x = _build(lambda: tw.random_uniform([10_000], minval=-3, maxval=7, dtype=tw.int32,
                                                seed=5))
    samples = _run(x, graph)
    assert samples.dtype == np.int32
    assert sorted(set(samples.tolist())) == list(range(-3, 7))


def test_int_uniform_bounds_as_run_time_tensors():
    graph = tw.Graph()
    with graph.as_default():
        low, high = tw.placeholder(tw.int64, []), tw.placeholder(tw.int64, [])
        x = tw.random_uniform([1000], minval=low, maxval=high, dtype=tw.int64, seed=1)
        with tw.Session() as sess:
            values = sess.run(x, {low: 10, high: 13})
            assert set(values.tolist()) == {10, 11, 12}
            with pytest.raises(tw.errors.InvalidArgumentError, match="minval < maxval"):
                sess.run(x, {low: 5, high: 5})


def test_multinomial_frequencies_follow_softmax():
    with np.errstate(divide="ignore"):
        logits = np.log(np.array([[0.2, 0.5, 0.3], [0.7, 0.0, 0.3]]))
    graph, x = _build(lambda: tw.multinomial(logits.astype(np.float32), 20_000, seed=6))
    samples = _run(x, graph)
    assert samples.dtype == np.int64 and samples.shape == (2, 20_000)
    for row, p in zip(samples, np.exp(logits)):
        freq = np.bincount(row, minlength=3) / row.size
        assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / row.size) + 1e-12)


def test_random_shuffle_permutes_rows_and_leaves_input_alone():
    value = np.arange(20).reshape(10, 2)
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.int64, [10, 2])
        y = tw.random_shuffle(x, seed=1)
        with tw.Session() as sess:
            runs = [sess.run(y, {x: value}) for _ in range(3)]
    assert value.tolist() == np.arange(20).reshape(10, 2).tolist()
    for r in runs:
        assert sorted(map(tuple, r.tolist())) == list(map(tuple, value.tolist()))
    assert not np.array_equal(runs[0], runs[1])


def test_random_shuffle_of_a_scalar_is_the_scalar():
    graph, x = _build(lambda: tw.random_shuffle(tw.constant(3.5), seed=1))
    assert _run(x, graph) == np.float32(3.5)


# -- dtypes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_float_dtypes(dtype):
    dt = tw.as_dtype(dtype)

    def program():
        return [tw.random_normal([3], dtype=dt, seed=1), tw.truncated_normal([3], dtype=dt),
                tw.random_uniform([3], dtype=dt), tw.random_uniform([3], 2, 5, dtype=dt)]
    graph, outs = _build(program)
    for t, value in zip(outs, _run(outs, graph)):
        assert t.dtype is dt and value.dtype == dt.np


def test_dtype_errors():
    graph = tw.Graph()
    with graph.as_default():
        with pytest.raises(TypeError, match="floating"):
            tw.random_normal([2], dtype=tw.int32)
        with pytest.raises(TypeError, match="floating"):
            tw.truncated_normal([2], dtype=tw.int64)
        with pytest.raises(TypeError, match="int32 or int64"):
            tw.random_uniform([2], maxval=3, dtype=tw.uint8)
        with pytest.raises(ValueError, match="maxval must be given"):
            tw.random_uniform([2], dtype=tw.int32)
        with pytest.raises(ValueError, match="minval < maxval"):
            tw.random_uniform([2], minval=3, maxval=3, dtype=tw.int32)
        with pytest.raises(TypeError, match="output_dtype"):
            tw.multinomial([[1.0, 2.0]], 2, output_dtype=tw.float32)
        with pytest.raises(TypeError, match="logits"):
            tw.multinomial([[1, 2]], 2)
        with pytest.raises(ValueError, match="matrix"):
            tw.multinomial([1.0, 2.0], 2)


# -- gradients ------------------------------------------------------------------------------------
def test_mean_and_stddev_get_gradients():
    graph = tw.Graph()
    with graph.as_default():
        mean = tw.placeholder(tw.float64, [])
        stddev = tw.placeholder(tw.float64, [])
        y = tw.random_normal([50], mean=mean, stddev=stddev, dtype=tw.float64, seed=1)
        d_mean, d_stddev = tw.gradients(tw.reduce_sum(y), [mean, stddev])
        noise = y.op.inputs[0].op.inputs[0]  # mul(RandomStandardNormal, stddev)
        assert noise.op.type == "RandomStandardNormal"
        values = _run([noise, d_mean, d_stddev], graph, {mean: 1.0, stddev: 2.0})
    z, g_mean, g_stddev = values
    assert g_mean == pytest.approx(50.0)
    assert g_stddev == pytest.approx(z.sum())


def test_random_ops_have_no_gradient():
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.float32, [4])
        shape = tw.placeholder(tw.int32, [1])
        assert tw.gradients(tw.random_shuffle(x), [x]) == [None]
        assert tw.gradients(tw.random_normal(shape), [shape]) == [None]


# -- dropout --------------------------------------------------------------------------------------
def test_dropout_keep_rate_and_scaling():
    graph = tw.Graph()
    with graph.as_default():
        x = tw.constant(np.full([N], 3.0, np.float32))
        y = dropout(x, keep_prob=0.25, seed=1)
        values = _run(y, graph)
    kept = values != 0
    assert np.all(values[kept] == np.float32(3.0) / np.float32(0.25))
    assert abs(kept.mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / N)
    assert y.shape.as_list() == [N]


def test_dropout_keep_prob_fed_as_placeholder():
    x_value = np.random.default_rng(0).normal(size=(200, 30)).astype(np.float32)
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.float32, [None, 30])
        keep_prob = tw.placeholder(tw.float32)
        y = dropout(x, keep_prob, seed=2)
        assert y.shape.as_list() == [None, 30]
        with tw.Session() as sess:
            train = sess.run(y, {x: x_value, keep_prob: 0.5})
            test = [sess.run(y, {x: x_value, keep_prob: 1.0}) for _ in range(5)]
    kept = train != 0
    np.testing.assert_array_equal(train[kept], x_value[kept] / np.float32(0.5))
    assert abs(kept.mean() - 0.5) < 4 * np.sqrt(0.25 / kept.size)
    for t in test:
        assert t.tobytes() == x_value.tobytes()  # keep_prob 1 passes values through exactly


def test_dropout_keep_prob_one_passes_values_through_exactly():
    x_value = np.array([1e-30, -7.3, np.inf, 0.1], np.float32)
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.float32, [4])
        keep_prob = tw.placeholder(tw.float32, [])
        outs = [dropout(x, 1.0), dropout(x, rate=0.0), dropout(x, keep_prob)]
        assert outs[0] is x and outs[1] is x  # statically 1: nothing to do, as TF1
        for _ in range(3):
            values = _run(outs, graph, {x: x_value, keep_prob: 1.0})
            assert all(v.tobytes() == x_value.tobytes() for v in values)


def test_dropout_rate_and_keep_prob_are_equivalent_for_the_same_seed():
    x_value = np.random.default_rng(1).normal(size=(40, 40)).astype(np.float32)
    results = []
    for kwargs in ({"keep_prob": 0.75}, {"rate": 0.25}):
        graph = tw.Graph()
        with graph.as_default():
            y = dropout(tw.constant(x_value), seed=3, **kwargs)
            results.append(_run(y, graph))
    assert results[0].tobytes() == results[1].tobytes()


def test_dropout_rate_as_tensor():
    graph = tw.Graph()
    with graph.as_default():
        rate = tw.placeholder(tw.float32, [])
        y = dropout(tw.constant(np.ones(N, np.float32)), rate=rate, seed=4)
        values = _run(y, graph, {rate: 0.8})
    kept = values != 0
    assert abs(kept.mean() - 0.2) < 4 * np.sqrt(0.16 / N)
    np.testing.assert_allclose(values[kept], 5.0, rtol=1e-6)


def test_dropout_noise_shape_shares_decisions():
    graph = tw.Graph()
    with graph.as_default():
        x = tw.constant(np.ones((50, 8), np.float32))
        rows = dropout(x, 0.5, noise_shape=[50, 1], seed=5)
        filled = dropout(x, 0.5, noise_shape=[None, 1], seed=5)
        cols = dropout(x, 0.5, noise_shape=[8], seed=6)
        r, f, c = _run([rows, filled, cols], graph)
    assert np.all(r == r[:, :1]) and 0 < (r[:, 0] != 0).sum() < 50
    assert np.array_equal(r, f)
    assert np.all(c == c[:1, :]) and 0 < (c[0] != 0).sum() < 8
    assert rows.shape.as_list() == [50, 8]


def test_dropout_gradient_is_the_mask_over_keep_prob():
    x_value = np.random.default_rng(2).normal(size=(6, 5))
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.float64, [6, 5])
        y = dropout(x, 0.6, seed=7)
        (dx,) = tw.gradients(tw.reduce_sum(y), [x])
        y_value, dx_value = _run([y, dx], graph, {x: x_value})
    np.testing.assert_allclose(dx_value, np.where(y_value != 0, 1 / 0.6, 0.0))


def test_dropout_errors():
    graph = tw.Graph()
    with graph.as_default():
        x = tw.constant(np.ones(4, np.float32))
        with pytest.raises(ValueError, match="exactly one of keep_prob and rate, got neither"):
            dropout(x)
        with pytest.raises(ValueError, match="exactly one of keep_prob and rate, got both"):
            dropout(x, keep_prob=0.5, rate=0.5)
        with pytest.raises(ValueError, match=r"rate must be .* \[0, 1\), got 1"):
            dropout(x, rate=1.0)
        with pytest.raises(ValueError, match=r"rate must be .* got -0.1"):
            dropout(x, rate=-0.1)
        with pytest.raises(ValueError, match=r"keep_prob must be .* \(0, 1\], got 0"):
            dropout(x, keep_prob=0.0)
        with pytest.raises(ValueError, match=r"keep_prob must be .* got 1.5"):
            dropout(x, keep_prob=tw.constant(1.5))
        with pytest.raises(ValueError, match="floating point"):
            dropout(tw.constant([1, 2]), 0.5)
        with pytest.raises(ValueError, match="scalar"):
            dropout(x, tw.placeholder(tw.float32, [2]))
        with pytest.raises(ValueError, match="does not broadcast"):
            dropout(x, 0.5, noise_shape=[3])
        with pytest.raises(ValueError, match="unknown dimensions"):
            dropout(tw.placeholder(tw.float32, [None, 4]), 0.5, noise_shape=[None, 1, 1])
