"""Element types of tensors.

A ``DType`` wraps one numpy dtype and answers the questions the op library asks of it (is it a
float, an integer, how many bytes). ``bfloat16`` comes from the ``ml_dtypes`` package, the same
numpy extension type other array libraries use, so a bfloat16 array is an ordinary numpy array.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np


class DType:
    """One tensor element type, e.g. ``tw.float32``."""

    __slots__ = ("name", "as_numpy_dtype", "_np")

    def __init__(self, name: str, numpy_type):
        self.name = name
        self.as_numpy_dtype = numpy_type
        self._np = np.dtype(numpy_type)

    @property
    def np(self) -> np.dtype:
        """The numpy dtype object."""
        return self._np

    @property
    def base_dtype(self) -> "DType":
        return self

    @property
    def is_floating(self) -> bool:
        return self.name in _FLOATS

    @property
    def is_integer(self) -> bool:
        return self.name in _INTEGERS

    @property
    def is_unsigned(self) -> bool:
        return self.name.startswith("uint")

    @property
    def is_bool(self) -> bool:
        return self.name == "bool"

    @property
    def is_numeric(self) -> bool:
        return not self.is_bool and self.name != "string"

    @property
    def size(self) -> int:
        """Bytes per element."""
        return self._np.itemsize

    @property
    def min(self):
        return _limits(self)[0]

    @property
    def max(self):
        return _limits(self)[1]

    def is_compatible_with(self, other) -> bool:
        return self is as_dtype(other)

    def __repr__(self) -> str:
        return f"tw.{self.name}"

    def __str__(self) -> str:
        return self.name

    def __reduce__(self):
        return as_dtype, (self.name,)


def _limits(dtype: DType):
    if dtype.is_floating:
        info = ml_dtypes.finfo(dtype.np) if dtype.name == "bfloat16" else np.finfo(dtype.np)
        return float(info.min), float(info.max)
    if dtype.is_integer:
        info = np.iinfo(dtype.np)
        return int(info.min), int(info.max)
    if dtype.is_bool:
        return False, True
    raise TypeError(f"{dtype.name} has no numeric range")


bool_ = DType("bool", np.bool_)
int8 = DType("int8", np.int8)
int16 = DType("int16", np.int16)
int32 = DType("int32", np.int32)
int64 = DType("int64", np.int64)
uint8 = DType("uint8", np.uint8)
uint16 = DType("uint16", np.uint16)
uint32 = DType("uint32", np.uint32)
uint64 = DType("uint64", np.uint64)
float16 = DType("float16", np.float16)
bfloat16 = DType("bfloat16", ml_dtypes.bfloat16)
float32 = DType("float32", np.float32)
float64 = DType("float64", np.float64)
string = DType("string", np.object_)

half = float16
double = float64

ALL = (bool_, int8, int16, int32, int64, uint8, uint16, uint32, uint64,
       float16, bfloat16, float32, float64, string)
_BY_NAME = {d.name: d for d in ALL}
_BY_NAME.update({"half": float16, "double": float64, "float": float32, "int": int32})
_BY_NUMPY = {d.np: d for d in ALL if d is not string}
_FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})
_INTEGERS = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})


def as_dtype(value) -> DType:
    """Convert a DType, a name (``"float32"``), a numpy dtype or a Python type to a DType."""
    if isinstance(value, DType):
        return value
    if isinstance(value, str):
        if value in _BY_NAME:
            return _BY_NAME[value]
        raise TypeError(f"unknown dtype name {value!r}; known: {', '.join(sorted(_BY_NAME))}")
    if value is bool:
        return bool_
    if value is int:
        return int32
    if value is float:
        return float32
    if value is str or value is bytes:
        return string
    try:
        np_dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"cannot interpret {value!r} as a tensorweave dtype") from None
    if np_dtype.kind in "OSU":
        return string
    if np_dtype in _BY_NUMPY:
        return _BY_NUMPY[np_dtype]
    raise TypeError(f"numpy dtype {np_dtype} has no tensorweave equivalent")


def truediv_result(dtype: DType) -> DType:
    """The dtype ``x / y`` produces (TF1 ``truediv``: small ints to float32, wider to float64)."""
    if dtype.is_floating:
        return dtype
    if dtype.name in ("int8", "uint8", "int16", "uint16"):
        return float32
    if dtype.name in ("int32", "uint32", "int64", "uint64"):
        return float64
    raise TypeError(f"x / y is not defined for {dtype.name} tensors")
