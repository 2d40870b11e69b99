"""What a strategy works on and what it returns.

``PlacementProblem`` holds the placed ops as arrays (``OpGraph``), each op's colocation group
and the group's feasible devices (from ``build_constraints``), op times per device (computed
once per distinct device profile: the cost model sees a device only through its profile), link
latency and seconds per byte per device pair (read off ``CostModel.transfer_time``), output
bytes and device memory. ``Placement`` is a strategy's answer: one device per op, and what
decided each group (for the plan's reasons).
"""

from __future__ import annotations

import dataclasses
import math

from tensorweave.placement.opgraph import OpGraph
from tensorweave.placement.simulator import simulate_step, upward_ranks


@dataclasses.dataclass
class Placement:
    """One device per op, and what decided each group."""

    strategy: str
    devices: list               # Device per op, in ``problem.graph`` order
    anchors: dict = dataclasses.field(default_factory=dict)
    # group index -> (op index whose placement decided the group, op index of the consumer
    # that pulled a held group to its device or None)
    notes: list = dataclasses.field(default_factory=list)
    critical_groups: set = dataclasses.field(default_factory=set)  # groups CPOP pinned
    simulated: object = None    # the SimResult, when the strategy simulated its placement

    def by_name(self, graph: OpGraph) -> dict:
        """``{op name: Device}``."""
        return {name: d for name, d in zip(graph.names, self.devices)}


class PlacementProblem:
    """The ops, their groups and feasible devices, op times and link costs, as arrays."""

    def __init__(self, ops, constraints, cost_model):
        self.graph = graph = ops if isinstance(ops, OpGraph) else OpGraph(ops)
        self.cluster = cluster = constraints.cluster
        self.cost_model = cost_model
        self.devices = list(cluster.devices)
        dev_index = {d.name: k for k, d in enumerate(self.devices)}
        self.groups = list(constraints.groups)
        group_index = {id(g): k for k, g in enumerate(self.groups)}
        self.group = [group_index[id(constraints.group_of(op))] for op in graph.ops]
        self.feasible = [[dev_index[d.name] for d in g.feasible] for g in self.groups]
        self.group_memory = [g.memory_bytes for g in self.groups]
        self.capacity = [cost_model.profile(d).memory_bytes for d in self.devices]
        self.tensor_bytes = [cost_model.output_bytes(t) for t in graph.tensors]
        self.op_bytes = [cost_model.op_memory(op) for op in graph.ops]
        self.time = self._op_times()
        self._link_tables()

    def _op_times(self) -> list:
        """``time[i][d]``: seconds of op i on device d, inf where its group may not go.
        Devices with one profile share one computation."""
        profiles = [self.cost_model.profile(d) for d in self.devices]
        representative = {}
        for k, p in enumerate(profiles):
            representative.setdefault(p, k)
        times = []
        op_time = self.cost_model.op_time
        for op, g in zip(self.graph.ops, self.group):
            row = [math.inf] * len(self.devices)
            cache = {}
            for d in self.feasible[g]:
                rep = representative[profiles[d]]
                if rep not in cache:
                    cache[rep] = op_time(op, self.devices[rep])
                row[d] = cache[rep]
            times.append(row)
        return times

    def _link_tables(self):
        """Latency and seconds per byte of every device pair, read off the cost model's
        ``transfer_time`` (latency + bytes / bandwidth), and their means over all pairs."""
        n = len(self.devices)
        self.latency = [[0.0] * n for _ in range(n)]
        self.inv_bandwidth = [[0.0] * n for _ in range(n)]
        probe = float(1 << 30)
        transfer_time = self.cost_model.transfer_time
        pairs = 0
        for a, src in enumerate(self.devices):
            for b, dst in enumerate(self.devices):
                if a == b:
                    continue
                latency = transfer_time(0, src, dst)
                self.latency[a][b] = latency
                self.inv_bandwidth[a][b] = (transfer_time(probe, src, dst) - latency) / probe
                pairs += 1
        off_diagonal = [(a, b) for a in range(n) for b in range(n) if a != b]
        self.min_latency = min((self.latency[a][b] for a, b in off_diagonal), default=0.0)
        self.min_inv_bandwidth = min((self.inv_bandwidth[a][b] for a, b in off_diagonal),
                                     default=0.0)
        self.mean_latency = sum(map(sum, self.latency)) / pairs if pairs else 0.0
        self.mean_inv_bandwidth = sum(map(sum, self.inv_bandwidth)) / pairs if pairs else 0.0

    def cheapest_transfer(self, nbytes) -> float:
        """A lower bound on moving ``nbytes`` between any two devices (inf with one device)."""
        if len(self.devices) < 2:
            return math.inf
        return self.min_latency + nbytes * self.min_inv_bandwidth

    def transfer(self, nbytes, src, dst) -> float:
        """Seconds to move ``nbytes`` from device ``src`` to ``dst`` (indices)."""
        if src == dst:
            return 0.0
        return self.latency[src][dst] + nbytes * self.inv_bandwidth[src][dst]

    def lower_bound(self) -> float:
        """No placement's step is shorter than the longest chain of ops at their fastest
        feasible device (transfers free), nor than all ops' fastest times spread evenly over
        the cluster's devices."""
        fastest = [min(row) for row in self.time]
        chain = max(upward_ranks(self.graph, fastest, lambda j, i, tid: 0.0), default=0.0)
        return max(chain, sum(fastest) / max(len(self.devices), 1))

    def simulate(self, devices):
        """Simulate the step with op i on ``devices[i]`` (Device objects): a ``SimResult``."""
        return self.simulate_step(devices).result()

    def simulate_step(self, devices):
        """The simulation of ``simulate``, run but not yet reported: its ``step_time``, and
        ``result()`` for the whole ``SimResult`` (for comparing candidate placements)."""
        index = {d.name: k for k, d in enumerate(self.devices)}
        placed = [index[d.name] for d in devices]
        durations = [row[d] for row, d in zip(self.time, placed)]
        return simulate_step(self.graph, self.devices, placed, durations, self.tensor_bytes,
                             self.op_bytes, self.cost_model)

    def mean_ranks(self) -> list:
        """Upward ranks over mean op times (feasible devices) and mean transfer times."""
        mean_time = []
        for row, g in zip(self.time, self.group):
            feasible = self.feasible[g]
            mean_time.append(sum(row[d] for d in feasible) / len(feasible))
        latency, inv = self.mean_latency, self.mean_inv_bandwidth
        nbytes = self.tensor_bytes

        def comm(j, i, tid):
            return latency + (0 if tid is None else nbytes[tid]) * inv
        return upward_ranks(self.graph, mean_time, comm)
