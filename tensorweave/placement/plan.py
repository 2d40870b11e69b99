"""``Plan``: where every op runs and why, what crosses devices, and the simulated step.

    plan = tw.placement.plan(graph, cluster, strategy="etf")
    print(plan.summary())                    # a table grouped by device
    plan.to_json("plan.json")                # the schema is in README.md, "Placement plans"
    plan.to_dot("plan.dot")                  # one cluster per device, cut edges with bytes
    plan.to_chrome_trace("step.json")        # open in chrome://tracing or ui.perfetto.dev

Each dump returns its text and also writes it when given a path. JSON and DOT are byte-for-byte
the same for the same graph and cluster (the placement wall time, which is not, is left out of
the JSON unless asked for).
"""

from __future__ import annotations

import dataclasses
import json
import os

from tensorweave.placement import plan_formats
from tensorweave.placement.plan_formats import format_time
from tensorweave.placement.simulator import SimResult

FORMAT = "tensorweave.placement_plan"
VERSION = 1


@dataclasses.dataclass(frozen=True)
class OpPlacement:
    """One op: its device, why it is there, its simulated run and its output bytes."""

    name: str
    type: str
    device: str
    reason: str
    start: float                # seconds from the start of the simulated step
    end: float
    output_bytes: int


@dataclasses.dataclass(frozen=True)
class CutEdge:
    """A tensor sent to another device: one per (tensor, destination), as one ``_Recv``."""

    tensor: str
    src_device: str
    dst_device: str
    bytes: int
    consumers: tuple            # op names reading it on ``dst_device``
    start: float                # the simulated transfer
    end: float


@dataclasses.dataclass(frozen=True)
class DeviceUsage:
    """One device over the simulated step."""

    name: str
    device_type: str
    ops: int
    busy: float                 # seconds computing
    peak_memory: int            # bytes
    memory_capacity: int


class Plan:
    """A placement with its reasons and its simulated step (see the module docstring)."""

    def __init__(self, *, strategy: str, ops: list, cut_edges: list, devices: list,
                 edges: list, sim: SimResult, lower_bound: float, relaxations: list,
                 notes: list, placement_seconds: float):
        self.strategy = strategy
        self.ops: list[OpPlacement] = ops
        self.cut_edges: list[CutEdge] = cut_edges
        self.devices: list[DeviceUsage] = devices
        self.edges = edges          # [(producer name, consumer name, tensor name or None)]
        self.sim = sim
        self.step_time: float = sim.step_time
        self.critical_path = sim.critical_path
        # No placement does better: max(chain of fastest op times, total fastest work / devices)
        self.lower_bound: float = lower_bound
        self.relaxations = relaxations      # [(op name, requested device, reason)]
        self.notes = notes
        self.placement_seconds = placement_seconds
        self._by_name = {entry.name: entry for entry in ops}

    # -- lookup -----------------------------------------------------------------------------
    def __getitem__(self, op_name) -> OpPlacement:
        name = getattr(op_name, "name", op_name)
        return self._by_name[name]

    def __len__(self):
        return len(self.ops)

    def device_of(self, op) -> str:
        """The full name of the device ``op`` (an Operation or a name) is placed on."""
        return self[op].device

    @property
    def placement(self) -> dict:
        """``{op name: device name}`` in op order."""
        return {entry.name: entry.device for entry in self.ops}

    @property
    def transfer_bytes(self) -> int:
        return sum(edge.bytes for edge in self.cut_edges)

    def __repr__(self):
        return (f"<Plan {self.strategy}: {len(self.ops)} ops, {len(self.cut_edges)} cut edges, "
                f"step {format_time(self.step_time)}>")

    # -- outputs ------------------------------------------------------------------------------
    def summary(self) -> str:
        """A readable table: ops grouped by device, cut edges with bytes, critical path, totals."""
        return plan_formats.summary_text(self)

    def to_dict(self, include_timing: bool = False) -> dict:
        """The JSON form (see README.md, "Placement plans")."""
        data = {
            "format": FORMAT,
            "version": VERSION,
            "strategy": self.strategy,
            "step_time_us": _us(self.step_time),
            "lower_bound_us": _us(self.lower_bound),
            "devices": [{"name": d.name, "type": d.device_type, "ops": d.ops,
                         "busy_us": _us(d.busy), "peak_memory_bytes": d.peak_memory,
                         "memory_capacity_bytes": d.memory_capacity} for d in self.devices],
            "ops": [{"name": e.name, "type": e.type, "device": e.device, "reason": e.reason,
                     "start_us": _us(e.start), "end_us": _us(e.end),
                     "output_bytes": e.output_bytes} for e in self.ops],
            "cut_edges": [{"tensor": c.tensor, "src_device": c.src_device,
                           "dst_device": c.dst_device, "bytes": c.bytes,
                           "consumers": list(c.consumers), "start_us": _us(c.start),
                           "end_us": _us(c.end)} for c in self.cut_edges],
            "critical_path": [_step_dict(s) for s in self.critical_path],
            "relaxations": [{"op": op, "requested": requested, "reason": why}
                            for op, requested, why in self.relaxations],
            "notes": list(self.notes),
        }
        if include_timing:
            data["placement_seconds"] = self.placement_seconds
        return data

    def to_json(self, path=None, include_timing: bool = False) -> str:
        """The plan as JSON text (sorted keys, stable order); written to ``path`` if given."""
        text = json.dumps(self.to_dict(include_timing), indent=2, sort_keys=True) + "\n"
        return _written(text, path)

    def to_dot(self, path=None) -> str:
        """Graphviz DOT: one cluster per device, cut edges labelled with their bytes."""
        return _written(plan_formats.dot_text(self), path)

    def to_chrome_trace(self, path=None) -> str:
        """The simulated step as Chrome trace JSON: a lane per device and per busy link,
        one complete event per op and transfer, flow arrows along each transfer."""
        text = json.dumps(plan_formats.chrome_trace(self), indent=1, sort_keys=True) + "\n"
        return _written(text, path)


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)


def _step_dict(step) -> dict:
    data = {"kind": step.kind, "name": step.name, "start_us": _us(step.start),
            "end_us": _us(step.end)}
    if step.kind == "op":
        data["device"] = step.device
    else:
        data["src_device"], data["dst_device"] = step.src, step.dst
    return data


def _written(text: str, path) -> str:
    if path is not None:
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return text


# -- building a plan ----------------------------------------------------------------------------
def build_plan(problem, placement, constraints, sim: SimResult,
               placement_seconds: float) -> Plan:
    """Assemble a Plan from a placed problem and its simulation."""
    graph = problem.graph
    reasons = explain(problem, placement)
    ops = []
    for i, op in enumerate(graph.ops):
        run = sim.ops[op.name]
        ops.append(OpPlacement(op.name, op.type, run.device, reasons[i], run.start, run.end,
                               problem.op_bytes[i]))
    cut_edges = [CutEdge(x.tensor, x.src, x.dst, x.nbytes, x.consumers, x.start, x.end)
                 for x in sim.transfers if not x.tensor.startswith("^")]
    cut_edges.sort(key=lambda c: (c.tensor, c.dst_device))
    counts: dict = {}
    for entry in ops:
        counts[entry.device] = counts.get(entry.device, 0) + 1
    devices = [DeviceUsage(d.name, d.device_type, counts.get(d.name, 0), sim.busy[d.name],
                           sim.peak_memory[d.name], problem.capacity[k])
               for k, d in enumerate(problem.devices)]
    relaxations = [(op.name, requested, why) for op, requested, why in constraints.relaxations]
    return Plan(strategy=placement.strategy, ops=ops, cut_edges=cut_edges, devices=devices,
                edges=_edges(graph), sim=sim, lower_bound=problem.lower_bound(),
                relaxations=relaxations, notes=list(placement.notes),
                placement_seconds=placement_seconds)


def _edges(graph) -> list:
    """Data edges (one per tensor and consumer) and control edges (tensor None)."""
    names = graph.names
    edges = []
    for i in range(len(graph)):
        edges += [(names[j], names[i], graph.tensors[tid].name) for j, tid in graph.inputs[i]]
        edges += [(names[j], names[i], None) for j in graph.controls[i]]
    return edges


def explain(problem, placement) -> list:
    """Why each op is where it is, one sentence per op (see ``_reason``)."""
    return [_reason(problem, placement, i) for i in range(len(problem.graph))]


def _reason(problem, placement, i) -> str:
    """In order: a relaxed pin, colocation with the op named in ``colocate_with``, the op's own
    pin, another member's pin, a single feasible device, then the strategy's decision."""
    op = problem.graph.ops[i]
    gi = problem.group[i]
    group = problem.groups[gi]
    for member, requested, why in group.relaxed:
        if member is op:
            return f"soft placement from {requested}: {why}"
    target = _colocation_target(op, group)
    if target is not None:
        return f"colocated with {target}"
    relaxed = {member for member, _, _ in group.relaxed}
    kept = [(member, requested, where) for member, requested, where in group.pinned_by
            if member not in relaxed]
    for member, requested, where in kept:
        if member is op:
            return f"pinned to {requested} at {where}"
    if kept:
        return f"colocated with {kept[0][0].name}"
    if len(group.feasible) == 1:
        return _only_device(group, problem)
    return _strategy_reason(problem, placement, i, gi)


def _colocation_target(op, group):
    """The op named by ``op``'s ``colocate_with`` (``_class``), when it is another group member."""
    members = {member.name for member in group.ops}
    for entry in op.attrs.get("_class", ()):
        name = entry[len("loc:@"):] if entry.startswith("loc:@") else entry
        if name != op.name and name in members:
            return name
    return None


def _only_device(group, problem) -> str:
    if len(group.device_types) < len(problem.cluster.device_types):
        return f"only feasible device (kernels for {', '.join(group.device_types)} only)"
    return "only feasible device"


def _strategy_reason(problem, placement, i, gi) -> str:
    if placement.strategy == "default":
        return "default: first feasible device"
    names = problem.graph.names
    anchor, consumer = placement.anchors.get(gi, (i, None))
    if anchor != i:
        return f"colocated with {names[anchor]}"
    if gi in placement.critical_groups:
        return f"cost model ({placement.strategy}): critical path kept on one device"
    if consumer is not None:
        return f"cost model ({placement.strategy}), with its consumer {names[consumer]}"
    return f"cost model ({placement.strategy})"
