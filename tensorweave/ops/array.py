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
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, constant_value, register

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


# -- Shape --------------------------------------------------------------------------------------
def _shape_infer(op):
    return [(op.attrs["out_type"], [op.inputs[0].shape.rank])]


def _shape_static_value(op):
    shape = op.inputs[0].shape
    if not shape.is_fully_defined():
        return None
    return np.array(shape.as_list(), dtype=op.attrs["out_type"].np)


def _shape_kernel(attrs, xp):
    np_dtype = attrs["out_type"].np
    return lambda x: np.array(np.shape(x), dtype=np_dtype)


register(OpDef("Shape", _shape_infer, _shape_kernel, grad=NO_GRADIENT,
               static_value=_shape_static_value))


def shape(input, name=None, out_type=None) -> Tensor:
    """The shape of ``input`` as a 1-D int32 (or ``out_type``) tensor, computed at run time."""
    from tensorweave.graph import dtypes
    input = convert_to_tensor(input)
    out_type = dtypes.int32 if out_type is None else as_dtype(out_type)
    return output(apply_op("Shape", [input], {"out_type": out_type}, name=name or "Shape"))


# -- Reshape ------------------------------------------------------------------------------------
def _reshape_infer(op):
    x, target = op.inputs
    value = constant_value(target)
    if value is None:
        rank = target.shape.as_tuple()
        return [(x.dtype, TensorShape(None if rank is None or rank[0] is None
                                      else [None] * rank[0]))]
    dims = [int(d) for d in np.asarray(value).reshape(-1)]
    if sum(d == -1 for d in dims) > 1:
        raise ValueError(f"reshape to {dims}: at most one dimension may be -1")
    if any(d < -1 for d in dims):
        raise ValueError(f"reshape to {dims}: dimensions must be >= -1")
    total = x.shape.num_elements()
    known = int(np.prod([d for d in dims if d != -1])) if dims else 1
    if -1 in dims:
        if total is not None:
            if known == 0 or total % known:
                raise ValueError(f"cannot reshape a tensor of {total} elements (shape {x.shape}) "
                                 f"to {dims}")
            dims = [total // known if d == -1 else d for d in dims]
        else:
            dims = [None if d == -1 else d for d in dims]
    elif total is not None and total != known:
        raise ValueError(f"cannot reshape a tensor of {total} elements (shape {x.shape}) to "
                         f"shape {dims} ({known} elements)")
    return [(x.dtype, dims)]


def _reshape_kernel(attrs, xp):
    def reshape_kernel(x, new_shape):
        return xp.reshape(x, tuple(int(d) for d in new_shape))
    return reshape_kernel


register(OpDef("Reshape", _reshape_infer, _reshape_kernel,
               grad=lambda op, g: [reshape(g, shape(op.inputs[0])), None]))


def reshape(tensor, shape, name=None) -> Tensor:
    """``tensor`` with its elements in row-major order laid out in ``shape`` (one dim may be -1)."""
    from tensorweave.graph import dtypes
    tensor = convert_to_tensor(tensor)
    shape = convert_to_tensor(shape, dtype=dtypes.int32) if not isinstance(shape, Tensor) \
        else shape
    return output(apply_op("Reshape", [tensor, shape], name=name or "Reshape"))


__all__ += ["shape", "reshape"]
