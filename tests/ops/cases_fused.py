"""Table cases of the Fused op (which only the fusion pass creates; no gradient)."""

from __future__ import annotations

import numpy as np

from tensorweave.codegen.expr import FusedExpr
from tensorweave.ops.common import output
from tensorweave.ops.registry import apply_op
from tests.ops.harness import OpCase, rand


def _node(op, args, dtype="float32", **attrs):
    return {"op": op, "args": args, "attrs": attrs, "dtype": dtype}


def _fused(expr: FusedExpr, fused_ops):
    def build(*tensors):
        op = apply_op("Fused", tensors, {"expr": expr.to_json(), "fused_ops": fused_ops})
        return list(op.outputs) if len(op.outputs) > 1 else output(op)
    return build


_F32 = {"dtype": "float32", "shape": None}

_CHAIN = FusedExpr(
    inputs=[_F32] * 3,
    nodes=[_node("Mul", [["in", 0], ["in", 1]]), _node("Add", [["node", 0], ["in", 2]]),
           _node("Relu", [["node", 1]]), _node("Mul", [["node", 2], ["const", 0.5, "float32"]])],
    outputs=[3, 1])

_REDUCE = FusedExpr(
    inputs=[_F32] * 2,
    nodes=[_node("SquaredDifference", [["in", 0], ["in", 1]])],
    outputs=[0], reduce={"op": "Sum", "axes": [1], "keepdims": False})

_COMPARE = FusedExpr(
    inputs=[_F32, {"dtype": "float64", "shape": None}],
    nodes=[_node("Greater", [["in", 0], ["const", 0.0, "float32"]], "bool"),
           _node("Cast", [["node", 0]], "float64", DstT="float64"),
           _node("Mul", [["node", 1], ["in", 1]], "float64")],
    outputs=[0, 2])

_EPILOGUE = FusedExpr(
    inputs=[_F32, _F32],
    nodes=[_node("BiasAdd", [["in", 0], ["in", 1]], data_format="NHWC"),
           _node("Tanh", [["node", 0]])],
    outputs=[1],
    epilogue_of={"op": "MatMul", "attrs": {"transpose_a": False, "transpose_b": True},
                 "num_inputs": 2})


def _chain_reference(x, w, b):
    t = x * w + b
    return np.maximum(t, 0) * np.float32(0.5), t


CASES = [
    OpCase("Fused", _fused(_CHAIN, ["Mul:mul", "Add:add", "Relu:relu", "Mul:mul_1"]),
           [rand(3, 4), rand(4, seed=1), rand(3, 1, seed=2)], _chain_reference, grad=False,
           name="chain_broadcast"),
    OpCase("Fused", _fused(_REDUCE, ["SquaredDifference:d", "Sum:s"]),
           [rand(3, 5), rand(5, seed=1)], lambda x, y: ((x - y) ** 2).sum(axis=1), grad=False,
           name="reduce_sum"),
    OpCase("Fused", _fused(_COMPARE, ["Greater:g", "Cast:c", "Mul:m"]),
           [rand(2, 3), rand(2, 3, dtype="float64", seed=3)],
           lambda x, y: (x > 0, (x > 0) * y), grad=False, name="bool_and_cast"),
    OpCase("Fused", _fused(_EPILOGUE, ["MatMul:mm", "BiasAdd:b", "Tanh:t"]),
           [rand(3, 4), rand(5, 4, seed=1), rand(5, seed=2)],
           lambda a, b, bias: np.tanh(a @ b.T + bias), grad=False, name="matmul_epilogue"),
]
