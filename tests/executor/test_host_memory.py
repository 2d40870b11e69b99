"""The allocator tuning of ``executor/host_memory.py``: set once per process, can be switched
off, and with it a large block comes from the heap (kept between steps) instead of a mapping
of its own (returned to the kernel when freed)."""

import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Where does a 40 MB malloc land? glibc maps blocks over its mmap threshold on their own, and
# its own threshold never grows past 32 MB; tuned, the block comes from the heap.
PROBE = """
import ctypes
from tensorweave.executor import host_memory
tuned = host_memory.tune()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
address = libc.malloc(40 << 20)
in_heap = False
with open("/proc/self/maps") as maps:
    for line in maps:
        if line.rstrip().endswith("[heap]"):
            low, high = (int(v, 16) for v in line.split()[0].split("-"))
            in_heap = in_heap or low <= address < high
print(tuned, in_heap)
"""


def _probe(env_value=None):
    env = dict(os.environ)
    env.pop("TENSORWEAVE_MALLOC_TUNING", None)
    if env_value is not None:
        env["TENSORWEAVE_MALLOC_TUNING"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    return tuple(word == "True" for word in out)   # (tuned, block in the heap)


@pytest.mark.skipif(not GLIBC, reason="the tuning applies to glibc's malloc only")
def test_tuned_large_blocks_come_from_the_heap():
    assert _probe() == (True, True)


@pytest.mark.skipif(not GLIBC, reason="the tuning applies to glibc's malloc only")
def test_the_tuning_can_be_switched_off():
    assert _probe("0") == (False, False)   # the block has a mapping of its own


def test_remote_tasks_get_the_same_thresholds_at_process_start(monkeypatch):
    from tensorweave.executor import host_memory
    env = host_memory.runtime_env()
    if not GLIBC:
        assert env is None
        return
    tunables = env["env_vars"]["GLIBC_TUNABLES"]
    assert f"mmap_threshold={host_memory.MMAP_THRESHOLD_BYTES}" in tunables
    assert f"trim_threshold={host_memory.TRIM_THRESHOLD_BYTES}" in tunables
    assert "arena_max=1" in tunables
    monkeypatch.setenv("TENSORWEAVE_MALLOC_TUNING", "0")
    assert host_memory.runtime_env() is None
