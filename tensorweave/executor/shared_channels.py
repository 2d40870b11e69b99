"""Large values between tasks of one machine, through shared-memory segments reused every step.

A ``_Send`` to another task is an actor call carrying the array; Ray copies a large argument
into its object store, which on this machine costs the sender ~9-13 ms of CPU for 12.8 MB
(Deep MNIST's fc1 gradient) against ~1 ms to copy it into memory that is already mapped
(``benchmarks/remote.py``'s notes, DESIGN.md "Transfers between tasks"). So when both tasks
run on the same node, a sender keeps one segment per edge (source task, destination task,
tensor), writes the value into it, and the actor call carries only its name, dtype and shape;
the receiver reads the value in place and the segment is free again once the step no longer
holds it (``_Lease``).

A segment's first 8 bytes say whether it holds a value not yet taken (``_FULL``) or is free
(``_FREE``). A sender writes only into a free segment of its edge (one is added when none is
free, up to ``SEGMENTS_PER_EDGE``; beyond that the value goes through Ray as before), so a
value is never overwritten while its receiver may still read it (a delivery for a step that is
over is dropped, and frees its segment). A step's values die when the step ends, so in practice
each edge reuses one segment from step to step.

A producer may also write a value into a segment to begin with (``reserve``): the sending task
hands a ``MatMul`` whose product it sends a free segment of that edge as its output buffer
(``remote.py``, ``TaskWorker``), and ``put`` then sends the segment as it is, without the copy
(~1.2 ms for Deep MNIST's 12.8 MB fc1 gradient). A reserved segment is ``_RESERVED`` until it
is sent; one the step never sent (it failed first) is freed when the step ends
(``release_reserved``).

Segments are ``multiprocessing.shared_memory`` blocks named ``tw<pid>_<n>_<random>``: the
sender creates and unlinks them (when its session shuts the task down, at exit, or when a value
outgrows one). A task killed outright cannot, so every new outbox first unlinks the segments
of senders no longer alive (their pid is in the name). The receiver attaches by name and does
not register them with its own resource tracker (it must not unlink a segment it does not own).
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
from multiprocessing import resource_tracker, shared_memory

import numpy as np

__all__ = ["MIN_SHARED_BYTES", "SEGMENTS_PER_EDGE", "Outbox", "Inbox"]

# Below this size Ray carries the value inside the call cheaply (see INLINE_LIMIT_BYTES in
# remote.py); a segment costs a name lookup and a page-aligned block per edge.
MIN_SHARED_BYTES = 1 << 18
SEGMENTS_PER_EDGE = 2
_HEADER_BYTES = 64          # the state word, padded to a cache line
_FREE, _FULL, _RESERVED = 0, 1, 2
_MAX_ATTACHED = 256         # segments a receiver keeps mapped (older ones were replaced)
_PREFIX = "tw"
_SHM_DIR = "/dev/shm"       # where Linux lists POSIX shared memory
_names = itertools.count()


class _Segment:
    """One shared-memory block: a state word, then the value's bytes."""

    def __init__(self, block: shared_memory.SharedMemory):
        self.block = block
        self.name = block.name
        self.state = np.ndarray((1,), dtype=np.int64, buffer=block.buf)
        self.capacity = block.size - _HEADER_BYTES
        self.data_address = self.state.ctypes.data + _HEADER_BYTES

    def data(self, dtype, shape) -> np.ndarray:
        return np.ndarray(shape, dtype=dtype, buffer=self.block.buf, offset=_HEADER_BYTES)

    def close(self):
        self.state = None  # the views must go before the mapping can close
        try:
            self.block.close()
        except BufferError:  # a view of the data is still alive somewhere: leave it mapped
            pass


class _Lease:
    """A value read in place from a segment: ``np.asarray(lease)`` is a read-only array whose
    base is the lease, so the segment is freed exactly when no array of the value is left."""

    def __init__(self, segment: _Segment, dtype, shape):
        self.segment = segment
        view = segment.data(dtype, shape)
        self.__array_interface__ = {"version": 3, "shape": shape, "typestr": dtype.str,
                                    "data": (view.ctypes.data, True)}  # True: read-only
        self._view = view   # keeps the mapping alive as long as the value

    def __del__(self):
        state = self.segment.state
        if state is not None:
            state[0] = _FREE


class Outbox:
    """A sending task's segments, by edge."""

    def __init__(self):
        self._edges: dict = {}      # edge -> [_Segment]
        self._lock = threading.Lock()
        sweep_dead_senders()

    def put(self, edge, value):
        """Write ``value`` into a free segment of ``edge``: ``(name, dtype, shape)`` for the
        receiver, or None when it should travel through Ray (small, not an array, or every
        segment of the edge still holds a value not taken)."""
        if type(value) is not np.ndarray or value.nbytes < MIN_SHARED_BYTES or \
                value.dtype.hasobject:
            return None
        with self._lock:
            segment = self._reserved_holding(edge, value)
            if segment is not None:  # the producer wrote it here: nothing to copy
                segment.state[0] = _FULL
                return segment.name, value.dtype.str, value.shape
            segment = self._free_segment(edge, value.nbytes)
            if segment is None:
                return None
            segment.state[0] = _FULL
        np.copyto(segment.data(value.dtype, value.shape), value)
        return segment.name, value.dtype.str, value.shape

    def reserve(self, edge, shape, dtype):
        """A writable array of ``shape`` and ``dtype`` in a free segment of ``edge``, for the
        producer of the edge's next value to write into; None when no segment is free."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < MIN_SHARED_BYTES:
            return None
        with self._lock:
            segment = self._free_segment(edge, nbytes)
            if segment is None:
                return None
            segment.state[0] = _RESERVED
        return segment.data(dtype, tuple(shape))

    def release_reserved(self, edge=None):
        """Free the segments reserved but never sent (the step ended without sending), of
        ``edge`` or of every edge."""
        with self._lock:
            chosen = self._edges.values() if edge is None else [self._edges.get(edge, [])]
            for segments in chosen:
                for segment in segments:
                    if segment.state[0] == _RESERVED:
                        segment.state[0] = _FREE

    def _reserved_holding(self, edge, value):
        """The reserved segment of ``edge`` whose data ``value`` is, exactly; else None."""
        for segment in self._edges.get(edge, ()):
            if segment.state[0] == _RESERVED and value.flags.c_contiguous and \
                    value.ctypes.data == segment.data_address and \
                    value.nbytes <= segment.capacity:
                return segment
        return None

    def reclaim(self, edge, name: str):
        """Free segment ``name`` of ``edge`` again: its value was never sent."""
        with self._lock:
            for segment in self._edges.get(edge, ()):
                if segment.name == name:
                    segment.state[0] = _FREE

    def _free_segment(self, edge, nbytes):
        segments = self._edges.setdefault(edge, [])
        for i, segment in enumerate(segments):
            if segment.state[0] != _FREE:
                continue
            if segment.capacity >= nbytes:
                return segment
            segments.pop(i)  # free but too small: replace it by a larger one
            _unlink(segment)
            break
        if len(segments) >= SEGMENTS_PER_EDGE:
            return None
        name = f"{_PREFIX}{os.getpid()}_{next(_names)}_{secrets.token_hex(4)}"
        segment = _Segment(shared_memory.SharedMemory(name=name, create=True,
                                                      size=_HEADER_BYTES + nbytes))
        segment.state[0] = _FREE
        segments.append(segment)
        return segment

    def close(self):
        with self._lock:
            for segments in self._edges.values():
                for segment in segments:
                    _unlink(segment)
            self._edges.clear()


class Inbox:
    """A receiving task's view of its senders' segments."""

    def __init__(self):
        self._attached: dict = {}   # name -> _Segment, oldest first
        self._lock = threading.Lock()

    def take(self, name: str, dtype: str, shape) -> np.ndarray:
        """The value in segment ``name``, read in place: a read-only array that frees the
        segment when the last reference to it goes (the step no longer needs it)."""
        return np.asarray(_Lease(self._segment(name), np.dtype(dtype), tuple(shape)))

    def drop(self, name: str):
        """Free segment ``name`` without reading it (its delivery was refused)."""
        try:
            self._segment(name).state[0] = _FREE
        except (FileNotFoundError, OSError):
            pass  # the sender is gone, and its segment with it

    def _segment(self, name) -> _Segment:
        with self._lock:
            segment = self._attached.get(name)
            if segment is None:
                block = shared_memory.SharedMemory(name=name)
                # Python 3.11 registers an attached block with this process's resource tracker,
                # which would unlink it when this process exits; the sender owns it.
                resource_tracker.unregister(block._name, "shared_memory")  # noqa: SLF001
                segment = self._attached[name] = _Segment(block)
                if len(self._attached) > _MAX_ATTACHED:
                    oldest = next(iter(self._attached))
                    self._attached.pop(oldest).close()
            return segment

    def close(self):
        with self._lock:
            for segment in self._attached.values():
                segment.close()
            self._attached.clear()


def _unlink(segment: _Segment):
    block = segment.block
    segment.close()
    try:
        block.unlink()
    except FileNotFoundError:
        pass


def sweep_dead_senders():
    """Unlink the segments whose sending process is gone (killed before it could)."""
    try:
        names = os.listdir(_SHM_DIR)
    except OSError:
        return
    for name in names:
        pid = _owner(name)
        if pid is None or _alive(pid):
            continue
        try:
            os.unlink(os.path.join(_SHM_DIR, name))
        except OSError:
            pass


def _owner(name: str):
    if not name.startswith(_PREFIX):
        return None
    head = name[len(_PREFIX):].split("_", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True
