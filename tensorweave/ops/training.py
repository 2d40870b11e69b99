"""Training update ops: one step of an optimizer's update rule, applied to a variable in place.

Each ``Apply*`` op takes the hyperparameters and the gradient as tensors; its attrs name the
variable (``var``) and the optimizer's slot variables (``m``, ``v``, ``accum``, ...) in the
session's variable store. The kernel reads them from the step context, computes TF1's update
formula in the variable's dtype, writes the variable and its slots back (committed when the
step succeeds) and returns the variable's new value. The ops have no gradient.

The public functions take ``tw.Variable`` objects and build the op colocated with the variable,
as TF1's ``training_ops.apply_*`` do; the optimizers in ``tw.train`` are their usual callers.

``ApplyAdam`` and ``ApplyGradientDescent`` may also compute their gradient from several inputs:
with attr ``grad_terms`` = k > 1, the k inputs from the gradient's position on are added in
order, and with ``grad_scale`` "mul" or "div" the sum is multiplied or divided by the input
after them. Only the ``fuse_updates`` pass builds them so (``passes/fuse_updates.py``), from the
``Add``/``AddN`` and ``Mul``/``RealDiv`` that averaged the gradient; the kernels do the same
arithmetic those ops did.
"""

from __future__ import annotations

import numpy as np

from tensorweave import errors
from tensorweave.graph.core import get_default_graph
from tensorweave.ops import loops
from tensorweave.ops.common import FLOATS, convert_to_tensor, output
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, register

__all__ = ["apply_gradient_descent", "apply_momentum", "apply_adam", "apply_rms_prop",
           "apply_centered_rms_prop", "apply_adagrad"]


# -- what every update op shares ----------------------------------------------------------------
def _update_infer(input_names, grad_index):
    """Inference for an update op: scalar hyperparameters of the gradient's float dtype; the
    output is the variable's new value, of the gradient's dtype and shape. With ``grad_terms``
    > 1 every addend has that dtype and shape, and the scale is a scalar."""
    def infer(op):
        grad = op.inputs[grad_index]
        if grad.dtype.name not in FLOATS:
            raise TypeError(f"the gradient of variable {op.attrs['var']} has dtype "
                            f"{grad.dtype.name}; update ops need a float dtype")
        terms, scaling = gradient_form(op.attrs)
        if len(op.inputs) != len(input_names) + terms - 1 + bool(scaling):
            raise ValueError(f"the update of variable {op.attrs['var']} has {len(op.inputs)} "
                             f"inputs; its attrs ask for {terms} gradient terms"
                             f"{' and a scale' if scaling else ''}")
        named = list(zip(input_names, op.inputs))
        named += [(f"grad_{k}", op.inputs[grad_index + k]) for k in range(1, terms)]
        if scaling:
            named.append(("grad_scale", op.inputs[grad_index + terms]))
        shape = grad.shape
        for name, t in named:
            if t.dtype is not grad.dtype:
                raise TypeError(f"input '{name}' has dtype {t.dtype.name}, which does not match "
                                f"the gradient's dtype {grad.dtype.name}")
            if name.startswith("grad_") and name != "grad_scale":
                shape = shape.merge_with(t.shape)
            elif t is not grad and t.shape.rank not in (None, 0):
                raise ValueError(f"input '{name}' must be a scalar, but has shape {t.shape}")
        return [(grad.dtype, shape)]
    return infer


def gradient_form(attrs) -> tuple:
    """``(terms, scaling)``: how many inputs add up to the gradient, and "mul", "div" or ""
    for what the input after them does to the sum (see the module doc)."""
    return attrs.get("grad_terms", 1), attrs.get("grad_scale", "")


def _split_gradient(attrs):
    """A function from an update kernel's gradient inputs to ``(addends, scale or None)``."""
    terms, scaling = gradient_form(attrs)

    def split(inputs):
        return inputs[:terms], (inputs[terms] if scaling else None)
    return split


def _gradient(xp, addends, scale, scaling):
    """The gradient from its addends, computed as the folded ops did: ``AddN``'s (or
    ``Add``'s) sum from left to right, then ``Mul``'s multiply or ``RealDiv``'s true divide."""
    if len(addends) == 1:
        total = addends[0]
    else:
        total = xp.add(addends[0], addends[1])
        for addend in addends[2:]:
            xp.add(total, addend, out=total)
    if scaling == "mul":
        total = xp.multiply(total, scale)
    elif scaling == "div":
        total = xp.true_divide(total, scale)
    return total


def _read(ctx, name, grad):
    """The current value of variable ``name``; it must match the gradient's shape and dtype."""
    value = ctx.read_variable(name)
    if value.shape != grad.shape or value.dtype != grad.dtype:
        raise errors.InvalidArgumentError(
            None, None, f"variable {name} holds a value of dtype {value.dtype} and shape "
                        f"{list(value.shape)}, but its update has dtype {grad.dtype} and shape "
                        f"{list(grad.shape)}")
    return value


def _write(ctx, xp, name, value, dtype):
    # 0-d arithmetic gives numpy scalars; the store keeps arrays of the variable's exact dtype.
    value = xp.asarray(value, dtype=dtype)
    ctx.write_variable(name, value)
    return value


def _empty_like(ctx, xp, like):
    """A fresh output buffer: recycled from earlier steps on the host, new elsewhere."""
    return ctx.empty_like(like) if xp is np else xp.empty_like(like)


def _one(xp, like):
    """1 in ``like``'s dtype (a bare Python 1 may promote float16 to float64 on older numpy)."""
    return xp.asarray(1, dtype=like.dtype)


def variable_store_name(var) -> str:
    """The name under which the session's variable store keeps ``var``'s value."""
    op = getattr(var, "op", None)
    if op is None or op.type != "VariableV2":
        raise TypeError(f"expected a tw.Variable, got {var!r}")
    return op.attrs["shared_name"]


def _update_op(op_type, var, inputs, slots, attrs=None, name=None):
    """Build an update op for ``var`` (a tw.Variable), colocated with it."""
    graph = getattr(var, "graph", None) or get_default_graph()
    all_attrs = {"var": variable_store_name(var)}
    all_attrs.update({key: variable_store_name(slot) for key, slot in slots.items()})
    all_attrs.update(attrs or {})
    with graph.as_default(), graph.colocate_with(var.op):
        dtype = var.dtype.base_dtype
        tensors = [convert_to_tensor(t, dtype=dtype) for t in inputs]
        return output(apply_op(op_type, tensors, all_attrs, name=name or op_type))


# -- ApplyGradientDescent -----------------------------------------------------------------------
def _gradient_descent_kernel(attrs, xp):
    var_name = attrs["var"]
    split = _split_gradient(attrs)
    scaling = gradient_form(attrs)[1]

    def apply_gradient_descent_kernel(ctx, alpha, *gradient):
        addends, scale = split(gradient)
        var = _read(ctx, var_name, addends[0])
        # One fresh array, computed in place: the stored value is read-only and stays intact.
        new = _empty_like(ctx, xp, var)
        if len(addends) == 2 and loops.use_loops(var, *addends):
            scalar = var.dtype.type
            loops.gradient_descent_of_sum(var, scalar(alpha), addends[0], addends[1],
                                          scalar(1 if scale is None else scale), scaling, new)
            return _write(ctx, xp, var_name, new, var.dtype)
        delta = _gradient(xp, addends, scale, scaling)
        if loops.use_loops(var, delta):
            loops.gradient_descent(var, var.dtype.type(alpha), delta, new)
        else:
            xp.multiply(delta, alpha, out=new)
            xp.subtract(var, new, out=new)
        return _write(ctx, xp, var_name, new, var.dtype)
    return apply_gradient_descent_kernel


register(OpDef("ApplyGradientDescent", _update_infer(("alpha", "delta"), 1),
               _gradient_descent_kernel, grad=NO_GRADIENT, stateful=True, uses_context=True,
               keeps_no_input=True, summed_gradient_input=1))


def apply_gradient_descent(var, alpha, delta, use_locking=False, name=None):
    """``var -= alpha * delta``; returns the new value."""
    return _update_op("ApplyGradientDescent", var, [alpha, delta], {}, name=name)


# -- ApplyMomentum ------------------------------------------------------------------------------
def _momentum_kernel(attrs, xp):
    var_name, accum_name = attrs["var"], attrs["accum"]
    nesterov = attrs["use_nesterov"]

    def apply_momentum_kernel(ctx, lr, grad, momentum):
        var = _read(ctx, var_name, grad)
        accum = _write(ctx, xp, accum_name, _read(ctx, accum_name, grad) * momentum + grad,
                       var.dtype)
        if nesterov:
            step = lr * grad + lr * momentum * accum
        else:
            step = lr * accum
        return _write(ctx, xp, var_name, var - step, var.dtype)
    return apply_momentum_kernel


register(OpDef("ApplyMomentum", _update_infer(("lr", "grad", "momentum"), 1),
               _momentum_kernel, grad=NO_GRADIENT, stateful=True, uses_context=True))


def apply_momentum(var, accum, lr, grad, momentum, use_locking=False, use_nesterov=False,
                   name=None):
    """``accum = accum * momentum + grad; var -= lr * accum`` (Nesterov:
    ``var -= lr * grad + lr * momentum * accum``); returns the new value."""
    return _update_op("ApplyMomentum", var, [lr, grad, momentum], {"accum": accum},
                      {"use_nesterov": bool(use_nesterov)}, name=name)


# -- ApplyAdam ----------------------------------------------------------------------------------
def _adam_kernel(attrs, xp):
    var_name, m_name, v_name = attrs["var"], attrs["m"], attrs["v"]
    split = _split_gradient(attrs)
    scaling = gradient_form(attrs)[1]

    def apply_adam_kernel(ctx, beta1_power, beta2_power, lr, beta1, beta2, epsilon, *gradient):
        addends, scale = split(gradient)
        like = addends[0]
        var = _read(ctx, var_name, like)
        one = _one(xp, like)
        lr_t = lr * xp.sqrt(one - beta2_power) / (one - beta1_power)
        old_m, old_v = _read(ctx, m_name, like), _read(ctx, v_name, like)
        # Three fresh arrays (m, v, and one that becomes the new var).
        new_var, m, v = (_empty_like(ctx, xp, var) for _ in range(3))
        scalar = var.dtype.type
        if len(addends) == 2 and loops.use_loops(var, old_m, old_v, *addends):
            loops.adam_of_sum(var, old_m, old_v, addends[0], addends[1],
                              scalar(1 if scale is None else scale), scaling, scalar(beta1),
                              scalar(one - beta1), scalar(beta2), scalar(one - beta2),
                              scalar(epsilon), scalar(lr_t), new_var, m, v)
        elif loops.use_loops(var, old_m, old_v, *addends):
            grad = _gradient(xp, addends, scale, scaling)
            loops.adam(var, old_m, old_v, grad, scalar(beta1), scalar(one - beta1),
                       scalar(beta2), scalar(one - beta2), scalar(epsilon), scalar(lr_t),
                       new_var, m, v)
        else:
            grad = _gradient(xp, addends, scale, scaling)
            _adam_passes(xp, var, old_m, old_v, grad, one, beta1, beta2, epsilon, lr_t,
                         new_var, m, v)
        _write(ctx, xp, m_name, m, var.dtype)
        _write(ctx, xp, v_name, v, var.dtype)
        return _write(ctx, xp, var_name, new_var, var.dtype)
    return apply_adam_kernel


def _adam_passes(xp, var, old_m, old_v, grad, one, beta1, beta2, epsilon, lr_t, new_var, m, v):
    """Adam's formula in whole-array passes written in place (``new_var`` doubles as the
    scratch): the reference that ``loops.adam`` computes in one pass, to the bit."""
    scratch = xp.multiply(grad, one - beta1, out=new_var)
    xp.multiply(old_m, beta1, out=m)
    xp.add(m, scratch, out=m)
    xp.multiply(grad, grad, out=scratch)
    xp.multiply(scratch, one - beta2, out=scratch)
    xp.multiply(old_v, beta2, out=v)
    xp.add(v, scratch, out=v)
    xp.sqrt(v, out=scratch)
    xp.add(scratch, epsilon, out=scratch)
    xp.divide(m, scratch, out=scratch)
    xp.multiply(scratch, lr_t, out=scratch)
    xp.subtract(var, scratch, out=scratch)


_ADAM_INPUTS = ("beta1_power", "beta2_power", "lr", "beta1", "beta2", "epsilon", "grad")
register(OpDef("ApplyAdam", _update_infer(_ADAM_INPUTS, 6), _adam_kernel,
               grad=NO_GRADIENT, stateful=True, uses_context=True, keeps_no_input=True,
               summed_gradient_input=6))


def apply_adam(var, m, v, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad,
               use_locking=False, name=None):
    """One Adam step with bias correction ``lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)``;
    the caller advances ``beta1_power`` and ``beta2_power`` after all variables."""
    return _update_op("ApplyAdam", var,
                      [beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad],
                      {"m": m, "v": v}, name=name)


# -- ApplyRMSProp / ApplyCenteredRMSProp --------------------------------------------------------
def _rms_prop_kernel(attrs, xp):
    var_name, ms_name, mom_name = attrs["var"], attrs["ms"], attrs["mom"]

    def apply_rms_prop_kernel(ctx, lr, rho, momentum, epsilon, grad):
        var = _read(ctx, var_name, grad)
        one = _one(xp, grad)
        ms = _write(ctx, xp, ms_name, rho * _read(ctx, ms_name, grad) + (one - rho) * grad * grad,
                    var.dtype)
        mom = _write(ctx, xp, mom_name, momentum * _read(ctx, mom_name, grad)
                     + lr * grad / xp.sqrt(ms + epsilon), var.dtype)
        return _write(ctx, xp, var_name, var - mom, var.dtype)
    return apply_rms_prop_kernel


_RMS_PROP_INPUTS = ("lr", "rho", "momentum", "epsilon", "grad")
register(OpDef("ApplyRMSProp", _update_infer(_RMS_PROP_INPUTS, 4), _rms_prop_kernel,
               grad=NO_GRADIENT, stateful=True, uses_context=True))


def apply_rms_prop(var, ms, mom, lr, rho, momentum, epsilon, grad, use_locking=False, name=None):
    """``ms = rho*ms + (1-rho)*g^2; mom = momentum*mom + lr*g/sqrt(ms+eps); var -= mom``."""
    return _update_op("ApplyRMSProp", var, [lr, rho, momentum, epsilon, grad],
                      {"ms": ms, "mom": mom}, name=name)


def _centered_rms_prop_kernel(attrs, xp):
    var_name, mg_name = attrs["var"], attrs["mg"]
    ms_name, mom_name = attrs["ms"], attrs["mom"]

    def apply_centered_rms_prop_kernel(ctx, lr, rho, momentum, epsilon, grad):
        var = _read(ctx, var_name, grad)
        one = _one(xp, grad)
        mg = _write(ctx, xp, mg_name, rho * _read(ctx, mg_name, grad) + (one - rho) * grad,
                    var.dtype)
        ms = _write(ctx, xp, ms_name, rho * _read(ctx, ms_name, grad) + (one - rho) * grad * grad,
                    var.dtype)
        # The variance estimate ms - mg^2 replaces ms: RMSProp centered on the mean gradient.
        denominator = ms - mg * mg + epsilon
        mom = _write(ctx, xp, mom_name, momentum * _read(ctx, mom_name, grad)
                     + lr * grad / xp.sqrt(denominator), var.dtype)
        return _write(ctx, xp, var_name, var - mom, var.dtype)
    return apply_centered_rms_prop_kernel


register(OpDef("ApplyCenteredRMSProp", _update_infer(_RMS_PROP_INPUTS, 4),
               _centered_rms_prop_kernel, grad=NO_GRADIENT, stateful=True, uses_context=True))


def apply_centered_rms_prop(var, mg, ms, mom, lr, rho, momentum, epsilon, grad,
                            use_locking=False, name=None):
    """RMSProp normalized by the variance ``ms - mg^2`` instead of the second moment ``ms``."""
    return _update_op("ApplyCenteredRMSProp", var, [lr, rho, momentum, epsilon, grad],
                      {"mg": mg, "ms": ms, "mom": mom}, name=name)


# -- ApplyAdagrad -------------------------------------------------------------------------------
def _adagrad_kernel(attrs, xp):
    var_name, accum_name = attrs["var"], attrs["accum"]

    def apply_adagrad_kernel(ctx, lr, grad):
        var = _read(ctx, var_name, grad)
        accum = _write(ctx, xp, accum_name, _read(ctx, accum_name, grad) + grad * grad,
                       var.dtype)
        return _write(ctx, xp, var_name, var - lr * grad / xp.sqrt(accum), var.dtype)
    return apply_adagrad_kernel


register(OpDef("ApplyAdagrad", _update_infer(("lr", "grad"), 1), _adagrad_kernel,
               grad=NO_GRADIENT, stateful=True, uses_context=True))


def apply_adagrad(var, accum, lr, grad, use_locking=False, name=None):
    """``accum += grad^2; var -= lr * grad / sqrt(accum)``; returns the new value."""
    return _update_op("ApplyAdagrad", var, [lr, grad], {"accum": accum}, name=name)
