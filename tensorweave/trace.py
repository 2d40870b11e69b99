"""``tw.trace``: one traced ``Session.run`` step as a Chrome trace.

    md = tw.RunMetadata()
    sess.run(y, feed, options=tw.RunOptions(trace_level=tw.RunOptions.FULL_TRACE),
             run_metadata=md)
    tw.trace.to_chrome_trace(md, "step.json")   # open in chrome://tracing or ui.perfetto.dev

Layout of the trace (Chrome's Trace Event Format, JSON object form):

* one process lane (pid 1, 2, ...) per device, in device order (job, replica, task, type,
  index), named by the device's short name (``CPU:1``); the full name is in each op's args;
* inside a lane, one thread lane (tid) per thread that ran ops of that device. Thread idents
  are numbered 1, 2, ... device by device, in the order they first ran something there, and a
  thread keeps its number in every device lane, so "thread 2" under ``CPU:0`` and ``CPU:1``
  is one thread. Receives the dataflow runner records as waits, overlapping the ops the
  thread runs meanwhile, go to rows of their own below it (``thread_rows``);
* one complete event (``"ph": "X"``) per op: name = op name, cat = op type;
* one flow arrow per ``_Send``/``_Recv`` pair (both carry the same rendezvous key): a flow
  start on the send slice and a flow end (``"bp": "e"``) on the receive slice. The arrow's two
  timestamps are placed inside their slices (viewers bind a flow event to the slice around its
  timestamp) and in causal order (see ``flow_points``).

The simulated step of a placement plan has its own trace (``Plan.to_chrome_trace``): there the
devices are thread lanes of one process and links have lanes of their own, as a simulation
knows when each transfer was on the wire; a real step knows only when each op ran, on which
device and thread, so here devices are processes and threads are threads.
"""

from __future__ import annotations

import bisect
import json
import os

from tensorweave.graph.device_names import DeviceSpec
from tensorweave.ops.transfer import RECV_TYPE, SEND_TYPE
from tensorweave.placement.partition import short_device

__all__ = ["to_chrome_trace", "chrome_trace", "device_order", "thread_numbers",
           "thread_rows", "transfer_pairs", "flow_points"]

# The label of ops recorded without a device (a single-device step runs its graph unplaced).
UNPLACED_LABEL = "default device"


def to_chrome_trace(run_metadata, path=None) -> str:
    """The step in ``run_metadata`` as Chrome trace JSON text; also written to ``path`` (its
    folders are created) when given one."""
    text = json.dumps(chrome_trace(run_metadata), indent=1, sort_keys=True) + "\n"
    if path is not None:
        _write(text, path)
    return text


def chrome_trace(run_metadata) -> dict:
    """The trace as a dict (what ``to_chrome_trace`` serializes)."""
    stats = _step_stats(run_metadata)
    devices = device_order({s.device for s in stats})
    pids = {device: k + 1 for k, device in enumerate(devices)}
    tids, lanes = _thread_lanes(stats, devices)
    transfers = _transfers_by_key(getattr(run_metadata, "partitions", None))
    events = _lane_metadata(devices, pids, lanes)
    events += [_op_event(s, pids[s.device], tid, transfers.get(s.transfer))
               for s, tid in zip(stats, tids)]
    for flow_id, (i, j) in enumerate(transfer_pairs(stats), start=1):
        events += _flow_events(flow_id, stats[i], stats[j], (pids[stats[i].device], tids[i]),
                               (pids[stats[j].device], tids[j]))
    other = {"step_id": run_metadata.step_id, "wall_start": run_metadata.wall_start,
             "devices": devices}
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def _step_stats(run_metadata) -> list:
    stats = getattr(run_metadata, "step_stats", None)
    if stats is None:
        raise TypeError(f"to_chrome_trace takes the RunMetadata a traced Session.run filled "
                        f"(run_metadata=md with RunOptions(trace_level=FULL_TRACE)), got "
                        f"{type(run_metadata).__name__}")
    return sorted(stats, key=lambda s: (s.start_us, s.end_us, s.node_name))


def device_order(devices) -> list:
    """Full device names sorted by job, replica, task, type and index (``CPU:2`` before
    ``CPU:10``); an op recorded without a device ("") comes first."""
    def key(name):
        spec = DeviceSpec.from_string(name) if name else DeviceSpec()
        return (spec.job or "", spec.replica or 0, spec.task or 0, spec.device_type or "",
                -1 if spec.device_index is None else spec.device_index, name)
    return sorted(devices, key=key)


def thread_numbers(stats, devices) -> dict:
    """``{thread ident: 1, 2, ...}``: the threads of the first of ``devices`` in the order
    they first started an op there, then the new ones of the next device, and so on (so the
    numbers read top to bottom in the viewer)."""
    rank = {device: k for k, device in enumerate(devices)}
    numbers: dict = {}
    for s in sorted(stats, key=lambda s: (rank[s.device], s.start_us, s.node_name)):
        numbers.setdefault(s.thread, len(numbers) + 1)
    return numbers


def thread_rows(stats) -> list:
    """The row of each of ``stats`` (a parallel list) within its (device, thread) lane.

    A viewer needs the slices of one thread to nest; ops a thread runs never overlap, but the
    dataflow runner records a ``_Recv`` from when its value was asked for to when it arrived,
    while the same thread goes on running other ops (and waiting for other receives). Ops go
    first, in start order, then receives, each into the first row where it overlaps nothing,
    so row 0 is the thread's own work and the waits that overlap it get rows of their own."""
    rows_of: dict = {}      # (device, thread) -> rows, each a sorted list of (start, end)
    result = [0] * len(stats)
    order = sorted(range(len(stats)), key=lambda i: (stats[i].op_type == RECV_TYPE,
                                                     stats[i].start_us, stats[i].node_name))
    for i in order:
        s = stats[i]
        rows = rows_of.setdefault((s.device, s.thread), [])
        span = (s.start_us, s.end_us)
        row = next((r for r, taken in enumerate(rows) if _fits(taken, span)), len(rows))
        if row == len(rows):
            rows.append([])
        bisect.insort(rows[row], span)
        result[i] = row
    return result


def _fits(taken: list, span: tuple) -> bool:
    """Whether ``span`` overlaps none of the sorted, disjoint spans ``taken`` (touching ends
    do not overlap)."""
    k = bisect.bisect_left(taken, span)
    before_ok = k == 0 or taken[k - 1][1] <= span[0]
    after_ok = k == len(taken) or span[1] <= taken[k][0]
    return before_ok and after_ok


def _thread_lanes(stats, devices) -> tuple:
    """(tid of each of ``stats``, ``{(device, tid): (name, sort index)}``).

    Row 0 of thread N is tid N; the extra rows (see ``thread_rows``) take the numbers after
    the last thread's, and sort right below their thread."""
    numbers = thread_numbers(stats, devices)
    keys = [(numbers[s.thread], row) for s, row in zip(stats, thread_rows(stats))]
    ordered = sorted(set(keys))
    extra = iter(range(len(numbers) + 1, len(numbers) + len(ordered) + 1))
    tid_of = {key: key[0] if key[1] == 0 else next(extra) for key in ordered}
    sort_index = {key: k for k, key in enumerate(ordered)}
    tids = [tid_of[key] for key in keys]
    only_receives: dict = {}
    for s, tid in zip(stats, tids):
        lane = (s.device, tid)
        only_receives[lane] = only_receives.get(lane, True) and s.op_type == RECV_TYPE
    lanes = {(s.device, tid): (_row_name(*key, only_receives[(s.device, tid)]), sort_index[key])
             for s, key, tid in zip(stats, keys, tids)}
    return tids, lanes


def _row_name(thread: int, row: int, only_receives: bool) -> str:
    if row == 0:
        return f"thread {thread}"
    what = "waiting receives" if only_receives else "overlapping ops"
    return f"thread {thread}: {what}" if row == 1 else f"thread {thread}: {what} {row}"


def transfer_pairs(stats) -> list:
    """``[(i, j)]``: indices into ``stats`` of each ``_Send`` and its ``_Recv`` (the same
    transfer key), in the order the sends started. A key seen more than once is paired in
    start order; an end without its other end (a step cancelled half way) has no pair and
    gets no arrow."""
    sends: dict = {}
    recvs: dict = {}
    order = sorted(range(len(stats)), key=lambda i: (stats[i].start_us, stats[i].node_name))
    for i in order:
        s = stats[i]
        if s.op_type == SEND_TYPE and s.transfer:
            sends.setdefault(s.transfer, []).append(i)
        elif s.op_type == RECV_TYPE and s.transfer:
            recvs.setdefault(s.transfer, []).append(i)
    pairs = [pair for key, started in sends.items()
             for pair in zip(started, recvs.get(key, []))]
    return sorted(pairs, key=lambda p: (stats[p[0]].start_us, stats[p[0]].node_name))


def flow_points(send, recv) -> tuple:
    """(ts of the flow start, ts of the flow end), in microseconds.

    The start lies in the send slice and the end in the receive slice, and start <= end.
    A receive may start long before its send (it waits) and may return before the send op
    has finished its bookkeeping, so the start is the middle of the part of the send that
    precedes the receive's end, and the end the middle of what is left of the receive after
    that. Only if the receive ended before the send began (which a real step cannot record)
    are the two middles used, out of order."""
    if recv.end_us < send.start_us:
        return (send.start_us + send.end_us) / 2, (recv.start_us + recv.end_us) / 2
    start = (send.start_us + min(send.end_us, recv.end_us)) / 2
    end = (max(start, recv.start_us) + recv.end_us) / 2
    return start, end


def _transfers_by_key(partitions) -> dict:
    if partitions is None:
        return {}
    return {t.key: t for t in partitions.transfers}


def _label(device: str) -> str:
    return short_device(device) if device else UNPLACED_LABEL


def _lane_metadata(devices, pids, lanes) -> list:
    """process_name / process_sort_index per device, thread_name / thread_sort_index per
    thread lane on it."""
    events = []
    for k, device in enumerate(devices):
        pid = pids[device]
        events += [{"name": "process_name", "ph": "M", "pid": pid,
                    "args": {"name": _label(device)}},
                   {"name": "process_sort_index", "ph": "M", "pid": pid,
                    "args": {"sort_index": k}}]
        for (lane_device, tid), (name, index) in sorted(lanes.items(), key=lambda x: x[1][1]):
            if lane_device != device:
                continue
            events += [{"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                        "args": {"name": name}},
                       {"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                        "args": {"sort_index": index}}]
    return events


def _op_event(s, pid, tid, transfer) -> dict:
    args = {"type": s.op_type, "device": s.device}
    if s.transfer:
        args["transfer"] = s.transfer
    if transfer is not None:
        args.update(tensor=transfer.tensor, wire_dtype=transfer.dtype,
                    src_device=_label(transfer.src_device),
                    dst_device=_label(transfer.dst_device))
        if transfer.bytes is not None:      # None: the partitioner could not size it
            args["bytes"] = transfer.bytes
    start, end = _us(s.start_us), _us(s.end_us)
    return {"name": s.node_name, "cat": s.op_type, "ph": "X", "pid": pid, "tid": tid,
            "ts": start, "dur": max(0.0, _us(end - start)), "args": args}


def _flow_events(flow_id, send, recv, send_lane, recv_lane) -> list:
    """The arrow ``send`` -> ``recv`` (each lane a (pid, tid)). Both ends carry the same name,
    cat and id, which is how viewers join them."""
    tensor = send.transfer.rsplit(";", 1)[-1]
    cat = "control" if tensor.startswith("^") else "transfer"
    start, end = flow_points(send, recv)
    return [{"name": tensor, "cat": cat, "ph": "s", "id": flow_id, "pid": send_lane[0],
             "tid": send_lane[1], "ts": _us(start)},
            {"name": tensor, "cat": cat, "ph": "f", "bp": "e", "id": flow_id,
             "pid": recv_lane[0], "tid": recv_lane[1], "ts": _us(end)}]


def _us(microseconds: float) -> float:
    """Rounded to the nanosecond, so the text does not carry float noise."""
    return round(microseconds, 3)


def _write(text: str, path) -> None:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
