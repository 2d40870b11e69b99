"""Placement constraints: colocation groups, pins, kernels, memory, soft placement, errors."""

import dataclasses

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.graph.serialization import graph_to_dict
from tensorweave.ops import registry
from tensorweave.placement.constraints import build_constraints, colocation_groups
from tensorweave.placement.cost_model import CostModel
from tensorweave.placement.devices import Cluster

LOCAL = Cluster.from_dict({"jobs": {"localhost": {"devices": {"CPU": 1, "GPU": 2}}}})
WORKERS = Cluster.from_dict({"jobs": {"worker": {"tasks": 2, "devices": {"CPU": 1, "GPU": 1}}}})
SMALL_GPU = Cluster.from_dict({
    "profiles": {"SMALL": {"device_type": "GPU", "memory_bytes": "1MiB"}},
    "jobs": {"localhost": {"devices": {"CPU": 1, "GPU": {"count": 1, "profile": "SMALL"}}}}})


def names(devices):
    return [d.short_name if d.spec.job == "localhost" else d.name for d in devices]


def place(graph, cluster=LOCAL, **kw):
    return build_constraints(graph.get_operations(), cluster, **kw)


def summary(constraints):
    return [(g.name, [op.name for op in g.ops], [d.name for d in g.feasible],
             [(op.name, req, why) for op, req, why in g.relaxed]) for g in constraints.groups]


# -- colocation groups ----------------------------------------------------------------------------
def test_a_variable_its_reads_assigns_and_optimizer_slots_form_one_group(graph):
    x = tw.placeholder(tw.float32, [None, 3], name="x")
    W = tw.Variable(tw.ones([3, 2]), name="W")
    loss = tw.reduce_sum(tw.matmul(x, W))
    tw.train.MomentumOptimizer(0.1, 0.9).minimize(loss)
    group = place(graph).group_of(W.op)
    assert [op.name for op in group.ops] == [
        "W", "W/Assign", "W/read", "W/Momentum/Initializer/Const", "W/Momentum",
        "W/Momentum/Assign", "W/Momentum/read", "Momentum/update_W/ApplyMomentum"]
    assert group.name == "Momentum/update_W/ApplyMomentum"  # the smallest op name
    assert names(group.feasible) == ["/device:GPU:0", "/device:GPU:1", "/device:CPU:0"]


def test_colocate_with_unions_transitively_and_groups_keep_graph_order(graph):
    a = tw.constant(1.0, name="a")
    with tw.colocate_with(a):
        b = tw.constant(2.0, name="b")
    with tw.colocate_with(b):
        c = tw.add(a, b, name="c")
    d = tw.constant(3.0, name="d")
    groups = colocation_groups(graph.get_operations())
    assert [[op.name for op in g] for g in groups] == [["a", "b", "c"], ["d"]]
    assert c.op.attrs["_class"] == ["loc:@a"]
    assert place(graph).group_of(d.op).ops == [d.op]


def test_ops_naming_one_variable_share_a_group_without_class_attrs(graph):
    W = tw.Variable(tw.zeros([2]), name="W")
    tw.assign_add(W, tw.ones([2]))
    graph_def = graph_to_dict(graph)
    for node in graph_def["nodes"]:
        node["attrs"].pop("_class", None)
    imported = tw.Graph()
    with imported.as_default():
        tw.import_graph_def(graph_def, name="")
    groups = place(imported).groups
    assert [[op.name for op in g.ops] for g in groups if len(g.ops) > 1] == [
        ["W", "W/Assign", "AssignAdd"]]


# -- pins, kernels, memory ------------------------------------------------------------------------
def test_pins_narrow_to_matching_devices_and_partial_specs_match_several(graph):
    with tw.device("/job:worker/task:1"):
        a = tw.constant(1.0, name="a")
    with tw.device("/device:GPU:*"):
        b = tw.constant(2.0, name="b")
    c = tw.constant(3.0, name="c")
    constraints = place(graph, WORKERS)
    assert names(constraints.feasible(a.op)) == ["/job:worker/replica:0/task:1/device:GPU:0",
                                                 "/job:worker/replica:0/task:1/device:CPU:0"]
    assert names(constraints.feasible(b.op)) == ["/job:worker/replica:0/task:0/device:GPU:0",
                                                 "/job:worker/replica:0/task:1/device:GPU:0"]
    assert len(constraints.feasible(c.op)) == 4
    assert constraints.group_of(a.op).pinned_by == [(a.op, "/job:worker/task:1",
                                                     a.op.location_str())]


def test_kernel_availability_limits_device_types(graph):
    W = tw.Variable(tw.zeros([2]), name="W")
    report = tw.report_uninitialized_variables([W])
    constraints = place(graph)
    assert names(constraints.feasible(report.op)) == ["/device:CPU:0"]
    assert constraints.group_of(report.op).device_types == ("CPU",)


def test_a_cpu_only_op_pulls_its_whole_colocation_group_to_the_cpu(graph):
    W = tw.Variable(tw.zeros([2]), name="W")
    with tw.colocate_with(W.op):
        report = tw.report_uninitialized_variables([W])
    assert names(place(graph).feasible(W.op)) == ["/device:CPU:0"]
    assert place(graph).group_of(report.op) is not None


def test_memory_capacity_excludes_small_devices(graph):
    small = tw.constant(np.zeros(1000, np.float32), name="small")
    big = tw.constant(np.zeros(1 << 19, np.float32), name="big")  # 2 MiB
    constraints = place(graph, SMALL_GPU)
    assert names(constraints.feasible(small.op)) == ["/device:GPU:0", "/device:CPU:0"]
    assert names(constraints.feasible(big.op)) == ["/device:CPU:0"]
    assert constraints.group_of(big.op).memory_bytes == 1 << 21


def test_memory_uses_feed_shapes_through_the_cost_model(graph):
    x = tw.placeholder(tw.float32, [None, 1024], name="x")
    model = CostModel(SMALL_GPU, feed_shapes={x: (1024, 1024)})  # 4 MiB
    assert names(build_constraints([x.op], SMALL_GPU, cost_model=model).feasible(x.op)) == \
        ["/device:CPU:0"]
    assert len(build_constraints([x.op], SMALL_GPU).feasible(x.op)) == 2  # 32 rows by default


# -- errors ---------------------------------------------------------------------------------------
def test_pin_conflict_inside_a_colocation_group_names_both_pins(graph):
    with tw.device("/cpu:0"):
        W = tw.Variable(tw.zeros([4]), name="W")
    update = tw.assign(W, tw.ones([4]), name="update")
    update.op._set_device("/gpu:0")
    with pytest.raises(tw.errors.PlacementError) as info:
        place(graph)
    message = str(info.value)
    assert "Cannot place the colocation group of 'W' (W, W/Assign, W/read, update)" in message
    assert f"'W' (VariableV2) requests /device:CPU:0 at {W.op.location_str()}" in message
    assert f"'update' (Assign) requests /device:GPU:0 at {update.op.location_str()}" in message
    assert "-> no device left" in message
    assert "must share one device" in message
    assert (f"remove the pin at {update.op.location_str()} or at {W.op.location_str()}, "
            f"or enable allow_soft_placement") in message
    assert info.value.op is update.op
    assert isinstance(info.value, tw.errors.InvalidArgumentError)
    assert len(info.value.chain) == 2


def test_a_pin_inside_colocate_with_is_kept_and_a_conflicting_one_is_an_error(graph):
    with tw.device("/cpu:0"):
        W = tw.Variable(tw.zeros([4]), name="W")
    with tw.device("/gpu:0"):       # enclosing scopes yield to the colocation, as in TF1
        with tw.colocate_with(W.op):
            inherits = tw.identity(W, name="inherits")
            with tw.device("/gpu:1"):
                read = tw.identity(W, name="read")
    assert inherits.op.device == "/device:CPU:0"
    assert read.op.device == "/device:GPU:1"  # its own request, not silently replaced
    with pytest.raises(tw.errors.PlacementError) as info:
        place(graph)
    message = str(info.value)
    assert "Cannot place the colocation group of 'W' (W, W/Assign, W/read, inherits, read)" \
        in message
    assert f"'W' (VariableV2) requests /device:CPU:0 at {W.op.location_str()} -> " in message
    assert (f"'read' (Identity) requests /device:GPU:1 at {read.op.location_str()} (created "
            f"under colocate_with('W')) -> no device left") in message
    assert (f"remove the pin at {read.op.location_str()} or at {W.op.location_str()}, "
            f"or enable allow_soft_placement") in message
    assert info.value.op is read.op
    assert len(info.value.chain) == 2


def test_a_conflicting_pin_inside_colocate_with_is_relaxed_under_soft_placement(graph):
    with tw.device("/gpu:1"):
        a = tw.constant(1.0, name="a")
    with tw.colocate_with(a):
        with tw.device("/cpu:0"):
            b = tw.negative(a, name="b")
    constraints = place(graph, allow_soft_placement=True)
    group = constraints.group_of(b.op)
    assert group.ops == [a.op, b.op]
    assert names(group.feasible) == ["/device:GPU:1"]
    [(op, requested, why)] = group.relaxed
    assert (op, requested) == (b.op, "/device:CPU:0")
    assert why == (f"conflicts with the pin /device:GPU:1 of 'a' (Const) at "
                   f"{a.op.location_str()} (same colocation group); pin dropped")
    plan = tw.placement.plan(graph, LOCAL, allow_soft_placement=True, fetches=[b])
    assert plan.device_of("b") == plan.device_of("a")
    assert plan["b"].reason.startswith("soft placement from /device:CPU:0: conflicts with")


@pytest.mark.parametrize("target_pin, inner_pin, expected", [
    ("/gpu:1", "/device:GPU:*", ["/device:GPU:1"]),     # compatible: narrower wins
    ("/gpu:1", "/gpu:1", ["/device:GPU:1"]),            # the same device
    (None, "/gpu:1", ["/device:GPU:1"]),                # the unpinned target follows
    ("/device:GPU:*", "/gpu:0", ["/device:GPU:0"]),
])
def test_compatible_pins_inside_colocate_with_narrow_the_group(graph, target_pin, inner_pin,
                                                                expected):
    with tw.device(target_pin):
        a = tw.constant(1.0, name="a")
    with tw.colocate_with(a):
        with tw.device(inner_pin):
            b = tw.negative(a, name="b")
    constraints = place(graph)
    assert names(constraints.feasible(a.op)) == expected
    assert constraints.group_of(a.op) is constraints.group_of(b.op)
    assert constraints.relaxations == []


def test_no_kernel_for_the_pinned_device_type(graph):
    W = tw.Variable(tw.zeros([2]), name="W")
    with tw.device("/gpu:1"):
        report = tw.report_uninitialized_variables([W], name="report")
    with pytest.raises(tw.errors.PlacementError) as info:
        place(graph)
    message = str(info.value)
    where, name = report.op.location_str(), report.op.name
    assert f"'{name}' (ReportUninitialized) requests /device:GPU:1 at {where}" in message
    assert f"'{name}' (ReportUninitialized) has kernels for CPU only -> no device left" in message
    assert f"no GPU kernel for op '{name}' (type ReportUninitialized)" in message
    assert f"instead of the pin at {where}" in message
    assert "allow_soft_placement" in message


def test_memory_overflow_says_soft_placement_cannot_help(graph):
    big = tw.constant(np.zeros(1 << 19, np.float32), name="big")
    tiny = Cluster.from_dict({"profiles": {"T": {"device_type": "CPU", "memory_bytes": "1MiB"}},
                              "jobs": {"j": {"devices": {"CPU": {"count": 1, "profile": "T"}}}}})
    for soft in (False, True):
        with pytest.raises(tw.errors.PlacementError) as info:
            place(graph, tiny, allow_soft_placement=soft)
        message = str(info.value)
        assert "'big' (Const" in message
        assert "the group's outputs need 2.0 MiB (largest: 'big' 2.0 MiB) -> no device left" \
            in message
        assert "largest: /job:j/replica:0/task:0/device:CPU:0 with 1.0 MiB" in message
        assert "allow_soft_placement cannot help" in message


def test_memory_overflow_on_the_pinned_device_can_be_relaxed(graph):
    with tw.device("/gpu:0"):
        big = tw.constant(np.zeros(1 << 19, np.float32), name="big")
    with pytest.raises(tw.errors.PlacementError, match="pinned devices are too small"):
        place(graph, SMALL_GPU)
    constraints = place(graph, SMALL_GPU, allow_soft_placement=True)
    assert names(constraints.feasible(big.op)) == ["/device:CPU:0"]
    [(_, requested, why)] = constraints.group_of(big.op).relaxed
    assert requested == "/device:GPU:0"
    assert "need 2.0 MiB but /job:localhost/replica:0/task:0/device:GPU:0 has 1.0 MiB" in why


def test_a_pin_no_device_matches(graph):
    with tw.device("/gpu:7"):
        tw.constant(1.0, name="a")
    with pytest.raises(tw.errors.PlacementError,
                       match=r"(?s)requests /device:GPU:7 .* no device left.*no device matches "
                             r"/device:GPU:7 in this cluster; change or remove the pin"):
        place(graph)


def test_a_cluster_without_the_device_type_a_kernel_needs(graph):
    W = tw.Variable(tw.zeros([2]), name="W")
    tw.report_uninitialized_variables([W])
    gpus_only = Cluster.from_dict({"devices": [{"name": "/job:g/task:0/device:GPU:0"}]})
    with pytest.raises(tw.errors.PlacementError,
                       match="kernels only for CPU but the cluster has GPU devices; add such"):
        place(graph, gpus_only)


def test_a_group_whose_ops_share_no_kernel_type(graph, monkeypatch):
    a = tw.constant(np.ones(3, np.float32), name="a")
    with tw.colocate_with(a):
        tw.negative(a, name="neg")
    monkeypatch.setitem(registry._REGISTRY, "Neg",
                        dataclasses.replace(registry.get("Neg"), device_types=("GPU",)))
    monkeypatch.setitem(registry._REGISTRY, "Const",
                        dataclasses.replace(registry.get("Const"), device_types=("CPU",)))
    with pytest.raises(tw.errors.PlacementError) as info:
        place(graph)
    message = str(info.value)
    assert "'a' (Const) has kernels for CPU only" in message
    assert "'neg' (Neg) has kernels for GPU only -> no device left" in message
    assert "no device type has kernels for every op of the group" in message


def test_an_op_type_without_an_opdef(graph, monkeypatch):
    tw.negative(tw.constant(1.0), name="neg")
    monkeypatch.delitem(registry._REGISTRY, "Neg")
    with pytest.raises(tw.errors.PlacementError, match="no OpDef is registered for op type 'Neg'"):
        place(graph)


# -- soft placement -------------------------------------------------------------------------------
def test_soft_placement_keeps_the_first_pin_and_records_the_relaxed_one(graph):
    with tw.device("/cpu:0"):
        W = tw.Variable(tw.zeros([4]), name="W")
    update = tw.assign(W, tw.ones([4]), name="update")
    update.op._set_device("/gpu:0")
    constraints = place(graph, allow_soft_placement=True)
    group = constraints.group_of(W.op)
    assert names(group.feasible) == ["/device:CPU:0"]
    assert [(op.name, req) for op, req, _ in group.relaxed] == [("update", "/device:GPU:0")]
    reason = group.relaxed[0][2]
    assert f"conflicts with the pin /device:CPU:0 of 'W' (VariableV2) at " \
           f"{W.op.location_str()}" in reason
    assert reason.endswith("pin dropped")
    assert constraints.relaxations == group.relaxed


def test_soft_placement_keeps_the_task_of_a_relaxed_pin(graph):
    W = tw.Variable(tw.zeros([2]), name="W")
    with tw.device("/job:worker/task:1/gpu:0"):
        report = tw.report_uninitialized_variables([W], name="report")
    constraints = place(graph, WORKERS, allow_soft_placement=True)
    assert names(constraints.feasible(report.op)) == ["/job:worker/replica:0/task:1/device:CPU:0"]
    [(op, requested, why)] = constraints.group_of(report.op).relaxed
    assert (op, requested) == (report.op, "/job:worker/task:1/device:GPU:0")
    assert why == (f"no GPU kernel for '{report.op.name}' (ReportUninitialized); kept "
                   f"/job:worker/task:1")


def test_soft_placement_drops_pins_no_device_matches(graph):
    with tw.device("/job:ps/gpu:3"):
        a = tw.constant(1.0, name="a")
    constraints = place(graph, allow_soft_placement=True)
    assert len(constraints.feasible(a.op)) == 3
    assert constraints.group_of(a.op).relaxed == [
        (a.op, "/job:ps/device:GPU:3", "no device matches /job:ps/device:GPU:3 in this cluster; "
                                       "pin dropped")]


def test_without_conflicts_soft_placement_changes_nothing(graph):
    with tw.device("/gpu:1"):
        tw.Variable(tw.zeros([2]), name="W")
    tw.constant(1.0)
    assert summary(place(graph, allow_soft_placement=True)) == summary(place(graph))
    assert place(graph, allow_soft_placement=True).relaxations == []


# -- determinism ----------------------------------------------------------------------------------
def build_model():
    x = tw.placeholder(tw.float32, [None, 8], name="x")
    with tw.device("/gpu:1"):
        W1 = tw.Variable(tw.ones([8, 8]), name="W1")
    W2 = tw.Variable(tw.ones([8, 2]), name="W2")
    h = tw.nn.relu(tw.matmul(x, W1))
    loss = tw.reduce_mean(tw.matmul(h, W2))
    tw.train.AdamOptimizer(0.01).minimize(loss)
    with tw.device("/cpu:0"):
        tw.global_variables_initializer()


def test_constraints_are_deterministic_and_survive_a_json_round_trip():
    first, second = tw.Graph(), tw.Graph()
    for g in (first, second):
        with g.as_default():
            build_model()
    assert summary(place(first)) == summary(place(second))
    reloaded = tw.Graph()
    with reloaded.as_default():
        tw.import_graph_def(graph_to_dict(first), name="")
    assert summary(place(reloaded)) == summary(place(first))
    groups = place(first).groups
    assert [g.ops[0] for g in groups] == sorted((g.ops[0] for g in groups), key=lambda op: op._id)
