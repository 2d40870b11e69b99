"""Run the partitions of a step concurrently, one ``DeviceProgram`` per device.

Each step gets a fresh ``Rendezvous`` (``ctx.rendezvous``) through which the partitions'
``_Send`` and ``_Recv`` ops hand over tensors. One partition runs on the calling thread, the
others on the session's device threads; the step ends when all of them have.

Failure: the first partition to fail aborts the rendezvous, which wakes every receive on every
other device with a ``CancelledError``, so they all stop instead of waiting for values that will
never come. The step then raises the first error that is not such a cancellation (the cause,
named by its op, type, device and file:line). Variable updates are committed by the Session
only after the whole step succeeded, and the next step has a new rendezvous, so a failed step
leaves nothing behind.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

from tensorweave import errors
from tensorweave.executor.rendezvous import Rendezvous


class MultiDeviceProgram:
    def __init__(self, programs: list, num_fetches: int, device_pool, timeout_ms: int = 0):
        self.programs = programs
        self.num_fetches = num_fetches
        self.device_pool = device_pool
        self.timeout_ms = timeout_ms

    def run(self, ctx, feed_values, stats=None, t0=0.0):
        # A remote task's step comes with a rendezvous that also routes to other tasks.
        own = ctx.rendezvous is None
        rendezvous = ctx.rendezvous = ctx.rendezvous or Rendezvous(self.timeout_ms)
        failures: list = []
        lock = threading.Lock()
        first, *others = self.programs
        futures = [self.device_pool.submit(self._run_one, p, ctx, feed_values, stats, t0,
                                           failures, lock) for p in others]
        outcomes = [self._run_one(first, ctx, feed_values, stats, t0, failures, lock)]
        outcomes += [f.result() for f in futures]
        if own:
            ctx.rendezvous = None
        if failures:
            raise _primary(failures)
        if rendezvous.aborted:  # cannot happen without a failure; guard the invariant
            raise errors.InternalError(None, None, "a step was aborted without an error")
        results = [None] * self.num_fetches
        for program, values in zip(self.programs, outcomes):
            for j, value in zip(program.fetch_indices, values):
                results[j] = value
        return tuple(results)

    @staticmethod
    def _run_one(program, ctx, feed_values, stats, t0, failures, lock):
        try:
            with np.errstate(all="ignore"):
                return program.run(ctx, feed_values, stats, t0)
        except BaseException as e:  # noqa: BLE001 - every failure must abort the other devices
            error = program.translate(e, sys.exc_info()[2])
            if error is not e:
                error.__cause__ = e
            with lock:
                failures.append(error)
            ctx.rendezvous.abort(error)
            return None


def _primary(failures: list) -> BaseException:
    """The error that caused the others: the first that is not a cancellation."""
    for error in failures:
        if not isinstance(error, errors.CancelledError):
            return error
    return failures[0]
