"""Cases for the array ops: filling, ranges, shapes, reshaping, transposing, joining and
splitting, slicing and indexing, gathering and scattering, one-hot, tiling, padding.

References are plain numpy (indexing, np.take, np.pad, explicit loops for scatter-adds),
never a call to our kernels.
"""

import numpy as np

import tensorweave as tw
from tensorweave.ops.registry import apply_op
from tests.ops.harness import OpCase, arr, rand


def _i32(values):
    return arr(values, "int32")


def _segment_sum(data, ids, n):
    result = np.zeros((n,) + data.shape[ids.ndim:], data.dtype)
    for index in np.ndindex(*ids.shape):
        if ids[index] >= 0:
            result[ids[index]] += data[index]
    return result


def _one_hot(indices, depth, on, off, dtype):
    result = np.full(indices.shape + (depth,), off, dtype)
    for index in np.ndindex(*indices.shape):
        if 0 <= indices[index] < depth:
            result[index + (indices[index],)] = on
    return result


def _strided_slice_grad(dy):
    """The gradient op of ``x[1:4:2, ::-2]`` for x of shape (4, 5), built directly."""
    spec = [tw.constant(v) for v in ([4, 5], [1, 0], [4, 0], [2, -2])]
    masks = {"begin_mask": 2, "end_mask": 2, "ellipsis_mask": 0, "new_axis_mask": 0,
             "shrink_axis_mask": 0}
    return apply_op("StridedSliceGrad", spec + [dy], masks).outputs[0]


def _strided_slice_grad_reference(dy):
    dx = np.zeros((4, 5), dy.dtype)
    dx[1:4:2, ::-2] = dy
    return dx


_MIRROR_PADDINGS = [[1, 2], [2, 0]]


def _mirror_pad_grad(mode):
    def build(g):
        return apply_op("MirrorPadGrad", [g, tw.constant(_MIRROR_PADDINGS)],
                        {"mode": mode}).outputs[0]
    return build


def _mirror_pad_grad_reference(mode):
    """Fold by definition: add g[p] onto the element of x that padded position p copies."""
    def reference(g):
        shape = [d - sum(p) for d, p in zip(g.shape, _MIRROR_PADDINGS)]
        x = np.arange(np.prod(shape)).reshape(shape)  # element ids
        ids = np.pad(x, _MIRROR_PADDINGS, mode=mode.lower())
        dx = np.zeros(x.size, g.dtype)
        np.add.at(dx, ids.ravel(), g.ravel())
        return dx.reshape(x.shape)
    return reference


SHAPES = [
    OpCase("Shape", tw.shape, [rand(2, 3)], lambda x: _i32(x.shape), grad=False),
    OpCase("Shape", lambda x: tw.shape(x, out_type=tw.int64), [np.zeros((0, 4), bool)],
           lambda x: arr(x.shape, "int64"), grad=False, name="int64_empty"),
    OpCase("Size", tw.size, [rand(2, 3)], lambda x: np.array(6, np.int32), grad=False),
    OpCase("Size", lambda x: tw.size(x, out_type=tw.int64), [rand(0, 3, dtype="int32")],
           lambda x: np.array(0, np.int64), grad=False, name="int64_empty"),
    OpCase("Rank", tw.rank, [rand(2, 3, 1)], lambda x: np.array(3, np.int32), grad=False),
    OpCase("Rank", tw.rank, [np.array(True)], lambda x: np.array(0, np.int32), grad=False,
           name="scalar"),
    OpCase("Reshape", lambda x: tw.reshape(x, [3, -1]), [rand(2, 3, 2)],
           lambda x: x.reshape(3, 4)),
    OpCase("Reshape", lambda x: tw.reshape(x, [tw.shape(x)[0], -1]), [rand(2, 3, 2)],
           lambda x: x.reshape(2, 6), name="dynamic_batch"),
    OpCase("Reshape", lambda x: tw.reshape(x, []), [rand(1, 1, dtype="int32")],
           lambda x: x.reshape(()), name="to_scalar_int32"),
    OpCase("Reshape", lambda x: tw.reshape(x, [0, 5]), [rand(0, 2, dtype="int64")],
           lambda x: x.reshape(0, 5), name="empty"),
    OpCase("Fill", lambda v: tw.fill([2, 3], v), [rand()], lambda v: np.full((2, 3), v)),
    OpCase("Fill", lambda v: tw.fill(np.array([0, 2], np.int64), v), [rand(dtype="int32")],
           lambda v: np.zeros((0, 2), np.int32), name="empty_int64_dims"),
    OpCase("Fill", lambda: tw.ones([40, 30], tw.int32), [], lambda: np.ones((40, 30), np.int32),
           name="large_ones"),
    OpCase("Fill", lambda: tw.zeros([1000], tw.bool), [], lambda: np.zeros(1000, bool),
           name="large_zeros_bool"),
    OpCase("Range", lambda: tw.range(2, 11, 3), [], lambda: _i32([2, 5, 8])),
    OpCase("Range", lambda: tw.range(1.0, 2.0, 0.25), [], lambda: arr([1.0, 1.25, 1.5, 1.75]),
           name="float32"),
    OpCase("Range", lambda: tw.range(5, 0, -2), [], lambda: _i32([5, 3, 1]), name="negative"),
    OpCase("Range", lambda: tw.range(3, 3), [], lambda: _i32([]), name="empty"),
    OpCase("Range", lambda: tw.range(4, dtype=tw.int64), [], lambda: arr([0, 1, 2, 3], "int64"),
           name="int64"),
    OpCase("Range", lambda: tw.range(np.float64(0.5), 2), [], lambda: arr([0.5, 1.5], "float64"),
           name="float64_widest"),
]

MOVES = [
    OpCase("Transpose", lambda x: tw.transpose(x, [1, 0, 2]), [rand(2, 3, 4)],
           lambda x: x.transpose(1, 0, 2)),
    OpCase("Transpose", tw.transpose, [rand(2, 3, 4)], lambda x: x.transpose(2, 1, 0),
           name="reversed"),
    OpCase("Transpose", lambda x: tw.transpose(x, np.array([1, 0], np.int64)),
           [rand(0, 3, dtype="bool")], lambda x: x.T, name="empty_bool"),
    OpCase("Transpose", lambda x: tw.transpose(x, [1, 0]), [rand(3, 2, dtype="int32")],
           lambda x: x.T, name="int32"),
    OpCase("InvertPermutation", tw.invert_permutation, [_i32([2, 0, 3, 1])], np.argsort,
           grad=False),
    OpCase("InvertPermutation", tw.invert_permutation, [arr([], "int64")],
           lambda p: arr([], "int64"), grad=False, name="empty"),
    OpCase("ExpandDims", lambda x: tw.expand_dims(x, 1), [rand(2, 3)], lambda x: x[:, None]),
    OpCase("ExpandDims", lambda x: tw.expand_dims(x, -1), [rand(2, 3)], lambda x: x[..., None],
           name="negative"),
    OpCase("ExpandDims", lambda x: tw.expand_dims(x, 0), [rand(dtype="bool")],
           lambda x: x.reshape(1), name="scalar_bool"),
    OpCase("Squeeze", tw.squeeze, [rand(1, 3, 1, 2)], lambda x: x.reshape(3, 2)),
    OpCase("Squeeze", lambda x: tw.squeeze(x, [-1]), [rand(1, 3, 1)], lambda x: x[:, :, 0],
           name="negative_axis"),
    OpCase("Squeeze", lambda x: tw.squeeze(x, axis=0), [rand(1, 0, dtype="int32")],
           lambda x: x.reshape(0), name="empty_int32"),
    OpCase("ReverseV2", lambda x: tw.reverse(x, [0, -1]), [rand(2, 3, 4)],
           lambda x: x[::-1, :, ::-1]),
    OpCase("ReverseV2", lambda x: tw.reverse(x, [1]), [rand(2, 3, dtype="int64")],
           lambda x: x[:, ::-1], name="int64"),
    OpCase("ReverseV2", lambda x: tw.reverse(x, []), [rand(2, 3)], lambda x: x, name="no_axes"),
    OpCase("StopGradient", tw.stop_gradient, [rand(2, 3)], lambda x: x, grad=False),
    OpCase("BroadcastTo", lambda x: tw.broadcast_to(x, [2, 3, 4]), [rand(3, 1)],
           lambda x: np.broadcast_to(x, (2, 3, 4))),
    OpCase("BroadcastTo", lambda x: tw.broadcast_to(x, [3, 2]), [rand(2, dtype="int32")],
           lambda x: np.broadcast_to(x, (3, 2)), name="int32"),
    OpCase("BroadcastTo", lambda x: tw.broadcast_to(x, [0, 4]), [rand(1, 4)],
           lambda x: np.zeros((0, 4), x.dtype), name="empty"),
]

JOINS = [
    OpCase("ConcatV2", lambda a, b: tw.concat([a, b], 1), [rand(2, 3), rand(2, 2, seed=1)],
           lambda a, b: np.concatenate([a, b], 1)),
    OpCase("ConcatV2", lambda a, b, c: tw.concat([a, b, c], -1),
           [rand(2, 1, 2), rand(2, 1, 3, seed=1), rand(2, 1, 1, seed=2)],
           lambda a, b, c: np.concatenate([a, b, c], -1), name="three_negative_axis"),
    OpCase("ConcatV2", lambda a, b: tw.concat([a, b], 0), [rand(0, 3), rand(2, 3, seed=1)],
           lambda a, b: np.concatenate([a, b]), name="empty_part"),
    OpCase("ConcatV2", lambda a, b: tw.concat([a, b], 0),
           [rand(2, dtype="bool"), rand(3, dtype="bool", seed=1)],
           lambda a, b: np.concatenate([a, b]), name="bool"),
    OpCase("Pack", lambda a, b: tw.stack([a, b]), [rand(2, 3), rand(2, 3, seed=1)],
           lambda a, b: np.stack([a, b])),
    OpCase("Pack", lambda a, b, c: tw.stack([a, b, c], axis=-1),
           [rand(2, 2), rand(2, 2, seed=1), rand(2, 2, seed=2)],
           lambda a, b, c: np.stack([a, b, c], -1), name="last_axis"),
    OpCase("Pack", lambda a, b: tw.stack([a, b, 7]), [_i32(1), _i32(2)],
           lambda a, b: _i32([1, 2, 7]), name="int32_scalars"),
    OpCase("Pack", lambda a: tw.stack([a, a], axis=1), [np.zeros((0, 2), "float32")],
           lambda a: np.zeros((0, 2, 2), "float32"), name="empty"),
    OpCase("Unpack", lambda x: tw.unstack(x, num=3), [rand(3, 2)], lambda x: tuple(x)),
    OpCase("Unpack", lambda x: tw.unstack(x, num=4, axis=-1), [rand(2, 4)],
           lambda x: tuple(x.T), name="last_axis"),
    OpCase("Unpack", lambda x: tw.unstack(x, num=2, axis=1), [rand(3, 2, 2, dtype="int32")],
           lambda x: (x[:, 0], x[:, 1]), name="int32"),
    OpCase("Unpack", lambda x: tw.unstack(x, num=1), [rand(1, 3)], lambda x: (x[0],),
           name="one"),
    OpCase("Split", lambda x: tw.split(x, 3, axis=1), [rand(2, 6)],
           lambda x: tuple(np.split(x, 3, 1))),
    OpCase("Split", lambda x: tw.split(x, 2, axis=-1), [rand(2, 2, 4, dtype="int64")],
           lambda x: tuple(np.split(x, 2, -1)), name="int64_negative_axis"),
    OpCase("Split", lambda x: tw.split(x, 2), [np.zeros((4, 0), "float32")],
           lambda x: (np.zeros((2, 0), "float32"),) * 2, name="empty"),
    OpCase("SplitV", lambda x: tw.split(x, [1, -1, 2], axis=1), [rand(2, 6)],
           lambda x: (x[:, :1], x[:, 1:4], x[:, 4:])),
    OpCase("SplitV", lambda x: tw.split(x, np.array([0, 3], np.int64)), [rand(3, 2, dtype="bool")],
           lambda x: (x[:0], x), name="empty_piece_bool"),
]

SLICES = [
    OpCase("Slice", lambda x: tw.slice(x, [1, 0], [2, -1]), [rand(4, 3)], lambda x: x[1:3, :]),
    OpCase("Slice", lambda x: tw.slice(x, [0, 1, 1], [1, 2, 0]), [rand(2, 3, 2, dtype="int32")],
           lambda x: x[0:1, 1:3, 1:1], name="empty_int32"),
    OpCase("Slice", lambda x: tw.slice(x, np.array([2], np.int64), [-1]), [rand(5)],
           lambda x: x[2:], name="int64_to_end"),
    OpCase("StridedSlice", lambda x: x[1:, ::-2], [rand(4, 5)], lambda x: x[1:, ::-2]),
    OpCase("StridedSlice", lambda x: x[..., 1], [rand(2, 3, 4)], lambda x: x[..., 1],
           name="ellipsis_shrink"),
    OpCase("StridedSlice", lambda x: x[tw.newaxis, -1, :, tw.newaxis], [rand(3, 4)],
           lambda x: x[None, -1, :, None], name="newaxis"),
    OpCase("StridedSlice", lambda x: x[::-1, 5:1:-2], [rand(2, 6, dtype="int32")],
           lambda x: x[::-1, 5:1:-2], name="int32_negative_steps"),
    OpCase("StridedSlice", lambda x: x[3:1], [rand(4, 2)], lambda x: x[3:1], name="empty"),
    OpCase("StridedSlice", lambda x: x[-10:10, 1], [rand(3, 2, dtype="bool")],
           lambda x: x[-10:10, 1], name="clamped_bool"),
    OpCase("StridedSlice", lambda x: tw.strided_slice(x, [1], [3]), [rand(5)],
           lambda x: x[1:3], name="function"),
    OpCase("StridedSliceGrad", _strided_slice_grad, [rand(2, 3)], _strided_slice_grad_reference),
]

GATHERS = [
    OpCase("GatherV2", tw.gather, [rand(5, 3), _i32([4, 0, 4, 2])], lambda p, i: p[i]),
    OpCase("GatherV2", lambda p, i: tw.gather(p, i, axis=1),
           [rand(2, 4, 3), _i32([[3, 1], [1, 1]])], lambda p, i: np.take(p, i, axis=1),
           name="axis1_repeated"),
    OpCase("GatherV2", lambda p, i: tw.gather(p, i, axis=-1), [rand(2, 3), arr([2, 0], "int64")],
           lambda p, i: p[:, i], name="last_axis_int64"),
    OpCase("GatherV2", tw.gather, [rand(4, 2, dtype="int32"), _i32(3)], lambda p, i: p[3],
           name="scalar_index_int32"),
    OpCase("GatherV2", tw.gather, [rand(4, 2), arr([], "int32")],
           lambda p, i: np.zeros((0, 2), "float32"), name="empty"),
    OpCase("UnsortedSegmentSum", lambda d, i: tw.unsorted_segment_sum(d, i, 4),
           [rand(5, 3), _i32([0, 2, -1, 2, 1])], lambda d, i: _segment_sum(d, i, 4)),
    OpCase("UnsortedSegmentSum", lambda d, i: tw.unsorted_segment_sum(d, i, 3),
           [rand(2, 2, 3), arr([[0, 0], [2, 0]], "int64")], lambda d, i: _segment_sum(d, i, 3),
           name="2d_ids"),
    OpCase("UnsortedSegmentSum", lambda d, i: tw.unsorted_segment_sum(d, i, 2),
           [rand(3, dtype="int32"), _i32([1, 1, 1])], lambda d, i: _segment_sum(d, i, 2),
           name="int32"),
    OpCase("OneHot", lambda i: tw.one_hot(i, 4), [_i32([0, 3, -1, 5, 2])],
           lambda i: _one_hot(i, 4, 1, 0, "float32"), grad=False),
    OpCase("OneHot", lambda i: tw.one_hot(i, 3, on_value=5, off_value=-1, axis=0),
           [arr([[1, 0], [2, 7]], "int64")],
           lambda i: np.moveaxis(_one_hot(i, 3, 5, -1, "int32"), -1, 0), grad=False,
           name="axis0_int32"),
    OpCase("OneHot", lambda i: tw.one_hot(i, 2, dtype=tw.bool), [arr([], "uint8")],
           lambda i: np.zeros((0, 2), bool), grad=False, name="empty_bool"),
    OpCase("Tile", lambda x: tw.tile(x, [2, 1, 3]), [rand(2, 2, 1)],
           lambda x: np.tile(x, (2, 1, 3))),
    OpCase("Tile", lambda x: tw.tile(x, [3]), [rand(2, dtype="int32")],
           lambda x: np.tile(x, 3), name="int32"),
    OpCase("Tile", lambda x: tw.tile(x, [0, 2]), [rand(2, 2)],
           lambda x: np.zeros((0, 4), "float32"), name="empty"),
]

PADS = [
    OpCase("Pad", lambda x: tw.pad(x, [[1, 0], [2, 1]]), [rand(2, 3)],
           lambda x: np.pad(x, [[1, 0], [2, 1]])),
    OpCase("Pad", lambda x: tw.pad(x, [[0, 2]]), [rand(0, dtype="bool")],
           lambda x: np.zeros(2, bool), name="empty_bool"),
    OpCase("PadV2", lambda x: tw.pad(x, [[1, 1], [0, 2]], constant_values=1.5), [rand(2, 2)],
           lambda x: np.pad(x, [[1, 1], [0, 2]], constant_values=1.5)),
    OpCase("PadV2", lambda x: tw.pad(x, np.array([[2, 1]], np.int64), constant_values=-3),
           [rand(2, dtype="int32")], lambda x: np.pad(x, [[2, 1]], constant_values=-3),
           name="int32"),
    OpCase("MirrorPad", lambda x: tw.pad(x, [[1, 2], [2, 0]], mode="REFLECT"), [rand(3, 3)],
           lambda x: np.pad(x, [[1, 2], [2, 0]], mode="reflect")),
    OpCase("MirrorPad", lambda x: tw.pad(x, [[1, 2], [2, 0]], mode="symmetric"), [rand(2, 3)],
           lambda x: np.pad(x, [[1, 2], [2, 0]], mode="symmetric"), name="symmetric"),
    OpCase("MirrorPadGrad", _mirror_pad_grad("SYMMETRIC"), [rand(5, 5)],
           _mirror_pad_grad_reference("SYMMETRIC")),
    OpCase("MirrorPadGrad", _mirror_pad_grad("REFLECT"), [rand(6, 5)],
           _mirror_pad_grad_reference("REFLECT"), name="reflect"),
]

CASES = SHAPES + MOVES + JOINS + SLICES + GATHERS + PADS
