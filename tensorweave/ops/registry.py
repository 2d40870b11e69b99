"""The op registry: one ``OpDef`` per op type, and ``apply_op`` that adds an op to a graph.

An OpDef is everything the system knows about an op type, kept in one place:

* ``infer(op) -> [(dtype, shape), ...]`` — output specs from the op's inputs and attrs; raises
  ValueError/TypeError in the user's terms (``apply_op`` adds which op and where).
* ``kernel(attrs, xp) -> fn`` — builds the kernel for one op instance against an array module
  (``numpy`` or ``cupy``): ``fn(*input_arrays)`` returns the output (or a tuple of outputs). Most
  elementwise ops return the array module's ufunc itself, so a compiled step calls numpy directly.
  With ``uses_context`` the kernel is called ``fn(ctx, *inputs)`` and ``ctx`` is the step context
  (variables, random state, rendezvous).
* ``grad(op, *output_grads) -> [input_grad or None, ...]`` — builds the gradient subgraph;
  ``NO_GRADIENT`` says the op is not differentiable (its inputs get None); leaving ``grad`` unset
  means nobody wrote one (``tw.gradients`` raises LookupError when it reaches it).
* ``fusion`` — "elementwise", "broadcast", "reduce" or "opaque" (the default rule for an op that
  says nothing); ``stateful`` ops are never folded, merged or fused.
* ``must_feed`` — running the op without feeding its output is an error (placeholders).
* ``static_value(op)`` — the op's value when static shapes alone decide it (``Shape``, ``Size``),
  for shape inference; None otherwise.
* ``cost(op) -> Cost`` — flops and bytes from static shapes (default: one flop per output
  element, bytes of inputs and outputs).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from tensorweave import errors
from tensorweave.graph import core
from tensorweave.graph.shapes import TensorShape


def NO_GRADIENT(op, *grads):
    """Gradient rule of a non-differentiable op: no gradient flows to any input."""
    return [None] * len(op.inputs)


FUSION_KINDS = ("elementwise", "broadcast", "reduce", "opaque")


@dataclasses.dataclass(frozen=True)
class Cost:
    flops: float
    bytes_read: float
    bytes_written: float


@dataclasses.dataclass(frozen=True, eq=False)
class OpDef:
    type: str
    infer: Callable
    kernel: Callable | None
    grad: Callable | None = None
    fusion: str = "opaque"
    stateful: bool = False
    uses_context: bool = False
    cost: Callable | None = None
    device_types: tuple = ("CPU", "GPU")
    static_value: Callable | None = None
    must_feed: bool = False
    # The kernel is a BLAS call, which already uses every thread BLAS is allowed.
    blas: bool = False
    # No array of the inputs outlives the kernel's run: nothing it returns or stores is, or
    # views, an input (a task lets such ops read a buffer it rewrites next step; remote.py).
    keeps_no_input: bool = False
    # An update op whose kernel also takes its gradient as a sum of inputs, scaled (attrs
    # ``grad_terms``, ``grad_scale``; passes/fuse_updates.py): the gradient input's index.
    summed_gradient_input: int | None = None

    def __post_init__(self):
        if self.fusion not in FUSION_KINDS:
            raise ValueError(f"OpDef {self.type}: fusion must be one of {FUSION_KINDS}")

    @property
    def foldable(self) -> bool:
        """Whether the op's value depends only on its inputs (constant folding may run it)."""
        return not self.stateful and self.kernel is not None and not self.uses_context


_REGISTRY: dict[str, OpDef] = {}


def register(op_def: OpDef) -> OpDef:
    if op_def.type in _REGISTRY:
        raise ValueError(f"op type {op_def.type!r} is registered twice")
    _REGISTRY[op_def.type] = op_def
    return op_def


def get(op_type: str) -> OpDef:
    try:
        return _REGISTRY[op_type]
    except KeyError:
        raise errors.NotFoundError(None, None, f"unknown op type {op_type!r}: no OpDef is "
                                   f"registered under that name") from None


def lookup(op_type: str) -> OpDef | None:
    return _REGISTRY.get(op_type)


def all_op_types() -> list[str]:
    return sorted(_REGISTRY)


def apply_op(op_type: str, inputs=(), attrs=None, name=None, graph=None) -> core.Operation:
    """Add an op of ``op_type`` to the graph of its inputs (or the default graph)."""
    op_def = get(op_type)
    inputs = list(inputs)
    if graph is None:
        graph = inputs[0].graph if inputs else core.get_default_graph()
    return graph.create_op(op_type, inputs, attrs or {}, name,
                           infer=lambda op: infer_outputs(op_def, op))


def infer_outputs(op_def: OpDef, op: core.Operation) -> list:
    """Run ``op_def.infer`` on ``op``; errors name the op and where the user created it."""
    try:
        specs = op_def.infer(op)
    except (ValueError, TypeError) as e:
        raise type(e)(f"op {errors.describe(op)}: {e}") from None
    except KeyError as e:
        raise ValueError(f"op {errors.describe(op)}: missing attr {e}") from None
    return [(dtype, TensorShape(shape)) for dtype, shape in specs]


def default_cost(op) -> Cost:
    out_elems = sum(_elements(t.shape) for t in op.outputs)
    read = sum(_elements(t.shape) * t.dtype.size for t in op.inputs)
    written = sum(_elements(t.shape) * t.dtype.size for t in op.outputs)
    return Cost(float(out_elems), float(read), float(written))


def cost_of(op) -> Cost:
    rule = get(op.type).cost or default_cost
    return rule(op)


def _elements(shape: TensorShape, unknown: int = 1) -> int:
    dims = shape.as_tuple()
    if dims is None:
        return unknown
    total = 1
    for d in dims:
        total *= unknown if d is None else d
    return total


# -- constant values at graph-construction time --------------------------------------------------
_FOLD_LIMIT = 1 << 16  # elements; larger values are not worth evaluating while building


def constant_value(tensor: core.Tensor):
    """The value of ``tensor`` if it is computable from constants alone (small), else None.

    Shape inference uses it to see through ``tw.reshape(x, tw.stack([a, -1]))`` and the like.
    """
    cache = tensor.op.__dict__.setdefault("_const_cache", {})
    if tensor.value_index in cache:
        return cache[tensor.value_index]
    value = _evaluate_constant(tensor.op)
    for i, t in enumerate(tensor.op.outputs):
        cache[i] = None if value is None else value[i]
    return cache[tensor.value_index]


def _evaluate_constant(op):
    op_def = lookup(op.type)
    if op_def is None or not op_def.foldable or op.control_inputs:
        return None
    if op_def.static_value is not None:
        value = op_def.static_value(op)
        if value is not None:
            return [value]
    inputs = []
    for t in op.inputs:
        v = constant_value(t)
        if v is None:
            return None
        inputs.append(v)
    for t in op.outputs:
        n = t.shape.num_elements()
        if n is None or n > _FOLD_LIMIT:
            return None
    try:
        with np.errstate(all="ignore"):
            result = op_def.kernel(op.attrs, np)(*inputs)
    except Exception:  # a constant that fails to evaluate is left to run time to report
        return None
    return list(result) if len(op.outputs) > 1 else [np.asarray(result)]
