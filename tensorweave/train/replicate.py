"""Data parallelism in one call: ``tw.train.replicate``.

    def model(x, y):
        logits = tw.layers... / tw.matmul(x, tw.get_variable("w", [784, 10])) ...
        return tw.reduce_mean(tw.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=logits))

    rep = tw.train.replicate(model, [x, y], devices=["/cpu:0", "/cpu:1"],
                             optimizer=lambda: tw.train.AdamOptimizer(1e-3), mode="allreduce")
    sess.run([rep.train_op, rep.loss], {x: global_batch_x, y: global_batch_y})

The fed global batch is split along its first axis into one equal slice per replica (its size
must divide by the number of replicas). ``model_fn`` builds one replica from its slices, making
its variables with ``tw.get_variable`` (it runs under a variable scope named ``name``), and
returns the replica's scalar loss, or ``(loss, outputs)``.

Modes:

* ``"allreduce"`` — synchronous. Each replica keeps its own copy of every variable (replica 0's
  are the primary ones; the others are initialized from them), computes its gradients, and the
  gradients are averaged with the ring all-reduce (``tw.train.all_reduce_buckets``, bucketed);
  every replica applies the same average with its own optimizer (``optimizer`` is a factory,
  called once per replica), so the copies stay bitwise equal.
* ``"ps-sync"`` — the variables live once, on the parameter-server devices ``ps_devices``
  (round-robin by size: each variable goes to the least loaded one); each replica computes
  gradients from them, the ps averages the replicas' gradients and applies them once per step
  (as TF1's SyncReplicasOptimizer with all replicas).
* ``"ps-async"`` — variables on the ps as above; each replica applies its own gradients with
  its own update op (``train_ops[i]``, which needs only replica i's slice of the inputs), so
  replicas driven by separate threads or loops update the shared variables whenever they
  finish, with no waiting for each other. ``train_op`` runs all replicas' updates in one step;
  the executor applies the updates of one variable one after another, in replica order.

``loss`` is the mean of the replicas' losses (for the equal slices, the loss of the global
batch); ``global_step`` (optional) is incremented once per step (per update in ps-async).
"""

from __future__ import annotations

import dataclasses

import numpy as np

import tensorweave as tw
from tensorweave.train.collective import DEFAULT_BUCKET_BYTES, all_reduce_buckets

__all__ = ["replicate", "Replicated"]

MODES = ("allreduce", "ps-sync", "ps-async")


@dataclasses.dataclass
class Replicated:
    loss: object                    # mean of the replicas' losses
    train_op: object                # one synchronous step (all replicas)
    train_ops: list                 # per replica (ps-async: each applies its own gradients)
    replica_losses: list
    outputs: list                   # what model_fn returned besides the loss, per replica
    variables: list                 # per replica: its variables (the same list for ps modes)
    devices: list
    mode: str


def replicate(model_fn, inputs, devices, optimizer, mode: str = "allreduce", ps_devices=None,
              global_step=None, bucket_bytes: int = DEFAULT_BUCKET_BYTES,
              name: str = "replicated") -> Replicated:
    """Build ``len(devices)`` replicas of ``model_fn`` (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"replicate: mode must be one of {MODES}, got {mode!r}")
    devices = list(devices)
    if not devices:
        raise ValueError("replicate needs at least one device")
    n = len(devices)
    inputs = [tw.convert_to_tensor(x) for x in inputs]
    slices = [_split(inputs, n, i, d) for i, d in enumerate(devices)]
    make_optimizer = _optimizer_factory(optimizer, mode, n)
    if mode == "allreduce":
        return _allreduce(model_fn, slices, devices, make_optimizer, global_step, bucket_bytes,
                          name)
    ps_devices = list(ps_devices or [devices[0]])
    return _parameter_servers(model_fn, slices, devices, ps_devices, make_optimizer,
                              global_step, mode, name)


# -- building blocks ---------------------------------------------------------------------------
def _split(inputs, n, i, device):
    """Replica i's slice of each fed input (the first axis cut in n equal parts)."""
    with tw.device(device), tw.name_scope(f"replica_{i}/split"):
        return [tw.split(x, n, axis=0)[i] if n > 1 else tw.identity(x) for x in inputs]


def _optimizer_factory(optimizer, mode, n):
    if isinstance(optimizer, tw.train.Optimizer):
        if n > 1 and mode != "ps-sync":
            raise TypeError(f"replicate(mode={mode!r}) gives each replica an optimizer of its "
                            f"own: pass a factory, e.g. optimizer=lambda: "
                            f"tw.train.{type(optimizer).__name__}(...)")
        return lambda: optimizer
    if not callable(optimizer):
        raise TypeError("replicate: optimizer must be a tw.train.Optimizer or a function "
                        "returning one")
    return optimizer


def _call_model(model_fn, parts):
    result = model_fn(*parts)
    if isinstance(result, tuple):
        loss, outputs = result[0], result[1] if len(result) == 2 else result[1:]
    else:
        loss, outputs = result, None
    loss = tw.convert_to_tensor(loss)
    if loss.shape.rank not in (0, None):
        raise ValueError(f"replicate: model_fn must return a scalar loss, got shape "
                         f"{loss.shape}")
    return loss, outputs


def _trainable_in(scope_vars_before, name):
    return [v for v in tw.trainable_variables()
            if v.op.name.startswith(name + "/") and v not in scope_vars_before]


def _mean_loss(losses, device):
    with tw.device(device), tw.name_scope("replicated_loss"):
        return losses[0] if len(losses) == 1 else tw.add_n(losses) / float(len(losses))


def _allreduce(model_fn, slices, devices, make_optimizer, global_step, bucket_bytes, name):
    n = len(devices)
    before = set(tw.trainable_variables())
    losses, outputs, var_lists = [], [], []
    primaries: list = []
    for i, device in enumerate(devices):
        mirrors: dict = {}

        def mirror(getter, var_name, *args, i=i, device=device, mirrors=mirrors, **kwargs):
            primary = getter(var_name, *args, **kwargs)
            if i == 0:
                return primary
            if var_name not in mirrors:  # (the getter runs outside any name scope)
                copy_name = var_name.replace(f"{name}/", f"{name}/replica_{i}/", 1)
                with tw.device(device):
                    mirrors[var_name] = tw.Variable(primary.initialized_value(),
                                                    name=copy_name, trainable=False)
            return mirrors[var_name]

        with tw.device(device), tw.name_scope(f"replica_{i}"), tw.variable_scope(
                name, reuse=True if i > 0 else None, custom_getter=mirror):
            loss, extra = _call_model(model_fn, slices[i])
        if i == 0:
            primaries = _trainable_in(before, name)
            variables = primaries
        else:
            variables = [mirrors[v.op.name] for v in primaries]
        losses.append(loss)
        outputs.append(extra)
        var_lists.append(variables)
    if not primaries:
        raise ValueError(f"replicate: model_fn made no trainable variables under "
                         f"variable scope {name!r} (use tw.get_variable)")
    grads = []
    for i, (device, loss, variables) in enumerate(zip(devices, losses, var_lists)):
        with tw.device(device), tw.name_scope(f"replica_{i}/gradients"):
            grads.append(_dense(tw.gradients(loss, variables), variables))
    averaged = all_reduce_buckets(grads, devices, op="mean", bucket_bytes=bucket_bytes,
                                  name=f"{name}_all_reduce") if n > 1 else grads
    train_ops = []
    for i, (device, variables) in enumerate(zip(devices, var_lists)):
        with tw.device(device), tw.name_scope(f"replica_{i}/update"):
            opt = make_optimizer()
            train_ops.append(opt.apply_gradients(list(zip(averaged[i], variables)),
                                                 global_step=global_step if i == 0 else None))
    train_op = tw.group(*train_ops, name=f"{name}_train")
    return Replicated(_mean_loss(losses, devices[0]), train_op, train_ops, losses, outputs,
                      var_lists, devices, "allreduce")


def _parameter_servers(model_fn, slices, devices, ps_devices, make_optimizer, global_step,
                       mode, name):
    load = {d: 0 for d in ps_devices}
    placed: set = set()

    def on_ps(getter, var_name, *args, **kwargs):
        """Each new variable goes to the least loaded ps device (by bytes)."""
        if var_name in placed:
            return getter(var_name, *args, **kwargs)
        shape = kwargs.get("shape")
        dtype = tw.as_dtype(kwargs.get("dtype") or tw.float32)
        size = max(1, int(np.prod(shape.as_list() if hasattr(shape, "as_list") else shape))
                   * dtype.size) if shape is not None else 1
        target = min(ps_devices, key=lambda d: (load[d], ps_devices.index(d)))
        with tw.device(target):
            var = getter(var_name, *args, **kwargs)
        placed.add(var_name)
        load[target] += size
        return var

    before = set(tw.trainable_variables())
    losses, outputs, grads = [], [], []
    variables = []
    for i, device in enumerate(devices):
        with tw.device(device), tw.name_scope(f"replica_{i}"), tw.variable_scope(
                name, reuse=True if i > 0 else None, custom_getter=on_ps):
            loss, extra = _call_model(model_fn, slices[i])
        if i == 0:
            variables = _trainable_in(before, name)
            if not variables:
                raise ValueError(f"replicate: model_fn made no trainable variables under "
                                 f"variable scope {name!r} (use tw.get_variable)")
        with tw.device(device), tw.name_scope(f"replica_{i}/gradients"):
            grads.append(_dense(tw.gradients(loss, variables), variables))
        losses.append(loss)
        outputs.append(extra)
    n = len(devices)
    if mode == "ps-sync":
        averaged = []
        for j, var in enumerate(variables):
            with tw.device(var.op.device), tw.name_scope(f"{name}_aggregate"):
                parts = [g[j] for g in grads]
                averaged.append(parts[0] if n == 1 else tw.add_n(parts) / float(n))
        opt = make_optimizer()
        train_op = opt.apply_gradients(list(zip(averaged, variables)), global_step=global_step)
        train_ops = [train_op]
    else:
        train_ops = []
        for i in range(n):
            with tw.name_scope(f"replica_{i}/update"):
                train_ops.append(make_optimizer().apply_gradients(
                    list(zip(grads[i], variables)), global_step=global_step))
        train_op = tw.group(*train_ops, name=f"{name}_train")
    return Replicated(_mean_loss(losses, devices[0]), train_op, train_ops, losses, outputs,
                      [variables] * n, devices, mode)


def _dense(grads, variables):
    for g, v in zip(grads, variables):
        if g is None:
            raise ValueError(f"replicate: the loss does not depend on variable {v.op.name}")
    return grads


