"""Remote tasks on a local Ray instance: what a step costs with two worker tasks, and what a
tensor cut between them costs, next to Ray itself doing the same work in the same run.

A remote Session runs each task's partitions on one long-lived Ray actor
(``tensorweave/executor/remote.py``): per step the client calls ``run`` on every task that has
partitions (over the task's Unix socket when the task runs on the client's node) and gathers
the results; a tensor cut between tasks of one node goes from the
sending task as a message on a Unix socket, a large array through a shared-memory segment the
sender reuses every step (across nodes: a fire-and-forget actor call carrying the array through
Ray's object store). The baselines are plain Ray programs of the same shape, on actors of the
same Ray instance, with no tensorweave in them:

1. **Empty step.** One trivial op on each task (a scalar variable plus one), both fetched:

   * tensorweave: ``sess.run([a, b])`` on ``tw.Session("local:2")``;
   * Ray, actor calls: one method call on each of two plain actors, ``ray.get`` of both;
   * Ray, threaded actors: the same on actors with ``max_concurrency`` > 1, as tensorweave's
     task actors are (a delivery must get in while a step waits for it);
   * Ray Compiled Graph: ``InputNode`` -> a method of each actor -> ``MultiOutputNode``,
     ``execute`` + ``ray.get`` per step. A compiled graph's actors poll their channels while it
     exists, which would slow the other variants, so it runs on actors of its own, compiled
     once (not timed), timed alone before the others, then torn down; the CPU its actors use
     while idle is reported.

2. **Cut edge.** A float32 tensor of 4 and 64 MB made on task 0 (a variable's value) and read on
   task 1 by a cheap op (the max of its first 1024 elements, so the time is the transfer's):

   * tensorweave: the variable on task 0, the max on task 1, the max fetched;
   * Ray, same pattern: the client calls both actors; A sends its array to B as the argument of
     a fire-and-forget actor call, B's call waits for it, takes the max and returns it;
   * Ray, object ref: ``B.consume.remote(A.produce.remote(n))`` (the client hands A's result to
     B by reference; the array goes from A to B through the object store);
   * Ray Compiled Graph: A -> B in a compiled DAG (a shared-memory channel).

Variants are timed in alternating rounds (load from other processes then falls on all of them
alike; the Compiled Graph's rounds come first, alone, see above) and the median round counts; ratios are tensorweave over a Ray baseline of the same run.
Compiled Graphs are beta: when one cannot be compiled or run here, the table says why.

    python -m benchmarks.remote            # 4 and 64 MB, 15 rounds
    python -m benchmarks.remote --quick    # 4 MB, 3 rounds: a smoke run
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import statistics
import time

import tensorweave as tw
from benchmarks.common import argument_parser, print_table, write_json
from benchmarks.ray_baseline import HEAD, RayBaseline
from tensorweave.graph.device_names import DeviceSpec

MB = 1 << 20
GOAL_RATIO = 1.5            # tensorweave within 1.5x of raw Ray
TASKS = ("/job:worker/task:0", "/job:worker/task:1")
RECEIVE_TIMEOUT_S = 60.0
SLOW_TEARDOWN_MS = 5_000.0  # a compiled graph's teardown this slow waited for Ray's kill

TW = "tensorweave"
RAY_CALLS = "Ray, actor calls"
RAY_THREADED = "Ray, threaded actors"
RAY_SAME = "Ray, same pattern (A -> B actor call)"
RAY_REF = "Ray, object ref (B(A()))"
RAY_DAG = "Ray Compiled Graph"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What one run measures: rounds, seconds of steps per sample, cut-edge sizes in MB, and
    how long a compiled graph's idle CPU is watched."""

    rounds: int
    seconds_per_sample: float
    cut_mb: tuple
    cut_rounds: int
    idle_seconds: float


FULL = Sizes(rounds=15, seconds_per_sample=0.1, cut_mb=(4, 64), cut_rounds=15, idle_seconds=2.0)
QUICK = Sizes(rounds=3, seconds_per_sample=0.01, cut_mb=(4,), cut_rounds=3, idle_seconds=0.5)


# -- timing ---------------------------------------------------------------------------------------

def sample(step, calls: int) -> float:
    """Seconds per step of ``calls`` steps back to back."""
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - start) / calls


def interleaved_samples(fns: dict, rounds: int, number: dict) -> dict:
    """Seconds per step of each function, one sample (``number[name]`` steps) per round; a
    round times every function once, always in the same order, so load from other processes
    falls on all of them alike."""
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(sample(fn, number[name]))
    return samples


def calls_per_sample(step, seconds: float) -> int:
    """How many steps (warm) fill about ``seconds``, so that sub-millisecond steps are timed
    in batches and one slow call does not make a sample."""
    step()
    start = time.perf_counter()
    for _ in range(3):
        step()
    once = (time.perf_counter() - start) / 3
    return max(1, int(seconds / max(once, 1e-7)))


def summary(seconds: list) -> dict:
    return {"median_ms": statistics.median(seconds) * 1e3, "best_ms": min(seconds) * 1e3,
            "samples": len(seconds)}


def timed(fns: dict, rounds: int, seconds_per_sample: float) -> dict:
    """Size each function's batches (warm), then time them all in alternating rounds."""
    number = {name: calls_per_sample(fn, seconds_per_sample) for name, fn in fns.items()}
    samples = interleaved_samples(fns, rounds, number)
    return {name: {**summary(s), "calls_per_sample": number[name]} for name, s in samples.items()}


def timed_alone(step, rounds: int, seconds_per_sample: float) -> dict:
    """One function's rounds back to back (a compiled graph's: see ``CompiledDag``)."""
    calls = calls_per_sample(step, seconds_per_sample)
    return {**summary([sample(step, calls) for _ in range(rounds)]), "calls_per_sample": calls}


# -- the Ray baselines ----------------------------------------------------------------------------

@dataclasses.dataclass
class Pair:
    """Two baseline actors, A and B; B is A's peer for ``send``."""

    a: object
    b: object


def start_pairs(ray, kinds: dict) -> dict:
    """``{name: Pair}``, ``kinds`` saying which are threaded; all actors start at once."""
    pairs = {}
    for name, threaded in kinds.items():
        options = {"num_cpus": 0, "max_concurrency": 16} if threaded else {"num_cpus": 0}
        actor = ray.remote(RayBaseline).options(**options)
        pairs[name] = Pair(actor.remote(), actor.remote())
    ray.get([ref for p in pairs.values()
             for ref in (p.a.set_peer.remote(p.b), p.b.set_peer.remote(p.a))])
    return pairs


def kill_pair(ray, pair: Pair):
    for handle in (pair.a, pair.b):
        try:
            ray.kill(handle)
        except Exception:  # noqa: BLE001 - gone already
            pass


class CompiledDag:
    """A Ray Compiled Graph over a pair of actors of its own, or the reason it could not be
    compiled or run here (Compiled Graphs are beta; the rest of the benchmark runs anyway).

    While a compiled graph exists its actors poll their input channels (``idle_cores``
    measures what that costs), which would slow every variant timed meanwhile; so it is
    compiled once per measurement, timed alone before the others, and closed. An actor takes
    part in one compiled graph at a time (a second compile on the same actors blocked here),
    and a teardown once hung here with the actors' loops still spinning: so each graph gets a
    fresh pair of actors, and ``close`` lets Ray kill them when their loops do not stop within
    its teardown timeout (30 s by default)."""

    def __init__(self, ray, build, value):
        self.ray = ray
        self.build = build          # Pair -> the DAG's output node
        self.value = value          # what each step's execute() is given
        self.pair = None
        self.dag = None
        self.error = None
        self.compile_ms = None
        self.teardown_ms = None
        self.first_value = None

    @property
    def works(self) -> bool:
        return self.error is None

    def open(self) -> bool:
        """Start its actors, compile, run one step; False (the error kept) if that fails."""
        try:
            self.pair = start_pairs(self.ray, {"dag": False})["dag"]
            start = time.perf_counter()
            self.dag = self.build(self.pair).experimental_compile()
            self.compile_ms = (time.perf_counter() - start) * 1e3
            self.first_value = self.step()
        except Exception as e:  # noqa: BLE001 - a beta feature: record why, measure the rest
            self.error = f"{type(e).__name__}: {_first_line(e)}"
            self.close()
        return self.works

    def step(self):
        return self.ray.get(self.dag.execute(self.value))

    def idle_cores(self, seconds: float) -> float | None:
        """CPU its two actors use (in cores) while no step runs; None where /proc cannot
        tell."""
        pids = self.ray.get([self.pair.a.pid.remote(), self.pair.b.pid.remote()])
        before = [process_cpu_seconds(pid) for pid in pids]
        time.sleep(seconds)
        after = [process_cpu_seconds(pid) for pid in pids]
        if None in before or None in after:
            return None
        return (sum(after) - sum(before)) / seconds

    def close(self):
        if self.dag is not None:
            start = time.perf_counter()
            try:
                self.dag.teardown(kill_actors=True)
            except Exception:  # noqa: BLE001 - broken already; its actors go below
                pass
            self.teardown_ms = (time.perf_counter() - start) * 1e3
            self.dag = None
        if self.pair is not None:
            kill_pair(self.ray, self.pair)
            self.pair = None

    def describe(self) -> dict:
        return {"works": self.works, "error": self.error, "compile_ms": self.compile_ms,
                "teardown_ms": self.teardown_ms}


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def empty_dag(ray) -> CompiledDag:
    from ray.dag import InputNode, MultiOutputNode  # noqa: PLC0415 - optional, beta

    def build(pair):
        with InputNode() as step:
            return MultiOutputNode([pair.a.ping.bind(step), pair.b.ping.bind(step)])

    return CompiledDag(ray, build, 0)


def cut_dag(ray, elements: int) -> CompiledDag:
    from ray.dag import InputNode  # noqa: PLC0415 - optional, beta

    def build(pair):
        with InputNode() as size:
            return pair.b.consume.bind(pair.a.produce.bind(size))

    return CompiledDag(ray, build, elements)


def measure_dag(dag: CompiledDag, sizes: Sizes, rounds: int, idle: bool) -> tuple:
    """The compiled graph timed alone (None if it did not work here) and what became of it."""
    info: dict = {}
    result = None
    try:
        if dag.open():
            if idle:
                info["idle_cores"] = dag.idle_cores(sizes.idle_seconds)
            result = timed_alone(dag.step, rounds, sizes.seconds_per_sample)
    finally:
        dag.close()
    return result, {**dag.describe(), **info}


def _first_line(e) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""


# -- the tensorweave side -------------------------------------------------------------------------

@dataclasses.dataclass
class TwGraph:
    """The benchmark's graph: the empty step's two fetches, and a cut edge per size."""

    graph: object
    empty: list
    cut: dict               # MB -> the max on task 1 of the variable on task 0
    init: object


def build_tw_graph(cut_mb: tuple) -> TwGraph:
    graph = tw.Graph()
    empty, cut = [], {}
    with graph.as_default():
        for i, task in enumerate(TASKS):
            with tw.device(task):
                scalar = tw.Variable(float(i), name=f"scalar{i}")
                empty.append(tw.add(scalar, 1.0, name=f"plus_one{i}"))
        for megabytes in cut_mb:
            with tw.device(TASKS[0]):
                big = tw.Variable(tw.zeros([megabytes * MB // 4], tw.float32),
                                  name=f"big{megabytes}")
            with tw.device(TASKS[1]):
                head = tw.slice(big, [0], [HEAD], name=f"head{megabytes}")
                cut[megabytes] = tw.reduce_max(head, name=f"max{megabytes}")
        init = tw.global_variables_initializer()
    return TwGraph(graph, empty, cut, init)


def check_transfers(sess, fetches, expected_bytes: list):
    """The step moves exactly the tensors the benchmark claims it moves, from task 0 to 1."""
    transfers = [t for t in sess.step_plan(fetches).partitions.transfers if not t.control]
    task = [DeviceSpec.from_string(name) for name in TASKS]
    got = [(t.bytes, task[0].matches(DeviceSpec.from_string(t.src_device)),
            task[1].matches(DeviceSpec.from_string(t.dst_device))) for t in transfers]
    if got != [(size, True, True) for size in expected_bytes]:
        raise AssertionError(f"step {fetches} moves {transfers}, expected {expected_bytes} "
                             f"bytes from {TASKS[0]} to {TASKS[1]}")


# -- 1. the empty step ----------------------------------------------------------------------------

def measure_empty(ray, sess, built: TwGraph, pairs: dict, sizes: Sizes) -> tuple:
    """The empty step's timings, and what became of its Compiled Graph (with the CPU its
    actors burn while it waits for a step)."""
    check_transfers(sess, built.empty, [])
    if [float(v) for v in sess.run(built.empty)] != [1.0, 2.0]:
        raise AssertionError("the empty step's fetches are not [1.0, 2.0]")
    dag_result, dag_info = measure_dag(empty_dag(ray), sizes, sizes.rounds, idle=True)
    plain, threaded = pairs["plain"], pairs["threaded"]
    results = timed({
        TW: lambda: sess.run(built.empty),
        RAY_CALLS: lambda: ray.get([plain.a.ping.remote(), plain.b.ping.remote()]),
        RAY_THREADED: lambda: ray.get([threaded.a.ping.remote(), threaded.b.ping.remote()]),
    }, sizes.rounds, sizes.seconds_per_sample)
    if dag_result is not None:
        results[RAY_DAG] = dag_result
    return results, dag_info


# -- 2. the cut edge ------------------------------------------------------------------------------

def measure_cut(ray, sess, built: TwGraph, pairs: dict, sizes: Sizes) -> tuple:
    """Per size in MB: the timings of each variant, and what became of the Compiled Graph."""
    results, dags = {}, {}
    for megabytes in sizes.cut_mb:
        elements = megabytes * MB // 4
        fetch = built.cut[megabytes]
        check_transfers(sess, fetch, [megabytes * MB])
        dag = cut_dag(ray, elements)
        dag_result, dags[megabytes] = measure_dag(dag, sizes, sizes.cut_rounds, idle=False)
        fns = {TW: lambda fetch=fetch: sess.run(fetch), **ray_cut_fns(ray, pairs, elements)}
        firsts = {name: fn() for name, fn in fns.items()}
        if dag.works:
            firsts[RAY_DAG] = dag.first_value
        for name, value in firsts.items():
            if value != 0.0:
                raise AssertionError(f"{name}: the max of zeros came back as {value}")
        results[megabytes] = timed(fns, sizes.cut_rounds, sizes.seconds_per_sample)
        if dag_result is not None:
            results[megabytes][RAY_DAG] = dag_result
    return results, dags


def ray_cut_fns(ray, pairs: dict, elements: int) -> dict:
    """The two actor-call baselines of a cut edge of ``elements`` float32."""
    same, plain = pairs["threaded"], pairs["plain"]
    steps = itertools.count(1)

    def same_pattern():
        step = next(steps)
        refs = [same.a.send.remote(step, elements),
                same.b.receive.remote(step, RECEIVE_TIMEOUT_S)]
        return ray.get(refs)[1]

    def object_ref():
        return ray.get(plain.b.consume.remote(plain.a.produce.remote(elements)))

    return {RAY_SAME: same_pattern, RAY_REF: object_ref}


# -- report -------------------------------------------------------------------------------------

def empty_rows(results: dict) -> list:
    tw_ms = results[TW]["median_ms"]
    return [[name, r["median_ms"] * 1e3, r["best_ms"] * 1e3, tw_ms / r["median_ms"]]
            for name, r in results.items()]


def cut_rows(results: dict) -> list:
    rows = []
    for megabytes, by_name in results.items():
        tw_ms = by_name[TW]["median_ms"]
        for name, r in by_name.items():
            rows.append([megabytes, name, r["median_ms"], r["best_ms"],
                         megabytes / (r["median_ms"] / 1e3), tw_ms / r["median_ms"]])
    return rows


def ratios_of(empty: dict, cut: dict) -> dict:
    """tensorweave's median over each Ray baseline's median, all from this run."""
    ratios = {f"empty_step_tw_vs_{_key(name)}": empty[TW]["median_ms"] / r["median_ms"]
              for name, r in empty.items() if name != TW}
    for megabytes, by_name in cut.items():
        for name, r in by_name.items():
            if name != TW:
                ratios[f"cut_{megabytes}mb_tw_vs_{_key(name)}"] = (
                    by_name[TW]["median_ms"] / r["median_ms"])
    return ratios


def _key(name: str) -> str:
    keys = {RAY_CALLS: "ray_actor_calls", RAY_THREADED: "ray_threaded_actors",
            RAY_SAME: "ray_same_pattern", RAY_REF: "ray_object_ref", RAY_DAG: "ray_compiled_graph"}
    return keys[name]


def goal_lines(ratios: dict, cut: dict) -> list:
    """The issue's goal: tensorweave within GOAL_RATIO of raw Ray for the same pattern (plain
    actor calls for the empty step, the A -> B actor call for a cut edge)."""
    checks = [("empty step", ratios["empty_step_tw_vs_ray_actor_calls"], RAY_CALLS)]
    checks += [(f"{mb} MB cut edge", ratios[f"cut_{mb}mb_tw_vs_ray_same_pattern"], RAY_SAME)
               for mb in cut]
    return [f"{what}: tensorweave / {baseline} = {ratio:.2f}x (goal <= {GOAL_RATIO}x): "
            f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}" for what, ratio, baseline in checks]


def transport_lines(empty: dict, cut: dict, dags: dict) -> list:
    """Which transport tensorweave uses, what Compiled Graph channels measured here, and why
    they are not the default (DESIGN.md, "Remote transfers")."""
    lines = ["tensorweave: per step one call per task, a Unix-socket message to a task of the "
             "client's node (an actor call to others); a cut tensor between tasks of one node "
             "is a Unix-socket message, its array in a shared-memory segment the sender reuses "
             "every step (an actor call through Ray's object store across nodes)"]
    if RAY_DAG in empty:
        lines.append(f"empty step: Compiled Graph {empty[RAY_DAG]['median_ms'] * 1e3:.0f} us vs "
                     f"actor calls {empty[RAY_CALLS]['median_ms'] * 1e3:.0f} us "
                     f"(actor calls / Compiled Graph = "
                     f"{empty[RAY_CALLS]['median_ms'] / empty[RAY_DAG]['median_ms']:.2f}x)")
        idle = dags["empty"].get("idle_cores")
        if idle is not None:
            lines.append(f"while compiled and idle, its two actors used {idle:.2f} cores "
                         f"(they poll their input channels)")
    else:
        lines.append(f"empty step: Compiled Graph did not run here: {dags['empty']['error']}")
    for megabytes, by_name in cut.items():
        if RAY_DAG in by_name:
            lines.append(f"{megabytes} MB: Compiled Graph {by_name[RAY_DAG]['median_ms']:.2f} ms "
                         f"vs actor call {by_name[RAY_SAME]['median_ms']:.2f} ms")
            teardown_ms = dags["cut"][megabytes]["teardown_ms"] or 0.0
            if teardown_ms > SLOW_TEARDOWN_MS:
                lines.append(f"{megabytes} MB: its teardown took {teardown_ms / 1e3:.0f} s (the "
                             f"actors' loops did not stop; Ray killed them)")
        else:
            lines.append(f"{megabytes} MB: Compiled Graph did not run here: "
                         f"{dags['cut'][megabytes]['error']}")
    lines.append("default: actor calls. A compiled graph is one static DAG per step signature, "
                 "an actor belongs to one compiled graph at a time, its actors spin while idle, "
                 "and it is beta; see DESIGN.md, Remote transfers")
    return lines


def report(args, sizes: Sizes, startup_s: float, empty: dict, cut: dict, dags: dict):
    print_table(f"Empty step, 2 worker tasks, median of {sizes.rounds} alternating rounds",
                ["variant", "median us", "best us", "tw / variant"], empty_rows(empty))
    print_table(f"Cut edge task 0 -> task 1, median of {sizes.cut_rounds} alternating rounds",
                ["MB", "variant", "median ms", "best ms", "MB/s", "tw / variant"],
                cut_rows(cut))
    ratios = ratios_of(empty, cut)
    goals = goal_lines(ratios, cut)
    transport = transport_lines(empty, cut, dags)
    print("\nGoal:")
    for line in goals:
        print("  " + line)
    print("\nTransport:")
    for line in transport:
        print("  " + line)
    print(f"\nSession('local:2') start (Ray and both task actors): {startup_s:.1f} s")
    write_json("remote", {
        "quick": args.quick,
        "sizes": dataclasses.asdict(sizes),
        "ray_version": _ray_version(),
        "load_average": list(os.getloadavg()),
        "session_start_s": startup_s,
        "empty_step": empty,
        "cut_edge": {str(mb): by_name for mb, by_name in cut.items()},
        "cut_edge_mb_per_s": {str(mb): {name: mb / (r["median_ms"] / 1e3)
                                        for name, r in by_name.items()}
                              for mb, by_name in cut.items()},
        "compiled_graph": {"empty": dags["empty"],
                           "cut": {str(mb): d for mb, d in dags["cut"].items()}},
        "ratios": ratios,
        "goal": goals,
        "transport": transport,
        "notes": "medians of alternating rounds; ratios are tensorweave's median over the "
                 "baseline's, measured in the same run on the same Ray instance",
    }, args.output)


def _ray_version() -> str:
    import ray  # noqa: PLC0415 - the optional distributed extra
    return ray.__version__


def main(argv=None) -> None:
    args = argument_parser(__doc__.splitlines()[0], "4 MB only, few rounds").parse_args(argv)
    sizes = QUICK if args.quick else FULL
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    built = build_tw_graph(sizes.cut_mb)
    start = time.perf_counter()
    sess = tw.Session("local:2", graph=built.graph)
    startup_s = time.perf_counter() - start
    import ray  # noqa: PLC0415 - the Session started it (the optional distributed extra)
    pairs = {}
    try:
        sess.run(built.init)
        pairs = start_pairs(ray, {"plain": False, "threaded": True})
        print(f"started in {time.perf_counter() - start:.1f} s; timing the empty step",
              flush=True)
        empty, empty_dag_info = measure_empty(ray, sess, built, pairs, sizes)
        print("timing the cut edges", flush=True)
        cut, cut_dag_info = measure_cut(ray, sess, built, pairs, sizes)
    finally:
        for pair in pairs.values():
            kill_pair(ray, pair)
        sess.close()
        ray.shutdown()
    report(args, sizes, startup_s, empty, cut, {"empty": empty_dag_info, "cut": cut_dag_info})


if __name__ == "__main__":
    main()
