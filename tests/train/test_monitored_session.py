"""MonitoredTrainingSession: init or restore on start, periodic checkpoints, hooks, and recovery
from lost workers (simulated by a py_func that raises UnavailableError once)."""

import logging
import os

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.train import hooks as hooks_module

BATCHES = 6
BATCH = 8


def _data():
    rng = np.random.default_rng(7)
    xs = rng.standard_normal((BATCHES, BATCH, 5)).astype(np.float32)
    labels = rng.integers(0, 3, (BATCHES, BATCH)).astype(np.int64)
    return xs, labels


class Model:
    """A two-layer softmax classifier trained with Adam (slots to checkpoint too), no dropout,
    whose step runs ``fault(global_step)`` first: the failure-injection point."""

    def __init__(self, fault=None):
        tw.set_random_seed(1234)
        self.global_step = tw.train.get_or_create_global_step()
        self.x = tw.placeholder(tw.float32, [None, 5], name="x")
        self.labels = tw.placeholder(tw.int64, [None], name="labels")
        self.w1 = tw.Variable(tw.random_normal([5, 4], stddev=0.5), name="w1")
        self.w2 = tw.Variable(tw.random_normal([4, 3], stddev=0.5), name="w2")
        logits = tw.matmul(tw.tanh(tw.matmul(self.x, self.w1)), self.w2)
        self.loss = tw.reduce_mean(tw.nn.sparse_softmax_cross_entropy_with_logits(
            labels=self.labels, logits=logits))
        checks = []
        if fault is not None:
            checks.append(tw.py_func(fault, [self.global_step], tw.int64, name="fault"))
        with tw.control_dependencies(checks):
            self.train_op = tw.train.AdamOptimizer(0.05).minimize(
                self.loss, global_step=self.global_step)
        self.data = _data()

    def feed(self, step):
        xs, labels = self.data
        return {self.x: xs[step % BATCHES], self.labels: labels[step % BATCHES]}

    def weights(self):
        return [self.w1, self.w2]


class FeedByStep(tw.train.SessionRunHook):
    """Feeds the batch of the current global step: a replayed step sees its own batch."""

    def __init__(self, model):
        self.model = model

    def before_run(self, run_context):
        step = tw.train.global_step(run_context.session, self.model.global_step)
        return tw.train.SessionRunArgs(None, self.model.feed(step))


def fail_once_at(step, error_class=tw.errors.UnavailableError):
    """A py_func body that raises ``error_class`` the first time the global step is ``step``."""
    state = {"raised": False}

    def fault(global_step):
        if int(global_step) == step and not state["raised"]:
            state["raised"] = True
            raise error_class(None, None, "worker died")
        return np.int64(0)
    return fault


def fail_always_from(step, error_class=tw.errors.UnavailableError):
    def fault(global_step):
        if int(global_step) >= step:
            raise error_class(None, None, "worker died")
        return np.int64(0)
    return fault


def train(checkpoint_dir, last_step, fault=None, save_steps=5, **kwargs):
    """Train a fresh Model to ``last_step``; return (final weights, the monitored session)."""
    with tw.Graph().as_default():
        model = Model(fault)
        hooks = [tw.train.StopAtStepHook(last_step=last_step), FeedByStep(model)]
        with tw.train.MonitoredTrainingSession(
                checkpoint_dir=checkpoint_dir, save_checkpoint_steps=save_steps, hooks=hooks,
                log_step_count_steps=None, **kwargs) as sess:
            while not sess.should_stop():
                sess.run(model.train_op)
            weights = sess.run(model.weights())
            assert sess.run(model.global_step) == last_step
        return weights, sess


def assert_bitwise_equal(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert g.tobytes() == w.tobytes()


def checkpoint_steps(checkpoint_dir):
    state = tw.train.get_checkpoint_state(str(checkpoint_dir))
    return [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths]


# -- start: init or restore -----------------------------------------------------------------------
def test_a_new_run_initializes_and_a_second_run_restores(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    with tw.Graph().as_default():
        model = Model()
        with tw.Session() as plain:
            plain.run(tw.global_variables_initializer())
            initial = plain.run(model.weights())
        with tw.train.MonitoredTrainingSession(checkpoint_dir=ckpt,
                                               save_checkpoint_steps=100) as sess:
            assert sess.run(model.global_step) == 0
            assert_bitwise_equal(sess.run(model.weights()), initial)
            for step in range(7):
                sess.run(model.train_op, feed_dict=model.feed(step))
            trained = sess.run(model.weights())
    assert tw.train.latest_checkpoint(ckpt).endswith("model.ckpt-7")  # the save at the end

    with tw.Graph().as_default():
        model = Model()
        with tw.train.MonitoredTrainingSession(checkpoint_dir=ckpt,
                                               save_checkpoint_steps=100) as sess:
            assert sess.run(model.global_step) == 7
            assert_bitwise_equal(sess.run(model.weights()), trained)


def test_scaffold_init_fn_and_saver_are_used(tmp_path):
    with tw.Graph().as_default():
        model = Model()
        calls = []
        saver = tw.train.Saver(max_to_keep=1)
        scaffold = tw.train.Scaffold(init_fn=lambda scaffold, session: calls.append(session),
                                     saver=saver)
        with tw.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path), scaffold=scaffold,
                                               save_checkpoint_steps=2) as sess:
            for step in range(5):
                sess.run(model.train_op, feed_dict=model.feed(step))
        assert len(calls) == 1
        assert checkpoint_steps(tmp_path) == [5]  # max_to_keep=1: the scaffold's Saver saved


def test_the_graph_is_finalized():
    with tw.Graph().as_default() as graph:
        Model()
        with tw.train.MonitoredTrainingSession():
            assert graph.finalized
            with pytest.raises(RuntimeError, match="finalized"):
                tw.constant(1.0)


def test_the_global_step_is_created_when_missing():
    with tw.Graph().as_default():
        v = tw.Variable(1.0, name="v")
        with tw.train.MonitoredTrainingSession() as sess:
            assert sess.run(v) == 1.0
            assert sess.run(tw.train.get_global_step()) == 0


# -- checkpoints ----------------------------------------------------------------------------------
def test_checkpoints_every_n_steps_are_numbered_by_the_global_step(tmp_path):
    train(str(tmp_path), last_step=10, save_steps=3)
    assert checkpoint_steps(tmp_path) == [0, 3, 6, 9, 10]
    for step in (0, 3, 6, 9, 10):
        assert tw.train.checkpoint_exists(str(tmp_path / f"model.ckpt-{step}"))
    assert tw.train.load_variable(str(tmp_path), "global_step") == 10


def test_checkpoints_every_n_seconds(tmp_path, monkeypatch):
    clock = {"now": 1000.0}
    monkeypatch.setattr(hooks_module, "_clock", lambda: clock["now"])
    with tw.Graph().as_default():
        model = Model()
        with tw.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path),
                                               save_checkpoint_secs=60) as sess:
            for step in range(6):
                clock["now"] += 25.0  # a save is due every third step
                sess.run(model.train_op, feed_dict=model.feed(step))
    assert checkpoint_steps(tmp_path) == [0, 3, 6]


def test_no_checkpoint_dir_means_no_saving(tmp_path):
    train(None, last_step=3)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("secs, steps, saves", [
    (None, None, False),   # both None: no saver hook
    (None, 4, True),
])
def test_checkpoint_schedule_arguments(tmp_path, secs, steps, saves):
    with tw.Graph().as_default():
        model = Model()
        with tw.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path),
                                               save_checkpoint_secs=secs,
                                               save_checkpoint_steps=steps) as sess:
            sess.run(model.train_op, feed_dict=model.feed(0))
    assert (tw.train.latest_checkpoint(str(tmp_path)) is not None) == saves


def test_both_checkpoint_schedules_is_an_error(tmp_path):
    with tw.Graph().as_default():
        Model()
        with pytest.raises(ValueError, match="not both"):
            tw.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path),
                                              save_checkpoint_secs=10, save_checkpoint_steps=10)


# -- StopAtStepHook -------------------------------------------------------------------------------
def test_stop_at_step_num_steps_counts_from_the_restored_step(tmp_path):
    train(str(tmp_path), last_step=4)
    with tw.Graph().as_default():
        model = Model()
        runs = 0
        with tw.train.MonitoredTrainingSession(
                checkpoint_dir=str(tmp_path),
                hooks=[tw.train.StopAtStepHook(num_steps=3), FeedByStep(model)]) as sess:
            while not sess.should_stop():
                sess.run(model.train_op)
                runs += 1
            assert sess.run(model.global_step) == 7
    assert runs == 3


def test_stop_at_step_already_reached_stops_before_the_first_run(tmp_path):
    train(str(tmp_path), last_step=4)
    with tw.Graph().as_default():
        Model()
        with tw.train.MonitoredTrainingSession(
                checkpoint_dir=str(tmp_path),
                hooks=[tw.train.StopAtStepHook(last_step=4)]) as sess:
            assert sess.should_stop()


@pytest.mark.parametrize("kwargs, message", [
    ({}, "one of num_steps or last_step"),
    ({"num_steps": 1, "last_step": 2}, "only one"),
    ({"num_steps": -1}, ">= 0"),
])
def test_stop_at_step_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tw.train.StopAtStepHook(**kwargs)


# -- hooks ----------------------------------------------------------------------------------------
class Recorder(tw.train.SessionRunHook):
    """Records every call, fetches the loss, and asks to stop after ``stop_after`` runs."""

    def __init__(self, model, log, stop_after=None):
        self.model = model
        self.log = log
        self.stop_after = stop_after
        self.runs = 0
        self.losses = []

    def begin(self):
        self.log.append("begin")

    def after_create_session(self, session, coord):
        self.log.append("after_create_session")

    def before_run(self, run_context):
        self.log.append("before_run")
        assert run_context.original_args.fetches is self.model.train_op
        return tw.train.SessionRunArgs({"loss": self.model.loss})

    def after_run(self, run_context, run_values):
        self.log.append("after_run")
        self.losses.append(run_values.results["loss"])
        self.runs += 1
        if self.runs == self.stop_after:
            run_context.request_stop()

    def end(self, session):
        self.log.append("end")


def test_hooks_are_called_in_order_with_their_fetches_and_can_stop_the_loop():
    log = []
    with tw.Graph().as_default():
        model = Model()
        first = Recorder(model, log, stop_after=3)
        second = Recorder(model, [])
        with tw.train.MonitoredSession(hooks=[first, second]) as sess:
            while not sess.should_stop():
                result = sess.run(model.train_op, feed_dict=model.feed(0))
            assert isinstance(result, np.ndarray)  # the caller's result alone
        assert sess.should_stop() and sess.closed
    assert log == (["begin", "after_create_session"] + ["before_run", "after_run"] * 3
                   + ["end"])
    assert second.runs == 3
    assert all(np.isfinite(loss) for loss in first.losses)


def test_hooks_feeds_are_merged_and_a_double_feed_is_an_error():
    with tw.Graph().as_default():
        model = Model()
        feeder = tw.train.FeedFnHook(lambda: {model.x: model.feed(0)[model.x]})
        with tw.train.MonitoredSession(hooks=[feeder]) as sess:
            sess.run(model.train_op, feed_dict={model.labels: model.feed(0)[model.labels]})
            with pytest.raises(RuntimeError, match="fed by a SessionRunHook"):
                sess.run(model.train_op, feed_dict=model.feed(0))


def test_logging_and_step_counter_hooks_log(caplog, monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(hooks_module, "_clock", lambda: clock["now"])
    caplog.set_level(logging.INFO, logger="tensorweave.train")
    with tw.Graph().as_default():
        model = Model()
        hooks = [tw.train.LoggingTensorHook({"loss": model.loss}, every_n_iter=2),
                 tw.train.LoggingTensorHook([model.global_step], at_end=True),
                 FeedByStep(model)]
        with tw.train.MonitoredTrainingSession(hooks=hooks, log_step_count_steps=2) as sess:
            for _ in range(4):
                clock["now"] += 0.5
                sess.run(model.train_op)
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("loss = ") for m in messages) == 2   # runs 0 and 2
    assert messages[-1] == "global_step:0 = 4"
    assert "global_step/sec: 2 (global step 2)" in messages


def test_out_of_range_ends_the_loop_cleanly(tmp_path):
    with tw.Graph().as_default():
        model = Model()
        with tw.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path),
                                               save_checkpoint_steps=100) as sess:
            sess.run(model.train_op, feed_dict=model.feed(0))
            raise tw.errors.OutOfRangeError(None, None, "end of input")
    assert sess.closed
    assert checkpoint_steps(tmp_path) == [0, 1]  # the end hook still saved


def test_an_error_in_the_loop_skips_the_end_hooks(tmp_path):
    with tw.Graph().as_default():
        model = Model()
        with pytest.raises(ZeroDivisionError):
            with tw.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path),
                                                   save_checkpoint_steps=100) as sess:
                sess.run(model.train_op, feed_dict=model.feed(0))
                1 / 0
    assert checkpoint_steps(tmp_path) == [0]
    with pytest.raises(RuntimeError, match="closed"):
        sess.run(model.train_op, feed_dict=model.feed(0))


# -- recovery -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fail_at", [13, 15])   # between two checkpoints, and right on one
def test_recovery_finishes_with_the_weights_of_an_uninterrupted_run(tmp_path, caplog, fail_at):
    caplog.set_level(logging.INFO, logger="tensorweave.train")
    expected, plain = train(str(tmp_path / "plain"), last_step=23, fault=fail_once_at(None))
    assert plain.recoveries == []

    got, sess = train(str(tmp_path / "faulty"), last_step=23, fault=fail_once_at(fail_at))

    restored = (fail_at // 5) * 5
    assert sess.recoveries == [(fail_at, restored)]
    assert_bitwise_equal(got, expected)
    assert checkpoint_steps(tmp_path / "faulty") == checkpoint_steps(tmp_path / "plain")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].name == "tensorweave.train"
    assert f"UnavailableError at global step {fail_at}" in warnings[0].getMessage()
    assert "worker died" in warnings[0].getMessage()
    assert warnings[1].getMessage().startswith(
        f"recovered: restored checkpoint of step {restored} after failure at step {fail_at}")


def test_aborted_error_is_recovered_too(tmp_path):
    expected, _ = train(str(tmp_path / "plain"), last_step=9)
    got, sess = train(str(tmp_path / "faulty"), last_step=9,
                      fault=fail_once_at(7, tw.errors.AbortedError))
    assert sess.recoveries == [(7, 5)]
    assert_bitwise_equal(got, expected)


def test_recovery_makes_a_new_session_through_the_factory_and_closes_the_broken_one(tmp_path):
    sessions = []

    class ClosingFails(tw.Session):
        def close(self):
            super().close()
            raise tw.errors.UnavailableError(None, None, "cannot reach the worker to close")

    def factory():
        sessions.append(ClosingFails())
        return sessions[-1]

    log = []
    with tw.Graph().as_default():
        model = Model(fail_once_at(3))
        recorder = Recorder(model, log)
        with pytest.raises(tw.errors.UnavailableError, match="close"):  # the clean close
            with tw.train.MonitoredTrainingSession(
                    checkpoint_dir=str(tmp_path), save_checkpoint_steps=2,
                    session_factory=factory,
                    hooks=[tw.train.StopAtStepHook(last_step=5), FeedByStep(model),
                           recorder]) as sess:
                while not sess.should_stop():
                    sess.run(model.train_op)
    assert len(sessions) == 2 and all(s.closed for s in sessions)
    assert sess.recoveries == [(3, 2)]
    # The failed run got no after_run; the replay ran before_run again on the new session.
    assert log == (["begin", "after_create_session"] + ["before_run", "after_run"] * 3
                   + ["before_run", "after_create_session"]
                   + ["before_run", "after_run"] * 3 + ["end"])


def test_without_a_checkpoint_recovery_starts_from_the_initial_values(caplog):
    caplog.set_level(logging.WARNING, logger="tensorweave.train")
    expected, _ = train(None, last_step=6)
    got, sess = train(None, last_step=6, fault=fail_once_at(4))
    assert sess.recoveries == [(4, 0)]
    assert_bitwise_equal(got, expected)
    assert "no checkpoint to restore" in caplog.records[-1].getMessage()


def test_failures_beyond_max_recoveries_are_raised(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="tensorweave.train")
    with pytest.raises(tw.errors.UnavailableError, match="worker died"):
        train(str(tmp_path), last_step=10, fault=fail_always_from(7), max_recoveries=2)
    recovered = [r for r in caplog.records if r.getMessage().startswith("recovered:")]
    assert len(recovered) == 2
    assert "giving up" in caplog.records[-1].getMessage()
    assert checkpoint_steps(tmp_path) == [0, 5]  # no checkpoint of the broken state


def test_max_recoveries_zero_raises_at_once(tmp_path):
    with pytest.raises(tw.errors.UnavailableError):
        train(str(tmp_path), last_step=10, fault=fail_once_at(2), max_recoveries=0)


@pytest.mark.parametrize("error_class", [tw.errors.InvalidArgumentError,
                                         tw.errors.DataLossError])
def test_other_errors_propagate_unchanged(tmp_path, error_class, caplog):
    with pytest.raises(error_class, match="worker died"):
        train(str(tmp_path), last_step=10, fault=fail_once_at(3, error_class))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert checkpoint_steps(tmp_path) == [0]


def test_python_errors_in_a_py_func_are_not_recovered(tmp_path):
    def fault(step):
        raise KeyError("bug")
    with pytest.raises(Exception, match="bug") as info:
        train(str(tmp_path), last_step=3, fault=fault)
    assert not isinstance(info.value, (tw.errors.UnavailableError, tw.errors.AbortedError))


# -- non-chief ------------------------------------------------------------------------------------
def test_a_non_chief_waits_for_the_model_and_gives_up_after_max_wait_secs(tmp_path):
    chief_hook_log = []
    with tw.Graph().as_default():
        model = Model()
        with pytest.raises(tw.errors.DeadlineExceededError, match="w1"):
            tw.train.MonitoredTrainingSession(
                is_chief=False, checkpoint_dir=str(tmp_path), max_wait_secs=0,
                chief_only_hooks=[Recorder(model, chief_hook_log)])
    assert chief_hook_log == []
    assert os.listdir(tmp_path) == []


def test_a_non_chief_uses_a_ready_session_and_saves_nothing(tmp_path):
    with tw.Graph().as_default():
        model = Model()
        ready = tw.Session()
        ready.run(tw.global_variables_initializer())
        log = []
        with tw.train.MonitoredTrainingSession(
                is_chief=False, checkpoint_dir=str(tmp_path), session_factory=lambda: ready,
                chief_only_hooks=[Recorder(model, [])], hooks=[Recorder(model, log)]) as sess:
            sess.run(model.train_op, feed_dict=model.feed(0))
    assert log == ["begin", "after_create_session", "before_run", "after_run", "end"]
    assert os.listdir(tmp_path) == []


# -- sessions of other kinds ----------------------------------------------------------------------
def test_a_session_whose_store_is_not_in_process_is_asked_by_running_the_global_step():
    """A remote session's store gathers every variable from its tasks: the global step must be
    read by running it, never through the store."""

    class GatheringStore:
        @property
        def values(self):
            raise AssertionError("read every variable to get the global step")

    class RemoteLike(tw.Session):
        @property
        def variable_store(self):
            return GatheringStore()

    with tw.Graph().as_default():
        model = Model(fail_once_at(2))
        with tw.train.MonitoredTrainingSession(
                session_factory=RemoteLike, log_step_count_steps=1,
                hooks=[tw.train.StopAtStepHook(last_step=4), FeedByStep(model)]) as sess:
            while not sess.should_stop():
                sess.run(model.train_op)
            assert sess.run(model.global_step) == 4
    assert sess.recoveries == [(2, 0)]
