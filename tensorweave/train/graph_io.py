"""``tw.train.write_graph``: save a graph's GraphDef JSON to a file, atomically."""

from __future__ import annotations

import os

from tensorweave.graph.serialization import to_json
from tensorweave.train.files import write_atomically

__all__ = ["write_graph"]


def write_graph(graph_or_graph_def, logdir, name, as_text=True) -> str:
    """Write the GraphDef JSON of a Graph (or a GraphDef dict) to ``logdir/name``; return the path.

    ``as_text`` writes indented JSON for people to read; ``as_text=False`` writes it compact.
    The file is replaced atomically: a reader sees the old file or the new one, never a part.
    """
    text = to_json(graph_or_graph_def, indent=1 if as_text else None) + "\n"
    os.makedirs(logdir, exist_ok=True)
    path = os.path.join(logdir, name)
    write_atomically(path, text.encode("utf-8"))
    return path
