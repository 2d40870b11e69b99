"""``tw.train.write_graph``: save a graph's GraphDef JSON to a file, atomically."""

from __future__ import annotations

import os
import uuid

from tensorweave.graph.serialization import to_json

__all__ = ["write_graph"]


def write_graph(graph_or_graph_def, logdir, name, as_text=True) -> str:
    """Write the GraphDef JSON of a Graph (or a GraphDef dict) to ``logdir/name``; return the path.

    ``as_text`` writes indented JSON for people to read; ``as_text=False`` writes it compact.
    The file is replaced atomically: a reader sees the old file or the new one, never a part.
    """
    text = to_json(graph_or_graph_def, indent=1 if as_text else None) + "\n"
    os.makedirs(logdir, exist_ok=True)
    path = os.path.join(logdir, name)
    _write_atomically(path, text.encode("utf-8"))
    return path


def _write_atomically(path: str, data: bytes):
    directory = os.path.dirname(os.path.abspath(path))
    # A unique name next to the target (same file system, so the rename is atomic); created
    # with os.open so the file gets the usual umask permissions, not mkstemp's 0600.
    temp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str):
    """Make the rename itself durable (not possible on every platform, hence best effort)."""
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
