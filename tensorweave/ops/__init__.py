"""The op library. Importing this package registers every op family's OpDefs."""

from tensorweave.ops import (array, control, fused, math, nn, random,  # noqa: F401  (registers)
                             state, training)
# The modules each family is split into (the family modules above import them too).
from tensorweave.ops import (activations, conv, creation, elementwise, indexing,  # noqa: F401
                             init_ops, layout, pooling, reduction, shape_args, shape_ops,
                             slicing, unary, variable_scope, variables)
from tensorweave.ops import overloads  # noqa: F401
