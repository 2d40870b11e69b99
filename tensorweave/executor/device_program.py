"""One device's share of a compiled step: its schedule, its runner, and how its errors read.

A single-device step is one ``DeviceProgram`` over all of the step graph; a multi-device step is
one per partition (``tensorweave.executor.multidevice``). Either way the program

* lowers its graph's boundary: ``_Arg`` i reads feed i, ``_Retval`` j gives fetch j;
* builds the schedule with kernels bound for its device's array module (numpy on CPUs, cupy
  on GPUs);
* runs it as generated straight-line code when it has no independent expensive work, else on
  the dataflow scheduler;
* turns a kernel's exception into a tw error naming the op, its type and device, and the
  user's file:line.
"""

from __future__ import annotations

import numpy as np

from tensorweave import errors
from tensorweave.executor.local import DataflowProgram, has_parallel_work
from tensorweave.executor.schedule import build_schedule
from tensorweave.executor.straightline import StraightLineProgram
from tensorweave.ops.function import ARG_TYPE, RESULT_TYPES, RETVAL_TYPE


class DeviceProgram:
    """``run(ctx, feed_values) -> tuple`` of the fetch values this program makes (those at
    ``fetch_indices``), given all of the step's feed values."""

    def __init__(self, user_graph, graph, feed_names, num_fetches, config, pool_factory,
                 device: str = "", xp=np, partial: bool = False, wrap_kernel=None):
        self.user_graph = user_graph
        self.graph = graph
        self.device = device
        self.xp = xp
        num_feeds = len(feed_names)
        ops, args, retvals = lower(graph, num_feeds, num_fetches, partial=partial)
        self.ops = ops
        self.feed_indices = [i for i, t in enumerate(args) if t is not None]
        self.fetch_indices = [j for j, t in enumerate(retvals) if t is not None]
        feeds = [args[i] for i in self.feed_indices]
        self._fed_names = {args[i]: feed_names[i] for i in self.feed_indices}
        self._all_feeds = self.feed_indices == list(range(num_feeds))
        self.schedule = build_schedule(ops, feeds, [retvals[j] for j in self.fetch_indices],
                                       xp=xp, device=device, wrap_kernel=wrap_kernel)
        threads = config.inter_op_parallelism_threads
        if threads != 1 and has_parallel_work(self.schedule):
            self.program = DataflowProgram(self.schedule, pool_factory())
        else:
            self.program = StraightLineProgram(self.schedule)

    @property
    def parallel(self) -> bool:
        return isinstance(self.program, DataflowProgram)

    def run(self, ctx, feed_values, stats=None, t0=0.0):
        if not self._all_feeds:
            feed_values = [feed_values[i] for i in self.feed_indices]
        if self.xp is not np:
            feed_values = [self.xp.asarray(v) for v in feed_values]
        if stats is None:
            results = self.program.run(ctx, feed_values)
        elif self.parallel:
            results = self.program.run(ctx, feed_values, stats, t0)
        else:
            results = self.program.run_timed(ctx, feed_values, stats, t0)
        if self.xp is not np:
            results = tuple(r.get() if hasattr(r, "get") else r for r in results)
        return results

    # -- errors -----------------------------------------------------------------------------
    def translate(self, exc, tb):
        """Turn a kernel's exception into a tw error that names the failing op."""
        node, frame = self._node_in_traceback(tb)
        node = getattr(exc, "__tensorweave_node__", None) or node
        op = self._user_op(node.op) if node is not None else None
        device = self.device or None
        if isinstance(exc, errors.OpError):
            if exc.op is not None or op is None:
                return exc
            return errors.op_error(type(exc), op, exc.message, device)
        if op is None:
            return errors.InternalError(None, None, f"step failed outside any op: "
                                                    f"{type(exc).__name__}: {exc}")
        if isinstance(exc, MemoryError):
            return errors.op_error(errors.ResourceExhaustedError, op, f"out of memory: {exc}",
                                   device)
        detail = f" (input values: {self._describe_inputs(node, frame)})" if node.inputs else ""
        return errors.op_error(errors.InvalidArgumentError, op,
                               f"{type(exc).__name__}: {exc}{detail}", device)

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
            user = self.user_graph.get_operation_by_name(op.name)
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


class _UnusedArg:
    """The feed slot of an argument no op reads (a pass removed its ``_Arg``)."""

    def __init__(self, index):
        self.index = index


def lower(graph, num_feeds, num_fetches, *, partial: bool = False):
    """The graph's ops without its boundary, the tensors fed (by ``_Arg`` index) and the
    tensors fetched (by ``_Retval`` index).

    A whole step graph fetches every index; a partition (``partial``) fetches some of them and
    reads some feeds, and the others are None."""
    args = [None if partial else _UnusedArg(i) for i in range(num_feeds)]
    retvals = [None] * num_fetches
    ops = []
    for op in graph.get_operations():
        if op.type == ARG_TYPE:
            args[op.attrs["index"]] = op.outputs[0]
        elif op.type == RETVAL_TYPE:
            retvals[op.attrs["index"]] = op.inputs[0]
        elif op.type not in RESULT_TYPES:
            ops.append(op)
    if not partial and any(t is None for t in retvals):
        missing = [i for i, t in enumerate(retvals) if t is None]
        raise errors.InternalError(None, None, f"the optimized step graph lost the _Retval ops "
                                               f"of fetches {missing}")
    return ops, args, retvals
