"""Shared-memory transfers between tasks of one machine (``executor/shared_channels.py``):
values arrive exactly and are read in place, a segment is reused once no array of its value
is left and never before, too many values in flight fall back to Ray, and segments of dead senders are swept."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tensorweave.executor import shared_channels as sc

BIG = sc.MIN_SHARED_BYTES // 4 + 10   # float32 elements: just over the threshold


@pytest.fixture
def channel():
    outbox, inbox = sc.Outbox(), sc.Inbox()
    yield outbox, inbox
    inbox.close()
    outbox.close()


def test_a_value_arrives_exactly_and_its_segment_is_reused(channel):
    outbox, inbox = channel
    rng = np.random.default_rng(0)
    first = rng.standard_normal((BIG // 2, 2)).astype(np.float32)
    name, dtype, shape = outbox.put("a->b", first)
    got = inbox.take(name, dtype, shape)
    np.testing.assert_array_equal(got, first)
    assert got.dtype == np.float32 and got.shape == first.shape
    assert not got.flags.writeable                 # read in place: nobody writes into it
    second = first * 2
    held = outbox.put("a->b", second)
    assert held[0] != name                         # the first value is still referenced
    np.testing.assert_array_equal(got, first)      # ... and intact
    second_got = inbox.take(*held)
    np.testing.assert_array_equal(second_got, second)
    view = got[1:]
    del got
    third = outbox.put("a->b", first + 1)
    assert third is None                           # both held (a view keeps the first)
    del view
    ticket = outbox.put("a->b", first + 1)
    assert ticket[0] == name                       # released: the same segment again
    np.testing.assert_array_equal(inbox.take(*ticket), first + 1)


def test_a_segment_is_never_overwritten_before_its_value_is_taken(channel):
    outbox, inbox = channel
    values = [np.full(BIG, float(i), np.float32) for i in range(3)]
    tickets = [outbox.put("edge", v) for v in values]
    assert tickets[0][0] != tickets[1][0]          # a second segment for the second value
    assert tickets[2] is None                      # both in flight: this one goes by Ray
    inbox.take(*tickets[1])                        # taken and dropped at once: freed
    assert outbox.put("edge", values[2])[0] == tickets[1][0]
    inbox.drop(tickets[0][0])                      # a refused delivery frees its segment
    assert outbox.put("edge", values[2]) is not None


def test_small_values_and_objects_travel_by_ray(channel):
    outbox, _ = channel
    assert outbox.put("edge", np.zeros(10, np.float32)) is None
    assert outbox.put("edge", np.array([object()] * BIG)) is None
    assert outbox.put("edge", b"x" * sc.MIN_SHARED_BYTES) is None


def test_a_larger_value_replaces_a_free_segment_too_small(channel):
    outbox, inbox = channel
    small = outbox.put("edge", np.ones(BIG, np.float32))
    inbox.take(*small)                             # not kept: the segment is free
    big_value = np.arange(4 * BIG, dtype=np.float64)
    ticket = outbox.put("edge", big_value)
    assert ticket[0] != small[0]
    np.testing.assert_array_equal(inbox.take(*ticket), big_value)
    assert not os.path.exists(os.path.join(sc._SHM_DIR, small[0]))  # unlinked


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="POSIX shared memory is not listed")
def test_segments_of_a_killed_sender_are_swept():
    # The sender dies without unlinking, and its resource tracker with it (Ray kills a
    # worker's process group): the segment stays behind.
    code = ("import os, numpy as np\n"
            "from multiprocessing import resource_tracker\n"
            "from tensorweave.executor import shared_channels as sc\n"
            f"name = sc.Outbox().put('e', np.ones({BIG}, np.float32))[0]\n"
            "resource_tracker.unregister('/' + name, 'shared_memory')\n"
            "print(name, flush=True)\n"
            "os._exit(0)\n")
    name = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()
    path = os.path.join("/dev/shm", name)
    assert os.path.exists(path)
    sc.Outbox().close()     # a new outbox sweeps what dead senders left
    assert not os.path.exists(path)


def test_a_reserved_segment_is_sent_without_a_copy_and_freed_when_never_sent(channel):
    outbox, inbox = channel
    buffer = outbox.reserve("edge", (BIG,), np.float32)
    buffer[...] = np.arange(BIG, dtype=np.float32)  # the producer writes its result here
    assert outbox.reserve("edge", (BIG,), np.float32) is not None  # a second segment
    name, dtype, shape = ticket = outbox.put("edge", buffer)
    first = inbox.take(*ticket)  # held: its segment is not free
    np.testing.assert_array_equal(first, np.arange(BIG, dtype=np.float32))
    # the second reservation was never sent: the step's end frees it, and a copy uses it
    outbox.release_reserved()
    other = np.ones(BIG, np.float32)
    second = outbox.put("edge", other)
    assert second[0] != name
    np.testing.assert_array_equal(inbox.take(*second), other)


def test_no_segment_is_reserved_for_small_values_or_when_every_one_is_taken(channel):
    outbox, _ = channel
    assert outbox.reserve("edge", (10,), np.float32) is None
    held = [outbox.reserve("edge", (BIG,), np.float32) for _ in range(sc.SEGMENTS_PER_EDGE)]
    assert all(h is not None for h in held)
    assert outbox.reserve("edge", (BIG,), np.float32) is None
