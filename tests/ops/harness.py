"""The registry-driven op test table.

Each op family has a ``tests/ops/cases_<family>.py`` with ``CASES``, a list of ``OpCase``. A case
builds one op from placeholders, feeds ``inputs``, and compares the result with an independent
numpy ``reference``. The tests in ``test_registry.py`` run every case for shape inference
(static shape vs the kernel's real output shape, with known and with unknown input shapes),
values, and a finite-difference gradient check, and fail if a registered op has no case.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np


@dataclasses.dataclass
class OpCase:
    op_type: str                      # the OpDef type this case exercises
    build: Callable                   # build(*input_tensors) -> Tensor or list of Tensors
    inputs: list                      # numpy arrays fed to the placeholders
    reference: Callable               # reference(*input_arrays) -> array or tuple of arrays
    grad: bool = True                 # run the finite-difference gradient check
    grad_inputs: tuple | None = None  # indices of inputs to differentiate (default: all float)
    rtol: float = 1e-5
    atol: float = 1e-6
    name: str = ""
    unknown_shapes: bool = True       # also build with unknown-shape placeholders

    @property
    def id(self) -> str:
        return f"{self.op_type}-{self.name}" if self.name else self.op_type


def arr(values, dtype="float32"):
    return np.asarray(values, dtype=dtype)


def rand(*shape, dtype="float32", seed=0, low=-2.0, high=2.0):
    rng = np.random.default_rng(seed + 7 * len(shape) + sum(shape))
    if np.dtype(dtype).kind in "iu":
        return rng.integers(int(low), int(high) + 1, size=shape).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return rng.random(shape) > 0.5
    return rng.uniform(low, high, size=shape).astype(dtype)


def positive(*shape, dtype="float32", seed=0):
    return rand(*shape, dtype=dtype, seed=seed, low=0.5, high=2.5)
