"""Per-session state and the per-step context that stateful kernels receive.

Variable values live in the Session's ``VariableStore``. A step never writes the store directly:
its writes go to the step's ``StepContext.updates`` (reads see them first), and the Session
commits them only when the whole step succeeded, so a failed step changes no variable.
"""

from __future__ import annotations

import hashlib
import sys
import threading

import numpy as np

from tensorweave import errors


class VariableStore:
    """Committed variable values of one Session, by variable name.

    Values are never changed in place, so an update needs a fresh array; allocating (and page
    faulting) a large one every step costs more than the update's arithmetic. When a commit
    replaces a value that nothing else references any more (no fetch, no running step, no
    view), its buffer goes to a small pool, and update kernels take their output buffers from
    it (``StepContext.empty_like``): the next step writes into last step's memory.
    """

    _POOL_PER_KEY = 4
    MIN_POOLED_BYTES = 1 << 16

    def __init__(self):
        self.values: dict[str, np.ndarray] = {}
        self.random_streams: dict[str, np.random.Generator] = {}
        self.lock = threading.Lock()
        self._pool: dict[tuple, list] = {}

    def commit(self, updates: dict):
        with self.lock:
            for name, value in updates.items():
                old = self.values.get(name)
                self.values[name] = value
                if old is not None and old is not value:
                    self._recycle(old)
                del old

    def _recycle(self, array):
        # References: the caller's local, this argument, getrefcount's own argument. Any more
        # means someone (a fetch, a view, a running step) still sees the array.
        if (type(array) is not np.ndarray or array.base is not None
                or array.nbytes < self.MIN_POOLED_BYTES or sys.getrefcount(array) > 3):
            return
        free = self._pool.setdefault((array.shape, array.dtype), [])
        if len(free) < self._POOL_PER_KEY:
            free.append(array)

    def take(self, shape, dtype):
        """A recycled writable buffer of ``shape`` and ``dtype``, or None."""
        with self.lock:
            free = self._pool.get((shape, dtype))
            if not free:
                return None
            array = free.pop()
        array.flags.writeable = True
        return array


class StepContext:
    """What a stateful kernel may touch during one step."""

    __slots__ = ("store", "updates", "step_id", "op", "rendezvous")

    def __init__(self, store: VariableStore, step_id: int):
        self.store = store
        self.updates: dict[str, np.ndarray] = {}
        self.step_id = step_id
        self.op = None
        self.rendezvous = None  # a multi-device step's Rendezvous (set while it runs)

    def read_variable(self, name: str, op=None):
        value = self.updates.get(name)
        if value is None:
            value = self.store.values.get(name)
        if value is None:
            raise errors.FailedPreconditionError(
                None, op, f"attempting to use uninitialized value {name} (run its initializer, "
                          f"e.g. sess.run(tw.global_variables_initializer()))")
        return value

    def is_initialized(self, name: str) -> bool:
        return name in self.updates or name in self.store.values

    def write_variable(self, name: str, value: np.ndarray):
        if isinstance(value, np.ndarray) and value.flags.writeable:
            value.flags.writeable = False  # stored values are shared with fetches; never mutate
        self.updates[name] = value

    def empty_like(self, like: np.ndarray) -> np.ndarray:
        """An uninitialized writable numpy array shaped like ``like``, recycled when one is
        free (host memory only; device arrays come from their own library's pool)."""
        if like.nbytes < VariableStore.MIN_POOLED_BYTES:  # never pooled: skip the lock
            return np.empty_like(like)
        array = self.store.take(like.shape, like.dtype)
        return np.empty_like(like) if array is None else array

    def random_stream(self, key: str, seed: tuple | None) -> np.random.Generator:
        """The session's random generator for the random op ``key``.

        Seeded ops get a Philox stream keyed by their seed pair alone, so the same seeds give the
        same numbers in every session and on every machine; unseeded ops draw fresh entropy.
        Each session starts every stream anew, and each run continues it, as in TF1.
        """
        stream = self.store.random_streams.get(key)
        if stream is None:
            if seed is None:
                bit_generator = np.random.Philox()
            else:
                digest = hashlib.sha256(repr(tuple(seed)).encode()).digest()
                bit_generator = np.random.Philox(key=int.from_bytes(digest[:16], "little"))
            stream = np.random.Generator(bit_generator)
            self.store.random_streams[key] = stream
        return stream
