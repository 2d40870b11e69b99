"""Placement strategies: put every colocation group on one of its feasible devices.

    problem = PlacementProblem(ops, constraints, cost_model)
    placement = STRATEGIES["etf"](problem)          # a Placement: one device per op

* ``default`` — TensorFlow's rule: each group on its first feasible device in the cluster's
  priority order (GPUs first). No cost model.
* ``etf`` — earliest-finish-time list scheduling. Ops are taken in a topological order by
  priority (upward rank: the longest path of mean op times and mean transfer times from the op
  to the end of the step; ties by name). The first op taken from a group places the whole group
  on the device with the best score: where that op would finish earliest, given when each
  device is free, when its inputs arrive over the links (one transfer at a time per link), and
  the memory the device still has — plus, away from the op's *home* (the device holding most of
  its input bytes), the time its output would take to go back there (see ``_home``).
* ``critical_path`` — HEFT: the same ranks and order (critical-path ops first), with an
  insertion policy: an op may fill an idle gap of a device left by earlier decisions.
* ``cpop`` — ``critical_path`` that first pins the whole critical path (by mean costs) on the
  one device that runs it fastest (CPOP), so the longest chain never crosses a link.

**The simulator has the last word.** The home-device term keeps chains of small ops (an LSTM
cell's gates) together, but it also keeps wide branches (an Inception block's) home longer than
pays. So each cost-model strategy schedules with the term (weight 1) and without it, and when
the term helped, once more with it doubled (``STRONGER_HOME_WEIGHT``); it simulates each
placement and keeps the one with the shortest simulated step. Only the kept one's simulation is
reported in full (``SimResult``); the others give just their step time.

**Source groups wait for their consumers.** A group whose ops read nothing from outside the
group (a constant, a variable with its reads) gives its own ops no reason to prefer a device,
yet decides where its consumers' inputs come from. So its ops are *held*: their successors may
proceed, and the group is placed when the first consumer outside it is placed — on the
consumer's device when the group may go there (its ops then run there before the consumer),
else where it can deliver soonest. A held group nobody reads is placed last, where it finishes
first.

**Memory** is tracked per device as the sum of the output bytes of the groups placed there
(what ``build_constraints`` checks per group, summed); a device without room is skipped, and
when no feasible device has room the group goes where most is left, with a note in the plan.

Everything is deterministic: ties between ops by name, between devices by cluster priority.
The hot loop works on plain lists indexed by op and device number (``OpGraph``).
"""

from __future__ import annotations

from tensorweave.placement.list_scheduling import ListScheduler
from tensorweave.placement.problem import Placement, PlacementProblem

STRATEGIES: dict = {}


def register_strategy(name: str):
    """Decorator: make ``fn(problem) -> Placement`` available as ``name``."""
    def decorate(fn):
        STRATEGIES[name] = fn
        return fn
    return decorate


def get_strategy(name: str):
    """The strategy function registered as ``name``."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown placement strategy {name!r}; the strategies are: "
                         f"{', '.join(STRATEGIES)}") from None


# -- default -----------------------------------------------------------------------------------
@register_strategy("default")
def place_default(problem: PlacementProblem) -> Placement:
    """TF's rule: every group on its first feasible device."""
    devices = [problem.devices[problem.feasible[g][0]] for g in problem.group]
    return Placement("default", devices)


# -- list scheduling (etf, critical_path, cpop) ------------------------------------------------
@register_strategy("etf")
def place_etf(problem: PlacementProblem) -> Placement:
    """Earliest-finish-time list scheduling by upward rank, with transfers and memory."""
    return _best_simulated(problem, "etf", insertion=False)


@register_strategy("critical_path")
def place_critical_path(problem: PlacementProblem) -> Placement:
    """HEFT: critical-path-first order, earliest finish time with gap insertion."""
    return _best_simulated(problem, "critical_path", insertion=True)


@register_strategy("cpop")
def place_cpop(problem: PlacementProblem) -> Placement:
    """``critical_path`` with the critical path first pinned on one device (CPOP)."""
    return _best_simulated(problem, "cpop", insertion=True, pin_critical_path=True)


# Weights of the home-device term tried first: one trip home, and none.
HOME_WEIGHTS = (1.0, 0.0)
# Tried next when the term helped: a chain of small ops that leaves home pays the trip out as
# well as the one back, so counting it twice keeps such chains together more firmly. Heavier
# weights keep everything on one device (GNMT: 1.25x of its bound at 1, 1.21x at 2, 2.5x at 3).
STRONGER_HOME_WEIGHT = 2.0


def _best_simulated(problem, name, insertion, pin_critical_path=False) -> Placement:
    """The list scheduler with the home-device term (see ``ListScheduler._home``) at weight 1,
    without it, and — when the term helped — at ``STRONGER_HOME_WEIGHT``; the placement whose
    simulated step is shortest wins (ties: the one tried first)."""
    tried = [_simulated_schedule(problem, name, insertion, pin_critical_path, weight)
             for weight in HOME_WEIGHTS]
    if tried[0][1].step_time < tried[1][1].step_time:
        tried.append(_simulated_schedule(problem, name, insertion, pin_critical_path,
                                         STRONGER_HOME_WEIGHT))
    best, sim = min(tried, key=lambda pair: pair[1].step_time)  # min keeps the first of ties
    best.simulated = sim.result()
    return best


def _simulated_schedule(problem, name, insertion, pin_critical_path, home_weight) -> tuple:
    """(Placement, its simulation run but not yet reported)."""
    scheduler = ListScheduler(problem, name, insertion, home_weight)
    if pin_critical_path:
        scheduler.pin_critical_path()
    placement = scheduler.run()
    return placement, problem.simulate_step(placement.devices)
