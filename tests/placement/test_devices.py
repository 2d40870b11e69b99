"""Devices and clusters: names, priority order, local discovery, files, links."""

import json
import math
import sys

import pytest

import tensorweave as tw
from tensorweave.graph.device_names import DeviceSpec
from tensorweave.placement import devices as devices_module
from tensorweave.placement.devices import (CPU_PROFILE, GPU_PROFILE, Cluster, DeviceProfile,
                                           LinkProfiles)

FOUR_GPU = {"jobs": {"localhost": {"devices": {"CPU": 1, "GPU": 4}}}}
TWO_WORKERS = {"jobs": {"worker": {"tasks": ["node0:2222", "node1:2222"],
                                   "devices": {"CPU": 1, "GPU": 2}},
                        "ps": {"tasks": ["node0:2223"]}}}


# -- device names (more cases than tests/graph/test_device_names.py) ------------------------------
@pytest.mark.parametrize("text, expected", [
    ("/job:*/replica:*/task:*/device:GPU:*", DeviceSpec(device_type="GPU")),
    ("/job:worker/task:*/cpu:*", DeviceSpec(job="worker", device_type="CPU")),
    ("/job:worker/replica:1/task:3/gpu:2", DeviceSpec("worker", 1, 3, "GPU", 2)),
    ("/device:TPU:1", DeviceSpec(device_type="TPU", device_index=1)),
])
def test_wildcards_and_full_forms_parse(text, expected):
    assert DeviceSpec.from_string(text) == expected


@pytest.mark.parametrize("outer, inner, expected", [
    ("/job:worker/task:1", "/device:GPU:*", "/job:worker/task:1/device:GPU:*"),
    ("/job:ps/task:0/cpu:0", "/job:worker", "/job:worker/task:0/device:CPU:0"),
    ("/gpu:1", "/job:*", "/device:GPU:1"),
])
def test_merge_more_cases(outer, inner, expected):
    merged = DeviceSpec.from_string(outer).merge_from(DeviceSpec.from_string(inner))
    assert merged.to_string() == expected


# -- priority order and lookup --------------------------------------------------------------------
def test_devices_are_in_priority_order_gpus_first_then_by_job_task_index():
    cluster = Cluster.from_dict(TWO_WORKERS)
    names = [d.name for d in cluster.devices]
    assert names == [
        "/job:worker/replica:0/task:0/device:GPU:0", "/job:worker/replica:0/task:0/device:GPU:1",
        "/job:worker/replica:0/task:1/device:GPU:0", "/job:worker/replica:0/task:1/device:GPU:1",
        "/job:ps/replica:0/task:0/device:CPU:0", "/job:worker/replica:0/task:0/device:CPU:0",
        "/job:worker/replica:0/task:1/device:CPU:0"]


def test_task_indices_sort_as_numbers():
    cluster = Cluster.from_dict({"jobs": {"w": {"tasks": 12}}})
    assert [d.spec.task for d in cluster.devices] == list(range(12))


def test_device_accepts_full_and_unambiguous_short_names():
    cluster = Cluster.from_dict(FOUR_GPU)
    full = "/job:localhost/replica:0/task:0/device:GPU:2"
    assert cluster.device(full).name == full
    assert cluster.device("/gpu:2").name == full
    assert cluster.device("GPU:2").name == full
    assert cluster.device(DeviceSpec(device_type="GPU", device_index=2)).name == full
    assert cluster.device(cluster.device(full)) is cluster.device(full)


def test_device_errors_name_close_devices_or_the_ambiguity():
    cluster = Cluster.from_dict(TWO_WORKERS)
    with pytest.raises(KeyError, match="no device /job:worker/task:0/device:GPU:7") as info:
        cluster.device("/job:worker/task:0/gpu:7")
    assert "did you mean" in str(info.value)
    with pytest.raises(KeyError, match="ambiguous.*give the job and task"):
        cluster.device("/gpu:0")
    with pytest.raises(KeyError, match="does not name one device"):
        cluster.device("/job:worker/task:1")


def test_matching_partial_and_wildcard_specs():
    cluster = Cluster.from_dict(TWO_WORKERS)
    assert [d.name for d in cluster.matching("/job:worker/task:1")] == [
        "/job:worker/replica:0/task:1/device:GPU:0", "/job:worker/replica:0/task:1/device:GPU:1",
        "/job:worker/replica:0/task:1/device:CPU:0"]
    assert len(cluster.matching("/device:GPU:*")) == 4
    assert len(cluster.matching("")) == len(cluster.devices)
    assert cluster.matching("/job:ps/gpu:0") == []
    assert cluster.device_types == ["GPU", "CPU"]


# -- local discovery ------------------------------------------------------------------------------
def test_local_cluster_has_one_cpu_by_default():
    cluster = Cluster.local()
    cpus = cluster.matching("/cpu:*")
    assert [d.name for d in cpus] == ["/job:localhost/replica:0/task:0/device:CPU:0"]
    assert all(d.host == "localhost" for d in cluster.devices)


def test_device_count_splits_the_cpu_into_virtual_devices():
    whole = Cluster.local().device("/cpu:0").profile
    cluster = Cluster.local(tw.ConfigProto(device_count={"CPU": 4}))
    cpus = cluster.matching("/device:CPU:*")
    assert [d.spec.device_index for d in cpus] == [0, 1, 2, 3]
    for d in cpus:
        assert d.profile.peak_flops == pytest.approx(whole.peak_flops / 4)
        assert d.profile.memory_bytes == whole.memory_bytes // 4
        assert d.profile.launch_overhead == whole.launch_overhead
    assert Cluster.local({"CPU": 2}) == Cluster.local(tw.ConfigProto(device_count={"CPU": 2}))
    with pytest.raises(ValueError, match="at least 1"):
        Cluster.local({"CPU": 0})


def test_local_gpus_come_from_cupy_and_device_count_limits_them(monkeypatch):
    fake = (GPU_PROFILE, DeviceProfile("GPU", 8 << 30, 1e13, 5e11, 1e-5))
    monkeypatch.setattr(devices_module, "_cupy_gpu_profiles", lambda: fake)
    cluster = Cluster.local()
    assert [d.short_name for d in cluster.devices] == ["/device:GPU:0", "/device:GPU:1",
                                                      "/device:CPU:0"]
    assert cluster.device("/gpu:1").profile.memory_bytes == 8 << 30
    assert len(Cluster.local({"GPU": 1}).matching("/gpu:*")) == 1
    assert Cluster.local({"GPU": 0}).device_types == ["CPU"]


def test_gpu_profile_from_cuda_properties():
    profile = devices_module._gpu_profile_from_properties(
        {"totalGlobalMem": 16 << 30, "memoryClockRate": 877000, "memoryBusWidth": 4096})
    assert profile.memory_bytes == 16 << 30
    assert profile.memory_bandwidth == pytest.approx(2 * 877e6 * 512)
    assert profile.peak_flops == GPU_PROFILE.peak_flops


# -- dict and file forms --------------------------------------------------------------------------
def test_to_dict_round_trips_through_from_dict_and_json(tmp_path):
    cluster = Cluster.from_dict(TWO_WORKERS)
    path = tmp_path / "cluster.json"
    path.write_text(cluster.to_json())
    loaded = Cluster.from_file(path)
    assert loaded == cluster
    assert loaded.to_dict() == cluster.to_dict()
    assert json.loads(cluster.to_json()) == cluster.to_dict()
    assert Cluster.from_dict(Cluster.local({"CPU": 3}).to_dict()) == Cluster.local({"CPU": 3})


def test_yaml_file_with_units_profiles_and_links(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("""
profiles:
  V100: {device_type: GPU, memory_bytes: 16GiB, peak_flops: 15.7T, memory_bandwidth: 900GB/s}
links:
  network: {bandwidth: 10GB/s, latency: 20us}
jobs:
  worker:
    tasks: 2
    devices: {CPU: 1, GPU: {count: 2, profile: V100}}
""")
    cluster = Cluster.from_file(path)
    gpu = cluster.device("/job:worker/task:1/gpu:1")
    assert gpu.profile == DeviceProfile("GPU", 16 << 30, 15.7e12, 900e9,
                                        GPU_PROFILE.launch_overhead)
    assert gpu.host == "worker1"
    assert cluster.device("/job:worker/task:0/cpu:0").profile == CPU_PROFILE
    assert cluster.links.network.bandwidth == 10e9
    assert cluster.links.network.latency == pytest.approx(20e-6)
    assert Cluster.from_dict(cluster.to_dict()) == cluster


def test_yaml_without_pyyaml_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "c.yml"
    path.write_text("jobs: {w: {tasks: 1}}\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ImportError, match=r"needs PyYAML \(pip install 'tensorweave\[yaml\]'\), "
                                          r"or write it as JSON"):
        Cluster.from_file(path)


def test_explicit_devices_with_partial_profile_fields():
    cluster = Cluster.from_dict({"devices": [
        {"name": "/job:a/task:0/device:GPU:0", "host": "m1", "profile": {"memory_bytes": "8GB"}},
        {"name": "/job:a/task:0/device:CPU:0", "host": "m1"}]})
    gpu = cluster.device("/gpu:0")
    assert gpu.name == "/job:a/replica:0/task:0/device:GPU:0"
    assert gpu.profile.memory_bytes == 8e9
    assert gpu.profile.peak_flops == GPU_PROFILE.peak_flops


@pytest.mark.parametrize("desc, message", [
    ({}, "has no devices"),
    ({"nodes": []}, "unknown key"),
    ({"devices": [{"name": "/gpu:0"}]}, "needs a full name"),
    ({"devices": [{"name": "/job:a/task:0/device:TPU:0"}]}, "no default profile"),
    ({"jobs": {"w": {"tasks": 0}}}, "at least one task"),
    ({"jobs": {"w": {"devices": {"GPU": -1}}}}, "non-negative int"),
    ({"jobs": {"w": {"devices": {"GPU": {"count": 1, "profile": "H100"}}}}}, "unknown profile"),
    ({"jobs": {"w": 1}, "links": {"wifi": {}}}, "unknown link kind"),
    ({"profiles": {"X": {"device_type": "GPU", "memory_bytes": "lots"}}, "jobs": {"w": 1}},
     "cannot read 'lots'"),
    ({"jobs": {"w": {"tasks": 1, "devices": {"CPU": 1}, "extra": 1}}}, "unknown key"),
])
def test_bad_cluster_descriptions_are_explained(desc, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Cluster.from_dict(desc)


def test_invalid_json_file_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        Cluster.from_file(path)


def test_a_tpu_with_its_own_profile_ranks_between_gpus_and_cpus():
    cluster = Cluster.from_dict({"profiles": {"TPU": {"memory_bytes": 1, "peak_flops": 1,
                                                      "memory_bandwidth": 1}},
                                 "jobs": {"w": {"devices": {"CPU": 1, "GPU": 1, "TPU": 1}}}})
    assert cluster.device_types == ["GPU", "TPU", "CPU"]


@pytest.mark.parametrize("text, value", [
    (16, 16.0), ("16GiB", 16 * 2.0 ** 30), ("900GB/s", 900e9), ("19.5T", 19.5e12),
    ("1.5e12", 1.5e12), ("2 KiB", 2048.0), ("100 GFLOPS", 1e11),
])
def test_quantities(text, value):
    assert devices_module._quantity(text, "x") == pytest.approx(value)


def test_times():
    assert devices_module._seconds("10us", "x") == pytest.approx(1e-5)
    assert devices_module._seconds("0.5ms", "x") == pytest.approx(5e-4)
    assert devices_module._seconds(0.25, "x") == 0.25
    with pytest.raises(ValueError, match="as a time"):
        devices_module._seconds("soon", "x")


# -- links ----------------------------------------------------------------------------------------
def test_links_by_kind():
    cluster = Cluster.from_dict(TWO_WORKERS)
    links = LinkProfiles()
    w0_gpu0 = cluster.device("/job:worker/task:0/gpu:0")
    w0_gpu1 = cluster.device("/job:worker/task:0/gpu:1")
    w0_cpu = cluster.device("/job:worker/task:0/cpu:0")
    w1_cpu = cluster.device("/job:worker/task:1/cpu:0")
    w1_gpu0 = cluster.device("/job:worker/task:1/gpu:0")
    ps_cpu = cluster.device("/job:ps/task:0/cpu:0")  # on node0, like worker 0
    same = cluster.link(w0_gpu0, w0_gpu0)
    assert same.bandwidth == math.inf and same.latency == 0
    assert cluster.link(w0_gpu0, w0_gpu1) == links.peer
    assert cluster.link(w0_gpu0, w0_cpu) == links.pcie
    assert cluster.link(w0_cpu, w0_gpu0) == links.pcie
    assert cluster.link(w0_cpu, ps_cpu) == links.host          # two processes of node0
    assert cluster.link(w0_cpu, w1_cpu) == links.network       # node0 -> node1
    across = cluster.link(w0_gpu0, w1_gpu0)                     # pcie + network + pcie
    assert across.bandwidth == min(links.pcie.bandwidth, links.network.bandwidth)
    assert across.latency == pytest.approx(2 * links.pcie.latency + links.network.latency)


def test_virtual_cpus_of_one_process_use_the_process_link():
    cluster = Cluster.local({"CPU": 2})
    a, b = cluster.matching("/cpu:*")
    assert cluster.link(a, b) == LinkProfiles().process


def test_clusters_with_duplicate_devices_are_rejected():
    cluster = Cluster.local()
    with pytest.raises(ValueError, match="two devices of the same name"):
        Cluster(cluster.devices + cluster.devices)
