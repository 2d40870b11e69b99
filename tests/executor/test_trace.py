"""``tw.trace.to_chrome_trace``: traced multi-device steps as Chrome trace JSON — a lane per
device, ops as complete events, one flow arrow per _Send/_Recv pair — plus the single-device,
empty and written-to-a-path cases and the helpers' tables."""

import json

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.executor import device_program
from tensorweave.executor.config import NodeStats
from tensorweave.placement.partition import short_device
from tensorweave.trace import (device_order, flow_points, thread_numbers, thread_rows,
                               transfer_pairs)

FULL_TRACE = tw.RunOptions(trace_level=tw.RunOptions.FULL_TRACE)


def _cpu(i):
    return f"/job:localhost/replica:0/task:0/device:CPU:{i}"


@pytest.fixture(params=["straight-line", "dataflow"])
def runner(request, monkeypatch):
    """Each device's partition run by the straight-line runner, or by the dataflow one (whose
    receives span their wait, and whose ops may run on pool threads)."""
    if request.param == "dataflow":
        monkeypatch.setattr(device_program, "has_parallel_work", lambda schedule: True)
    return request.param


def _chain_step(n_devices, **config):
    """x -> h (CPU:0) -> y (CPU:1) [-> z = y + h (CPU:2)], run traced; (metadata, trace)."""
    x = tw.placeholder(tw.float32, [4], name="x")
    with tw.device("/cpu:0"):
        h = tw.exp(x, name="h")
    with tw.device("/cpu:1"):
        out = tw.negative(h, name="y")
    if n_devices == 3:
        with tw.device("/cpu:2"):
            out = tw.add(out, h, name="z")
    md = tw.RunMetadata()
    cfg = tw.ConfigProto(device_count={"CPU": n_devices}, **config)
    with tw.Session(config=cfg) as sess:
        sess.run(out, {x: np.ones(4, np.float32)}, options=FULL_TRACE, run_metadata=md)
    return md, json.loads(tw.trace.to_chrome_trace(md))


def _events(trace, ph, name=None):
    return [e for e in trace["traceEvents"]
            if e["ph"] == ph and (name is None or e["name"] == name)]


def _lanes(trace) -> dict:
    """pid -> (lane name, sort index)."""
    names = {e["pid"]: e["args"]["name"] for e in _events(trace, "M", "process_name")}
    order = {e["pid"]: e["args"]["sort_index"]
             for e in _events(trace, "M", "process_sort_index")}
    assert set(names) == set(order)
    return {pid: (names[pid], order[pid]) for pid in names}


def _slice_of(trace, flow):
    """The complete event a flow event binds to: same pid and tid, ts inside it."""
    around = [e for e in _events(trace, "X") if e["pid"] == flow["pid"]
              and e["tid"] == flow["tid"] and e["ts"] <= flow["ts"] <= e["ts"] + e["dur"]]
    assert len(around) == 1, (flow, around)
    return around[0]


def _check_nesting(trace):
    """No two slices of one thread lane overlap (viewers need the slices of a lane to nest;
    ops of a lane never contain one another, so they must be disjoint)."""
    lanes: dict = {}
    for e in _events(trace, "X"):
        lanes.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in lanes.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans


def _check_flows(trace):
    """Every _Send has exactly one flow start on it and its _Recv the matching end."""
    starts = _events(trace, "s")
    ends = {e["id"]: e for e in _events(trace, "f")}
    sends = [e for e in _events(trace, "X") if e["cat"] == "_Send"]
    assert len(starts) == len(sends) == len(ends)
    assert sorted(e["id"] for e in starts) == list(range(1, len(starts) + 1))
    assert sorted(_slice_of(trace, s)["name"] for s in starts) == sorted(e["name"]
                                                                        for e in sends)
    for start in starts:
        send = _slice_of(trace, start)
        end = ends[start["id"]]
        recv = _slice_of(trace, end)
        assert send["cat"] == "_Send" and recv["cat"] == "_Recv"
        assert send["args"]["transfer"] == recv["args"]["transfer"]
        assert end["bp"] == "e"
        assert (start["name"], start["cat"]) == (end["name"], end["cat"])
        assert start["ts"] <= end["ts"]


@pytest.mark.parametrize("n_devices", [2, 3])
def test_multi_device_step(graph, runner, n_devices):
    md, trace = _chain_step(n_devices)
    lanes = _lanes(trace)
    assert sorted(lanes.values()) == [(f"CPU:{i}", i) for i in range(n_devices)]
    complete = _events(trace, "X")
    assert len(complete) == len(md.step_stats)
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in complete)
    pid_of = {name: pid for pid, (name, _) in lanes.items()}
    by_op = {(e["name"], e["pid"]): e for e in complete}
    for s in md.step_stats:
        e = by_op[(s.node_name, pid_of[short_device(s.device)])]
        assert (e["cat"], e["args"]["type"], e["args"]["device"]) == (s.op_type, s.op_type,
                                                                      s.device)
    _check_nesting(trace)
    _check_flows(trace)
    assert len(_events(trace, "s")) == len(md.partitions.transfers)
    assert trace["displayTimeUnit"] == "ms"
    assert trace["otherData"]["step_id"] == md.step_id
    assert trace["otherData"]["wall_start"] == md.wall_start
    assert trace["otherData"]["devices"] == [_cpu(i) for i in range(n_devices)]


def test_transfer_slices_carry_tensor_bytes_and_wire_dtype(graph):
    md, trace = _chain_step(2, transfer_dtype="bfloat16")
    ends = [e for e in _events(trace, "X") if e["cat"] in ("_Send", "_Recv")]
    assert len(ends) == 2
    for e in ends:
        assert e["args"]["tensor"] == "h:0"
        assert e["args"]["wire_dtype"] == "bfloat16"
        assert e["args"]["bytes"] == 4 * 2
        assert (e["args"]["src_device"], e["args"]["dst_device"]) == ("CPU:0", "CPU:1")


def test_threads_are_small_numbers_named_in_each_lane(graph, runner):
    md, trace = _chain_step(3)
    named = {(e["pid"], e["tid"]): e["args"]["name"] for e in _events(trace, "M", "thread_name")}
    used = {(e["pid"], e["tid"]) for e in _events(trace, "X")}
    assert used == set(named)
    threads = len({s.thread for s in md.step_stats})
    tids = {tid for _, tid in used}
    assert tids == set(range(1, len(tids) + 1))
    for (_, tid), name in named.items():
        if tid <= threads:
            assert name == f"thread {tid}"
        else:   # a row for the dataflow runner's receives that overlap the thread's ops
            assert runner == "dataflow" and ": waiting receives" in name


def test_control_edge_transfer_is_a_control_flow(graph):
    x = tw.constant([1.0])
    with tw.device("/cpu:0"):
        a = tw.py_func(lambda v: v, [x], tw.float32, name="a")
    with tw.device("/cpu:1"), tw.control_dependencies([a.op]):
        b = tw.py_func(lambda v: v + 1, [x], tw.float32, name="b")
    md = tw.RunMetadata()
    with tw.Session(config=tw.ConfigProto(device_count={"CPU": 2})) as sess:
        sess.run([b, a.op], options=FULL_TRACE, run_metadata=md)
    trace = json.loads(tw.trace.to_chrome_trace(md))
    _check_flows(trace)
    control = [(e["name"], e["cat"]) for e in _events(trace, "s") if e["cat"] == "control"]
    assert control == [("^a", "control")]


def test_single_device_step_has_one_lane_and_no_flows(graph):
    x = tw.placeholder(tw.float32, [3], name="x")
    y = tw.multiply(tw.exp(x), 2.0, name="y")
    md = tw.RunMetadata()
    with tw.Session() as sess:
        sess.run(y, {x: np.ones(3, np.float32)}, options=FULL_TRACE, run_metadata=md)
    trace = json.loads(tw.trace.to_chrome_trace(md))
    assert len(_lanes(trace)) == 1
    assert {e["name"] for e in _events(trace, "X")} == {s.node_name for s in md.step_stats}
    assert not _events(trace, "s") and not _events(trace, "f")


def test_empty_step_stats_give_valid_json_with_the_step_metadata():
    md = tw.RunMetadata(step_id=7, wall_start=12.5)
    trace = json.loads(tw.trace.to_chrome_trace(md))
    assert trace == {"traceEvents": [], "displayTimeUnit": "ms",
                     "otherData": {"step_id": 7, "wall_start": 12.5, "devices": []}}


def test_writes_to_a_path_creating_folders(graph, tmp_path):
    md, _ = _chain_step(2)
    path = tmp_path / "traces" / "step" / "trace.json"
    text = tw.trace.to_chrome_trace(md, path)
    assert path.read_text(encoding="utf-8") == text
    assert tw.trace.to_chrome_trace(md, str(path)) == text


def test_rejects_what_is_not_run_metadata():
    with pytest.raises(TypeError, match="RunMetadata"):
        tw.trace.to_chrome_trace({"step_stats": []})


# -- helpers -----------------------------------------------------------------------------------
def _stats(name, op_type, device, start, end, transfer="", thread=1):
    return NodeStats(name, op_type, device, transfer, start, end, thread)


@pytest.mark.parametrize("send, recv, expected", [
    ((10, 20), (30, 40), (15, 35)),        # receive asked for after the send
    ((10, 20), (0, 40), (15, 27.5)),       # receive waited from 0: the arrow starts at 15
    ((10, 30), (0, 20), (15, 17.5)),       # receive returned before the send's bookkeeping
    ((10, 20), (0, 10), (10, 10)),         # receive returned as the send started
    ((10, 20), (0, 5), (15, 2.5)),         # impossible clocks: the middles, out of order
])
def test_flow_points_lie_in_their_slices_in_causal_order(send, recv, expected):
    s = _stats("s", "_Send", _cpu(0), *send)
    r = _stats("r", "_Recv", _cpu(1), *recv)
    start, end = flow_points(s, r)
    assert (start, end) == expected
    if recv[1] >= send[0]:
        assert send[0] <= start <= send[1] and recv[0] <= end <= recv[1] and start <= end


def test_transfer_pairs_match_keys_and_leave_unpaired_ends_out():
    stats = [_stats("s1", "_Send", _cpu(0), 5, 6, "k1"),
             _stats("r1", "_Recv", _cpu(1), 0, 7, "k1"),
             _stats("s2", "_Send", _cpu(0), 1, 2, "k2"),      # its receive never ran
             _stats("r3", "_Recv", _cpu(1), 3, 4, "k3"),      # its send never ran
             _stats("s4", "_Send", _cpu(1), 0, 1, "k4"),
             _stats("r4", "_Recv", _cpu(0), 0, 2, "k4")]
    pairs = [(stats[i].node_name, stats[j].node_name) for i, j in transfer_pairs(stats)]
    assert pairs == [("s4", "r4"), ("s1", "r1")]


def test_unpaired_send_gets_no_arrow():
    md = tw.RunMetadata(step_stats=[_stats("s", "_Send", _cpu(0), 1, 2, "k")])
    trace = json.loads(tw.trace.to_chrome_trace(md))
    assert len(_events(trace, "X")) == 1 and not _events(trace, "s")


def test_device_order_is_numeric_and_unplaced_first():
    names = [_cpu(10), _cpu(2), "", "/job:worker/replica:0/task:1/device:CPU:0",
             "/job:localhost/replica:0/task:0/device:GPU:0"]
    assert device_order(names) == ["", _cpu(2), _cpu(10),
                                   "/job:localhost/replica:0/task:0/device:GPU:0",
                                   "/job:worker/replica:0/task:1/device:CPU:0"]


def test_thread_numbers_go_device_by_device():
    stats = [_stats("a", "Exp", _cpu(1), 0, 1, thread=900),
             _stats("b", "Exp", _cpu(0), 2, 3, thread=500),
             _stats("c", "Exp", _cpu(0), 4, 5, thread=900),
             _stats("d", "Exp", _cpu(1), 6, 7, thread=700)]
    assert thread_numbers(stats, [_cpu(0), _cpu(1)]) == {500: 1, 900: 2, 700: 3}


def test_overlapping_receives_of_a_thread_get_rows_of_their_own():
    # The dataflow runner's receives span their wait while the thread runs other ops.
    stats = [_stats("r1", "_Recv", _cpu(0), 0, 50, "k1"),
             _stats("r2", "_Recv", _cpu(0), 5, 60, "k2"),
             _stats("a", "Exp", _cpu(0), 10, 20),
             _stats("b", "Exp", _cpu(0), 55, 70),
             _stats("c", "Exp", _cpu(1), 0, 100),          # another device: its own lane
             _stats("r3", "_Recv", _cpu(0), 70, 80, "k3")]  # touches b: no overlap
    assert thread_rows(stats) == [1, 2, 0, 0, 0, 0]
    md = tw.RunMetadata(step_stats=stats)
    trace = json.loads(tw.trace.to_chrome_trace(md))
    _check_nesting(trace)
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in _events(trace, "M", "thread_name")}
    assert names == {(1, 1): "thread 1", (1, 2): "thread 1: waiting receives",
                     (1, 3): "thread 1: waiting receives 2", (2, 1): "thread 1"}


def test_unplaced_ops_get_a_labelled_lane():
    md = tw.RunMetadata(step_stats=[_stats("a", "Exp", "", 0, 1)])
    trace = json.loads(tw.trace.to_chrome_trace(md))
    assert list(_lanes(trace).values()) == [("default device", 0)]
