"""Data-parallel MNIST: N replicas of a network train on slices of each batch.

    python examples/data_parallel_mnist.py --replicas 2 --mode allreduce
    python examples/data_parallel_mnist.py --replicas 2 --mode ps-sync --model cnn --steps 300
    python examples/data_parallel_mnist.py --replicas 2 --mode ps-async
    python examples/data_parallel_mnist.py --replicas 2 --mode allreduce --target local:2

``tw.train.replicate`` builds one replica of the network per device and splits every fed
global batch (``--batch-size``) into equal slices, one per replica:

* ``allreduce``: every replica keeps a copy of the weights; the gradients are averaged with a
  ring all-reduce and every copy applies the same update (synchronous);
* ``ps-sync``: the weights live once, on parameter-server devices; each step the replicas'
  gradients are averaged there and applied once (synchronous);
* ``ps-async``: the weights live on the parameter servers, and each replica applies its own
  gradients whenever it has them. Here each replica is driven by its own Python thread with its
  own batches (of ``--batch-size / --replicas`` examples), so nobody waits for anybody; the
  global step counts every update.

The synchronous modes compute what one replica computes on the whole batch, up to float
rounding. Devices are virtual CPUs of this process (``device_count={"CPU": N}``) unless
``--target`` names Ray workers (``local:N``: N worker processes on this machine;
``ray://<address>``: a running Ray cluster), whose devices are ``/job:worker/task:i``.
``--ps K`` puts the variables of the ps modes on K devices of their own (``/cpu:N...`` in
process, ``/job:ps/task:j`` on Ray) instead of replica 0's device.

The example prints the data movement of one step (the all-reduce chunks, the weights the
replicas read from the parameter servers and the gradients they send back, per link), trains,
and prints the test accuracy and the training throughput in examples per second. Networks:
``mlp`` (784-256-10 with a ReLU hidden layer) or ``cnn`` (the Deep MNIST network without its
dropout: two 5x5 convolutions of 32 and 64 channels with 2x2 max pools, a 1024-unit layer and
the 10-way output). Uses the MNIST test set (first 8,000 images to train, last 2,000 to test)
when it is found, else scikit-learn's 8x8 digits.
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
import time

import datasets
from progress import Progress

import tensorweave as tw

SCOPE = "replicated"            # tw.train.replicate's variable scope (its ``name``)
MODES = ("allreduce", "ps-sync", "ps-async")
DEFAULT_LEARNING_RATES = {"mlp": 1e-3, "cnn": 1e-4}   # Adam


# -- the networks: logits from images, variables made with tw.get_variable ------------------------
def mlp(x, side: int, hidden: int = 256):
    """784-256-10 (or side*side-hidden-10): one ReLU layer."""
    w1 = tw.get_variable("w1", [side * side, hidden],
                         initializer=tw.truncated_normal_initializer(stddev=0.05, seed=1))
    b1 = tw.get_variable("b1", [hidden], initializer=tw.zeros_initializer())
    w2 = tw.get_variable("w2", [hidden, 10],
                         initializer=tw.truncated_normal_initializer(stddev=0.05, seed=2))
    b2 = tw.get_variable("b2", [10], initializer=tw.zeros_initializer())
    return tw.matmul(tw.nn.relu(tw.matmul(x, w1) + b1), w2) + b2


def cnn(x, side: int):
    """The Deep MNIST network without dropout (so replicas compute what one replica does)."""
    h = tw.reshape(x, [-1, side, side, 1])
    h = _conv_pool(h, "conv1", 1, 32, seed=1)
    h = _conv_pool(h, "conv2", 32, 64, seed=2)
    pooled = -(-side // 4)  # two SAME 2x2 pools
    h = tw.reshape(h, [-1, pooled * pooled * 64])
    h = tw.nn.relu(_dense(h, "fc1", pooled * pooled * 64, 1024, seed=3))
    return _dense(h, "fc2", 1024, 10, seed=4)


def _conv_pool(h, name, channels_in, channels_out, seed):
    with tw.variable_scope(name):
        w = tw.get_variable("weights", [5, 5, channels_in, channels_out],
                            initializer=tw.truncated_normal_initializer(stddev=0.1, seed=seed))
        b = tw.get_variable("biases", [channels_out], initializer=tw.constant_initializer(0.1))
        h = tw.nn.relu(tw.nn.conv2d(h, w, strides=[1, 1, 1, 1], padding="SAME") + b)
        return tw.nn.max_pool(h, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")


def _dense(h, name, units_in, units_out, seed):
    with tw.variable_scope(name):
        w = tw.get_variable("weights", [units_in, units_out],
                            initializer=tw.truncated_normal_initializer(stddev=0.1, seed=seed))
        b = tw.get_variable("biases", [units_out], initializer=tw.constant_initializer(0.1))
        return tw.matmul(h, w) + b


NETWORKS = {"mlp": mlp, "cnn": cnn}


def replica_model(network, side: int, slices: list):
    """``model_fn`` for ``tw.train.replicate``: one replica's loss and logits from its slice of
    the batch. It records the slices it was given: an asynchronous replica's thread feeds its
    own batch straight into them (feeding any tensor replaces what computes it)."""
    def model_fn(images, labels):
        slices.append((images, labels))
        logits = network(images, side)
        loss = tw.reduce_mean(tw.nn.softmax_cross_entropy_with_logits_v2(labels=labels,
                                                                         logits=logits))
        return loss, logits
    return model_fn


# -- devices and sessions ------------------------------------------------------------------------
def replica_devices(replicas: int, target: str) -> list:
    if target:
        return [f"/job:worker/task:{i}" for i in range(replicas)]
    return [f"/cpu:{i}" for i in range(replicas)]


def ps_devices(replicas: int, ps: int, target: str) -> list | None:
    """The parameter-server devices (None: replicate's default, replica 0's device)."""
    if ps == 0:
        return None
    if target:
        return [f"/job:ps/task:{j}" for j in range(ps)]
    return [f"/cpu:{replicas + j}" for j in range(ps)]


def session_config(replicas: int, ps: int, target: str) -> tw.ConfigProto:
    if not target:
        return tw.ConfigProto(device_count={"CPU": replicas + ps})
    workers = replicas
    if target.startswith("local:"):
        workers = max(replicas, int(target[len("local:"):]))
    jobs = {"worker": workers, **({"ps": ps} if ps else {})}
    return tw.ConfigProto(cluster_def=tw.train.ClusterSpec(jobs))


# -- the graph -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Model:
    images: object               # the global batch's placeholders
    labels: object
    rep: object                  # tw.train.Replicated
    slices: list                 # per replica: (images, labels) tensors it reads
    updates: list                # per replica: an update that runs alone (ps-async threads)
    global_step: object
    accuracy: object             # of the weights replica 0 reads, on fed images and labels


def build(args, side: int) -> Model:
    tw.reset_default_graph()
    tw.set_random_seed(0)
    images = tw.placeholder(tw.float32, [None, side * side], name="images")
    labels = tw.placeholder(tw.float32, [None, 10], name="labels")  # one-hot
    devices = replica_devices(args.replicas, args.target)
    servers = ps_devices(args.replicas, args.ps, args.target)
    with tw.device((servers or devices)[0]):
        global_step = tw.train.get_or_create_global_step()
    network = NETWORKS[args.model]
    learning_rate = args.learning_rate or DEFAULT_LEARNING_RATES[args.model]

    def make_optimizer():
        return tw.train.AdamOptimizer(learning_rate)

    slices: list = []
    rep = tw.train.replicate(replica_model(network, side, slices), [images, labels], devices,
                             make_optimizer, mode=args.mode, ps_devices=servers,
                             global_step=global_step, name=SCOPE)
    updates = rep.train_ops
    if args.mode == "ps-async" and args.replicas > 1 and _chained(rep.train_ops):
        updates = independent_updates(rep, make_optimizer, global_step)
    with tw.device(devices[0]), tw.name_scope("evaluation"), tw.variable_scope(SCOPE,
                                                                             reuse=True):
        logits = network(images, side)
        correct = tw.equal(tw.argmax(logits, 1), tw.argmax(labels, 1))
        accuracy = tw.reduce_mean(tw.cast(correct, tw.float32))
    return Model(images, labels, rep, slices, updates, global_step, accuracy)


def _chained(train_ops) -> bool:
    """Whether running one replica's update op would also run another replica's."""
    ops = [getattr(op, "op", op) for op in train_ops]  # (an update may be a Tensor)
    others = set(ops)
    for op in ops:
        seen, stack = set(), list(op.control_inputs) + [t.op for t in op.inputs]
        while stack:
            dep = stack.pop()
            if dep in others and dep is not op:
                return True
            if dep not in seen:
                seen.add(dep)
                stack.extend(list(dep.control_inputs) + [t.op for t in dep.inputs])
    return False


def independent_updates(rep, make_optimizer, global_step) -> list:
    """One update per replica that runs on its own: the replica's gradients of the shared
    (parameter-server) variables, applied by an optimizer of its own.

    ``replicate(mode="ps-async")`` orders its replicas' updates one after another so that
    ``train_op`` is a well-defined step; its ``train_ops[i]`` then also run every earlier
    replica's update (and need their inputs). Threads that drive one replica each need updates
    without that chain, so they are built here (the chained ones are pruned from each step)."""
    updates = []
    variables = rep.variables[0]
    for i, (device, loss) in enumerate(zip(rep.devices, rep.replica_losses)):
        with tw.device(device), tw.name_scope(f"async_replica_{i}"):
            grads = tw.gradients(loss, variables)
            updates.append(make_optimizer().apply_gradients(list(zip(grads, variables)),
                                                            global_step=global_step))
    return updates


# -- what one step moves -------------------------------------------------------------------------
def transfer_lines(plan, model: Model) -> list:
    """The step's cross-device traffic by link and kind: all-reduce chunks, weights read from
    a parameter server, gradients sent to one; the rest (losses, optimizer scalars, control
    edges) in one line."""
    if not plan.multi_device:
        return [plan.summary()]
    variables = {v.op.name for v in model.rep.variables[0]}
    groups: dict = {}
    for t in plan.partitions.transfers:
        kind = _kind(t, variables)
        key = (kind, "", "") if kind == "other" else (kind, t.src_device, t.dst_device)
        count, size = groups.get(key, (0, 0))
        groups[key] = (count + 1, size + (t.bytes or 0))
    total = sum(size for _, size in groups.values())
    lines = [f"One step moves {_mib(total)} in {len(plan.partitions.transfers)} "
             f"_Send/_Recv pairs:"]
    for (kind, src, dst), (count, size) in sorted(groups.items(),
                                                  key=lambda kv: (kv[0][0] == "other",
                                                                  -kv[1][1], kv[0])):
        link = f"{_short(src)} -> {_short(dst)}" if src else "(small tensors and controls)"
        lines.append(f"  {kind:<20} {link:<34} {count:4d} tensors {_mib(size):>10}")
    return lines


def _kind(transfer, variables) -> str:
    name = transfer.tensor.split(":")[0].lstrip("^")
    if "_all_reduce" in name:
        return "all-reduce chunks"
    if name in variables:
        return "weights from the ps"
    if "/gradients/" in transfer.tensor or "_grad/" in transfer.tensor:
        return "gradients to the ps"
    return "other"


def _short(device: str) -> str:
    """``CPU:1`` for a device of this process, ``worker:0/CPU:0`` for one of a Ray task."""
    parts = dict(p.split(":", 1) for p in device.strip("/").split("/") if ":" in p)
    local = parts.get("device", device)
    job = parts.get("job", "localhost")
    return local if job == "localhost" else f"{job}:{parts.get('task', 0)}/{local}"


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.2f} MiB" if size >= 1 << 16 else f"{size} B"


def step_plan(sess, model: Model, data, args):
    """The plan of a synchronous step, or of the last replica's update in ps-async."""
    xs, ys = next(data.batches(args.batch_size))
    if args.mode != "ps-async":
        return sess.step_plan([model.rep.train_op, model.rep.loss],
                              {model.images: xs, model.labels: ys})
    per_replica = args.batch_size // args.replicas
    images, labels = model.slices[-1]
    print(f"(the plan of replica {args.replicas - 1}'s update, as its thread runs it)")
    return sess.step_plan([model.updates[-1], model.rep.replica_losses[-1]],
                          {images: xs[:per_replica], labels: ys[:per_replica]})


# -- training ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Result:
    accuracy: float
    examples_per_second: float   # after each replica's first (compiling) step
    global_step: int
    updates: int                 # update ops run (steps; steps x replicas in ps-async)
    final_loss: float


def train_synchronous(sess, model: Model, data, args) -> tuple:
    """``args.steps`` steps of the global batch; (examples/s after step 1, last loss)."""
    batches = data.batches(args.batch_size)
    progress = Progress(args.steps, args.batch_size)
    start = None
    loss = float("nan")
    for step in range(1, args.steps + 1):
        xs, ys = next(batches)
        _, loss = sess.run([model.rep.train_op, model.rep.loss],
                           {model.images: xs, model.labels: ys})
        progress.update(step, float(loss))
        if step == 1:
            start = time.perf_counter()
    progress.close()
    seconds = time.perf_counter() - start
    rate = (args.steps - 1) * args.batch_size / seconds if args.steps > 1 else 0.0
    return rate, float(loss)


def train_asynchronous(sess, model: Model, data, args) -> tuple:
    """Each replica on its own thread: ``args.steps`` updates of its own batches (the global
    batch size over the replicas, so all threads together see as many examples as the
    synchronous modes); (examples/s of all threads after their first update, last loss)."""
    n = args.replicas
    per_replica = args.batch_size // n
    progress = Progress(args.steps * n, per_replica)
    lock = threading.Lock()
    done = [0]
    losses = [float("nan")] * n
    failures: list = []
    warm = threading.Barrier(n + 1)

    def replica(i):
        images, labels = model.slices[i]
        batches = data.batches(per_replica, seed=1000 + i)
        try:
            for step in range(1, args.steps + 1):
                xs, ys = next(batches)
                _, loss = sess.run([model.updates[i], model.rep.replica_losses[i]],
                                   {images: xs, labels: ys})
                losses[i] = float(loss)
                with lock:
                    done[0] += 1
                    progress.update(done[0], losses[i])
                if step == 1:
                    warm.wait()
        except BaseException as e:  # noqa: BLE001 - re-raised on the main thread
            failures.append(e)
            warm.abort()

    threads = [threading.Thread(target=replica, args=(i,), name=f"replica-{i}")
               for i in range(n)]
    for t in threads:
        t.start()
    try:
        warm.wait()
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    for t in threads:
        t.join()
    progress.close()
    if failures:
        raise failures[0]
    seconds = time.perf_counter() - start
    rate = (args.steps - 1) * args.batch_size / seconds if args.steps > 1 else 0.0
    return rate, sum(losses) / n


def evaluate(sess, model: Model, data, batch: int = 500) -> float:
    correct = 0.0
    one_hot = data.test.one_hot
    for start in range(0, len(data.test.labels), batch):
        xs, ys = data.test.images[start:start + batch], one_hot[start:start + batch]
        accuracy = sess.run(model.accuracy, {model.images: xs, model.labels: ys})
        correct += float(accuracy) * len(xs)
    return correct / len(data.test.labels)


# -- the program ---------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--mode", choices=MODES, default="allreduce")
    parser.add_argument("--model", choices=sorted(NETWORKS), default="mlp")
    parser.add_argument("--target", default="",
                        help="'local:<n>' (n Ray worker processes here) or 'ray://<address>'; "
                             "default: virtual CPUs of this process")
    parser.add_argument("--ps", type=int, default=0,
                        help="parameter-server devices of their own for the ps modes "
                             "(default 0: the variables live on replica 0's device)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100,
                        help="the global batch, split over the replicas")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="Adam's (default 1e-3 for the mlp, 1e-4 for the cnn)")
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST t10k IDX files")
    parser.add_argument("--full-plan", action="store_true",
                        help="print the step's whole placement and every _Send/_Recv pair")
    args = parser.parse_args(argv)
    if args.replicas < 1 or args.batch_size % args.replicas:
        parser.error(f"--batch-size {args.batch_size} must divide into --replicas "
                     f"{args.replicas} equal slices")
    if args.ps and args.mode == "allreduce":
        parser.error("--ps is for the parameter-server modes (ps-sync, ps-async)")
    return args


def main(argv=None) -> Result:
    args = parse_args(argv)
    data = datasets.load(args.data_dir)
    print(f"data: {data.name}, {len(data.train.labels)} training and "
          f"{len(data.test.labels)} test images of {data.side}x{data.side}")
    model = build(args, data.side)
    where = args.target or "this process"
    print(f"{args.model}, {args.replicas} replica(s) on {where}, mode {args.mode}, global batch "
          f"{args.batch_size} ({args.batch_size // args.replicas} per replica)")
    with tw.Session(args.target, config=session_config(args.replicas, args.ps,
                                                       args.target)) as sess:
        sess.run(tw.global_variables_initializer())
        plan = step_plan(sess, model, data, args)
        print(plan.summary() if args.full_plan else "\n".join(transfer_lines(plan, model)))
        train = train_asynchronous if args.mode == "ps-async" else train_synchronous
        rate, loss = train(sess, model, data, args)
        accuracy = evaluate(sess, model, data)
        step = int(sess.run(model.global_step))
    updates = args.steps * (args.replicas if args.mode == "ps-async" else 1)
    print(f"test accuracy: {accuracy:.4f}  {rate:.0f} examples/s  global step {step} "
          f"({updates} updates)")
    return Result(accuracy, rate, step, updates, loss)


if __name__ == "__main__":
    main()
