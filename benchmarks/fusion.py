"""Kernel fusion on the CPU: two elementwise chains against this machine's memory bandwidth.

Chains (float32, inputs ``x, w, b, z`` of n elements, one output):

* ``arith``: ``relu(x*w + b)*0.5 + z`` (5 ops, no transcendental function);
* ``trans``: ``tanh(x*w + b)*sigmoid(z) + exp(-x)`` (8 ops: mul, add, tanh, sigmoid, mul, neg,
  exp, add).

One run measures, per thread count, in a child process whose thread variables are set before
numpy starts (``OPENBLAS/OMP/MKL/NUMBA_NUM_THREADS``):

* the memory bandwidth: numpy copy, add (two reads, one write) and a read-only reduction, each
  over the bytes the chains move at the largest size, best of 15 alternating rounds; the best of
  the three is the "measured bandwidth" the chains are judged against (the highest bar);
* each chain at 1M and 16M elements as: plain numpy (op by op, fresh arrays; sigmoid written
  ``1/(1+exp(-z))``), numpy with reused ``out=`` buffers, numpy ``out=`` in 128K-element chunks
  (the hand-written baselines of the issue), tensorweave unfused
  (``ConfigProto(disabled_passes=["fusion"])``), tensorweave fused (the default pipeline), and
  every available CPU code generation backend called directly on the chain's fused expression.

Variants of one chain and size are timed in alternating rounds (other processes on a shared
machine load each alike) and the best round counts. GB/s is compulsory traffic: each input read
once and the output written once (5 arrays of n float32), divided by the best time. The ratio is to the measured bandwidth; speedup is over plain
numpy in the same child.

    python -m benchmarks.fusion            # 1 and 2 threads, 1M and 16M elements
    python -m benchmarks.fusion --quick    # small sizes, few repeats: a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from benchmarks.common import best_of, print_table, write_json

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = (1 << 20, 1 << 24)
QUICK_SIZES = (1 << 16, 1 << 20)
CHUNK = 1 << 17
GOAL_ARITH_BANDWIDTH = 0.9
GOAL_TRANS_SPEEDUP = 2.0
INPUTS = ("x", "w", "b", "z")
F32 = np.float32

# A chain for the numpy baselines: steps (destination, ufunc, operands); an operand is an input
# name, a temporary ("t1", "t2") or a float32 constant. The last step writes "out".
CHAIN_STEPS = {
    "arith": [
        ("t1", np.multiply, "x", "w"),
        ("t1", np.add, "t1", "b"),
        ("t1", np.maximum, "t1", F32(0)),
        ("t1", np.multiply, "t1", F32(0.5)),
        ("out", np.add, "t1", "z"),
    ],
    "trans": [
        ("t1", np.multiply, "x", "w"),
        ("t1", np.add, "t1", "b"),
        ("t1", np.tanh, "t1"),
        ("t2", np.negative, "z"),
        ("t2", np.exp, "t2"),
        ("t2", np.add, "t2", F32(1)),
        ("t2", np.divide, F32(1), "t2"),
        ("t1", np.multiply, "t1", "t2"),
        ("t2", np.negative, "x"),
        ("t2", np.exp, "t2"),
        ("out", np.add, "t1", "t2"),
    ],
}
CHAIN_TEXT = {"arith": "relu(x*w + b)*0.5 + z", "trans": "tanh(x*w + b)*sigmoid(z) + exp(-x)"}


# -- the numpy baselines ------------------------------------------------------------------------

def _operand(env, a):
    return env[a] if isinstance(a, str) else a


def plain_numpy(steps, arrays):
    """Op by op with fresh arrays, as numpy code is usually written."""
    env = dict(arrays)
    for dest, ufunc, *args in steps:
        env[dest] = ufunc(*(_operand(env, a) for a in args))
    return env["out"]


def numpy_out(steps, arrays, buffers):
    """Op by op into reused buffers (``buffers``: t1, t2 and out, each as long as the inputs)."""
    env = {**arrays, **buffers}
    for dest, ufunc, *args in steps:
        ufunc(*(_operand(env, a) for a in args), out=env[dest])
    return env["out"]


def numpy_chunked(steps, arrays, out, temps, chunk=CHUNK):
    """``numpy_out`` over cache-sized slices; ``temps`` are chunk-long t1, t2."""
    n = out.shape[0]
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        piece = {name: a[start:stop] for name, a in arrays.items()}
        bufs = {name: t[:stop - start] for name, t in temps.items()}
        numpy_out(steps, piece, {**bufs, "out": out[start:stop]})
    return out


def random_inputs(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(n, dtype=F32) for name in INPUTS}


# -- memory bandwidth ---------------------------------------------------------------------------

def measure_bandwidth(total_bytes: int, repeats: int) -> dict:
    """GB/s of numpy copy, add and a read-only reduction, each moving ``total_bytes``."""
    def arrays(count, per_array):
        return [np.random.default_rng(i).standard_normal(per_array, dtype=F32)
                for i in range(count)]

    elements = total_bytes // 4
    a, dst = arrays(2, elements // 2)
    p, q, r = arrays(3, elements // 3)
    (big,) = arrays(1, elements)
    best = interleaved_best({"copy": lambda: np.copyto(dst, a),
                             "add": lambda: np.add(p, q, out=r),
                             "read": lambda: np.maximum.reduce(big)}, repeats, 1)
    return {"copy": 2 * a.nbytes / best["copy"] / 1e9,
            "add": 3 * p.nbytes / best["add"] / 1e9,
            "read": big.nbytes / best["read"] / 1e9}


# -- the tensorweave variants -------------------------------------------------------------------

def build_chain_graph(chain: str, n: int):
    """The chain with the TF1 API: (graph, placeholders by name, output tensor)."""
    import tensorweave as tw
    graph = tw.Graph()
    with graph.as_default():
        p = {name: tw.placeholder(tw.float32, [n], name=name) for name in INPUTS}
        if chain == "arith":
            y = tw.nn.relu(p["x"] * p["w"] + p["b"]) * 0.5 + p["z"]
        else:
            y = tw.tanh(p["x"] * p["w"] + p["b"]) * tw.sigmoid(p["z"]) + tw.exp(-p["x"])
    return graph, p, y


def fused_expression(graph, placeholders, y):
    """(FusedExpr, input names) of the one fused op the fusion pass makes of the chain, run on
    the graph a Session would compile (the inputs fed, y fetched)."""
    from tensorweave.codegen.expr import FusedExpr
    from tensorweave.passes import snapshot
    from tensorweave.passes.fusion import fusion
    compiled = snapshot(graph, [y], [placeholders[name] for name in INPUTS], [])
    fused = [op for op in fusion(compiled).graph.get_operations() if op.type == "Fused"]
    if len(fused) != 1:
        return None, None
    # the fused op reads the _Arg ops of the feeds, numbered in feed order
    names = [INPUTS[t.op.attrs["index"]] for t in fused[0].inputs]
    return FusedExpr.from_json(fused[0].attrs["expr"]), names


def backend_variants(graph, placeholders, y, arrays):
    """Every CPU backend that can run the chain's fused expression, called directly."""
    from tensorweave.codegen import cpu_numba, select
    expr, names = fused_expression(graph, placeholders, y)
    if expr is None:
        return []
    args = [arrays[name] for name in names]
    found = ["numpy"]
    if cpu_numba.available() and cpu_numba.supports(expr) is None:
        found.append("numba")
        import numba
        if numba.get_num_threads() > 1:
            found.append("numba-parallel")
    variants = []
    for name in found:
        kernel = select.BUILDERS[name](expr)
        variants.append((f"backend {name}", lambda k=kernel: k(*args)[0],
                         "the fused expression, backend called directly"))
    return variants


def session_variant(label, graph, placeholders, y, arrays, config):
    import tensorweave as tw
    sess = tw.Session(graph=graph, config=config)
    feed = {placeholders[name]: arrays[name] for name in INPUTS}
    return (label, lambda: sess.run(y, feed), "Session.run with four fed inputs")


def tensorweave_variants(chain: str, arrays: dict, n: int):
    """tensorweave unfused and fused through a Session, and the fused expression's backends."""
    import tensorweave as tw
    graph, placeholders, y = build_chain_graph(chain, n)
    unfused = tw.ConfigProto(disabled_passes=["fusion"])
    variants = [session_variant("tensorweave unfused", graph, placeholders, y, arrays, unfused),
                session_variant("tensorweave fused", graph, placeholders, y, arrays,
                                tw.ConfigProto())]
    return variants + backend_variants(graph, placeholders, y, arrays)


def chosen_backends() -> list:
    """What the fused kernels' backend selection decided in this process, and its timings."""
    from tensorweave.codegen import select
    lines = []
    for (expr_json, device, size_class), choice in select.decisions().items():
        timings = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in choice.seconds.items())
        lines.append({"size_class": size_class, "backend": choice.backend,
                      "reason": choice.reason, "timings": timings,
                      "ops": [node["op"] for node in json.loads(expr_json)["nodes"]]})
    return lines


# -- measuring (in the child process) -----------------------------------------------------------

@dataclasses.dataclass
class Row:
    """One timed variant of one chain at one size and thread count."""

    chain: str
    n: int
    threads: int
    variant: str
    ms: float
    note: str = ""

    def gbps(self) -> float:
        """Compulsory traffic: the four inputs read once and the output written once."""
        return (len(INPUTS) + 1) * self.n * 4 / (self.ms / 1e3) / 1e9


def rounds_for(n: int, quick: bool) -> tuple:
    """(rounds, calls per timing) for arrays of n elements."""
    if quick:
        return 3, 1
    return (15, 5) if n <= (1 << 20) else (9, 1)


def interleaved_best(fns: dict, rounds: int, number: int) -> dict:
    """Best seconds per call of each function, over rounds that alternate between them: other
    processes on this machine then load every variant alike."""
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], best_of(fn, repeats=1, number=number))
    return best


def numpy_variants(chain: str, arrays: dict, n: int):
    """(name, function, note) of the hand-written numpy baselines."""
    steps = CHAIN_STEPS[chain]
    full = {name: np.empty(n, F32) for name in ("t1", "t2", "out")}
    temps = {name: np.empty(CHUNK, F32) for name in ("t1", "t2")}
    out = np.empty(n, F32)
    return [
        ("numpy", lambda: plain_numpy(steps, arrays), "op by op, fresh arrays"),
        ("numpy out=", lambda: numpy_out(steps, arrays, full), "reused full-size buffers"),
        ("numpy chunked", lambda: numpy_chunked(steps, arrays, out, temps),
         f"out= in {CHUNK}-element chunks"),
    ]


def measure_child(args) -> dict:
    sizes = QUICK_SIZES if args.quick else SIZES
    bandwidth = measure_bandwidth((len(INPUTS) + 1) * max(sizes) * 4, 3 if args.quick else 15)
    rows = []
    for chain in CHAIN_STEPS:
        for n in sizes:
            arrays = random_inputs(n)
            expected = plain_numpy(CHAIN_STEPS[chain], arrays)
            variants = numpy_variants(chain, arrays, n) + tensorweave_variants(chain, arrays, n)
            for name, fn, _ in variants:  # also the warm-up: compiles, selects, pages in
                _check_close(chain, name, fn(), expected)
            best = interleaved_best({name: fn for name, fn, _ in variants},
                                    *rounds_for(n, args.quick))
            for name, _, note in variants:
                row = Row(chain, n, args.threads, name, best[name] * 1e3, note)
                rows.append(dataclasses.asdict(row))
    return {"bandwidth": bandwidth, "rows": rows, "selection": chosen_backends()}


def _check_close(chain, name, got, expected):
    """Every variant must compute the chain (float32 transcendental results may differ by ulps)."""
    if not np.allclose(got, expected, rtol=1e-5, atol=1e-6):
        worst = float(np.max(np.abs(np.asarray(got, np.float64) - expected)))
        raise AssertionError(f"{chain}/{name} differs from plain numpy by up to {worst:g}")


def run_child(args) -> None:
    for var in THREAD_VARS:
        if os.environ.get(var) != str(args.threads):
            sys.exit(f"--threads {args.threads} is the child mode: {var} must be set to "
                     f"{args.threads} before numpy starts (run without --threads instead)")
    with open(args.output, "w") as f:
        json.dump(measure_child(args), f)


# -- orchestrating (in the parent process) ------------------------------------------------------

def child_env(threads: int) -> dict:
    env = dict(os.environ)
    env.update({var: str(threads) for var in THREAD_VARS})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    return env


def run_children(args) -> list:
    """One child per thread count; their JSON payloads with the thread count."""
    results = []
    for threads in args.thread_counts:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "result.json")
            cmd = [sys.executable, "-m", "benchmarks.fusion", "--threads", str(threads),
                   "--output", path] + (["--quick"] if args.quick else [])
            print(f"measuring with {threads} thread(s)...", flush=True)
            subprocess.run(cmd, env=child_env(threads), cwd=REPO_ROOT, check=True)
            with open(path) as f:
                results.append({"threads": threads, **json.load(f)})
    return results


def table_rows(child) -> list:
    limit = max(child["bandwidth"].values())
    plain = {(r["chain"], r["n"]): r["ms"] for r in child["rows"] if r["variant"] == "numpy"}
    table = []
    for r in child["rows"]:
        row = Row(**r)
        table.append([row.chain, _size(row.n), row.threads, row.variant, row.ms, row.gbps(),
                      row.gbps() / limit, plain[(row.chain, row.n)] / row.ms])
    return table


def _size(n: int) -> str:
    return f"{n >> 20}M" if n >= 1 << 20 else f"{n >> 10}K"


def goal_lines(child) -> list:
    """The issue's goals, judged on the fused tensorweave run at the largest size."""
    limit = max(child["bandwidth"].values())
    largest = max(r["n"] for r in child["rows"])
    rows = {(r["chain"], r["variant"]): Row(**r) for r in child["rows"] if r["n"] == largest}
    fused = "tensorweave fused"
    lines = []
    if ("arith", fused) in rows:
        ratio = rows["arith", fused].gbps() / limit
        lines.append(f"arith at {_size(largest)}, {child['threads']} thread(s): {ratio:.1%} of "
                     f"the measured bandwidth (goal >= {GOAL_ARITH_BANDWIDTH:.0%}): "
                     f"{'met' if ratio >= GOAL_ARITH_BANDWIDTH else 'NOT met'}")
    if ("trans", fused) in rows:
        speedup = rows["trans", "numpy"].ms / rows["trans", fused].ms
        lines.append(f"trans at {_size(largest)}, {child['threads']} thread(s): {speedup:.2f}x "
                     f"plain numpy (goal >= {GOAL_TRANS_SPEEDUP:.0f}x): "
                     f"{'met' if speedup >= GOAL_TRANS_SPEEDUP else 'NOT met'}")
    return lines


def report(args, children) -> None:
    header = ["chain", "n", "threads", "variant", "ms", "GB/s", "of bandwidth", "x numpy"]
    goals = []
    for child in children:
        bw = child["bandwidth"]
        print(f"\nmemory bandwidth, {child['threads']} thread(s): "
              + ", ".join(f"{k} {v:.1f} GB/s" for k, v in bw.items())
              + f"; judged against the best, {max(bw.values()):.1f} GB/s")
        print_table(f"Elementwise chains, {child['threads']} thread(s) (best of N; GB/s of "
                    f"compulsory traffic)", header, table_rows(child))
        for line in child["selection"]:
            print(f"  fused kernel backend ({child['threads']} thread(s), {' '.join(line['ops'])}, "
                  f"size class 2^{line['size_class']}): {line['backend']} -- {line['reason']}"
                  + (f" ({line['timings']})" if line["timings"] else ""))
        goals += goal_lines(child)
    notes = sorted({r["note"] for c in children for r in c["rows"] if r["note"]})
    print("\nNotes:\n" + "\n".join("  " + n for n in notes))
    print("\nGoals:\n" + "\n".join("  " + g for g in goals or ["(nothing fused to judge)"]))
    write_json("fusion", {
        "quick": args.quick,
        "chains": CHAIN_TEXT,
        "children": children,
        "goals": goals,
        "notes": "GB/s counts each input read once and the output written once (5 x n x 4 "
                 "bytes); bandwidth is the best of numpy copy/add/read-only reduction over "
                 "the same bytes; times are best of N calls",
    })


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--thread-counts", nargs="+", type=int, default=[1, 2],
                        help="thread counts to measure, one child process each")
    parser.add_argument("--threads", type=int, help="child mode: measure with this many threads")
    parser.add_argument("--output", help="child mode: where to write the JSON result")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        run_child(args)
        return
    report(args, run_children(args))


if __name__ == "__main__":
    main()
