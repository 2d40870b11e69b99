"""Cases for the nn ops: activations and their gradient ops, softmax, bias add, convolution,
pooling and the losses. References are direct numpy code (``nn_reference`` for the loops)."""

import numpy as np

import tensorweave as tw
from tensorweave.ops.registry import apply_op
from tests.ops import nn_reference as ref
from tests.ops.harness import OpCase, arr, rand


def away_from(values, points, margin=0.1):
    """``values`` nudged off the kinks at ``points`` (finite differences need smoothness)."""
    values = np.array(values)
    for p in points:
        close = np.abs(values - p) < margin
        values[close] = p + np.where(values[close] >= p, margin, -margin)
    return values


def distinct(*shape, seed=0, dtype="float32"):
    """Values without ties (max pooling's gradient is only smooth away from ties)."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0 - 1.0).astype(dtype)


def distributions(*shape, seed=0, axis=-1):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 1.0, size=shape)
    return (p / p.sum(axis=axis, keepdims=True)).astype("float32")


def op_output(op_type, inputs, attrs=None, index=0):
    return apply_op(op_type, inputs, attrs or {}).outputs[index]


def op_outputs(op_type, inputs, attrs=None):
    return list(apply_op(op_type, inputs, attrs or {}).outputs)


# -- activations ----------------------------------------------------------------------------------
ACTIVATIONS = [
    OpCase("Relu", tw.nn.relu, [away_from(rand(3, 4), [0])], lambda x: np.maximum(x, 0)),
    OpCase("Relu", tw.nn.relu, [rand(2, 3, dtype="int32", low=-3, high=3)],
           lambda x: np.maximum(x, 0), name="int32"),
    OpCase("Relu", tw.nn.relu, [np.zeros((0, 3), "float32")], lambda x: x, name="empty"),
    OpCase("ReluGrad", lambda g, y: op_output("ReluGrad", [g, y]),
           [rand(3, 4, seed=1), away_from(rand(3, 4), [0])], lambda g, y: g * (y > 0)),
    OpCase("Relu6", tw.nn.relu6, [away_from(rand(3, 4, low=-3, high=9), [0, 6])],
           lambda x: np.minimum(np.maximum(x, 0), 6)),
    OpCase("Relu6Grad", lambda g, x: op_output("Relu6Grad", [g, x]),
           [rand(3, 4, seed=1), away_from(rand(3, 4, low=-3, high=9), [0, 6])],
           lambda g, x: g * ((x > 0) & (x < 6))),
    OpCase("Elu", tw.nn.elu, [away_from(rand(3, 4, low=-4, high=3), [0])],
           lambda x: np.where(x > 0, x, np.exp(x) - 1)),
    OpCase("Elu", tw.nn.elu, [arr([-100.0, -1.0, 0.5, 80.0, 1e30])],
           lambda x: np.where(x > 0, x, np.exp(np.minimum(x, 0)) - 1), grad=False,
           name="extremes"),
    OpCase("EluGrad", lambda g, y: op_output("EluGrad", [g, y]),
           [rand(3, 4, seed=1), away_from(rand(3, 4, low=-0.9, high=2), [0])],
           lambda g, y: np.where(y > 0, g, g * (y + 1))),
    OpCase("Softplus", tw.nn.softplus, [rand(3, 4, low=-4, high=4)],
           lambda x: np.log1p(np.exp(x))),
    OpCase("Softplus", tw.nn.softplus, [arr([-200.0, -20.0, 0.0, 20.0, 200.0])],
           lambda x: np.logaddexp(0, x.astype(np.float64)), grad=False, name="extremes"),
    OpCase("SoftplusGrad", lambda g, x: op_output("SoftplusGrad", [g, x]),
           [rand(3, 4, seed=1), rand(3, 4, low=-4, high=4)],
           lambda g, x: g / (1 + np.exp(-x.astype(np.float64)))),
]

# -- softmax --------------------------------------------------------------------------------------
SOFTMAX = [
    OpCase("Softmax", tw.nn.softmax, [rand(3, 5)], ref.softmax),
    OpCase("Softmax", lambda x: tw.nn.softmax(x, axis=0), [rand(4, 3)],
           lambda x: ref.softmax(x, axis=0), name="axis0"),
    OpCase("Softmax", lambda x: tw.nn.softmax(x, dim=1), [rand(2, 3, 4)],
           lambda x: ref.softmax(x, axis=1), name="dim1_3d"),
    OpCase("Softmax", tw.nn.softmax, [arr([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 999.0]])],
           ref.softmax, grad=False, name="large_logits"),
    OpCase("Softmax", tw.nn.softmax, [np.zeros((0, 3), "float32")], ref.softmax, name="empty"),
    OpCase("Softmax", tw.nn.softmax, [rand(2, 4, dtype="float64")], ref.softmax, name="float64"),
    OpCase("LogSoftmax", tw.nn.log_softmax, [rand(3, 5)], ref.log_softmax),
    OpCase("LogSoftmax", lambda x: tw.nn.log_softmax(x, axis=0), [rand(4, 3)],
           lambda x: ref.log_softmax(x, axis=0), name="axis0"),
    OpCase("LogSoftmax", tw.nn.log_softmax, [arr([[1000.0, 0.0, -1000.0]])], ref.log_softmax,
           grad=False, name="large_logits"),
]

# -- bias add -------------------------------------------------------------------------------------
BIAS = [
    OpCase("BiasAdd", tw.nn.bias_add, [rand(2, 3, 4), rand(4, seed=1)],
           lambda v, b: v + b),
    OpCase("BiasAdd", lambda v, b: tw.nn.bias_add(v, b, data_format="NCHW"),
           [rand(2, 3, 2, 2), rand(3, seed=1)], lambda v, b: v + b[:, None, None],
           name="nchw"),
    OpCase("BiasAdd", tw.nn.bias_add, [rand(2, 3, dtype="int32"), rand(3, dtype="int32")],
           lambda v, b: v + b, name="int32"),
    OpCase("BiasAdd", tw.nn.bias_add, [np.zeros((0, 3), "float32"), rand(3)],
           lambda v, b: v + b, name="empty"),
    OpCase("BiasAddGrad", lambda g: op_output("BiasAddGrad", [g], {"data_format": "NHWC"}),
           [rand(2, 3, 4)], lambda g: g.sum(axis=(0, 1))),
    OpCase("BiasAddGrad", lambda g: op_output("BiasAddGrad", [g], {"data_format": "NCHW"}),
           [rand(2, 3, 2, 2)], lambda g: g.sum(axis=(0, 2, 3)), name="nchw"),
]


# -- convolution ----------------------------------------------------------------------------------
def conv_case(x_shape, f_shape, strides, padding, dilations=(1, 1), name="", grad=True,
              dtype="float32", rtol=1e-4):
    build = lambda x, f: tw.nn.conv2d(x, f, strides=[1, *strides, 1], padding=padding,  # noqa
                                      dilations=[1, *dilations, 1])
    return OpCase("Conv2D", build, [rand(*x_shape, dtype=dtype), rand(*f_shape, seed=1,
                                                                        dtype=dtype)],
                  lambda x, f: ref.conv2d(x, f, strides, padding, dilations), grad=grad,
                  rtol=rtol, atol=1e-4, name=name)


def conv_attrs(strides, padding, dilations=(1, 1)):
    return {"strides": [1, *strides, 1], "padding": padding, "dilations": [1, *dilations, 1],
            "data_format": "NHWC"}


def backprop_input_case(x_shape, f_shape, strides, padding, dilations=(1, 1), name=""):
    out_shape = ref.conv2d(np.zeros(x_shape), np.zeros(f_shape), strides, padding,
                           dilations).shape
    attrs = conv_attrs(strides, padding, dilations)
    build = lambda f, g: op_output("Conv2DBackpropInput",  # noqa: E731
                                   [tw.constant(list(x_shape)), f, g], attrs)
    return OpCase("Conv2DBackpropInput", build, [rand(*f_shape, seed=1), rand(*out_shape, seed=2)],
                  lambda f, g: ref.conv2d_backprop_input(x_shape, f, g, strides, padding,
                                                         dilations),
                  rtol=1e-4, atol=1e-4, name=name)


def backprop_filter_case(x_shape, f_shape, strides, padding, dilations=(1, 1), name=""):
    out_shape = ref.conv2d(np.zeros(x_shape), np.zeros(f_shape), strides, padding,
                           dilations).shape
    attrs = conv_attrs(strides, padding, dilations)
    build = lambda x, g: op_output("Conv2DBackpropFilter",  # noqa: E731
                                   [x, tw.constant(list(f_shape)), g], attrs)
    return OpCase("Conv2DBackpropFilter", build, [rand(*x_shape), rand(*out_shape, seed=2)],
                  lambda x, g: ref.conv2d_backprop_filter(x, f_shape, g, strides, padding,
                                                          dilations),
                  rtol=1e-4, atol=1e-4, name=name)


CONV = [
    conv_case((1, 4, 4, 2), (3, 3, 2, 2), (1, 1), "SAME", name="same"),
    conv_case((1, 5, 5, 1), (3, 3, 1, 2), (1, 1), "VALID", name="valid"),
    conv_case((1, 5, 5, 1), (3, 3, 1, 2), (2, 2), "SAME", name="same_stride2"),
    conv_case((1, 5, 4, 2), (2, 2, 2, 2), (2, 1), "SAME", name="even_kernel_strides21"),
    conv_case((1, 5, 5, 1), (2, 2, 1, 3), (1, 1), "SAME", dilations=(2, 2), name="dilation2"),
    conv_case((1, 5, 5, 1), (2, 3, 1, 2), (1, 1), "VALID", dilations=(2, 1), name="valid_dil"),
    conv_case((1, 4, 4, 3), (1, 1, 3, 2), (1, 1), "SAME", name="pointwise"),
    conv_case((2, 7, 6, 3), (3, 2, 3, 4), (2, 3), "SAME", grad=False, name="batch2_values"),
    conv_case((2, 6, 6, 2), (3, 3, 2, 3), (1, 1), "SAME", grad=False, dtype="float64",
              rtol=1e-10, name="float64"),
    conv_case((0, 5, 5, 2), (3, 3, 2, 2), (1, 1), "SAME", grad=False, name="empty_batch"),
    backprop_input_case((1, 4, 4, 2), (3, 3, 2, 2), (1, 1), "SAME", name="same"),
    backprop_input_case((1, 5, 5, 1), (3, 3, 1, 2), (2, 2), "VALID", name="valid_stride2"),
    backprop_input_case((1, 5, 5, 1), (2, 2, 1, 2), (1, 1), "SAME", dilations=(2, 2),
                        name="dilation2"),
    # 16+ channels at stride 1: the input gradient is a correlation with the flipped filter
    backprop_input_case((2, 5, 4, 16), (3, 3, 16, 3), (1, 1), "SAME", name="same_16_channels"),
    backprop_input_case((1, 6, 5, 16), (2, 3, 16, 2), (1, 1), "SAME", name="even_kernel_16"),
    backprop_input_case((1, 7, 7, 17), (2, 3, 17, 2), (1, 1), "VALID", dilations=(2, 1),
                        name="valid_dilated_17"),
    backprop_filter_case((1, 4, 4, 2), (3, 3, 2, 2), (1, 1), "SAME", name="same"),
    backprop_filter_case((1, 5, 5, 1), (2, 2, 1, 2), (2, 2), "SAME", name="same_stride2"),
    backprop_filter_case((1, 5, 5, 1), (2, 2, 1, 2), (1, 1), "VALID", dilations=(2, 2),
                         name="valid_dilation2"),
]


# -- pooling --------------------------------------------------------------------------------------
def pool_attrs(ksize, strides, padding):
    return {"ksize": [1, *ksize, 1], "strides": [1, *strides, 1], "padding": padding,
            "data_format": "NHWC"}


def pool_case(op_type, x, ksize, strides, padding, name="", grad=True):
    public = tw.nn.max_pool if op_type == "MaxPool" else tw.nn.avg_pool
    reference = ref.max_pool if op_type == "MaxPool" else ref.avg_pool
    return OpCase(op_type, lambda v: public(v, [1, *ksize, 1], [1, *strides, 1], padding), [x],
                  lambda v: reference(v, ksize, strides, padding), grad=grad, name=name)


def max_pool_grad_case(x, ksize, strides, padding, name=""):
    attrs = pool_attrs(ksize, strides, padding)
    out_shape = ref.pool_output_shape(x.shape, ksize, strides, padding)

    def build(v, g):
        y = tw.nn.max_pool(v, [1, *ksize, 1], [1, *strides, 1], padding)
        return op_output("MaxPoolGrad", [v, y, g], attrs)
    return OpCase("MaxPoolGrad", build, [x, rand(*out_shape, seed=3)],
                  lambda v, g: ref.max_pool_grad(v, g, ksize, strides, padding), name=name)


def max_pool_grad_grad_case(x, ksize, strides, padding, name=""):
    attrs = pool_attrs(ksize, strides, padding)

    def build(v, gg):
        y = tw.nn.max_pool(v, [1, *ksize, 1], [1, *strides, 1], padding)
        return op_output("MaxPoolGradGrad", [v, y, gg], attrs)
    return OpCase("MaxPoolGradGrad", build, [x, rand(*x.shape, seed=3)],
                  lambda v, gg: ref.max_pool_grad_grad(v, gg, ksize, strides, padding),
                  name=name)


def avg_pool_grad_case(x_shape, ksize, strides, padding, name=""):
    attrs = pool_attrs(ksize, strides, padding)
    out_shape = ref.pool_output_shape(x_shape, ksize, strides, padding)
    return OpCase("AvgPoolGrad",
                  lambda g: op_output("AvgPoolGrad", [tw.constant(list(x_shape)), g], attrs),
                  [rand(*out_shape, seed=3)],
                  lambda g: ref.avg_pool_grad(x_shape, g, ksize, strides, padding), name=name)


TIES = arr([[1, 3, 3, 2], [3, 0, 2, 2], [0, 0, 5, 5], [0, 0, 5, 1]]).reshape(1, 4, 4, 1)

POOLS = [
    pool_case("MaxPool", distinct(1, 4, 4, 2), (2, 2), (2, 2), "VALID", name="2x2"),
    pool_case("MaxPool", distinct(1, 5, 5, 1), (2, 2), (2, 2), "SAME", name="same_odd"),
    pool_case("MaxPool", distinct(1, 5, 5, 1), (3, 3), (2, 2), "SAME", name="overlap_same"),
    pool_case("MaxPool", distinct(1, 5, 4, 1), (3, 2), (1, 2), "VALID", name="overlap_valid"),
    pool_case("MaxPool", rand(2, 4, 4, 3, dtype="int32", low=-9, high=9), (2, 2), (2, 2),
              "SAME", name="int32"),
    pool_case("MaxPool", arr(np.full((1, 3, 3, 1), -np.inf)), (2, 2), (2, 2), "SAME",
              grad=False, name="all_minus_inf"),
    pool_case("MaxPool", np.zeros((0, 4, 4, 2), "float32"), (2, 2), (2, 2), "SAME",
              name="empty"),
    pool_case("AvgPool", rand(1, 4, 4, 2), (2, 2), (2, 2), "VALID", name="2x2"),
    pool_case("AvgPool", rand(1, 5, 5, 1), (3, 3), (2, 2), "SAME", name="same_partial"),
    pool_case("AvgPool", rand(1, 5, 4, 1), (2, 3), (2, 1), "SAME", name="even_kernel"),
    pool_case("AvgPool", rand(2, 6, 6, 3, dtype="float64"), (3, 3), (3, 3), "VALID",
              grad=False, name="float64"),
    max_pool_grad_case(distinct(1, 4, 4, 2), (2, 2), (2, 2), "VALID", name="tiled"),
    max_pool_grad_case(distinct(1, 5, 5, 1), (2, 2), (2, 2), "SAME", name="tiled_padded"),
    max_pool_grad_case(distinct(1, 5, 5, 1), (3, 3), (2, 2), "SAME", name="overlap"),
    OpCase("MaxPoolGrad",
           lambda v, g: op_output("MaxPoolGrad", [v, tw.nn.max_pool(v, 2, 2, "VALID"), g],
                                  pool_attrs((2, 2), (2, 2), "VALID")),
           [TIES, rand(1, 2, 2, 1, seed=3)],
           lambda v, g: ref.max_pool_grad(v, g, (2, 2), (2, 2), "VALID"), grad=False,
           name="ties_tiled"),
    OpCase("MaxPoolGrad",
           lambda v, g: op_output("MaxPoolGrad", [v, tw.nn.max_pool(v, 3, 1, "SAME"), g],
                                  pool_attrs((3, 3), (1, 1), "SAME")),
           [TIES, rand(1, 4, 4, 1, seed=3)],
           lambda v, g: ref.max_pool_grad(v, g, (3, 3), (1, 1), "SAME"), grad=False,
           name="ties_overlap"),
    max_pool_grad_grad_case(distinct(1, 4, 4, 1), (2, 2), (2, 2), "SAME", name="tiled"),
    max_pool_grad_grad_case(distinct(1, 5, 5, 1), (3, 3), (2, 2), "VALID", name="overlap"),
    avg_pool_grad_case((1, 4, 4, 2), (2, 2), (2, 2), "VALID", name="2x2"),
    avg_pool_grad_case((1, 5, 5, 1), (3, 3), (2, 2), "SAME", name="same_partial"),
]

# -- losses ---------------------------------------------------------------------------------------
XENT_LOGITS = rand(3, 4, low=-3, high=3)
XENT_LABELS = distributions(3, 4, seed=1)

LOSSES = [
    OpCase("L2Loss", tw.nn.l2_loss, [rand(3, 4)], lambda t: (t.astype(np.float64) ** 2).sum() / 2),
    OpCase("L2Loss", tw.nn.l2_loss, [np.zeros((0,), "float32")], lambda t: np.float32(0),
           grad=False, name="empty"),
    OpCase("SoftmaxCrossEntropyWithLogits",
           lambda x, z: tw.nn.softmax_cross_entropy_with_logits_v2(labels=z, logits=x),
           [XENT_LOGITS, XENT_LABELS], lambda x, z: ref.softmax_xent(x, z)[0], name="v2"),
    OpCase("SoftmaxCrossEntropyWithLogits",
           lambda x, z: tw.nn.softmax_cross_entropy_with_logits(labels=z, logits=x),
           [XENT_LOGITS, XENT_LABELS], lambda x, z: ref.softmax_xent(x, z)[0],
           grad_inputs=(0,), name="v1"),
    OpCase("SoftmaxCrossEntropyWithLogits",
           lambda x, z: tw.nn.softmax_cross_entropy_with_logits_v2(z, x, axis=0),
           [rand(4, 3, low=-3, high=3), distributions(4, 3, seed=2, axis=0)],
           lambda x, z: ref.softmax_xent(x, z, axis=0)[0], name="axis0"),
    OpCase("SoftmaxCrossEntropyWithLogits",
           lambda x, z: op_outputs("SoftmaxCrossEntropyWithLogits", [x, z], {"axis": -1}),
           [XENT_LOGITS, XENT_LABELS], ref.softmax_xent, name="both_outputs"),
    OpCase("SoftmaxCrossEntropyWithLogits",
           lambda x, z: tw.nn.softmax_cross_entropy_with_logits_v2(z, x),
           [arr([[1000.0, 0.0, -1000.0]]), arr([[0.0, 1.0, 0.0]])],
           lambda x, z: ref.softmax_xent(x, z)[0], grad=False, name="large_logits"),
    OpCase("SparseSoftmaxCrossEntropyWithLogits",
           lambda x, y: tw.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
           [XENT_LOGITS, arr([0, 3, 1], "int32")],
           lambda x, y: ref.sparse_softmax_xent(x, y)[0]),
    OpCase("SparseSoftmaxCrossEntropyWithLogits",
           lambda x, y: tw.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
           [rand(2, 3, 4, low=-3, high=3), arr([[0, 3, 1], [2, 2, 0]], "int64")],
           lambda x, y: ref.sparse_softmax_xent(x, y)[0], name="int64_3d"),
    OpCase("SparseSoftmaxCrossEntropyWithLogits",
           lambda x, y: op_outputs("SparseSoftmaxCrossEntropyWithLogits", [x, y]),
           [XENT_LOGITS, arr([2, 0, 1], "int32")], ref.sparse_softmax_xent,
           name="both_outputs"),
    OpCase("SigmoidCrossEntropyWithLogits",
           lambda x, z: tw.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x),
           [rand(3, 4, low=-4, high=4), rand(3, 4, seed=1, low=0, high=1)], ref.sigmoid_xent),
    OpCase("SigmoidCrossEntropyWithLogits",
           lambda x, z: tw.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x),
           [arr([-1000.0, -30.0, 0.0, 30.0, 1000.0]), arr([0.0, 1.0, 0.5, 0.0, 1.0])],
           ref.sigmoid_xent, grad=False, name="extremes"),
]

CASES = ACTIVATIONS + SOFTMAX + BIAS + CONV + POOLS + LOSSES
