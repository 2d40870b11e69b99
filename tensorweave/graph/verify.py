"""``verify(graph)``: check the invariants every pass must keep.

* order — every input and control input of an op was created before it (so the op list is a
  schedule);
* names — unique, and the graph's name table maps each name to its op and nothing else;
* ownership — every op and every input tensor belongs to this graph, and a tensor is the output
  its op lists at its index;
* consumers — each tensor's consumer list is exactly the ops that read it (with multiplicity);
* specs — given ``lookup`` (op type -> OpDef), every op type is known and its recorded outputs
  agree with re-running the OpDef's inference: same count, same dtypes, compatible shapes.

Why shapes need only be compatible: ``set_shape`` refines a tensor in place, so a recorded shape
may be more specific than inference gives (the user refined it) and also less specific (the
user refined one of the op's *inputs* after the op was built, and TF1 does not re-infer the
consumers). With ``strict_shapes=True`` a recorded shape must also be at least as specific as
the inferred one; that catches a pass that loses shape information, on graphs without such late
``set_shape`` calls (the graphs of pass tests).

The graph package never imports the op library, so the caller passes ``lookup``;
``tensorweave.ops.importer.verify_with_registry`` does that with the registry.
A broken invariant raises ``tw.errors.InternalError`` naming the op, what is wrong, and the op's
line of the printed graph.
"""

from __future__ import annotations

from collections import Counter

from tensorweave import errors
from tensorweave.graph.printer import format_op, format_type
from tensorweave.graph.shapes import as_shape

__all__ = ["verify"]


def verify(graph, *, lookup=None, strict_shapes: bool = False) -> None:
    """Raise ``tw.errors.InternalError`` if ``graph`` breaks an IR invariant (see module doc)."""
    ops = graph.get_operations()
    position: dict = {}
    for index, op in enumerate(ops):
        _check_owner_and_name(graph, op, position)
        _check_inputs_precede(graph, op, position)
        position[op] = index
    _check_name_table(graph, ops)
    _check_consumers(ops)
    if lookup is not None:
        for op in ops:
            _check_specs(op, lookup, strict_shapes)


def _fail(op, what: str):
    message = (f"graph verification failed at op {errors.describe(op)}: {what}\n"
               f"  {format_op(op)}")
    return errors.InternalError(None, op, message)


def _check_owner_and_name(graph, op, position):
    if op.graph is not graph:
        raise _fail(op, "the op belongs to another graph")
    if op in position:
        raise _fail(op, "the op appears twice in the op list")
    if graph._by_name.get(op.name) is not op:
        other = graph._by_name.get(op.name)
        problem = "is missing from the name table" if other is None else \
            "shares its name with another op of the graph"
        raise _fail(op, f"the name {op.name!r} {problem}")
    for i, t in enumerate(op.outputs):
        if t.op is not op or t.value_index != i:
            raise _fail(op, f"output {i} is the tensor {t.name}, which does not point back at it")


def _check_inputs_precede(graph, op, position):
    for i, t in enumerate(op.inputs):
        source = t.op
        if source.graph is not graph:
            raise _fail(op, f"input {i} ({t.name}) belongs to another graph")
        if t.value_index >= len(source.outputs) or source.outputs[t.value_index] is not t:
            raise _fail(op, f"input {i} ({t.name}) is not an output of the op {source.name}")
        if source not in position:
            raise _fail(op, f"input {i} ({t.name}) comes from {_where(graph, source)}")
    for control in op.control_inputs:
        if control.graph is not graph:
            raise _fail(op, f"control input {control.name} belongs to another graph")
        if control not in position:
            raise _fail(op, f"control input {control.name} comes from "
                            f"{_where(graph, control)}")


def _where(graph, source) -> str:
    """Why an op that should precede its consumer does not: later, or not in the graph at all."""
    if source in graph.get_operations():
        return "an op created after it (the op order is not topological)"
    return "an op that is not in this graph"


def _check_name_table(graph, ops):
    if len(graph._by_name) != len(ops):
        listed = {op.name for op in ops}
        extra = sorted(set(graph._by_name) - listed)
        raise errors.InternalError(None, None, f"graph verification failed: the name table has "
                                   f"entries for ops not in the graph: {extra}")


def _check_consumers(ops):
    expected: dict = {}
    for op in ops:
        for t in op.inputs:
            expected.setdefault(t, Counter())[op] += 1
    for op in ops:
        for t in op.outputs:
            recorded = Counter(t._consumers)
            wanted = expected.get(t, Counter())
            if recorded != wanted:
                missing = sorted(c.name for c in wanted - recorded)
                extra = sorted(c.name for c in recorded - wanted)
                raise _fail(op, f"the consumer list of {t.name} disagrees with the inputs "
                                f"(missing: {missing}, not reading it: {extra})")


def _check_specs(op, lookup, strict_shapes):
    op_def = lookup(op.type)
    if op_def is None:
        raise _fail(op, f"unknown op type {op.type!r}")
    try:
        inferred = [(dtype, as_shape(shape)) for dtype, shape in op_def.infer(op)]
    except Exception as e:  # noqa: BLE001 — any failure of inference is what we report
        raise _fail(op, f"shape inference fails on the op as recorded: "
                        f"{type(e).__name__}: {e}") from e
    if len(inferred) != len(op.outputs):
        raise _fail(op, f"it records {len(op.outputs)} outputs, but inference gives "
                        f"{len(inferred)}")
    for t, (dtype, shape) in zip(op.outputs, inferred):
        agrees = _refines(t.shape, shape) if strict_shapes else t.shape.is_compatible_with(shape)
        if t.dtype is not dtype or not agrees:
            raise _fail(op, f"output {t.value_index} is recorded as "
                            f"{format_type(t.dtype, t.shape)}, but inference gives "
                            f"{format_type(dtype, shape)}")


def _refines(recorded, inferred) -> bool:
    """True when ``recorded`` agrees with ``inferred`` and knows at least as much."""
    if not recorded.is_compatible_with(inferred):
        return False
    return inferred.merge_with(recorded) == recorded
