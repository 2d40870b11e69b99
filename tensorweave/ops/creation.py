"""Array ops that make tensors from values, and the ops that pass their input through.

``constant``, ``placeholder`` and ``placeholder_with_default``; ``identity`` and
``stop_gradient`` (its value, but no gradient); ``zeros_like``/``ones_like``, ``fill``,
``zeros``, ``ones`` and ``range``.

``range`` in this module is the tw op, not Python's.
"""

from __future__ import annotations

import numpy as np

from tensorweave.graph import dtypes
from tensorweave.graph.core import Tensor
from tensorweave.graph.dtypes import as_dtype
from tensorweave.graph.shapes import as_shape
from tensorweave.ops.common import (constant_tensor, convert_to_tensor, output, same_as_input,
                                    to_numpy)
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, constant_value, register
from tensorweave.ops.shape_args import (_check_index_dtype, _ints, _is_int, _same_dtype,
                                        int_tensor, shape_from_tensor)

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


# -- StopGradient -------------------------------------------------------------------------------
register(OpDef("StopGradient", same_as_input, lambda attrs, xp: _identity, grad=NO_GRADIENT,
               fusion="elementwise"))


def stop_gradient(input, name=None) -> Tensor:
    """The value of ``input``, through which ``tw.gradients`` passes no gradient."""
    input = convert_to_tensor(input)
    return output(apply_op("StopGradient", [input], name=name or "StopGradient"))


__all__ += ["stop_gradient"]


# -- ZerosLike / OnesLike -----------------------------------------------------------------------
# Below this many elements a ZerosLike/OnesLike of a fully known shape is a constant (as
# ``zeros``/``ones`` make a Const below 1,000 elements): constant folding then removes it and
# what follows from it, such as the reshape of the ``OnesLike(loss)`` every gradient starts from.
SMALL_FILL_ELEMENTS = 1000


def _static_fill(fill):
    def static_value(op):
        shape = op.inputs[0].shape
        n = shape.num_elements()
        if n is None or n >= SMALL_FILL_ELEMENTS:
            return None
        return np.full(shape.as_list(), fill, dtype=op.inputs[0].dtype.np)
    return static_value


register(OpDef("ZerosLike", same_as_input, lambda attrs, xp: xp.zeros_like, grad=NO_GRADIENT,
               fusion="elementwise", static_value=_static_fill(0)))
register(OpDef("OnesLike", same_as_input, lambda attrs, xp: xp.ones_like, grad=NO_GRADIENT,
               fusion="elementwise", static_value=_static_fill(1)))


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


# -- Fill / zeros / ones ------------------------------------------------------------------------
def _fill_infer(op):
    dims, value = op.inputs
    _check_index_dtype(dims, "the dims of fill")
    if value.shape.rank not in (None, 0):
        raise ValueError(f"the value of fill must be a scalar, got shape {value.shape}")
    if dims.shape.rank not in (None, 1):
        raise ValueError(f"the dims of fill must be a vector, got shape {dims.shape}")
    return [(value.dtype, shape_from_tensor(dims, "the dims of fill"))]


def _fill_kernel(attrs, xp):
    def fill_kernel(dims, value):
        shape = _ints(dims)
        if any(d < 0 for d in shape):
            raise ValueError(f"the dims of fill must be non-negative, got {shape}")
        return xp.full(shape, value, dtype=value.dtype)
    return fill_kernel


def _fill_grad(op, g):
    from tensorweave.ops.math import reduce_sum
    return [None, reduce_sum(g)]


register(OpDef("Fill", _fill_infer, _fill_kernel, grad=_fill_grad))


def fill(dims, value, name=None) -> Tensor:
    """A tensor of shape ``dims`` with every element equal to the scalar ``value``."""
    dims = int_tensor(dims, "the dims of fill")
    value = convert_to_tensor(value)
    return output(apply_op("Fill", [dims, value], name=name or "Fill"))


_SMALL_CONSTANT = 1000  # elements; larger zeros/ones are a Fill so the graph stays small (TF1)


def zeros(shape, dtype=dtypes.float32, name=None) -> Tensor:
    """A tensor of ``shape`` filled with zeros (a constant when small and static)."""
    return _filled(shape, 0, as_dtype(dtype), name or "zeros")


def ones(shape, dtype=dtypes.float32, name=None) -> Tensor:
    """A tensor of ``shape`` filled with ones (a constant when small and static)."""
    return _filled(shape, 1, as_dtype(dtype), name or "ones")


def _filled(shape, scalar, dtype, name):
    dims = int_tensor([shape] if _is_int(shape) else shape, f"the shape of {name}")
    static = shape_from_tensor(dims, f"the shape of {name}")
    if static.is_fully_defined() and static.num_elements() < _SMALL_CONSTANT:
        return constant_tensor(np.full(static.as_list(), scalar, dtype=dtype.np), name)
    value = constant_tensor(np.array(scalar, dtype=dtype.np))
    return output(apply_op("Fill", [dims, value], name=name))


__all__ += ["fill", "zeros", "ones"]


# -- Range --------------------------------------------------------------------------------------
_RANGE_DTYPES = ("int32", "int64", "float32", "float64")  # in TF1's order of precedence


def _range_infer(op):
    start, limit, delta = op.inputs
    dtype = _same_dtype(op.inputs, "range")
    if dtype.name not in _RANGE_DTYPES:
        raise TypeError(f"range is not defined for {dtype.name}; use one of {_RANGE_DTYPES}")
    for what, t in zip(("start", "limit", "delta"), op.inputs):
        if t.shape.rank not in (None, 0):
            raise ValueError(f"the {what} of range must be a scalar, got shape {t.shape}")
    values = [constant_value(t) for t in op.inputs]
    if any(v is None for v in values):
        return [(dtype, [None])]
    return [(dtype, [range_length(*values)])]


def range_length(start, limit, delta) -> int:
    """How many elements ``range(start, limit, delta)`` has, computed in their dtype as TF does."""
    if delta == 0:
        raise ValueError(f"range requires delta != 0, got {delta}")
    if delta > 0 and start > limit:
        raise ValueError(f"range requires start <= limit when delta > 0, got start {start} and "
                         f"limit {limit}")
    if delta < 0 and start < limit:
        raise ValueError(f"range requires start >= limit when delta < 0, got start {start} and "
                         f"limit {limit}")
    if np.asarray(start).dtype.kind in "iu":
        span, step = abs(int(limit) - int(start)), abs(int(delta))
        return (span + step - 1) // step
    return int(np.ceil(np.abs((limit - start) / delta)))


def _range_kernel(attrs, xp):
    def range_kernel(start, limit, delta):
        n = range_length(*(np.asarray(v.get() if hasattr(v, "get") else v)
                           for v in (start, limit, delta)))
        return start + xp.arange(n, dtype=start.dtype) * delta
    return range_kernel


register(OpDef("Range", _range_infer, _range_kernel, grad=NO_GRADIENT))


def range(start, limit=None, delta=1, dtype=None, name="range") -> Tensor:  # noqa: A001
    """``[start, start + delta, ...]`` up to but excluding ``limit``, as Python's range.

    ``range(n)`` counts from 0. Without ``dtype``, the widest of the arguments' dtypes wins
    (int32 < int64 < float32 < float64; Python ints are int32 and floats float32).
    """
    if limit is None:
        start, limit = 0, start
    args = [start, limit, delta]
    dtype = _range_dtype(args) if dtype is None else as_dtype(dtype)
    tensors = [_range_arg(a, dtype) for a in args]
    return output(apply_op("Range", tensors, name=name or "range"))


def _range_dtype(args):
    found = [a.dtype if isinstance(a, Tensor) else as_dtype(to_numpy(a, None).dtype)
             for a in args]
    if all(d.name in _RANGE_DTYPES for d in found):
        return max(found, key=lambda d: _RANGE_DTYPES.index(d.name))
    return found[0]  # not a range dtype: inference reports it


def _range_arg(value, dtype):
    """``value`` as a ``dtype`` tensor: tensors of other dtypes are cast, as TF1's range does."""
    from tensorweave.ops.math import cast
    if isinstance(value, Tensor):
        return value if value.dtype is dtype else cast(value, dtype)
    return convert_to_tensor(value, dtype=dtype)


__all__ += ["range"]
