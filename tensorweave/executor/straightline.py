"""The sequential runner: a schedule turned into one generated Python function.

When a step has no independent work worth running concurrently, the dataflow scheduler would
pop ops from its ready queue in a fixed order anyway; this runner makes that order at compile
time and writes it out as straight-line code, one line per op::

    def step(ctx, f0):
        v2 = k0(f0, c1)
        del f0
        v3 = k1(v2)
        return (v3,)

Kernels and compile-time constants are bound as globals of the function, and each value is
deleted after its last use. The line numbers of the generated code map back to ops, so a
failing kernel is reported as the op that failed at no cost to the steps that succeed.
"""

from __future__ import annotations

import itertools
import threading
import time

from tensorweave.executor.config import NodeStats, stats_label

_counter = itertools.count()


class StraightLineProgram:
    """``run(ctx, feed_values) -> list of fetch values`` for one schedule."""

    def __init__(self, schedule):
        self.schedule = schedule
        self.filename = f"<tensorweave step {next(_counter)}>"
        self._fn, self._line_to_node = self._generate(timed=False)
        self._timed = None

    def run(self, ctx, feed_values):
        return self._fn(ctx, *feed_values)

    def run_timed(self, ctx, feed_values, stats: list, t0: float):
        if self._timed is None:
            self._timed = self._generate(timed=True)
        fn, _ = self._timed
        return fn(ctx, stats, t0, *feed_values)

    def node_at(self, lineno: int):
        """The schedule node of a line of the generated code (for error reports)."""
        mapping = self._line_to_node if self._timed is None or lineno in self._line_to_node \
            else self._timed[1]
        index = mapping.get(lineno)
        return None if index is None else self.schedule.nodes[index]

    def _generate(self, timed: bool):
        s = self.schedule
        env = {"_now": time.perf_counter, "_Stats": NodeStats, "_thread": threading.get_ident}
        for slot, value in s.constants.items():
            env[f"c{slot}"] = value
        feeds = [f"v{slot}" for slot in s.feed_slots]
        args = ["ctx"] + (["_stats", "_t0"] if timed else []) + feeds
        lines = [f"def step({', '.join(args)}):"]
        if timed:
            lines.append("    _tid = _thread()")
        line_to_node = {}
        fetch_slots = set(s.fetch_slots)
        for node in s.nodes:
            env[f"k{node.index}"] = node.kernel
            call_args = (["ctx"] if node.uses_context else []) + [_ref(s, i) for i in node.inputs]
            call = f"k{node.index}({', '.join(call_args)})"
            if timed:
                lines.append("    _s = _now()")
            line_to_node[len(lines) + 1] = node.index
            lines.append(f"    {_targets(node, s.last_use, fetch_slots)}{call}")
            if timed:
                env[f"n{node.index}"] = stats_label(node.op)
                lines.append(f"    _stats.append(_Stats(*n{node.index}, (_s - _t0) * 1e6, "
                             f"(_now() - _t0) * 1e6, _tid))")
            dead = [f"v{slot}" for slot in sorted(set(node.inputs))
                    if s.last_use.get(slot) == node.index and slot not in fetch_slots
                    and slot not in s.constants]
            if dead:
                lines.append(f"    del {', '.join(dead)}")
        fetched = [_ref(s, slot) for slot in s.fetch_slots]
        lines.append(f"    return ({', '.join(fetched)}{',' if len(fetched) == 1 else ''})")
        code = compile("\n".join(lines) + "\n", self.filename, "exec")
        exec(code, env)
        return env["step"], line_to_node


def _ref(schedule, slot) -> str:
    return f"c{slot}" if slot in schedule.constants else f"v{slot}"


def _targets(node, last_use, fetch_slots) -> str:
    if not node.op.outputs:
        return ""
    names = ["_" if slot is None or (slot not in last_use and slot not in fetch_slots)
             else f"v{slot}" for slot in node.outputs]
    if all(n == "_" for n in names):
        return ""
    if len(names) == 1:
        return f"{names[0]} = "
    return f"{', '.join(names)}, = "
