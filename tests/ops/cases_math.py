"""Cases for the math ops: reductions, elementwise arithmetic, unary functions, comparisons,
logic, selection, casts, clipping and argmax. References are plain numpy (or explicit values
where the semantics are the point: truncation, banker's rounding, floor division)."""

import ml_dtypes
import numpy as np

import tensorweave as tw
from tensorweave.ops.registry import apply_op
from tests.ops.harness import OpCase, arr, positive, rand


def _i32(values):
    return arr(values, "int32")


def _sigmoid(x):
    with np.errstate(over="ignore"):  # exp(1000) is inf, and 1 / inf is the right 0
        return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(x.dtype)


def _where_summary(c):
    coords = np.argwhere(c)
    return coords.sum(axis=0), np.array(coords.shape, dtype=np.int32)


def _where_built(c):
    coords = tw.where(c)
    return [tw.reduce_sum(coords, axis=0), tw.shape(coords)]


def _cast_round_trip(x):
    """float32 -> float64 -> float32 (values), float64 -> float32 -> float64 (gradients)."""
    other = tw.float32 if x.dtype == tw.float64 else tw.float64
    return tw.cast(tw.cast(x, other), x.dtype)


REDUCTIONS = [
    OpCase("Sum", lambda x: tw.reduce_sum(x, axis=1), [rand(2, 3)], lambda x: x.sum(1)),
    OpCase("Sum", lambda x: tw.reduce_sum(x), [rand(2, 3, 2)], lambda x: x.sum(), name="all",
           rtol=1e-4),
    OpCase("Sum", lambda x: tw.reduce_sum(x, axis=[0, -1], keepdims=True), [rand(2, 3, 2)],
           lambda x: x.sum(axis=(0, 2), keepdims=True), name="keepdims_negative"),
    OpCase("Sum", lambda x: tw.reduce_sum(x, axis=[]), [rand(2, 3)], lambda x: x,
           name="no_axes"),
    OpCase("Sum", lambda x: tw.reduce_sum(x, reduction_indices=0), [rand(4, 3, dtype="int32")],
           lambda x: x.sum(0).astype(np.int32), name="int32"),
    OpCase("Sum", lambda x: tw.reduce_sum(x, axis=0), [np.zeros((0, 3), "float32")],
           lambda x: np.zeros(3, "float32"), name="empty"),
    OpCase("Sum", lambda x: tw.reduce_sum(x, axis=1, keep_dims=True), [rand(3, 2, dtype="int8")],
           lambda x: x.sum(1, keepdims=True).astype(np.int8), name="int8"),
    OpCase("Mean", lambda x: tw.reduce_mean(x, axis=0), [rand(3, 4)], lambda x: x.mean(0)),
    OpCase("Mean", lambda x: tw.reduce_mean(x, keepdims=True), [rand(2, 3)],
           lambda x: x.mean(keepdims=True), name="all_keepdims"),
    OpCase("Mean", lambda x: tw.reduce_mean(x, axis=1), [_i32([[-3, -4, 0], [5, 2, 0]])],
           lambda x: _i32([-2, 2]), name="int_truncates"),
    OpCase("Mean", lambda x: tw.reduce_mean(x, axis=1), [_i32([[-3, -4], [5, 2]])],
           lambda x: _i32([-3, 3]), name="int_truncates_toward_zero"),
    OpCase("Mean", lambda x: tw.reduce_mean(x, axis=0), [np.zeros((0, 2), "float32")],
           lambda x: np.full(2, np.nan, "float32"), name="empty_is_nan"),
    OpCase("Max", lambda x: tw.reduce_max(x, axis=1), [rand(3, 4)], lambda x: x.max(1)),
    OpCase("Max", lambda x: tw.reduce_max(x, axis=-1, keepdims=True), [rand(2, 3, 2)],
           lambda x: x.max(-1, keepdims=True), name="keepdims"),
    OpCase("Max", lambda x: tw.reduce_max(x), [rand(2, 3, dtype="int32")],
           lambda x: np.int32(x.max()), name="int32_all"),
    OpCase("Max", lambda x: tw.reduce_max(x, axis=0), [np.zeros((0, 3), "float32")],
           lambda x: np.full(3, -np.inf, "float32"), name="empty"),
    OpCase("Min", lambda x: tw.reduce_min(x, axis=0), [rand(3, 4)], lambda x: x.min(0)),
    OpCase("Min", lambda x: tw.reduce_min(x, axis=1), [np.zeros((2, 0), "int32")],
           lambda x: np.full(2, np.iinfo(np.int32).max, "int32"), name="empty_int"),
    OpCase("Prod", lambda x: tw.reduce_prod(x, axis=1), [rand(3, 4)], lambda x: x.prod(1),
           rtol=1e-4),
    OpCase("Prod", lambda x: tw.reduce_prod(x, axis=1),
           [arr([[1.5, 0.0, 2.0], [0.5, -1.2, 0.7], [0.0, 0.0, 1.3]])], lambda x: x.prod(1),
           name="zeros"),
    OpCase("Prod", lambda x: tw.reduce_prod(x), [rand(2, 3, dtype="int32", low=1, high=3)],
           lambda x: np.int32(x.prod()), name="int32_all"),
    OpCase("Any", lambda x: tw.reduce_any(x, axis=1), [rand(3, 4, dtype="bool")],
           lambda x: x.any(1)),
    OpCase("Any", lambda x: tw.reduce_any(x), [np.zeros((0,), bool)], lambda x: np.False_,
           name="empty"),
    OpCase("All", lambda x: tw.reduce_all(x, axis=0, keepdims=True), [rand(3, 4, dtype="bool")],
           lambda x: x.all(0, keepdims=True)),
    OpCase("ReducedShape", lambda s, a: apply_op("ReducedShape", [s, a]).outputs[0],
           [_i32([2, 3, 4]), _i32([0, -1, 0])], lambda s, a: _i32([1, 3, 1])),
]

BINARY = [
    OpCase("Sub", tw.subtract, [rand(2, 3), rand(2, 3, seed=1)], np.subtract),
    OpCase("Sub", tw.subtract, [rand(2, 1, 3), rand(4, 1, seed=1)], np.subtract,
           name="broadcast"),
    OpCase("Sub", tw.subtract, [rand(3, dtype="uint8", low=3, high=9),
                                rand(3, dtype="uint8", seed=1, low=0, high=3)], np.subtract,
           name="uint8"),
    OpCase("Mul", tw.multiply, [rand(2, 3), rand(3, seed=1)], np.multiply),
    OpCase("Mul", tw.multiply, [rand(2, 3, dtype="int64"), rand(2, 1, dtype="int64", seed=1)],
           np.multiply, name="int64"),
    OpCase("Mul", tw.multiply, [rand(0, 3), rand(1, 3, seed=1)], np.multiply, name="empty"),
    OpCase("RealDiv", tw.realdiv, [rand(2, 3), positive(3, seed=1)], np.true_divide),
    OpCase("RealDiv", tw.truediv, [_i32([7, -7, 1]), _i32([2, 2, 3])],
           lambda x, y: x.astype(np.float64) / y, name="truediv_int32"),
    OpCase("RealDiv", tw.divide, [rand(4, dtype="int16"), arr([1, 2, -3, 4], "int16")],
           lambda x, y: x.astype(np.float32) / y.astype(np.float32), name="divide_int16"),
    OpCase("RealDiv", tw.div, [rand(2, 2, dtype="float64"), positive(2, dtype="float64")],
           np.true_divide, name="div_float"),
    OpCase("FloorDiv", tw.floordiv, [_i32([-7, 7, -7, 7, 0, 6]), _i32([2, 2, -2, -2, 3, 3])],
           lambda x, y: _i32([-4, 3, 3, -4, 0, 2])),
    OpCase("FloorDiv", tw.div, [_i32([[-7], [9]]), _i32([2, -4])],
           lambda x, y: _i32([[-4, 1], [4, -3]]), name="div_int_broadcast"),
    OpCase("FloorDiv", tw.floordiv, [arr([1.0, -7.5, 7.5, 3.0]), arr([0.1, 2.0, -2.0, 0.5])],
           lambda x, y: np.floor(x / y), name="float", grad=False),
    OpCase("FloorMod", tw.floormod, [_i32([-7, 7, -7, 7, 0]), _i32([2, 2, -2, -2, 3])],
           lambda x, y: _i32([1, 1, -1, -1, 0]), name="int32"),
    OpCase("FloorMod", tw.mod, [arr([-7.3, 7.3, -7.3, 2.6]), arr([2.0, -2.0, -2.0, 1.1])],
           lambda x, y: x - np.floor(x / y) * y, rtol=1e-5, atol=1e-5),
    OpCase("Pow", tw.pow, [positive(2, 3), rand(2, 3, seed=1)], np.power, rtol=1e-4),
    OpCase("Pow", tw.pow, [positive(2, 3), rand(3, seed=1)], np.power, rtol=1e-4,
           name="broadcast"),
    OpCase("Pow", tw.pow, [_i32([2, -3, 5, 0]), _i32([3, 3, 0, 2])], lambda x, y: x ** y,
           name="int32"),
    OpCase("Maximum", tw.maximum, [rand(2, 3), rand(2, 3, seed=1)], np.maximum),
    OpCase("Maximum", tw.maximum, [rand(2, 3), rand(3, seed=1)], np.maximum, name="broadcast"),
    OpCase("Maximum", tw.maximum, [rand(4, dtype="int32"), rand(4, dtype="int32", seed=3)],
           np.maximum, name="int32"),
    OpCase("Minimum", tw.minimum, [rand(2, 3), rand(2, 1, seed=1)], np.minimum),
    OpCase("SquaredDifference", tw.squared_difference, [rand(2, 3), rand(3, seed=1)],
           lambda x, y: (x - y) ** 2),
    OpCase("SquaredDifference", tw.squared_difference,
           [rand(3, dtype="int32"), rand(3, dtype="int32", seed=1)], lambda x, y: (x - y) ** 2,
           name="int32"),
]

UNARY = [
    OpCase("Neg", tw.negative, [rand(2, 3)], np.negative),
    OpCase("Neg", tw.negative, [rand(3, dtype="int64")], np.negative, name="int64"),
    OpCase("Abs", tw.abs, [rand(2, 3)], np.abs),
    OpCase("Abs", tw.abs, [_i32([-3, 0, 4])], lambda x: _i32([3, 0, 4]), name="int32"),
    OpCase("Sign", tw.sign, [arr([-2.0, 0.5, 3.0, -0.1])], lambda x: arr([-1, 1, 1, -1])),
    OpCase("Sign", tw.sign, [_i32([-5, 0, 7])], lambda x: _i32([-1, 0, 1]), name="int32"),
    OpCase("Square", tw.square, [rand(2, 3)], lambda x: x * x),
    OpCase("Square", tw.square, [_i32([-3, 4])], lambda x: x * x, name="int32"),
    OpCase("Sqrt", tw.sqrt, [positive(2, 3)], np.sqrt),
    OpCase("Rsqrt", tw.rsqrt, [positive(2, 3)], lambda x: 1 / np.sqrt(x)),
    OpCase("Reciprocal", tw.reciprocal, [positive(2, 3)], lambda x: 1 / x),
    OpCase("Exp", tw.exp, [rand(2, 3)], np.exp),
    OpCase("Exp", tw.exp, [np.zeros((0,), "float64")], np.exp, name="empty"),
    OpCase("Expm1", tw.expm1, [rand(2, 3, low=-1e-3, high=1e-3)], np.expm1, rtol=1e-5,
           atol=0),
    OpCase("Log", tw.log, [positive(2, 3)], np.log),
    OpCase("Log1p", tw.log1p, [positive(2, 3)], np.log1p),
    OpCase("Sin", tw.sin, [rand(2, 3)], np.sin),
    OpCase("Cos", tw.cos, [rand(2, 3)], np.cos),
    OpCase("Tanh", tw.tanh, [rand(2, 3)], np.tanh),
    OpCase("Tanh", tw.tanh, [rand(3, dtype="float16")], np.tanh, rtol=1e-3, atol=1e-3,
           name="float16"),
    OpCase("Sigmoid", tw.sigmoid, [rand(2, 3)], _sigmoid),
    OpCase("Sigmoid", tw.sigmoid, [arr([-1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0])],
           _sigmoid, name="large", grad=False),
    OpCase("Floor", tw.floor, [arr([-1.5, -0.5, 0.0, 0.5, 2.7])],
           lambda x: arr([-2, -1, 0, 0, 2]), grad=False),
    OpCase("Ceil", tw.ceil, [arr([-1.5, -0.5, 0.0, 0.5, 2.7])],
           lambda x: arr([-1, 0, 0, 1, 3]), grad=False),
    OpCase("Round", tw.round, [arr([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.6])],
           lambda x: arr([-2, -2, 0, 0, 2, 2, 3]), grad=False, name="half_to_even"),
    OpCase("Round", tw.round, [_i32([-3, 4])], lambda x: x, name="int32"),
]

COMPARISONS = [
    OpCase("Equal", tw.equal, [_i32([1, 2, 3]), _i32([[1], [3]])],
           lambda x, y: x == y, grad=False),
    OpCase("Equal", tw.equal, [rand(4, dtype="bool"), rand(4, dtype="bool", seed=1)],
           lambda x, y: x == y, grad=False, name="bool"),
    OpCase("NotEqual", tw.not_equal, [arr([1.0, 2.0, np.nan]), arr([1.0, 3.0, np.nan])],
           lambda x, y: np.array([False, True, True]), grad=False),
    OpCase("Less", tw.less, [rand(2, 3), rand(3, seed=1)], np.less, grad=False),
    OpCase("LessEqual", tw.less_equal, [_i32([1, 2, 3]), _i32([2, 2, 2])],
           lambda x, y: np.array([True, True, False]), grad=False),
    OpCase("Greater", tw.greater, [rand(2, 3), rand(2, 3, seed=1)], np.greater, grad=False),
    OpCase("GreaterEqual", tw.greater_equal, [_i32([1, 2, 3]), _i32([2, 2, 2])],
           lambda x, y: np.array([False, True, True]), grad=False),
    OpCase("LogicalAnd", tw.logical_and, [rand(2, 3, dtype="bool"), rand(3, dtype="bool", seed=1)],
           np.logical_and),
    OpCase("LogicalOr", tw.logical_or, [rand(2, 3, dtype="bool"), rand(2, 3, dtype="bool", seed=1)],
           np.logical_or),
    OpCase("LogicalNot", tw.logical_not, [rand(2, 3, dtype="bool")], np.logical_not),
    OpCase("LogicalAnd", tw.logical_xor, [rand(5, dtype="bool"), rand(5, dtype="bool", seed=2)],
           np.logical_xor, name="xor"),
]

SELECTION = [
    OpCase("Select", tw.where, [rand(2, 3, dtype="bool"), rand(2, 3), rand(2, 3, seed=1)],
           np.where),
    OpCase("Select", tw.where, [arr([True, False], bool), rand(2, 3), rand(2, 3, seed=1)],
           lambda c, x, y: np.where(c[:, None], x, y), name="rows"),
    OpCase("Select", tw.where, [np.array(False), rand(2, 2), rand(2, 2, seed=1)],
           lambda c, x, y: y, name="scalar"),
    OpCase("SelectV2", tw.where_v2, [rand(3, dtype="bool"), rand(2, 3), rand(1, 3, seed=1)],
           np.where),
    OpCase("Select", tw.where, [rand(2, 1, dtype="bool"), rand(2, 3), rand(2, 3, seed=1)],
           np.where, name="broadcast"),
    OpCase("Select", tw.where, [rand(2, dtype="bool"), rand(2, 1), rand(1, 2, seed=1)],
           np.where, name="broadcast_vector_of_first_dim_length"),
    OpCase("Select", tw.where, [arr([True, False, False], bool), rand(3, 3), rand(3, 3, seed=1)],
           lambda c, x, y: np.where(c[:, None], x, y), name="square_rows"),
    OpCase("Where", _where_built, [rand(3, 4, dtype="bool")], _where_summary),
    OpCase("Where", _where_built, [np.zeros((2, 2), bool)], _where_summary, name="none_true"),
]

CONVERSIONS = [
    OpCase("Cast", lambda x: tw.cast(x, tw.int32), [arr([-2.7, -0.5, 0.5, 1.9, 3.0])],
           lambda x: _i32([-2, 0, 0, 1, 3]), grad=False, name="truncates"),
    OpCase("Cast", lambda x: tw.to_float(x), [rand(2, 3, dtype="bool")],
           lambda x: x.astype(np.float32), name="bool_to_float"),
    OpCase("Cast", lambda x: tw.to_int64(x), [_i32([-5, 0, 2**31 - 1])],
           lambda x: x.astype(np.int64), name="int32_to_int64"),
    OpCase("Cast", lambda x: tw.cast(x, tw.bfloat16), [arr([1.0, -2.5, 0.15625])],
           lambda x: x.astype(ml_dtypes.bfloat16), grad=False, name="bfloat16"),
    OpCase("Cast", _cast_round_trip, [rand(2, 3, low=-1e-5, high=1e-5)], lambda x: x,
           name="float_round_trip"),
    OpCase("ClipByValue", lambda t: tw.clip_by_value(t, -0.5, 0.7), [rand(3, 4)],
           lambda t: np.clip(t, -0.5, 0.7)),
    OpCase("ClipByValue", tw.clip_by_value, [rand(2, 3), rand(3, seed=1, low=-1, high=0),
                                              arr(0.8)],
           lambda t, lo, hi: np.minimum(np.maximum(t, lo), hi), name="tensor_bounds"),
    OpCase("ClipByValue", lambda t: tw.clip_by_value(t, 1, 3), [_i32([0, 2, 5])],
           lambda t: _i32([1, 2, 3]), name="int32"),
    OpCase("ArgMax", lambda x: tw.argmax(x, axis=1), [rand(3, 4)], lambda x: np.argmax(x, 1),
           grad=False),
    OpCase("ArgMax", lambda x: tw.argmax(x, output_type=tw.int32), [rand(3, 4, dtype="int32",
                                                                         low=-50, high=50)],
           lambda x: np.argmax(x, 0).astype(np.int32), name="int32_default_axis"),
    OpCase("ArgMin", lambda x: tw.argmin(x, dimension=-1), [rand(2, 5)],
           lambda x: np.argmin(x, -1), grad=False),
]

CASES = REDUCTIONS + BINARY + UNARY + COMPARISONS + SELECTION + CONVERSIONS
