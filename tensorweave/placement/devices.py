"""Devices, their profiles, the links between them, and clusters of them.

A ``Cluster`` is every device placement may use, in *priority order* (TF's default rule: GPUs
first, then other accelerator types, then CPUs; within a type by job, replica, task and index).
Each ``Device`` has a full canonical name, the ``host`` it sits on and a ``DeviceProfile``
(memory, peak flop/s, memory bandwidth, per-op launch overhead). ``Cluster.link(a, b)`` says how
fast a tensor moves between two devices; it is composed from the cluster's ``LinkProfiles``:

* same device: free (infinite bandwidth, no latency);
* GPU <-> GPU on one host: the ``peer`` link (NVLink-class by default);
* host memory <-> host memory in one task: the in-process ``process`` link (rendezvous handoff);
* otherwise the path is a chain of hops — ``pcie`` from each accelerator end to its host's memory,
  plus ``host`` between two tasks of one machine or ``network`` between machines — and the link
  has the slowest hop's bandwidth and the sum of the hops' latencies.

Clusters come from the local process (``Cluster.local``), a JSON/YAML file (``from_file``), a dict
(``from_dict``, the inverse of ``to_dict``) or a ``tw.train.ClusterSpec``
(``from_cluster_spec``). Where the default numbers come from is written next to each of them.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import os
import re

from tensorweave.graph.device_names import DeviceSpec

_GiB = 1 << 30


class DeviceNotFoundError(KeyError):
    """A device name that names no device (or several) of a cluster."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
    """What one device can do: memory, peak compute, memory bandwidth, per-op overhead."""

    device_type: str            # "CPU" | "GPU" | ...
    memory_bytes: int
    peak_flops: float           # flop/s
    memory_bandwidth: float     # bytes/s
    launch_overhead: float = 0.0  # seconds added to every op (dispatch, kernel launch)

    def scaled(self, share: float) -> "DeviceProfile":
        """This profile's capacity divided among devices sharing it (``share`` = 1/n)."""
        return dataclasses.replace(self, memory_bytes=int(self.memory_bytes * share),
                                   peak_flops=self.peak_flops * share,
                                   memory_bandwidth=self.memory_bandwidth * share)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Measured with ``tw.placement.calibrate()`` on the development machine (a 2-core AMD EPYC VM,
# numpy with OpenBLAS): 34 GFLOP/s float32 1024x1024 matmul on both cores, 23 GB/s copy
# bandwidth (bytes read + written), 0.8 us per op through a Session (1 us used). Used for CPUs
# of clusters the user describes without numbers; the local CPU scales the compute per core
# (see ``Cluster.local``).
CPU_PROFILE = DeviceProfile("CPU", memory_bytes=16 * _GiB, peak_flops=3.4e10,
                            memory_bandwidth=2.3e10, launch_overhead=1e-6)
_CPU_FLOPS_PER_CORE = CPU_PROFILE.peak_flops / 2

# An A100-class GPU (A100 40GB SXM data sheet): 19.5 TFLOP/s float32 without tensor cores,
# 1,555 GB/s HBM2 bandwidth, 40 GiB; ~10 us per op for a CUDA launch plus cupy's dispatch.
GPU_PROFILE = DeviceProfile("GPU", memory_bytes=40 * _GiB, peak_flops=1.95e13,
                            memory_bandwidth=1.555e12, launch_overhead=1e-5)

DEFAULT_PROFILES = {"CPU": CPU_PROFILE, "GPU": GPU_PROFILE}


@dataclasses.dataclass(frozen=True)
class Device:
    """One device of a cluster."""

    name: str                   # "/job:localhost/replica:0/task:0/device:CPU:0"
    spec: DeviceSpec
    profile: DeviceProfile
    host: str                   # which machine; links across hosts are network links

    @property
    def device_type(self) -> str:
        return self.spec.device_type

    @property
    def task_key(self) -> tuple:
        """(job, replica, task): the process the device belongs to."""
        return (self.spec.job, self.spec.replica, self.spec.task)

    @property
    def short_name(self) -> str:
        """``/device:GPU:0`` — the name without job, replica and task."""
        return f"/device:{self.spec.device_type}:{self.spec.device_index}"

    def __hash__(self):
        # Strategies key dicts by device thousands of times; the name alone identifies it.
        return hash(self.name)

    def __str__(self):
        return self.name


@dataclasses.dataclass(frozen=True)
class Link:
    """How fast a tensor moves from one device to another."""

    bandwidth: float            # bytes/s (same device: inf)
    latency: float              # seconds

    def to_dict(self) -> dict:
        return {"bandwidth": self.bandwidth, "latency": self.latency}


SAME_DEVICE = Link(math.inf, 0.0)


@dataclasses.dataclass(frozen=True)
class LinkProfiles:
    """The link of each kind of hop; ``Cluster.link`` composes paths from them."""

    # Host memory to host memory inside one process: the in-memory rendezvous hands the array
    # over; counted as one pass over host memory (CPU_PROFILE's bandwidth) plus a queue handoff.
    process: Link = Link(2.3e10, 5e-6)
    # An accelerator to its host's memory: PCIe 4.0 x16 (32 GB/s theoretical, ~25 GB/s achieved).
    pcie: Link = Link(2.5e10, 1e-5)
    # GPU to GPU on one host: NVLink 3 as in A100 SXM machines (300 GB/s each way).
    peer: Link = Link(3e11, 1e-5)
    # Two tasks (processes) of one machine: shared-memory object store, ~5 GB/s, ~100 us.
    host: Link = Link(5e9, 1e-4)
    # Two machines: 25 Gb/s Ethernet, ~50 us.
    network: Link = Link(3.125e9, 5e-5)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name).to_dict() for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "LinkProfiles":
        d = dict(d or {})
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown link kind(s) {unknown}; the kinds are "
                             f"{[f.name for f in dataclasses.fields(cls)]}")
        values = {}
        for kind, spec in d.items():
            if not isinstance(spec, dict):
                raise TypeError(f"link {kind!r}: expected {{bandwidth: ..., latency: ...}}, "
                                f"got {spec!r}")
            base = getattr(cls(), kind)
            bandwidth = _quantity(spec.get("bandwidth", base.bandwidth), f"{kind}.bandwidth")
            latency = _seconds(spec.get("latency", base.latency), f"{kind}.latency")
            values[kind] = Link(bandwidth, latency)
        return cls(**values)


def _type_rank(device_type: str) -> int:
    # TF's default priority: GPUs, then any other accelerator type, then the host CPU.
    return {"GPU": 0, "CPU": 2}.get(device_type, 1)


def _priority_key(device: Device) -> tuple:
    s = device.spec
    return (_type_rank(s.device_type), s.device_type, s.job or "", s.replica or 0, s.task or 0,
            s.device_index or 0)


def full_name(job, replica, task, device_type, index) -> str:
    return f"/job:{job}/replica:{replica}/task:{task}/device:{device_type}:{index}"


def make_device(job, task, device_type, index, profile, host, replica=0) -> Device:
    """A Device with its full canonical name."""
    spec = DeviceSpec(job, replica, task, device_type, index)
    return Device(spec.to_string(), spec, profile, host)


class Cluster:
    """The devices placement may use, in priority order, and the links between them."""

    def __init__(self, devices, links: LinkProfiles | None = None):
        devices = sorted(devices, key=_priority_key)
        self.devices: tuple[Device, ...] = tuple(devices)
        self.links = links or LinkProfiles()
        self._by_name = {d.name: d for d in self.devices}
        if len(self._by_name) != len(self.devices):
            raise ValueError("a cluster cannot hold two devices of the same name")
        for d in self.devices:
            if d.spec.to_string() != d.name or None in (d.spec.job, d.spec.replica, d.spec.task,
                                                        d.spec.device_index):
                raise ValueError(f"device {d.name!r} needs a full name "
                                 f"(/job:J/replica:R/task:T/device:TYPE:I)")
        self._matching_cache: dict[str, tuple] = {}
        self._device_types = tuple(dict.fromkeys(d.device_type for d in self.devices))

    # -- lookup -----------------------------------------------------------------------------
    def device(self, name_or_spec) -> Device:
        """The one device a full or short name (``/gpu:0`` when unambiguous) names."""
        if isinstance(name_or_spec, Device):
            name_or_spec = name_or_spec.name
        if isinstance(name_or_spec, str) and name_or_spec in self._by_name:
            return self._by_name[name_or_spec]
        spec = DeviceSpec.from_string(name_or_spec)
        text = spec.to_string()
        if spec.device_type is None or spec.device_index is None:
            matches = _names(self.matching(spec)) or "no device"
            raise DeviceNotFoundError(f"{text or repr(name_or_spec)} does not name one device "
                                      f"(give a device type and index); it matches {matches}")
        found = self.matching(spec)
        if len(found) == 1:
            return found[0]
        if found:
            raise DeviceNotFoundError(f"{text} is ambiguous in this cluster: it matches "
                                      f"{_names(found)}; give the job and task")
        raise DeviceNotFoundError(f"no device {text} in this cluster{self._suggest(text)}")

    def matching(self, spec: DeviceSpec | str) -> list[Device]:
        """Devices matching a (possibly partial, wildcard) spec, in priority order."""
        # Ops repeat a few device strings thousands of times: cache by the string as given.
        key = spec if isinstance(spec, str) else DeviceSpec.from_string(spec).to_string()
        found = self._matching_cache.get(key)
        if found is None:
            parsed = DeviceSpec.from_string(spec)
            found = tuple(d for d in self.devices if parsed.matches(d.spec))
            self._matching_cache[key] = found
        return list(found)

    def _suggest(self, text: str) -> str:
        candidates = {d.name: d.name for d in self.devices}
        candidates.update({d.short_name: d.name for d in self.devices})
        close = difflib.get_close_matches(text, list(candidates), n=3, cutoff=0.5)
        if close:
            names = dict.fromkeys(candidates[c] for c in close)
            return "; did you mean " + " or ".join(names) + "?"
        return f"; it has {_names(self.devices)}"

    @property
    def device_types(self) -> list[str]:
        """The device types present, in priority order."""
        return list(self._device_types)

    def __iter__(self):
        return iter(self.devices)

    def __len__(self):
        return len(self.devices)

    def __eq__(self, other):
        return (isinstance(other, Cluster) and self.devices == other.devices
                and self.links == other.links)

    def __hash__(self):
        return hash((self.devices, self.links))

    def __repr__(self):
        return f"Cluster({_names(self.devices)})"

    # -- links ------------------------------------------------------------------------------
    def link(self, src: Device, dst: Device) -> Link:
        """The link a tensor takes from ``src`` to ``dst`` (see the module docstring)."""
        if src.name == dst.name:
            return SAME_DEVICE
        src_accel, dst_accel = src.device_type != "CPU", dst.device_type != "CPU"
        same_host = src.host == dst.host
        if same_host and src_accel and dst_accel:
            return self.links.peer
        hops = []
        if src_accel:
            hops.append(self.links.pcie)
        if dst_accel:
            hops.append(self.links.pcie)
        if src.task_key == dst.task_key:
            if not hops:
                hops.append(self.links.process)
        else:
            hops.append(self.links.host if same_host else self.links.network)
        return Link(min(h.bandwidth for h in hops), sum(h.latency for h in hops))

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def local(cls, config=None) -> "Cluster":
        """This process: the CPU (split into ``device_count["CPU"]`` virtual devices) and the
        GPUs cupy sees (at most ``device_count["GPU"]``), all in ``/job:localhost/task:0``."""
        counts = dict(getattr(config, "device_count", None) or
                      (config if isinstance(config, dict) else {}))
        n_cpu = int(counts.get("CPU", 1))
        if n_cpu < 1:
            raise ValueError(f"device_count['CPU'] must be at least 1, got {n_cpu}")
        host_cpu = local_cpu_profile()
        devices = [make_device("localhost", 0, "CPU", i, host_cpu.scaled(1.0 / n_cpu), "localhost")
                   for i in range(n_cpu)]
        gpus = local_gpu_profiles()
        limit = counts.get("GPU")
        if limit is not None:
            gpus = gpus[:int(limit)]
        devices += [make_device("localhost", 0, "GPU", i, p, "localhost")
                    for i, p in enumerate(gpus)]
        return cls(devices)

    @classmethod
    def from_file(cls, path) -> "Cluster":
        """Load a cluster description: JSON, or YAML (``.yaml``/``.yml``, needs PyYAML)."""
        path = os.fspath(path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise ImportError(f"reading the YAML cluster file {path} needs PyYAML (pip "
                                  f"install 'tensorweave[yaml]'), or write it as JSON") from None
            data = yaml.safe_load(text)
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"cluster file {path} is not valid JSON: {e}") from None
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError, KeyError) as e:
            raise type(e)(f"cluster file {path}: {e}") from None

    @classmethod
    def from_dict(cls, d) -> "Cluster":
        """A cluster from its dict form: explicit ``devices`` (what ``to_dict`` writes) or
        ``jobs`` with task counts/addresses and device counts (see ``CLUSTER_FILE_FORMAT``)."""
        if not isinstance(d, dict):
            raise TypeError(f"a cluster description must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - {"devices", "jobs", "links", "profiles"})
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in the cluster description")
        links = LinkProfiles.from_dict(d.get("links"))
        profiles = _profile_table(d.get("profiles"))
        devices = []
        if "devices" in d:
            devices += [_explicit_device(entry, profiles) for entry in d["devices"]]
        if "jobs" in d:
            for job, desc in _items_sorted(d["jobs"]):
                devices += _job_devices(job, desc, profiles)
        if not devices:
            raise ValueError("the cluster description has no devices (give 'devices' or 'jobs')")
        return cls(devices, links)

    @classmethod
    def from_cluster_spec(cls, spec, devices_per_task=None, profiles=None,
                          links: LinkProfiles | None = None) -> "Cluster":
        """Devices for every task of a ``tw.train.ClusterSpec`` (or its dict form).

        ``devices_per_task`` is ``{"CPU": 1, "GPU": 4}`` for every task, or per job
        (``{"worker": {"CPU": 1, "GPU": 4}, "ps": {"CPU": 1}}``); default one CPU per task.
        A task's host is its address's host part; tasks given only by count each get a
        machine of their own, named ``<job><task>``."""
        jobs = normalize_jobs(spec.as_dict() if hasattr(spec, "as_dict") else spec)
        table = _profile_table(profiles)
        devices = []
        for job, tasks in jobs.items():
            counts = _counts_for_job(devices_per_task, job, jobs)
            for task, address in tasks.items():
                host = address.rsplit(":", 1)[0] if address else f"{job}{task}"
                devices += _task_devices(job, task, host, counts, table)
        return cls(devices, links)

    def to_dict(self) -> dict:
        """The explicit dict form (round-trips through ``from_dict``)."""
        return {"devices": [{"name": d.name, "host": d.host, "profile": d.profile.to_dict()}
                            for d in self.devices],
                "links": self.links.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


CLUSTER_FILE_FORMAT = """\
A cluster file (JSON, or YAML) is a mapping with:

  jobs:       {<job>: {tasks: <count> | ["host:port", ...] | {<index>: "host:port"},
                       devices: {<TYPE>: <count> | {count: <n>, profile: <name or fields>}}}}
              (a job given as just its tasks has one CPU per task)
  devices:    [{name: "/job:J/replica:R/task:T/device:TYPE:I", host: <machine>,
                profile: <name or fields>}]      (the explicit form to_dict writes)
  profiles:   {<name>: {device_type, memory_bytes, peak_flops, memory_bandwidth,
                        launch_overhead}}        (named profiles; fields default from the type)
  links:      {process|pcie|peer|host|network: {bandwidth: <bytes/s>, latency: <seconds>}}

A device's profile defaults to the profile named like its type (CPU, GPU, or one of 'profiles').
Quantities may be numbers or strings with units: "40GiB", "900GB/s", "19.5T", "10us".
"""


# -- local discovery ---------------------------------------------------------------------------
def local_cpu_profile() -> DeviceProfile:
    """The local host's CPU: CPU_PROFILE's per-core compute times the cores, the machine's RAM."""
    cores = os.cpu_count() or 1
    return dataclasses.replace(CPU_PROFILE, memory_bytes=_host_memory_bytes(),
                               peak_flops=_CPU_FLOPS_PER_CORE * cores)


def _host_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return CPU_PROFILE.memory_bytes


@functools.lru_cache(maxsize=1)
def _cupy_gpu_profiles() -> tuple:
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no cupy, no driver or no device: a CPU-only process
        return ()
    return tuple(_gpu_profile_from_properties(cupy.cuda.runtime.getDeviceProperties(i))
                 for i in range(count))


def local_gpu_profiles() -> list[DeviceProfile]:
    """One profile per GPU that cupy sees (none when cupy is missing or sees no device)."""
    return list(_cupy_gpu_profiles())


def _gpu_profile_from_properties(props: dict) -> DeviceProfile:
    # Memory and bandwidth come from the device; peak flop/s is not reported by CUDA, so it
    # stays GPU_PROFILE's unless calibrate() measured it.
    memory = int(props.get("totalGlobalMem", GPU_PROFILE.memory_bytes))
    clock_khz, bus_bits = props.get("memoryClockRate"), props.get("memoryBusWidth")
    bandwidth = GPU_PROFILE.memory_bandwidth
    if clock_khz and bus_bits:
        bandwidth = 2.0 * clock_khz * 1e3 * bus_bits / 8  # double data rate
    return dataclasses.replace(GPU_PROFILE, memory_bytes=memory, memory_bandwidth=bandwidth)


# -- dict forms ----------------------------------------------------------------------------------
def normalize_jobs(jobs) -> dict:
    """``{job: {task_index: address or None}}`` from a ClusterSpec-style dict.

    A job is a task count (``2``), a list of addresses or a dict ``{index: address}``."""
    if not isinstance(jobs, dict):
        raise TypeError(f"a cluster spec is a dict of job name to tasks, got "
                        f"{type(jobs).__name__}")
    result = {}
    for job, tasks in _items_sorted(jobs):
        if not isinstance(job, str) or not re.match(r"^[A-Za-z0-9_\-.]+$", job):
            raise ValueError(f"job name {job!r} is not valid (letters, digits, '_', '-', '.')")
        result[job] = _normalize_tasks(job, tasks)
    return result


def _normalize_tasks(job, tasks) -> dict:
    if isinstance(tasks, bool):
        raise TypeError(f"job {job!r}: tasks must be a count, a list or a dict, got {tasks!r}")
    if isinstance(tasks, int):
        if tasks < 1:
            raise ValueError(f"job {job!r} must have at least one task, got {tasks}")
        return {i: None for i in range(tasks)}
    if isinstance(tasks, (list, tuple)):
        pairs = list(enumerate(tasks))
    elif isinstance(tasks, dict):
        pairs = [(_task_index(job, k), v) for k, v in tasks.items()]
    else:
        raise TypeError(f"job {job!r}: tasks must be a count, a list of addresses or a dict "
                        f"{{index: address}}, got {type(tasks).__name__}")
    if not pairs:
        raise ValueError(f"job {job!r} has no tasks")
    for index, address in pairs:
        if not isinstance(address, str) or not address:
            raise TypeError(f"job {job!r} task {index}: the address must be a 'host:port' "
                            f"string, got {address!r}")
    return dict(sorted(pairs))


def _task_index(job, key) -> int:
    try:
        index = int(key)
    except (TypeError, ValueError):
        raise ValueError(f"job {job!r}: task index {key!r} is not a number") from None
    if index < 0:
        raise ValueError(f"job {job!r}: task index {index} is negative")
    return index


def _items_sorted(mapping):
    return sorted(mapping.items(), key=lambda kv: str(kv[0]))


def _profile_table(profiles) -> dict:
    table = dict(DEFAULT_PROFILES)
    for name, fields in _items_sorted(profiles or {}):
        if isinstance(fields, DeviceProfile):
            table[name] = fields
        else:
            table[name] = _profile_from(fields, name, table)
    return table


def _profile_from(value, device_type, table) -> DeviceProfile:
    """A profile from a name, a DeviceProfile or a (partial) dict of fields."""
    if isinstance(value, DeviceProfile):
        return value
    if isinstance(value, str):
        if value in table:
            return table[value]
        if value == device_type:
            raise ValueError(f"device type {value!r} has no default profile: name one of "
                             f"'profiles' or give its fields")
        raise ValueError(f"unknown profile {value!r}; known: {sorted(table)}")
    fields = dict(value or {})
    kind = fields.get("device_type", device_type)
    base = table.get(kind) or table.get(device_type)
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(DeviceProfile)})
    if unknown:
        raise ValueError(f"unknown profile field(s) {unknown}")
    if base is None:
        missing = [f for f in ("memory_bytes", "peak_flops", "memory_bandwidth")
                   if f not in fields]
        if missing:
            raise ValueError(f"device type {kind!r} has no default profile: give {missing}")
        base = DeviceProfile(kind, 0, 0.0, 0.0)
    return DeviceProfile(
        device_type=kind,
        memory_bytes=int(_quantity(fields.get("memory_bytes", base.memory_bytes), "memory_bytes")),
        peak_flops=_quantity(fields.get("peak_flops", base.peak_flops), "peak_flops"),
        memory_bandwidth=_quantity(fields.get("memory_bandwidth", base.memory_bandwidth),
                                   "memory_bandwidth"),
        launch_overhead=_seconds(fields.get("launch_overhead", base.launch_overhead),
                                 "launch_overhead"))


def _explicit_device(entry, profiles) -> Device:
    if not isinstance(entry, dict) or "name" not in entry:
        raise ValueError(f"a device entry needs a 'name', got {entry!r}")
    spec = DeviceSpec.from_string(entry["name"])
    if None in (spec.job, spec.task, spec.device_type, spec.device_index):
        raise ValueError(f"device {entry['name']!r} needs a full name "
                         f"(/job:J/task:T/device:TYPE:I)")
    spec = dataclasses.replace(spec, replica=spec.replica or 0)
    profile = _profile_from(entry.get("profile", spec.device_type), spec.device_type, profiles)
    if profile.device_type != spec.device_type:
        raise ValueError(f"device {entry['name']!r} has a {profile.device_type} profile")
    host = entry.get("host") or f"{spec.job}{spec.task}"
    return Device(spec.to_string(), spec, profile, str(host))


def _job_devices(job, desc, profiles) -> list[Device]:
    if not isinstance(desc, dict):
        desc = {"tasks": desc}  # a bare count or address list: tasks with one CPU each
    unknown = sorted(set(desc) - {"tasks", "devices"})
    if unknown:
        raise ValueError(f"job {job!r}: unknown key(s) {unknown}")
    tasks = _normalize_tasks(job, desc.get("tasks", 1))
    devices = []
    for task, address in tasks.items():
        host = address.rsplit(":", 1)[0] if address else f"{job}{task}"
        devices += _task_devices(job, task, host, desc.get("devices", {"CPU": 1}), profiles)
    return devices


def _task_devices(job, task, host, counts, profiles) -> list[Device]:
    devices = []
    for device_type, value in _items_sorted(counts):
        if isinstance(value, dict):
            count, profile = value.get("count", 1), value.get("profile", device_type)
        else:
            count, profile = value, device_type
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"job {job!r}: device count of {device_type} must be a "
                             f"non-negative int, got {count!r}")
        resolved = _profile_from(profile, device_type, profiles)
        if resolved.device_type != device_type:
            resolved = dataclasses.replace(resolved, device_type=device_type)
        devices += [make_device(job, task, device_type, i, resolved, host)
                    for i in range(count)]
    return devices


def _counts_for_job(devices_per_task, job, jobs) -> dict:
    """The device counts of one task of ``job``: the same for every job, or given per job
    (when every key of ``devices_per_task`` is a job name)."""
    if devices_per_task is None:
        return {"CPU": 1}
    if devices_per_task and set(devices_per_task) <= set(jobs):
        return devices_per_task.get(job, {"CPU": 1})
    return devices_per_task


_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15,
          "ki": 2.0 ** 10, "mi": 2.0 ** 20, "gi": 2.0 ** 30, "ti": 2.0 ** 40, "pi": 2.0 ** 50}
_QUANTITY = re.compile(r"^\s*([0-9.]+(?:e[+-]?[0-9]+)?)\s*([kmgtp]i?)?\s*(b|flops|flop/s)?"
                       r"\s*(/s)?\s*$", re.IGNORECASE)
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _quantity(value, what) -> float:
    """A number, or a string like "40GiB", "900GB/s", "19.5T" (decimal or binary prefixes)."""
    if isinstance(value, bool):
        raise TypeError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _QUANTITY.match(str(value)) if isinstance(value, str) else None
        if not match:
            raise ValueError(f"{what}: cannot read {value!r} as a quantity (e.g. 16GiB, "
                             f"900GB/s, 1.5e12)")
        number = float(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    if number < 0 or math.isnan(number):
        raise ValueError(f"{what} must be non-negative, got {value!r}")
    return number


def _seconds(value, what) -> float:
    if isinstance(value, str):
        match = re.match(r"^\s*([0-9.]+(?:e[+-]?[0-9]+)?)\s*(s|ms|us|ns)\s*$", value)
        if not match:
            raise ValueError(f"{what}: cannot read {value!r} as a time (e.g. 10us, 0.5ms)")
        return float(match.group(1)) * _TIME_UNITS[match.group(2)]
    return _quantity(value, what)


def _names(devices) -> str:
    return ", ".join(d.name for d in devices)
