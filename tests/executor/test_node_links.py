"""Messages between tasks of one node (``executor/node_links.py``): they arrive whole and in
order, only from a sender that knows the listener's secret, and a broken link says so."""

import queue
import sys

import numpy as np
import pytest

from tensorweave.executor.node_links import Link, Listener

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="links use Linux's abstract socket namespace")


@pytest.fixture
def listener():
    received = queue.Queue()
    listening = Listener(received.put)
    yield listening, received
    listening.close()


def test_messages_arrive_whole_and_in_order(listener):
    listening, received = listener
    link = Link(listening.address, listening.secret)
    big = np.arange(300_000, dtype=np.float32)
    assert link.send(("value", "k0", big))
    assert link.send(("shared", "k1", "segment", "<f4", (3, 4)))
    kind, key, value = received.get(timeout=10)
    assert (kind, key) == ("value", "k0")
    np.testing.assert_array_equal(value, big)
    assert received.get(timeout=10) == ("shared", "k1", "segment", "<f4", (3, 4))
    link.close()


def test_a_sender_without_the_secret_is_dropped(listener):
    listening, received = listener
    stranger = Link(listening.address, b"not the secret")
    stranger.send(("value", "k", 1))
    friend = Link(listening.address, listening.secret)
    friend.send(("value", "k", 2))
    assert received.get(timeout=10) == ("value", "k", 2)
    assert received.empty()


def test_a_broken_link_reports_false():
    listening = Listener(lambda message: None)
    link = Link(listening.address, listening.secret)
    listening.close()
    link.close()
    assert not link.send(("value", "k", 1))


def test_a_message_whose_handling_fails_does_not_end_the_link():
    received = queue.Queue()

    def handle(message):
        if message == "bad":
            raise RuntimeError("cannot deliver")
        received.put(message)
    listening = Listener(handle)
    link = Link(listening.address, listening.secret)
    assert link.send("bad") and link.send("good")
    assert received.get(timeout=10) == "good"
    link.close()
    listening.close()


def test_what_the_handler_returns_comes_back_on_the_connection():
    listening = Listener(lambda message: None if message == "quiet" else ("echo", message))
    link = Link(listening.address, listening.secret)
    big = np.arange(200_000, dtype=np.float64)
    assert link.send("quiet") and link.send(("value", big))
    kind, (tag, value) = link.receive(timeout=10)  # the quiet message got no answer
    assert (kind, tag) == ("echo", "value")
    np.testing.assert_array_equal(value, big)
    listening.close()
    link.close()


def test_a_receive_that_times_out_closes_the_link():
    listening = Listener(lambda message: None)
    link = Link(listening.address, listening.secret)
    assert link.send("no answer")
    with pytest.raises(OSError):
        link.receive(timeout=0.05)
    assert not link.send("after")  # closed: a late answer cannot be taken for the next one
    listening.close()
