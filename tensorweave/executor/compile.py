"""Compile one Session.run signature (fetches, feeds, targets) into a runnable step.

    snapshot -> passes (tw.passes.PIPELINE) -> lower the boundary -> schedule -> runner

``snapshot`` copies the ops the signature needs into a graph of the step's own, feeds as
``_Arg`` and fetches as ``_Retval`` ops; the passes rewrite that graph (never the user's);
lowering turns ``_Arg`` i into feed slot i and ``_Retval`` i into fetch slot i. The runner is the
generated straight-line function when the step has no independent expensive work, else the
dataflow scheduler on the session's thread pool. Steps are cached by the Session per
signature; the graph is append-only, so a cached step never goes stale.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time

import numpy as np

from tensorweave import errors
from tensorweave import passes
from tensorweave.executor.local import DataflowProgram, has_parallel_work
from tensorweave.executor.schedule import build_schedule
from tensorweave.executor.straightline import StraightLineProgram
from tensorweave.ops.function import ARG_TYPE, RESULT_TYPES, RETVAL_TYPE


class CompiledStep:
    def __init__(self, graph, fetches, feeds, targets, config, pool_factory):
        self.graph = graph
        self.fetches = list(fetches)
        self.feeds = list(feeds)
        self.targets = list(targets)
        self.optimized, self.changes = optimize(graph, self.fetches, self.feeds, self.targets,
                                                config)
        ops, arg_tensors, retval_tensors = lower(self.optimized, len(self.feeds),
                                                 len(self.fetches))
        self.ops = ops
        self._fed_names = {t: f.name for t, f in zip(arg_tensors, self.feeds)}
        self.schedule = build_schedule(ops, arg_tensors, retval_tensors)
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
        op = self._user_op(node.op) if node is not None else None
        if isinstance(exc, errors.OpError):
            if exc.op is not None or op is None:
                return exc
            return errors.op_error(type(exc), op, exc.message)
        if op is None:
            return errors.InternalError(None, None, f"step failed outside any op: "
                                                    f"{type(exc).__name__}: {exc}")
        if isinstance(exc, MemoryError):
            return errors.op_error(errors.ResourceExhaustedError, op, f"out of memory: {exc}")
        detail = f" (input values: {self._describe_inputs(node, frame)})" if node.inputs else ""
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

    def _user_op(self, op):
        """The user's op that ``op`` (of the step's graph) is a copy of, else ``op`` itself.

        Copies keep their names, so errors carry the Operation the user holds."""
        try:
            user = self.graph.get_operation_by_name(op.name)
        except KeyError:
            return op
        return user if user.type == op.type else op

    def _describe_inputs(self, node, frame) -> str:
        """Dtype and shape of each input: the actual values when the frame still holds them."""
        parts = []
        for t, slot in zip(node.op.inputs, node.inputs):
            name = self._fed_names.get(t, t.name)
            value = None if frame is None else frame.f_locals.get(f"v{slot}")
            if value is None and frame is not None:
                value = frame.f_globals.get(f"c{slot}")
            if value is not None:
                parts.append(f"{name}: {np.asarray(value).dtype}{list(np.shape(value))}")
            else:
                parts.append(f"{name}: {t.dtype.name}{t.shape}")
        return ", ".join(parts)


def optimize(graph, fetches, feeds, targets, config):
    """The step's own graph for the signature, after the pipeline: (graph, change lines)."""
    chosen = passes.pipeline(config.disabled_passes)
    step_graph = passes.snapshot(graph, fetches, feeds, targets)
    options = passes.PassOptions(config=config,
                                 feed_shapes={i: t.shape for i, t in enumerate(feeds)},
                                 fold_limit=config.max_folded_constant_elements)
    dump_dir = None
    if config.dump_dir:
        dump_dir = os.path.join(config.dump_dir, _signature_dirname(fetches, feeds, targets))
    result = passes.run_pipeline(step_graph, chosen, options=options,
                                 verify=config.verify_passes, dump_dir=dump_dir)
    return result.graph, result.changes


def _signature_dirname(fetches, feeds, targets) -> str:
    """``<first fetch>-<hash>``: one dump directory per compiled signature, stable across runs."""
    fetched = [t.name for t in fetches] + [op.name for op in targets]
    signature = "|".join(fetched) + "<-" + "|".join(t.name for t in feeds)
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", fetched[0] if fetched else "nothing")[:40]
    return f"{label}-{hashlib.sha1(signature.encode()).hexdigest()[:8]}"


class _UnusedArg:
    """The feed slot of an argument no op reads (a pass removed its ``_Arg``)."""

    def __init__(self, index):
        self.index = index


def lower(graph, num_feeds, num_fetches):
    """The step graph's ops without its boundary, the tensors fed (by ``_Arg`` index) and the
    tensors fetched (by ``_Retval`` index)."""
    args = [_UnusedArg(i) for i in range(num_feeds)]
    retvals = [None] * num_fetches
    ops = []
    for op in graph.get_operations():
        if op.type == ARG_TYPE:
            args[op.attrs["index"]] = op.outputs[0]
        elif op.type == RETVAL_TYPE:
            retvals[op.attrs["index"]] = op.inputs[0]
        elif op.type not in RESULT_TYPES:
            ops.append(op)
    if any(t is None for t in retvals):
        missing = [i for i, t in enumerate(retvals) if t is None]
        raise errors.InternalError(None, None, f"the optimized step graph lost the _Retval ops "
                                               f"of fetches {missing}")
    return ops, args, retvals
