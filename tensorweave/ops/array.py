"""Array ops: constants, placeholders, identity, and the ops that move, select and reshape data.

Each op sits on one screen: its OpDef (inference, kernel, gradient, fusion kind) and then the
public function that builds it. The ops live in one module per kind; this module gathers their
public names (``tw.*`` takes them from here):

* ``ops/shape_args.py`` — reading shape, axis and index arguments at graph-construction time
* ``ops/creation.py`` — constant, placeholder(_with_default), identity, stop_gradient,
  zeros/ones(_like), fill, range
* ``ops/shape_ops.py`` — shape, size, rank, reshape, expand_dims, squeeze, broadcast_to
* ``ops/layout.py`` — transpose, invert_permutation, reverse, concat, stack, unstack, split, tile
* ``ops/slicing.py`` — slice, strided_slice, ``x[...]`` (``Tensor.__getitem__``), pad
* ``ops/indexing.py`` — gather, unsorted_segment_sum, one_hot

Each imports only the modules listed before it, so the family has no import cycle. The few
math ops array gradients use (``cast``, ``reduce_sum``) are imported inside those functions, as
the math family imports this one.
"""

from tensorweave.ops import creation as _creation
from tensorweave.ops import indexing as _indexing
from tensorweave.ops import layout as _layout
from tensorweave.ops import shape_ops as _shape_ops
from tensorweave.ops import slicing as _slicing
from tensorweave.ops.creation import *  # noqa: F401,F403
from tensorweave.ops.creation import range_length  # noqa: F401
from tensorweave.ops.indexing import *  # noqa: F401,F403
from tensorweave.ops.layout import *  # noqa: F401,F403
from tensorweave.ops.shape_args import (DimOf, const_int, const_ints,  # noqa: F401
                                        int_tensor, known_elements, shape_from_tensor,
                                        slice_entries)
from tensorweave.ops.shape_ops import *  # noqa: F401,F403
from tensorweave.ops.slicing import *  # noqa: F401,F403

__all__ = (_creation.__all__ + _shape_ops.__all__ + _layout.__all__ + _slicing.__all__
           + _indexing.__all__)
