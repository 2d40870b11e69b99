"""Array ops that reorder, join and split data: ``transpose`` (and ``invert_permutation``),
``reverse``, ``concat``, ``stack``/``unstack``, ``split`` and ``tile``.

``range`` in this module is the tw op; Python's is spelled ``builtins.range``.
"""

from __future__ import annotations

import builtins

import numpy as np

from tensorweave.graph.core import Tensor
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops.common import convert_to_tensor, normalize_axis, output
from tensorweave.ops.creation import identity, range
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, register
from tensorweave.ops.shape_args import (_check_index_dtype, _ints, _is_int, _same_dtype, _show,
                                        _spec_values, _tensors_of_one_dtype, const_int,
                                        const_ints, int_tensor, known_elements)
from tensorweave.ops.shape_ops import rank, reshape, shape, size

__all__ = []  # each op's section adds its public function


# -- Transpose / InvertPermutation --------------------------------------------------------------
def _transpose_infer(op):
    x, perm = op.inputs
    _check_index_dtype(perm, "the perm of transpose")
    dims = x.shape.as_tuple()
    values = const_ints(perm)
    if values is None:
        length = perm.shape[0].value if perm.shape.rank == 1 else None
        rank = len(dims) if dims is not None else length
        return [(x.dtype, TensorShape(None if rank is None else [None] * rank))]
    if dims is None:
        dims = (None,) * len(values)
    _check_permutation(values, len(dims), "the perm of transpose")
    return [(x.dtype, [dims[i] for i in values])]


def _check_permutation(perm, rank, what):
    if len(perm) != rank:
        raise ValueError(f"{what} {perm} has {len(perm)} elements, but the tensor has rank {rank}")
    if sorted(perm) != list(builtins.range(rank)):
        raise ValueError(f"{what} {perm} is not a permutation of 0..{rank - 1}")


def _transpose_kernel(attrs, xp):
    def transpose_kernel(x, perm):
        perm = _ints(perm)
        _check_permutation(perm, x.ndim, "the perm of transpose")
        return xp.transpose(x, perm)
    return transpose_kernel


register(OpDef("Transpose", _transpose_infer, _transpose_kernel,
               grad=lambda op, g: [transpose(g, invert_permutation(op.inputs[1])), None]))


def transpose(a, perm=None, name="transpose", conjugate=False) -> Tensor:
    """``a`` with its dimensions permuted: output dim i is input dim ``perm[i]``.

    ``perm=None`` reverses the dimensions (a matrix transpose for rank 2). ``conjugate`` has no
    effect: tensorweave has no complex dtypes.
    """
    a = convert_to_tensor(a)
    if perm is None:
        r = a.shape.rank
        perm = np.arange(r - 1, -1, -1, dtype=np.int32) if r is not None \
            else reverse(range(rank(a)), [0])
    perm = int_tensor(perm, "the perm of transpose")
    return output(apply_op("Transpose", [a, perm], name=name or "transpose"))


def _invert_permutation_infer(op):
    x = op.inputs[0]
    _check_index_dtype(x, "the input of invert_permutation")
    if x.shape.rank not in (None, 1):
        raise ValueError(f"invert_permutation needs a vector, got shape {x.shape}")
    return [(x.dtype, x.shape if x.shape.rank is not None else [None])]


def _invert_permutation_kernel(attrs, xp):
    def invert_permutation_kernel(perm):
        _check_permutation(_ints(perm), perm.size, "the input of invert_permutation")
        inverse = xp.empty_like(perm)
        inverse[perm] = xp.arange(perm.size, dtype=perm.dtype)
        return inverse
    return invert_permutation_kernel


register(OpDef("InvertPermutation", _invert_permutation_infer, _invert_permutation_kernel,
               grad=NO_GRADIENT))


def invert_permutation(x, name=None) -> Tensor:
    """The inverse of the permutation ``x``: ``y[x[i]] = i``."""
    x = int_tensor(x, "the input of invert_permutation")
    return output(apply_op("InvertPermutation", [x], name=name or "InvertPermutation"))


__all__ += ["transpose", "invert_permutation"]


# -- ReverseV2 ----------------------------------------------------------------------------------
def _reverse_axes(axes, rank):
    normalized = [normalize_axis(a, rank, "the axis of reverse") for a in axes]
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"the axis of reverse {axes} names a dimension more than once")
    return tuple(normalized)


def _reverse_infer(op):
    x, axis = op.inputs
    _check_index_dtype(axis, "the axis of reverse")
    if axis.shape.rank not in (None, 1):
        raise ValueError(f"the axis of reverse must be a vector, got shape {axis.shape}")
    axes = const_ints(axis)
    if axes is not None and x.shape.rank is not None:
        _reverse_axes(axes, x.shape.rank)
    return [(x.dtype, x.shape)]


def _reverse_kernel(attrs, xp):
    def reverse_kernel(x, axis):
        return xp.asarray(xp.flip(x, axis=_reverse_axes(_ints(axis), x.ndim)))
    return reverse_kernel


register(OpDef("ReverseV2", _reverse_infer, _reverse_kernel,
               grad=lambda op, g: [reverse(g, op.inputs[1]), None]))


def reverse(tensor, axis, name=None) -> Tensor:
    """``tensor`` with the order of elements reversed along each dimension in ``axis``."""
    tensor = convert_to_tensor(tensor)
    axis = int_tensor([axis] if _is_int(axis) else axis, "the axis of reverse")
    return output(apply_op("ReverseV2", [tensor, axis], name=name or "ReverseV2"))


__all__ += ["reverse"]


def _outputs(xp, parts):
    """A multi-output kernel's result: one array for one output, else a tuple of arrays."""
    parts = [xp.asarray(p) for p in parts]  # numpy indexing may give scalars, not arrays
    return parts[0] if len(parts) == 1 else tuple(parts)


# -- ConcatV2 -----------------------------------------------------------------------------------
def _concat_infer(op):
    values, axis = op.inputs[:-1], op.inputs[-1]
    if len(values) != op.attrs["N"]:
        raise ValueError(f"concat of N={op.attrs['N']} tensors got {len(values)}")
    dtype = _same_dtype(values, "concat")
    _check_index_dtype(axis, "the axis of concat")
    known = [(i, t.shape) for i, t in enumerate(values) if t.shape.rank is not None]
    if not known:
        return [(dtype, TensorShape(None))]
    first, first_shape = known[0]
    for i, s in known[1:]:
        if s.rank != first_shape.rank:
            raise ValueError(f"all inputs of concat must have one rank, but input {first} has "
                             f"shape {first_shape} and input {i} has shape {s}")
    r = first_shape.rank
    if r == 0:
        raise ValueError("cannot concatenate scalars; use tw.stack to make a vector of them")
    a = const_int(axis)
    if a is None:
        return [(dtype, [None] * r)]
    a = normalize_axis(a, r, "the axis of concat")
    return [(dtype, _concat_dims(values, a, r))]


def _concat_dims(values, a, r):
    """The static dims of a concat along ``a``; other dims must agree (errors name both)."""
    dims = [None] * r
    source = [None] * r  # which input each known dim came from, for error messages
    total = 0
    for i, t in enumerate(values):
        shape = t.shape.as_tuple()
        if shape is None:
            total = None
            continue
        for j, d in enumerate(shape):
            if j == a or d is None:
                continue
            if dims[j] is not None and dims[j] != d:
                k = source[j]
                raise ValueError(f"dimension {j} of the inputs to concat must agree (they are "
                                 f"joined along axis {a}), but input {k} has shape "
                                 f"{values[k].shape} and input {i} has shape {t.shape}")
            dims[j], source[j] = d, i
        total = None if total is None or shape[a] is None else total + shape[a]
    dims[a] = total
    return dims


def _concat_kernel(attrs, xp):
    def concat_kernel(*args):
        return xp.concatenate(args[:-1], axis=int(args[-1]))
    return concat_kernel


def _concat_grad(op, g):
    values, axis = op.inputs[:-1], op.inputs[-1]
    a = const_int(axis)
    index = a if a is not None else axis
    sizes = stack([shape(v)[index] for v in values])
    return split(g, sizes, axis, num=len(values)) + [None]


register(OpDef("ConcatV2", _concat_infer, _concat_kernel, grad=_concat_grad))


def concat(values, axis, name="concat") -> Tensor:
    """The tensors ``values`` joined along dimension ``axis``; other dims must agree."""
    values = _tensors_of_one_dtype(values, "concat")
    axis = int_tensor(axis, "the axis of concat")
    if len(values) == 1:
        return identity(values[0], name=name)
    return output(apply_op("ConcatV2", values + [axis], {"N": len(values)},
                           name=name or "concat"))


__all__ += ["concat"]


# -- Pack / Unpack ------------------------------------------------------------------------------
def _pack_infer(op):
    values = op.inputs
    if len(values) != op.attrs["N"]:
        raise ValueError(f"stack of N={op.attrs['N']} tensors got {len(values)}")
    dtype = _same_dtype(values, "stack")
    merged = TensorShape(None)
    for i, t in enumerate(values):
        if not merged.is_compatible_with(t.shape):
            k = next(k for k, v in enumerate(values[:i])
                     if not v.shape.is_compatible_with(t.shape))
            raise ValueError(f"all inputs of stack must have one shape, but input {k} has shape "
                             f"{values[k].shape} and input {i} has shape {t.shape}")
        merged = merged.merge_with(t.shape)
    dims = merged.as_tuple()
    if dims is None:
        return [(dtype, TensorShape(None))]
    a = normalize_axis(op.attrs["axis"], len(dims) + 1, "the axis of stack")
    return [(dtype, dims[:a] + (len(values),) + dims[a:])]


register(OpDef("Pack", _pack_infer,
               lambda attrs, xp: lambda *xs: xp.stack(xs, axis=attrs["axis"]),
               grad=lambda op, g: unstack(g, num=op.attrs["N"], axis=op.attrs["axis"])))


def stack(values, axis=0, name="stack") -> Tensor:
    """The tensors ``values`` (all of one shape) stacked along a new dimension ``axis``."""
    values = _tensors_of_one_dtype(values, "stack")
    return output(apply_op("Pack", values, {"axis": int(axis), "N": len(values)},
                           name=name or "stack"))


def _unpack_infer(op):
    x = op.inputs[0]
    num = op.attrs["num"]
    dims = x.shape.as_tuple()
    if dims is None:
        return [(x.dtype, TensorShape(None))] * num
    a = normalize_axis(op.attrs["axis"], len(dims), "the axis of unstack")
    if dims[a] is not None and dims[a] != num:
        raise ValueError(f"cannot unstack dimension {a} of shape {x.shape} into {num} tensors")
    return [(x.dtype, dims[:a] + dims[a + 1:])] * num


def _unpack_kernel(attrs, xp):
    num = attrs["num"]

    def unstack_kernel(x):
        a = normalize_axis(attrs["axis"], x.ndim, "the axis of unstack")
        if x.shape[a] != num:
            raise ValueError(f"cannot unstack dimension {a} of shape {x.shape} into {num} "
                             f"tensors")
        moved = xp.moveaxis(x, a, 0)
        return _outputs(xp, [moved[i] for i in builtins.range(num)])
    return unstack_kernel


register(OpDef("Unpack", _unpack_infer, _unpack_kernel,
               grad=lambda op, *grads: [stack(list(grads), axis=op.attrs["axis"])]))


def unstack(value, num=None, axis=0, name="unstack") -> list:
    """The slices of ``value`` along dimension ``axis``, as a list of ``num`` tensors."""
    value = convert_to_tensor(value)
    if num is None:
        dims = value.shape.as_tuple()
        if dims is not None:
            num = dims[normalize_axis(axis, len(dims), "the axis of unstack")]
        if num is None:
            raise ValueError(f"cannot infer num from shape {value.shape}; pass num")
    op = apply_op("Unpack", [value], {"num": int(num), "axis": int(axis)}, name=name or "unstack")
    return list(op.outputs)


__all__ += ["stack", "unstack"]


# -- Split / SplitV -----------------------------------------------------------------------------
def _split_infer(op):
    axis, x = op.inputs
    n = op.attrs["num_split"]
    _check_index_dtype(axis, "the axis of split")
    dims = x.shape.as_tuple()
    a = const_int(axis)
    if dims is None:
        return [(x.dtype, TensorShape(None))] * n
    if a is None:
        return [(x.dtype, [None] * len(dims))] * n
    a = normalize_axis(a, len(dims), "the axis of split")
    d = dims[a]
    if d is not None and d % n:
        raise ValueError(f"cannot split dimension {a} of shape {x.shape} evenly into {n} pieces")
    piece = None if d is None else d // n
    return [(x.dtype, dims[:a] + (piece,) + dims[a + 1:])] * n


def _split_kernel(attrs, xp):
    n = attrs["num_split"]

    def split_kernel(axis, x):
        a = normalize_axis(int(axis), x.ndim, "the axis of split")
        if x.shape[a] % n:
            raise ValueError(f"cannot split dimension {a} of shape {x.shape} evenly into {n} "
                             f"pieces")
        return _outputs(xp, xp.split(x, n, axis=a))
    return split_kernel


register(OpDef("Split", _split_infer, _split_kernel,
               grad=lambda op, *grads: [None, concat(list(grads), op.inputs[0])]))


def _split_v_infer(op):
    x, size_splits, axis = op.inputs
    n = op.attrs["num_split"]
    _check_index_dtype(axis, "the axis of split")
    _check_index_dtype(size_splits, "the sizes of split")
    elements = known_elements(size_splits)
    sizes = [None] * n if elements is None else [s if _is_int(s) else None for s in elements]
    if len(sizes) != n:
        raise ValueError(f"split into num={n} pieces got {len(sizes)} sizes")
    dims = x.shape.as_tuple()
    a = const_int(axis)
    if dims is None:
        return [(x.dtype, TensorShape(None))] * n
    if a is None:
        return [(x.dtype, [None] * len(dims))] * n
    a = normalize_axis(a, len(dims), "the axis of split")
    sizes = _split_sizes(sizes, dims[a], f"dimension {a} of shape {x.shape}")
    return [(x.dtype, dims[:a] + (s,) + dims[a + 1:]) for s in sizes]


def _split_sizes(sizes, total, what):
    """Resolve a -1 among ``sizes`` (ints or None) and check they add up to ``total``."""
    known = [s for s in sizes if s is not None]
    if sum(s == -1 for s in known) > 1 or any(s < -1 for s in known):
        raise ValueError(f"split sizes {sizes}: each must be >= 0, except one that may be -1")
    if total is None or len(known) < len(sizes):
        return [None if s == -1 else s for s in sizes]
    rest = sum(s for s in known if s != -1)
    if -1 in sizes:
        if rest > total:
            raise ValueError(f"split sizes {sizes} add up to more than {what} ({total})")
        return [total - rest if s == -1 else s for s in sizes]
    if rest != total:
        raise ValueError(f"split sizes {sizes} add up to {rest}, but {what} is {total}")
    return sizes


def _split_v_kernel(attrs, xp):
    def split_v_kernel(x, size_splits, axis):
        a = normalize_axis(int(axis), x.ndim, "the axis of split")
        sizes = _split_sizes(_ints(size_splits), x.shape[a],
                             f"dimension {a} of shape {x.shape}")
        return _outputs(xp, xp.split(x, np.cumsum(sizes)[:-1].tolist(), axis=a))
    return split_v_kernel


register(OpDef("SplitV", _split_v_infer, _split_v_kernel,
               grad=lambda op, *grads: [concat(list(grads), op.inputs[2]), None, None]))


def split(value, num_or_size_splits, axis=0, num=None, name="split") -> list:
    """Split ``value`` along ``axis`` into equal pieces (an int) or pieces of given sizes.

    ``num_or_size_splits`` is a number of pieces that divides the dimension, or a list of sizes
    (one may be -1: the rest); ``num`` is needed when the sizes' length is not static.
    """
    value = convert_to_tensor(value)
    axis = int_tensor(axis, "the axis of split")
    if _is_int(num_or_size_splits):
        op = apply_op("Split", [axis, value], {"num_split": int(num_or_size_splits)},
                      name=name or "split")
        return list(op.outputs)
    sizes = int_tensor(num_or_size_splits, "the sizes of split")
    if sizes.shape.rank == 0 and const_int(sizes) is not None:
        return split(value, const_int(sizes), axis, name=name)
    if num is None:
        num = sizes.shape[0].value if sizes.shape.rank == 1 else None
        if num is None:
            raise ValueError(f"cannot infer the number of pieces from sizes of shape "
                             f"{sizes.shape}; pass num")
    op = apply_op("SplitV", [value, sizes, axis], {"num_split": int(num)}, name=name or "split")
    return list(op.outputs)


__all__ += ["split"]


# -- Tile ---------------------------------------------------------------------------------------
def _tile_infer(op):
    x, multiples = op.inputs
    _check_index_dtype(multiples, "the multiples of tile")
    m, dims = _spec_values(multiples), x.shape.as_tuple()
    if m is None and dims is None:
        return [(x.dtype, TensorShape(None))]
    if m is not None and dims is not None and len(m) != len(dims):
        raise ValueError(f"the multiples of tile {_show(m)} must have one element per "
                         f"dimension of the input, of shape {x.shape}")
    if m is not None and any(k is not None and k < 0 for k in m):
        raise ValueError(f"the multiples of tile must be >= 0, got {_show(m)}")
    m = m or [None] * len(dims)
    dims = dims or (None,) * len(m)
    return [(x.dtype, [_tiled_dim(d, k) for d, k in zip(dims, m)])]


def _tiled_dim(d, k):
    if d == 0 or k == 0:
        return 0
    return None if d is None or k is None else d * k


def _tile_kernel(attrs, xp):
    def tile_kernel(x, multiples):
        m = _ints(multiples)
        if len(m) != x.ndim or any(k < 0 for k in m):
            raise ValueError(f"the multiples of tile {m} must be >= 0, one per dimension of the "
                             f"input, of shape {x.shape}")
        return xp.tile(x, m)
    return tile_kernel


def _tile_grad(op, g):
    """Sum the tiles: view g as [m0, d0, m1, d1, ...] and sum the multiples' axes."""
    from tensorweave.ops.math import reduce_sum
    x, multiples = op.inputs
    pairs = reshape(stack([multiples, shape(x, out_type=multiples.dtype)], axis=1), [-1])
    return [reduce_sum(reshape(g, pairs), axis=range(0, size(pairs), 2)), None]


register(OpDef("Tile", _tile_infer, _tile_kernel, grad=_tile_grad))


def tile(input, multiples, name=None) -> Tensor:
    """``input`` repeated ``multiples[i]`` times along each dimension i."""
    input = convert_to_tensor(input)
    multiples = int_tensor(multiples, "the multiples of tile")
    return output(apply_op("Tile", [input, multiples], name=name or "Tile"))


__all__ += ["tile"]
