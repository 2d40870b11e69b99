"""The hand-written numpy training steps of ``benchmarks/train_step.py`` are honest baselines.

They must compute what the tensorweave models compute, or the benchmark compares different
work. Checked on tiny shapes in float64: the numpy layers against plain-loop definitions, the
numpy gradients against finite differences, Adam against TF1's formulas, and finally the loss,
gradients and updated variables against tensorweave running the graphs the benchmark builds.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from benchmarks import numpy_reference as ref
from benchmarks import train_step

TINY_MLP = ref.MlpShape(inputs=6, hidden=5, classes=3)
TINY_CNN = ref.CnnShape(image=8, channels=2, kernel=5, conv1=3, conv2=4, hidden=6, classes=3)
BATCH = 3


def tiny_problem(model: str, seed: int = 3):
    shape = TINY_MLP if model == "mlp" else TINY_CNN
    params = ref.initial_params(shape, np.float64, seed=seed)
    x, labels = ref.random_batch(shape.inputs, shape.classes, BATCH, np.float64, seed=seed + 1)
    return shape, params, x, labels


def loss_and_grads(model, params, x, labels, shape):
    if model == "mlp":
        return ref.mlp_loss_and_grads(params, x, labels)
    return ref.cnn_loss_and_grads(params, x, labels, shape)


# -- the layers against plain-loop definitions -------------------------------------------------

def loop_conv2d_same(x, w):
    """out[n, y, x, f] = sum over (i, j, c) of padded[n, y + i, x + j, c] * w[i, j, c, f]."""
    n, h, width, _ = x.shape
    k = w.shape[0]
    before = (k - 1) // 2
    padded = np.zeros((n, h + k - 1, width + k - 1, x.shape[3]))
    padded[:, before:before + h, before:before + width, :] = x
    out = np.zeros((n, h, width, w.shape[3]))
    for b in range(n):
        for row in range(h):
            for col in range(width):
                patch = padded[b, row:row + k, col:col + k, :]
                out[b, row, col] = np.tensordot(patch, w, axes=3)
    return out


def test_conv_bias_relu_is_a_same_cross_correlation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 5, 3))
    w = rng.standard_normal((5, 5, 3, 4))
    b = rng.standard_normal(4)
    out, _ = ref.conv_bias_relu(x, w, b)
    np.testing.assert_allclose(out, np.maximum(loop_conv2d_same(x, w) + b, 0), rtol=1e-12,
                               atol=1e-12)


def test_col2im_is_the_adjoint_of_im2col():
    rng = np.random.default_rng(1)
    padded = rng.standard_normal((2, 10, 9, 3))
    cols = ref.im2col(padded, 5)
    assert cols.shape == (2 * 6 * 5, 5 * 5 * 3)
    other = rng.standard_normal(cols.shape)
    back = np.zeros_like(padded)
    ref.col2im_add(other, back, 5)
    assert math.isclose(np.sum(cols * other), np.sum(padded * back), rel_tol=1e-12)


def test_conv_backward_is_the_same_for_any_batch_slicing(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 6, 6, 3))
    w = rng.standard_normal((5, 5, 3, 4))
    _, padded = ref.conv_bias_relu(x, w, np.zeros(4))
    grad = rng.standard_normal((5, 6, 6, 4))
    whole = ref.conv_backward(grad, padded, w, input_grad=True)
    # Two images per slice (and a short last slice) instead of the whole batch at once.
    monkeypatch.setattr(ref, "IM2COL_CHUNK_ELEMENTS", 2 * 6 * 6 * 5 * 5 * 3)
    assert len(ref.batch_slices(5, 5, (6, 6, 3))) == 3
    sliced = ref.conv_backward(grad, padded, w, input_grad=True)
    out_sliced, _ = ref.conv_bias_relu(x, w, np.zeros(4))
    np.testing.assert_allclose(out_sliced, np.maximum(loop_conv2d_same(x, w), 0), atol=1e-12)
    for a, b in zip(whole, sliced):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_max_pool_and_its_gradient_against_loops():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 6, 3))
    pooled = ref.max_pool_2x2(x)
    grad_out = rng.standard_normal(pooled.shape)
    expected = np.zeros_like(pooled)
    expected_grad = np.zeros_like(x)
    for n, row, col, c in np.ndindex(*pooled.shape):
        window = x[n, 2 * row:2 * row + 2, 2 * col:2 * col + 2, c]
        expected[n, row, col, c] = window.max()
        i, j = np.unravel_index(np.argmax(window), (2, 2))
        expected_grad[n, 2 * row + i, 2 * col + j, c] = grad_out[n, row, col, c]
    np.testing.assert_array_equal(pooled, expected)
    np.testing.assert_array_equal(ref.max_pool_2x2_backward(x, pooled, grad_out), expected_grad)


def test_softmax_cross_entropy_matches_its_definition():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 5)) * 3
    labels = np.eye(5)[[0, 3, 2, 4]]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss, grad = ref.softmax_cross_entropy(logits.copy(), labels)
    assert math.isclose(loss, -np.mean(np.sum(labels * np.log(probs), axis=1)), rel_tol=1e-12)
    np.testing.assert_allclose(grad, (probs - labels) / 4, rtol=1e-12)


# -- gradients against finite differences ------------------------------------------------------

@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_numpy_gradients_match_finite_differences(model):
    shape, params, x, labels = tiny_problem(model)
    _, grads = loss_and_grads(model, params, x, labels, shape)
    eps = 1e-6
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for index in np.ndindex(*value.shape):
            saved = value[index]
            value[index] = saved + eps
            up, _ = loss_and_grads(model, params, x, labels, shape)
            value[index] = saved - eps
            down, _ = loss_and_grads(model, params, x, labels, shape)
            value[index] = saved
            numeric[index] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)


# -- optimizers against TF1's formulas ---------------------------------------------------------

def test_adam_follows_tf1_formulas():
    rng = np.random.default_rng(4)
    var = rng.standard_normal(7)
    grads = [rng.standard_normal(7) for _ in range(3)]
    params = {"v": var.copy()}
    adam = ref.Adam(params, learning_rate=0.01)
    expected, m, v = var.copy(), np.zeros(7), np.zeros(7)
    for t, g in enumerate(grads, start=1):
        adam.apply(params, {"v": g.copy()})
        lr_t = 0.01 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        expected = expected - lr_t * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(params["v"], expected, rtol=1e-12)


def test_sgd_subtracts_the_scaled_gradient():
    params = {"v": np.array([1.0, 2.0])}
    ref.Sgd(0.5).apply(params, {"v": np.array([4.0, -2.0])})
    np.testing.assert_array_equal(params["v"], [-1.0, 3.0])


# -- against tensorweave -----------------------------------------------------------------------

def _needs_tensorweave(model):
    missing = train_step.missing_api(model)
    return pytest.mark.skipif(bool(missing), reason="tensorweave lacks " + ", ".join(missing))


def _build(model, params, shape):
    build = train_step.build_mlp if model == "mlp" else train_step.build_cnn
    return build(copy.deepcopy(params), shape, np.float64)


@pytest.mark.parametrize("model", [
    pytest.param("mlp", marks=_needs_tensorweave("mlp")),
    pytest.param("cnn", marks=_needs_tensorweave("cnn")),
])
def test_numpy_step_computes_what_tensorweave_computes(model):
    import tensorweave as tw

    shape, params, x, labels = tiny_problem(model)
    built = _build(model, params, shape)
    names = list(built.variables)
    with built.graph.as_default():
        grad_tensors = tw.gradients(built.loss, [built.variables[n] for n in names])
        train_op = train_step.tw_optimizer(model).minimize(built.loss)
        init = tw.global_variables_initializer()
    feed = {built.x: x, built.labels: labels}
    with tw.Session(graph=built.graph) as sess:
        sess.run(init)
        tw_loss, tw_grads = sess.run([built.loss, grad_tensors], feed)
        for _ in range(2):
            sess.run(train_op, feed)
        tw_after = sess.run([built.variables[n] for n in names])

    np_loss, np_grads = loss_and_grads(model, copy.deepcopy(params), x, labels, shape)
    assert math.isclose(tw_loss, np_loss, rel_tol=1e-10)
    for name, tw_grad in zip(names, tw_grads):
        np.testing.assert_allclose(tw_grad, np_grads[name], rtol=1e-8, atol=1e-12, err_msg=name)

    np_params = copy.deepcopy(params)
    step = train_step.numpy_step(model, np_params, shape)
    for _ in range(2):
        step(x, labels)
    for name, value in zip(names, tw_after):
        np.testing.assert_allclose(value, np_params[name], rtol=1e-8, atol=1e-12, err_msg=name)
