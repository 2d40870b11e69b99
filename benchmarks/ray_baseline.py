"""The actors of ``benchmarks/remote.py``'s Ray baselines: plain Ray and numpy, no tensorweave.

A module of its own so that the baseline actors' processes import only numpy (Ray imports
an actor's class by its module in the worker): they start faster and carry nothing of
tensorweave's.
"""

from __future__ import annotations

import os
import threading

import numpy as np

HEAD = 1024                 # elements the cut edge's consumer reads


def head_max(value) -> float:
    """The cut edge's consumer, the same on every side: the max of the first HEAD elements."""
    return float(np.max(value[:HEAD]))


class RayBaseline:
    """The body of the baseline actors.

    ``send``/``deliver``/``receive`` are tensorweave's transfer pattern written directly: the
    client calls ``send`` on A and ``receive`` on B in the same step; A hands its array to B's
    ``deliver`` in an actor call it does not wait for, and B's ``receive`` waits for it (so B
    must be a threaded actor, as tensorweave's task actors are)."""

    def __init__(self):
        self.arrays: dict = {}
        self.peer = None
        self.arrived: dict = {}
        self.cond = threading.Condition()

    def ping(self, value=None):
        return value

    def pid(self) -> int:
        return os.getpid()

    def set_peer(self, peer):
        self.peer = peer
        return True

    def produce(self, elements: int):
        """A float32 array of ``elements`` zeros, made once and kept (as a variable would be)."""
        array = self.arrays.get(elements)
        if array is None:
            array = np.zeros(elements, np.float32)
            array.flags.writeable = False
            self.arrays[elements] = array
        return array

    def consume(self, value) -> float:
        return head_max(value)

    def send(self, step: int, elements: int):
        self.peer.deliver.remote(step, self.produce(elements))
        return True

    def deliver(self, step: int, value):
        with self.cond:
            self.arrived[step] = value
            self.cond.notify_all()
        return True

    def receive(self, step: int, timeout: float) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: step in self.arrived, timeout):
                raise TimeoutError(f"step {step}: nothing arrived within {timeout} s")
            value = self.arrived.pop(step)
        return head_max(value)
