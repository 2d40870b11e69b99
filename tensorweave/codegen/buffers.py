"""Buffers kept across steps, so large kernels write into memory that is already paged in.

A fresh 64 MB numpy array costs 7-9 ms of page faults the first time it is written; the same
write into a buffer used before costs 2.4 ms. Fused kernels therefore keep their buffers:

* ``RetainedOutputs`` — each compiled kernel keeps the arrays it returned last time, and takes
  one back for its next output only when it is *provably dead*.
* ``BufferPool`` — a per-device pool keyed by (shape, dtype) for temporaries that a kernel
  allocates and frees within one call, and for any caller that can prove an array dead.
* ``ScratchSets`` — the chunk-sized scratch arrays of one kernel plan, one set per concurrent
  caller.

The rule (never broken): a buffer is written only if nothing else can read it. An array we
handed out (a kernel output) is dead when our own reference is the last one: ``sys.getrefcount``
then counts only our holder and its own argument. A fetch held by the user, a value still in the
executor's table, a variable's stored value, a view (``view.base`` references the array), a
``memoryview`` or a rendezvous entry all hold a reference, so each of them keeps the array
alive and out of reuse. Only arrays that own their memory (``base is None``), are exact
``numpy.ndarray`` objects and are large enough to page-fault are kept (small ones come from
malloc's free lists anyway). Device arrays (cupy) are never kept: cupy has its own pool.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

MIN_KEPT_BYTES = 1 << 16  # below this, malloc reuses memory without page faults


def _reusable(array) -> bool:
    return (type(array) is np.ndarray and array.base is None
            and array.nbytes >= MIN_KEPT_BYTES)


class BufferPool:
    """Free host buffers keyed by (shape, dtype); ``take`` one or get None, ``give`` one back.

    ``give(array)`` keeps the array only when the caller's reference is the last one (the caller
    passes it directly, e.g. ``pool.give(values.pop(key))``) — so a buffer that anyone else can
    still see is never handed out again.
    """

    def __init__(self, per_key: int = 4):
        self.per_key = per_key
        self._free: dict[tuple, list] = {}
        self._lock = threading.Lock()

    def take(self, shape, dtype) -> np.ndarray | None:
        """A free writable buffer of exactly ``shape`` and ``dtype``, or None."""
        key = (tuple(shape), np.dtype(dtype))
        with self._lock:
            free = self._free.get(key)
            if not free:
                return None
            array = free.pop()
        array.flags.writeable = True
        return array

    def empty(self, shape, dtype) -> np.ndarray:
        """A free buffer, or a new one."""
        array = self.take(shape, dtype)
        return np.empty(shape, dtype) if array is None else array

    def give(self, array) -> bool:
        """Keep ``array`` for reuse if it is provably dead; True if it was kept."""
        # References: this argument and getrefcount's own argument. More means someone else
        # (the caller's variable, a fetch, a view) still sees the array.
        if not _reusable(array) or sys.getrefcount(array) > 2:
            return False
        key = (array.shape, array.dtype)
        with self._lock:
            free = self._free.setdefault(key, [])
            if len(free) >= self.per_key:
                return False
            free.append(array)
        return True

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


_POOLS: dict[str, BufferPool] = {}
_POOLS_LOCK = threading.Lock()


def pool_for(device: str = "") -> BufferPool:
    """The buffer pool of one device (by its device string; "" is the local host)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(device)
        if pool is None:
            pool = _POOLS[device] = BufferPool()
        return pool


class RetainedOutputs:
    """The outputs a kernel returned last time, reused once nothing else references them.

    ``take(i, shape, dtype)`` gives back output ``i`` of an earlier call when it matches and is
    dead, else None; ``keep(outputs)`` records this call's outputs. Both are thread-safe: two
    concurrent calls never receive the same buffer (``take`` removes it from the slot).
    """

    def __init__(self):
        self._slots: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def take(self, i: int, shape, dtype) -> np.ndarray | None:
        with self._lock:
            array = self._slots.get(i)
            # The slot's own reference plus getrefcount's argument and the local name: 3.
            if (array is None or array.shape != tuple(shape) or array.dtype != dtype
                    or sys.getrefcount(array) > 3):
                return None
            del self._slots[i]
        array.flags.writeable = True
        return array

    def keep(self, outputs) -> None:
        with self._lock:
            for i, array in enumerate(outputs):
                if _reusable(array):
                    self._slots[i] = array

    def empty(self, i: int, shape, dtype) -> np.ndarray:
        """Output ``i``'s buffer: the retained one when dead, else a new array."""
        array = self.take(i, shape, dtype)
        return np.empty(shape, dtype) if array is None else array


class ScratchSets:
    """Scratch arrays for one kernel plan, one set per thread.

    ``acquire()`` hands out the calling thread's set (made by ``make()`` on first use) and
    ``release(s)`` ends its use, so calls from several threads never share scratch memory. A
    kernel never re-enters itself on one thread, so a set is never used twice at once.
    """

    def __init__(self, make):
        self._make = make
        self._local = threading.local()

    def acquire(self):
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._make()
        return scratch

    def release(self, scratch) -> None:
        """Nothing to do: the set stays with its thread for the next call."""
