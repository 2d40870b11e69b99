"""Control ops: ``no_op``, ``group`` and ``tuple`` order execution without computing values."""

from __future__ import annotations

import builtins

from tensorweave.graph.core import Tensor, get_default_graph
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, register

__all__ = ["no_op", "group", "tuple"]

register(OpDef("NoOp", lambda op: [], lambda attrs, xp: _nothing, grad=NO_GRADIENT))


def _nothing():
    return ()


def no_op(name=None):
    """An op that does nothing; useful as a target that carries control dependencies."""
    return apply_op("NoOp", [], name=name or "NoOp")


def group(*inputs, name=None):
    """An op that runs after every op or tensor in ``inputs`` (its control dependencies)."""
    ops = []
    for item in _flatten(inputs):
        op = item.op if isinstance(item, Tensor) else getattr(item, "op", item)
        if op not in ops:
            ops.append(op)
    graph = ops[0].graph if ops else get_default_graph()
    with graph.as_default(), graph.control_dependencies(ops):
        return no_op(name=name or "group_deps")


def tuple(tensors, name=None, control_inputs=None):
    """Identity of each tensor, each available only once all of them (and control_inputs) ran."""
    from tensorweave.ops.array import identity

    tensors = list(tensors)
    deps = [t for t in tensors if t is not None] + list(control_inputs or [])
    gate = group(*deps, name=name or "tuple")
    with gate.graph.control_dependencies([gate]):
        return [None if t is None else identity(t) for t in tensors]


def _flatten(items):
    for item in items:
        if isinstance(item, (list, builtins.tuple)):
            yield from _flatten(item)
        else:
            yield item
