"""Cases for the state ops: variables, their reads, updates and initialization checks.

The harness runs each case in a fresh session that never ran an initializer, so each build makes
its variables from the fed placeholders and runs their initializers inside the same step, under
control dependencies. ``validate_shape`` follows the placeholder: a variable of unknown shape
for the harness's unknown-shape run.
"""

import numpy as np

import tensorweave as tw
from tensorweave.ops.state import variable_op_v2
from tests.ops.harness import OpCase, arr, rand


def _variable(x, name="v"):
    return tw.Variable(x, name=name, validate_shape=x.shape.is_fully_defined())


def _alias_after_init(x):
    """A second VariableV2 op on the same shared variable, run after the initializer."""
    v = _variable(x)
    with tw.control_dependencies([v.initializer]):
        return variable_op_v2(x.shape, x.dtype, name="alias", shared_name=v.op.name)


def _read_after_init(x):
    v = _variable(x)
    with tw.control_dependencies([v.initializer]):
        return v.read_value()


def _assign_then_read(x, y):
    v = _variable(x)
    new = v.assign(y)
    with tw.control_dependencies([new]):
        return [new, v.read_value()]


def _assign_new_shape(x, y):
    v = tw.Variable(x, validate_shape=False)
    return tw.assign(v, y, validate_shape=False)


def _update_after_init(update):
    def build(x, y):
        v = _variable(x)
        with tw.control_dependencies([v.initializer]):
            new = update(v, y)
        with tw.control_dependencies([new]):
            return [new, v.read_value()]
    return build


def _initialized_flags(x):
    never = _variable(x, name="never")
    done = _variable(x, name="done")
    with tw.control_dependencies([done.initializer]):
        return [tw.is_variable_initialized(never), tw.is_variable_initialized(done)]


def _report(x):
    a, b, c = (_variable(x, name=n) for n in ("a", "b", "c"))
    with tw.control_dependencies([a.initializer, c.initializer]):
        names = tw.report_uninitialized_variables([a, b, c])
    # The report's length depends on run-time state; the case knows it is one name.
    return tw.reshape(names, [1])


CASES = [
    OpCase("VariableV2", _alias_after_init, [rand(2, 3)], lambda x: x, grad=False),
    OpCase("VariableV2", _alias_after_init, [rand(4, dtype="int64")], lambda x: x, grad=False,
           name="int64"),
    OpCase("VariableV2", _alias_after_init, [arr(True, "bool")], lambda x: x, grad=False,
           name="bool_scalar"),
    OpCase("ReadVariableOp", _read_after_init, [rand(3, 2)], lambda x: x, grad=False),
    OpCase("ReadVariableOp", _read_after_init, [np.zeros((0, 2), "float32")], lambda x: x,
           grad=False, name="empty"),
    OpCase("Assign", _assign_then_read, [rand(2, 3), rand(2, 3, seed=1)],
           lambda x, y: (y, y), grad=False),
    OpCase("Assign", _assign_then_read, [rand(3, dtype="int32"), rand(3, dtype="int32", seed=1)],
           lambda x, y: (y, y), grad=False, name="int32"),
    OpCase("Assign", _assign_new_shape, [rand(2, 3), rand(4, seed=1)], lambda x, y: y,
           grad=False, name="new_shape"),
    OpCase("AssignAdd", _update_after_init(lambda v, y: v.assign_add(y)),
           [rand(2, 3), rand(2, 3, seed=1)], lambda x, y: (x + y, x + y), grad=False),
    OpCase("AssignAdd", _update_after_init(tw.assign_add),
           [rand(4, dtype="int32"), rand(4, dtype="int32", seed=1)],
           lambda x, y: (x + y, x + y), grad=False, name="int32"),
    OpCase("AssignAdd", _update_after_init(tw.assign_add), [arr(1.5), arr(2.0)],
           lambda x, y: (x + y, x + y), grad=False, name="scalar"),
    OpCase("AssignSub", _update_after_init(lambda v, y: v.assign_sub(y)),
           [rand(2, 3, dtype="float64"), rand(2, 3, dtype="float64", seed=1)],
           lambda x, y: (x - y, x - y), grad=False),
    OpCase("IsVariableInitialized", _initialized_flags, [rand(2)],
           lambda x: (np.array(False), np.array(True)), grad=False),
    OpCase("ReportUninitialized", _report, [rand(2)],
           lambda x: np.array(["b"], dtype=object), grad=False),
    OpCase("InitializedValue", lambda x: _variable(x).initialized_value(), [rand(2, 2)],
           lambda x: x, grad=False),
]
