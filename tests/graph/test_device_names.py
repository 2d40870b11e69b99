"""Device names: parsing the full and short forms, merging nested scopes, matching."""

import pytest

from tensorweave.graph.device_names import DeviceSpec, canonical, merge


@pytest.mark.parametrize("text, expected", [
    ("/job:ps/replica:0/task:1/device:CPU:0", DeviceSpec("ps", 0, 1, "CPU", 0)),
    ("/job:worker/task:2", DeviceSpec(job="worker", task=2)),
    ("/cpu:0", DeviceSpec(device_type="CPU", device_index=0)),
    ("/gpu:1", DeviceSpec(device_type="GPU", device_index=1)),
    ("/CPU:0", DeviceSpec(device_type="CPU", device_index=0)),
    ("GPU:0", DeviceSpec(device_type="GPU", device_index=0)),
    ("cpu:1", DeviceSpec(device_type="CPU", device_index=1)),
    ("/device:cpu:3", DeviceSpec(device_type="CPU", device_index=3)),
    ("/device:GPU:*", DeviceSpec(device_type="GPU")),
    ("/device:GPU", DeviceSpec(device_type="GPU")),
    ("/job:w/device:XLA_GPU:0", DeviceSpec(job="w", device_type="XLA_GPU", device_index=0)),
    ("", DeviceSpec()),
    ("  /gpu:0  ", DeviceSpec(device_type="GPU", device_index=0)),
])
def test_parse(text, expected):
    assert DeviceSpec.from_string(text) == expected


def test_from_string_passes_specs_and_none_through():
    spec = DeviceSpec(job="ps")
    assert DeviceSpec.from_string(spec) is spec
    assert DeviceSpec.from_string(None) == DeviceSpec()


@pytest.mark.parametrize("text, message", [
    ("/foo:1", "unknown part 'foo:1'"),
    ("/task:x", "'x' is not a number"),
    ("/replica:1.5", "'1.5' is not a number"),
    ("/task:-1", "negative"),
    ("/job:", "empty job name"),
    ("/device:", "empty device type"),
    ("gpu:a", "'a' is not a number"),
])
def test_invalid_names_raise_and_quote_the_name(text, message):
    with pytest.raises(ValueError, match="cannot parse device name") as info:
        DeviceSpec.from_string(text)
    assert message in str(info.value)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("/cpu:0", "/device:CPU:0"),
    ("/gpu:1", "/device:GPU:1"),
    ("/job:worker/task:2/gpu:0", "/job:worker/task:2/device:GPU:0"),
    ("/task:1/job:ps", "/job:ps/task:1"),  # parts are printed in canonical order
    ("/device:GPU:*", "/device:GPU:*"),
    ("", ""),
    ("/job:ps/replica:0/task:1/device:CPU:0", "/job:ps/replica:0/task:1/device:CPU:0"),
])
def test_canonical_string(text, expected):
    assert canonical(text) == expected
    assert canonical(expected) == expected  # canonical form is a fixed point
    assert str(DeviceSpec.from_string(text)) == expected


@pytest.mark.parametrize("outer, inner, expected", [
    ("/job:worker/task:1", "/gpu:0", "/job:worker/task:1/device:GPU:0"),
    ("/job:worker/device:GPU:0", "/job:ps", "/job:ps/device:GPU:0"),
    ("/device:GPU:1", "/device:CPU:*", "/device:CPU:*"),  # a new type brings its own index
    ("/job:worker/replica:2/task:3", "/task:0", "/job:worker/replica:2/task:0"),
    ("", "/cpu:0", "/device:CPU:0"),
    ("/gpu:0", "", "/device:GPU:0"),
])
def test_merge_inner_fields_override_outer_ones(outer, inner, expected):
    assert merge(outer, inner) == expected


def test_merge_from_keeps_unset_fields():
    base = DeviceSpec(job="worker", task=1, device_type="GPU", device_index=0)
    assert base.merge_from(DeviceSpec()) == base
    assert base.merge_from(DeviceSpec(task=4)) == DeviceSpec("worker", None, 4, "GPU", 0)


def test_matches_requires_every_set_part_to_be_equal():
    device = DeviceSpec.from_string("/job:worker/replica:0/task:1/device:GPU:0")
    assert DeviceSpec.from_string("/job:worker").matches(device)
    assert DeviceSpec.from_string("/gpu:0").matches(device)
    assert DeviceSpec.from_string("").matches(device)
    assert DeviceSpec.from_string("/device:GPU:*").matches(device)
    assert not DeviceSpec.from_string("/job:ps").matches(device)
    assert not DeviceSpec.from_string("/gpu:1").matches(device)
    assert not DeviceSpec.from_string("/cpu:0").matches(device)


def test_is_compatible_with_fails_only_on_conflicting_parts():
    a = DeviceSpec.from_string("/job:worker/gpu:0")
    assert a.is_compatible_with(DeviceSpec.from_string("/task:3"))
    assert a.is_compatible_with(DeviceSpec.from_string("/job:worker/device:GPU:0"))
    assert not a.is_compatible_with(DeviceSpec.from_string("/job:ps"))
    assert not a.is_compatible_with(DeviceSpec.from_string("/gpu:1"))


def test_specs_are_hashable_values():
    assert len({DeviceSpec.from_string("/gpu:0"), DeviceSpec.from_string("/device:GPU:0")}) == 1
