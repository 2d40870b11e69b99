"""The ops being placed or simulated, as plain indexed arrays.

Strategies and the simulator walk the same dataflow thousands of times, so they index it once:
ops get numbers ``0..n-1`` in a topological order (the given order when it already is one, as a
graph's creation order always is), and each op lists

* ``inputs[i]``: ``(producer index, tensor index)`` per distinct input tensor produced by a
  placed op (a tensor read twice is moved once);
* ``controls[i]``: producer indices of its control inputs among the placed ops;
* ``preds[i]`` / ``succs[i]``: distinct neighbours over data and control edges;
* ``tensor_consumers[t]``: the distinct placed ops reading tensor ``t``.

Inputs produced outside the placed ops (a fed tensor whose producer was pruned) count as
available everywhere at time 0.
"""

from __future__ import annotations

import heapq


class OpGraph:
    """Placed ops numbered in a topological order, with their data and control edges."""

    def __init__(self, ops):
        ops = _topological(list(ops))
        self.ops = ops
        self.names = [op.name for op in ops]
        self.index = {op: i for i, op in enumerate(ops)}
        self.tensors: list = []                 # tensor index -> Tensor
        self.tensor_producer: list[int] = []    # tensor index -> op index
        self.tensor_consumers: list[list[int]] = []
        self.inputs: list[list[tuple[int, int]]] = []
        self.controls: list[list[int]] = []
        self.preds: list[list[int]] = []
        self.succs: list[list[int]] = [[] for _ in ops]
        tensor_index: dict = {}
        for i, op in enumerate(ops):
            self._index_edges(i, op, tensor_index)

    def _index_edges(self, i, op, tensor_index):
        index = self.index
        inputs, seen = [], set()
        for t in op.inputs:
            j = index.get(t.op)
            if j is None or t in seen:
                continue
            seen.add(t)
            tid = tensor_index.get(t)
            if tid is None:
                tid = tensor_index[t] = len(self.tensors)
                self.tensors.append(t)
                self.tensor_producer.append(j)
                self.tensor_consumers.append([])
            self.tensor_consumers[tid].append(i)
            inputs.append((j, tid))
        controls = [j for j in dict.fromkeys(index.get(c) for c in op.control_inputs)
                    if j is not None]
        preds = list(dict.fromkeys([j for j, _ in inputs] + controls))
        self.inputs.append(inputs)
        self.controls.append(controls)
        self.preds.append(preds)
        for j in preds:
            self.succs[j].append(i)

    def __len__(self):
        return len(self.ops)


def _topological(ops: list) -> list:
    """``ops`` itself when every input comes earlier, else a topological order that keeps the
    given order wherever it can (Kahn's algorithm, smallest original position first)."""
    position = {op: k for k, op in enumerate(ops)}
    if all(position.get(t.op, -1) < k for k, op in enumerate(ops) for t in op.inputs) and \
            all(position.get(c, -1) < k for k, op in enumerate(ops) for c in op.control_inputs):
        return ops
    pending = []
    users: list[list[int]] = [[] for _ in ops]
    for k, op in enumerate(ops):
        deps = {position[p] for p in [t.op for t in op.inputs] + list(op.control_inputs)
                if p in position and p is not op}
        pending.append(len(deps))
        for d in deps:
            users[d].append(k)
    ready = [k for k, count in enumerate(pending) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        k = heapq.heappop(ready)
        order.append(ops[k])
        for u in users[k]:
            pending[u] -= 1
            if pending[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(ops):
        stuck = sorted(ops[k].name for k, count in enumerate(pending) if count > 0)[:5]
        raise ValueError(f"the ops to place contain a cycle (through {', '.join(stuck)})")
    return order
