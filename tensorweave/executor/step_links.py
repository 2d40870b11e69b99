"""The client's step calls to the tasks of its own node, over Unix sockets.

A remote step is one ``TaskWorker.run`` call per task. As a Ray actor call it costs time on
both ends and in Ray's daemons: with Deep MNIST's data-parallel step on two local workers the
client took ~2.3 ms to issue the two calls (the shared batch went through ``ray.put``), each
call reached its task ~1-1.7 ms later and its answer came back ~1.3-2.3 ms after the task
finished (medians; DESIGN.md "Step calls over sockets"). When the client runs on a task's node
it calls the task over that task's link listener instead (``node_links.py``, the same sockets
and secrets the tasks use between themselves): the message carries the packed request, large
feeds go through shared-memory segments the client reuses every step (``shared_channels.py``),
and the task writes its answer back on the connection.

``ClientLinks`` keeps the addresses the tasks reported, one connection per task (made on first
use, dropped when it breaks: the call then goes through Ray), and the client's outbox.
``next_answer`` waits for the first answer among calls made either way.
"""

from __future__ import annotations

import select
import time

from tensorweave.executor.node_links import Link
from tensorweave.executor.shared_channels import Outbox

__all__ = ["ClientLinks", "next_answer"]


class ClientLinks:
    """Connections from the Session's client to the tasks on its node."""

    def __init__(self):
        self.addresses: dict = {}   # task -> (address, secret)
        self.links: dict = {}       # task -> Link
        self._outbox = None

    def reset(self, addresses: dict):
        """Forget the old connections (a task restarted with a new listener, or the cluster
        changed) and keep ``{task: (address, secret)}`` for the tasks on this node."""
        self.close_links()
        self.addresses = dict(addresses)

    def link(self, task):
        """The connection to ``task``, made now if needed; None when there is none."""
        link = self.links.get(task)
        if link is None and task in self.addresses:
            try:
                link = self.links[task] = Link(*self.addresses[task])
            except OSError:
                self.addresses.pop(task)  # unreachable from here: Ray carries its calls
        return link

    def drop(self, task, link):
        link.close()
        if self.links.get(task) is link:
            del self.links[task]

    def call(self, task, link, pack_request, feeds: dict) -> bool:
        """Send a step call over ``link``: the feeds that fit a shared segment go there, the
        rest inside the request, which ``pack_request(small feeds, indices of the shared
        ones)`` makes. False: the link broke and nothing of the call is left behind."""
        outbox = self._outbox_for_feeds()
        tickets = {}
        for i, value in feeds.items():
            ticket = outbox.put((task, i), value)
            if ticket is not None:
                tickets[i] = ticket
        small = {i: v for i, v in feeds.items() if i not in tickets}
        request = pack_request(small, tuple(tickets))
        if link.send(("run", request, list(tickets.values()))):
            return True
        for i, (name, _, _) in tickets.items():
            outbox.reclaim((task, i), name)
        self.drop(task, link)
        return False

    def _outbox_for_feeds(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox()
        return self._outbox

    def close_links(self):
        for link in self.links.values():
            link.close()
        self.links = {}

    def close(self):
        self.close_links()
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None


def next_answer(pending: dict, timeout: float, wait_refs):
    """``(task, call)`` of the first call of ``pending`` (``{task: Link or Ray reference}``)
    whose answer is in, within ``timeout`` seconds; None when none is. ``wait_refs(refs,
    timeout)`` is Ray's ``wait`` for one of ``refs`` (the ready ones). A link is also "in" when
    it closed: reading it then fails. Links and references mixed (a link broke mid-step) are
    polled in turns."""
    links = {call: task for task, call in pending.items() if isinstance(call, Link)}
    refs = {call: task for task, call in pending.items() if not isinstance(call, Link)}
    deadline = time.monotonic() + timeout
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        turn = min(remaining, 0.01) if links and refs else remaining
        if links:
            ready, _, _ = select.select(list(links), [], [], turn)
            if ready:
                return links[ready[0]], ready[0]
        if refs:
            ready = wait_refs(list(refs), 0.0 if links else turn)
            if ready:
                return refs[ready[0]], ready[0]
        if remaining <= 0.0:
            return None
