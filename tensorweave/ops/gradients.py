"""Symbolic reverse-mode differentiation: ``tw.gradients`` adds the backward graph.

Walk the ops that lie on a path from ``xs`` to ``ys`` in reverse creation order (creation order
is topological). At each op, the gradients that reached its outputs are summed (``AddN``), and
the op's OpDef gradient rule turns them into gradients of its inputs. Integer and bool tensors
carry no gradient; ``stop_gradients`` and ``StopGradient`` ops cut the walk.
"""

from __future__ import annotations

import contextlib

from tensorweave import errors
from tensorweave.graph.core import Tensor
from tensorweave.ops import registry
from tensorweave.ops.common import convert_to_tensor


def gradients(ys, xs, grad_ys=None, name="gradients", stop_gradients=None,
              colocate_gradients_with_ops=False, gate_gradients=False, aggregation_method=None):
    """d(sum(ys))/d(x) for each x in ``xs``: a list of Tensors (None where x does not affect ys).

    ``grad_ys`` weights each y (default: ones); ``stop_gradients`` are treated as constants.
    With ``colocate_gradients_with_ops``, the gradient ops of each op are placed on the device
    that op requested (what model-parallel programs want: each layer's backward pass runs
    where its forward pass does).
    """
    from tensorweave.ops.array import ones_like
    from tensorweave.ops.math import add_n

    ys = _as_list(ys)
    xs = _as_list(xs)
    ys = [convert_to_tensor(y) for y in ys]
    xs = [_as_tensor(x) for x in xs]
    grad_ys = _as_list(grad_ys) if grad_ys is not None else [None] * len(ys)
    if len(grad_ys) != len(ys):
        raise ValueError(f"gradients: {len(grad_ys)} grad_ys given for {len(ys)} ys")
    stops = {_as_tensor(t) for t in _as_list(stop_gradients or [])}
    graph = ys[0].graph

    between = _ops_between(ys, xs, stops)
    pending: dict = {}  # tensor -> list of gradient contributions

    with graph.as_default(), graph.name_scope(name):
        for y, gy in zip(ys, grad_ys):
            if not _differentiable(y):
                continue
            gy = ones_like(y, name=f"grad_ys_{ys.index(y)}") if gy is None \
                else convert_to_tensor(gy, dtype=y.dtype)
            pending.setdefault(y, []).append(gy)

        for op in sorted(between, key=lambda o: o._id, reverse=True):
            out_grads = [_summed(pending.get(t), add_n) for t in op.outputs]
            if all(g is None for g in out_grads):
                continue
            if any(t in stops for t in op.outputs):
                continue
            in_grads = _apply_rule(op, out_grads, colocate_gradients_with_ops)
            for t, g in zip(op.inputs, in_grads):
                if g is None or not _differentiable(t):
                    continue
                pending.setdefault(t, []).append(g)
        return [_summed(pending.get(x), add_n) for x in xs]


def _apply_rule(op, out_grads, colocate=False):
    from tensorweave.ops.array import zeros_like

    op_def = registry.get(op.type)
    if op_def.grad is None:
        raise LookupError(f"no gradient rule is defined for op {errors.describe(op)}; wrap the "
                          f"input in tw.stop_gradient if no gradient should flow through it")
    if op_def.grad is registry.NO_GRADIENT:
        return [None] * len(op.inputs)
    out_grads = [zeros_like(t) if g is None and _differentiable(t) else g
                 for t, g in zip(op.outputs, out_grads)]
    graph = op.graph
    place = graph.device(op.device) if colocate and op.device else contextlib.nullcontext()
    with graph.name_scope(f"{op.name.split('/')[-1]}_grad"), place:
        grads = list(op_def.grad(op, *out_grads))
    if len(grads) != len(op.inputs):
        raise errors.InternalError(None, op, f"gradient rule of {op.type} returned {len(grads)} "
                                             f"gradients for {len(op.inputs)} inputs")
    return grads


def _ops_between(ys, xs, stops) -> set:
    """Ops reachable forward from xs (through data edges) and backward from ys."""
    forward = set()
    stack = [x.op for x in xs]
    seen_x_ops = set()
    while stack:
        op = stack.pop()
        if op in seen_x_ops:
            continue
        seen_x_ops.add(op)
        for t in op.outputs:
            if t in stops:
                continue
            for consumer in t._consumers:
                forward.add(consumer)
                stack.append(consumer)
    x_set = set(xs)
    backward = set()
    stack = [y.op for y in ys]
    while stack:
        op = stack.pop()
        if op in backward:
            continue
        backward.add(op)
        for t in op.inputs:
            if t not in x_set and t not in stops:
                stack.append(t.op)
    return forward & backward


def _summed(contributions, add_n):
    if not contributions:
        return None
    if len(contributions) == 1:
        return contributions[0]
    return add_n(contributions)


def _differentiable(t: Tensor) -> bool:
    return t.dtype.is_floating


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _as_tensor(value):
    if hasattr(value, "_as_graph_element"):
        value = value._as_graph_element()
    return convert_to_tensor(value)
