"""Code generation for fused kernels: the expression IR (``expr``) and one module per backend.

This package imports only ``tensorweave.graph`` and numpy: ops, passes and the executor use it,
never the other way round. ``compile_expr(expr, xp, backend=None)`` returns a kernel
``fn(*arrays) -> tuple of outputs`` for a ``FusedExpr``; ``backend`` names one of ``BACKENDS``
(default: ``auto`` for numpy arrays, which times the numpy and numba backends per expression and
size class; ``cuda`` for cupy arrays on a device).
"""

from __future__ import annotations

import numpy as np

from tensorweave.codegen import cpu_numpy
from tensorweave.codegen.expr import FusedExpr

# name -> compile(expr, xp) -> kernel; other backends register themselves here.
BACKENDS = {"numpy": cpu_numpy.compile_expr}


def compile_expr(expr: FusedExpr, xp, backend: str | None = None):
    """A kernel ``fn(*arrays) -> tuple`` computing ``expr`` with array module ``xp``."""
    name = backend or _default_backend(xp)
    try:
        build = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown codegen backend {name!r}; known: {sorted(BACKENDS)}") from None
    return build(expr, xp)


# -- backends of codegen/cpu_numba.py, cuda.py and select.py ---------------------------------------
# Without a named backend, numpy arrays get a kernel that picks numpy or numba per size class by
# timing both (select.py), and cupy arrays the CUDA backend when cupy sees a device.
from tensorweave.codegen import cpu_numba, cuda, select  # noqa: E402  (kept after the numpy default)

BACKENDS["numba"] = cpu_numba.compile_numba
BACKENDS["cuda"] = cuda.compile_cuda
BACKENDS["auto"] = select.compile_selected


def _default_backend(xp) -> str:
    if xp is np:
        return "auto"
    return "cuda" if cuda.available() else "numpy"


__all__ = ["FusedExpr", "BACKENDS", "compile_expr"]
