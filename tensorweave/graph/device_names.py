"""Device names in TensorFlow's syntax.

Full form: ``/job:<job>/replica:<r>/task:<t>/device:<TYPE>:<index>``. Every part is optional, and
the short forms ``/cpu:0``, ``/gpu:1``, ``/device:GPU:*`` and ``GPU:0`` are accepted. A spec with
a part left out matches any value of that part; ``*`` as a job, replica, task or device index
means any value (the same as leaving the part out).
"""

from __future__ import annotations

import dataclasses
import re

_TYPE_ALIASES = {"cpu": "CPU", "gpu": "GPU"}


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """A parsed, possibly partial device name. Unset parts are None."""

    job: str | None = None
    replica: int | None = None
    task: int | None = None
    device_type: str | None = None
    device_index: int | None = None

    @classmethod
    def from_string(cls, spec: str | "DeviceSpec" | None) -> "DeviceSpec":
        if spec is None:
            return cls()
        if isinstance(spec, DeviceSpec):
            return spec
        return _parse(spec)

    def to_string(self) -> str:
        parts = []
        if self.job is not None:
            parts.append(f"/job:{self.job}")
        if self.replica is not None:
            parts.append(f"/replica:{self.replica}")
        if self.task is not None:
            parts.append(f"/task:{self.task}")
        if self.device_type is not None:
            index = "*" if self.device_index is None else str(self.device_index)
            parts.append(f"/device:{self.device_type}:{index}")
        return "".join(parts)

    def merge_from(self, other: "DeviceSpec") -> "DeviceSpec":
        """Parts set in ``other`` override ours (how an inner ``tw.device`` scope merges)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for f in dataclasses.fields(other):
            value = getattr(other, f.name)
            if value is not None:
                values[f.name] = value
        if other.device_type is not None:
            values["device_index"] = other.device_index
        return DeviceSpec(**values)

    def matches(self, device: "DeviceSpec") -> bool:
        """True when every part we set equals the same part of ``device``."""
        for f in dataclasses.fields(self):
            want = getattr(self, f.name)
            if want is not None and getattr(device, f.name) != want:
                return False
        return True

    def is_compatible_with(self, other: "DeviceSpec") -> bool:
        """True when no part is set in both to different values."""
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a is not None and b is not None and a != b:
                return False
        return True

    def __str__(self):
        return self.to_string()


_PART = re.compile(r"^(job|replica|task|device):?(.*)$")


def _parse(spec: str) -> DeviceSpec:
    text = spec.strip()
    if not text:
        return DeviceSpec()
    values: dict = {}
    for part in (p for p in text.split("/") if p):
        key, _, rest = part.partition(":")
        lowered = key.lower()
        if lowered == "job":
            values["job"] = None if rest == "*" else _nonempty(rest, spec)
        elif lowered == "replica":
            values["replica"] = None if rest == "*" else _int(rest, spec)
        elif lowered == "task":
            values["task"] = None if rest == "*" else _int(rest, spec)
        elif lowered == "device":
            dtype, _, index = rest.partition(":")
            _set_device(values, dtype, index, spec)
        elif lowered in _TYPE_ALIASES or key.isupper():
            _set_device(values, key, rest, spec)
        else:
            raise ValueError(f"cannot parse device name {spec!r}: unknown part {part!r}")
    return DeviceSpec(**values)


def _set_device(values, dtype, index, spec):
    if not dtype:
        raise ValueError(f"cannot parse device name {spec!r}: empty device type")
    values["device_type"] = _TYPE_ALIASES.get(dtype.lower(), dtype.upper()) \
        if dtype.lower() in _TYPE_ALIASES else dtype
    if index in ("", "*"):
        values["device_index"] = None
    else:
        values["device_index"] = _int(index, spec)


def _int(text, spec):
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"cannot parse device name {spec!r}: {text!r} is not a number") from None
    if value < 0:
        raise ValueError(f"cannot parse device name {spec!r}: {value} is negative")
    return value


def _nonempty(text, spec):
    if not text:
        raise ValueError(f"cannot parse device name {spec!r}: empty job name")
    return text


def canonical(spec) -> str:
    """The canonical string of a device name ("" for no request)."""
    return DeviceSpec.from_string(spec).to_string()


def merge(outer: str, inner: str) -> str:
    """Merge a nested device scope into the enclosing one, as TF1 does."""
    return DeviceSpec.from_string(outer).merge_from(DeviceSpec.from_string(inner)).to_string()
