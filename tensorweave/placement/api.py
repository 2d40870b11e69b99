"""``tw.placement.plan``: place a graph on a cluster and simulate the step.

    plan = tw.placement.plan(graph, "examples/clusters/4gpu.json", strategy="etf",
                             fetches=[loss], feed_dict={x: (64, 784)})
    print(plan.summary())

The steps: pick the ops (all of the graph, or those ``fetches`` need given the feeds), resolve
shapes with the feeds (``CostModel``), group and constrain them (``build_constraints``), run
the strategy, then simulate the placed step. ``Plan.placement_seconds`` is the time of the
constraint and strategy steps: what choosing the devices costs (the cost-model strategies
simulate their candidates, so that is included; the final simulation is reused).
"""

from __future__ import annotations

import os
import time

import numpy as np

from tensorweave.graph.core import Operation, Tensor, get_default_graph
from tensorweave.graph.shapes import TensorShape
from tensorweave.placement.constraints import build_constraints
from tensorweave.placement.cost_model import CostModel
from tensorweave.placement.devices import Cluster
from tensorweave.placement.plan import Plan, build_plan
from tensorweave.placement.problem import PlacementProblem
from tensorweave.placement.strategies import get_strategy


def plan(graph=None, cluster=None, strategy: str = "default", fetches=None, feed_dict=None,
         allow_soft_placement: bool = False, cost_model: CostModel | None = None) -> Plan:
    """Place ``graph`` (default: the default graph) on ``cluster`` and simulate one step.

    ``cluster`` is a ``Cluster``, a path to a cluster file, a dict in the cluster-file form,
    or None for this process (``Cluster.local()``). ``fetches`` (tensors, ops or names; one or
    a list) limits the plan to the ops they need; ``feed_dict`` maps fed tensors to values or
    shapes (a tuple or TensorShape is a shape, anything else a value), which both cut the graph
    there and give unknown dims their sizes. Raises ``tw.errors.PlacementError`` when a
    colocation group has no feasible device.
    """
    graph = get_default_graph() if graph is None else graph
    cluster = as_cluster(cluster)
    feed_dict = dict(feed_dict or {})
    fed = [_as_tensor(graph, key, "feed") for key in feed_dict]
    ops = needed_ops(graph, fetches, fed)
    if cost_model is None:
        cost_model = CostModel(cluster, feed_shapes={t.name: _feed_shape(v) for t, v in
                                                     zip(fed, feed_dict.values())})
    place = get_strategy(strategy)
    started = time.perf_counter()
    constraints = build_constraints(ops, cluster, allow_soft_placement=allow_soft_placement,
                                    cost_model=cost_model)
    problem = PlacementProblem(ops, constraints, cost_model)
    placement = place(problem)
    seconds = time.perf_counter() - started
    sim = placement.simulated
    if sim is None:
        sim = problem.simulate(placement.devices)
    return build_plan(problem, placement, constraints, sim, seconds)


def as_cluster(cluster) -> Cluster:
    """A Cluster from a Cluster, a cluster file path, a dict, or None (this process)."""
    if cluster is None:
        return Cluster.local()
    if isinstance(cluster, Cluster):
        return cluster
    if isinstance(cluster, dict):
        return Cluster.from_dict(cluster)
    if isinstance(cluster, (str, os.PathLike)):
        return Cluster.from_file(cluster)
    raise TypeError(f"cluster must be a Cluster, a cluster file path or a dict, got "
                    f"{type(cluster).__name__}")


def needed_ops(graph, fetches=None, fed=()) -> list:
    """The ops of ``graph`` (in graph order) that ``fetches`` need, not looking past fed
    tensors; all ops when ``fetches`` is None. A fed tensor's producer stays when something
    else of it is needed, or when it is a placeholder (it stands for the feed)."""
    all_ops = graph.get_operations()
    if fetches is None:
        return list(all_ops)
    roots = [_as_element(graph, f) for f in _flatten(fetches)]
    fed = set(fed)
    needed = set()
    stack = [r.op if isinstance(r, Tensor) else r for r in roots]
    stack += [t.op for t in fed if t.op.type == "Placeholder"]
    while stack:
        op = stack.pop()
        if op in needed:
            continue
        needed.add(op)
        stack.extend(t.op for t in op.inputs if t not in fed)
        stack.extend(op.control_inputs)
    return [op for op in all_ops if op in needed]


def _feed_shape(value):
    """A fed value's shape: a tuple or TensorShape is a shape already, anything else a value."""
    if isinstance(value, (tuple, TensorShape)):
        return value
    return np.shape(value)


def _flatten(fetches) -> list:
    if isinstance(fetches, (list, tuple)):
        return [item for f in fetches for item in _flatten(f)]
    if isinstance(fetches, dict):
        return [item for f in fetches.values() for item in _flatten(f)]
    return [fetches]


def _as_element(graph, fetch):
    """The Tensor or Operation a fetch (a Tensor, Operation, Variable or name) stands for."""
    if hasattr(fetch, "_as_graph_element"):
        fetch = fetch._as_graph_element()
    if isinstance(fetch, (Tensor, Operation)):
        if fetch.graph is not graph:
            raise ValueError(f"fetch {fetch.name!r} belongs to another graph")
        return fetch
    if isinstance(fetch, str):
        try:
            return graph.as_graph_element(fetch)
        except KeyError as e:
            raise KeyError(f"{fetch!r} names nothing in the graph "
                           f"({e.args[0] if e.args else e})") from None
    raise TypeError(f"cannot plan for a fetch of type {type(fetch).__name__}: give tensors, "
                    f"operations, variables or their names")


def _as_tensor(graph, key, what) -> Tensor:
    element = _as_element(graph, key)
    if isinstance(element, Operation):
        if len(element.outputs) != 1:
            raise ValueError(f"{what} {element.name!r} names an op with "
                             f"{len(element.outputs)} outputs; name one tensor ('op:0')")
        element = element.outputs[0]
    return element
