"""``tw.nn``: the neural-network functions, under TF1's ``tf.nn`` names.

The ops live in ``tensorweave.ops.nn``; ``sigmoid`` and ``tanh`` are the math ops and
``dropout`` the random op, which TF1 also exposes here.
"""

from tensorweave.ops.math import sigmoid, tanh
from tensorweave.ops.nn import *  # noqa: F401,F403
from tensorweave.ops.nn import __all__ as _ops_nn_all
from tensorweave.ops.random import dropout

__all__ = list(_ops_nn_all) + ["sigmoid", "tanh", "dropout"]
