"""One training step, tensorweave against the same step written by hand in numpy.

Models (float32, random inputs and one-hot labels, fixed across steps):

* ``mlp``: 784-256-10, relu, softmax cross-entropy, plain SGD (lr 0.1), batch 100 and 1,000;
* ``cnn``: TF's "Deep MNIST" network at batch 50: conv 5x5 1->32 SAME + bias + relu, max pool
  2x2/2, conv 5x5 32->64 SAME + bias + relu, max pool 2x2/2, fc 3136->1024 + relu, fc 1024->10,
  softmax cross-entropy, Adam (lr 1e-4). There is NO dropout layer in either implementation (the
  tutorial's dropout at keep_prob 1.0 is the identity, so this is the same network).

tensorweave builds each model with the TF1 API and runs ``sess.run(train_op, feed)``; the numpy
side is ``benchmarks/numpy_reference.py`` (forward, backward, update; the CNN by im2col). Both
start from the same weights. tensorweave runs twice: with the compile pipeline (the default) and
with every pass of ``tw.passes.PIPELINE`` disabled (``ConfigProto(disabled_passes=...)``); the
pipeline's gain is passes-off time / passes-on time. Each configuration runs in its own child
process with ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` and
``NUMBA_NUM_THREADS`` set before numpy is imported (a one-thread step uses one thread for its
BLAS calls and its compiled loops alike); the sessions of a one-thread run also use one inter-op
thread. Each step is warmed up, then timed in rounds that alternate numpy / tensorweave /
tensorweave without passes (other processes on a shared machine load them alike). Rounds in
which other processes used more than a tenth of a core (``/proc/stat``) are set aside, up to
three times the rounds asked for; ms/step is the best kept round, the JSON also has the median
round, every round's foreign CPU time and the load average. ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` are reported when set and passed on unchanged, and so is whether numba (the
optional ``fast`` extra, used by kernel fusion and ``tensorweave/ops/loops.py``) is installed.

    python -m benchmarks.train_step            # 1 and 2 BLAS threads, all models
    python -m benchmarks.train_step --quick    # fewer repeats: a smoke run
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

import tensorweave as tw
from benchmarks import numpy_reference as ref
from benchmarks.common import argument_parser, best_of, print_table, quiet_rounds, write_json

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
# Machine notes: these may be set here and change which OpenBLAS kernels run; we only report them.
NOTED_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

REPORTED = [
    "MLP, batch 100, one thread: numpy 1.01 ms/step, TF1 1.07 ms/step",
    "CNN, batch 50, one thread: TF1 40.8 ms/step, numpy im2col 116 ms/step",
]
GOAL_MLP_RATIO = 1.1
GOAL_CNN_MS = 60.0


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of the table: a model at a batch size, and how many steps one timing round runs."""

    model: str
    batch: int
    steps_per_round: int


CASES = (Case("mlp", 100, 50), Case("mlp", 1000, 5), Case("cnn", 50, 2))

COMMON_API = ("placeholder", "Variable", "matmul", "reduce_mean", "nn.relu",
              "nn.softmax_cross_entropy_with_logits_v2", "global_variables_initializer")
MODEL_API = {
    "mlp": COMMON_API + ("train.GradientDescentOptimizer",),
    "cnn": COMMON_API + ("reshape", "nn.conv2d", "nn.max_pool", "train.AdamOptimizer"),
}


# -- the tensorweave models (also used by tests/test_benchmark_references.py) ------------------

@dataclasses.dataclass
class TwModel:
    """A built model: its graph, inputs, variables by name and scalar loss."""

    graph: object
    x: object
    labels: object
    variables: dict
    loss: object


def missing_api(model: str) -> list:
    """The TF1 names ``model`` needs that tensorweave does not have (yet)."""
    missing = []
    for dotted in MODEL_API[model]:
        owner = tw
        for part in dotted.split("."):
            owner = getattr(owner, part, None)
        if owner is None:
            missing.append("tw." + dotted)
    return missing


def _inputs_and_variables(params, shape, dtype):
    x = tw.placeholder(dtype, [None, shape.inputs], name="x")
    labels = tw.placeholder(dtype, [None, shape.classes], name="labels")
    variables = {name: tw.Variable(value, name=name) for name, value in params.items()}
    return x, labels, variables


def _mean_cross_entropy(labels, logits):
    return tw.reduce_mean(
        tw.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits), name="loss")


def build_mlp(params, shape=ref.MlpShape(), dtype=np.float32) -> TwModel:
    """The MLP with the TF1 API, its variables initialized from ``params``."""
    graph = tw.Graph()
    with graph.as_default():
        x, labels, v = _inputs_and_variables(params, shape, tw.as_dtype(dtype))
        hidden = tw.nn.relu(tw.matmul(x, v["w1"]) + v["b1"])
        logits = tw.matmul(hidden, v["w2"]) + v["b2"]
        loss = _mean_cross_entropy(labels, logits)
    return TwModel(graph, x, labels, v, loss)


def build_cnn(params, shape=ref.CnnShape(), dtype=np.float32) -> TwModel:
    """The Deep MNIST network (no dropout) with the TF1 API, initialized from ``params``."""
    graph = tw.Graph()
    one, pool = [1, 1, 1, 1], [1, 2, 2, 1]
    with graph.as_default():
        x, labels, v = _inputs_and_variables(params, shape, tw.as_dtype(dtype))
        images = tw.reshape(x, [-1, shape.image, shape.image, shape.channels])
        conv1 = tw.nn.relu(tw.nn.conv2d(images, v["w_conv1"], one, "SAME") + v["b_conv1"])
        pool1 = tw.nn.max_pool(conv1, ksize=pool, strides=pool, padding="SAME")
        conv2 = tw.nn.relu(tw.nn.conv2d(pool1, v["w_conv2"], one, "SAME") + v["b_conv2"])
        pool2 = tw.nn.max_pool(conv2, ksize=pool, strides=pool, padding="SAME")
        flat = tw.reshape(pool2, [-1, shape.flat])
        hidden = tw.nn.relu(tw.matmul(flat, v["w_fc1"]) + v["b_fc1"])
        logits = tw.matmul(hidden, v["w_fc2"]) + v["b_fc2"]
        loss = _mean_cross_entropy(labels, logits)
    return TwModel(graph, x, labels, v, loss)


def tw_optimizer(model: str):
    """The optimizer of ``model``, as the issue states it."""
    if model == "mlp":
        return tw.train.GradientDescentOptimizer(0.1)
    return tw.train.AdamOptimizer(1e-4)


def numpy_step(model: str, params, shape=None):
    """The hand-written numpy step of ``model`` (it updates ``params`` in place)."""
    if model == "mlp":
        return ref.mlp_step(params, ref.Sgd(0.1))
    return ref.cnn_step(params, ref.Adam(params, 1e-4), shape or ref.CnnShape())


# -- measuring (in the child process) ----------------------------------------------------------

def _shape(model: str):
    return ref.MlpShape() if model == "mlp" else ref.CnnShape()


def _fresh_params(model: str) -> dict:
    return ref.initial_params(_shape(model), np.float32, seed=0)


def interleaved_timings(steps: dict, case: Case, quick: bool):
    """Seconds per step of each kept round, for each of ``steps`` (name -> step function), and
    a summary of the load other processes put on the machine meanwhile.

    Every step is warmed up first; then the rounds alternate between the steps, so that load
    from other processes falls on each alike. Rounds in which others took more than a tenth of a
    core (``benchmarks.common.LoadMeter``) are set aside while fewer than ``rounds`` quiet ones
    were seen, up to three times as many rounds (a smoke run does not wait for quiet rounds); if
    none was quiet, every round counts.
    """
    warmup, rounds = (1, 3) if quick else (3, 9)
    number = max(1, case.steps_per_round // 5) if quick else case.steps_per_round
    for step in steps.values():
        for _ in range(warmup):
            step()

    def one_round():
        return {name: best_of(step, repeats=1, number=number) for name, step in steps.items()}

    timing = quiet_rounds(one_round, wanted=rounds, at_most=rounds if quick else 3 * rounds)
    load = {"quiet_rounds": timing.kept, "rounds": timing.tried,
            "others_cpu_seconds": [None if o is None else round(o, 3)
                                   for o in timing.others_cpu_seconds]}
    return timing.samples, load


def prepare_numpy(case: Case, x, labels):
    """The numpy step as a function of nothing, and the loss of its first step."""
    step = numpy_step(case.model, _fresh_params(case.model))
    first_loss = float(step(x, labels))
    return (lambda: step(x, labels)), first_loss


def prepare_tensorweave(case: Case, x, labels, threads: int, passes: bool = True):
    """An open session, ``sess.run(train_op, feed)`` as a function, and the first step's loss.

    ``passes=False`` disables every pass of the compile pipeline (``tw.passes.PIPELINE``).
    """
    build = build_mlp if case.model == "mlp" else build_cnn
    tw_model = build(_fresh_params(case.model))
    with tw_model.graph.as_default():
        train_op = tw_optimizer(case.model).minimize(tw_model.loss)
        init = tw.global_variables_initializer()
    disabled = [] if passes else list(tw.passes.PIPELINE)
    config = tw.ConfigProto(inter_op_parallelism_threads=threads, disabled_passes=disabled)
    sess = tw.Session(graph=tw_model.graph, config=config)
    sess.run(init)
    feed = {tw_model.x: x, tw_model.labels: labels}
    # The first step also fetches the loss, to check both sides compute the same thing.
    _, first_loss = sess.run([train_op, tw_model.loss], feed)
    return sess, (lambda: sess.run(train_op, feed)), float(first_loss)


def measure_case(case: Case, threads: int, quick: bool) -> dict:
    shape = _shape(case.model)
    x, labels = ref.random_batch(shape.inputs, shape.classes, case.batch, np.float32, seed=1)
    row = {"model": case.model, "batch": case.batch, "threads": threads,
           "load_average_1min": os.getloadavg()[0]}
    steps = {}
    steps["numpy"], row["numpy_first_loss"] = prepare_numpy(case, x, labels)
    sessions = []
    missing = missing_api(case.model)
    if missing:
        row["skipped"] = "tensorweave lacks " + ", ".join(missing)
    else:
        for name, passes in (("tensorweave", True), ("tensorweave_no_passes", False)):
            sess, steps[name], row[f"{name}_first_loss"] = prepare_tensorweave(
                case, x, labels, threads, passes=passes)
            sessions.append(sess)
    try:
        samples, row["load"] = interleaved_timings(steps, case, quick)
    finally:
        for sess in sessions:
            sess.close()
    for name, seconds in samples.items():
        row[f"{name}_ms"] = min(seconds) * 1e3
        row[f"{name}_median_ms"] = statistics.median(seconds) * 1e3
    if "tensorweave_ms" in row:
        row["ratio"] = row["tensorweave_ms"] / row["numpy_ms"]
        # > 1: the pipeline makes the step faster
        row["pipeline_gain"] = row["tensorweave_no_passes_ms"] / row["tensorweave_ms"]
    return row


def blas_report() -> list:
    """What threadpoolctl sees of the BLAS libraries actually loaded, when it is installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "num_threads", "architecture", "threading_layer")
    return [{k: info.get(k) for k in keys} for info in threadpool_info()]


def run_child(args) -> None:
    """Measure every selected case with the BLAS thread count the parent set for us."""
    for var in THREAD_VARS:
        if os.environ.get(var) != str(args.threads):
            sys.exit(f"--threads {args.threads} is the child mode: {var} must be set to "
                     f"{args.threads} before numpy starts (run without --threads instead)")
    rows = [measure_case(case, args.threads, args.quick)
            for case in CASES if case.model in args.models]
    with open(args.output, "w") as f:
        json.dump({"rows": rows, "blas": blas_report(), "numba": numba_version()}, f)


def numba_version():
    """numba's version when it is installed (compiled loops and fused kernels use it), else None."""
    try:
        from importlib.metadata import version
        return version("numba")
    except Exception:  # noqa: BLE001 — not installed (PackageNotFoundError) or no metadata
        return None


# -- orchestrating (in the parent process) -----------------------------------------------------

def child_env(threads: int) -> dict:
    env = dict(os.environ)
    env.update({var: str(threads) for var in THREAD_VARS})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    return env


def run_children(args) -> list:
    """One child per thread count; returns their JSON payloads, with the thread count."""
    results = []
    for threads in args.thread_counts:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "result.json")
            cmd = [sys.executable, "-m", "benchmarks.train_step", "--threads", str(threads),
                   "--output", path, "--models", *args.models] + (["--quick"] if args.quick else [])
            print(f"measuring with {threads} BLAS thread(s)...", flush=True)
            subprocess.run(cmd, env=child_env(threads), cwd=REPO_ROOT, check=True)
            with open(path) as f:
                results.append({"threads": threads, **json.load(f)})
    return results


TABLE_HEADER = ["model", "batch", "threads", "numpy ms/step", "tensorweave ms/step",
                "ratio (tw/numpy)", "passes off ms/step", "pipeline gain (off/on)",
                "quiet rounds", "load avg"]


def table_rows(rows) -> list:
    table = []
    for r in rows:
        table.append([r["model"], r["batch"], r["threads"], r["numpy_ms"],
                      r.get("tensorweave_ms", "skipped"), r.get("ratio", "-"),
                      r.get("tensorweave_no_passes_ms", "skipped"), r.get("pipeline_gain", "-"),
                      f"{r['load']['quiet_rounds']}/{r['load']['rounds']}",
                      r["load_average_1min"]])
    return table


def goal_lines(rows) -> list:
    """The issue's goals, each with the measurement it is judged on."""
    lines = []
    for r in rows:
        if "ratio" not in r:
            continue
        if r["model"] == "mlp":
            met = r["ratio"] <= GOAL_MLP_RATIO
            lines.append(f"MLP batch {r['batch']}, {r['threads']} thread(s): tensorweave/numpy "
                         f"{r['ratio']:.2f}x (goal <= {GOAL_MLP_RATIO}x): "
                         f"{'met' if met else 'NOT met'}")
        elif r["threads"] == 1:
            met = r["tensorweave_ms"] < GOAL_CNN_MS
            lines.append(f"CNN batch {r['batch']}, 1 thread: {r['tensorweave_ms']:.1f} ms/step "
                         f"(goal < {GOAL_CNN_MS:.0f} ms): {'met' if met else 'NOT met'}")
    return lines


def loss_mismatches(rows) -> list:
    """Rows whose first-step losses disagree: the two sides would not be running the same model."""
    bad = []
    for r in rows:
        for side in ("tensorweave", "tensorweave_no_passes"):
            if f"{side}_first_loss" not in r:
                continue
            a, b = r["numpy_first_loss"], r[f"{side}_first_loss"]
            if abs(a - b) > 1e-3 * max(1.0, abs(a)):
                bad.append(f"{r['model']} batch {r['batch']}: numpy loss {a:.6g}, "
                           f"{side} loss {b:.6g}")
    return bad


def report(args, children) -> None:
    rows = [row for child in children for row in child["rows"]]
    noted = {var: os.environ[var] for var in NOTED_VARS if var in os.environ}
    print_table("One training step (ms/step, best of repeated rounds)", TABLE_HEADER,
                table_rows(rows))
    for r in rows:
        if "skipped" in r:
            print(f"  skipped tensorweave {r['model']} batch {r['batch']} "
                  f"({r['threads']} thread(s)): {r['skipped']}")
    print("\nNo dropout in either implementation (the tutorial's keep_prob 1.0 is the identity).")
    print("Reported, not measured here (TF1 issue text, its machine):")
    for line in REPORTED:
        print("  " + line)
    print("\nGoals (judged on the best round):")
    for line in goal_lines(rows) or ["(no tensorweave measurements to judge)"]:
        print("  " + line)
    for line in loss_mismatches(rows):
        print("  WARNING first-step losses differ: " + line)
    print()
    for child in children:
        for lib in child["blas"]:
            print(f"BLAS in the {child['threads']}-thread child: {lib['internal_api']} "
                  f"{lib['version']}, kernels for {lib['architecture']}, "
                  f"{lib['num_threads']} thread(s)")
    print("OpenBLAS environment: " + (", ".join(f"{k}={v}" for k, v in noted.items())
                                        or "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE not set"))
    numba = children[0].get("numba") if children else None
    print(f"numba (compiled loops, fused kernels): {numba or 'not installed'}")
    write_json("train_step", {
        "quick": args.quick,
        "rows": rows,
        "blas": {str(child["threads"]): child["blas"] for child in children},
        "openblas_environment": noted,
        "numba": numba,
        "reported_not_measured": REPORTED,
        "goals": goal_lines(rows),
        "notes": "no dropout; tensorweave sessions use inter_op_parallelism_threads = BLAS "
                 "threads; tensorweave_no_passes_ms disables every pass of tw.passes.PIPELINE "
                 "and pipeline_gain = tensorweave_no_passes_ms / tensorweave_ms; ms/step is the "
                 "best round, *_median_ms the median round; rounds alternate numpy / "
                 "tensorweave / tensorweave_no_passes; a round is quiet when other processes "
                 "used at most a tenth of a core during it (/proc/stat busy time minus this "
                 "process's CPU time), and only quiet rounds count when there are any "
                 "(load.others_cpu_seconds per round); load_average_1min is the machine's load "
                 "when the row started (other processes share its cores)",
    })


def parse_args(argv=None):
    parser = argument_parser(__doc__.splitlines()[0], "fewer repeats: a smoke run",
                             output_help="child mode: where to write the JSON result")
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--thread-counts", nargs="+", type=int, default=[1, 2],
                        help="BLAS thread counts to measure, one child process each")
    parser.add_argument("--threads", type=int, help="child mode: measure with this many threads")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        run_child(args)
        return
    for var in NOTED_VARS:
        if var in os.environ:
            print(f"note: {var}={os.environ[var]} is set; left as it is")
    report(args, run_children(args))


if __name__ == "__main__":
    main()
