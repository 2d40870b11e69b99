"""Direct, loop-based numpy references for the nn ops (convolution, pooling, losses).

Written independently of the kernels: no im2col, no strided views, one output position (and one
kernel tap) at a time, so a shared mistake is unlikely.
"""

from __future__ import annotations

import numpy as np


def same_or_valid(size, k, stride, dilation, padding):
    """(output size, padding before) of one axis, by TF's documented rule."""
    span = dilation * (k - 1) + 1
    if padding == "VALID":
        return (size - span + stride) // stride, 0
    out = (size + stride - 1) // stride
    pad_total = max(0, (out - 1) * stride + span - size)
    return out, pad_total // 2


def conv2d(x, f, strides=(1, 1), padding="SAME", dilations=(1, 1)):
    """NHWC x HWIO cross-correlation, one output pixel and one tap at a time."""
    x, f = np.asarray(x, np.float64), np.asarray(f, np.float64)
    n, h, w, _ = x.shape
    kh, kw, _, oc = f.shape
    oh, top = same_or_valid(h, kh, strides[0], dilations[0], padding)
    ow, left = same_or_valid(w, kw, strides[1], dilations[1], padding)
    out = np.zeros((n, oh, ow, oc))
    for r in range(oh):
        for c in range(ow):
            for i in range(kh):
                for j in range(kw):
                    row = r * strides[0] + i * dilations[0] - top
                    col = c * strides[1] + j * dilations[1] - left
                    if 0 <= row < h and 0 <= col < w:
                        out[:, r, c, :] += x[:, row, col, :] @ f[i, j]
    return out


def conv2d_backprop_input(input_shape, f, g, strides=(1, 1), padding="SAME", dilations=(1, 1)):
    """d(sum(conv2d(x, f) * g)) / dx, scattering each output pixel's gradient back."""
    f, g = np.asarray(f, np.float64), np.asarray(g, np.float64)
    _, h, w, _ = input_shape
    kh, kw, _, _ = f.shape
    _, top = same_or_valid(h, kh, strides[0], dilations[0], padding)
    _, left = same_or_valid(w, kw, strides[1], dilations[1], padding)
    dx = np.zeros(input_shape)
    for r in range(g.shape[1]):
        for c in range(g.shape[2]):
            for i in range(kh):
                for j in range(kw):
                    row = r * strides[0] + i * dilations[0] - top
                    col = c * strides[1] + j * dilations[1] - left
                    if 0 <= row < h and 0 <= col < w:
                        dx[:, row, col, :] += g[:, r, c, :] @ f[i, j].T
    return dx


def conv2d_backprop_filter(x, filter_shape, g, strides=(1, 1), padding="SAME",
                           dilations=(1, 1)):
    """d(sum(conv2d(x, f) * g)) / df, one output pixel and one tap at a time."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    _, h, w, _ = x.shape
    kh, kw, _, _ = filter_shape
    _, top = same_or_valid(h, kh, strides[0], dilations[0], padding)
    _, left = same_or_valid(w, kw, strides[1], dilations[1], padding)
    df = np.zeros(filter_shape)
    for r in range(g.shape[1]):
        for c in range(g.shape[2]):
            for i in range(kh):
                for j in range(kw):
                    row = r * strides[0] + i * dilations[0] - top
                    col = c * strides[1] + j * dilations[1] - left
                    if 0 <= row < h and 0 <= col < w:
                        df[i, j] += x[:, row, col, :].T @ g[:, r, c, :]
    return df


def _windows(shape, ksize, strides, padding):
    """Yield (r, c, rows, cols): each output pixel and the in-bounds input rows/cols it sees."""
    _, h, w, _ = shape
    oh, top = same_or_valid(h, ksize[0], strides[0], 1, padding)
    ow, left = same_or_valid(w, ksize[1], strides[1], 1, padding)
    for r in range(oh):
        for c in range(ow):
            rows = [r * strides[0] + i - top for i in range(ksize[0])]
            cols = [c * strides[1] + j - left for j in range(ksize[1])]
            yield r, c, [v for v in rows if 0 <= v < h], [v for v in cols if 0 <= v < w]


def pool_output_shape(shape, ksize, strides, padding):
    n, h, w, ch = shape
    return (n, same_or_valid(h, ksize[0], strides[0], 1, padding)[0],
            same_or_valid(w, ksize[1], strides[1], 1, padding)[0], ch)


def max_pool(x, ksize, strides, padding):
    x = np.asarray(x)
    out = np.zeros(pool_output_shape(x.shape, ksize, strides, padding), x.dtype)
    for r, c, rows, cols in _windows(x.shape, ksize, strides, padding):
        out[:, r, c, :] = x[:, rows][:, :, cols].max(axis=(1, 2))
    return out


def avg_pool(x, ksize, strides, padding):
    x = np.asarray(x, np.float64)
    out = np.zeros(pool_output_shape(x.shape, ksize, strides, padding))
    for r, c, rows, cols in _windows(x.shape, ksize, strides, padding):
        out[:, r, c, :] = x[:, rows][:, :, cols].mean(axis=(1, 2))
    return out


def max_pool_grad(x, g, ksize, strides, padding):
    """Each output gradient goes to the first (row-major) maximum of its window."""
    x, g = np.asarray(x), np.asarray(g, np.float64)
    dx = np.zeros(x.shape)
    for r, c, rows, cols in _windows(x.shape, ksize, strides, padding):
        for b in range(x.shape[0]):
            for ch in range(x.shape[3]):
                window = x[b, rows][:, cols][:, :, ch]
                k = int(np.argmax(window))  # argmax returns the first maximum
                dx[b, rows[k // len(cols)], cols[k % len(cols)], ch] += g[b, r, c, ch]
    return dx


def max_pool_grad_grad(x, gg, ksize, strides, padding):
    """The value of ``gg`` at each window's first maximum."""
    x, gg = np.asarray(x), np.asarray(gg, np.float64)
    out = np.zeros(pool_output_shape(x.shape, ksize, strides, padding))
    for r, c, rows, cols in _windows(x.shape, ksize, strides, padding):
        for b in range(x.shape[0]):
            for ch in range(x.shape[3]):
                window = x[b, rows][:, cols][:, :, ch]
                k = int(np.argmax(window))
                out[b, r, c, ch] = gg[b, rows[k // len(cols)], cols[k % len(cols)], ch]
    return out


def avg_pool_grad(input_shape, g, ksize, strides, padding):
    g = np.asarray(g, np.float64)
    dx = np.zeros(input_shape)
    for r, c, rows, cols in _windows(input_shape, ksize, strides, padding):
        share = g[:, r, c, :] / (len(rows) * len(cols))
        for row in rows:
            for col in cols:
                dx[:, row, col, :] += share
    return dx


def softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def softmax_xent(logits, labels, axis=-1):
    """(loss, d loss / d logits) of softmax cross entropy."""
    labels = np.asarray(labels, np.float64)
    loss = -(labels * log_softmax(logits, axis)).sum(axis=axis)
    backprop = softmax(logits, axis) * labels.sum(axis=axis, keepdims=True) - labels
    return loss, backprop


def sparse_softmax_xent(logits, labels):
    logits = np.asarray(logits, np.float64)
    classes = logits.shape[-1]
    one_hot = np.eye(classes)[np.asarray(labels).reshape(-1)].reshape(logits.shape)
    return softmax_xent(logits, one_hot)


def sigmoid_xent(logits, labels):
    """-z log(sigmoid(x)) - (1 - z) log(1 - sigmoid(x)), via logaddexp for stability."""
    x, z = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
    return z * np.logaddexp(0, -x) + (1 - z) * np.logaddexp(0, x)
