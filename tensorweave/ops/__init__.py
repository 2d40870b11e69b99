"""The op library. Importing this package registers every op family's OpDefs."""

from tensorweave.ops import (array, control, math, nn, random, state,  # noqa: F401  (registers)
                             training)
from tensorweave.ops import overloads  # noqa: F401
