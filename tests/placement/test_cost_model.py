"""The cost model: resolved shapes, roofline op times, transfers, memory, calibration."""

import json

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.ops import registry
from tensorweave.placement import cost_model as cost_module
from tensorweave.placement.cost_model import CostModel, calibrate
from tensorweave.placement.devices import Cluster

CLUSTER = Cluster.from_dict({
    "profiles": {"SLOW": {"device_type": "CPU", "memory_bytes": "1GiB", "peak_flops": 1e9,
                          "memory_bandwidth": 1e9, "launch_overhead": 1e-6}},
    "jobs": {"localhost": {"devices": {"CPU": {"count": 2, "profile": "SLOW"}, "GPU": 1}}}})
CPU0 = CLUSTER.device("/cpu:0")
CPU1 = CLUSTER.device("/cpu:1")
GPU0 = CLUSTER.device("/gpu:0")


@pytest.fixture
def mlp(graph):
    x = tw.placeholder(tw.float32, [None, 784], name="x")
    W = tw.constant(np.zeros((784, 10), np.float32), name="W")
    logits = tw.matmul(x, W, name="logits")
    flat = tw.reshape(logits, [-1, 5, 2], name="flat")
    anything = tw.placeholder(tw.float32, None, name="anything")
    labels = tw.placeholder(tw.int64, [None], name="labels")
    return x, logits, flat, anything, labels


def test_feed_shapes_propagate_through_shape_inference(mlp):
    x, logits, flat, _, _ = mlp
    model = CostModel(CLUSTER, feed_shapes={x: (64, 784)})
    assert model.resolved_shape(x) == (64, 784)
    assert model.resolved_shape(logits) == (64, 10)
    assert model.resolved_shape(flat) == (64, 5, 2)
    assert model.output_bytes(logits) == 64 * 10 * 4


def test_feed_keys_may_be_names_and_values_arrays(mlp):
    x, logits, _, _, _ = mlp
    for feeds in ({"x": (8, 784)}, {"x:0": [8, 784]}, {x: np.zeros((8, 784), np.float32)}):
        assert CostModel(CLUSTER, feed_shapes=feeds).resolved_shape(logits) == (8, 10)


def test_unknown_dims_default_to_the_batch_size_in_dim_0_else_default_dim(mlp):
    x, logits, _, anything, labels = mlp
    fed = CostModel(CLUSTER, feed_shapes={x: (16, 784)}, default_dim=7)
    assert fed.batch_size == 16
    assert fed.resolved_shape(labels) == (16,)           # unfed, dim 0: the batch size
    assert fed.resolved_shape(anything) == (7,)          # unknown rank: a default_dim vector
    unfed = CostModel(CLUSTER, default_dim=3)
    assert unfed.batch_size is None
    assert unfed.resolved_shape(x) == (3, 784)
    assert unfed.resolved_shape(logits) == (3, 10)


def test_batch_size_is_the_most_common_leading_dim():
    shapes = [tw.TensorShape(s) for s in [(5, 2), (64, 3), (64,), (), (None, 4), (5, 1)]]
    assert cost_module._batch_size(shapes) == 64  # tie 2:2 broken towards the larger


def test_op_time_is_a_roofline_plus_launch_overhead(mlp):
    x, logits, _, _, _ = mlp
    model = CostModel(CLUSTER, feed_shapes={x: (64, 784)})
    cost = model.op_cost(logits.op)
    assert cost.flops == 2 * 64 * 10 * 784
    assert cost.bytes_read == (64 * 784 + 784 * 10) * 4
    expected = max(cost.flops / 1e9, (cost.bytes_read + cost.bytes_written) / 1e9) + 1e-6
    assert model.op_time(logits.op, CPU0) == pytest.approx(expected)
    gpu = GPU0.profile
    assert model.op_time(logits.op, GPU0) == pytest.approx(
        max(cost.flops / gpu.peak_flops, (cost.bytes_read + cost.bytes_written)
            / gpu.memory_bandwidth) + gpu.launch_overhead)


def test_compute_bound_and_memory_bound_ops(graph):
    a = tw.constant(np.ones((256, 256), np.float32))
    matmul = tw.matmul(a, a)
    add = a + a
    cluster = Cluster.from_dict({"profiles": {"P": {"device_type": "CPU", "memory_bytes": 1e9,
                                                    "peak_flops": 1e10, "memory_bandwidth": 1e11,
                                                    "launch_overhead": 0}},
                                 "jobs": {"j": {"devices": {"CPU": {"count": 1,
                                                                    "profile": "P"}}}}})
    model = CostModel(cluster)
    device = cluster.devices[0]
    traffic = 3 * 256 * 256 * 4
    # matmul: 33.5 Mflop (3.4 ms) against 786 kB (7.9 us): compute bound
    assert model.op_time(matmul.op, device) == pytest.approx(2 * 256 ** 3 / 1e10)
    # add: 65.5 kflop (6.6 us) against the same 786 kB (7.9 us): memory bound
    assert model.op_time(add.op, device) == pytest.approx(traffic / 1e11)


def test_op_memory_sums_outputs(graph):
    a = tw.constant(np.ones((4, 6), np.float64))
    parts = tw.split(a, 3, axis=1)
    model = CostModel(CLUSTER)
    assert model.op_memory(parts[0].op) == 3 * 4 * 2 * 8
    assert model.op_memory(a.op) == 4 * 6 * 8


def test_transfer_time_uses_the_link():
    model = CostModel(CLUSTER)
    assert model.transfer_time(10 ** 6, CPU0, CPU0) == 0.0
    pcie = CLUSTER.links.pcie
    assert model.transfer_time(10 ** 6, CPU0, GPU0) == pytest.approx(
        pcie.latency + 10 ** 6 / pcie.bandwidth)
    process = CLUSTER.links.process
    assert model.transfer_time(0, CPU0, CPU1) == pytest.approx(process.latency)


def test_ops_without_cost_rules_or_opdefs_use_the_default_rule(graph):
    a = tw.constant(np.ones((3, 3), np.float32))
    b = tw.negative(a)
    model = CostModel(CLUSTER)
    assert model.op_cost(b.op) == registry.default_cost(b.op)


N = 1 << 22  # elements: 16 MiB of float32, so any byte traffic would show in the time
PASS_THROUGH_BUILDERS = {
    "Const": lambda x: tw.constant(np.zeros(N, np.float32)).op,
    "Placeholder": lambda x: x.op,
    "PlaceholderWithDefault": lambda x: tw.placeholder_with_default(x, [N]).op,
    "VariableV2": lambda x: tw.Variable(tw.zeros([N])).op,
    "Identity": lambda x: tw.identity(x).op,
    "StopGradient": lambda x: tw.stop_gradient(x).op,
    "_Arg": lambda x: registry.apply_op("_Arg", [], {"index": 0, "dtype": tw.float32,
                                                     "shape": tw.TensorShape([N])}),
    "_Retval": lambda x: registry.apply_op("_Retval", [x], {"index": 0}),
    "_Targets": lambda x: registry.apply_op("_Targets", [], {}),
    "NoOp": lambda x: tw.no_op(),
}


def test_every_pass_through_op_type_is_registered_and_tested():
    assert set(PASS_THROUGH_BUILDERS) == cost_module.PASS_THROUGH_OPS
    assert all(registry.lookup(t) is not None for t in cost_module.PASS_THROUGH_OPS)


@pytest.mark.parametrize("op_type", sorted(PASS_THROUGH_BUILDERS))
def test_pass_through_ops_move_no_bytes_and_cost_only_their_dispatch(graph, op_type):
    x = tw.placeholder(tw.float32, [N], name="x")
    op = PASS_THROUGH_BUILDERS[op_type](x)
    assert op.type == op_type
    model = CostModel(CLUSTER)
    assert model.op_cost(op) == registry.Cost(0.0, 0.0, 0.0)
    # A GPU launches no kernel for it: the executor's dispatch, not the 10 us launch.
    assert model.op_time(op, GPU0) == cost_module.PASS_THROUGH_OVERHEAD
    assert model.op_time(op, GPU0) < GPU0.profile.launch_overhead
    assert model.op_time(op, CPU0) == min(1e-6, cost_module.PASS_THROUGH_OVERHEAD)
    # Its outputs still occupy memory.
    assert model.op_memory(op) == sum(N * 4 for _ in op.outputs)


def test_a_device_with_a_smaller_launch_overhead_pays_that_for_pass_through_ops(graph):
    x = tw.placeholder(tw.float32, [N], name="x")
    read = tw.identity(x)
    fast = Cluster.from_dict({"profiles": {"F": {"device_type": "CPU", "launch_overhead": 2e-7}},
                              "jobs": {"j": {"devices": {"CPU": {"count": 1, "profile": "F"}}}}})
    assert CostModel(fast).op_time(read.op, fast.devices[0]) == 2e-7


def test_pass_through_time_does_not_grow_with_size_unlike_a_copying_op(graph):
    small, big = (tw.placeholder(tw.float32, [n], name=f"x{n}") for n in (4, N))
    model = CostModel(CLUSTER)
    assert model.op_time(tw.identity(big).op, GPU0) == model.op_time(tw.identity(small).op, GPU0)
    assert model.op_time(tw.negative(big).op, GPU0) > model.op_time(tw.negative(small).op, GPU0)


def test_a_chain_of_reads_simulates_at_dispatch_cost(graph):
    W = tw.Variable(tw.zeros([N]), name="W")
    y = tw.identity(tw.identity(W, name="a"), name="b")
    plan = tw.placement.plan(graph, CLUSTER, strategy="default", fetches=[y])
    # VariableV2, W/read, a, b on the GPU: four dispatches, no copies
    assert plan.step_time == pytest.approx(4 * cost_module.PASS_THROUGH_OVERHEAD)


def test_deep_chains_resolve_without_recursion(graph):
    x = tw.placeholder(tw.float32, [None], name="x")
    y = x
    for _ in range(3000):
        y = tw.negative(y)
    model = CostModel(CLUSTER, feed_shapes={"x": (5,)})
    assert model.resolved_shape(y) == (5,)


def test_default_dim_must_be_positive():
    with pytest.raises(ValueError, match="default_dim"):
        CostModel(CLUSTER, default_dim=0)


# -- calibration ----------------------------------------------------------------------------------
MEASURED = {"peak_flops": 4e10, "memory_bandwidth": 2e10, "launch_overhead": 3e-6}


def test_calibration_replaces_profiles_and_virtual_cpus_share_the_host(graph):
    local = Cluster.local({"CPU": 2})
    model = CostModel(local, calibration={"devices": {"CPU": MEASURED}})
    for device in local.devices:
        profile = model.profile(device)
        assert profile.peak_flops == pytest.approx(2e10)
        assert profile.memory_bandwidth == pytest.approx(1e10)
        assert profile.launch_overhead == 3e-6
        assert profile.memory_bytes == device.profile.memory_bytes
    # Device types the calibration did not measure keep their profile.
    assert CostModel(CLUSTER, calibration={"devices": {"CPU": MEASURED}}).profile(GPU0) == \
        GPU0.profile


def test_calibrate_measures_once_and_caches(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(cost_module._MEASURERS, "CPU", lambda: calls.append(1) or dict(MEASURED))
    path = tmp_path / "sub" / "calibration.json"
    first = calibrate(Cluster.local(), cache_path=path)
    assert first["devices"]["CPU"] == MEASURED
    assert json.loads(path.read_text()) == first
    assert calibrate(Cluster.local(), cache_path=path) == first
    assert len(calls) == 1
    calibrate(Cluster.local(), cache_path=path, force=True)
    assert len(calls) == 2


def test_calibrate_remeasures_for_another_machine_or_a_corrupt_cache(tmp_path, monkeypatch):
    monkeypatch.setitem(cost_module._MEASURERS, "CPU", lambda: dict(MEASURED))
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"version": 1, "machine": {"node": "elsewhere"},
                                "devices": {"CPU": {"peak_flops": 1.0}}}))
    assert calibrate(cache_path=path)["devices"]["CPU"] == MEASURED
    path.write_text("{half a file")
    assert calibrate(cache_path=path)["devices"]["CPU"] == MEASURED


def test_default_cache_path_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cost_module.default_cache_path() == str(tmp_path / "tensorweave" / "calibration.json")


def test_the_measurements_themselves_are_positive():
    values = cost_module._measure_array_module(np, n=64, copy_elements=1 << 12)
    assert values["peak_flops"] > 0 and values["memory_bandwidth"] > 0
    overhead = cost_module._session_op_overhead(chain=10)
    assert 0 < overhead < 1e-2
