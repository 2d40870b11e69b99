"""Cases for the random ops.

Every case is seeded, so its numbers are a fixed function of the seed pair: the references
recompute them from the same Philox stream, derived here independently of the executor (the
stream of seeds ``(a, b)`` is keyed by the first 16 bytes of sha256 of ``repr((a, b))``). With
no graph seed, an op seed ``s`` gives the pair ``(87654321, s)``.
"""

import hashlib

import ml_dtypes
import numpy as np

import tensorweave as tw
from tests.ops.harness import OpCase, rand

DEFAULT_GRAPH_SEED = 87654321


def philox(op_seed, graph_seed=DEFAULT_GRAPH_SEED):
    digest = hashlib.sha256(repr((graph_seed, op_seed)).encode()).digest()
    return np.random.Generator(np.random.Philox(key=int.from_bytes(digest[:16], "little")))


def normal(op_seed, shape, dtype="float32"):
    native = "float64" if dtype == "float64" else "float32"
    return philox(op_seed).standard_normal(shape, dtype=native).astype(dtype)


def truncated(op_seed, shape):
    rng = philox(op_seed)
    values = rng.standard_normal(shape, dtype=np.float32).reshape(-1)
    while True:
        beyond = np.flatnonzero(np.abs(values) > 2)
        if not beyond.size:
            return values.reshape(shape)
        values[beyond] = rng.standard_normal(beyond.size, dtype=np.float32)


MANTISSA = {"float16": 10, "bfloat16": 7, "float32": 23, "float64": 52}


def uniform(op_seed, shape, dtype="float32"):
    bits = MANTISSA[dtype]
    k = philox(op_seed).integers(0, 2 ** bits, size=shape,
                                 dtype="uint64" if bits > 32 else "uint32")
    return (k / 2.0 ** bits).astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)


def shuffled(op_seed, x):
    return x[philox(op_seed).permutation(len(x))]


def multinomial(op_seed, logits, num_samples):
    rng = philox(op_seed)
    u = rng.random((logits.shape[0], num_samples))
    p = np.exp(logits - logits.max(axis=1, keepdims=True).astype(np.float64))
    cdf = np.cumsum(p, axis=1)
    samples = np.zeros(u.shape, dtype=np.int64)
    for i in range(u.shape[0]):
        for j in range(u.shape[1]):
            samples[i, j] = min(int(np.sum(cdf[i] <= u[i, j] * cdf[i, -1])), logits.shape[1] - 1)
    return samples


def f32(x):
    return np.float32(x)


CASES = [
    OpCase("RandomStandardNormal", lambda: tw.random_normal([3, 4], seed=11), [],
           lambda: normal(11, (3, 4)), grad=False),
    OpCase("RandomStandardNormal",
           lambda: tw.random_normal([2, 5], mean=1.5, stddev=0.5, seed=12), [],
           lambda: normal(12, (2, 5)) * f32(0.5) + f32(1.5), grad=False, name="mean_stddev"),
    OpCase("RandomStandardNormal", lambda: tw.random_normal([4], dtype=tw.float64, seed=1), [],
           lambda: normal(1, (4,), "float64"), grad=False, name="float64"),
    OpCase("RandomStandardNormal", lambda: tw.random_normal([4], dtype=tw.float16, seed=2), [],
           lambda: normal(2, (4,), "float16"), grad=False, name="float16"),
    OpCase("RandomStandardNormal", lambda: tw.random_normal([4], dtype=tw.bfloat16, seed=3), [],
           lambda: normal(3, (4,), ml_dtypes.bfloat16), grad=False, name="bfloat16"),
    OpCase("RandomStandardNormal", lambda: tw.random_normal([0, 3], seed=4), [],
           lambda: np.zeros((0, 3), "float32"), grad=False, name="empty"),
    OpCase("RandomStandardNormal", lambda: tw.random_normal([], seed=5), [],
           lambda: normal(5, ()), grad=False, name="scalar"),
    OpCase("TruncatedNormal", lambda: tw.truncated_normal([60], seed=13), [],
           lambda: truncated(13, (60,)), grad=False),
    OpCase("TruncatedNormal", lambda: tw.truncated_normal([3, 2], mean=-1.0, stddev=3.0, seed=6),
           [], lambda: truncated(6, (3, 2)) * f32(3.0) + f32(-1.0), grad=False,
           name="mean_stddev"),
    OpCase("RandomUniform", lambda: tw.random_uniform([3, 4], seed=14), [],
           lambda: uniform(14, (3, 4)), grad=False),
    OpCase("RandomUniform", lambda: tw.random_uniform([5], minval=-2.0, maxval=3.0, seed=7), [],
           lambda: uniform(7, (5,)) * f32(5.0) + f32(-2.0), grad=False, name="range"),
    OpCase("RandomUniform", lambda: tw.random_uniform([4], dtype=tw.float64, seed=8), [],
           lambda: uniform(8, (4,), "float64"), grad=False, name="float64"),
    OpCase("RandomUniform", lambda: tw.random_uniform([4], dtype=tw.float16, seed=9), [],
           lambda: uniform(9, (4,), "float16"), grad=False, name="float16"),
    OpCase("RandomUniform", lambda: tw.random_uniform([4], dtype=tw.bfloat16, seed=10), [],
           lambda: uniform(10, (4,), "bfloat16"), grad=False, name="bfloat16"),
    OpCase("RandomUniformInt",
           lambda: tw.random_uniform([3, 3], minval=0, maxval=10, dtype=tw.int32, seed=15), [],
           lambda: philox(15).integers(0, 10, size=(3, 3), dtype="int32"), grad=False),
    OpCase("RandomUniformInt",
           lambda: tw.random_uniform([6], minval=-5, maxval=5, dtype=tw.int64, seed=16), [],
           lambda: philox(16).integers(-5, 5, size=(6,), dtype="int64"), grad=False,
           name="int64"),
    OpCase("RandomShuffle", lambda x: tw.random_shuffle(x, seed=17), [rand(6, 2)],
           lambda x: shuffled(17, x), grad=False),
    OpCase("RandomShuffle", lambda x: tw.random_shuffle(x, seed=18),
           [np.arange(5, dtype="int32")], lambda x: shuffled(18, x), grad=False, name="int32"),
    OpCase("RandomShuffle", lambda x: tw.random_shuffle(x, seed=19),
           [np.zeros((0, 3), "float32")], lambda x: x, grad=False, name="empty"),
    OpCase("Multinomial", lambda logits: tw.multinomial(logits, 7, seed=20), [rand(3, 4)],
           lambda logits: multinomial(20, logits, 7), grad=False),
    OpCase("Multinomial",
           lambda logits: tw.multinomial(logits, 3, seed=21, output_dtype=tw.int32),
           [rand(2, 5, dtype="float64")],
           lambda logits: multinomial(21, logits, 3).astype("int32"), grad=False, name="int32"),
]
