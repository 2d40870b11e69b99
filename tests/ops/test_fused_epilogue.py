"""A small epilogue (below ``MIN_FUSED_ELEMENTS``) runs op by op in the heavy op's result.

``ops/fused.py`` evaluates an epilogue chain whose every node reads the one before it directly
into the MatMul/Conv2D result it was given, when that result is a temporary nobody else sees.
The values must be those of the plain op-by-op evaluation, to the bit, and anything that is not
such a chain (or whose inputs would broadcast the result larger) must take the plain path.
"""

from __future__ import annotations

import numpy as np
import pytest

from tensorweave.codegen.expr import FusedExpr, evaluate
from tensorweave.ops import fused, registry

F32 = {"dtype": "float32", "shape": None}
MATMUL = {"op": "MatMul", "attrs": {"transpose_a": False, "transpose_b": False},
          "num_inputs": 2}


def node(op, args, dtype="float32", **attrs):
    return {"op": op, "args": args, "attrs": attrs, "dtype": dtype}


def epilogue(nodes, outputs, inputs=2, reduce=None):
    return FusedExpr(inputs=[F32] * inputs, nodes=nodes, outputs=outputs, reduce=reduce,
                     epilogue_of=MATMUL)


BIAS_RELU = epilogue([node("Add", [["in", 0], ["in", 1]]), node("Relu", [["node", 0]])], [1])
BIAS_RELU_HALF = epilogue([node("Add", [["in", 0], ["in", 1]]), node("Relu", [["node", 0]]),
                           node("Mul", [["node", 1], ["const", 0.5, "float32"]])], [2])
RELU_GRAD = epilogue([node("ReluGrad", [["in", 0], ["in", 1]])], [0])

NOT_CHAINS = {
    "middle_output": epilogue([node("Add", [["in", 0], ["in", 1]]),
                               node("Relu", [["node", 0]])], [0]),
    "two_outputs": epilogue([node("Add", [["in", 0], ["in", 1]]),
                             node("Relu", [["node", 0]])], [1, 0]),
    "reads_an_older_node": epilogue([node("Add", [["in", 0], ["in", 1]]),
                                     node("Relu", [["node", 0]]),
                                     node("Add", [["node", 1], ["node", 0]])], [2]),
    "reads_input_0_later": epilogue([node("Add", [["in", 0], ["in", 1]]),
                                     node("Mul", [["node", 0], ["in", 0]])], [1]),
    "no_alias_rule": epilogue([node("Elu", [["in", 0]])], [0], inputs=1),
    "changes_dtype": epilogue([node("Greater", [["in", 0], ["in", 1]], "bool")], [0]),
    "reduces": epilogue([node("Add", [["in", 0], ["in", 1]])], [0],
                        reduce={"op": "Sum", "axes": [0], "keepdims": False}),
}


def test_chains_are_recognised():
    for expr in (BIAS_RELU, BIAS_RELU_HALF, RELU_GRAD):
        assert fused._in_place_chain(expr)


@pytest.mark.parametrize("name", sorted(NOT_CHAINS))
def test_other_expressions_take_the_plain_path(name):
    assert not fused._in_place_chain(NOT_CHAINS[name])


def kernel(expr):
    return registry.get("Fused").kernel({"expr": expr.to_json(), "fused_ops": []}, np)


@pytest.mark.parametrize("expr, second", [(BIAS_RELU, (16,)), (BIAS_RELU_HALF, (1, 16)),
                                          (RELU_GRAD, (8, 16))],
                         ids=["bias_relu", "bias_relu_half", "relu_grad"])
def test_in_place_chain_equals_the_plain_evaluation(expr, second):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((8, 5), np.float32), rng.standard_normal((5, 16), np.float32)
    other = rng.standard_normal(second).astype(np.float32)
    other.reshape(-1)[:3] = [-0.0, np.nan, np.inf]
    with np.errstate(all="ignore"):
        got = kernel(expr)(a, b, other)
        want = evaluate(expr, np, np.matmul(a, b), other)[0]
    assert got.shape == want.shape and got.tobytes() == want.tobytes()


def test_an_input_larger_than_the_result_takes_the_plain_path(monkeypatch):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((1, 5), np.float32), rng.standard_normal((5, 16), np.float32)
    bias = rng.standard_normal((4, 16)).astype(np.float32)  # broadcasts [1, 16] to [4, 16]
    calls = []
    monkeypatch.setattr(fused, "_evaluate_chain_into",
                        lambda *args: calls.append(1) or pytest.fail("in place"))
    got = kernel(BIAS_RELU)(a, b, bias)
    assert got.shape == (4, 16) and not calls
    np.testing.assert_array_equal(got, np.maximum(np.matmul(a, b) + bias, 0))


def test_a_result_someone_else_holds_is_not_overwritten(monkeypatch):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((8, 5), np.float32), rng.standard_normal((5, 16), np.float32)
    held = []
    real_get, heavy = registry.get, registry.get("MatMul").kernel(MATMUL["attrs"], np)

    class HoldingMatMul:  # a MatMul whose results someone keeps a reference to
        def kernel(self, attrs, xp):
            return lambda x, y: held.append(heavy(x, y)) or held[-1]
    monkeypatch.setattr(registry, "get",
                        lambda op_type: HoldingMatMul() if op_type == "MatMul"
                        else real_get(op_type))
    bias = rng.standard_normal(16).astype(np.float32)
    got = kernel(BIAS_RELU)(a, b, bias)
    assert held[0] is not got
    np.testing.assert_array_equal(held[0], np.matmul(a, b))  # left as the heavy op made it
