"""Placement strategies on small graphs whose best placements are worked out by hand."""

import time

import pytest

import tensorweave as tw
from tensorweave.placement import strategies
from tensorweave.placement.list_scheduling import ListScheduler, Timeline
from tensorweave.placement.problem import Placement
from tensorweave.placement.strategies import STRATEGIES
from tests.placement.fixed_cost import MS, FixedCost, gpu_cluster

CLUSTER = gpu_cluster(2)                          # 1,000 bytes take 1 ms between the GPUs
GPU0, GPU1 = (d.name for d in CLUSTER.devices)


def plan(graph, strategy, cost, cluster=CLUSTER, **kw):
    return tw.placement.plan(graph, cluster, strategy=strategy, cost_model=cost, **kw)


def devices(p):
    return {e.name: e.device for e in p.ops}


def two_branches():
    """x feeds two 10 ms branches a and b, joined by s (1 ms)."""
    x = tw.constant(1.0, name="x")
    a = tw.identity(x, name="a")
    b = tw.identity(x, name="b")
    tw.add(a, b, name="s")
    return {"x": 0.0, "a": 10 * MS, "b": 10 * MS, "s": MS}, {"x": 1000, "a": 1000, "b": 1000}


def test_the_registry_names_every_strategy():
    assert list(STRATEGIES) == ["default", "etf", "critical_path", "cpop"]


def test_an_unknown_strategy_lists_the_known_ones(graph):
    tw.constant(1.0)
    with pytest.raises(ValueError, match="unknown placement strategy 'fastest'.*etf"):
        tw.placement.plan(graph, CLUSTER, strategy="fastest")


# -- default ------------------------------------------------------------------------------------
def test_default_puts_every_group_on_its_first_feasible_device(graph):
    cluster = gpu_cluster(2, cpu=True)
    v = tw.Variable(1.0, name="v")
    y = tw.identity(v, name="y")
    with tw.device("/gpu:1"):
        tw.multiply(y, 2.0, name="pinned")
    tw.report_uninitialized_variables([v], name="report")
    p = plan(graph, "default", FixedCost(cluster, default_time=MS), cluster)
    gpu0, gpu1, cpu = (d.name for d in cluster.devices)
    placed = devices(p)
    assert placed["v"] == placed["y"] == gpu0
    assert placed["pinned"] == gpu1
    assert placed["report/report"] == cpu
    assert p["y"].reason == "default: first feasible device"
    assert p["pinned"].reason.startswith("pinned to /device:GPU:1 at ")
    assert p["report/report"].reason == "only feasible device (kernels for CPU only)"


def test_default_serializes_what_the_cost_model_strategies_spread(graph):
    times, sizes = two_branches()
    p = plan(graph, "default", FixedCost(CLUSTER, times, sizes))
    assert set(devices(p).values()) == {GPU0}
    assert round(p.step_time / MS, 9) == 21


# -- etf / critical_path --------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["etf", "critical_path"])
def test_two_heavy_branches_go_to_two_devices(graph, strategy):
    times, sizes = two_branches()
    p = plan(graph, strategy, FixedCost(CLUSTER, times, sizes))
    # a takes GPU:0 with x (ties go to the first device); b would wait 10 ms there but starts
    # on GPU:1 after x crosses (1 ms); s joins them where the later input is: a's 1 ms
    # transfer ends as b does. Step: 1 + 10 + 1 = 12 ms.
    assert devices(p) == {"x": GPU0, "a": GPU0, "b": GPU1, "s": GPU1}
    assert round(p.step_time / MS, 9) == 12
    assert p["a"].reason == f"cost model ({strategy})"
    assert p["x"].reason == f"cost model ({strategy}), with its consumer a"


def test_ties_between_ready_ops_are_broken_by_name(graph):
    x = tw.constant(1.0, name="x")
    tw.identity(x, name="b")
    tw.identity(x, name="a")
    p = plan(graph, "etf", FixedCost(CLUSTER, {"a": 5 * MS, "b": 5 * MS}))
    assert devices(p)["a"] == GPU0 and devices(p)["b"] == GPU1


def test_a_held_variable_goes_where_its_first_reader_is_placed(graph):
    v = tw.Variable(tw.zeros([2]), name="v")
    with tw.device("/gpu:1"):
        tw.multiply(v, 2.0, name="use")
    p = plan(graph, "etf", FixedCost(CLUSTER, default_time=MS, sizes={"v": 1000}),
             fetches=["use"])
    assert devices(p)["v"] == devices(p)["v/read"] == GPU1
    assert p["v"].reason == "cost model (etf), with its consumer use"
    assert p["v/read"].reason == "colocated with v"
    assert p["use"].reason.startswith("pinned to /device:GPU:1")
    assert not p.cut_edges
    assert devices(plan(graph, "default", FixedCost(CLUSTER), fetches=["use"]))["v"] == GPU0


def test_constant_subgraphs_are_held_for_their_consumer(graph):
    # zeros() is a Fill of two Consts: it follows the op reading it to GPU:1.
    x = tw.placeholder(tw.float32, [4], name="x")
    with tw.device("/gpu:1"):
        tw.add(x, tw.zeros([4], name="z"), name="use")
    p = plan(graph, "etf", FixedCost(CLUSTER, default_time=MS, sizes={"z": 1000}))
    assert devices(p)["z"] == GPU1
    assert {c.tensor for c in p.cut_edges} <= {"x:0"}


@pytest.mark.parametrize("strategy", ["etf", "critical_path"])
def test_memory_limits_move_a_group_that_would_not_fit(graph, strategy):
    cluster = gpu_cluster(2, gpu_memory=1000)
    x = tw.constant(1.0, name="x")
    a = tw.identity(x, name="a")
    tw.identity(a, name="b")
    cost = FixedCost(cluster, {"a": MS, "b": MS}, {"a": 600, "b": 600})
    p = plan(graph, strategy, cost, cluster)
    # b would rather follow a (no transfer), but 600 + 600 bytes exceed GPU:0's 1000.
    assert devices(p)["a"] != devices(p)["b"]
    assert not p.notes


def test_a_group_no_device_has_room_for_goes_where_most_is_left_with_a_note(graph):
    cluster = gpu_cluster(2, gpu_memory=1000)
    x = tw.constant(1.0, name="x")
    a = tw.identity(x, name="a")
    b = tw.identity(a, name="b")
    tw.identity(b, name="c")
    cost = FixedCost(cluster, {"a": MS, "b": MS, "c": MS}, {"a": 600, "b": 500, "c": 600})
    p = plan(graph, "etf", cost, cluster)
    assert len(p.notes) == 1 and "no feasible device has room for the group of 'c'" in p.notes[0]
    assert "Notes:" in p.summary()


def test_insertion_fills_an_idle_gap_and_plain_list_scheduling_does_not():
    timeline = Timeline()
    timeline.add(0.0, 1.0)
    timeline.add(3.0, 4.0)
    assert timeline.earliest(0.5, 1.5, insertion=True) == 1.0     # fits in the 1..3 gap
    assert timeline.earliest(0.5, 2.5, insertion=True) == 4.0     # too long for it
    assert timeline.earliest(0.5, 1.5, insertion=False) == 4.0
    assert timeline.earliest(5.0, 1.0, insertion=True) == 5.0
    timeline.add(1.0, 2.5)
    assert (timeline.starts, timeline.ends) == ([0.0, 1.0, 3.0], [1.0, 2.5, 4.0])


def test_cpop_keeps_the_critical_path_on_one_device(graph):
    x = tw.constant(1.0, name="x")
    chain = x
    for k in range(4):
        chain = tw.identity(chain, name=f"c{k}")
    side = tw.identity(x, name="side")
    tw.add(chain, side, name="end")
    times = {f"c{k}": 5 * MS for k in range(4)}
    times.update(side=8 * MS, end=MS)
    p = plan(graph, "cpop", FixedCost(CLUSTER, times, {n: 1000 for n in times}))
    chain_devices = {devices(p)[f"c{k}"] for k in range(4)}
    assert len(chain_devices) == 1
    assert devices(p)["side"] not in chain_devices
    assert p["c2"].reason == "cost model (cpop): critical path kept on one device"


# -- the home-device term's weight, chosen by simulation -----------------------------------------
class _Simulated:
    """A stand-in for a simulation run: its step, and a report naming the weight it came from."""

    def __init__(self, step_time, weight):
        self.step_time = step_time
        self.weight = weight

    def result(self):
        return ("report of", self.weight)


@pytest.mark.parametrize("steps, tried, kept", [
    ({1.0: 5, 0.0: 6, 2.0: 4}, [1.0, 0.0, 2.0], 2.0),   # the term helped; doubled, more
    ({1.0: 5, 0.0: 6, 2.0: 7}, [1.0, 0.0, 2.0], 1.0),   # doubled is worse: keep one trip
    ({1.0: 5, 0.0: 6, 2.0: 5}, [1.0, 0.0, 2.0], 1.0),   # ties: the one tried first
    ({1.0: 6, 0.0: 5}, [1.0, 0.0], 0.0),                # the term did not help: no doubling
    ({1.0: 5, 0.0: 5}, [1.0, 0.0], 1.0),
])
def test_the_home_term_weight_is_chosen_by_simulation(monkeypatch, steps, tried, kept):
    calls = []

    def schedule(problem, name, insertion, pin_critical_path, weight):
        calls.append(weight)
        return Placement(name, [weight]), _Simulated(steps[weight], weight)
    monkeypatch.setattr(strategies, "_simulated_schedule", schedule)
    best = strategies._best_simulated(None, "etf", insertion=False)
    assert calls == tried
    assert best.devices == [kept]
    assert best.simulated == ("report of", kept)


@pytest.mark.parametrize("strategy, insertion", [("etf", False), ("critical_path", True)])
def test_the_kept_placement_is_the_fastest_simulated_candidate(graph, strategy, insertion):
    loss = small_model()
    cluster = tw.placement.Cluster.from_dict({"jobs": {"localhost": {"devices": {"CPU": 1,
                                                                                "GPU": 3}}}})
    ops = tw.placement.api.needed_ops(graph, [loss])
    cost = tw.placement.CostModel(cluster, feed_shapes={"x": (128, 64)})
    problem = tw.placement.PlacementProblem(
        ops, tw.placement.build_constraints(ops, cluster, cost_model=cost), cost)
    steps = {w: problem.simulate(ListScheduler(problem, strategy, insertion, w).run().devices)
             .step_time for w in (1.0, 0.0, 2.0)}
    candidates = [1.0, 0.0] + ([2.0] if steps[1.0] < steps[0.0] else [])
    kept = STRATEGIES[strategy](problem)
    assert kept.simulated.step_time == min(steps[w] for w in candidates)
    assert kept.simulated == problem.simulate(kept.devices)


# -- determinism and speed ---------------------------------------------------------------------
def small_model():
    x = tw.placeholder(tw.float32, [None, 64], name="x")
    h = x
    for layer in range(3):
        with tw.name_scope(f"layer{layer}"):
            w = tw.Variable(tw.zeros([64, 64]), name="w")
            branches = [tw.tanh(tw.matmul(h, w)) for _ in range(3)]
            h = tw.add_n(branches)
    with tw.device("/gpu:1"):
        return tw.reduce_sum(h, name="loss")


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_the_same_graph_and_cluster_give_byte_identical_plans(graph, strategy):
    loss = small_model()
    cluster = tw.placement.Cluster.from_dict({"jobs": {"localhost": {"devices": {"CPU": 1,
                                                                                "GPU": 3}}}})
    first = tw.placement.plan(graph, cluster, strategy=strategy, fetches=[loss],
                              feed_dict={"x": (128, 64)})
    second = tw.placement.plan(graph, cluster, strategy=strategy, fetches=[loss],
                               feed_dict={"x": (128, 64)})
    assert first.to_json() == second.to_json()
    assert first.to_dot() == second.to_dot()
    assert first.to_chrome_trace() == second.to_chrome_trace()

    copy = tw.Graph()
    tw.import_graph_def(tw.graph.serialization.to_json(graph), name="", graph=copy)
    again = tw.placement.plan(copy, cluster, strategy=strategy, fetches=["loss"],
                              feed_dict={"x": (128, 64)})
    assert again.to_json() == first.to_json()
    assert again.to_dot() == first.to_dot()


def test_two_thousand_ops_are_placed_quickly():
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.float32, [64, 64], name="x")
        layer = [x] * 8
        for _ in range(250):
            layer = [tw.add(layer[k], layer[(k + 3) % 8]) for k in range(8)]
    cluster = gpu_cluster(4, cpu=True)
    for strategy in ("etf", "critical_path"):
        started = time.perf_counter()
        p = tw.placement.plan(graph, cluster, strategy=strategy)
        assert len(p.ops) == 2001
        # Linear-time work: ~0.2 s here. The bound only catches a quadratic slip.
        assert time.perf_counter() - started < 5.0
