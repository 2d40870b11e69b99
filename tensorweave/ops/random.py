"""Random ops: normal, truncated normal, uniform, shuffle, multinomial, and dropout.

Seeds follow TF1. ``tw.set_random_seed(g)`` sets the graph seed; an op's seed pair is
``(g, s)`` when both the graph seed and the op seed ``s`` are set, ``(g, n)`` when only the graph
seed is (``n``: the number of ops in the graph when the random op is created, so a program built
in the same order gets the same numbers), ``(DEFAULT_GRAPH_SEED, s)`` when only the op seed is,
and no seeds at all otherwise (fresh entropy in every session). The pair is stored in the attrs
``seed`` and ``seed2``.

Each random op draws from its own stream, ``ctx.random_stream(op name, seed pair)``: a Philox
generator keyed by the seed pair alone, so a seeded op gives the same numbers on every machine.
Each Session starts every stream anew and each ``run`` continues it, as TF1's kernels do.

Values are generated in the requested dtype. Uniform floats are ``k * 2**-m`` for a random
integer ``k`` of ``m`` mantissa bits (23 for float32, 52 for float64, 10 for float16, 7 for
bfloat16), as TF builds them: every value is exact in its dtype and ``1 + u < 2``, which keeps
``floor(keep_prob + u)`` in dropout a 0/1 mask (``Generator.random`` uses one more bit, and
``1 + u`` would round up to 2 for its largest value).
"""

from __future__ import annotations

import numbers
import operator

import numpy as np

from tensorweave.graph import dtypes
from tensorweave.graph.core import Tensor, get_default_graph
from tensorweave.graph.dtypes import as_dtype
from tensorweave.graph.scopes import name_scope
from tensorweave.graph.shapes import TensorShape, as_shape
from tensorweave.ops import math as math_ops
from tensorweave.ops.common import FLOATS, check_dtype, convert_to_tensor, output
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, constant_value, register

__all__ = ["set_random_seed", "get_seed", "random_normal", "truncated_normal", "random_uniform",
           "random_shuffle", "multinomial"]

DEFAULT_GRAPH_SEED = 87654321
_SHAPE_DTYPES = frozenset({"int32", "int64"})
_UNIFORM_INT_DTYPES = frozenset({"int32", "int64"})
_MANTISSA_BITS = {"float16": 10, "bfloat16": 7, "float32": 23, "float64": 52}
_TRUNCATE_AT = 2.0  # truncated normal: values beyond this many stddevs are redrawn


# -- seeds --------------------------------------------------------------------------------------
def set_random_seed(seed):
    """Set the graph-level seed of the default graph (random ops created later derive theirs)."""
    get_default_graph().seed = None if seed is None else operator.index(seed)


def get_seed(op_seed):
    """The ``(seed, seed2)`` pair a random op created now on the default graph would use."""
    return _seed_pair(get_default_graph(), op_seed)


def _seed_pair(graph, op_seed):
    op_seed = None if op_seed is None else operator.index(op_seed)
    if graph.seed is not None:
        # The op counter makes ops of one program differ, and a rebuilt program repeat itself.
        return graph.seed, len(graph) if op_seed is None else op_seed
    if op_seed is not None:
        return DEFAULT_GRAPH_SEED, op_seed
    return None, None


def _random_op(op_type, inputs, attrs, seed, name):
    """Add a random op with its seed attrs; the seed counter is read as the op is created."""
    graph = inputs[0].graph if inputs else get_default_graph()
    seed1, seed2 = _seed_pair(graph, seed)
    return apply_op(op_type, inputs, {**attrs, "seed": seed1, "seed2": seed2}, name=name)


def _with_stream_key(infer):
    """Wrap an inference rule to record the op's final name as the key of its random stream.

    Kernels see only attrs, and an op's name is final only once the graph has named it (also
    when ``import_graph_def`` rebuilds it under a prefix), which is when ``infer`` runs.
    """
    def infer_and_key(op):
        specs = infer(op)
        op.attrs["_stream_key"] = op.name
        return specs
    return infer_and_key


def _stream(ctx, attrs) -> np.random.Generator:
    seeds = None if attrs["seed"] is None else (attrs["seed"], attrs["seed2"])
    return ctx.random_stream(attrs["_stream_key"], seeds)


def _on_device(values, xp):
    return values if xp is np else xp.asarray(values)


def _to_host(values, xp):
    return values if xp is np else xp.asnumpy(values)


# -- shapes given as a tensor -------------------------------------------------------------------
def _shape_tensor(shape) -> Tensor:
    """The ``shape`` argument of a random op as a 1-D int tensor."""
    if isinstance(shape, Tensor):
        return shape
    if isinstance(shape, TensorShape):
        if not shape.is_fully_defined():
            raise ValueError(f"the shape of a random tensor must be fully defined, got {shape}")
        shape = shape.as_list()
    return convert_to_tensor(shape, dtype=dtypes.int32, name="shape")


def _static_shape(shape_tensor: Tensor) -> TensorShape:
    """What shape inference knows of the shape a 1-D shape tensor holds."""
    if shape_tensor.dtype.name not in _SHAPE_DTYPES:
        raise TypeError(f"shape must be an int32 or int64 tensor, got {shape_tensor.dtype.name}")
    rank = shape_tensor.shape.rank
    if rank is not None and rank != 1:
        raise ValueError(f"shape must be a 1-D tensor, got a tensor of shape {shape_tensor.shape}")
    value = constant_value(shape_tensor)
    if value is not None:
        return TensorShape(_checked_dims(value))
    length = shape_tensor.shape.as_tuple()
    if length is None or length[0] is None:
        return TensorShape(None)
    return TensorShape([None] * length[0])


def _checked_dims(shape_value) -> tuple:
    dims = tuple(int(d) for d in np.reshape(shape_value, -1))
    if any(d < 0 for d in dims):
        raise ValueError(f"the shape of a random tensor must not have negative dimensions, "
                         f"got {list(dims)}")
    return dims


def _infer_from_shape(op):
    return [(op.attrs["dtype"], _static_shape(op.inputs[0]))]


def _float_dtype(dtype, what):
    dtype = as_dtype(dtype)
    if dtype.name not in FLOATS:
        raise TypeError(f"{what}: dtype must be a floating type, got {dtype.name}")
    return dtype


# -- RandomStandardNormal -----------------------------------------------------------------------
def _standard_normal(rng, dims, dtype):
    if dtype.name == "float64":
        return rng.standard_normal(dims)
    values = rng.standard_normal(dims, dtype=np.float32)
    return values if dtype.name == "float32" else values.astype(dtype.np)


def _normal_kernel(attrs, xp):
    dtype = attrs["dtype"]

    def random_standard_normal(ctx, shape):
        values = _standard_normal(_stream(ctx, attrs), _checked_dims(_to_host(shape, xp)), dtype)
        return _on_device(values, xp)
    return random_standard_normal


register(OpDef("RandomStandardNormal", _with_stream_key(_infer_from_shape), _normal_kernel,
               grad=NO_GRADIENT, stateful=True, uses_context=True))


def random_normal(shape, mean=0.0, stddev=1.0, dtype=dtypes.float32, seed=None, name=None):
    """Normal samples of the given ``shape``: ``standard_normal * stddev + mean``.

    ``mean`` and ``stddev`` may be tensors (they receive gradients).
    """
    dtype = _float_dtype(dtype, "random_normal")
    with name_scope(name, "random_normal", [shape, mean, stddev]):
        shape = _shape_tensor(shape)
        op = _random_op("RandomStandardNormal", [shape], {"dtype": dtype}, seed,
                        "RandomStandardNormal")
        return _scale_and_shift(output(op), stddev, mean)


def _scale_and_shift(values, scale, shift):
    """``values * scale + shift`` with math ops, leaving out a Python ``* 1`` and ``+ 0``."""
    if not _is_python_number(scale, 1):
        values = math_ops.multiply(values, convert_to_tensor(scale, dtype=values.dtype))
    if not _is_python_number(shift, 0):
        values = math_ops.add(values, convert_to_tensor(shift, dtype=values.dtype))
    return values


def _is_python_number(value, number) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == number


# -- TruncatedNormal ----------------------------------------------------------------------------
def _truncated_standard_normal(rng, dims, dtype):
    native = np.float64 if dtype.name == "float64" else np.float32
    values = rng.standard_normal(dims, dtype=native)
    flat = values.reshape(-1)
    redraw = np.flatnonzero(np.abs(flat) > _TRUNCATE_AT)
    while redraw.size:
        fresh = rng.standard_normal(redraw.size, dtype=native)
        flat[redraw] = fresh
        redraw = redraw[np.abs(fresh) > _TRUNCATE_AT]
    return values.astype(dtype.np, copy=False)


def _truncated_normal_kernel(attrs, xp):
    dtype = attrs["dtype"]

    def truncated_normal_kernel(ctx, shape):
        rng = _stream(ctx, attrs)
        values = _truncated_standard_normal(rng, _checked_dims(_to_host(shape, xp)), dtype)
        return _on_device(values, xp)
    return truncated_normal_kernel


register(OpDef("TruncatedNormal", _with_stream_key(_infer_from_shape), _truncated_normal_kernel,
               grad=NO_GRADIENT, stateful=True, uses_context=True))


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=dtypes.float32, seed=None, name=None):
    """Normal samples with those more than 2 stddevs from the mean redrawn."""
    dtype = _float_dtype(dtype, "truncated_normal")
    with name_scope(name, "truncated_normal", [shape, mean, stddev]):
        shape = _shape_tensor(shape)
        op = _random_op("TruncatedNormal", [shape], {"dtype": dtype}, seed, "TruncatedNormal")
        return _scale_and_shift(output(op), stddev, mean)


# -- RandomUniform ------------------------------------------------------------------------------
def _unit_uniform(rng, dims, dtype):
    """Uniform in [0, 1): a random mantissa scaled by 2**-bits, exact in ``dtype``."""
    bits = _MANTISSA_BITS[dtype.name]
    integers = rng.integers(0, 1 << bits, size=dims, dtype=np.uint64 if bits > 32 else np.uint32)
    return integers.astype(dtype.np) * dtype.np.type(2.0 ** -bits)


def _uniform_kernel(attrs, xp):
    dtype = attrs["dtype"]

    def random_uniform_kernel(ctx, shape):
        values = _unit_uniform(_stream(ctx, attrs), _checked_dims(_to_host(shape, xp)), dtype)
        return _on_device(values, xp)
    return random_uniform_kernel


register(OpDef("RandomUniform", _with_stream_key(_infer_from_shape), _uniform_kernel,
               grad=NO_GRADIENT, stateful=True, uses_context=True))


# -- RandomUniformInt ---------------------------------------------------------------------------
def _uniform_int_infer(op):
    shape, minval, maxval = op.inputs
    for bound, what in ((minval, "minval"), (maxval, "maxval")):
        if bound.shape.rank not in (None, 0):
            raise ValueError(f"{what} must be a scalar, got a tensor of shape {bound.shape}")
    if minval.dtype is not maxval.dtype:
        raise TypeError(f"minval ({minval.dtype.name}) and maxval ({maxval.dtype.name}) must "
                        f"have one dtype")
    return [(minval.dtype, _static_shape(shape))]


def _uniform_int_kernel(attrs, xp):
    def random_uniform_int(ctx, shape, minval, maxval):
        low, high = int(minval), int(maxval)
        if low >= high:
            raise ValueError(f"need minval < maxval, got minval {low} and maxval {high}")
        dims = _checked_dims(_to_host(shape, xp))
        values = _stream(ctx, attrs).integers(low, high, size=dims, dtype=np.dtype(minval.dtype))
        return _on_device(values, xp)
    return random_uniform_int


register(OpDef("RandomUniformInt", _with_stream_key(_uniform_int_infer), _uniform_int_kernel,
               grad=NO_GRADIENT, stateful=True, uses_context=True))


def random_uniform(shape, minval=0, maxval=None, dtype=dtypes.float32, seed=None, name=None):
    """Uniform samples in ``[minval, maxval)``; ``maxval`` defaults to 1 for floats and is
    required for integer dtypes (int32, int64)."""
    dtype = as_dtype(dtype)
    if dtype.name not in FLOATS | _UNIFORM_INT_DTYPES:
        raise TypeError(f"random_uniform: dtype must be a floating type, int32 or int64, got "
                        f"{dtype.name}")
    with name_scope(name, "random_uniform", [shape, minval, maxval]):
        shape = _shape_tensor(shape)
        if dtype.is_integer:
            return _random_uniform_int(shape, minval, maxval, dtype, seed)
        maxval = 1 if maxval is None else maxval
        op = _random_op("RandomUniform", [shape], {"dtype": dtype}, seed, "RandomUniform")
        values = output(op)
        if _is_python_number(minval, 0) and _is_python_number(maxval, 1):
            return values
        minval = convert_to_tensor(minval, dtype=dtype, name="min")
        maxval = convert_to_tensor(maxval, dtype=dtype, name="max")
        return math_ops.add(math_ops.multiply(values, math_ops.subtract(maxval, minval)), minval)


def _random_uniform_int(shape, minval, maxval, dtype, seed):
    if maxval is None:
        raise ValueError(f"random_uniform: maxval must be given for integer dtype {dtype.name}")
    minval = convert_to_tensor(minval, dtype=dtype, name="min")
    maxval = convert_to_tensor(maxval, dtype=dtype, name="max")
    low, high = constant_value(minval), constant_value(maxval)
    if low is not None and high is not None and np.ndim(low) == 0 and np.ndim(high) == 0 \
            and low >= high:
        raise ValueError(f"random_uniform: need minval < maxval, got minval {low} and maxval "
                         f"{high}")
    return output(_random_op("RandomUniformInt", [shape, minval, maxval], {}, seed,
                             "RandomUniformInt"))


# -- RandomShuffle ------------------------------------------------------------------------------
def _shuffle_kernel(attrs, xp):
    def random_shuffle_kernel(ctx, value):
        if np.ndim(value) == 0:
            return value
        order = _stream(ctx, attrs).permutation(value.shape[0])
        return value[_on_device(order, xp)]  # fancy indexing copies; the input stays as it was
    return random_shuffle_kernel


register(OpDef("RandomShuffle", _with_stream_key(lambda op: [(op.inputs[0].dtype,
                                                              op.inputs[0].shape)]),
               _shuffle_kernel, grad=NO_GRADIENT, stateful=True, uses_context=True))


def random_shuffle(value, seed=None, name=None):
    """``value`` with its slices along dimension 0 in a random order."""
    value = convert_to_tensor(value)
    return output(_random_op("RandomShuffle", [value], {}, seed, name or "RandomShuffle"))


# -- Multinomial --------------------------------------------------------------------------------
def _multinomial_infer(op):
    logits, num_samples = op.inputs
    if logits.shape.rank not in (None, 2):
        raise ValueError(f"logits must be a matrix [batch_size, num_classes], got shape "
                         f"{logits.shape}")
    if num_samples.shape.rank not in (None, 0):
        raise ValueError(f"num_samples must be a scalar, got shape {num_samples.shape}")
    batch = None if logits.shape.rank is None else logits.shape.as_list()[0]
    if logits.shape.rank == 2 and logits.shape.as_list()[1] == 0:
        raise ValueError("logits must have at least one class, got shape "
                         f"{logits.shape}")
    samples = constant_value(num_samples)
    if samples is not None and int(samples) < 0:
        raise ValueError(f"num_samples must be >= 0, got {int(samples)}")
    return [(op.attrs["output_dtype"], [batch, None if samples is None else int(samples)])]


def _sample_classes(rng, logits, num_samples):
    """Inverse-CDF sampling per row: the class whose cumulative probability passes u."""
    logits = logits.astype(np.float64)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(probabilities, axis=1)
    draws = rng.random((logits.shape[0], num_samples)) * cumulative[:, -1:]
    classes = np.empty(draws.shape, dtype=np.int64)
    for row in range(logits.shape[0]):
        classes[row] = np.searchsorted(cumulative[row], draws[row], side="right")
    return np.minimum(classes, logits.shape[1] - 1)  # rounding may leave u at the total


def _multinomial_kernel(attrs, xp):
    out_dtype = attrs["output_dtype"].np

    def multinomial_kernel(ctx, logits, num_samples):
        logits = _to_host(logits, xp)
        if logits.shape[1] == 0:
            raise ValueError("logits must have at least one class")
        if int(num_samples) < 0:
            raise ValueError(f"num_samples must be >= 0, got {int(num_samples)}")
        classes = _sample_classes(_stream(ctx, attrs), logits, int(num_samples))
        return _on_device(classes.astype(out_dtype), xp)
    return multinomial_kernel


register(OpDef("Multinomial", _with_stream_key(_multinomial_infer), _multinomial_kernel,
               grad=NO_GRADIENT, stateful=True, uses_context=True))


def multinomial(logits, num_samples, seed=None, name=None, output_dtype=None):
    """``num_samples`` class indices per row of ``logits`` ([batch, classes], unnormalized
    log-probabilities), as a [batch, num_samples] int64 (or ``output_dtype``) tensor."""
    output_dtype = dtypes.int64 if output_dtype is None else as_dtype(output_dtype)
    if output_dtype.name not in ("int32", "int64"):
        raise TypeError(f"multinomial: output_dtype must be int32 or int64, got "
                        f"{output_dtype.name}")
    with name_scope(name, "multinomial", [logits]):
        logits = convert_to_tensor(logits)
        check_dtype("Multinomial", logits, FLOATS, arg="logits")
        num_samples = convert_to_tensor(num_samples, dtype=dtypes.int32, name="num_samples")
        return output(_random_op("Multinomial", [logits, num_samples],
                                 {"output_dtype": output_dtype}, seed, "Multinomial"))


# -- dropout (exported as tw.nn.dropout) --------------------------------------------------------
def dropout(x, keep_prob=None, noise_shape=None, seed=None, name=None, rate=None):
    """Keep each element of ``x`` with probability ``keep_prob`` (scaled by ``1 / keep_prob``),
    else zero it. Give exactly one of ``keep_prob`` and ``rate = 1 - keep_prob``; either may be
    a scalar tensor, e.g. a placeholder fed 0.5 when training and 1.0 when testing.

    ``noise_shape`` (broadcastable to x's shape) shares one keep/drop decision along the dims
    where it is 1.
    """
    if (keep_prob is None) == (rate is None):
        raise ValueError("dropout needs exactly one of keep_prob and rate, got "
                         f"{'both' if rate is not None else 'neither'}")
    with name_scope(name, "dropout", [x]):
        x = convert_to_tensor(x, name="x")
        if not x.dtype.is_floating:
            raise ValueError(f"dropout: x has to be a floating point tensor since it is scaled, "
                             f"got a {x.dtype.name} tensor")
        keep_prob = _keep_probability(keep_prob, rate, x.dtype)
        if _static_scalar(keep_prob) == 1:
            return x
        noise = random_uniform(_noise_shape(x, noise_shape), seed=seed, dtype=x.dtype)
        # keep_prob + u is in [keep_prob, 1 + keep_prob): its floor is 1 with probability keep_prob
        mask = math_ops.floor(math_ops.add(keep_prob, noise))
        result = math_ops.multiply(math_ops.divide(x, keep_prob), mask)
        # keep_prob is a scalar and the noise broadcasts to x, so the result has x's shape
        result.set_shape(x.shape)
        return result


def _keep_probability(keep_prob, rate, dtype) -> Tensor:
    """``keep_prob`` (or ``1 - rate``) as a scalar tensor of ``dtype``, checked when static."""
    if rate is not None:
        _check_static_probability(rate, "rate", lambda r: 0 <= r < 1, "[0, 1)")
        if isinstance(rate, Tensor):
            keep_prob = math_ops.subtract(convert_to_tensor(1, dtype=dtype), rate,
                                          name="keep_prob")
        else:
            keep_prob = convert_to_tensor(1.0 - float(rate), dtype=dtype, name="keep_prob")
    else:
        _check_static_probability(keep_prob, "keep_prob", lambda p: 0 < p <= 1, "(0, 1]")
        keep_prob = convert_to_tensor(keep_prob, dtype=dtype, name="keep_prob")
    if not keep_prob.shape.is_compatible_with(TensorShape([])):
        raise ValueError(f"dropout: keep_prob must be a scalar, got shape {keep_prob.shape}")
    return keep_prob


def _check_static_probability(value, what, valid, interval):
    static = _static_scalar(value)
    if static is not None and not valid(static):
        raise ValueError(f"dropout: {what} must be a scalar tensor or a float in the range "
                         f"{interval}, got {static:g}")


def _static_scalar(value):
    """A Python float for a number or a constant scalar tensor, else None."""
    if isinstance(value, Tensor):
        value = constant_value(value)
        if value is None or np.ndim(value) != 0:
            return None
    elif not isinstance(value, numbers.Real):
        return None
    return float(value)


def _noise_shape(x, noise_shape):
    """The shape of the uniform noise: x's shape, or ``noise_shape`` with unknown dims taken
    from x's static shape; checked to broadcast to x's shape."""
    from tensorweave.ops.array import shape as shape_of
    if noise_shape is None:
        return x.shape.as_list() if x.shape.is_fully_defined() else shape_of(x)
    if isinstance(noise_shape, Tensor):
        return noise_shape
    dims = as_shape(noise_shape).as_list()
    x_dims = x.shape.as_list() if x.shape.rank is not None else None
    if x_dims is not None and len(x_dims) == len(dims):
        dims = [xd if d is None else d for d, xd in zip(dims, x_dims)]
    if any(d is None for d in dims):
        raise ValueError(f"dropout: noise_shape {dims} has unknown dimensions that x's shape "
                         f"{x.shape} does not fill in")
    if x_dims is not None and not _broadcasts_to(dims, x_dims):
        raise ValueError(f"dropout: noise_shape {dims} does not broadcast to the shape of x "
                         f"{x.shape}")
    return dims


def _broadcasts_to(dims, target) -> bool:
    if len(dims) > len(target):
        return False
    return all(d == 1 or t is None or d == t for d, t in zip(reversed(dims), reversed(target)))
