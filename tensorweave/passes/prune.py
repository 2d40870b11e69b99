"""Pruning: keep only what a graph's results need.

``needed_ops`` answers the question on the user's graph for a Session signature (the snapshot
and the reference interpreter use it); the ``prune`` pass answers it on a compiled step's graph,
whose results are its ``_Retval`` and ``_Targets`` ops.
"""

from __future__ import annotations

from tensorweave.passes.base import PassResult, Rewriter, describe, live_ops, roots


def needed_ops(fetches, targets, feeds) -> list:
    """Ops needed to compute ``fetches`` and run ``targets``, in creation (topological) order.

    A fed tensor cuts the graph: its producer is needed only if something else of it is.
    """
    fed = set(feeds)
    needed = {}
    stack = [t.op for t in fetches if t not in fed] + list(targets)
    while stack:
        op = stack.pop()
        if op in needed:
            continue
        needed[op] = True
        for t in op.inputs:
            if t not in fed and t.op not in needed:
                stack.append(t.op)
        for c in op.control_inputs:
            if c not in needed:
                stack.append(c)
    return sorted(needed, key=lambda op: op._id)


def prune(graph, *, options=None) -> PassResult:
    """Remove every op that no ``_Retval`` or ``_Targets`` op needs (by data or control edge),
    stateful ones and unused ``_Arg`` ops included."""
    live = live_ops(graph, roots(graph))
    return keep_only(graph, live, "prune")


def keep_only(graph, live, pass_name: str) -> PassResult:
    """``graph`` with only the ops in ``live`` (which must be closed under inputs)."""
    dropped = [op for op in graph.get_operations() if op not in live]
    if not dropped:
        return PassResult(graph, [])
    rw = Rewriter(graph)
    for op in graph.get_operations():
        if op in live:
            rw.copy(op)
    return rw.result([f"{pass_name}: removed {describe(op)}" for op in dropped])
