"""TF1 semantics of the array ops beyond the registry table: ``Tensor.__getitem__`` against
numpy indexing, shapes read from tensors at graph-construction time (``tw.shape(x)[i]``, unknown
batch sizes), dtype rules of range/zeros/one_hot, error messages, and gradients through
dynamically shaped graphs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tensorweave as tw
from tensorweave.ops.importer import verify_with_registry
from tensorweave.ops.registry import constant_value


@pytest.fixture(autouse=True)
def fresh_graph():
    graph = tw.Graph()
    with graph.as_default():
        yield graph


def run(fetches, feed_dict=None):
    with tw.Session(graph=tw.get_default_graph()) as sess:
        return sess.run(fetches, feed_dict)


class _Index:
    """``I[1:, None]`` is the key ``(slice(1, None), None)``, to index numpy and tw alike."""

    def __getitem__(self, key):
        return key


I = _Index()
X = np.arange(4 * 3 * 5, dtype=np.float32).reshape(4, 3, 5)

KEYS = [
    I[0], I[-1], I[1:], I[:-1], I[::-1], I[::2], I[1::-1], I[-2:0:-1], I[..., 0], I[0, ...],
    I[..., None], I[None], I[None, ..., None], I[:, None, 1], I[1, 2, 3], I[-1, :, ::-2],
    I[2:1], I[10:], I[-10:], I[:, :, 3:0:-2], I[...], I[()], I[1, ..., 2], I[:, tw.newaxis],
    I[0:4:3, -3], I[np.int64(1)], I[:, np.int32(-2):], I[::-3, ::-1, ::-4], I[None, None],
    I[..., 1:2, None], I[3, :0], I[:, -1, None, ::3],
]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
def test_getitem_matches_numpy(key):
    x = tw.placeholder(tw.float32, X.shape)
    y = x[key]
    want = X[key]
    assert y.shape.as_list() == list(np.shape(want))
    np.testing.assert_array_equal(run(y, {x: X}), want)


@pytest.mark.parametrize("key", KEYS[:12], ids=[repr(k) for k in KEYS[:12]])
def test_getitem_with_unknown_shape_runs(key):
    x = tw.placeholder(tw.float32, None)
    y = x[key]
    want = X[key]
    assert y.shape.is_compatible_with(np.shape(want))
    np.testing.assert_array_equal(run(y, {x: X}), want)


@pytest.mark.parametrize("key", KEYS[:16], ids=[repr(k) for k in KEYS[:16]])
def test_getitem_gradient_scatters_into_zeros(key):
    x = tw.placeholder(tw.float32, X.shape)
    y = x[key]
    weights = np.random.default_rng(0).normal(size=np.shape(X[key])).astype(np.float32)
    grad, = tw.gradients(tw.reduce_sum(y * weights), x)
    want = np.zeros_like(X)
    want[key] = weights
    np.testing.assert_allclose(run(grad, {x: X}), want)


@st.composite
def index_keys(draw, shape):
    """A numpy basic index valid for ``shape``: ints in range, any slices, newaxis, one ...."""
    items, axis, used_ellipsis = [], 0, False
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["slice", "int", "newaxis", "ellipsis"]))
        if kind == "ellipsis" and not used_ellipsis:
            used_ellipsis = True
            items.append(Ellipsis)
            axis = draw(st.integers(axis, len(shape)))  # the dims the ellipsis stands for
        elif axis >= len(shape) or kind in ("newaxis", "ellipsis"):
            items.append(None)
        elif kind == "int" and shape[axis] > 0:
            items.append(draw(st.integers(-shape[axis], shape[axis] - 1)))
            axis += 1
        else:
            bound = st.none() | st.integers(-7, 7)
            step = st.none() | st.integers(-3, 3).filter(lambda s: s != 0)
            items.append(slice(draw(bound), draw(bound), draw(step)))
            axis += 1
    return tuple(items)


def _key_and_feeds(key, as_tensors, dtype):
    """``key`` with some of its ints replaced by fed scalar tensors of ``dtype``."""
    feeds, flags = {}, iter(as_tensors)

    def part(value):
        if value is None or not next(flags, False):
            return value
        t = tw.placeholder(dtype, [])
        feeds[t] = value
        return t

    new_key = []
    for item in key:
        if isinstance(item, slice):
            new_key.append(slice(part(item.start), part(item.stop), part(item.step)))
        elif isinstance(item, int):
            new_key.append(part(item))
        else:
            new_key.append(item)
    return tuple(new_key), feeds


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_getitem_random_keys_match_numpy(data):
    shape = tuple(data.draw(st.lists(st.integers(0, 5), max_size=4), label="shape"))
    key = data.draw(index_keys(shape), label="key")
    as_tensors = data.draw(st.lists(st.booleans(), min_size=12, max_size=12), label="tensors")
    index_dtype = data.draw(st.sampled_from([tw.int32, tw.int64]), label="index dtype")
    value = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.int32, shape)
        tw_key, feeds = _key_and_feeds(key, as_tensors, index_dtype)
        try:
            want = value[key]
        except IndexError:
            # An index out of bounds for numpy must fail for us too: at build time when the
            # index is static, at run time when it is fed.
            with pytest.raises((ValueError, IndexError, tw.errors.InvalidArgumentError)):
                y = x[tw_key]
                with tw.Session(graph=graph) as sess:
                    sess.run(y, {x: value, **feeds})
            return
        y = x[tw_key]
        assert y.shape.is_compatible_with(np.shape(want))
        if not feeds:
            assert y.shape.as_list() == list(np.shape(want))
        with tw.Session(graph=graph) as sess:
            np.testing.assert_array_equal(sess.run(y, {x: value, **feeds}), want)


def test_getitem_with_tensor_indices():
    x = tw.placeholder(tw.float32, [4, 3, 5])
    i = tw.placeholder(tw.int32, [])
    j = tw.placeholder(tw.int32, [])
    assert x[i].shape.as_list() == [3, 5]
    assert x[:, i, 1:].shape.as_list() == [4, 4]
    assert x[i:].shape.as_list() == [None, 3, 5]
    got = run([x[i], x[j:, 1], x[-1, i:j:-1]], {x: X, i: -1, j: 2})
    np.testing.assert_array_equal(got[0], X[-1])
    np.testing.assert_array_equal(got[1], X[2:, 1])
    np.testing.assert_array_equal(got[2], X[-1, -1:2:-1])
    k = tw.placeholder(tw.int64, [])
    np.testing.assert_array_equal(run(x[k, 1:3], {x: X, k: 2}), X[2, 1:3])


def test_getitem_shape_element_is_static_when_the_dim_is():
    x = tw.placeholder(tw.float32, [None, 3])
    assert constant_value(tw.shape(x)[1]) == 3
    assert constant_value(tw.shape(x)[0]) is None
    assert constant_value(tw.shape(x)[-1:]).tolist() == [3]


@pytest.mark.parametrize("key, error, match", [
    (I[[0, 1]], TypeError, "tw.gather"),
    (I[1.5], TypeError, "valid indices"),
    (I[True], TypeError, "valid indices"),
    (I[::0], ValueError, "step cannot be zero"),
    (I[4], ValueError, "out of bounds"),
    (I[0, -4], ValueError, "out of bounds"),
    (I[0, 0, 0, 0], ValueError, "too many indices"),
    (I[..., 0, ...], ValueError, "one ellipsis"),
])
def test_getitem_errors(key, error, match):
    x = tw.placeholder(tw.float32, [4, 3, 5])
    with pytest.raises(error, match=match):
        x[key]


def test_getitem_rejects_float_and_mixed_dtype_tensor_indices():
    x = tw.placeholder(tw.float32, [4, 3])
    with pytest.raises(TypeError, match="valid indices"):
        x[tw.constant(1.0)]
    with pytest.raises(TypeError, match="one dtype"):
        x[tw.constant(1):tw.constant(3, dtype=tw.int64)]


def test_getitem_out_of_range_at_run_time():
    x = tw.placeholder(tw.float32, None)
    y = x[5]
    with pytest.raises(tw.errors.InvalidArgumentError, match="out of bounds"):
        run(y, {x: X})


# -- reshape --------------------------------------------------------------------------------------
def test_reshape_keeps_a_known_dim_with_unknown_batch():
    x = tw.placeholder(tw.float32, [None, 3])
    y = tw.reshape(x, [-1, tw.shape(x)[1]])
    assert y.shape.as_list() == [None, 3]
    value = np.arange(15, dtype=np.float32).reshape(5, 3)
    np.testing.assert_array_equal(run(y, {x: value}), value)


def test_reshape_to_batch_and_rest_infers_the_rest():
    x = tw.placeholder(tw.float32, [None, 3, 4])
    assert tw.reshape(x, [tw.shape(x)[0], -1]).shape.as_list() == [None, 12]
    assert tw.reshape(x, tw.stack([tw.shape(x)[0], 2, -1])).shape.as_list() == [None, 2, 6]
    assert tw.reshape(x, tw.concat([tw.shape(x)[:1], [-1]], 0)).shape.as_list() == [None, 12]
    value = np.zeros((2, 3, 4), np.float32)
    assert run(tw.reshape(x, [tw.shape(x)[0], -1]), {x: value}).shape == (2, 12)


def test_reshape_with_a_fed_shape():
    x = tw.placeholder(tw.float32, [2, 6])
    s = tw.placeholder(tw.int32, [3])
    y = tw.reshape(x, s)
    assert y.shape.as_list() == [None, None, None]
    assert run(y, {x: np.zeros((2, 6)), s: [3, -1, 2]}).shape == (3, 2, 2)


def test_reshape_wrong_element_count_is_a_static_error():
    with pytest.raises(ValueError, match=r"6 elements \(shape \(2, 3\)\) to shape \[4\]"):
        tw.reshape(tw.zeros([2, 3]), [4])
    with pytest.raises(ValueError, match=r"\(2, 3\) to \[4, -1\]: 6 is not a multiple of 4"):
        tw.reshape(tw.zeros([2, 3]), [4, -1])
    with pytest.raises(ValueError, match="at most one dimension may be -1"):
        tw.reshape(tw.zeros([2, 3]), [-1, -1])


def test_reshape_wrong_element_count_at_run_time():
    x = tw.placeholder(tw.float32, None)
    y = tw.reshape(x, [4])
    with pytest.raises(tw.errors.InvalidArgumentError, match=r"6 elements .* to shape \[4\]"):
        run(y, {x: np.zeros((2, 3))})


# -- shape, size, rank --------------------------------------------------------------------------
def test_shape_size_rank_are_static_when_the_shape_decides_them():
    x = tw.placeholder(tw.float32, [2, 3])
    partial = tw.placeholder(tw.float32, [None, 3])
    assert constant_value(tw.size(x)) == 6
    assert constant_value(tw.rank(partial)) == 2
    assert constant_value(tw.size(partial)) is None
    assert constant_value(tw.rank(tw.placeholder(tw.float32))) is None
    assert tw.size(x, out_type=tw.int64).dtype == tw.int64
    assert run([tw.size(partial), tw.rank(partial)], {partial: np.zeros((5, 3))}) == [15, 2]


# -- fill, zeros, ones, range ---------------------------------------------------------------------
def test_zeros_and_ones_are_constants_when_small_and_fills_when_large():
    assert tw.zeros([2, 3]).op.type == "Const"
    assert tw.ones([2, 3], tw.int32).op.type == "Const"
    big = tw.ones([100, 10])
    assert big.op.type == "Fill" and big.shape.as_list() == [100, 10]
    assert tw.zeros(tw.TensorShape([2, 2]), dtype=tw.bool).dtype == tw.bool
    assert tw.ones(3).shape.as_list() == [3] and tw.zeros([]).shape.as_list() == []
    np.testing.assert_array_equal(run(big), np.ones((100, 10), np.float32))


def test_zeros_of_a_run_time_shape():
    x = tw.placeholder(tw.float32, [None, 3])
    z = tw.zeros(tw.shape(x), dtype=tw.int64)
    assert z.op.type == "Fill" and z.shape.as_list() == [None, 3]
    assert run(z, {x: np.ones((2, 3))}).dtype == np.int64


def test_fill_with_fed_dims_and_errors():
    dims = tw.placeholder(tw.int32, [2])
    y = tw.fill(dims, 2.5)
    assert y.shape.as_list() == [None, None] and y.dtype == tw.float32
    np.testing.assert_array_equal(run(y, {dims: [1, 2]}), [[2.5, 2.5]])
    with pytest.raises(ValueError, match="negative"):
        tw.fill([2, -3], 1)
    with pytest.raises(ValueError, match="scalar"):
        tw.fill([2], [1, 2])
    with pytest.raises(TypeError, match="int32 or int64"):
        tw.fill([2.0], 1)
    with pytest.raises(TypeError, match="int32 or int64, got a float64 array"):
        tw.fill(np.array([2.0]), 1)


def test_range_dtype_rules():
    assert tw.range(5).dtype == tw.int32
    assert tw.range(1.5).dtype == tw.float32
    assert tw.range(tw.constant(2, tw.int64), 5).dtype == tw.int64
    assert tw.range(1, 5, dtype=tw.float64).dtype == tw.float64
    assert tw.range(tw.constant(1.0, tw.float64), tw.constant(4)).dtype == tw.float64
    np.testing.assert_array_equal(run(tw.range(tw.constant(1.0, tw.float64), tw.constant(4))),
                                  [1.0, 2.0, 3.0])
    with pytest.raises(TypeError):
        tw.range(1.5, dtype=tw.int32)


def test_range_errors_and_run_time_limits():
    with pytest.raises(ValueError, match="delta != 0"):
        tw.range(0, 5, 0)
    with pytest.raises(ValueError, match="start <= limit"):
        tw.range(5, 1)
    n = tw.placeholder(tw.int32, [])
    r = tw.range(n)
    assert r.shape.as_list() == [None]
    np.testing.assert_array_equal(run(r, {n: 4}), [0, 1, 2, 3])
    with pytest.raises(tw.errors.InvalidArgumentError, match="start <= limit"):
        run(r, {n: -1})


def test_range_float_length_is_computed_in_the_dtype():
    r = tw.range(0.0, 1.0, 0.1)
    got = run(r)
    assert r.shape.as_list() == [got.size]
    np.testing.assert_allclose(got, np.arange(got.size, dtype=np.float32) * np.float32(0.1))


# -- transpose, squeeze, expand_dims, reverse ------------------------------------------------------
def test_transpose_default_perm_with_unknown_rank():
    x = tw.placeholder(tw.float32, None)
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(run(tw.transpose(x), {x: value}), value.T)


def test_transpose_errors():
    with pytest.raises(ValueError, match="not a permutation"):
        tw.transpose(tw.zeros([2, 3]), [0, 0])
    with pytest.raises(ValueError, match="has 3 elements, but the tensor has rank 2"):
        tw.transpose(tw.zeros([2, 3]), [0, 1, 2])


def test_squeeze_of_a_dim_that_is_not_one():
    with pytest.raises(ValueError, match=r"cannot squeeze dimension 1 .* its size is 3, not 1"):
        tw.squeeze(tw.zeros([1, 3]), axis=[1])
    x = tw.placeholder(tw.float32, [None, 2])
    y = tw.squeeze(x, axis=0)
    assert y.shape.as_list() == [2]
    with pytest.raises(tw.errors.InvalidArgumentError, match="its size is 4, not 1"):
        run(y, {x: np.zeros((4, 2))})


def test_squeeze_all_with_unknown_dims_has_unknown_rank():
    x = tw.placeholder(tw.float32, [None, 1, 3])
    assert tw.squeeze(x).shape.rank is None
    assert run(tw.squeeze(x), {x: np.zeros((1, 1, 3))}).shape == (3,)


def test_expand_dims_axis_range_and_alias():
    x = tw.zeros([2, 3])
    assert tw.expand_dims(x, dim=2).shape.as_list() == [2, 3, 1]
    assert tw.expand_dims(x, [1]).shape.as_list() == [2, 1, 3]
    with pytest.raises(ValueError, match="must be a scalar"):
        tw.expand_dims(x, [0, 1])
    assert tw.expand_dims(x, -3).shape.as_list() == [1, 2, 3]
    with pytest.raises(ValueError, match="out of range"):
        tw.expand_dims(x, 3)


def test_reverse_repeated_axis_is_an_error():
    with pytest.raises(ValueError, match="more than once"):
        tw.reverse(tw.zeros([2, 3]), [1, -1])


# -- concat, stack, unstack, split ----------------------------------------------------------------
def test_concat_of_mismatched_shapes_names_both_shapes():
    with pytest.raises(ValueError, match=r"input 0 has shape \(2, 3\) and input 1 has shape "
                                         r"\(3, 4\)"):
        tw.concat([tw.zeros([2, 3]), tw.zeros([3, 4])], 1)
    with pytest.raises(ValueError, match=r"one rank.*\(2, 3\).*\(2,\)"):
        tw.concat([tw.zeros([2, 3]), tw.zeros([2])], 0)
    with pytest.raises(TypeError, match="float32 and input 1 is int32"):
        tw.concat([tw.zeros([2]), tw.constant([1])], 0)


def test_concat_mismatch_at_run_time_and_negative_and_fed_axis():
    a = tw.placeholder(tw.float32, None)
    with pytest.raises(tw.errors.InvalidArgumentError):
        run(tw.concat([a, tw.zeros([2, 2])], 0), {a: np.zeros((3, 3))})
    axis = tw.placeholder(tw.int32, [])
    b = tw.zeros([2, 3])
    joined = tw.concat([b, b], axis)
    assert joined.shape.as_list() == [None, None]
    assert run(joined, {axis: -1}).shape == (2, 6)
    assert tw.concat([b, b], -2).shape.as_list() == [4, 3]


def test_concat_of_one_tensor_is_identity_and_python_values_adopt_the_dtype():
    b = tw.zeros([2], tw.int64)
    assert tw.concat([b], 0).op.type == "Identity"
    assert tw.concat([b, [1, 2]], 0).dtype == tw.int64


def test_concat_gradient_with_unknown_shapes():
    a = tw.placeholder(tw.float32, [None, 2])
    b = tw.placeholder(tw.float32, [None, 3])
    y = tw.concat([a, b], axis=-1)
    ga, gb = tw.gradients(tw.reduce_sum(y * tw.range(5.0)), [a, b])
    got = run([ga, gb], {a: np.ones((4, 2)), b: np.ones((4, 3))})
    np.testing.assert_array_equal(got[0], np.tile([0.0, 1.0], (4, 1)))
    np.testing.assert_array_equal(got[1], np.tile([2.0, 3.0, 4.0], (4, 1)))


def test_stack_shapes_must_agree_and_auto_packing_uses_pack():
    with pytest.raises(ValueError, match=r"input 0 has shape \(2,\) and input 1 has shape \(3,\)"):
        tw.stack([tw.zeros([2]), tw.zeros([3])])
    n = tw.placeholder(tw.int32, [])
    packed = tw.convert_to_tensor([n, 3])
    assert packed.op.type == "Pack" and packed.op.attrs == {"axis": 0, "N": 2}
    assert run(packed, {n: 7}).tolist() == [7, 3]


def test_unstack_needs_num_when_the_dim_is_unknown():
    with pytest.raises(ValueError, match="cannot infer num"):
        tw.unstack(tw.placeholder(tw.float32, [None, 2]))
    parts = tw.unstack(tw.placeholder(tw.float32, [None, 2]), axis=1)
    assert len(parts) == 2 and parts[0].shape.as_list() == [None]
    with pytest.raises(ValueError, match="cannot unstack dimension 0"):
        tw.unstack(tw.zeros([3, 2]), num=2)


def test_split_errors_and_fed_sizes():
    with pytest.raises(ValueError, match="evenly into 4 pieces"):
        tw.split(tw.zeros([2, 6]), 4, axis=1)
    with pytest.raises(ValueError, match="add up to 5, but dimension 1"):
        tw.split(tw.zeros([2, 6]), [2, 3], axis=1)
    sizes = tw.placeholder(tw.int32, [None])
    with pytest.raises(ValueError, match="pass num"):
        tw.split(tw.zeros([2, 6]), sizes, axis=1)
    parts = tw.split(tw.zeros([2, 6]), sizes, axis=1, num=2)
    assert [p.shape.as_list() for p in parts] == [[2, None], [2, None]]
    got = run(parts, {sizes: [4, 2]})
    assert [g.shape for g in got] == [(2, 4), (2, 2)]
    with pytest.raises(tw.errors.InvalidArgumentError, match="add up to 5"):
        run(parts, {sizes: [4, 1]})


def test_split_gradient_when_only_one_piece_is_used():
    x = tw.placeholder(tw.float32, [2, 4])
    _, right = tw.split(x, 2, axis=1)
    grad, = tw.gradients(tw.reduce_sum(right), x)
    np.testing.assert_array_equal(run(grad, {x: np.ones((2, 4))}), [[0, 0, 1, 1]] * 2)


# -- slice, gather, one_hot --------------------------------------------------------------------
def test_slice_bounds_are_checked():
    with pytest.raises(ValueError, match="goes past the end of dimension 0"):
        tw.slice(tw.zeros([4, 3]), [3, 0], [2, -1])
    with pytest.raises(ValueError, match="must be >= 0"):
        tw.slice(tw.zeros([4, 3]), [-1, 0], [1, 1])
    x = tw.placeholder(tw.float32, None)
    with pytest.raises(tw.errors.InvalidArgumentError, match="goes past the end"):
        run(tw.slice(x, [1], [4]), {x: np.zeros(3)})


def test_gather_out_of_range_index_at_run_time():
    i = tw.placeholder(tw.int32, [None])
    y = tw.gather(tw.zeros([5, 2]), i)
    with pytest.raises(tw.errors.InvalidArgumentError, match=r"indices\[1\] = 7 is not in "
                                                              r"\[0, 5\)"):
        run(y, {i: [0, 7]})
    with pytest.raises(tw.errors.InvalidArgumentError, match=r"= -1 is not in"):
        run(y, {i: [-1]})


def test_gather_gradient_with_unknown_shapes_adds_repeated_rows():
    params = tw.placeholder(tw.float32, [None, None])
    indices = tw.placeholder(tw.int64, None)
    grad, = tw.gradients(tw.reduce_sum(tw.gather(params, indices)), params)
    got = run(grad, {params: np.zeros((4, 2)), indices: [[3, 0], [3, 3]]})
    np.testing.assert_array_equal(got, [[1, 1], [0, 0], [0, 0], [3, 3]])


def test_unsorted_segment_sum_errors():
    with pytest.raises(ValueError, match="must be a prefix"):
        tw.unsorted_segment_sum(tw.zeros([3, 2]), [0, 1], 2)
    ids = tw.placeholder(tw.int32, [2])
    y = tw.unsorted_segment_sum(tw.ones([2, 3]), ids, 2)
    with pytest.raises(tw.errors.InvalidArgumentError, match=r"segment_ids\[0\] = 2 is not in"):
        run(y, {ids: [2, 0]})


def test_one_hot_out_of_range_rows_are_all_off_and_dtypes():
    y = tw.one_hot([0, -1, 9], 3, on_value=2.0, off_value=-1.0)
    assert y.dtype == tw.float32
    np.testing.assert_array_equal(run(y), [[2, -1, -1], [-1, -1, -1], [-1, -1, -1]])
    assert tw.one_hot([0], 2, on_value=tw.constant(1, tw.int64)).dtype == tw.int64
    with pytest.raises(TypeError, match="on_value of one_hot has dtype int64"):
        tw.one_hot([0], 2, on_value=tw.constant(1, tw.int64), dtype=tw.float32)
    with pytest.raises(ValueError, match="axis of one_hot"):
        tw.one_hot([0, 1], 2, axis=3)


# -- tile, pad, broadcast_to, stop_gradient ------------------------------------------------------
def test_tile_gradient_with_a_run_time_shape():
    x = tw.placeholder(tw.float32, [None, 2])
    grad, = tw.gradients(tw.reduce_sum(tw.tile(x, [2, 3])), x)
    np.testing.assert_array_equal(run(grad, {x: np.zeros((3, 2))}), np.full((3, 2), 6.0))


def test_pad_modes_and_errors():
    x = tw.constant([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="REFLECT paddings of dimension 1 .* at most 2"):
        tw.pad(x, [[0, 0], [3, 0]], mode="REFLECT")
    with pytest.raises(ValueError, match="unknown padding mode"):
        tw.pad(x, [[0, 0], [1, 1]], mode="wrap")
    with pytest.raises(ValueError, match=r"need shape \(2, 2\)"):
        tw.pad(x, [[1, 1]])
    np.testing.assert_array_equal(run(tw.pad(x, [[0, 0], [3, 3]], mode="symmetric")),
                                  [[3, 2, 1, 1, 2, 3, 3, 2, 1]])


def test_pad_constant_values_get_no_gradient():
    x = tw.placeholder(tw.float32, [2])
    c = tw.placeholder(tw.float32, [])
    gx, gc = tw.gradients(tw.reduce_sum(tw.pad(x, [[1, 1]], constant_values=c)), [x, c])
    assert gc is None
    np.testing.assert_array_equal(run(gx, {x: [1, 2], c: 5}), [1, 1])


def test_broadcast_to_errors():
    with pytest.raises(ValueError, match=r"cannot broadcast a tensor of shape \(3,\) to shape "
                                         r"\(2, 4\)"):
        tw.broadcast_to(tw.zeros([3]), [2, 4])
    with pytest.raises(ValueError, match="more dimensions"):
        tw.broadcast_to(tw.zeros([1, 1, 3]), [2, 3])
    assert tw.broadcast_to(tw.placeholder(tw.float32, [3]), tw.placeholder(tw.int32, [2])) \
        .shape.as_list() == [None, 3]


def test_stop_gradient_blocks_only_its_path():
    x = tw.placeholder(tw.float32, [])
    y = tw.stop_gradient(x * x) + 3.0 * x
    grad, = tw.gradients(y, x)
    assert run(grad, {x: 2.0}) == 3.0
    assert tw.gradients(tw.stop_gradient(x), x) == [None]


# -- the graph keeps its invariants ------------------------------------------------------------
def test_array_op_graph_verifies_and_round_trips_through_json(fresh_graph):
    x = tw.placeholder(tw.float32, [None, 4, 3])
    i = tw.placeholder(tw.int32, [])
    y = tw.reshape(x[:, ::-1, i], [tw.shape(x)[0], -1])
    z = tw.concat(tw.split(tw.pad(y, [[0, 0], [1, 1]], "REFLECT"), [2, -1], 1), 1)
    w = tw.gather(tw.tile(tw.one_hot(tw.range(3), 4), [1, 2]), [2, 0], axis=1)
    tw.gradients(tw.reduce_sum(z) + tw.reduce_sum(w), x)
    verify_with_registry(fresh_graph, strict_shapes=True)
    copy = tw.Graph()
    with copy.as_default():
        tw.import_graph_def(_graph_json(fresh_graph), name="")
    verify_with_registry(copy, strict_shapes=True)


def _graph_json(graph):
    from tensorweave.graph.serialization import to_json
    return to_json(graph)


@pytest.mark.parametrize("axis_fed", [False, True])
def test_gather_gradient_along_an_inner_axis_with_unknown_ranks(axis_fed):
    params = tw.placeholder(tw.float32, None)
    indices = tw.placeholder(tw.int32, None)
    axis = tw.placeholder(tw.int64, []) if axis_fed else -2
    y = tw.gather(params, indices, axis=axis)
    weights = tw.placeholder(tw.float32, None)
    grad, = tw.gradients(tw.reduce_sum(y * weights), params)
    p = np.zeros((2, 3, 2), np.float32)
    i = np.array([[2, 0], [2, 2]], np.int32)
    w = np.random.default_rng(1).normal(size=(2, 2, 2, 2)).astype(np.float32)
    want = np.zeros_like(p)
    for a in range(2):
        for b in range(2):
            want[:, i[a, b], :] += w[:, a, b, :]
    feed = {params: p, indices: i, weights: w}
    if axis_fed:
        feed[axis] = -2
    np.testing.assert_allclose(run(grad, feed), want, rtol=1e-6)
