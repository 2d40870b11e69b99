"""2-D convolution (``conv2d``) and its gradient ops, and the sliding windows pools share.

Convolution and pooling are NHWC only. Their kernels share one picture of a sliding window
(``_Window``): the input is padded the way TF pads ("SAME" puts ``total // 2`` before and the rest
after), and each kernel position ``(i, j)`` selects a strided view of the padded input, a "tap",
with one element per output position. Conv2D gathers all taps into an im2col matrix and runs a
GEMM (one per cache-sized slice of the batch); its filter gradient is the transposed GEMM, and
its input gradient a GEMM followed by adding each tap's slice back (col2im), a loop over the
KH*KW kernel positions, never over pixels. Pools (``ops/pooling.py``) combine the taps
elementwise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tensorweave.graph.core import Tensor
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops import array as array_ops
from tensorweave.ops.common import check_dtype, convert_to_tensor, output
from tensorweave.ops.registry import Cost, OpDef, apply_op, default_cost, register

__all__ = ["conv2d"]


# Convolution and pooling kernels are GEMMs and strided views: types numpy runs natively.
_CONV_TYPES = frozenset({"float16", "float32", "float64"})


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


def _im2col_by_tap(xp, x_padded, win: _Window):
    """For one input channel: the transposed im2col matrix, (KH*KW, N*OH*OW), one row per
    kernel position. With one channel the usual (N*OH*OW, KH*KW) copy moves runs of KW floats
    and costs as much as the GEMM; here each row is a tap copied whole (measured at Deep
    MNIST's first conv: forward 2.0 -> 1.1 ms, filter gradient 2.8 -> 1.5 ms). BLAS reads the
    transpose in place."""
    n = x_padded.shape[0]
    (oh, ow), (kh, kw) = win.out, win.kernel
    cols = xp.empty((kh * kw, n, oh, ow), dtype=x_padded.dtype)
    for t, (i, j) in enumerate(win.positions()):
        cols[t] = _tap(x_padded, win, i, j)[..., 0]
    return cols.reshape(kh * kw, n * oh * ow)


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
        one_channel = x.shape[3] == 1
        for batch in _batch_chunks(xp, x.shape[0], win, x.shape[3]):
            rows = out[batch].reshape(-1, out_channels)
            if one_channel:
                xp.matmul(_im2col_by_tap(xp, x_padded[batch], win).T, weights, out=rows)
            else:
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
               cost=_conv_cost(-1, 1), blas=True))


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


# The correlation form of a stride-1 input gradient runs a GEMM with one column per input
# channel: from this many channels on, it beats the per-tap GEMMs and adds (measured below).
_MIN_CORRELATION_CHANNELS = 16


def _transposed_window(win: _Window, input_shape) -> _Window:
    """For a stride-1 convolution: the window of the forward convolution of the output gradient
    that gives the input gradient. ``dx[u] = sum_i g[u + top - i*d] f[i]``: a correlation of
    ``g`` padded by ``extent - 1 - top`` before (and what is left after) with the flipped
    filter; the output has the input's size."""
    pads = []
    for size, out, k, d, (top, _) in zip(input_shape[1:3], win.out, win.kernel, win.dilations,
                                         win.pads):
        before = (k - 1) * d - top
        pads.append((before, size + (k - 1) * d - out - before))
    return _Window(win.kernel, (1, 1), win.dilations, tuple(pads), tuple(input_shape[1:3]))


def _backprop_input_by_correlation(xp, g, f, win: _Window, input_shape):
    """The input gradient of a stride-1 convolution as a forward convolution: im2col of the
    padded gradient (cache-sized batch slices) times the flipped, transposed filter. One GEMM
    per slice and no scattered adds (measured at Deep MNIST's conv2: 14.9 -> 13.4 ms)."""
    back = _transposed_window(win, input_shape)
    channels = f.shape[2]
    weights = xp.ascontiguousarray(f[::-1, ::-1].transpose(0, 1, 3, 2)).reshape(-1, channels)
    g_padded = _pad(xp, g, back)
    out = xp.empty(input_shape, dtype=g.dtype)
    for batch in _batch_chunks(xp, input_shape[0], back, f.shape[3]):
        rows = out[batch].reshape(-1, channels)
        xp.matmul(_im2col(xp, g_padded[batch], back), weights, out=rows)
    return out


def _backprop_input_by_taps(xp, g, f, win: _Window, input_shape):
    """The input gradient of any convolution: a GEMM per kernel position and each tap's
    gradient added back into the padded input (col2im)."""
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


def _conv2d_backprop_input_kernel(attrs, xp):
    def conv2d_backprop_input(input_sizes, f, g):
        input_shape = tuple(int(d) for d in input_sizes)
        win = _conv_window(attrs, input_shape, f.shape)
        if win.strides == (1, 1) and f.shape[2] >= _MIN_CORRELATION_CHANNELS:
            return _backprop_input_by_correlation(xp, g, f, win, input_shape)
        return _backprop_input_by_taps(xp, g, f, win, input_shape)
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
               cost=_conv_cost(2, 1), blas=True))


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
        if x.shape[3] == 1:
            return _filter_grad_one_channel(xp, x_padded, g, win, filter_shape)
        # Accumulated as (OC, KH*KW*C): g^T @ cols runs faster than cols^T @ g (measured).
        total = None
        for batch in _batch_chunks(xp, x.shape[0], win, x.shape[3]):
            part = g[batch].reshape(-1, out_channels).T @ _im2col(xp, x_padded[batch], win)
            total = part if total is None else xp.add(total, part, out=total)
        return xp.ascontiguousarray(total.T).reshape(filter_shape)
    return conv2d_backprop_filter


def _filter_grad_one_channel(xp, x_padded, g, win: _Window, filter_shape):
    """The filter gradient of a one-channel input: transposed columns @ g, (KH*KW, OC), which
    is already the filter's layout."""
    out_channels = filter_shape[3]
    total = None
    for batch in _batch_chunks(xp, x_padded.shape[0], win, 1):
        part = _im2col_by_tap(xp, x_padded[batch], win) @ g[batch].reshape(-1, out_channels)
        total = part if total is None else xp.add(total, part, out=total)
    return total.reshape(filter_shape)


def _conv2d_backprop_filter_grad(op, gg):
    x, sizes, g = op.inputs
    attrs = _conv_attrs(op)
    dx = apply_op("Conv2DBackpropInput", [array_ops.shape(x), gg, g], attrs,
                  name="Conv2DBackpropInput")
    dg = apply_op("Conv2D", [x, gg], attrs, name="Conv2D")
    return [output(dx), None, output(dg)]


register(OpDef("Conv2DBackpropFilter", _conv2d_backprop_filter_infer,
               _conv2d_backprop_filter_kernel, grad=_conv2d_backprop_filter_grad,
               cost=_conv_cost(2, -1), blas=True))
