"""A step's schedule: the needed ops in order, with bound kernels and numbered value slots.

Everything that does not depend on the fed values is decided here, once per compiled step:
which ops run, in what order, which kernel each calls (already bound to its attrs and array
module), where each value lives (a slot number) and after which op it is dead. The runners
(``straightline`` and the dataflow ``local`` scheduler) only execute it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tensorweave import errors
from tensorweave.ops import registry


@dataclasses.dataclass
class Node:
    index: int
    op: object
    kernel: object
    inputs: tuple          # value slots read
    outputs: tuple         # value slots written
    uses_context: bool
    preds: tuple           # indices of nodes that must finish first (data and control)


@dataclasses.dataclass
class Schedule:
    nodes: list
    num_slots: int
    feed_slots: list
    fetch_slots: list
    constants: dict        # slot -> value computed at compile time
    last_use: dict         # slot -> index of the last node reading it (absent: never read)
    device: str = ""


def build_schedule(ops, feeds, fetches, xp=np, device="", wrap_kernel=None) -> Schedule:
    """Number the values of ``ops`` and bind each op's kernel for array module ``xp``;
    ``wrap_kernel(op, kernel)``, if given, may return another callable to run instead."""
    slot_of: dict = {}
    for t in feeds:
        slot_of[t] = len(slot_of)
    constants: dict = {}
    nodes: list[Node] = []
    node_of_op: dict = {}
    last_writer: dict = {}  # variable -> index of the last node in the schedule updating it
    for op in ops:
        op_def = registry.get(op.type)
        if op_def.kernel is None:
            raise errors.op_error(errors.UnimplementedError, op,
                                  f"op type {op.type} has no kernel")
        kernel = _bind(op_def, op, xp)
        if _is_compile_time_constant(op, op_def):
            for t, value in zip(op.outputs, _as_tuple(kernel(), len(op.outputs))):
                slot_of[t] = len(slot_of)
                constants[slot_of[t]] = value
            continue
        if wrap_kernel is not None:
            kernel = wrap_kernel(op, kernel)
        inputs = tuple(slot_of[t] for t in op.inputs)
        outputs = []
        for t in op.outputs:
            if t not in slot_of:  # a fed output keeps its feed slot and is not overwritten
                slot_of[t] = len(slot_of)
                outputs.append(slot_of[t])
            else:
                outputs.append(None)
        preds = {node_of_op[t.op] for t in op.inputs if t.op in node_of_op} | \
            {node_of_op[c] for c in op.control_inputs if c in node_of_op}
        written = _variable_written(op)
        if written is not None:
            # Updates of one variable in one step run one after another, in schedule order,
            # never concurrently (each reads the value the one before it wrote).
            if written in last_writer:
                preds.add(last_writer[written])
            last_writer[written] = len(nodes)
        node = Node(len(nodes), op, kernel, inputs, tuple(outputs), op_def.uses_context,
                    tuple(sorted(preds)))
        node_of_op[op] = node.index
        nodes.append(node)
    last_use: dict = {}
    for node in nodes:
        for s in node.inputs:
            last_use[s] = node.index
    return Schedule(nodes, len(slot_of), [slot_of[t] for t in feeds],
                    [slot_of[t] for t in fetches], constants, last_use, device)


_WRITERS = ("Assign", "AssignAdd", "AssignSub")


def _variable_written(op):
    """The store name of the variable ``op`` updates (assignments and optimizer updates)."""
    if op.type in _WRITERS:
        return op.attrs.get("shared_name")
    if op.type.startswith("Apply"):
        return op.attrs.get("var")
    return None


def _bind(op_def, op, xp):
    try:
        return op_def.kernel(op.attrs, xp)
    except Exception as e:
        raise errors.op_error(errors.InvalidArgumentError, op,
                              f"cannot build its kernel: {type(e).__name__}: {e}") from None


def _is_compile_time_constant(op, op_def) -> bool:
    return not op.inputs and not op.control_inputs and op_def.foldable and op.outputs


def _as_tuple(result, n):
    return tuple(result) if n > 1 else (result,)
