"""Backend selection: small expressions stay on numpy unmeasured, larger ones go to the backend
that measured fastest (fake backends with known costs make the outcome certain), decisions are
cached per expression and size class, and the environment override is honoured."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tensorweave import codegen
from tensorweave.codegen import cpu_numba, select
from tensorweave.codegen.expr import FusedExpr, evaluate

BIG = select.MEASURE_MIN_ELEMENTS


def node(op, args, dtype="float32", **attrs):
    return {"op": op, "args": args, "attrs": attrs, "dtype": dtype}


def chain(scale: float) -> FusedExpr:
    """x*w + scale: a different constant gives a different expression (and cache key)."""
    return FusedExpr(inputs=[{"dtype": "float32", "shape": None}] * 2,
                     nodes=[node("Mul", [["in", 0], ["in", 1]]),
                            node("Add", [["node", 0], ["const", scale, "float32"]])],
                     outputs=[1])


class FakeKernel:
    """A backend whose calls take ``delay`` seconds and compute the reference."""

    def __init__(self, expr, delay):
        self.expr, self.delay, self.calls = expr, delay, 0

    def __call__(self, *arrays, donate=()):
        self.calls += 1
        time.sleep(self.delay)
        return evaluate(self.expr, np, *arrays)


@pytest.fixture
def fake_backends(monkeypatch):
    """Backends "slow" (20 ms a call) and "fast" (no delay); returns the kernels built."""
    built = {}

    def builder(name, delay):
        def build(expr):
            built[name] = FakeKernel(expr, delay)
            return built[name]
        return build

    monkeypatch.setattr(select, "BUILDERS", {"slow": builder("slow", 0.02),
                                             "fast": builder("fast", 0.0)})
    monkeypatch.setattr(select, "candidates",
                        lambda expr, n: ["slow", "fast"] if n >= BIG else ["numpy"])
    monkeypatch.delenv("TENSORWEAVE_CPU_BACKEND", raising=False)
    return built


def test_the_faster_backend_is_chosen_and_cached(fake_backends):
    expr = chain(1.5)
    choice = select.choose_backend(expr, [(2 * BIG,), (2 * BIG,)], ["float32", "float32"])
    assert choice.backend == "fast" and choice.reason == "fastest when measured"
    assert choice.seconds["slow"] > choice.seconds["fast"]
    calls = fake_backends["slow"].calls
    again = select.choose_backend(expr, [(2 * BIG - 1,), (1,)])  # same size class
    assert again is choice and fake_backends["slow"].calls == calls
    assert select.decisions()[(expr.to_json(), "CPU", select.size_class(2 * BIG))] is choice


def test_selecting_kernel_measures_once_then_dispatches(fake_backends):
    expr = chain(2.5)
    kernel = select.SelectingKernel(expr)
    x = np.linspace(-1, 1, BIG, dtype=np.float32)
    first = kernel(x, x)
    assert np.array_equal(first[0], evaluate(expr, np, x, x)[0])
    fast = fake_backends["fast"]
    before = fast.calls
    kernel(x, x)
    assert fast.calls == before + 1
    assert kernel.choices[select.size_class(BIG)].backend == "fast"


def test_small_expressions_use_numpy_without_measuring(fake_backends):
    choice = select.choose_backend(chain(3.5), [(10,), (10,)])
    assert choice.backend == "numpy" and choice.seconds == {}
    assert "fewer than" in choice.reason and fake_backends == {}


def test_environment_override(fake_backends, monkeypatch):
    monkeypatch.setenv("TENSORWEAVE_CPU_BACKEND", "numba")  # not a candidate here: numpy
    assert select.choose_backend(chain(4.5), [(BIG,), (BIG,)]).backend == "numpy"
    monkeypatch.setenv("TENSORWEAVE_CPU_BACKEND", "fastest-please")
    with pytest.raises(ValueError, match="TENSORWEAVE_CPU_BACKEND"):
        select.choose_backend(chain(5.5), [(BIG,), (BIG,)])


def test_dtypes_must_be_the_expressions():
    with pytest.raises(ValueError, match="not the expression's input dtypes"):
        select.choose_backend(chain(6.5), [(4,), (4,)], ["float64", "float32"])


def test_without_numba_only_numpy_is_a_candidate(monkeypatch):
    monkeypatch.setattr(cpu_numba, "available", lambda: False)
    assert select.candidates(chain(7.5), BIG) == ["numpy"]
    choice = select.choose_backend(chain(7.5), [(BIG,), (BIG,)])
    assert choice.backend == "numpy" and choice.reason == "only backend available"


def test_reductions_are_not_offered_to_numba():
    expr = FusedExpr(inputs=[{"dtype": "float32", "shape": None}],
                     nodes=[node("Square", [["in", 0]])], outputs=[0],
                     reduce={"op": "Sum", "axes": [0], "keepdims": False})
    assert select.candidates(expr, BIG) == ["numpy"]


def test_math_functions_keep_an_expression_off_numba():
    # numba's tanh is the C library's: not numpy's to the bit, and slower (DESIGN.md)
    expr = FusedExpr(inputs=[{"dtype": "float32", "shape": None}],
                     nodes=[node("Tanh", [["in", 0]])], outputs=[0])
    assert select.candidates(expr, BIG) == ["numpy"]


def test_size_classes_are_powers_of_two():
    assert [select.size_class(n) for n in (1, 2, 3, 4, 5, 1 << 20, (1 << 20) + 1)] == \
        [0, 1, 2, 2, 3, 20, 21]


def test_representative_inputs_have_the_real_shapes_and_dtypes():
    expr = FusedExpr(inputs=[{"dtype": "int32", "shape": None}, {"dtype": "bool", "shape": None},
                             {"dtype": "float64", "shape": None}],
                     nodes=[node("SelectV2", [["in", 1], ["in", 2], ["in", 2]], "float64")],
                     outputs=[0])
    arrays = select.representative_inputs(expr, [(3, 4), (4,), ()])
    assert [(a.shape, a.dtype.name) for a in arrays] == \
        [((3, 4), "int32"), ((4,), "bool"), ((), "float64")]
    assert arrays[0].min() >= 1  # no division by zero while timing


def test_compile_expr_defaults_to_selection_and_computes_the_reference():
    expr = chain(8.5)
    kernel = codegen.compile_expr(expr, np)
    assert isinstance(kernel, select.SelectingKernel)
    rng = np.random.default_rng(0)
    for n in (7, BIG * 2):  # one size class below the threshold, one above
        x, w = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
        got = kernel(x, w)[0]
        assert got.tobytes() == evaluate(expr, np, x, w)[0].tobytes()
    assert kernel.choices[select.size_class(7)].backend == "numpy"
    assert kernel.choices[select.size_class(BIG * 2)].backend in select.BUILDERS


def test_named_backends_are_registered():
    assert {"numpy", "numba", "cuda", "auto"} <= set(codegen.BACKENDS)
    with pytest.raises(ValueError, match="unknown codegen backend"):
        codegen.compile_expr(chain(9.5), np, backend="fortran")
