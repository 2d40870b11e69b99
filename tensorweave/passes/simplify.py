"""Algebraic simplification: a table of rewrite rules, keyed by op type.

Each rule looks at one op and the tensors that stand for its inputs in the graph being built
(so rewrites upstream are seen: ``Neg(Neg(Neg(Neg(x))))`` becomes ``x`` in one pass) and
returns the tensor that can take the op's place, or None. The rules:

* neutral operands — ``x*1``, ``1*x``, ``x+0``, ``0+x``, ``x-0``, ``x/1``;
* involutions and compositions — ``Neg(Neg(x))``, ``Transpose(Transpose(x))`` (perms composed;
  an identity perm gives ``x``), ``Reshape(Reshape(x))`` (one reshape), a reshape of ``x`` to
  its own shape;
* value-preserving ops — ``Identity``, ``StopGradient`` (gradients are already built) and an
  unfed ``PlaceholderWithDefault`` are bypassed, and a ``Cast`` to the dtype it already has.

Constants are recognised by value: a ``Const`` (or ``ZerosLike``/``OnesLike``/``Fill``) whose
elements all equal 1 (or 0). A rewrite applies only when the op has no control inputs, inner
ops it looks through have none either (they could order a stateful op), and the replacement
has exactly the op's dtype and static shape; neutral operands must not broadcast ``x`` to a
bigger shape (``x * ones([4, 3])`` with ``x`` of shape ``[3]`` stays), which the rule checks
from static shapes.

Where a value may differ: ``x + 0.0`` gives ``+0.0`` for ``x = -0.0``; the rewrite returns
``-0.0``. The two compare equal, as in other graph optimizers that apply this rule.

Identities and variables: ``W/read`` (an Identity of a VariableV2) is bypassed too. A variable
op reads the variable's value when it runs and values are never changed in place, so the
Identity's output is always the very array its input holds; readers see the same value either
way. An Identity with control inputs (``tw.control_dependencies``) is kept, because its point
is *when* it runs, and so is one pinned to another device than its input (a requested copy).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from tensorweave.ops import registry
from tensorweave.passes.base import PassResult, Rewriter, describe

__all__ = ["simplify", "RULES"]


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str           # the rewrite in a few characters, for the change line ("x*1")
    apply: Callable     # (rewriter, op, input images) -> replacement tensor or None


def simplify(graph, *, options=None) -> PassResult:
    """Apply the first matching rule of ``RULES[op.type]`` to each op (see module doc)."""
    rw = Rewriter(graph)
    changes = []
    for op in graph.get_operations():
        rule, replacement = _first_match(rw, op)
        if replacement is None:
            rw.copy(op)
            continue
        if rw.op_image(op) is None:  # the rule bypassed the op rather than rebuilding it
            rw.replace(op, [replacement])
            result = replacement.name
        else:
            rebuilt = replacement.op
            result = f"{rebuilt.type}({', '.join(t.name for t in rebuilt.inputs)})"
        changes.append(f"simplify: {describe(op)} -> {result} ({rule.name})")
    return rw.result(changes)


def _first_match(rw, op):
    rules = RULES.get(op.type, ())
    if not rules or op.control_inputs or len(op.outputs) != 1:
        return None, None
    inputs = rw.images(op.inputs)
    for rule in rules:
        replacement = rule.apply(rw, op, inputs)
        if replacement is None:
            continue
        if rw.op_image(op) is None and not _same_type(replacement, op.outputs[0]):
            continue
        return rule, replacement
    return None, None


def _same_type(replacement, original) -> bool:
    return replacement.dtype is original.dtype and replacement.shape == original.shape


# -- what is known about a tensor ---------------------------------------------------------------
def _uniform_const(op):
    value = np.asarray(op.attrs["value"])
    if value.size == 0 or value.dtype.kind not in "biuf":
        return None
    first = value.reshape(-1)[0]
    return first if np.all(value == first) else None


def _fill_value(op):
    return uniform_value(op.inputs[1])


# The value every element of a tensor has, by the type of the op that makes it.
UNIFORM_VALUE = {
    "Const": _uniform_const,
    "ZerosLike": lambda op: 0,
    "OnesLike": lambda op: 1,
    "Fill": _fill_value,
}


def uniform_value(tensor):
    """The value all elements of ``tensor`` share, if known from its op; else None."""
    if tensor.op.control_inputs:
        return None
    rule = UNIFORM_VALUE.get(tensor.op.type)
    return None if rule is None else rule(tensor.op)


def _does_not_broadcast(x, operand) -> bool:
    """True when ``x op operand`` has exactly ``x``'s shape for every value ``x`` can have."""
    x_dims, dims = x.shape.as_tuple(), operand.shape.as_tuple()
    if x_dims is None or dims is None or None in dims or len(dims) > len(x_dims):
        return False
    tail = x_dims[len(x_dims) - len(dims):]
    return all(d == 1 or (xd is not None and xd == d) for xd, d in zip(tail, dims))


def _constant(tensor):
    if tensor.op.control_inputs:
        return None
    return registry.constant_value(tensor)


def _inner(tensor, op_type):
    """The op making ``tensor`` if it has type ``op_type`` and no control inputs."""
    op = tensor.op
    return op if op.type == op_type and not op.control_inputs else None


# -- rules --------------------------------------------------------------------------------------
def _neutral_right(value):
    def rule(rw, op, inputs):
        x, operand = inputs
        if uniform_value(operand) == value and _does_not_broadcast(x, operand):
            return x
        return None
    return rule


def _neutral_left(value):
    def rule(rw, op, inputs):
        operand, x = inputs
        if uniform_value(operand) == value and _does_not_broadcast(x, operand):
            return x
        return None
    return rule


def _double_negation(rw, op, inputs):
    inner = _inner(inputs[0], "Neg")
    return None if inner is None else inner.inputs[0]


def _transpose_of_transpose(rw, op, inputs):
    x, perm = inputs
    inner = _inner(x, "Transpose")
    outer_perm = _constant(perm)
    if inner is None or outer_perm is None:
        return None
    inner_perm = _constant(inner.inputs[1])
    if inner_perm is None:
        return None
    # out[i] = inner[outer[i]] = x[inner_perm[outer_perm[i]]]
    composed = np.asarray(inner_perm)[np.asarray(outer_perm)].astype(perm.dtype.np)
    if np.array_equal(composed, np.arange(composed.size)):
        return inner.inputs[0]
    const = rw.create("Const", [], {"value": _frozen(composed), "dtype": perm.dtype}, like=op,
                      name=f"{op.name}/perm")
    return rw.create("Transpose", [inner.inputs[0], const.outputs[0]], dict(op.attrs), like=op,
                     replaces=op).outputs[0]


def _identity_transpose(rw, op, inputs):
    x, perm = inputs
    value = _constant(perm)
    if value is None or not np.array_equal(value, np.arange(np.size(value))):
        return None
    return x


def _reshape_of_reshape(rw, op, inputs):
    x, shape = inputs
    inner = _inner(x, "Reshape")
    if inner is None:
        return None
    source = inner.inputs[0]
    # The inner reshape could fail at run time (wrong element count) unless the counts are
    # statically known to agree; dropping it must not drop that error.
    n = source.shape.num_elements()
    if n is None or n != x.shape.num_elements():
        return None
    return rw.create("Reshape", [source, shape], dict(op.attrs), like=op,
                     replaces=op).outputs[0]


def _reshape_to_own_shape(rw, op, inputs):
    x = inputs[0]
    if x.shape.is_fully_defined() and x.shape == op.outputs[0].shape:
        return x
    return None


def _bypass(rw, op, inputs):
    x = inputs[0]
    requested_copy = op.device and op.device != x.op.device
    return None if requested_copy else x


def _cast_to_own_dtype(rw, op, inputs):
    x = inputs[0]
    return x if x.dtype is op.attrs["DstT"] else None


def _frozen(array):
    array.flags.writeable = False
    return array


RULES: dict = {
    "Mul": (Rule("x*1", _neutral_right(1)), Rule("1*x", _neutral_left(1))),
    "Add": (Rule("x+0", _neutral_right(0)), Rule("0+x", _neutral_left(0))),
    "Sub": (Rule("x-0", _neutral_right(0)),),
    "RealDiv": (Rule("x/1", _neutral_right(1)),),
    "Neg": (Rule("-(-x)", _double_negation),),
    "Transpose": (Rule("identity perm", _identity_transpose),
                  Rule("transpose of transpose", _transpose_of_transpose)),
    "Reshape": (Rule("reshape to own shape", _reshape_to_own_shape),
                Rule("reshape of reshape", _reshape_of_reshape)),
    "Identity": (Rule("identity", _bypass),),
    "StopGradient": (Rule("stop_gradient", _bypass),),
    "PlaceholderWithDefault": (Rule("unfed default", _bypass),),
    "Cast": (Rule("cast to own dtype", _cast_to_own_dtype),),
}
