"""Compiled loops for a few hot kernels: the Adam and gradient descent updates, max pooling and
its gradient over non-overlapping windows, sums over leading axes (bias gradients) and ReluGrad.

These kernels are chains of elementwise steps over large arrays, and numpy runs each step as its
own pass over memory: Adam makes 12 passes over arrays the size of the variable (11 ms for
Deep MNIST's 3136x1024 weights on one core), where one loop that computes every step for one
element at a time reads each input and writes each output once (3 ms). A bias gradient, numpy's
sum over the leading axes, adds rows of a few dozen elements one Python-free row at a time; the
loop keeps the row in registers (conv1's [50, 28, 28, 32]: 0.65 -> 0.14 ms). The loops are numba
functions, compiled on first use (numba is the optional ``fast`` extra, as for kernel fusion).

A kernel runs its loop only when ``use_loops`` says so: numba is installed, the arrays are
float32 or float64 and large enough to be worth a call (``LOOP_MIN_ELEMENTS``; less for the
kernels numpy is slow at whatever the size, ``SMALL_LOOP_MIN_ELEMENTS``), and
``TENSORWEAVE_CPU_BACKEND`` is not ``numpy``; otherwise it runs its numpy code, which is the
reference. Each loop performs the numpy code's operations in the same order and in the arrays'
dtype — scalars are passed as numpy scalars of that dtype (a Python float would be typed float64
and promote the arithmetic), fastmath is off (no contraction into fused multiply-adds) and
``error_model='numpy'`` (division by zero gives inf/NaN) — and IEEE arithmetic and square roots
are correctly rounded, so the results are numpy's to the bit, signed zeros, inf and NaN
included (``tests/ops/test_loops.py``).
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading

import numpy as np

__all__ = ["LOOP_MIN_ELEMENTS", "SMALL_LOOP_MIN_ELEMENTS", "use_loops", "adam", "adam_of_sum",
           "gradient_descent", "gradient_descent_of_sum", "max_pool_tiles",
           "max_pool_grad_tiles", "sums_leading_axes",
           "sum_leading_axes", "relu_grad"]

# Below this many elements numpy's passes are cheap and a loop saves less than a call costs.
LOOP_MIN_ELEMENTS = 1 << 15
# ... except for kernels numpy runs slowly at any size: a sum over leading axes (a Python-level
# wrapper and a strided reduction) and ReluGrad (numpy multiplies float by bool through a
# casting loop): 100x256 floats take numpy 3.9 and 8.2 us, the loops 1.6 and 4.0 us.
SMALL_LOOP_MIN_ELEMENTS = 1 << 10
_LOOP_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_AVAILABLE = importlib.util.find_spec("numba") is not None
_COMPILED: dict = {}
_LOCK = threading.Lock()


def use_loops(*arrays, min_elements: int = LOOP_MIN_ELEMENTS) -> bool:
    """Whether the kernels may run their compiled loop on ``arrays`` (see the module doc).
    The environment is read last: a lookup costs ~2 us, more than the small updates of a step
    that never get that far."""
    first = arrays[0]
    if not _AVAILABLE or type(first) is not np.ndarray or first.size < min_elements \
            or first.dtype not in _LOOP_DTYPES:
        return False
    if not all(type(a) is np.ndarray and a.dtype == first.dtype for a in arrays):
        return False
    return os.environ.get("TENSORWEAVE_CPU_BACKEND") != "numpy"


def _flat(a):
    """``a`` as a contiguous 1-D read-only array (a view when it already is contiguous). Loops
    read their inputs through such views: numba types a read-only array apart from a writable
    one, and a loop given both kinds may not be vectorised (Adam's update from the sum of a
    writable and a read-only gradient: 2.9 -> 5.9 ms at 3136x1024)."""
    flat = np.ascontiguousarray(a).reshape(-1)
    if flat.flags.writeable:
        flat = flat.view()
        flat.flags.writeable = False
    return flat


def _compiled(fn):
    """``fn`` compiled by numba, once per process (numba keeps the machine code on disk when
    it can, so later processes load it instead of compiling again)."""
    compiled = _COMPILED.get(fn.__name__)
    if compiled is None:
        with _LOCK:
            compiled = _COMPILED.get(fn.__name__)
            if compiled is None:
                compiled = _jit(fn)
                _COMPILED[fn.__name__] = compiled
    return compiled


def _jit(fn):
    import numba
    options = dict(fastmath=False, error_model="numpy", nogil=True)
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # no writable cache location: compile in every process instead
        return numba.njit(cache=False, **options)(fn)


# -- Adam -----------------------------------------------------------------------------------------
def adam(var, m, v, grad, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, lr_t,
         out_var, out_m, out_v):
    """TF1's Adam step into ``out_*``, as ``ops/training.py``'s numpy code computes it:
    ``m' = m*b1 + g*(1-b1)``, ``v' = v*b2 + (g*g)*(1-b2)``,
    ``var' = var - (m' / (sqrt(v') + eps)) * lr_t``. Scalars are numpy scalars of the dtype."""
    _compiled(_adam_loop)(_flat(var), _flat(m), _flat(v), _flat(grad), beta1, one_minus_beta1,
                          beta2, one_minus_beta2, epsilon, lr_t, out_var.reshape(-1),
                          out_m.reshape(-1), out_v.reshape(-1))


def _adam_loop(var, m, v, grad, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, lr_t,
               out_var, out_m, out_v):
    for i in range(var.size):
        g = grad[i]
        new_m = m[i] * beta1 + g * one_minus_beta1
        new_v = v[i] * beta2 + (g * g) * one_minus_beta2
        out_m[i] = new_m
        out_v[i] = new_v
        out_var[i] = var[i] - (new_m / (np.sqrt(new_v) + epsilon)) * lr_t


# A gradient given as the sum of two arrays, then multiplied ("mul") or divided ("div") by a
# scale or left alone (""): the mean that data-parallel training hands an update
# (passes/fuse_updates.py). The loops compute it per element as Add and Mul/RealDiv do.
_SCALINGS = {"": 0, "mul": 1, "div": 2}


def adam_of_sum(var, m, v, a, b, scale, scaling, beta1, one_minus_beta1, beta2, one_minus_beta2,
                epsilon, lr_t, out_var, out_m, out_v):
    """``adam`` with the gradient ``(a + b)`` scaled by ``scale`` as ``scaling`` says."""
    _compiled(_adam_of_sum_loop)(_flat(var), _flat(m), _flat(v), _flat(a), _flat(b), scale,
                                 _SCALINGS[scaling], beta1, one_minus_beta1, beta2,
                                 one_minus_beta2, epsilon, lr_t, out_var.reshape(-1),
                                 out_m.reshape(-1), out_v.reshape(-1))


def _adam_of_sum_loop(var, m, v, a, b, scale, scaling, beta1, one_minus_beta1, beta2,
                      one_minus_beta2, epsilon, lr_t, out_var, out_m, out_v):
    for i in range(var.size):
        g = a[i] + b[i]
        if scaling == 1:
            g = g * scale
        elif scaling == 2:
            g = g / scale
        new_m = m[i] * beta1 + g * one_minus_beta1
        new_v = v[i] * beta2 + (g * g) * one_minus_beta2
        out_m[i] = new_m
        out_v[i] = new_v
        out_var[i] = var[i] - (new_m / (np.sqrt(new_v) + epsilon)) * lr_t


# -- gradient descent -----------------------------------------------------------------------------
def gradient_descent(var, alpha, delta, out):
    """``out = var - delta * alpha`` (``alpha`` a numpy scalar of the dtype)."""
    _compiled(_gradient_descent_loop)(_flat(var), alpha, _flat(delta), out.reshape(-1))


def _gradient_descent_loop(var, alpha, delta, out):
    for i in range(var.size):
        out[i] = var[i] - delta[i] * alpha


def gradient_descent_of_sum(var, alpha, a, b, scale, scaling, out):
    """``gradient_descent`` with ``delta = (a + b)`` scaled as ``scaling`` says."""
    _compiled(_gradient_descent_of_sum_loop)(_flat(var), alpha, _flat(a), _flat(b), scale,
                                             _SCALINGS[scaling], out.reshape(-1))


def _gradient_descent_of_sum_loop(var, alpha, a, b, scale, scaling, out):
    for i in range(var.size):
        delta = a[i] + b[i]
        if scaling == 1:
            delta = delta * scale
        elif scaling == 2:
            delta = delta / scale
        out[i] = var[i] - delta * alpha


# -- ReluGrad -------------------------------------------------------------------------------------
def relu_grad(g, y):
    """``g * (y > 0)`` as numpy computes it (the mask cast to 1 or 0, then multiplied: NaN and
    inf in ``g`` give NaN where the mask is 0, negative values a signed zero), for arrays of
    one shape."""
    out = np.empty(g.shape, dtype=g.dtype)
    _compiled(_relu_grad_loop)(_flat(g), _flat(y), out.reshape(-1))
    return out


def _relu_grad_loop(g, y, out):
    one, zero = g.dtype.type(1), g.dtype.type(0)
    for i in range(g.size):
        out[i] = g[i] * (one if y[i] > 0 else zero)


# -- max pooling over non-overlapping windows -----------------------------------------------------
def max_pool_tiles(x, kernel, out):
    """MaxPool when the windows tile ``x`` exactly (stride == ksize, no padding), as the numpy
    kernel computes it: the first position's value, then ``np.maximum`` with each later one in
    row-major order (NaN wins; of equal values, signed zeros included, the later one)."""
    kh, kw = kernel
    _compiled(_max_pool_loop)(np.ascontiguousarray(x), kh, kw, out)


def _max_pool_loop(x, kh, kw, out):
    n, oh, ow, c = out.shape
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                row = out[b, oy, ox]
                first = x[b, oy * kh, ox * kw]
                for k in range(c):
                    row[k] = first[k]
                for t in range(1, kh * kw):
                    tap = x[b, oy * kh + t // kw, ox * kw + t % kw]
                    for k in range(c):
                        a, v = row[k], tap[k]
                        row[k] = a if (a > v or a != a) else v


# -- max pooling's gradient over non-overlapping windows ------------------------------------------
def max_pool_grad_tiles(x, y, g, kernel, finite, out):
    """MaxPoolGrad when the windows tile ``x`` exactly (stride == ksize, no padding): each
    window's gradient goes to its first maximum in row-major order, the other positions get
    ``g * 0`` when every ``g`` is ``finite`` (what numpy's ``hits * g`` gives, a signed zero)
    and ``+0`` otherwise (numpy's ``where``). NaN in ``x`` equals nothing, as in numpy."""
    kh, kw = kernel
    zero, one = out.dtype.type(0), out.dtype.type(1)
    _compiled(_max_pool_grad_loop)(np.ascontiguousarray(x), np.ascontiguousarray(y),
                                   np.ascontiguousarray(g), kh, kw, finite, zero, one, out)


def _max_pool_grad_loop(x, y, g, kh, kw, finite, zero, one, out):
    # Rows of channels (1-D views) in the innermost loops, one loop per case: LLVM vectorises
    # these, not an inner loop indexing 4-D arrays under a branch (conv1's pool: 0.94 ->
    # 0.3 ms).
    n, oh, ow, c = y.shape
    taken = np.zeros(c, dtype=np.bool_)
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                y_row, g_row = y[b, oy, ox], g[b, oy, ox]
                taken[:] = False
                for t in range(kh * kw):
                    row, col = oy * kh + t // kw, ox * kw + t % kw
                    x_row, out_row = x[b, row, col], out[b, row, col]
                    if finite:  # & and |, not and/or: no branches in the loop
                        for k in range(c):
                            hit = (x_row[k] == y_row[k]) & (not taken[k])
                            taken[k] = taken[k] | hit
                            out_row[k] = g_row[k] * (one if hit else zero)
                    else:
                        for k in range(c):
                            hit = (x_row[k] == y_row[k]) & (not taken[k])
                            taken[k] = taken[k] | hit
                            out_row[k] = g_row[k] if hit else zero


# -- sums over leading axes -----------------------------------------------------------------------
def sums_leading_axes(x, axes) -> bool:
    """Whether ``sum_leading_axes`` computes numpy's ``add.reduce(x, axes)`` for these arguments:
    a C-contiguous ``x`` summed over its first ``len(axes)`` axes, keeping at least two elements
    per sum. numpy then adds the rows in order, one output element per kept element
    (``out[c] = (((0 + x[0, c]) + x[1, c]) + ...)``); with a single kept element it would
    collapse the axes into one and sum pairwise instead, which this loop does not."""
    k = len(axes)
    if not 0 < k < x.ndim or tuple(axes) != tuple(range(k)) or not x.flags.c_contiguous:
        return False
    return math.prod(x.shape[k:]) >= 2


def sum_leading_axes(x, count: int, keepdims: bool):
    """``np.add.reduce(x, axis=range(count), keepdims=keepdims)`` when ``sums_leading_axes``."""
    kept = x.shape[count:]
    out = np.zeros(math.prod(kept), dtype=x.dtype)
    _compiled(_sum_rows_loop)(x.reshape(-1, out.size), out)
    return out.reshape(((1,) * count if keepdims else ()) + kept)


def _sum_rows_loop(rows, out):
    for r in range(rows.shape[0]):
        for c in range(rows.shape[1]):
            out[c] += rows[r, c]
