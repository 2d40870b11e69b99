"""Math ops: elementwise arithmetic, comparisons, logic, matmul and reductions.

Elementwise ops share three rules from ``ops.common``: binary inputs take one dtype (a Python value
adopts the other input's), outputs broadcast, and gradients of broadcast inputs are summed back
to the input's shape (``unbroadcast``).
"""

from __future__ import annotations

import numpy as np

from tensorweave.graph.core import Tensor
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops.common import (NUMBERS, binary_inputs, broadcast_inputs, check_dtype,
                                    convert_to_tensor, output)
from tensorweave.ops.registry import OpDef, apply_op, register

__all__ = ["add", "matmul"]


def unbroadcast(grad: Tensor, like: Tensor) -> Tensor:
    """Sum ``grad`` over the axes along which ``like`` was broadcast, back to ``like``'s shape."""
    from tensorweave.ops.array import reshape, shape
    if grad.shape.is_fully_defined() and like.shape.is_fully_defined() \
            and grad.shape == like.shape:
        return grad
    axes = apply_op("BroadcastGradientArgs", [shape(grad), shape(like)]).outputs[0]
    summed = reduce_sum(grad, axis=axes, keepdims=True)
    return reshape(summed, shape(like))


# -- Add ----------------------------------------------------------------------------------------
register(OpDef("Add", broadcast_inputs, lambda attrs, xp: xp.add, fusion="broadcast",
               grad=lambda op, g: [unbroadcast(g, op.inputs[0]), unbroadcast(g, op.inputs[1])]))


def add(x, y, name=None) -> Tensor:
    """``x + y`` elementwise, with broadcasting."""
    x, y = binary_inputs("Add", x, y, name)
    check_dtype("Add", x, NUMBERS, name=name)
    return output(apply_op("Add", [x, y], name=name or "Add"))


# -- MatMul -------------------------------------------------------------------------------------
def _matmul_infer(op):
    a, b = op.inputs
    if a.dtype is not b.dtype:
        raise TypeError(f"matmul of {a.dtype.name} and {b.dtype.name}")
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    sa, sb = a.shape.as_tuple(), b.shape.as_tuple()
    if sa is None or sb is None:
        return [(a.dtype, TensorShape(None))]
    if len(sa) < 2 or len(sb) < 2:
        raise ValueError(f"matmul needs tensors of rank >= 2, got shapes {a.shape} and {b.shape}")
    m, k1 = (sa[-1], sa[-2]) if ta else (sa[-2], sa[-1])
    k2, n = (sb[-1], sb[-2]) if tb else (sb[-2], sb[-1])
    if k1 is not None and k2 is not None and k1 != k2:
        raise ValueError(f"inner dimensions must agree, but are {k1} and {k2}: matmul of shapes "
                         f"{a.shape}{' (transposed)' if ta else ''} and "
                         f"{b.shape}{' (transposed)' if tb else ''}")
    batch = _batch_dims(TensorShape(sa[:-2]), TensorShape(sb[:-2]))
    return [(a.dtype, batch.concatenate([m, n]))]


def _batch_dims(a, b):
    from tensorweave.graph.shapes import broadcast_shapes
    return broadcast_shapes(a, b)


def _matmul_kernel(attrs, xp):
    ta, tb = attrs["transpose_a"], attrs["transpose_b"]
    if not ta and not tb:
        return xp.matmul

    def matmul_t(a, b):
        if ta:
            a = xp.swapaxes(a, -1, -2)
        if tb:
            b = xp.swapaxes(b, -1, -2)
        return xp.matmul(a, b)
    return matmul_t


def _matmul_grad(op, g):
    a, b = op.inputs
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    if not ta and not tb:
        ga, gb = matmul(g, b, transpose_b=True), matmul(a, g, transpose_a=True)
    elif not ta and tb:
        ga, gb = matmul(g, b), matmul(g, a, transpose_a=True)
    elif ta and not tb:
        ga, gb = matmul(b, g, transpose_b=True), matmul(a, g)
    else:
        ga, gb = matmul(b, g, transpose_a=True, transpose_b=True), \
            matmul(g, a, transpose_a=True, transpose_b=True)
    return [unbroadcast_batch(ga, a), unbroadcast_batch(gb, b)]


def unbroadcast_batch(grad, like):
    """Sum the gradient of a batch matmul operand over batch dims it was broadcast along."""
    if grad.shape.rank is not None and grad.shape.rank == like.shape.rank \
            and grad.shape.is_compatible_with(like.shape):
        return grad
    return unbroadcast(grad, like)


def _matmul_cost(op):
    from tensorweave.ops.registry import Cost, default_cost
    base = default_cost(op)
    a = op.inputs[0]
    k = a.shape.as_tuple()[-2 if op.attrs["transpose_a"] else -1] if a.shape.rank else 1
    out = op.outputs[0].shape.num_elements() or 1
    return Cost(2.0 * out * (k or 1), base.bytes_read, base.bytes_written)


register(OpDef("MatMul", _matmul_infer, _matmul_kernel, grad=_matmul_grad, cost=_matmul_cost))


def matmul(a, b, transpose_a=False, transpose_b=False, name=None) -> Tensor:
    """Matrix product of the last two dims; leading dims are batch dims and broadcast."""
    a = convert_to_tensor(a)
    b = convert_to_tensor(b, dtype=a.dtype) if not isinstance(b, Tensor) else b
    return output(apply_op("MatMul", [a, b], {"transpose_a": bool(transpose_a),
                                              "transpose_b": bool(transpose_b)},
                           name=name or "MatMul"))


# -- AddN ---------------------------------------------------------------------------------------
def _add_n_infer(op):
    dtype = op.inputs[0].dtype
    for t in op.inputs[1:]:
        if t.dtype is not dtype:
            raise TypeError(f"all inputs of add_n must have one dtype; got {dtype.name} and "
                            f"{t.dtype.name}")
    shape = op.inputs[0].shape
    for t in op.inputs[1:]:
        if not shape.is_compatible_with(t.shape):
            raise ValueError(f"all inputs of add_n must have one shape; got {shape} and {t.shape}")
        shape = shape.merge_with(t.shape)
    return [(dtype, shape)]


def _add_n_kernel(attrs, xp):
    def add_n_kernel(*xs):
        total = xp.add(xs[0], xs[1]) if len(xs) > 1 else xp.array(xs[0], copy=True)
        for x in xs[2:]:
            if isinstance(total, xp.ndarray):
                xp.add(total, x, out=total)
            else:
                total = xp.add(total, x)
        return total
    return add_n_kernel


register(OpDef("AddN", _add_n_infer, _add_n_kernel, fusion="elementwise",
               grad=lambda op, g: [g] * len(op.inputs)))


def add_n(inputs, name=None) -> Tensor:
    """Elementwise sum of a list of tensors of one shape and dtype."""
    inputs = [convert_to_tensor(t) for t in inputs]
    if not inputs:
        raise ValueError("add_n needs at least one input")
    if len(inputs) == 1 and name is None:
        return inputs[0]
    return output(apply_op("AddN", inputs, {"N": len(inputs)}, name=name or "AddN"))


__all__ += ["add_n"]


# -- BroadcastGradientArgs ------------------------------------------------------------------------
def _broadcast_gradient_args_kernel(attrs, xp):
    def reduction_axes(grad_shape, input_shape):
        """Axes of a gradient of shape ``grad_shape`` to sum to get back to ``input_shape``."""
        grad_shape = [int(d) for d in grad_shape]
        input_shape = [int(d) for d in input_shape]
        lead = len(grad_shape) - len(input_shape)
        axes = list(range(lead))
        for i, d in enumerate(input_shape):
            if d == 1 and grad_shape[lead + i] != 1:
                axes.append(lead + i)
        return np.array(axes, dtype=np.int32)
    return reduction_axes


register(OpDef("BroadcastGradientArgs",
               lambda op: [(op.inputs[0].dtype, [None])],
               _broadcast_gradient_args_kernel, grad=None))
