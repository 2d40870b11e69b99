"""Variable scopes and ``get_variable``: variables named by scope, created once and then reused.

``get_variable`` finds or creates the variable ``<scope>/name`` of the default graph; a
``variable_scope`` sets the prefix, whether existing variables are reused (``reuse``,
``tw.AUTO_REUSE``) and defaults for new ones (initializer, regularizer, dtype, custom getter).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import inspect
import weakref

from tensorweave.graph import dtypes
from tensorweave.graph.core import Operation, Tensor, get_default_graph
from tensorweave.graph.dtypes import as_dtype
from tensorweave.graph.scopes import GraphKeys
from tensorweave.graph.shapes import as_shape
from tensorweave.ops.common import to_numpy
from tensorweave.ops.init_ops import GlorotUniform, Zeros
from tensorweave.ops.variables import Variable

__all__ = ["get_variable", "variable_scope", "get_variable_scope", "VariableScope", "AUTO_REUSE",
           "no_regularizer"]


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
