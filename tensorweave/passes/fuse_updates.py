"""fuse_updates: an update op adds (and scales) the gradients it is given itself.

Data-parallel training averages each variable's gradients before updating it. With two
replicas the all-reduce ends in ``(g0 + g1) * 0.5`` (``tw.train.all_reduce``), a parameter
server's aggregate in ``AddN(g0, g1) / 2.0`` (``replicate(mode="ps-sync")``), maybe reshaped
back to the variable's shape, and ``ApplyAdam`` then reads the result. The sum and the scale
are each a pass over memory the size of the variable (Deep MNIST's fc1 weights: 12.8 MB), and
the update reads the mean once more. This pass lets the update op read the addends and the
scale instead: the update ops whose OpDef names a ``summed_gradient_input`` (``ApplyAdam``
and ``ApplyGradientDescent``, the ones with compiled loops) take the attrs ``grad_terms`` (how
many inputs are added, in order, to make the gradient; 1 is the plain op) and ``grad_scale``
(``"mul"`` or ``"div"``: the input after the addends multiplies or divides the sum; ``""``:
no scale), and their kernels compute each element's gradient with the same IEEE operations
in the same order as the ops they replace, so the update is bitwise the same
(``ops/training.py``, ``ops/loops.py``).

The chain ``Reshape* <- Mul|RealDiv <- Add|AddV2|AddN`` (the scale and the reshapes optional)
is folded only when it cannot change anything but speed:

* every op of the chain has one consumer, the next one (the update last), no control inputs,
  nothing waiting on it by control edge, and the update's requested device;
* the scale is a scalar of the gradient's dtype, on the right of a division;
* the addends have the gradient's dtype and, like the gradient, fully known static shapes
  with one number of elements (so no addition broadcasts, and no reshape dropped could have
  failed at run time); an addend that is a ``Reshape`` of a value of the gradient's shape is
  read in that shape (the flattened all-reduce buckets), others must have the gradient's shape.

The ops of the chain are left unread; ``dce``, which runs next, removes them.
"""

from __future__ import annotations

from tensorweave.passes.base import PassResult, Rewriter, describe, op_def_of

__all__ = ["fuse_updates"]

_SUMS = ("Add", "AddV2", "AddN")
_SCALES = {"Mul": "mul", "RealDiv": "div"}
_FLOATS = ("float16", "bfloat16", "float32", "float64")


def fuse_updates(graph, *, options=None) -> PassResult:
    """Rewrite each update op whose gradient is a sum (scaled, reshaped) of same-shaped
    values to read them directly."""
    consumers = _consumers(graph)
    waited_on = {c for op in graph.get_operations() for c in op.control_inputs}
    folds = {}
    for op in graph.get_operations():
        index = _gradient_input(op)
        if index is not None and op.attrs.get("grad_terms", 1) == 1:
            fold = _fold(op, op.inputs[index], consumers, waited_on)
            if fold is not None:
                folds[op] = fold
    if not folds:
        return PassResult(graph, [])
    rw = Rewriter(graph)
    changes = []
    for op in graph.get_operations():
        fold = folds.get(op)
        if fold is None:
            rw.copy(op)
            continue
        terms, scale, scaling = fold
        index = _gradient_input(op)
        inputs = rw.images(op.inputs[:index]) + rw.images(terms)
        if scale is not None:
            inputs.append(rw.image(scale))
        attrs = dict(op.attrs, grad_terms=len(terms), grad_scale=scaling)
        rw.create(op.type, inputs, attrs, like=op, replaces=op)
        scaled = f" {'*' if scaling == 'mul' else '/'} {scale.name}" if scale is not None else ""
        changes.append(f"fuse_updates: {describe(op)} computes its gradient "
                       f"({' + '.join(t.name for t in terms)}){scaled} itself")
    return rw.result(changes)


def _gradient_input(op):
    """The index of ``op``'s gradient input when its kernel can take a summed gradient
    (``OpDef.summed_gradient_input``), else None."""
    op_def = op_def_of(op)
    return None if op_def is None else op_def.summed_gradient_input


def _consumers(graph) -> dict:
    """``{tensor: number of inputs that read it}`` (a fetch is read by its ``_Retval``)."""
    counts: dict = {}
    for op in graph.get_operations():
        for t in op.inputs:
            counts[t] = counts.get(t, 0) + 1
    return counts


def _fold(update, grad, consumers, waited_on):
    """``(addends, scale or None, "mul"|"div"|"")`` for ``update``'s gradient, or None."""
    if grad.dtype.name not in _FLOATS or not grad.shape.is_fully_defined():
        return None
    size = grad.shape.num_elements()
    chain = []
    t = grad
    while t.op.type == "Reshape":
        chain.append(t.op)
        t = t.op.inputs[0]
    scale, scaling = None, ""
    if t.op.type in _SCALES:
        x, y = t.op.inputs
        if t.op.type == "Mul" and _is_scalar(x, grad) and not _is_scalar(y, grad):
            x, y = y, x  # IEEE multiplication commutes: x * s and s * x are the same bits
        if not _is_scalar(y, grad):
            return None
        chain.append(t.op)
        scale, scaling = y, _SCALES[t.op.type]
        t = x
    if t.op.type not in _SUMS or len(t.op.inputs) < 2:
        return None
    chain.append(t.op)
    for op in chain:
        if op.control_inputs or op in waited_on or op.device != update.device \
                or consumers.get(op.outputs[0], 0) != 1 or len(op.outputs) != 1:
            return None
    terms = [_in_shape(term, grad) for term in t.op.inputs]
    for term in terms:
        if term is None or term.dtype is not grad.dtype or term.shape.num_elements() != size:
            return None
    return terms, scale, scaling


def _is_scalar(t, like) -> bool:
    return t.dtype is like.dtype and t.shape.rank == 0


def _in_shape(term, grad):
    """``term`` itself when it has ``grad``'s static shape; the input of a ``Reshape`` that
    made it from a value of that shape; else None."""
    if not term.shape.is_fully_defined():
        return None
    if term.shape == grad.shape:
        return term
    if term.op.type == "Reshape" and not term.op.control_inputs:
        source = term.op.inputs[0]
        if source.shape.is_fully_defined() and source.shape == grad.shape:
            return source
    return None
