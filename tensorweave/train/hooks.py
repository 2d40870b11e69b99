"""Session run hooks: code that runs around every ``MonitoredSession.run`` (TF1's
``tf.train.SessionRunHook`` family).

A hook sees a monitored session's life in this order:

    begin()                                    once, while ops can still be added to the graph
    after_create_session(session, coord)       after each new raw session is ready: at the
                                               start, and again after every recovery
    before_run(run_context) -> SessionRunArgs  before each run: fetches and feeds to add to it
    after_run(run_context, run_values)         after each run that succeeded
    end(session)                               once, when the monitored session closes cleanly

``session`` and ``run_context.session`` are the raw ``tw.Session`` in use at that moment (a
new one after a recovery). ``coord`` lets a hook ask the loop to stop (``coord.request_stop()``)
outside of a run.

Hooks that act on the global step fetch it with the step (one more fetch, no extra run) and
read it exactly only when an action may be due: a value fetched in the same step as the
optimizer's increment may be the value before or after it, so it only tells when to look.
"""

from __future__ import annotations

import collections
import logging
import os
import time

from tensorweave.executor.context import VariableStore
from tensorweave.graph.core import get_default_graph
from tensorweave.graph.scopes import GraphKeys
from tensorweave.ops.state import get_global_step

__all__ = ["SessionRunHook", "SessionRunArgs", "SessionRunContext", "SessionRunValues",
           "StopAtStepHook", "CheckpointSaverHook", "CheckpointSaverListener",
           "StepCounterHook", "LoggingTensorHook", "FeedFnHook", "read_global_step"]

logger = logging.getLogger("tensorweave.train")

_clock = time.monotonic  # the periodic hooks' time (tests replace it)


class SessionRunHook:
    """Base of the hooks: every method does nothing; override the ones you need."""

    def begin(self):
        """Called once before the graph is finalized: the last moment to add ops."""

    def after_create_session(self, session, coord):
        """Called when a new raw session is ready (initialized or restored), also after a
        recovery."""

    def before_run(self, run_context):
        """Return a ``SessionRunArgs`` of fetches and feeds to add to this run, or None."""
        return None

    def after_run(self, run_context, run_values):
        """Called after a successful run with the results of this hook's fetches
        (``run_values.results``). Not called when the run raised."""

    def end(self, session):
        """Called once when the monitored session closes without an error."""


class SessionRunArgs(collections.namedtuple("SessionRunArgs",
                                            ["fetches", "feed_dict", "options"])):
    """What a hook adds to a run: ``fetches`` (any fetch structure, or None), ``feed_dict``
    (merged with the caller's; feeding one tensor twice is an error) and ``options``."""

    def __new__(cls, fetches, feed_dict=None, options=None):
        return super().__new__(cls, fetches, feed_dict, options)


class SessionRunValues(collections.namedtuple("SessionRunValues",
                                              ["results", "options", "run_metadata"])):
    """What a hook gets back: ``results`` has the structure of its ``SessionRunArgs.fetches``."""


class SessionRunContext:
    """The run being made: the caller's arguments, the raw session, and the stop flag."""

    def __init__(self, original_args, session):
        self._original_args = original_args
        self._session = session
        self._stop_requested = False

    @property
    def original_args(self) -> SessionRunArgs:
        """The caller's fetches, feed_dict and options."""
        return self._original_args

    @property
    def session(self):
        return self._session

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def request_stop(self):
        """Ask the loop to stop: ``should_stop()`` is True after this run."""
        self._stop_requested = True


# -- the global step ------------------------------------------------------------------------------
def read_global_step(session, global_step_tensor) -> int:
    """The committed value of the global step in ``session``, as an int.

    An in-process session's variable store has it at hand: no step runs, and it is the value
    a checkpoint taken now would record. Any other session (a remote one, whose store gathers
    every variable from its tasks) runs the tensor: one small step."""
    store = getattr(session, "variable_store", None)
    op = getattr(global_step_tensor, "op", None)
    if isinstance(store, VariableStore) and op is not None and op.type == "VariableV2":
        value = store.values.get(op.attrs["shared_name"])
        if value is not None:
            return int(value)
    return int(session.run(global_step_tensor))


def _required_global_step(hook_name):
    step = get_global_step()
    if step is None:
        raise RuntimeError(f"a global step must exist to use {hook_name} (create it with "
                           f"tw.train.get_or_create_global_step())")
    return step


class _Every:
    """Decides when a periodic action is due: every ``steps`` steps or every ``secs`` seconds
    since it last happened (the first check is always due)."""

    def __init__(self, secs=None, steps=None, what="every_n_secs and every_n_steps"):
        if (secs is None) == (steps is None):
            raise ValueError(f"exactly one of {what} must be given")
        if (secs if secs is not None else steps) <= 0:
            raise ValueError(f"{what}: the period must be positive, got {secs or steps}")
        self.secs = secs
        self.steps = steps
        self.last_step = None
        self._last_time = None

    def due(self, step) -> bool:
        if self.last_step is None:
            return True
        if step == self.last_step:
            return False
        if self.secs is not None:
            return _clock() - self._last_time >= self.secs
        return step >= self.last_step + self.steps

    def mark(self, step):
        """Record that the action happened at ``step``; return (seconds, steps) since the
        previous time, or (None, None) the first time."""
        now = _clock()
        elapsed = (None, None)
        if self.last_step is not None:
            elapsed = (now - self._last_time, step - self.last_step)
        self.last_step = step
        self._last_time = now
        return elapsed


# -- stopping -------------------------------------------------------------------------------------
class StopAtStepHook(SessionRunHook):
    """Requests a stop once the global step reaches ``last_step``, or ``num_steps`` steps after
    the value it had when the first session was created. Give exactly one of the two.

    After a recovery the target stays where it was: the replayed steps count again, so the
    run ends at the same global step as an uninterrupted one. A session that starts at or
    past the target stops before its first run."""

    def __init__(self, num_steps=None, last_step=None):
        if num_steps is None and last_step is None:
            raise ValueError("one of num_steps or last_step must be given")
        if num_steps is not None and last_step is not None:
            raise ValueError("only one of num_steps or last_step can be given")
        if num_steps is not None and num_steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {num_steps}")
        self._num_steps = num_steps
        self._last_step = last_step
        self._global_step = None

    @property
    def last_step(self):
        """The global step at which the run stops (known once a session was created)."""
        return self._last_step

    def begin(self):
        self._global_step = _required_global_step("StopAtStepHook")

    def after_create_session(self, session, coord):
        step = read_global_step(session, self._global_step)
        if self._last_step is None:
            self._last_step = step + self._num_steps
        if step >= self._last_step and coord is not None:
            coord.request_stop()

    def before_run(self, run_context):
        return SessionRunArgs(self._global_step)

    def after_run(self, run_context, run_values):
        # The fetched value may predate this step's increment: +1 says when to read exactly.
        if run_values.results + 1 >= self._last_step:
            if read_global_step(run_context.session, self._global_step) >= self._last_step:
                run_context.request_stop()


# -- checkpoints ----------------------------------------------------------------------------------
class CheckpointSaverListener:
    """Callbacks around the saves of a ``CheckpointSaverHook``; ``after_save`` returning True
    asks the loop to stop."""

    def begin(self):
        pass

    def before_save(self, session, global_step_value):
        pass

    def after_save(self, session, global_step_value):
        pass

    def end(self, session, global_step_value):
        pass


class CheckpointSaverHook(SessionRunHook):
    """Saves a checkpoint every ``save_steps`` global steps or every ``save_secs`` seconds
    (exactly one), as ``<checkpoint_dir>/<checkpoint_basename>-<global step>``.

    It also saves when a session is created (unless the directory's latest checkpoint already
    holds that step, as after a restore) and once at the end. The Saver comes from ``saver``,
    else ``scaffold.saver``, else the graph's SAVERS collection, else a new Saver of all global
    variables. Every save is atomic (see ``Saver``): a crash mid-save leaves the previous
    checkpoint as the latest."""

    def __init__(self, checkpoint_dir, save_secs=None, save_steps=None, saver=None,
                 checkpoint_basename="model.ckpt", scaffold=None, listeners=None):
        if saver is not None and scaffold is not None:
            raise ValueError("give a saver or a scaffold, not both")
        self._timer = _Every(save_secs, save_steps, what="save_secs and save_steps")
        self._dir = os.fspath(checkpoint_dir)
        self._prefix = os.path.join(self._dir, checkpoint_basename)
        self._saver = saver
        self._scaffold = scaffold
        self._listeners = list(listeners or [])
        self._global_step = None

    def begin(self):
        os.makedirs(self._dir, exist_ok=True)
        self._global_step = _required_global_step("CheckpointSaverHook")
        for listener in self._listeners:
            listener.begin()

    def after_create_session(self, session, coord):
        step = read_global_step(session, self._global_step)
        if _latest_checkpoint_step(self._dir) != step:
            self._save(session, step)
        self._timer.mark(step)

    def before_run(self, run_context):
        return SessionRunArgs(self._global_step)

    def after_run(self, run_context, run_values):
        if not self._timer.due(run_values.results + 1):
            return
        step = read_global_step(run_context.session, self._global_step)
        if self._timer.due(step):
            self._timer.mark(step)
            if self._save(run_context.session, step):
                run_context.request_stop()

    def end(self, session):
        step = read_global_step(session, self._global_step)
        if step != self._timer.last_step:
            self._save(session, step)
        for listener in self._listeners:
            listener.end(session, step)

    def _save(self, session, step) -> bool:
        """Save at ``step``; True when a listener asks to stop."""
        for listener in self._listeners:
            listener.before_save(session, step)
        path = self._get_saver().save(session, self._prefix, global_step=step)
        logger.info("saved checkpoint %s", path)
        stop = False
        for listener in self._listeners:
            if listener.after_save(session, step):
                stop = True
        return stop

    def _get_saver(self):
        if self._saver is None:
            if self._scaffold is not None:
                self._saver = self._scaffold.saver
            else:
                self._saver = default_saver(get_default_graph())
        return self._saver


def default_saver(graph):
    """The graph's one Saver in the SAVERS collection, or a new Saver of all global variables
    (added to the collection while the graph is not finalized)."""
    from tensorweave.train.saver import Saver
    savers = graph.get_collection(GraphKeys.SAVERS)
    if len(savers) > 1:
        raise RuntimeError(f"the graph's SAVERS collection has {len(savers)} savers; give the "
                           f"one to use (saver= or a Scaffold)")
    if savers:
        return savers[0]
    with graph.as_default():
        saver = Saver(allow_empty=True)
    if not graph.finalized:
        graph.add_to_collection(GraphKeys.SAVERS, saver)
    return saver


def _latest_checkpoint_step(checkpoint_dir):
    """The global step recorded in the directory's latest checkpoint, or None."""
    from tensorweave.train.saver import latest_checkpoint, read_index
    prefix = latest_checkpoint(checkpoint_dir)
    if prefix is None:
        return None
    return read_index(prefix).get("global_step")


# -- logging --------------------------------------------------------------------------------------
class StepCounterHook(SessionRunHook):
    """Logs the training speed ("global_step/sec: ...") at INFO on the "tensorweave.train"
    logger every ``every_n_steps`` global steps or ``every_n_secs`` seconds.
    ``output_dir`` and ``summary_writer`` are accepted for TF1 compatibility (there are no
    summaries)."""

    def __init__(self, every_n_steps=100, every_n_secs=None, output_dir=None,
                 summary_writer=None):
        if every_n_secs is not None:
            every_n_steps = None
        self._timer = _Every(every_n_secs, every_n_steps)
        self._global_step = None

    def begin(self):
        self._global_step = _required_global_step("StepCounterHook")

    def after_create_session(self, session, coord):
        # Restart the count: a recovery moves the step back, and time went into restoring.
        self._timer = _Every(self._timer.secs, self._timer.steps)

    def before_run(self, run_context):
        return SessionRunArgs(self._global_step)

    def after_run(self, run_context, run_values):
        step = int(run_values.results)
        if not self._timer.due(step):
            return
        secs, steps = self._timer.mark(step)
        if secs:
            logger.info("global_step/sec: %.4g (global step %d)", steps / secs, step)


class LoggingTensorHook(SessionRunHook):
    """Logs the values of ``tensors`` (a dict {tag: tensor or name}, or a list of them) at INFO
    every ``every_n_iter`` runs or ``every_n_secs`` seconds, and/or at the end (``at_end``).
    ``formatter(values_by_tag)`` may return the line to log."""

    def __init__(self, tensors, every_n_iter=None, every_n_secs=None, at_end=False,
                 formatter=None):
        only_at_end = at_end and every_n_iter is None and every_n_secs is None
        if not only_at_end:
            self._timer = _Every(every_n_secs, every_n_iter,
                                 what="every_n_iter and every_n_secs")
        else:
            self._timer = None
        if isinstance(tensors, dict):
            self._tensors = dict(tensors)
        else:
            self._tensors = {getattr(t, "name", t): t for t in tensors}
        self._at_end = at_end
        self._formatter = formatter
        self._iteration = 0
        self._logging_now = False

    def before_run(self, run_context):
        self._logging_now = self._timer is not None and self._timer.due(self._iteration)
        return SessionRunArgs(self._tensors) if self._logging_now else None

    def after_run(self, run_context, run_values):
        if self._logging_now:
            self._timer.mark(self._iteration)
            self._log(run_values.results)
        self._iteration += 1

    def end(self, session):
        if self._at_end:
            self._log(session.run(self._tensors))

    def _log(self, values):
        if self._formatter is not None:
            logger.info("%s", self._formatter(values))
        else:
            logger.info("%s", ", ".join(f"{tag} = {value}" for tag, value in values.items()))


class FeedFnHook(SessionRunHook):
    """Adds ``feed_fn()`` (a dict {tensor: value}) to the feeds of every run; it is called
    again when a run is replayed after a recovery."""

    def __init__(self, feed_fn):
        self.feed_fn = feed_fn

    def before_run(self, run_context):
        return SessionRunArgs(fetches=None, feed_dict=self.feed_fn())
