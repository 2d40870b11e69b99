"""Session.run: fetch structures, feeds, caching, runners, errors and step stats."""

import collections

import numpy as np
import pytest

import tensorweave as tw


def test_fetch_structures(graph):
    x = tw.placeholder(tw.float32, [2], name="x")
    y = tw.add(x, 1.0)
    Pair = collections.namedtuple("Pair", "a b")
    with tw.Session() as sess:
        out = sess.run({"y": y, "pair": Pair(x, [y, (x,)]), "op": y.op}, {x: [1.0, 2.0]})
    np.testing.assert_array_equal(out["y"], [2.0, 3.0])
    assert isinstance(out["pair"], Pair)
    np.testing.assert_array_equal(out["pair"].b[1][0], [1.0, 2.0])
    assert isinstance(out["pair"].b[1], tuple)
    assert out["op"] is None


def test_fetch_and_feed_by_name(graph):
    x = tw.placeholder(tw.float32, [], name="x")
    tw.add(x, 2.0, name="y")
    with tw.Session() as sess:
        assert sess.run("y:0", {"x:0": 1.0}) == 3.0
        assert sess.run("y:0", {"x": 5.0}) == 7.0


def test_only_needed_ops_run(graph):
    x = tw.placeholder(tw.float32, [], name="x")
    unused = tw.placeholder(tw.float32, [], name="unused")
    tw.add(unused, 1.0)
    y = tw.add(x, 1.0)
    with tw.Session() as sess:
        assert sess.run(y, {x: 1.0}) == 2.0  # 'unused' is not fed and not needed


def test_feeding_an_intermediate_cuts_the_graph(graph):
    x = tw.placeholder(tw.float32, [], name="x")
    h = tw.add(x, 1.0)
    y = tw.add(h, 1.0)
    with tw.Session() as sess:
        assert sess.run(y, {h: 10.0}) == 11.0


def test_steps_are_cached_per_signature(graph):
    x = tw.placeholder(tw.float32, [], name="x")
    y = tw.add(x, 1.0)
    with tw.Session() as sess:
        sess.run(y, {x: 1.0})
        sess.run(y, {x: 2.0})
        sess.run([y], {x: 2.0})
        assert len(sess._compiled_steps()) == 2


def _ops_of(step):
    return {op.type for op in step.optimized.get_operations()}


def test_steps_are_specialized_to_the_fed_shapes(graph):
    x = tw.placeholder(tw.float32, [None, 3], name="x")
    y = tw.reduce_mean(x) * tf_size(x)
    with tw.Session() as sess:
        for rows in (2, 5, 2):
            value = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
            assert sess.run(y, {x: value}) == pytest.approx(value.mean() * value.size)
        steps = sess._compiled_steps()
        assert len(steps) == 2  # one per batch size
        # the batch is known inside each step: Size folds into a constant
        assert all("Size" not in _ops_of(step) for step in steps)
        args = [op for op in steps[1].optimized.get_operations() if op.type == "_Arg"]
        assert args[0].attrs["shape"].as_tuple() == (5, 3)


def tf_size(x):
    return tw.cast(tw.size(x), tw.float32)


def test_shape_specializations_are_capped_then_one_generic_step_runs(graph):
    x = tw.placeholder(tw.float32, [None], name="x")
    y = tw.reduce_sum(x) + tf_size(x)
    with tw.Session(config=tw.ConfigProto(max_shape_specializations=2)) as sess:
        for n in (1, 2, 3, 4, 3):
            assert sess.run(y, {x: np.ones(n, np.float32)}) == 2 * n
        steps = sess._compiled_steps()
        assert len(steps) == 3  # two specialized, then the generic one for every other shape
        assert "Size" in _ops_of(steps[2]) and "Size" not in _ops_of(steps[0])
    with tw.Session(config=tw.ConfigProto(max_shape_specializations=0)) as sess:
        for n in (1, 2):
            assert sess.run(y, {x: np.ones(n, np.float32)}) == 2 * n
        assert len(sess._compiled_steps()) == 1


def test_a_fed_shape_that_breaks_inference_is_reported_when_the_op_runs(graph):
    x = tw.placeholder(tw.float32, [None], name="x")
    y = tw.reshape(x, [2, 2], name="square")
    with tw.Session() as sess:
        assert sess.run(y, {x: np.ones(4, np.float32)}).shape == (2, 2)
        with pytest.raises(tw.errors.InvalidArgumentError, match="square"):
            sess.run(y, {x: np.ones(3, np.float32)})


def test_missing_feed_names_placeholder_and_location(graph):
    x = tw.placeholder(tw.float32, [None, 3], name="images")
    y = tw.add(x, 1.0)
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError) as e:
            sess.run(y)
        assert "images" in str(e.value) and "test_session.py" in str(e.value)
        assert sess.run(y, {x: np.zeros((1, 3))}).shape == (1, 3)  # still usable


def test_feed_shape_and_dtype_checks(graph):
    x = tw.placeholder(tw.int32, [2], name="counts")
    y = tw.add(x, 1)
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError, match="shape"):
            sess.run(y, {x: [1, 2, 3]})
        with pytest.raises(tw.errors.InvalidArgumentError, match="dtype float"):
            sess.run(y, {x: np.array([1.5, 2.5])})
        np.testing.assert_array_equal(sess.run(y, {x: np.array([1, 2], np.int64)}), [2, 3])


def test_feed_of_another_graphs_tensor(graph):
    other = tw.Graph()
    with other.as_default():
        foreign = tw.placeholder(tw.float32, [], name="foreign")
    y = tw.constant(1.0)
    with tw.Session() as sess:
        with pytest.raises(ValueError, match="foreign.*another graph"):
            sess.run(y, {foreign: 1.0})


def test_bad_fetches(graph):
    tw.constant(1.0, name="c")
    with tw.Session() as sess:
        with pytest.raises(TypeError, match="invalid type int"):
            sess.run(3)
        with pytest.raises(KeyError, match="did you mean 'c'"):
            sess.run("cc:0")


def test_kernel_error_names_op_and_location(graph):
    x = tw.placeholder(tw.float32, [None], name="x")
    y = tw.reshape(x, [2, 2], name="to_square")
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError) as e:
            sess.run(y, {x: np.zeros(3)})
        message = str(e.value)
        assert "to_square" in message and "Reshape" in message
        assert "test_session.py" in message and "float32[3]" in message
        assert sess.run(y, {x: np.zeros(4)}).shape == (2, 2)


def test_closed_session(graph):
    y = tw.constant(1.0)
    sess = tw.Session()
    sess.close()
    with pytest.raises(RuntimeError, match="closed"):
        sess.run(y)


def test_finalized_graph_rejects_ops(graph):
    tw.constant(1.0)
    graph.finalize()
    with pytest.raises(RuntimeError, match="finalized"):
        tw.constant(2.0)


def test_fetched_constant_is_a_private_copy(graph):
    c = tw.constant([1.0, 2.0])
    with tw.Session() as sess:
        a = sess.run(c)
        a[0] = 100.0
        np.testing.assert_array_equal(sess.run(c), [1.0, 2.0])


def test_eval_and_run_use_default_session(graph):
    x = tw.placeholder(tw.float32, [], name="x")
    y = tw.add(x, 1.0)
    with tw.Session():
        assert y.eval({x: 1.0}) == 2.0
        tw.no_op().run()
    with pytest.raises(ValueError, match="needs a session"):
        y.eval({x: 1.0})


def test_interactive_session(graph):
    sess = tw.InteractiveSession()
    try:
        assert tw.constant(3.0).eval() == 3.0
    finally:
        sess.close()
    assert tw.get_default_session() is None


def test_run_metadata_step_stats(graph):
    x = tw.placeholder(tw.float32, [2], name="x")
    y = tw.add(tw.add(x, 1.0, name="a"), 2.0, name="b")
    md = tw.RunMetadata()
    with tw.Session() as sess:
        sess.run(y, {x: [0.0, 0.0]}, run_metadata=md)
    names = [s.node_name for s in md.step_stats]
    assert names == ["a", "b"]
    assert all(s.end_us >= s.start_us for s in md.step_stats)


def test_values_are_freed_after_last_use(graph):
    x = tw.placeholder(tw.float32, [3], name="x")
    a = tw.add(x, 1.0)
    b = tw.add(a, 1.0)
    with tw.Session() as sess:
        sess.run(b, {x: [1, 2, 3]})
        step = sess._compiled_steps()[0]
        source = step.program._fn.__code__.co_names
        assert "k0" in source
        assert step.schedule.last_use  # every read value has a last use


def test_parallel_runner_matches_sequential(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # matmuls on one core each: run side by side
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [128, 128], name="x")
        left = tw.matmul(tw.matmul(x, x), x)
        right = tw.matmul(tw.add(x, 1.0), x)
        out = tw.add(left, right)
        value = np.random.default_rng(0).normal(size=(128, 128)).astype(np.float32)
        with tw.Session(config=tw.ConfigProto(inter_op_parallelism_threads=2)) as sess:
            got = sess.run(out, {x: value})
            step = sess._compiled_steps()[0]
            assert step.parallel
        with tw.Session(config=tw.ConfigProto(inter_op_parallelism_threads=1)) as sess:
            want = sess.run(out, {x: value})
            assert not sess._compiled_steps()[0].parallel
    np.testing.assert_array_equal(got, want)


def test_independent_matmuls_run_in_sequence_when_blas_has_the_cores(monkeypatch):
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [128, 128], name="x")
        out = tw.add(tw.matmul(x, x), tw.matmul(tw.add(x, 1.0), x))
    value = np.ones((128, 128), np.float32)
    for threads, parallel in (("2", False), ("1", True)):
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", threads)
        with tw.Session(graph=g, config=tw.ConfigProto(inter_op_parallelism_threads=2)) as sess:
            sess.run(out, {x: value})
            assert sess._compiled_steps()[0].parallel is parallel


def test_parallel_runner_error_is_reported():
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [128, 128], name="x")
        shape = tw.placeholder(tw.int32, [2], name="shape")
        left = tw.matmul(x, x)
        right = tw.reshape(tw.matmul(x, x), shape, name="bad_reshape")
        out = [left, right]
        with tw.Session(config=tw.ConfigProto(inter_op_parallelism_threads=2)) as sess:
            with pytest.raises(tw.errors.InvalidArgumentError, match="bad_reshape"):
                sess.run(out, {x: np.ones((128, 128)), shape: [3, 3]})
            assert sess.run(left, {x: np.ones((128, 128))}).shape == (128, 128)
