"""A cost model with hand-set numbers, so schedules can be computed by hand in tests."""

from tensorweave.placement.cost_model import CostModel
from tensorweave.placement.devices import Cluster

MS = 1e-3


def gpu_cluster(n_gpus=2, cpu=False, bandwidth=1e6, latency=0.0, gpu_memory=None):
    """GPUs on one host whose peer links move ``bandwidth`` bytes/s (1 KB per ms by default)."""
    devices = {"GPU": n_gpus}
    if cpu:
        devices["CPU"] = 1
    description = {
        "jobs": {"localhost": {"devices": devices}},
        "links": {kind: {"bandwidth": bandwidth, "latency": latency}
                  for kind in ("peer", "pcie", "process")},
    }
    if gpu_memory is not None:
        description["profiles"] = {"GPU": {"device_type": "GPU", "memory_bytes": gpu_memory}}
    return Cluster.from_dict(description)


class FixedCost(CostModel):
    """Op times by op name (seconds, or ``{device type: seconds}``), output bytes by op name
    (every output of the op has that size); everything else as the real cost model."""

    def __init__(self, cluster, times=None, sizes=None, default_time=0.0):
        super().__init__(cluster)
        self.times = dict(times or {})
        self.sizes = dict(sizes or {})
        self.default_time = default_time

    def op_time(self, op, device):
        t = self.times.get(op.name, self.default_time)
        return t[device.device_type] if isinstance(t, dict) else t

    def output_bytes(self, tensor):
        return self.sizes.get(tensor.op.name, 0)
