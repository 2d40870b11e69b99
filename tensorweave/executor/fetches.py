"""Turning ``Session.run``'s fetches and feeds into flat lists, and results back into structure.

Fetches may be any nesting of lists, tuples, namedtuples and dicts whose leaves are Tensors,
Operations or their names. A ``FetchStructure`` flattens them once per distinct structure and
rebuilds results of the same shape (an Operation's result is None, as in TF1).
"""

from __future__ import annotations

import difflib

from tensorweave.graph.core import Operation, Tensor


class FetchStructure:
    def __init__(self, graph, fetches):
        self.leaves: list = []          # Tensor or Operation per leaf
        self._template = self._flatten(graph, fetches)

    @property
    def tensors(self) -> list:
        seen, result = set(), []
        for leaf in self.leaves:
            if isinstance(leaf, Tensor) and leaf not in seen:
                seen.add(leaf)
                result.append(leaf)
        return result

    @property
    def targets(self) -> list:
        return [leaf for leaf in self.leaves if isinstance(leaf, Operation)]

    def _flatten(self, graph, fetch):
        if isinstance(fetch, (Tensor, Operation, str)) or hasattr(fetch, "_as_graph_element"):
            self.leaves.append(resolve(graph, fetch, "fetch"))
            return len(self.leaves) - 1
        if isinstance(fetch, dict):
            return (type(fetch), [(k, self._flatten(graph, v)) for k, v in fetch.items()])
        if isinstance(fetch, tuple) and hasattr(fetch, "_fields"):
            return (type(fetch), [self._flatten(graph, v) for v in fetch])
        if isinstance(fetch, (list, tuple)):
            return (type(fetch), [self._flatten(graph, v) for v in fetch])
        raise TypeError(f"fetch argument {fetch!r} has invalid type {type(fetch).__name__}: it "
                        f"must be a Tensor, an Operation, a name, or a list/tuple/dict of them")

    def rebuild(self, values_by_tensor: dict):
        return self._build(self._template, values_by_tensor)

    def _build(self, template, values):
        if isinstance(template, int):
            leaf = self.leaves[template]
            return values[leaf] if isinstance(leaf, Tensor) else None
        kind, items = template
        if issubclass(kind, dict):
            return kind((k, self._build(v, values)) for k, v in items)
        built = [self._build(v, values) for v in items]
        if issubclass(kind, tuple) and hasattr(kind, "_fields"):
            return kind(*built)
        return kind(built)


def structure_key(fetches):
    """A hashable key that is equal for equal fetch structures (cache key of FetchStructure)."""
    if isinstance(fetches, (Tensor, Operation, str)):
        return fetches
    if isinstance(fetches, dict):
        return (type(fetches), tuple((k, structure_key(v)) for k, v in fetches.items()))
    if isinstance(fetches, (list, tuple)):
        return (type(fetches), tuple(structure_key(v) for v in fetches))
    try:
        hash(fetches)
    except TypeError:
        return (type(fetches), id(fetches))
    return fetches


def resolve(graph, item, what: str):
    """The Tensor or Operation of ``graph`` that ``item`` names, with errors in user terms."""
    if hasattr(item, "_as_graph_element"):
        item = item._as_graph_element()
    if isinstance(item, (Tensor, Operation)):
        if item.graph is not graph:
            kind = "tensor" if isinstance(item, Tensor) else "operation"
            raise ValueError(f"{what} {kind} {item.name} (created at {_where(item)}) belongs to "
                             f"another graph than this session's")
        return item
    if isinstance(item, str):
        try:
            return graph.as_graph_element(item)
        except (KeyError, ValueError) as e:
            names = [op.name for op in graph.get_operations()]
            close = difflib.get_close_matches(item.split(":")[0], names, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise KeyError(f"{what} name {item!r} does not name anything in the graph "
                           f"({e.args[0] if e.args else e}){hint}") from None
    raise TypeError(f"{what} argument {item!r} has invalid type {type(item).__name__}: it must "
                    f"be a Tensor, an Operation or a name")


def _where(item) -> str:
    op = item.op if isinstance(item, Tensor) else item
    return op.location_str()
