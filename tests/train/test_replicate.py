"""Ring all-reduce against numpy, and data-parallel training (all-reduce, ps-sync, ps-async)
against one replica, on virtual CPU devices."""

import numpy as np
import pytest

import tensorweave as tw

# The replicas' losses are means over slices and their gradients are averaged: the same numbers
# as one replica on the whole batch, summed in another order, so equal within float32 rounding.
TOLERANCE = 1e-6


def _config(n, **kw):
    return tw.ConfigProto(device_count={"CPU": n}, **kw)


def _all_reduce(values, op="sum", **config):
    n = len(values)
    g = tw.Graph()
    with g.as_default():
        devices = [f"/cpu:{i}" for i in range(n)]
        inputs = []
        for value, device in zip(values, devices):
            with tw.device(device):
                inputs.append(tw.placeholder(tw.as_dtype(value.dtype), value.shape))
        out = tw.train.all_reduce([tw.identity(t) for t in inputs], devices, op=op)
        feed = dict(zip(inputs, values))
        with tw.Session(config=_config(n, **config)) as sess:
            return sess.run(out, feed), sess.step_plan(out, feed)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (1001,)])
def test_all_reduce_equals_numpy_sum_on_every_device(n, shape):
    rng = np.random.default_rng(n * 100 + len(shape))
    values = [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]
    got, plan = _all_reduce(values)
    want = np.sum(np.stack(values).astype(np.float64), axis=0)
    for result in got:
        assert result.shape == shape and result.dtype == np.float32
        np.testing.assert_allclose(result, want, rtol=1e-5, atol=1e-5)
        assert result.tobytes() == got[0].tobytes()  # every device: the bitwise same sum
    if n > 1:
        size = int(np.prod(shape)) * 4
        per_link: dict = {}
        for t in plan.partitions.transfers:
            per_link[(t.src_device, t.dst_device)] = per_link.get(
                (t.src_device, t.dst_device), 0) + t.bytes
        assert len(per_link) == n if n > 2 else 2  # the ring's links
        for carried in per_link.values():  # 2(n-1)/n of the tensor, up to chunk rounding
            assert abs(carried - 2 * (n - 1) / n * size) <= 2 * (n - 1) * 4


def test_all_reduce_mean_and_half_float_transfers():
    rng = np.random.default_rng(7)
    values = [rng.standard_normal(301).astype(np.float32) for _ in range(3)]
    want = np.mean(values, axis=0)
    got, _ = _all_reduce(values, op="mean")
    np.testing.assert_allclose(got[1], want, rtol=1e-5, atol=1e-6)
    for wire, tol in (("float16", 5e-3), ("bfloat16", 4e-2)):
        got, plan = _all_reduce(values, op="mean", transfer_dtype=wire)
        assert {t.dtype for t in plan.partitions.transfers} == {wire}
        for result in got:
            np.testing.assert_allclose(result, want, atol=tol)
        # A device keeps its own finished chunk at full precision and receives the others
        # through the lossy wire, so with compression the copies agree only to its precision.
        np.testing.assert_allclose(got[0], got[2], atol=tol)


def test_all_reduce_checks_its_inputs(graph):
    with pytest.raises(TypeError, match="share a dtype"):
        tw.train.all_reduce([tw.constant([1.0]), tw.constant([1])], ["/cpu:0", "/cpu:1"])
    with pytest.raises(ValueError, match="fully known static shapes"):
        tw.train.all_reduce([tw.placeholder(tw.float32, [None])] * 2, ["/cpu:0", "/cpu:1"])
    with pytest.raises(ValueError, match="'sum' or 'mean'"):
        tw.train.all_reduce([tw.constant([1.0])], ["/cpu:0"], op="max")


def test_buckets_pack_small_tensors_and_keep_large_ones_apart(graph):
    rng = np.random.default_rng(3)
    shapes = [(3,), (2, 2), (5000,), (7,)]
    per_device, values = [], []
    for i in range(2):
        row_values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        values.append(row_values)
        with tw.device(f"/cpu:{i}"):
            per_device.append([tw.identity(tw.constant(v)) for v in row_values])
    out = tw.train.all_reduce_buckets(per_device, ["/cpu:0", "/cpu:1"], op="sum",
                                      bucket_bytes=1024)
    scopes = {op.name.split("/")[0] for op in graph.get_operations()
              if op.name.startswith("all_reduce_bucket")}
    buckets = {name for name in scopes if "_pack" not in name}
    assert buckets == {"all_reduce_bucket0", "all_reduce_bucket1", "all_reduce_bucket2"}
    # each device packs each bucket into one flat tensor, named for it
    assert scopes - buckets == {f"all_reduce_bucket{b}_pack{s}" for b in range(3)
                                for s in ("", "_1")}
    with tw.Session(config=_config(2, disabled_passes=["constant_fold"])) as sess:
        got = sess.run(out)
    for i in range(2):
        for j, shape in enumerate(shapes):
            np.testing.assert_allclose(got[i][j], values[0][j] + values[1][j], rtol=1e-6)
            assert got[i][j].shape == shape


def _model(x, y):
    w1 = tw.get_variable("w1", [10, 16],
                         initializer=tw.random_normal_initializer(stddev=0.3, seed=1))
    b1 = tw.get_variable("b1", [16], initializer=tw.zeros_initializer())
    w2 = tw.get_variable("w2", [16, 3],
                         initializer=tw.random_normal_initializer(stddev=0.3, seed=2))
    logits = tw.matmul(tw.nn.relu(tw.matmul(x, w1) + b1), w2)
    return tw.reduce_mean(tw.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits))


def _train(n, mode, steps=6, ps=1, optimizer=None):
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((steps, 32, 10)).astype(np.float32)
    ys = np.argmax(xs[..., :3], axis=-1)  # a task the model can learn
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [None, 10])
        y = tw.placeholder(tw.int64, [None])
        devices = [f"/cpu:{i}" for i in range(n)]
        ps_devices = [f"/cpu:{i}" for i in range(ps)]
        make = optimizer or (lambda: tw.train.AdamOptimizer(0.01))
        rep = tw.train.replicate(_model, [x, y], devices, make, mode=mode,
                                 ps_devices=ps_devices)
        with tw.Session(config=_config(max(n, ps))) as sess:
            sess.run(tw.global_variables_initializer())
            losses = [sess.run([rep.train_op, rep.loss], {x: bx, y: by})[1]
                      for bx, by in zip(xs, ys)]
            weights = [sess.run(v) for v in rep.variables]
    return losses, weights, rep


@pytest.mark.parametrize("mode", ["allreduce", "ps-sync"])
@pytest.mark.parametrize("n", [2, 4])
def test_synchronous_replicas_equal_one_replica(n, mode):
    base_losses, base_weights, _ = _train(1, mode)
    losses, weights, rep = _train(n, mode)
    np.testing.assert_allclose(losses, base_losses, atol=TOLERANCE)
    for replica in weights:
        for a, b in zip(replica, base_weights[0]):
            np.testing.assert_allclose(a, b, atol=TOLERANCE)
    if mode == "allreduce":  # every replica's copy stays bitwise equal
        for replica in weights[1:]:
            assert all(a.tobytes() == b.tobytes() for a, b in zip(replica, weights[0]))


def test_parameter_servers_hold_the_variables_by_size():
    _, _, rep = _train(2, "ps-sync", steps=1, ps=2)
    devices = {v.op.name: v.op.device for v in rep.variables[0]}
    # w1 (640 B) goes to the first ps, b1 (64 B) and w2 (192 B) to the less loaded second
    assert devices == {"replicated/w1": "/device:CPU:0", "replicated/b1": "/device:CPU:1",
                       "replicated/w2": "/device:CPU:1"}


def test_async_replicas_each_apply_their_own_gradients_and_learn():
    losses, _, rep = _train(2, "ps-async", steps=30,
                            optimizer=lambda: tw.train.GradientDescentOptimizer(0.2))
    assert len(rep.train_ops) == 2
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_replicate_asks_for_an_optimizer_factory_and_variables(graph):
    x = tw.placeholder(tw.float32, [None, 10])
    y = tw.placeholder(tw.int64, [None])
    with pytest.raises(TypeError, match="pass a factory"):
        tw.train.replicate(_model, [x, y], ["/cpu:0", "/cpu:1"],
                           tw.train.GradientDescentOptimizer(0.1))
    with pytest.raises(ValueError, match="no trainable variables"):
        tw.train.replicate(lambda a, b: tw.reduce_sum(a), [x, y], ["/cpu:0"],
                           lambda: tw.train.GradientDescentOptimizer(0.1))
    with pytest.raises(ValueError, match="mode must be one of"):
        tw.train.replicate(_model, [x, y], ["/cpu:0"], lambda: None, mode="hogwild")


def test_async_replicas_update_on_their_own_inputs_alone(graph):
    x = tw.placeholder(tw.float32, [None, 10])
    y = tw.placeholder(tw.int64, [None])
    rep = tw.train.replicate(_model, [x, y], ["/cpu:0", "/cpu:1"],
                             lambda: tw.train.GradientDescentOptimizer(0.1), mode="ps-async")
    assert all(not op.control_inputs or all("replica_" not in c.name or
                                            c.name.startswith(f"replica_{i}/")
                                            for c in op.control_inputs)
               for i, op in enumerate(rep.train_ops))
    rng = np.random.default_rng(4)
    with tw.Session(config=_config(2)) as sess:
        sess.run(tw.global_variables_initializer())
        before = sess.run(rep.variables[0])
        sess.run(rep.train_ops[1], {x: rng.standard_normal((32, 10)), y: np.zeros(32, np.int64)})
        after = sess.run(rep.variables[0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_one_steps_updates_of_a_variable_run_in_sequence(graph, monkeypatch):
    """Two large updates of one variable in one step, on the dataflow runner: both land."""
    from tensorweave.executor import device_program
    monkeypatch.setattr(device_program, "has_parallel_work", lambda schedule: True)
    v = tw.Variable(np.zeros((400, 400), np.float32))
    ones = tw.ones([400, 400])
    step = tw.group(tw.assign_add(v, ones), tw.assign_add(v, ones * 2.0))
    with tw.Session() as sess:
        sess.run(v.initializer)
        for _ in range(5):
            sess.run(step)
        np.testing.assert_array_equal(sess.run(v), np.full((400, 400), 15.0, np.float32))
