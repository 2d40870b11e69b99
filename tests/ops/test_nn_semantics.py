"""TF1 semantics of tw.nn: convolution against a direct loop reference, TF's SAME padding split,
pooling at the borders, numerically stable softmax and losses, and the errors users see."""

import numpy as np
import pytest

import tensorweave as tw
from tests.ops import nn_reference as ref


def run(fetches, feed=None):
    with tw.Session() as sess:
        return sess.run(fetches, feed)


@pytest.fixture(autouse=True)
def fresh_graph():
    with tw.Graph().as_default():
        yield


def random(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- convolution ----------------------------------------------------------------------------------
CONV_CONFIGS = [
    # (input shape, filter shape, strides, padding, dilations)
    ((2, 9, 9, 3), (3, 3, 3, 4), (1, 1), "SAME", (1, 1)),
    ((2, 9, 8, 3), (4, 4, 3, 2), (1, 1), "SAME", (1, 1)),
    ((2, 9, 8, 3), (4, 2, 3, 2), (2, 2), "SAME", (1, 1)),
    ((1, 10, 10, 2), (5, 5, 2, 3), (3, 3), "SAME", (1, 1)),
    ((1, 10, 11, 2), (3, 3, 2, 3), (2, 3), "VALID", (1, 1)),
    ((2, 8, 8, 1), (3, 3, 1, 2), (1, 1), "SAME", (2, 2)),
    ((1, 9, 9, 2), (2, 3, 2, 2), (1, 2), "VALID", (3, 2)),
    ((3, 28, 28, 1), (5, 5, 1, 8), (1, 1), "SAME", (1, 1)),
]


@pytest.mark.parametrize("x_shape,f_shape,strides,padding,dilations", CONV_CONFIGS)
def test_conv2d_and_its_gradients_match_the_loop_reference(x_shape, f_shape, strides, padding,
                                                           dilations):
    x_value, f_value = random(x_shape), random(f_shape, seed=1)
    x = tw.placeholder(tw.float32, x_shape)
    f = tw.placeholder(tw.float32, f_shape)
    y = tw.nn.conv2d(x, f, strides=[1, *strides, 1], padding=padding,
                     dilations=[1, *dilations, 1])
    want = ref.conv2d(x_value, f_value, strides, padding, dilations)
    assert y.shape.as_list() == list(want.shape)
    g_value = random(want.shape, seed=2)
    dx, df = tw.gradients(y, [x, f], grad_ys=tw.constant(g_value))
    got, got_dx, got_df = run([y, dx, df], {x: x_value, f: f_value})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_dx, ref.conv2d_backprop_input(x_shape, f_value, g_value,
                                                                 strides, padding, dilations),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_df, ref.conv2d_backprop_filter(x_value, f_shape, g_value,
                                                                  strides, padding, dilations),
                               rtol=1e-4, atol=1e-3)
    assert got.dtype == got_dx.dtype == got_df.dtype == np.float32


def test_same_padding_puts_the_extra_element_after():
    # 4x4 input, 2x2 ones kernel, stride 1: TF pads 0 rows before and 1 after, so output (r, c)
    # sums x[r:r+2, c:c+2] and the last row/column see only the zero padding beyond the edge.
    x_value = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    y = tw.nn.conv2d(x_value, np.ones((2, 2, 1, 1), np.float32), [1, 1, 1, 1], "SAME")
    got = run(y)[0, :, :, 0]
    x2 = x_value[0, :, :, 0]
    assert got[0, 0] == x2[0:2, 0:2].sum()
    assert got[3, 3] == x2[3, 3]
    assert got[0, 3] == x2[0:2, 3].sum()


def test_same_padding_split_for_stride_2():
    # 4 wide, kernel 3, stride 2: 2 outputs, total padding (2-1)*2 + 3 - 4 = 1 -> 0 before.
    x_value = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    y = tw.nn.conv2d(x_value, np.ones((3, 3, 1, 1), np.float32), [1, 2, 2, 1], "SAME")
    got = run(y)[0, :, :, 0]
    x2 = x_value[0, :, :, 0]
    np.testing.assert_array_equal(got, [[x2[0:3, 0:3].sum(), x2[0:3, 2:4].sum()],
                                        [x2[2:4, 0:3].sum(), x2[2:4, 2:4].sum()]])


def test_same_padding_odd_total_for_kernel_4():
    # 5 wide, kernel 4, stride 1: total padding 3 -> 1 before, 2 after.
    x_value = np.arange(5, dtype=np.float32).reshape(1, 1, 5, 1)
    y = tw.nn.conv2d(x_value, np.ones((1, 4, 1, 1), np.float32), [1, 1, 1, 1], "SAME")
    np.testing.assert_array_equal(run(y).reshape(-1), [0 + 1 + 2, 0 + 1 + 2 + 3, 1 + 2 + 3 + 4,
                                                       2 + 3 + 4, 3 + 4])


def test_conv2d_accepts_tf_short_forms_of_strides_and_dilations():
    x_value, f_value = random((1, 7, 7, 2)), random((3, 3, 2, 2), seed=1)
    a = tw.nn.conv2d(x_value, f_value, strides=2, padding="SAME")
    b = tw.nn.conv2d(x_value, f_value, strides=[2, 2], padding="SAME")
    c = tw.nn.conv2d(x_value, f_value, strides=[1, 2, 2, 1], padding="SAME")
    got_a, got_b, got_c = run([a, b, c])
    np.testing.assert_array_equal(got_a, got_c)
    np.testing.assert_array_equal(got_b, got_c)


def test_conv2d_keeps_an_unknown_batch_dimension():
    x = tw.placeholder(tw.float32, [None, 28, 28, 1])
    w = tw.constant(random((5, 5, 1, 32)))
    y = tw.nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME")
    pooled = tw.nn.max_pool(y, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
    assert y.shape.as_list() == [None, 28, 28, 32]
    assert pooled.shape.as_list() == [None, 14, 14, 32]


def test_conv2d_errors_name_the_shapes():
    x = tw.placeholder(tw.float32, [1, 5, 5, 3])
    with pytest.raises(ValueError, match=r"input depth 3 does not match filter depth 2"):
        tw.nn.conv2d(x, tw.zeros([3, 3, 2, 4]), [1, 1, 1, 1], "SAME")
    with pytest.raises(ValueError, match="NHWC"):
        tw.nn.conv2d(x, tw.zeros([3, 3, 3, 4]), [1, 1, 1, 1], "SAME", data_format="NCHW")
    with pytest.raises(ValueError, match="padding must be 'SAME' or 'VALID'"):
        tw.nn.conv2d(x, tw.zeros([3, 3, 3, 4]), [1, 1, 1, 1], "FULL")
    with pytest.raises(ValueError, match="batch|spatial"):
        tw.nn.conv2d(x, tw.zeros([3, 3, 3, 4]), [2, 1, 1, 1], "SAME")
    with pytest.raises(ValueError, match="does not fit an input of size 5"):
        tw.nn.conv2d(x, tw.zeros([7, 7, 3, 4]), [1, 1, 1, 1], "VALID")
    with pytest.raises(ValueError, match="must be 4-D"):
        tw.nn.conv2d(tw.zeros([5, 5, 3]), tw.zeros([3, 3, 3, 4]), [1, 1, 1, 1], "SAME")
    with pytest.raises(TypeError, match="int32"):
        tw.nn.conv2d(tw.zeros([1, 5, 5, 3], dtype=tw.int32), tw.zeros([3, 3, 3, 4],
                                                                      dtype=tw.int32),
                     [1, 1, 1, 1], "SAME")


def test_conv2d_stays_float32_through_training_ops():
    x = tw.constant(random((2, 6, 6, 3)))
    w = tw.constant(random((3, 3, 3, 4), seed=1))
    y = tw.nn.relu(tw.nn.conv2d(x, w, [1, 1, 1, 1], "SAME"))
    loss = tw.nn.l2_loss(tw.nn.max_pool(y, 2, 2, "SAME"))
    values = run([y, loss] + tw.gradients(loss, [x, w]))
    assert [v.dtype for v in values] == [np.float32] * 4


# -- pooling --------------------------------------------------------------------------------------
def test_max_pool_same_padding_never_wins():
    x_value = -np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    y = tw.nn.max_pool(x_value, [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
    np.testing.assert_array_equal(run(y)[0, :, :, 0], [[-1, -3], [-7, -9]])


def test_avg_pool_same_padding_averages_only_real_elements():
    x_value = np.ones((1, 5, 5, 2), np.float32)
    y = tw.nn.avg_pool(x_value, [1, 3, 3, 1], [1, 2, 2, 1], "SAME")
    np.testing.assert_array_equal(run(y), np.ones((1, 3, 3, 2), np.float32))
    corner = tw.nn.avg_pool(np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1), 2, 2, "SAME")
    # The last window of each row holds only the real elements 2 and 5 (then 8 alone).
    np.testing.assert_allclose(run(corner)[0, :, :, 0], [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2],
                                                          [(6 + 7) / 2, 8]])


@pytest.mark.parametrize("ksize,strides,padding", [(2, 2, "SAME"), (3, 1, "SAME"),
                                                   (2, 2, "VALID"), (3, 2, "VALID")])
def test_max_pool_gradient_goes_to_the_first_maximum_on_ties(ksize, strides, padding):
    x_value = np.array([[1, 3, 3, 2, 0], [3, 0, 2, 2, 1], [0, 0, 5, 5, 1], [0, 0, 5, 1, 4],
                        [2, 2, 2, 2, 2]], np.float32).reshape(1, 5, 5, 1)
    x = tw.placeholder(tw.float32, x_value.shape)
    y = tw.nn.max_pool(x, ksize, strides, padding)
    g_value = random(y.shape.as_list(), seed=3)
    (dx,) = tw.gradients(y, [x], grad_ys=tw.constant(g_value))
    want = ref.max_pool_grad(x_value, g_value, (ksize, ksize), (strides, strides), padding)
    np.testing.assert_allclose(run(dx, {x: x_value}), want, rtol=1e-6)


def test_max_pool_gradient_of_relu_zeros():
    # After a ReLU whole windows are zero: all ties, the gradient goes to each window's first.
    x_value = np.zeros((1, 4, 4, 1), np.float32)
    x = tw.placeholder(tw.float32, x_value.shape)
    y = tw.nn.max_pool(x, 2, 2, "VALID")
    (dx,) = tw.gradients(y, [x])
    want = np.zeros((4, 4), np.float32)
    want[0::2, 0::2] = 1
    np.testing.assert_array_equal(run(dx, {x: x_value})[0, :, :, 0], want)


def test_max_pool_gradient_with_non_finite_incoming_gradient_stays_routed():
    x_value = np.array([1, 2, 4, 3], np.float32).reshape(1, 2, 2, 1)
    x = tw.placeholder(tw.float32, x_value.shape)
    y = tw.nn.max_pool(x, 2, 2, "VALID")
    (dx,) = tw.gradients(y, [x], grad_ys=tw.constant(np.full((1, 1, 1, 1), np.inf, np.float32)))
    np.testing.assert_array_equal(run(dx, {x: x_value}).reshape(-1), [0, 0, np.inf, 0])


def test_pool_errors():
    x = tw.placeholder(tw.float32, [1, 4, 4, 2])
    with pytest.raises(ValueError, match="NHWC"):
        tw.nn.max_pool(x, 2, 2, "SAME", data_format="NCHW")
    with pytest.raises(ValueError, match="ksize"):
        tw.nn.avg_pool(x, [1, 2, 2, 2], [1, 1, 1, 1], "SAME")
    with pytest.raises(ValueError, match="ksize must be an int or a list of 1, 2 or 4 ints"):
        tw.nn.max_pool(x, [2, 2, 2], 1, "SAME")


# -- activations ----------------------------------------------------------------------------------
def test_relu_gradient_at_zero_is_zero():
    x = tw.placeholder(tw.float32, [3])
    (dx,) = tw.gradients(tw.nn.relu(x), [x])
    np.testing.assert_array_equal(run(dx, {x: [-1.0, 0.0, 2.0]}), [0, 0, 1])


def test_softplus_and_elu_are_stable_at_extremes():
    x = tw.constant([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    softplus, elu = run([tw.nn.softplus(x), tw.nn.elu(x)])
    np.testing.assert_allclose(softplus, [0.0, np.exp(-50.0), np.log(2.0), 50.0, 1000.0],
                               rtol=1e-6)
    np.testing.assert_allclose(elu, [-1.0, -1.0, 0.0, 50.0, 1000.0])


def test_sigmoid_and_tanh_are_exposed_in_nn():
    x = tw.constant([0.0, 1.0])
    got_sigmoid, got_tanh = run([tw.nn.sigmoid(x), tw.nn.tanh(x)])
    np.testing.assert_allclose(got_sigmoid, [0.5, 1 / (1 + np.exp(-1.0))], rtol=1e-6)
    np.testing.assert_allclose(got_tanh, [0.0, np.tanh(1.0)], rtol=1e-6)


# -- softmax --------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax_on_any_axis(axis):
    x_value = random((3, 4))
    got, got_log = run([tw.nn.softmax(x_value, axis=axis), tw.nn.log_softmax(x_value,
                                                                            axis=axis)])
    np.testing.assert_allclose(got, ref.softmax(x_value, axis), rtol=1e-5)
    np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=1e-6)
    np.testing.assert_allclose(got_log, ref.log_softmax(x_value, axis), rtol=1e-5, atol=1e-6)


def test_softmax_is_stable_for_large_logits():
    logits = tw.constant([[1000.0, 0.0], [-1000.0, -1000.0], [1000.0, 999.0]])
    probs, log_probs = run([tw.nn.softmax(logits), tw.nn.log_softmax(logits)])
    assert np.isfinite(probs).all() and np.isfinite(log_probs).all()
    np.testing.assert_allclose(probs, [[1, 0], [0.5, 0.5], ref.softmax([1000.0, 999.0])],
                               rtol=1e-6)
    np.testing.assert_allclose(log_probs[0], [0.0, -1000.0])


def test_softmax_axis_and_dim_together_is_an_error():
    with pytest.raises(ValueError, match="both 'axis' and 'dim'"):
        tw.nn.softmax(tw.zeros([2, 3]), axis=0, dim=1)
    with pytest.raises(ValueError, match="out of range"):
        tw.nn.softmax(tw.zeros([2, 3]), axis=2)


# -- bias add -------------------------------------------------------------------------------------
def test_bias_add_gradient_sums_all_but_the_channel_axis():
    value = tw.placeholder(tw.float32, [2, 3, 4])
    bias = tw.placeholder(tw.float32, [4])
    y = tw.nn.bias_add(value, bias)
    g_value = random((2, 3, 4))
    dv, db = tw.gradients(y, [value, bias], grad_ys=tw.constant(g_value))
    got_dv, got_db = run([dv, db], {value: random((2, 3, 4)), bias: random((4,))})
    np.testing.assert_array_equal(got_dv, g_value)
    np.testing.assert_allclose(got_db, g_value.sum(axis=(0, 1)), rtol=1e-6)
    assert db.op.type == "BiasAddGrad"


def test_bias_add_shape_errors():
    with pytest.raises(ValueError, match=r"bias of shape \(3,\).*channel.*\(2, 4\)"):
        tw.nn.bias_add(tw.zeros([2, 4]), tw.zeros([3]))
    with pytest.raises(ValueError, match="bias must be 1-D"):
        tw.nn.bias_add(tw.zeros([2, 4]), tw.zeros([1, 4]))


# -- losses ---------------------------------------------------------------------------------------
def test_softmax_cross_entropy_values():
    logits = tw.constant([[0.0, 0.0], [1000.0, 0.0], [0.0, 1000.0]])
    labels = tw.constant([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    loss = run(tw.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits))
    np.testing.assert_allclose(loss, [np.log(2.0), 0.0, 1000.0], rtol=1e-6)


def test_softmax_cross_entropy_v1_does_not_backprop_into_labels_v2_does():
    logits = tw.placeholder(tw.float32, [2, 3])
    labels = tw.placeholder(tw.float32, [2, 3])
    v1 = tw.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    v2 = tw.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits)
    assert tw.gradients(v1, [labels]) == [None]
    (d_labels,) = tw.gradients(v2, [labels])
    logits_value = random((2, 3))
    got = run(d_labels, {logits: logits_value, labels: np.full((2, 3), 1 / 3, np.float32)})
    np.testing.assert_allclose(got, -ref.log_softmax(logits_value), rtol=1e-5)


def test_softmax_cross_entropy_gradient_is_softmax_minus_labels():
    logits = tw.placeholder(tw.float32, [2, 3])
    labels_value = np.array([[0, 1, 0], [0.5, 0.25, 0.25]], np.float32)
    loss = tw.reduce_sum(tw.nn.softmax_cross_entropy_with_logits_v2(labels_value, logits))
    (d_logits,) = tw.gradients(loss, [logits])
    logits_value = random((2, 3))
    np.testing.assert_allclose(run(d_logits, {logits: logits_value}),
                               ref.softmax(logits_value) - labels_value, rtol=1e-5, atol=1e-7)


def test_cross_entropy_needs_named_arguments():
    with pytest.raises(ValueError, match="named arguments"):
        tw.nn.softmax_cross_entropy_with_logits(tw.zeros([2, 3]), tw.zeros([2, 3]))
    with pytest.raises(ValueError, match="named arguments"):
        tw.nn.sparse_softmax_cross_entropy_with_logits(tw.zeros([2], tw.int32))


def test_sparse_cross_entropy_matches_dense():
    logits_value = random((4, 5))
    labels_value = np.array([0, 4, 2, 2], np.int64)
    sparse = tw.nn.sparse_softmax_cross_entropy_with_logits(labels=labels_value,
                                                            logits=logits_value)
    dense = tw.nn.softmax_cross_entropy_with_logits_v2(labels=np.eye(5, dtype=np.float32)[
        labels_value], logits=logits_value)
    got_sparse, got_dense = run([sparse, dense])
    np.testing.assert_allclose(got_sparse, got_dense, rtol=1e-6)


@pytest.mark.parametrize("bad", [3, -1])
def test_sparse_label_out_of_range_is_an_invalid_argument_error(bad):
    labels = tw.placeholder(tw.int32, [2])
    loss = tw.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                          logits=tw.zeros([2, 3]))
    with pytest.raises(tw.errors.InvalidArgumentError,
                       match=rf"label value of {bad} which is outside the valid range of \[0, 3\)"):
        run(loss, {labels: [0, bad]})


def test_sparse_labels_must_be_integers_of_the_right_shape():
    with pytest.raises(TypeError, match="labels"):
        tw.nn.sparse_softmax_cross_entropy_with_logits(labels=tw.zeros([2]),
                                                       logits=tw.zeros([2, 3]))
    with pytest.raises(ValueError, match="without its last dimension"):
        tw.nn.sparse_softmax_cross_entropy_with_logits(labels=tw.zeros([3], tw.int32),
                                                       logits=tw.zeros([2, 3]))


def test_sigmoid_cross_entropy_is_stable_and_matches_the_formula():
    x_value = np.array([-1000.0, -5.0, 0.0, 5.0, 1000.0], np.float32)
    z_value = np.array([1.0, 0.0, 0.5, 1.0, 0.0], np.float32)
    x = tw.placeholder(tw.float32, [5])
    loss = tw.nn.sigmoid_cross_entropy_with_logits(labels=z_value, logits=x)
    (dx,) = tw.gradients(loss, [x])
    got, got_dx = run([loss, dx], {x: x_value})
    np.testing.assert_allclose(got, ref.sigmoid_xent(x_value, z_value), rtol=1e-6)
    sigmoid = np.exp(-np.logaddexp(0.0, -x_value.astype(np.float64)))
    np.testing.assert_allclose(got_dx, sigmoid - z_value, rtol=1e-6, atol=1e-7)


def test_l2_loss_is_half_the_sum_of_squares():
    t = tw.constant([[1.0, 2.0], [3.0, 4.0]])
    loss = tw.nn.l2_loss(t)
    assert loss.shape.as_list() == []
    assert run(loss) == np.float32(15.0)


def test_gradients_keep_static_shapes_with_an_unknown_batch():
    x = tw.placeholder(tw.float32, [None, 6, 6, 2])
    f = tw.placeholder(tw.float32, [3, 3, 2, 4])
    y = tw.nn.conv2d(x, f, strides=2, padding="SAME")
    pooled = tw.nn.avg_pool(x, 2, 2, "SAME")
    dx_conv, df = tw.gradients(y, [x, f])
    (dx_pool,) = tw.gradients(pooled, [x])
    assert dx_conv.shape.as_list() == [None, 6, 6, 2]
    assert df.shape.as_list() == [3, 3, 2, 4]
    assert dx_pool.shape.as_list() == [None, 6, 6, 2]
