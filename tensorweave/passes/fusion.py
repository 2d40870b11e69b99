"""``fusion``: groups of elementwise ops become one ``Fused`` op that reads each input once and
writes each output once.

Three kinds of group, all built from the rule tables of ``codegen`` (an op type without a rule is
never fused — the default rule):

* an elementwise chain: ops whose type has an ``ELEMENTWISE`` rule, joined producer to consumer
  (``relu(x*w + b)*0.5 + z``; in gradient graphs ReluGrad, bias adds, the optimizer's arithmetic);
* a reduction (``REDUCTIONS``: Sum, Mean, Max, Min, Prod with constant axes) that closes an
  elementwise chain: ``reduce_sum(square(x - y))`` — unless the reduced value is also read
  elsewhere (a bias gradient summed from ReluGrad's result, which the filter gradient reads
  too): then the chunked reduction only costs time;
* an epilogue: a heavy op of ``EPILOGUE_HOSTS`` (MatMul, Conv2D) whose result only an elementwise
  group reads (bias add, activation): the fused op runs the heavy kernel, then the epilogue over
  the heavy op's result in place.

Never fused: stateful ops (``_Arg``, variables, random ops, ``_Send``/``_Recv``), opaque ops
(``_Retval`` and every op type without a rule), ops with control inputs or control consumers,
ops on different devices (``device`` strings must be equal), and merges that would create a
cycle: two groups merge only if no path leaves the union and re-enters it (checked by a search
bounded to the ops between them in graph order). A group holds at most ``max_ops`` ops.

Cost check: a group of one op is not fused (nothing to save), nor one whose largest tensor has
fewer than ``min_elements`` elements when that is known statically — below it the fused call's
fixed cost exceeds what the separate ufunc calls cost (measured: DESIGN.md, "Kernel fusion").
Where a size is unknown (a batch dimension), the group is fused and the fused op itself checks
at run time: below the same threshold it evaluates op by op.

Values of group members used outside the group become extra outputs of the fused op. Scalar
constants are inlined into the expression as typed constants. The fused ops replace their
groups where the last member stood; the other ops are copied, in an order that keeps the graph
topological (a consumer of an early member now waits for the whole group).
"""

from __future__ import annotations

import dataclasses
import heapq

from tensorweave.codegen.expr import ELEMENTWISE, REDUCTIONS, FusedExpr
from tensorweave.graph.dtypes import DType
from tensorweave.graph.serialization import encode_attr
from tensorweave.ops import fused as fused_ops  # noqa: F401  (registers the Fused op)
from tensorweave.ops import registry
from tensorweave.passes.base import PassResult, Rewriter

__all__ = ["fusion", "MAX_FUSED_OPS", "MIN_FUSED_ELEMENTS", "EPILOGUE_HOSTS"]

MAX_FUSED_OPS = 24
# Below this many elements a fused call is not faster than its ops one by one (DESIGN.md).
MIN_FUSED_ELEMENTS = fused_ops.MIN_FUSED_ELEMENTS
# Heavy ops whose result an elementwise group may finish in the same kernel.
EPILOGUE_HOSTS = frozenset({"MatMul", "Conv2D"})


def fusion(graph, *, options=None, max_ops: int = MAX_FUSED_OPS,
           min_elements: int = MIN_FUSED_ELEMENTS) -> PassResult:
    """Replace fusable groups of ops by ``Fused`` ops (see the module docstring)."""
    finder = _GroupFinder(graph, max_ops)
    groups = [g for g in finder.find() if _worth_fusing(g, min_elements)]
    if not groups:
        return PassResult(graph, [])
    return _Emitter(graph, finder, groups).emit()


# -- which ops can join a group --------------------------------------------------------------------
def _node_attrs(op, rule) -> dict:
    """The attrs an expression node carries: those its rule reads, dtypes by name."""
    attrs = {}
    for name in rule.attrs:
        if name in op.attrs:
            value = op.attrs[name]
            attrs[name] = value.name if isinstance(value, DType) else value
    return attrs


def _plain_op(op) -> bool:
    """Not stateful, one output, no control edges in: the common conditions of every kind."""
    op_def = registry.lookup(op.type)
    return (op_def is not None and not op_def.stateful and len(op.outputs) == 1
            and not op.control_inputs)


def elementwise_rule(op):
    """The rule that makes ``op`` an expression node, or None (the default: not fused)."""
    rule = ELEMENTWISE.get(op.type)
    if rule is None or not _plain_op(op):
        return None
    if registry.get(op.type).fusion not in ("elementwise", "broadcast"):
        return None
    arg_dtypes = [t.dtype.name for t in op.inputs]
    if not rule.accepts(arg_dtypes, _node_attrs(op, rule)):
        return None
    return rule


def reduction_spec(op) -> dict | None:
    """The ``reduce`` entry of an expression that ends in ``op``, or None if it cannot."""
    rule = REDUCTIONS.get(op.type)
    if rule is None or not _plain_op(op) or registry.get(op.type).fusion != "reduce":
        return None
    x = op.inputs[0]
    rank = x.shape.rank
    if rank is None or not rule.accepts(x.dtype.name):
        return None
    if op.attrs.get("all_axes", False):
        axes = list(range(rank))
    else:
        value = registry.constant_value(op.inputs[1])
        if value is None:
            return None
        raw = [int(a) for a in value.reshape(-1)]
        if any(not -rank <= a < rank for a in raw):
            return None  # the op reports the bad axis when it runs
        axes = sorted({a % rank for a in raw})
    return {"op": op.type, "axes": axes, "keepdims": bool(op.attrs["keep_dims"])}


def _is_epilogue_host(op) -> bool:
    return op.type in EPILOGUE_HOSTS and _plain_op(op)


# -- grouping --------------------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)  # identity: groups are keys of dicts
class _Group:
    members: list            # elementwise ops, in graph order
    device: str
    reduce: object = None    # the reduction op closing the group
    reduce_spec: dict | None = None
    heavy: object = None     # the heavy op whose epilogue this is

    def ops(self) -> list:
        """Every op the group replaces, in graph order."""
        extra = [op for op in (self.heavy, self.reduce) if op is not None]
        return sorted(self.members + extra, key=lambda op: op._id)

    def size(self) -> int:
        return len(self.members) + (self.reduce is not None) + (self.heavy is not None)


class _GroupFinder:
    """Greedy producer-to-consumer grouping over the graph in topological order."""

    def __init__(self, graph, max_ops: int):
        self.graph = graph
        self.max_ops = max_ops
        self.ops = graph.get_operations()
        self.index = {op: i for i, op in enumerate(self.ops)}
        self.consumers = {op: [] for op in self.ops}   # data and control consumers
        self.data_consumers = {op: [] for op in self.ops}
        controlled = set()
        for op in self.ops:
            for t in op.inputs:
                self.consumers[t.op].append(op)
                self.data_consumers[t.op].append(op)
            for c in op.control_inputs:
                self.consumers[c].append(op)
                controlled.add(c)
        self.controlled = controlled  # ops others wait for by control edge: never fused
        self.group_of: dict = {}

    def find(self) -> list:
        for op in self.ops:
            if op in self.controlled:
                continue
            if elementwise_rule(op) is not None:
                self._add_elementwise(op)
            else:
                spec = reduction_spec(op)
                if spec is not None:
                    self._add_reduction(op, spec)
        groups = list(dict.fromkeys(self.group_of.values()))
        for g in groups:
            self._attach_heavy(g)
        return groups

    def _open_producer_groups(self, op) -> list:
        """Groups producing ``op``'s inputs that ``op`` may still join."""
        result = []
        for t in op.inputs:
            g = self.group_of.get(t.op)
            if g is not None and g.reduce is None and g.device == op.device and g not in result:
                result.append(g)
        return result

    def _add_elementwise(self, op):
        group = _Group([op], op.device)
        for producer in self._open_producer_groups(op):
            merged = _Group(sorted(producer.members + group.members, key=lambda o: o._id),
                            op.device)
            if merged.size() <= self.max_ops and not self._creates_cycle(merged.ops()):
                for member in producer.members:
                    self.group_of[member] = merged
                group = merged
        for member in group.members:
            self.group_of[member] = group

    def _add_reduction(self, op, spec):
        producer = self.group_of.get(op.inputs[0].op)
        if producer is None or producer.reduce is not None or producer.device != op.device:
            return
        if self._read_elsewhere(op.inputs[0], op):
            return
        if producer.size() + 1 > self.max_ops or self._creates_cycle(producer.ops() + [op]):
            return
        producer.reduce, producer.reduce_spec = op, spec
        self.group_of[op] = producer

    def _read_elsewhere(self, tensor, reader) -> bool:
        """Whether an op besides ``reader`` reads ``tensor``. A reduction of such a tensor is
        not fused: the kernel must write the whole tensor anyway, and summing its chunks as
        they are made measured slower than numpy's one reduction of the finished array
        (ReluGrad + a bias gradient's Sum at [50, 28, 28, 32]: 1.57 vs 1.23 ms), besides
        reordering the sum's rounding."""
        return any(consumer is not reader and tensor in consumer.inputs
                   for consumer in self.data_consumers[tensor.op])

    def _attach_heavy(self, group):
        """Make ``group`` the epilogue of a heavy op whose only readers are in the group."""
        if group.reduce is not None:
            return
        members = set(group.members)
        for op in group.members:
            for t in op.inputs:
                host = t.op
                if (not _is_epilogue_host(host) or host in self.controlled
                        or host.device != group.device or group.size() + 1 > self.max_ops):
                    continue
                if not all(c in members for c in self.consumers[host]):
                    continue
                if not self._inputs_ready_with(group, host):
                    continue
                if not self._creates_cycle(group.ops() + [host]):
                    group.heavy = host
                    return

    def _inputs_ready_with(self, group, host) -> bool:
        """Whether no other input of the epilogue waits on heavy work that ``host`` does not
        wait on. Such an input (an independent branch with a matmul in it) would make the
        fused op, heavy kernel included, wait for that branch and lose the concurrency of the
        two (two matmuls summed on two devices: 1.52x instead of 1.96x); a cheap independent
        input (a negation, a bias read) costs nothing to wait for."""
        members = set(group.members) | {host}
        ancestors = None
        for op in group.members:
            for t in op.inputs:
                producer = t.op
                if producer in members or _is_source_like(producer):
                    continue
                if ancestors is None:
                    ancestors = self._ancestors([host])
                if producer not in ancestors and self._heavy_work_before(producer, ancestors):
                    return False
        return True

    def _ancestors(self, ops, stop=frozenset()) -> set:
        seen: set = set()
        stack = [t.op for op in ops for t in op.inputs] + \
            [c for op in ops for c in op.control_inputs]
        while stack:
            a = stack.pop()
            if a in seen or a in stop:
                continue
            seen.add(a)
            stack.extend(t.op for t in a.inputs)
            stack.extend(a.control_inputs)
        return seen

    def _heavy_work_before(self, producer, shared) -> bool:
        """Whether ``producer`` or an op it waits for (outside ``shared``) is expensive."""
        branch = self._ancestors([producer], stop=shared) | {producer}
        return any(_is_heavy(op) for op in branch)

    def _creates_cycle(self, ops) -> bool:
        """Whether a path leaves ``ops`` and comes back into them (through other ops), with
        the groups formed so far counted as the single ops they become: a path that reaches
        one member of a group goes on from all of them (two groups that are each acyclic can
        still wait for each other once both are contracted).

        An op after the group's last op in graph order cannot lead back into the group by
        itself, so the search leaves such ops out unless they belong to a group."""
        inside = set(ops)
        last = max(self.index[op] for op in ops)
        seen: set = set()
        stack = [c for op in ops for c in self.consumers[op] if c not in inside]
        while stack:
            op = stack.pop()
            if op in seen:
                continue
            for member in self._contracted(op, inside):
                if member in seen:
                    continue
                seen.add(member)
                for c in self.consumers[member]:
                    if c in inside:
                        return True
                    if c not in seen and (self.index[c] < last or c in self.group_of):
                        stack.append(c)
        return False

    def _contracted(self, op, inside) -> list:
        """The ops ``op`` runs together with: its group's, unless that group is being
        reshaped into ``inside`` (then just ``op``)."""
        group = self.group_of.get(op)
        if group is None:
            return [op]
        members = group.ops()
        if any(m in inside for m in members):
            return [op]
        return members


_PASS_THROUGH = frozenset({"Identity", "Snapshot", "StopGradient"})
_HEAVY_FLOPS = 1 << 20


def _is_heavy(op) -> bool:
    """An op worth running concurrently with another: a heavy kernel, or over a million flops
    by its static cost."""
    if _is_epilogue_host(op):
        return True
    try:
        return registry.cost_of(op).flops >= _HEAVY_FLOPS
    except Exception:  # noqa: BLE001 - no cost rule or unknown shapes: not known to be heavy
        return False


def _is_source_like(op) -> bool:
    """An op with no inputs (constant, variable, feed), or a pass-through of one (a variable's
    read): its value is there from the start of the step."""
    if not op.inputs:
        return True
    return op.type in _PASS_THROUGH and all(not t.op.inputs for t in op.inputs)


def _worth_fusing(group: _Group, min_elements: int) -> bool:
    if group.size() < 2:
        return False
    largest = 0
    for op in group.ops():
        for t in list(op.outputs) + list(op.inputs):
            n = t.shape.num_elements()
            if n is None:
                return True  # a dimension known only at run time: batch sizes are large
            largest = max(largest, n)
    return largest >= min_elements


# -- building the fused ops ------------------------------------------------------------------------
class _Emitter:
    """Writes the output graph: fused ops for groups, copies of everything else."""

    def __init__(self, graph, finder: _GroupFinder, groups: list):
        self.graph = graph
        self.finder = finder
        self.groups = groups
        self.unit_of = {}
        for g in groups:
            for op in g.ops():
                self.unit_of[op] = g
        self.plans = {id(g): _ExprPlan(g, self.unit_of, finder) for g in groups}
        self.dropped = self._inlined_constants_left_unused()

    def emit(self) -> PassResult:
        rw = Rewriter(self.graph)
        changes = []
        for unit in self._schedule():
            if isinstance(unit, _Group):
                changes.append(self._emit_group(rw, unit))
            elif unit not in self.dropped:
                rw.copy(unit)
        return rw.result(changes)

    def _emit_group(self, rw, group) -> str:
        plan = self.plans[id(group)]
        inputs = rw.images(plan.external)
        if group.heavy is not None:
            inputs = rw.images(group.heavy.inputs) + inputs
        listed = [f"{op.type}:{op.name}" for op in group.ops()]
        last = group.ops()[-1]
        fused = rw.create(fused_ops.FUSED_OP_TYPE, inputs,
                          {"expr": plan.expr.to_json(), "fused_ops": listed},
                          like=last, name="fused")
        for source, k in plan.output_of.items():
            rw.replace(source.op, [fused.outputs[k]])
        return (f"fusion: fused {group.size()} ops into {fused.name} ({plan.kind}): "
                f"{', '.join(listed)}")

    def _schedule(self) -> list:
        """Ops and groups in a topological order; each unit as early as its position allows
        (a group sits where its last op stood)."""
        index = self.finder.index
        units, position, deps = [], {}, {}
        for op in self.finder.ops:
            unit = self.unit_of.get(op, op)
            if unit not in position:
                units.append(unit)
                deps[unit] = set()
            position[unit] = index[op]  # ops are visited in order: this ends as the last one
        for op in self.finder.ops:
            unit = self.unit_of.get(op, op)
            producers = [t.op for t in op.inputs] + list(op.control_inputs)
            for p in producers:
                pu = self.unit_of.get(p, p)
                if pu is not unit:
                    deps[unit].add(pu)
        return _topological(units, deps, position)

    def _inlined_constants_left_unused(self) -> set:
        """Scalar constants whose every reader is a group member that inlined them."""
        candidates = set()
        for plan in self.plans.values():
            candidates |= plan.inlined
        dropped = set()
        for op in candidates:
            readers = self.finder.consumers[op]
            if op in self.finder.controlled:
                continue
            if all(self.unit_of.get(r) is not None and r is not self.unit_of[r].heavy
                   for r in readers):
                dropped.add(op)
        return dropped


def _topological(units, deps, position) -> list:
    """Kahn's algorithm, ready units taken by their position in the source graph."""
    waiting = {u: len(d) for u, d in deps.items()}
    dependents = {u: [] for u in units}
    for u, d in deps.items():
        for p in d:
            dependents[p].append(u)
    order_key = {u: i for i, u in enumerate(units)}
    ready = [(position[u], order_key[u], u) for u in units if waiting[u] == 0]
    heapq.heapify(ready)
    result = []
    while ready:
        _, _, u = heapq.heappop(ready)
        result.append(u)
        for v in dependents[u]:
            waiting[v] -= 1
            if waiting[v] == 0:
                heapq.heappush(ready, (position[v], order_key[v], v))
    assert len(result) == len(units), "fusion grouped ops into a cycle"
    return result


class _ExprPlan:
    """The expression of one group and how the fused op's inputs and outputs map to tensors."""

    def __init__(self, group: _Group, unit_of: dict, finder: _GroupFinder):
        self.external = []      # source tensors read from outside, in expression input order
        self.inlined = set()    # source ops of the scalar constants written into the expression
        self.output_of = {}     # source tensor -> output index of the fused op
        inputs, nodes, node_of, input_of = [], [], {}, {}
        if group.heavy is not None:
            result = group.heavy.outputs[0]
            inputs.append(_input_spec(result))
            input_of[result] = 0
        for op in group.members:
            rule = ELEMENTWISE[op.type]
            args = [self._arg(t, node_of, input_of, inputs) for t in op.inputs]
            nodes.append({"op": op.type, "args": args, "attrs": _node_attrs(op, rule),
                          "dtype": op.outputs[0].dtype.name})
            node_of[op.outputs[0]] = len(nodes) - 1
        outputs = []
        if group.reduce is not None:
            outputs.append(node_of[group.reduce.inputs[0]])
            self.output_of[group.reduce.outputs[0]] = 0
            self.inlined.add(group.reduce.inputs[1].op)  # its axes are in the expression
        for op in group.members:
            t = op.outputs[0]
            if any(unit_of.get(c) is not group for c in finder.data_consumers[op]):
                self.output_of[t] = len(outputs)
                outputs.append(node_of[t])
        self.expr = FusedExpr(inputs=inputs, nodes=nodes, outputs=outputs,
                              reduce=group.reduce_spec, epilogue_of=_epilogue(group.heavy))
        self.kind = ("reduction" if group.reduce is not None else
                     f"epilogue of {group.heavy.type}" if group.heavy is not None
                     else "elementwise")

    def _arg(self, t, node_of, input_of, inputs):
        if t in node_of:
            return ["node", node_of[t]]
        if t.shape.rank == 0 and t.dtype.name != "string":
            value = registry.constant_value(t)
            if value is not None:
                self.inlined.add(t.op)
                return ["const", value.item(), t.dtype.name]
        if t not in input_of:
            input_of[t] = len(inputs)
            inputs.append(_input_spec(t))
            self.external.append(t)
        return ["in", input_of[t]]


def _input_spec(t) -> dict:
    dims = t.shape.as_tuple()
    return {"dtype": t.dtype.name, "shape": None if dims is None else list(dims)}


def _epilogue(heavy) -> dict | None:
    if heavy is None:
        return None
    return {"op": heavy.type, "attrs": {k: encode_attr(v) for k, v in heavy.attrs.items()},
            "num_inputs": len(heavy.inputs)}
