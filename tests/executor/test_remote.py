"""Remote tasks on a local Ray instance (loopback): partitions on worker processes give the
in-process results bitwise, variables persist on their task, errors and dead workers are
reported in bounded time, and the session goes on."""

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

import tensorweave as tw

ray = pytest.importorskip("ray", reason="the remote tests need the 'distributed' extra (Ray)")

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
sys.path.insert(0, os.path.abspath(EXAMPLES))


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local Ray instance for these tests (a Session with a 'local:' target starts it;
    it is shut down at the end)."""
    yield
    if ray.is_initialized():
        ray.shutdown()


def _two_layer_model(remote: bool, seed=3):
    g = tw.Graph()
    with g.as_default():
        tw.set_random_seed(seed)
        x = tw.placeholder(tw.float32, [None, 8], name="x")
        labels = tw.placeholder(tw.int64, [None], name="labels")
        first = "/job:worker/task:0" if remote else "/cpu:0"
        second = "/job:worker/task:1" if remote else "/cpu:0"
        with tw.device(first):
            w1 = tw.Variable(tw.random_normal([8, 16], stddev=0.3), name="w1")
            h = tw.nn.relu(tw.matmul(x, w1))
        with tw.device(second):
            w2 = tw.Variable(tw.random_normal([16, 3], stddev=0.3), name="w2")
            logits = tw.matmul(h, w2)
            loss = tw.reduce_mean(tw.nn.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=logits))
        train = tw.train.MomentumOptimizer(0.1, 0.9).minimize(loss)
    return g, x, labels, loss, train, [w1, w2]


def _mlp_model(sizes, stddevs):
    """A ``replicate`` model_fn: a relu layer and a linear one (``sizes`` = inputs, hidden,
    classes), its loss the mean sparse softmax cross-entropy."""
    def model(x, y):
        w1 = tw.get_variable("w1", sizes[:2],
                             initializer=tw.random_normal_initializer(stddev=stddevs[0], seed=1))
        w2 = tw.get_variable("w2", sizes[1:],
                             initializer=tw.random_normal_initializer(stddev=stddevs[1], seed=2))
        logits = tw.matmul(tw.nn.relu(tw.matmul(x, w1)), w2)
        return tw.reduce_mean(tw.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=logits))
    return model


def _train_replicated(model, xs, ys, devices, optimizer, target="", config=None):
    """``replicate(model)`` on ``devices`` trained on each batch of ``xs``/``ys``: every
    replica's variables."""
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [None, xs.shape[-1]])
        y = tw.placeholder(tw.int64, [None])
        rep = tw.train.replicate(model, [x, y], devices, optimizer)
        with tw.Session(target, config=config) as sess:
            sess.run(tw.global_variables_initializer())
            for bx, by in zip(xs, ys):
                sess.run(rep.train_op, {x: bx, y: by})
            return sess.run(rep.variables)


def _batches(n=5):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 32, 8)).astype(np.float32), rng.integers(0, 3, (n, 32))


def test_training_on_two_worker_tasks_equals_one_process_bitwise():
    xs, ys = _batches()
    finals, losses = [], []
    for target in ("", "local:2"):
        g, x, labels, loss, train, weights = _two_layer_model(remote=bool(target))
        with tw.Session(target, graph=g) as sess:
            sess.run(tw.global_variables_initializer())
            step_losses = [sess.run([train, loss], {x: bx, labels: by})[1]
                           for bx, by in zip(xs, ys)]
            finals.append(sess.run(weights))
            losses.append(step_losses)
            if target:
                tasks = sess.remote_tasks
                assert set(tasks) == {"/job:worker/task:0", "/job:worker/task:1"}
                assert len({info["pid"] for info in tasks.values()} | {os.getpid()}) == 3
    assert losses[0] == losses[1]
    for a, b in zip(*finals):
        np.testing.assert_array_equal(a, b)


def test_feeds_and_fetches_travel_only_to_the_tasks_that_use_them():
    g = tw.Graph()
    with g.as_default():
        a = tw.placeholder(tw.float32, [3], name="a")
        b = tw.placeholder(tw.float32, [3], name="b")
        with tw.device("/job:worker/task:0"):
            ya = tw.multiply(a, 2.0, name="ya")
        with tw.device("/job:worker/task:1"):
            yb = tw.add(b, 1.0, name="yb")
    with tw.Session("local:2", graph=g) as sess:
        got = sess.run([ya, yb], {a: [1.0, 2.0, 3.0], b: [0.0, 0.0, 1.0]})
        step, = sess._compiled_steps()
        program = step.program
        summary = sess.step_plan([ya, yb], {a: [1.0, 2.0, 3.0], b: [0.0, 0.0, 1.0]}).summary()
    assert "Tasks (Ray actors):" in summary and "/job:worker/task:1  on host" in summary
    np.testing.assert_array_equal(got[0], [2.0, 4.0, 6.0])
    np.testing.assert_array_equal(got[1], [1.0, 1.0, 2.0])
    by_task = {t[2]: (program.feed_indices[t], program.fetch_indices[t])
               for t in program.payloads}
    assert by_task == {0: ([0], [0]), 1: ([1], [1])}


def test_large_and_small_feeds_and_fetches_of_one_step_arrive_whole():
    """Small values travel packed inside a step's call, arrays over PACK_LIMIT_BYTES as Ray
    values of their own (one read by both tasks is put into the object store once); a step
    with both on each side gets every one back exactly."""
    from tensorweave.executor.remote import PACK_LIMIT_BYTES
    big_n = PACK_LIMIT_BYTES // 4 + 100     # float32 elements: just over the limit
    g = tw.Graph()
    with g.as_default():
        small = tw.placeholder(tw.float32, [3], name="small")
        big = tw.placeholder(tw.float32, [big_n], name="big")
        with tw.device("/job:worker/task:0"):
            doubled = tw.multiply(big, 2.0, name="doubled")
            shifted = tw.add(small, 1.0, name="shifted")
        with tw.device("/job:worker/task:1"):
            total = tw.reduce_sum(doubled, name="total")
            negated = tw.negative(doubled, name="negated")
            tripled = tw.multiply(big, 3.0, name="tripled")
    rng = np.random.default_rng(0)
    big_value = rng.standard_normal(big_n).astype(np.float32)
    with tw.Session("local:2", graph=g) as sess:
        got = sess.run([shifted, doubled, total, negated, tripled],
                       {small: [1.0, 2.0, 3.0], big: big_value})
    np.testing.assert_array_equal(got[0], [2.0, 3.0, 4.0])
    np.testing.assert_array_equal(got[1], big_value * 2.0)
    np.testing.assert_allclose(got[2], np.sum(big_value * 2.0), rtol=1e-5)
    np.testing.assert_array_equal(got[3], -(big_value * 2.0))
    np.testing.assert_array_equal(got[4], big_value * np.float32(3.0))


def test_large_values_between_tasks_of_one_node_go_through_reused_shared_memory():
    """Each step's value crosses in the same segment of the sender's; every one arrives
    exactly, and closing the session unlinks the segments."""
    from tensorweave.executor.shared_channels import MIN_SHARED_BYTES
    n = MIN_SHARED_BYTES // 4 * 3
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [n], name="x")
        with tw.device("/job:worker/task:0"):
            sent = tw.multiply(x, 2.0, name="sent")
        with tw.device("/job:worker/task:1"):
            received = tw.negative(sent, name="received")
    rng = np.random.default_rng(1)
    sess = tw.Session("local:2", graph=g)
    try:
        sender_pid = sess._remote.pids()[("worker", 0, 0)]
        for _ in range(3):
            value = rng.standard_normal(n).astype(np.float32)
            np.testing.assert_array_equal(sess.run(received, {x: value}), -(value * 2.0))
        segments = [f for f in os.listdir("/dev/shm") if f.startswith(f"tw{sender_pid}_")]
        assert len(segments) == 1
    finally:
        sess.close()
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(f"tw{sender_pid}_")]


def test_the_client_calls_tasks_of_its_node_over_links_and_falls_back_to_ray():
    """A step call to a task of the client's node goes over the task's socket, a large feed
    through one reused segment of the client's per task; a broken link sends that call
    through Ray, and the next step connects again."""
    from tensorweave.executor.shared_channels import MIN_SHARED_BYTES
    n = MIN_SHARED_BYTES // 4 * 2
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [n], name="x")
        with tw.device("/job:worker/task:0"):
            a = tw.reduce_sum(x * 2.0)
        with tw.device("/job:worker/task:1"):
            b = tw.reduce_max(-x)
    rng = np.random.default_rng(2)
    sess = tw.Session("local:2", graph=g)
    client_segments = f"tw{os.getpid()}_"
    try:
        links = sess._remote.client_links
        for step in range(4):
            value = rng.standard_normal(n).astype(np.float32)
            if step == 2:  # break both links: these calls go through Ray
                for link in list(links.links.values()):
                    link._sock.close()
            got = sess.run([a, b], {x: value})
            assert np.isclose(got[0], np.sum(value * 2.0), rtol=1e-5)
            assert got[1] == np.max(-value)
            expected = {("worker", 0, 0), ("worker", 0, 1)} if step != 2 else set()
            assert set(links.links) == expected
        mine = [f for f in os.listdir("/dev/shm") if f.startswith(client_segments)]
        assert len(mine) == 2  # one per task, reused by every step
    finally:
        sess.close()
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(client_segments)]


def test_variables_persist_on_their_task_and_saver_round_trips(tmp_path):
    g = tw.Graph()
    with g.as_default():
        with tw.device("/job:worker/task:1"):
            v = tw.Variable([1.0, 2.0], name="v")
            bump = tw.assign_add(v, [1.0, 1.0])
        saver = tw.train.Saver()
    with tw.Session("local:2", graph=g) as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(bump)
        sess.run(bump)
        np.testing.assert_array_equal(sess.run(v), [3.0, 4.0])
        path = saver.save(sess, str(tmp_path / "model"))
        sess.run(bump)
        saver.restore(sess, path)
        np.testing.assert_array_equal(sess.run(v), [3.0, 4.0])


def test_an_error_on_a_task_names_the_op_and_changes_no_variable():
    g = tw.Graph()
    with g.as_default():
        n = tw.placeholder(tw.int32, [], name="n")
        with tw.device("/job:worker/task:0"):
            v = tw.Variable([10.0, 20.0], name="v")
            bump = tw.assign_add(v, [1.0, 1.0])
        with tw.device("/job:worker/task:1"), tw.control_dependencies([bump]):
            bad = tw.reshape(tw.range(n), [2, 2], name="bad")
    with tw.Session("local:2", graph=g) as sess:
        sess.run(tw.global_variables_initializer())
        with pytest.raises(tw.errors.InvalidArgumentError) as info:
            sess.run(bad, {n: 3})
        message = str(info.value)
        assert "'bad' (Reshape on /job:worker/replica:0/task:1/device:CPU:0)" in message
        assert "test_remote.py:" in message
        assert info.value.op is g.get_operation_by_name("bad")
        np.testing.assert_array_equal(sess.run(v), [10.0, 20.0])
        np.testing.assert_array_equal(sess.run(bad, {n: 4}), [[0, 1], [2, 3]])
        np.testing.assert_array_equal(sess.run(v), [11.0, 21.0])


def test_a_failing_sender_wakes_the_task_waiting_for_its_value():
    """The failing task aborts the step on the others itself: the receiver on task 1 does
    not sit out its deadline, and the error is the sender's, not the receiver's
    cancellation."""
    g = tw.Graph()
    with g.as_default():
        n = tw.placeholder(tw.int32, [], name="n")
        with tw.device("/job:worker/task:0"):
            bad = tw.reshape(tw.range(n), [2, 2], name="bad")
        with tw.device("/job:worker/task:1"):
            total = tw.reduce_sum(bad, name="total")
    config = tw.ConfigProto(operation_timeout_in_ms=60_000)
    with tw.Session("local:2", graph=g, config=config) as sess:
        assert sess.run(total, {n: 4}) == 6
        started = time.monotonic()
        with pytest.raises(tw.errors.InvalidArgumentError) as info:
            sess.run(total, {n: 3})
        assert time.monotonic() - started < 10  # the deadline is 60 s
        assert "'bad' (Reshape on /job:worker/replica:0/task:0/device:CPU:0)" in str(info.value)
        assert sess.run(total, {n: 4}) == 6


def test_a_dead_worker_makes_the_step_unavailable_in_bounded_time_and_the_session_recovers():
    g = tw.Graph()
    with g.as_default():
        with tw.device("/job:worker/task:0"):
            m = tw.Variable(np.eye(1500, dtype=np.float32) * 0.5, name="m")
            slow = m
            for _ in range(12):
                slow = tw.matmul(slow, m)
        with tw.device("/job:worker/task:1"):
            y = tw.reduce_sum(slow, name="y")
    config = tw.ConfigProto(operation_timeout_in_ms=20_000)
    with tw.Session("local:2", graph=g, config=config) as sess:
        sess.run(tw.global_variables_initializer())
        pid = sess.remote_tasks["/job:worker/task:0"]["pid"]
        killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
        started = time.monotonic()
        killer.start()
        with pytest.raises(tw.errors.UnavailableError) as info:
            sess.run(y)
        waited = time.monotonic() - started
        killer.join()
        assert "/job:worker/task:0" in str(info.value)
        assert waited < 20  # well within the receive deadline
        # Ray restarted the actor: the step is registered again, its variable must be
        # initialized again (or restored from a checkpoint).
        with pytest.raises(tw.errors.FailedPreconditionError):
            sess.run(y)
        sess.run(m.initializer)
        assert sess.remote_tasks["/job:worker/task:0"]["pid"] != pid
        assert np.isclose(sess.run(y), 1500 * 0.5 ** 13)


def test_a_task_rejects_values_from_an_earlier_incarnation():
    from tensorweave.executor.remote import TaskWorker
    worker = TaskWorker(("worker", 0, 1))
    sender = ("worker", 0, 0)
    worker.set_peers({}, {sender: 0x2A, worker.task: worker.incarnation})
    src = "/job:worker/replica:0/task:0/device:CPU:0"
    dst = "/job:worker/replica:0/task:1/device:CPU:0"
    assert not worker.deliver(f"{src};29;{dst};x:0;7", np.zeros(2))  # old incarnation 0x29
    assert worker.deliver(f"{src};2a;{dst};x:0;7", np.ones(2))


def test_a_product_sent_to_a_neighbour_is_written_into_its_segment_only_when_safe():
    from tensorweave.executor.remote import TaskWorker
    from tensorweave.ops import registry
    from tensorweave.ops.registry import apply_op
    from tensorweave.ops.transfer import key_prefix
    worker = TaskWorker(("worker", 0, 0))
    worker.neighbours = {("worker", 0, 1)}
    g = tw.Graph()
    with g.as_default():
        a = tw.placeholder(tw.float32, [256, 300])
        b = tw.placeholder(tw.float32, [300, 512])
        sent, kept = tw.matmul(a, b), tw.matmul(a, b, name="also_fetched")
        for product in (sent, kept):
            apply_op("_Send", [product], {
                "tensor_name": product.name, "send_device_incarnation": 1,
                "send_device": "/job:worker/replica:0/task:0/device:CPU:0",
                "recv_device": "/job:worker/replica:0/task:1/device:CPU:0"})
        tw.identity(kept)  # read by another op: it may outlive the step
    wrap = worker._products_sent_in_place(g)
    kernel = registry.get("MatMul").kernel(sent.op.attrs, np)
    assert wrap(kept.op, kernel) is kernel
    rng = np.random.default_rng(0)
    x, y = rng.random((256, 300), np.float32), rng.random((300, 512), np.float32)
    product = wrap(sent.op, kernel)(x, y)
    np.testing.assert_array_equal(product, x @ y)
    send = next(op for op in g.get_operations() if op.type == "_Send")
    name, _, _ = worker.outbox.put(key_prefix(send.attrs), product)
    assert product.ctypes.data == worker.outbox._edges[key_prefix(send.attrs)][0].data_address
    assert name == worker.outbox._edges[key_prefix(send.attrs)][0].name
    worker.close_channels()


def test_large_allreduce_gradients_written_in_place_train_as_in_one_process():
    """A weight gradient of 600 KB: each worker's product goes straight into its shared
    segment, rewritten every step, and its Adam adds both replicas' gradients itself
    (fuse_updates); the workers' copies stay bitwise equal and agree with two virtual CPUs in
    one process to float rounding (kernels may split their sums differently there)."""
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((4, 64, 600)).astype(np.float32)
    ys = rng.integers(0, 10, (4, 64))

    model = _mlp_model([600, 256, 10], stddevs=(0.05, 0.1))

    adam = lambda: tw.train.AdamOptimizer(0.01)  # noqa: E731
    in_process = _train_replicated(model, xs, ys, ["/cpu:0", "/cpu:1"], adam,
                                   config=tw.ConfigProto(device_count={"CPU": 2}))
    on_ray = _train_replicated(model, xs, ys, ["/job:worker/task:0", "/job:worker/task:1"],
                               adam, target="local:2")
    for a, b in zip(on_ray[0], on_ray[1]):
        assert a.tobytes() == b.tobytes()
    for a, b in zip(in_process[0], on_ray[0]):
        # Adam's step is +-lr wherever a gradient is near zero: rounding moves it that far
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_seed_programs_on_two_worker_tasks_match_one_process(tmp_path):
    import mnist_deep
    import mnist_softmax
    data = ["--data-dir", str(tmp_path)]
    assert (mnist_softmax.main(data + ["--steps", "100"]) ==
            mnist_softmax.main(data + ["--steps", "100", "--target", "local:2"]))
    deep = data + ["--steps", "5", "--batch-size", "20"]
    assert mnist_deep.main(deep) == mnist_deep.main(deep + ["--target", "local:2"])


def test_monitored_training_survives_a_killed_worker(tmp_path, caplog):
    """Kill task 0's process mid-run: the run finishes from the last checkpoint with the same
    weights as an uninterrupted run, and the recovery is logged with its step numbers."""
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((40, 16, 8)).astype(np.float32)
    ys = rng.integers(0, 3, (40, 16))

    def train(target, checkpoint_dir, kill_at=None):
        g, x, labels, loss, _, weights = _two_layer_model(remote=bool(target))
        with g.as_default():
            step = tw.train.get_or_create_global_step()
            train_op = tw.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)

        class FeedByStep(tw.train.SessionRunHook):
            def before_run(self, run_context):
                n = int(tw.train.global_step(run_context.session, step))
                return tw.train.SessionRunArgs(None, {x: xs[n], labels: ys[n]})

        class KillWorker(tw.train.SessionRunHook):
            done = False

            def after_run(self, run_context, run_values):
                n = int(tw.train.global_step(run_context.session, step))
                if kill_at is not None and n == kill_at and not self.done:
                    self.done = True
                    pid = run_context.session.remote_tasks["/job:worker/task:0"]["pid"]
                    os.kill(pid, signal.SIGKILL)

        hooks = [FeedByStep(), KillWorker(), tw.train.StopAtStepHook(last_step=30)]
        with g.as_default():
            with tw.train.MonitoredTrainingSession(
                    master=target, checkpoint_dir=str(checkpoint_dir),
                    save_checkpoint_steps=5, hooks=hooks) as sess:
                while not sess.should_stop():
                    sess.run(train_op)
                recoveries = list(sess.recoveries)
        with g.as_default(), tw.Session() as check:
            tw.train.Saver().restore(check, tw.train.latest_checkpoint(str(checkpoint_dir)))
            return check.run(weights + [step]), recoveries

    with caplog.at_level("WARNING", logger="tensorweave.train"):
        killed, recoveries = train("local:2", tmp_path / "killed", kill_at=12)
    reference, none = train("", tmp_path / "reference")
    assert none == [] and len(recoveries) == 1
    failed_at, restored = recoveries[0]
    assert restored == 10 and failed_at in (11, 12, 13)  # the kill lands during step 12
    assert (f"restored checkpoint of step 10 after failure at step {failed_at}"
            in caplog.text)
    assert killed[-1] == reference[-1] == 30
    for a, b in zip(killed, reference):
        np.testing.assert_array_equal(a, b)


def test_allreduce_replicas_on_two_ray_workers_equal_one_replica():
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((4, 32, 10)).astype(np.float32)
    ys = np.argmax(xs[..., :3], axis=-1)

    model = _mlp_model([10, 16, 3], stddevs=(0.3, 0.3))

    momentum = lambda: tw.train.MomentumOptimizer(0.1, 0.9)  # noqa: E731
    one = _train_replicated(model, xs, ys, ["/cpu:0"], momentum)
    two = _train_replicated(model, xs, ys, ["/job:worker/task:0", "/job:worker/task:1"],
                            momentum, target="local:2")
    for a, b in zip(one[0], two[0]):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for a, b in zip(two[0], two[1]):  # the two workers' copies stay bitwise equal
        assert a.tobytes() == b.tobytes()
