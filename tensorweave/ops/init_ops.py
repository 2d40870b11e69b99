"""Initializers: callables ``init(shape, dtype=None, partition_info=None) -> Tensor`` that
``get_variable`` calls for a new variable's initial value (TF1's ``tf.*_initializer``)."""

from __future__ import annotations

import math

import numpy as np

from tensorweave.graph import dtypes
from tensorweave.graph.core import Tensor
from tensorweave.graph.dtypes import as_dtype
from tensorweave.graph.shapes import as_shape
from tensorweave.ops.common import constant_tensor, to_numpy

__all__ = ["zeros_initializer", "ones_initializer", "constant_initializer",
           "random_normal_initializer", "truncated_normal_initializer",
           "random_uniform_initializer", "variance_scaling_initializer",
           "glorot_uniform_initializer", "glorot_normal_initializer"]


# -- initializers ---------------------------------------------------------------------------------
class Initializer:
    """Base of the initializers: ``init(shape, dtype=None, partition_info=None) -> Tensor``."""

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _dims(shape) -> list:
    shape = as_shape(shape)
    if not shape.is_fully_defined():
        raise ValueError(f"an initializer needs a fully defined shape, got {shape}")
    return shape.as_list()


def _filled(shape, value: np.ndarray, name) -> Tensor:
    # A zero-stride view: a big zeros/ones initializer costs no memory until assigned.
    array = np.broadcast_to(value, _dims(shape))
    return constant_tensor(array, name=name)


class Zeros(Initializer):
    """Initializes to zeros."""

    def __init__(self, dtype=dtypes.float32):
        self.dtype = as_dtype(dtype)

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = as_dtype(dtype or self.dtype)
        return _filled(shape, np.zeros((), dtype.np), "zeros")

    def get_config(self):
        return {"dtype": self.dtype.name}


class Ones(Initializer):
    """Initializes to ones."""

    def __init__(self, dtype=dtypes.float32):
        self.dtype = as_dtype(dtype)

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = as_dtype(dtype or self.dtype)
        return _filled(shape, np.ones((), dtype.np), "ones")

    def get_config(self):
        return {"dtype": self.dtype.name}


class Constant(Initializer):
    """Initializes to ``value``: a scalar fills the shape; a shorter list is padded with its
    last element (an error with ``verify_shape``)."""

    def __init__(self, value=0, dtype=dtypes.float32, verify_shape=False):
        self.value = value
        self.dtype = as_dtype(dtype)
        self.verify_shape = verify_shape

    def __call__(self, shape, dtype=None, partition_info=None, verify_shape=None):
        dtype = as_dtype(dtype or self.dtype)
        verify = self.verify_shape if verify_shape is None else verify_shape
        value = to_numpy(self.value, dtype)
        dims = _dims(shape)
        if value.size == 1 and not verify:
            return _filled(dims, value.reshape(()), "Const")
        return constant_tensor(_fitted(value, dims, verify), name="Const")

    def get_config(self):
        return {"value": self.value, "dtype": self.dtype.name, "verify_shape": self.verify_shape}


def _fitted(value: np.ndarray, dims, verify) -> np.ndarray:
    needed = int(np.prod(dims, dtype=np.int64))
    if verify and list(value.shape) != dims:
        raise TypeError(f"constant_initializer: expected a value of shape {dims}, got "
                        f"{list(value.shape)}")
    if value.size > needed:
        raise ValueError(f"too many elements provided: needed at most {needed}, but received "
                         f"{value.size}")
    flat = value.reshape(-1)
    if flat.size < needed:
        if flat.size == 0:
            raise ValueError(f"constant_initializer: an empty value cannot fill shape {dims}")
        flat = np.concatenate([flat, np.repeat(flat[-1:], needed - flat.size)])
    return flat.reshape(dims)


def _random_ops():
    from tensorweave.ops import random
    return random


def _float_dtype(dtype, what) -> dtypes.DType:
    dtype = as_dtype(dtype)
    if not dtype.is_floating:
        raise ValueError(f"{what}: expected a floating point dtype, got {dtype.name}")
    return dtype


class RandomNormal(Initializer):
    """Initializes from a normal distribution."""

    def __init__(self, mean=0.0, stddev=1.0, seed=None, dtype=dtypes.float32):
        self.mean, self.stddev, self.seed = mean, stddev, seed
        self.dtype = _float_dtype(dtype, "random_normal_initializer")

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = _float_dtype(dtype or self.dtype, "random_normal_initializer")
        return _random_ops().random_normal(_dims(shape), self.mean, self.stddev, dtype,
                                           seed=self.seed)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed,
                "dtype": self.dtype.name}


class TruncatedNormal(RandomNormal):
    """Initializes from a normal distribution cut at two standard deviations (redrawn)."""

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = _float_dtype(dtype or self.dtype, "truncated_normal_initializer")
        return _random_ops().truncated_normal(_dims(shape), self.mean, self.stddev, dtype,
                                              seed=self.seed)


class RandomUniform(Initializer):
    """Initializes from a uniform distribution on [minval, maxval)."""

    def __init__(self, minval=0, maxval=None, seed=None, dtype=dtypes.float32):
        self.minval, self.maxval, self.seed = minval, maxval, seed
        self.dtype = as_dtype(dtype)

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = as_dtype(dtype or self.dtype)
        return _random_ops().random_uniform(_dims(shape), self.minval, self.maxval, dtype,
                                            seed=self.seed)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed,
                "dtype": self.dtype.name}


_TRUNCATED_STDDEV = 0.87962566103423978  # stddev of a unit normal truncated at +-2


class VarianceScaling(Initializer):
    """Samples with variance ``scale / n``, n the fan-in, fan-out or their average.

    ``distribution``: "truncated_normal" (alias "normal"), "untruncated_normal" or "uniform"."""

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("normal", "uniform", "truncated_normal", "untruncated_normal")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 dtype=dtypes.float32):
        if scale <= 0.0:
            raise ValueError(f"variance_scaling_initializer: scale must be positive, got {scale}")
        if mode not in self._MODES:
            raise ValueError(f"variance_scaling_initializer: invalid mode {mode!r}; expected "
                             f"one of {', '.join(self._MODES)}")
        if distribution.lower() not in self._DISTRIBUTIONS:
            raise ValueError(f"variance_scaling_initializer: invalid distribution "
                             f"{distribution!r}; expected one of {', '.join(self._DISTRIBUTIONS)}")
        self.scale, self.mode, self.seed = scale, mode, seed
        self.distribution = distribution.lower()
        self.dtype = _float_dtype(dtype, "variance_scaling_initializer")

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = _float_dtype(dtype or self.dtype, "variance_scaling_initializer")
        dims = _dims(shape)
        fan_in, fan_out = _fans(dims)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        scale = self.scale / max(1.0, n)
        random = _random_ops()
        if self.distribution in ("normal", "truncated_normal"):
            return random.truncated_normal(dims, 0.0, math.sqrt(scale) / _TRUNCATED_STDDEV,
                                           dtype, seed=self.seed)
        if self.distribution == "untruncated_normal":
            return random.random_normal(dims, 0.0, math.sqrt(scale), dtype, seed=self.seed)
        limit = math.sqrt(3.0 * scale)
        return random.random_uniform(dims, -limit, limit, dtype, seed=self.seed)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed, "dtype": self.dtype.name}


def _fans(dims) -> tuple:
    """(fan_in, fan_out) of a weight of shape ``dims``; conv kernels count their window."""
    if not dims:
        return 1, 1
    if len(dims) == 1:
        return dims[0], dims[0]
    receptive = int(np.prod(dims[:-2], dtype=np.int64)) if len(dims) > 2 else 1
    return dims[-2] * receptive, dims[-1] * receptive


class GlorotUniform(VarianceScaling):
    """Glorot (Xavier) uniform: limit sqrt(6 / (fan_in + fan_out))."""

    def __init__(self, seed=None, dtype=dtypes.float32):
        super().__init__(1.0, "fan_avg", "uniform", seed, dtype)

    def get_config(self):
        return {"seed": self.seed, "dtype": self.dtype.name}


class GlorotNormal(VarianceScaling):
    """Glorot (Xavier) truncated normal: stddev sqrt(2 / (fan_in + fan_out))."""

    def __init__(self, seed=None, dtype=dtypes.float32):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed, dtype)

    def get_config(self):
        return {"seed": self.seed, "dtype": self.dtype.name}


zeros_initializer = Zeros
ones_initializer = Ones
constant_initializer = Constant
random_normal_initializer = RandomNormal
truncated_normal_initializer = TruncatedNormal
random_uniform_initializer = RandomUniform
variance_scaling_initializer = VarianceScaling
glorot_uniform_initializer = GlorotUniform
glorot_normal_initializer = GlorotNormal


def he_normal(seed=None):
    return VarianceScaling(2.0, "fan_in", "truncated_normal", seed)


def he_uniform(seed=None):
    return VarianceScaling(2.0, "fan_in", "uniform", seed)


def lecun_normal(seed=None):
    return VarianceScaling(1.0, "fan_in", "truncated_normal", seed)


def lecun_uniform(seed=None):
    return VarianceScaling(1.0, "fan_in", "uniform", seed)
