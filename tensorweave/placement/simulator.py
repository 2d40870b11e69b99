"""An event simulation of one step of a placed graph over the cost model.

    result = simulate(ops, {op: device, ...}, cost_model, cluster)
    result.step_time, result.busy, result.peak_memory, result.critical_path

The model, as a small state machine:

* **Compute.** Each device runs one op at a time for ``cost_model.op_time(op, device)``. An op
  is *ready* once every input is on its device; an idle device starts its ready op of highest
  priority (upward rank over the placed costs: the longest remaining path to the end of the
  step, transfers included; ties by name), so a strategy's schedule order does not matter.
* **Transfers.** A tensor crosses to another device once per (tensor, destination device), as
  the partitioner inserts one ``_Recv`` per pair, starting when its producer finishes. A control
  edge between devices is a transfer of 0 bytes (latency only). Each ordered device pair is one
  link that carries one transfer at a time, first come first served, for
  ``cost_model.transfer_time(bytes, src, dst)``; later transfers on a busy link queue.
* **Memory.** An op's outputs are allocated on its device when it starts; a received copy on
  the destination when its transfer starts. A tensor is freed where it lives after its last
  consumer there finished and (at its source) its last transfer out completed. Outputs no placed
  op reads (the step's results) and the outputs of stateful source ops (variables) live to the
  end of the step. ``peak_memory`` is the largest total per device.
* **Critical path.** Every op and transfer remembers what it waited for last: an input (a local
  producer or a transfer), the op before it on its device, or the transfer before it on its
  link. Walking those back from whatever finished last gives the chain that set the step time.

Events at one instant are all applied before any device picks its next op, so ties are
resolved by priority, never by event order.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import typing

from tensorweave.ops import registry
from tensorweave.placement.opgraph import OpGraph


class SimOp(typing.NamedTuple):
    """One op's simulated run."""

    name: str
    device: str
    start: float
    end: float


class SimTransfer(typing.NamedTuple):
    """One tensor (or control edge, named ``^op``) moved to another device."""

    tensor: str
    src: str
    dst: str
    nbytes: int
    start: float
    end: float
    consumers: tuple            # names of the ops reading it on ``dst``


class CriticalStep(typing.NamedTuple):
    """One link of the critical path: an op (``device``) or a transfer (``src`` -> ``dst``)."""

    kind: str                   # "op" | "transfer"
    name: str                   # op name or tensor name
    start: float
    end: float
    device: str = ""
    src: str = ""
    dst: str = ""


@dataclasses.dataclass
class SimResult:
    """What one simulated step did, per op, per transfer and per device."""

    step_time: float
    ops: dict                   # op name -> SimOp, in the given op order
    transfers: list             # SimTransfer, by start time then tensor and destination
    busy: dict                  # device name -> seconds computing (every cluster device)
    peak_memory: dict           # device name -> bytes
    critical_path: list         # CriticalStep, first to last

    def utilization(self, device: str) -> float:
        """Busy time over step time (0 for an empty step)."""
        return self.busy[device] / self.step_time if self.step_time > 0 else 0.0


def simulate(ops, placement, cost_model, cluster, priority=None) -> SimResult:
    """Simulate one step of ``ops`` placed by ``placement`` (op or op name -> Device or device
    name); see the module docstring. ``priority`` (op name -> number, larger first) overrides
    the upward-rank order in which a device picks ready ops."""
    graph = ops if isinstance(ops, OpGraph) else OpGraph(ops)
    devices = list(cluster.devices)
    dev_index = {d.name: k for k, d in enumerate(devices)}
    placed = [dev_index[_device_name(placement, op, cluster)] for op in graph.ops]
    durations = [cost_model.op_time(op, devices[d]) for op, d in zip(graph.ops, placed)]
    tensor_bytes = [cost_model.output_bytes(t) for t in graph.tensors]
    op_bytes = [cost_model.op_memory(op) for op in graph.ops]
    return run_simulation(graph, devices, placed, durations, tensor_bytes, op_bytes, cost_model,
                          priority)


def run_simulation(graph, devices, placed, durations, tensor_bytes, op_bytes, cost_model,
                   priority=None) -> SimResult:
    """``simulate`` on arrays already computed: device index, seconds and output bytes per op
    (``OpGraph`` order), bytes per tensor of ``graph.tensors``."""
    return simulate_step(graph, devices, placed, durations, tensor_bytes, op_bytes, cost_model,
                         priority).result()


def simulate_step(graph, devices, placed, durations, tensor_bytes, op_bytes, cost_model,
                  priority=None) -> "_Simulation":
    """Run the simulation of ``run_simulation`` and return it unreported: ``.step_time`` now,
    the full ``SimResult`` from ``.result()`` (naming every op and transfer costs as much as
    running the events, so strategies comparing candidates ask it only of the one they keep)."""
    sim = _Simulation(graph, devices, placed, durations, tensor_bytes, op_bytes, cost_model)
    sim.run(priority)
    return sim


def _device_name(placement, op, cluster) -> str:
    device = placement.get(op)
    if device is None:
        device = placement.get(op.name)
    if device is None:
        raise KeyError(f"the placement has no device for op {op.name!r}")
    if isinstance(device, str):
        return cluster.device(device).name
    return device.name


def upward_ranks(graph: OpGraph, durations, comm) -> list:
    """Longest path (op times plus ``comm(producer, consumer, tensor index or None)``) from
    each op to the end of the step, the op's own time included."""
    n = len(graph)
    best = [0.0] * n
    rank = [0.0] * n
    for i in range(n - 1, -1, -1):
        rank[i] = durations[i] + best[i]
        r = rank[i]
        for j, tid in graph.inputs[i]:
            value = comm(j, i, tid) + r
            if value > best[j]:
                best[j] = value
        for j in graph.controls[i]:
            value = comm(j, i, None) + r
            if value > best[j]:
                best[j] = value
    return rank


class _Transfer:
    __slots__ = ("key", "producer", "tensor", "src", "dst", "nbytes", "consumers", "start",
                 "end", "cause")

    def __init__(self, key, producer, tensor, src, dst, nbytes):
        self.key = key
        self.producer = producer
        self.tensor = tensor    # tensor index, or None for a control edge
        self.src = src
        self.dst = dst
        self.nbytes = nbytes
        self.consumers: list[int] = []
        self.start = self.end = 0.0
        self.cause = None


class _Simulation:
    """The state machine of one simulated step (see the module docstring)."""

    def __init__(self, graph, devices, placed, durations, tensor_bytes, op_bytes, cost_model):
        self.graph = graph
        self.devices = devices
        self.placed = placed
        self.durations = durations
        self.tensor_bytes = tensor_bytes
        self.cost_model = cost_model
        self._links = {}            # (src, dst, bytes) -> seconds
        n = len(graph)
        self.local_waiters: list[list[int]] = [[] for _ in range(n)]
        self.out_transfers: list[list[_Transfer]] = [[] for _ in range(n)]
        self.transfers: list[_Transfer] = []
        self.waiting = [0] * n
        self._build_dependencies()
        self._init_memory(op_bytes)

    # -- set-up -------------------------------------------------------------------------------
    def _build_dependencies(self):
        graph, placed = self.graph, self.placed
        by_key: dict = {}
        for i in range(len(graph)):
            d = placed[i]
            local = []
            remote = []
            data_sources = set()
            for j, tid in graph.inputs[i]:
                if placed[j] == d:
                    local.append(j)
                else:
                    remote.append(self._transfer(by_key, (tid, d), j, tid, d))
                    data_sources.add(j)
            for j in graph.controls[i]:
                if placed[j] == d:
                    local.append(j)
                elif j not in data_sources:
                    remote.append(self._transfer(by_key, (-1 - j, d), j, None, d))
            local = list(dict.fromkeys(local))
            remote = list(dict.fromkeys(remote))
            for j in local:
                self.local_waiters[j].append(i)
            for x in remote:
                x.consumers.append(i)
            self.waiting[i] = len(local) + len(remote)

    def _transfer(self, by_key, key, producer, tid, dst) -> _Transfer:
        x = by_key.get(key)
        if x is None:
            nbytes = 0 if tid is None else self.tensor_bytes[tid]
            x = _Transfer(key, producer, tid, self.placed[producer], dst, nbytes)
            by_key[key] = x
            self.transfers.append(x)
            self.out_transfers[producer].append(x)
        return x

    def _init_memory(self, op_bytes):
        graph, placed = self.graph, self.placed
        self.op_bytes = op_bytes
        # References a tensor has at its source: local consumers + transfers out.
        self.src_refs = [0] * len(graph.tensors)
        for tid, consumers in enumerate(graph.tensor_consumers):
            src = placed[graph.tensor_producer[tid]]
            self.src_refs[tid] = sum(1 for c in consumers if placed[c] == src)
        for x in self.transfers:
            if x.tensor is not None:
                self.src_refs[x.tensor] += 1
        self.recv_refs = {x.key: len(x.consumers) for x in self.transfers}
        self.persistent = [_is_persistent(op) for op in graph.ops]
        self.memory = [0] * len(self.devices)
        self.peak = [0] * len(self.devices)

    # -- running ------------------------------------------------------------------------------
    def run(self, priority):
        """Apply every event; then ``step_time`` holds the step and ``result()`` reports it."""
        placed, n = self.placed, len(self.graph)
        keys = self._priority_keys(priority)
        self.start = [0.0] * n
        self.end = [0.0] * n
        self.ready_time = [0.0] * n
        self.cause = [None] * n
        self.device_free = [0.0] * len(self.devices)
        self.device_last = [None] * len(self.devices)
        self.device_running = [False] * len(self.devices)
        self.ready = [[] for _ in self.devices]
        self.links: dict = {}
        self.events: list = []
        self._seq = 0
        for i in range(n):
            if self.waiting[i] == 0:
                heapq.heappush(self.ready[placed[i]], (keys[i], i))
        dirty = set(range(len(self.devices)))
        while True:
            for d in sorted(dirty):
                self._dispatch(d, keys)
            dirty = set()
            if not self.events:
                break
            now = self.events[0][0]
            while self.events and self.events[0][0] == now:
                _, _, kind, item = heapq.heappop(self.events)
                if kind == 0:
                    self._op_finished(item, now, keys, dirty)
                else:
                    self._transfer_finished(item, now, keys, dirty)
        self.step_time = max([*self.end, *(x.end for x in self.transfers)], default=0.0)

    def _priority_keys(self, priority) -> list:
        names = self.graph.names
        if priority is None:
            values = upward_ranks(self.graph, self.durations, self._comm)
        else:
            values = [float(priority.get(name, 0.0)) for name in names]
        return [(-v, name) for v, name in zip(values, names)]

    def _comm(self, j, i, tid) -> float:
        src, dst = self.placed[j], self.placed[i]
        if src == dst:
            return 0.0
        return self._transfer_time(0 if tid is None else self.tensor_bytes[tid], src, dst)

    def _transfer_time(self, nbytes, src, dst) -> float:
        """``cost_model.transfer_time``, asked once per device pair and size."""
        key = (src, dst, nbytes)
        seconds = self._links.get(key)
        if seconds is None:
            seconds = self._links[key] = self.cost_model.transfer_time(
                nbytes, self.devices[src], self.devices[dst])
        return seconds

    def _push(self, time, kind, item):
        self._seq += 1
        heapq.heappush(self.events, (time, self._seq, kind, item))

    def _dispatch(self, d, keys):
        if self.device_running[d] or not self.ready[d]:
            return
        _, i = heapq.heappop(self.ready[d])
        now = self.device_free[d]
        start = max(now, self.ready_time[i])
        if start > self.ready_time[i] and self.device_last[d] is not None:
            self.cause[i] = ("op", self.device_last[d])  # waited for the device, not an input
        self.start[i] = start
        self.end[i] = start + self.durations[i]
        self.device_running[d] = True
        self.device_last[d] = i
        self._allocate(d, self.op_bytes[i])
        self._push(self.end[i], 0, i)

    def _op_finished(self, i, now, keys, dirty):
        d = self.placed[i]
        self.device_running[d] = False
        self.device_free[d] = now
        dirty.add(d)
        self._release_inputs(i, d)
        for k in self.local_waiters[i]:
            self._satisfy(k, now, ("op", i), keys, dirty)
        for x in self.out_transfers[i]:
            self._enqueue_transfer(x, now)

    def _enqueue_transfer(self, x, now):
        link = (x.src, x.dst)
        state = self.links.get(link)
        if state is None:
            state = self.links[link] = [0.0, None, collections.deque()]  # free at, last, queue
        if state[2] or state[0] > now:
            state[2].append(x)
            return
        self._start_transfer(x, now, state, ("op", x.producer))

    def _start_transfer(self, x, now, state, cause):
        x.start = now
        x.end = now + self._transfer_time(x.nbytes, x.src, x.dst)
        x.cause = cause
        state[0] = x.end
        state[1] = x
        self._allocate(x.dst, x.nbytes)
        self._push(x.end, 1, x)

    def _transfer_finished(self, x, now, keys, dirty):
        state = self.links[(x.src, x.dst)]
        if state[2]:
            nxt = state[2].popleft()
            producer_end = self.end[nxt.producer]
            cause = ("transfer", x) if now > producer_end else ("op", nxt.producer)
            self._start_transfer(nxt, now, state, cause)
        if x.tensor is not None:
            self._release_source(x.tensor)
        for k in x.consumers:
            self._satisfy(k, now, ("transfer", x), keys, dirty)

    def _satisfy(self, k, now, cause, keys, dirty):
        if now >= self.ready_time[k]:
            self.ready_time[k] = now
            self.cause[k] = cause
        self.waiting[k] -= 1
        if self.waiting[k] == 0:
            d = self.placed[k]
            heapq.heappush(self.ready[d], (keys[k], k))
            dirty.add(d)

    # -- memory -------------------------------------------------------------------------------
    def _allocate(self, d, nbytes):
        self.memory[d] += nbytes
        if self.memory[d] > self.peak[d]:
            self.peak[d] = self.memory[d]

    def _release_inputs(self, i, d):
        graph, placed = self.graph, self.placed
        for j, tid in graph.inputs[i]:
            if placed[j] == d:
                self._release_source(tid)
            else:
                key = (tid, d)
                self.recv_refs[key] -= 1
                if self.recv_refs[key] == 0:
                    self.memory[d] -= self.tensor_bytes[tid]

    def _release_source(self, tid):
        self.src_refs[tid] -= 1
        producer = self.graph.tensor_producer[tid]
        if self.src_refs[tid] == 0 and not self.persistent[producer]:
            self.memory[self.placed[producer]] -= self.tensor_bytes[tid]

    # -- results ------------------------------------------------------------------------------
    def result(self) -> SimResult:
        """The finished step, per op, transfer and device (call after ``run``)."""
        graph, devices, placed = self.graph, self.devices, self.placed
        sim_ops = {name: SimOp(name, devices[placed[i]].name, self.start[i], self.end[i])
                   for i, name in enumerate(graph.names)}
        transfers = sorted((self._sim_transfer(x) for x in self.transfers),
                           key=lambda x: (x.start, x.tensor, x.dst))
        busy = {d.name: 0.0 for d in devices}
        for i, d in enumerate(placed):
            busy[devices[d].name] += self.durations[i]
        peak = {d.name: self.peak[k] for k, d in enumerate(devices)}
        return SimResult(self.step_time, sim_ops, transfers, busy, peak, self._critical_path())

    def _tensor_name(self, x) -> str:
        if x.tensor is None:
            return "^" + self.graph.names[x.producer]
        return self.graph.tensors[x.tensor].name

    def _sim_transfer(self, x) -> SimTransfer:
        names = self.graph.names
        return SimTransfer(self._tensor_name(x), self.devices[x.src].name,
                           self.devices[x.dst].name, x.nbytes, x.start, x.end,
                           tuple(sorted(names[k] for k in x.consumers)))

    def _critical_path(self) -> list:
        graph = self.graph
        if not len(graph):
            return []
        names = graph.names
        last = max(range(len(graph)), key=lambda i: (self.end[i], names[i]))
        item, steps = ("op", last), []
        while item is not None:
            kind, value = item
            if kind == "op":
                steps.append(CriticalStep("op", names[value], self.start[value], self.end[value],
                                          device=self.devices[self.placed[value]].name))
                item = self.cause[value]
            else:
                steps.append(CriticalStep("transfer", self._tensor_name(value), value.start,
                                          value.end, src=self.devices[value.src].name,
                                          dst=self.devices[value.dst].name))
                item = value.cause
        steps.reverse()
        return steps


def _is_persistent(op) -> bool:
    """Outputs that outlive the step: those of stateful ops without inputs (variables)."""
    if op.inputs:
        return False
    op_def = registry.lookup(op.type)
    return bool(op_def is not None and op_def.stateful)
