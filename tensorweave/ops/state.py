"""State: variables, the ops that read and update them, variable scopes and initializers.

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

import contextlib
import enum
import functools
import inspect
import math
import types
import weakref

import numpy as np

from tensorweave import errors
from tensorweave.graph import dtypes
from tensorweave.graph.core import Operation, Tensor, get_default_graph, get_default_session
from tensorweave.graph.dtypes import as_dtype
from tensorweave.graph.scopes import GraphKeys
from tensorweave.graph.shapes import TensorShape, as_shape
from tensorweave.ops import overloads as _overloads  # noqa: F401  (Tensor's operators first)
from tensorweave.ops.array import identity
from tensorweave.ops.common import (NUMBERS, constant_tensor, convert_to_tensor, output,
                                    register_tensor_conversion_function, to_numpy)
from tensorweave.ops.control import group, no_op
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, register

__all__ = ["Variable", "assign", "assign_add", "assign_sub", "is_variable_initialized",
           "report_uninitialized_variables", "global_variables", "trainable_variables",
           "local_variables", "model_variables", "global_variables_initializer",
           "local_variables_initializer", "variables_initializer", "initialize_all_variables",
           "initialize_local_variables", "get_variable", "variable_scope", "get_variable_scope",
           "VariableScope", "AUTO_REUSE", "no_regularizer", "zeros_initializer",
           "ones_initializer", "constant_initializer", "random_normal_initializer",
           "truncated_normal_initializer", "random_uniform_initializer",
           "variance_scaling_initializer", "glorot_uniform_initializer",
           "glorot_normal_initializer", "initializers"]


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


# -- ReportUninitialized --------------------------------------------------------------------------
def _report_infer(op):
    names = op.attrs["names"]
    if len(names) != len(op.inputs):
        raise ValueError(f"{len(op.inputs)} flags given for {len(names)} variable names")
    for t in op.inputs:
        if t.dtype is not dtypes.bool_ or t.shape.rank not in (None, 0):
            raise TypeError(f"each input must be a bool scalar (is the variable initialized?), "
                            f"got {t.name} of dtype {t.dtype.name} and shape {t.shape}")
    return [(dtypes.string, [None])]


def _report_kernel(attrs, xp):
    names = attrs["names"]

    def report_kernel(*initialized):
        missing = [n for n, flag in zip(names, initialized) if not bool(flag)]
        return np.array(missing, dtype=object).reshape(len(missing))
    return report_kernel


# Host-only: its output is an array of Python strings.
register(OpDef("ReportUninitialized", _report_infer, _report_kernel, grad=NO_GRADIENT,
               device_types=("CPU",)))


def report_uninitialized_variables(var_list=None, name="report_uninitialized_variables"):
    """A 1-D tw.string tensor of the names of the variables not yet initialized.

    ``var_list`` defaults to the global and local variables."""
    if var_list is None:
        var_list = global_variables() + local_variables()
    var_list = list(var_list)
    graph = var_list[0].graph if var_list else get_default_graph()
    with graph.as_default(), graph.name_scope(name):
        flags = [is_variable_initialized(v) for v in var_list]
        names = tuple(_variable_op_of(v).name for v in var_list)
        return output(apply_op("ReportUninitialized", flags, {"names": names},
                               name="report", graph=graph))


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


# -- collections and initialization ---------------------------------------------------------------
def global_variables(scope=None) -> list:
    """The variables of the GLOBAL_VARIABLES collection (optionally filtered by name regex)."""
    return get_default_graph().get_collection(GraphKeys.GLOBAL_VARIABLES, scope)


def trainable_variables(scope=None) -> list:
    return get_default_graph().get_collection(GraphKeys.TRAINABLE_VARIABLES, scope)


def local_variables(scope=None) -> list:
    return get_default_graph().get_collection(GraphKeys.LOCAL_VARIABLES, scope)


def model_variables(scope=None) -> list:
    return get_default_graph().get_collection(GraphKeys.MODEL_VARIABLES, scope)


def variables_initializer(var_list, name="init") -> Operation:
    """One op that runs the initializers of ``var_list``."""
    var_list = list(var_list)
    if not var_list:
        return no_op(name=name)
    return group(*[v.initializer for v in var_list], name=name)


def global_variables_initializer() -> Operation:
    """One op (named "init") that initializes every global variable."""
    return variables_initializer(global_variables(), name="init")


def local_variables_initializer() -> Operation:
    return variables_initializer(local_variables(), name="init")


initialize_all_variables = global_variables_initializer
initialize_local_variables = local_variables_initializer


# -- variable scopes and get_variable -------------------------------------------------------------
class _ReuseMode(enum.Enum):
    AUTO_REUSE = 1


AUTO_REUSE = _ReuseMode.AUTO_REUSE  # get_variable creates the variable if missing, else reuses it


class _GraphVariables:
    """Per graph: get_variable's variables by full name, the current scope, scope counts."""

    def __init__(self):
        self.by_name: dict[str, Variable] = {}
        self.scope = VariableScope(False)
        self.scope_counts: dict[str, int] = {}


_GRAPH_STATE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _graph_variables(graph) -> _GraphVariables:
    state = _GRAPH_STATE.get(graph)
    if state is None:
        state = _GRAPH_STATE[graph] = _GraphVariables()
    return state


def _join(scope_name: str, name: str) -> str:
    return f"{scope_name}/{name}" if scope_name else name


class VariableScope:
    """What ``get_variable`` inherits: a name prefix, reuse mode and defaults for new variables."""

    def __init__(self, reuse, name="", initializer=None, regularizer=None, caching_device=None,
                 partitioner=None, custom_getter=None, name_scope="", dtype=dtypes.float32,
                 use_resource=None, constraint=None):
        self._reuse = reuse
        self._name = name
        self._name_scope = name_scope
        self.initializer = initializer
        self.regularizer = regularizer
        self.caching_device = caching_device
        self.partitioner = partitioner
        self.custom_getter = custom_getter
        self.dtype = as_dtype(dtype)
        self.use_resource = use_resource
        self.constraint = constraint

    @property
    def name(self) -> str:
        return self._name

    @property
    def original_name_scope(self) -> str:
        """The name scope opened when this variable scope was first entered (e.g. "foo/")."""
        return self._name_scope

    @property
    def reuse(self):
        return self._reuse

    def reuse_variables(self):
        """From now on, ``get_variable`` in this scope returns existing variables."""
        self._reuse = True

    def set_initializer(self, initializer):
        self.initializer = initializer

    def set_dtype(self, dtype):
        self.dtype = as_dtype(dtype)

    def set_regularizer(self, regularizer):
        self.regularizer = regularizer

    def _copy(self, reuse, name, name_scope) -> "VariableScope":
        return VariableScope(reuse, name, self.initializer, self.regularizer,
                             self.caching_device, self.partitioner, self.custom_getter,
                             name_scope, self.dtype, self.use_resource, self.constraint)

    def get_variable(self, name, shape=None, dtype=None, initializer=None, regularizer=None,
                     reuse=None, trainable=None, collections=None, caching_device=None,
                     partitioner=None, validate_shape=True, use_resource=None,
                     custom_getter=None, constraint=None, synchronization=None,
                     aggregation=None):
        """``tw.get_variable`` in this scope."""
        if (partitioner or self.partitioner) is not None:
            raise ValueError(f"variable {_join(self.name, name)}: partitioned variables are not "
                             f"supported by tensorweave (partitioner must be None)")
        dtype = _requested_dtype(name, dtype, initializer) or self.dtype
        kwargs = dict(shape=shape, dtype=dtype,
                      initializer=self.initializer if initializer is None else initializer,
                      regularizer=self.regularizer if regularizer is None else regularizer,
                      reuse=self.reuse if reuse is None else reuse, trainable=trainable,
                      collections=collections,
                      caching_device=caching_device or self.caching_device,
                      validate_shape=validate_shape,
                      constraint=self.constraint if constraint is None else constraint)
        graph = get_default_graph()
        getter = functools.partial(_get_single_variable, graph)
        custom = _chain_getters(self.custom_getter, custom_getter)
        # A variable's name depends on the variable scopes only, not on the name scope.
        with graph.name_scope(None):
            if custom is not None:
                return custom(getter, _join(self.name, name), **kwargs)
            return getter(_join(self.name, name), **kwargs)


def _requested_dtype(name, dtype, initializer):
    """The explicit dtype, checked against a constant initializer's."""
    if dtype is None:
        return None
    dtype = as_dtype(dtype)
    if initializer is not None and not callable(initializer):
        init_dtype = initializer.dtype if isinstance(initializer, (Tensor, Variable)) \
            else as_dtype(to_numpy(initializer, None).dtype)
        if init_dtype is not dtype:
            raise ValueError(f"variable {name}: initializer of dtype {init_dtype.name} and "
                             f"explicit dtype {dtype.name} don't match")
    return dtype


def _chain_getters(outer, inner):
    """A custom getter calling ``inner`` with ``outer`` wrapped as its getter (TF1's nesting)."""
    if outer is None or inner is None:
        return outer or inner

    def chained(getter, *args, **kwargs):
        return inner(functools.partial(outer, getter), *args, **kwargs)
    return chained


def _get_single_variable(graph, name, shape=None, dtype=dtypes.float32, initializer=None,
                         regularizer=None, reuse=None, trainable=None, collections=None,
                         caching_device=None, validate_shape=True, constraint=None, **unused):
    """get_variable's true getter: the variable ``name`` of ``graph``, found or created."""
    state = _graph_variables(graph)
    shape = None if shape is None else as_shape(shape)
    found = state.by_name.get(name)
    if found is not None:
        if not reuse:
            raise ValueError(f"Variable {name} already exists, disallowed. Did you mean to set "
                             f"reuse=True or reuse=tw.AUTO_REUSE in VarScope? Originally "
                             f"defined at:\n\n  {found.op.location_str()}")
        _check_shared(found, name, shape, dtype, initializer)
        return found
    if reuse is True:
        raise ValueError(f"Variable {name} does not exist, or was not created with "
                         f"tw.get_variable(). Did you mean to set reuse=tw.AUTO_REUSE in "
                         f"VarScope?")
    with graph.as_default():
        variable = _new_variable(name, shape, as_dtype(dtype), initializer, trainable,
                                 collections, caching_device, validate_shape, constraint)
        state.by_name[name] = variable
        if regularizer is not None:
            with graph.name_scope(variable.op.name + "/Regularizer/"):
                loss = regularizer(variable)
            if loss is not None:
                graph.add_to_collection(GraphKeys.REGULARIZATION_LOSSES, loss)
    return variable


def _check_shared(found, name, shape, dtype, initializer):
    if shape is not None and not shape.is_compatible_with(found.shape):
        raise ValueError(f"Trying to share variable {name}, but specified shape {shape} and "
                         f"found shape {found.shape}.")
    from_value = initializer is not None and not callable(initializer)
    if not from_value and as_dtype(dtype) is not found.dtype:
        raise ValueError(f"Trying to share variable {name}, but specified dtype {dtype.name} "
                         f"and found dtype {found.dtype.name}.")


def _new_variable(name, shape, dtype, initializer, trainable, collections, caching_device,
                  validate_shape, constraint) -> Variable:
    if isinstance(initializer, type):
        initializer = initializer(dtype=dtype)
    if initializer is not None and not callable(initializer):
        if shape is not None:
            raise ValueError(f"variable {name}: if initializer is a constant, do not specify "
                             f"shape (it has the constant's shape)")
        initial_value, var_dtype = initializer, None
    else:
        if shape is None or not shape.is_fully_defined():
            raise ValueError(f"Shape of a new variable ({name}) must be fully defined, but "
                             f"instead was {shape if shape is not None else '<unknown>'}.")
        if initializer is None:
            initializer = _default_initializer(name, dtype)
        initial_value = functools.partial(_call_initializer, initializer, shape.as_list(), dtype)
        var_dtype = dtype
    return Variable(initial_value=initial_value, trainable=True if trainable is None
                    else trainable, collections=collections, validate_shape=validate_shape,
                    caching_device=caching_device, name=name, dtype=var_dtype,
                    constraint=constraint)


def _default_initializer(name, dtype):
    if dtype.is_floating:
        return GlorotUniform()
    if dtype.is_integer or dtype.is_bool:
        return Zeros()
    raise ValueError(f"An initializer for variable {name} of {dtype.name} is required")


def _call_initializer(initializer, shape, dtype):
    try:
        params = inspect.signature(initializer).parameters
    except (TypeError, ValueError):
        params = {}
    takes_partition_info = "partition_info" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if takes_partition_info:
        return initializer(shape, dtype=dtype, partition_info=None)
    return initializer(shape, dtype=dtype)


def get_variable(name, shape=None, dtype=None, initializer=None, regularizer=None,
                 trainable=None, collections=None, caching_device=None, partitioner=None,
                 validate_shape=True, use_resource=None, custom_getter=None, constraint=None,
                 synchronization=None, aggregation=None):
    """The variable ``<scope>/name``: created if new, returned if the scope reuses variables.

    A new variable needs a fully defined ``shape`` (or a constant ``initializer``); floats
    default to glorot_uniform, integers and bools to zeros.

    >>> with tw.variable_scope("layer1"):
    ...     W = tw.get_variable("W", [784, 10])          # "layer1/W:0"
    """
    return get_variable_scope().get_variable(
        name, shape=shape, dtype=dtype, initializer=initializer, regularizer=regularizer,
        trainable=trainable, collections=collections, caching_device=caching_device,
        partitioner=partitioner, validate_shape=validate_shape, use_resource=use_resource,
        custom_getter=custom_getter, constraint=constraint)


def get_variable_scope() -> VariableScope:
    """The current variable scope of the default graph."""
    return _graph_variables(get_default_graph()).scope


def no_regularizer(_):
    """A regularizer that adds no loss (to switch off a scope's regularizer)."""
    return None


@contextlib.contextmanager
def variable_scope(name_or_scope, default_name=None, values=None, initializer=None,
                   regularizer=None, caching_device=None, partitioner=None, custom_getter=None,
                   reuse=None, dtype=None, use_resource=None, constraint=None,
                   auxiliary_name_scope=True):
    """Prefix the names of ``get_variable``'s variables (and, as a name scope, of ops).

    ``reuse``: True makes get_variable return existing variables (and fail on new ones),
    ``tw.AUTO_REUSE`` creates or reuses, None inherits the enclosing scope's (False cannot undo
    an enclosing reuse). A scope object re-enters that scope's variable names.
    """
    if name_or_scope is None and default_name is None:
        raise TypeError("variable_scope: if default_name is None then name_or_scope is required")
    if not (reuse is None or isinstance(reuse, bool) or reuse is AUTO_REUSE):
        raise ValueError("the reuse parameter must be True, False, None or tw.AUTO_REUSE")
    if name_or_scope is not None and not isinstance(name_or_scope, (str, VariableScope)):
        raise TypeError(f"variable_scope: name_or_scope must be a string or a VariableScope, "
                        f"got {name_or_scope!r}")
    if name_or_scope is None and reuse is True:
        raise ValueError("reuse=True cannot be used without a name_or_scope")
    graph = _graph_of_values(values)
    with graph.as_default():
        state = _graph_variables(graph)
        parent = state.scope
        short = name_or_scope if isinstance(name_or_scope, str) else None
        if isinstance(name_or_scope, VariableScope):
            short = name_or_scope.name.split("/")[-1]
        elif name_or_scope is None:
            short = _unique_scope_name(state, parent, default_name)
        with _auxiliary_name_scope(graph, short if name_or_scope is not None else default_name,
                                   auxiliary_name_scope) as name_scope:
            scope = _new_scope(parent, name_or_scope, short, reuse, name_scope)
            _override(scope, initializer, regularizer, caching_device, partitioner,
                      custom_getter, dtype, constraint)
            state.scope_counts[scope.name] = state.scope_counts.get(scope.name, 0) + 1
            state.scope = scope
            try:
                yield scope
            finally:
                state.scope = parent
                _close_subscopes(state, scope.name)


def _graph_of_values(values):
    for v in values or ():
        graph = getattr(v, "graph", None)
        if graph is not None and isinstance(v, (Tensor, Operation, Variable)):
            return graph
    return get_default_graph()


def _unique_scope_name(state, parent, prefix) -> str:
    """``prefix`` or ``prefix_<n>``: the first not yet opened under ``parent``."""
    if not state.scope_counts.get(_join(parent.name, prefix)):
        return prefix
    index = 1
    while state.scope_counts.get(_join(parent.name, f"{prefix}_{index}")):
        index += 1
    return f"{prefix}_{index}"


def _auxiliary_name_scope(graph, name, enabled):
    if not enabled or not name:
        current = graph.get_name_scope()
        return graph.name_scope(current + "/" if current else None)
    return graph.name_scope(name)


def _new_scope(parent, name_or_scope, short, reuse, name_scope) -> VariableScope:
    if isinstance(name_or_scope, VariableScope):
        # Jumping to a shared scope: its names and defaults, but ops in the new name scope.
        return name_or_scope._copy(reuse or name_or_scope.reuse, name_or_scope.name,
                                   name_or_scope.original_name_scope)
    # Reuse is inherited by sub-scopes; reuse=False cannot switch it off.
    return parent._copy(reuse or parent.reuse, _join(parent.name, short), name_scope)


def _override(scope, initializer, regularizer, caching_device, partitioner, custom_getter,
              dtype, constraint):
    if initializer is not None:
        scope.initializer = initializer
    if regularizer is not None:
        scope.regularizer = regularizer
    if caching_device is not None:
        scope.caching_device = caching_device
    if partitioner is not None:
        scope.partitioner = partitioner
    if custom_getter is not None:
        scope.custom_getter = _chain_getters(scope.custom_getter, custom_getter)
    if dtype is not None:
        scope.dtype = as_dtype(dtype)
    if constraint is not None:
        scope.constraint = constraint


def _close_subscopes(state, name):
    """Forget the sub-scopes opened inside ``name``: re-entering it numbers them afresh."""
    prefix = name + "/"
    for key in state.scope_counts:
        if key.startswith(prefix):
            state.scope_counts[key] = 0


# -- initializers ---------------------------------------------------------------------------------
class Initializer:
    """Base of the initializers: ``init(shape, dtype=None, partition_info=None) -> Tensor``."""

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _dims(shape) -> list:
    shape = as_shape(shape)
    if not shape.is_fully_defined():
        raise ValueError(f"an initializer needs a fully defined shape, got {shape}")
    return shape.as_list()


def _filled(shape, value: np.ndarray, name) -> Tensor:
    # A zero-stride view: a big zeros/ones initializer costs no memory until assigned.
    array = np.broadcast_to(value, _dims(shape))
    return constant_tensor(array, name=name)


class Zeros(Initializer):
    """Initializes to zeros."""

    def __init__(self, dtype=dtypes.float32):
        self.dtype = as_dtype(dtype)

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = as_dtype(dtype or self.dtype)
        return _filled(shape, np.zeros((), dtype.np), "zeros")

    def get_config(self):
        return {"dtype": self.dtype.name}


class Ones(Initializer):
    """Initializes to ones."""

    def __init__(self, dtype=dtypes.float32):
        self.dtype = as_dtype(dtype)

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = as_dtype(dtype or self.dtype)
        return _filled(shape, np.ones((), dtype.np), "ones")

    def get_config(self):
        return {"dtype": self.dtype.name}


class Constant(Initializer):
    """Initializes to ``value``: a scalar fills the shape; a shorter list is padded with its
    last element (an error with ``verify_shape``)."""

    def __init__(self, value=0, dtype=dtypes.float32, verify_shape=False):
        self.value = value
        self.dtype = as_dtype(dtype)
        self.verify_shape = verify_shape

    def __call__(self, shape, dtype=None, partition_info=None, verify_shape=None):
        dtype = as_dtype(dtype or self.dtype)
        verify = self.verify_shape if verify_shape is None else verify_shape
        value = to_numpy(self.value, dtype)
        dims = _dims(shape)
        if value.size == 1 and not verify:
            return _filled(dims, value.reshape(()), "Const")
        return constant_tensor(_fitted(value, dims, verify), name="Const")

    def get_config(self):
        return {"value": self.value, "dtype": self.dtype.name, "verify_shape": self.verify_shape}


def _fitted(value: np.ndarray, dims, verify) -> np.ndarray:
    needed = int(np.prod(dims, dtype=np.int64))
    if verify and list(value.shape) != dims:
        raise TypeError(f"constant_initializer: expected a value of shape {dims}, got "
                        f"{list(value.shape)}")
    if value.size > needed:
        raise ValueError(f"too many elements provided: needed at most {needed}, but received "
                         f"{value.size}")
    flat = value.reshape(-1)
    if flat.size < needed:
        if flat.size == 0:
            raise ValueError(f"constant_initializer: an empty value cannot fill shape {dims}")
        flat = np.concatenate([flat, np.repeat(flat[-1:], needed - flat.size)])
    return flat.reshape(dims)


def _random_ops():
    from tensorweave.ops import random
    return random


def _float_dtype(dtype, what) -> dtypes.DType:
    dtype = as_dtype(dtype)
    if not dtype.is_floating:
        raise ValueError(f"{what}: expected a floating point dtype, got {dtype.name}")
    return dtype


class RandomNormal(Initializer):
    """Initializes from a normal distribution."""

    def __init__(self, mean=0.0, stddev=1.0, seed=None, dtype=dtypes.float32):
        self.mean, self.stddev, self.seed = mean, stddev, seed
        self.dtype = _float_dtype(dtype, "random_normal_initializer")

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = _float_dtype(dtype or self.dtype, "random_normal_initializer")
        return _random_ops().random_normal(_dims(shape), self.mean, self.stddev, dtype,
                                           seed=self.seed)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed,
                "dtype": self.dtype.name}


class TruncatedNormal(RandomNormal):
    """Initializes from a normal distribution cut at two standard deviations (redrawn)."""

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = _float_dtype(dtype or self.dtype, "truncated_normal_initializer")
        return _random_ops().truncated_normal(_dims(shape), self.mean, self.stddev, dtype,
                                              seed=self.seed)


class RandomUniform(Initializer):
    """Initializes from a uniform distribution on [minval, maxval)."""

    def __init__(self, minval=0, maxval=None, seed=None, dtype=dtypes.float32):
        self.minval, self.maxval, self.seed = minval, maxval, seed
        self.dtype = as_dtype(dtype)

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = as_dtype(dtype or self.dtype)
        return _random_ops().random_uniform(_dims(shape), self.minval, self.maxval, dtype,
                                            seed=self.seed)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed,
                "dtype": self.dtype.name}


_TRUNCATED_STDDEV = 0.87962566103423978  # stddev of a unit normal truncated at +-2


class VarianceScaling(Initializer):
    """Samples with variance ``scale / n``, n the fan-in, fan-out or their average.

    ``distribution``: "truncated_normal" (alias "normal"), "untruncated_normal" or "uniform"."""

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("normal", "uniform", "truncated_normal", "untruncated_normal")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 dtype=dtypes.float32):
        if scale <= 0.0:
            raise ValueError(f"variance_scaling_initializer: scale must be positive, got {scale}")
        if mode not in self._MODES:
            raise ValueError(f"variance_scaling_initializer: invalid mode {mode!r}; expected "
                             f"one of {', '.join(self._MODES)}")
        if distribution.lower() not in self._DISTRIBUTIONS:
            raise ValueError(f"variance_scaling_initializer: invalid distribution "
                             f"{distribution!r}; expected one of {', '.join(self._DISTRIBUTIONS)}")
        self.scale, self.mode, self.seed = scale, mode, seed
        self.distribution = distribution.lower()
        self.dtype = _float_dtype(dtype, "variance_scaling_initializer")

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = _float_dtype(dtype or self.dtype, "variance_scaling_initializer")
        dims = _dims(shape)
        fan_in, fan_out = _fans(dims)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        scale = self.scale / max(1.0, n)
        random = _random_ops()
        if self.distribution in ("normal", "truncated_normal"):
            return random.truncated_normal(dims, 0.0, math.sqrt(scale) / _TRUNCATED_STDDEV,
                                           dtype, seed=self.seed)
        if self.distribution == "untruncated_normal":
            return random.random_normal(dims, 0.0, math.sqrt(scale), dtype, seed=self.seed)
        limit = math.sqrt(3.0 * scale)
        return random.random_uniform(dims, -limit, limit, dtype, seed=self.seed)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed, "dtype": self.dtype.name}


def _fans(dims) -> tuple:
    """(fan_in, fan_out) of a weight of shape ``dims``; conv kernels count their window."""
    if not dims:
        return 1, 1
    if len(dims) == 1:
        return dims[0], dims[0]
    receptive = int(np.prod(dims[:-2], dtype=np.int64)) if len(dims) > 2 else 1
    return dims[-2] * receptive, dims[-1] * receptive


class GlorotUniform(VarianceScaling):
    """Glorot (Xavier) uniform: limit sqrt(6 / (fan_in + fan_out))."""

    def __init__(self, seed=None, dtype=dtypes.float32):
        super().__init__(1.0, "fan_avg", "uniform", seed, dtype)

    def get_config(self):
        return {"seed": self.seed, "dtype": self.dtype.name}


class GlorotNormal(VarianceScaling):
    """Glorot (Xavier) truncated normal: stddev sqrt(2 / (fan_in + fan_out))."""

    def __init__(self, seed=None, dtype=dtypes.float32):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed, dtype)

    def get_config(self):
        return {"seed": self.seed, "dtype": self.dtype.name}


zeros_initializer = Zeros
ones_initializer = Ones
constant_initializer = Constant
random_normal_initializer = RandomNormal
truncated_normal_initializer = TruncatedNormal
random_uniform_initializer = RandomUniform
variance_scaling_initializer = VarianceScaling
glorot_uniform_initializer = GlorotUniform
glorot_normal_initializer = GlorotNormal


def he_normal(seed=None):
    return VarianceScaling(2.0, "fan_in", "truncated_normal", seed)


def he_uniform(seed=None):
    return VarianceScaling(2.0, "fan_in", "uniform", seed)


def lecun_normal(seed=None):
    return VarianceScaling(1.0, "fan_in", "truncated_normal", seed)


def lecun_uniform(seed=None):
    return VarianceScaling(1.0, "fan_in", "uniform", seed)


initializers = types.SimpleNamespace(
    zeros=Zeros, ones=Ones, constant=Constant, random_normal=RandomNormal,
    truncated_normal=TruncatedNormal, random_uniform=RandomUniform,
    variance_scaling=VarianceScaling, glorot_uniform=GlorotUniform, glorot_normal=GlorotNormal,
    he_normal=he_normal, he_uniform=he_uniform, lecun_normal=lecun_normal,
    lecun_uniform=lecun_uniform, global_variables=global_variables_initializer,
    local_variables=local_variables_initializer, variables=variables_initializer)


# -- the global step (tw.train.*) -----------------------------------------------------------------
GLOBAL_STEP_NAME = "global_step"


def get_global_step(graph=None):
    """The graph's global step variable (GLOBAL_STEP collection, else "global_step:0"), or None."""
    graph = get_default_graph() if graph is None else graph  # an empty Graph is falsy
    found = graph.get_collection(GraphKeys.GLOBAL_STEP)
    if len(found) > 1:
        raise TypeError(f"there are {len(found)} variables in the GLOBAL_STEP collection; a "
                        f"graph has one global step")
    if not found:
        try:
            tensor = graph.get_tensor_by_name(GLOBAL_STEP_NAME + ":0")
        except (KeyError, ValueError):
            return None
        graph.add_to_collection(GraphKeys.GLOBAL_STEP, tensor)
        found = [tensor]
    step = found[0]
    if not step.dtype.is_integer:
        raise TypeError(f"the global step {step.name} has dtype {step.dtype.name}; it must be "
                        f"an integer")
    return step


def create_global_step(graph=None) -> Variable:
    """Create the int64 scalar "global_step" variable (an error if one exists)."""
    graph = get_default_graph() if graph is None else graph
    if get_global_step(graph) is not None:
        raise ValueError("the global step already exists")
    with graph.as_default(), graph.name_scope(None):
        # Named "global_step" whatever the variable scope, so "global_step:0" finds it.
        return _get_single_variable(
            graph, GLOBAL_STEP_NAME, shape=[], dtype=dtypes.int64, initializer=Zeros(),
            reuse=False, trainable=False,
            collections=[GraphKeys.GLOBAL_VARIABLES, GraphKeys.GLOBAL_STEP])


def get_or_create_global_step(graph=None):
    """The graph's global step, created (int64, 0, non-trainable) if it has none."""
    graph = get_default_graph() if graph is None else graph
    step = get_global_step(graph)
    return create_global_step(graph) if step is None else step


def global_step(sess, global_step_tensor) -> int:
    """The value of the global step in ``sess`` as a Python int."""
    return int(sess.run(global_step_tensor))
