"""Convolution and pooling kernels at the shapes of TF's "Deep MNIST" CNN (batch 50), on one
core: forward and backward time of each layer, against the bare GEMM each conv must run.

    python benchmarks/conv_micro.py            # BLAS limited to 1 thread (the default)
    python benchmarks/conv_micro.py --threads 2

The kernels are called directly (``OpDef.kernel(attrs, numpy)``), so the numbers are the ops'
own cost with no executor in between.
"""

from __future__ import annotations

import argparse
import os
import sys


def _limit_blas_threads(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    args = parser.parse_args(argv)
    # Must happen before numpy loads its BLAS.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    return args


ARGS = _limit_blas_threads(sys.argv[1:]) if __name__ == "__main__" else None

import numpy as np  # noqa: E402

from benchmarks.common import best_of, print_table, write_json  # noqa: E402
from tensorweave.ops import registry  # noqa: E402

BATCH = 50
CONV = {"strides": [1, 1, 1, 1], "padding": "SAME", "dilations": [1, 1, 1, 1],
        "data_format": "NHWC"}
POOL = {"ksize": [1, 2, 2, 1], "strides": [1, 2, 2, 1], "padding": "SAME",
        "data_format": "NHWC"}
# (name, input shape, filter shape) of the two convolutions of Deep MNIST.
LAYERS = [("conv1 5x5x1->32 on 28x28", (BATCH, 28, 28, 1), (5, 5, 1, 32)),
          ("conv2 5x5x32->64 on 14x14", (BATCH, 14, 14, 32), (5, 5, 32, 64))]


def kernel(op_type, attrs):
    return registry.get(op_type).kernel(attrs, np)


def rand(shape, rng):
    return rng.standard_normal(shape).astype(np.float32)


def time_ms(fn):
    return best_of(fn, repeats=7, number=3) * 1e3


def conv_rows(rng):
    forward = kernel("Conv2D", CONV)
    back_input = kernel("Conv2DBackpropInput", CONV)
    back_filter = kernel("Conv2DBackpropFilter", CONV)
    rows = []
    for name, x_shape, f_shape in LAYERS:
        x, f = rand(x_shape, rng), rand(f_shape, rng)
        y = forward(x, f)
        g = rand(y.shape, rng)
        x_sizes = np.array(x_shape, np.int32)
        f_sizes = np.array(f_shape, np.int32)
        fwd = time_ms(lambda: forward(x, f))
        bwd_in = time_ms(lambda: back_input(x_sizes, f, g))
        bwd_f = time_ms(lambda: back_filter(x, f_sizes, g))
        gemm = _gemm_floor(x_shape, f_shape, y.shape, rng)
        rows.append([name, fwd, bwd_in, bwd_f, fwd + bwd_in + bwd_f, gemm])
    return rows


def _gemm_floor(x_shape, f_shape, y_shape, rng):
    """The three GEMMs of a conv's forward and backward, on ready-made contiguous operands."""
    rows = int(np.prod(y_shape[:3]))
    depth = int(np.prod(f_shape[:3]))
    cols, w, g = rand((rows, depth), rng), rand((depth, f_shape[3]), rng), \
        rand((rows, f_shape[3]), rng)
    return time_ms(lambda: cols @ w) + time_ms(lambda: g @ w.T) + time_ms(lambda: cols.T @ g)


def pool_rows(rng):
    rows = []
    for op, back in (("MaxPool", "MaxPoolGrad"), ("AvgPool", "AvgPoolGrad")):
        forward, backward = kernel(op, POOL), kernel(back, POOL)
        for shape in ((BATCH, 28, 28, 32), (BATCH, 14, 14, 64)):
            x = rand(shape, rng)
            y = forward(x)
            g = rand(y.shape, rng)
            args = (x, y, g) if op == "MaxPool" else (np.array(shape, np.int32), g)
            fwd = time_ms(lambda: forward(x))
            bwd = time_ms(lambda: backward(*args))
            rows.append([f"{op} 2x2/2 on {shape[1]}x{shape[2]}x{shape[3]}", fwd, bwd, fwd + bwd])
    return rows


def main():
    rng = np.random.default_rng(0)
    conv = conv_rows(rng)
    print_table(f"Conv2D at batch {BATCH}, float32, BLAS threads {ARGS.threads} (ms)",
                ["layer", "forward", "backprop input", "backprop filter", "total",
                 "3 bare GEMMs"], conv)
    pools = pool_rows(rng)
    print_table(f"Pools at batch {BATCH}, float32 (ms)", ["layer", "forward", "backward",
                                                          "total"], pools)
    write_json("conv_micro", {"threads": ARGS.threads, "batch": BATCH,
                              "conv_ms": {r[0]: dict(zip(["forward", "backprop_input",
                                                          "backprop_filter", "total",
                                                          "gemm_floor"], r[1:])) for r in conv},
                              "pool_ms": {r[0]: dict(zip(["forward", "backward", "total"],
                                                         r[1:])) for r in pools}})


if __name__ == "__main__":
    main()
