"""Code generation for fused kernels: the expression IR (``expr``) and one module per backend.

This package imports only ``tensorweave.graph`` and numpy: ops, passes and the executor use it,
never the other way round.
"""

from tensorweave.codegen.expr import FusedExpr

__all__ = ["FusedExpr"]
