"""Data-parallel scaling: examples/s of synchronous data-parallel training with one and two
workers, the scaling efficiency, and the same step simulated on 8 GPUs.

The step is ``examples/data_parallel_mnist.py``'s: ``tw.train.replicate`` of the MNIST MLP
(784-256-10) or of the Deep MNIST CNN (without dropout), Adam, the global batch fed as one
array and split over the replicas. Weak scaling, as data-parallel results are quoted: every
replica trains on the same per-replica batch, so two replicas take a global batch twice as
large. Inputs are random (fixed) images and one-hot labels.

1. **Measured on this machine**, per model and per-replica batch, in one run:

   * Ray, 1 worker: one replica on ``/job:worker/task:0`` of ``tw.Session("local:1")``;
   * Ray, 2 workers, allreduce / ps-sync: two replicas on ``/job:worker/task:0..1`` of
     ``tw.Session("local:2")`` (ps-sync keeps the variables on task 0, replicate's default);
   * in-process, 1 device, and 2 virtual CPUs (``device_count={"CPU": 2}``), allreduce /
     ps-sync: the same graphs on device threads of this process, for comparison.

   Scaling efficiency = throughput(2) / (2 x throughput(1)), each 2-replica variant against
   the 1-replica variant of its kind; with the per-replica batch fixed it is the 1-replica
   step time over the 2-replica step time. "vs in-process 1" divides by twice the in-process
   one-device throughput instead: a step on one Ray worker is slower than in process, which
   flatters the first figure.

   One BLAS thread per worker: ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``,
   ``MKL_NUM_THREADS`` and ``NUMBA_NUM_THREADS`` are set to 1 at the top of this module, before
   numpy loads and before anything starts Ray, whose worker processes inherit them; the run
   checks it in every worker process (``/proc/<pid>/environ``) and with threadpoolctl in a Ray
   task. Every session runs one inter-op thread per device (``inter_op_parallelism_threads=1``).

   Each Ray variant runs alone: its session starts for the round, warms up, is timed and
   closes, and its worker processes are gone before the next variant starts. An idle Ray
   worker is not idle: its main thread wakes 100 times a second (Ray's signal check), and the
   three idle workers of the other two Ray variants, kept alive as they once were, slowed the
   two-worker step by ~4% (CNN at 200 per replica: 226 -> 237 ms), a cost no user of one
   session pays. The in-process variants keep one session each for the whole case.

   Variants are timed in alternating rounds, each a batch of steps of about
   ``seconds_per_sample``. This machine is shared: a round in which processes outside this
   benchmark's own process tree (this process, Ray's daemons and workers) used more than a
   tenth of a core while its variants were timed (starting the Ray sessions does not count)
   is set aside, until the asked-for number of quiet rounds (or three times as
   many rounds in all) ran; then the quiet rounds count, or all rounds when none was quiet.
   Tables show medians and say how many rounds were kept. The CPU seconds the process tree
   spent per example are reported too: a figure other processes' load barely moves.

2. **Simulated** with the placement simulator (``tw.placement.plan``): the same replicated step,
   1 replica at the per-replica batch b against 8 replicas at 8b, on

   * an 8-GPU machine (DGX-1-like: 8 V100-class GPUs, 15.7 TFLOP/s, 900 GB/s, 10 us per op,
     50 GB/s peer links), and
   * 8 machines of ``examples/clusters/8node.json``, one GPU each, over 25 Gb/s Ethernet.

   Efficiency = simulated step(1 replica, b) / simulated step(8 replicas, 8b) (the throughput
   ratio over 8). Each replica's slice is fed on its own device (as each worker's own input
   pipeline would deliver it), so no input crosses a link. The simulator runs one transfer at a
   time per ordered device pair and does not model a device's links sharing one port or NIC,
   so a parameter server's 7 parallel transfers are not slowed by each other there; ps-sync
   figures are optimistic by that much.

    python -m benchmarks.scaling            # MLP at 100 and 1,000 per replica, CNN at 50, 200
    python -m benchmarks.scaling --quick    # small batches, few rounds: a smoke run
"""

from __future__ import annotations

import os

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS")

if __name__ == "__main__":
    # Before numpy loads its BLAS and before Ray starts its workers (they inherit this).
    for _var in THREAD_VARS:
        os.environ[_var] = "1"

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import tensorweave as tw  # noqa: E402
from benchmarks.common import (WindowedLoadMeter, argument_parser,  # noqa: E402
                               check_single_threaded_blas, print_table, quiet_rounds,
                               single_threaded_blas, write_json)
from benchmarks.multidevice import calls_per_sample, time_calls  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "examples"))
import data_parallel_mnist as example  # noqa: E402

GOAL_CNN_EFFICIENCY = 0.90
SIDE = 28
WORKERS = ("/job:worker/task:0", "/job:worker/task:1")
CPUS = ("/cpu:0", "/cpu:1")


@dataclasses.dataclass(frozen=True)
class Case:
    model: str               # a key of example.NETWORKS
    batch: int               # per replica

    @property
    def label(self) -> str:
        return f"{self.model}, {self.batch} per replica"


@dataclasses.dataclass(frozen=True)
class Sizes:
    cases: tuple
    rounds: int
    seconds_per_sample: float


FULL = Sizes(cases=(Case("mlp", 100), Case("mlp", 1000), Case("cnn", 50), Case("cnn", 200)),
             rounds=7, seconds_per_sample=0.5)
QUICK = Sizes(cases=(Case("cnn", 4),), rounds=1, seconds_per_sample=0.02)


@dataclasses.dataclass(frozen=True)
class Variant:
    label: str
    kind: str                # "ray" or "in-process"
    replicas: int
    mode: str
    baseline: str | None     # the 1-replica variant it scales from


RAY_1 = "Ray, 1 worker"
LOCAL_1 = "in-process, 1 device"
VARIANTS = (
    Variant(RAY_1, "ray", 1, "allreduce", None),
    Variant("Ray, 2 workers, allreduce", "ray", 2, "allreduce", RAY_1),
    Variant("Ray, 2 workers, ps-sync", "ray", 2, "ps-sync", RAY_1),
    Variant(LOCAL_1, "in-process", 1, "allreduce", None),
    Variant("in-process, 2 virtual CPUs, allreduce", "in-process", 2, "allreduce", LOCAL_1),
    Variant("in-process, 2 virtual CPUs, ps-sync", "in-process", 2, "ps-sync", LOCAL_1),
)


# -- one variant: a warm training step ----------------------------------------------------------
@dataclasses.dataclass
class Runner:
    variant: Variant
    session: object
    step: object             # () -> None: one training step
    examples_per_step: int


def build_step(case: Case, devices, mode: str, seed: int = 0):
    """The replicated training step of ``case`` on ``devices``: (graph, train op, feed)."""
    graph = tw.Graph()
    with graph.as_default():
        tw.set_random_seed(seed)
        images = tw.placeholder(tw.float32, [None, SIDE * SIDE], name="images")
        labels = tw.placeholder(tw.float32, [None, 10], name="labels")
        slices: list = []
        model_fn = example.replica_model(example.NETWORKS[case.model], SIDE, slices)
        learning_rate = example.DEFAULT_LEARNING_RATES[case.model]
        rep = tw.train.replicate(model_fn, [images, labels], devices,
                                 lambda: tw.train.AdamOptimizer(learning_rate), mode=mode)
        init = tw.global_variables_initializer()
    n = len(devices) * case.batch
    rng = np.random.default_rng(seed)
    feed = {images: rng.random((n, SIDE * SIDE), dtype=np.float32),
            labels: np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]}
    return graph, init, rep, feed


def make_runner(case: Case, variant: Variant) -> Runner:
    if variant.kind == "ray":
        devices = WORKERS[:variant.replicas]
        session_args = (f"local:{variant.replicas}",)
        config = tw.ConfigProto(inter_op_parallelism_threads=1)
    else:
        devices = CPUS[:variant.replicas]
        session_args = ()
        config = tw.ConfigProto(device_count={"CPU": variant.replicas},
                                inter_op_parallelism_threads=1)
    graph, init, rep, feed = build_step(case, devices, variant.mode)
    sess = tw.Session(*session_args, graph=graph, config=config)
    sess.run(init)
    loss = sess.run([rep.train_op, rep.loss], feed)[1]
    if not np.isfinite(loss):
        raise AssertionError(f"{variant.label}: the first step's loss is {loss}")

    def step():
        sess.run(rep.train_op, feed)

    step()  # warm: the fetch set above compiled another signature
    return Runner(variant, sess, step, variant.replicas * case.batch)


# -- whose CPU time: this process tree's, or others' ----------------------------------------------
def process_tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds used so far by ``root`` (default: this process) and all its descendants
    (Ray's daemons and workers, which a local Ray instance starts below this process),
    including descendants that exited: a process's CPU time moves into its parent's
    children's time when the parent reaps it (Ray's raylet reaps its workers), so the total
    never drops when a session's workers go."""
    root = os.getpid() if root is None else root
    children: dict = {}
    cpu: dict = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        ppid = int(fields[1])
        own, reaped = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
        children.setdefault(ppid, []).append(int(name))
        cpu[int(name)] = (own + reaped) / tick
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += cpu.get(pid, 0.0)
        stack.extend(children.get(pid, ()))
    return total


@dataclasses.dataclass
class Sample:
    seconds_per_step: float
    cpu_seconds_per_step: float   # this process tree's


def sample(runner: Runner, calls: int, meter) -> Sample:
    with meter.window():
        cpu = process_tree_cpu_seconds()
        seconds = time_calls(runner.step, calls)
        return Sample(seconds, (process_tree_cpu_seconds() - cpu) / calls)


@contextlib.contextmanager
def ray_runner(case: Case, variant: Variant):
    """A runner of a Ray variant with its own session, warmed up; on exit the session closes
    and its worker processes are waited for (up to 30 s)."""
    runner = make_runner(case, variant)
    pids = [info["pid"] for info in runner.session.remote_tasks.values()]
    try:
        for _ in range(RAY_WARM_STEPS):  # fresh processes: first steps fault pages in
            runner.step()
        yield runner
    finally:
        runner.session.close()
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{pid}") for pid in pids) and \
                time.monotonic() < deadline:
            time.sleep(0.05)


RAY_WARM_STEPS = 3


def measure_case(case: Case, sizes: Sizes) -> dict:
    """Alternating rounds of every variant of ``case``; per variant its samples, plus the
    round counts and the worker checks. Ray variants get a session per round (see the module
    doc); a first pass over them checks their workers and sizes their samples."""
    runners = {v.label: make_runner(case, v) for v in VARIANTS if v.kind != "ray"}
    try:
        calls, environments, in_task = {}, {}, None
        for variant in VARIANTS:
            if variant.kind != "ray":
                continue
            with ray_runner(case, variant) as runner:
                checked = check_ray_workers([runner.session])
                environments.update(checked["worker_environments"])
                in_task = checked["blas_in_a_ray_task"]
                calls[variant.label] = calls_per_sample(runner.step, sizes.seconds_per_sample)
        workers = {"worker_environments": environments, "blas_in_a_ray_task": in_task}
        for label, runner in runners.items():
            calls[label] = calls_per_sample(runner.step, sizes.seconds_per_sample)

        # Ray's daemons and workers are children of this process: their CPU time is ours.
        # Only the timed samples count, not the sessions started between them.
        meter = WindowedLoadMeter(own_cpu_seconds=process_tree_cpu_seconds,
                                  slack_seconds=0.05)

        def one_round():
            samples = {}
            for variant in VARIANTS:
                if variant.kind == "ray":
                    with ray_runner(case, variant) as runner:
                        samples[variant.label] = sample(runner, calls[variant.label], meter)
                else:
                    samples[variant.label] = sample(runners[variant.label],
                                                    calls[variant.label], meter)
            return samples

        rounds = quiet_rounds(one_round, wanted=sizes.rounds, at_most=3 * sizes.rounds,
                              meter=meter)
        return {"rounds": rounds, "calls": calls, "workers": workers,
                "examples_per_step": {v.label: v.replicas * case.batch for v in VARIANTS}}
    finally:
        for runner in runners.values():
            runner.session.close()


# -- one BLAS thread in every worker -------------------------------------------------------------
def check_ray_workers(sessions) -> dict:
    """Every Ray worker process of ``sessions`` started with one BLAS thread (its environment),
    and threadpoolctl in a Ray task of the same instance sees one."""
    environments = {}
    for sess in sessions:
        for task, info in sess.remote_tasks.items():
            environments[f"{task} (pid {info['pid']})"] = process_environment(info["pid"])
    wrong = {name: env for name, env in environments.items()
             if any(env[v] != "1" for v in THREAD_VARS)}
    if wrong:
        raise SystemExit(f"Ray workers do not run one BLAS thread: {wrong}; run this benchmark "
                         f"as a fresh process, `python -m benchmarks.scaling`")
    in_task = blas_in_a_ray_task()
    check_single_threaded_blas(in_task, "benchmarks.scaling")
    return {"worker_environments": environments, "blas_in_a_ray_task": in_task}


def process_environment(pid: int) -> dict:
    """The thread variables a process started with, and its niceness (Ray starts its workers
    at 15 unless ``RAY_worker_niceness`` says otherwise: under load from other processes they
    get the smaller share of the cores)."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        entries = f.read().split(b"\0")
    env = dict(e.decode(errors="replace").split("=", 1) for e in entries if b"=" in e)
    with open(f"/proc/{pid}/stat") as f:
        nice = int(f.read().rsplit(")", 1)[1].split()[16])
    return {**{v: env.get(v) for v in THREAD_VARS}, "nice": nice}


def _blas_here() -> list:
    """``blas_report()`` in the process running this, after numpy has loaded its BLAS. Ray
    ships this function to a worker by value; the worker imports ``benchmarks.common`` itself
    (it inherits this process's PYTHONPATH and Ray puts the driver's directory on its path)."""
    import numpy  # noqa: F401, PLC0415 - loads the BLAS that threadpoolctl then reports

    from benchmarks.common import blas_report  # noqa: PLC0415
    return blas_report()


def blas_in_a_ray_task() -> list:
    import ray  # noqa: PLC0415 - started by the remote sessions above
    return ray.get(ray.remote(num_cpus=0)(_blas_here).remote(), timeout=120)


# -- the figures ---------------------------------------------------------------------------------
def case_results(measured: dict) -> dict:
    """Per variant: medians of step time, examples/s and CPU per example; efficiencies."""
    results = {}
    for label, samples in measured["rounds"].samples.items():
        seconds = statistics.median(s.seconds_per_step for s in samples)
        cpu = statistics.median(s.cpu_seconds_per_step for s in samples)
        examples = measured["examples_per_step"][label]
        results[label] = {"ms_per_step": seconds * 1e3,
                          "best_ms_per_step": min(s.seconds_per_step for s in samples) * 1e3,
                          "examples_per_s": examples / seconds,
                          "cpu_ms_per_example": cpu / examples * 1e3,
                          "samples": len(samples)}
    for variant in VARIANTS:
        if variant.baseline is None:
            continue
        mine, base = results[variant.label], results[variant.baseline]
        mine["scaling_efficiency"] = mine["examples_per_s"] / (2 * base["examples_per_s"])
        # Against the fastest single replica (one process, no remote step): what two workers
        # give over the best one process does.
        mine["efficiency_vs_in_process_1"] = (mine["examples_per_s"]
                                              / (2 * results[LOCAL_1]["examples_per_s"]))
        # Work per example against one replica's: above 1, two replicas spend more CPU.
        mine["cpu_per_example_ratio"] = mine["cpu_ms_per_example"] / base["cpu_ms_per_example"]
    return results


def print_case(case: Case, measured: dict, results: dict) -> None:
    rounds = measured["rounds"]
    note = (f"{rounds.kept} quiet rounds of {rounds.tried}" if rounds.kept
            else f"no quiet round in {rounds.tried}: every round counts")
    rows = []
    for variant in VARIANTS:
        r = results[variant.label]
        rows.append([variant.label, r["ms_per_step"], r["examples_per_s"],
                     r.get("scaling_efficiency", ""), r.get("efficiency_vs_in_process_1", ""),
                     r["cpu_ms_per_example"], r.get("cpu_per_example_ratio", "")])
    print_table(f"{case.label} ({note}; medians)",
                ["variant", "ms/step", "examples/s", "efficiency", "vs in-process 1",
                 "CPU ms/example", "CPU/example vs 1"], rows)


# -- the simulated 8-GPU step --------------------------------------------------------------------
GPU_PROFILE = {"device_type": "GPU", "memory_bytes": "16GiB", "peak_flops": "15.7T",
               "memory_bandwidth": "900GB/s", "launch_overhead": "10us"}
CPU_PROFILE = {"device_type": "CPU", "memory_bytes": "256GiB", "peak_flops": "1T",
               "memory_bandwidth": "100GB/s", "launch_overhead": "2us"}
EIGHT_GPU_MACHINE = {
    "profiles": {"GPU": GPU_PROFILE, "CPU": CPU_PROFILE},
    "links": {"peer": {"bandwidth": "50GB/s", "latency": "10us"},
              "pcie": {"bandwidth": "12GB/s", "latency": "10us"}},
    "jobs": {"localhost": {"tasks": ["dgx:2222"], "devices": {"CPU": 1, "GPU": 8}}},
}


def simulated_clusters() -> list:
    """(label, cluster, the 8 replica devices)."""
    with open(os.path.join(REPO_ROOT, "examples", "clusters", "8node.json")) as f:
        eight_nodes = json.load(f)
    return [("8-GPU machine (50 GB/s peer links)", EIGHT_GPU_MACHINE,
             [f"/job:localhost/task:0/device:GPU:{i}" for i in range(8)]),
            ("8 machines x 1 GPU (25 Gb/s Ethernet)", eight_nodes,
             [f"/job:worker/task:{i}/device:GPU:0" for i in range(8)])]


def simulated_step(case: Case, cluster, devices, mode: str) -> float:
    """Simulated seconds of one replicated step, each replica's slice fed on its device."""
    graph = tw.Graph()
    with graph.as_default():
        images = tw.placeholder(tw.float32, [None, SIDE * SIDE])
        labels = tw.placeholder(tw.float32, [None, 10])
        slices: list = []
        model_fn = example.replica_model(example.NETWORKS[case.model], SIDE, slices)
        rep = tw.train.replicate(model_fn, [images, labels], devices,
                                 lambda: tw.train.AdamOptimizer(1e-4), mode=mode)
        feeds = {t: (case.batch,) + tuple(t.shape.as_list()[1:]) for pair in slices
                 for t in pair}
        plan = tw.placement.plan(graph, cluster, fetches=[rep.train_op, rep.loss],
                                 feed_dict=feeds)
    return plan.step_time


def simulate(cases) -> list:
    rows = []
    for cluster_label, cluster, devices in simulated_clusters():
        for case in cases:
            one = simulated_step(case, cluster, devices[:1], "allreduce")
            for mode in ("allreduce", "ps-sync"):
                eight = simulated_step(case, cluster, devices, mode)
                rows.append({"cluster": cluster_label, "case": case.label, "mode": mode,
                             "ms_1_replica": one * 1e3, "ms_8_replicas": eight * 1e3,
                             "speedup": 8 * one / eight, "efficiency": one / eight})
    return rows


def print_simulation(rows: list) -> None:
    print_table("Simulated: 1 replica at b vs 8 replicas at 8b (efficiency = step(1) / step(8))",
                ["cluster", "case", "mode", "ms, 1 replica", "ms, 8 replicas",
                 "speedup (of 8)", "efficiency"],
                [[r["cluster"], r["case"], r["mode"], r["ms_1_replica"], r["ms_8_replicas"],
                  r["speedup"], r["efficiency"]] for r in rows])


# -- report --------------------------------------------------------------------------------------
def goal_line(measured: dict) -> str:
    cnn = [label for label in measured if label.startswith("cnn")]
    if not cnn:
        return "no CNN case in this run"
    parts = []
    for label in cnn:
        for variant in VARIANTS:
            if variant.kind == "ray" and variant.baseline:
                value = measured[label]["results"][variant.label]["scaling_efficiency"]
                met = "met" if value >= GOAL_CNN_EFFICIENCY else "NOT met"
                parts.append(f"{label}, {variant.label}: {value:.0%} ({met})")
    return (f"CNN scaling efficiency with 2 worker processes (goal >= "
            f"{GOAL_CNN_EFFICIENCY:.0%}): " + "; ".join(parts))


def main(argv=None) -> None:
    args = argument_parser(__doc__.splitlines()[0], "small batches, few rounds").parse_args(argv)
    sizes = QUICK if args.quick else FULL
    blas = single_threaded_blas("benchmarks.scaling")
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    measured = {}
    for case in sizes.cases:
        raw = measure_case(case, sizes)
        results = case_results(raw)
        print_case(case, raw, results)
        measured[case.label] = {"results": results, **raw["rounds"].counts(),
                                "steps_per_sample": raw["calls"], "workers": raw["workers"]}
    simulation = simulate(sizes.cases)
    print_simulation(simulation)
    goal = goal_line(measured)
    print("\n" + goal)
    print("BLAS here: " + ", ".join(f"{b['internal_api']} {b['num_threads']} thread"
                                    for b in blas))
    import ray  # noqa: PLC0415 - the remote sessions started it
    ray.shutdown()
    write_json("scaling", {
        "quick": args.quick, "sizes": dataclasses.asdict(sizes), "blas": blas,
        "thread_vars": {v: os.environ.get(v) for v in THREAD_VARS},
        "load_average_after": list(os.getloadavg()), "measured": measured,
        "simulated": simulation, "goal": goal,
        "notes": "weak scaling (fixed per-replica batch); efficiency = examples/s of 2 "
                 "replicas / (2 x examples/s of 1); medians of alternating rounds, keeping "
                 "rounds in which processes outside this benchmark's process tree used under "
                 "10% of a core (all rounds when none was quiet); simulated efficiency = "
                 "step(1 replica, b) / step(8 replicas, 8b)"}, args.output)


if __name__ == "__main__":
    main()
