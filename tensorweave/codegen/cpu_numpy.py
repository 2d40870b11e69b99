"""The numpy backend: a fused expression evaluated in cache-sized chunks with reused buffers.

Plain numpy evaluates ``relu(x*w + b)*0.5 + z`` one op at a time over whole arrays: every
intermediate is a fresh array written to and read back from main memory. This backend walks
the output in chunks of ``CHUNK_ELEMENTS`` elements instead and runs every node of the
expression on one chunk before moving on, writing each node into a chunk-sized scratch array
(``out=``) that stays in cache. Each input element is read once and each output element written
once per call; only chunk-sized temporaries are ever touched twice.

How the output is cut (``_Layout``): with ``S`` the broadcast shape of everything, the chunk
axis ``a`` is the first axis whose trailing block ``prod(S[a+1:])`` fits in a chunk; a chunk is
one index of each axis before ``a`` and a run of rows along ``a``. Every array (input, node,
output) is right-aligned against ``S`` and cut with the same key: its own index where its dim
is ``S``'s, index 0 where it is broadcast (dim 1). So chunk views broadcast against each other
exactly as the whole arrays did. Arrays that do not vary along the cut axes (scalars, biases,
constants) are *invariant*: nodes reading only invariant values run once per call, before the
chunk loop.

A reduction (``expr.reduce``) reduces each chunk of its node over the reduced axes it holds and
merges the partial result into an accumulator (``+`` for Sum/Mean, ``*`` for Prod, max/min), so
the reduced node never reaches main memory either. This reorders the sum (pairwise within a
chunk, sequential across chunks): results equal numpy's within rounding, not bitwise.

Kernels keep their outputs across calls (``buffers.RetainedOutputs``) and reuse one only when
nothing else references it. Scratch sets are per plan and per concurrent caller.

Non-numpy array modules (cupy) get the whole-array reference evaluation: chunking is a CPU
cache technique, and a GPU backend generates its own kernels.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading

import numpy as np

from tensorweave.codegen import buffers
from tensorweave.codegen.expr import ELEMENTWISE, REDUCTIONS, FusedExpr, constant, evaluate, \
    node_shapes

# Elements per chunk. Measured on the development machine (2-core Zen 4, 1 MB L2 per core),
# chain relu(x*w + b)*0.5 + z at 16M float32 elements: 32K 27 ms, 64K 22 ms, 128K 21 ms,
# 256K 22 ms, 1M 30 ms, whole arrays 44 ms (see DESIGN.md, "Kernel fusion").
CHUNK_ELEMENTS = 1 << 17

_MAX_PLANS = 8  # plans per kernel (one per distinct set of input shapes)


def compile_expr(expr: FusedExpr, xp, chunk: int | None = None):
    """A kernel ``fn(*arrays, donate=()) -> tuple of outputs`` for ``expr`` (see the module
    docstring). ``donate`` lists input positions whose arrays the caller owns and never reads
    again; an output may then be written over such an input. ``chunk`` defaults to
    ``CHUNK_ELEMENTS`` as it is when the kernel is compiled."""
    return NumpyKernel(expr, xp, CHUNK_ELEMENTS if chunk is None else chunk)


class NumpyKernel:
    """A compiled fused expression: plans per input shapes, retained outputs."""

    def __init__(self, expr: FusedExpr, xp, chunk: int):
        self.expr = expr
        self.xp = xp
        self.chunk = chunk
        self._plans: dict[tuple, _Plan] = {}
        self._lock = threading.Lock()
        self._retained = buffers.RetainedOutputs()

    def __call__(self, *arrays, donate=()):
        if self.xp is not np:
            return evaluate(self.expr, self.xp, *arrays)
        arrays = [np.asarray(a) for a in arrays]
        plan = self._plan(tuple(a.shape for a in arrays))
        if plan is None:  # scalars and empty arrays: nothing worth chunking
            return evaluate(self.expr, np, *arrays)
        outputs = plan.run(arrays, self._retained, donate)
        if plan.keeps_outputs:
            self._retained.keep(outputs)
        return outputs

    def _plan(self, shapes):
        plan = self._plans.get(shapes)
        if plan is None and shapes not in self._plans:
            plan = _Plan.build(self.expr, shapes, self.chunk)
            with self._lock:
                if len(self._plans) >= _MAX_PLANS:
                    self._plans.pop(next(iter(self._plans)))
                self._plans[shapes] = plan
        return plan


# -- layout ----------------------------------------------------------------------------------------
class _Layout:
    """How the broadcast shape ``S`` is cut into chunks (see the module docstring)."""

    def __init__(self, full_shape: tuple, chunk: int):
        self.shape = full_shape
        inner = 1
        axis = len(full_shape) - 1
        while axis > 0 and inner * full_shape[axis] <= chunk:
            inner *= full_shape[axis]
            axis -= 1
        self.axis = axis                      # the chunked axis a; axes < a take one index
        self.rows = max(1, chunk // inner)    # rows of axis a per chunk
        self.inner = inner                    # elements per row: prod(S[a+1:])
        # one chunk holds everything: no cutting at all
        self.single = axis == 0 and self.rows >= full_shape[0]
        if self.single:
            self.rows = full_shape[0]

    def chunks(self):
        """(outer index tuple, first row, end row) of every chunk, in memory order."""
        rows, n = self.rows, self.shape[self.axis]
        for outer in itertools.product(*(range(d) for d in self.shape[:self.axis])):
            for r0 in range(0, n, rows):
                yield outer, r0, min(r0 + rows, n)

    def pattern(self, shape: tuple):
        """For an array of ``shape``: ((axis, varies), ...) over the cut axes it has."""
        pad = len(self.shape) - len(shape)
        return tuple((i, shape[i - pad] != 1 and self.shape[i] != 1)
                     for i in range(max(pad, 0), self.axis + 1))

    def view_shape(self, shape: tuple, rows: int) -> tuple:
        """The shape of an array's chunk view for a chunk of ``rows`` rows."""
        pad = len(self.shape) - len(shape)
        if pad > self.axis:
            return shape
        a_dim = rows if shape[self.axis - pad] != 1 else 1
        return (a_dim,) + tuple(shape[self.axis - pad + 1:])


def _key(pattern, outer, r0, r1, last_axis):
    """The index of one chunk for an array with ``pattern`` (from ``_Layout.pattern``)."""
    key = []
    for axis, varies in pattern:
        if axis < last_axis:
            key.append(outer[axis] if varies else 0)
        else:
            key.append(slice(r0, r1) if varies else slice(0, 1))
    return tuple(key)


def _varies(pattern) -> bool:
    return any(v for _, v in pattern)


# -- plan ------------------------------------------------------------------------------------------
class _Plan:
    """Everything about one call shape: which values vary, where each node writes, scratch."""

    @classmethod
    def build(cls, expr: FusedExpr, input_shapes: tuple, chunk: int):
        shapes = node_shapes(expr, input_shapes)
        full = tuple(np.broadcast_shapes(*input_shapes, *shapes))
        if not full or math.prod(full) == 0:
            return None
        return cls(expr, input_shapes, shapes, _Layout(full, chunk))

    def __init__(self, expr, input_shapes, shapes, layout):
        self.expr = expr
        self.layout = layout
        self.input_shapes = input_shapes
        self.shapes = shapes
        n_in = len(input_shapes)
        self.n_in = n_in
        self.in_patterns = [layout.pattern(s) for s in input_shapes]
        self.node_patterns = [layout.pattern(s) for s in shapes]
        self._resolve_args()
        self.node_varies = self._find_varying()
        self.reduced = expr.outputs[0] if expr.reduce is not None else None
        # unreduced outputs: node -> first output position (a node listed twice is copied)
        self.output_of = {}
        for k, j in enumerate(expr.outputs):
            if k == 0 and expr.reduce is not None:
                continue
            self.output_of.setdefault(j, k)
        self.duplicates = [(k, self.output_of[j]) for k, j in enumerate(expr.outputs)
                           if self.output_of.get(j, k) != k
                           and not (k == 0 and self.reduced is not None)]
        # outputs worth keeping across calls (a small array costs no page faults when new)
        self.keeps_outputs = any(math.prod(shapes[j]) * np.dtype(expr.nodes[j]["dtype"]).itemsize
                                 >= buffers.MIN_KEPT_BYTES for j in expr.outputs)
        self.output_specs = [(k, j, shapes[j], np.dtype(expr.nodes[j]["dtype"]))
                             for k, j in enumerate(expr.outputs)
                             if not (k == 0 and self.reduced is not None)]
        self.buffer_of = self._assign_scratch()
        steps = [(j, _callable(ELEMENTWISE[node["op"]], node["attrs"]), self.arg_slots[j],
                  self.output_of.get(j)) for j, node in enumerate(expr.nodes)]
        self.steps = [s for s in steps if self.node_varies[s[0]]]
        self.invariant_steps = [s for s in steps if not self.node_varies[s[0]]]
        self._scratch = buffers.ScratchSets(self._make_scratch)  # one set per thread
        if self.reduced is not None:
            self._plan_reduction()

    def _resolve_args(self):
        """Each node's args as slots of the value table: inputs, nodes, then constants."""
        self.constants = []
        self.arg_slots = []
        const_base = self.n_in + len(self.expr.nodes)
        for node in self.expr.nodes:
            slots = []
            for arg in node["args"]:
                if arg[0] == "in":
                    slots.append(arg[1])
                elif arg[0] == "node":
                    slots.append(self.n_in + arg[1])
                else:
                    slots.append(const_base + len(self.constants))
                    self.constants.append(constant(arg))
            self.arg_slots.append(tuple(slots))

    def _find_varying(self):
        if self.layout.single:  # nothing is cut, so nothing is hoisted
            return [True] * len(self.expr.nodes)
        in_varies = [_varies(p) for p in self.in_patterns]
        varies = []
        for j, node in enumerate(self.expr.nodes):
            v = False
            for arg in node["args"]:
                if arg[0] == "in":
                    v = v or in_varies[arg[1]]
                elif arg[0] == "node":
                    v = v or varies[arg[1]]
            varies.append(v)
        return varies

    def _assign_scratch(self):
        """A scratch buffer id per varying node that is not an output: a buffer is reused by a
        later node once every reader of its value has run (register allocation on a chain)."""
        nodes = self.expr.nodes
        last_use = {}
        for j, node in enumerate(nodes):
            for arg in node["args"]:
                if arg[0] == "node":
                    last_use[arg[1]] = j
        if self.reduced is not None:
            last_use[self.reduced] = len(nodes)  # read by the partial reduction after the nodes
        buffer_of, free, self.buffer_dtypes = {}, {}, []
        for j, node in enumerate(nodes):
            if not self.node_varies[j]:
                continue
            dying = [a[1] for a in node["args"] if a[0] == "node" and a[1] in buffer_of
                     and last_use.get(a[1]) == j]
            if j not in self.output_of:
                buffer_of[j] = self._pick_buffer(j, node, dying, buffer_of, free)
            for d in dict.fromkeys(dying):
                if buffer_of.get(d) != buffer_of.get(j):
                    free.setdefault(nodes[d]["dtype"], []).append(buffer_of[d])
            if last_use.get(j) is None and j in buffer_of and j != self.reduced:
                free.setdefault(node["dtype"], []).append(buffer_of[j])  # nobody reads it
        return buffer_of

    def _pick_buffer(self, j, node, dying, buffer_of, free):
        dtype = node["dtype"]
        if ELEMENTWISE[node["op"]].out_may_alias:
            for d in dying:  # write over an arg that dies here: one buffer fewer in cache
                if self.expr.nodes[d]["dtype"] == dtype and self.shapes[d] == self.shapes[j]:
                    return buffer_of[d]
        if free.get(dtype):
            return free[dtype].pop()
        self.buffer_dtypes.append(dtype)
        return len(self.buffer_dtypes) - 1

    def _make_scratch(self):
        """One set of scratch arrays, with each node's views for a full and a last chunk."""
        layout = self.layout
        size = layout.rows * layout.inner
        flat = [np.empty(size, np.dtype(d)) for d in self.buffer_dtypes]
        tail_rows = layout.shape[layout.axis] % layout.rows or layout.rows
        views = {}
        for j, b in self.buffer_of.items():
            views[j] = tuple(_view(flat[b], layout.view_shape(self.shapes[j], rows))
                             for rows in (layout.rows, tail_rows))
        if self.reduced is not None:
            views["partial"] = tuple(
                np.empty(self._partial_shape(rows), np.dtype(self.reduce_dtype))
                for rows in (layout.rows, tail_rows))
        return views

    # -- reduction --
    def _plan_reduction(self):
        reduce = self.expr.reduce
        j = self.reduced
        shape = self.shapes[j]
        pad = len(self.layout.shape) - len(shape)
        self.reduce_rule = REDUCTIONS[reduce["op"]]
        # a mean sums chunk by chunk and divides once at the end
        self.partial_fn = REDUCTIONS["Sum" if self.reduce_rule.mean else reduce["op"]].numpy
        self.reduce_dtype = self.expr.nodes[j]["dtype"]
        self.reduce_axes = tuple(reduce["axes"])
        axes_in_full = {a + pad for a in self.reduce_axes}
        self.acc_shape = tuple(1 if i in self.reduce_axes else d for i, d in enumerate(shape))
        self.acc_pattern = self.layout.pattern(self.acc_shape)
        # the chunk view of the reduced node holds axis a (if it has it) and the trailing axes
        first = max(self.layout.axis, pad)
        self.partial_axes = tuple(p for p, i in enumerate(range(first, len(self.layout.shape)))
                                  if i in axes_in_full)
        self.count = math.prod(shape[a] for a in self.reduce_axes)

    def _partial_shape(self, rows):
        view = self.layout.view_shape(self.shapes[self.reduced], rows)
        return tuple(1 if p in self.partial_axes else d for p, d in enumerate(view))

    # -- running --
    def run(self, arrays, retained, donate):
        outputs = self._output_arrays(arrays, retained, donate)
        values = list(arrays) + [None] * len(self.expr.nodes) + self.constants
        scratch = self._scratch.acquire()
        try:
            if self.layout.single:
                reduced = self._run_single(values, outputs, scratch)
            else:
                reduced = self._run_chunked(arrays, values, outputs, scratch)
        finally:
            self._scratch.release(scratch)
        if self.reduced is not None:
            outputs[0] = reduced
        for k, first in self.duplicates:  # a node listed twice: the later one is a copy
            np.copyto(outputs[k], outputs[first])
        return tuple(outputs)

    def _run_single(self, values, outputs, scratch):
        """Everything fits in one chunk: each node once over its own shape, no cutting; a
        reduction runs on the whole node, exactly as the unfused op would.

        A node with an argument that is not C-contiguous (a transposed view) lets numpy
        allocate its result, as the unfused op did: numpy lays that result out like the
        argument, and a later sum adds in memory order, so the layout decides the rounding."""
        base = self.n_in
        if all(values[i].flags.c_contiguous for i in range(base)):
            for j, call, slots, k in self.steps:  # then every node's result is C-ordered too
                out = outputs[k] if k is not None else scratch[j][0]
                values[base + j] = call(*[values[s] for s in slots], out=out)
        else:
            for j, call, slots, k in self.steps:
                args = [values[s] for s in slots]
                if all(a.flags.c_contiguous for a in args):
                    out = outputs[k] if k is not None else scratch[j][0]
                    values[base + j] = call(*args, out=out)
                else:
                    values[base + j] = result = call(*args)
                    if k is not None:
                        outputs[k] = result
        if self.reduced is None:
            return None
        return self.reduce_rule.numpy(np, values[base + self.reduced], self.reduce_axes,
                                      self.expr.reduce["keepdims"])

    def _run_chunked(self, arrays, values, outputs, scratch):
        whole_reduced = self._run_invariant(values, outputs)
        acc = self._start_reduction()
        self._chunk_loop(arrays, values, outputs, acc, scratch)
        if self.reduced is None:
            return None
        return self._finish_reduction(acc, whole_reduced)

    def _output_arrays(self, arrays, retained, donate):
        outputs = [None] * len(self.expr.outputs)
        for k, j, shape, dtype in self.output_specs:
            donor = self._donor(arrays, donate, k, j, shape, dtype) if donate else None
            if donor is not None:
                outputs[k] = donor
            elif self.layout.single:
                outputs[k] = retained.empty(k, shape, dtype) if self.keeps_outputs \
                    else np.empty(shape, dtype)
            else:
                outputs[k] = self._laid_out_like_numpy(arrays, retained, k, shape, dtype)
        return outputs

    def _laid_out_like_numpy(self, arrays, retained, k, shape, dtype):
        """A C-ordered output, unless an input of the output's shape is laid out otherwise (a
        transposed view): then like that input, as numpy's ufuncs would have laid it out."""
        for a in arrays:
            if a.shape == shape and not a.flags.c_contiguous and a.ndim > 1:
                return np.empty_like(a, dtype=dtype)
        return retained.empty(k, shape, dtype)

    def _donor(self, arrays, donate, k, j, shape, dtype):
        """A donated input that output ``k`` (node ``j``) may overwrite chunk by chunk: same
        shape and dtype, and no node after ``j`` (nor ``j`` itself, unless its rule allows it)
        reads the input, so every read of a chunk happens before the chunk is overwritten."""
        if self.output_of.get(j) != k or not self.node_varies[j]:
            return None
        for i in donate:
            a = arrays[i]
            # equal shapes: the input's chunk views are exactly the output's
            if a.shape != shape or a.dtype != dtype or not a.flags.writeable:
                continue
            if not self._read_after(i, j):
                return a
        return None

    def _read_after(self, i, j) -> bool:
        for n, node in enumerate(self.expr.nodes):
            reads = ["in", i] in node["args"]
            if reads and (n > j or (n == j and not ELEMENTWISE[node["op"]].out_may_alias)):
                return True
        return False

    def _run_invariant(self, values, outputs):
        """Nodes reading only invariant values: once per call, over their whole shape.
        Returns the whole value of the reduced node when it is invariant."""
        base = self.n_in
        for j, call, slots, k in self.invariant_steps:
            out = outputs[k] if k is not None else None
            if out is None:
                out = np.empty(self.shapes[j], np.dtype(self.expr.nodes[j]["dtype"]))
            values[base + j] = call(*[values[s] for s in slots], out=out)
        whole_reduced = None
        if self.reduced is not None and not self.node_varies[self.reduced]:
            whole_reduced = values[base + self.reduced]
        # invariant values are cut like any other array: index 0 where they broadcast
        last = self.layout.axis
        for j, varies in enumerate(self.node_varies):
            if not varies:
                key = _key(self.node_patterns[j], (), 0, 1, last)
                values[base + j] = values[base + j][key]
        for i, pattern in enumerate(self.in_patterns):
            if not _varies(pattern):
                values[i] = values[i][_key(pattern, (), 0, 1, last)]
        return whole_reduced

    def _chunk_loop(self, arrays, values, outputs, acc, scratch):
        layout, base = self.layout, self.n_in
        last, full_rows = layout.axis, layout.rows
        varying_inputs = [(i, p) for i, p in enumerate(self.in_patterns) if _varies(p)]
        patterns = self.node_patterns
        reduce_here = acc is not None and self.node_varies[self.reduced]
        for outer, r0, r1 in layout.chunks():
            variant = 0 if r1 - r0 == full_rows else 1
            for i, pattern in varying_inputs:
                values[i] = arrays[i][_key(pattern, outer, r0, r1, last)]
            for j, call, slots, k in self.steps:
                if k is not None:
                    out = outputs[k][_key(patterns[j], outer, r0, r1, last)]
                else:
                    out = scratch[j][variant]
                values[base + j] = call(*[values[s] for s in slots], out=out)
            if reduce_here:
                self._reduce_chunk(acc, values[base + self.reduced], scratch, variant,
                                   outer, r0, r1)

    def _start_reduction(self):
        if self.reduced is None or not self.node_varies[self.reduced]:
            return None
        identity = self.reduce_rule.identity(self.reduce_dtype)
        return np.full(self.acc_shape, identity, np.dtype(self.reduce_dtype))

    def _reduce_chunk(self, acc, chunk_value, scratch, variant, outer, r0, r1):
        view = acc[_key(self.acc_pattern, outer, r0, r1, self.layout.axis)]
        if self.partial_axes:
            partial = self.partial_fn(np, chunk_value, self.partial_axes, True,
                                      out=scratch["partial"][variant])
        else:
            partial = chunk_value
        getattr(np, self.reduce_rule.combine)(view, partial, out=view)

    def _finish_reduction(self, acc, whole_reduced):
        if whole_reduced is not None:  # the reduced node did not vary: reduce it whole, exactly
            return self.reduce_rule.numpy(np, whole_reduced, self.reduce_axes,
                                          self.expr.reduce["keepdims"])
        if self.reduce_rule.mean:
            np.true_divide(acc, self.count, out=acc, casting="unsafe")
        if not self.expr.reduce["keepdims"]:
            acc = acc.reshape(tuple(d for i, d in enumerate(self.acc_shape)
                                    if i not in self.reduce_axes))
        return acc


def _callable(rule, attrs):
    """The function a step calls, ``call(*args, out=...)``: the ufunc itself when the rule is
    one (no wrapper call), else the rule with the array module and the node's attrs bound."""
    name = getattr(rule.numpy, "ufunc_name", None)
    if name is not None:
        return getattr(np, name)
    return functools.partial(rule.numpy, np, **attrs)


def _view(flat: np.ndarray, shape: tuple) -> np.ndarray:
    return flat[:math.prod(shape)].reshape(shape)
