"""Model parallel MNIST: a deep MLP cut into stages on several devices, optionally pipelined.

    python examples/model_parallel.py [--devices 2] [--micro-batches 4] [--steps 200]
                                      [--batch-size 512] [--out out/model_parallel]

The network (784 -> 4 hidden layers of ``--hidden`` units -> 10, ReLU) is cut into one stage per
virtual CPU device (``device_count={"CPU": n}``); each stage's layers, their variables and their
part of the backward pass are pinned to that device, so the step crosses devices only with
activations going forward and their gradients coming back.

**Pipelining (GPipe).** ``--micro-batches M`` splits each batch into M micro-batches. Each one
goes forward through every stage and back on its own, on the one set of weights; the gradients
of the micro-batches are added up per variable on the variable's device and applied once per
step. The update is the one of the whole batch (up to the order of float sums): synchronous, as
in GPipe. In a static graph the micro-batches are independent subgraphs, so nothing schedules
the pipeline by hand: each device runs its ops in the order the graph was built (every forward,
then every backward), so the first stage works on micro-batch 2 while the second works on
micro-batch 1. With ``M = 1`` the step is plain model parallel: while one device computes, the
other mostly waits.

The example prints the step plan, trains, prints the test accuracy, then times the training
step in three set-ups in alternating rounds (1 device; ``--devices`` devices with M = 1; and
with ``--micro-batches``) and traces a step of each on several devices. Each trace gives the
*overlap*: the share of the step during which two or more devices were computing at once (a
receive waiting for its tensor is not computing). Written to the output folder:

* ``plan.txt``, ``plan.json``, ``plan.dot``: the placement and the transfers of the step trained;
* ``trace.json``: a Chrome trace of one training step, one lane per device, an arrow per
  transfer (open it in chrome://tracing or https://ui.perfetto.dev);
* ``trace_m1.json``, ``trace_m<M>.json``: a step without and with pipelining, side by side;
* ``timings.json``: the step times, speedups and overlaps printed.

Each device is meant to stand for one processor, as a GPU would: a device runs its ops one at a
time (``inter_op_parallelism_threads=1``) and BLAS uses one thread per call (``--blas-threads``,
through threadpoolctl when it is installed). Otherwise one device's matrix product would already
use both cores of a small machine and there would be nothing left to overlap.

Uses the MNIST test set (first 8,000 images to train, last 2,000 to test) when it is found,
else scikit-learn's 8x8 digits.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import dataclasses
import functools
import json
import math
import os
import statistics
import time

import numpy as np

import datasets
from progress import Progress

import tensorweave as tw


# -- the model -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Layer:
    """One dense layer: its number in the network (1 = the first) and its variables."""

    number: int
    weights: tw.Variable
    biases: tw.Variable


@dataclasses.dataclass
class Stage:
    """Consecutive layers on one device."""

    index: int
    device: str
    layers: list
    relu_after_last: bool   # False for the stage that ends in the logits

    @property
    def variables(self) -> list:
        return [v for layer in self.layers for v in (layer.weights, layer.biases)]


@dataclasses.dataclass
class Model:
    """The graph of one training step and the tensors the example feeds and fetches."""

    x: tw.Tensor
    labels: tw.Tensor
    loss: tw.Tensor
    train_op: tw.Operation
    accuracy: tw.Tensor
    stages: list


def balanced_stages(costs: list, stages: int) -> list:
    """Cut ``costs`` (one per layer, in order) into ``stages`` consecutive non-empty groups so
    that the most expensive group is as cheap as possible; returns (start, end) per group.

    A pipeline runs at the pace of its slowest stage, so balance is what matters. Dynamic
    programming over (layers used, groups made); ties keep earlier cuts."""
    n = len(costs)
    if not 1 <= stages <= n:
        raise ValueError(f"cannot cut {n} layers into {stages} stages (one layer at least each)")
    prefix = [0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    # best[k][i]: the smallest possible maximum over k groups covering layers [0, i)
    best = [[math.inf] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0
    for k in range(1, stages + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):
                worst = max(best[k - 1][j], prefix[i] - prefix[j])
                if worst < best[k][i]:
                    best[k][i], cut[k][i] = worst, j
    bounds = []
    end = n
    for k in range(stages, 0, -1):
        start = cut[k][end]
        bounds.append((start, end))
        end = start
    return bounds[::-1]


def make_stages(sizes: list, devices: int) -> list:
    """The variables of the MLP with layer widths ``sizes``, grouped in one Stage per device.

    Weights start from a He-scaled truncated normal (stddev sqrt(2 / fan_in)), which keeps a
    deep ReLU stack trainable from the first step."""
    costs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    stages = []
    for s, (start, end) in enumerate(balanced_stages(costs, devices)):
        device = f"/cpu:{s}"
        with tw.device(device):
            layers = [make_layer(i + 1, sizes[i], sizes[i + 1]) for i in range(start, end)]
        stages.append(Stage(s, device, layers, relu_after_last=end < len(costs)))
    return stages


def make_layer(number: int, fan_in: int, fan_out: int) -> Layer:
    with tw.name_scope(f"layer{number}"):
        weights = tw.truncated_normal([fan_in, fan_out], stddev=math.sqrt(2.0 / fan_in))
        return Layer(number, tw.Variable(weights, name="weights"),
                     tw.Variable(tw.zeros([fan_out]), name="biases"))


def stage_forward(stage: Stage, h: tw.Tensor) -> tw.Tensor:
    """The stage's layers applied to ``h`` (ops created on the stage's device)."""
    with tw.device(stage.device):
        for k, layer in enumerate(stage.layers):
            h = tw.matmul(h, layer.weights) + layer.biases
            if k < len(stage.layers) - 1 or stage.relu_after_last:
                h = tw.nn.relu(h)
    return h


def pipelined_gradients(stages: list, x, labels, micro_batches: int):
    """The loss of the batch and the gradient of each variable, computed micro-batch by
    micro-batch; returns (loss, [(gradient, variable), ...]).

    Forward: the batch is split into ``micro_batches`` equal pieces, each run through every
    stage. Micro-batch m's loss is its mean cross entropy divided by M, so their sum is the mean
    over the batch. Backward: for each micro-batch, stage by stage from the last, the gradient
    of the stage's output (the one that came back from the next stage) is pushed through the
    stage's layers with ``tw.gradients(..., grad_ys=...)`` inside the stage's ``tw.device``.
    That is the chain rule cut at the stage boundaries; it pins every backward op to the device
    of its forward op. (One ``tw.gradients`` call on the summed loss with
    ``colocate_gradients_with_ops=True`` places them the same way, but builds each layer's
    weight gradient next to its input gradient; per stage, ``micro_batch_backward`` can build
    the input's gradient first. Without either, the placer puts the backward ops on the first
    device.) A variable's M gradients are then added on its device.

    Every forward is built before any backward: a device runs its ops in the order they were
    built, which is GPipe's schedule (all forwards, then all backwards)."""
    first, last = stages[0], stages[-1]
    with tw.device(first.device):
        xs = _split(x, micro_batches, "micro_batches")
    with tw.device(last.device):
        ys = _split(labels, micro_batches, "micro_labels")
    runs = [micro_batch_forward(stages, xs[m], ys[m], m, micro_batches)
            for m in range(micro_batches)]
    losses = [loss for _, loss in runs]
    with tw.device(last.device):
        if micro_batches > 1:
            loss = tw.add_n(losses, name="loss")
        else:
            loss = tw.identity(losses[0], name="loss")
    per_variable: dict = {}
    for m, (inputs, micro_loss) in enumerate(runs):
        for var, grad in micro_batch_backward(stages, inputs, micro_loss, m).items():
            per_variable.setdefault(var, []).append(grad)
    return loss, accumulate(stages, per_variable)


def _split(value, pieces: int, name: str) -> list:
    return tw.split(value, pieces, name=name) if pieces > 1 else [value]


def micro_batch_forward(stages: list, x, labels, m: int, micro_batches: int):
    """Micro-batch ``m`` through every stage: (the input of each stage, its share of the
    loss: mean cross entropy / M)."""
    inputs = []
    with tw.name_scope(f"micro{m}"):
        h = x
        for stage in stages:
            inputs.append(h)
            with tw.name_scope(f"stage{stage.index}"):
                h = stage_forward(stage, h)
        with tw.device(stages[-1].device), tw.name_scope("loss"):
            xent = tw.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=h)
            loss = tw.reduce_mean(xent) / float(micro_batches)
    return inputs, loss


def micro_batch_backward(stages: list, inputs: list, loss, m: int) -> dict:
    """Gradients of micro-batch ``m``'s loss for every variable ({variable: gradient}), built
    stage by stage from the last, each stage's ops on its device.

    In each stage the gradient of the stage's input is built first, the weights' gradients
    after it: the previous stage waits for the former, nobody waits for the latter, and a
    device runs its ops in build order. (The second ``tw.gradients`` call builds the input's
    gradient chain again; the compiler's common subexpression pass keeps the first copy.)"""
    grads_of: dict = {}
    upstream = None   # d loss / d (output of the current stage); None: the stage ends in loss
    for stage in reversed(stages):
        output = loss if stage is stages[-1] else inputs[stage.index + 1]
        with tw.device(stage.device), tw.name_scope(f"micro{m}/stage{stage.index}_grad"):
            to_input = None   # the first stage's input is the data: no gradient needed
            if stage is not stages[0]:
                to_input = tw.gradients(output, [inputs[stage.index]], grad_ys=upstream)[0]
            grads = tw.gradients(output, stage.variables, grad_ys=upstream)
        grads_of.update(zip(stage.variables, grads))
        upstream = to_input
    return grads_of


def accumulate(stages: list, per_variable: dict) -> list:
    """[(sum of the variable's micro-batch gradients, variable), ...], each sum on the
    variable's device."""
    grads_and_vars = []
    for stage in stages:
        with tw.device(stage.device), tw.name_scope("accumulate"):
            for var in stage.variables:
                grads = per_variable[var]
                total = tw.add_n(grads) if len(grads) > 1 else grads[0]
                grads_and_vars.append((total, var))
    return grads_and_vars


def build(pixels: int, hidden: int, layers: int, devices: int, micro_batches: int,
          learning_rate: float, graph: tw.Graph | None = None) -> Model:
    """The training step of the MLP ``pixels -> hidden x layers -> 10`` on ``devices`` stages,
    pipelined over ``micro_batches``, in ``graph`` (default: a fresh default graph)."""
    if graph is None:
        tw.reset_default_graph()
        graph = tw.get_default_graph()
    with graph.as_default():
        tw.set_random_seed(0)
        x = tw.placeholder(tw.float32, [None, pixels], name="x")
        labels = tw.placeholder(tw.float32, [None, 10], name="labels")  # one-hot
        stages = make_stages([pixels] + [hidden] * layers + [10], devices)
        loss, grads_and_vars = pipelined_gradients(stages, x, labels, micro_batches)
        train_op = tw.train.AdamOptimizer(learning_rate).apply_gradients(grads_and_vars)
        # Evaluation runs the whole batch through the stages, without micro-batches.
        with tw.name_scope("eval"):
            logits = x
            for stage in stages:
                logits = stage_forward(stage, logits)
            with tw.device(stages[-1].device):
                correct = tw.equal(tw.argmax(logits, 1), tw.argmax(labels, 1))
                accuracy = tw.reduce_mean(tw.cast(correct, tw.float32), name="accuracy")
    return Model(x, labels, loss, train_op, accuracy, stages)


def session_config(devices: int) -> tw.ConfigProto:
    """One thread per device: each virtual CPU device runs its ops one at a time."""
    return tw.ConfigProto(device_count={"CPU": devices}, inter_op_parallelism_threads=1)


# -- traces: how long two devices computed at once -----------------------------------------------

def busy_intervals(trace: dict) -> dict:
    """Device lane name -> merged [start, end) intervals (us) in which it ran an op.

    Read from a Chrome trace as ``tw.trace.chrome_trace`` makes it: ``process_name`` metadata
    names the device lanes and each op is a complete event (``ph == "X"``) whose ``cat`` is its
    type. ``_Recv`` slices are left out: a receive mostly waits for its tensor."""
    names = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    spans: dict = {name: [] for name in names.values()}
    for e in trace["traceEvents"]:
        if e.get("ph") == "X" and e.get("cat") != tw.trace.RECV_TYPE:
            spans[names[e["pid"]]].append((e["ts"], e["ts"] + e["dur"]))
    return {name: _merged(intervals) for name, intervals in spans.items()}


def _merged(intervals: list) -> list:
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def overlap_summary(trace: dict) -> dict:
    """How the devices of a traced step shared its time: the step's span (first op start to
    last op end, us), each device's busy time, and ``overlap``: the share of the span in which
    at least two devices computed at once."""
    busy = busy_intervals(trace)
    edges = []   # +1 where a device starts computing, -1 where it stops
    for intervals in busy.values():
        for start, end in intervals:
            edges += [(start, 1), (end, -1)]
    if not edges:
        return {"span_us": 0.0, "busy_us": {}, "both_busy_us": 0.0, "overlap": 0.0}
    edges.sort()
    span = edges[-1][0] - edges[0][0]
    both, active, previous = 0.0, 0, edges[0][0]
    for when, change in edges:
        if active >= 2:
            both += when - previous
        active += change
        previous = when
    return {"span_us": span,
            "busy_us": {name: sum(e - s for s, e in iv) for name, iv in sorted(busy.items())},
            "both_busy_us": both,
            "overlap": both / span if span > 0 else 0.0}


def traced_step(sess, model: Model, feed: dict) -> dict:
    """One training step with a full trace: the Chrome trace as a dict."""
    metadata = tw.RunMetadata()
    sess.run([model.train_op, model.loss], feed, run_metadata=metadata,
             options=tw.RunOptions(trace_level=tw.RunOptions.FULL_TRACE))
    return tw.trace.chrome_trace(metadata)


def write_json(data, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")


# -- step times ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Setup:
    """One way to run the training step, for the timing table."""

    devices: int
    micro_batches: int

    @property
    def label(self) -> str:
        plural = "s" if self.devices > 1 else ""
        return f"{self.devices} device{plural}, M={self.micro_batches}"


def timing_setups(devices: int, micro_batches: int) -> list:
    """One device without micro-batches (the baseline), the stages on ``devices`` devices
    without pipelining, and with ``micro_batches`` (duplicates dropped)."""
    setups = [Setup(1, 1), Setup(devices, 1), Setup(devices, micro_batches)]
    return list(dict.fromkeys(setups))


class LoadMeter:
    """CPU seconds that *other* processes used during an interval: the machine's busy time
    (``/proc/stat``) minus this process's own CPU time. On a shared machine a round in which
    others took a noticeable share of the cores says little about two devices overlapping, so
    such rounds are set aside when enough quiet ones can be had."""

    SHARE = 0.1   # of one core, on average over the round, that others may use

    def start(self) -> None:
        self.wall = time.perf_counter()
        self.own = time.process_time()
        self.busy = self._machine_busy_seconds()

    def quiet(self) -> bool:
        busy = self._machine_busy_seconds()
        if busy is None or self.busy is None:
            return True   # cannot tell (no /proc/stat): count every round
        others = (busy - self.busy) - (time.process_time() - self.own)
        # + 20 ms: /proc/stat counts in clock ticks, so a few ticks of error are expected
        return others <= self.SHARE * (time.perf_counter() - self.wall) + 0.02

    @staticmethod
    def _machine_busy_seconds():
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def open_setup(setup: Setup, args, pixels: int, batch: tuple):
    """A session with the step of ``setup`` compiled and run once: (session, model, feed)."""
    graph = tw.Graph()
    model = build(pixels, args.hidden, args.layers, setup.devices, setup.micro_batches,
                  args.learning_rate, graph=graph)
    sess = tw.Session(graph=graph, config=session_config(setup.devices))
    with graph.as_default():
        sess.run(tw.global_variables_initializer())
    feed = {model.x: batch[0], model.labels: batch[1]}
    sess.run([model.train_op, model.loss], feed)
    return sess, model, feed


def time_setups(setups: list, args, pixels: int, batch: tuple) -> dict:
    """Seconds per training step of each set-up (median and best of the rounds kept by
    ``alternating_rounds``), the overlap of the least disturbed of three traced steps of each
    multi-device set-up (its trace written to ``args.out`` as ``trace_m<M>.json``), and under
    "numpy" the ceiling ``MatmulPair`` measured in the same rounds."""
    opened = [(setup, *open_setup(setup, args, pixels, batch)) for setup in setups]
    pair = MatmulPair(args.batch_size // args.micro_batches, args.hidden)
    timers = {setup.label: functools.partial(_seconds_per_step, sess, model, feed,
                                             args.timing_steps)
              for setup, sess, model, feed in opened}
    timers.update({"numpy, 1 thread": pair.one_thread, "numpy, 2 threads": pair.two_threads})
    try:
        samples, quiet = alternating_rounds(timers, args.timing_rounds)
        results = {}
        for setup, sess, model, feed in opened:
            kept = samples[setup.label]
            entry = {"devices": setup.devices, "micro_batches": setup.micro_batches,
                     "step_ms": 1e3 * statistics.median(kept), "best_ms": 1e3 * min(kept),
                     "rounds": len(kept), "quiet": quiet}
            if setup.devices > 1:
                trace = least_disturbed_trace(sess, model, feed)
                write_json(trace, os.path.join(args.out, f"trace_m{setup.micro_batches}.json"))
                entry.update(overlap_summary(trace))
            results[setup.label] = entry
    finally:
        pair.close()
        for _, sess, _, _ in opened:
            sess.close()
    results["numpy"] = {"shape": pair.shape,
                        "speedup": statistics.median(samples["numpy, 1 thread"])
                        / statistics.median(samples["numpy, 2 threads"])}
    return results


def alternating_rounds(timers: dict, rounds: int) -> tuple:
    """Call every timer (a function returning seconds) once per round, round after round, so
    that a busy moment of the machine falls on all of them alike, until ``rounds`` quiet rounds
    (``LoadMeter``) or four times as many rounds in all ran. Returns ({name: [seconds, ...]},
    quiet): the samples of the quiet rounds, or of all rounds when none was quiet."""
    every = {name: [] for name in timers}
    quiet = {name: [] for name in timers}
    meter = LoadMeter()
    quiet_rounds = total = 0
    while quiet_rounds < rounds and total < 4 * rounds:
        meter.start()
        times = {name: timer() for name, timer in timers.items()}
        kept = meter.quiet()
        quiet_rounds += kept
        total += 1
        for name, seconds in times.items():
            every[name].append(seconds)
            if kept:
                quiet[name].append(seconds)
    return (quiet, True) if quiet_rounds else (every, False)


class MatmulPair:
    """Two chains of numpy products of one micro-batch's shape ((rows x width) @ (width x
    width)), run one after the other on one thread, then at once on two threads. Their ratio
    is what two devices can gain on this machine when nothing else of a step is in the way:
    on a shared or virtual machine two threads are often well short of twice as fast."""

    def __init__(self, rows: int, width: int, products: int = 8):
        rng = np.random.default_rng(0)
        self.left = rng.standard_normal((rows, width), dtype=np.float32)
        self.right = rng.standard_normal((width, width), dtype=np.float32)
        self.products = products
        self.shape = f"({rows} x {width}) @ ({width} x {width})"
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="matmul-pair")

    def _chain(self) -> None:
        for _ in range(self.products):
            np.matmul(self.left, self.right)

    def one_thread(self) -> float:
        start = time.perf_counter()
        self._chain()
        self._chain()
        return time.perf_counter() - start

    def two_threads(self) -> float:
        start = time.perf_counter()
        other = self._pool.submit(self._chain)
        self._chain()
        other.result()
        return time.perf_counter() - start

    def close(self) -> None:
        self._pool.shutdown()


def _seconds_per_step(sess, model: Model, feed: dict, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        sess.run([model.train_op, model.loss], feed)
    return (time.perf_counter() - start) / steps


def least_disturbed_trace(sess, model: Model, feed: dict, tries: int = 3) -> dict:
    """The traced step with the shortest span out of ``tries``: the one the rest of the
    machine disturbed least."""
    traces = [traced_step(sess, model, feed) for _ in range(tries)]
    return min(traces, key=lambda t: overlap_summary(t)["span_us"])


def print_timings(results: dict) -> None:
    steps = {label: entry for label, entry in results.items() if "step_ms" in entry}
    base = next(iter(steps.values()))
    print(f"\n{'set-up':<18} {'median ms':>9} {'best ms':>8} {'speedup':>8} {'overlap':>8}")
    for label, entry in steps.items():
        overlap = f"{100 * entry['overlap']:7.1f}%" if "overlap" in entry else f"{'-':>8}"
        print(f"{label:<18} {entry['step_ms']:9.1f} {entry['best_ms']:8.1f} "
              f"{base['step_ms'] / entry['step_ms']:7.2f}x {overlap}")
    print("speedup: the 1-device median over this median; overlap: share of a traced step "
          "in which two devices computed at once")
    numpy = results["numpy"]
    print(f"ceiling: two threads against one on two chains of numpy products "
          f"{numpy['shape']}: {numpy['speedup']:.2f}x")
    if not base["quiet"]:
        print("(other processes kept the machine busy in every round: the times are noisy)")


# -- main ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def blas_threads(n: int):
    """Limit BLAS to ``n`` threads per call inside the block (0: leave it alone); a no-op when
    threadpoolctl is not installed."""
    if n <= 0:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("threadpoolctl is not installed: BLAS keeps its own number of threads")
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST t10k IDX files")
    parser.add_argument("--out", default=os.path.join("out", "model_parallel"),
                        help="folder for the plan, the traces and the timings")
    parser.add_argument("--devices", type=int, default=2, help="virtual CPU devices = stages")
    parser.add_argument("--micro-batches", type=int, default=4,
                        help="micro-batches per step (1: model parallel without pipelining)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=1024, help="units per hidden layer")
    parser.add_argument("--layers", type=int, default=4, help="hidden layers")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads per matrix product (0: BLAS's default)")
    parser.add_argument("--timing-rounds", type=int, default=5,
                        help="alternating rounds of the step timing (0: skip it)")
    parser.add_argument("--timing-steps", type=int, default=4, help="steps per set-up and round")
    args = parser.parse_args(argv)
    if args.batch_size % args.micro_batches:
        parser.error(f"--batch-size {args.batch_size} is not a multiple of "
                     f"--micro-batches {args.micro_batches}")
    return args


def write_plan(sess, model: Model, feed: dict, out: str) -> None:
    """Print the step plan and write it as plan.txt, plan.json and plan.dot."""
    plan = sess.step_plan([model.train_op, model.loss], feed)
    print(plan.summary())
    plan.to_json(os.path.join(out, "plan.json"))
    plan.to_dot(os.path.join(out, "plan.dot"))
    with open(os.path.join(out, "plan.txt"), "w", encoding="utf-8") as f:
        f.write(plan.summary() + "\n")


def train(args, data, model: Model, sess) -> float:
    """Train for ``args.steps`` steps (the second one traced to trace.json); returns the
    seconds it took."""
    batches = data.batches(args.batch_size)
    progress = Progress(args.steps, args.batch_size)
    for step in range(1, args.steps + 1):
        xs, ys = next(batches)
        feed = {model.x: xs, model.labels: ys}
        if step == 2:  # trace a warm step (the first one compiled it)
            metadata = tw.RunMetadata()
            _, value = sess.run([model.train_op, model.loss], feed, run_metadata=metadata,
                                options=tw.RunOptions(trace_level=tw.RunOptions.FULL_TRACE))
            tw.trace.to_chrome_trace(metadata, os.path.join(args.out, "trace.json"))
        else:
            _, value = sess.run([model.train_op, model.loss], feed)
        progress.update(step, float(value))
    return progress.close()


def describe_stages(stages: list) -> str:
    return ", ".join(f"{s.device}: layers {'+'.join(str(layer.number) for layer in s.layers)}"
                     for s in stages)


def main(argv=None) -> dict:
    """Run the example; returns {"accuracy": test accuracy, "timings": the timing table}."""
    args = parse_args(argv)
    data = datasets.load(args.data_dir)
    pixels = data.side * data.side
    print(f"data: {data.name}, {len(data.train.labels)} training and "
          f"{len(data.test.labels)} test images of {data.side}x{data.side}")
    os.makedirs(args.out, exist_ok=True)
    first_batch = next(data.batches(args.batch_size))
    with blas_threads(args.blas_threads):
        model = build(pixels, args.hidden, args.layers, args.devices, args.micro_batches,
                      args.learning_rate)
        with tw.Session(config=session_config(args.devices)) as sess:
            sess.run(tw.global_variables_initializer())
            write_plan(sess, model, {model.x: first_batch[0], model.labels: first_batch[1]},
                       args.out)
            micro_batch = args.batch_size // args.micro_batches
            print(f"stages: {describe_stages(model.stages)}; "
                  f"{args.micro_batches} micro-batch(es) of {micro_batch}")
            seconds = train(args, data, model, sess)
            accuracy = float(sess.run(model.accuracy, {model.x: data.test.images,
                                                       model.labels: data.test.one_hot}))
        print(f"test accuracy: {accuracy:.4f}  ({seconds:.1f} s of training)")
        timings = {}
        if args.timing_rounds > 0:
            timings = time_setups(timing_setups(args.devices, args.micro_batches), args,
                                  pixels, first_batch)
            print_timings(timings)
            write_json(timings, os.path.join(args.out, "timings.json"))
    print(f"wrote the plan (plan.txt, .json, .dot), traces (trace.json, trace_m*.json) and "
          f"timings.json to {args.out}")
    return {"accuracy": accuracy, "timings": timings}


if __name__ == "__main__":
    main()
