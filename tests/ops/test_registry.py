"""Registry-driven op tests: every case of every family, and coverage of the registry."""

import importlib
import pathlib

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.ops import registry

_FAMILIES = sorted(p.stem for p in pathlib.Path(__file__).parent.glob("cases_*.py"))
CASES = [case for family in _FAMILIES
         for case in importlib.import_module(f"tests.ops.{family}").CASES]

# Ops with no case of their own, and why.
NOT_TABLE_TESTED = {
    "BroadcastGradientArgs": "internal to gradients; covered by every broadcast gradient check",
    "PyFunc": "runs the user's Python function; tests/ops/test_py_func.py",
}


def _run(case, shapes_known=True, dtype_override=None):
    graph = tw.Graph()
    with graph.as_default():
        inputs = [np.asarray(v, dtype=dtype_override) if dtype_override is not None
                  and np.asarray(v).dtype.kind == "f" else np.asarray(v) for v in case.inputs]
        placeholders = [tw.placeholder(tw.as_dtype(v.dtype), v.shape if shapes_known else None)
                        for v in inputs]
        out = case.build(*placeholders)
        outs = out if isinstance(out, (list, tuple)) else [out]
        with tw.Session(graph=graph) as sess:
            values = sess.run(list(outs), feed_dict=dict(zip(placeholders, inputs)))
    return graph, inputs, placeholders, outs, values


def _reference(case, inputs):
    ref = case.reference(*inputs)
    return list(ref) if isinstance(ref, (list, tuple)) else [ref]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_kernel_matches_numpy_reference(case):
    _, inputs, _, outs, values = _run(case)
    expected = _reference(case, inputs)
    assert len(values) == len(expected)
    for t, got, want in zip(outs, values, expected):
        want = np.asarray(want)
        got = np.asarray(got)
        assert got.shape == want.shape, f"{t.name}: shape {got.shape} != {want.shape}"
        assert got.dtype == t.dtype.np, f"{t.name}: dtype {got.dtype} != declared {t.dtype}"
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)
        else:
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_shape_inference_matches_kernel(case):
    _, _, _, outs, values = _run(case)
    for t, got in zip(outs, values):
        assert t.shape.is_fully_defined(), f"{t.name}: static shape {t.shape} with known inputs"
        assert tuple(t.shape.as_list()) == np.shape(got)
    if case.unknown_shapes and case.inputs:
        _, _, _, outs, values = _run(case, shapes_known=False)
        for t, got in zip(outs, values):
            assert t.shape.is_compatible_with(np.shape(got)), f"{t.name}: {t.shape}"


GRAD_CASES = [c for c in CASES if c.grad and any(np.asarray(v).dtype.kind == "f"
                                                 for v in c.inputs)]


@pytest.mark.parametrize("case", GRAD_CASES, ids=[c.id for c in GRAD_CASES])
def test_gradient_matches_finite_differences(case):
    graph = tw.Graph()
    with graph.as_default():
        inputs = [np.asarray(v, dtype=np.float64) if np.asarray(v).dtype.kind == "f"
                  else np.asarray(v) for v in case.inputs]
        phs = [tw.placeholder(tw.as_dtype(v.dtype), v.shape) for v in inputs]
        out = case.build(*phs)
        outs = [o for o in (out if isinstance(out, (list, tuple)) else [out])
                if o.dtype.is_floating]
        rng = np.random.default_rng(0)
        weights = [rng.normal(size=o.shape.as_list()) for o in outs]
        wanted = case.grad_inputs if case.grad_inputs is not None else \
            [i for i, v in enumerate(inputs) if v.dtype.kind == "f"]
        grads = tw.gradients(outs, [phs[i] for i in wanted],
                             grad_ys=[tw.constant(w) for w in weights])
        objective = tw.add_n([tw.reduce_sum(o * w) for o, w in zip(outs, weights)])
        with tw.Session(graph=graph) as sess:
            feed = dict(zip(phs, inputs))
            symbolic = sess.run([g for g in grads if g is not None], feed)
            assert all(g is not None for g in grads), "an input that affects the output got None"
            for i, got in zip(wanted, symbolic):
                numeric = _finite_difference(sess, objective, feed, phs[i])
                np.testing.assert_allclose(got, numeric, rtol=1e-4, atol=1e-5,
                                           err_msg=f"gradient of input {i}")


def _finite_difference(sess, objective, feed, ph, eps=1e-6):
    base = feed[ph]
    flat = base.astype(np.float64).ravel()
    result = np.zeros_like(flat)
    for k in range(flat.size):
        plus, minus = flat.copy(), flat.copy()
        plus[k] += eps
        minus[k] -= eps
        f_plus = sess.run(objective, {**feed, ph: plus.reshape(base.shape)})
        f_minus = sess.run(objective, {**feed, ph: minus.reshape(base.shape)})
        result[k] = (f_plus - f_minus) / (2 * eps)
    return result.reshape(base.shape)


def test_every_registered_op_has_a_case():
    covered = {c.op_type for c in CASES}
    missing = [t for t in registry.all_op_types()
               if t not in covered and t not in NOT_TABLE_TESTED and not t.startswith("_")]
    assert not missing, f"ops without a test case: {missing}"


def test_every_differentiable_op_has_a_gradient_check():
    checked = {c.op_type for c in GRAD_CASES}
    missing = []
    for t in registry.all_op_types():
        op_def = registry.get(t)
        if op_def.grad is None or op_def.grad is registry.NO_GRADIENT:
            continue
        if t not in checked and t not in NOT_TABLE_TESTED and not t.startswith("_"):
            missing.append(t)
    assert not missing, f"differentiable ops without a gradient check: {missing}"
