"""Random graphs for differential tests: hypothesis draws a sequence of op applications from a
table of builders over the registry's ops; each builder may refuse operands whose shapes do not
fit (ValueError/TypeError at build time), in which case the draw moves on."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import tensorweave as tw

SHAPES = [(3, 4), (4,), (1, 4), (3, 1), (), (2, 3, 4)]

UNARY = ["negative", "abs", "square", "tanh", "sigmoid", "sin", "cos", "exp", "identity",
         "nn.relu", "nn.softplus", "nn.elu"]
BINARY = ["add", "subtract", "multiply", "maximum", "minimum", "squared_difference"]
REDUCE = ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min"]


def _resolve(name):
    obj = tw
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _available(names):
    return [n for n in names if _resolve(n) is not None]


def _apply(kind, name, operands, extra):
    fn = _resolve(name)
    if kind == "unary":
        x = operands[0]
        if name == "exp":
            return fn(tw.tanh(x)) if _resolve("tanh") else None
        return fn(x)
    if kind == "binary":
        return fn(operands[0], operands[1])
    if kind == "reduce":
        x = operands[0]
        rank = x.shape.rank
        axis = None if not rank else extra % (rank + 1) - 1
        return fn(x, axis=None if axis == -1 else axis, keepdims=bool(extra % 2))
    if kind == "matmul":
        a, b = operands
        return fn(a, b, transpose_b=bool(extra % 2))
    if kind == "transpose":
        return fn(operands[0])
    return None


@st.composite
def random_graphs(draw, max_ops=12):
    """(graph, placeholders, feed values, fetches) of a random graph of float32 ops."""
    graph = tw.Graph()
    kinds = [("unary", n) for n in _available(UNARY)] + \
        [("binary", n) for n in _available(BINARY)] + \
        [("reduce", n) for n in _available(REDUCE)] + [("matmul", "matmul")]
    if _resolve("transpose"):
        kinds.append(("transpose", "transpose"))
    rng_seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(rng_seed)
    with graph.as_default():
        n_inputs = draw(st.integers(1, 3))
        tensors, placeholders, feeds = [], [], {}
        for i in range(n_inputs):
            shape = draw(st.sampled_from(SHAPES))
            ph = tw.placeholder(tw.float32, shape, name=f"in{i}")
            placeholders.append(ph)
            feeds[ph] = rng.uniform(-2, 2, size=shape).astype(np.float32)
            tensors.append(ph)
        if draw(st.booleans()):
            tensors.append(tw.constant(rng.uniform(-1, 1, size=(4,)).astype(np.float32)))
        for _ in range(draw(st.integers(1, max_ops))):
            kind, name = draw(st.sampled_from(kinds))
            arity = 2 if kind in ("binary", "matmul") else 1
            operands = [tensors[draw(st.integers(0, len(tensors) - 1))] for _ in range(arity)]
            try:
                out = _apply(kind, name, operands, draw(st.integers(0, 7)))
            except (ValueError, TypeError):
                continue
            if out is not None:
                tensors.append(out)
        n_fetch = draw(st.integers(1, min(3, len(tensors))))
        fetches = tensors[-n_fetch:]
    return graph, placeholders, feeds, fetches
