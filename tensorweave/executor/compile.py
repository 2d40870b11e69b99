"""Compile one Session.run signature (fetches, feeds, targets) into a runnable step.

    snapshot -> passes (tw.passes.PIPELINE) -> [place -> partition] -> lower -> schedule -> runner

``snapshot`` copies the ops the signature needs into a graph of the step's own, feeds as
``_Arg`` and fetches as ``_Retval`` ops; the passes rewrite that graph (never the user's).

On one device (the default: the session's cluster is this process's one CPU) the whole step
graph becomes one ``DeviceProgram``. With several devices (virtual CPUs from
``ConfigProto(device_count=...)``, GPUs) the step graph is placed
(``config.placement_strategy``, honouring the user's pins), cut into one partition per device
joined by ``_Send``/``_Recv`` pairs, and each partition becomes a ``DeviceProgram``; a
``MultiDeviceProgram`` runs them concurrently. Steps are cached by the Session per signature;
the graph is append-only, so a cached step never goes stale.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time

import numpy as np

from tensorweave import passes
from tensorweave.executor.device_program import DeviceProgram
from tensorweave.executor.multidevice import MultiDeviceProgram
from tensorweave.placement.api import plan as place
from tensorweave.placement.cost_model import CostModel
from tensorweave.placement.partition import partition


class CompiledStep:
    def __init__(self, graph, fetches, feeds, targets, config, pool_factory, cluster=None,
                 device_pool_factory=None, feed_shapes=None, arg_shapes=None, remote=None,
                 pins=None):
        self.graph = graph
        self.fetches = list(fetches)
        self.feeds = list(feeds)
        self.targets = list(targets)
        self.optimized, self.changes = optimize(graph, self.fetches, self.feeds, self.targets,
                                                config, arg_shapes)
        feed_names = [t.name for t in self.feeds]
        self.plan = None
        self.partitions = None
        self.remote = remote
        if remote is None and (cluster is None or len(cluster) == 1):
            device = "" if cluster is None else next(iter(cluster)).name
            self.device_programs = [DeviceProgram(graph, self.optimized, feed_names,
                                                  len(self.fetches), config, pool_factory)]
            self.program = self.device_programs[0].program
            self.schedule = self.device_programs[0].schedule
            self.ops = self.device_programs[0].ops
            self._runner = self.device_programs[0]
            self.devices = [device] if device else []
            return
        for op in self.optimized.get_operations():
            if pins and op.type == "VariableV2" and op.name in pins:
                op._set_device(pins[op.name])  # where the session keeps this variable
        cost_model = CostModel(cluster, feed_shapes=self._arg_shapes(feed_shapes))
        self.plan = place(self.optimized, cluster, strategy=config.placement_strategy,
                          allow_soft_placement=config.allow_soft_placement,
                          cost_model=cost_model)
        self.partitions = partition(
            self.optimized, self.plan.placement, transfer_dtype=config.transfer_dtype,
            tensor_bytes=cost_model.output_bytes,
            incarnations=remote.device_incarnations() if remote is not None else None)
        if config.dump_dir:
            self._dump_partitions(config.dump_dir)
        self.devices = list(self.partitions.graphs)
        if remote is not None:
            from tensorweave.executor.remote import RemoteProgram  # noqa: PLC0415 (Ray)
            self.device_programs = []
            self.program = RemoteProgram(remote, self.partitions, graph, feed_names,
                                         len(self.fetches), config)
            self.schedule = None
            self.ops = [op for g in self.partitions.graphs.values()
                        for op in g.get_operations()]
            self._runner = self.program
            return
        self.device_programs = [
            DeviceProgram(graph, part, feed_names, len(self.fetches), config, pool_factory,
                          device=device, xp=_array_module(cluster.device(device)),
                          partial=True)
            for device, part in self.partitions.graphs.items()]
        self.program = MultiDeviceProgram(self.device_programs, len(self.fetches),
                                          device_pool_factory(), config.operation_timeout_in_ms)
        self.schedule = None
        self.ops = [op for p in self.device_programs for op in p.ops]
        self._runner = self.program

    def _dump_partitions(self, dump_dir):
        """``partitions.txt`` (the transfer table, then every partition's graph) next to the
        passes' dumps of this signature."""
        directory = os.path.join(dump_dir, _signature_dirname(self.fetches, self.feeds,
                                                              self.targets))
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "partitions.txt"), "w", encoding="utf-8") as f:
            f.write(self.partitions.summary() + "\n\n" + str(self.partitions) + "\n")

    def _arg_shapes(self, feed_shapes) -> dict:
        """The first run's feed shapes by ``_Arg`` tensor name (the cost model sizes the
        unknown dims of the step from them)."""
        if not feed_shapes:
            return {}
        return {op.outputs[0].name: tuple(feed_shapes[op.attrs["index"]])
                for op in self.optimized.get_operations()
                if op.type == "_Arg" and feed_shapes[op.attrs["index"]] is not None}

    @property
    def parallel(self) -> bool:
        return len(self.device_programs) != 1 or self.device_programs[0].parallel

    @property
    def stale(self) -> bool:
        """Whether a remote task restarted since this step was registered there."""
        return self.remote is not None and self.program.stale

    def run(self, ctx, feed_values, run_metadata=None):
        # Floating-point warnings are off for the whole step: like TF, ops return inf/nan
        # silently, and one errstate per step is cheaper than one per kernel call.
        try:
            with np.errstate(all="ignore"):
                if run_metadata is None:
                    return self._runner.run(ctx, feed_values)
                return self._run_traced(ctx, feed_values, run_metadata)
        except Exception as e:
            error = self._translate(e, sys.exc_info()[2])
            if error is e:
                raise
            raise error from e

    def _run_traced(self, ctx, feed_values, run_metadata):
        stats: list = []
        t0 = time.perf_counter()
        run_metadata.wall_start = time.time()
        run_metadata.step_id = ctx.step_id
        try:
            return self._runner.run(ctx, feed_values, stats, t0)
        finally:
            run_metadata.step_stats = sorted(stats, key=lambda s: (s.start_us, s.node_name))
            run_metadata.partitions = self.partitions

    def _translate(self, exc, tb):
        if len(self.device_programs) != 1:
            return exc  # each device's program translated its own failure
        return self.device_programs[0].translate(exc, tb)


def _array_module(device):
    """numpy for CPU devices; cupy for GPUs (imported only when a GPU device is used)."""
    if device.device_type == "GPU":
        import cupy  # noqa: PLC0415 - the optional GPU extra
        return cupy
    return np


def optimize(graph, fetches, feeds, targets, config, arg_shapes=None):
    """The step's own graph for the signature, after the pipeline: (graph, change lines).
    ``arg_shapes`` (one shape or None per feed) specializes the step to the shapes that will
    be fed, which must be compatible with the fed tensors' declared shapes."""
    chosen = passes.pipeline(config.disabled_passes)
    step_graph = passes.snapshot(graph, fetches, feeds, targets, arg_shapes)
    options = passes.PassOptions(config=config,
                                 feed_shapes={op.attrs["index"]: op.attrs["shape"]
                                              for op in step_graph.get_operations()
                                              if op.type == "_Arg"},
                                 fold_limit=config.max_folded_constant_elements)
    dump_dir = None
    if config.dump_dir:
        dump_dir = os.path.join(config.dump_dir,
                                _signature_dirname(fetches, feeds, targets, arg_shapes))
    result = passes.run_pipeline(step_graph, chosen, options=options,
                                 verify=config.verify_passes, dump_dir=dump_dir)
    return result.graph, result.changes


def _signature_dirname(fetches, feeds, targets, arg_shapes=None) -> str:
    """``<first fetch>-<hash>``: one dump directory per compiled signature (and fed shapes it
    is specialized for), stable across runs."""
    fetched = [t.name for t in fetches] + [op.name for op in targets]
    signature = "|".join(fetched) + "<-" + "|".join(t.name for t in feeds)
    if arg_shapes is not None:
        signature += "@" + repr([None if s is None else tuple(s) for s in arg_shapes])
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", fetched[0] if fetched else "nothing")[:40]
    return f"{label}-{hashlib.sha1(signature.encode()).hexdigest()[:8]}"
