"""``MonitoredTrainingSession``: a training loop's session that initializes or restores the
model, runs hooks around every step, saves checkpoints, and recovers from lost workers
(TF1's ``tf.train.MonitoredTrainingSession``).

    with tw.train.MonitoredTrainingSession(
            checkpoint_dir="ckpt", save_checkpoint_steps=100,
            hooks=[tw.train.StopAtStepHook(last_step=1000)]) as sess:
        while not sess.should_stop():
            sess.run(train_op, feed_dict=...)

A ``MonitoredSession`` goes through these stages (the order hooks see):

1. hooks' ``begin()``; ``Scaffold.finalize()`` adds the init and ready ops and picks the
   Saver; the graph is finalized.
2. The session creator makes a raw session (``tw.Session(target=master, config=config)``, or
   ``session_factory()``) and makes it ready. The chief restores the latest checkpoint of
   ``checkpoint_dir`` when there is one and runs the init op otherwise, then checks that no
   variable is left uninitialized; a non-chief waits until the model is ready.
3. hooks' ``after_create_session(session, coord)``.
4. each ``run``: hooks' ``before_run`` -> one raw run with the caller's and the hooks'
   fetches and feeds merged -> hooks' ``after_run`` -> the caller's results.
5. ``close()``: hooks' ``end(session)`` (only when no error is leaving the ``with`` block),
   then the raw session's ``close()``.

Recovery. A run that raises ``UnavailableError`` or ``AbortedError`` (a worker died or a step
was aborted) is logged on the "tensorweave.train" logger with the error and the global step it
happened at; the broken session is closed (its own errors ignored), a new one is created
through the same creator — which restores the latest checkpoint — hooks'
``after_create_session`` run again, and the same ``run`` call is made again, hooks included.
At most ``max_recoveries`` times per monitored session; the next such error is raised.
``sess.recoveries`` lists ``(failed_step, restored_step)`` of each recovery. Other errors
propagate unchanged.

Replaying the call replays its ``feed_dict`` too. A loop whose batch depends on the step
should choose it in a hook's ``before_run`` (which runs again for the replay) or in the graph,
so the replayed steps see their own data; then a recovered run ends with the same weights as
an uninterrupted one (given the same seeds and no random ops inside steps: each new session
restarts the random streams).
"""

from __future__ import annotations

import logging
import time

from tensorweave import errors
from tensorweave.executor.session import Session
from tensorweave.graph.core import get_default_graph
from tensorweave.graph.scopes import GraphKeys
from tensorweave.ops.state import (get_global_step, get_or_create_global_step,
                                   global_variables_initializer, local_variables,
                                   local_variables_initializer, report_uninitialized_variables)
from tensorweave.train.hooks import (CheckpointSaverHook, SessionRunArgs, SessionRunContext,
                                     SessionRunValues, StepCounterHook, default_saver,
                                     read_global_step)
from tensorweave.train.saver import get_checkpoint_state, latest_checkpoint

__all__ = ["MonitoredTrainingSession", "MonitoredSession", "Scaffold", "ChiefSessionCreator",
           "WorkerSessionCreator", "RECOVERABLE_ERRORS"]

logger = logging.getLogger("tensorweave.train")

RECOVERABLE_ERRORS = (errors.UnavailableError, errors.AbortedError)
"""Errors after which a new session restored from the latest checkpoint can carry on."""

USE_DEFAULT = object()
_DEFAULT_CHECKPOINT_SECS = 600
_DEFAULT_MAX_RECOVERIES = 10


# -- scaffold ------------------------------------------------------------------------------------
class Scaffold:
    """The pieces that make a session ready: ``init_op`` (default: all global variables'
    initializers) fed with ``init_feed_dict`` and followed by ``init_fn(scaffold, session)``,
    ``ready_op`` (default: the names of uninitialized variables; empty when ready),
    ``local_init_op`` (default: the local variables' initializers, when there are any) and
    ``saver`` (default: the graph's SAVERS collection, else a Saver of all global variables).

    ``finalize()`` builds the missing ones and finalizes the graph."""

    def __init__(self, init_op=None, init_feed_dict=None, init_fn=None, ready_op=None,
                 ready_for_local_init_op=None, local_init_op=None, summary_op=None,
                 saver=None, copy_from_scaffold=None):
        if copy_from_scaffold is not None:
            init_op = init_op or copy_from_scaffold.init_op
            init_feed_dict = init_feed_dict or copy_from_scaffold.init_feed_dict
            init_fn = init_fn or copy_from_scaffold.init_fn
            ready_op = ready_op or copy_from_scaffold.ready_op
            local_init_op = local_init_op or copy_from_scaffold.local_init_op
            saver = saver or copy_from_scaffold.saver
        self._init_op = init_op
        self._init_feed_dict = init_feed_dict
        self._init_fn = init_fn
        self._ready_op = ready_op
        self._local_init_op = local_init_op
        self._saver = saver
        self._graph = None

    def finalize(self):
        """Build the default pieces (once) and finalize the graph."""
        if self._graph is None:
            graph = get_default_graph()
            if self._init_op is None:
                found = graph.get_collection(GraphKeys.INIT_OP)
                self._init_op = found[0] if found else global_variables_initializer()
            if self._ready_op is None:
                variables = graph.get_collection(GraphKeys.GLOBAL_VARIABLES) + local_variables()
                self._ready_op = report_uninitialized_variables() if variables else None
            if self._local_init_op is None and local_variables():
                self._local_init_op = local_variables_initializer()
            if self._saver is None:
                self._saver = default_saver(graph)
            self._graph = graph
        self._graph.finalize()
        return self

    @property
    def graph(self):
        return self._graph

    @property
    def init_op(self):
        return self._init_op

    @property
    def init_feed_dict(self):
        return self._init_feed_dict

    @property
    def init_fn(self):
        return self._init_fn

    @property
    def ready_op(self):
        return self._ready_op

    @property
    def local_init_op(self):
        return self._local_init_op

    @property
    def saver(self):
        return self._saver


# -- session creators ----------------------------------------------------------------------------
class _SessionCreator:
    """Makes ready raw sessions: a new one from the factory, then made ready by
    ``_prepare``; a session whose preparation failed is closed before the error goes on."""

    def __init__(self, scaffold, master, config, session_factory):
        self.scaffold = scaffold or Scaffold()
        self._master = master
        self._config = config
        self._factory = session_factory

    def finalize(self):
        self.scaffold.finalize()

    def create_session(self):
        self.finalize()
        session = self._new_session()
        try:
            self._prepare(session)
        except BaseException:
            close_quietly(session)
            raise
        return session

    def _new_session(self):
        graph = self.scaffold.graph
        if self._factory is None:
            return Session(target=self._master, graph=graph, config=self._config)
        session = self._factory()
        if session.graph is not graph:
            close_quietly(session)
            raise ValueError("session_factory() made a session of another graph than the one "
                             "the monitored session was built on")
        return session

    def _prepare(self, session):
        raise NotImplementedError

    def _uninitialized(self, session) -> list:
        """Names of the variables not yet initialized in ``session`` (empty when ready)."""
        if self.scaffold.ready_op is None:
            return []
        return [str(name) for name in session.run(self.scaffold.ready_op)]

    def _run_local_init(self, session):
        if self.scaffold.local_init_op is not None:
            session.run(self.scaffold.local_init_op)


class ChiefSessionCreator(_SessionCreator):
    """Makes sessions that restore the latest checkpoint of ``checkpoint_dir`` (or
    ``checkpoint_filename_with_path``), or run the init op when there is none.

    ``restored_checkpoint`` is the checkpoint the last session was restored from (None when
    it was initialized)."""

    def __init__(self, scaffold=None, master="", config=None, checkpoint_dir=None,
                 checkpoint_filename_with_path=None, session_factory=None):
        super().__init__(scaffold, master, config, session_factory)
        self._checkpoint_dir = checkpoint_dir
        self._checkpoint_path = checkpoint_filename_with_path
        self.restored_checkpoint = None

    def _prepare(self, session):
        self.restored_checkpoint = self._restore(session)
        if self.restored_checkpoint is None:
            self._initialize(session)
        self._run_local_init(session)
        missing = self._uninitialized(session)
        if missing:
            how = (f"restoring {self.restored_checkpoint}" if self.restored_checkpoint
                   else "the init op")
            raise RuntimeError(f"{how} did not make the model ready: variables not "
                               f"initialized: {', '.join(missing)}")

    def _restore(self, session):
        """Restore the checkpoint to start from, if any; its prefix, or None."""
        path = self._checkpoint_path
        if path is None and self._checkpoint_dir is not None:
            path = latest_checkpoint(self._checkpoint_dir)
        if path is None:
            return None
        saver = self.scaffold.saver
        saver.restore(session, path)
        if self._checkpoint_dir is not None:
            # Count the checkpoints already on disk in max_to_keep, as if this Saver made them.
            state = get_checkpoint_state(self._checkpoint_dir)
            if state is not None:
                saver.recover_last_checkpoints(state.all_model_checkpoint_paths)
        return path

    def _initialize(self, session):
        scaffold = self.scaffold
        if scaffold.init_op is not None:
            session.run(scaffold.init_op, feed_dict=scaffold.init_feed_dict)
        if scaffold.init_fn is not None:
            scaffold.init_fn(scaffold, session)


class WorkerSessionCreator(_SessionCreator):
    """Makes sessions for a non-chief: waits (polling every ``recovery_wait_secs``) until the
    chief has initialized or restored the model, at most ``max_wait_secs``
    (DeadlineExceededError). Only useful when sessions share variable state."""

    def __init__(self, scaffold=None, master="", config=None, max_wait_secs=7200,
                 session_factory=None, recovery_wait_secs=30):
        super().__init__(scaffold, master, config, session_factory)
        self._max_wait_secs = max_wait_secs
        self._recovery_wait_secs = recovery_wait_secs
        self.restored_checkpoint = None

    def create_session(self):
        self.finalize()
        deadline = time.monotonic() + self._max_wait_secs
        while True:
            session = self._new_session()
            try:
                missing = self._uninitialized(session)
                if not missing:
                    self._run_local_init(session)
                    return session
            except BaseException:
                close_quietly(session)
                raise
            close_quietly(session)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.DeadlineExceededError(
                    None, None, f"the model was not ready after waiting {self._max_wait_secs} s "
                                f"for the chief; variables not initialized: {', '.join(missing)}")
            logger.info("waiting for the chief to initialize the model (not initialized: %s)",
                        ", ".join(missing))
            time.sleep(min(self._recovery_wait_secs, remaining))


def close_quietly(session):
    """Close a session that may be broken; its errors are logged, not raised."""
    try:
        session.close()
    except Exception as e:  # noqa: BLE001 - a broken session may fail in any way while closing
        logger.info("ignored an error while closing a broken session: %s: %s",
                    type(e).__name__, e)


# -- the monitored session ------------------------------------------------------------------------
class _StopRequests:
    """The ``coord`` hooks get in ``after_create_session``: they may ask the loop to stop."""

    def __init__(self):
        self._stop = False

    def request_stop(self, ex=None):
        self._stop = True

    def should_stop(self) -> bool:
        return self._stop


class MonitoredSession:
    """A session-like object that makes its raw session ready, runs ``hooks`` around every
    ``run``, and recovers from ``UnavailableError``/``AbortedError`` (see the module
    docstring). Use it in a ``with`` block; ``OutOfRangeError`` and ``StopIteration`` leaving
    the block end it cleanly, as the end of the input does in TF1."""

    def __init__(self, session_creator=None, hooks=None, stop_grace_period_secs=120, *,
                 max_recoveries=_DEFAULT_MAX_RECOVERIES):
        if max_recoveries is None or max_recoveries < 0:
            raise ValueError(f"max_recoveries must be a count >= 0, got {max_recoveries!r}")
        self._creator = session_creator or ChiefSessionCreator()
        self._hooks = list(hooks or [])
        self._max_recoveries = max_recoveries
        self._stop = _StopRequests()
        self._closed = False
        self._sess = None
        self._recovery_attempts = 0
        self.recoveries: list[tuple] = []
        for hook in self._hooks:
            hook.begin()
        self._creator.finalize()
        self.graph = self._creator.scaffold.graph
        self._global_step = get_global_step(self.graph)
        self._sess = self._create_session()
        self._last_step = self._read_step()

    # -- running ----------------------------------------------------------------------------
    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        """Run ``fetches`` as ``Session.run`` does, with the hooks around it; re-made on a new
        session restored from the latest checkpoint when a worker was lost."""
        if self._closed:
            raise RuntimeError("attempted to use a closed MonitoredSession")
        if self._sess is None:
            raise RuntimeError("this MonitoredSession lost its session and could not make a new "
                               "one (see the error raised before)")
        while True:
            try:
                return self._run_with_hooks(fetches, feed_dict, options, run_metadata)
            except RECOVERABLE_ERRORS as error:
                if self._recovery_attempts >= self._max_recoveries:
                    logger.error("%s at global step %s after %d recoveries; giving up: %s",
                                 type(error).__name__, self._last_step,
                                 self._recovery_attempts, error)
                    raise
                self._recover(error)

    def _run_with_hooks(self, fetches, feed_dict, options, run_metadata):
        context = SessionRunContext(SessionRunArgs(fetches, feed_dict, options), self._sess)
        hook_args = [hook.before_run(context) for hook in self._hooks]
        hook_fetches = {i: args.fetches for i, args in enumerate(hook_args)
                        if args is not None and args.fetches is not None}
        feeds = _merged_feeds(feed_dict, hook_args)
        if options is None:
            options = next((a.options for a in hook_args
                            if a is not None and a.options is not None), None)
        results, hook_results = self._sess.run((fetches, hook_fetches), feed_dict=feeds,
                                               options=options, run_metadata=run_metadata)
        for i, hook in enumerate(self._hooks):
            hook.after_run(context, SessionRunValues(hook_results.get(i), options,
                                                     run_metadata))
        if context.stop_requested:
            self._stop.request_stop()
        self._last_step = self._read_step()
        return results

    def should_stop(self) -> bool:
        """True once a hook asked to stop, or the session is closed."""
        return self._closed or self._stop.should_stop()

    # -- recovery ---------------------------------------------------------------------------
    def _recover(self, error):
        """Replace the broken session by a new one restored from the latest checkpoint."""
        failed_step = self._last_step
        self._recovery_attempts += 1
        logger.warning("%s at global step %s: %s; recovering: a new session from the latest "
                       "checkpoint (recovery %d of at most %d)", type(error).__name__,
                       failed_step, error, self._recovery_attempts, self._max_recoveries)
        broken, self._sess = self._sess, None
        close_quietly(broken)
        self._sess = self._create_session_retrying()
        restored_step = self._read_step()
        self._last_step = restored_step
        self.recoveries.append((failed_step, restored_step))
        checkpoint = getattr(self._creator, "restored_checkpoint", None)
        if checkpoint is not None:
            logger.warning("recovered: restored checkpoint of step %s after failure at step %s "
                           "(%s)", restored_step, failed_step, checkpoint)
        else:
            logger.warning("recovered: no checkpoint to restore; the model starts again from "
                           "its initial values at step %s after failure at step %s",
                           restored_step, failed_step)

    def _create_session_retrying(self):
        """A new ready session; a lost worker while making it counts as another recovery."""
        while True:
            try:
                return self._create_session()
            except RECOVERABLE_ERRORS as error:
                if self._recovery_attempts >= self._max_recoveries:
                    raise
                self._recovery_attempts += 1
                logger.warning("%s while creating a new session: %s; trying again (recovery "
                               "%d of at most %d)", type(error).__name__, error,
                               self._recovery_attempts, self._max_recoveries)

    def _create_session(self):
        session = self._creator.create_session()
        try:
            for hook in self._hooks:
                hook.after_create_session(session, self._stop)
        except BaseException:
            close_quietly(session)
            raise
        return session

    def _read_step(self):
        if self._global_step is None:
            return None
        return read_global_step(self._sess, self._global_step)

    # -- lifecycle --------------------------------------------------------------------------
    def close(self):
        """Call the hooks' ``end`` and close the raw session."""
        self._close(clean=True)

    def _close(self, clean):
        if self._closed:
            return
        self._closed = True
        session, self._sess = self._sess, None
        if session is None:
            return
        ended = False
        try:
            if clean:
                for hook in self._hooks:
                    hook.end(session)
            ended = True
        finally:
            if ended:
                session.close()
            else:
                close_quietly(session)  # keep the error that is already leaving

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        end_of_input = exc_type is not None and issubclass(
            exc_type, (errors.OutOfRangeError, StopIteration))
        self._close(clean=exc_type is None or end_of_input)
        return end_of_input


def _merged_feeds(feed_dict, hook_args) -> dict:
    """The caller's feeds plus the hooks'; a tensor fed twice is an error."""
    merged = dict(feed_dict or {})
    for args in hook_args:
        if args is None or not args.feed_dict:
            continue
        for key, value in args.feed_dict.items():
            if key in merged:
                name = getattr(key, "name", key)
                raise RuntimeError(f"tensor {name} is fed by a SessionRunHook and by the caller "
                                   f"or another hook")
            merged[key] = value
    return merged


# -- MonitoredTrainingSession ---------------------------------------------------------------------
def MonitoredTrainingSession(master="", is_chief=True, checkpoint_dir=None,  # noqa: N802 (TF1)
                             scaffold=None, hooks=None, chief_only_hooks=None,
                             save_checkpoint_secs=USE_DEFAULT, save_summaries_steps=USE_DEFAULT,
                             save_summaries_secs=USE_DEFAULT, config=None,
                             stop_grace_period_secs=120, log_step_count_steps=100,
                             max_wait_secs=7200, save_checkpoint_steps=USE_DEFAULT,
                             summary_dir=None, save_graph_def=True, *,
                             max_recoveries=_DEFAULT_MAX_RECOVERIES, session_factory=None):
    """A ``MonitoredSession`` for training on the default graph.

    The chief (``is_chief``) restores the latest checkpoint of ``checkpoint_dir`` or
    initializes the model, and saves a checkpoint every ``save_checkpoint_steps`` global steps
    or ``save_checkpoint_secs`` seconds (600 s when neither is given; none when both are
    None) plus once at the end, numbered by the global step. A non-chief waits up to
    ``max_wait_secs`` for the model to be ready and saves nothing. ``hooks`` run on every
    task, ``chief_only_hooks`` on the chief; a step counter logs the speed every
    ``log_step_count_steps`` steps (None or 0: never).

    Raw sessions are ``tw.Session(target=master, config=config)``, or ``session_factory()``
    when given (a remote executor passes its own). A run that fails with ``UnavailableError``
    or ``AbortedError`` is recovered from the latest checkpoint at most ``max_recoveries``
    times (see this module's docstring); ``sess.recoveries`` lists them.

    The global step is created if the graph has none. ``save_summaries_*``, ``summary_dir``,
    ``stop_grace_period_secs`` and ``save_graph_def`` are accepted for TF1 compatibility and
    change nothing (there are no summaries or queue runners).
    """
    get_or_create_global_step()
    scaffold = scaffold or Scaffold()
    all_hooks = list(chief_only_hooks or []) if is_chief else []
    all_hooks.extend(hooks or [])
    if not is_chief:
        creator = WorkerSessionCreator(scaffold, master, config, max_wait_secs,
                                       session_factory=session_factory)
        return MonitoredSession(creator, all_hooks, max_recoveries=max_recoveries)
    creator = ChiefSessionCreator(scaffold, master, config, checkpoint_dir,
                                  session_factory=session_factory)
    if log_step_count_steps:
        all_hooks.append(StepCounterHook(every_n_steps=log_step_count_steps))
    secs, steps = _checkpoint_schedule(save_checkpoint_secs, save_checkpoint_steps)
    if checkpoint_dir is not None and (secs or steps):
        all_hooks.append(CheckpointSaverHook(checkpoint_dir, save_secs=secs, save_steps=steps,
                                             scaffold=scaffold))
    return MonitoredSession(creator, all_hooks, max_recoveries=max_recoveries)


def _checkpoint_schedule(secs, steps):
    """TF1's rule: neither given -> every 600 s; one given -> that one only."""
    if secs is USE_DEFAULT and steps is USE_DEFAULT:
        return _DEFAULT_CHECKPOINT_SECS, None
    if secs is USE_DEFAULT:
        secs = None
    if steps is USE_DEFAULT:
        steps = None
    if secs and steps:
        raise ValueError("give save_checkpoint_secs or save_checkpoint_steps, not both")
    return secs or None, steps or None
