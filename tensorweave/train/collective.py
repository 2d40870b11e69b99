"""Ring all-reduce as ordinary graph ops: ``tw.train.all_reduce``.

    means = tw.train.all_reduce([g0, g1, g2], op="mean")   # g_i on device i; means[i] there too

The reduction is written out at build time as the ring algorithm, each op pinned to its device
(two devices simply exchange their tensors, see ``_exchange``):
every tensor is flattened and cut into n chunks; in n-1 reduce-scatter steps each device adds
the chunk its left neighbour sends to its own, so device i ends with the full sum of chunk
(i+1) mod n; in n-1 all-gather steps the finished chunks travel on round the ring; each device
then concatenates its chunks. Every edge between neighbours is an ordinary cross-device edge,
so the partitioner turns it into a ``_Send``/``_Recv`` pair: the all-reduce works on every
device kind and transport (virtual CPUs, GPUs, Ray tasks), shows in the step plan with its
bytes (each link carries 2(n-1)/n of the tensor), and can overlap with other work in the
dataflow. Each chunk is summed in one fixed order, and the sum is then copied, so every device
gets the bitwise same result.

``all_reduce_buckets`` packs many tensors per device (gradients) into buckets of about
``bucket_bytes`` (small tensors share one; a large one has its own) and all-reduces each bucket.
"""

from __future__ import annotations

import numpy as np

import tensorweave as tw

__all__ = ["all_reduce", "all_reduce_buckets"]

DEFAULT_BUCKET_BYTES = 4 << 20


def all_reduce(tensors, devices=None, op: str = "sum", name: str = "all_reduce"):
    """The sum (or ``op="mean"``) of ``tensors`` (one per device, same shape and dtype), one
    result on each device, in the order given. ``devices[i]`` is where tensor i lives (default:
    each tensor's producer's requested device)."""
    tensors = [tw.convert_to_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("all_reduce needs at least one tensor")
    if op not in ("sum", "mean"):
        raise ValueError(f"all_reduce op must be 'sum' or 'mean', got {op!r}")
    devices = list(devices) if devices is not None else [t.op.device for t in tensors]
    if len(devices) != len(tensors):
        raise ValueError(f"all_reduce got {len(tensors)} tensors but {len(devices)} devices")
    shape = tensors[0].shape
    for t in tensors[1:]:
        if t.dtype != tensors[0].dtype:
            raise TypeError(f"all_reduce tensors must share a dtype: {tensors[0].name} is "
                            f"{tensors[0].dtype.name}, {t.name} is {t.dtype.name}")
        shape = shape.merge_with(t.shape)
    if not shape.is_fully_defined():
        raise ValueError(f"all_reduce needs fully known static shapes, got {shape}")
    with tw.name_scope(name):
        results = _ring(tensors, devices, shape.as_list())
        if op == "mean":
            scale = 1.0 / len(tensors)
            results = [_on(d, lambda r=r: r * tw.cast(scale, r.dtype))
                       for r, d in zip(results, devices)]
    return results


def _on(device, build):
    if device:
        with tw.device(device):
            return build()
    return build()


def _ring(tensors, devices, shape):
    n = len(tensors)
    if n == 1:
        return [_on(devices[0], lambda: tw.identity(tensors[0]))]
    if n == 2:
        return _exchange(tensors, devices)
    size = int(np.prod(shape, dtype=np.int64))
    bounds = [k * size // n for k in range(n + 1)]
    # chunks[i][k]: device i's current value of chunk k
    chunks = []
    for i, (t, d) in enumerate(zip(tensors, devices)):
        def cut(t=t):
            flat = tw.reshape(t, [size])
            return [flat[bounds[k]:bounds[k + 1]] for k in range(n)]
        chunks.append(_on(d, cut))
    # reduce-scatter: at step s, device i sends chunk (i - s) mod n to device i + 1
    for s in range(n - 1):
        sent = [(i, (i - s) % n, chunks[i][(i - s) % n]) for i in range(n)]
        for i, k, value in sent:
            dst = (i + 1) % n
            chunks[dst][k] = _on(devices[dst], lambda a=chunks[dst][k], b=value: a + b)
    # device i now holds the full sum of chunk (i + 1) mod n; all-gather passes them on
    for s in range(n - 1):
        sent = [(i, (i + 1 - s) % n, chunks[i][(i + 1 - s) % n]) for i in range(n)]
        for i, k, value in sent:
            dst = (i + 1) % n
            chunks[dst][k] = _on(devices[dst], lambda v=value: tw.identity(v))
    return [_on(devices[i], lambda i=i: tw.reshape(tw.concat(chunks[i], 0), shape))
            for i in range(n)]


def _exchange(tensors, devices):
    """Two devices: each sends its whole tensor to the other and adds, first operand device
    0's on both (so both get the bitwise same sum). The ring would move the same bytes in two
    half-size messages per device, the second waiting for the first's sum; one message that can
    leave as soon as the tensor exists overlaps with the rest of the step instead."""
    first, second = tensors
    return [_on(d, lambda: tw.add(first, second)) for d in devices]


def all_reduce_buckets(per_device, devices, op: str = "mean",
                       bucket_bytes: int = DEFAULT_BUCKET_BYTES, name: str = "all_reduce"):
    """All-reduce lists of tensors: ``per_device[i][j]`` is tensor j on device i (all devices
    list the same shapes). Returns the reduced lists in the same layout. Tensors are packed in
    order into buckets of at most ``bucket_bytes`` (a larger tensor is a bucket of its own);
    each bucket is flattened, concatenated and reduced with one ring."""
    n = len(per_device)
    if n == 0:
        return []
    count = len(per_device[0])
    if any(len(row) != count for row in per_device):
        raise ValueError("all_reduce_buckets: every device must give the same tensors")
    first = [tw.convert_to_tensor(t) for t in per_device[0]]
    buckets, current, current_bytes = [], [], 0
    for j, t in enumerate(first):
        nbytes = int(np.prod(t.shape.as_list(), dtype=np.int64)) * t.dtype.size
        if current and (current_bytes + nbytes > bucket_bytes or
                        t.dtype != first[current[0]].dtype):
            buckets.append(current)
            current, current_bytes = [], 0
        current.append(j)
        current_bytes += nbytes
    if current:
        buckets.append(current)
    results = [[None] * count for _ in range(n)]
    for b, members in enumerate(buckets):
        sizes = [int(np.prod(first[j].shape.as_list(), dtype=np.int64)) for j in members]
        packed = []
        for i in range(n):
            def pack(i=i):
                # named for the all-reduce: with two devices the packed tensor is what is sent
                label = f"{name}_bucket{b}_pack"
                if len(members) == 1:
                    return tw.reshape(per_device[i][members[0]], [-1], name=label)
                return tw.concat([tw.reshape(per_device[i][j], [-1]) for j in members], 0,
                                 name=label)
            packed.append(_on(devices[i], pack))
        reduced = all_reduce(packed, devices, op=op, name=f"{name}_bucket{b}")
        for i in range(n):
            def unpack(i=i):
                offset, out = 0, []
                for j, size in zip(members, sizes):
                    piece = reduced[i] if len(members) == 1 else reduced[i][offset:offset + size]
                    out.append(tw.reshape(piece, first[j].shape.as_list()))
                    offset += size
                return out
            for j, value in zip(members, _on(devices[i], unpack)):
                results[i][j] = value
    return results
