"""Compile one Session.run signature (fetches, feeds, targets) into a runnable step.

    prune -> check feeds -> schedule (bound kernels, value slots) -> runner

The runner is the generated straight-line function when the step has no independent expensive
work, else the dataflow scheduler on the session's thread pool. Steps are cached by the Session
per signature; the graph is append-only, so a cached step never goes stale.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tensorweave import errors
from tensorweave.executor.local import DataflowProgram, has_parallel_work
from tensorweave.executor.schedule import build_schedule
from tensorweave.executor.straightline import StraightLineProgram
from tensorweave.ops import registry
from tensorweave.passes.prune import needed_ops


class CompiledStep:
    def __init__(self, graph, fetches, feeds, targets, config, pool_factory):
        self.graph = graph
        self.fetches = list(fetches)
        self.feeds = list(feeds)
        self.targets = list(targets)
        self.ops = needed_ops(self.fetches, self.targets, self.feeds)
        _check_all_placeholders_fed(self.ops, set(self.feeds))
        self.schedule = build_schedule(self.ops, self.feeds, self.fetches)
        threads = config.inter_op_parallelism_threads
        if threads != 1 and has_parallel_work(self.schedule):
            self.program = DataflowProgram(self.schedule, pool_factory())
        else:
            self.program = StraightLineProgram(self.schedule)

    @property
    def parallel(self) -> bool:
        return isinstance(self.program, DataflowProgram)

    def run(self, ctx, feed_values, run_metadata=None):
        # Floating-point warnings are off for the whole step: like TF, ops return inf/nan
        # silently, and one errstate per step is cheaper than one per kernel call.
        try:
            with np.errstate(all="ignore"):
                if run_metadata is None:
                    return self.program.run(ctx, feed_values)
                return self._run_traced(ctx, feed_values, run_metadata)
        except Exception as e:
            raise self._translate(e, sys.exc_info()[2]) from e

    def _run_traced(self, ctx, feed_values, run_metadata):
        stats: list = []
        t0 = time.perf_counter()
        run_metadata.wall_start = time.time()
        run_metadata.step_id = ctx.step_id
        try:
            if self.parallel:
                return self.program.run(ctx, feed_values, stats, t0)
            return self.program.run_timed(ctx, feed_values, stats, t0)
        finally:
            run_metadata.step_stats = sorted(stats, key=lambda s: (s.start_us, s.node_name))

    def _translate(self, exc, tb):
        """Turn a kernel's exception into a tw error that names the failing op."""
        node, frame = self._node_in_traceback(tb)
        node = getattr(exc, "__tensorweave_node__", None) or node
        op = node.op if node is not None else None
        if isinstance(exc, errors.OpError):
            if exc.op is not None or op is None:
                return exc
            return errors.op_error(type(exc), op, exc.message)
        if op is None:
            return errors.InternalError(None, None, f"step failed outside any op: "
                                                    f"{type(exc).__name__}: {exc}")
        if isinstance(exc, MemoryError):
            return errors.op_error(errors.ResourceExhaustedError, op, f"out of memory: {exc}")
        detail = f" (input values: {_describe_inputs(node, frame)})" if node.inputs else ""
        return errors.op_error(errors.InvalidArgumentError, op,
                               f"{type(exc).__name__}: {exc}{detail}")

    def _node_in_traceback(self, tb):
        """The node whose line of generated code raised, and that code's frame."""
        program = self.program
        if not isinstance(program, StraightLineProgram):
            return None, None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == program.filename:
                return program.node_at(tb.tb_lineno), tb.tb_frame
            tb = tb.tb_next
        return None, None


def _describe_inputs(node, frame) -> str:
    """Dtype and shape of each input: the actual values when the frame still holds them."""
    parts = []
    for t, slot in zip(node.op.inputs, node.inputs):
        value = None if frame is None else frame.f_locals.get(f"v{slot}")
        if value is None and frame is not None:
            value = frame.f_globals.get(f"c{slot}")
        if value is not None:
            parts.append(f"{t.name}: {np.asarray(value).dtype}{list(np.shape(value))}")
        else:
            parts.append(f"{t.name}: {t.dtype.name}{t.shape}")
    return ", ".join(parts)


def _check_all_placeholders_fed(ops, fed):
    for op in ops:
        if registry.get(op.type).must_feed and op.outputs[0] not in fed:
            t = op.outputs[0]
            raise errors.op_error(
                errors.InvalidArgumentError, op,
                f"you must feed a value for placeholder tensor '{t.name}' with dtype "
                f"{t.dtype.name} and shape {t.shape}")
