"""``snapshot``: the ops one ``Session.run`` signature needs, as a graph of its own.

The user's graph keeps growing while sessions run it; a compiled step works on a copy of just
what its (fetches, feeds, targets) need, in which

* every fed tensor is an ``_Arg`` op (``index`` = position in ``feeds``): consumers of the fed
  tensor read the argument, and the ops that made the tensor are not needed for it;
* every fetched tensor is read by a ``_Retval`` op (``index`` = position in ``fetches``);
* the targets are the control inputs of one ``_Targets`` op.

Copies keep their names, attrs, devices, control inputs and the frames where the user created
them, so errors raised while running the copy still point at the user's line. Output specs are
refined with a fresh inference (a ``set_shape`` after an op's consumers were built may have
taught the graph more than the consumers recorded). Downstream of a fed tensor whose value
inference could read (a fed constant), recorded shapes may follow from that value rather than
from the fed one, so there only a fresh inference is trusted.
"""

from __future__ import annotations

from tensorweave import errors
from tensorweave.graph.core import Graph
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops import registry
from tensorweave.passes.base import Rewriter
from tensorweave.passes.prune import needed_ops

__all__ = ["snapshot"]


def snapshot(graph: Graph, fetches, feeds, targets, arg_shapes=None) -> Graph:
    """A new graph computing ``fetches`` and running ``targets`` from ``feeds`` (see module).
    ``arg_shapes`` gives, per feed, the shape the step will be fed (None: the declared one)."""
    fetches, feeds, targets = list(fetches), list(feeds), list(targets)
    fed = set(feeds)
    ops = needed_ops(fetches, targets, feeds)
    skipped = _check_feeds(ops, fed, targets)
    rw = Rewriter(graph)
    arg_shapes = arg_shapes or [None] * len(feeds)
    args = {t: _add_arg(rw, index, t, shape)
            for index, (t, shape) in enumerate(zip(feeds, arg_shapes))}
    derived: set = set()  # ops whose recorded specs may depend on a value now fed
    for op in ops:
        if op in skipped:
            continue
        inputs = [args[t] if t in fed else rw.image(t) for t in op.inputs]
        trusted = not any(t.op in derived or (t in fed and _value_was_known(t))
                          for t in op.inputs)
        if not trusted:
            derived.add(op)
        rw.copy(op, inputs, refine=True, trust_recorded=trusted)
    for index, t in enumerate(fetches):
        value = args[t] if t in fed else rw.image(t)
        rw.create("_Retval", [value], {"index": index}, like=t.op,
                  name=f"_retval_{_flat(t.name)}")
    kept = [rw.op_image(op) for op in targets if op not in skipped]
    if kept:
        rw.create("_Targets", [], {}, name="_targets", control_inputs=kept)
    return rw.graph


def _add_arg(rw, index, tensor, fed_shape=None):
    shape = tensor.shape if fed_shape is None else tensor.shape.merge_with(TensorShape(fed_shape))
    attrs = {"index": index, "dtype": tensor.dtype, "shape": shape}
    return rw.create("_Arg", [], attrs, like=tensor.op,
                     name=f"_arg_{_flat(tensor.name)}").outputs[0]


def _flat(tensor_name: str) -> str:
    return tensor_name.replace(":", "_")


def _value_was_known(tensor) -> bool:
    """Whether shape inference could read the value of ``tensor`` when its consumers were
    built (so their shapes may follow from that value, not from the one fed instead)."""
    return registry.constant_value(tensor) is not None


def _check_feeds(ops, fed, targets) -> set:
    """Raise for a needed placeholder that is not fed; return the targets fully fed (they have
    nothing left to do: a fed placeholder run as a target)."""
    skipped = set()
    for op in ops:
        op_def = registry.lookup(op.type)
        if op_def is None or not op_def.must_feed:
            continue
        missing = [t for t in op.outputs if t not in fed]
        if not missing:
            skipped.add(op)
            continue
        t = missing[0]
        raise errors.op_error(
            errors.InvalidArgumentError, op,
            f"you must feed a value for placeholder tensor '{t.name}' with dtype "
            f"{t.dtype.name} and shape {t.shape}")
    return skipped
