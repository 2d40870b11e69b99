"""The dataflow scheduler: runs a schedule's independent ops concurrently on a thread pool.

State, all owned by the thread that calls ``run`` (workers only compute kernels):

* ``pending[i]``: predecessors of node i (data and control) not yet finished;
* ``ready``: nodes whose pending count reached zero, in schedule order;
* ``values[slot]``: computed values; ``remaining[slot]`` readers left; a value is dropped when
  its last reader finishes (fetched values are kept);
* ``in_flight``: futures of nodes running on the pool.

Loop: submit every ready node; wait for one to finish; store its outputs, free dead inputs,
decrement its successors' pending counts and queue those that reach zero. The first error stops
new submissions; nodes already running are awaited, then the error is raised. Cheap nodes run
inline on the calling thread, which avoids a pool round trip for ops that take microseconds.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import time

import numpy as np

from tensorweave.executor.config import NodeStats, stats_label
from tensorweave.ops import registry
from tensorweave.ops.fused import FUSED_OP_TYPE, expr_of
from tensorweave.ops.transfer import RECV_TYPE

_INLINE_FLOPS = 1 << 16
# What limits BLAS's threads (all cores when none is set).
_BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class DataflowProgram:
    def __init__(self, schedule, pool: cf.ThreadPoolExecutor):
        self.schedule = schedule
        self.pool = pool
        nodes = schedule.nodes
        self._succ = [[] for _ in nodes]
        for node in nodes:
            for p in node.preds:
                self._succ[p].append(node.index)
        self._pending0 = [len(node.preds) for node in nodes]
        readers: dict = {}
        for node in nodes:
            for slot in set(node.inputs):
                readers[slot] = readers.get(slot, 0) + 1
        self._readers0 = readers
        self._inline = [_is_cheap(node.op) for node in nodes]
        # Receives wait on a rendezvous future instead of a thread (pool threads never block).
        self._recv = [node.op.type == RECV_TYPE for node in nodes]

    def run(self, ctx, feed_values, stats=None, t0=0.0):
        s = self.schedule
        values = [None] * s.num_slots
        for slot, value in s.constants.items():
            values[slot] = value
        for slot, value in zip(s.feed_slots, feed_values):
            values[slot] = value
        pending = list(self._pending0)
        remaining = dict(self._readers0)
        keep = set(s.fetch_slots) | set(s.constants)
        ready = [n.index for n in s.nodes if pending[n.index] == 0]
        in_flight: dict = {}
        waits: dict = {}        # receive future -> when it was asked for (for step stats)
        error = None
        rendezvous = getattr(ctx, "rendezvous", None)
        while ready or in_flight:
            while ready and error is None:
                i = ready.pop(0)
                node = s.nodes[i]
                if self._recv[i]:
                    future = rendezvous.recv_future(node.kernel.key(ctx.step_id), node.kernel)
                    in_flight[future] = node
                    waits[future] = time.perf_counter()
                    continue
                args = [values[slot] for slot in node.inputs]
                if self._inline[i]:
                    try:
                        result = _call(node, ctx, args, stats, t0)
                    except BaseException as e:
                        if error is None and rendezvous is not None:
                            rendezvous.abort(e)
                        error = error or (node, e)
                        continue
                    self._finish(node, result, values, pending, remaining, keep, ready)
                else:
                    in_flight[self.pool.submit(_call_quietly, node, ctx, args, stats, t0)] = node
            if not in_flight:
                break
            timeout = rendezvous.wait_timeout() if waits else None
            done, _ = cf.wait(in_flight, timeout=timeout, return_when=cf.FIRST_COMPLETED)
            if not done:
                rendezvous.expire()
                continue
            for future in done:
                node = in_flight.pop(future)
                try:
                    result = future.result()
                    if future in waits:
                        result = self._received(node, result, waits.pop(future), stats, t0)
                except BaseException as e:
                    waits.pop(future, None)
                    if error is None and rendezvous is not None:
                        rendezvous.abort(e)  # wake this step's receives on every device
                    error = error or (node, e)
                    continue
                if error is None:
                    self._finish(node, result, values, pending, remaining, keep, ready)
            ready.sort()
        if error is not None:
            node, exc = error
            exc.__tensorweave_node__ = node
            raise exc
        return tuple(values[slot] for slot in s.fetch_slots)

    @staticmethod
    def _received(node, value, asked, stats, t0):
        value = node.kernel.to_device(value)
        if stats is not None:
            stats.append(NodeStats(*stats_label(node.op), (asked - t0) * 1e6,
                                   (time.perf_counter() - t0) * 1e6, threading.get_ident()))
        return value

    def _finish(self, node, result, values, pending, remaining, keep, ready):
        outputs = node.outputs
        if len(outputs) == 1:
            result = (result,)
        for slot, value in zip(outputs, result if outputs else ()):
            if slot is not None:
                values[slot] = value
        for slot in set(node.inputs):
            remaining[slot] -= 1
            if remaining[slot] == 0 and slot not in keep:
                values[slot] = None
        for j in self._succ[node.index]:
            pending[j] -= 1
            if pending[j] == 0:
                ready.append(j)


def _call_quietly(node, ctx, args, stats, t0):
    """``_call`` on a pool thread: numpy's error state is per thread, so set it here too."""
    with np.errstate(all="ignore"):
        return _call(node, ctx, args, stats, t0)


def _call(node, ctx, args, stats, t0):
    if stats is None:
        return node.kernel(ctx, *args) if node.uses_context else node.kernel(*args)
    start = time.perf_counter()
    result = node.kernel(ctx, *args) if node.uses_context else node.kernel(*args)
    end = time.perf_counter()
    stats.append(NodeStats(*stats_label(node.op), (start - t0) * 1e6, (end - t0) * 1e6,
                           threading.get_ident()))
    return result


def _is_cheap(op) -> bool:
    try:
        return registry.cost_of(op).flops < _INLINE_FLOPS
    except Exception:  # an op whose cost cannot be estimated is treated as expensive
        return False


def blas_threads() -> int:
    """How many threads a BLAS call may use in this process (from the usual variables, read
    when BLAS loaded; all cores when none is set)."""
    for var in _BLAS_THREAD_VARS:
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


def _runs_blas(op) -> bool:
    """Whether ``op``'s kernel is a BLAS call (``OpDef.blas``), alone or as a fused op's heavy
    op."""
    op_type = op.type
    if op_type == FUSED_OP_TYPE:
        epilogue = expr_of(op).epilogue_of
        if epilogue is None:
            return False
        op_type = epilogue["op"]
    op_def = registry.lookup(op_type)
    return op_def is not None and op_def.blas


def has_parallel_work(schedule, threshold: float = 4 * _INLINE_FLOPS) -> bool:
    """True when two expensive nodes of the schedule are independent (neither reaches the other).

    When BLAS may use more than one thread, its ops do not count as expensive here: each
    already runs on the cores, and running two at once only adds the dataflow runner's cost
    (an MLP step at batch 100 with two BLAS threads: 0.67 ms in sequence, 1.02 ms on the
    runner). Ancestor sets are bit masks over the expensive nodes, built in one pass in
    schedule order.
    """
    skip_blas = blas_threads() > 1
    heavy_bit: dict = {}
    for node in schedule.nodes:
        if skip_blas and _runs_blas(node.op):
            continue
        try:
            flops = registry.cost_of(node.op).flops
        except Exception:
            flops = threshold
        if flops >= threshold:
            heavy_bit[node.index] = 1 << len(heavy_bit)
    if len(heavy_bit) < 2:
        return False
    ancestors = [0] * len(schedule.nodes)
    for node in schedule.nodes:
        mask = 0
        for p in node.preds:
            mask |= ancestors[p] | heavy_bit.get(p, 0)
        ancestors[node.index] = mask
    heavy = list(heavy_bit)
    all_heavy = (1 << len(heavy)) - 1
    for i in heavy:
        reachable = ancestors[i] | heavy_bit[i]
        # descendants of i: heavy nodes that have i as an ancestor
        for j in heavy:
            if ancestors[j] & heavy_bit[i]:
                reachable |= heavy_bit[j]
        if reachable != all_heavy:
            return True
    return False
