"""Graph passes: pure functions ``pass(graph, *, options) -> PassResult(graph, changes)``.

A compiled step runs ``snapshot`` and then the passes of ``PIPELINE`` in order (minus those
named in ``ConfigProto.disabled_passes``):

    prune -> constant_fold -> cse -> simplify -> fuse_updates -> dce -> fusion

Each pass module defines a function of the pass's name (``passes.cse.cse``).
"""

from __future__ import annotations

import importlib

from tensorweave.passes.base import PassOptions, PassResult, Rewriter, run_pipeline
from tensorweave.passes.snapshot import snapshot

__all__ = ["PIPELINE", "PassOptions", "PassResult", "Rewriter", "run_pipeline", "snapshot",
           "get_pass", "pipeline"]

PIPELINE = ["prune", "constant_fold", "cse", "simplify", "fuse_updates", "dce", "fusion"]

# Passes written by other parts of the compiler that may not be installed in every build: the
# pipeline runs without them rather than failing.
_OPTIONAL = frozenset({"fusion"})


def get_pass(name: str):
    """The function of the pass ``name``, or None for an optional pass that is not present."""
    if name not in PIPELINE:
        raise ValueError(f"unknown graph pass {name!r}; the passes are: {', '.join(PIPELINE)}")
    module_name = f"tensorweave.passes.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if name in _OPTIONAL and e.name == module_name:
            return None
        raise
    return getattr(module, name)


def pipeline(disabled=()) -> list:
    """``[(name, fn), ...]`` of ``PIPELINE`` without the passes named in ``disabled``."""
    disabled = list(disabled)
    unknown = [name for name in disabled if name not in PIPELINE]
    if unknown:
        raise ValueError(f"ConfigProto.disabled_passes names unknown passes {unknown}; the "
                         f"passes are: {', '.join(PIPELINE)} (tw.passes.PIPELINE)")
    result = []
    for name in PIPELINE:
        if name in disabled:
            continue
        fn = get_pass(name)
        if fn is not None:
            result.append((name, fn))
    return result
