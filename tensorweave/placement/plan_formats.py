"""How a ``Plan`` reads: the summary table, Graphviz DOT and a Chrome trace of the step.

Kept apart from ``plan.py`` (the data and how it is built) because each format is mostly
layout. Devices are shown by a short label — ``GPU:0`` when the cluster has one task, else
``/job:worker/task:1/GPU:0`` — and full names appear once, in each device's heading.
"""

from __future__ import annotations

from tensorweave.graph.device_names import DeviceSpec

# Lines of the critical path the summary shows at each end of a long path.
CRITICAL_PATH_ENDS = 12


def format_bytes(n: int) -> str:
    """``512 B``, ``4.0 KiB``, ``1.5 MiB``..."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def format_time(seconds: float) -> str:
    """``12.3 us``, ``4.56 ms``, ``1.20 s``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds:.3f} s"


def device_labels(device_names) -> dict:
    """``{full name: short label}`` (see the module docstring)."""
    specs = {name: DeviceSpec.from_string(name) for name in device_names}
    tasks = {(s.job, s.replica, s.task) for s in specs.values()}
    labels = {}
    for name, s in specs.items():
        local = f"{s.device_type}:{s.device_index}"
        if len(tasks) <= 1:
            labels[name] = local
        else:
            replica = f"/replica:{s.replica}" if s.replica else ""
            labels[name] = f"/job:{s.job}{replica}/task:{s.task}/{local}"
    return labels


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _time_unit(step_time: float) -> tuple:
    """(unit name, seconds per unit) for the columns of a step this long."""
    if step_time < 1e-2:
        return "us", 1e-6
    if step_time < 10.0:
        return "ms", 1e-3
    return "s", 1.0


def _aligned(header: list, rows: list, right: set, indent: str = "  ") -> list:
    """Lines of a table whose columns are padded to their widest cell."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]

    def line(cells):
        parts = [cell.rjust(w) if k in right else cell.ljust(w)
                 for k, (cell, w) in enumerate(zip(cells, widths))]
        return (indent + "  ".join(parts)).rstrip()
    return [line(header), line(["-" * w for w in widths])] + [line(row) for row in rows]


# -- summary ----------------------------------------------------------------------------------
def summary_text(plan) -> str:
    """The table ``Plan.summary()`` returns."""
    labels = device_labels([d.name for d in plan.devices])
    unit, scale = _time_unit(plan.step_time)
    lines = [_headline(plan), ""]
    lines += _op_sections(plan, labels, unit, scale)
    lines += _cut_edge_section(plan, labels, unit, scale)
    lines += _critical_path_section(plan, labels)
    if plan.relaxations:
        lines += ["", "Soft placement (pins relaxed):"]
        lines += [f"  {op}: requested {requested}: {why}"
                  for op, requested, why in plan.relaxations]
    if plan.notes:
        lines += ["", "Notes:"] + [f"  {note}" for note in plan.notes]
    lines += ["", _totals(plan)]
    return "\n".join(lines) + "\n"


def _headline(plan) -> str:
    used = sum(1 for d in plan.devices if d.ops)
    return (f"Placement plan ({plan.strategy}): {len(plan.ops)} ops on {used} of "
            f"{len(plan.devices)} devices, {len(plan.cut_edges)} cut edges "
            f"({format_bytes(plan.transfer_bytes)}), simulated step "
            f"{format_time(plan.step_time)} (lower bound {format_time(plan.lower_bound)}), "
            f"placed in {format_time(plan.placement_seconds)}")


def _op_sections(plan, labels, unit, scale) -> list:
    header = ["op", "type", f"start {unit}", f"end {unit}", "output", "reason"]
    by_device: dict = {d.name: [] for d in plan.devices}
    for e in sorted(plan.ops, key=lambda e: (e.start, e.end, e.name)):
        by_device[e.device].append([e.name, e.type, f"{e.start / scale:.1f}",
                                    f"{e.end / scale:.1f}", format_bytes(e.output_bytes),
                                    e.reason])
    rows = [row for device_rows in by_device.values() for row in device_rows]
    table = _aligned(header, rows, right={2, 3, 4}, indent="    ")
    column_header, rule, body = table[0], table[1], iter(table[2:])
    lines = []
    idle = []
    for d in plan.devices:
        if not d.ops:
            idle.append(labels[d.name])
            continue
        share = d.busy / plan.step_time if plan.step_time > 0 else 0.0
        lines.append(f"{labels[d.name]}  ({d.name})  {_count(d.ops, 'op')}, "
                     f"busy {format_time(d.busy)} ({share:.0%}), peak memory "
                     f"{format_bytes(d.peak_memory)} of {format_bytes(d.memory_capacity)}")
        lines += [column_header, rule]
        lines += [next(body) for _ in by_device[d.name]]
        lines.append("")
    if idle:
        lines += [f"Idle devices: {', '.join(idle)}", ""]
    return lines


def _cut_edge_section(plan, labels, unit, scale) -> list:
    if not plan.cut_edges:
        return ["Cut edges: none (nothing crosses devices)"]
    rows = [[c.tensor, labels[c.src_device], labels[c.dst_device], format_bytes(c.bytes),
             f"{c.start / scale:.1f}", f"{c.end / scale:.1f}", ", ".join(c.consumers)]
            for c in plan.cut_edges]
    header = ["tensor", "from", "to", "bytes", f"sent {unit}", f"arrived {unit}", "consumers"]
    lines = [f"Cut edges ({len(plan.cut_edges)} transfers, "
             f"{format_bytes(plan.transfer_bytes)}):"]
    return lines + _aligned(header, rows, right={3, 4, 5})


def _critical_path_section(plan, labels) -> list:
    steps = plan.critical_path
    words = [_step_words(s, labels) for s in steps]
    if len(words) > 2 * CRITICAL_PATH_ENDS:
        hidden = len(words) - 2 * CRITICAL_PATH_ENDS
        words = (words[:CRITICAL_PATH_ENDS] + [f"... {hidden} more ..."]
                 + words[-CRITICAL_PATH_ENDS:])
    lines = ["", f"Critical path ({len(steps)} steps, {format_time(plan.step_time)}):"]
    return lines + [f"  {w}" for w in words]


def _step_words(step, labels) -> str:
    span = f"{format_time(step.start)} .. {format_time(step.end)}"
    if step.kind == "op":
        return f"{step.name} on {labels[step.device]}  [{span}]"
    return f"send {step.name} {labels[step.src]} -> {labels[step.dst]}  [{span}]"


def _totals(plan) -> str:
    busy = sum(d.busy for d in plan.devices)
    return (f"Totals: {len(plan.ops)} ops, {format_time(busy)} of compute, "
            f"{len(plan.cut_edges)} transfers of {format_bytes(plan.transfer_bytes)}, "
            f"simulated step {format_time(plan.step_time)}")


# -- DOT --------------------------------------------------------------------------------------
_FILLS = ["#dbe9f6", "#fde2c8", "#d8f0d2", "#f3d6e8", "#e8e0f5", "#fbf3c7", "#d3f0ef",
          "#eeeeee"]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_text(plan) -> str:
    """The DOT ``Plan.to_dot()`` returns."""
    labels = device_labels([d.name for d in plan.devices])
    cut = {(c.tensor, c.dst_device): c.bytes for c in plan.cut_edges}
    device_of = plan.placement
    title = (f"{plan.strategy}: {len(plan.ops)} ops, simulated step "
             f"{format_time(plan.step_time)}, {format_bytes(plan.transfer_bytes)} across devices")
    lines = ["digraph placement {",
             f"  graph [fontname=Helvetica, fontsize=11, labelloc=t, label={_quote(title)}];",
             "  node [shape=box, style=\"rounded,filled\", fillcolor=white, fontname=Helvetica, "
             "fontsize=10];",
             "  edge [fontname=Helvetica, fontsize=9, color=\"#555555\"];"]
    members: dict = {d.name: [] for d in plan.devices}
    for e in plan.ops:
        members[e.device].append(e)
    for k, d in enumerate(d for d in plan.devices if d.ops):
        label = f"{labels[d.name]}\n{_count(d.ops, 'op')}, busy {format_time(d.busy)}"
        lines += [f"  subgraph {_quote(f'cluster_{k}')} {{",
                  f"    label={_quote(label)};",
                  f"    style=\"rounded,filled\"; color=\"#888888\"; "
                  f"fillcolor={_quote(_FILLS[k % len(_FILLS)])};"]
        lines += [f"    {_quote(e.name)} [label={_quote(e.name + chr(10) + e.type)}];"
                  for e in members[d.name]]
        lines.append("  }")
    for producer, consumer, tensor in plan.edges:
        lines.append(f"  {_quote(producer)} -> {_quote(consumer)}"
                     f"{_edge_attrs(tensor, device_of[producer], device_of[consumer], cut)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _edge_attrs(tensor, src, dst, cut) -> str:
    if tensor is None:
        return " [style=dashed]"
    if src == dst:
        return ""
    nbytes = cut.get((tensor, dst), 0)
    return (f" [label={_quote(format_bytes(nbytes))}, color=\"#c0392b\", "
            f"fontcolor=\"#c0392b\", penwidth=2]")


# -- Chrome trace -----------------------------------------------------------------------------
_DEVICES_PID = 1
_LINKS_PID = 2


def chrome_trace(plan) -> dict:
    """The trace dict ``Plan.to_chrome_trace()`` writes as JSON."""
    labels = device_labels([d.name for d in plan.devices])
    lanes = {d.name: k + 1 for k, d in enumerate(plan.devices)}
    links = _link_lanes(plan.sim.transfers, lanes)
    events = _metadata(plan, labels, lanes, links)
    for e in plan.ops:
        events.append({"name": e.name, "cat": e.type, "ph": "X", "pid": _DEVICES_PID,
                       "tid": lanes[e.device], "ts": _us(e.start), "dur": _us(e.end - e.start),
                       "args": {"type": e.type, "reason": e.reason,
                                "output_bytes": e.output_bytes}})
    ops = {e.name: e for e in plan.ops}
    for flow_id, x in enumerate(plan.sim.transfers):
        events += _transfer_events(x, 2 * flow_id + 1, ops, lanes, links)
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"strategy": plan.strategy, "step_time_us": _us(plan.step_time)}}


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)


def _link_lanes(transfers, lanes) -> dict:
    pairs = sorted({(x.src, x.dst) for x in transfers}, key=lambda p: (lanes[p[0]], lanes[p[1]]))
    return {pair: k + 1 for k, pair in enumerate(pairs)}


def _metadata(plan, labels, lanes, links) -> list:
    events = [{"name": "process_name", "ph": "M", "pid": _DEVICES_PID,
               "args": {"name": f"devices (simulated, {plan.strategy})"}},
              {"name": "process_sort_index", "ph": "M", "pid": _DEVICES_PID,
               "args": {"sort_index": 0}}]
    for name, tid in lanes.items():
        events += [{"name": "thread_name", "ph": "M", "pid": _DEVICES_PID, "tid": tid,
                    "args": {"name": labels[name]}},
                   {"name": "thread_sort_index", "ph": "M", "pid": _DEVICES_PID, "tid": tid,
                    "args": {"sort_index": tid}}]
    if links:
        events += [{"name": "process_name", "ph": "M", "pid": _LINKS_PID,
                    "args": {"name": "links"}},
                   {"name": "process_sort_index", "ph": "M", "pid": _LINKS_PID,
                    "args": {"sort_index": 1}}]
    for (src, dst), tid in links.items():
        events += [{"name": "thread_name", "ph": "M", "pid": _LINKS_PID, "tid": tid,
                    "args": {"name": f"{labels[src]} -> {labels[dst]}"}},
                   {"name": "thread_sort_index", "ph": "M", "pid": _LINKS_PID, "tid": tid,
                    "args": {"sort_index": tid}}]
    return events


def _transfer_events(x, flow_id, ops, lanes, links) -> list:
    """The transfer's slice on its link lane, and flow arrows producer -> transfer -> the first
    consumer on the destination (flow ends bind to the slice around their timestamp)."""
    link_tid = links[(x.src, x.dst)]
    middle = _us((x.start + x.end) / 2)
    producer = ops[x.tensor[1:] if x.tensor.startswith("^") else x.tensor.rsplit(":", 1)[0]]
    consumer = min((ops[name] for name in x.consumers), key=lambda e: (e.start, e.name))
    kind = "control" if x.tensor.startswith("^") else "transfer"
    return [
        {"name": x.tensor, "cat": kind, "ph": "X", "pid": _LINKS_PID, "tid": link_tid,
         "ts": _us(x.start), "dur": _us(x.end - x.start),
         "args": {"bytes": x.nbytes, "consumers": list(x.consumers)}},
        {"name": x.tensor, "cat": kind, "ph": "s", "id": flow_id, "pid": _DEVICES_PID,
         "tid": lanes[x.src], "ts": _us((producer.start + producer.end) / 2)},
        {"name": x.tensor, "cat": kind, "ph": "f", "bp": "e", "id": flow_id, "pid": _LINKS_PID,
         "tid": link_tid, "ts": middle},
        {"name": x.tensor, "cat": kind, "ph": "s", "id": flow_id + 1, "pid": _LINKS_PID,
         "tid": link_tid, "ts": middle},
        {"name": x.tensor, "cat": kind, "ph": "f", "bp": "e", "id": flow_id + 1,
         "pid": _DEVICES_PID, "tid": lanes[x.dst],
         "ts": _us((consumer.start + consumer.end) / 2)},
    ]
