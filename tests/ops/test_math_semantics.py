"""TF1 semantics of the math ops that the registry table does not pin down: dtype rules, integer
division, reduction arguments, operator overloads, where/select shapes, gradient details, and
error messages that name the op and the user's line."""

import warnings

import numpy as np
import pytest

import tensorweave as tw

THIS_FILE = __file__


@pytest.fixture(autouse=True)
def fresh_graph():
    graph = tw.Graph()
    with graph.as_default():
        yield graph


def run(fetches, feed_dict=None):
    with tw.Session(graph=tw.get_default_graph()) as sess:
        return sess.run(fetches, feed_dict)


def run_quietly(fetches, feed_dict=None):
    """Run with every numpy warning turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return run(fetches, feed_dict)


def line_of(marker):
    """The line number in this file of the line containing ``marker``."""
    with open(THIS_FILE) as f:
        for number, text in enumerate(f, start=1):
            if marker in text and "line_of(" not in text:
                return number
    raise AssertionError(marker)


# -- dtypes -------------------------------------------------------------------------------------
def test_mixed_dtypes_are_a_type_error_naming_both():
    x = tw.placeholder(tw.float32, [2])
    i = tw.placeholder(tw.int32, [2])
    with pytest.raises(TypeError, match="int32.*float32"):
        tw.multiply(x, i)
    with pytest.raises(TypeError, match="int32.*float32"):
        x - i


def test_python_float_with_int_tensor_is_a_type_error():
    i = tw.placeholder(tw.int32, [2])
    with pytest.raises(TypeError, match="int32"):
        i * 0.5
    with pytest.raises(TypeError, match="int32"):
        0.5 + i


def test_python_scalars_adopt_the_tensor_dtype():
    x = tw.placeholder(tw.float16, [2])
    i = tw.placeholder(tw.int64, [2])
    assert (x * 2).dtype is tw.float16
    assert (3 - i).dtype is tw.int64
    assert (2.5 ** x).dtype is tw.float16


@pytest.mark.parametrize("dtype, expected", [
    (tw.int8, tw.float32), (tw.uint8, tw.float32), (tw.int16, tw.float32),
    (tw.int32, tw.float64), (tw.int64, tw.float64), (tw.float16, tw.float16),
    (tw.float32, tw.float32), (tw.float64, tw.float64)])
def test_truediv_result_dtypes(dtype, expected):
    x = tw.placeholder(dtype, [2])
    assert (x / x).dtype is expected
    assert tw.truediv(x, x).dtype is expected
    assert tw.divide(x, x).dtype is expected


def test_truediv_of_ints_divides_as_floats():
    x = tw.constant([7, -7, 1])
    assert run(x / 2).tolist() == [3.5, -3.5, 0.5]


def test_truediv_of_bool_is_a_type_error():
    b = tw.placeholder(tw.bool, [2])
    with pytest.raises(TypeError, match="bool"):
        b / b


def test_float_only_ops_reject_ints_naming_the_allowed_dtypes():
    i = tw.placeholder(tw.int32, [2])
    for fn in (tw.sqrt, tw.exp, tw.log, tw.sigmoid, tw.tanh, tw.floor, tw.reciprocal):
        with pytest.raises(TypeError, match="int32; allowed: .*float32"):
            fn(i)


def test_neg_and_abs_reject_unsigned_and_logic_rejects_numbers():
    u = tw.placeholder(tw.uint8, [2])
    with pytest.raises(TypeError, match="uint8"):
        tw.negative(u)
    with pytest.raises(TypeError, match="uint8"):
        abs(u)
    x = tw.placeholder(tw.float32, [2])
    with pytest.raises(TypeError, match="bool"):
        tw.logical_and(x, x)
    with pytest.raises(TypeError, match="bool"):
        tw.reduce_any(x)
    with pytest.raises(TypeError, match="bool"):
        tw.reduce_sum(tw.placeholder(tw.bool, [2]))


def test_comparisons_return_bool_and_have_no_gradient():
    x = tw.placeholder(tw.float32, [3])
    less = x < 1.0
    assert less.dtype is tw.bool
    assert tw.gradients(tw.reduce_sum(tw.cast(less, tw.float32)), x) == [None]


# -- integer division ----------------------------------------------------------------------------
def test_floor_division_and_modulo_follow_python():
    x = tw.placeholder(tw.int32, [4])
    feed = {x: np.array([-7, 7, -7, 7], np.int32)}
    quotient, remainder = run([x // np.array([2, 2, -2, -2], np.int32),
                               x % np.array([2, 2, -2, -2], np.int32)], feed)
    assert quotient.tolist() == [-7 // 2, 7 // 2, -7 // -2, 7 // -2] == [-4, 3, 3, -4]
    assert remainder.tolist() == [-7 % 2, 7 % 2, -7 % -2, 7 % -2] == [1, 1, -1, -1]
    assert quotient.dtype == np.int32 and remainder.dtype == np.int32


def test_tf1_div_floors_ints_and_divides_floats():
    assert run(tw.div(tw.constant(-7), 2)) == -4
    assert run(tw.div(tw.constant(-7.0), 2.0)) == -3.5


def test_float_floordiv_floors_the_quotient():
    assert run(tw.constant(-7.5) // 2.0) == -4.0
    assert run(tw.constant(-7.5) % 2.0) == 0.5


@pytest.mark.parametrize("operator", ["floordiv", "mod"])
def test_integer_division_by_zero_is_an_error_naming_the_op(operator):
    x = tw.placeholder(tw.int32, [2])
    y = tw.placeholder(tw.int32, [2])
    result = x // y if operator == "floordiv" else x % y  # marker: int-div-by-zero
    with pytest.raises(tw.errors.InvalidArgumentError) as info:
        run(result, {x: [1, 2], y: [1, 0]})
    message = str(info.value)
    assert "integer division by zero" in message
    assert f"'{result.op.name}'" in message and result.op.type in message
    assert f"{THIS_FILE}:{line_of('marker: int-div-by-zero')}" in message


def test_float_division_by_zero_gives_inf_and_nan_without_warnings():
    x = tw.placeholder(tw.float32, [3])
    zeros = np.zeros(3, np.float32)
    quotient, floored, remainder, log = run_quietly(
        [x / zeros, x // zeros, x % zeros, tw.log(x)], {x: np.array([1, -1, 0], np.float32)})
    assert quotient[0] == np.inf and quotient[1] == -np.inf and np.isnan(quotient[2])
    assert np.isinf(floored[:2]).all() and np.isnan(remainder).all()
    assert log[2] == -np.inf and np.isnan(log[1])


def test_integer_pow_to_a_negative_power_is_an_error():
    x = tw.placeholder(tw.int32, [1])
    with pytest.raises(tw.errors.InvalidArgumentError, match="negative"):
        run(tw.pow(x, -1), {x: [2]})


# -- reductions ----------------------------------------------------------------------------------
def test_reduce_mean_of_ints_truncates_toward_zero():
    values = tw.constant([[-1, -2], [1, 2], [-7, 0]])
    assert run(tw.reduce_mean(values, axis=1)).tolist() == [-1, 1, -3]
    assert run(tw.reduce_mean(values)) == -7 // 6 + 1  # -7/6 truncates to -1
    assert run(tw.reduce_mean(tw.constant([1, 2], tw.uint8))) == 1


def test_reduce_sum_of_small_ints_keeps_the_dtype():
    x = tw.constant([100, 100], tw.int8)
    total = tw.reduce_sum(x)
    assert total.dtype is tw.int8
    assert run(total).dtype == np.int8


def test_axis_keepdims_and_negative_axes():
    x = tw.placeholder(tw.float32, [2, 3, 4])
    assert tw.reduce_sum(x).shape.as_list() == []
    assert tw.reduce_sum(x, axis=1).shape.as_list() == [2, 4]
    assert tw.reduce_sum(x, axis=-1, keepdims=True).shape.as_list() == [2, 3, 1]
    assert tw.reduce_max(x, axis=[0, -1]).shape.as_list() == [3]
    assert tw.reduce_min(x, axis=[2, -1, 2]).shape.as_list() == [2, 3]  # repeats count once
    assert tw.reduce_prod(x, axis=[]).shape.as_list() == [2, 3, 4]
    value = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    got = run(tw.reduce_sum(x, axis=[0, -1], keepdims=True), {x: value})
    np.testing.assert_array_equal(got, value.sum(axis=(0, 2), keepdims=True))


def test_tf1_argument_aliases():
    x = tw.constant([[1.0, 2.0], [3.0, 4.0]])
    by_alias = tw.reduce_sum(x, reduction_indices=[1], keep_dims=True)
    assert by_alias.shape.as_list() == [2, 1]
    assert run(by_alias).tolist() == [[3.0], [7.0]]
    with pytest.raises(ValueError, match="both 'axis' and 'reduction_indices'"):
        tw.reduce_sum(x, axis=0, reduction_indices=0)
    with pytest.raises(ValueError, match="both 'keepdims' and 'keep_dims'"):
        tw.reduce_mean(x, keepdims=True, keep_dims=True)


def test_axis_out_of_range_names_the_axis_and_rank():
    x = tw.placeholder(tw.float32, [2, 3])
    with pytest.raises(ValueError, match="axis 2 for an input of rank 2"):
        tw.reduce_sum(x, axis=2)
    with pytest.raises(ValueError, match="axis -3"):
        tw.reduce_mean(x, axis=[0, -3])


def test_reductions_with_unknown_rank_or_runtime_axes():
    x = tw.placeholder(tw.float32)
    axis = tw.placeholder(tw.int32, [])
    total = tw.reduce_sum(x)
    assert total.shape.as_list() == []
    assert tw.reduce_sum(x, keepdims=True).shape.rank is None
    partial = tw.reduce_max(tw.placeholder(tw.float32, [2, 3]), axis=axis)
    assert partial.shape.as_list() == [None]
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert run(total, {x: value}) == 15
    assert run(tw.reduce_sum(x, keepdims=True), {x: value}).shape == (1, 1)
    assert run(tw.reduce_sum(x, axis=axis), {x: value, axis: -1}).tolist() == [3, 12]


def test_runtime_axis_out_of_range_is_an_error():
    x = tw.placeholder(tw.float32, [2])
    axis = tw.placeholder(tw.int32, [])
    with pytest.raises(tw.errors.InvalidArgumentError, match="axis 1 for an input of rank 1"):
        run(tw.reduce_sum(x, axis=axis), {x: [1, 2], axis: 1})


def test_empty_reductions_give_the_identity():
    empty = tw.placeholder(tw.float32, [0, 2])
    feed = {empty: np.zeros((0, 2), np.float32)}
    total, product, largest, smallest = run_quietly(
        [tw.reduce_sum(empty, 0), tw.reduce_prod(empty, 0), tw.reduce_max(empty, 0),
         tw.reduce_min(empty, 0)], feed)
    assert total.tolist() == [0, 0] and product.tolist() == [1, 1]
    assert largest.tolist() == [-np.inf, -np.inf] and smallest.tolist() == [np.inf, np.inf]
    assert np.isnan(run_quietly(tw.reduce_mean(empty), feed))


def test_reduction_gradients_with_unknown_shapes():
    x = tw.placeholder(tw.float32)
    partial = tw.placeholder(tw.float32, [None, 3])
    grads = tw.gradients([tw.reduce_mean(x), tw.reduce_sum(partial, axis=1)], [x, partial])
    value = np.ones((2, 3), np.float32)
    gx, gp = run(grads, {x: value, partial: value})
    np.testing.assert_allclose(gx, np.full((2, 3), 1 / 6))
    np.testing.assert_array_equal(gp, np.ones((2, 3)))


def test_max_gradient_is_split_evenly_among_ties():
    x = tw.placeholder(tw.float32, [2, 3])
    (grad,) = tw.gradients(tw.reduce_max(x, axis=1), [x])
    value = np.array([[1, 3, 3], [5, 5, 5]], np.float32)
    np.testing.assert_allclose(run(grad, {x: value}), [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def test_prod_gradient_with_zeros():
    x = tw.placeholder(tw.float32, [3, 3])
    (grad,) = tw.gradients(tw.reduce_prod(x, axis=1), [x])
    value = np.array([[2, 3, 4], [2, 0, 4], [0, 0, 4]], np.float32)
    expected = [[12, 8, 6], [0, 8, 0], [0, 0, 0]]
    np.testing.assert_allclose(run_quietly(grad, {x: value}), expected)


def test_count_nonzero():
    x = tw.constant([[0, 1, 2], [0, 0, 3]])
    counts = tw.count_nonzero(x, axis=1)
    assert counts.dtype is tw.int64
    assert run(counts).tolist() == [2, 1]
    assert run(tw.count_nonzero(tw.constant([True, False, True]))) == 2


# -- unary functions -------------------------------------------------------------------------------
def test_sigmoid_is_stable_for_large_inputs():
    x = tw.placeholder(tw.float32, [4])
    got = run_quietly(tw.sigmoid(x), {x: np.array([-1e4, -90, 90, 1e4], np.float32)})
    assert got[0] == 0 and got[3] == 1
    np.testing.assert_allclose(got[1], np.exp(-90), rtol=1e-5)
    assert got[2] == 1


def test_round_is_bankers_rounding():
    values = tw.constant([0.5, 1.5, 2.5, -0.5, -2.5, 3.5])
    assert run(tw.round(values)).tolist() == [0, 2, 2, 0, -2, 4]


def test_piecewise_constant_ops_have_no_gradient_and_sign_has_zero():
    x = tw.placeholder(tw.float32, [2])
    assert tw.gradients(tw.reduce_sum(tw.floor(x) + tw.ceil(x) + tw.round(x)), x) == [None]
    (grad,) = tw.gradients(tw.reduce_sum(tw.sign(x)), x)
    assert run(grad, {x: [1.0, -2.0]}).tolist() == [0, 0]


def test_pow_gradient_wrt_exponent_is_zero_where_base_is_not_positive():
    x = tw.placeholder(tw.float32, [3])
    y = tw.placeholder(tw.float32, [3])
    _, gy = tw.gradients(tw.reduce_sum(tw.pow(x, y)), [x, y])
    got = run_quietly(gy, {x: [-2.0, 0.0, 2.0], y: [2.0, 2.0, 2.0]})
    np.testing.assert_allclose(got, [0, 0, 4 * np.log(2)], rtol=1e-6)


def test_maximum_gradient_ties_go_to_x():
    x = tw.placeholder(tw.float32, [2])
    y = tw.placeholder(tw.float32, [2])
    gx, gy = tw.gradients(tw.reduce_sum(tw.maximum(x, y)), [x, y])
    got = run([gx, gy], {x: [1.0, 2.0], y: [1.0, 3.0]})
    assert [g.tolist() for g in got] == [[1, 0], [0, 1]]


# -- casts, clipping, argmax -----------------------------------------------------------------------
def test_cast_truncates_toward_zero_and_same_dtype_is_a_no_op():
    x = tw.constant([-1.9, -0.2, 0.7, 2.5])
    assert run(tw.cast(x, tw.int32)).tolist() == [-1, 0, 0, 2]
    assert tw.cast(x, tw.float32) is x
    assert tw.to_int32(x).dtype is tw.int32 and tw.to_int64(x).dtype is tw.int64
    assert tw.to_float(tw.constant(3)).dtype is tw.float32
    assert run(tw.cast(tw.constant([0.0, 2.0]), tw.bool)).tolist() == [False, True]


def test_cast_gradient_flows_between_floats_only():
    x = tw.placeholder(tw.float32, [2])
    (grad,) = tw.gradients(tw.reduce_sum(tw.cast(x, tw.float64) * 3.0), [x])
    assert grad.dtype is tw.float32
    assert run(grad, {x: [1.0, 2.0]}).tolist() == [3, 3]
    through_int = tw.cast(tw.cast(x, tw.int32), tw.float32)
    assert tw.gradients(tw.reduce_sum(through_int), [x]) == [None]


def test_clip_by_value_gradient_flows_only_inside_the_range():
    t = tw.placeholder(tw.float32, [4])
    clipped = tw.clip_by_value(t, -1.0, 1.0)
    (grad,) = tw.gradients(tw.reduce_sum(clipped), [t])
    value = np.array([-3, -0.5, 0.5, 3], np.float32)
    got, got_grad = run([clipped, grad], {t: value})
    assert got.tolist() == [-1, -0.5, 0.5, 1] and got_grad.tolist() == [0, 1, 1, 0]


def test_clip_bounds_must_not_widen_t():
    t = tw.placeholder(tw.float32, [3])
    with pytest.raises(ValueError, match="broadcast to the shape of t"):
        tw.clip_by_value(t, tw.zeros_like(tw.placeholder(tw.float32, [2, 3])), 1.0)


def test_argmax_defaults():
    x = tw.constant([[1.0, 9.0, 3.0], [7.0, 2.0, 8.0]])
    along_rows = tw.argmax(x)
    assert along_rows.dtype is tw.int64 and along_rows.shape.as_list() == [3]
    assert run(along_rows).tolist() == [1, 0, 1]
    assert run(tw.argmax(x, 1)).tolist() == [1, 2]
    assert run(tw.argmin(x, dimension=1)).tolist() == [0, 1]
    assert tw.argmax(x, axis=1, output_type=tw.int32).dtype is tw.int32
    with pytest.raises(ValueError, match="both 'axis' and 'dimension'"):
        tw.argmax(x, axis=0, dimension=0)
    with pytest.raises(TypeError, match="output_type"):
        tw.argmax(x, output_type=tw.float32)


# -- where / select --------------------------------------------------------------------------------
def test_where_coordinates():
    condition = tw.constant([[True, False], [False, True]])
    coords = tw.where(condition)
    assert coords.dtype is tw.int64 and coords.shape.as_list() == [None, 2]
    assert run(coords).tolist() == [[0, 0], [1, 1]]


def test_where_needs_both_x_and_y():
    with pytest.raises(ValueError, match="both"):
        tw.where(tw.constant([True]), x=tw.constant([1]))


def test_where_vector_condition_picks_rows_as_tf1():
    x = tw.constant(np.arange(9, dtype=np.float32).reshape(3, 3))
    picked = tw.where([True, False, True], x, -x)
    assert run(picked).tolist() == [[0, 1, 2], [-3, -4, -5], [6, 7, 8]]
    by_v2 = tw.where_v2([True, False, True], x, -x)  # broadcasts over the last axis instead
    assert run(by_v2).tolist() == [[0, -1, 2], [3, -4, 5], [6, -7, 8]]


def test_where_with_python_values_and_mismatched_dtypes():
    assert run(tw.where([True, False], [1, 2], [10, 20])).tolist() == [1, 20]
    with pytest.raises(TypeError, match="int32.*float32"):
        tw.where(tw.constant([True]), tw.constant([1.0]), tw.constant([1]))
    with pytest.raises(ValueError, match="condition of shape"):
        tw.where(tw.constant([True, False]), tw.zeros_like(tw.constant([[1.0, 2.0, 3.0]])),
                 tw.constant([[1.0, 2.0, 3.0]]))


def test_where_gradient_goes_to_the_chosen_side():
    x = tw.placeholder(tw.float32, [2, 2])
    y = tw.placeholder(tw.float32, [1, 2])
    picked = tw.where(tw.constant([[True, False], [False, False]]), x, y)
    gx, gy = tw.gradients(tw.reduce_sum(picked), [x, y])
    value = np.ones((2, 2), np.float32)
    got_x, got_y = run([gx, gy], {x: value, y: value[:1]})
    assert got_x.tolist() == [[1, 0], [0, 0]] and got_y.tolist() == [[1, 2]]


# -- operator overloads ----------------------------------------------------------------------------
def test_numpy_operands_on_the_left_take_the_tensor_dtype():
    x = tw.placeholder(tw.float32, [3])
    left = np.array([1.0, 2.0, 3.0])  # float64 array
    results = [left + x, left - x, left * x, left / x, left // x, left % x, left ** x]
    assert all(isinstance(r, tw.Tensor) and r.dtype is tw.float32 for r in results)
    feed = {x: np.array([2.0, 2.0, 2.0], np.float32)}
    got = run(results, feed)
    np.testing.assert_allclose(got[1], [-1, 0, 1])
    np.testing.assert_allclose(got[3], [0.5, 1, 1.5])
    np.testing.assert_allclose(got[6], [1, 4, 9])
    compared = left < x
    assert isinstance(compared, tw.Tensor) and run(compared, feed).tolist() == [True, False, False]


def test_matmul_operator_with_numpy_on_either_side():
    m = tw.placeholder(tw.float32, [2, 2])
    left = np.eye(2)  # float64
    product = left @ m
    assert product.dtype is tw.float32 and (m @ left).dtype is tw.float32
    value = np.array([[1, 2], [3, 4]], np.float32)
    np.testing.assert_array_equal(run(product, {m: value}), value)


@pytest.mark.parametrize("shape_a, shape_b", [((50, 1024), (3136, 1024)),   # b @ a.T, transposed
                                              ((5, 600), (70, 600)),
                                              ((100, 256), (784, 256))])    # the direct product
def test_matmul_with_transpose_b_equals_numpy_whichever_product_blas_runs(shape_a, shape_b):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in (shape_a, shape_b))
    got = run(tw.matmul(tw.constant(a), tw.placeholder_with_default(b, shape_b),
                        transpose_b=True))
    assert got.flags.c_contiguous
    np.testing.assert_allclose(got, a @ b.T, rtol=1e-5, atol=1e-4)


def test_reflected_operators_keep_operand_order():
    x = tw.constant([2, 4])
    assert run(10 - x).tolist() == [8, 6]
    assert run(9 // x).tolist() == [4, 2]
    assert run(9 % x).tolist() == [1, 1]
    assert run(2 ** x).tolist() == [4, 16]
    assert run(8 / x).tolist() == [4.0, 2.0]


def test_unary_and_logical_operators():
    x = tw.constant([-1.5, 2.0])
    assert run(-x).tolist() == [1.5, -2.0] and run(abs(x)).tolist() == [1.5, 2.0]
    a = tw.constant([True, True, False])
    b = tw.constant([True, False, False])
    assert run(~a).tolist() == [False, False, True]
    assert run(a & b).tolist() == [True, False, False]
    assert run(a | b).tolist() == [True, True, False]
    assert run(a ^ b).tolist() == [False, True, False]
    assert run(True & b).tolist() == [True, False, False]
    with pytest.raises(TypeError, match="bool"):
        tw.constant([1, 2]) & tw.constant([3, 4])


def test_equality_operators_stay_identity():
    x = tw.constant([1.0])
    y = tw.constant([1.0])
    assert (x == x) is True and (x == y) is False and (x != y) is True
    assert len({x, y}) == 2
    assert (2.0 < x).op.type == "Greater"


def test_overloads_use_tf1_op_names():
    x = tw.constant([1.0])
    assert (x + x).op.name == "add" and (x * x).op.name == "mul"
    assert (x / x).op.name == "truediv" and (x - x).op.name == "sub"


def test_build_error_names_the_op_type_and_the_users_line():
    i = tw.placeholder(tw.int32, [2])
    with pytest.raises(TypeError) as info:
        tw.sqrt(i, name="root")  # marker: sqrt-of-int
    message = str(info.value)
    assert "'root'" in message and "Sqrt" in message
    assert f"{THIS_FILE}:{line_of('marker: sqrt-of-int')}" in message


def test_sums_do_not_depend_on_whether_their_input_is_a_view():
    """numpy adds in memory order, so a transposed view and its contiguous copy can sum to
    results an ulp apart; Sum, Mean and Prod (and the fused kernels' reductions) add in logical
    order, so a pass that turns a view into a copy cannot change a result."""
    from tensorweave.codegen.rules import REDUCTIONS
    from tensorweave.ops import registry
    rng = np.random.default_rng(0)
    differs = 0
    for _ in range(200):
        a = rng.standard_normal((3, 4)).astype(np.float32)
        view, copy = a.T, np.ascontiguousarray(a.T)
        differs += np.add.reduce(view, axis=(0, 1)) != np.add.reduce(copy, axis=(0, 1))
        for op_type in ("Sum", "Mean", "Prod"):
            kernel = registry.get(op_type).kernel({"keep_dims": False}, np)
            axes = np.array([0, 1], np.int32)
            got_view, got_copy = kernel(view, axes), kernel(copy, axes)
            assert got_view.tobytes() == got_copy.tobytes()
            rule = REDUCTIONS[op_type].numpy
            assert rule(np, view, (0, 1), False).tobytes() == got_copy.tobytes()
    assert differs > 0  # the layouts do sum differently in plain numpy
