"""Placement constraints: which devices each op may run on.

Ops that must share a device form a *colocation group*, found by union-find over

* the ``_class`` attr (``loc:@name``), which ``tw.colocate_with`` writes — a variable's reads,
  assigns, initializer and optimizer slots and slot updates are created under it;
* the ``shared_name`` attr: ops naming one variable share its device even in a graph imported
  without ``_class`` attrs.

A group's feasible devices are the cluster's devices (in priority order) that satisfy, in order:

1. every member's explicit pin (``op.device``; a partial spec matches several devices);
2. kernel availability: the device type is in ``OpDef.device_types`` of every member;
3. memory: the bytes of all members' outputs fit the device's memory.

Soft placement (``allow_soft_placement``) relaxes only pins, never kernels or memory. Pins are
taken in graph order: one that leaves no device is first widened to its address space (its job,
replica and task, as TF does) and dropped if that is not enough; every relaxation is recorded.
Without soft placement, an infeasible group raises ``PlacementError`` with the chain of
constraints that conflict, where the user wrote each, and what would make the group feasible.
"""

from __future__ import annotations

import dataclasses

from tensorweave import errors
from tensorweave.graph.device_names import DeviceSpec
from tensorweave.ops import registry
from tensorweave.placement.devices import Cluster


@dataclasses.dataclass
class Group:
    """A colocation group: ops that run on one device, and the devices they may use."""

    name: str                   # the smallest op name of the group
    ops: list                   # Operations, in graph order
    feasible: list              # Devices, in cluster priority order
    pinned_by: list             # (op, requested device string, "file:line")
    relaxed: list               # (op, requested device string, reason) under soft placement
    memory_bytes: int = 0       # bytes of all members' outputs
    device_types: tuple = ()    # device types with kernels for every member

    def __repr__(self):
        return (f"Group({self.name!r}, {len(self.ops)} ops, feasible="
                f"{[d.name for d in self.feasible]})")


class Constraints:
    """The colocation groups of a set of ops, with each group's feasible devices."""

    def __init__(self, groups: list, cluster: Cluster):
        self.groups: list[Group] = groups
        self.cluster = cluster
        self._by_op = {op: g for g in groups for op in g.ops}

    def group_of(self, op) -> Group:
        """The group holding ``op``."""
        try:
            return self._by_op[op]
        except KeyError:
            raise KeyError(f"op {op.name!r} is not among the placed ops") from None

    def feasible(self, op) -> list:
        """The devices ``op`` may run on."""
        return self.group_of(op).feasible

    @property
    def relaxations(self) -> list:
        """Every soft-placement relaxation, in group order."""
        return [r for g in self.groups for r in g.relaxed]

    def __iter__(self):
        return iter(self.groups)

    def __len__(self):
        return len(self.groups)


def build_constraints(ops, cluster: Cluster, *, allow_soft_placement: bool = False,
                      cost_model=None) -> Constraints:
    """Group ``ops`` by colocation and compute each group's feasible devices.

    Raises ``tw.errors.PlacementError`` for the first group (in graph order) no device can take.
    """
    ops = list(ops)
    if cost_model is None:
        from tensorweave.placement.cost_model import CostModel
        cost_model = CostModel(cluster)
    kernels = _KernelTable()
    groups = []
    for members in colocation_groups(ops):
        groups.append(_place_group(members, cluster, kernels, cost_model, allow_soft_placement))
    return Constraints(groups, cluster)


# -- colocation groups --------------------------------------------------------------------------
class _UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, key):
        parent = self.parent
        root = key
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[key] != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller key becomes the root, so roots do not depend on visiting order.
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


def colocation_groups(ops) -> list[list]:
    """The ops split into colocation groups: each group in graph order, groups ordered by their
    first op."""
    uf = _UnionFind()
    for op in ops:
        key = ("op", op.name)
        uf.find(key)
        for target in op.attrs.get("_class", ()):
            name = target[len("loc:@"):] if target.startswith("loc:@") else target
            uf.union(key, ("op", name))
        shared = op.attrs.get("shared_name")
        if isinstance(shared, str) and shared:
            uf.union(key, ("variable", shared))
    members: dict = {}
    for op in ops:
        members.setdefault(uf.find(("op", op.name)), []).append(op)
    return list(members.values())


# -- one group ------------------------------------------------------------------------------------
class _KernelTable:
    """Device types with kernels per op type (cached: thousands of ops share few types)."""

    def __init__(self):
        self._types: dict = {}

    def types_of(self, op) -> tuple:
        types = self._types.get(op.type)
        if types is None:
            op_def = registry.lookup(op.type)
            if op_def is None:
                raise errors.PlacementError(None, op, (
                    f"Cannot place op {errors.describe(op)}: no OpDef is registered for op "
                    f"type {op.type!r}, so no device has a kernel for it"))
            types = tuple(op_def.device_types)
            self._types[op.type] = types
        return types


def _place_group(members, cluster, kernels, cost_model, soft) -> Group:
    allowed_types = _common_kernel_types(members, kernels)
    memory = sum(cost_model.op_memory(op) for op in members)
    base = [d for d in cluster.devices
            if d.device_type in allowed_types and d.profile.memory_bytes >= memory]
    pins = [(op, op.device, op.location_str()) for op in members if op.device]
    group = Group(name=min(op.name for op in members), ops=list(members), feasible=[],
                  pinned_by=pins, relaxed=[], memory_bytes=memory,
                  device_types=tuple(t for t in cluster.device_types if t in allowed_types))
    if not base:
        raise _conflict_error(group, cluster, kernels, cost_model)
    candidates = base
    kept = []
    for op, requested, where in pins:
        matching = set(cluster.matching(requested))
        narrowed = [d for d in candidates if d in matching]
        if narrowed:
            candidates = narrowed
            kept.append((op, requested, where))
            continue
        if not soft:
            raise _conflict_error(group, cluster, kernels, cost_model)
        spec = DeviceSpec.from_string(requested)
        reason = _why_pin_fails(op, spec, group, cluster, kernels, kept)
        address = DeviceSpec(spec.job, spec.replica, spec.task)
        widened = [d for d in candidates if address.matches(d.spec)]
        if address != DeviceSpec() and address != spec and widened:
            candidates = widened
            kept.append((op, address.to_string(), where))
            group.relaxed.append((op, requested, f"{reason}; kept {address}"))
        else:
            group.relaxed.append((op, requested, f"{reason}; pin dropped"))
    group.feasible = candidates
    return group


def _common_kernel_types(members, kernels) -> set:
    types = None
    for op in members:
        op_types = set(kernels.types_of(op))
        types = op_types if types is None else types & op_types
    return types or set()


def _why_pin_fails(op, spec, group, cluster, kernels, kept) -> str:
    """Why no device satisfies ``op``'s pin together with the group's other constraints."""
    matching = cluster.matching(spec)
    if not matching:
        return f"no device matches {spec} in this cluster"
    with_kernels = [d for d in matching if d.device_type in group.device_types]
    if not with_kernels:
        blocker = _kernel_blocker(group.ops, matching[0].device_type, kernels)
        return f"no {matching[0].device_type} kernel for {_op_words(blocker)}"
    with_memory = [d for d in with_kernels if d.profile.memory_bytes >= group.memory_bytes]
    if not with_memory:
        largest = max(with_kernels, key=lambda d: d.profile.memory_bytes)
        return (f"the group's outputs need {_bytes(group.memory_bytes)} but {largest.name} has "
                f"{_bytes(largest.profile.memory_bytes)}")
    # Devices with kernels and memory match, so an earlier pin of the group excluded them:
    # name the first one that, with those before it, leaves none of them.
    left = with_memory
    for other, requested, where in kept:
        left = [d for d in left if DeviceSpec.from_string(requested).matches(d.spec)]
        if not left:
            break
    return (f"conflicts with the pin {requested} of {_op_words(other)} at {where} "
            f"(same colocation group)")


def _kernel_blocker(members, device_type, kernels):
    """The first op of the group without a kernel for ``device_type``."""
    return next(op for op in members if device_type not in kernels.types_of(op))


# -- explaining a conflict ------------------------------------------------------------------------
@dataclasses.dataclass
class _Step:
    kind: str                   # "pin" | "kernel" | "memory"
    op: object                  # the op the constraint comes from (None for memory)
    text: str
    remaining: list             # devices left after this constraint
    where: str = ""             # file:line of a pin


def _constraint_chain(group, cluster, kernels, cost_model) -> list:
    """Walk pins (graph order), then kernels, then memory, keeping the steps that narrow the
    devices, up to the one that leaves none."""
    steps = []
    remaining = list(cluster.devices)
    for op, requested, where in group.pinned_by:
        spec = DeviceSpec.from_string(requested)
        left = [d for d in remaining if spec.matches(d.spec)]
        text = f"{_op_words(op)} requests {requested} at {where}{_colocated_words(op, group)}"
        steps.append(_Step("pin", op, text, left, where))
        remaining = left
        if not remaining:
            return _narrowing(steps, cluster)
    seen_types = set()
    for op in group.ops:
        types = kernels.types_of(op)
        if op.type in seen_types or all(t in types for t in cluster.device_types):
            continue
        seen_types.add(op.type)
        left = [d for d in remaining if d.device_type in types]
        kinds = ", ".join(types) if types else "no device type"
        steps.append(_Step("kernel", op, f"{_op_words(op)} has kernels for {kinds} only", left))
        remaining = left
        if not remaining:
            return _narrowing(steps, cluster)
    left = [d for d in remaining if d.profile.memory_bytes >= group.memory_bytes]
    text = (f"the group's outputs need {_bytes(group.memory_bytes)}"
            f"{_largest_outputs(group, cost_model)}")
    steps.append(_Step("memory", None, text, left))
    return _narrowing(steps, cluster)


def _colocated_words(op, group) -> str:
    """How ``op`` joined the group, when its ``colocate_with`` names another member: the scope
    that ties its own pin to the others'."""
    members = {member.name for member in group.ops}
    for entry in op.attrs.get("_class", ()):
        name = entry[len("loc:@"):] if entry.startswith("loc:@") else entry
        if name != op.name and name in members:
            return f" (created under colocate_with({name!r}))"
    return ""


def _narrowing(steps, cluster) -> list:
    kept, before = [], len(cluster.devices)
    for step in steps:
        if len(step.remaining) < before or not step.remaining:
            kept.append(step)
        before = len(step.remaining)
    return kept


def _conflict_error(group, cluster, kernels, cost_model) -> errors.PlacementError:
    chain = _constraint_chain(group, cluster, kernels, cost_model)
    lines = [f"Cannot place {_group_words(group)}: its constraints leave no device of the "
             f"cluster ({_device_list(cluster.devices)})."]
    for i, step in enumerate(chain, 1):
        left = _device_list(step.remaining) if step.remaining else "no device left"
        lines.append(f"  {i}. {step.text} -> {left}")
    if len(group.ops) > 1:
        lines.append("Ops of one colocation group (tw.colocate_with; a variable with its reads, "
                     "assigns and optimizer updates) must share one device.")
    lines.append("To make it feasible: " + _fix(group, chain, cluster, kernels))
    culprit = chain[-1].op if chain and chain[-1].op is not None else group.ops[0]
    error = errors.PlacementError(None, culprit, "\n".join(lines))
    error.group = group
    error.chain = [step.text for step in chain]
    return error


def _fix(group, chain, cluster, kernels) -> str:
    """What would make the group feasible, given the step that left no device."""
    last = chain[-1]
    pins = [step for step in chain if step.kind == "pin"]
    hard_ok = any(d.device_type in group.device_types
                  and d.profile.memory_bytes >= group.memory_bytes for d in cluster.devices)
    soft = " or enable allow_soft_placement (tw.ConfigProto(allow_soft_placement=True))"
    if last.kind == "pin" and not cluster.matching(last.op.device):
        return (f"no device matches {last.op.device} in this cluster; change or remove the pin "
                f"at {last.where},{soft}.")
    if hard_ok and pins:
        if last.kind == "kernel":
            wanted = {d.device_type for d in pins[-1].remaining}
            missing = ", ".join(sorted(wanted))
            return (f"no {missing} kernel for op {last.op.name!r} (type {last.op.type}); pin "
                    f"the group to a {'/'.join(group.device_types)} device instead of the pin at "
                    f"{_pin_places(pins)},{soft}.")
        if last.kind == "memory":
            return (f"the pinned devices are too small for the group; remove the pin at "
                    f"{_pin_places(pins)},{soft}.")
        return f"remove the pin at {_pin_places(pins, latest_first=True)},{soft}."
    if last.kind == "memory":
        candidates = [d for d in cluster.devices if d.device_type in group.device_types]
        if not candidates:
            return _no_kernel_fix(group, cluster, kernels)
        largest = max(candidates, key=lambda d: d.profile.memory_bytes)
        return (f"the group's outputs ({_bytes(group.memory_bytes)}) exceed the memory of every "
                f"device that has its kernels (largest: {largest.name} with "
                f"{_bytes(largest.profile.memory_bytes)}); use smaller tensors (batch size), "
                f"split the group, or plan for devices with more memory. allow_soft_placement "
                f"cannot help: it relaxes only pins.")
    return _no_kernel_fix(group, cluster, kernels)


def _no_kernel_fix(group, cluster, kernels) -> str:
    allowed = _common_kernel_types(group.ops, kernels)
    if not allowed:
        return ("no device type has kernels for every op of the group; move the ops above out "
                "of one colocation group. allow_soft_placement cannot help: it relaxes only pins.")
    present = ", ".join(cluster.device_types) or "none"
    return (f"the group's ops have kernels only for {', '.join(sorted(allowed))} "
            f"but the cluster has {present} devices; add such a device to the cluster. "
            f"allow_soft_placement cannot help: it relaxes only pins.")


def _pin_places(pins, latest_first=False) -> str:
    places = [step.where for step in pins]
    if latest_first:
        places.reverse()
    return " or at ".join(dict.fromkeys(places))


def _largest_outputs(group, cost_model, limit=3) -> str:
    sizes = sorted(((cost_model.op_memory(op), op.name) for op in group.ops),
                   key=lambda pair: (-pair[0], pair[1]))[:limit]
    return " (largest: " + ", ".join(f"{name!r} {_bytes(n)}" for n, name in sizes) + ")"


def _group_words(group) -> str:
    if len(group.ops) == 1:
        return f"op {errors.describe(group.ops[0])}"
    names = ", ".join(op.name for op in group.ops[:5])
    more = f", ... ({len(group.ops)} ops)" if len(group.ops) > 5 else ""
    return f"the colocation group of {group.name!r} ({names}{more})"


def _op_words(op) -> str:
    return f"{op.name!r} ({op.type})"


def _device_list(devices, limit=4) -> str:
    names = [d.name for d in devices[:limit]]
    if len(devices) > limit:
        names.append(f"... {len(devices) - limit} more")
    return ", ".join(names)


def _bytes(n) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
