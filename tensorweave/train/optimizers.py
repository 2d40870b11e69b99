"""Optimizers: ``compute_gradients`` builds the backward graph, ``apply_gradients`` the updates.

    opt = tw.train.AdamOptimizer(1e-3)
    train_op = opt.minimize(loss, global_step=tw.train.get_or_create_global_step())

Each optimizer keeps *slot* variables next to every variable it trains (Adam's two moment
estimates, Momentum's accumulator, ...). Slots are named as TF1 names them (``W/Adam``,
``W/Adam_1``), are not trainable, live in the GLOBAL_VARIABLES collection (so
``global_variables_initializer`` initializes them and a ``Saver`` saves them) and are colocated
with their variable. One update op (``ops/training.py``) per variable reads the variable and its
slots and writes them back; ``_finish`` then runs what must follow all updates (Adam's
``beta1_power``/``beta2_power``), and the global step is incremented after everything else.

``gate_gradients``: GATE_GRAPH makes every update wait for all gradients (``tw.tuple``);
GATE_NONE and GATE_OP build the same graph here — a step's variable writes are committed only
when the whole step succeeded, and each update op already waits for its own gradient.
``use_locking`` is accepted for TF1 compatibility and has no effect (the same reason).
"""

from __future__ import annotations

from tensorweave.graph import dtypes
from tensorweave.graph.core import Tensor
from tensorweave.graph.scopes import GraphKeys
from tensorweave.ops import training
from tensorweave.ops.common import convert_to_tensor

__all__ = ["Optimizer", "GradientDescentOptimizer", "MomentumOptimizer", "AdamOptimizer",
           "RMSPropOptimizer", "AdagradOptimizer"]

_FLOAT_DTYPES = (dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64)


class Optimizer:
    """Base class: subclasses say which slots they need and how one variable is updated."""

    GATE_NONE = 0
    GATE_OP = 1
    GATE_GRAPH = 2

    def __init__(self, use_locking: bool, name: str):
        if not name:
            raise ValueError("an optimizer needs a name")
        self._use_locking = use_locking
        self._name = name
        self._slots: dict[str, dict] = {}       # slot name -> {variable op: slot Variable}
        self._non_slot: dict[tuple, object] = {}  # (name, graph) -> Variable
        self._hyper_cache: dict[tuple, Tensor] = {}  # (name, dtype) -> constant, per call
        self._scope = ""

    def get_name(self) -> str:
        return self._name

    # -- gradients --------------------------------------------------------------------------
    def compute_gradients(self, loss, var_list=None, gate_gradients=GATE_OP,
                          aggregation_method=None, colocate_gradients_with_ops=False,
                          grad_loss=None):
        """``[(gradient, variable), ...]`` of ``loss`` for ``var_list`` (default: the trainable
        variables). A variable ``loss`` does not depend on gets ``(None, variable)``."""
        from tensorweave.ops.control import tuple as tw_tuple
        from tensorweave.ops.gradients import gradients

        if callable(loss) and not isinstance(loss, Tensor):
            loss = loss()
        if not isinstance(loss, Tensor):
            raise TypeError(f"loss must be a tw.Tensor, got {type(loss).__name__}")
        _check_float("loss", loss.name, loss.dtype)
        var_list = _variables_to_train(loss.graph, var_list)
        with loss.graph.as_default():
            grads = gradients(loss, [_value_tensor(v) for v in var_list],
                              grad_ys=None if grad_loss is None else [grad_loss],
                              aggregation_method=aggregation_method,
                              colocate_gradients_with_ops=colocate_gradients_with_ops)
            if gate_gradients == Optimizer.GATE_GRAPH and any(g is not None for g in grads):
                gated = iter(tw_tuple([g for g in grads if g is not None]))
                grads = [None if g is None else next(gated) for g in grads]
        return list(zip(grads, var_list))

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        """An op that applies the gradients to their variables, then increments
        ``global_step`` (if given). Pairs whose gradient is None are skipped."""
        pairs = _checked_pairs(grads_and_vars)
        with_grads = [(g, v) for g, v in pairs if g is not None]
        if not with_grads:
            raise ValueError(f"No gradients provided for any variable: "
                             f"{[v.name for _, v in pairs]}")
        if global_step is not None and not _is_variable(global_step):
            raise TypeError(f"global_step must be a tw.Variable, got {global_step!r}")
        graph = with_grads[0][1].graph
        with graph.as_default():
            self._create_slots_escaping_scopes(graph, [v for _, v in with_grads])
            with graph.name_scope(name or self._name) as scope:
                self._scope, self._hyper_cache = scope, {}
                self._prepare()
                updates = []
                for grad, var in with_grads:
                    with graph.name_scope("update_" + var.op.name), \
                            graph.colocate_with(var.op):
                        updates.append(self._apply_dense(grad, var))
                # As in TF1, the op returned is named exactly like the scope ("Adam").
                if global_step is None:
                    apply_updates = self._finish(updates, scope)
                else:
                    apply_updates = _increment_after(graph, global_step,
                                                     self._finish(updates, "update"), scope)
            train_ops = graph.get_collection_ref(GraphKeys.TRAIN_OP)
            if apply_updates not in train_ops:
                train_ops.append(apply_updates)
        return apply_updates

    def minimize(self, loss, global_step=None, var_list=None, gate_gradients=GATE_OP,
                 aggregation_method=None, colocate_gradients_with_ops=False, name=None,
                 grad_loss=None):
        """``compute_gradients`` then ``apply_gradients``: one op that takes a training step."""
        grads_and_vars = self.compute_gradients(
            loss, var_list=var_list, gate_gradients=gate_gradients,
            aggregation_method=aggregation_method,
            colocate_gradients_with_ops=colocate_gradients_with_ops, grad_loss=grad_loss)
        if all(g is None for g, _ in grads_and_vars):
            names = [v.name for _, v in grads_and_vars]
            raise ValueError(f"No gradients provided for any variable, check your graph for ops "
                             f"that do not support gradients, between variables {names} and "
                             f"loss {getattr(loss, 'name', loss)}")
        return self.apply_gradients(grads_and_vars, global_step=global_step, name=name)

    # -- slots ------------------------------------------------------------------------------
    def get_slot(self, var, name):
        """The slot variable ``name`` of ``var`` (e.g. ``"m"`` for Adam), or None."""
        return self._slots.get(name, {}).get(getattr(var, "op", None))

    def get_slot_names(self) -> list:
        """Names of the slots this optimizer created, sorted."""
        return sorted(self._slots)

    def variables(self) -> list:
        """The variables this optimizer created in the default graph (slots and others)."""
        from tensorweave.graph.core import get_default_graph

        graph = get_default_graph()
        found = [v for (_, g), v in self._non_slot.items() if g is graph]
        for by_var in self._slots.values():
            found.extend(v for v in by_var.values() if v.graph is graph)
        return sorted(found, key=lambda v: v.name)

    def _create_slots_escaping_scopes(self, graph, var_list):
        # Slots are state, not part of this step's computation: like TF1's init_scope, their
        # initializers must not inherit the caller's control dependencies.
        with graph.control_dependencies(None):
            self._create_slots(var_list)

    def _zeros_slot(self, var, slot_name, op_name):
        return self._slot_with_value(var, slot_name, op_name, 0)

    def _slot_with_value(self, var, slot_name, op_name, fill):
        """The slot ``slot_name`` of ``var`` (created as ``<var>/<op_name>`` filled with
        ``fill`` if new): non-trainable, in GLOBAL_VARIABLES, colocated with ``var``."""
        by_var = self._slots.setdefault(slot_name, {})
        if var.op in by_var:
            return by_var[var.op]
        slot = _new_slot_variable(var, op_name, fill)
        by_var[var.op] = slot
        return slot

    def _non_slot_variable(self, name, initial_value, colocate_with):
        """A variable of the optimizer itself (e.g. Adam's ``beta1_power``), one per graph."""
        from tensorweave.ops.state import Variable

        graph = colocate_with.graph
        key = (name, graph)
        if key not in self._non_slot:
            dtype = colocate_with.dtype.base_dtype
            if callable(initial_value) and not isinstance(initial_value, Tensor):
                initial_value = initial_value()
            with graph.colocate_with(colocate_with.op):
                if isinstance(initial_value, Tensor):
                    initial_value = _cast_to(initial_value, dtype)
                self._non_slot[key] = Variable(initial_value, name=name, trainable=False,
                                               dtype=dtype)
        return self._non_slot[key]

    def _get_non_slot_variable(self, name, graph):
        return self._non_slot.get((name, graph))

    # -- what subclasses provide ------------------------------------------------------------
    def _create_slots(self, var_list):
        """Create the slot variables of every variable in ``var_list``."""

    def _prepare(self):
        """Convert hyperparameters to tensors, once per ``apply_gradients`` call."""

    def _apply_dense(self, grad, var):
        raise NotImplementedError(f"{type(self).__name__} must define _apply_dense")

    def _finish(self, update_ops, name_scope):
        """The op that completes a step once every variable was updated."""
        from tensorweave.ops.control import group
        return group(*update_ops, name=name_scope)

    def _hyper(self, value, var, name):
        """Hyperparameter ``value`` (float, tensor or callable) as a tensor of ``var``'s dtype."""
        from tensorweave.ops.math import cast

        if callable(value) and not isinstance(value, Tensor):
            value = value()
        dtype = var.dtype.base_dtype
        if isinstance(value, Tensor):
            return value if value.dtype is dtype else cast(value, dtype)
        cache = self._hyper_cache
        if (name, dtype) not in cache:
            # Shared by every variable's update: made once, in the optimizer's scope, tied to
            # no variable's device.
            graph = var.graph
            with graph.name_scope(self._scope), graph.colocate_with(None, ignore_existing=True):
                cache[(name, dtype)] = convert_to_tensor(value, dtype=dtype, name=name)
        return cache[(name, dtype)]


# -- the optimizers -------------------------------------------------------------------------------
class GradientDescentOptimizer(Optimizer):
    """``var -= learning_rate * grad``."""

    def __init__(self, learning_rate, use_locking=False, name="GradientDescent"):
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate

    def _apply_dense(self, grad, var):
        lr = self._hyper(self._learning_rate, var, "learning_rate")
        return training.apply_gradient_descent(var, lr, grad).op


class MomentumOptimizer(Optimizer):
    """``accum = momentum * accum + grad; var -= learning_rate * accum`` (or Nesterov's
    look-ahead ``var -= learning_rate * (grad + momentum * accum)``). Slot: ``"momentum"``."""

    def __init__(self, learning_rate, momentum, use_locking=False, name="Momentum",
                 use_nesterov=False):
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate
        self._momentum = momentum
        self._use_nesterov = use_nesterov

    def _create_slots(self, var_list):
        for v in var_list:
            self._zeros_slot(v, "momentum", self._name)

    def _apply_dense(self, grad, var):
        return training.apply_momentum(
            var, self.get_slot(var, "momentum"),
            self._hyper(self._learning_rate, var, "learning_rate"), grad,
            self._hyper(self._momentum, var, "momentum"),
            use_nesterov=self._use_nesterov).op


class AdamOptimizer(Optimizer):
    """Adam (Kingma & Ba) with TF1's bias correction folded into the step size. Slots ``"m"``
    and ``"v"``; the non-slot variables ``beta1_power`` and ``beta2_power`` hold beta^t."""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-08,
                 use_locking=False, name="Adam"):
        super().__init__(use_locking, name)
        self._lr = learning_rate
        self._beta1 = beta1
        self._beta2 = beta2
        self._epsilon = epsilon

    def _create_slots(self, var_list):
        # TF1 colocates the beta powers with the first variable by name.
        first = min(var_list, key=lambda v: v.name)
        self._non_slot_variable("beta1_power", self._beta1, first)
        self._non_slot_variable("beta2_power", self._beta2, first)
        for v in var_list:
            self._zeros_slot(v, "m", self._name)
            self._zeros_slot(v, "v", self._name)

    def _beta_powers(self, graph):
        return (self._get_non_slot_variable("beta1_power", graph),
                self._get_non_slot_variable("beta2_power", graph))

    def _apply_dense(self, grad, var):
        beta1_power, beta2_power = self._beta_powers(var.graph)
        dtype = var.dtype.base_dtype
        return training.apply_adam(
            var, self.get_slot(var, "m"), self.get_slot(var, "v"),
            _cast_to(beta1_power.value(), dtype), _cast_to(beta2_power.value(), dtype),
            self._hyper(self._lr, var, "learning_rate"),
            self._hyper(self._beta1, var, "beta1"), self._hyper(self._beta2, var, "beta2"),
            self._hyper(self._epsilon, var, "epsilon"), grad).op

    def _finish(self, update_ops, name_scope):
        from tensorweave.ops.control import group

        graph = update_ops[0].graph
        beta1_power, beta2_power = self._beta_powers(graph)
        with graph.control_dependencies(update_ops), graph.colocate_with(beta1_power.op):
            update_beta1 = beta1_power.assign(
                beta1_power.value() * self._hyper(self._beta1, beta1_power, "beta1"))
            update_beta2 = beta2_power.assign(
                beta2_power.value() * self._hyper(self._beta2, beta2_power, "beta2"))
        return group(*update_ops, update_beta1, update_beta2, name=name_scope)


class RMSPropOptimizer(Optimizer):
    """RMSProp: ``ms = decay*ms + (1-decay)*g^2; mom = momentum*mom + lr*g/sqrt(ms+eps);
    var -= mom``. ``centered`` divides by the variance estimate instead. Slots ``"rms"``
    (starts at 1, as in TF1), ``"mg"`` (centered only) and ``"momentum"``."""

    def __init__(self, learning_rate, decay=0.9, momentum=0.0, epsilon=1e-10, use_locking=False,
                 centered=False, name="RMSProp"):
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate
        self._decay = decay
        self._momentum = momentum
        self._epsilon = epsilon
        self._centered = centered

    def _create_slots(self, var_list):
        for v in var_list:
            self._slot_with_value(v, "rms", self._name, 1)
            if self._centered:
                self._zeros_slot(v, "mg", self._name)
            self._zeros_slot(v, "momentum", self._name)

    def _apply_dense(self, grad, var):
        hypers = [self._hyper(self._learning_rate, var, "learning_rate"),
                  self._hyper(self._decay, var, "decay"),
                  self._hyper(self._momentum, var, "momentum"),
                  self._hyper(self._epsilon, var, "epsilon"), grad]
        rms, mom = self.get_slot(var, "rms"), self.get_slot(var, "momentum")
        if self._centered:
            return training.apply_centered_rms_prop(var, self.get_slot(var, "mg"), rms, mom,
                                                    *hypers).op
        return training.apply_rms_prop(var, rms, mom, *hypers).op


class AdagradOptimizer(Optimizer):
    """Adagrad: ``accum += g^2; var -= lr * g / sqrt(accum)``. Slot ``"accumulator"``, which
    starts at ``initial_accumulator_value`` (must be positive)."""

    def __init__(self, learning_rate, initial_accumulator_value=0.1, use_locking=False,
                 name="Adagrad"):
        if not initial_accumulator_value > 0.0:
            raise ValueError(f"initial_accumulator_value must be positive: "
                             f"{initial_accumulator_value}")
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate
        self._initial_accumulator_value = initial_accumulator_value

    def _create_slots(self, var_list):
        for v in var_list:
            self._slot_with_value(v, "accumulator", self._name, self._initial_accumulator_value)

    def _apply_dense(self, grad, var):
        return training.apply_adagrad(var, self.get_slot(var, "accumulator"),
                                      self._hyper(self._learning_rate, var, "learning_rate"),
                                      grad).op


# -- helpers --------------------------------------------------------------------------------------
def _is_variable(value) -> bool:
    from tensorweave.ops.state import Variable
    return isinstance(value, Variable)


def _value_tensor(var) -> Tensor:
    """The tensor that carries ``var``'s value into the graph (what gradients are taken of)."""
    if hasattr(var, "_as_graph_element"):
        return var._as_graph_element()
    return var.value()


def _check_float(what, name, dtype):
    if dtype.base_dtype not in _FLOAT_DTYPES:
        allowed = ", ".join(d.name for d in _FLOAT_DTYPES)
        raise ValueError(f"invalid dtype {dtype.name} for {what} {name}; optimizers need one "
                         f"of: {allowed}")


def _variables_to_train(graph, var_list):
    if var_list is None:
        var_list = graph.get_collection(GraphKeys.TRAINABLE_VARIABLES)
        if not var_list:
            raise ValueError("No variables to optimize: the graph has no trainable variables")
    else:
        if not isinstance(var_list, (list, tuple, set, frozenset)):
            raise ValueError(f"var_list must be a list of tw.Variables, got "
                             f"{type(var_list).__name__}")
        if isinstance(var_list, (set, frozenset)):  # a deterministic graph from a set, too
            var_list = sorted(var_list, key=lambda v: getattr(v, "name", repr(v)))
        var_list = list(var_list)
        if not var_list:
            raise ValueError("No variables to optimize: var_list is empty")
    _check_variables(var_list, graph)
    return var_list


def _check_variables(var_list, graph):
    seen = set()
    for v in var_list:
        if not _is_variable(v):
            raise ValueError(f"var_list may contain only tw.Variables, but it contains {v!r}")
        if v.graph is not graph:
            raise ValueError(f"variable {v.name} belongs to another graph than the loss")
        if v.op in seen:
            raise ValueError(f"variable {v.name} is in var_list twice")
        seen.add(v.op)
        _check_float("variable", v.name, v.dtype)


def _checked_pairs(grads_and_vars) -> list:
    """The (gradient, variable) pairs as a list, with gradients converted to tensors."""
    pairs = []
    for item in grads_and_vars:
        try:
            grad, var = item
        except (TypeError, ValueError):
            raise ValueError(f"grads_and_vars must hold (gradient, variable) pairs, got "
                             f"{item!r}") from None
        if not _is_variable(var):
            raise ValueError(f"grads_and_vars may pair gradients only with tw.Variables, but it "
                             f"contains {var!r}")
        if grad is not None:
            grad = _checked_gradient(grad, var)
        pairs.append((grad, var))
    if not pairs:
        raise ValueError("No variables provided: grads_and_vars is empty")
    if len({v.op for _, v in pairs}) != len(pairs):
        names = [v.name for _, v in pairs]
        raise ValueError(f"grads_and_vars names a variable twice: {names}")
    return pairs


def _checked_gradient(grad, var):
    dtype = var.dtype.base_dtype
    grad = grad if isinstance(grad, Tensor) else convert_to_tensor(grad, dtype=dtype)
    if grad.dtype is not dtype:
        raise ValueError(f"the gradient {grad.name} of variable {var.name} has dtype "
                         f"{grad.dtype.name}, but the variable has dtype {dtype.name}")
    if not grad.shape.is_compatible_with(var.shape):
        raise ValueError(f"the gradient {grad.name} of variable {var.name} has shape "
                         f"{grad.shape}, but the variable has shape {var.shape}")
    return grad


def _cast_to(tensor, dtype):
    from tensorweave.ops.math import cast
    return tensor if tensor.dtype is dtype else cast(tensor, dtype)


def _increment_after(graph, global_step, apply_updates, name):
    """``global_step += 1`` once ``apply_updates`` ran; returns the increment."""
    with graph.control_dependencies([apply_updates]), graph.colocate_with(global_step.op):
        return global_step.assign_add(1, name=name)


def _new_slot_variable(var, op_name, fill):
    """A ``<var>/<op_name>`` variable of ``var``'s shape and dtype, all ``fill``."""
    from tensorweave.ops.state import Constant, Variable

    graph = var.graph
    shape = var.shape
    if not shape.is_fully_defined():
        raise ValueError(f"cannot create the {op_name} slot of variable {var.name}: its shape "
                         f"{shape} is not fully defined")
    dtype = var.dtype.base_dtype
    # Slot names do not depend on the caller's name scope, as TF1's do not: re-enter the
    # variable's own scope by its absolute name ("W/"), where the Variable's own scope makes
    # the names unique ("W/Adam", then "W/Adam_1").
    with graph.name_scope(var.op.name + "/"), graph.colocate_with(var.op):
        return Variable(lambda: Constant(fill, dtype)(shape), name=op_name, trainable=False,
                        collections=[GraphKeys.GLOBAL_VARIABLES])
