"""Plans: reasons, cut edges, the summary table, JSON, DOT and Chrome trace dumps, and the
Session entry points (placement_plan, log_device_placement)."""

import json
import re

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.placement.plan import FORMAT, VERSION
from tests.placement.fixed_cost import MS, FixedCost, gpu_cluster

CLUSTER = gpu_cluster(2)
GPU0, GPU1 = (d.name for d in CLUSTER.devices)


def pinned_pair():
    """x pinned on GPU:0 and read by two ops pinned on GPU:1, whose results meet on GPU:0."""
    with tw.device("/gpu:0"):
        x = tw.constant([1.0, 2.0], name="x")
    with tw.device("/gpu:1"):
        a = tw.identity(x, name="a")
        b = tw.multiply(x, 3.0, name="b")
    with tw.device("/gpu:0"):
        tw.add(a, b, name="y")
    cost = FixedCost(CLUSTER, default_time=MS, sizes={"x": 1000, "a": 500, "b": 500})
    return tw.placement.plan(tw.get_default_graph(), CLUSTER, strategy="etf", cost_model=cost)


# -- contents -----------------------------------------------------------------------------------
def test_one_cut_edge_per_tensor_and_destination_with_its_bytes(graph):
    p = pinned_pair()
    assert [(c.tensor, c.src_device, c.dst_device, c.bytes, c.consumers)
            for c in p.cut_edges] == [("a:0", GPU1, GPU0, 500, ("y",)),
                                      ("b:0", GPU1, GPU0, 500, ("y",)),
                                      ("x:0", GPU0, GPU1, 1000, ("a", "b"))]
    assert p.transfer_bytes == 2000


def test_each_op_says_where_it_runs_and_why(graph):
    p = pinned_pair()
    assert p.device_of("a") == GPU1
    assert re.fullmatch(r"pinned to /device:GPU:1 at .*test_plan\.py:\d+", p["a"].reason)
    assert p["x"].output_bytes == 1000
    assert p["a"].start >= p["x"].end + MS      # x:0 crosses the link first (1 ms)
    assert p.placement == {e.name: e.device for e in p.ops}


def test_colocated_ops_name_the_op_they_follow(graph):
    with tw.device("/gpu:1"):
        v = tw.Variable(tw.zeros([2]), name="v")
    with tw.colocate_with(v.op):
        follower = tw.identity(tw.constant(1.0, name="c"), name="follower")
    use = tw.identity(v, name="use")
    p = tw.placement.plan(graph, CLUSTER, strategy="etf",
                          cost_model=FixedCost(CLUSTER, default_time=MS),
                          fetches=[use, follower, v])
    assert p["follower"].reason == "colocated with v"
    assert p["v/read"].reason == "colocated with v"
    assert p["v"].reason.startswith("pinned to /device:GPU:1")
    assert p.device_of("follower") == GPU1


def test_soft_placement_records_the_relaxed_pin_in_the_plan(graph):
    with tw.device("/gpu:7"):
        tw.constant(1.0, name="lost")
    with pytest.raises(tw.errors.PlacementError):
        tw.placement.plan(graph, CLUSTER)
    p = tw.placement.plan(graph, CLUSTER, allow_soft_placement=True)
    assert p["lost"].reason.startswith("soft placement from /device:GPU:7: ")
    assert [(op, requested) for op, requested, _ in p.relaxations] == [("lost",
                                                                       "/device:GPU:7")]
    assert "Soft placement (pins relaxed):" in p.summary()


def test_fetches_and_feeds_limit_the_plan_to_what_runs(graph):
    x = tw.placeholder(tw.float32, [None, 4], name="x")
    h = tw.identity(x * 2.0, name="h")
    y = tw.reduce_sum(h, name="y")
    tw.constant(0.0, name="unused")
    p = tw.placement.plan(graph, CLUSTER, fetches=y, feed_dict={x: np.ones((3, 4))})
    assert [e.name for e in p.ops] == ["x", "Const", "mul", "h", "Const_1", "y"]
    assert p["h"].output_bytes == 3 * 4 * 4                       # the fed value's shape
    # Feeding h cuts the graph there: what only computed h is not run.
    p = tw.placement.plan(graph, CLUSTER, fetches="y:0", feed_dict={"h": (3, 4)})
    assert [e.name for e in p.ops] == ["Const_1", "y"]


def test_the_lower_bound_is_the_longer_of_the_chain_and_the_spread_work(graph):
    x = tw.constant(1.0, name="x")
    for k in range(4):
        tw.identity(x, name=f"w{k}")
    cost = FixedCost(CLUSTER, {f"w{k}": 3 * MS for k in range(4)})
    p = tw.placement.plan(graph, CLUSTER, strategy="etf", cost_model=cost)
    assert round(p.lower_bound / MS, 9) == 6      # 12 ms of work over 2 devices > 3 ms chain
    assert round(p.step_time / MS, 9) == 6


# -- summary ------------------------------------------------------------------------------------
def test_the_summary_groups_ops_by_device_and_lists_the_cut_edges(graph):
    text = pinned_pair().summary()
    assert text.startswith("Placement plan (etf): 5 ops on 2 of 2 devices, 3 cut edges "
                           "(2.0 KiB), simulated step")
    assert "GPU:0  (/job:localhost/replica:0/task:0/device:GPU:0)  2 ops, busy" in text
    assert "GPU:1  (/job:localhost/replica:0/task:0/device:GPU:1)  3 ops, busy" in text
    assert "Cut edges (3 transfers, 2.0 KiB):" in text
    assert re.search(r"x:0\s+GPU:0\s+GPU:1\s+1000 B\s+[\d.]+\s+[\d.]+\s+a, b", text)
    assert "Critical path (" in text and text.rstrip().endswith("simulated step 5.500 ms")


def test_the_summary_columns_are_aligned(graph):
    lines = pinned_pair().summary().splitlines()
    headers = [k for k, line in enumerate(lines) if line.lstrip().startswith("op ")]
    for k in headers:
        # The header, rule and rows share column starts: each rule segment starts a column.
        starts = [m.start() for m in re.finditer(r"-+", lines[k + 1])]
        for line in lines[k + 2:]:
            if not line.strip():
                break
            assert all(line[s - 1] == " " for s in starts[1:]), line


# -- JSON ---------------------------------------------------------------------------------------
def test_json_has_the_documented_schema(graph, tmp_path):
    p = pinned_pair()
    path = tmp_path / "plan.json"
    text = p.to_json(path)
    assert path.read_text() == text
    data = json.loads(text)
    assert data["format"] == FORMAT and data["version"] == VERSION
    assert set(data) == {"format", "version", "strategy", "step_time_us", "lower_bound_us",
                         "devices", "ops", "cut_edges", "critical_path", "relaxations", "notes"}
    assert set(data["ops"][0]) == {"name", "type", "device", "reason", "start_us", "end_us",
                                   "output_bytes"}
    assert set(data["cut_edges"][0]) == {"tensor", "src_device", "dst_device", "bytes",
                                         "consumers", "start_us", "end_us"}
    assert set(data["devices"][0]) == {"name", "type", "ops", "busy_us", "peak_memory_bytes",
                                       "memory_capacity_bytes"}
    assert {step["kind"] for step in data["critical_path"]} <= {"op", "transfer"}
    assert data["step_time_us"] == 5500.0
    assert "placement_seconds" in json.loads(p.to_json(include_timing=True))


# -- DOT ----------------------------------------------------------------------------------------
def test_dot_has_one_cluster_per_device_and_labels_cut_edges(graph, tmp_path):
    p = pinned_pair()
    text = p.to_dot(tmp_path / "plan.dot")
    assert (tmp_path / "plan.dot").read_text() == text
    assert text.startswith("digraph placement {") and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    assert len(re.findall(r'subgraph "cluster_\d+"', text)) == 2
    for e in p.ops:
        assert re.search(rf'^    "{e.name}" \[label=', text, re.MULTILINE)
    assert '"x" -> "a" [label="1000 B"' in text
    assert '"a" -> "y" [label="500 B"' in text
    assert "DOT" not in text


# -- Chrome trace ---------------------------------------------------------------------------------
def test_the_chrome_trace_has_a_lane_per_device_events_per_op_and_flows(graph, tmp_path):
    p = pinned_pair()
    trace = json.loads(p.to_chrome_trace(tmp_path / "step.json"))
    events = trace["traceEvents"]
    lanes = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"GPU:0", "GPU:1", "GPU:0 -> GPU:1", "GPU:1 -> GPU:0"} == lanes
    ops = [e for e in events if e["ph"] == "X" and e["pid"] == 1]
    assert sorted(e["name"] for e in ops) == sorted(e.name for e in p.ops)
    assert all(e["dur"] >= 0 and "reason" in e["args"] for e in ops)
    transfers = [e for e in events if e["ph"] == "X" and e["pid"] == 2]
    assert sorted(e["name"] for e in transfers) == ["a:0", "b:0", "x:0"]
    starts = {e["id"] for e in events if e["ph"] == "s"}
    finishes = {e["id"] for e in events if e["ph"] == "f"}
    assert starts == finishes and len(starts) == 2 * len(transfers)


# -- Session -----------------------------------------------------------------------------------
def cpu_pinned_graph():
    with tw.device("/cpu:0"):
        a = tw.constant([1.0, 2.0], name="a")
    with tw.device("/cpu:1"):
        b = tw.add(a, a, name="b")
    return tw.multiply(b, 2.0, name="c")


def test_session_placement_plan_uses_the_virtual_cpus_of_device_count(graph):
    c = cpu_pinned_graph()
    config = tw.ConfigProto(device_count={"CPU": 2}, placement_strategy="etf")
    with tw.Session(config=config) as sess:
        p = sess.placement_plan(c)
    cpu0, cpu1 = "/job:localhost/replica:0/task:0/device:CPU:0", \
                 "/job:localhost/replica:0/task:0/device:CPU:1"
    assert [d.name for d in p.devices] == [cpu0, cpu1]
    assert p.device_of("a") == cpu0 and p.device_of("b") == cpu1
    assert p.strategy == "etf"
    assert [(e.tensor, e.dst_device) for e in p.cut_edges][0] == ("a:0", cpu1)


def test_session_placement_plan_without_fetches_plans_the_whole_graph(graph):
    cpu_pinned_graph()
    tw.constant(5.0, name="other")
    with tw.Session(config=tw.ConfigProto(device_count={"CPU": 2})) as sess:
        assert len(sess.placement_plan()) == len(graph.get_operations())


def test_session_placement_plan_honours_soft_placement(graph):
    with tw.device("/gpu:3"):
        c = tw.constant(1.0, name="c")
    config = tw.ConfigProto(device_count={"GPU": 0}, allow_soft_placement=True)
    with tw.Session(config=config) as sess:
        assert sess.placement_plan(c)["c"].reason.startswith("soft placement from /device:GPU:3")
    with tw.Session(config=tw.ConfigProto(device_count={"GPU": 0})) as sess:
        with pytest.raises(tw.errors.PlacementError):
            sess.placement_plan(c)


def test_log_device_placement_prints_the_table_once_per_compiled_step(graph, capsys):
    c = cpu_pinned_graph()
    # Multi-device steps log the plan of the step graph they run (after the passes; constant
    # folding is off here so the pinned ops survive), then its _Send/_Recv pairs.
    config = tw.ConfigProto(device_count={"CPU": 2}, log_device_placement=True,
                            disabled_passes=["constant_fold"])
    with tw.Session(config=config) as sess:
        for _ in range(3):
            np.testing.assert_allclose(sess.run(c), [4.0, 8.0])
        first = capsys.readouterr().err
        sess.run(graph.get_tensor_by_name("b:0"))
        second = capsys.readouterr().err
    assert first.count("Placement plan (default): 5 ops") == 1
    # The plan's cost model charges the constant's edge; the partitioner copies the constant
    # to CPU:1 instead, so only b goes back as a pair.
    assert "Cut edges (2 transfers" in first and "1 _Send/_Recv pairs" in first
    assert second.count("Placement plan (default): 3 ops") == 1


def test_no_placement_output_without_log_device_placement(graph, capsys):
    c = cpu_pinned_graph()
    with tw.Session(config=tw.ConfigProto(device_count={"CPU": 2})) as sess:
        sess.run(c)
    assert "Placement plan" not in capsys.readouterr().err
