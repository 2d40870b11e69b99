"""``tw.py_func``: a Python function as an op of the graph (TF1's ``tf.py_func``).

    def clip_and_count(x):
        return np.clip(x, 0, 1), np.int64((x > 1).sum())
    y, n = tw.py_func(clip_and_count, [x], [tw.float32, tw.int64])

The function gets numpy arrays and returns one array (or a tuple of them, one per ``Tout``);
each result is converted to its ``Tout`` dtype. Its outputs have unknown shapes; give them one
with ``set_shape`` when the rest of the graph needs it. The op runs on CPU devices only, is
stateful (never folded, merged or pruned as a pure function), and has no gradient.

The function itself lives in this process (a table keyed by the op's ``token`` attr), not in
the graph: a graph exported with a py_func op imports elsewhere, but running it there raises
``NotFoundError`` naming the op.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

from tensorweave import errors
from tensorweave.graph.dtypes import as_dtype
from tensorweave.graph.shapes import TensorShape
from tensorweave.ops.common import convert_to_tensor
from tensorweave.ops.registry import NO_GRADIENT, OpDef, apply_op, register

__all__ = ["py_func"]

_FUNCTIONS: dict = {}
_tokens = itertools.count()
_lock = threading.Lock()


def py_func(func, inp, Tout, stateful: bool = True, name=None):  # noqa: N803 (TF1's name)
    """Wrap ``func(*arrays)`` as an op computing tensors of dtypes ``Tout``.

    ``Tout`` is a dtype (the result is one Tensor) or a list of dtypes (a list of Tensors).
    ``stateful`` is accepted for TF1 compatibility; the op is always treated as stateful."""
    single = not isinstance(Tout, (list, tuple))
    dtypes = [as_dtype(Tout)] if single else [as_dtype(t) for t in Tout]
    with _lock:
        token = f"pyfunc_{next(_tokens)}"
        _FUNCTIONS[token] = func
    inputs = [convert_to_tensor(x) for x in inp]
    op = apply_op("PyFunc", inputs, {"token": token, "Tout": dtypes}, name=name or "PyFunc")
    return op.outputs[0] if single else list(op.outputs)


def _infer(op):
    return [(dtype, TensorShape(None)) for dtype in op.attrs["Tout"]]


def _kernel(attrs, xp):
    token = attrs["token"]
    targets = [dtype.np for dtype in attrs["Tout"]]

    def call(*arrays):
        func = _FUNCTIONS.get(token)
        if func is None:
            raise errors.NotFoundError(None, None, f"the Python function of this py_func "
                                                   f"({token}) is not registered in this "
                                                   f"process (graphs carry no Python code)")
        result = func(*arrays)
        results = result if isinstance(result, (list, tuple)) else (result,)
        if len(results) != len(targets):
            raise ValueError(f"the function returned {len(results)} values, Tout has "
                             f"{len(targets)}")
        converted = tuple(np.asarray(r).astype(t, copy=False) for r, t in zip(results, targets))
        return converted if len(converted) > 1 else converted[0]
    return call


register(OpDef("PyFunc", _infer, _kernel, grad=NO_GRADIENT, stateful=True,
               device_types=("CPU",)))
