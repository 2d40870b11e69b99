"""Neural-network ops: activations, softmax, bias add, 2-D convolution, pooling and losses.

Each op sits on one screen: its OpDef (inference, kernel, gradient, fusion kind, cost) and then
the public ``tw.nn`` function that builds it, under TF1's name and argument names. The family is
split over four modules, and this one gathers their public names (``tw.nn`` takes them from
here):

* ``ops/activations.py`` — relu, relu6, elu, softplus, softmax, log_softmax
* ``ops/conv.py`` — conv2d, and the sliding-window geometry it shares with the pools
* ``ops/pooling.py`` — max_pool, avg_pool
* this module — bias_add, and the losses: l2_loss and the softmax, sparse softmax and sigmoid
  cross entropies

Each imports only the modules listed before it, so the family has no import cycle.
"""

from __future__ import annotations

import numpy as np

from tensorweave import errors
from tensorweave.graph.core import Tensor
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops import activations as _activations
from tensorweave.ops import array as array_ops
from tensorweave.ops import conv as _conv
from tensorweave.ops import math as math_ops
from tensorweave.ops import pooling as _pooling
from tensorweave.ops.activations import *  # noqa: F401,F403
from tensorweave.ops.activations import (_float_input, _is_zero, _shifted_logits,
                                         _softmax_axis_arg, _softplus_grad, log_softmax, softmax)
from tensorweave.ops.common import NUMBERS, check_dtype, convert_to_tensor, normalize_axis, output
from tensorweave.ops.conv import *  # noqa: F401,F403
from tensorweave.ops.pooling import *  # noqa: F401,F403
from tensorweave.ops.registry import OpDef, apply_op, register

__all__ = (_activations.__all__ + ["bias_add"] + _conv.__all__ + _pooling.__all__
           + ["l2_loss", "softmax_cross_entropy_with_logits",
              "softmax_cross_entropy_with_logits_v2", "sparse_softmax_cross_entropy_with_logits",
              "sigmoid_cross_entropy_with_logits"])


# -- BiasAdd --------------------------------------------------------------------------------------
def _channel_axis(data_format: str) -> int:
    return 1 if data_format.startswith("NC") else -1


def _bias_add_infer(op):
    value, bias = op.inputs
    if value.dtype is not bias.dtype:
        raise TypeError(f"bias of dtype {bias.dtype.name} does not match value of dtype "
                        f"{value.dtype.name}")
    if bias.shape.rank is not None and bias.shape.rank != 1:
        raise ValueError(f"bias must be 1-D, got shape {bias.shape}")
    if value.shape.rank is not None and value.shape.rank < 2:
        raise ValueError(f"value must have rank >= 2, got shape {value.shape}")
    if value.shape.rank is not None and bias.shape.rank is not None:
        channels = value.shape.as_tuple()[_channel_axis(op.attrs["data_format"])]
        size = bias.shape.as_tuple()[0]
        if channels is not None and size is not None and channels != size:
            raise ValueError(f"bias of shape {bias.shape} must have the size of the channel "
                             f"dimension of value {value.shape} ({op.attrs['data_format']})")
    return [(value.dtype, value.shape)]


def _bias_view(bias, rank, data_format):
    """``bias`` shaped to broadcast along the channel axis of a rank-``rank`` value."""
    if _channel_axis(data_format) == -1:
        return bias
    return bias.reshape((-1,) + (1,) * (rank - 2))


def _bias_add_kernel(attrs, xp):
    data_format = attrs["data_format"]

    def bias_add_kernel(value, bias):
        return value + _bias_view(bias, value.ndim, data_format)
    return bias_add_kernel


def _bias_add_grad(op, g):
    return [g, output(apply_op("BiasAddGrad", [g], {"data_format": op.attrs["data_format"]},
                               name="BiasAddGrad"))]


register(OpDef("BiasAdd", _bias_add_infer, _bias_add_kernel, grad=_bias_add_grad,
               fusion="broadcast"))


def bias_add(value, bias, data_format=None, name=None) -> Tensor:
    """``value + bias`` with the 1-D ``bias`` added along the channel axis (last for NHWC)."""
    value = convert_to_tensor(value)
    bias = convert_to_tensor(bias, dtype=value.dtype) if not isinstance(bias, Tensor) else bias
    check_dtype("BiasAdd", value, NUMBERS, arg="value", name=name)
    data_format = _bias_data_format(data_format)
    return output(apply_op("BiasAdd", [value, bias], {"data_format": data_format},
                           name=name or "BiasAdd"))


_BIAS_FORMATS = ("NHWC", "NCHW", "NWC", "NCW", "NDHWC", "NCDHW")


def _bias_data_format(data_format):
    data_format = "NHWC" if data_format is None else str(data_format)
    if data_format not in _BIAS_FORMATS:
        raise ValueError(f"data_format must be one of {', '.join(_BIAS_FORMATS)} (channels last "
                         f"or channels second), got {data_format!r}")
    return data_format


def _bias_add_grad_infer(op):
    g = op.inputs[0]
    if g.shape.rank is not None and g.shape.rank < 2:
        raise ValueError(f"the gradient of a bias add must have rank >= 2, got shape {g.shape}")
    if g.shape.rank is None:
        return [(g.dtype, [None])]
    return [(g.dtype, [g.shape.as_tuple()[_channel_axis(op.attrs["data_format"])]])]


def _bias_add_grad_kernel(attrs, xp):
    channel = _channel_axis(attrs["data_format"])

    def bias_add_grad(g):
        if channel == -1 and g.dtype.kind == "f":
            # A ones-vector GEMV sums the rows ~10x faster than a multi-axis xp.sum.
            rows = g.reshape(-1, g.shape[-1])
            return xp.ones(rows.shape[0], dtype=g.dtype) @ rows
        axes = tuple(a for a in range(g.ndim) if a != channel % g.ndim)
        return xp.sum(g, axis=axes, dtype=g.dtype)
    return bias_add_grad


def _bias_add_grad_grad(op, gg):
    # BiasAddGrad is linear: its adjoint broadcasts gg back along the channel axis.
    g = op.inputs[0]
    return [output(apply_op("BiasAdd", [array_ops.zeros_like(g), gg],
                            {"data_format": op.attrs["data_format"]}, name="BiasAdd"))]


register(OpDef("BiasAddGrad", _bias_add_grad_infer, _bias_add_grad_kernel,
               grad=_bias_add_grad_grad, fusion="reduce"))


# -- L2Loss ---------------------------------------------------------------------------------------
def _l2_loss_kernel(attrs, xp):
    def l2_loss_kernel(t):
        flat = t.reshape(-1)
        return xp.asarray(xp.dot(flat, flat) / 2, dtype=t.dtype)
    return l2_loss_kernel


register(OpDef("L2Loss", lambda op: [(op.inputs[0].dtype, [])], _l2_loss_kernel,
               grad=lambda op, g: [math_ops.multiply(op.inputs[0], g)], fusion="reduce"))


def l2_loss(t, name=None) -> Tensor:
    """``sum(t ** 2) / 2``: half the squared L2 norm, a scalar (no square root)."""
    t = _float_input("L2Loss", t, name)
    return output(apply_op("L2Loss", [t], name=name or "L2Loss"))


# -- SoftmaxCrossEntropyWithLogits ----------------------------------------------------------------
def _xent_infer(op):
    logits, labels = op.inputs
    if labels.dtype is not logits.dtype:
        raise TypeError(f"labels of dtype {labels.dtype.name} do not match logits of dtype "
                        f"{logits.dtype.name}")
    if not logits.shape.is_compatible_with(labels.shape):
        raise ValueError(f"logits and labels must have the same shape, got logits shape "
                         f"{logits.shape} and labels shape {labels.shape}")
    shape = logits.shape.merge_with(labels.shape)
    return [(logits.dtype, _without_axis(shape, op.attrs["axis"], "logits")),
            (logits.dtype, shape)]


def _without_axis(shape: TensorShape, axis, what):
    dims = shape.as_tuple()
    if dims is None:
        return TensorShape(None)
    if not dims:
        raise ValueError(f"{what} must have rank >= 1, got a scalar")
    axis = normalize_axis(axis, len(dims))
    return TensorShape(dims[:axis] + dims[axis + 1:])


def _xent_kernel(attrs, xp):
    axis = attrs["axis"]

    def softmax_cross_entropy(logits, labels):
        if xp is np and logits.size and logits.shape == labels.shape:
            return _xent_in_place(logits, labels, axis)
        shifted = _shifted_logits(xp, logits, axis) if logits.size else logits
        sum_exp = xp.sum(xp.exp(shifted), axis=axis, keepdims=True)
        log_probs = shifted - xp.log(sum_exp)
        loss = -xp.sum(labels * log_probs, axis=axis)
        # d loss / d logits = softmax * sum(labels) - labels (softmax - labels for distributions)
        backprop = xp.exp(log_probs) * xp.sum(labels, axis=axis, keepdims=True) - labels
        return loss, backprop
    return softmax_cross_entropy


def _xent_in_place(logits, labels, axis):
    """The kernel's formulas with numpy's ufuncs called directly and two buffers reused: the
    same operations on the same values in the same order (so the same bits), without the
    temporaries and Python wrappers that cost as much as the arithmetic on a [100, 10] batch."""
    shifted = np.subtract(logits, np.maximum.reduce(logits, axis=axis, keepdims=True))
    scratch = np.exp(shifted)
    log_sum_exp = np.log(np.add.reduce(scratch, axis=axis, keepdims=True))
    log_probs = np.subtract(shifted, log_sum_exp, out=shifted)
    loss = np.negative(np.add.reduce(np.multiply(labels, log_probs, out=scratch), axis=axis))
    backprop = np.exp(log_probs, out=scratch)
    np.multiply(backprop, np.add.reduce(labels, axis=axis, keepdims=True), out=backprop)
    np.subtract(backprop, labels, out=backprop)
    return loss, backprop


def _xent_grad(op, g_loss, g_backprop):
    logits, labels = op.inputs
    axis = op.attrs["axis"]
    g = array_ops.expand_dims(g_loss, axis)
    logits_grad = math_ops.multiply(g, op.outputs[1])
    labels_grad = math_ops.multiply(g, math_ops.negative(log_softmax(logits, axis=axis)))
    if not _is_zero(g_backprop):
        # backprop = p * sum(labels) - labels, with p = softmax(logits).
        p = softmax(logits, axis=axis)
        inner = math_ops.reduce_sum(math_ops.multiply(g_backprop, p), axis=axis, keepdims=True)
        total = math_ops.reduce_sum(labels, axis=axis, keepdims=True)
        through_p = math_ops.multiply(math_ops.multiply(total, p),
                                      math_ops.subtract(g_backprop, inner))
        logits_grad = math_ops.add(logits_grad, through_p)
        labels_grad = math_ops.add(labels_grad, math_ops.subtract(inner, g_backprop))
    return [logits_grad, labels_grad]


# Outputs (loss, backprop) as TF's op: backprop is d loss / d logits, reused by the gradient.
register(OpDef("SoftmaxCrossEntropyWithLogits", _xent_infer, _xent_kernel, grad=_xent_grad))


def _check_named_only(sentinel, fn_name):
    if sentinel is not None:
        raise ValueError(f"only call `{fn_name}` with named arguments (labels=..., logits=..., "
                         f"...)")


def _xent(labels, logits, axis, name, op_name):
    logits = _float_input("SoftmaxCrossEntropyWithLogits", logits, name)
    labels = convert_to_tensor(labels, dtype=logits.dtype) if not isinstance(labels, Tensor) \
        else labels
    op = apply_op("SoftmaxCrossEntropyWithLogits", [logits, labels], {"axis": axis},
                  name=name or op_name)
    return op.outputs[0]


def softmax_cross_entropy_with_logits_v2(labels, logits, axis=None, name=None,
                                         dim=None) -> Tensor:
    """``-sum(labels * log_softmax(logits), axis)`` per example; backpropagates into both
    ``logits`` and ``labels`` (each row of ``labels`` should be a probability distribution)."""
    axis = _softmax_axis_arg(axis, dim)
    return _xent(labels, logits, axis, name, "softmax_cross_entropy_with_logits")


def softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, dim=-1,
                                      name=None, axis=None) -> Tensor:
    """TF1's first version of the softmax cross entropy: as ``_v2``, but no gradient flows into
    ``labels``. Call it with named arguments."""
    _check_named_only(_sentinel, "softmax_cross_entropy_with_logits")
    axis = _softmax_axis_arg(axis, None if dim == -1 else dim)
    labels = array_ops.stop_gradient(labels)
    return _xent(labels, logits, axis, name, "softmax_cross_entropy_with_logits")


# -- SparseSoftmaxCrossEntropyWithLogits ----------------------------------------------------------
def _sparse_xent_infer(op):
    logits, labels = op.inputs
    if logits.shape.rank == 0:
        raise ValueError("logits must have rank >= 1, got a scalar")
    expected = _without_axis(logits.shape, -1, "logits")
    if not labels.shape.is_compatible_with(expected):
        raise ValueError(f"labels of shape {labels.shape} must have the shape of logits "
                         f"{logits.shape} without its last dimension, {expected}")
    return [(logits.dtype, expected.merge_with(labels.shape)), (logits.dtype, logits.shape)]


def _check_labels(xp, labels, num_classes):
    if labels.size == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise errors.InvalidArgumentError(
            None, None, f"received a label value of {bad} which is outside the valid range of "
                        f"[0, {num_classes})")


def _sparse_xent_kernel(attrs, xp):
    def sparse_softmax_cross_entropy(logits, labels):
        num_classes = logits.shape[-1]
        _check_labels(xp, labels, num_classes)
        shifted = _shifted_logits(xp, logits, -1) if logits.size else logits
        log_probs = shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))
        index = labels.astype(xp.intp)[..., None]
        loss = -xp.take_along_axis(log_probs, index, axis=-1)[..., 0]
        one_hot = index == xp.arange(num_classes)
        backprop = xp.exp(log_probs) - one_hot.astype(logits.dtype)
        return loss, backprop
    return sparse_softmax_cross_entropy


def _sparse_xent_grad(op, g_loss, g_backprop):
    logits = op.inputs[0]
    logits_grad = math_ops.multiply(array_ops.expand_dims(g_loss, -1), op.outputs[1])
    if not _is_zero(g_backprop):
        # backprop = softmax(logits) - one_hot(labels); only the softmax depends on logits.
        p = softmax(logits)
        inner = math_ops.reduce_sum(math_ops.multiply(g_backprop, p), axis=-1, keepdims=True)
        logits_grad = math_ops.add(logits_grad,
                                   math_ops.multiply(p, math_ops.subtract(g_backprop, inner)))
    return [logits_grad, None]


register(OpDef("SparseSoftmaxCrossEntropyWithLogits", _sparse_xent_infer, _sparse_xent_kernel,
               grad=_sparse_xent_grad))


def sparse_softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None,
                                             name=None) -> Tensor:
    """``-log_softmax(logits)[label]`` per example, with ``labels`` the int32/int64 class ids
    (shape of ``logits`` without its last axis). A label outside [0, classes) is an
    InvalidArgumentError at run time. Call it with named arguments."""
    _check_named_only(_sentinel, "sparse_softmax_cross_entropy_with_logits")
    logits = _float_input("SparseSoftmaxCrossEntropyWithLogits", logits, name)
    labels = convert_to_tensor(labels)
    check_dtype("SparseSoftmaxCrossEntropyWithLogits", labels, {"int32", "int64"}, arg="labels",
                name=name)
    op = apply_op("SparseSoftmaxCrossEntropyWithLogits", [logits, labels],
                  name=name or "SparseSoftmaxCrossEntropyWithLogits")
    return op.outputs[0]


# -- SigmoidCrossEntropyWithLogits ----------------------------------------------------------------
def _sigmoid_xent_infer(op):
    logits, labels = op.inputs
    if labels.dtype is not logits.dtype:
        raise TypeError(f"labels of dtype {labels.dtype.name} do not match logits of dtype "
                        f"{logits.dtype.name}")
    if not logits.shape.is_compatible_with(labels.shape):
        raise ValueError(f"logits and labels must have the same shape, got logits shape "
                         f"{logits.shape} and labels shape {labels.shape}")
    return [(logits.dtype, logits.shape.merge_with(labels.shape))]


def _sigmoid_xent_kernel(attrs, xp):
    def sigmoid_cross_entropy(x, z):
        # max(x, 0) - x * z + log(1 + exp(-|x|)): no overflow for any x.
        return xp.maximum(x, 0) - x * z + xp.log1p(xp.exp(-xp.abs(x)))
    return sigmoid_cross_entropy


def _sigmoid_xent_grad(op, g):
    # d/dx = sigmoid(x) - z (sigmoid(x) * g is SoftplusGrad); d/dz = -x.
    x, z = op.inputs
    dx = math_ops.subtract(_softplus_grad(g, x), math_ops.multiply(g, z))
    dz = math_ops.negative(math_ops.multiply(g, x))
    return [dx, dz]


# Not a TF kernel (TF composes it); one op here keeps it stable and gives an exact gradient.
register(OpDef("SigmoidCrossEntropyWithLogits", _sigmoid_xent_infer, _sigmoid_xent_kernel,
               grad=_sigmoid_xent_grad, fusion="elementwise"))


def sigmoid_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None,
                                      name=None) -> Tensor:
    """Elementwise logistic loss ``-z*log(sigmoid(x)) - (1-z)*log(1-sigmoid(x))`` of logits
    ``x`` and labels ``z``, computed stably. Call it with named arguments."""
    _check_named_only(_sentinel, "sigmoid_cross_entropy_with_logits")
    logits = _float_input("SigmoidCrossEntropyWithLogits", logits, name)
    labels = convert_to_tensor(labels, dtype=logits.dtype) if not isinstance(labels, Tensor) \
        else labels
    return output(apply_op("SigmoidCrossEntropyWithLogits", [logits, labels],
                           name=name or "logistic_loss"))
