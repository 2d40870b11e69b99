"""Session options: ``ConfigProto``, ``RunOptions`` and ``RunMetadata`` (TF1 names)."""

from __future__ import annotations

import dataclasses

from tensorweave.ops.transfer import RECV_TYPE, SEND_TYPE, key_prefix


@dataclasses.dataclass
class ConfigProto:
    """How a Session compiles and runs graphs.

    * ``inter_op_parallelism_threads``: threads that run independent ops concurrently
      (0 = one per core).
    * ``device_count``: e.g. ``{"CPU": 4}`` splits the CPU into 4 virtual devices.
    * ``allow_soft_placement``: relax device pins that cannot be met (reported in the plan).
    * ``log_device_placement``: print the placement table once per compiled step.
    * ``disabled_passes``: names from ``tw.passes.PIPELINE`` to switch off.
    * ``verify_passes``: verify the graph after every pass.
    * ``dump_dir``: write the printed graph after every pass there, one subdirectory per
      compiled signature (``<first fetch>-<hash>/00_input.txt``, ``01_prune.txt``, ...).
    * ``max_folded_constant_elements``: constant folding never makes a larger constant.
    * ``placement_strategy``: "default", "etf" or "critical_path".
    * ``operation_timeout_in_ms``: deadline of a blocking receive (0 = none).
    * ``transfer_dtype``: "float16"/"bfloat16" to compress float32 tensors on cut edges.
    * ``cluster_def``: the tasks of a remote Session (a ``tw.train.ClusterSpec`` or its dict);
      ``device_count`` then gives each task's devices.
    * ``max_shape_specializations``: how many compiled steps one signature may have, one per
      distinct set of fed shapes (the step is compiled for the shapes it was fed, so ``Shape``
      and ``Size`` of a fed batch fold into constants and fusion sees real sizes); further
      shapes run one generic step compiled for the placeholders' declared shapes (0: always).
    """

    inter_op_parallelism_threads: int = 0
    intra_op_parallelism_threads: int = 0
    device_count: dict = dataclasses.field(default_factory=dict)
    allow_soft_placement: bool = False
    log_device_placement: bool = False
    disabled_passes: list = dataclasses.field(default_factory=list)
    verify_passes: bool = False
    dump_dir: str | None = None
    max_folded_constant_elements: int = 1 << 20
    placement_strategy: str = "default"
    operation_timeout_in_ms: int = 0
    transfer_dtype: str | None = None
    cluster_def: object = None
    max_shape_specializations: int = 8


@dataclasses.dataclass
class RunOptions:
    """Per-call options of ``Session.run``; ``trace_level=FULL_TRACE`` collects step stats."""

    NO_TRACE = 0
    SOFTWARE_TRACE = 1
    HARDWARE_TRACE = 2
    FULL_TRACE = 3

    trace_level: int = 0
    timeout_in_ms: int = 0


@dataclasses.dataclass
class NodeStats:
    """Timing of one op in one step (microseconds since the step started).

    ``transfer`` is the rendezvous key (without the step id) of a ``_Send`` or ``_Recv``: the
    same for both ends of a pair, so a trace can draw the arrow between them. A ``_Recv`` run
    by the dataflow runner spans from when the value was asked for to when it arrived."""

    node_name: str
    op_type: str
    device: str
    transfer: str
    start_us: float
    end_us: float
    thread: int = 0

    @property
    def duration_us(self) -> float:
        return self.end_us - self.start_us


def stats_label(op) -> tuple:
    """(name, type, device, transfer key) of ``op`` for its NodeStats."""
    prefix = key_prefix(op.attrs) if op.type in (SEND_TYPE, RECV_TYPE) else ""
    return (op.name, op.type, op.device, prefix)


@dataclasses.dataclass
class RunMetadata:
    """Filled by ``Session.run(..., run_metadata=md)``: ``step_stats`` per op, per device.

    ``partitions`` is the step's ``Partitioning`` when it ran on several devices (else None).
    """

    step_stats: list = dataclasses.field(default_factory=list)
    step_id: int = 0
    wall_start: float = 0.0
    partitions: object = None

    def devices(self) -> list:
        return sorted({s.device for s in self.step_stats})

    def stats_by_device(self) -> dict:
        """Device name -> its NodeStats in start order."""
        by_device: dict = {}
        for s in self.step_stats:
            by_device.setdefault(s.device, []).append(s)
        return by_device
