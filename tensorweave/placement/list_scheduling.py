"""The list scheduler behind the ``etf``, ``critical_path`` and ``cpop`` strategies.

See ``strategies.py`` for what it does; this module is how: a ready heap by upward rank, one
``Timeline`` of busy intervals per device, arrival times per (tensor, device), per-link "free
at" times, per-device memory, and the held groups waiting for their first reader.
"""

from __future__ import annotations

import bisect
import heapq

from tensorweave.ops import registry
from tensorweave.placement.opgraph import OpGraph
from tensorweave.placement.problem import Placement, PlacementProblem


class Timeline:
    """The busy intervals of one device, sorted and disjoint."""

    # How many idle gaps an insertion looks at before appending at the end (bounds the cost
    # on graphs of 100,000 ops; the gaps looked at are those right after the op is ready).
    GAP_SCAN_LIMIT = 32

    __slots__ = ("starts", "ends")

    def __init__(self):
        self.starts: list[float] = []
        self.ends: list[float] = []

    def end(self) -> float:
        return self.ends[-1] if self.ends else 0.0

    def earliest(self, ready: float, duration: float, insertion: bool) -> float:
        """The earliest start >= ``ready`` for an op of ``duration``."""
        end = self.end()
        if not insertion or ready >= end:
            return max(ready, end)
        ends, starts = self.ends, self.starts
        k = bisect.bisect_right(ends, ready)
        t = ready
        for m in range(k, min(k + self.GAP_SCAN_LIMIT, len(starts))):
            if t + duration <= starts[m]:
                return t
            t = max(t, ends[m])
        return max(ready, end)

    def add(self, start: float, end: float):
        if not self.starts or start >= self.ends[-1]:
            self.starts.append(start)
            self.ends.append(end)
            return
        k = bisect.bisect_right(self.starts, start)
        self.starts.insert(k, start)
        self.ends.insert(k, end)


class ListScheduler:
    """Earliest-finish-time list scheduling over a PlacementProblem (see the module docstring)."""

    def __init__(self, problem: PlacementProblem, name: str, insertion: bool,
                 home_weight: float):
        self.p = problem
        self.name = name
        self.insertion = insertion
        self.home_weight = home_weight      # times the trip home counts (0: no home term)
        n, n_groups = len(problem.graph), len(problem.groups)
        self.group_device = [-1] * n_groups
        self.anchors: dict = {}
        self.notes: list = []
        self.critical_groups: set = set()
        self.held: dict = {}                    # group -> op indices held, in order
        self.op_device = [-1] * n
        self.start = [0.0] * n
        self.finish = [0.0] * n
        self.arrival: dict = {}                 # (tensor, device) -> arrival time
        self.link_free = [[0.0] * len(problem.devices) for _ in problem.devices]
        self.timelines = [Timeline() for _ in problem.devices]
        self.memory = [0] * len(problem.devices)
        self.holdable = self._holdable()

    def _holdable(self) -> list:
        """Per op: whether its group may be held (see the module docstring).

        A group may be held when every op of it reads only ops of the group (a constant, a
        variable with its reads, a placeholder) or — when running the group costs less than
        moving its outputs anywhere — of *constant* groups: held groups of stateless ops (a Fill
        of two Consts). Placeholders and variables are held but are not constant, so their
        readers are placed on their own. Found as the greatest fixpoint: knock out groups
        until nothing changes."""
        p = self.p
        graph, group = p.graph, p.group
        n_groups = len(p.groups)
        holdable = [True] * n_groups
        constant = [True] * n_groups
        work = [0.0] * n_groups
        for i, op in enumerate(graph.ops):
            g = group[i]
            work[g] += min(p.time[i])
            if _is_stateful(op):
                constant[g] = False
        for i, preds in enumerate(graph.preds):
            g = group[i]
            if any(group[j] != g for j in preds) and work[g] > p.cheapest_transfer(
                    p.group_memory[g]):
                holdable[g] = constant[g] = False
        changed = True
        while changed:
            changed = False
            for i, preds in enumerate(graph.preds):
                g = group[i]
                if not holdable[g]:
                    continue
                for j in preds:
                    h = group[j]
                    if h != g and not (holdable[h] and constant[h]):
                        holdable[g] = constant[g] = False
                        changed = True
                        break
        return [holdable[g] for g in group]

    def pin_critical_path(self):
        """CPOP: put the groups of the critical path (by mean ranks) on the one device that
        runs the path fastest among those most of its groups may use."""
        p = self.p
        rank = p.mean_ranks()
        path = _critical_chain(p.graph, rank)
        best, best_key = None, None
        for d in range(len(p.devices)):
            usable = [i for i in path if d in p.feasible[p.group[i]]]
            key = (-len(usable), sum(p.time[i][d] for i in usable), d)
            if best_key is None or key < best_key:
                best, best_key = d, key
        for i in path:
            g = p.group[i]
            if self.group_device[g] < 0 and best in p.feasible[g]:
                self._commit_group(g, best, i)
                self.critical_groups.add(g)

    def run(self) -> Placement:
        p = self.p
        graph = p.graph
        rank = p.mean_ranks()
        names = graph.names
        pending = [len(preds) for preds in graph.preds]
        ready = [(-rank[i], names[i], i) for i in range(len(graph)) if pending[i] == 0]
        heapq.heapify(ready)
        while ready:
            _, _, i = heapq.heappop(ready)
            g = p.group[i]
            if self.group_device[g] < 0 and self.holdable[i]:
                self.held.setdefault(g, []).append(i)
            else:
                self._schedule(i)
            for s in graph.succs[i]:
                pending[s] -= 1
                if pending[s] == 0:
                    heapq.heappush(ready, (-rank[s], names[s], s))
        for g in sorted(self.held, key=lambda g: p.groups[g].name):
            if g in self.held:  # not placed meanwhile as a held input of another group
                self._place_unread_group(g)
        devices = [p.devices[d] for d in self.op_device]
        return Placement(self.name, devices, self.anchors, self.notes, self.critical_groups)

    # -- one op -------------------------------------------------------------------------------
    def _schedule(self, i):
        p = self.p
        g = p.group[i]
        d = self.group_device[g]
        if d < 0:
            d = self._choose_device(i, g)
            self._commit_group(g, d, i)
        for j in p.graph.preds[i]:
            if p.group[j] in self.held:
                self._commit_held_for(p.group[j], d, consumer=i)
        self._run_on(i, d)

    def _run_on(self, i, d):
        ready = self._data_ready(i, d)
        duration = self.p.time[i][d]
        start = self.timelines[d].earliest(ready, duration, self.insertion)
        self.timelines[d].add(start, start + duration)
        self.op_device[i] = d
        self.start[i] = start
        self.finish[i] = start + duration

    def _data_ready(self, i, d) -> float:
        """When every input of op i (all producers scheduled) is on device d."""
        p = self.p
        ready = 0.0
        op_device, finish = self.op_device, self.finish
        for j, tid in p.graph.inputs[i]:
            src = op_device[j]
            if src == d:
                t = finish[j]
            else:
                key = (tid, d)
                t = self.arrival.get(key)
                if t is None:
                    # The link carries one transfer at a time (as in the simulator).
                    start = max(finish[j], self.link_free[src][d])
                    t = start + p.transfer(p.tensor_bytes[tid], src, d)
                    self.link_free[src][d] = t
                    self.arrival[key] = t
            if t > ready:
                ready = t
        for j in p.graph.controls[i]:
            t = finish[j] + p.transfer(0, op_device[j], d)
            if t > ready:
                ready = t
        return ready

    # -- choosing a device ----------------------------------------------------------------------
    def _choose_device(self, i, g) -> int:
        """The feasible device with the best score (memory permitting): op i's earliest finish
        there, plus — away from its home device — ``home_weight`` times the time its output
        would take to go back."""
        p = self.p
        weight = self.home_weight
        home = self._home(i) if weight else -1
        back = p.op_bytes[i]
        held = self._held_pred_groups(i)
        candidates = []
        for d in p.feasible[g]:
            needed = p.group_memory[g]
            if held:
                needed += sum(p.group_memory[h] for h in held if d in p.feasible[h])
            fits = self.memory[d] + needed <= p.capacity[d]
            score = self._estimate_finish(i, d)
            if home >= 0 and d != home:
                score += weight * p.transfer(back, d, home)
            candidates.append((not fits, score, d))
        best_misfit, _, d = min(candidates)
        if best_misfit:
            d = max(p.feasible[g], key=lambda k: (p.capacity[k] - self.memory[k], -k))
            self.notes.append(f"memory: no feasible device has room for the group of "
                              f"{p.groups[g].name!r} ({p.group_memory[g]} bytes); placed on "
                              f"{p.devices[d].name}, which has the most left")
        return d

    def _home(self, i) -> int:
        """The device holding most of op i's input bytes (ties: the input finishing last, then
        device order), or -1 when no input is placed yet.

        Ops that leave their home save time only when they finish earlier by more than their
        output's trip back: without that bias, chains of small ops (an LSTM cell's gates) get
        scattered over devices by gains smaller than the transfers they cause later."""
        p = self.p
        weight: dict = {}
        for j, tid in p.graph.inputs[i]:
            d = self.op_device[j]
            if d >= 0:
                nbytes, last = weight.get(d, (0, 0.0))
                weight[d] = (nbytes + p.tensor_bytes[tid], max(last, self.finish[j]))
        if not weight:
            return -1
        return min(weight, key=lambda d: (-weight[d][0], -weight[d][1], d))

    def _held_pred_groups(self, i) -> list:
        p = self.p
        groups = []
        for j in p.graph.preds[i]:
            h = p.group[j]
            if h in self.held and h not in groups:
                groups.append(h)
        return groups

    def _estimate_finish(self, i, d) -> float:
        """Op i's finish time on device d, counting held input groups that would run first."""
        p = self.p
        timeline = self.timelines[d]
        ready = 0.0
        held_here = 0.0
        counted = set()
        own = p.group[i]
        op_device, finish, arrival = self.op_device, self.finish, self.arrival
        latency, inv_bandwidth, link_free = p.latency, p.inv_bandwidth, self.link_free
        queued = {}  # source device -> when its link to d frees up, with this op's inputs
        for j, tid in p.graph.inputs[i]:
            src = op_device[j]
            if src == d:
                t = finish[j]
            elif src >= 0:
                t = arrival.get((tid, d))
                if t is None:
                    start = max(finish[j], queued.get(src, link_free[src][d]))
                    t = queued[src] = (start + latency[src][d]
                                       + p.tensor_bytes[tid] * inv_bandwidth[src][d])
            else:
                h = p.group[j]
                if h == own or d in p.feasible[h]:
                    if h not in counted:
                        counted.add(h)
                        held_here += self._held_time(h, d)
                    continue
                e, done = self._best_held_device(h)
                t = done + p.transfer(p.tensor_bytes[tid], e, d)
            if t > ready:
                ready = t
        for j in p.graph.controls[i]:
            if op_device[j] >= 0:
                t = finish[j] + p.transfer(0, op_device[j], d)
                if t > ready:
                    ready = t
        if held_here:
            ready = max(ready, timeline.earliest(0.0, held_here, self.insertion) + held_here)
        duration = p.time[i][d]
        return timeline.earliest(ready, duration, self.insertion) + duration

    def _held_time(self, g, d) -> float:
        return sum(self.p.time[k][d] for k in self.held.get(g, ()))

    def _best_held_device(self, g) -> tuple:
        """(device, finish) where held group g's ops would finish first."""
        best = None
        for e in self.p.feasible[g]:
            t = self._held_time(g, e)
            done = self.timelines[e].earliest(0.0, t, self.insertion) + t
            if best is None or done < best[1]:
                best = (e, done)
        return best

    # -- committing -------------------------------------------------------------------------------
    def _commit_group(self, g, d, anchor):
        """Place group g (not held) on device d."""
        self._assign(g, d, anchor, None)

    def _commit_held_for(self, g, d, consumer):
        """Place held group g for a consumer on device d — there when it may go there — and
        run its held ops."""
        if not self._fits(g, d):
            d = self._best_held_device(g)[0]
        self._assign(g, d, self.held[g][0], consumer)
        self._run_held(g, consumer)

    def _place_unread_group(self, g):
        self._assign(g, self._best_held_device(g)[0], self.held[g][0], None)
        self._run_held(g, None)

    def _fits(self, g, d) -> bool:
        p = self.p
        return d in p.feasible[g] and self.memory[d] + p.group_memory[g] <= p.capacity[d]

    def _assign(self, g, d, anchor, consumer):
        self.group_device[g] = d
        self.memory[d] += self.p.group_memory[g]
        self.anchors.setdefault(g, (anchor, consumer))

    def _run_held(self, g, consumer):
        """Run the held ops of group g, just placed; held groups they read are placed first:
        with g when they may go there, else where they finish first."""
        p = self.p
        d = self.group_device[g]
        closure = self.held.pop(g)
        stack = list(closure)
        while stack:
            k = stack.pop()
            for j in p.graph.preds[k]:
                h = p.group[j]
                if h in self.held:
                    e = d if self._fits(h, d) else self._best_held_device(h)[0]
                    ops = self.held.pop(h)
                    self._assign(h, e, ops[0], consumer)
                    closure += ops
                    stack += ops
        for k in sorted(closure):  # op order is topological
            self._run_on(k, self.group_device[p.group[k]])


def _critical_chain(graph: OpGraph, rank) -> list:
    """The ops of the longest path by rank: from the highest-ranked op without predecessors,
    repeatedly the successor of highest rank (ties by name)."""
    sources = [i for i in range(len(graph)) if not graph.preds[i]]
    if not sources:
        return []
    names = graph.names
    i = min(sources, key=lambda k: (-rank[k], names[k]))
    chain = [i]
    while graph.succs[i]:
        i = min(graph.succs[i], key=lambda k: (-rank[k], names[k]))
        chain.append(i)
    return chain


def _is_stateful(op) -> bool:
    op_def = registry.lookup(op.type)
    return op_def is None or op_def.stateful
