"""``Session``: runs the graph for the fetches asked, compiling each distinct signature once.

``run`` does, per call, only what depends on the values: look up the compiled step by the
structure of the fetches and the feed keys, check and convert the feeds, run the step, commit
the step's variable updates, rebuild the fetch structure. Everything else happened when the
signature was first compiled.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import os
import sys

import numpy as np

from tensorweave import errors
from tensorweave.executor import host_memory
from tensorweave.executor.compile import CompiledStep
from tensorweave.executor.config import ConfigProto
from tensorweave.executor.context import StepContext, VariableStore
from tensorweave.executor.fetches import FetchStructure, resolve, structure_key
from tensorweave.executor.remote import (RemoteCluster, RemoteVariableStore, StaleStepError,
                                         parse_target, task_label)
from tensorweave.graph import core
from tensorweave.graph.core import Tensor
from tensorweave.placement.api import plan as placement_plan
from tensorweave.placement.devices import Cluster
from tensorweave.placement.step_plan import StepPlan


class Session:
    """A place to run a graph: owns variable values and compiled steps.

    >>> with tw.Session() as sess:
    ...     sess.run(y, feed_dict={x: [[1.0, 2.0]]})
    """

    def __init__(self, target: str = "", graph=None, config: ConfigProto | None = None):
        host_memory.tune()  # large temporaries stay mapped between steps (host_memory.py)
        self.graph = graph if graph is not None else core.get_default_graph()
        self.target = target
        self.config = config or ConfigProto()
        self._closed = False
        self._signatures: dict = {}   # (fetch structure, feed keys) -> _Signature
        self._store = VariableStore()
        self._step_ids = itertools.count(1)
        self._pool = None
        self._device_pool = None
        self._cluster = None
        self._pins: dict = {}           # VariableV2 op name -> the device that keeps it
        self._pinned_ops = 0            # graph size when the pins were last computed
        self._remote = None
        if parse_target(target) is not None:
            self._remote = RemoteCluster(target, self.config.cluster_def,
                                         self.config.device_count or None)
            self._store = RemoteVariableStore(self._remote, self._variable_owners)

    # -- running ----------------------------------------------------------------------------
    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        """Compute ``fetches`` (any nesting of tensors, ops and names) given ``feed_dict``."""
        if self._closed:
            raise RuntimeError("attempted to use a closed Session")
        feed_dict = feed_dict or {}
        signature, feed_values, step = self._prepare(fetches, feed_dict)
        ctx = StepContext(self._store, next(self._step_ids))
        try:
            results = step.run(ctx, feed_values, run_metadata)
        except StaleStepError:
            # A remote task restarted since the step was registered there: compile it again
            # for the new incarnations and run it once more.
            self._remote.refresh()
            step = self._step(signature, feed_values)
            ctx = StepContext(self._store, next(self._step_ids))
            results = step.run(ctx, feed_values, run_metadata)
        if ctx.updates:
            self._store.commit(ctx.updates)
        values = {}
        for t, value in zip(step.fetches, results):
            values[t] = _fetched(value)
        return signature.structure.rebuild(values)

    def _compiled_steps(self) -> list:
        """Every compiled step of this session, in the order they were compiled."""
        return [step for signature in self._signatures.values()
                for step in signature.steps.values()]

    def _prepare(self, fetches, feed_dict):
        """The signature of this call, its checked feed values, and the step to run them."""
        signature = self._signature(fetches, feed_dict)
        feed_values = [check(value) for check, value in zip(signature.checks,
                                                            feed_dict.values())]
        return signature, feed_values, self._step(signature, feed_values)

    def _signature(self, fetches, feed_dict) -> _Signature:
        """What a run signature (fetch structure and feed keys) fetches and feeds, and its
        compiled steps; made the first time the signature is seen."""
        key = (structure_key(fetches), tuple(feed_dict))
        signature = self._signatures.get(key)
        if signature is None:
            structure = FetchStructure(self.graph, fetches)
            feeds = []
            for name in feed_dict:
                tensor = resolve(self.graph, name, "feed")
                if not isinstance(tensor, Tensor):
                    tensor = _single_output(tensor)
                if tensor in feeds:
                    raise ValueError(f"tensor {tensor.name} is fed twice")
                feeds.append(tensor)
            signature = _Signature(structure, feeds)
            self._signatures[key] = signature
        return signature

    def _step(self, signature, feed_values):
        """The compiled step for these (checked) feed values: the one compiled for their shapes
        (compiled now if it is new), or the generic one once the signature has
        ``config.max_shape_specializations`` of them."""
        shapes = signature.shapes_of(feed_values)
        step = signature.steps.get(shapes)
        if step is not None and not step.stale:  # stale: a remote task restarted since
            return step
        if step is None and shapes is not None and \
                signature.specialized() >= self.config.max_shape_specializations:
            shapes = None
            step = signature.steps.get(None)
            if step is not None and not step.stale:
                return step
        step = self._compile(signature, shapes, feed_values)
        signature.steps[shapes] = step
        return step

    def _compile(self, signature, shapes, feed_values):
        structure = signature.structure

        def compile_for(arg_shapes):
            return CompiledStep(self.graph, structure.tensors, signature.feeds,
                                structure.targets, self.config, self._thread_pool, self.cluster,
                                self._device_threads, feed_shapes=[v.shape for v in feed_values],
                                arg_shapes=arg_shapes, remote=self._remote,
                                pins=self._variable_pins())

        try:
            step = compile_for(signature.arg_shapes(shapes))
        except (errors.InternalError, ValueError, TypeError):
            if shapes is None:
                raise
            # The fed shapes make some op's shape inference fail while compiling (a reshape to
            # the wrong size, say): the generic step reports that when the op runs, in the
            # terms of its kernel, naming the op and the user's line.
            step = compile_for(None)
        self._log_placement(step, structure.tensors + structure.targets,
                            dict(zip(signature.feeds, feed_values)))
        return step

    # -- placement --------------------------------------------------------------------------
    def placement_plan(self, fetches=None, feed_dict=None):
        """Where the ops ``run(fetches, feed_dict)`` needs (all of the graph when ``fetches``
        is None) would run on this session's devices (``Cluster.local(config)``, so
        ``device_count`` counts), with ``config.placement_strategy`` and
        ``config.allow_soft_placement``: a ``tw.placement.Plan``.

        >>> print(sess.placement_plan(train_op).summary())
        """
        return placement_plan(self.graph, Cluster.local(self.config),
                              strategy=self.config.placement_strategy, fetches=fetches,
                              feed_dict=feed_dict,
                              allow_soft_placement=self.config.allow_soft_placement)

    def step_plan(self, fetches, feed_dict=None) -> StepPlan:
        """What ``run(fetches, feed_dict)`` runs where: the placement of the optimized step
        graph and its partitions with every inserted ``_Send``/``_Recv`` pair (a
        ``tw.placement.StepPlan``). Compiles the step (once, as ``run`` would) without running
        it; ``feed_dict`` values give the plan its shapes.

        >>> print(sess.step_plan(train_op, {x: xs, y_: ys}).summary())
        """
        if self._closed:
            raise RuntimeError("attempted to use a closed Session")
        _, _, step = self._prepare(fetches, feed_dict or {})
        return step_plan_of(step, self.remote_tasks)

    def _log_placement(self, step, fetches, feed_dict):
        """``ConfigProto(log_device_placement=True)``: print the placement to stderr, once per
        compiled step (TF1 printed a line per op, every time): the step's own plan and
        partitions when it runs on several devices, else the plan of the user's graph."""
        if not self.config.log_device_placement:
            return
        if step.partitions is not None:
            print(step_plan_of(step, self.remote_tasks).summary(), file=sys.stderr)
        else:
            print(self.placement_plan(fetches, feed_dict).summary(), file=sys.stderr)

    @property
    def cluster(self) -> Cluster:
        """The devices this session runs on: ``Cluster.local(config)``, or the devices of the
        remote tasks."""
        if self._cluster is None:
            self._cluster = (self._remote.placement_cluster if self._remote is not None
                             else Cluster.local(self.config))
        return self._cluster

    @property
    def remote_tasks(self) -> dict:
        """``{"/job:worker/task:0": {"pid", "host", "node", "incarnation"}, ...}`` for a remote
        session (empty in-process)."""
        if self._remote is None:
            return {}
        return {task_label(t): {k: v for k, v in info.items() if k != "link"}  # a secret
                for t, info in self._remote.nodes.items()}

    def _variable_pins(self) -> dict:
        """Where each variable lives, fixed for the session: one placement of the whole
        graph decides it the first time a variable is seen, so every compiled step reads and
        updates it on the same device (on one device there is nothing to decide)."""
        if self._remote is None and len(self.cluster) == 1:
            return {}
        ops = self.graph.get_operations()
        if len(ops) != self._pinned_ops:
            variables = [op for op in ops if op.type == "VariableV2"]
            if any(op.name not in self._pins for op in variables):
                whole = placement_plan(self.graph, self.cluster,
                                       strategy=self.config.placement_strategy,
                                       allow_soft_placement=self.config.allow_soft_placement)
                for op in variables:
                    self._pins.setdefault(op.name, whole.device_of(op.name))
            self._pinned_ops = len(ops)
        return self._pins

    def _variable_owners(self) -> dict:
        """``{store name: remote task}`` of every variable of the graph."""
        pins = self._variable_pins()
        return {op.attrs["shared_name"]: self._remote.task_of(pins[op.name])
                for op in self.graph.get_operations() if op.type == "VariableV2"}

    def _device_threads(self):
        """Threads that run the partitions of multi-device steps (one per device; the calling
        thread runs one partition itself)."""
        if self._device_pool is None:
            self._device_pool = cf.ThreadPoolExecutor(max_workers=max(1, len(self.cluster)),
                                                      thread_name_prefix="tensorweave-device")
        return self._device_pool

    def _thread_pool(self):
        if self._pool is None:
            threads = self.config.inter_op_parallelism_threads or os.cpu_count() or 1
            self._pool = cf.ThreadPoolExecutor(max_workers=threads,
                                               thread_name_prefix="tensorweave-inter-op")
        return self._pool

    # -- variable state (used by the training layer) ----------------------------------------
    @property
    def variable_store(self) -> VariableStore:
        return self._store

    # -- lifecycle --------------------------------------------------------------------------
    def close(self):
        if self._closed:
            return
        self._closed = True
        self._signatures.clear()
        if self._remote is not None:
            self._remote.shutdown()
        for pool in (self._pool, self._device_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        self._pool = self._device_pool = None

    @property
    def closed(self) -> bool:
        return self._closed

    def as_default(self):
        return _DefaultSession(self)

    def __enter__(self):
        self._context = _DefaultSession(self)
        self._context.__enter__()
        return self

    def __exit__(self, *exc):
        self._context.__exit__(*exc)
        self.close()
        return False

    def __del__(self):
        try:
            for pool in (self._pool, self._device_pool):
                if pool is not None:
                    pool.shutdown(wait=False)
        except Exception:
            pass


class InteractiveSession(Session):
    """A Session that makes itself the default on creation (for shells and notebooks)."""

    def __init__(self, target: str = "", graph=None, config=None):
        super().__init__(target, graph, config)
        self._interactive = _DefaultSession(self)
        self._interactive.__enter__()

    def close(self):
        if not self._closed:
            self._interactive.__exit__(None, None, None)
        super().close()


class _DefaultSession:
    def __init__(self, session):
        self.session = session
        self._graph_ctx = None

    def __enter__(self):
        core.push_default_session(self.session)
        self._graph_ctx = self.session.graph.as_default()
        self._graph_ctx.__enter__()
        return self.session

    def __exit__(self, *exc):
        self._graph_ctx.__exit__(*exc)
        core.pop_default_session(self.session)
        return False


class _Signature:
    """One run signature: its fetch structure, fed tensors with their checks, and its compiled
    steps by the shapes fed for the feeds whose declared shape has unknown dims (``None``: the
    generic step, compiled for the declared shapes)."""

    __slots__ = ("structure", "feeds", "checks", "open_feeds", "steps")

    def __init__(self, structure, feeds):
        self.structure = structure
        self.feeds = feeds
        self.checks = [FeedCheck(t) for t in feeds]
        self.open_feeds = tuple(i for i, t in enumerate(feeds) if not t.shape.is_fully_defined())
        self.steps: dict = {}

    def shapes_of(self, feed_values):
        """The key of the step specialized for ``feed_values`` (None if no shape is open)."""
        if not self.open_feeds:
            return None
        return tuple(feed_values[i].shape for i in self.open_feeds)

    def specialized(self) -> int:
        return len(self.steps) - (None in self.steps)

    def arg_shapes(self, shapes):
        """The shape of each feed's ``_Arg`` in the step for ``shapes`` (None: as declared)."""
        if shapes is None:
            return None
        args = [None] * len(self.feeds)
        for i, shape in zip(self.open_feeds, shapes):
            args[i] = shape
        return args


class FeedCheck:
    """Checks one fed value against its tensor and converts it to the tensor's dtype.

    A value converts when numpy can cast it "same kind" (float64 to float32, int to float, int64
    to int32); float to int, or anything to bool, is refused rather than silently truncated.
    """

    __slots__ = ("tensor", "np_dtype", "dims")

    def __init__(self, tensor: Tensor):
        self.tensor = tensor
        self.np_dtype = tensor.dtype.np
        self.dims = tensor.shape.as_tuple()

    def __call__(self, value):
        if type(value) is np.ndarray and value.dtype == self.np_dtype:
            array = value
        else:
            array = self._convert(value)
        dims = self.dims
        if dims is not None:
            shape = array.shape
            if len(shape) != len(dims) or any(d is not None and d != s
                                               for d, s in zip(dims, shape)):
                raise self._error(f"cannot feed a value of shape {shape} for tensor "
                                  f"'{self.tensor.name}', which has shape {self.tensor.shape}")
        return array

    def _convert(self, value):
        if isinstance(value, Tensor):
            raise TypeError(f"the value fed for '{self.tensor.name}' is a tw.Tensor; feed values "
                            f"must be numpy arrays, Python scalars or lists (run it first)")
        try:
            array = np.asarray(value)
        except Exception as e:
            raise self._error(f"cannot convert the fed value to an array: {e}") from None
        if array.dtype == self.np_dtype:
            return array
        if array.dtype == object or not _safe_cast(array.dtype, self.np_dtype):
            raise self._error(f"cannot feed a value of dtype {array.dtype} for tensor "
                              f"'{self.tensor.name}' of dtype {self.tensor.dtype.name} without "
                              f"losing information (cast it first)")
        return array.astype(self.np_dtype)

    def _error(self, message):
        return errors.op_error(errors.InvalidArgumentError, self.tensor.op, message)


def _safe_cast(src, dst) -> bool:
    if dst.kind == "b":
        return src.kind == "b"
    if src.kind == "b":
        return False
    if np.can_cast(src, dst, casting="same_kind"):
        return True
    # numpy extension floats (bfloat16) do not take part in can_cast's kinds
    return src.kind in "iuf" and dst.kind in "fV" and dst.itemsize >= 2 and src.kind != "c"


def step_plan_of(step, tasks=None) -> StepPlan:
    return StepPlan(step.plan, step.partitions, step.changes, step.devices, step.ops, tasks)


def _single_output(op):
    if len(op.outputs) != 1:
        raise ValueError(f"feed key {op.name!r} names an operation with {len(op.outputs)} "
                         f"outputs; name one of its tensors as '{op.name}:0'")
    return op.outputs[0]


def _fetched(value):
    """Hand a value to the user: never a view of state the session keeps (constants, variables)."""
    if isinstance(value, np.ndarray) and not value.flags.writeable:
        return value.copy()
    if isinstance(value, np.ndarray) or np.isscalar(value):
        return value
    return np.asarray(value)
