"""Multi-device execution on virtual CPU devices: the speedup from running two device
partitions concurrently, and what a cut edge (a ``_Send``/``_Recv`` pair) costs per MB.

BLAS is limited to one thread per calling thread (``OPENBLAS/OMP/MKL_NUM_THREADS=1``, set at
the top of this module before numpy loads its BLAS, so run it as a fresh process), so any
speedup comes from the device threads, not from BLAS.

1. **Concurrency.** Two independent branches, each a chain of ``k`` float32 ``n x n`` matmuls
   from its own fed input through its own variables:

   * numpy sequential: both branches on one thread (the baseline);
   * numpy, 2 threads: branch 1 on a worker thread while the caller runs branch 0 (what two
     concurrent branches reach on this machine);
   * tensorweave, 1 device: ``inter_op_parallelism_threads=1`` (one straight-line program);
   * tensorweave, 1 device, default inter-op threads (the dataflow runner on one device);
   * tensorweave, 2 devices: branch i pinned to ``/cpu:i`` of ``device_count={"CPU": 2}``,
     each partition sequential (``inter_op_parallelism_threads=1``); both ends fetched;
   * tensorweave, 2 devices, summed: the branches added on ``/cpu:0`` and the sum fetched
     (one cut edge), with the default passes and with fusion disabled.

2. **Cut edge.** A float32 variable of 1, 16 and 64 MB on ``/cpu:0``, read by a one-element
   slice on ``/cpu:1``, against the same graph all on ``/cpu:0`` (same session config); also
   with ``transfer_dtype="bfloat16"`` and ``"float16"`` (a cast on each side). The extra time
   per step over the local graph, divided by the MB, is the cost per MB; a line fitted through
   the sizes splits it into a fixed cost per step and a cost per MB. numpy's own cast round
   trip of the same bytes is timed alongside, as the floor of what compression costs.

Every variant is timed once per round, in alternating rounds. On a shared machine a round in
which other processes used more than a tenth of a core (``/proc/stat``'s busy time minus this
process's CPU time) is set aside, until the asked-for number of quiet rounds (or four times as
many rounds in all) ran; tables show the median and best of the rounds kept, and say how many.

    python -m benchmarks.multidevice            # 1024x1024, 4 matmuls per branch
    python -m benchmarks.multidevice --quick    # small sizes, few rounds: a smoke run
"""

from __future__ import annotations

import os

BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

if __name__ == "__main__":
    # Must happen before numpy loads its BLAS: one BLAS thread per device thread.
    for _var in BLAS_THREAD_VARS:
        os.environ[_var] = "1"

import concurrent.futures as cf  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import tensorweave as tw  # noqa: E402
from benchmarks.common import (Rounds, argument_parser, print_table, quiet_rounds,  # noqa: E402
                               single_threaded_blas, write_json)

F32 = np.float32
MB = 1 << 20
GOAL_SPEEDUP = 1.7


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What one run measures: matrix side, matmuls per branch, rounds, cut-edge sizes in MB."""

    n: int
    chain: int
    rounds: int
    cut_mb: tuple
    cut_rounds: int
    seconds_per_sample: float


FULL = Sizes(n=1024, chain=4, rounds=15, cut_mb=(1, 16, 64), cut_rounds=15,
             seconds_per_sample=0.05)
QUICK = Sizes(n=256, chain=2, rounds=3, cut_mb=(1, 4), cut_rounds=3, seconds_per_sample=0.005)


# -- timing ---------------------------------------------------------------------------------------

def interleaved_rounds(fns: dict, rounds: int, number: dict) -> Rounds:
    """Time every function once per round (``number[name]`` calls, in the same order), until
    ``rounds`` rounds were quiet (``benchmarks.common.LoadMeter``: other processes used at most
    a tenth of a core) or four times as many were tried."""
    def one_round():
        return {name: time_calls(fn, number.get(name, 1)) for name, fn in fns.items()}

    return quiet_rounds(one_round, wanted=rounds, at_most=4 * rounds)


def time_calls(fn, calls: int) -> float:
    """Seconds per call of ``calls`` calls of ``fn``."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def calls_per_sample(fn, seconds: float) -> int:
    """How many calls of ``fn`` (already warm) fill about ``seconds``: short steps are timed
    in batches so the clock's resolution and the loop do not count. Calibrated on batches
    doubling up to a quarter of ``seconds``, so one slow call does not decide it."""
    calls = 1
    while True:
        per_call = time_calls(fn, calls)
        if per_call * calls >= seconds / 4:
            return max(1, round(seconds / per_call))
        calls *= 2


def summary(seconds: list) -> dict:
    return {"median_ms": statistics.median(seconds) * 1e3, "best_ms": min(seconds) * 1e3,
            "samples": len(seconds)}


def summaries(timing: Rounds) -> dict:
    return {name: summary(s) for name, s in timing.samples.items()}


# -- 1. two independent matmul branches ---------------------------------------------------------

@dataclasses.dataclass
class Branches:
    """The inputs and weights of the two branches (float32, scaled to keep values near 1)."""

    inputs: list
    weights: list

    @classmethod
    def random(cls, n: int, chain: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        scale = F32(1 / np.sqrt(n))
        inputs = [rng.standard_normal((n, n), dtype=F32) for _ in range(2)]
        weights = [[rng.standard_normal((n, n), dtype=F32) * scale for _ in range(chain)]
                   for _ in range(2)]
        return cls(inputs, weights)

    def run_branch(self, i: int):
        x = self.inputs[i]
        for w in self.weights[i]:
            x = x @ w
        return x


def numpy_sequential(branches: Branches):
    return branches.run_branch(0), branches.run_branch(1)


def numpy_two_threads(branches: Branches, pool: cf.ThreadPoolExecutor):
    other = pool.submit(branches.run_branch, 1)
    first = branches.run_branch(0)
    return first, other.result()


@dataclasses.dataclass
class BranchGraph:
    """The two branches as a tensorweave graph; ``fetches`` are both ends, or their sum."""

    graph: object
    feed: dict
    fetches: object
    init: object


def build_branch_graph(branches: Branches, devices: tuple, summed: bool) -> BranchGraph:
    """Branch i on ``devices[i]`` (its placeholder, variables and matmuls); the sum, if asked
    for, on ``devices[0]``."""
    graph = tw.Graph()
    feed = {}
    ends = []
    with graph.as_default():
        for i, device in enumerate(devices):
            with tw.device(device):
                x = tw.placeholder(tw.float32, branches.inputs[i].shape, name=f"x{i}")
                feed[x] = branches.inputs[i]
                y = x
                for j, w in enumerate(branches.weights[i]):
                    y = tw.matmul(y, tw.Variable(w, name=f"w{i}_{j}"), name=f"matmul{i}_{j}")
                ends.append(y)
        if summed:
            with tw.device(devices[0]):
                fetches = tw.add(ends[0], ends[1], name="sum")
        else:
            fetches = ends
        init = tw.global_variables_initializer()
    return BranchGraph(graph, feed, fetches, init)


@dataclasses.dataclass(frozen=True)
class TwVariant:
    """One tensorweave way of running the branches."""

    label: str
    devices: tuple
    summed: bool
    config: dict


ONE_DEVICE = ("/cpu:0", "/cpu:0")
TWO_DEVICES = ("/cpu:0", "/cpu:1")
TW_VARIANTS = (
    TwVariant("tensorweave, 1 device, 1 inter-op thread", ONE_DEVICE, False,
              {"inter_op_parallelism_threads": 1}),
    TwVariant("tensorweave, 1 device, default inter-op threads", ONE_DEVICE, False, {}),
    TwVariant("tensorweave, 2 devices", TWO_DEVICES, False,
              {"device_count": {"CPU": 2}, "inter_op_parallelism_threads": 1}),
    TwVariant("tensorweave, 2 devices, summed on cpu:0", TWO_DEVICES, True,
              {"device_count": {"CPU": 2}, "inter_op_parallelism_threads": 1}),
    TwVariant("tensorweave, 2 devices, summed, fusion off", TWO_DEVICES, True,
              {"device_count": {"CPU": 2}, "inter_op_parallelism_threads": 1,
               "disabled_passes": ["fusion"]}),
)
NUMPY_SEQUENTIAL = "numpy sequential (1 thread)"
NUMPY_THREADS = "numpy, 2 threads"
TW_ONE = TW_VARIANTS[0].label
TW_TWO = TW_VARIANTS[2].label


def tw_runner(variant: TwVariant, branches: Branches, expected: tuple, sessions: list):
    """A warm ``Session.run`` of the variant, checked against numpy once."""
    built = build_branch_graph(branches, variant.devices, variant.summed)
    sess = tw.Session(graph=built.graph, config=tw.ConfigProto(**variant.config))
    sessions.append(sess)
    sess.run(built.init)

    def run():
        return sess.run(built.fetches, built.feed)

    got = run()
    want = expected[0] + expected[1] if variant.summed else expected
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4,
                               err_msg=variant.label)
    return run


def measure_concurrency(sizes: Sizes) -> Rounds:
    branches = Branches.random(sizes.n, sizes.chain)
    expected = numpy_sequential(branches)
    sessions = []
    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        fns = {NUMPY_SEQUENTIAL: lambda: numpy_sequential(branches),
               NUMPY_THREADS: lambda: numpy_two_threads(branches, pool)}
        for variant in TW_VARIANTS:
            fns[variant.label] = tw_runner(variant, branches, expected, sessions)
        for fn in fns.values():  # warm-up: pages in, starts the threads
            fn()
        timing = interleaved_rounds(fns, sizes.rounds, {})
    for sess in sessions:
        sess.close()
    return timing


def concurrency_rows(results: dict) -> list:
    base = results[NUMPY_SEQUENTIAL]["median_ms"]
    tw_one = results[TW_ONE]["median_ms"]
    rows = []
    for name, r in results.items():
        rows.append([name, r["median_ms"], r["best_ms"], base / r["median_ms"],
                     tw_one / r["median_ms"]])
    return rows


RATIOS = (  # (name, numerator variant, denominator variant): how many times faster
    ("tw_2_devices_vs_tw_1_device", TW_ONE, TW_TWO),
    ("numpy_2_threads_vs_numpy_sequential", NUMPY_SEQUENTIAL, NUMPY_THREADS),
    ("numpy_sequential_vs_tw_1_device", NUMPY_SEQUENTIAL, TW_ONE),
    ("numpy_2_threads_vs_tw_2_devices", NUMPY_THREADS, TW_TWO),
    ("tw_2_devices_summed_vs_tw_1_device", TW_ONE, TW_VARIANTS[3].label),
    ("tw_2_devices_summed_no_fusion_vs_tw_1_device", TW_ONE, TW_VARIANTS[4].label),
)


def concurrency_ratios(results: dict, statistic: str) -> dict:
    """Speedups (above 1: the second variant is faster) from ``statistic`` of each variant."""
    return {name: results[slow][statistic] / results[fast][statistic]
            for name, slow, fast in RATIOS}


# -- 2. the cost of a cut edge ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CutVariant:
    """The big tensor's consumer device and wire dtype; or, with ``numpy_cast``, numpy's own
    float32 -> wire -> float32 round trip of the same bytes (what compression must cost)."""

    label: str
    consumer: str = "/cpu:1"
    wire: str | None = None
    numpy_cast: bool = False


CUT_VARIANTS = (
    CutVariant("all on cpu:0", consumer="/cpu:0"),
    CutVariant("cut edge cpu:0 -> cpu:1"),
    CutVariant("cut edge, bfloat16 on the wire", wire="bfloat16"),
    CutVariant("cut edge, float16 on the wire", wire="float16"),
    CutVariant("numpy cast round trip, bfloat16", wire="bfloat16", numpy_cast=True),
    CutVariant("numpy cast round trip, float16", wire="float16", numpy_cast=True),
)
LOCAL = CUT_VARIANTS[0].label


def cut_edge_runner(megabytes: int, variant: CutVariant, sessions: list):
    """A warm run of: a float32 variable of ``megabytes`` on cpu:0, and a one-element slice of
    it on the variant's consumer device (the fetch), so the step moves nothing but the edge."""
    elements = megabytes * MB // 4
    if variant.numpy_cast:
        data = np.zeros(elements, F32)
        wire = tw.as_dtype(variant.wire).np
        return lambda: data.astype(wire).astype(F32)
    graph = tw.Graph()
    with graph.as_default():
        with tw.device("/cpu:0"):
            v = tw.Variable(tw.zeros([elements], tw.float32), name="big")
        with tw.device(variant.consumer):
            head = tw.slice(v, [0], [1], name="head")
        init = tw.global_variables_initializer()
    config = tw.ConfigProto(device_count={"CPU": 2}, inter_op_parallelism_threads=1,
                            transfer_dtype=variant.wire)
    sess = tw.Session(graph=graph, config=config)
    sessions.append(sess)
    sess.run(init)
    check_cut_edges(sess, head, expected=0 if variant.consumer == "/cpu:0" else 1)
    return lambda: sess.run(head)


def check_cut_edges(sess, fetch, expected: int) -> None:
    """The graph must cut exactly where the benchmark says it does."""
    metadata = tw.RunMetadata()
    sess.run(fetch, options=tw.RunOptions(trace_level=tw.RunOptions.FULL_TRACE),
             run_metadata=metadata)
    recvs = [s for s in metadata.step_stats if s.op_type == "_Recv"]
    if len(recvs) != expected:
        raise AssertionError(f"expected {expected} _Recv op(s) in the step, found "
                             f"{[s.node_name for s in recvs]}")


def measure_cut_edges(sizes: Sizes) -> tuple:
    """(summaries by MB and variant, round counts by MB)."""
    results = {}
    rounds = {}
    for megabytes in sizes.cut_mb:
        sessions = []
        fns = {v.label: cut_edge_runner(megabytes, v, sessions) for v in CUT_VARIANTS}
        number = {label: calls_per_sample(fn, sizes.seconds_per_sample)
                  for label, fn in fns.items()}
        timing = interleaved_rounds(fns, sizes.cut_rounds, number)
        results[megabytes] = summaries(timing)
        rounds[megabytes] = timing.counts()
        for sess in sessions:
            sess.close()
    return results, rounds


def extra_us(results: dict, megabytes: int, variant: CutVariant) -> float:
    """What the variant adds to a step, in microseconds (medians): a tensorweave variant over
    the local graph; a numpy cast is all extra."""
    by_label = results[megabytes]
    local = 0.0 if variant.numpy_cast else by_label[LOCAL]["median_ms"]
    return (by_label[variant.label]["median_ms"] - local) * 1e3


def fitted_line(results: dict, variant: CutVariant) -> dict:
    """Least-squares line of the extra time against MB: a fixed cost and a cost per MB."""
    mbs = sorted(results)
    extra = [extra_us(results, m, variant) for m in mbs]
    slope, intercept = np.polyfit(mbs, extra, 1)
    return {"fixed_us": float(intercept), "us_per_mb": float(slope)}


def cut_edge_rows(results: dict) -> list:
    rows = []
    for megabytes, by_label in results.items():
        for variant in CUT_VARIANTS:
            us = by_label[variant.label]["median_ms"] * 1e3
            if variant.label == LOCAL:
                rows.append([megabytes, variant.label, us, "", ""])
                continue
            extra = extra_us(results, megabytes, variant)
            rows.append([megabytes, variant.label, us, extra, extra / megabytes])
    return rows


# -- report -------------------------------------------------------------------------------------

def goal_line(ratios: dict) -> str:
    speedup = ratios["tw_2_devices_vs_tw_1_device"]
    met = "met" if speedup >= GOAL_SPEEDUP else "NOT met"
    return (f"2 devices vs 1 device: {speedup:.2f}x (goal >= {GOAL_SPEEDUP}x on 2 cores): {met}; "
            f"numpy on 2 threads reaches "
            f"{ratios['numpy_2_threads_vs_numpy_sequential']:.2f}x on this machine")


def rounds_note(counts: dict) -> str:
    return (f"{counts['quiet_rounds']} quiet rounds of {counts['rounds_tried']}"
            + ("" if counts["quiet_rounds"] else " (none quiet: every round counts)"))


def report_concurrency(sizes: Sizes, timing: Rounds) -> dict:
    results = summaries(timing)
    title = (f"Two branches of {sizes.chain} float32 {sizes.n}x{sizes.n} matmuls "
             f"({rounds_note(timing.counts())}, alternating)")
    print_table(title, ["variant", "median ms", "best ms", "x numpy seq", "x tw 1 device"],
                concurrency_rows(results))
    ratios = {statistic: concurrency_ratios(results, statistic)
              for statistic in ("median_ms", "best_ms")}
    print("\nSpeedups (median rounds / best rounds):")
    for name in ratios["median_ms"]:
        print(f"  {name}: {ratios['median_ms'][name]:.3f} / {ratios['best_ms'][name]:.3f}")
    return ratios


def report_cut_edges(sizes: Sizes, cut_edges: dict, rounds: dict) -> dict:
    notes = ", ".join(f"{mb} MB: {rounds_note(c)}" for mb, c in rounds.items())
    print_table(f"Cut edge cost, medians ({notes}); us per step; extra = over the all-on-cpu:0 "
                "step, or the whole numpy cast",
                ["MB", "variant", "us/step", "extra us", "extra us/MB"],
                cut_edge_rows(cut_edges))
    lines = {v.label: fitted_line(cut_edges, v) for v in CUT_VARIANTS[1:]}
    print("\nFitted over the sizes (extra us = fixed + per MB x MB):")
    for label, line in lines.items():
        print(f"  {label}: {line['fixed_us']:.1f} us fixed + {line['us_per_mb']:.2f} us/MB")
    return lines


def blas_line(blas: list) -> str:
    if not blas:
        return "BLAS: threadpoolctl not installed; numpy on 2 threads near 2x shows one thread"
    return "BLAS: " + ", ".join(f"{b['internal_api']} {b['version']}, {b['num_threads']} thread"
                                for b in blas)


def report(args, sizes: Sizes, blas: list, timing: Rounds, cut_edges: tuple) -> None:
    ratios = report_concurrency(sizes, timing)
    lines = report_cut_edges(sizes, *cut_edges)
    goal = goal_line(ratios["median_ms"])
    print("\nGoal (medians):\n  " + goal)
    print(blas_line(blas))
    by_size, rounds = cut_edges
    write_json("multidevice", {
        "quick": args.quick,
        "sizes": dataclasses.asdict(sizes),
        "blas": blas,
        "load_average": list(os.getloadavg()),
        "concurrency": summaries(timing),
        "concurrency_rounds": timing.counts(),
        "ratios": ratios["median_ms"],
        "ratios_of_best": ratios["best_ms"],
        "cut_edge": {str(mb): by_label for mb, by_label in by_size.items()},
        "cut_edge_rounds": {str(mb): counts for mb, counts in rounds.items()},
        "cut_edge_extra_us_per_mb": {
            str(mb): {v.label: extra_us(by_size, mb, v) / mb for v in CUT_VARIANTS[1:]}
            for mb in by_size},
        "cut_edge_fit": lines,
        "goal": goal,
        "notes": "times are medians (and bests) of alternating rounds, keeping the rounds in "
                 "which other processes used under 10% of a core; ratios are measured in the "
                 "same run; extra us is the median step time over the all-on-cpu:0 graph's",
    }, args.output)


def main(argv=None) -> None:
    args = argument_parser(__doc__.splitlines()[0], "small sizes, few rounds").parse_args(argv)
    sizes = QUICK if args.quick else FULL
    blas = single_threaded_blas("benchmarks.multidevice")
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    concurrency = measure_concurrency(sizes)
    cut_edges = measure_cut_edges(sizes)
    report(args, sizes, blas, concurrency, cut_edges)


if __name__ == "__main__":
    main()
