"""examples/model_parallel.py: a deep MLP in stages on two devices, pipelined over micro-batches.

The example's timings are printed, never asserted (the machine is shared). What is checked: it
runs and writes its plan, traces and timings; micro-batching changes the step only by the order
of float sums; each stage's forward and backward ops sit on its device; the pipelined step's
structure lets the devices overlap; the overlap arithmetic on a hand-made trace.
"""

import json
import os
import sys

import numpy as np
import pytest

import tensorweave as tw

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
sys.path.insert(0, os.path.abspath(EXAMPLES))

import datasets  # noqa: E402
import model_parallel as mp  # noqa: E402

SMALL = ["--steps", "30", "--batch-size", "64", "--hidden", "128",
         "--timing-rounds", "1", "--timing-steps", "1"]


def _lanes(trace: dict) -> set:
    return {e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "process_name"}


def test_runs_and_writes_plan_traces_and_timings(tmp_path, capsys):
    out = tmp_path / "out"
    result = mp.main(["--data-dir", str(tmp_path), "--out", str(out), "--micro-batches", "4"]
                     + SMALL)
    assert result["accuracy"] >= 0.8   # digits, 30 steps: 0.89 when written
    printed = capsys.readouterr().out
    assert "_Send/_Recv pairs" in printed and "test accuracy" in printed
    assert "stages: /cpu:0: layers 1+2, /cpu:1: layers 3+4+5" in printed
    assert (out / "plan.dot").read_text().startswith("digraph")

    # Each micro-batch's activations (16 x 128 floats) go to CPU:1, their gradients come back.
    plan = json.loads((out / "plan.json").read_text())
    assert plan["multi_device"]
    transfers = plan["partitions"]["transfers"]
    forward = [t for t in transfers
               if t["bytes"] == 16 * 128 * 4 and "/stage1_grad/" not in t["tensor"]]
    assert [t["dst_device"][-5:] for t in forward] == ["CPU:1"] * 4
    backward = [t["tensor"].split("/")[0] for t in transfers if "/stage1_grad/" in t["tensor"]]
    assert backward == ["micro0", "micro1", "micro2", "micro3"]

    for name in ("trace.json", "trace_m1.json", "trace_m4.json"):
        assert {"CPU:0", "CPU:1"} <= _lanes(json.loads((out / name).read_text())), name
    timings = json.loads((out / "timings.json").read_text())
    assert list(timings) == ["1 device, M=1", "2 devices, M=1", "2 devices, M=4", "numpy"]
    assert timings.pop("numpy")["speedup"] > 0
    for label, entry in timings.items():
        assert entry["step_ms"] > 0, label
        if entry["devices"] > 1:
            assert 0.0 <= entry["overlap"] <= 1.0
            assert set(entry["busy_us"]) == {"CPU:0", "CPU:1"}
    assert timings.items() <= result["timings"].items()


def _train(devices: int, micro_batches: int, steps: int = 4):
    """Losses of ``steps`` seeded steps on the digits, and the weights after them."""
    data = datasets.load("/nonexistent")
    graph = tw.Graph()
    model = mp.build(64, 64, 4, devices, micro_batches, 1e-3, graph=graph)
    variables = [v for stage in model.stages for v in stage.variables]
    with tw.Session(graph=graph, config=mp.session_config(devices)) as sess:
        with graph.as_default():
            sess.run(tw.global_variables_initializer())
        batches = data.batches(32, seed=3)
        losses = []
        for _ in range(steps):
            xs, ys = next(batches)
            _, loss = sess.run([model.train_op, model.loss], {model.x: xs, model.labels: ys})
            losses.append(float(loss))
        return np.array(losses), sess.run(variables)


def test_pipelined_steps_match_the_unpipelined_steps():
    """Four micro-batches give the losses and weights of the whole batch, up to the order of
    float sums (Adam, lr 1e-3, 4 steps: differences of 2e-7 in the loss when written)."""
    plain_losses, plain_weights = _train(2, 1)
    losses, weights = _train(2, 4)
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-5, atol=1e-6)
    for w, plain in zip(weights, plain_weights):
        np.testing.assert_allclose(w, plain, rtol=0, atol=1e-5)
    assert not np.array_equal(weights[0], _train(2, 1, steps=0)[1][0])  # training moved them


@pytest.mark.parametrize("micro_batches", [1, 4])
def test_two_devices_give_bitwise_the_one_device_step(micro_batches):
    one_losses, one_weights = _train(1, micro_batches)
    two_losses, two_weights = _train(2, micro_batches)
    assert one_losses.tobytes() == two_losses.tobytes()
    for a, b in zip(one_weights, two_weights):
        assert a.tobytes() == b.tobytes()


def test_every_forward_and_backward_op_of_a_stage_is_on_its_device():
    graph = tw.Graph()
    model = mp.build(64, 32, 4, 2, 2, 1e-3, graph=graph)
    data = datasets.load("/nonexistent")
    xs, ys = next(data.batches(8))
    with tw.Session(graph=graph, config=mp.session_config(2)) as sess:
        plan = json.loads(sess.placement_plan([model.train_op, model.loss],
                                              {model.x: xs, model.labels: ys}).to_json())
    checked = 0
    for op in plan["ops"]:
        for stage in (0, 1):
            if f"/stage{stage}/" in op["name"] or f"/stage{stage}_grad/" in op["name"]:
                assert op["device"].endswith(f"CPU:{stage}"), op
                checked += 1
    assert checked > 40


def test_the_first_device_hands_on_each_micro_batch_before_the_next():
    """The structure that lets the devices overlap, read from one traced step: CPU:0 sends
    every micro-batch's activations before it waits for the first gradient to come back (its
    ops run in the order the graph was built: all forwards, then all backwards). This is an
    order within one device thread, so it holds however loaded the machine is."""
    graph = tw.Graph()
    model = mp.build(64, 64, 4, 2, 4, 1e-3, graph=graph)
    data = datasets.load("/nonexistent")
    xs, ys = next(data.batches(32))
    feed = {model.x: xs, model.labels: ys}
    with tw.Session(graph=graph, config=mp.session_config(2)) as sess:
        with graph.as_default():
            sess.run(tw.global_variables_initializer())
        sess.run(model.train_op, feed)
        trace = mp.traced_step(sess, model, feed)
    lanes = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e.get("name") == "process_name"}
    cpu0 = sorted((e for e in trace["traceEvents"]
                   if e.get("ph") == "X" and lanes[e["pid"]] == "CPU:0"), key=lambda e: e["ts"])
    sends = [e for e in cpu0 if e["cat"] == "_Send" and e["args"]["bytes"] == 8 * 64 * 4]
    gradient_recvs = [e for e in cpu0 if e["cat"] == "_Recv" and "_grad" in e["name"]]
    assert len(sends) == 4 and len(gradient_recvs) == 4
    assert sends[-1]["ts"] <= gradient_recvs[0]["ts"]
    # a forward computation between two consecutive hand-overs
    for before, after in zip(sends, sends[1:]):
        assert any(before["ts"] < e["ts"] < after["ts"] and e["cat"] not in ("_Send", "_Recv")
                   for e in cpu0)
    summary = mp.overlap_summary(trace)
    assert set(summary["busy_us"]) == {"CPU:0", "CPU:1"} and 0 <= summary["overlap"] <= 1


def _event(pid, ts, dur, cat="MatMul"):
    return {"ph": "X", "pid": pid, "tid": 1, "ts": ts, "dur": dur, "cat": cat, "name": cat}


def test_overlap_summary_of_a_hand_made_trace():
    names = [{"ph": "M", "name": "process_name", "pid": p, "args": {"name": f"CPU:{p - 1}"}}
             for p in (1, 2)]
    events = [_event(1, 0, 10), _event(1, 8, 4),          # CPU:0 busy [0, 12)
              _event(1, 20, 10),                          # and [20, 30)
              _event(2, 10, 15),                          # CPU:1 busy [10, 25)
              _event(2, 0, 40, cat="_Recv")]              # a receive waits: not busy
    summary = mp.overlap_summary({"traceEvents": names + events})
    assert summary["busy_us"] == {"CPU:0": 22, "CPU:1": 15}
    assert summary["span_us"] == 30
    assert summary["both_busy_us"] == 2 + 5               # [10, 12) and [20, 25)
    assert summary["overlap"] == pytest.approx(7 / 30)
    empty = mp.overlap_summary({"traceEvents": names})
    assert empty["overlap"] == 0.0


@pytest.mark.parametrize("costs, stages, expected", [
    ([1, 1, 1, 1], 2, [(0, 2), (2, 4)]),
    ([1, 1, 1, 1], 1, [(0, 4)]),
    ([8, 1, 1, 1, 1, 8], 3, [(0, 1), (1, 5), (5, 6)]),
    ([784, 1024, 1024, 1024, 10], 2, [(0, 2), (2, 5)]),
    ([784, 1024, 1024, 1024, 10], 4, [(0, 1), (1, 2), (2, 3), (3, 5)]),
    ([5, 1, 1], 3, [(0, 1), (1, 2), (2, 3)]),
])
def test_balanced_stages(costs, stages, expected):
    assert mp.balanced_stages(costs, stages) == expected


def test_balanced_stages_refuses_more_stages_than_layers():
    with pytest.raises(ValueError, match="cannot cut 2 layers into 3 stages"):
        mp.balanced_stages([1, 1], 3)


def test_a_batch_that_micro_batches_do_not_divide_is_refused(capsys):
    with pytest.raises(SystemExit):
        mp.main(["--batch-size", "30", "--micro-batches", "4"])
    assert "not a multiple of --micro-batches 4" in capsys.readouterr().err
