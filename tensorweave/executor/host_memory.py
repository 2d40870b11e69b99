"""How the C allocator hands out the host memory of tensors: kept, not returned every step.

numpy allocates every array with ``malloc``. glibc's defaults suit programs of small objects:
a block over the mmap threshold (dynamic, 128 KB to 32 MB) is its own ``mmap``, and free
memory over the trim threshold at the top of a heap goes back to the kernel. A training step
allocates and frees the same large temporaries every step, so with the defaults the memory
goes back and comes again as fresh pages the kernel must zero: on two devices, where ops run
on several threads (each with its own malloc arena), Deep MNIST's step took 3,000-8,000 minor
page faults per step (none on one device); fixed thresholds took it to ~0 and the step from
74-97 to 67-78 ms (``benchmarks/scaling.py``; one device 62.8 -> 58.9 ms).

``tune()`` sets, once per process, blocks up to ``MMAP_THRESHOLD_BYTES`` to come from the
heap and up to ``TRIM_THRESHOLD_BYTES`` of free memory to stay there — the way TF keeps freed
tensor memory in its own allocator. A Session calls it when created, and so does every remote
task. It changes the whole process's allocator, so it can be switched off:
``TENSORWEAVE_MALLOC_TUNING=0``. It does nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES", "tune", "runtime_env"]

MMAP_THRESHOLD_BYTES = 64 << 20
TRIM_THRESHOLD_BYTES = 256 << 20
_M_TRIM_THRESHOLD = -1      # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_lock = threading.Lock()
_state: dict = {}


def tune() -> bool:
    """Set the thresholds (the first call in a process decides); whether they are set."""
    with _lock:
        if "tuned" not in _state:
            _state["tuned"] = _apply()
        return _state["tuned"]


def runtime_env() -> dict | None:
    """Ray's ``runtime_env`` for a task's actor: the same thresholds as glibc tunables, read
    when the worker process starts. ``tune()`` in the actor comes after Ray's own threads made
    their malloc arenas, and the thread that runs the steps may be handed one of those (whose
    heaps go back to the kernel when empty: 50,000 page faults per step were seen); set at
    start, every thread shares the one arena."""
    if not _wanted():
        return None
    tunables = (f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD_BYTES}:"
                f"glibc.malloc.trim_threshold={TRIM_THRESHOLD_BYTES}:glibc.malloc.arena_max=1")
    return {"env_vars": {"GLIBC_TUNABLES": tunables}}


def _wanted() -> bool:
    """Tuning applies: glibc, and not switched off."""
    return os.environ.get("TENSORWEAVE_MALLOC_TUNING", "1") != "0" and \
        platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _apply() -> bool:
    if not _wanted():
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)) and \
        bool(mallopt(_M_ARENA_MAX, 1))
