"""tw.train.ClusterSpec and its mapping onto a placement Cluster."""

import pytest

import tensorweave as tw
from tensorweave.placement import Cluster, LinkProfiles


def test_addresses_as_lists():
    spec = tw.train.ClusterSpec({"worker": ["node0:2222", "node1:2222"], "ps": ["node2:2222"]})
    assert spec.jobs == ["ps", "worker"]
    assert spec.num_tasks("worker") == 2
    assert spec.task_indices("worker") == [0, 1]
    assert spec.task_address("worker", 1) == "node1:2222"
    assert spec.job_tasks("ps") == ["node2:2222"]
    assert spec.as_dict() == {"worker": ["node0:2222", "node1:2222"], "ps": ["node2:2222"]}
    assert spec.as_cluster_def() == {"job": [{"name": "ps", "tasks": {0: "node2:2222"}},
                                             {"name": "worker", "tasks": {0: "node0:2222",
                                                                          1: "node1:2222"}}]}


def test_sparse_task_indices_as_dicts():
    spec = tw.train.ClusterSpec({"worker": {1: "a:1", 3: "b:1"}})
    assert spec.task_indices("worker") == [1, 3]
    assert spec.job_tasks("worker") == [None, "a:1", None, "b:1"]
    assert spec.as_dict() == {"worker": {1: "a:1", 3: "b:1"}}
    assert tw.train.ClusterSpec({"worker": {"0": "a:1"}}).as_dict() == {"worker": ["a:1"]}


def test_task_counts_for_planning():
    spec = tw.train.ClusterSpec({"worker": 2, "ps": 1})
    assert spec.num_tasks("worker") == 2
    assert spec.as_dict() == {"ps": 1, "worker": 2}
    with pytest.raises(ValueError, match="given as a task count"):
        spec.task_address("worker", 0)


def test_copies_equality_and_round_trips():
    spec = tw.train.ClusterSpec({"worker": 3, "ps": ["h:1"]})
    assert tw.train.ClusterSpec(spec) == spec
    assert tw.train.ClusterSpec(spec.as_dict()) == spec
    assert spec != tw.train.ClusterSpec({"worker": 2, "ps": ["h:1"]})
    assert not tw.train.ClusterSpec({})
    assert "worker" in repr(spec)


@pytest.mark.parametrize("jobs, error, message", [
    ({"worker": 0}, ValueError, "at least one task"),
    ({"worker": []}, ValueError, "has no tasks"),
    ({"worker": [2222]}, TypeError, "'host:port' string"),
    ({"worker": {"x": "a:1"}}, ValueError, "not a number"),
    ({"bad job": 1}, ValueError, "not valid"),
    ({"worker": 1.5}, TypeError, "a count, a list"),
    ({"worker": True}, TypeError, "a count, a list"),
])
def test_bad_specs(jobs, error, message):
    with pytest.raises(error, match=message):
        tw.train.ClusterSpec(jobs)


def test_lookup_errors_name_the_jobs_and_tasks():
    spec = tw.train.ClusterSpec({"worker": ["a:1"]})
    with pytest.raises(ValueError, match=r"no such job.*'chief'.*\['worker'\]"):
        spec.num_tasks("chief")
    with pytest.raises(ValueError, match=r"no task 4 \(its tasks: \[0\]\)"):
        spec.task_address("worker", 4)


def test_cluster_from_cluster_spec_uses_address_hosts():
    spec = tw.train.ClusterSpec({"worker": ["node0:2222", "node1:2222"], "ps": ["node0:2223"]})
    cluster = Cluster.from_cluster_spec(spec, devices_per_task={"CPU": 1, "GPU": 2})
    assert len(cluster.devices) == 9
    gpu = cluster.device("/job:worker/task:1/gpu:1")
    assert gpu.host == "node1"
    ps, worker0 = cluster.device("/job:ps/task:0/cpu:0"), cluster.device("/job:worker/task:0/cpu:0")
    assert ps.host == worker0.host == "node0"
    assert cluster.link(ps, worker0) == LinkProfiles().host


def test_cluster_from_cluster_spec_with_devices_per_job_and_counted_tasks():
    spec = tw.train.ClusterSpec({"worker": 2, "ps": 1})
    cluster = Cluster.from_cluster_spec(spec, devices_per_task={"worker": {"CPU": 1, "GPU": 4},
                                                                "ps": {"CPU": 1}})
    assert len(cluster.matching("/job:worker/gpu:*")) == 8
    assert [d.name for d in cluster.matching("/job:ps")] == [
        "/job:ps/replica:0/task:0/device:CPU:0"]
    hosts = {d.host for d in cluster.devices}
    assert hosts == {"worker0", "worker1", "ps0"}  # each counted task is a machine of its own
    assert cluster == Cluster.from_dict(cluster.to_dict())


def test_cluster_from_a_plain_dict_spec_defaults_to_one_cpu_per_task():
    cluster = Cluster.from_cluster_spec({"worker": 3})
    assert [d.name for d in cluster.devices] == [
        f"/job:worker/replica:0/task:{i}/device:CPU:0" for i in range(3)]
