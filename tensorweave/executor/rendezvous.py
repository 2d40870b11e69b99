"""The rendezvous of one step: where ``_Send`` leaves a tensor and ``_Recv`` picks it up.

Each step of a multi-device run gets a fresh ``Rendezvous``, so nothing a failed step left
behind can be received by the next one (the keys carry the step id as well). Three ways out of a
wait, and no other:

* the value arrives (``send``);
* the step is aborted (``abort``): every waiting and every later receive raises the abort's
  ``CancelledError`` at once, which is how an error on one device stops all the others;
* the deadline passes (``ConfigProto.operation_timeout_in_ms``): ``DeadlineExceededError``.

A receive either blocks its thread (``recv``, for straight-line device programs, which run on a
thread of their own) or takes a future (``recv_future``, for the dataflow runner, whose pool
threads must never block). Futures with a deadline expire when the runner calls ``expire``,
which it does whenever a wait of ``wait_timeout()`` seconds saw nothing finish.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

from tensorweave import errors


class Rendezvous:
    def __init__(self, timeout_ms: int = 0):
        self.timeout = timeout_ms / 1000.0 if timeout_ms else None
        self._cond = threading.Condition()
        self._values: dict = {}
        self._futures: dict = {}        # key -> (future, receiver, started)
        self._abort: str | None = None  # why the step was cancelled

    # -- sending ----------------------------------------------------------------------------
    def send(self, key: str, value):
        with self._cond:
            if self._abort is not None:
                raise self._cancelled()
            waiting = self._futures.pop(key, None)
            if waiting is None:
                if key in self._values:
                    raise errors.InternalError(None, None, f"rendezvous key {key} was sent twice")
                self._values[key] = value
                self._cond.notify_all()
        if waiting is not None:
            waiting[0].set_result(value)

    # -- receiving --------------------------------------------------------------------------
    def recv(self, key: str, receiver):
        """Block until ``key`` arrives; ``receiver`` (a RecvKernel) describes it in errors."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        with self._cond:
            while key not in self._values:
                if self._abort is not None:
                    raise self._cancelled()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise self._deadline_error(receiver)
                self._cond.wait(remaining)
            return self._values.pop(key)

    def recv_future(self, key: str, receiver) -> cf.Future:
        """A future of ``key``'s value (already done if it arrived, or if the step aborted)."""
        future: cf.Future = cf.Future()
        with self._cond:
            if key in self._values:
                future.set_result(self._values.pop(key))
            elif self._abort is not None:
                future.set_exception(self._cancelled())
            else:
                self._futures[key] = (future, receiver, time.monotonic())
        return future

    def wait_timeout(self) -> float | None:
        """Seconds until the earliest pending future's deadline (None: no deadline)."""
        if self.timeout is None:
            return None
        with self._cond:
            if not self._futures:
                return None
            oldest = min(started for _, _, started in self._futures.values())
        return max(0.0, oldest + self.timeout - time.monotonic()) + 1e-4

    def expire(self):
        """Fail the futures whose deadline passed with ``DeadlineExceededError``."""
        if self.timeout is None:
            return
        now = time.monotonic()
        with self._cond:
            late = [k for k, (_, _, started) in self._futures.items()
                    if now - started >= self.timeout]
            expired = [self._futures.pop(k) for k in late]
        for future, receiver, _ in expired:
            future.set_exception(self._deadline_error(receiver))

    # -- cancelling -------------------------------------------------------------------------
    def abort(self, cause: BaseException):
        """Cancel the step: wake every receive, now and later, with a CancelledError."""
        with self._cond:
            if self._abort is not None:
                return
            self._abort = f"step cancelled because another device failed: {cause}"
            waiting = list(self._futures.values())
            self._futures.clear()
            self._values.clear()
            self._cond.notify_all()
        for future, _, _ in waiting:
            future.set_exception(self._cancelled())

    @property
    def aborted(self) -> bool:
        return self._abort is not None

    def _cancelled(self):
        # A fresh error per receive: one exception object raised on several threads would
        # share (and garble) its traceback.
        return errors.CancelledError(None, None, self._abort)

    def _deadline_error(self, receiver):
        return errors.DeadlineExceededError(
            None, None, f"timed out after {self.timeout * 1000:.0f} ms waiting for "
                        f"{receiver.describe()} (ConfigProto.operation_timeout_in_ms)")
