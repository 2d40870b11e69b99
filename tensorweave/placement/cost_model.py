"""The cost model: how long an op takes on a device, how many bytes its outputs hold, how long a
tensor takes to cross a link.

* **Op time** on a device = ``max(flops / peak_flops, bytes / memory_bandwidth)`` + the device's
  per-op ``launch_overhead`` (a roofline: an op is bound by compute or by memory traffic, and
  every op pays its dispatch). Flops and bytes come from the op's ``OpDef.cost`` rule
  (``registry.cost_of``), evaluated on the op's *resolved* shapes.
* **Resolved shapes**: unknown dims are filled in, in graph order, by these rules:

  1. a fed tensor has the shape it is fed (``feed_shapes``);
  2. an op whose outputs are not fully known re-runs its ``OpDef.infer`` on its inputs'
     resolved shapes, so the batch size of a fed placeholder flows through matmuls, reshapes...;
  3. a dim still unknown is the *batch size* when it is dim 0 (the most common leading dim of
     the fed shapes), else ``default_dim``; an unknown rank is a vector of ``default_dim``.

* **Pass-through ops** (``PASS_THROUGH_OPS``: a constant, a fed value, a variable's buffer, an
  identity, a step argument or result, a no-op) hand a pointer on: no kernel runs and no bytes
  move, so they cost no flops or bytes and take only the executor's dispatch,
  ``min(launch_overhead, PASS_THROUGH_OVERHEAD)`` — not a kernel launch, and not the roofline
  of their output size (which made reading a 32 MB weight look like a 70 us copy).
* **Transfer time** = the link's latency + bytes / its bandwidth (zero on the same device).
* **Calibration** (``calibrate()``) replaces a device type's peak flop/s, bandwidth and launch
  overhead with values measured on this machine. Measured CPU numbers describe the whole host,
  so virtual CPUs of one host share them evenly; a GPU's numbers are per GPU.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import platform
import tempfile
import time

import numpy as np

from tensorweave.graph.shapes import TensorShape
from tensorweave.ops import registry
from tensorweave.ops.registry import Cost, default_cost
from tensorweave.placement.devices import Cluster, Device, DeviceProfile


# Op types whose kernel hands on a pointer (the stored constant, the fed value, the variable's
# buffer, its input) or does nothing. What an op costs belongs with its OpDef; these types have
# no cost rule there, and the default rule (read the inputs, write the outputs) overstates them.
PASS_THROUGH_OPS = frozenset({
    "Const", "Placeholder", "PlaceholderWithDefault", "VariableV2", "Identity", "StopGradient",
    "_Arg", "_Retval", "_Targets", "NoOp",
})

# Seconds of executor bookkeeping for an op that launches no kernel: what calibrate() measured
# per op of a Session step on the development machine (~1 us). A device whose whole launch
# overhead is smaller pays that instead.
PASS_THROUGH_OVERHEAD = 1e-6


def _no_traffic(op) -> Cost:
    return Cost(0.0, 0.0, 0.0)


# Cost rules the cost model applies before the OpDef's own (a default rule plus overrides).
COST_RULES = {op_type: _no_traffic for op_type in PASS_THROUGH_OPS}


class CostModel:
    """Estimated op times, output bytes and transfer times on one cluster."""

    def __init__(self, cluster: Cluster, feed_shapes: dict | None = None, default_dim: int = 32,
                 calibration: dict | None = None):
        if default_dim < 1:
            raise ValueError(f"default_dim must be at least 1, got {default_dim}")
        self.cluster = cluster
        self.default_dim = int(default_dim)
        self.feed_shapes = _normalize_feed_shapes(feed_shapes or {})
        self.batch_size = _batch_size(self.feed_shapes.values())
        self.calibration = calibration
        self._profiles = _calibrated_profiles(cluster, calibration)
        self._shapes: dict = {}   # Operation -> tuple of resolved output shapes (int tuples)
        self._costs: dict = {}    # Operation -> Cost on resolved shapes

    # -- the contract -------------------------------------------------------------------------
    def op_time(self, op, device: Device) -> float:
        """Seconds ``op`` takes on ``device`` (roofline + launch overhead; a pass-through op
        only its dispatch)."""
        profile = self.profile(device)
        if op.type in PASS_THROUGH_OPS:
            return min(profile.launch_overhead, PASS_THROUGH_OVERHEAD)
        cost = self.op_cost(op)
        compute = cost.flops / profile.peak_flops if profile.peak_flops > 0 else 0.0
        traffic = cost.bytes_read + cost.bytes_written
        memory = traffic / profile.memory_bandwidth if profile.memory_bandwidth > 0 else 0.0
        return max(compute, memory) + profile.launch_overhead

    def output_bytes(self, tensor) -> int:
        """Bytes ``tensor`` occupies, with unknown dims resolved."""
        shape = self.resolved_shape(tensor)
        return _product(shape) * tensor.dtype.size

    def transfer_time(self, nbytes, src: Device, dst: Device) -> float:
        """Seconds to move ``nbytes`` from ``src`` to ``dst``."""
        if src.name == dst.name:
            return 0.0
        link = self.cluster.link(src, dst)
        return link.latency + nbytes / link.bandwidth

    def op_memory(self, op) -> int:
        """Bytes the outputs of ``op`` occupy."""
        return sum(self.output_bytes(t) for t in op.outputs)

    # -- helpers ------------------------------------------------------------------------------
    def profile(self, device: Device) -> DeviceProfile:
        """The device's profile, calibrated when calibration was given."""
        return self._profiles.get(device.name, device.profile)

    def op_cost(self, op) -> Cost:
        """Flops and bytes of ``op`` on its resolved shapes (cached)."""
        cost = self._costs.get(op)
        if cost is None:
            cost = self._compute_cost(op)
            self._costs[op] = cost
        return cost

    def resolved_shape(self, tensor) -> tuple:
        """The tensor's shape as a tuple of ints (see the module docstring for the rules)."""
        shapes = self._shapes.get(tensor.op)
        if shapes is None:
            self._resolve(tensor.op)
            shapes = self._shapes[tensor.op]
        return shapes[tensor.value_index]

    def _compute_cost(self, op) -> Cost:
        proxy = _ResolvedOp(op, self._resolved_inputs(op),
                            [_ResolvedTensor(t, self._resolved_tensor_shape(t))
                             for t in op.outputs])
        op_def = registry.lookup(op.type)
        rule = (COST_RULES.get(op.type) or (op_def.cost if op_def is not None else None)
                or default_cost)
        try:
            return rule(proxy)
        except Exception:  # a cost rule that trips on an odd shape falls back to the default
            return default_cost(proxy)

    def _resolved_inputs(self, op) -> list:
        return [_ResolvedTensor(t, self._resolved_tensor_shape(t)) for t in op.inputs]

    def _resolved_tensor_shape(self, tensor) -> TensorShape:
        dims = self.resolved_shape(tensor)
        # Most tensors are fully known already: reuse their own TensorShape.
        return tensor.shape if tensor.shape.as_tuple() == dims else TensorShape(dims)

    # -- shape resolution ---------------------------------------------------------------------
    def _resolve(self, op):
        """Resolve ``op`` and every op it depends on, inputs first (iteratively: graphs of
        100,000 ops are deeper than Python's recursion limit)."""
        stack = [op]
        while stack:
            top = stack[-1]
            if top in self._shapes:
                stack.pop()
                continue
            pending = [t.op for t in top.inputs if t.op not in self._shapes]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            self._shapes[top] = self._resolve_outputs(top)

    def _resolve_outputs(self, op) -> tuple:
        known = [self._fed_or_static(t) for t in op.outputs]
        if all(s.is_fully_defined() for s in known):
            return tuple(s.as_tuple() for s in known)
        inferred = self._infer_on_resolved_inputs(op)
        result = []
        for i, shape in enumerate(known):
            if inferred is not None and i < len(inferred):
                shape = _merge_prefer_known(shape, inferred[i])
            result.append(self._fill_unknown(shape))
        return tuple(result)

    def _fed_or_static(self, tensor) -> TensorShape:
        fed = self.feed_shapes.get(tensor.name)
        return fed if fed is not None else tensor.shape

    def _infer_on_resolved_inputs(self, op):
        """Output shapes from the op's own inference on resolved inputs, or None."""
        changed = any(self.resolved_shape(t) != t.shape.as_tuple() for t in op.inputs)
        op_def = registry.lookup(op.type)
        if not changed or op_def is None:
            return None
        try:
            specs = op_def.infer(_ResolvedOp(op, self._resolved_inputs(op), op.outputs))
        except Exception:  # inference that needs more than shapes: fall back to the dim rule
            return None
        return [TensorShape(shape) for _, shape in specs]

    def _fill_unknown(self, shape: TensorShape) -> tuple:
        dims = shape.as_tuple()
        if dims is None:
            return (self.default_dim,)
        batch = self.batch_size or self.default_dim
        return tuple((batch if i == 0 else self.default_dim) if d is None else d
                     for i, d in enumerate(dims))


class _ResolvedTensor:
    """A tensor seen with its resolved shape; everything else is the real tensor's."""

    __slots__ = ("_tensor", "shape")

    def __init__(self, tensor, shape: TensorShape):
        self._tensor = tensor
        self.shape = shape

    def get_shape(self) -> TensorShape:
        return self.shape

    def __getattr__(self, name):
        return getattr(self._tensor, name)


class _ResolvedOp:
    """An op seen with resolved input/output tensors, for OpDef infer and cost rules."""

    def __init__(self, op, inputs, outputs):
        self._op = op
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)

    def __getattr__(self, name):
        return getattr(self._op, name)


def _merge_prefer_known(static: TensorShape, inferred: TensorShape) -> TensorShape:
    a, b = static.as_tuple(), inferred.as_tuple()
    if a is None:
        return inferred
    if b is None or len(a) != len(b):
        return static
    return TensorShape([x if x is not None else y for x, y in zip(a, b)])


def _normalize_feed_shapes(feed_shapes: dict) -> dict:
    """``{tensor name: TensorShape}`` from keys that are Tensors, "op:0" or "op" names and
    values that are shapes (TensorShape, tuple, list of ints) or arrays (their shape)."""
    result = {}
    for key, value in feed_shapes.items():
        name = key.name if hasattr(key, "name") and hasattr(key, "value_index") else str(key)
        if ":" not in name:
            name += ":0"
        result[name] = _as_feed_shape(value, name)
    return result


def _as_feed_shape(value, name) -> TensorShape:
    if isinstance(value, TensorShape):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(d, (int, np.integer)) or d is None
                                                for d in value):
        return TensorShape(value)
    if hasattr(value, "shape"):
        return TensorShape(tuple(value.shape))
    if np.isscalar(value):
        return TensorShape(())
    raise TypeError(f"feed shape of {name}: expected a shape or an array, got "
                    f"{type(value).__name__}")


def _batch_size(shapes) -> int | None:
    """The most common known leading dim of the fed shapes (ties: the larger), or None."""
    counts = collections.Counter(s.as_tuple()[0] for s in shapes
                                 if s.rank and s.as_tuple()[0] is not None)
    if not counts:
        return None
    return max(counts, key=lambda dim: (counts[dim], dim))


def _product(dims) -> int:
    total = 1
    for d in dims:
        total *= d
    return total


# -- calibration ---------------------------------------------------------------------------------
CALIBRATION_VERSION = 1


def default_cache_path() -> str:
    """``$XDG_CACHE_HOME/tensorweave/calibration.json`` (``~/.cache`` by default)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "tensorweave", "calibration.json")


def _calibrated_profiles(cluster: Cluster, calibration: dict | None) -> dict:
    """``{device name: profile}`` for the devices whose type the calibration measured."""
    if not calibration:
        return {}
    measured = calibration.get("devices", {})
    per_host_cpus = collections.Counter(d.host for d in cluster.devices if d.device_type == "CPU")
    profiles = {}
    for device in cluster.devices:
        values = measured.get(device.device_type)
        if not values:
            continue
        # Host CPU numbers are shared by the host's virtual CPUs; memory stays the device's.
        share = 1.0 / per_host_cpus[device.host] if device.device_type == "CPU" else 1.0
        profiles[device.name] = dataclasses.replace(
            device.profile,
            peak_flops=float(values.get("peak_flops", device.profile.peak_flops / share)) * share,
            memory_bandwidth=float(values.get("memory_bandwidth",
                                              device.profile.memory_bandwidth / share)) * share,
            launch_overhead=float(values.get("launch_overhead", device.profile.launch_overhead)))
    return profiles


def calibrate(cluster: Cluster | None = None, cache_path=None, force: bool = False) -> dict:
    """Measure this machine's devices once and cache the result as JSON.

    Measures, per local device type of ``cluster`` (default: ``Cluster.local()``): float32
    matmul flop/s, copy bandwidth (bytes read + written per second) and the per-op overhead of
    a Session step. Returns ``{"version", "machine", "devices": {TYPE: {peak_flops,
    memory_bandwidth, launch_overhead}}}``; pass it to ``CostModel(calibration=...)``. A cached
    result for the same machine is returned without measuring unless ``force``.
    """
    cluster = cluster or Cluster.local()
    path = os.fspath(cache_path) if cache_path is not None else default_cache_path()
    types = [t for t in cluster.device_types if t in _MEASURERS]
    machine = _machine_fingerprint()
    cached = None if force else _read_cache(path)
    if cached and cached.get("machine") == machine and all(t in cached["devices"] for t in types):
        return cached
    devices = dict(cached["devices"]) if cached and cached.get("machine") == machine else {}
    for device_type in types:
        devices[device_type] = _MEASURERS[device_type]()
    result = {"version": CALIBRATION_VERSION, "machine": machine, "devices": devices}
    _write_cache(path, result)
    return result


def _machine_fingerprint() -> dict:
    return {"node": platform.node(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "numpy": np.__version__}


def _read_cache(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != CALIBRATION_VERSION:
        return None
    if not isinstance(data.get("devices"), dict):
        return None
    return data


def _write_cache(path, data):
    # Write a temporary file next to the cache and rename it, so a crash never leaves half a file.
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".calibration-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _best_time(fn, repeats: int, sync=lambda: None) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def _measure_array_module(xp, sync=lambda: None, n=1024, copy_elements=1 << 23) -> dict:
    a = xp.ones((n, n), dtype=xp.float32)
    b = xp.ones((n, n), dtype=xp.float32)
    matmul = _best_time(lambda: xp.matmul(a, b), 5, sync)
    src = xp.ones(copy_elements, dtype=xp.float32)
    dst = xp.empty_like(src)
    copy = _best_time(lambda: xp.copyto(dst, src), 5, sync)
    return {"peak_flops": 2.0 * n ** 3 / matmul, "memory_bandwidth": 2.0 * src.nbytes / copy}


def _session_op_overhead(chain: int = 400) -> float:
    """Seconds per op of a Session step over a chain of scalar adds (dispatch, bookkeeping)."""
    # Calibration is a measurement of the runtime, so it reaches for a Session; imported here
    # because compile-time modules do not import the executor.
    from tensorweave.executor.session import Session
    from tensorweave.graph.core import Graph
    from tensorweave.ops.array import placeholder
    from tensorweave.graph import dtypes

    graph = Graph()
    with graph.as_default():
        x = placeholder(dtypes.float32, [], name="x")
        y = x
        for _ in range(chain):
            y = y + 1.0
    with Session(graph=graph) as sess:
        step = _best_time(lambda: sess.run(y, {x: 0.0}), 20)
    return step / chain


def _measure_cpu() -> dict:
    values = _measure_array_module(np)
    values["launch_overhead"] = _session_op_overhead()
    return values


def _measure_gpu() -> dict:
    import cupy

    def sync():
        cupy.cuda.Stream.null.synchronize()

    values = _measure_array_module(cupy, sync)
    one = cupy.ones((1,), dtype=cupy.float32)
    values["launch_overhead"] = _best_time(lambda: [cupy.add(one, one) for _ in range(100)],
                                           5, sync) / 100
    return values


_MEASURERS = {"CPU": _measure_cpu, "GPU": _measure_gpu}
