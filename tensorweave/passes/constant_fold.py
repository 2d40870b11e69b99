"""Constant folding: ops whose value is known before the step runs become ``Const`` ops.

An op folds when its OpDef is ``foldable`` (not stateful, not random, no step context), it has
no control inputs (they order it after something, which a constant cannot express), and either
every input is a constant or its OpDef's ``static_value`` already knows the answer from static
shapes (``Shape``, ``Size``, ``Rank`` of a tensor of known shape). The kernel that would have
run at step time runs now, on the same values, so the result is bitwise what the step would
compute.

Folding never creates a constant larger than ``options.fold_limit`` elements (shapes must be
known statically to check), and an op whose kernel raises is left for the step to report.
The ``Const`` keeps the op's name, device and user frames; a multi-output op becomes one
``Const`` per output, named ``<op>/output_<i>``.
"""

from __future__ import annotations

import numpy as np

from tensorweave.passes.base import PassOptions, PassResult, Rewriter, describe, op_def_of

__all__ = ["constant_fold"]

CONST = "Const"  # the op type folding produces (and leaves alone)


def constant_fold(graph, *, options: PassOptions | None = None) -> PassResult:
    """Replace ops computable from constants alone by ``Const`` ops (see module doc)."""
    limit = (options or PassOptions()).fold_limit
    rw = Rewriter(graph)
    values: dict = {}  # source tensor -> its value, for every tensor known to be constant
    changes = []
    for op in graph.get_operations():
        results = _evaluate(op, values, limit)
        if results is None:
            rw.copy(op)
            continue
        values.update(zip(op.outputs, results))
        if op.type == CONST:
            rw.copy(op)
            continue
        _replace_by_constants(rw, op, results)
        changes.append(f"constant_fold: folded {describe(op)} -> {CONST}")
    return rw.result(changes)


def _evaluate(op, values, limit):
    """The values of ``op``'s outputs if it folds, else None."""
    op_def = op_def_of(op)
    if op_def is None or not op_def.foldable or op.control_inputs or not op.outputs:
        return None
    if not all(_fits(t, limit) for t in op.outputs):
        return None
    results = None
    if op_def.static_value is not None:
        static = op_def.static_value(op)
        results = None if static is None else [static]
    if results is None:
        if not all(t in values for t in op.inputs):
            return None
        results = _run_kernel(op_def, op, [values[t] for t in op.inputs])
        if results is None:
            return None
    return _checked(op, results)


def _fits(tensor, limit) -> bool:
    n = tensor.shape.num_elements()
    return n is not None and n <= limit


def _run_kernel(op_def, op, inputs):
    try:
        with np.errstate(all="ignore"):
            result = op_def.kernel(op.attrs, np)(*inputs)
    except Exception:  # noqa: BLE001 — the step will raise it, naming the op, at run time
        return None
    return list(result) if len(op.outputs) > 1 else [result]


def _checked(op, results):
    """Results as read-only arrays of exactly the declared dtypes and shapes, else None."""
    if len(results) != len(op.outputs):
        return None
    checked = []
    for t, result in zip(op.outputs, results):
        value = np.asarray(result)
        if value.dtype != t.dtype.np or value.shape != tuple(t.shape.as_list()):
            return None
        checked.append(_read_only(value))
    return checked


def _read_only(value):
    # Folded values are shared by every step (and fetched as copies), so they must be frozen.
    # A writeable result may be an array the input graph holds (an attr, or a view of one);
    # it is copied rather than frozen in place, so folding changes nothing of its input.
    if value.flags.writeable:
        value = value.copy()
        value.flags.writeable = False
    return value


def _replace_by_constants(rw, op, results):
    framework_attrs = {k: v for k, v in op.attrs.items() if k.startswith("_")}
    if len(results) == 1:
        attrs = {"value": results[0], "dtype": op.outputs[0].dtype, **framework_attrs}
        rw.create(CONST, [], attrs, like=op, replaces=op)
        return
    tensors = []
    for t, value in zip(op.outputs, results):
        attrs = {"value": value, "dtype": t.dtype, **framework_attrs}
        const = rw.create(CONST, [], attrs, like=op, name=f"{op.name}/output_{t.value_index}")
        tensors.append(const.outputs[0])
    rw.replace(op, tensors)
