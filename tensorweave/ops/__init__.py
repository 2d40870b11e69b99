"""The op library. Importing this package registers every op family's OpDefs."""

from tensorweave.ops import (array, control, function, fused, math, nn,  # noqa: F401 (registers)
                             random, script, state, training, transfer)
# The modules each family is split into (the family modules above import them too).
from tensorweave.ops import (activations, conv, creation, elementwise, indexing,  # noqa: F401
                             init_ops, layout, pooling, reduction, shape_args, shape_ops,
                             slicing, unary, variable_scope, variables)
from tensorweave.ops import overloads  # noqa: F401
