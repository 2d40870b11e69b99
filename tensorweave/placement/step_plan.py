"""``StepPlan``: what one compiled ``Session.run`` signature actually runs, and where.

    sp = sess.step_plan(train_op, feed_dict={x: xs, y_: ys})
    print(sp.summary())          # the placement table, then every inserted _Send/_Recv pair
    sp.to_json("out/plan.json")  # the plan's JSON plus the partitions' transfers
    sp.to_dot("out/plan.dot")

``Session.placement_plan`` plans the user's graph as written; a step plan is of the graph the
step runs after the passes (fused ops, folded constants, ``_Arg``/``_Retval`` for feeds and
fetches), cut into partitions. On a single device there is nothing to place or cut: the plan
says so and lists the step's ops.
"""

from __future__ import annotations

import json

from tensorweave.placement.partition import short_device
from tensorweave.placement.plan import _written


class StepPlan:
    def __init__(self, plan, partitions, changes, devices, ops, tasks=None):
        self.plan = plan                    # tw.placement.Plan of the step graph, or None
        self.partitions = partitions        # Partitioning, or None on one device
        self.changes = list(changes)        # what the passes did
        self.devices = list(devices)
        self.ops = list(ops)
        self.tasks = dict(tasks or {})      # remote task -> {"host", "node", "pid", ...}

    @property
    def multi_device(self) -> bool:
        return self.partitions is not None

    def summary(self) -> str:
        if not self.multi_device:
            where = short_device(self.devices[0]) if self.devices else "this process"
            return (f"Step plan: one device ({where}), {len(self.ops)} ops, no partitions "
                    f"and no transfers")
        text = self.plan.summary() + "\n\n" + self.partitions.summary()
        if self.tasks:
            text += "\n\n" + self._tasks_table()
        return text

    def _tasks_table(self) -> str:
        lines = ["Tasks (Ray actors):"]
        for task, info in sorted(self.tasks.items()):
            node = (info.get("node") or "?")[:12]
            lines.append(f"  {task}  on host {info.get('host', '?')}, Ray node {node}, "
                         f"pid {info.get('pid', '?')}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        data = {"multi_device": self.multi_device, "devices": self.devices,
                "ops": [op.name for op in self.ops], "changes": self.changes,
                "tasks": self.tasks}
        if self.multi_device:
            data["plan"] = self.plan.to_dict()
            data["partitions"] = self.partitions.to_dict()
        return data

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        return _written(text, path)

    def to_dot(self, path=None) -> str:
        if not self.multi_device:
            raise ValueError("a single-device step has no placement to draw")
        return self.plan.to_dot(path)

    def __repr__(self):
        if not self.multi_device:
            return f"<StepPlan one device, {len(self.ops)} ops>"
        return (f"<StepPlan {len(self.partitions.graphs)} devices, "
                f"{len(self.partitions.transfers)} transfers>")
