"""Placement strategies on graphs of real model shapes, on a described 4-GPU + CPU machine.

Graphs (forward pass, weights as variables, planned for the fetched output):

* ``inception``: a stack of Inception-v3 "B" blocks (17x17x768, batch 32): four branches of
  1x1, 1x7 and 7x1 convolutions and an average pool, concatenated — the wide model;
* ``gnmt``: a GNMT-like encoder-decoder of 4 LSTM layers each, unrolled over 16 steps
  (batch 128, 1024 units); each decoder layer starts from its encoder layer's final state —
  the layered model, whose parallelism is the diagonal wavefront across layers and steps;
* ``transformer``: a Transformer encoder (6 layers, 512 tokens, d_model 1024, 16 heads with
  one op chain per head, d_ff 4096, layer norm written out);
* ``synthetic_10k`` / ``synthetic_100k``: layered random DAGs (width 16) of matmuls and
  elementwise ops, built straight through the graph API.

Each graph is planned on ``examples/clusters/4gpu.json`` with each strategy. Printed: the
simulated step, the lower bound ``max(critical path at the fastest device, total work /
devices)``, the ratio of the two, the speedup over ``default``, the placement wall time
(constraints + strategy) and the whole ``tw.placement.plan`` call (with the simulation).

Goals: ``etf``/``critical_path`` at least 1.5x faster than ``default`` on ``inception`` and
``gnmt`` and within 1.3x of the lower bound; 10,000 ops placed in under 2 s.

    python -m benchmarks.placement            # everything
    python -m benchmarks.placement --quick    # smaller graphs, no 100,000-op graph
"""

from __future__ import annotations

import argparse
import os
import random
import re
import time

import tensorweave as tw
from benchmarks.common import print_table, write_json

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(REPO_ROOT, "examples", "clusters", "4gpu.json")
STRATEGIES = ("default", "etf", "critical_path", "cpop")
GOAL_SPEEDUP = 1.5
GOAL_BOUND_RATIO = 1.3
GOAL_10K_SECONDS = 2.0


# -- models -----------------------------------------------------------------------------------
def _weight(shape, name):
    return tw.Variable(tw.zeros(shape), name=name)


def _conv(x, kh, kw, out_channels, name):
    with tw.name_scope(name):
        w = _weight([kh, kw, int(x.shape[-1]), out_channels], "w")
        return tw.nn.relu(tw.nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME"))


def inception(blocks=4, batch=32, size=17, channels=768):
    """Inception-v3 "B" blocks (the 17x17 grid): four branches, concatenated."""
    x = tw.placeholder(tw.float32, [batch, size, size, channels], name="images")
    for b in range(blocks):
        with tw.name_scope(f"block{b}"):
            branch1 = _conv(x, 1, 1, 192, "b1_1x1")
            branch2 = _conv(x, 1, 1, 128, "b2_1x1")
            branch2 = _conv(branch2, 1, 7, 128, "b2_1x7")
            branch2 = _conv(branch2, 7, 1, 192, "b2_7x1")
            branch3 = _conv(x, 1, 1, 128, "b3_1x1")
            branch3 = _conv(branch3, 7, 1, 128, "b3_7x1a")
            branch3 = _conv(branch3, 1, 7, 128, "b3_1x7a")
            branch3 = _conv(branch3, 7, 1, 128, "b3_7x1b")
            branch3 = _conv(branch3, 1, 7, 192, "b3_1x7b")
            pool = tw.nn.avg_pool(x, ksize=[1, 3, 3, 1], strides=[1, 1, 1, 1], padding="SAME")
            branch4 = _conv(pool, 1, 1, 192, "b4_1x1")
            x = tw.concat([branch1, branch2, branch3, branch4], axis=3)
    return tw.reduce_mean(x, axis=[1, 2], name="logits")


def _lstm_cell(x, h, c, w, b):
    gates = tw.nn.bias_add(tw.matmul(tw.concat([x, h], axis=1), w), b)
    i, j, f, o = tw.split(gates, 4, axis=1)
    c = c * tw.sigmoid(f + 1.0) + tw.sigmoid(i) * tw.tanh(j)
    return tw.tanh(c) * tw.sigmoid(o), c


def _lstm_stack(inputs, layers, units, scope, initial=None):
    """Unrolled LSTM layers; returns the top layer's outputs and each layer's final state."""
    batch = int(inputs[0].shape[0])
    finals = []
    for layer in range(layers):
        with tw.name_scope(f"{scope}/layer{layer}"):
            w = _weight([int(inputs[0].shape[1]) + units, 4 * units], "kernel")
            b = _weight([4 * units], "bias")
            if initial is None:
                h = c = tw.zeros([batch, units])
            else:
                h, c = initial[layer]
            outputs = []
            for t, x in enumerate(inputs):
                with tw.name_scope(f"t{t}"):
                    h, c = _lstm_cell(x, h, c, w, b)
                outputs.append(h)
        finals.append((h, c))
        inputs = outputs
    return inputs, finals


def gnmt(layers=4, steps=16, batch=128, units=1024):
    """A GNMT-like encoder-decoder: LSTM stacks, the decoder seeded by the encoder's states."""
    source = [tw.placeholder(tw.float32, [batch, units], name=f"source{t}") for t in range(steps)]
    target = [tw.placeholder(tw.float32, [batch, units], name=f"target{t}") for t in range(steps)]
    _, states = _lstm_stack(source, layers, units, "encoder")
    outputs, _ = _lstm_stack(target, layers, units, "decoder", initial=states)
    return tw.add_n(outputs, name="decoder_sum")


def _layer_norm(x, name):
    with tw.name_scope(name):
        mean = tw.reduce_mean(x, axis=1, keepdims=True)
        centered = x - mean
        variance = tw.reduce_mean(tw.square(centered), axis=1, keepdims=True)
        return centered * tw.rsqrt(variance + 1e-6)


def transformer(layers=6, tokens=512, d_model=1024, heads=16, d_ff=4096):
    """A Transformer encoder, one op chain per attention head."""
    x = tw.placeholder(tw.float32, [tokens, d_model], name="tokens")
    d_head = d_model // heads
    for layer in range(layers):
        with tw.name_scope(f"layer{layer}"):
            outputs = []
            for h in range(heads):
                with tw.name_scope(f"head{h}"):
                    q = tw.matmul(x, _weight([d_model, d_head], "wq"))
                    k = tw.matmul(x, _weight([d_model, d_head], "wk"))
                    v = tw.matmul(x, _weight([d_model, d_head], "wv"))
                    scores = tw.matmul(q, k, transpose_b=True) * (1.0 / d_head ** 0.5)
                    outputs.append(tw.matmul(tw.nn.softmax(scores), v))
            attention = tw.matmul(tw.concat(outputs, axis=1), _weight([d_model, d_model], "wo"))
            x = _layer_norm(x + attention, "norm1")
            hidden = tw.nn.relu(tw.matmul(x, _weight([d_model, d_ff], "ff1")))
            x = _layer_norm(x + tw.matmul(hidden, _weight([d_ff, d_model], "ff2")), "norm2")
    return tw.identity(x, name="encoded")


def synthetic(n_ops, width=16, seed=0):
    """A layered random DAG of about ``n_ops`` ops, every one of them needed by the result:
    op k of a layer reads op k of the layer before and a random op of the two layers before;
    one op in eight is a 256x256 matmul, the rest add, multiply or tanh."""
    rng = random.Random(seed)
    x = tw.placeholder(tw.float32, [256, 256], name="x")
    previous = [tw.tanh(x) for _ in range(width)]
    before = previous
    count = 1 + width
    while count < n_ops - 1:
        layer = []
        for k in range(width):
            a = previous[k]
            b = rng.choice(previous + before)
            kind = rng.randrange(8)
            if kind == 0:
                y = tw.matmul(a, b)
            elif kind < 4:
                y = tw.add(a, b)
            elif kind < 7:
                y = tw.multiply(a, b)
            else:
                y = tw.tanh(a)
            layer.append(y)
        count += width
        before, previous = previous, layer
    return tw.add_n(previous, name="result")


MODELS = {
    "inception": (inception, dict(blocks=2, batch=8)),
    "gnmt": (gnmt, dict(steps=6, batch=32)),
    "transformer": (transformer, dict(layers=2, tokens=128, heads=8)),
    "synthetic_10k": (lambda: synthetic(10_000), None),
    "synthetic_100k": (lambda: synthetic(100_000), None),
}
WIDE_AND_LAYERED = ("inception", "gnmt")


def layer_per_gpu(op_name: str) -> int:
    """The expert placement of the GNMT-like model: layer l of the encoder and of the decoder
    on GPU l (the model-parallel split of the GNMT paper); everything else on GPU 0."""
    found = re.search(r"/layer(\d+)/", op_name)
    return int(found.group(1)) if found else 0


HAND_PLACEMENTS = {"gnmt": layer_per_gpu}


def hand_placed_step(graph, output, cluster, device_index) -> float:
    """Simulated step of a hand placement (``device_index(op name)`` per colocation group,
    from the group's first op)."""
    from tensorweave.placement.api import needed_ops
    ops = needed_ops(graph, [output])
    cost_model = tw.placement.CostModel(cluster)
    constraints = tw.placement.build_constraints(ops, cluster, cost_model=cost_model)
    problem = tw.placement.PlacementProblem(ops, constraints, cost_model)
    devices = [cluster.devices[device_index(constraints.group_of(op).ops[0].name)]
               for op in problem.graph.ops]
    return problem.simulate(devices).step_time


def build(name, quick):
    """A fresh graph holding the model, its output, the number of ops and the build seconds."""
    builder, quick_args = MODELS[name]
    graph = tw.Graph()
    started = time.perf_counter()
    with graph.as_default():
        output = builder(**quick_args) if quick and quick_args else builder()
    return graph, output, len(graph.get_operations()), time.perf_counter() - started


# -- running ----------------------------------------------------------------------------------
def plan_all(names, quick, cluster):
    rows, results = [], []
    for name in names:
        graph, output, n_ops, build_seconds = build(name, quick)
        default_step = None
        for strategy in STRATEGIES:
            started = time.perf_counter()
            plan = tw.placement.plan(graph, cluster, strategy=strategy, fetches=[output])
            total = time.perf_counter() - started
            if strategy == "default":
                default_step = plan.step_time
            result = {"model": name, "strategy": strategy, "ops": len(plan.ops),
                      "graph_ops": n_ops, "build_seconds": build_seconds,
                      "step_ms": plan.step_time * 1e3, "lower_bound_ms": plan.lower_bound * 1e3,
                      "bound_ratio": plan.step_time / plan.lower_bound,
                      "speedup": default_step / plan.step_time,
                      "cut_edges": len(plan.cut_edges),
                      "devices_used": sum(1 for d in plan.devices if d.ops),
                      "placement_seconds": plan.placement_seconds, "plan_seconds": total}
            results.append(result)
            rows.append([name, strategy, result["ops"], result["step_ms"],
                         result["lower_bound_ms"], result["bound_ratio"], result["speedup"],
                         result["devices_used"], result["cut_edges"],
                         result["placement_seconds"], total])
        if name in HAND_PLACEMENTS:
            step = hand_placed_step(graph, output, cluster, HAND_PLACEMENTS[name])
            bound = results[-1]["lower_bound_ms"] / 1e3
            results.append({"model": name, "strategy": "hand", "step_ms": step * 1e3,
                            "lower_bound_ms": bound * 1e3, "bound_ratio": step / bound,
                            "speedup": default_step / step})
            rows.append([name, "(hand: layer l on GPU l)", results[-2]["ops"], step * 1e3,
                         bound * 1e3, step / bound, default_step / step, 4, "", "", ""])
    header = ["model", "strategy", "ops", "step ms", "bound ms", "ratio", "speedup", "devices",
              "cuts", "place s", "plan s"]
    print_table(f"Placement on {os.path.relpath(CLUSTER, REPO_ROOT)} (simulated steps)", header,
                rows)
    return results


def goals(results, quick=False) -> dict:
    """Each goal with whether it was met, printed."""
    by = {(r["model"], r["strategy"]): r for r in results}
    checks = {}
    for model in WIDE_AND_LAYERED:
        for strategy in ("etf", "critical_path"):
            r = by.get((model, strategy))
            if r is None:
                continue
            checks[f"{model}/{strategy} speedup >= {GOAL_SPEEDUP}"] = (
                r["speedup"], r["speedup"] >= GOAL_SPEEDUP)
            checks[f"{model}/{strategy} step / lower bound <= {GOAL_BOUND_RATIO}"] = (
                r["bound_ratio"], r["bound_ratio"] <= GOAL_BOUND_RATIO)
    for strategy in STRATEGIES:
        r = by.get(("synthetic_10k", strategy))
        if r is not None:
            checks[f"synthetic_10k/{strategy} placed in < {GOAL_10K_SECONDS} s"] = (
                r["placement_seconds"], r["placement_seconds"] < GOAL_10K_SECONDS)
    print("\nGoals:" + (" (a --quick run plans smaller models; the goals are about the full "
                         "ones)" if quick else ""))
    for text, (value, met) in checks.items():
        print(f"  {'met ' if met else 'MISSED'}  {text}: {value:.3g}")
    return {text: {"value": value, "met": met} for text, (value, met) in checks.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller models and no 100,000-op graph (a smoke run)")
    parser.add_argument("--models", nargs="*", choices=list(MODELS), default=None)
    args = parser.parse_args(argv)
    names = args.models or [n for n in MODELS if not (args.quick and n == "synthetic_100k")]
    cluster = tw.placement.Cluster.from_file(CLUSTER)
    results = plan_all(names, args.quick, cluster)
    checked = goals(results, args.quick)
    if not args.quick:
        write_json("placement", {"cluster": os.path.relpath(CLUSTER, REPO_ROOT),
                                 "results": results, "goals": checked})


if __name__ == "__main__":
    main()
