"""The expression IR: JSON form, validation, and the rule tables checked against the op kernels
(numpy rules bitwise), and the C and Python templates checked by evaluating them."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

import tensorweave  # noqa: F401  (registers the ops whose kernels the rules must equal)
from tensorweave.codegen.expr import ELEMENTWISE, REDUCTIONS, FusedExpr, evaluate, node_shapes
from tensorweave.codegen.rules import C_TYPES
from tensorweave.graph import dtypes
from tensorweave.ops import registry


def node(op, args, dtype="float32", **attrs):
    return {"op": op, "args": args, "attrs": attrs, "dtype": dtype}


def chain_expr():
    """relu(x*w + b)*0.5 + z, also returning x*w + b."""
    return FusedExpr(
        inputs=[{"dtype": "float32", "shape": [4]}] * 3 + [{"dtype": "float32", "shape": None}],
        nodes=[node("Mul", [["in", 0], ["in", 1]]), node("Add", [["node", 0], ["in", 2]]),
               node("Relu", [["node", 1]]), node("Mul", [["node", 2], ["const", 0.5, "float32"]]),
               node("Add", [["node", 3], ["in", 3]])],
        outputs=[4, 1])


# -- the data structure ----------------------------------------------------------------------------
def test_json_round_trip_is_canonical_and_equal():
    expr = chain_expr()
    text = expr.to_json()
    assert FusedExpr.from_json(text) == expr
    assert FusedExpr.from_json(text).to_json() == text
    assert json.loads(text)["outputs"] == [4, 1]
    assert " " not in text  # compact: the text is a cache key


def test_tuples_and_lists_give_the_same_expression():
    a = chain_expr()
    b = FusedExpr(inputs=tuple(a.inputs), nodes=tuple(a.nodes), outputs=(4, 1))
    assert a == b and a.to_json() == b.to_json()


def test_printed_form_names_every_node():
    text = str(chain_expr())
    assert "t1: float32 = Add(t0, in2)" in text
    assert "t3: float32 = Mul(t2, 0.5:float32)" in text
    assert text.endswith("return t4, t1")


def test_output_dtypes_and_uses():
    expr = chain_expr()
    assert expr.output_dtypes == ["float32", "float32"]
    assert expr.uses()[1] == [2]
    assert expr.uses()[4] == []


def test_node_shapes_broadcast():
    assert node_shapes(chain_expr(), [(3, 4), (4,), (1, 4), ()]) == [(3, 4)] * 5


@pytest.mark.parametrize("nodes, outputs, message", [
    ([node("Frobnicate", [["in", 0]])], [0], "no elementwise rule"),
    ([node("Add", [["in", 0]])], [0], "1 args for arity 2"),
    ([node("Neg", [["node", 0]])], [0], "bad arg"),
    ([node("Neg", [["in", 5]])], [0], "bad arg"),
    ([node("Neg", [["in", 0]], dtype="float64")], [0], "has dtype float32, not float64"),
    ([node("Less", [["in", 0], ["in", 0]])], [0], "has dtype bool"),
    ([node("Neg", [["in", 0]])], [1], "not a node index"),
    ([], [], "at least one node"),
])
def test_malformed_expressions_are_rejected(nodes, outputs, message):
    with pytest.raises(ValueError, match=message):
        FusedExpr(inputs=[{"dtype": "float32", "shape": None}], nodes=nodes, outputs=outputs)


def test_bad_reduce_and_epilogue_are_rejected():
    base = dict(inputs=[{"dtype": "float32", "shape": None}], nodes=[node("Neg", [["in", 0]])],
                outputs=[0])
    with pytest.raises(ValueError, match="bad reduce"):
        FusedExpr(**base, reduce={"op": "Median", "axes": [0], "keepdims": False})
    with pytest.raises(ValueError, match="sorted"):
        FusedExpr(**base, reduce={"op": "Sum", "axes": [1, 0], "keepdims": False})
    with pytest.raises(ValueError, match="epilogue_of"):
        FusedExpr(**base, epilogue_of={"op": "MatMul"})


def test_evaluate_applies_the_reduction_to_output_0_only():
    expr = FusedExpr(inputs=[{"dtype": "float64", "shape": [2, 3]}] * 2,
                     nodes=[node("SquaredDifference", [["in", 0], ["in", 1]], "float64")],
                     outputs=[0, 0], reduce={"op": "Sum", "axes": [1], "keepdims": False})
    x, y = np.arange(6.0).reshape(2, 3), np.ones((2, 3))
    total, elementwise = evaluate(expr, np, x, y)
    np.testing.assert_array_equal(elementwise, (x - y) ** 2)
    np.testing.assert_array_equal(total, ((x - y) ** 2).sum(axis=1))


def test_constants_keep_their_dtype():
    expr = FusedExpr(inputs=[{"dtype": "float32", "shape": None}],
                     nodes=[node("Mul", [["in", 0], ["const", 0.1, "float32"]])], outputs=[0])
    (result,) = evaluate(expr, np, np.ones(3, np.float32))
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, np.float32(0.1))


# -- rules against the op kernels --------------------------------------------------------------
def _values(dtype: str, shape, rng, positive=False):
    d = np.dtype(dtype)
    if d.kind == "b":
        return rng.random(shape) > 0.5
    if d.kind in "iu":
        low = 0 if (positive or d.kind == "u") else -5
        return rng.integers(low, 6, size=shape).astype(d)
    values = rng.uniform(0.1 if positive else -3, 3, size=shape)
    return values.astype(d)


# op type -> (arg dtypes, op attrs, args positive): one row per dtype family the rule accepts
_RULE_CASES = {
    "Cast": [(["float32"], {"DstT": dtypes.float64}), (["int32"], {"DstT": dtypes.float32}),
             (["bool"], {"DstT": dtypes.int32}), (["float64"], {"DstT": dtypes.bool_})],
    "BiasAdd": [(["float32", "float32"], {"data_format": "NHWC"})],
    "SelectV2": [(["bool", "float32", "float32"], {}), (["bool", "int64", "int64"], {})],
    "AddN": [(["float32"] * 4, {}), (["int32"] * 2, {})],
    "ClipByValue": [(["float32"] * 3, {}), (["int32"] * 3, {})],
}
_POSITIVE = {"Sqrt", "Rsqrt", "Log", "Log1p", "Pow", "Reciprocal", "RealDiv"}
_SHAPES = {1: [(5, 7)], 2: [(5, 7), (7,)], 3: [(5, 7), (1, 7), (5, 1)]}


def _rule_cases():
    for op_type, rule in sorted(ELEMENTWISE.items()):
        rows = _RULE_CASES.get(op_type)
        if rows is None:
            arity = rule.arity or 2
            rows = []
            for kind, dtype in (("f", "float32"), ("f", "float64"), ("i", "int32"),
                                ("u", "uint8"), ("b", "bool")):
                if rule.accepts([dtype] * arity, {}):
                    rows.append(([dtype] * arity, {}))
        for arg_dtypes, attrs in rows:
            yield pytest.param(op_type, arg_dtypes, attrs, id=f"{op_type}-{'-'.join(arg_dtypes)}")


def _expr_attrs(attrs):
    return {k: (v.name if isinstance(v, dtypes.DType) else v) for k, v in attrs.items()}


@pytest.mark.parametrize("op_type, arg_dtypes, attrs", list(_rule_cases()))
def test_numpy_rule_is_bitwise_the_op_kernel(op_type, arg_dtypes, attrs):
    rule = ELEMENTWISE[op_type]
    assert rule.accepts(arg_dtypes, _expr_attrs(attrs))
    rng = np.random.default_rng(7)
    shapes = _SHAPES[len(arg_dtypes)] if len(arg_dtypes) <= 3 else [(5, 7)] * len(arg_dtypes)
    args = [_values(d, s, rng, op_type in _POSITIVE) for d, s in zip(arg_dtypes, shapes)]
    if op_type in ("ReluGrad", "EluGrad"):
        args[1][..., :3] = 0  # the edge of the mask
    expected = registry.get(op_type).kernel(attrs, np)(*args)
    got = rule.numpy(np, *args, **_expr_attrs(attrs))
    assert got.dtype == expected.dtype == np.dtype(rule.result_dtype(arg_dtypes,
                                                                      _expr_attrs(attrs)))
    np.testing.assert_array_equal(got, expected)
    assert got.tobytes() == np.asarray(expected).tobytes()  # bitwise, signed zeros included
    out = np.full(expected.shape, 99, dtype=expected.dtype)
    written = rule.numpy(np, *args, out=out, **_expr_attrs(attrs))
    assert written is out and out.tobytes() == np.asarray(expected).tobytes()


@pytest.mark.parametrize("op_type", sorted(ELEMENTWISE))
def test_every_rule_names_a_registered_fusable_op(op_type):
    op_def = registry.get(op_type)
    assert op_def.fusion in ("elementwise", "broadcast") and not op_def.stateful


def test_rules_refuse_what_would_change_semantics():
    assert not ELEMENTWISE["Cast"].accepts(["float32"], {"DstT": "int32"})  # truncation
    assert not ELEMENTWISE["BiasAdd"].accepts(["float32", "float32"], {"data_format": "NCHW"})
    assert not ELEMENTWISE["Add"].accepts(["float16", "float16"], {})
    assert not ELEMENTWISE["RealDiv"].accepts(["int32", "int32"], {})
    assert ELEMENTWISE["Add"].accepts(["int64", "int64"], {})


@pytest.mark.parametrize("op_type", sorted(REDUCTIONS))
@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_reduce_rule_is_bitwise_the_op_kernel(op_type, dtype):
    rule = REDUCTIONS[op_type]
    if not rule.accepts(dtype):
        assert op_type == "Mean" and dtype == "int32"
        return
    kernel = registry.get(op_type).kernel({"keep_dims": True}, np)
    x = _values(dtype, (4, 6), np.random.default_rng(3))
    for axes in [(0,), (1,), (0, 1)]:
        expected = kernel(x, np.array(axes, np.int32))
        got = rule.numpy(np, x, axes, True)
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()
    empty = np.zeros((0, 3), np.dtype(dtype))
    expected = kernel(empty, np.array([0], np.int32))
    np.testing.assert_array_equal(rule.numpy(np, empty, (0,), True), expected)


# -- templates --------------------------------------------------------------------------------
_SAMPLE = np.array([-2.5, -1.0, -0.25, 0.0, -0.0, 0.5, 1.0, 3.0, 7.0, np.nan], np.float64)


def _template_args(op_type, dtype):
    """Sample arrays for a template check; args stay in the rule's domain."""
    rule = ELEMENTWISE[op_type]
    arity = rule.arity or 3
    if op_type == "SelectV2":
        cond = np.array([True, False] * 5)
        return [cond, _SAMPLE.astype(dtype), _SAMPLE[::-1].astype(dtype)], ["bool", dtype, dtype]
    base = np.abs(_SAMPLE) + 0.5 if op_type in _POSITIVE else _SAMPLE
    args = [base.astype(dtype)] + [np.roll(base, k + 1).astype(dtype) for k in range(arity - 1)]
    if op_type == "ClipByValue":
        args[1], args[2] = np.full(len(_SAMPLE), -1.0, dtype), np.full(len(_SAMPLE), 2.0, dtype)
    return args, [dtype] * arity


def _template_rules(dtype):
    for op_type, rule in sorted(ELEMENTWISE.items()):
        if op_type == "Cast":
            continue  # its C cast is checked by the numba/CUDA backends' own tests
        args, arg_dtypes = _template_args(op_type, dtype)
        if rule.accepts(arg_dtypes, {}):
            yield op_type, args, arg_dtypes


def _assert_same_values(got, expected, message):
    """Equal within 2e-6, NaN where NaN, and zeros of the same sign (numpy's abs(-0.0) is
    +0.0, and a later division tells the two apart)."""
    np.testing.assert_allclose(got, expected, rtol=2e-6, equal_nan=True, err_msg=message)
    zeros = (np.asarray(expected) == 0)
    np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(np.asarray(expected)[zeros]),
                                  err_msg=f"{message}: sign of zero")


def _expected(op_type, args, arg_dtypes):
    rule = ELEMENTWISE[op_type]
    with np.errstate(all="ignore"):
        return rule.numpy(np, *args), rule.result_dtype(arg_dtypes, {})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_python_templates_compute_what_numpy_computes(dtype):
    names = [f"a{i}" for i in range(4)]
    for op_type, args, arg_dtypes in _template_rules(dtype):
        expected, out_dtype = _expected(op_type, args, arg_dtypes)
        source = ELEMENTWISE[op_type].py_expr(out_dtype, names[:len(args)])
        fn = eval(f"lambda {', '.join(names[:len(args)])}: {source}", {"np": np})
        with np.errstate(all="ignore"):
            got = np.array([fn(*(a[i] for a in args)) for i in range(len(_SAMPLE))], out_dtype)
        _assert_same_values(got, expected, f"{op_type}: {source}")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_c_templates_compute_what_numpy_computes(dtype, tmp_path):
    """Every C template, compiled by gcc into one program that prints its results."""
    ctype = C_TYPES[dtype]
    rows = list(_template_rules(dtype))
    lines = ["#include <math.h>", "#include <stdbool.h>", "#include <stdio.h>", "int main(void) {"]
    for n, (op_type, args, arg_dtypes) in enumerate(rows):
        out_dtype = ELEMENTWISE[op_type].result_dtype(arg_dtypes, {})
        for i, (a, d) in enumerate(zip(args, arg_dtypes)):
            values = ", ".join("NAN" if np.isnan(v) else repr(float(v)) for v in a.astype(float))
            lines.append(f"  {C_TYPES[d]} r{n}_a{i}[] = {{{values}}};")
        expr = ELEMENTWISE[op_type].c_expr(out_dtype, [f"a{i}" for i in range(len(args))])
        lines.append(f"  for (int k = 0; k < {len(_SAMPLE)}; k++) {{")
        for i, d in enumerate(arg_dtypes):
            lines.append(f"    {C_TYPES[d]} a{i} = r{n}_a{i}[k];")
        lines.append(f"    {C_TYPES[out_dtype]} r = {expr};")
        lines.append('    printf("%.17g\\n", (double)r);')
        lines.append("  }")
    lines += ["  return 0;", "}"]
    source = tmp_path / "templates.c"
    source.write_text("\n".join(lines))
    binary = tmp_path / "templates"
    subprocess.run(["gcc", "-O0", "-o", str(binary), str(source), "-lm"], check=True,
                   capture_output=True)
    printed = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    values = [float(v) for v in printed.split()]
    assert ctype in source.read_text()
    for n, (op_type, args, arg_dtypes) in enumerate(rows):
        expected, out_dtype = _expected(op_type, args, arg_dtypes)
        got = np.array(values[n * len(_SAMPLE):(n + 1) * len(_SAMPLE)], out_dtype)
        _assert_same_values(got, expected, op_type)
