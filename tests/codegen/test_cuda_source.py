"""Generated CUDA source: every kernel of this module compiles with nvcc (one call), and the
same source, compiled for the host with a tiny stand-in for CUDA's thread indices, computes
what numpy computes (bitwise for arithmetic, comparisons, selection and casts; a few ulps for
math functions, whose host versions are glibc's rather than CUDA's).

No GPU is needed: nvcc compiles without a device, g++ runs the host version, and the test that
runs kernels through cupy skips unless cupy sees a device.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from tensorweave.codegen import cuda
from tensorweave.codegen.cpu_numba import broadcast_layout
from tensorweave.codegen.expr import FusedExpr, evaluate
from tensorweave.codegen.rules import C_TYPES
from tests.codegen.test_cpu_numba import (ARITH, BROADCAST_SHAPES, DTYPES, inputs, mismatches,
                                          node, every_op_expr, values)

NVCC_FLAGS = ["-c", "-arch=sm_90", *cuda.NVRTC_OPTIONS, "-o", "/dev/null"]
HOST_FLAGS = ["-O1", "-ffp-contract=off", "-shared", "-fPIC", "-w"]
C_TYPES_ALL = {**C_TYPES, "float16": "__half"}

# Stand-ins for what CUDA provides, so a kernel compiles as a host function: one "thread" whose
# grid-stride loop walks every element.
HOST_PRELUDE = """#include <math.h>
#include <string.h>
#define __global__
#define __device__
#define __host__
struct tw_dim3 { unsigned int x; };
static const tw_dim3 blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
static inline float __int_as_float(unsigned int b) { float f; memcpy(&f, &b, 4); return f; }
static inline double __longlong_as_double(long long b) { double d; memcpy(&d, &b, 8); return d; }
"""


# -- the expressions of this module --------------------------------------------------------------
def reduction(op: str, dtype: str = "float32") -> FusedExpr:
    """``op`` over all axes of ``(x - y)**2`` (SquaredDifference), also returning x - y."""
    return FusedExpr(inputs=inputs(2, dtype),
                     nodes=[node("Sub", [["in", 0], ["in", 1]], dtype),
                            node("Square", [["node", 0]], dtype)],
                     outputs=[1, 0], reduce={"op": op, "axes": [0], "keepdims": False})


HALF = FusedExpr(inputs=inputs(2, "float16"),
                 nodes=[node("Mul", [["in", 0], ["in", 1]], "float16"),
                        node("Tanh", [["node", 0]], "float16"),
                        node("Add", [["node", 1], ["const", 0.5, "float16"]], "float16")],
                 outputs=[2])
CONSTANTS = FusedExpr(inputs=inputs(1, "float64"),
                      nodes=[node("Add", [["in", 0], ["const", 0.1, "float64"]], "float64"),
                             node("Maximum", [["node", 0], ["const", float("-inf"), "float64"]],
                                  "float64"),
                             node("Cast", [["node", 1]], "int64", DstT="int64"),
                             node("Add", [["node", 2], ["const", -2**63, "int64"]], "int64")],
                      outputs=[1, 3])
EVERY_OP = {dtype: every_op_expr(dtype) for dtype in DTYPES}
LAYOUTS = [broadcast_layout(shapes, np.broadcast_shapes(*shapes)) for shapes in BROADCAST_SHAPES]
REDUCTIONS = [reduction(op) for op in ("Sum", "Mean", "Max", "Min", "Prod")]
REDUCTIONS += [reduction("Sum", "int32"), reduction("Max", "float64")]


# -- harnesses for the ElementwiseKernel / ReductionKernel parts --------------------------------
def _params(text: str) -> list:
    """[(dtype, name)] of a cupy parameter list such as "float32 in0, int32 in1"."""
    return [tuple(p.split()) for p in text.split(", ")] if text else []


def elementwise_harness(parts: dict) -> str:
    """A __global__ function doing what cupy.ElementwiseKernel does with ``parts`` (same-shape
    arrays: cupy broadcasts before the kernel runs)."""
    ins, outs = _params(parts["in_params"]), _params(parts["out_params"])
    params = [f"const {C_TYPES_ALL[d]}* p_{n}" for d, n in ins]
    params += [f"{C_TYPES_ALL[d]}* p_{n}" for d, n in outs] + ["long long n"]
    loads = " ".join(f"const {_cupy_type(d)} {n} = p_{n}[i];" for d, n in ins)
    refs = " ".join(f"{_cupy_type(d)}& {n} = p_{n}[i];" for d, n in outs)
    return "\n".join([parts["preamble"],
                      f'extern "C" __global__ void {parts["name"]}({", ".join(params)}) {{',
                      "  for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; "
                      "i += blockDim.x * gridDim.x) {",
                      f"    {loads} {refs}", "    " + parts["operation"].replace("\n", "\n    "),
                      "  }", "}", ""])


def reduction_harness(parts: dict) -> str:
    """One thread reducing all n elements as cupy.ReductionKernel combines them (``a``/``b``,
    identity, post-map with ``_in_ind.size() / _out_ind.size()``)."""
    ins, outs = _params(parts["in_params"]), _params(parts["out_params"])
    params = [f"const {C_TYPES_ALL[d]}* p_{n}" for d, n in ins]
    params += [f"{C_TYPES_ALL[d]}* p_{n}" for d, n in outs] + ["long long n"]
    loads = " ".join(f"const {_cupy_type(d)} {n} = p_{n}[i];" for d, n in ins)
    return "\n".join([
        parts["preamble"],
        f'extern "C" __global__ void {parts["name"]}({", ".join(params)}) {{',
        f"  typedef {parts['reduce_type']} _type_reduce;",
        "  struct Ind { long long count; __device__ __host__ long long size() const "
        "{ return count; } };",
        "  const Ind _in_ind = {n}, _out_ind = {1};",
        f"  _type_reduce a = {parts['identity']};",
        "  for (long long i = 0; i < n; ++i) {",
        f"    {loads}",
        f"    const _type_reduce b = {parts['map_expr']};",
        f"    a = {parts['reduce_expr']};",
        "  }",
        f"  {C_TYPES_ALL[outs[0][0]]}& out0 = p_out0[0];",
        f"  {parts['post_map_expr']};",
        "}", ""])


def _cupy_type(dtype: str) -> str:
    # cupy's float16 element type; __half behaves the same in these kernels
    return "float16" if dtype == "float16" else C_TYPES_ALL[dtype]


def all_sources(include_half: bool) -> dict:
    """name -> source of every kernel this module generates."""
    exprs = [e for e, _ in EVERY_OP.values()] + [CONSTANTS] + ([HALF] if include_half else [])
    sources = {}
    for expr in exprs:
        layout = cuda.static_layout(expr)
        sources[cuda.kernel_name(expr, layout)] = cuda.cuda_source(expr, layout)
        parts = cuda.elementwise_kernel_parts(expr)
        sources[parts["name"]] = elementwise_harness(parts)
    for layout in LAYOUTS:
        sources[cuda.kernel_name(ARITH, layout)] = cuda.cuda_source(ARITH, layout)
    for expr in REDUCTIONS:
        parts = cuda.reduction_kernel_parts(expr)
        sources[parts["name"]] = reduction_harness(parts)
    return sources


# -- nvcc ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nvcc_result(tmp_path_factory):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc (the CUDA toolkit's compiler) is not on PATH")
    path = tmp_path_factory.mktemp("cuda") / "kernels.cu"
    text = "#include <cuda_fp16.h>\ntypedef __half float16;\n\n"
    path.write_text(text + "\n".join(all_sources(include_half=True).values()))
    return subprocess.run([nvcc, *NVCC_FLAGS, str(path)], capture_output=True, text=True)


def test_every_generated_kernel_compiles_with_nvcc(nvcc_result):
    assert nvcc_result.returncode == 0, nvcc_result.stderr[-4000:]


# -- the same source on the host -----------------------------------------------------------------
@pytest.fixture(scope="module")
def host_library(tmp_path_factory):
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ is not on PATH: the generated CUDA cannot run on the host")
    folder = tmp_path_factory.mktemp("host")
    source, library = folder / "kernels.cpp", folder / "kernels.so"
    source.write_text(HOST_PRELUDE + "\n".join(all_sources(include_half=False).values()))
    result = subprocess.run([compiler, *HOST_FLAGS, "-o", str(library), str(source)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    return ctypes.CDLL(str(library))


def call(library, name, arrays, outputs, scalars):
    """Call kernel ``name`` with array pointers, then 64-bit integer scalars."""
    args = [ctypes.c_void_p(a.ctypes.data) for a in (*arrays, *outputs)]
    args += [ctypes.c_longlong(int(s)) for s in scalars]
    getattr(library, name)(*args)


def run_raw(library, expr, arrays):
    """The RawKernel of ``expr`` on ``arrays`` (any broadcastable shapes), host edition."""
    arrays = [np.array(a, order="C") for a in arrays]  # (ascontiguousarray makes 0-d 1-d)
    shapes = [a.shape for a in arrays]
    out_shape = np.broadcast_shapes(*shapes)
    layout = broadcast_layout(shapes, out_shape)
    outputs = [np.zeros(out_shape, d) for d in expr.output_dtypes]
    used = sorted({a[1] for n in expr.nodes for a in n["args"] if a[0] == "in"})
    extra = cuda.launch_args(layout, used)
    call(library, cuda.kernel_name(expr, layout), arrays, outputs,
         [int(np.prod(out_shape))] + extra)
    return outputs


@pytest.mark.parametrize("dtype", DTYPES)
def test_raw_kernel_computes_every_op_like_numpy(host_library, dtype):
    expr, names = EVERY_OP[dtype]
    rng = np.random.default_rng(10 + DTYPES.index(dtype))
    arrays = [values(dtype, 129, rng) for _ in range(3)]
    with np.errstate(all="ignore"):
        expected = evaluate(expr, np, *arrays)
    assert mismatches(run_raw(host_library, expr, arrays), expected, names) == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_parts_compute_every_op_like_numpy(host_library, dtype):
    expr, names = EVERY_OP[dtype]
    rng = np.random.default_rng(20 + DTYPES.index(dtype))
    arrays = [values(dtype, 65, rng) for _ in range(3)]
    with np.errstate(all="ignore"):
        expected = evaluate(expr, np, *arrays)
    outputs = [np.zeros(65, d) for d in expr.output_dtypes]
    call(host_library, cuda.elementwise_kernel_parts(expr)["name"], arrays, outputs, [65])
    assert mismatches(outputs, expected, names) == []


# (an empty output never launches a kernel)
@pytest.mark.parametrize("shapes", [s for s in BROADCAST_SHAPES if 0 not in
                                    np.broadcast_shapes(*s)], ids=str)
def test_raw_kernel_broadcasts_by_index_arithmetic(host_library, shapes):
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    got = run_raw(host_library, ARITH, arrays)
    assert mismatches(got, evaluate(ARITH, np, *arrays), ["Add"]) == []


def test_constants_are_exact_in_their_dtype(host_library):
    x = np.array([0.0, 1e17, -np.inf, np.nan, 2.5], np.float64)
    got = run_raw(host_library, CONSTANTS, [x])
    with np.errstate(all="ignore"):
        expected = evaluate(CONSTANTS, np, x)
    assert got[0].tobytes() == expected[0].tobytes()
    finite = np.isfinite(expected[0])  # float -> int of inf/nan is undefined in C and numpy
    assert np.array_equal(got[1][finite], expected[1][finite])


@pytest.mark.parametrize("expr", REDUCTIONS, ids=lambda e: f"{e.reduce['op']}-{e.input_dtypes[0]}")
def test_reduction_parts_reduce_like_numpy(host_library, expr):
    dtype = expr.input_dtypes[0]
    rng = np.random.default_rng(4)
    if dtype == "int32":
        arrays = [rng.integers(-1000, 1000, 300).astype(dtype) for _ in range(2)]
    else:
        arrays = [rng.uniform(0.5, 1.5, 40).astype(dtype) for _ in range(2)]  # Prod stays finite
    out = np.zeros((), dtype)
    call(host_library, cuda.reduction_kernel_parts(expr)["name"], arrays, [out],
         [arrays[0].size])
    expected = evaluate(expr, np, *arrays)[0]
    # a sequential sum here, cupy's tree on a GPU, numpy's pairwise sum: equal within rounding
    np.testing.assert_allclose(out, expected, rtol=1e-5 if dtype == "float32" else 1e-12)


# -- plain source properties ---------------------------------------------------------------------
def test_float32_source_has_no_double_arithmetic():
    expr, _ = EVERY_OP["float32"]
    source = cuda.cuda_source(expr)
    assert "double" not in source
    assert "tanhf(" in source and "expf(" in source and "tanh(" not in source.replace("tanhf(", "")


def test_literals_round_trip():
    assert float.fromhex(cuda.c_literal(0.1, "float32")[:-1]) == float(np.float32(0.1))
    assert float.fromhex(cuda.c_literal(0.1, "float64")) == 0.1
    assert cuda.c_literal(np.inf, "float32") == "__int_as_float(0x7f800000)"
    assert cuda.c_literal(-2**63, "int64") == "(-9223372036854775807LL - 1LL)"
    assert cuda.c_literal(2**64 - 1, "uint64") == "((unsigned long long)18446744073709551615ULL)"
    assert cuda.c_literal(True, "bool") == "true"


def test_signed_overflow_is_computed_unsigned():
    expr = FusedExpr(inputs=inputs(2, "int32"), nodes=[node("Mul", [["in", 0], ["in", 1]],
                                                           "int32")], outputs=[0])
    assert "(unsigned int)(x0)" in cuda.cuda_source(expr)


def test_unknown_shapes_give_the_flat_layout_with_scalars():
    expr = FusedExpr(inputs=[{"dtype": "float32", "shape": [None, 3]},
                             {"dtype": "float32", "shape": []}],
                     nodes=[node("Mul", [["in", 0], ["in", 1]])], outputs=[0])
    source = cuda.cuda_source(expr)
    assert "in0[i]" in source and "in1[0]" in source


def test_reduction_parts_need_a_reduction():
    with pytest.raises(ValueError, match="no reduction"):
        cuda.reduction_kernel_parts(ARITH)


# -- on a real device ----------------------------------------------------------------------------
def test_kernels_run_on_a_gpu():
    if not cuda.available():
        pytest.skip("cupy does not see a CUDA device here")
    import cupy
    from tensorweave import codegen
    rng = np.random.default_rng(5)
    for shapes in BROADCAST_SHAPES:
        arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        got = codegen.compile_expr(ARITH, cupy)(*[cupy.asarray(a) for a in arrays])
        assert mismatches([cupy.asnumpy(g) for g in got], evaluate(ARITH, np, *arrays),
                          ["Add"]) == []
    for expr in REDUCTIONS:
        arrays = [rng.uniform(0.5, 1.5, 40).astype(expr.input_dtypes[0]) for _ in range(2)]
        got = codegen.compile_expr(expr, cupy)(*[cupy.asarray(a) for a in arrays])
        expected = evaluate(expr, np, *arrays)
        np.testing.assert_allclose(cupy.asnumpy(got[0]), expected[0], rtol=1e-5)
        assert cupy.asnumpy(got[1]).tobytes() == expected[1].tobytes()
