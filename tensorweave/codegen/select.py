"""Which backend runs a fused expression on the CPU: decided by timing the candidates once.

``choose_backend(expr, shapes)`` times every available CPU backend that can run the expression
(``numpy``: chunked numpy; ``numba``: a compiled loop; ``numba-parallel`` when numba has more
than one thread) on data of the real shapes, picks the fastest and caches the decision per
(expression, which includes its dtypes; device; size class). ``SelectingKernel`` is what
``compile_expr`` returns for numpy without a named backend: at the first call for a size class it
decides, timing the candidates on the call's own arrays, then dispatches.

The candidates, and why (DESIGN.md, "Kernel fusion: code generation", has the numbers): numba's
loop reaches memory bandwidth on arithmetic chains and costs ~6 us per call against ~20 us for
the chunked numpy kernel, but its math functions are scalar C-library calls (numba's pip build
has no vectorised math), so a chain with tanh/exp/sigmoid runs several times slower under numba
than chunked numpy, and its results differ from numpy's by a few ulps. So numba is a candidate
only for expressions it computes bitwise as numpy does (``cpu_numba.inexact_ops`` is empty):
fused results then never depend on which backend won. Among the candidates, the measurement on
the machine at hand decides.

Below ``MEASURE_MIN_ELEMENTS`` output elements the numpy backend is used without measuring: a
numba compile (0.3-0.7 s the first time on a machine, a few ms from its disk cache afterwards)
is not worth it for a few microseconds, and test suites build thousands of tiny expressions.
``TENSORWEAVE_CPU_BACKEND=numpy|numba|measure`` overrides the choice (default ``measure``).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import numpy as np

from tensorweave.codegen import cpu_numba, cpu_numpy
from tensorweave.codegen.expr import FusedExpr

__all__ = ["Choice", "choose_backend", "candidates", "decisions", "SelectingKernel",
           "compile_selected", "BUILDERS", "MEASURE_MIN_ELEMENTS", "representative_inputs"]

MEASURE_MIN_ELEMENTS = 1 << 14
PARALLEL_MIN_ELEMENTS = 1 << 20  # below this a second thread costs more than it brings
TIMED_CALLS = 2  # after one warm-up call (compilation, page faults); the best counts
MAX_SHAPES_KEPT = 64


@dataclasses.dataclass(frozen=True)
class Choice:
    """A decision: the backend, why, and the seconds per call each candidate took."""

    backend: str
    reason: str
    seconds: dict


def _numba_threads() -> int:
    import numba  # only imported once an expression is big enough to be worth compiling
    return numba.get_num_threads()


BUILDERS = {
    "numpy": lambda expr: cpu_numpy.compile_expr(expr, np),
    "numba": lambda expr: cpu_numba.compile_numba(expr),
    "numba-parallel": lambda expr: cpu_numba.compile_numba(expr, parallel=True),
}


def candidates(expr: FusedExpr, elements: int) -> list:
    """Names of the CPU backends that can run ``expr`` here, for outputs of ``elements``."""
    if elements < MEASURE_MIN_ELEMENTS:
        return ["numpy"]
    found = ["numpy"]
    # numba only where it is bitwise numpy: with C-library math it is also slower (see above)
    if (cpu_numba.available() and cpu_numba.supports(expr) is None
            and not cpu_numba.inexact_ops(expr)):
        found.append("numba")
        if elements >= PARALLEL_MIN_ELEMENTS and _numba_threads() > 1:
            found.append("numba-parallel")
    return found


def _policy() -> str:
    policy = os.environ.get("TENSORWEAVE_CPU_BACKEND", "measure")
    if policy not in ("numpy", "numba", "measure"):
        raise ValueError(f"TENSORWEAVE_CPU_BACKEND={policy!r}: expected numpy, numba or measure")
    return policy


def size_class(elements: int) -> int:
    """Decisions are shared by sizes within a factor of two."""
    return max(0, int(elements) - 1).bit_length()


# -- the decision cache --------------------------------------------------------------------------
_DECISIONS: dict = {}
_LOCK = threading.Lock()


def decisions() -> dict:
    """Every decision made in this process: (expr JSON, device, size class) -> Choice."""
    with _LOCK:
        return dict(_DECISIONS)


def _remember(key, choice: Choice) -> Choice:
    with _LOCK:
        return _DECISIONS.setdefault(key, choice)


# -- measuring -----------------------------------------------------------------------------------
def representative_inputs(expr: FusedExpr, shapes, seed: int = 0) -> list:
    """Arrays of ``shapes`` and the expression's dtypes, with values typical of a network:
    floats in [-2, 2], integers in [1, 16] (no division by zero), random booleans."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec, shape in zip(expr.inputs, shapes):
        dtype = np.dtype(spec["dtype"])
        if dtype.kind == "f":
            arrays.append(rng.uniform(-2, 2, shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.random(shape) < 0.5)
        else:
            arrays.append(rng.integers(1, 17, shape).astype(dtype))
    return arrays


def _time(kernel, arrays) -> float:
    kernel(*arrays)  # compiles, pages the outputs in
    best = float("inf")
    for _ in range(TIMED_CALLS):
        start = time.perf_counter()
        kernel(*arrays)
        best = min(best, time.perf_counter() - start)
    return best


def _measure(kernels: dict, arrays) -> Choice:
    seconds = {name: _time(kernel, arrays) for name, kernel in kernels.items()}
    best = min(seconds, key=lambda name: (seconds[name], name))
    return Choice(best, "fastest when measured", seconds)


def _decide(expr, elements, kernels_for, arrays_for) -> Choice:
    """The choice for one expression and size, without the cache.

    ``kernels_for(names)`` gives the kernels to time, ``arrays_for()`` the arrays to time them on.
    """
    found = candidates(expr, elements)
    if len(found) == 1:
        reason = "only backend available" if elements >= MEASURE_MIN_ELEMENTS else \
            f"fewer than {MEASURE_MIN_ELEMENTS} elements"
        return Choice("numpy", reason, {})
    policy = _policy()
    if policy != "measure":
        name = policy if policy in found else "numpy"
        return Choice(name, f"TENSORWEAVE_CPU_BACKEND={policy}", {})
    return _measure(kernels_for(found), arrays_for())


def _elements(shapes) -> int:
    return int(np.prod(np.broadcast_shapes(*[tuple(s) for s in shapes]))) if shapes else 1


def choose_backend(expr: FusedExpr, shapes, dtypes=None, device: str = "CPU") -> Choice:
    """The CPU backend for ``expr`` on inputs of ``shapes``, timed once on representative data.

    ``dtypes`` (optional) must be the expression's input dtypes: they are part of ``expr``.
    The decision is cached per (expression, device, size class).
    """
    if dtypes is not None and [np.dtype(d).name for d in dtypes] != list(expr.input_dtypes):
        raise ValueError(f"dtypes {list(dtypes)} are not the expression's input dtypes "
                         f"{list(expr.input_dtypes)}")
    elements = _elements(shapes)
    key = (expr.to_json(), device, size_class(elements))
    choice = _DECISIONS.get(key)
    if choice is None:
        choice = _decide(expr, elements,
                         lambda names: {name: BUILDERS[name](expr) for name in names},
                         lambda: representative_inputs(expr, shapes))
        choice = _remember(key, choice)
    return choice


class SelectingKernel:
    """A fused expression on the CPU whose backend is chosen per size class at its first call.

    The first call of a size class times the candidates on that call's own arrays (kernels never
    mutate their inputs, and no input is donated while measuring); later calls go straight to
    the chosen kernel. ``kernel.choices`` shows the decisions.
    """

    def __init__(self, expr: FusedExpr, device: str = "CPU"):
        self.expr = expr
        self.device = device
        self.key = expr.to_json()
        self._kernels: dict = {}  # backend name -> kernel, shared by the size classes
        self._by_shapes: dict = {}  # input shapes -> kernel of their size class
        self.choices: dict = {}  # size class -> Choice
        self._lock = threading.Lock()

    def __call__(self, *arrays, donate=()):
        shapes = tuple(map(np.shape, arrays))
        kernel = self._by_shapes.get(shapes)
        if kernel is None:
            kernel = self._select(shapes, arrays)
        return kernel(*arrays, donate=donate)

    def _select(self, shapes, arrays):
        elements = _elements(shapes)
        cls = size_class(elements)
        with self._lock:
            key = (self.key, self.device, cls)
            choice = _DECISIONS.get(key)
            if choice is None:
                choice = _remember(key, _decide(self.expr, elements, self._build,
                                                lambda: [np.asarray(a) for a in arrays]))
            self.choices[cls] = choice
            kernel = self._kernel(choice.backend)
            if len(self._by_shapes) >= MAX_SHAPES_KEPT:
                self._by_shapes.clear()  # shapes that vary every step: do not grow forever
            self._by_shapes[shapes] = kernel
        return kernel

    def _kernel(self, name: str):
        return self._build([name])[name]

    def _build(self, names) -> dict:
        for name in names:
            if name not in self._kernels:
                self._kernels[name] = BUILDERS[name](self.expr)
        return {name: self._kernels[name] for name in names}


def compile_selected(expr: FusedExpr, xp):
    """``compile_expr``'s default for numpy: a ``SelectingKernel``."""
    if xp is not np:
        raise ValueError("backend selection by measurement is for the CPU (numpy arrays)")
    return SelectingKernel(expr)
