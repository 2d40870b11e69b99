"""Neural-network ops: activations, softmax, bias add, 2-D convolution, pooling and losses.

Each op sits on one screen: its OpDef (inference, kernel, gradient, fusion kind, cost) and then
the public ``tw.nn`` function that builds it, under TF1's name and argument names.

Convolution and pooling are NHWC only. Their kernels share one picture of a sliding window
(``_Window``): the input is padded the way TF pads ("SAME" puts ``total // 2`` before and the rest
after), and each kernel position ``(i, j)`` selects a strided view of the padded input, a "tap",
with one element per output position. Conv2D gathers all taps into an im2col matrix and runs a
GEMM (one per cache-sized slice of the batch); its filter gradient is the transposed GEMM, and
its input gradient a GEMM followed by adding each tap's slice back (col2im), a loop over the
KH*KW kernel positions, never over pixels. Pools combine the taps elementwise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tensorweave import errors
from tensorweave.graph.core import Tensor
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops import array as array_ops
from tensorweave.ops import math as math_ops
from tensorweave.ops.common import (FLOATS, INTEGERS, NUMBERS, check_dtype,
                                    convert_to_tensor, normalize_axis, output, same_as_input)
from tensorweave.ops.registry import (Cost, OpDef, apply_op, constant_value, default_cost,
                                      register)

__all__ = ["relu", "relu6", "elu", "softplus", "softmax", "log_softmax", "bias_add", "conv2d",
           "max_pool", "avg_pool", "l2_loss", "softmax_cross_entropy_with_logits",
           "softmax_cross_entropy_with_logits_v2", "sparse_softmax_cross_entropy_with_logits",
           "sigmoid_cross_entropy_with_logits"]

# Convolution and pooling kernels are GEMMs and strided views: types numpy runs natively.
_CONV_TYPES = frozenset({"float16", "float32", "float64"})
_MAX_POOL_TYPES = _CONV_TYPES | INTEGERS


# -- helpers shared by the elementwise activations ------------------------------------------------
def _float_input(op_type, x, name):
    x = convert_to_tensor(x)
    check_dtype(op_type, x, FLOATS, arg="features", name=name)
    return x


def _gradient_pair_infer(op):
    """Output like input 0 for ``XGrad(gradients, features)``: one dtype, compatible shapes."""
    g, x = op.inputs
    if g.dtype is not x.dtype:
        raise TypeError(f"gradients of dtype {g.dtype.name} do not match features of dtype "
                        f"{x.dtype.name}")
    if not g.shape.is_compatible_with(x.shape):
        raise ValueError(f"gradients of shape {g.shape} do not match features of shape "
                         f"{x.shape}")
    return [(g.dtype, g.shape.merge_with(x.shape))]


def _is_zero(t: Tensor) -> bool:
    """Whether ``t`` is the zeros ``tw.gradients`` supplies for an output nobody differentiated
    (lets a rule skip second-order terms that would be multiplied by zero)."""
    return t.op.type == "ZerosLike"


# -- Relu -----------------------------------------------------------------------------------------
def _relu_kernel(attrs, xp):
    def relu_kernel(x):
        return xp.maximum(x, 0)
    return relu_kernel


register(OpDef("Relu", same_as_input, _relu_kernel, fusion="elementwise",
               grad=lambda op, g: [_relu_grad(g, op.outputs[0])]))


def relu(features, name=None) -> Tensor:
    """``max(features, 0)`` elementwise."""
    features = convert_to_tensor(features)
    check_dtype("Relu", features, NUMBERS - {"uint8", "uint16", "uint32", "uint64"},
                arg="features", name=name)
    return output(apply_op("Relu", [features], name=name or "Relu"))


def _relu_grad_kernel(attrs, xp):
    def relu_grad(g, y):
        return xp.multiply(g, y > 0)
    return relu_grad


# ReluGrad(g, y) = g * (y > 0); linear in g, piecewise constant in y.
register(OpDef("ReluGrad", _gradient_pair_infer, _relu_grad_kernel, fusion="elementwise",
               grad=lambda op, gg: [_relu_grad(gg, op.inputs[1]),
                                    array_ops.zeros_like(op.inputs[1])]))


def _relu_grad(g, y):
    return output(apply_op("ReluGrad", [g, y], name="ReluGrad"))


# -- Relu6 ----------------------------------------------------------------------------------------
def _relu6_kernel(attrs, xp):
    def relu6_kernel(x):
        return xp.clip(x, 0, 6)
    return relu6_kernel


register(OpDef("Relu6", same_as_input, _relu6_kernel, fusion="elementwise",
               grad=lambda op, g: [_relu6_grad(g, op.inputs[0])]))


def relu6(features, name=None) -> Tensor:
    """``min(max(features, 0), 6)`` elementwise."""
    features = convert_to_tensor(features)
    check_dtype("Relu6", features, NUMBERS - {"uint8", "uint16", "uint32", "uint64"},
                arg="features", name=name)
    return output(apply_op("Relu6", [features], name=name or "Relu6"))


def _relu6_grad_kernel(attrs, xp):
    def relu6_grad(g, x):
        return xp.multiply(g, (x > 0) & (x < 6))
    return relu6_grad


register(OpDef("Relu6Grad", _gradient_pair_infer, _relu6_grad_kernel, fusion="elementwise",
               grad=lambda op, gg: [_relu6_grad(gg, op.inputs[1]),
                                    array_ops.zeros_like(op.inputs[1])]))


def _relu6_grad(g, x):
    return output(apply_op("Relu6Grad", [g, x], name="Relu6Grad"))


# -- Elu ------------------------------------------------------------------------------------------
def _elu_kernel(attrs, xp):
    def elu_kernel(x):
        # expm1 of the clipped value: the positive branch is discarded, and must not overflow.
        return xp.where(x > 0, x, xp.expm1(xp.minimum(x, 0)))
    return elu_kernel


register(OpDef("Elu", same_as_input, _elu_kernel, fusion="elementwise",
               grad=lambda op, g: [_elu_grad(g, op.outputs[0])]))


def elu(features, name=None) -> Tensor:
    """``features`` where positive, else ``exp(features) - 1``."""
    features = _float_input("Elu", features, name)
    return output(apply_op("Elu", [features], name=name or "Elu"))


def _elu_grad_kernel(attrs, xp):
    def elu_grad(g, y):
        # For y <= 0, y = exp(x) - 1, so d/dx = exp(x) = y + 1.
        return xp.where(y > 0, g, g * (y + 1))
    return elu_grad


def _elu_grad_grad(op, gg):
    g, y = op.inputs
    # d/dy is g where y < 0 (the exp branch), else 0: a ReluGrad of g*gg masked by -y > 0.
    return [_elu_grad(gg, y), _relu_grad(math_ops.multiply(gg, g), math_ops.negative(y))]


register(OpDef("EluGrad", _gradient_pair_infer, _elu_grad_kernel, fusion="elementwise",
               grad=_elu_grad_grad))


def _elu_grad(g, y):
    return output(apply_op("EluGrad", [g, y], name="EluGrad"))


# -- Softplus -------------------------------------------------------------------------------------
def _softplus_kernel(attrs, xp):
    def softplus_kernel(x):
        # log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large |x|.
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))
    return softplus_kernel


register(OpDef("Softplus", same_as_input, _softplus_kernel, fusion="elementwise",
               grad=lambda op, g: [_softplus_grad(g, op.inputs[0])]))


def softplus(features, name=None) -> Tensor:
    """``log(exp(features) + 1)``, computed without overflow."""
    features = _float_input("Softplus", features, name)
    return output(apply_op("Softplus", [features], name=name or "Softplus"))


def _stable_sigmoid(xp, x):
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus_grad_kernel(attrs, xp):
    def softplus_grad(g, x):
        return g * _stable_sigmoid(xp, x)
    return softplus_grad


def _softplus_grad_grad(op, gg):
    g, x = op.inputs
    s = math_ops.sigmoid(x)
    ds = math_ops.multiply(s, math_ops.subtract(array_ops.ones_like(s), s))
    return [_softplus_grad(gg, x), math_ops.multiply(math_ops.multiply(gg, g), ds)]


# SoftplusGrad(g, x) = g * sigmoid(x).
register(OpDef("SoftplusGrad", _gradient_pair_infer, _softplus_grad_kernel, fusion="elementwise",
               grad=_softplus_grad_grad))


def _softplus_grad(g, x):
    return output(apply_op("SoftplusGrad", [g, x], name="SoftplusGrad"))


# -- Softmax / LogSoftmax -------------------------------------------------------------------------
def _softmax_axis_arg(axis, dim, default=-1):
    if axis is not None and dim is not None:
        raise ValueError("cannot specify both 'axis' and 'dim' (dim is its deprecated name)")
    axis = dim if axis is None else axis
    return default if axis is None else int(axis)


def _softmax_infer(op):
    x = op.inputs[0]
    rank = x.shape.rank
    if rank == 0:
        raise ValueError("logits must have rank >= 1, got a scalar")
    normalize_axis(op.attrs["axis"], rank)
    return [(x.dtype, x.shape)]


def _shifted_logits(xp, x, axis):
    """``x - max(x, axis)``: exponentials of it never overflow."""
    return x - xp.max(x, axis=axis, keepdims=True)


def _softmax_kernel(attrs, xp):
    axis = attrs["axis"]

    def softmax_kernel(x):
        if x.shape[axis] == 0:
            return x.copy()
        e = xp.exp(_shifted_logits(xp, x, axis))
        e /= xp.sum(e, axis=axis, keepdims=True)
        return e
    return softmax_kernel


def _softmax_grad(op, g):
    # dx = y * (g - sum(g * y)) along the axis.
    y, axis = op.outputs[0], op.attrs["axis"]
    inner = math_ops.reduce_sum(math_ops.multiply(g, y), axis=axis, keepdims=True)
    return [math_ops.multiply(math_ops.subtract(g, inner), y)]


register(OpDef("Softmax", _softmax_infer, _softmax_kernel, grad=_softmax_grad))


def softmax(logits, axis=None, name=None, dim=None) -> Tensor:
    """``exp(logits) / sum(exp(logits), axis)``, computed stably (default: the last axis)."""
    logits = _float_input("Softmax", logits, name)
    axis = _softmax_axis_arg(axis, dim)
    return output(apply_op("Softmax", [logits], {"axis": axis}, name=name or "Softmax"))


def _log_softmax_kernel(attrs, xp):
    axis = attrs["axis"]

    def log_softmax_kernel(x):
        if x.shape[axis] == 0:
            return x.copy()
        shifted = _shifted_logits(xp, x, axis)
        shifted -= xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))
        return shifted
    return log_softmax_kernel


def _log_softmax_grad(op, g):
    # dx = g - softmax(x) * sum(g) along the axis; softmax(x) = exp(y).
    y, axis = op.outputs[0], op.attrs["axis"]
    total = math_ops.reduce_sum(g, axis=axis, keepdims=True)
    return [math_ops.subtract(g, math_ops.multiply(math_ops.exp(y), total))]


register(OpDef("LogSoftmax", _softmax_infer, _log_softmax_kernel, grad=_log_softmax_grad))


def log_softmax(logits, axis=None, name=None, dim=None) -> Tensor:
    """``logits - log(sum(exp(logits), axis))``, computed stably (default: the last axis)."""
    logits = _float_input("LogSoftmax", logits, name)
    axis = _softmax_axis_arg(axis, dim)
    return output(apply_op("LogSoftmax", [logits], {"axis": axis}, name=name or "LogSoftmax"))


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


# -- windows: the geometry of convolution and pooling ---------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Window:
    """A 2-D sliding window over an NHWC input: kernel size, strides, dilations, TF padding."""
    kernel: tuple      # (kh, kw)
    strides: tuple     # (sh, sw)
    dilations: tuple   # (dh, dw)
    pads: tuple        # ((top, bottom), (left, right))
    out: tuple         # (oh, ow)

    def padded_shape(self, shape):
        n, h, w, c = shape
        (top, bottom), (left, right) = self.pads
        return (n, h + top + bottom, w + left + right, c)

    def positions(self):
        """Kernel positions (i, j) in row-major order."""
        return [(i, j) for i in range(self.kernel[0]) for j in range(self.kernel[1])]


def _output_size(size, k, stride, dilation, padding):
    """Output size and (before, after) padding of one spatial axis, by TF's rule."""
    extent = (k - 1) * dilation + 1
    if padding == "VALID":
        if size < extent:
            raise ValueError(f"a window of extent {extent} does not fit an input of size {size} "
                             f"with VALID padding (the output size would be negative)")
        return (size - extent) // stride + 1, (0, 0)
    out = -(-size // stride)
    total = max((out - 1) * stride + extent - size, 0)
    return out, (total // 2, total - total // 2)


def _static_output_size(size, k, stride, dilation, padding):
    if size is None or k is None:
        return None
    return _output_size(size, k, stride, dilation, padding)[0]


def _window(input_shape, kernel, strides, dilations, padding) -> _Window:
    """The window of one kernel call, from the arrays' actual shapes."""
    _, h, w, _ = input_shape
    oh, pad_h = _output_size(h, kernel[0], strides[0], dilations[0], padding)
    ow, pad_w = _output_size(w, kernel[1], strides[1], dilations[1], padding)
    return _Window(tuple(kernel), tuple(strides), tuple(dilations), (pad_h, pad_w), (oh, ow))


def _pad(xp, x, win: _Window, value=0):
    """``x`` padded by the window's padding with ``value`` (``x`` itself when no padding)."""
    (top, bottom), (left, right) = win.pads
    if top == bottom == left == right == 0:
        return x
    padded = xp.full(win.padded_shape(x.shape), value, dtype=x.dtype)
    padded[:, top:top + x.shape[1], left:left + x.shape[2], :] = x
    return padded


def _crop(x_padded, win: _Window, shape):
    (top, _), (left, _) = win.pads
    return x_padded[:, top:top + shape[1], left:left + shape[2], :]


def _tap(x_padded, win: _Window, i, j):
    """The (N, OH, OW, C) view of the padded input under kernel position (i, j)."""
    (oh, ow), (sh, sw), (dh, dw) = win.out, win.strides, win.dilations
    h0, w0 = i * dh, j * dw
    return x_padded[:, h0:h0 + sh * (oh - 1) + 1:sh, w0:w0 + sw * (ow - 1) + 1:sw, :]


def _im2col(xp, x_padded, win: _Window):
    """The (N*OH*OW, KH*KW*C) matrix of every window's elements, one row per output position."""
    n, _, _, c = x_padded.shape
    (oh, ow), (kh, kw) = win.out, win.kernel
    if win.kernel == (1, 1) and win.strides == (1, 1):
        return x_padded.reshape(n * oh * ow, c)
    s_n, s_h, s_w, s_c = x_padded.strides
    (sh, sw), (dh, dw) = win.strides, win.dilations
    windows = xp.lib.stride_tricks.as_strided(
        x_padded, shape=(n, oh, ow, kh, kw, c),
        strides=(s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c))
    return windows.reshape(n * oh * ow, kh * kw * c)


def _col2im_add(tap_cols, x_padded, win: _Window):
    """The adjoint of ``_im2col``: add the (KH*KW, N*OH*OW, C) per-tap gradients back into
    the padded input, one strided slice per kernel position."""
    n, _, _, c = x_padded.shape
    (oh, ow), (kh, kw) = win.out, win.kernel
    if n * oh * ow * c == 0:
        return
    tap_cols = tap_cols.reshape(kh, kw, n, oh, ow, c)
    for i, j in win.positions():
        _tap(x_padded, win, i, j)[...] += tap_cols[i, j]


# Images per GEMM in the conv kernels: on CPU, a batch slice whose im2col matrix (about 2^20
# elements) is still in cache when the GEMM reads it; measured ~20% faster than one big GEMM
# at the Deep MNIST shapes (benchmarks/conv_micro.py).
_IM2COL_CHUNK_ELEMENTS = 1 << 20


def _batch_chunks(xp, n, win: _Window, depth):
    """Slices of the batch, each small enough for its im2col matrix to stay in cache."""
    per_image = max(1, win.out[0] * win.out[1] * win.kernel[0] * win.kernel[1] * depth)
    step = max(1, n if xp is not np else _IM2COL_CHUNK_ELEMENTS // per_image)
    return [slice(start, start + step) for start in range(0, n, step)] or [slice(0, 0)]


# -- argument normalization for conv and pools ----------------------------------------------------
def _four_ints(value, what):
    """TF1's int / 1 / 2 / 4-int forms of strides, ksize and dilations as [1, h, w, 1]."""
    values = [value] if isinstance(value, (int, np.integer)) else list(value)
    values = [int(v) for v in values]
    if len(values) == 1:
        values = [1, values[0], values[0], 1]
    elif len(values) == 2:
        values = [1, values[0], values[1], 1]
    elif len(values) != 4:
        raise ValueError(f"{what} must be an int or a list of 1, 2 or 4 ints, got {value}")
    if values[0] != 1 or values[3] != 1:
        raise ValueError(f"{what} {values}: only the spatial dimensions (H, W) may differ from 1 "
                         f"(NHWC layout)")
    if min(values) < 1:
        raise ValueError(f"{what} must be positive, got {values}")
    return values


def _padding_arg(padding):
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    return padding


def _nhwc_only(op_name, data_format):
    if data_format not in (None, "NHWC"):
        raise ValueError(f"{op_name}: data_format {data_format!r} is not supported; tensorweave "
                         f"implements NHWC only (transpose the input to [batch, height, width, "
                         f"channels] with tw.transpose(x, [0, 2, 3, 1]))")


def _dims4(shape: TensorShape, what):
    dims = shape.as_tuple()
    if dims is None:
        return (None,) * 4
    if len(dims) != 4:
        raise ValueError(f"{what} must be 4-D, got shape {shape}")
    return dims


def _same_float_dtype(a: Tensor, b: Tensor, what_a, what_b):
    if a.dtype is not b.dtype:
        raise TypeError(f"{what_b} of dtype {b.dtype.name} does not match {what_a} of dtype "
                        f"{a.dtype.name}")
    if a.dtype.name not in _CONV_TYPES:
        raise TypeError(f"{what_a} has dtype {a.dtype.name}; allowed: "
                        f"{', '.join(sorted(_CONV_TYPES))}")


def _conv_output_shape(op, input_dims, filter_dims):
    n, h, w, c = input_dims
    kh, kw, fc, oc = filter_dims
    if c is not None and fc is not None and c != fc:
        raise ValueError(f"input depth {c} does not match filter depth {fc} (input shape "
                         f"{list(input_dims)}, filter shape {list(filter_dims)})")
    _, sh, sw, _ = op.attrs["strides"]
    _, dh, dw, _ = op.attrs["dilations"]
    padding = op.attrs["padding"]
    return [n, _static_output_size(h, kh, sh, dh, padding),
            _static_output_size(w, kw, sw, dw, padding), oc]


def _conv_window(attrs, input_shape, filter_shape) -> _Window:
    _, sh, sw, _ = attrs["strides"]
    _, dh, dw, _ = attrs["dilations"]
    return _window(input_shape, filter_shape[:2], (sh, sw), (dh, dw), attrs["padding"])


def _conv_cost(output_index, filter_index):
    """Cost rule of a convolution op: 2 flops per multiply-add, from the shapes of the
    convolution's output (``output_index``) and filter (``filter_index``), where an index >= 0
    is an input of the op and -1 its output."""
    def cost(op):
        base = default_cost(op)
        conv_output, conv_filter = (op.outputs[0] if i < 0 else op.inputs[i]
                                    for i in (output_index, filter_index))
        kh, kw, channels, _ = conv_filter.shape.as_tuple() or (1, 1, 1, 1)
        per_output = (kh or 1) * (kw or 1) * (channels or 1)
        outputs = conv_output.shape.num_elements() or 1
        return Cost(2.0 * outputs * per_output, base.bytes_read, base.bytes_written)
    return cost


# -- Conv2D ---------------------------------------------------------------------------------------
def _conv2d_infer(op):
    x, f = op.inputs
    _same_float_dtype(x, f, "input", "filter")
    input_dims = _dims4(x.shape, "input")
    filter_dims = _dims4(f.shape, "filter")
    return [(x.dtype, _conv_output_shape(op, input_dims, filter_dims))]


def _conv2d_kernel(attrs, xp):
    def conv2d_kernel(x, f):
        win = _conv_window(attrs, x.shape, f.shape)
        out_channels = f.shape[3]
        weights = f.reshape(-1, out_channels)
        x_padded = _pad(xp, x, win)
        out = xp.empty((x.shape[0], win.out[0], win.out[1], out_channels), dtype=x.dtype)
        for batch in _batch_chunks(xp, x.shape[0], win, x.shape[3]):
            rows = out[batch].reshape(-1, out_channels)
            xp.matmul(_im2col(xp, x_padded[batch], win), weights, out=rows)
        return out
    return conv2d_kernel


def _conv_attrs(op):
    return {k: op.attrs[k] for k in ("strides", "padding", "dilations", "data_format")}


def _conv2d_grad(op, g):
    x, f = op.inputs
    attrs = _conv_attrs(op)
    dx = apply_op("Conv2DBackpropInput", [array_ops.shape(x), f, g], attrs,
                  name="Conv2DBackpropInput")
    df = apply_op("Conv2DBackpropFilter", [x, array_ops.shape(f), g], attrs,
                  name="Conv2DBackpropFilter")
    return [output(dx), output(df)]


register(OpDef("Conv2D", _conv2d_infer, _conv2d_kernel, grad=_conv2d_grad,
               cost=_conv_cost(-1, 1)))


def conv2d(input, filter=None, strides=None, padding=None, use_cudnn_on_gpu=True,
           data_format="NHWC", dilations=(1, 1, 1, 1), name=None, filters=None) -> Tensor:
    """2-D convolution (cross-correlation) of an NHWC ``input`` with an HWIO ``filter``.

    ``padding`` is "SAME" (output size ceil(in / stride), padding split as TF splits it: half
    before, the extra element after) or "VALID"; ``strides`` and ``dilations`` are [1, h, w, 1]
    (or 1 or 2 ints). ``use_cudnn_on_gpu`` is accepted for compatibility and ignored.

        y = tw.nn.conv2d(images, kernel, strides=[1, 1, 1, 1], padding="SAME")
    """
    if filter is None:
        filter = filters
    if filter is None or strides is None or padding is None:
        raise TypeError("conv2d needs input, filter, strides and padding")
    _nhwc_only("conv2d", data_format)
    input = convert_to_tensor(input)
    filter = convert_to_tensor(filter, dtype=input.dtype) if not isinstance(filter, Tensor) \
        else filter
    check_dtype("Conv2D", input, _CONV_TYPES, arg="input", name=name)
    attrs = {"strides": _four_ints(strides, "strides"), "padding": _padding_arg(padding),
             "dilations": _four_ints(dilations, "dilations"), "data_format": "NHWC"}
    return output(apply_op("Conv2D", [input, filter], attrs, name=name or "Conv2D"))


# -- Conv2DBackpropInput --------------------------------------------------------------------------
def _shape_argument(t: Tensor, what):
    """A 4-D shape given as a tensor, as far as it is known statically (through ``tw.shape``
    of a partially known tensor, too)."""
    dims = array_ops.shape_from_tensor(t, what).as_tuple()
    if dims is None:
        return (None,) * 4
    if len(dims) != 4:
        raise ValueError(f"{what} must have 4 elements, got {list(dims)}")
    return tuple(dims)


def _conv2d_backprop_input_infer(op):
    sizes, f, g = op.inputs
    _same_float_dtype(f, g, "filter", "out_backprop")
    input_dims = _shape_argument(sizes, "input_sizes")
    filter_dims = _dims4(f.shape, "filter")
    _check_out_backprop(op, input_dims, filter_dims, g)
    return [(f.dtype, list(input_dims))]


def _check_out_backprop(op, input_dims, filter_dims, g):
    expected = TensorShape(_conv_output_shape(op, input_dims, filter_dims))
    if not g.shape.is_compatible_with(expected):
        raise ValueError(f"out_backprop of shape {g.shape} does not match the convolution's "
                         f"output shape {expected}")


def _conv2d_backprop_input_kernel(attrs, xp):
    def conv2d_backprop_input(input_sizes, f, g):
        input_shape = tuple(int(d) for d in input_sizes)
        win = _conv_window(attrs, input_shape, f.shape)
        kh, kw, channels, out_channels = f.shape
        # (KH*KW, OC, C): one GEMM per kernel position gives each tap's gradient as a
        # contiguous block, so the col2im adds run over whole rows (measured ~2 ms faster at
        # Deep MNIST's conv2 than one GEMM whose (i, j) columns interleave).
        weights_by_tap = xp.ascontiguousarray(
            f.reshape(kh * kw, channels, out_channels).transpose(0, 2, 1))
        x_padded = xp.zeros(win.padded_shape(input_shape), dtype=g.dtype)
        for batch in _batch_chunks(xp, input_shape[0], win, channels):
            rows = g[batch].reshape(1, -1, out_channels)
            _col2im_add(xp.matmul(rows, weights_by_tap), x_padded[batch], win)
        return xp.ascontiguousarray(_crop(x_padded, win, input_shape))
    return conv2d_backprop_input


def _conv2d_backprop_input_grad(op, gg):
    # Linear in (filter, out_backprop): the adjoints are the other two convolution ops.
    _, f, g = op.inputs
    attrs = _conv_attrs(op)
    df = apply_op("Conv2DBackpropFilter", [gg, array_ops.shape(f), g], attrs,
                  name="Conv2DBackpropFilter")
    dg = apply_op("Conv2D", [gg, f], attrs, name="Conv2D")
    return [None, output(df), output(dg)]


register(OpDef("Conv2DBackpropInput", _conv2d_backprop_input_infer,
               _conv2d_backprop_input_kernel, grad=_conv2d_backprop_input_grad,
               cost=_conv_cost(2, 1)))


# -- Conv2DBackpropFilter -------------------------------------------------------------------------
def _conv2d_backprop_filter_infer(op):
    x, sizes, g = op.inputs
    _same_float_dtype(x, g, "input", "out_backprop")
    input_dims = _dims4(x.shape, "input")
    filter_dims = _shape_argument(sizes, "filter_sizes")
    _check_out_backprop(op, input_dims, filter_dims, g)
    return [(x.dtype, list(filter_dims))]


def _conv2d_backprop_filter_kernel(attrs, xp):
    def conv2d_backprop_filter(x, filter_sizes, g):
        filter_shape = tuple(int(d) for d in filter_sizes)
        win = _conv_window(attrs, x.shape, filter_shape)
        out_channels = filter_shape[3]
        x_padded = _pad(xp, x, win)
        # Accumulated as (OC, KH*KW*C): g^T @ cols runs faster than cols^T @ g (measured).
        total = None
        for batch in _batch_chunks(xp, x.shape[0], win, x.shape[3]):
            part = g[batch].reshape(-1, out_channels).T @ _im2col(xp, x_padded[batch], win)
            total = part if total is None else xp.add(total, part, out=total)
        return xp.ascontiguousarray(total.T).reshape(filter_shape)
    return conv2d_backprop_filter


def _conv2d_backprop_filter_grad(op, gg):
    x, sizes, g = op.inputs
    attrs = _conv_attrs(op)
    dx = apply_op("Conv2DBackpropInput", [array_ops.shape(x), gg, g], attrs,
                  name="Conv2DBackpropInput")
    dg = apply_op("Conv2D", [x, gg], attrs, name="Conv2D")
    return [output(dx), None, output(dg)]


register(OpDef("Conv2DBackpropFilter", _conv2d_backprop_filter_infer,
               _conv2d_backprop_filter_kernel, grad=_conv2d_backprop_filter_grad,
               cost=_conv_cost(2, -1)))


# -- pools: shared pieces -------------------------------------------------------------------------
def _pool_window(attrs, input_shape) -> _Window:
    _, kh, kw, _ = attrs["ksize"]
    _, sh, sw, _ = attrs["strides"]
    return _window(input_shape, (kh, kw), (sh, sw), (1, 1), attrs["padding"])


def _pool_output_dims(op, input_dims):
    n, h, w, c = input_dims
    _, kh, kw, _ = op.attrs["ksize"]
    _, sh, sw, _ = op.attrs["strides"]
    padding = op.attrs["padding"]
    return [n, _static_output_size(h, kh, sh, 1, padding),
            _static_output_size(w, kw, sw, 1, padding), c]


def _pool_infer(op):
    x = op.inputs[0]
    return [(x.dtype, _pool_output_dims(op, _dims4(x.shape, "input")))]


def _pool_attrs(ksize, strides, padding, data_format, what):
    _nhwc_only(what, data_format)
    return {"ksize": _four_ints(ksize, "ksize"), "strides": _four_ints(strides, "strides"),
            "padding": _padding_arg(padding), "data_format": "NHWC"}


def _lowest(dtype):
    dtype = np.dtype(dtype)
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _pool_cost(windows_index):
    """Cost rule of a pooling op: one flop per window element, counting the windows from the
    tensor of pool-output shape (an input index, or -1 for the op's output)."""
    def cost(op):
        base = default_cost(op)
        _, kh, kw, _ = op.attrs["ksize"]
        windows = op.outputs[0] if windows_index < 0 else op.inputs[windows_index]
        return Cost(float((windows.shape.num_elements() or 1) * kh * kw), base.bytes_read,
                    base.bytes_written)
    return cost


# -- MaxPool --------------------------------------------------------------------------------------
def _max_pool_kernel(attrs, xp):
    def max_pool_kernel(x):
        win = _pool_window(attrs, x.shape)
        padded = _pad(xp, x, win, _lowest(x.dtype))
        taps = (_tap(padded, win, i, j) for i, j in win.positions())
        result = next(taps).copy()
        for tap in taps:
            xp.maximum(result, tap, out=result)
        return result
    return max_pool_kernel


def _max_pool_grad(op, g):
    x, y = op.inputs[0], op.outputs[0]
    return [output(apply_op("MaxPoolGrad", [x, y, g], _pool_attrs_of(op), name="MaxPoolGrad"))]


def _pool_attrs_of(op):
    return {k: op.attrs[k] for k in ("ksize", "strides", "padding", "data_format")}


register(OpDef("MaxPool", _pool_infer, _max_pool_kernel, grad=_max_pool_grad,
               cost=_pool_cost(-1)))


def max_pool(value, ksize, strides, padding, data_format="NHWC", name=None,
             input=None) -> Tensor:
    """The maximum over each ``ksize`` window of an NHWC tensor (padding never wins a max)."""
    value = convert_to_tensor(input if value is None else value)
    check_dtype("MaxPool", value, _MAX_POOL_TYPES, arg="value", name=name)
    attrs = _pool_attrs(ksize, strides, padding, data_format, "max_pool")
    return output(apply_op("MaxPool", [value], attrs, name=name or "MaxPool"))


def _first_max_hits(xp, x, y, win: _Window):
    """For each kernel position (i, j): where it holds its window's first maximum.

    Yields ``(i, j, hit)`` with ``hit`` a boolean (N, OH, OW, C) array; exactly one position of
    each window hits (the first in row-major order among equal maxima, as TF picks). Padding is
    NaN here, which equals nothing, so it never hits.
    """
    padded = _pad(xp, x, win, np.nan)
    taken = xp.zeros(y.shape, dtype=bool)
    for i, j in win.positions():
        hit = _tap(padded, win, i, j) == y
        hit &= ~taken
        taken |= hit
        yield i, j, hit


def _max_pool_grad_infer(op):
    x, y, g = op.inputs
    if x.dtype.name not in _CONV_TYPES:
        raise TypeError(f"orig_input has dtype {x.dtype.name}; allowed: "
                        f"{', '.join(sorted(_CONV_TYPES))}")
    for t, what in ((y, "orig_output"), (g, "grad")):
        if t.dtype is not x.dtype:
            raise TypeError(f"{what} of dtype {t.dtype.name} does not match orig_input of dtype "
                            f"{x.dtype.name}")
    expected = TensorShape(_pool_output_dims(op, _dims4(x.shape, "orig_input")))
    for t, what in ((y, "orig_output"), (g, "grad")):
        if not t.shape.is_compatible_with(expected):
            raise ValueError(f"{what} of shape {t.shape} does not match the pool's output shape "
                             f"{expected}")
    return [(x.dtype, x.shape)]


def _max_pool_grad_kernel(attrs, xp):
    def max_pool_grad(x, y, g):
        win = _pool_window(attrs, x.shape)
        if win.kernel == win.strides:
            return _max_pool_grad_tiled(xp, x, y, g, win)
        padded = xp.zeros(win.padded_shape(x.shape), dtype=g.dtype)
        for i, j, hit in _first_max_hits(xp, x, y, win):
            _tap(padded, win, i, j)[...] += _route(xp, hit, g)
        return xp.ascontiguousarray(_crop(padded, win, x.shape))
    return max_pool_grad


def _route(xp, hits, g):
    """``g`` where ``hits``, else 0. A multiply is several times faster than a broadcasting
    ``where``; it is exact unless ``g`` holds inf or NaN (0 * inf), which takes the ``where``."""
    if bool(xp.isfinite(g).all()):
        return xp.multiply(hits, g)
    return xp.where(hits, g, xp.zeros((), dtype=g.dtype))


def _max_pool_grad_tiled(xp, x, y, g, win: _Window):
    """MaxPoolGrad when windows do not overlap (stride == ksize): the padded input reshapes to
    (N, OH, KH, OW, KW, C) tiles, so hits and gradients are a few whole-array operations."""
    n, _, _, c = x.shape
    (oh, ow), (kh, kw) = win.out, win.kernel
    padded = _pad(xp, x, win, np.nan)
    tiles = padded[:, :oh * kh, :ow * kw, :].reshape(n, oh, kh, ow, kw, c)
    hits = tiles == y[:, :, None, :, None, :]
    # Keep only the first maximum of each window (row-major), as TF does on ties.
    taken = xp.zeros(y.shape, dtype=bool)
    for i, j in win.positions():
        hit = hits[:, :, i, :, j, :]
        hit &= ~taken
        taken |= hit
    grads = _route(xp, hits, g[:, :, None, :, None, :]).reshape(n, oh * kh, ow * kw, c)
    if grads.shape == padded.shape and padded is x:
        return grads
    result = xp.zeros(padded.shape, dtype=g.dtype)
    result[:, :oh * kh, :ow * kw, :] = grads
    return xp.ascontiguousarray(_crop(result, win, x.shape))


def _max_pool_grad_grad(op, gg):
    x, y, _ = op.inputs
    ggg = apply_op("MaxPoolGradGrad", [x, y, gg], _pool_attrs_of(op), name="MaxPoolGradGrad")
    return [array_ops.zeros_like(x), array_ops.zeros_like(y), output(ggg)]


# MaxPoolGrad(x, y, g): each g goes to the first maximum of its window of x (y = max_pool(x)).
register(OpDef("MaxPoolGrad", _max_pool_grad_infer, _max_pool_grad_kernel,
               grad=_max_pool_grad_grad, cost=_pool_cost(2)))


def _max_pool_grad_grad_infer(op):
    x, y, gg = op.inputs
    if gg.dtype is not x.dtype or y.dtype is not x.dtype:
        raise TypeError(f"orig_input, orig_output and grad must have one dtype, got "
                        f"{x.dtype.name}, {y.dtype.name} and {gg.dtype.name}")
    if not gg.shape.is_compatible_with(x.shape):
        raise ValueError(f"grad of shape {gg.shape} does not match orig_input of shape {x.shape}")
    return [(x.dtype, _pool_output_dims(op, _dims4(x.shape, "orig_input")))]


def _max_pool_grad_grad_kernel(attrs, xp):
    def max_pool_grad_grad(x, y, gg):
        win = _pool_window(attrs, x.shape)
        gg_padded = _pad(xp, gg, win)
        result = xp.zeros(y.shape, dtype=gg.dtype)
        for i, j, hit in _first_max_hits(xp, x, y, win):
            result = xp.where(hit, _tap(gg_padded, win, i, j), result)
        return result
    return max_pool_grad_grad


def _max_pool_grad_grad_grad(op, g):
    x, y, _ = op.inputs
    back = apply_op("MaxPoolGrad", [x, y, g], _pool_attrs_of(op), name="MaxPoolGrad")
    return [array_ops.zeros_like(x), array_ops.zeros_like(y), output(back)]


# MaxPoolGradGrad(x, y, gg): the value of gg at each window's first maximum (the adjoint of
# MaxPoolGrad in its last input).
register(OpDef("MaxPoolGradGrad", _max_pool_grad_grad_infer, _max_pool_grad_grad_kernel,
               grad=_max_pool_grad_grad_grad, cost=_pool_cost(-1)))


# -- AvgPool --------------------------------------------------------------------------------------
def _window_counts(xp, win: _Window, input_shape, dtype):
    """How many real (unpadded) input elements each output window covers, as (OH, OW, 1)."""
    counts = []
    for size, k, stride, out, (before, _) in zip(input_shape[1:3], win.kernel, win.strides,
                                                 win.out, win.pads):
        starts = np.arange(out) * stride - before
        counts.append(np.clip(starts + k, 0, size) - np.clip(starts, 0, size))
    grid = (counts[0][:, None] * counts[1][None, :])[:, :, None]
    return xp.asarray(grid.astype(dtype))


def _avg_pool_kernel(attrs, xp):
    def avg_pool_kernel(x):
        win = _pool_window(attrs, x.shape)
        padded = _pad(xp, x, win)
        taps = (_tap(padded, win, i, j) for i, j in win.positions())
        total = next(taps).copy()
        for tap in taps:
            total += tap
        total /= _window_counts(xp, win, x.shape, x.dtype)
        return total
    return avg_pool_kernel


def _avg_pool_grad(op, g):
    x = op.inputs[0]
    back = apply_op("AvgPoolGrad", [array_ops.shape(x), g], _pool_attrs_of(op),
                    name="AvgPoolGrad")
    return [output(back)]


register(OpDef("AvgPool", _pool_infer, _avg_pool_kernel, grad=_avg_pool_grad,
               cost=_pool_cost(-1)))


def avg_pool(value, ksize, strides, padding, data_format="NHWC", name=None,
             input=None) -> Tensor:
    """The mean over each ``ksize`` window of an NHWC tensor; with SAME padding, the mean of
    the window's real elements only (padding is not counted)."""
    value = convert_to_tensor(input if value is None else value)
    check_dtype("AvgPool", value, _CONV_TYPES, arg="value", name=name)
    attrs = _pool_attrs(ksize, strides, padding, data_format, "avg_pool")
    return output(apply_op("AvgPool", [value], attrs, name=name or "AvgPool"))


def _avg_pool_grad_infer(op):
    sizes, g = op.inputs
    input_dims = _shape_argument(sizes, "orig_input_shape")
    expected = TensorShape(_pool_output_dims(op, input_dims))
    if not g.shape.is_compatible_with(expected):
        raise ValueError(f"grad of shape {g.shape} does not match the pool's output shape "
                         f"{expected}")
    return [(g.dtype, list(input_dims))]


def _avg_pool_grad_kernel(attrs, xp):
    def avg_pool_grad(input_sizes, g):
        input_shape = tuple(int(d) for d in input_sizes)
        win = _pool_window(attrs, input_shape)
        share = g / _window_counts(xp, win, input_shape, g.dtype)
        padded = xp.zeros(win.padded_shape(input_shape), dtype=g.dtype)
        for i, j in win.positions():
            _tap(padded, win, i, j)[...] += share
        return xp.ascontiguousarray(_crop(padded, win, input_shape))
    return avg_pool_grad


def _avg_pool_grad_grad(op, gg):
    back = apply_op("AvgPool", [gg], _pool_attrs_of(op), name="AvgPool")
    return [None, output(back)]


register(OpDef("AvgPoolGrad", _avg_pool_grad_infer, _avg_pool_grad_kernel,
               grad=_avg_pool_grad_grad, cost=_pool_cost(1)))


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
        shifted = _shifted_logits(xp, logits, axis) if logits.size else logits
        sum_exp = xp.sum(xp.exp(shifted), axis=axis, keepdims=True)
        log_probs = shifted - xp.log(sum_exp)
        loss = -xp.sum(labels * log_probs, axis=axis)
        # d loss / d logits = softmax * sum(labels) - labels (softmax - labels for distributions)
        backprop = xp.exp(log_probs) * xp.sum(labels, axis=axis, keepdims=True) - labels
        return loss, backprop
    return softmax_cross_entropy


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
