"""Common-subexpression elimination: ops that compute the same thing are merged into one.

Two ops are the same computation when they have the same type, read the same tensors (after
earlier merges, so whole duplicated chains collapse), have equal attrs (arrays compare by
dtype, shape and a 128-bit digest of their bytes), the same control inputs and the same
requested device. The first one (in creation order) survives and keeps its name; readers of
the others read it instead. Stateful ops and ops that use the step context are never merged:
two reads of a variable, or two random draws, are different events.
"""

from __future__ import annotations

import hashlib

import numpy as np

from tensorweave.graph.shapes import TensorShape
from tensorweave.passes.base import PassResult, Rewriter, describe, op_def_of

__all__ = ["cse"]


class _Unhashable(Exception):
    """An attr value CSE cannot compare; the op is left alone."""


def cse(graph, *, options=None) -> PassResult:
    """Merge duplicate computations (see module doc)."""
    rw = Rewriter(graph)
    first: dict = {}  # key -> the surviving op of the new graph
    changes = []
    for op in graph.get_operations():
        key = _key(rw, op)
        survivor = first.get(key) if key is not None else None
        if survivor is not None:
            rw.alias(op, survivor)
            changes.append(f"cse: merged {describe(op)} into {survivor.name}")
            continue
        new = rw.copy(op)
        if key is not None:
            first[key] = new
    return rw.result(changes)


def _key(rw, op):
    """What makes ``op``'s computation itself, or None for an op that must never be merged."""
    op_def = op_def_of(op)
    if op_def is None or op_def.stateful or op_def.uses_context:
        return None
    try:
        attrs = attr_key(op.attrs)
    except _Unhashable:
        return None
    return (op.type, tuple(rw.images(op.inputs)), attrs, tuple(rw.control_inputs(op)),
            op.device)


def attr_key(value):
    """A hashable value equal for equal attrs (raises ``_Unhashable`` when there is none)."""
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise _Unhashable
        # A 128-bit digest stands for the bytes, so keys do not keep copies of large constants.
        digest = hashlib.blake2b(array.tobytes(), digest_size=16).digest()
        # The name tells extension dtypes apart (bfloat16's str is a plain '<V2').
        return ("array", array.dtype.str, array.dtype.name, array.shape, digest)
    if isinstance(value, dict):
        return ("dict", tuple(sorted(((k, attr_key(v)) for k, v in value.items()),
                                     key=lambda kv: repr(kv[0]))))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(attr_key(v) for v in value))
    if isinstance(value, TensorShape):
        return ("shape", value.as_tuple())
    if isinstance(value, float):
        return ("float", value.hex())  # tells -0.0 from 0.0, as the bytes of arrays do
    try:
        hash(value)
    except TypeError:
        raise _Unhashable from None
    # The type is part of the key: 1, 1.0 and True are equal in Python but not as attrs.
    return (type(value).__name__, value)
