"""Cases for the core ops: constants, placeholders, identity, add, add_n, matmul."""

import numpy as np

import tensorweave as tw
from tests.ops.harness import OpCase, arr, rand

CASES = [
    OpCase("Const", lambda: tw.constant([[1, 2], [3, 4]], dtype=tw.float32), [],
           lambda: arr([[1, 2], [3, 4]]), grad=False),
    OpCase("Placeholder", lambda x: x, [rand(2, 3)], lambda x: x, grad=False),
    OpCase("PlaceholderWithDefault",
           lambda x: tw.placeholder_with_default(x, [2, 3]) * 1.0, [rand(2, 3)], lambda x: x),
    OpCase("Identity", lambda x: tw.identity(x), [rand(3, 4)], lambda x: x),
    OpCase("Identity", lambda x: tw.identity(x), [np.zeros((0, 3), "float32")], lambda x: x,
           name="empty"),
    OpCase("ZerosLike", lambda x: tw.zeros_like(x), [rand(2, 3)], np.zeros_like, grad=False),
    OpCase("OnesLike", lambda x: tw.ones_like(x), [rand(2, 3, dtype="int32")], np.ones_like,
           grad=False),
    OpCase("NoOp", lambda: [], [], lambda: (), grad=False),
    OpCase("Add", tw.add, [rand(2, 3), rand(2, 3, seed=1)], np.add),
    OpCase("Add", tw.add, [rand(2, 1, 3), rand(4, 1, seed=1)], np.add, name="broadcast"),
    OpCase("Add", tw.add, [rand(3, dtype="int32"), rand(3, dtype="int32", seed=2)], np.add,
           name="int32"),
    OpCase("Add", tw.add, [rand(0, 3), rand(3, seed=1)], np.add, name="empty"),
    OpCase("AddN", lambda a, b, c: tw.add_n([a, b, c]), [rand(2, 3), rand(2, 3, seed=1),
                                                         rand(2, 3, seed=2)],
           lambda a, b, c: a + b + c),
    OpCase("MatMul", tw.matmul, [rand(3, 4), rand(4, 5, seed=1)], np.matmul, rtol=1e-4),
    OpCase("MatMul", lambda a, b: tw.matmul(a, b, transpose_a=True, transpose_b=True),
           [rand(4, 3), rand(5, 4, seed=1)], lambda a, b: a.T @ b.T, rtol=1e-4, name="tt"),
    OpCase("MatMul", tw.matmul, [rand(2, 3, 4), rand(2, 4, 5, seed=1)], np.matmul, rtol=1e-4,
           name="batch"),
    OpCase("MatMul", tw.matmul, [rand(2, 3, 4), rand(4, 5, seed=1)], np.matmul, rtol=1e-4,
           name="batch_broadcast"),
]
