"""The op library. Importing this package registers every op family's OpDefs."""

from tensorweave.ops import array, control, math, nn, random, state, training  # noqa: F401  (registration side effects)
from tensorweave.ops import overloads  # noqa: F401
