"""Per-session state and the per-step context that stateful kernels receive.

Variable values live in the Session's ``VariableStore``. A step never writes the store directly:
its writes go to the step's ``StepContext.updates`` (reads see them first), and the Session
commits them only when the whole step succeeded, so a failed step changes no variable.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np

from tensorweave import errors


class VariableStore:
    """Committed variable values of one Session, by variable name."""

    def __init__(self):
        self.values: dict[str, np.ndarray] = {}
        self.random_streams: dict[str, np.random.Generator] = {}
        self.lock = threading.Lock()

    def commit(self, updates: dict):
        with self.lock:
            self.values.update(updates)


class StepContext:
    """What a stateful kernel may touch during one step."""

    __slots__ = ("store", "updates", "step_id", "op")

    def __init__(self, store: VariableStore, step_id: int):
        self.store = store
        self.updates: dict[str, np.ndarray] = {}
        self.step_id = step_id
        self.op = None

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
