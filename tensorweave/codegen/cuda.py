"""CUDA code generation for fused expressions: ``cupy.RawKernel`` source and the parts of
``cupy.ElementwiseKernel`` / ``cupy.ReductionKernel``.

``cuda_source(expr, layout)`` writes one ``extern "C" __global__`` kernel: a grid-stride loop
over the n output elements; each thread decomposes its flat index into the collapsed output
dims of ``layout`` (``cpu_numba.broadcast_layout``: same-shape inputs need no arithmetic, a bias
one modulo) and reads every input at its broadcast offset. Every node is a typed local
(``const float t3 = ...``), so float32 stays float32 (constants are exact hex literals of their
dtype, never a double ``0.5``) and integers wrap to their width as numpy's do: signed 32/64-bit
``+ - *`` are computed on the unsigned type of the same width, where C defines overflow.
float16 nodes compute in float and round to half after every node, as numpy does per op
(``__half2float`` / ``__float2half_rn``).

Math functions are CUDA's (``tanhf``, ``expf``, ... from ``{f}``-suffixed templates), whose
results may differ from numpy's by a few ulps (as the numba backend's: ``TRANSCENDENTAL_ULPS``).
Arithmetic, comparisons, selection and casts are exact: kernels are compiled with
``--fmad=false`` (``NVRTC_OPTIONS``), as nvcc would otherwise contract ``x*w + b`` into one
fused multiply-add that rounds once where numpy rounds twice. Reductions go through
``cupy.ReductionKernel``: the elementwise part becomes a ``__device__`` map function in the
preamble, combined by the rule's C template from its identity; the summation order is cupy's
tree, so float sums differ from numpy's pairwise sums within rounding.

On a machine where cupy finds a device, ``compile_cuda(expr, cupy)`` runs these through cupy
(``CudaKernel``); elsewhere ``available()`` is False and only the source is generated (tests
compile it with ``nvcc``).
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from tensorweave.codegen.cpu_numba import Layout, broadcast_layout
from tensorweave.codegen.expr import FusedExpr
from tensorweave.codegen.rules import C_TYPES, ELEMENTWISE, REDUCTIONS

__all__ = ["cuda_source", "kernel_name", "elementwise_kernel_parts", "reduction_kernel_parts",
           "static_layout", "available", "compile_cuda", "CudaKernel", "c_literal"]

# C types of the kernel's parameters; float16 is cuda_fp16's __half (computed in float).
PARAM_TYPES = {**C_TYPES, "float16": "__half"}
# ops whose signed overflow must wrap as numpy's: computed on the unsigned type of the width
WRAPPING_OPS = frozenset({"Add", "Sub", "Mul", "Neg", "Square", "AddN", "BiasAdd",
                          "SquaredDifference"})
UNSIGNED_OF = {"int32": "unsigned int", "int64": "unsigned long long"}
BLOCK = 256
# no fused multiply-add contraction: x*w + b rounds twice, as numpy computes it
NVRTC_OPTIONS = ("--fmad=false",)


def _local_type(dtype: str) -> str:
    """The C type a node of ``dtype`` lives in (half nodes live in float)."""
    return "float" if dtype == "float16" else C_TYPES[dtype]


def _template_dtype(dtype: str) -> str:
    """The dtype whose C template a node of ``dtype`` uses (half uses float32's)."""
    return "float32" if dtype == "float16" else dtype


# -- literals ------------------------------------------------------------------------------------
def c_literal(value, dtype: str) -> str:
    """An exact C literal of ``value`` as a ``dtype`` (hex floats; bit patterns for inf/nan)."""
    dtype = np.dtype(dtype).name
    if dtype == "bool":
        return "true" if bool(value) else "false"
    if dtype in ("float32", "float16"):
        v = np.float32(value)
        if not np.isfinite(v):
            bits = struct.unpack("<I", struct.pack("<f", float(v)))[0]
            return f"__int_as_float({bits:#x})"
        return f"{float(v).hex()}f"
    if dtype == "float64":
        v = float(value)
        if not np.isfinite(v):
            bits = struct.unpack("<q", struct.pack("<d", v))[0]
            return f"__longlong_as_double({bits}LL)"
        return v.hex()
    v = int(np.array(value).astype(dtype))  # wraps out-of-range values as numpy's cast does
    if dtype == "int64" and v == np.iinfo(np.int64).min:
        return "(-9223372036854775807LL - 1LL)"
    suffix = "ULL" if dtype.startswith("uint") else "LL"
    return f"(({C_TYPES[dtype]}){v}{suffix})"


# -- the elementwise body ------------------------------------------------------------------------
class _Body:
    """The statements computing every node from input values ``x0, x1, ...`` (C locals)."""

    def __init__(self, expr: FusedExpr):
        self.expr = expr

    def arg(self, arg) -> str:
        if arg[0] == "in":
            return f"x{arg[1]}"
        if arg[0] == "node":
            return f"t{arg[1]}"
        dtype = arg[2]
        return c_literal(arg[1], "float32" if dtype == "float16" else dtype)

    def node_statement(self, index: int, node) -> str:
        dtype = node["dtype"]
        args = [self.arg(a) for a in node["args"]]
        rule = ELEMENTWISE[node["op"]]
        if node["op"] in WRAPPING_OPS and dtype in UNSIGNED_OF:
            # unsigned arithmetic wraps by definition; converting back is two's complement
            unsigned = UNSIGNED_OF[dtype]
            names = [f"u{index}_{n}" for n in range(len(args))]
            lets = [f"const {unsigned} {u} = ({unsigned})({a}); " for u, a in zip(names, args)]
            value = rule.c_expr(dtype, names)
            return "".join(lets) + f"const {C_TYPES[dtype]} t{index} = ({C_TYPES[dtype]})({value});"
        value = rule.c_expr(_template_dtype(dtype), args)
        if dtype == "float16":
            value = f"__half2float(__float2half_rn({value}))"
        return f"const {_local_type(dtype)} t{index} = {value};"

    def statements(self, upto: int | None = None) -> list:
        nodes = self.expr.nodes if upto is None else self.expr.nodes[:upto + 1]
        return [self.node_statement(i, node) for i, node in enumerate(nodes)]


def _load(j: int, dtype: str, source: str, raw: bool = True) -> str:
    if dtype == "float16":
        # a RawKernel reads __half; cupy's ElementwiseKernel gives its own float16 type, which
        # converts to float like __half does
        source = f"__half2float({source})" if raw else f"static_cast<float>({source})"
    return f"const {_local_type(dtype)} x{j} = {source};"


def _store(target: str, dtype: str, value: str, raw: bool = True) -> str:
    if dtype == "float16":
        value = f"__float2half_rn({value})" if raw else f"float16({value})"
    return f"{target} = {value};"


def _used_inputs(expr: FusedExpr, upto: int | None = None) -> list:
    nodes = expr.nodes if upto is None else expr.nodes[:upto + 1]
    return sorted({a[1] for node in nodes for a in node["args"] if a[0] == "in"})


def _has_half(expr: FusedExpr) -> bool:
    return "float16" in expr.input_dtypes or any(n["dtype"] == "float16" for n in expr.nodes)


# -- RawKernel source ----------------------------------------------------------------------------
def static_layout(expr: FusedExpr) -> Layout:
    """The layout from the expression's static shapes, when all are known; else every input is
    taken as the output's shape except rank-0 ones (scalars)."""
    shapes = [spec["shape"] for spec in expr.inputs]
    if all(s is not None and None not in s for s in shapes):
        return broadcast_layout([tuple(s) for s in shapes], np.broadcast_shapes(*shapes))
    return Layout((0,), tuple((s == [],) for s in shapes))


def kernel_name(expr: FusedExpr, layout: Layout, prefix: str = "tw_fused") -> str:
    """A stable kernel name from the expression and the layout's broadcast pattern."""
    digest = hashlib.sha256((expr.to_json() + repr(layout.key)).encode()).hexdigest()[:16]
    return f"{prefix}_{digest}"


def cuda_source(expr: FusedExpr, layout: Layout | None = None, name: str | None = None) -> str:
    """The ``extern "C" __global__`` source of ``expr`` for ``cupy.RawKernel``.

    Parameters, in order: the inputs (``const T* __restrict__``), the outputs (``T*``), ``n``
    (output elements, ``long long``), then for each collapsed dim ``d`` but the first its extent
    ``dim{d}``, and for each input and dim where it is not broadcast its element stride
    ``s{j}_{d}``. A reduction is not part of this kernel (see ``reduction_kernel_parts``).
    """
    layout = layout or static_layout(expr)
    name = name or kernel_name(expr, layout)
    k = len(layout.dims)
    params = [f"const {PARAM_TYPES[s['dtype']]}* __restrict__ in{j}"
              for j, s in enumerate(expr.inputs)]
    params += [f"{PARAM_TYPES[d]}* __restrict__ out{m}" for m, d in enumerate(expr.output_dtypes)]
    params.append("const long long n")
    params += [f"const long long dim{d}" for d in range(1, k)]
    used = _used_inputs(expr)
    params += [f"const long long s{j}_{d}" for j in used for d in range(k)
               if not layout.broadcast[j][d] and k > 1]
    lines = ["#include <cuda_fp16.h>"] if _has_half(expr) else []
    lines += [f'extern "C" __global__ void {name}({", ".join(params)}) {{',
              "  const long long step = (long long)blockDim.x * gridDim.x;",
              "  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; "
              "i += step) {"]
    lines += ["    " + s for s in _coordinates(k)]
    for j in used:
        lines.append("    " + _load(j, expr.inputs[j]["dtype"],
                                    f"in{j}[{_offset(layout, j, k)}]"))
    lines += ["    " + s for s in _Body(expr).statements()]
    for m, node in enumerate(expr.outputs):
        lines.append("    " + _store(f"out{m}[i]", expr.nodes[node]["dtype"], f"t{node}"))
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def _coordinates(k: int) -> list:
    """Statements splitting flat index ``i`` into collapsed coordinates ``c0 .. c{k-1}``."""
    if k == 1:
        return []
    lines = ["long long rest = i;"]
    for d in reversed(range(1, k)):
        lines.append(f"const long long c{d} = rest % dim{d}; rest /= dim{d};")
    lines.append("const long long c0 = rest;")
    return lines


def _offset(layout: Layout, j: int, k: int) -> str:
    flags = layout.broadcast[j]
    if all(flags):
        return "0"
    if k == 1:
        return "i"
    return " + ".join(f"c{d} * s{j}_{d}" for d in range(k) if not flags[d])


def launch_args(layout: Layout, used: list) -> list:
    """The scalar kernel arguments after the arrays and ``n`` (see ``cuda_source``); ``used``
    are the inputs the expression reads."""
    k = len(layout.dims)
    strides = layout.strides()
    args = [np.int64(layout.dims[d]) for d in range(1, k)]
    if k > 1:
        args += [np.int64(strides[j, d]) for j in used for d in range(k)
                 if not layout.broadcast[j][d]]
    return args


# -- ElementwiseKernel / ReductionKernel parts ---------------------------------------------------
def elementwise_kernel_parts(expr: FusedExpr, name: str | None = None) -> dict:
    """Keyword arguments of ``cupy.ElementwiseKernel`` computing every output (unreduced).

    cupy broadcasts the inputs and names each element ``in0, in1, ...`` and ``out0, ...``.
    """
    in_params = ", ".join(f"{s['dtype']} in{j}" for j, s in enumerate(expr.inputs))
    out_params = ", ".join(f"{d} out{m}" for m, d in enumerate(expr.output_dtypes))
    body = [_load(j, expr.inputs[j]["dtype"], f"in{j}", raw=False) for j in _used_inputs(expr)]
    body += _Body(expr).statements()
    body += [_store(f"out{m}", expr.nodes[node]["dtype"], f"t{node}", raw=False)
             for m, node in enumerate(expr.outputs)]
    name = name or kernel_name(expr, Layout((), ()), prefix="tw_elementwise")
    preamble = "#include <cuda_fp16.h>" if _has_half(expr) else ""
    return {"in_params": in_params, "out_params": out_params, "operation": "\n".join(body),
            "name": name, "preamble": preamble}


def reduction_kernel_parts(expr: FusedExpr, name: str | None = None) -> dict:
    """Keyword arguments of ``cupy.ReductionKernel`` computing output 0 with ``expr.reduce``.

    The elementwise part up to output 0's node is the ``__device__`` function ``<name>_map`` in
    the preamble; call the kernel with ``axis=tuple(reduce['axes'])`` and ``keepdims``.
    """
    if expr.reduce is None:
        raise ValueError("the expression has no reduction")
    rule = REDUCTIONS[expr.reduce["op"]]
    node = expr.outputs[0]
    dtype = expr.nodes[node]["dtype"]
    ctype = _local_type(dtype)
    name = name or kernel_name(expr, Layout((), ()), prefix="tw_reduce")
    used = _used_inputs(expr, upto=node)
    # the map function takes the values cupy hands it; half ones converted to float on the way
    params = ", ".join(f"{_local_type(expr.inputs[j]['dtype'])} v{j}" for j in used)
    body = [f"const {_local_type(expr.inputs[j]['dtype'])} x{j} = v{j};" for j in used]
    body += _Body(expr).statements(upto=node)
    preamble = ["#include <cuda_fp16.h>"] if _has_half(expr) else []
    preamble += [f"__device__ {ctype} {name}_map({params}) {{"]
    preamble += ["  " + s for s in body] + [f"  return t{node};", "}"]
    post = "out0 = a"
    if rule.mean:
        post = "out0 = a / (_type_reduce)(_in_ind.size() / _out_ind.size())"
    return {"in_params": ", ".join(f"{s['dtype']} in{j}" for j, s in enumerate(expr.inputs)),
            "out_params": f"{dtype} out0",
            "map_expr": f"{name}_map({', '.join(_map_arg(expr, j) for j in used)})",
            "reduce_expr": rule.c.format("a", "b"),
            "post_map_expr": post,
            "identity": c_literal(rule.identity(dtype), dtype),
            "name": name,
            "reduce_type": ctype,
            "preamble": "\n".join(preamble)}


def _map_arg(expr: FusedExpr, j: int) -> str:
    if expr.inputs[j]["dtype"] == "float16":
        return f"static_cast<float>(in{j})"
    return f"in{j}"


# -- running through cupy ------------------------------------------------------------------------
def available() -> bool:
    """Whether cupy imports and sees at least one CUDA device."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, no device: all mean "not here"
        return False


class CudaKernel:
    """A fused expression on a CUDA device: ``kernel(*cupy_arrays, donate=()) -> tuple``.

    Elementwise outputs come from one ``RawKernel`` per broadcast layout (grid-stride loop); a
    reduced output 0 from a ``ReductionKernel``, the other outputs then from an
    ``ElementwiseKernel``.
    """

    def __init__(self, expr: FusedExpr, cupy):
        self.expr = expr
        self.cp = cupy
        self._raw: dict = {}
        self._reduction = None
        self._elementwise = None

    def __call__(self, *arrays, donate=()):
        cp = self.cp
        arrays = [cp.ascontiguousarray(cp.asarray(a, dtype=s["dtype"]))
                  for a, s in zip(arrays, self.expr.inputs)]
        if self.expr.reduce is not None:
            return self._reduce(arrays)
        return self._run_raw(arrays)

    def _run_raw(self, arrays):
        cp = self.cp
        shapes = [a.shape for a in arrays]
        out_shape = tuple(np.broadcast_shapes(*shapes)) if shapes else ()
        outputs = [cp.empty(out_shape, dtype=d) for d in self.expr.output_dtypes]
        n = int(np.prod(out_shape))
        if n == 0:
            return tuple(outputs)
        layout = broadcast_layout(shapes, out_shape)
        kernel = self._raw.get(layout.key)
        if kernel is None:
            name = kernel_name(self.expr, layout)
            kernel = self._raw[layout.key] = cp.RawKernel(
                cuda_source(self.expr, layout, name), name, options=NVRTC_OPTIONS)
        extra = launch_args(layout, _used_inputs(self.expr))
        grid = min((n + BLOCK - 1) // BLOCK, 65535)
        kernel((grid,), (BLOCK,), (*arrays, *outputs, np.int64(n), *extra))
        return tuple(outputs)

    def _reduce(self, arrays):
        cp = self.cp
        if self._reduction is None:
            self._reduction = cp.ReductionKernel(**reduction_kernel_parts(self.expr),
                                                 options=NVRTC_OPTIONS)
        reduce = self.expr.reduce
        first = self._reduction(*arrays, axis=tuple(reduce["axes"]),
                                keepdims=reduce["keepdims"])
        if len(self.expr.outputs) == 1:
            return (first,)
        if self._elementwise is None:
            self._elementwise = cp.ElementwiseKernel(**elementwise_kernel_parts(self.expr),
                                                     options=NVRTC_OPTIONS)
        rest = self._elementwise(*arrays)
        return (first, *rest[1:])


def compile_cuda(expr: FusedExpr, xp) -> CudaKernel:
    """The CUDA kernel of ``expr`` for array module ``xp`` (cupy with a device)."""
    if getattr(xp, "__name__", "") != "cupy":
        raise ValueError("the CUDA backend runs on cupy arrays")
    return CudaKernel(expr, xp)
