"""State: variables, the ops that read and update them, variable scopes and initializers.

The family is split over four modules, and this one gathers their public names (``tw.*`` takes
them from here):

* ``ops/variables.py`` — ``tw.Variable`` and the state ops (VariableV2, Assign, AssignAdd, ...);
  its docstring tells where a variable's value lives and how the ops reach it
* ``ops/init_ops.py`` — the initializers (zeros, constant, glorot_uniform, ...)
* ``ops/variable_scope.py`` — get_variable and variable_scope
* this module — the variable collections and initialization ops (``global_variables``,
  ``global_variables_initializer``, ``report_uninitialized_variables``), ``tw.initializers``
  and the global step

Each imports only the modules listed before it, so the family has no import cycle.
"""

from __future__ import annotations

import types

import numpy as np

from tensorweave.graph import dtypes
from tensorweave.graph.core import Operation, get_default_graph
from tensorweave.graph.scopes import GraphKeys
from tensorweave.ops import init_ops as _init_ops
from tensorweave.ops import variable_scope as _variable_scope
from tensorweave.ops import variables as _variables
from tensorweave.ops.common import output
from tensorweave.ops.control import group, no_op
from tensorweave.ops.init_ops import *  # noqa: F401,F403
from tensorweave.ops.init_ops import (Constant, GlorotNormal, GlorotUniform,  # noqa: F401
                                      Initializer, Ones, RandomNormal, RandomUniform,
                                      TruncatedNormal, VarianceScaling, Zeros, he_normal,
                                      he_uniform, lecun_normal, lecun_uniform)
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, register
from tensorweave.ops.variable_scope import *  # noqa: F401,F403
from tensorweave.ops.variable_scope import _get_single_variable
from tensorweave.ops.variables import *  # noqa: F401,F403
from tensorweave.ops.variables import (Variable, _variable_op_of,  # noqa: F401
                                       is_variable_initialized, variable_op_v2)

__all__ = (_variables.__all__
           + ["report_uninitialized_variables", "global_variables", "trainable_variables",
              "local_variables", "model_variables", "global_variables_initializer",
              "local_variables_initializer", "variables_initializer", "initialize_all_variables",
              "initialize_local_variables"]
           + _variable_scope.__all__ + _init_ops.__all__ + ["initializers"])


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
