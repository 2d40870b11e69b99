"""Multi-device execution on virtual CPUs: partitioned steps equal the single-device run
(differential over random placements), send/recv counts, control edges, failures, deadlines,
transfer compression and step stats."""

import json
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensorweave as tw
from tensorweave.executor import device_program
from tensorweave.ops.function import ARG_TYPE, RESULT_TYPES
from tests.graphgen import random_graphs


def _config(n, **kw):
    return tw.ConfigProto(device_count={"CPU": n}, **kw)


def _step(sess):
    return sess._compiled_steps()[-1]


def _cpu(i):
    return f"/job:localhost/replica:0/task:0/device:CPU:{i}"


def _expected_recvs(step) -> int:
    """Distinct (tensor, destination device) pairs over the placed step graph's cut edges,
    counted from the plan alone: data edges from fed tensors stay local, constants are copied
    to their readers' devices, and a NoOp that only the step's targets wait for is dropped
    (its control inputs become targets where they are)."""
    device_of = step.plan.placement
    ops = step.optimized.get_operations()
    waiters: dict = {}
    for op in ops:
        for c in op.control_inputs:
            waiters.setdefault(c, []).append(op)
    dropped: set = set()
    for op in reversed(ops):
        who = waiters.get(op, [])
        if (op.type == "NoOp" and not op.inputs and who
                and all(w.type in RESULT_TYPES or w in dropped for w in who)):
            dropped.add(op)
    pairs = set()
    for op in ops:
        if op.type in RESULT_TYPES or op in dropped:
            continue
        for t in op.inputs:
            if (t.op.type not in (ARG_TYPE, "Const")
                    and device_of[t.op.name] != device_of[op.name]):
                pairs.add((t, device_of[op.name]))
        for c in op.control_inputs:
            if c.type != ARG_TYPE and device_of[c.name] != device_of[op.name]:
                pairs.add(("^" + c.name, device_of[op.name]))
    return len(pairs)


@pytest.fixture(params=["straight-line", "dataflow"])
def runner(request, monkeypatch):
    """Run each device's partition with the straight-line runner, or force the dataflow one
    (whose receives wait on futures)."""
    if request.param == "dataflow":
        monkeypatch.setattr(device_program, "has_parallel_work", lambda schedule: True)
    return request.param


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(random_graphs(), st.integers(1, 4), st.randoms(use_true_random=False))
def test_random_placements_equal_the_single_device_run(runner, sample, n, rnd):
    graph, _, feeds, fetches = sample
    with tw.Session(graph=graph) as sess:
        want = sess.run(fetches, feeds)
    for op in graph.get_operations():
        op._set_device(f"/device:CPU:{rnd.randrange(n)}")
    with tw.Session(graph=graph, config=_config(n)) as sess:
        got = sess.run(fetches, feeds)
        got_again = sess.run(fetches, feeds)
        step = _step(sess)
    for w, g, g2 in zip(want, got, got_again):
        np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(g2, w)
        assert np.asarray(g).dtype == np.asarray(w).dtype
    if n > 1:
        assert step.partitions.recv_count() == _expected_recvs(step)
        assert len(step.partitions.transfers) == step.partitions.recv_count()


def test_one_recv_per_tensor_and_destination(graph):
    x = tw.placeholder(tw.float32, [3], name="x")
    with tw.device("/cpu:0"):
        h = tw.exp(x, name="h")
    with tw.device("/cpu:1"):
        a = tw.multiply(h, 2.0, name="a")
        b = tw.add(h, 1.0, name="b")
        c = tw.multiply(a, b, name="c")
    with tw.device("/cpu:2"):
        d = tw.subtract(h, 1.0, name="d")
    cfg = _config(3, disabled_passes=["fusion"])
    with tw.Session(config=cfg) as sess:
        got = sess.run([c, d], {x: [0.0, 1.0, 2.0]})
        step = _step(sess)
    e = np.exp(np.float32([0, 1, 2]))
    np.testing.assert_array_equal(got[0], (e * 2) * (e + 1))
    np.testing.assert_array_equal(got[1], e - 1)
    parts = step.partitions
    assert [(t.tensor, t.dst_device) for t in parts.transfers] == [("h:0", _cpu(1)),
                                                                  ("h:0", _cpu(2))]
    assert parts.transfers[0].consumers == ("a", "b")
    assert parts.recv_count() == 2
    assert parts.transfers[0].bytes == 12
    summary = parts.summary()
    assert "_send_h_0_to_CPU_1" in summary and "_recv_h_0_from_CPU_0" in summary
    printed = str(parts)
    assert "# partition CPU:1" in printed and "_Recv()" in printed


def test_cross_device_control_edges_order_execution(graph):
    order = []
    lock = threading.Lock()

    def slow_first(x):
        time.sleep(0.05)
        with lock:
            order.append("first")
        return x

    def second(x):
        with lock:
            order.append("second")
        return x
    x = tw.constant([1.0])
    with tw.device("/cpu:0"):
        a = tw.py_func(slow_first, [x], tw.float32, name="a")
    with tw.device("/cpu:1"), tw.control_dependencies([a.op]):
        b = tw.py_func(second, [x], tw.float32, name="b")
    with tw.Session(config=_config(2)) as sess:
        for _ in range(3):
            sess.run([b, a.op])
        step = _step(sess)
    assert order == ["first", "second"] * 3
    control = [t for t in step.partitions.transfers if t.control]
    assert [(t.tensor, t.consumers) for t in control] == [("^a", ("b",))]


def test_constants_are_copied_to_their_readers_and_groups_are_not_sent(graph):
    """A constant read on two devices is copied into both partitions (no transfer), and a
    ``tw.group`` target over updates on two devices sends no control edge: its inputs become
    the targets, each on its own device; the updates still run once per step."""
    x = tw.placeholder(tw.float32, [3], name="x")
    with tw.device("/cpu:0"):
        rate = tw.constant(0.5, name="rate")
        v0 = tw.Variable([1.0, 2.0, 3.0], name="v0")
        up0 = tw.assign_add(v0, x * rate, name="up0")
    with tw.device("/cpu:1"):
        v1 = tw.Variable([0.0, 0.0, 0.0], name="v1")
        up1 = tw.assign_sub(v1, x * rate, name="up1")
        train = tw.group(up0, up1, name="train")
    with tw.Session(config=_config(2, disabled_passes=["fusion"])) as sess:
        sess.run(tw.global_variables_initializer())
        for _ in range(2):
            sess.run(train, {x: [2.0, 4.0, 6.0]})
        step = _step(sess)
        np.testing.assert_array_equal(sess.run(v0), [3.0, 6.0, 9.0])
        np.testing.assert_array_equal(sess.run(v1), [-2.0, -4.0, -6.0])
    assert step.partitions.transfers == []
    partitions = {d[-5:]: [op.name for op in g.get_operations()]
                  for d, g in step.partitions.graphs.items()}
    assert "rate" in partitions["CPU:0"] and "rate" in partitions["CPU:1"]
    assert "train" not in partitions["CPU:0"] + partitions["CPU:1"]


def test_sends_go_out_early_and_receives_are_waited_for_late(graph):
    """The partitions' order lets transfers overlap work: on CPU:0 the value CPU:1 needs is
    made and sent before an independent chain created earlier; on CPU:1 an independent chain
    created later runs before the receive; results are unchanged."""
    x = tw.placeholder(tw.float32, [4], name="x")
    with tw.device("/cpu:0"):
        a = tw.exp(x, name="a")
        c = tw.cos(tw.sin(a, name="b"), name="c")
        g = tw.tanh(x, name="g")
    with tw.device("/cpu:1"):
        h = tw.multiply(g, 2.0, name="h")
        k = tw.sqrt(tw.abs(x, name="k0"), name="k")
    cfg = _config(2, disabled_passes=["fusion"])
    xs = np.float32([0.5, -1.0, 2.0, 0.0])
    with tw.Session(config=cfg) as sess:
        got = sess.run([c, h, k], {x: xs})
        step = _step(sess)
    np.testing.assert_array_equal(got[0], np.cos(np.sin(np.exp(xs))))
    np.testing.assert_array_equal(got[1], np.tanh(xs) * np.float32(2.0))
    np.testing.assert_array_equal(got[2], np.sqrt(np.abs(xs)))
    order = {d[-5:]: [op.name for op in g.get_operations()]
             for d, g in step.partitions.graphs.items()}
    zero, one = order["CPU:0"], order["CPU:1"]
    assert zero.index("_send_g_0_to_CPU_1") < zero.index("a")
    assert one.index("k") < one.index("_recv_g_0_from_CPU_0") < one.index("h")


def test_receives_follow_the_send_order_and_updates_of_other_variables_do_not_wait(graph):
    """CPU:1 sends early (from a short chain) then late (after a long one); CPU:0 receives in
    that order, and the update of the variable fed by the early value runs before the late
    receive although its variable was created second (updates of different variables need no
    order; a step's updates of one variable keep theirs)."""
    x = tw.placeholder(tw.float32, [4], name="x")
    with tw.device("/cpu:0"):
        late_var = tw.Variable(np.zeros(4, np.float32), name="late_var")
        early_var = tw.Variable(np.zeros(4, np.float32), name="early_var")
    with tw.device("/cpu:1"):
        early = tw.negative(x, name="early")
        late = tw.exp(tw.cos(tw.sin(tw.tanh(x), name="s"), name="c"), name="late")
    with tw.device("/cpu:0"):
        update_late = tw.assign_add(late_var, late, name="update_late")
        update_early = tw.assign_add(early_var, early, name="update_early")
        twice = tw.assign_add(early_var, early, name="update_early_again")
    cfg = _config(2, disabled_passes=["fusion"])
    xs = np.float32([0.5, -1.0, 2.0, 0.0])
    with tw.Session(config=cfg) as sess:
        sess.run(tw.global_variables_initializer())
        sess.run([update_late.op, update_early.op, twice.op], {x: xs})
        step = _step(sess)
        np.testing.assert_array_equal(sess.run(early_var), -2 * xs)
    order = {d[-5:]: [op.name for op in g.get_operations()]
             for d, g in step.partitions.graphs.items()}
    zero, one = order["CPU:0"], order["CPU:1"]
    early_recv, late_recv = (next(n for n in zero if n.startswith(f"_recv_{t}"))
                             for t in ("early", "late"))
    assert one.index("_send_early_0_to_CPU_0") < one.index("_send_late_0_to_CPU_0")
    assert zero.index(early_recv) < zero.index("update_early") < zero.index(late_recv)
    assert zero.index("update_early") < zero.index("update_early_again")


def _two_device_model(fail):
    """CPU:0 and CPU:1 each wait for the other: x -> f (CPU:1) -> g (CPU:0) -> h (CPU:1)."""
    x = tw.placeholder(tw.float32, [2], name="x")

    def maybe_fail(v):
        if fail["now"]:
            raise RuntimeError("bad value")
        return v + 1
    with tw.device("/cpu:0"):
        v = tw.Variable([10.0, 20.0], name="v")
        g0 = tw.multiply(x, 3.0, name="g0")
    with tw.device("/cpu:1"):
        f = tw.py_func(maybe_fail, [g0], tw.float32, name="f")
        f.set_shape([2])
    with tw.device("/cpu:0"):
        g = tw.multiply(f, v, name="g")
        update = tw.assign_add(v, g, name="update")
    return x, v, g, update


def test_an_error_on_one_device_cancels_the_step_and_the_session_goes_on(graph, runner):
    fail = {"now": False}
    x, v, g, update = _two_device_model(fail)
    with tw.Session(config=_config(2)) as sess:
        sess.run(tw.global_variables_initializer())
        fail["now"] = True
        with pytest.raises(tw.errors.InvalidArgumentError) as info:
            sess.run([g, update], {x: [1.0, 2.0]})
        message = str(info.value)
        assert "'f' (PyFunc on /job:localhost/replica:0/task:0/device:CPU:1)" in message
        assert "test_multidevice.py:" in message and "bad value" in message
        np.testing.assert_array_equal(sess.run(v), [10.0, 20.0])  # the failed step lost nothing
        fail["now"] = False
        got, _ = sess.run([g, update], {x: [1.0, 2.0]})
        np.testing.assert_array_equal(got, [40.0, 140.0])
        np.testing.assert_array_equal(sess.run(v), [50.0, 160.0])


def test_a_stuck_receive_times_out_and_the_next_step_runs(graph, runner):
    delay = {"seconds": 0.5}

    def slow(v):
        time.sleep(delay["seconds"])
        return v
    x = tw.placeholder(tw.float32, [2], name="x")
    with tw.device("/cpu:0"):
        s = tw.py_func(slow, [x], tw.float32, name="slow")
    with tw.device("/cpu:1"):
        y = tw.multiply(s, 2.0, name="y")
    with tw.Session(config=_config(2, operation_timeout_in_ms=20)) as sess:
        started = time.monotonic()
        with pytest.raises(tw.errors.DeadlineExceededError) as info:
            sess.run(y, {x: [1.0, 2.0]})
        waited = time.monotonic() - started
        message = str(info.value)
        assert "_Recv on /job:localhost/replica:0/task:0/device:CPU:1" in message
        assert "slow:0 from /job:localhost/replica:0/task:0/device:CPU:0" in message
        assert "operation_timeout_in_ms" in message
        assert waited < 30  # bounded: the step ended once the slow kernel returned
        delay["seconds"] = 0.0
        np.testing.assert_array_equal(sess.run(y, {x: [1.0, 2.0]}), [2.0, 4.0])


def test_transfer_compression_casts_float32_on_cut_edges(graph):
    rng = np.random.default_rng(0)
    value = rng.standard_normal((64, 32)).astype(np.float32)
    x = tw.placeholder(tw.float32, [64, 32], name="x")
    with tw.device("/cpu:0"):
        h = tw.tanh(x, name="h")
    with tw.device("/cpu:1"):
        y = tw.reduce_sum(h * 2.0, axis=1, name="y")
    results = {}
    for wire in (None, "bfloat16", "float16"):
        with tw.Session(config=_config(2, transfer_dtype=wire)) as sess:
            results[wire] = sess.run(y, {x: value})
            parts = _step(sess).partitions
        (transfer,) = parts.transfers
        assert transfer.dtype == (wire or "float32")
        assert transfer.uncompressed_bytes == 64 * 32 * 4
        assert transfer.saved_bytes == (64 * 32 * 2 if wire else 0)
        types = {op.type for g in parts.graphs.values() for op in g.get_operations()}
        assert ("Cast" in types) == (wire is not None)
        assert results[wire].dtype == np.float32
    want = (np.tanh(value) * 2).sum(axis=1)
    np.testing.assert_allclose(results[None], want, rtol=1e-5)
    np.testing.assert_allclose(results["float16"], want, rtol=2e-3, atol=2e-2)
    np.testing.assert_allclose(results["bfloat16"], want, rtol=2e-2, atol=2e-1)
    assert "saved by compression" in parts.summary()


def test_transfer_dtype_must_be_a_half_float(graph):
    with tw.device("/cpu:1"):
        y = tw.constant([1.0]) * 2.0
    with tw.Session(config=_config(2, transfer_dtype="int8")) as sess:
        with pytest.raises(ValueError, match="transfer_dtype"):
            sess.run(y)


def test_step_stats_per_device_with_paired_transfers(graph, runner):
    x = tw.placeholder(tw.float32, [4], name="x")
    with tw.device("/cpu:0"):
        h = tw.exp(x, name="h")
    with tw.device("/cpu:1"):
        y = tw.negative(h, name="y")
    md = tw.RunMetadata()
    with tw.Session(config=_config(2)) as sess:
        sess.run(y, {x: np.ones(4)}, options=tw.RunOptions(trace_level=tw.RunOptions.FULL_TRACE),
                 run_metadata=md)
    by_device = md.stats_by_device()
    assert set(by_device) == {_cpu(0), _cpu(1)}
    sends = [s for s in md.step_stats if s.op_type == "_Send"]
    recvs = [s for s in md.step_stats if s.op_type == "_Recv"]
    assert len(sends) == len(recvs) == 1 and sends[0].transfer == recvs[0].transfer != ""
    assert sends[0].device == _cpu(0) and recvs[0].device == _cpu(1)
    assert recvs[0].end_us >= sends[0].start_us
    assert md.partitions is not None


def test_training_across_two_devices_equals_one_device_bitwise(graph):
    def build():
        g = tw.Graph()
        with g.as_default():
            tw.set_random_seed(3)
            x = tw.placeholder(tw.float32, [None, 8], name="x")
            labels = tw.placeholder(tw.int64, [None], name="labels")
            with tw.device("/cpu:0"):
                w1 = tw.Variable(tw.random_normal([8, 16], stddev=0.3), name="w1")
                h = tw.nn.relu(tw.matmul(x, w1))
            with tw.device("/cpu:1"):
                w2 = tw.Variable(tw.random_normal([16, 3], stddev=0.3), name="w2")
                logits = tw.matmul(h, w2)
                loss = tw.reduce_mean(tw.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=labels, logits=logits))
            train = tw.train.GradientDescentOptimizer(0.1).minimize(loss)
        return g, x, labels, loss, train, [w1, w2]

    rng = np.random.default_rng(1)
    xs = rng.standard_normal((5, 32, 8)).astype(np.float32)
    ys = rng.integers(0, 3, (5, 32))
    finals = []
    for n in (1, 2):
        g, x, labels, loss, train, weights = build()
        with tw.Session(graph=g, config=_config(n)) as sess:
            sess.run(tw.global_variables_initializer())
            for bx, by in zip(xs, ys):
                sess.run(train, {x: bx, labels: by})
            finals.append(sess.run(weights))
    for a, b in zip(*finals):
        np.testing.assert_array_equal(a, b)


def test_step_plan_dump_dir_and_log_device_placement(graph, tmp_path, capsys):
    x = tw.placeholder(tw.float32, [None, 4], name="x")
    with tw.device("/cpu:0"):
        h = tw.nn.relu(x * 2.0, name="h")
    with tw.device("/cpu:1"):
        y = tw.reduce_sum(h, name="y")
    cfg = _config(2, dump_dir=str(tmp_path), log_device_placement=True)
    with tw.Session(config=cfg) as sess:
        sp = sess.step_plan(y, {x: np.ones((8, 4))})
        assert sp.multi_device and len(sp.partitions.transfers) == 1
        assert sp.partitions.transfers[0].bytes == 8 * 4 * 4  # sized by the fed batch
        assert "_Send/_Recv pairs" in sp.summary() and "Placement plan" in sp.summary()
        data = json.loads(sp.to_json(tmp_path / "plan.json"))
        assert data["partitions"]["transfers"][0]["tensor"] == sp.partitions.transfers[0].tensor
        assert "digraph" in sp.to_dot()
        sess.run(y, {x: np.ones((8, 4))})  # the same signature: compiled once, logged once
    logged = capsys.readouterr().err
    assert logged.count("_Send/_Recv pairs") == 1
    (dumped,) = tmp_path.glob("*/partitions.txt")
    assert "# partition CPU:1" in dumped.read_text()
    with tw.Session() as sess:
        single = sess.step_plan(y, {x: np.ones((8, 4))})
    assert not single.multi_device and "one device" in single.summary()


def _gpu_count() -> int:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001 - no cupy, no driver or no device: no GPU here
        return 0


@pytest.mark.skipif(_gpu_count() == 0, reason="cupy does not see a CUDA device here")
def test_cpu_and_gpu_partitions_equal_the_cpu_run(graph):
    rng = np.random.default_rng(0)
    value = rng.standard_normal((32, 16)).astype(np.float32)
    x = tw.placeholder(tw.float32, [32, 16], name="x")
    with tw.device("/gpu:0"):
        h = tw.nn.relu(tw.matmul(x, tw.constant(np.eye(16, dtype=np.float32))) + 1.0)
    with tw.device("/cpu:0"):
        y = tw.reduce_sum(h * 2.0, axis=1)
    with tw.Session() as sess:
        got = sess.run(y, {x: value})
        assert len(_step(sess).partitions.graphs) == 2
    np.testing.assert_allclose(got, (np.maximum(value + 1.0, 0) * 2).sum(axis=1), rtol=1e-5)


def test_colocated_gradients_run_where_their_forward_ops_do(graph):
    x = tw.placeholder(tw.float32, [4, 3], name="x")
    with tw.device("/cpu:0"):
        w1 = tw.Variable(np.full((3, 5), 0.1, np.float32), name="w1")
        h = tw.tanh(tw.matmul(x, w1), name="h")
    with tw.device("/cpu:1"):
        w2 = tw.Variable(np.full((5, 2), 0.2, np.float32), name="w2")
        loss = tw.reduce_sum(tw.matmul(h, w2), name="loss")
    grads = tw.gradients(loss, [w1, w2], colocate_gradients_with_ops=True)
    plain = tw.gradients(loss, [w1, w2])
    assert grads[0].op.device == "/device:CPU:0" and grads[1].op.device == "/device:CPU:1"
    assert plain[0].op.device == "" and plain[1].op.device == ""
    feed = {x: np.arange(12, dtype=np.float32).reshape(4, 3) / 10}
    with tw.Session(config=_config(2)) as sess:
        sess.run(tw.global_variables_initializer())
        colocated, uncolocated = sess.run([grads, plain], feed)
    for a, b in zip(colocated, uncolocated):
        np.testing.assert_array_equal(a, b)
