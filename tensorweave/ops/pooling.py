"""Pooling ops: ``max_pool`` and ``avg_pool``, and their gradient ops.

Pools combine the taps of the sliding window (``ops/conv.py``) elementwise: MaxPool takes their
maximum (padding never wins), AvgPool their mean over the real elements. MaxPoolGrad routes each
gradient to the first maximum of its window, as TF does on ties.
"""

from __future__ import annotations

import numpy as np

from tensorweave.graph.core import Tensor
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops import array as array_ops
from tensorweave.ops import loops
from tensorweave.ops.common import INTEGERS, check_dtype, convert_to_tensor, output
from tensorweave.ops.conv import (_CONV_TYPES, _crop, _dims4, _four_ints, _nhwc_only, _pad,
                                  _padding_arg, _shape_argument, _static_output_size, _tap,
                                  _Window, _window)
from tensorweave.ops.registry import Cost, OpDef, apply_op, default_cost, register

__all__ = ["max_pool", "avg_pool"]

_MAX_POOL_TYPES = _CONV_TYPES | INTEGERS


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
        (oh, ow), (kh, kw) = win.out, win.kernel
        if xp is np and win.kernel == win.strides and x.shape[1:3] == (oh * kh, ow * kw) \
                and loops.use_loops(x):  # windows tile the input: one pass, no padding
            result = np.empty((x.shape[0], oh, ow, x.shape[3]), dtype=x.dtype)
            loops.max_pool_tiles(x, win.kernel, result)
            return result
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
    if x.shape[1:3] == (oh * kh, ow * kw) and loops.use_loops(x, y, g):  # no padding
        result = xp.empty(x.shape, dtype=g.dtype)
        loops.max_pool_grad_tiles(x, y, g, win.kernel, bool(xp.isfinite(g).all()), result)
        return result
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
