"""Code generation for fused kernels: the expression IR (``expr``) and one module per backend.

This package imports only ``tensorweave.graph`` and numpy: ops, passes and the executor use it,
never the other way round. ``compile_expr(expr, xp, backend=None)`` returns a kernel
``fn(*arrays) -> tuple of outputs`` for a ``FusedExpr``; ``backend`` names one of ``BACKENDS``
(default: the numpy backend, the only one that runs everywhere).
"""

from __future__ import annotations

from tensorweave.codegen import cpu_numpy
from tensorweave.codegen.expr import FusedExpr

# name -> compile(expr, xp) -> kernel; other backends register themselves here.
BACKENDS = {"numpy": cpu_numpy.compile_expr}


def compile_expr(expr: FusedExpr, xp, backend: str | None = None):
    """A kernel ``fn(*arrays) -> tuple`` computing ``expr`` with array module ``xp``."""
    name = backend or "numpy"
    try:
        build = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown codegen backend {name!r}; known: {sorted(BACKENDS)}") from None
    return build(expr, xp)


__all__ = ["FusedExpr", "BACKENDS", "compile_expr"]
