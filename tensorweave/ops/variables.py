"""Variables (``tw.Variable``) and the state ops that read and update them.

A variable's value lives in the Session (``executor.context.VariableStore``) under the
variable's ``shared_name`` (its op name), so two sessions on one graph never share values. Ops
reach it through the step context:

* ``VariableV2`` is the variable itself; like ``ReadVariableOp`` it returns the value the
  variable holds when the op runs. Reading an uninitialized variable is a
  FailedPreconditionError that names it.
* ``Assign``, ``AssignAdd`` and ``AssignSub`` store a new value and return it. A step's writes
  are committed only when the whole step succeeds, so a failed ``run`` changes no variable.

Values are immutable: an update stores a fresh read-only array and never writes into the old
one, so a snapshot taken earlier in the step (``W/read``) keeps the value it saw.

No op takes the variable's output as an input to reach its state: that input would make the
variable be read before it is initialized, failing the very step that initializes it. State ops
name the variable by ``shared_name`` and are colocated with it instead (its device holds the
value). The price: ``v.read_value()`` is not connected to ``v`` for ``tw.gradients``; gradients
flow through ``v.value()`` (``W/read``), which is what the operator overloads and every
conversion of ``v`` to a tensor use.
"""

from __future__ import annotations

import types

import numpy as np

from tensorweave import errors
from tensorweave.graph import dtypes
from tensorweave.graph.core import Operation, Tensor, get_default_graph, get_default_session
from tensorweave.graph.dtypes import as_dtype
from tensorweave.graph.scopes import GraphKeys
from tensorweave.graph.shapes import TensorShape, as_shape
from tensorweave.ops import overloads as _overloads  # noqa: F401  (Tensor's operators first)
from tensorweave.ops.array import identity
from tensorweave.ops.common import (NUMBERS, convert_to_tensor, output,
                                    register_tensor_conversion_function)
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, register

__all__ = ["Variable", "assign", "assign_add", "assign_sub", "is_variable_initialized"]


# -- what the state ops share ---------------------------------------------------------------------
def _variable_attrs(var_op: Operation) -> dict:
    """The attrs by which a state op names the variable of ``var_op`` (a VariableV2 op)."""
    return {"shared_name": var_op.attrs["shared_name"], "dtype": var_op.attrs["dtype"],
            "shape": var_op.attrs["shape"]}


def _variable_op_of(ref) -> Operation:
    """The VariableV2 op of ``ref``: a tw.Variable or the output of a VariableV2 op."""
    if isinstance(ref, Variable):
        return ref.op
    if isinstance(ref, Tensor) and ref.op.type == "VariableV2":
        return ref.op
    raise TypeError(f"expected a tw.Variable (or the output of a VariableV2 op), got {ref!r}")


def _variable_spec(op):
    return [(op.attrs["dtype"], op.attrs["shape"])]


def _read_kernel(attrs, xp):
    name = attrs["shared_name"]

    def read_variable(ctx):
        return ctx.read_variable(name)
    return read_variable


def _state_op(op_type, var_op, inputs=(), attrs=None, name=None) -> Operation:
    """Add a state op about the variable of ``var_op``, colocated with it."""
    graph = var_op.graph
    all_attrs = _variable_attrs(var_op)
    all_attrs.update(attrs or {})
    with graph.as_default(), graph.colocate_with(var_op):
        return apply_op(op_type, inputs, all_attrs, name=name or op_type, graph=graph)


# -- VariableV2 -----------------------------------------------------------------------------------
register(OpDef("VariableV2", _variable_spec, _read_kernel, grad=NO_GRADIENT, stateful=True,
               uses_context=True))


def variable_op_v2(shape, dtype, name="Variable", container="", shared_name=""):
    """A raw VariableV2 op (TF1's ``state_ops.variable_op_v2``); most code wants tw.Variable.

    ``shared_name`` names the value in the session's store (default: the op's own name); ops
    with one shared_name share one variable."""
    graph = get_default_graph()
    if not shared_name:
        shared_name = graph.unique_name(name, mark_as_used=False)
    attrs = {"shape": as_shape(shape), "dtype": as_dtype(dtype), "shared_name": shared_name,
             "container": container}
    return output(apply_op("VariableV2", [], attrs, name=name, graph=graph))


# -- ReadVariableOp -------------------------------------------------------------------------------
register(OpDef("ReadVariableOp", _variable_spec, _read_kernel, grad=NO_GRADIENT, stateful=True,
               uses_context=True))


def _read_variable(ref, name=None) -> Tensor:
    """The value of the variable when this op runs (orders with control dependencies)."""
    return output(_state_op("ReadVariableOp", _variable_op_of(ref), name=name or "read"))


# -- Assign ---------------------------------------------------------------------------------------
def _check_value_dtype(op):
    value, dtype = op.inputs[0], op.attrs["dtype"]
    if value.dtype is not dtype:
        raise TypeError(f"the value has dtype {value.dtype.name}, which does not match dtype "
                        f"{dtype.name} of variable {op.attrs['shared_name']} (use tw.cast)")
    return value


def _assign_infer(op):
    value = _check_value_dtype(op)
    shape = op.attrs["shape"]
    if not op.attrs["validate_shape"]:
        return [(value.dtype, value.shape)]
    if not shape.is_compatible_with(value.shape):
        raise ValueError(f"cannot assign a value of shape {value.shape} to variable "
                         f"{op.attrs['shared_name']} of shape {shape}")
    return [(value.dtype, shape.merge_with(value.shape))]


def _assign_kernel(attrs, xp):
    name, np_dtype = attrs["shared_name"], attrs["dtype"].np
    static_shape, validate = attrs["shape"], attrs["validate_shape"]

    def assign_kernel(ctx, value):
        if validate:
            _check_assigned_shape(ctx, name, static_shape, np.shape(value))
        # A copy: the stored value must never alias a fed array or another op's output.
        new = xp.array(value, dtype=np_dtype, copy=True)
        ctx.write_variable(name, new)
        return new
    return assign_kernel


def _check_assigned_shape(ctx, name, static_shape, shape):
    if ctx.is_initialized(name):
        held = tuple(np.shape(ctx.read_variable(name)))
        ok = held == tuple(shape)
    else:
        held, ok = static_shape, static_shape.is_compatible_with(shape)
    if not ok:
        raise errors.InvalidArgumentError(
            None, None, f"Assign requires shapes of both tensors to match: variable {name} has "
                        f"shape {_shape_str(held)}, the assigned value {_shape_str(shape)}")


def _shape_str(shape) -> str:
    return str(as_shape(shape).as_list()) if as_shape(shape).rank is not None else str(shape)


register(OpDef("Assign", _assign_infer, _assign_kernel, grad=NO_GRADIENT, stateful=True,
               uses_context=True))


def assign(ref, value, validate_shape=None, use_locking=None, name=None):
    """Store ``value`` in the variable ``ref``; returns the new value once stored.

    With ``validate_shape`` (the default) the value must have the variable's shape, checked
    when the graph is built and again when the op runs."""
    validate = True if validate_shape is None else bool(validate_shape)
    return _update("Assign", ref, value, name, {"validate_shape": validate,
                                                "use_locking": bool(use_locking)})


def _update(op_type, ref, value, name, attrs) -> Tensor:
    var_op = _variable_op_of(ref)
    value = _value_for(var_op, value)
    return output(_state_op(op_type, var_op, [value], attrs, name=name or op_type))


def _value_for(var_op, value) -> Tensor:
    """``value`` as a tensor; a Python or numpy value takes the variable's dtype."""
    if isinstance(value, (Tensor, Variable)):
        return convert_to_tensor(value)
    dtype = var_op.attrs["dtype"]
    try:
        return convert_to_tensor(value, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot store {value!r} in variable {var_op.name} of dtype "
                        f"{dtype.name}: {e}") from None


# -- AssignAdd / AssignSub ------------------------------------------------------------------------
def _update_infer(op):
    value = _check_value_dtype(op)
    if value.dtype.name not in NUMBERS:
        raise TypeError(f"{op.type} needs a numeric variable, but {op.attrs['shared_name']} "
                        f"has dtype {value.dtype.name}")
    shape = op.attrs["shape"]
    if not shape.is_compatible_with(value.shape):
        raise ValueError(f"{op.type} needs a value of the variable's shape: variable "
                         f"{op.attrs['shared_name']} has shape {shape}, the value {value.shape}")
    return [(value.dtype, shape.merge_with(value.shape))]


def _update_kernel(combine_name):
    def build(attrs, xp):
        name, np_dtype = attrs["shared_name"], attrs["dtype"].np
        combine = getattr(xp, combine_name)

        def update_kernel(ctx, value):
            current = ctx.read_variable(name)
            if np.shape(current) != np.shape(value):
                raise errors.InvalidArgumentError(
                    None, None, f"the update must have the variable's shape: variable {name} "
                                f"has shape {list(np.shape(current))}, the update "
                                f"{list(np.shape(value))}")
            # 0-d arithmetic gives numpy scalars; the store keeps arrays of the exact dtype.
            new = xp.asarray(combine(current, value), dtype=np_dtype)
            ctx.write_variable(name, new)
            return new
        return update_kernel
    return build


register(OpDef("AssignAdd", _update_infer, _update_kernel("add"), grad=NO_GRADIENT,
               stateful=True, uses_context=True))
register(OpDef("AssignSub", _update_infer, _update_kernel("subtract"), grad=NO_GRADIENT,
               stateful=True, uses_context=True))


def assign_add(ref, value, use_locking=None, name=None):
    """Add ``value`` to the variable ``ref`` (same shape); returns the new value."""
    return _update("AssignAdd", ref, value, name, {"use_locking": bool(use_locking)})


def assign_sub(ref, value, use_locking=None, name=None):
    """Subtract ``value`` from the variable ``ref`` (same shape); returns the new value."""
    return _update("AssignSub", ref, value, name, {"use_locking": bool(use_locking)})


# -- IsVariableInitialized ------------------------------------------------------------------------
def _is_initialized_kernel(attrs, xp):
    name = attrs["shared_name"]
    return lambda ctx: xp.asarray(ctx.is_initialized(name))


register(OpDef("IsVariableInitialized", lambda op: [(dtypes.bool_, [])], _is_initialized_kernel,
               grad=NO_GRADIENT, stateful=True, uses_context=True))


def is_variable_initialized(variable, name=None) -> Tensor:
    """A bool scalar: whether ``variable`` holds a value in the running session."""
    return output(_state_op("IsVariableInitialized", _variable_op_of(variable),
                            name=name or "IsVariableInitialized"))


# -- InitializedValue -----------------------------------------------------------------------------
def _initialized_value_infer(op):
    value = _check_value_dtype(op)
    shape = op.attrs["shape"]
    if shape.is_compatible_with(value.shape):
        shape = shape.merge_with(value.shape)
    return [(value.dtype, shape)]


def _initialized_value_kernel(attrs, xp):
    name = attrs["shared_name"]

    def initialized_value_kernel(ctx, initial):
        return ctx.read_variable(name) if ctx.is_initialized(name) else initial
    return initialized_value_kernel


register(OpDef("InitializedValue", _initialized_value_infer, _initialized_value_kernel,
               grad=NO_GRADIENT, stateful=True, uses_context=True))


# -- Variable -------------------------------------------------------------------------------------
class Variable:
    """A tensor whose value persists across ``Session.run`` calls (TF1's ``tf.Variable``).

    >>> W = tw.Variable(tw.zeros([784, 10]), name="W")   # ops W, W/initial_value, W/Assign, W/read
    >>> sess.run(tw.global_variables_initializer())
    >>> sess.run(W.assign_add(tw.ones([784, 10])))

    ``initial_value`` is a value, a Tensor, or a callable returning one. The variable takes its
    dtype and (with ``validate_shape``) its shape from it. Operators and ``tw`` functions use
    ``v.value()``, the snapshot ``W/read``. ``expected_shape`` is accepted and ignored, as
    TF1 deprecated it.
    """

    def __init__(self, initial_value=None, trainable=True, collections=None,
                 validate_shape=True, caching_device=None, name=None, dtype=None,
                 expected_shape=None, constraint=None):
        if initial_value is None:
            raise ValueError("initial_value must be specified")
        if constraint is not None and not callable(constraint):
            raise ValueError("the constraint argument must be a callable")
        collections = _collections_for(trainable, collections)
        graph = get_default_graph()
        # Like TF1's init_scope: a variable never depends on the control scope it is made in.
        with graph.control_dependencies(None):
            self._build(graph, initial_value, dtype, name or "Variable", validate_shape)
        self._trainable = bool(trainable)
        self._constraint = constraint
        self._caching_device = caching_device
        graph.add_to_collections(collections, self)

    def _build(self, graph, initial_value, dtype, name, validate_shape):
        # As TF1: the variable's ops live in a fresh name scope "W/", and the VariableV2 op
        # takes the scope's own name "W".
        with graph.name_scope(name) as scope:
            initial = _initial_value_tensor(graph, initial_value, dtype)
            if validate_shape and not initial.shape.is_fully_defined():
                raise ValueError(f"variable {scope[:-1]}: initial_value must have a fully "
                                 f"defined shape, but has shape {initial.shape} (pass "
                                 f"validate_shape=False for a variable whose shape may change)")
            shape = initial.shape if validate_shape else TensorShape(None)
            self._variable = variable_op_v2(shape, initial.dtype, name=scope,
                                            shared_name=scope[:-1])
            self._initial_value = initial
            self._initializer_op = assign(self._variable, initial, name="Assign",
                                          validate_shape=validate_shape).op
            with graph.colocate_with(self._variable.op):
                self._snapshot = identity(self._variable, name="read")

    # -- what it is -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._variable.name

    @property
    def op(self) -> Operation:
        return self._variable.op

    @property
    def dtype(self):
        return self._variable.dtype

    @property
    def shape(self) -> TensorShape:
        return self._variable.shape

    def get_shape(self) -> TensorShape:
        return self._variable.shape

    @property
    def graph(self):
        return self._variable.graph

    @property
    def device(self) -> str:
        return self._variable.device

    @property
    def trainable(self) -> bool:
        return self._trainable

    @property
    def constraint(self):
        return self._constraint

    @property
    def initializer(self) -> Operation:
        """The op that stores the initial value (``W/Assign``)."""
        return self._initializer_op

    @property
    def initial_value(self) -> Tensor:
        return self._initial_value

    def _as_graph_element(self) -> Tensor:
        """The VariableV2 output: what ``sess.run(v)`` fetches, ``tw.gradients`` differentiates."""
        return self._variable

    def _ref(self) -> Tensor:
        return self._variable

    # -- reading ----------------------------------------------------------------------------
    def value(self) -> Tensor:
        """The snapshot ``W/read``: the value the variable holds when the snapshot runs."""
        return self._snapshot

    def read_value(self) -> Tensor:
        """A new read of the variable that runs after its control dependencies, e.g. after an
        assign: ``with tw.control_dependencies([v.assign(1.)]): v.read_value()``."""
        return _read_variable(self)

    def initialized_value(self) -> Tensor:
        """The variable's value if it is initialized, else its initial value (for initializing
        other variables from this one in the same step)."""
        with self.graph.control_dependencies(None):
            return output(_state_op("InitializedValue", self.op, [self._initial_value],
                                    name="InitializedValue"))

    def eval(self, session=None):
        """The variable's value in ``session`` (default: the default session)."""
        return self._variable.eval(session=session)

    # -- writing ----------------------------------------------------------------------------
    def assign(self, value, use_locking=False, name=None, read_value=True):
        """An op storing ``value``; returns the new value (the op if not ``read_value``)."""
        result = assign(self, value, use_locking=use_locking, name=name)
        return result if read_value else result.op

    def assign_add(self, delta, use_locking=False, name=None, read_value=True):
        result = assign_add(self, delta, use_locking=use_locking, name=name)
        return result if read_value else result.op

    def assign_sub(self, delta, use_locking=False, name=None, read_value=True):
        result = assign_sub(self, delta, use_locking=use_locking, name=name)
        return result if read_value else result.op

    def load(self, value, session=None):
        """Store ``value`` in the variable in ``session`` now, without adding ops to the graph."""
        session = session or get_default_session()
        if session is None:
            raise ValueError("Variable.load needs a session: pass session=... or use it inside "
                             "`with sess.as_default():`")
        session.run(self._initializer_op, {self._initial_value: value})

    def __repr__(self):
        return f"<tw.Variable '{self.name}' shape={self.shape} dtype={self.dtype.name}>"


def _initial_value_tensor(graph, initial_value, dtype) -> Tensor:
    if callable(initial_value):
        with graph.name_scope("Initializer"):
            initial_value = initial_value()
    return convert_to_tensor(initial_value, dtype=dtype, name="initial_value")


def _collections_for(trainable, collections) -> list:
    if collections is None:
        collections = [GraphKeys.GLOBAL_VARIABLES]
    if not isinstance(collections, (list, tuple, set)):
        raise ValueError(f"the collections argument of a Variable must be a list, tuple or set; "
                         f"got {collections!r} of type {type(collections).__name__}")
    collections = list(collections)
    if trainable and GraphKeys.TRAINABLE_VARIABLES not in collections:
        collections.append(GraphKeys.TRAINABLE_VARIABLES)
    return collections


def _variable_to_tensor(variable, dtype=None, name=None) -> Tensor:
    value = variable.value()
    if dtype is not None and as_dtype(dtype) is not value.dtype:
        raise ValueError(f"tensor conversion requested dtype {as_dtype(dtype).name} for "
                         f"variable {variable.name} of dtype {value.dtype.name}")
    return value


register_tensor_conversion_function(Variable, _variable_to_tensor)


# -- operator overloads: every operator of Tensor, applied to v.value() ---------------------------
# Python's operators, delegated even if Tensor defines them only after this module is imported.
_OPERATORS = tuple(f"__{n}__" for n in (
    "add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "floordiv", "rfloordiv",
    "mod", "rmod", "pow", "rpow", "matmul", "rmatmul", "and", "rand", "or", "ror", "xor", "rxor",
    "lt", "le", "gt", "ge", "neg", "abs", "invert", "getitem"))

# Identity, construction and introspection stay the Variable's own (``==`` is identity, as TF1).
_NOT_DELEGATED = frozenset(f"__{n}__" for n in (
    "init", "new", "repr", "str", "format", "eq", "ne", "hash", "getattr", "getattribute",
    "setattr", "delattr", "init_subclass", "subclasshook", "reduce", "reduce_ex", "getstate",
    "setstate", "copy", "deepcopy", "sizeof", "dir", "class", "class_getitem", "dict",
    "weakref", "module", "doc", "qualname", "slots", "annotations", "firstlineno",
    "static_attributes"))


def _delegate(name):
    def method(self, *args, **kwargs):
        return getattr(self.value(), name)(*args, **kwargs)
    method.__name__ = name
    method.__doc__ = f"``Tensor.{name}`` applied to ``self.value()``."
    return method


def _install_tensor_overloads(cls):
    names = set(_OPERATORS)
    for name, attr in vars(Tensor).items():
        if not (name.startswith("__") and name.endswith("__")) or name in _NOT_DELEGATED:
            continue
        if isinstance(attr, types.FunctionType):
            names.add(name)
        elif attr is None or isinstance(attr, (int, float)):
            setattr(cls, name, attr)  # plain class data, e.g. __array_priority__
    for name in sorted(names):
        setattr(cls, name, _delegate(name))


_install_tensor_overloads(Variable)
