"""The step simulator on schedules computed by hand: compute per device, link contention,
peak memory, critical path, priorities."""

import pytest

import tensorweave as tw
from tensorweave.placement.simulator import simulate
from tests.placement.fixed_cost import MS, FixedCost, gpu_cluster

CLUSTER = gpu_cluster(2)                     # 1,000 bytes take 1 ms on the link
GPU0, GPU1 = CLUSTER.devices[0], CLUSTER.devices[1]


def ms(seconds):
    return round(seconds / MS, 9)


def two_transfers_one_link(graph):
    """x, y on GPU:0 (y after x); c reads x and d reads y on GPU:1."""
    x = tw.constant(1.0, name="x")
    y = tw.identity(x, name="y")
    c = tw.identity(x, name="c")
    d = tw.identity(y, name="d")
    placement = {"x": GPU0, "y": GPU0, "c": GPU1, "d": GPU1}
    cost = FixedCost(CLUSTER, times={n: 1 * MS for n in "xycd"},
                     sizes={"x": 2000, "y": 1000, "c": 500, "d": 500})
    return [x.op, y.op, c.op, d.op], placement, cost


def test_a_link_carries_one_transfer_at_a_time_in_arrival_order(graph):
    ops, placement, cost = two_transfers_one_link(graph)
    result = simulate(ops, placement, cost, CLUSTER)
    # x 0-1; x:0 crosses 1-3; y 1-2; y:0 is ready at 2 but waits for the link: 3-4;
    # c runs 3-4 after x:0 arrives, d 4-5 after y:0.
    assert {n: (ms(r.start), ms(r.end)) for n, r in result.ops.items()} == {
        "x": (0, 1), "y": (1, 2), "c": (3, 4), "d": (4, 5)}
    assert [(t.tensor, ms(t.start), ms(t.end), t.nbytes) for t in result.transfers] == [
        ("x:0", 1, 3, 2000), ("y:0", 3, 4, 1000)]
    assert ms(result.step_time) == 5
    assert {d: ms(t) for d, t in result.busy.items()} == {GPU0.name: 2, GPU1.name: 2}


def test_peak_memory_keeps_outputs_until_their_last_consumer_and_transfer(graph):
    ops, placement, cost = two_transfers_one_link(graph)
    result = simulate(ops, placement, cost, CLUSTER)
    # GPU:0 holds x (2000, until x:0 has left at 3) and y (1000) from 1: 3000.
    # GPU:1 at 3: x:0 received (2000), y:0 arriving (1000, allocated as it starts), c's
    # output (500): 3500; x:0 is freed when c ends, c's output (a result) stays.
    assert result.peak_memory == {GPU0.name: 3000, GPU1.name: 3500}


def test_the_critical_path_follows_what_each_step_waited_for(graph):
    ops, placement, cost = two_transfers_one_link(graph)
    path = simulate(ops, placement, cost, CLUSTER).critical_path
    # d waited for y:0, which waited for the link (x:0), which waited for x.
    assert [(s.kind, s.name) for s in path] == [
        ("op", "x"), ("transfer", "x:0"), ("transfer", "y:0"), ("op", "d")]
    assert [ms(s.end) for s in path] == [1, 3, 4, 5]
    assert path[1].src == GPU0.name and path[1].dst == GPU1.name


def test_one_transfer_per_tensor_and_destination_and_none_on_one_device(graph):
    x = tw.constant(1.0, name="x")
    a = tw.identity(x, name="a")
    b = tw.add(x, x, name="b")            # reads x twice: still one transfer
    c = tw.identity(x, name="c")          # on x's device: no transfer
    cost = FixedCost(CLUSTER, times={"x": MS, "a": MS, "b": MS, "c": MS}, sizes={"x": 1000})
    placement = {"x": GPU0, "a": GPU1, "b": GPU1, "c": GPU0}
    result = simulate([x.op, a.op, b.op, c.op], placement, cost, CLUSTER)
    assert [(t.tensor, t.consumers) for t in result.transfers] == [("x:0", ("a", "b"))]


def test_a_device_runs_one_op_at_a_time_highest_priority_first(graph):
    x = tw.constant(1.0, name="x")
    short = tw.identity(x, name="short")
    long_head = tw.identity(x, name="long_head")
    long_tail = tw.identity(long_head, name="long_tail")
    ops = [x.op, short.op, long_head.op, long_tail.op]
    cost = FixedCost(CLUSTER, times={"x": MS, "short": MS, "long_head": MS, "long_tail": 5 * MS})
    result = simulate(ops, {op: GPU0 for op in ops}, cost, CLUSTER)
    # long_head leads the longer remaining path, so it goes first although "short" sorts first.
    assert [(n, ms(r.start)) for n, r in result.ops.items()] == [
        ("x", 0), ("short", 7), ("long_head", 1), ("long_tail", 2)]
    assert ms(result.step_time) == 8
    forced = simulate(ops, {op: GPU0 for op in ops}, cost, CLUSTER,
                      priority={"short": 10.0})
    assert ms(forced.ops["short"].start) == 1


def test_a_cross_device_control_edge_costs_latency_and_orders_the_ops(graph):
    cluster = gpu_cluster(2, latency=2 * MS)
    a = tw.constant(1.0, name="a")
    with tw.control_dependencies([a]):
        b = tw.constant(2.0, name="b")
    cost = FixedCost(cluster, times={"a": MS, "b": MS})
    result = simulate([a.op, b.op], {"a": cluster.devices[0], "b": cluster.devices[1]}, cost,
                      cluster)
    assert [(t.tensor, t.nbytes, ms(t.end)) for t in result.transfers] == [("^a", 0, 3)]
    assert ms(result.ops["b"].start) == 3


def test_variables_stay_in_memory_for_the_whole_step(graph):
    v = tw.Variable(tw.zeros([4]), name="v")
    y = tw.identity(v, name="y")
    ops = [v.op, y.op]
    cost = FixedCost(CLUSTER, times={"v": MS, "y": MS}, sizes={"v": 100, "y": 10})
    result = simulate(ops, {op: GPU0 for op in ops}, cost, CLUSTER)
    assert result.peak_memory[GPU0.name] == 110


def test_placements_may_name_ops_and_devices_by_string(graph):
    x = tw.constant(1.0, name="x")
    y = tw.identity(x, name="y")
    cost = FixedCost(CLUSTER, times={"x": MS, "y": MS}, sizes={"x": 1000})
    result = simulate([x.op, y.op], {"x": "/gpu:0", y.op: "/device:GPU:1"}, cost, CLUSTER)
    assert result.ops["y"].device == GPU1.name
    assert ms(result.step_time) == 3
    with pytest.raises(KeyError, match="no device for op 'y'"):
        simulate([x.op, y.op], {"x": GPU0}, cost, CLUSTER)


def test_an_empty_step(graph):
    result = simulate([], {}, FixedCost(CLUSTER), CLUSTER)
    assert result.step_time == 0 and result.critical_path == [] and result.transfers == []


def test_a_step_run_first_and_reported_later_is_the_same_step(graph):
    ops, placement, cost = two_transfers_one_link(graph)
    problem = tw.placement.PlacementProblem(
        ops, tw.placement.build_constraints(ops, CLUSTER, cost_model=cost), cost)
    devices = [placement[op.name] for op in problem.graph.ops]
    run = problem.simulate_step(devices)
    full = problem.simulate(devices)
    assert run.step_time == full.step_time
    assert run.result() == full
    assert full == simulate(ops, placement, cost, CLUSTER)
