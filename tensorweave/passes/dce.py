"""Dead-code elimination: remove the ops other passes left without a use.

Folding, merging and simplifying leave behind ops whose values nobody reads any more. An op is
live when a root (``_Retval``, ``_Targets``) or a stateful op needs it, through data or control
edges. Stateful ops are roots here because every one of them that reaches this pass was needed
by the step as the user wrote it (``prune`` ran first): a pass may have made its value unneeded
(``Shape(tw.assign(v, x))`` folds to a constant), but its effect — an update, a random draw, an
uninitialized-variable error — is still part of the step.
"""

from __future__ import annotations

from tensorweave.passes.base import PassResult, is_stateful, live_ops, roots
from tensorweave.passes.prune import keep_only

__all__ = ["dce"]


def dce(graph, *, options=None) -> PassResult:
    """Remove every op that neither a root nor a stateful op needs."""
    ops = graph.get_operations()
    keep = set(roots(graph)) | {op for op in ops if is_stateful(op)}
    return keep_only(graph, live_ops(graph, keep), "dce")
