"""The boundary of a compiled step: ``_Arg``, ``_Retval`` and ``_Targets``.

A Session step is compiled as a function of its feeds. The compiler copies the ops a step needs
into a graph of its own (``tensorweave.passes.snapshot``) where

* each fed tensor is an ``_Arg`` op (attr ``index``: which feed, plus its ``dtype`` and
  ``shape``), so nothing downstream depends on how the value was made;
* each fetched tensor is read by a ``_Retval`` op (attr ``index``: which fetch);
* the target ops (run for their effects) are the control inputs of one ``_Targets`` op.

All three are stateful, so no pass folds, merges or removes them: they are the step's
signature. ``_Retval`` and ``_Targets`` are the roots of the graph — what a pass must keep is
what they need. The executor lowers the boundary to feed and fetch slots and never calls these
kernels; they exist so a plain interpreter of the graph would still do the right thing.
"""

from __future__ import annotations

from tensorweave.ops.registry import NO_GRADIENT, OpDef, register

__all__: list = []

# Op types whose ops are the results of a step: the roots that passes keep alive.
RESULT_TYPES = frozenset({"_Retval", "_Targets"})
ARG_TYPE = "_Arg"
RETVAL_TYPE = "_Retval"


# -- _Arg -----------------------------------------------------------------------------------------
def _arg_infer(op):
    if op.inputs:
        raise ValueError("an _Arg op takes no inputs")
    return [(op.attrs["dtype"], op.attrs["shape"])]


def _arg_kernel(attrs, xp):
    index = attrs["index"]

    def argument():
        raise ValueError(f"argument {index} of a compiled step is passed by its caller")
    return argument


register(OpDef("_Arg", _arg_infer, _arg_kernel, grad=NO_GRADIENT, stateful=True, must_feed=True))


# -- _Retval --------------------------------------------------------------------------------------
def _retval_infer(op):
    if len(op.inputs) != 1:
        raise ValueError(f"a _Retval op reads exactly one tensor, got {len(op.inputs)}")
    return []


def _nothing(*values):
    return ()


register(OpDef("_Retval", _retval_infer, lambda attrs, xp: _nothing, grad=NO_GRADIENT,
               stateful=True))


# -- _Targets -------------------------------------------------------------------------------------
def _targets_infer(op):
    if op.inputs:
        raise ValueError("a _Targets op takes only control inputs")
    return []


register(OpDef("_Targets", _targets_infer, lambda attrs, xp: _nothing, grad=NO_GRADIENT,
               stateful=True))
