"""Cases for the training update ops (``Apply*``): one optimizer step on a variable and its slots.

The harness runs each case in a fresh session, so each build makes the variable and its slots
from fed placeholders, initializes them in the same step (control dependencies), applies the
update, and then reads the slots back; the outputs are the op's result (the variable's new
value) and the slots' new values. References are the update formulas written out in numpy.
"""

import numpy as np

import tensorweave as tw
from tensorweave.ops import training
from tests.ops.harness import OpCase, arr, positive, rand


def _variables(*initials, names):
    return [tw.Variable(x, name=n, validate_shape=x.shape.is_fully_defined())
            for x, n in zip(initials, names)]


def _updated(variables, apply):
    """Run ``apply`` after every variable's initializer; return its result and the slots'
    values read after it."""
    with tw.control_dependencies([v.initializer for v in variables]):
        new = apply()
    with tw.control_dependencies([new]):
        return [new] + [slot.read_value() for slot in variables[1:]]


def _gradient_descent(var0, alpha, delta):
    (var,) = _variables(var0, names=["var"])
    return _updated([var], lambda: training.apply_gradient_descent(var, alpha, delta))


def _momentum(nesterov):
    def build(var0, accum0, lr, grad, momentum):
        var, accum = _variables(var0, accum0, names=["var", "accum"])
        return _updated([var, accum], lambda: training.apply_momentum(
            var, accum, lr, grad, momentum, use_nesterov=nesterov))
    return build


def _momentum_reference(nesterov):
    def reference(var, accum, lr, grad, momentum):
        accum = accum * momentum + grad
        step = lr * grad + lr * momentum * accum if nesterov else lr * accum
        return var - step, accum
    return reference


def _adam(var0, m0, v0, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad):
    var, m, v = _variables(var0, m0, v0, names=["var", "m", "v"])
    return _updated([var, m, v], lambda: training.apply_adam(
        var, m, v, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad))


def _adam_reference(var, m, v, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad):
    lr_t = lr * np.sqrt(1 - beta2_power) / (1 - beta1_power)
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    return var - lr_t * m / (np.sqrt(v) + epsilon), m, v


def _rms_prop(var0, ms0, mom0, lr, rho, momentum, epsilon, grad):
    var, ms, mom = _variables(var0, ms0, mom0, names=["var", "ms", "mom"])
    return _updated([var, ms, mom], lambda: training.apply_rms_prop(
        var, ms, mom, lr, rho, momentum, epsilon, grad))


def _rms_prop_reference(var, ms, mom, lr, rho, momentum, epsilon, grad):
    ms = rho * ms + (1 - rho) * grad ** 2
    mom = momentum * mom + lr * grad / np.sqrt(ms + epsilon)
    return var - mom, ms, mom


def _centered_rms_prop(var0, mg0, ms0, mom0, lr, rho, momentum, epsilon, grad):
    var, mg, ms, mom = _variables(var0, mg0, ms0, mom0, names=["var", "mg", "ms", "mom"])
    return _updated([var, mg, ms, mom], lambda: training.apply_centered_rms_prop(
        var, mg, ms, mom, lr, rho, momentum, epsilon, grad))


def _centered_rms_prop_reference(var, mg, ms, mom, lr, rho, momentum, epsilon, grad):
    mg = rho * mg + (1 - rho) * grad
    ms = rho * ms + (1 - rho) * grad ** 2
    mom = momentum * mom + lr * grad / np.sqrt(ms - mg ** 2 + epsilon)
    return var - mom, mg, ms, mom


def _adagrad(var0, accum0, lr, grad):
    var, accum = _variables(var0, accum0, names=["var", "accum"])
    return _updated([var, accum], lambda: training.apply_adagrad(var, accum, lr, grad))


def _adagrad_reference(var, accum, lr, grad):
    accum = accum + grad ** 2
    return var - lr * grad / np.sqrt(accum), accum


def _scalar(value, dtype="float32"):
    return arr(value, dtype)


def _adam_inputs(dtype="float32"):
    return [rand(2, 3, dtype=dtype), rand(2, 3, dtype=dtype, seed=1),
            positive(2, 3, dtype=dtype, seed=2), _scalar(0.9 ** 3, dtype),
            _scalar(0.999 ** 3, dtype), _scalar(0.01, dtype), _scalar(0.9, dtype),
            _scalar(0.999, dtype), _scalar(1e-8, dtype), rand(2, 3, dtype=dtype, seed=3)]


CASES = [
    OpCase("ApplyGradientDescent", _gradient_descent,
           [rand(3, 4), _scalar(0.1), rand(3, 4, seed=1)],
           lambda var, alpha, delta: var - alpha * delta, grad=False),
    OpCase("ApplyGradientDescent", _gradient_descent,
           [rand(5, dtype="float64"), _scalar(0.5, "float64"), rand(5, dtype="float64", seed=1)],
           lambda var, alpha, delta: var - alpha * delta, grad=False, name="float64"),
    OpCase("ApplyGradientDescent", _gradient_descent,
           [np.zeros((0, 2), "float32"), _scalar(0.1), np.zeros((0, 2), "float32")],
           lambda var, alpha, delta: var, grad=False, name="empty"),
    OpCase("ApplyGradientDescent", _gradient_descent,
           [_scalar(1.5), _scalar(0.1), _scalar(2.0)],
           lambda var, alpha, delta: var - alpha * delta, grad=False, name="scalar"),
    OpCase("ApplyMomentum", _momentum(False),
           [rand(2, 3), rand(2, 3, seed=1), _scalar(0.1), rand(2, 3, seed=2), _scalar(0.9)],
           _momentum_reference(False), grad=False),
    OpCase("ApplyMomentum", _momentum(True),
           [rand(2, 3), rand(2, 3, seed=1), _scalar(0.1), rand(2, 3, seed=2), _scalar(0.9)],
           _momentum_reference(True), grad=False, name="nesterov"),
    OpCase("ApplyAdam", _adam, _adam_inputs(), _adam_reference, grad=False),
    OpCase("ApplyAdam", _adam, _adam_inputs("float64"), _adam_reference, grad=False,
           name="float64", rtol=1e-12, atol=1e-12),
    OpCase("ApplyRMSProp", _rms_prop,
           [rand(4), positive(4, seed=1), rand(4, seed=2), _scalar(0.01), _scalar(0.9),
            _scalar(0.5), _scalar(1e-10), rand(4, seed=3)], _rms_prop_reference, grad=False),
    OpCase("ApplyCenteredRMSProp", _centered_rms_prop,
           [rand(4), rand(4, seed=1, low=-0.1, high=0.1), positive(4, seed=2),
            rand(4, seed=3), _scalar(0.01), _scalar(0.9), _scalar(0.5), _scalar(1e-10),
            rand(4, seed=4)], _centered_rms_prop_reference, grad=False),
    OpCase("ApplyAdagrad", _adagrad,
           [rand(3, 2), positive(3, 2, seed=1), _scalar(0.1), rand(3, 2, seed=2)],
           _adagrad_reference, grad=False),
]
