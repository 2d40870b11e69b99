"""The reference interpreter: the plainest possible evaluation of a graph.

No pruning beyond what the fetches need, no scheduling, no compilation, no parallelism: visit the
needed ops in creation order, build each kernel fresh, call it, keep every value. Everything the
compiler does (passes, fusion, placement, partitioning, the runners) is tested against it.
"""

from __future__ import annotations

import numpy as np

from tensorweave.executor.context import StepContext, VariableStore
from tensorweave.graph.core import Operation, Tensor
from tensorweave.ops import registry
from tensorweave.passes.prune import needed_ops


def evaluate(fetches, feed_dict=None, store: VariableStore | None = None):
    """Values of ``fetches`` (a list of Tensors/Operations) given ``feed_dict`` {Tensor: value}.

    ``store`` holds variable values across calls (a fresh one if not given); updates of a
    successful evaluation are committed to it, as a Session does.
    """
    feed_dict = dict(feed_dict or {})
    tensors = [f for f in fetches if isinstance(f, Tensor)]
    targets = [f for f in fetches if isinstance(f, Operation)]
    store = store if store is not None else VariableStore()
    ctx = StepContext(store, step_id=0)
    values: dict = {t: np.asarray(v, dtype=t.dtype.np) for t, v in feed_dict.items()}
    with np.errstate(all="ignore"):
        _run_ops(needed_ops(tensors, targets, list(feed_dict)), ctx, values)
    store.commit(ctx.updates)
    return [values[f] if isinstance(f, Tensor) else None for f in fetches]


def _run_ops(ops, ctx, values):
    for op in ops:
        op_def = registry.get(op.type)
        kernel = op_def.kernel(op.attrs, np)
        args = [values[t] for t in op.inputs]
        result = kernel(ctx, *args) if op_def.uses_context else kernel(*args)
        results = tuple(result) if len(op.outputs) > 1 else (result,)
        for t, value in zip(op.outputs, results):
            if t not in values:
                values[t] = value
