"""numba backend: one generated ``@njit`` loop per fused expression and broadcast layout.

For a ``FusedExpr`` the backend writes Python source of a loop nest over the output, compiles it
with numba once per (expression, layout, parallel) and keeps it. The loop computes every node of
the expression for one element at a time, so each input is read once and each output written
once: arithmetic chains run at memory bandwidth.

Broadcasting. The output shape is collapsed into as few dims as possible (``broadcast_layout``):
adjacent dims merge when every input is either broadcast in both or in neither. Each input then
has, per collapsed dim, a flag "broadcast" (stride 0, fixed when the source is generated) or an
element stride (read at run time from its shape). Same-shape inputs give one flat loop; a bias
row or column gives two dims. The layout's flags are part of the cache key: one kernel serves
every shape with the same pattern.

Dtype semantics are numpy's: every node's value is cast to its dtype (numba computes int32 + int32
in int64; the cast wraps as numpy does), constants are module globals of their numpy type (a
bare ``0.5`` would make float32 arithmetic float64), and ``fastmath`` is off, so arithmetic is
bitwise numpy's. Transcendental functions call the C library (numba's ``np.tanh`` on a float32
is ``tanhf``) where numpy uses its own SIMD code: those results may differ by a few ulps
(``TRANSCENDENTAL_ULPS``), and they are scalar calls, several times slower than numpy's
(``inexact_ops`` names them; the selector keeps such expressions on numpy). Reductions are not generated here (``supports`` says so and the
selector picks the numpy backend).

numba is optional (the ``fast`` extra): ``available()`` is False without it. Compiled code is
cached on disk (``cache=True``) next to the generated source, in ``cache_dir()``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import re
import sys
import tempfile
import threading

import numpy as np

from tensorweave.codegen import buffers
from tensorweave.codegen.expr import FusedExpr
from tensorweave.codegen.rules import ELEMENTWISE, FUSABLE_DTYPES

__all__ = ["available", "supports", "inexact_ops", "EXACT_FUNCTIONS", "broadcast_layout",
           "Layout", "kernel_source", "NumbaKernel", "compile_numba", "cache_dir",
           "TRANSCENDENTAL_ULPS"]

# Largest difference from numpy per C-library math op: 3 ulps measured over every float32 and
# float64 math op of the rule table (tests/codegen/test_cpu_numba.py checks this bound).
TRANSCENDENTAL_ULPS = 4
KERNEL_NAME = "fused_kernel"

# Math functions whose numba result is numpy's to the bit: IEEE square root and rounding.
EXACT_FUNCTIONS = frozenset({"sqrt", "floor", "ceil", "rint"})


def inexact_ops(expr: FusedExpr) -> list:
    """Op types of ``expr`` that numba computes with C-library math (``np.tanh``, ``**``, ...),
    whose results may differ from numpy's by up to ``TRANSCENDENTAL_ULPS``; read off the rule
    table's Python templates."""
    found = []
    for node in expr.nodes:
        template = ELEMENTWISE[node["op"]].py
        called = set(re.findall(r"np\.(\w+)\(", template))
        if (called - EXACT_FUNCTIONS or "**" in template) and node["op"] not in found:
            found.append(node["op"])
    return found


def available() -> bool:
    """Whether numba can be imported (without importing it: that takes 0.2 s)."""
    return importlib.util.find_spec("numba") is not None


def supports(expr: FusedExpr) -> str | None:
    """None when this backend can run ``expr``, else why not."""
    if expr.reduce is not None:
        return "reductions are left to the numpy backend"
    dtypes = list(expr.input_dtypes) + [node["dtype"] for node in expr.nodes]
    dtypes += [arg[2] for node in expr.nodes for arg in node["args"] if arg[0] == "const"]
    odd = sorted({d for d in dtypes if d not in FUSABLE_DTYPES})
    if odd:
        return f"dtypes {odd} have no numba arithmetic matching numpy's"
    return None


# -- broadcast layout ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Layout:
    """The output collapsed to ``dims``; ``broadcast[j][d]``: input j is broadcast along dim d."""

    dims: tuple
    broadcast: tuple

    @property
    def key(self) -> tuple:
        """What the generated source depends on: the rank and the broadcast flags."""
        return (len(self.dims), self.broadcast)

    def strides(self) -> np.ndarray:
        """Element strides (int64, inputs x dims) of C-contiguous inputs in the collapsed dims.

        An input not broadcast along a collapsed dim spans all of it, so the layout alone
        decides its strides: the product of the later dims it is not broadcast along.
        """
        strides = np.zeros((max(1, len(self.broadcast)), len(self.dims)), dtype=np.int64)
        for j in range(len(self.broadcast)):
            step = 1
            for d in reversed(range(len(self.dims))):
                if not self.broadcast[j][d]:
                    strides[j, d] = step
                    step *= self.dims[d]
        return strides


def broadcast_layout(input_shapes, out_shape) -> Layout:
    """Collapse ``out_shape`` for inputs of ``input_shapes`` (numpy broadcasting rules)."""
    rank = len(out_shape)
    flags = []
    for shape in input_shapes:
        padded = (1,) * (rank - len(shape)) + tuple(shape)
        flags.append([padded[d] == 1 and out_shape[d] != 1 for d in range(rank)])
    dims: list = []
    merged: list = [[] for _ in input_shapes]
    for d in range(rank):
        if out_shape[d] == 1:
            continue  # a size-1 output dim moves no index
        if dims and all(f[d] == m[-1] for f, m in zip(flags, merged)):
            dims[-1] *= out_shape[d]
            continue
        dims.append(out_shape[d])
        for f, m in zip(flags, merged):
            m.append(f[d])
    if not dims:  # a single element: one loop of one, every input read at index 0
        return Layout((1,), tuple((True,) for _ in input_shapes))
    return Layout(tuple(dims), tuple(tuple(m) for m in merged))


# -- source generation ---------------------------------------------------------------------------
def _scalar_type(dtype: str) -> str:
    return "np.bool_" if dtype == "bool" else f"np.{dtype}"


class _SourceWriter:
    """Builds the kernel's source: constants as typed globals, then the loop nest."""

    def __init__(self, expr: FusedExpr, layout: Layout, parallel: bool, aliases=()):
        self.expr = expr
        self.layout = layout
        self.parallel = parallel
        # output m is written over input aliases[m] (-1: its own array); see ``kernel_source``
        self.aliases = tuple(aliases) or (-1,) * len(expr.outputs)
        self.constants: dict = {}  # (value repr, dtype) -> global name
        self.lines: list = []

    def constant(self, value, dtype) -> str:
        key = (repr(value), dtype)
        if key not in self.constants:
            self.constants[key] = f"K{len(self.constants)}"
        return self.constants[key]

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def used_inputs(self) -> list:
        used = {arg[1] for node in self.expr.nodes for arg in node["args"] if arg[0] == "in"}
        return sorted(used)

    def write(self) -> str:
        expr, layout = self.expr, self.layout
        k = len(layout.dims)
        params = [f"in{j}" for j in range(len(expr.inputs))]
        params += [f"out{m}" for m in range(len(expr.outputs))]
        for d in range(k):
            self.emit(1, f"d{d} = dims[{d}]")
        used = self.used_inputs()
        for j in used:
            if all(layout.broadcast[j]):
                self.emit(1, f"x{j} = in{j}[0]")  # a scalar: read once
        # index[name]: the offset expression of the output ("out") and of each input so far
        index = {"out": "0", **{j: "0" for j in used}}
        reads = {j: f"in{j}[{{}}]" for j in used}  # how the inner loop reads input j
        writes = {m: f"{self._target(m)}[{{}}]" for m in range(len(expr.outputs))}
        for d in range(k):
            loop = "prange" if (self.parallel and d == 0) else "range"
            if k > 1 and d == k - 1:
                reads, writes = self._rows(1 + d, d, index, used)
                index = {name: f"i{d}" for name in index}
            self.emit(1 + d, f"for i{d} in {loop}(d{d}):")
            if k == 1 or d < k - 1:
                index = self._offsets(2 + d, d, index)
        depth = 1 + k
        for j in used:
            if not all(layout.broadcast[j]) and reads[j] is not None:
                self.emit(depth, f"x{j} = {reads[j].format(index[j])}")
        for idx, node in enumerate(expr.nodes):
            self.emit(depth, f"t{idx} = {self._node(node)}")
        for m, node_index in enumerate(expr.outputs):
            self.emit(depth, f"{writes[m].format(index['out'])} = t{node_index}")
        return "\n".join(self._header(params) + self.lines) + "\n"

    def _rows(self, depth, d, index, used):
        """Before the innermost loop (dim ``d``): a view of this row of the output and of every
        input that varies along it, and the value of each input constant along it. The inner
        loop then indexes one-dimensional views by its own counter, which LLVM vectorises;
        flat offsets computed from the outer counters kept it scalar (a bias add over
        [39200, 32]: 0.77 -> 0.13 ms)."""
        reads, writes = {}, {}
        for j in used:
            if all(self.layout.broadcast[j]):
                reads[j] = None
            elif self.layout.broadcast[j][d]:
                self.emit(depth, f"x{j} = in{j}[{index[j]}]")  # constant along the row
                reads[j] = None
            else:
                self.emit(depth, f"r{j} = in{j}[{index[j]}:{index[j]} + d{d}]")
                reads[j] = f"r{j}[{{}}]"
        base = index["out"]
        for m in range(len(self.expr.outputs)):
            donor = self.aliases[m]
            if reads.get(donor) is not None:  # written over an input read along this row
                writes[m] = f"r{donor}[{{}}]"
                continue
            self.emit(depth, f"w{m} = out{m}[{base} * d{d}:({base} + 1) * d{d}]")
            writes[m] = f"w{m}[{{}}]"
        return reads, writes

    def _target(self, m) -> str:
        """The array output ``m`` is written into: its own, or the input it is written over
        (named as that input, so LLVM sees one array read and written at the same index and
        vectorises; through a second name it finds them overlapping and stays scalar)."""
        return f"in{self.aliases[m]}" if self.aliases[m] >= 0 else f"out{m}"

    def _offsets(self, depth, d, index) -> dict:
        """Offsets at loop level ``d``: the outer level's offset plus this index times a stride.

        The innermost dim's stride is written as 1 and trivial offsets are inlined, so the inner
        loop indexes ``in0[i1]``-style: a unit-stride loop LLVM vectorises.
        """
        innermost = d == len(self.layout.dims) - 1
        new = {}
        for name, prev in index.items():
            if name != "out" and self.layout.broadcast[name][d]:
                new[name] = prev
                continue
            if name == "out":
                step = f"i{d}" if d == 0 else f"{prev} * d{d} + i{d}"
            else:
                step = f"i{d}" if innermost else f"i{d} * strides[{name}, {d}]"
                step = step if prev == "0" else f"{prev} + {step}"
            if step == f"i{d}":
                new[name] = step
            else:
                var = "o" if name == "out" else f"b{name}_"
                self.emit(depth, f"{var}{d} = {step}")
                new[name] = f"{var}{d}"
        return new

    def _node(self, node) -> str:
        args = []
        for arg in node["args"]:
            if arg[0] == "in":
                args.append(f"x{arg[1]}")
            elif arg[0] == "node":
                args.append(f"t{arg[1]}")
            else:
                args.append(self.constant(arg[1], arg[2]))
        text = ELEMENTWISE[node["op"]].py_expr(node["dtype"], args)
        return f"{_scalar_type(node['dtype'])}({text})"

    def _header(self, params) -> list:
        lines = ["import numpy as np", "from numba import njit, prange", ""]
        for (value, dtype), name in self.constants.items():
            lines.append(f"{name} = {_scalar_type(dtype)}({value})")
        lines += ["", "", f"@njit(cache=True, fastmath=False, error_model='numpy', nogil=True, "
                          f"parallel={self.parallel})",
                  f"def {KERNEL_NAME}({', '.join(params)}, dims, strides):"]
        return lines


def kernel_source(expr: FusedExpr, layout: Layout, parallel: bool = False,
                  aliases=()) -> str:
    """The Python source of the numba kernel for ``expr`` on ``layout``.

    The function takes the inputs and outputs as flat C-contiguous arrays, then ``dims`` (int64,
    the collapsed output shape) and ``strides`` (int64, inputs x dims). ``aliases[m] = j``
    says the caller passes input ``j``'s array as output ``m`` too (a donated input); the loop
    then writes through the input's name.
    """
    return _SourceWriter(expr, layout, parallel, aliases).write()


# -- compiling and caching -----------------------------------------------------------------------
def cache_dir() -> str | None:
    """Where generated sources (and numba's compiled code beside them) are kept, or None."""
    base = os.environ.get("TENSORWEAVE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tensorweave")
    folder = os.path.join(base, "numba")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def _load(source: str):
    """The kernel function of ``source``: imported from a file (so numba caches it) if we can."""
    folder = cache_dir()
    if folder is None:
        namespace: dict = {}
        exec(compile(source.replace("cache=True", "cache=False"), "<fused kernel>", "exec"),
             namespace)
        return namespace[KERNEL_NAME]
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    path = os.path.join(folder, f"k{digest}.py")
    if not os.path.exists(path):
        # write then rename: another process may import the same file meanwhile
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(f"tensorweave_numba_k{digest}", path)
    module = importlib.util.module_from_spec(spec)
    # numba's cache finds the kernel's globals again by module name when it loads compiled code
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, KERNEL_NAME)


_COMPILED: dict = {}
_LOCK = threading.Lock()


def _compiled(expr: FusedExpr, layout: Layout, parallel: bool, aliases=()):
    key = (expr.to_json(), layout.key, parallel, tuple(aliases))
    fn = _COMPILED.get(key)
    if fn is None:
        with _LOCK:
            fn = _COMPILED.get(key)
            if fn is None:
                fn = _load(kernel_source(expr, layout, parallel, aliases))
                _COMPILED[key] = fn
    return fn


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one set of input shapes needs at each call: the compiled loops (by which outputs
    are written over which inputs) and their arguments."""

    layout: Layout
    out_shape: tuple
    dims: np.ndarray
    strides: np.ndarray
    empty: bool
    fns: dict = dataclasses.field(default_factory=dict)


class NumbaKernel:
    """A fused expression as a callable: ``kernel(*arrays, donate=()) -> tuple of outputs``.

    The calling convention is the numpy backend's: ``donate`` lists input positions the caller
    owns and never reads again, so an output of the same shape and dtype may be written over
    one (each element is read before it is written: loads come first in the loop body). Outputs
    are kept and reused at the next call once nothing else references them
    (``buffers.RetainedOutputs``).
    """

    def __init__(self, expr: FusedExpr, parallel: bool = False):
        reason = supports(expr)
        if reason is not None:
            raise ValueError(f"the numba backend cannot run this expression: {reason}")
        self.expr = expr
        self.parallel = parallel
        self.input_dtypes = [np.dtype(d) for d in expr.input_dtypes]
        self.output_dtypes = [np.dtype(d) for d in expr.output_dtypes]
        self._plans: dict = {}
        self._retained = buffers.RetainedOutputs()

    def __call__(self, *arrays, donate=()) -> tuple:
        if len(arrays) != len(self.expr.inputs):
            raise ValueError(f"the expression takes {len(self.expr.inputs)} inputs, "
                             f"got {len(arrays)}")
        arrays = [_contiguous(a, d) for a, d in zip(arrays, self.input_dtypes)]
        shapes = tuple(a.shape for a in arrays)
        plan = self._plans.get(shapes)
        if plan is None:
            plan = self._plans[shapes] = self._plan(shapes)
        outputs = self._outputs(arrays, plan.out_shape, donate)
        if not plan.empty:
            aliases = tuple(next((j for j, a in enumerate(arrays) if a is o), -1)
                            for o in outputs) if donate else ()
            if all(j < 0 for j in aliases):
                aliases = ()
            fn = plan.fns.get(aliases)
            if fn is None:
                fn = plan.fns[aliases] = _compiled(self.expr, plan.layout, self.parallel,
                                                   aliases)
            flat = [a.reshape(-1) for a in arrays] + [o.reshape(-1) for o in outputs]
            fn(*flat, plan.dims, plan.strides)
        self._retained.keep(outputs)
        return tuple(outputs)

    def _plan(self, shapes) -> _Plan:
        out_shape = tuple(np.broadcast_shapes(*shapes)) if shapes else ()
        if 0 in out_shape:
            return _Plan(None, out_shape, None, None, True)
        layout = broadcast_layout(shapes, out_shape)
        return _Plan(layout, out_shape, np.asarray(layout.dims, dtype=np.int64),
                     layout.strides(), False)

    def _outputs(self, arrays, shape, donate) -> list:
        outputs = []
        donors = [arrays[i] for i in donate if _can_overwrite(arrays[i], shape)]
        for k, dtype in enumerate(self.output_dtypes):
            donor = next((a for a in donors if a.dtype == dtype), None)
            if donor is not None:
                donors = [a for a in donors if a is not donor]
                outputs.append(donor)
            else:
                outputs.append(self._retained.empty(k, shape, dtype))
        return outputs


def _can_overwrite(array, shape) -> bool:
    # equal shapes: element i of the input is element i of the output, read before written
    return array.shape == tuple(shape) and array.flags.writeable and array.flags.c_contiguous


def _contiguous(a, dtype) -> np.ndarray:
    # not np.ascontiguousarray: it turns a 0-d array into shape (1,)
    a = np.asarray(a, dtype=dtype)
    return a if a.flags.c_contiguous else a.copy(order="C")


def compile_numba(expr: FusedExpr, xp=np, parallel: bool = False) -> NumbaKernel:
    """The numba kernel of ``expr`` (each layout's loop is compiled at its first call)."""
    if xp is not np:
        raise ValueError("the numba backend runs on numpy arrays only")
    return NumbaKernel(expr, parallel)
