"""Array ops: constants, placeholders, identity, and the ops that move, select and reshape data.

Each op sits on one screen: its OpDef (inference, kernel, gradient, fusion kind) and then the
public function that builds it.
"""

from __future__ import annotations

import numpy as np

from tensorweave.graph.core import Tensor
from tensorweave.graph.dtypes import as_dtype
from tensorweave.graph.shapes import TensorShape, as_shape
from tensorweave.ops.common import (constant_tensor, convert_to_tensor, output, same_as_input,
                                    to_numpy)
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, register

__all__ = ["constant", "placeholder", "placeholder_with_default", "identity"]


# -- Const --------------------------------------------------------------------------------------
def _const_infer(op):
    value = op.attrs["value"]
    return [(op.attrs["dtype"], value.shape)]


def _const_kernel(attrs, xp):
    value = attrs["value"] if xp is np else xp.asarray(attrs["value"])
    return lambda: value


register(OpDef("Const", _const_infer, _const_kernel, grad=NO_GRADIENT,
               static_value=lambda op: op.attrs["value"]))


def constant(value, dtype=None, shape=None, name="Const") -> Tensor:
    """A tensor with a fixed value. ``shape`` fills (from a scalar) or reshapes ``value``."""
    dtype = None if dtype is None else as_dtype(dtype)
    array = to_numpy(value, dtype)
    if shape is not None:
        shape = as_shape(shape).as_list()
        if any(d is None for d in shape):
            raise ValueError(f"constant {name}: shape {shape} must be fully defined")
        if array.size == 1:
            array = np.full(shape, array.reshape(()), dtype=array.dtype)
        elif array.size == int(np.prod(shape)):
            array = array.reshape(shape)
        else:
            raise TypeError(f"constant {name}: a value of {array.size} elements cannot have "
                            f"shape {shape}")
    return constant_tensor(array, name)


# -- Placeholder --------------------------------------------------------------------------------
def _placeholder_kernel(attrs, xp):
    def must_feed():
        # Normally caught when the step is compiled; kept so a direct call still says why.
        raise ValueError("a value must be fed for this placeholder")
    return must_feed


register(OpDef("Placeholder", lambda op: [(op.attrs["dtype"], op.attrs["shape"])],
               _placeholder_kernel, grad=NO_GRADIENT, stateful=True, must_feed=True))


def placeholder(dtype, shape=None, name=None) -> Tensor:
    """A tensor whose value must be fed to ``Session.run`` (``shape=None``: any shape)."""
    return output(apply_op("Placeholder", [], {"dtype": as_dtype(dtype), "shape": as_shape(shape)},
                           name=name or "Placeholder"))


def _placeholder_with_default_infer(op):
    default = op.inputs[0]
    shape = as_shape(op.attrs["shape"])
    if not default.shape.is_compatible_with(shape):
        raise ValueError(f"default value of shape {default.shape} does not match the declared "
                         f"shape {shape}")
    return [(default.dtype, shape)]


register(OpDef("PlaceholderWithDefault", _placeholder_with_default_infer,
               lambda attrs, xp: _identity, grad=lambda op, g: [g]))


def placeholder_with_default(input, shape, name=None) -> Tensor:
    """A tensor that takes its fed value when fed, else the value of ``input``."""
    input = convert_to_tensor(input)
    return output(apply_op("PlaceholderWithDefault", [input], {"shape": as_shape(shape)},
                           name=name or "PlaceholderWithDefault"))


# -- Identity -----------------------------------------------------------------------------------
def _identity(x):
    return x


register(OpDef("Identity", same_as_input, lambda attrs, xp: _identity,
               grad=lambda op, g: [g], fusion="elementwise"))


def identity(input, name=None) -> Tensor:
    """The same value as ``input`` (a new node, e.g. to read a variable at a point in time)."""
    return output(apply_op("Identity", [convert_to_tensor(input)], name=name or "Identity"))


# -- ZerosLike / OnesLike -----------------------------------------------------------------------
register(OpDef("ZerosLike", same_as_input, lambda attrs, xp: xp.zeros_like, grad=NO_GRADIENT,
               fusion="elementwise"))
register(OpDef("OnesLike", same_as_input, lambda attrs, xp: xp.ones_like, grad=NO_GRADIENT,
               fusion="elementwise"))


def zeros_like(tensor, dtype=None, name=None) -> Tensor:
    """Zeros with the shape (and dtype, unless given) of ``tensor``."""
    return _fill_like("ZerosLike", tensor, dtype, name)


def ones_like(tensor, dtype=None, name=None) -> Tensor:
    """Ones with the shape (and dtype, unless given) of ``tensor``."""
    return _fill_like("OnesLike", tensor, dtype, name)


def _fill_like(op_type, tensor, dtype, name):
    from tensorweave.ops.math import cast
    tensor = convert_to_tensor(tensor)
    result = output(apply_op(op_type, [tensor], name=name or op_type))
    if dtype is not None and as_dtype(dtype) is not tensor.dtype:
        result = cast(result, dtype)
    return result


__all__ += ["zeros_like", "ones_like"]
