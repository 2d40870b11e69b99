"""TF1's operator overloads on ``Tensor``: ``x + y`` builds an Add op, ``x < y`` a Less op...

Installed when ``tensorweave.ops`` is imported. What TF1 does, we do:

* ``+ - * / // % ** @`` and their reflected forms; a Python or numpy operand on either side is
  converted to the tensor's dtype (``2 * x``, ``np.ones(3) + x``), and a Python float with an int
  tensor is a TypeError. ``/`` is truediv (ints become floats), ``//`` and ``%`` floor.
* ``-x``, ``abs(x)``; ``~x``, ``x & y``, ``x | y``, ``x ^ y`` are the logical ops (bool only).
* ``< <= > >=`` compare elementwise. ``==`` and ``!=`` are NOT overloaded: they compare identity,
  as in TF1, so tensors stay usable as dict keys and in sets (use ``tw.equal``).

``x[...]`` (``__getitem__``) belongs to the array ops.
"""

from __future__ import annotations

from tensorweave.graph.core import Tensor
from tensorweave.ops import math as math_ops
from tensorweave.ops.common import convert_to_tensor


def _reflected_matmul(a, b, name=None):
    """``a @ b`` with ``a`` a Python/numpy value: convert it to ``b``'s dtype first."""
    try:
        a = convert_to_tensor(a, dtype=b.dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot multiply a {type(a).__name__} by the tensor {b.name}: {e}") \
            from None
    return math_ops.matmul(a, b, name=name)


# dunder stem -> (function(x, y, name), op name TF1 gives the overload)
_BINARY = {
    "add": (math_ops.add, "add"),
    "sub": (math_ops.subtract, "sub"),
    "mul": (math_ops.multiply, "mul"),
    "truediv": (math_ops.truediv, "truediv"),
    "floordiv": (math_ops.floordiv, "floordiv"),
    "mod": (math_ops.floormod, "mod"),
    "pow": (math_ops.pow, "pow"),
    "and": (math_ops.logical_and, "LogicalAnd"),
    "or": (math_ops.logical_or, "LogicalOr"),
    "xor": (math_ops.logical_xor, "LogicalXor"),
}


def _forward(fn, op_name):
    def operator(self, other):
        return fn(self, other, name=op_name)
    return operator


def _reflected(fn, op_name):
    def operator(self, other):
        return fn(other, self, name=op_name)
    return operator


def _matmul(self, other):
    if not isinstance(other, Tensor):
        other = convert_to_tensor(other, dtype=self.dtype)
    return math_ops.matmul(self, other)


def _rmatmul(self, other):
    return _reflected_matmul(other, self)


def _pow(self, other, modulo=None):
    if modulo is not None:
        raise TypeError("pow() with a modulus is not supported for tensors")
    return math_ops.pow(self, other, name="pow")


def install():
    """Set the operator methods on ``Tensor`` (idempotent)."""
    for stem, (fn, op_name) in _BINARY.items():
        setattr(Tensor, f"__{stem}__", _forward(fn, op_name))
        setattr(Tensor, f"__r{stem}__", _reflected(fn, op_name))
    Tensor.__pow__ = _pow
    Tensor.__matmul__ = _matmul
    Tensor.__rmatmul__ = _rmatmul
    Tensor.__neg__ = lambda self: math_ops.negative(self)
    Tensor.__abs__ = lambda self: math_ops.abs(self)
    Tensor.__invert__ = lambda self: math_ops.logical_not(self)
    Tensor.__lt__ = lambda self, other: math_ops.less(self, other)
    Tensor.__le__ = lambda self, other: math_ops.less_equal(self, other)
    Tensor.__gt__ = lambda self, other: math_ops.greater(self, other)
    Tensor.__ge__ = lambda self, other: math_ops.greater_equal(self, other)


install()
