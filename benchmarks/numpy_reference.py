"""Training steps written by hand in numpy: the baselines of ``benchmarks/train_step.py``.

Each model is a parameter dict, a ``*_loss_and_grads(params, x, labels)`` function (forward and
backward) and an optimizer that updates the parameters in place. The code is what a careful
numpy programmer would write: float32 throughout, in-place updates where they save a pass over
memory, the convolutions as im2col (a strided window view copied into a column matrix) and a
matmul, one slice of the batch at a time so the columns stay in cache, and nothing a framework
could not also do (no folding of the learning rate into the backward pass, no skipped work that
the graph has to do).

Semantics follow TF1 so that the numbers compare like with like, and
``tests/test_benchmark_references.py`` checks them against tensorweave:

* the loss is ``mean(softmax_cross_entropy_with_logits_v2(labels, logits))`` and its gradient
  w.r.t. the logits is ``(softmax(logits) - labels) / batch`` (TF's kernel; exact for one-hot
  labels);
* relu's gradient passes where the output is positive;
* convolutions are NHWC with filters ``[k, k, in, out]``, stride 1, SAME padding;
* max pooling is 2x2, stride 2, SAME, on even sizes (28 -> 14 -> 7), so no padding is needed;
* ``Adam`` is TF1's ``AdamOptimizer``: ``lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`` and
  ``var -= lr_t * m / (sqrt(v) + epsilon)``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MLP_NAMES = ("w1", "b1", "w2", "b2")
CNN_NAMES = ("w_conv1", "b_conv1", "w_conv2", "b_conv2", "w_fc1", "b_fc1", "w_fc2", "b_fc2")


# -- shapes and initial values -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MlpShape:
    """Layer sizes of the MLP: inputs -> hidden (relu) -> classes."""

    inputs: int = 784
    hidden: int = 256
    classes: int = 10

    def param_shapes(self) -> dict:
        return {"w1": (self.inputs, self.hidden), "b1": (self.hidden,),
                "w2": (self.hidden, self.classes), "b2": (self.classes,)}


@dataclasses.dataclass(frozen=True)
class CnnShape:
    """The TF "Deep MNIST" network: two conv+relu+pool blocks, a relu fc layer, a linear fc."""

    image: int = 28
    channels: int = 1
    kernel: int = 5
    conv1: int = 32
    conv2: int = 64
    hidden: int = 1024
    classes: int = 10

    @property
    def inputs(self) -> int:
        return self.image * self.image * self.channels

    @property
    def flat(self) -> int:
        """Size of the flattened second pooling output (7 * 7 * 64 = 3136 for MNIST)."""
        return (self.image // 4) ** 2 * self.conv2

    def param_shapes(self) -> dict:
        k = self.kernel
        return {"w_conv1": (k, k, self.channels, self.conv1), "b_conv1": (self.conv1,),
                "w_conv2": (k, k, self.conv1, self.conv2), "b_conv2": (self.conv2,),
                "w_fc1": (self.flat, self.hidden), "b_fc1": (self.hidden,),
                "w_fc2": (self.hidden, self.classes), "b_fc2": (self.classes,)}


def initial_params(shape, dtype=np.float32, seed=0) -> dict:
    """Weights from a normal of stddev 0.1 cut at two stddevs, biases 0.1 (Deep MNIST's init)."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, dims in shape.param_shapes().items():
        if len(dims) == 1:
            params[name] = np.full(dims, 0.1, dtype=dtype)
        else:
            params[name] = np.clip(rng.standard_normal(dims) * 0.1, -0.2, 0.2).astype(dtype)
    return params


def random_batch(inputs, classes, batch, dtype=np.float32, seed=1):
    """Inputs uniform in [0, 1) and one-hot labels of random classes."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, inputs)).astype(dtype)
    labels = np.zeros((batch, classes), dtype=dtype)
    labels[np.arange(batch), rng.integers(0, classes, size=batch)] = 1
    return x, labels


# -- layers ------------------------------------------------------------------------------------

def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy over the batch, and its gradient w.r.t. ``logits``."""
    batch = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    loss = (labels * (np.log(total) - shifted)).sum() / batch
    grad = exp
    grad /= total
    grad -= labels
    grad /= batch
    return loss, grad


def dense_relu_backward(grad_out, out):
    """Gradient of ``relu(z)`` w.r.t. ``z``, given the relu's output; overwrites ``grad_out``."""
    grad_out *= out > 0
    return grad_out


def same_padding(kernel: int) -> tuple:
    """Rows (and columns) of zeros SAME adds before and after, for stride 1."""
    before = (kernel - 1) // 2
    return before, kernel - 1 - before


def pad_same(x, kernel: int):
    """NHWC ``x`` with the zero border of a SAME, stride-1 convolution."""
    before, after = same_padding(kernel)
    return np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))


def crop_same(padded, kernel: int):
    """The inverse of ``pad_same``: the interior of a padded NHWC array (a view)."""
    before, after = same_padding(kernel)
    return padded[:, before:padded.shape[1] - after, before:padded.shape[2] - after, :]


def im2col(padded, kernel: int):
    """Patches of a stride-1 convolution over already padded NHWC images: ``[N*H*W, k*k*C]``.

    Columns are ordered (row, column, channel) to match a ``[k, k, C, F]`` filter reshaped to
    ``[k*k*C, F]``. The window view costs nothing; the one copy lays the patches out for BLAS.
    """
    n, _, _, c = padded.shape
    windows = sliding_window_view(padded, (kernel, kernel), axis=(1, 2))  # [N, H, W, C, k, k]
    _, h, w = windows.shape[:3]
    cols = np.empty((n, h, w, kernel, kernel, c), dtype=padded.dtype)
    np.copyto(cols, windows.transpose(0, 1, 2, 4, 5, 3))
    return cols.reshape(n * h * w, kernel * kernel * c)


def col2im_add(cols, padded_grad, kernel: int):
    """The adjoint of ``im2col``: add every patch's gradient onto ``padded_grad`` in place."""
    n, hp, wp, c = padded_grad.shape
    h, w = hp - kernel + 1, wp - kernel + 1
    patches = cols.reshape(n, h, w, kernel, kernel, c)
    for i in range(kernel):
        for j in range(kernel):
            padded_grad[:, i:i + h, j:j + w, :] += patches[:, :, :, i, j, :]


# Elements of one im2col matrix: the convolutions run one GEMM per slice of the batch whose
# columns (4 MB in float32) stay in cache between the copy that writes them and the GEMM that
# reads them. At Deep MNIST's second conv this makes the forward pass ~3x faster than one
# 31 MB matrix for the whole batch (measured on a 2-core EPYC, one BLAS thread).
IM2COL_CHUNK_ELEMENTS = 1 << 20


def batch_slices(batch: int, kernel: int, image_shape) -> list:
    """Slices of the batch, each with an im2col matrix of about ``IM2COL_CHUNK_ELEMENTS``."""
    h, w, c = image_shape
    step = max(1, IM2COL_CHUNK_ELEMENTS // (h * w * kernel * kernel * c))
    return [slice(start, start + step) for start in range(0, batch, step)]


def conv_bias_relu(x, weight, bias):
    """``relu(conv2d(x, weight, SAME) + bias)``; returns the output and the padded input."""
    n, h, w, c = x.shape
    kernel, _, _, filters = weight.shape
    matrix = weight.reshape(-1, filters)
    padded = pad_same(x, kernel)
    out = np.empty((n, h, w, filters), dtype=x.dtype)
    for part in batch_slices(n, kernel, (h, w, c)):
        np.matmul(im2col(padded[part], kernel), matrix, out=out[part].reshape(-1, filters))
    out += bias
    np.maximum(out, 0, out=out)
    return out, padded


def conv_backward(grad_out, padded, weight, input_grad: bool):
    """Gradients of a conv layer w.r.t. its filter and bias (and its input when asked).

    ``padded`` is the layer's padded input from ``conv_bias_relu``; its patches are copied out
    again slice by slice, which is cheaper than keeping the whole column matrix around.
    """
    n, h, w, _ = grad_out.shape
    kernel, _, channels, filters = weight.shape
    matrix = weight.reshape(-1, filters)
    grad_w = np.zeros((filters, matrix.shape[0]), dtype=weight.dtype)
    grad_padded = np.zeros_like(padded) if input_grad else None
    for part in batch_slices(n, kernel, (h, w, channels)):
        grad_rows = grad_out[part].reshape(-1, filters)
        # grad^T @ cols, transposed once at the end, runs faster than cols^T @ grad (measured).
        grad_w += grad_rows.T @ im2col(padded[part], kernel)
        if input_grad:
            col2im_add(grad_rows @ matrix.T, grad_padded[part], kernel)
    grad_b = grad_out.reshape(-1, filters).sum(axis=0)
    grad_x = crop_same(grad_padded, kernel) if input_grad else None
    return grad_w.T.reshape(weight.shape), grad_b, grad_x


def max_pool_2x2(x):
    """2x2, stride-2 max pooling of NHWC ``x`` with even height and width."""
    return np.maximum(np.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2]),
                      np.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2]))


def max_pool_2x2_backward(x, pooled, grad_pooled):
    """Route each window's gradient to the positions that hold its maximum.

    Here every pooled input is a relu output, so the only ties are windows of zeros, and relu's
    gradient drops those anyway; the result equals routing to the first maximum as TF does.
    """
    n, h, w, c = x.shape
    windows = x.reshape(n, h // 2, 2, w // 2, 2, c)
    mask = windows == pooled[:, :, None, :, None, :]
    grad = mask * grad_pooled[:, :, None, :, None, :]
    return grad.reshape(x.shape)


# -- models ------------------------------------------------------------------------------------

def mlp_loss_and_grads(params, x, labels):
    """Loss and gradients of ``softmax_ce(relu(x @ w1 + b1) @ w2 + b2, labels)``."""
    hidden = x @ params["w1"]
    hidden += params["b1"]
    np.maximum(hidden, 0, out=hidden)
    logits = hidden @ params["w2"]
    logits += params["b2"]
    loss, grad_logits = softmax_cross_entropy(logits, labels)

    grads = {"w2": hidden.T @ grad_logits, "b2": grad_logits.sum(axis=0)}
    grad_hidden = dense_relu_backward(grad_logits @ params["w2"].T, hidden)
    grads["w1"] = x.T @ grad_hidden
    grads["b1"] = grad_hidden.sum(axis=0)
    return loss, grads


def cnn_loss_and_grads(params, x, labels, shape: CnnShape = CnnShape()):
    """Loss and gradients of the Deep MNIST network (no dropout) on flat images ``x``."""
    batch = x.shape[0]
    images = x.reshape(batch, shape.image, shape.image, shape.channels)
    act1, padded1 = conv_bias_relu(images, params["w_conv1"], params["b_conv1"])
    pool1 = max_pool_2x2(act1)
    act2, padded2 = conv_bias_relu(pool1, params["w_conv2"], params["b_conv2"])
    pool2 = max_pool_2x2(act2)
    flat = pool2.reshape(batch, shape.flat)
    hidden = flat @ params["w_fc1"]
    hidden += params["b_fc1"]
    np.maximum(hidden, 0, out=hidden)
    logits = hidden @ params["w_fc2"]
    logits += params["b_fc2"]
    loss, grad_logits = softmax_cross_entropy(logits, labels)

    grads = {"w_fc2": hidden.T @ grad_logits, "b_fc2": grad_logits.sum(axis=0)}
    grad_hidden = dense_relu_backward(grad_logits @ params["w_fc2"].T, hidden)
    grads["w_fc1"] = flat.T @ grad_hidden
    grads["b_fc1"] = grad_hidden.sum(axis=0)
    grad_pool2 = (grad_hidden @ params["w_fc1"].T).reshape(pool2.shape)
    grad_act2 = dense_relu_backward(max_pool_2x2_backward(act2, pool2, grad_pool2), act2)
    grads["w_conv2"], grads["b_conv2"], grad_pool1 = conv_backward(
        grad_act2, padded2, params["w_conv2"], input_grad=True)
    grad_act1 = dense_relu_backward(max_pool_2x2_backward(act1, pool1, grad_pool1), act1)
    # The images are data, not parameters: like the graph, skip the first conv's input gradient.
    grads["w_conv1"], grads["b_conv1"], _ = conv_backward(
        grad_act1, padded1, params["w_conv1"], input_grad=False)
    return loss, grads


# -- optimizers --------------------------------------------------------------------------------

class Sgd:
    """Plain gradient descent, in place: ``var -= lr * grad``."""

    def __init__(self, learning_rate: float):
        self.learning_rate = learning_rate

    def apply(self, params, grads):
        for name, grad in grads.items():
            grad *= self.learning_rate  # the gradient is ours to overwrite: saves a temporary
            params[name] -= grad


class Adam:
    """TF1's Adam, in place, with the fewest passes over each variable we could manage."""

    def __init__(self, params, learning_rate=1e-4, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.learning_rate = learning_rate
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}
        self.steps = 0

    def apply(self, params, grads):
        self.steps += 1
        t = self.steps
        lr_t = self.learning_rate * math.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
        for name, grad in grads.items():
            self._update(params[name], self.m[name], self.v[name], grad, lr_t)

    def _update(self, var, m, v, grad, lr_t):
        # m += (1 - beta1) * (g - m); v += (1 - beta2) * (g*g - v); one scratch buffer.
        scratch = np.subtract(grad, m)
        scratch *= 1 - self.beta1
        m += scratch
        np.multiply(grad, grad, out=scratch)
        scratch -= v
        scratch *= 1 - self.beta2
        v += scratch
        np.sqrt(v, out=scratch)
        scratch += self.epsilon
        np.divide(m, scratch, out=scratch)
        scratch *= lr_t
        var -= scratch


# -- one training step -------------------------------------------------------------------------

def mlp_step(params, optimizer):
    """A function of ``(x, labels)`` that runs one SGD step of the MLP and returns the loss."""
    def step(x, labels):
        loss, grads = mlp_loss_and_grads(params, x, labels)
        optimizer.apply(params, grads)
        return loss
    return step


def cnn_step(params, optimizer, shape: CnnShape = CnnShape()):
    """A function of ``(x, labels)`` that runs one step of the CNN and returns the loss."""
    def step(x, labels):
        loss, grads = cnn_loss_and_grads(params, x, labels, shape)
        optimizer.apply(params, grads)
        return loss
    return step
