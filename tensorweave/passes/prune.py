"""Pruning: the ops a run needs for its fetches and targets, given what it feeds."""

from __future__ import annotations


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
