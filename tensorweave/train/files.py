"""Crash-safe file writes: write a temporary file beside the target, fsync, rename over it.

The temporary file lives in the target's directory, so it is on the same file system and the
rename (``os.replace``) is atomic: a reader sees the old file or the new one, never a part. A
multi-file save (a checkpoint) writes all its temporaries first and publishes them after.
"""

from __future__ import annotations

import contextlib
import os
import uuid


def write_temp(final_path: str, write) -> str:
    """Write a temporary file next to ``final_path`` with ``write(file)``, flushed to disk;
    return its name (created with os.open so it gets the usual umask, not mkstemp's 0600)."""
    temp = f"{final_path}.tmp-{os.getpid()}-{uuid.uuid4().hex}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        remove_quietly(temp)
        raise
    return temp


def publish(temp: str, final_path: str):
    """Rename ``temp`` over ``final_path`` and make the rename durable (on failure, the
    temporary file is removed and ``final_path`` is as it was)."""
    try:
        os.replace(temp, final_path)
    except BaseException:
        remove_quietly(temp)
        raise
    fsync_directory(os.path.dirname(os.path.abspath(final_path)))


def write_atomically(path: str, data: bytes):
    """Replace the file at ``path`` with ``data`` in one atomic step."""
    publish(write_temp(path, lambda f: f.write(data)), path)


def fsync_directory(directory: str):
    """Make a rename durable; best effort, since not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_quietly(path: str):
    with contextlib.suppress(OSError):
        os.remove(path)
