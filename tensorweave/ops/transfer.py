"""``_Send`` and ``_Recv``: how a tensor crosses from one device's partition to another's.

The partitioner (``tensorweave.placement.partition``) puts a ``_Send`` on the producing device
and a ``_Recv`` on the consuming one for every data edge it cuts, and a pair carrying an empty
tensor for every control edge it cuts (the ``_Send`` then has no data input, only the control
input it stands for). Both ops name the same rendezvous key::

    <send device>;<send incarnation, hex>;<recv device>;<tensor name>;<step id>

so a value sent in one step can only be received in that step, and one sent by an earlier
incarnation of a worker (before a restart) is never taken for a current one. The step's
``Rendezvous`` (``ctx.rendezvous``) does the hand-over: ``_Send`` never blocks, ``_Recv`` waits
for its value, the step's deadline, or the step's abort.

Attrs of both: ``tensor_name`` (the sent tensor, or ``^op`` for a control edge),
``send_device``, ``recv_device``, ``send_device_incarnation``; ``_Recv`` adds ``dtype`` and
``shape`` of what arrives.
"""

from __future__ import annotations

import numpy as np

from tensorweave.graph.dtypes import as_dtype
from tensorweave.ops.registry import NO_GRADIENT, Cost, OpDef, register

__all__: list = []

SEND_TYPE = "_Send"
RECV_TYPE = "_Recv"


def key_prefix(attrs) -> str:
    """The rendezvous key of a transfer without the step id (stable across steps)."""
    return (f"{attrs['send_device']};{int(attrs.get('send_device_incarnation', 0)):x};"
            f"{attrs['recv_device']};{attrs['tensor_name']}")


def rendezvous_key(prefix: str, step_id: int) -> str:
    return f"{prefix};{step_id}"


def _no_cost(op) -> Cost:
    return Cost(0.0, 0.0, 0.0)


# -- _Send --------------------------------------------------------------------------------------
def _send_infer(op):
    if len(op.inputs) > 1:
        raise ValueError(f"a _Send op sends one tensor (or none, for a control edge), got "
                         f"{len(op.inputs)}")
    return []


class SendKernel:
    """``fn(ctx[, value])``: hand ``value`` (an empty array for a control edge) to the step's
    rendezvous under this transfer's key."""

    def __init__(self, attrs, xp):
        self.prefix = key_prefix(attrs)

    def __call__(self, ctx, value=None):
        if value is None:
            value = np.zeros(0, np.float32)
        ctx.rendezvous.send(rendezvous_key(self.prefix, ctx.step_id), value)


register(OpDef(SEND_TYPE, _send_infer, SendKernel, grad=NO_GRADIENT, stateful=True,
               uses_context=True, cost=_no_cost))


# -- _Recv --------------------------------------------------------------------------------------
def _recv_infer(op):
    if op.inputs:
        raise ValueError("a _Recv op takes no inputs")
    return [(as_dtype(op.attrs["dtype"]), op.attrs["shape"])]


class RecvKernel:
    """``fn(ctx) -> value``: wait for this transfer's value in the step's rendezvous, then
    bring it into this device's memory (``to_device``).

    The dataflow runner does not block a thread on a receive: it asks the rendezvous for a
    future under ``key(step_id)`` and calls ``to_device`` on its result."""

    def __init__(self, attrs, xp):
        self.prefix = key_prefix(attrs)
        self.source = attrs["send_device"]
        self.tensor_name = attrs["tensor_name"]
        self.xp = xp

    def key(self, step_id: int) -> str:
        return rendezvous_key(self.prefix, step_id)

    def __call__(self, ctx):
        return self.to_device(ctx.rendezvous.recv(self.key(ctx.step_id), self))

    def to_device(self, value):
        """Host arrays stay as they are on a CPU device (no copy); a GPU device gets its own
        copy through its array module; a device array arriving on the host is copied down."""
        if self.xp is np:
            getter = getattr(value, "get", None)
            return value if isinstance(value, np.ndarray) or getter is None else getter()
        return self.xp.asarray(value)

    def describe(self) -> str:
        return f"tensor {self.tensor_name} from {self.source}"


register(OpDef(RECV_TYPE, _recv_infer, RecvKernel, grad=NO_GRADIENT, stateful=True,
               uses_context=True, cost=_no_cost))
