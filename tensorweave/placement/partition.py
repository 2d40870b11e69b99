"""Cut a placed graph into one graph per device, joined by ``_Send``/``_Recv`` pairs.

    parts = partition(step_graph, plan.placement, transfer_dtype="bfloat16")
    print(parts.summary())              # every inserted pair, its bytes and its consumers
    print(parts.graphs[device])         # a partition prints like any graph

Rules:

* every op goes to its device's graph, keeping its name, attrs, frames and control inputs;
* a data edge between devices becomes a ``_Send`` on the producer's device and a ``_Recv`` on
  the consumer's, one ``_Recv`` per (tensor, destination device) shared by all its consumers
  there;
* a control edge between devices becomes a pair carrying an empty tensor: a ``_Send`` with the
  control input as its own control input, and a ``_Recv`` the consumer waits for;
* the step's boundary stays local: each device that reads a fed tensor gets its own ``_Arg``
  (in one process every device sees the fed value), a ``_Retval`` goes where its tensor is
  made, and ``_Targets`` is split per device;
* with ``transfer_dtype`` ("float16" or "bfloat16"), float32 tensors cross as that dtype: a
  ``Cast`` before the ``_Send`` and one back after the ``_Recv``;
* a ``Const`` read on other devices is copied into each of them instead of sent (a constant is
  computed once, when the step compiles; sending it would cost a transfer every step);
* a ``NoOp`` that only groups control inputs for ``_Targets`` (``tw.group``, a train op) is
  dropped and its control inputs become targets themselves, on their own devices: running it
  means running them, and keeping it would add a control transfer at the end of every step.

Order: the ops are visited in one topological order of the whole graph; each ``_Send`` is
written right after its producer (values leave as soon as they exist) and each ``_Recv`` right
before its first consumer (values arrive as late as the schedule allows, so a device does not
hold a received tensor longer than it needs it). Each device runs its ops in the order they
appear in its graph; as every device's order is a subsequence of one global topological order,
running the devices concurrently cannot deadlock: the globally first op not yet done always
has its inputs ready. That holds for any topological order, so the walk uses one chosen for
transfers (``communication_order``): among the ops ready at each point, first those that lead
to a send soonest, last those that read another device's value. A transfer then leaves while
its device goes on working and is waited for only when nothing else is left to do: in
data-parallel training a layer's gradient starts its all-reduce while the layers below it are
still being differentiated. Stateful ops of one device (variable reads and updates, random
ops) keep their order.
"""

from __future__ import annotations

import dataclasses
import heapq
import re

from tensorweave import errors
from tensorweave.graph.core import Graph
from tensorweave.graph.dtypes import as_dtype, float32
from tensorweave.graph.printer import format_graph
from tensorweave.ops import registry
from tensorweave.ops.function import ARG_TYPE, RETVAL_TYPE
from tensorweave.ops.transfer import RECV_TYPE, SEND_TYPE, key_prefix

TARGETS_TYPE = "_Targets"
BOUNDARY_TYPES = frozenset({ARG_TYPE, RETVAL_TYPE, TARGETS_TYPE})
TRANSFER_DTYPES = ("float16", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Transfer:
    """One ``_Send``/``_Recv`` pair: a tensor (or a control edge, ``^op``) to one device."""

    tensor: str
    src_device: str
    dst_device: str
    dtype: str                  # on the wire
    bytes: int | None           # on the wire, per step (None: shape unknown)
    uncompressed_bytes: int | None
    send_op: str
    recv_op: str
    consumers: tuple            # ops reading it on ``dst_device``
    key: str                    # rendezvous key without the step id

    @property
    def control(self) -> bool:
        return self.tensor.startswith("^")

    @property
    def saved_bytes(self) -> int:
        if self.bytes is None or self.uncompressed_bytes is None:
            return 0
        return self.uncompressed_bytes - self.bytes


class Partitioning:
    """Per-device graphs (``graphs``, by full device name, in order of first use) and the
    transfers that join them."""

    def __init__(self, graphs: dict, transfers: list):
        self.graphs: dict[str, Graph] = graphs
        self.transfers: list[Transfer] = transfers

    @property
    def devices(self) -> list[str]:
        return list(self.graphs)

    def recv_count(self) -> int:
        return sum(1 for g in self.graphs.values() for op in g.get_operations()
                   if op.type == RECV_TYPE)

    def transfer_bytes(self) -> int:
        return sum(t.bytes or 0 for t in self.transfers)

    def saved_bytes(self) -> int:
        return sum(t.saved_bytes for t in self.transfers)

    def summary(self) -> str:
        """A table of the inserted pairs, then a line of totals."""
        if not self.transfers:
            return f"Partitions: {len(self.graphs)} device(s), no _Send/_Recv pairs"
        rows = [(t.tensor, short_device(t.src_device), short_device(t.dst_device), t.dtype,
                 _bytes(t.bytes), t.send_op, t.recv_op, ", ".join(t.consumers))
                for t in self.transfers]
        header = ("tensor", "from", "to", "wire dtype", "bytes", "_Send", "_Recv", "consumers")
        lines = [f"Partitions: {len(self.graphs)} devices, {len(self.transfers)} _Send/_Recv "
                 f"pairs, {_bytes(self.transfer_bytes())} per step"
                 + (f" ({_bytes(self.saved_bytes())} saved by compression)"
                    if self.saved_bytes() else "")]
        lines += _table(header, rows)
        return "\n".join(lines)

    def __str__(self):
        parts = []
        for device, graph in self.graphs.items():
            parts.append(f"# partition {short_device(device)}  ({device})")
            parts.append(format_graph(graph))
        return "\n".join(parts)

    def to_dict(self) -> dict:
        return {"devices": self.devices,
                "transfers": [dataclasses.asdict(t) for t in self.transfers]}


def partition(graph: Graph, device_of: dict, *, transfer_dtype: str | None = None,
              incarnations: dict | None = None, default_device: str | None = None,
              tensor_bytes=None) -> Partitioning:
    """One graph per device for ``graph`` placed by ``device_of`` (op name -> full device
    name; boundary ops may be missing). See the module docstring for the rules.

    ``incarnations`` (device -> int) go into the rendezvous keys of what a device sends;
    ``tensor_bytes(tensor)`` sizes a tensor whose static shape is not fully known (the
    Session passes its cost model's estimate at the first run's feed shapes)."""
    if transfer_dtype is not None and transfer_dtype not in TRANSFER_DTYPES:
        raise ValueError(f"transfer_dtype must be one of {TRANSFER_DTYPES} or None, "
                         f"got {transfer_dtype!r}")
    return _Partitioner(graph, device_of, transfer_dtype, incarnations or {},
                        default_device, tensor_bytes).run()


class _Partitioner:
    def __init__(self, graph, device_of, transfer_dtype, incarnations, default_device,
                 tensor_bytes):
        self.graph = graph
        self.tensor_bytes = tensor_bytes
        self.ops = topological_order(graph)
        self.device_of = dict(device_of)
        self.wire_dtype = as_dtype(transfer_dtype) if transfer_dtype else None
        self.incarnations = incarnations
        self.default_device = default_device
        self.graphs: dict[str, Graph] = {}
        self.images: dict = {}          # (source tensor, device) -> tensor of that partition
        self.op_images: dict = {}       # source op -> its copy
        self.sent: dict = {}            # (source tensor or ^op, dst device) -> pending pair
        self.received: dict = {}        # (source tensor or ^op, dst device) -> recv image
        self.transfers: list = []
        self.grouping = _grouping_noops(self.ops)
        self._assign_boundary()
        self.ops = communication_order(self.ops, self.device_of)

    # -- devices --------------------------------------------------------------------------
    def _assign_boundary(self):
        for op in self.ops:
            if op.type in BOUNDARY_TYPES:
                continue
            if op.name not in self.device_of:
                raise errors.InternalError(None, op, f"partition: op {op.name} has no device")
        for op in self.ops:
            if op.type == RETVAL_TYPE:
                producer = op.inputs[0].op
                if producer.type != ARG_TYPE:
                    self.device_of[op.name] = self.device_of[producer.name]
                else:
                    self.device_of.setdefault(op.name, self._fallback_device())

    def _fallback_device(self) -> str:
        if self.default_device:
            return self.default_device
        if not self.device_of:
            raise errors.InternalError(None, None, "partition: no op has a device")
        return min(self.device_of.values())

    def _device(self, op) -> str:
        return self.device_of[op.name]

    def _partition(self, device) -> Graph:
        graph = self.graphs.get(device)
        if graph is None:
            graph = self.graphs[device] = Graph()
        return graph

    # -- the walk ---------------------------------------------------------------------------
    def run(self) -> Partitioning:
        remote_data, remote_control = self._remote_consumers()
        for op in self.ops:
            if op.type == ARG_TYPE or op in self.grouping:
                continue  # an _Arg is copied into each partition that reads it, when it does
            if op.type == TARGETS_TYPE:
                self._split_targets(op)
                continue
            device = self._device(op)
            inputs = [self._input(t, device, op) for t in op.inputs]
            controls = [c for c in (self._control(c, device, op) for c in op.control_inputs)
                        if c is not None]
            new = self._copy(op, device, inputs, controls)
            for t in op.outputs:
                for dst in remote_data.get(t, ()):
                    self._send(t, new.outputs[t.value_index], device, dst)
            for dst in remote_control.get(op, ()):
                self._send_control(op, new, device, dst)
        transfers = [dataclasses.replace(t, consumers=tuple(t.consumers)) for t in
                     self.transfers]
        return Partitioning(self.graphs, transfers)

    def _remote_consumers(self):
        """For each tensor and op: the other devices that read it (data) or wait for it
        (control), in the order they first do."""
        data: dict = {}
        control: dict = {}
        for op in self.ops:
            if (op.type in BOUNDARY_TYPES and op.type != RETVAL_TYPE) or op in self.grouping:
                continue
            device = self._device(op)
            for t in op.inputs:
                if not _made_everywhere(t.op) and self._device(t.op) != device:
                    _append_unique(data.setdefault(t, []), device)
            for c in op.control_inputs:
                if c.type not in BOUNDARY_TYPES and self._device(c) != device:
                    _append_unique(control.setdefault(c, []), device)
        return data, control

    def _copy(self, op, device, inputs, controls):
        specs = [(t.dtype, t.shape) for t in op.outputs]
        new = self._partition(device).create_op(
            op.type, inputs, op.attrs, op.name, lambda _: specs, frames=op.frames,
            device=device, control_inputs=controls)
        if new.name != op.name:
            raise errors.InternalError(None, op, f"partition: copying {op.name} renamed it "
                                                 f"{new.name}")
        self.op_images[op] = new
        for t in op.outputs:
            self.images[(t, device)] = new.outputs[t.value_index]
        return new

    def _input(self, t, device, consumer):
        image = self.images.get((t, device))
        if image is not None:
            if (t, device) in self.sent:
                self._note_consumer((t, device), consumer)
            return image
        if t.op.type == ARG_TYPE:
            return self._copy(t.op, device, [], []).outputs[0]
        if _duplicable(t.op):
            return self._duplicate(t.op, device).outputs[t.value_index]
        return self._recv(t, device, consumer)

    def _duplicate(self, op, device):
        """A copy of a constant in another device's partition (see ``_duplicable``)."""
        specs = [(t.dtype, t.shape) for t in op.outputs]
        new = self._partition(device).create_op(op.type, [], op.attrs, op.name,
                                                lambda _: specs, frames=op.frames,
                                                device=device)
        for t in op.outputs:
            self.images[(t, device)] = new.outputs[t.value_index]
        return new

    def _control(self, c, device, consumer):
        if c.type in BOUNDARY_TYPES:
            return self.op_images.get(c) if c.type != ARG_TYPE else None
        if self._device(c) == device:
            return self.op_images[c]
        key = ("^" + c.name, device)
        recv = self.received.get(key)
        if recv is None:
            recv = self._recv_op(key, "^" + c.name, device, consumer, float32, [0])
            self.received[key] = recv
        self._note_consumer(key, consumer)
        return recv.op

    def _split_targets(self, op):
        by_device: dict = {}
        for c in _expand_groups(op.control_inputs, self.grouping):
            if c.type in BOUNDARY_TYPES:
                continue
            by_device.setdefault(self._device(c), []).append(self.op_images[c])
        for device, controls in by_device.items():
            graph = self._partition(device)
            graph.create_op(op.type, [], op.attrs, op.name, lambda _: [], frames=op.frames,
                            device=device, control_inputs=controls)

    # -- sends and receives -----------------------------------------------------------------
    def _send(self, t, value, src, dst):
        graph = self._partition(src)
        wire = t.dtype
        if self.wire_dtype is not None and t.dtype == float32:
            wire = self.wire_dtype
            value = graph.create_op(
                "Cast", [value], {"SrcT": t.dtype, "DstT": wire},
                f"transfer/{_flat(t.name)}_to_{wire.name}", lambda _: [(wire, t.shape)],
                frames=t.op.frames, device=src).outputs[0]
        attrs = self._attrs(t.name, src, dst)
        send = graph.create_op(SEND_TYPE, [value], attrs,
                               f"_send_{_flat(t.name)}_to_{_flat(short_device(dst))}",
                               lambda _: [], frames=t.op.frames, device=src)
        full = self._bytes(t)
        nbytes = None if full is None else full // t.dtype.size * wire.size
        self.sent[(t, dst)] = dict(tensor=t.name, src_device=src, dst_device=dst,
                                   dtype=wire.name, bytes=nbytes, uncompressed_bytes=full,
                                   send_op=send.name, recv_op="", consumers=[],
                                   key=key_prefix(attrs), wire=wire)

    def _send_control(self, op, image, src, dst):
        name = "^" + op.name
        attrs = self._attrs(name, src, dst)
        send = self._partition(src).create_op(
            SEND_TYPE, [], attrs, f"_send_ctrl_{_flat(op.name)}_to_{_flat(short_device(dst))}",
            lambda _: [], frames=op.frames, device=src, control_inputs=[image])
        self.sent[(name, dst)] = dict(tensor=name, src_device=src, dst_device=dst,
                                      dtype="float32", bytes=0, uncompressed_bytes=0,
                                      send_op=send.name, recv_op="", consumers=[],
                                      key=key_prefix(attrs), wire=float32)

    def _recv(self, t, device, consumer):
        key = (t, device)
        pending = self.sent[key]
        recv = self._recv_op(key, t.name, device, consumer, pending["wire"], t.shape)
        if pending["wire"] != t.dtype:
            recv = self._partition(device).create_op(
                "Cast", [recv], {"SrcT": pending["wire"], "DstT": t.dtype},
                f"transfer/{_flat(t.name)}_from_{pending['wire'].name}",
                lambda _: [(t.dtype, t.shape)], frames=consumer.frames,
                device=device).outputs[0]
        self.images[key] = recv
        self._note_consumer(key, consumer)
        return recv

    def _recv_op(self, key, tensor_name, device, consumer, wire, shape):
        pending = self.sent[key]
        attrs = dict(self._attrs(tensor_name, pending["src_device"], device), dtype=wire,
                     shape=shape)
        src = _flat(short_device(pending["src_device"]))
        prefix = "_recv_ctrl" if tensor_name.startswith("^") else "_recv"
        recv = self._partition(device).create_op(
            RECV_TYPE, [], attrs, f"{prefix}_{_flat(tensor_name.lstrip('^'))}_from_{src}",
            lambda _: [(wire, shape)], frames=consumer.frames, device=device)
        pending["recv_op"] = recv.name
        fields = {k: v for k, v in pending.items() if k != "wire"}
        self.transfers.append(Transfer(**fields))
        pending["index"] = len(self.transfers) - 1
        return recv.outputs[0]

    def _note_consumer(self, key, consumer):
        pending = self.sent[key]
        consumers = self.transfers[pending["index"]].consumers
        if consumer.name not in consumers:
            consumers.append(consumer.name)

    def _bytes(self, t) -> int | None:
        static = _static_bytes(t.shape, t.dtype)
        if static is None and self.tensor_bytes is not None:
            return int(self.tensor_bytes(t))
        return static

    def _attrs(self, tensor_name, src, dst) -> dict:
        return {"tensor_name": tensor_name, "send_device": src, "recv_device": dst,
                "send_device_incarnation": int(self.incarnations.get(src, 0))}


def _duplicable(op) -> bool:
    """A constant: no inputs, no control inputs, a value fixed when the step compiles."""
    return op.type == "Const" and not op.inputs and not op.control_inputs


def _made_everywhere(op) -> bool:
    """A value each partition makes for itself instead of receiving it: a feed (each reading
    device gets its own ``_Arg``) or a constant."""
    return op.type == ARG_TYPE or _duplicable(op)


def _grouping_noops(ops) -> set:
    """The NoOps that only group control inputs for the step's targets: no data inputs, and
    nothing but ``_Targets`` (or another such NoOp) waits for them."""
    waiters: dict = {}
    for op in ops:
        for c in op.control_inputs:
            waiters.setdefault(c, []).append(op)
    grouping: set = set()
    for op in reversed(ops):  # consumers first, so nested groups are seen from the outside in
        if op.type != "NoOp" or op.inputs:
            continue
        who = waiters.get(op, [])
        if who and all(w.type == TARGETS_TYPE or w in grouping for w in who):
            grouping.add(op)
    return grouping


def _expand_groups(controls, grouping) -> list:
    """``controls`` with every grouping NoOp replaced by its own control inputs (recursively),
    each op once, in order."""
    out: list = []
    for c in controls:
        for d in (_expand_groups(c.control_inputs, grouping) if c in grouping else [c]):
            _append_unique(out, d)
    return out


# Attrs through which stateful ops name the variables they read or write (VariableV2 and its
# state ops: shared_name; the training update ops: the variable and its slots).
_VARIABLE_ATTRS = ("shared_name", "var", "accum", "m", "v", "ms", "mom", "mg")


def _state_keys(op, device) -> set:
    """What a stateful op must stay ordered against: the variables it names, else every other
    such op of its device."""
    names = {op.attrs[a] for a in _VARIABLE_ATTRS if isinstance(op.attrs.get(a), str)}
    if names:
        return {("variable", name) for name in names}
    return {("device", device)}


def communication_order(ops, device_of) -> list:
    """``ops`` (a topological order) reordered so that transfers overlap work: the ready op
    taken next is, in this order of preference, one that does not read another device's value
    (its ``_Recv`` would wait), then the one fewest ops away from a value another device reads
    (its ``_Send``), then the earliest in ``ops`` (of ops that wait, the one that became ready
    first). Stateful ops that name the same variable keep
    their order (each waits for the one before it), and so do a device's other stateful ops, so
    a step's reads and updates of a variable and its random draws happen as written; updates of
    different variables may run in another order (each bucket of an all-reduce is applied as it
    arrives, not after the one its peer sends last)."""
    position = {op: i for i, op in enumerate(ops)}

    def device(op):
        return device_of.get(op.name)

    preds = {op: {t.op for t in op.inputs} | set(op.control_inputs) for op in ops}
    last_stateful: dict = {}
    for op in ops:
        op_def = registry.lookup(op.type)
        if op_def is not None and op_def.stateful and device(op) is not None:
            for key in _state_keys(op, device(op)):
                previous = last_stateful.get(key)
                if previous is not None:
                    preds[op].add(previous)
                last_stateful[key] = op
    consumers: dict = {op: [] for op in ops}
    for op in ops:
        for p in preds[op]:
            consumers[p].append(op)
    waits = {op: any(device(t.op) not in (None, device(op)) and not _made_everywhere(t.op)
                     for t in op.inputs) for op in ops}
    # ops away from the nearest value read on another device (same-device data edges only)
    distance: dict = {}
    for op in reversed(ops):
        here = device(op)
        best = None
        for t in op.outputs if not _made_everywhere(op) else ():
            for c in t.consumers():
                there = device(c)
                if there is not None and there != here:
                    best = 0
                elif there == here and c in distance and distance[c] is not None:
                    step = distance[c] + 1
                    best = step if best is None else min(best, step)
        distance[op] = best
    far = len(ops) + 1

    def key(op, emitted):  # feeds and constants first: they cost nothing, others wait for them
        rank = -1 if _made_everywhere(op) else far if distance[op] is None else distance[op]
        # Of the ops that read another device's value, the one whose inputs were all made
        # first: its values arrive first (receives in the order their senders send).
        return waits[op], rank, emitted if waits[op] else position[op], position[op]

    indegree = {op: len(preds[op]) for op in ops}
    ready = [key(op, 0) for op in ops if indegree[op] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        *_, index = heapq.heappop(ready)
        op = ops[index]
        order.append(op)
        for c in consumers[op]:
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(ready, key(c, len(order)))
    if len(order) != len(ops):
        raise errors.InternalError(None, None, "partition: the graph has a cycle")
    return order


def topological_order(graph) -> list:
    """The graph's ops in creation order when that is topological (it is for graphs built
    through the API and by the passes), else a stable topological sort of it."""
    ops = graph.get_operations()
    seen: set = set()
    for op in ops:
        if any(t.op not in seen for t in op.inputs) or any(c not in seen
                                                           for c in op.control_inputs):
            return _stable_sort(ops)
        seen.add(op)
    return list(ops)


def _stable_sort(ops) -> list:
    position = {op: i for i, op in enumerate(ops)}
    indegree = {op: len({t.op for t in op.inputs} | set(op.control_inputs)) for op in ops}
    consumers: dict = {op: [] for op in ops}
    for op in ops:
        for p in {t.op for t in op.inputs} | set(op.control_inputs):
            consumers[p].append(op)
    ready = [(position[op], op.name) for op in ops if indegree[op] == 0]
    by_name = {op.name: op for op in ops}
    heapq.heapify(ready)
    order = []
    while ready:
        _, name = heapq.heappop(ready)
        op = by_name[name]
        order.append(op)
        for c in consumers[op]:
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(ready, (position[c], c.name))
    if len(order) != len(ops):
        raise errors.InternalError(None, None, "partition: the graph has a cycle")
    return order


_DEVICE_RE = re.compile(r"^/job:(?P<job>[^/]+)/replica:\d+/task:(?P<task>\d+)/device:"
                        r"(?P<type>[^:]+):(?P<index>\d+)$")


def short_device(name: str) -> str:
    """``CPU:1`` for a device of this process, ``worker:0/CPU:1`` for one of another task."""
    m = _DEVICE_RE.match(name)
    if m is None:
        return name
    local = f"{m['type']}:{m['index']}"
    return local if m["job"] == "localhost" else f"{m['job']}:{m['task']}/{local}"


def _flat(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", name)


def _append_unique(items, item):
    if item not in items:
        items.append(item)


def _static_bytes(shape, dtype) -> int | None:
    dims = shape.as_tuple()
    if dims is None or any(d is None for d in dims):
        return None
    total = dtype.size
    for d in dims:
        total *= d
    return total


def _bytes(n) -> str:
    if n is None:
        return "?"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _table(header, rows) -> list:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    def line(cells):
        return "  " + "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
