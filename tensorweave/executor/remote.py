"""Run a step's partitions on remote tasks: one long-lived Ray actor per task of the cluster.

    sess = tw.Session(target="local:2")        # a local Ray instance, tasks /job:worker/task:0..1
    sess = tw.Session(target="ray://auto", config=tw.ConfigProto(
        cluster_def=tw.train.ClusterSpec({"worker": 2, "ps": 1})))

Ray is the optional ``[distributed]`` extra and is imported only here, only when a Session asks
for a remote target.

What crosses the process boundary, and when:

* once per compiled step, each task receives its partitions as GraphDef JSON (never a pickle of
  code) with the feed and fetch indices they use; the task imports them and builds its own
  ``DeviceProgram`` per device, kernels bound there;
* each ``run`` sends each task only the feeds its partitions read, and brings back only the
  fetches they make;
* a ``_Send`` whose ``_Recv`` is on another task calls that task's ``deliver`` (an actor call
  carrying the array; Ray moves large arrays through its shared-memory object store); to a
  task of the same node it is a message on a Unix socket instead (``node_links.py``), and a
  large array goes through a shared-memory segment the sender reuses every step, the message
  carrying its name (``shared_channels.py``); sends between devices of one task stay
  in-process;
* the client calls the tasks of its own node over the same sockets rather than through Ray
  (``step_links.py``), large feeds through its own shared-memory segments.

Variables live on the task whose partition holds them and persist across steps. A step's
updates are held by each task until the client says whether the whole step succeeded (in the
next ``run`` call, or ``settle``), so a step that failed anywhere changes no variable anywhere.

Failures: a task whose actor died or stopped answering turns the step into ``UnavailableError``
naming the task; the others are told to abort the step, which wakes their receives. Every
receive has a deadline (``operation_timeout_in_ms``, or ``DEFAULT_TIMEOUT_MS`` when that is 0).
Each actor draws a fresh incarnation number when it starts; it is part of every rendezvous key
it sends, and a task drops deliveries from an incarnation other than the one it was told, so
nothing sent before a restart is taken for a current value. Actors restart automatically
(``max_restarts``); a restarted task has lost its partitions and variables: the client
re-registers partitions on the next run, and variables come back from a checkpoint
(``tw.train.MonitoredTrainingSession`` does that).
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import os
import pickle
import socket
import sys
import threading
import time

import numpy as np

from tensorweave import errors
from tensorweave.executor import host_memory
from tensorweave.executor.config import ConfigProto
from tensorweave.executor.context import StepContext, VariableStore
from tensorweave.executor.device_program import DeviceProgram
from tensorweave.executor.multidevice import MultiDeviceProgram
from tensorweave.executor.node_links import Link, Listener
from tensorweave.executor.rendezvous import Rendezvous
from tensorweave.executor.shared_channels import Inbox, Outbox
from tensorweave.executor.step_links import ClientLinks, next_answer
from tensorweave.graph.core import Graph
from tensorweave.graph.serialization import to_json
from tensorweave.ops import registry
from tensorweave.ops.importer import import_graph_def
from tensorweave.ops.transfer import SEND_TYPE, key_prefix

DEFAULT_TIMEOUT_MS = 60_000

# A local cluster's limit for arguments carried inside an actor call (Ray's default: 100 KB;
# larger ones go through the object store). Measured here, one actor call with a float32 array:
# 313 KB 3.38 -> 1.99 ms, 627 KB 4.63 -> 2.86 ms, but 2 MB 5.91 -> 7.04 ms; so 1 MB.
INLINE_LIMIT_BYTES = 1 << 20
_GRACE_SECONDS = 5.0        # how long the client waits for the others after one task failed


# -- targets ---------------------------------------------------------------------------------------
def parse_target(target: str):
    """``("local", n)`` for ``local:<n>``, ``("ray", address)`` for ``ray://<address>``, None
    for an in-process target."""
    if not target:
        return None
    if target.startswith("local:"):
        try:
            n = int(target[len("local:"):])
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"Session target {target!r}: 'local:<n>' needs a worker count "
                             f"of at least 1")
        return ("local", n)
    if target.startswith("ray://"):
        return ("ray", target[len("ray://"):] or "auto")
    raise ValueError(f"unknown Session target {target!r}: use '' (this process), 'local:<n>' "
                     f"(a local Ray instance with n workers) or 'ray://<address>'")


def _import_ray():
    try:
        import ray  # noqa: PLC0415 - the optional distributed extra
    except ImportError:
        raise ImportError("remote Session targets need Ray: pip install "
                          "'tensorweave[distributed]'") from None
    return ray


def _ensure_ray(kind, where, num_cpus):
    if kind != "local":
        # Clusters started by `tensorweave cluster up` require Ray's token, and the driver
        # must ask for it too (Ray reads this when it is imported).
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    if kind == "local":
        # A local cluster has loopback as its node address, no dashboard, Ray's token
        # authentication (on by default for local clusters since Ray 2.59), and keeps Ray's
        # logs out of the user's terminal. address="local": always an instance of its own,
        # never a cluster that `ray start` (or RAY_ADDRESS) points at. Call arguments up to
        # INLINE_LIMIT_BYTES travel inside the call instead of through the object store.
        # Workers run at the session's own priority: Ray starts them at nice 15, where any
        # daemon of Ray's or the client preempts a step (on two cores: one Ray worker's CNN
        # step 104 -> 74 ms median, in-process 63-68 ms; benchmarks/scaling.py). And Ray does
        # less in the background: no idle workers started ahead for tasks (the session's
        # actors start their own processes), no metrics or task events, which only Ray's
        # dashboard reads (an idle two-task cluster used 5.4% of a core, now 3.9%).
        ray.init(address="local", num_cpus=max(num_cpus, 1), include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False,
                 configure_logging=False,
                 _system_config={"max_direct_call_object_size": INLINE_LIMIT_BYTES,
                                 "worker_niceness": 0,
                                 "enable_worker_prestart": False,
                                 "prestart_worker_first_driver": False,
                                 "enable_metrics_collection": False,
                                 "task_events_report_interval_ms": 0})
    else:
        ray.init(address=where, log_to_driver=False, configure_logging=False)
    return ray


# -- the client's side -----------------------------------------------------------------------------
class RemoteCluster:
    """The tasks of a Session's cluster and their actors (one per task)."""

    def __init__(self, target, spec, devices_per_task=None, max_restarts: int = -1):
        from tensorweave.placement.devices import Cluster  # noqa: PLC0415 (import cycle)
        kind, where = parse_target(target)
        if spec is None:
            if kind != "local":
                raise ValueError("a 'ray://' target needs ConfigProto(cluster_def="
                                 "tw.train.ClusterSpec({...})) to know its tasks")
            spec = {"worker": where}
        from tensorweave.train.cluster import ClusterSpec  # noqa: PLC0415 (import cycle)
        self.spec = ClusterSpec(spec)
        self.placement_cluster = Cluster.from_cluster_spec(self.spec, devices_per_task)
        self.tasks = sorted({d.task_key for d in self.placement_cluster})
        n = len(self.tasks)
        self.ray = _ensure_ray(kind, where, n)
        gpus = _gpus_per_task(devices_per_task)
        actor = self.ray.remote(TaskWorker).options(
            max_restarts=max_restarts, max_task_retries=0, max_concurrency=4,
            num_cpus=0, num_gpus=gpus, runtime_env=host_memory.runtime_env())
        self.actors = {task: actor.remote(task) for task in self.tasks}
        self.incarnations: dict = {}
        self.nodes: dict = {}
        self.backlog: dict = {task: [] for task in self.tasks}  # (step id, ok) not yet told
        self.lock = threading.Lock()    # one remote step at a time per session
        self.client_links = ClientLinks()   # step calls to the tasks of the client's node
        self.refresh()

    def refresh(self, patience: float = 60.0):
        """Ask every task for its incarnation (a new one after a restart) and where it runs;
        tell every task who its peers are and which incarnations to accept. A task that is
        restarting is waited for, up to ``patience`` seconds."""
        deadline = time.monotonic() + patience
        while True:
            try:
                infos = self.ray.get([a.describe.remote() for a in self.actors.values()],
                                     timeout=patience)
                break
            except Exception:  # noqa: BLE001 - an actor still restarting; ask again
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.incarnations = {task: info["incarnation"] for task, info in zip(self.tasks, infos)}
        self.nodes = {task: info for task, info in zip(self.tasks, infos)}
        handles = dict(self.actors)
        nodes = {task: info["node"] for task, info in self.nodes.items()}
        links = {task: info.get("link") for task, info in self.nodes.items()}
        self.ray.get([a.set_peers.remote(handles, self.incarnations, nodes, links)
                      for a in self.actors.values()], timeout=120)
        here = _client_node(self.ray)
        self.client_links.reset({task: tuple(link) for task, link in links.items()
                                 if link is not None and here is not None
                                 and nodes[task] == here})

    def record(self, tasks, step_id: int, ok: bool):
        for task in tasks:
            self.backlog[task].append((step_id, ok))

    def take_backlog(self, task) -> list:
        backlog, self.backlog[task] = self.backlog[task], []
        return backlog

    def settle_all(self):
        """Tell every task the outcome of every step it ran (before reading variables)."""
        refs = [self.actors[t].settle.remote(self.take_backlog(t)) for t in self.tasks]
        self.ray.get(refs, timeout=120)

    def variables(self) -> dict:
        self.settle_all()
        merged: dict = {}
        for values in self.ray.get([self.actors[t].variables.remote() for t in self.tasks],
                                   timeout=120):
            merged.update(values)
        return merged

    def device_incarnations(self) -> dict:
        return {d.name: self.incarnations[d.task_key] for d in self.placement_cluster}

    def task_of(self, device_name: str):
        return self.placement_cluster.device(device_name).task_key

    def pids(self) -> dict:
        """``{task: process id}`` of each task's actor (for operations and fault tests)."""
        return {task: info["pid"] for task, info in self.nodes.items()}

    def shutdown(self):
        self.client_links.close()
        # Each task unlinks its shared-memory segments first: a killed actor cannot.
        closing = [a.close_channels.remote() for a in self.actors.values()]
        try:
            self.ray.get(closing, timeout=5)
        except Exception:  # noqa: BLE001 - a task already gone; the next sweep takes them
            pass
        for a in self.actors.values():
            try:
                self.ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = {}


def _gpus_per_task(devices_per_task) -> float:
    if isinstance(devices_per_task, dict):
        value = devices_per_task.get("GPU", 0)
        return float(value) if isinstance(value, (int, float)) else 0.0
    return 0.0


def task_label(task) -> str:
    job, replica, index = task if len(task) == 3 else (task[0], 0, task[-1])
    return f"/job:{job}/task:{index}"


class RemoteProgram:
    """The client's handle on one compiled step spread over remote tasks."""

    _ids = iter(range(1, 1 << 62))
    _id_lock = threading.Lock()

    def __init__(self, remote: RemoteCluster, partitions, user_graph, feed_names, num_fetches,
                 config):
        self.remote = remote
        self.user_graph = user_graph
        self.num_fetches = num_fetches
        self.timeout_ms = config.operation_timeout_in_ms or DEFAULT_TIMEOUT_MS
        with self._id_lock:
            self.handle = next(self._ids)
        by_task: dict = {}
        for device, graph in partitions.graphs.items():
            by_task.setdefault(remote.task_of(device), []).append((device, to_json(graph)))
        self.payloads = {task: {"partitions": parts, "feed_names": list(feed_names),
                                "num_fetches": num_fetches, "config": _config_dict(config),
                                "tasks": sorted(by_task)}
                         for task, parts in by_task.items()}
        self.incarnations = dict(remote.incarnations)
        self.feed_indices: dict = {}
        self.fetch_indices: dict = {}
        self._register()

    @property
    def stale(self) -> bool:
        """Whether a task restarted since this step was registered."""
        return any(self.remote.incarnations.get(t) != inc for t, inc in self.incarnations.items())

    def _register(self):
        tasks = list(self.payloads)
        calls = {t: self.remote.actors[t].register.remote(self.handle, self.payloads[t])
                 for t in tasks}
        results = self._gather(tasks, calls, None)
        for task, result in zip(tasks, results):
            self.feed_indices[task], self.fetch_indices[task] = result
        readers = [i for indices in self.feed_indices.values() for i in indices]
        self.shared_feed_indices = sorted({i for i in readers if readers.count(i) > 1})

    def run(self, ctx, feed_values, stats=None, t0=0.0):
        tasks = list(self.payloads)
        remote = self.remote
        with remote.lock:
            wall0 = time.time()
            calls = self._call(tasks, ctx.step_id, feed_values, stats is not None)
            try:
                results = self._collect(tasks, calls, ctx.step_id)
            except BaseException:
                remote.record(tasks, ctx.step_id, False)
                raise
            remote.record(tasks, ctx.step_id, True)
        values = [None] * self.num_fetches
        for task, result in zip(tasks, results):
            fetched, task_stats, task_wall0 = unpack(result)
            for j, value in fetched.items():
                values[j] = value
            if stats is not None:
                shift = (task_wall0 - wall0) * 1e6
                for s in task_stats:
                    s.start_us += shift
                    s.end_us += shift
                    stats.append(s)
        return tuple(values)

    def _call(self, tasks, step_id, feed_values, trace) -> dict:
        """Start the step on every task: ``{task: the call}``, a Link to a task of the
        client's node (``step_links.py``), else a Ray reference."""
        remote = self.remote
        shared = None
        calls = {}
        for task in tasks:
            feeds = {i: feed_values[i] for i in self.feed_indices[task]}
            backlog = remote.take_backlog(task)

            def request(small, large, backlog=backlog):
                return pack((self.handle, step_id, small, trace, backlog, large))

            link = remote.client_links.link(task)
            if link is not None and remote.client_links.call(task, link, request, feeds):
                calls[task] = link
                continue
            small, large = split_by_size(feeds)
            # Large feeds are arguments of their own (Ray resolves an object reference only as
            # a top-level argument): one read by several tasks is put into the object store
            # once and each task maps it.
            if shared is None:
                shared = self._shared_feeds(feed_values)
            args = [shared.get(i, value) for i, value in large.items()]
            calls[task] = remote.actors[task].run.remote(request(small, tuple(large)), *args)
        return calls

    def _shared_feeds(self, feed_values) -> dict:
        """``{feed index: object reference}`` of the large feeds more than one task reads."""
        return {i: self.remote.ray.put(feed_values[i]) for i in self.shared_feed_indices
                if getattr(feed_values[i], "nbytes", 0) > PACK_LIMIT_BYTES}

    def _collect(self, tasks, calls, step_id):
        """The step's answers, one per task. When every call went through Ray, the usual case
        costs one ``ray.get``: a task whose step fails aborts it on the other tasks itself (see
        ``TaskWorker.run``), so every call returns soon, and ``ray.get`` returns early when an
        actor died. Anything but answers from every task in time, and calls over links, go to
        ``_gather``, which sorts it out."""
        refs = list(calls.values())
        if any(isinstance(call, Link) for call in refs):
            return self._gather(tasks, calls, step_id)
        try:
            outcomes = self.remote.ray.get(refs, timeout=self.timeout_ms / 1000.0
                                           + _GRACE_SECONDS)
        except Exception:  # noqa: BLE001 - a dead or silent task: _gather names it
            return self._gather(tasks, calls, step_id)
        failure = None
        for outcome in outcomes:
            if _is_error(outcome):
                failure = _worse(failure, self._error(outcome))
        if failure is not None:
            raise failure
        return outcomes

    def _gather(self, tasks, calls, step_id):
        """Wait for one call per task (``{task: Link or Ray reference}``); the first failure
        aborts the step on the other tasks, which then get a bounded time to answer."""
        ray = self.remote.ray
        pending = dict(calls)
        results: dict = {}
        failure = None
        deadline = time.monotonic() + self.timeout_ms / 1000.0 + _GRACE_SECONDS

        def wait_refs(refs, timeout):
            return ray.wait(refs, num_returns=1, timeout=timeout)[0]

        while pending:
            answer = next_answer(pending, max(0.0, deadline - time.monotonic()), wait_refs)
            if answer is None:
                for task, call in pending.items():
                    if isinstance(call, Link):  # its answer, if it ever comes, is stale
                        self.remote.client_links.drop(task, call)
                missing = ", ".join(task_label(t) for t in pending)
                failure = failure or errors.UnavailableError(
                    None, None, f"task {missing} did not answer within "
                                f"{self.timeout_ms / 1000 + _GRACE_SECONDS:.1f} s")
                break
            task, call = answer
            del pending[task]
            outcome = (self._link_outcome(task, call) if isinstance(call, Link)
                       else self._ray_outcome(task, call))
            if _is_error(outcome):
                error = self._error(outcome)
                failure = _worse(failure, error)
                if step_id is not None:
                    for other in pending:
                        self.remote.actors[other].abort.remote(step_id, str(error))
                    deadline = min(deadline, time.monotonic() + _GRACE_SECONDS)
                continue
            results[task] = outcome
        if failure is not None:
            if isinstance(failure, errors.UnavailableError):
                self._note_restarts()
            raise failure
        return [results[t] for t in tasks]

    def _ray_outcome(self, task, ref):
        try:
            return self.remote.ray.get(ref)
        except LostPartitions as e:  # Ray's error for a raise in the actor is one too
            return ("error", "StaleStepError", str(getattr(e, "cause", e)), None)
        except Exception as e:  # noqa: BLE001 - the actor died or is unreachable
            return ("error", "UnavailableError", f"task {task_label(task)} is unavailable: "
                                                 f"{type(e).__name__}: {_first_line(e)}", None)

    def _link_outcome(self, task, link):
        """The answer waiting on ``link`` (see ``TaskWorker.run_by_link``)."""
        try:
            kind, outcome = link.receive(self.timeout_ms / 1000.0 + _GRACE_SECONDS)
        except (OSError, EOFError) as e:
            self.remote.client_links.drop(task, link)
            return ("error", "UnavailableError", f"task {task_label(task)} is unavailable: "
                                                 f"its connection closed ({type(e).__name__})",
                    None)
        if kind == "lost":
            return ("error", "StaleStepError", outcome, None)
        return outcome

    def _note_restarts(self):
        """After a task failed, learn the incarnations again (a restarted actor has a new
        one), so stale compiled steps re-register."""
        try:
            self.remote.refresh()
        except Exception:  # noqa: BLE001 - still down; the next run will say so again
            pass

    def _error(self, outcome):
        _, class_name, message, op_name = outcome
        cls = StaleStepError if class_name == "StaleStepError" else getattr(errors, class_name,
                                                                               None)
        if not (isinstance(cls, type) and issubclass(cls, errors.OpError)):
            cls = errors.InternalError
        op = None
        if op_name:
            try:
                op = self.user_graph.get_operation_by_name(op_name)
            except KeyError:
                op = None
        return cls(None, op, message)


# -- what a step's calls carry ---------------------------------------------------------------------
# Every argument and return value of an actor call costs Ray a serialization of its own (measured
# here: ~0.1 ms per argument; a returned numpy scalar ~0.09 ms more than a bytes object), while
# pickling a few small values ourselves costs microseconds. So a step's request and answer are
# one pickled bytes object each, and only arrays too large to be worth copying into it travel as
# Ray values of their own (through Ray's shared-memory object store, not copied on one node).
PACK_LIMIT_BYTES = 64 << 10


def split_by_size(values: dict) -> tuple:
    """``(small, large)``: the values that go inside the packed bytes, and the arrays of more
    than PACK_LIMIT_BYTES that travel as Ray values."""
    large = {k: v for k, v in values.items() if getattr(v, "nbytes", 0) > PACK_LIMIT_BYTES}
    if not large:
        return values, large
    return {k: v for k, v in values.items() if k not in large}, large


def pack(value) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(result) -> tuple:
    """A task's answer to ``run``: (fetches by index, stats, the task's start time)."""
    if isinstance(result, bytes):
        return pickle.loads(result)
    packed, large = result
    fetched, stats, wall0 = pickle.loads(packed)
    fetched.update(large)
    return fetched, stats, wall0


def _is_error(outcome) -> bool:
    return isinstance(outcome, tuple) and len(outcome) == 4 and outcome[0] == "error"


def _worse(failure, error):
    """The error a step reports: the first one that is not a cancellation (the others were
    cancelled because of it)."""
    if failure is None or (isinstance(failure, errors.CancelledError)
                           and not isinstance(error, errors.CancelledError)):
        return error
    return failure


class LostPartitions(RuntimeError):
    """Raised by a task asked to run a step it does not have (it restarted since)."""


class StaleStepError(errors.UnavailableError):
    """A task restarted since this step was registered: the Session compiles the step again
    (with the new incarnations in its rendezvous keys) and runs it once more."""


def _config_dict(config) -> dict:
    return {"inter_op_parallelism_threads": config.inter_op_parallelism_threads,
            "operation_timeout_in_ms": config.operation_timeout_in_ms or DEFAULT_TIMEOUT_MS}


def _first_line(e) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else ""


# -- the task's side -------------------------------------------------------------------------------
class TaskWorker:
    """The body of one task's Ray actor: its variables, its registered partitions, and the
    rendezvous of the steps it is running."""

    def __init__(self, task):
        host_memory.tune()
        self.task = tuple(task)
        self.incarnation = int.from_bytes(os.urandom(6), "little") | 1
        self.store = VariableStore()
        self.programs: dict = {}
        self.participants: dict = {}    # handle -> the other tasks that run that step
        self.peers: dict = {}
        self.accepted: dict = {}        # task -> incarnation whose sends are taken
        self.lock = threading.Lock()
        self.steps: dict = {}           # step id -> TaskRendezvous
        self.done_until = 0             # steps up to here are over: late deliveries dropped
        self.pending: dict = {}         # step id -> variable updates awaiting settle
        self.timeout_ms = DEFAULT_TIMEOUT_MS  # receive deadline, from the session's config
        self._pool = None
        self._devices_pool = None
        self._steps_thread = None
        self.node = _ray_node_id()
        self.neighbours: set = set()    # peers on this task's node: large sends go through
        self.outbox = Outbox()          # shared memory (shared_channels.py), and messages
        self.inbox = Inbox()            # through Unix sockets (node_links.py)
        self.listener = Listener(self._on_link_message)
        self.link_addresses: dict = {}  # neighbour -> (address, secret)
        self.links: dict = {}           # neighbour -> Link, connected on first use
        atexit.register(self.outbox.close)

    # -- setup ------------------------------------------------------------------------------
    def describe(self) -> dict:
        link = None if self.listener.address is None else (self.listener.address,
                                                            self.listener.secret)
        return {"incarnation": self.incarnation, "pid": os.getpid(),
                "host": socket.gethostname(), "node": self.node, "link": link}

    def set_peers(self, handles: dict, incarnations: dict, nodes: dict | None = None,
                  links: dict | None = None):
        self.peers = {tuple(k): v for k, v in handles.items()}
        self.accepted = {tuple(k): v for k, v in incarnations.items()}
        self.neighbours = {tuple(k) for k, node in (nodes or {}).items()
                           if self.node is not None and node == self.node}
        with self.lock:
            for link in self.links.values():
                link.close()
            self.links = {}
            self.link_addresses = {tuple(k): tuple(v) for k, v in (links or {}).items()
                                   if v is not None and tuple(k) in self.neighbours}
        return True

    def register(self, handle: int, payload: dict):
        """Import this task's partitions and build one DeviceProgram per device."""
        try:
            config = ConfigProto(**payload["config"])
            self.timeout_ms = config.operation_timeout_in_ms or DEFAULT_TIMEOUT_MS
            programs = []
            for device, text in payload["partitions"]:
                graph = Graph()
                import_graph_def(text, name="", graph=graph)
                programs.append(DeviceProgram(graph, graph, payload["feed_names"],
                                              payload["num_fetches"], config,
                                              self._thread_pool, device=device, partial=True,
                                              wrap_kernel=self._products_sent_in_place(graph)))
            runner = MultiDeviceProgram(programs, payload["num_fetches"], self._device_pool(),
                                        config.operation_timeout_in_ms)
            self.programs[handle] = runner
            self.participants[handle] = [tuple(t) for t in payload["tasks"]
                                         if tuple(t) != self.task]
            feeds = sorted({i for p in programs for i in p.feed_indices})
            fetches = sorted({j for p in programs for j in p.fetch_indices})
            return feeds, fetches
        except Exception as e:  # noqa: BLE001 - reported to the client in its terms
            return _error_outcome(e)

    # -- steps ------------------------------------------------------------------------------
    def run(self, request: bytes, *large_feeds):
        """``request`` = the packed (handle, step id, {feed index: value}, trace?, outcomes of
        earlier steps to settle first, indices of the large feeds); feeds too large to pack
        come as arguments of their own, in that order. Returns the step's fetches, stats and
        start time packed (see ``pack``), or an error outcome."""
        handle, step_id, feeds, trace, outcomes, large = pickle.loads(request)
        feeds.update(zip(large, large_feeds))
        self.settle(outcomes)
        runner = self.programs.get(handle)
        if runner is None:
            # Raised, not returned: the client's ray.get returns early on an exception, and
            # this task cannot tell the others (it does not know who runs the step).
            raise LostPartitions(f"task {task_label(self.task)} restarted and lost this "
                                 f"step's partitions")
        ctx = StepContext(self.store, step_id)
        ctx.rendezvous = self._rendezvous(step_id)
        values = [None] * (max(feeds) + 1 if feeds else 0)
        for i, value in feeds.items():
            values[i] = value
        stats = [] if trace else None
        wall0 = time.time()
        try:
            fetched = self._step_thread().submit(_run_step, runner, ctx, values, stats).result()
        except Exception as e:  # noqa: BLE001 - reported to the client in its terms
            outcome = _error_outcome(e)
            if outcome[1] != "CancelledError":
                # The other tasks of the step may be waiting for what this one would have
                # sent: wake them now rather than at their deadline.
                for task in self.participants.get(handle, ()):
                    self.peers[task].abort.remote(step_id, outcome[2])
            return outcome
        finally:
            with self.lock:
                self.steps.pop(step_id, None)
                self.done_until = max(self.done_until, step_id)
            self.outbox.release_reserved()
        if ctx.updates:
            with self.lock:
                self.pending[step_id] = ctx.updates
        results = {j: fetched[j] for j in range(len(fetched)) if fetched[j] is not None}
        small, large = split_by_size(results)
        packed = pack((small, stats or [], wall0))
        return (packed, large) if large else packed

    def settle(self, outcomes: list):
        """Commit the held updates of the steps that succeeded everywhere; drop the others."""
        for step_id, ok in outcomes:
            with self.lock:
                updates = self.pending.pop(step_id, None)
            if ok and updates:
                self.store.commit(updates)
        return True

    def abort(self, step_id: int, message: str):
        with self.lock:
            if step_id <= self.done_until and step_id not in self.steps:
                return False  # the step is over here
        self._rendezvous(step_id).abort(message)
        return True

    def deliver(self, key: str, value):
        """A value sent to this task by another one (see ``TaskRendezvous.send``)."""
        if not self._accepts(key):
            return False
        try:
            self._rendezvous(_step_of(key)).deliver_local(key, value)
        except errors.OpError:
            return False
        return True

    def deliver_shared(self, key: str, name: str, dtype: str, shape):
        """A value a task of this node left in shared-memory segment ``name``."""
        if not self._accepts(key):
            self.inbox.drop(name)
            return False
        return self.deliver(key, self.inbox.take(name, dtype, shape))

    def _accepts(self, key: str) -> bool:
        """Whether a delivery is for a step still running here, from the sender's current
        incarnation."""
        src, incarnation, _, _, step = key.split(";")
        sender = _task_of_name(src)
        if self.accepted.get(sender) is not None and int(incarnation, 16) != \
                self.accepted[sender]:
            return False  # sent by an earlier incarnation of that task: rejected
        step_id = int(step)
        with self.lock:
            return not (step_id <= self.done_until and step_id not in self.steps)

    def variables(self) -> dict:
        with self.store.lock:
            return dict(self.store.values)

    def close_channels(self):
        self.listener.close()
        with self.lock:
            for link in self.links.values():
                link.close()
            self.links = {}
        self.outbox.close()
        self.inbox.close()
        return True

    def send_by_link(self, task, message) -> bool:
        """Send ``message`` to a neighbour over its Unix socket; False if there is none or it
        broke (the caller sends through Ray)."""
        with self.lock:
            link = self.links.get(task)
            if link is None:
                address = self.link_addresses.get(task)
                if address is None:
                    return False
                try:
                    link = self.links[task] = Link(*address)
                except OSError:
                    return False
        if link.send(message):
            return True
        with self.lock:
            if self.links.get(task) is link:
                del self.links[task]
        return False

    def _on_link_message(self, message):
        """A message on this task's listener: the client's step call (answered on the same
        connection) or a value another task sent."""
        kind, key, *rest = message
        if kind == "run":
            return self.run_by_link(key, *rest)
        if kind == "shared":
            self.deliver_shared(key, *rest)
        else:
            self.deliver(key, rest[0])
        return None

    def run_by_link(self, request: bytes, tickets: list):
        """``run`` called by the client over this task's listener (``step_links.py``): the
        large feeds wait in the client's shared segments. The answer: ``("ok", what run
        returns)``, or ``("lost", message)`` where ``run`` raises ``LostPartitions``."""
        try:
            feeds = [self.inbox.take(*ticket) for ticket in tickets]
            return ("ok", self.run(request, *feeds))
        except LostPartitions as e:
            return ("lost", str(e))
        except Exception as e:  # noqa: BLE001 - reported to the client in its terms
            return ("ok", _error_outcome(e))

    def commit_variables(self, updates: dict):
        for value in updates.values():
            value.flags.writeable = False
        self.store.commit(updates)
        return True

    def _products_sent_in_place(self, graph):
        """A ``wrap_kernel`` for ``graph``'s schedule: each ``MatMul`` whose product goes to a
        task of this node writes it straight into a free shared segment of that edge, which
        the ``_Send`` then passes on without a copy (``Outbox.reserve``). Only a product that
        cannot outlive the step is written so — read by that one ``_Send`` and otherwise only
        by ops that keep no input (``OpDef.keeps_no_input``: the update ops) — of fully known
        static shape, large enough for a segment: the segment is rewritten next step."""
        reserved = {}
        for op in graph.get_operations():
            if op.type != SEND_TYPE or not op.inputs:
                continue
            task = _task_of_name(op.attrs["recv_device"])
            if task == self.task or task not in self.neighbours:
                continue
            product = op.inputs[0]
            readers = [c.type for c in product.consumers()]
            if product.op.type != "MatMul" or not product.shape.is_fully_defined() or \
                    readers.count(SEND_TYPE) != 1 or \
                    any(r != SEND_TYPE and not registry.get(r).keeps_no_input for r in readers):
                continue
            reserved[product.op] = (key_prefix(op.attrs), tuple(product.shape.as_list()),
                                    product.dtype.np)
        if not reserved:
            return None
        outbox = self.outbox

        def wrap(op, kernel):
            if op not in reserved:
                return kernel
            edge, shape, dtype = reserved[op]

            def product_into_segment(a, b):
                out = outbox.reserve(edge, shape, dtype)
                if out is None:
                    return kernel(a, b)
                try:
                    return kernel(a, b, out=out)
                except ValueError:  # not the shape inferred: the plain product says why
                    outbox.release_reserved(edge)
                    return kernel(a, b)
            return product_into_segment
        return wrap

    # -- helpers ----------------------------------------------------------------------------
    def _rendezvous(self, step_id):
        with self.lock:
            rendezvous = self.steps.get(step_id)
            if rendezvous is None:
                rendezvous = TaskRendezvous(self, self.timeout_ms)
                self.steps[step_id] = rendezvous
        return rendezvous

    def _step_thread(self):
        """The one thread that runs this task's steps. Ray hands each actor call to any thread
        of its pool; run there, consecutive steps would each start on another thread, with
        its own malloc arena and cold buffers (each of ~20 threads took a share of the CPU,
        and every step page-faulted its temporaries anew)."""
        with self.lock:
            if self._steps_thread is None:
                self._steps_thread = cf.ThreadPoolExecutor(max_workers=1,
                                                           thread_name_prefix="tensorweave-step")
            return self._steps_thread

    def _thread_pool(self):
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                               thread_name_prefix="tensorweave-inter-op")
        return self._pool

    def _device_pool(self):
        if self._devices_pool is None:
            self._devices_pool = cf.ThreadPoolExecutor(max_workers=8,
                                                       thread_name_prefix="tensorweave-device")
        return self._devices_pool


class TaskRendezvous(Rendezvous):
    """A step's rendezvous on one task: a send to a device of another task becomes that
    task's ``deliver`` call; everything else is local."""

    def __init__(self, worker: TaskWorker, timeout_ms: int):
        super().__init__(timeout_ms)
        self.worker = worker

    def send(self, key: str, value):
        dst = key.split(";")[2]
        task = _task_of_name(dst)
        worker = self.worker
        if task == worker.task:
            super().send(key, value)
            return
        if task not in worker.neighbours:
            worker.peers[task].deliver.remote(key, value)
            return
        # one edge per (sender, receiver, tensor): the key without its step id
        ticket = worker.outbox.put(key.rsplit(";", 1)[0], value)
        message = ("value", key, value) if ticket is None else ("shared", key, *ticket)
        if worker.send_by_link(task, message):
            return
        if ticket is None:
            worker.peers[task].deliver.remote(key, value)
        else:
            worker.peers[task].deliver_shared.remote(key, *ticket)

    def deliver_local(self, key, value):
        super().send(key, value)


def _run_step(runner, ctx, values, stats):
    with np.errstate(all="ignore"):  # numpy's error state is per thread
        return runner.run(ctx, values, stats, time.perf_counter())


def _step_of(key: str) -> int:
    return int(key.rsplit(";", 1)[1])


def _task_of_name(device_name: str):
    """``(job, replica, task)`` of a full device name."""
    parts = dict(p.split(":", 1) for p in device_name.strip("/").split("/") if ":" in p)
    return (parts["job"], int(parts.get("replica", 0)), int(parts["task"]))


def _error_outcome(e) -> tuple:
    """An error as plain data (OpErrors hold Operations, which do not travel)."""
    if isinstance(e, errors.OpError):
        op = getattr(e, "op", None)
        return ("error", type(e).__name__, e.message, getattr(op, "name", None))
    return ("error", "InternalError", f"{type(e).__name__}: {e}", None)


def _client_node(ray):
    """The Ray node this client runs on; None when it is a Ray Client (``ray://``) whose
    driver runs elsewhere."""
    try:
        if ray.util.client.ray.is_connected():
            return None
    except AttributeError:
        pass
    return _ray_node_id()


def _ray_node_id():
    try:
        ray = sys.modules.get("ray")
        return ray.get_runtime_context().get_node_id() if ray is not None else None
    except Exception:  # noqa: BLE001 - informational only
        return None


class RemoteVariableStore:
    """The client's view of the variables held by the tasks (what ``tw.train.Saver`` reads
    and restores): ``values`` gathers them, ``commit`` sends each to the task that owns it."""

    def __init__(self, remote: RemoteCluster, owners):
        self.remote = remote
        self.lock = threading.Lock()
        self.random_streams: dict = {}
        self._owners = owners           # () -> {variable store name: task}

    @property
    def values(self) -> dict:
        return self.remote.variables()

    def commit(self, updates: dict):
        self.remote.settle_all()
        owners = self._owners()
        by_task: dict = {}
        for name, value in updates.items():
            if name not in owners:
                raise KeyError(f"no variable of this session's graph is stored as {name!r}")
            by_task.setdefault(owners[name], {})[name] = value
        self.remote.ray.get([self.remote.actors[t].commit_variables.remote(u)
                             for t, u in by_task.items()], timeout=120)
