"""``import_graph_def``: rebuild the ops of a GraphDef (JSON) in a graph, as TF1 does.

Every node is re-created through its OpDef, so its outputs are inferred again and checked
against the ones the file records; devices, control inputs, attrs and the recorded creation
site (``location``) are kept. Nodes may come in any order: they are created in a topological
order that follows the file's order where it can, so a file written from a graph is rebuilt
op for op (``to_json(import_graph_def(to_json(g), name=""))`` into a fresh graph gives back the
same text).

Everything that can be checked without creating ops — the file's structure, op types, node
references, duplicate names, cycles, ``input_map`` and ``return_elements`` — is checked first,
so such errors leave the target graph untouched.
"""

from __future__ import annotations

import heapq

import networkx as nx

from tensorweave.graph import core, device_names
from tensorweave.graph.core import Operation, Tensor
from tensorweave.graph.printer import format_type
from tensorweave.graph.serialization import NodeRecord, parse_graph_def
from tensorweave.graph.verify import verify
from tensorweave.ops import registry

__all__ = ["import_graph_def", "verify_with_registry"]

# ``location`` of a rebuilt op: where the original was created, under this function name.
_IMPORTED_FRAME = "<graph_def>"


def verify_with_registry(graph, strict_shapes: bool = False) -> None:
    """``tw.graph.verify.verify`` with every op's outputs checked against its OpDef."""
    verify(graph, lookup=registry.lookup, strict_shapes=strict_shapes)


def import_graph_def(graph_def, input_map=None, return_elements=None, name=None, graph=None):
    """Add the ops of ``graph_def`` (a dict, JSON text, or a ``.json`` path) to ``graph``.

    Names get the prefix ``name/`` (default ``"import"``, made unique like a name scope; ``""``
    adds none). ``input_map`` replaces tensors of the file by tensors of the graph, e.g.
    ``{"x:0": images}``. ``return_elements`` lists names of the file (``"y:0"`` for a tensor,
    ``"train_op"`` for an op) whose new Tensors/Operations are returned, in that order;
    without it, returns None.
    """
    graph = core.get_default_graph() if graph is None else graph
    nodes, seed = parse_graph_def(graph_def)
    by_name = _index_nodes(nodes)
    _check_references(nodes, by_name)
    order = _creation_order(nodes, by_name)
    input_map = _check_input_map(input_map, by_name, graph)
    _check_return_elements(return_elements, by_name)

    scope = "import" if name is None else name
    created: dict[str, Operation] = {}
    with graph.as_default(), graph.name_scope(scope):
        for node in order:
            created[node.name] = _create(graph, node, created, input_map, by_name)
    _rename_colocation_groups(created)
    if graph.seed is None:
        graph.seed = seed
    if return_elements is None:
        return None
    return [_resolve(element, created) for element in return_elements]


# -- checks before anything is created -----------------------------------------------------------
def _index_nodes(nodes) -> dict[str, NodeRecord]:
    by_name: dict[str, NodeRecord] = {}
    for node in nodes:
        if node.name in by_name:
            raise ValueError(f"GraphDef: duplicate node name {node.name!r}")
        if registry.lookup(node.op) is None:
            raise ValueError(f"GraphDef node {node.name!r}: unknown op type {node.op!r} (no "
                             f"OpDef is registered under that name)")
        by_name[node.name] = node
    return by_name


def _check_references(nodes, by_name):
    for node in nodes:
        for source, index in node.inputs:
            if source not in by_name:
                raise ValueError(f"GraphDef node {node.name!r}: input {source}:{index} refers "
                                 f"to a node that does not exist")
            outputs = len(by_name[source].outputs)
            if index >= outputs:
                raise ValueError(f"GraphDef node {node.name!r}: input {source}:{index} refers "
                                 f"to output {index} of {source!r}, which has {outputs} outputs")
        for source in node.control_inputs:
            if source not in by_name:
                raise ValueError(f"GraphDef node {node.name!r}: control input ^{source} refers "
                                 f"to a node that does not exist")


def _creation_order(nodes, by_name) -> list[NodeRecord]:
    """A topological order of the nodes; among ready nodes, the one listed first goes first."""
    position = {node.name: i for i, node in enumerate(nodes)}
    pending = {}
    consumers: dict[str, list[str]] = {node.name: [] for node in nodes}
    for node in nodes:
        sources = {source for source, _ in node.inputs} | set(node.control_inputs)
        pending[node.name] = len(sources)
        for source in sources:
            consumers[source].append(node.name)
    ready = [position[n] for n, count in pending.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for consumer in consumers[node.name]:
            pending[consumer] -= 1
            if pending[consumer] == 0:
                heapq.heappush(ready, position[consumer])
    if len(order) < len(nodes):
        raise ValueError(f"GraphDef has a cycle: {_describe_cycle(nodes, pending)}")
    return order


def _describe_cycle(nodes, pending) -> str:
    edges = nx.DiGraph()
    for node in nodes:
        if pending[node.name]:
            for source in [s for s, _ in node.inputs] + node.control_inputs:
                if pending[source]:
                    edges.add_edge(source, node.name)
    names = [a for a, _ in nx.find_cycle(edges)]
    # Start at the node listed first in the file, so the message is the same every time.
    position = {node.name: i for i, node in enumerate(nodes)}
    start = min(range(len(names)), key=lambda i: position[names[i]])
    names = names[start:] + names[:start]
    return " -> ".join(names + [names[0]])


def _check_input_map(input_map, by_name, graph) -> dict[tuple, Tensor]:
    """``{"x:0": tensor}`` as ``{("x", 0): tensor}``, checked against the file and the graph."""
    result = {}
    for key, tensor in (input_map or {}).items():
        source, index = _split_tensor_name(key)
        node = by_name.get(source)
        if node is None or index >= len(node.outputs):
            raise ValueError(f"input_map: {key!r} is not a tensor of the GraphDef")
        if not isinstance(tensor, Tensor):
            raise TypeError(f"input_map[{key!r}] must be a Tensor, not {type(tensor).__name__}")
        if tensor.graph is not graph:
            raise ValueError(f"input_map[{key!r}]: tensor {tensor.name} belongs to another graph")
        dtype = node.outputs[index][0]
        if tensor.dtype is not dtype:
            raise ValueError(f"input_map[{key!r}]: tensor {tensor.name} has dtype "
                             f"{tensor.dtype.name}, but {key} is {dtype.name}")
        result[(source, index)] = tensor
    return result


def _split_tensor_name(name: str) -> tuple[str, int]:
    source, sep, index = name.rpartition(":")
    if sep and source and index.isdigit():
        return source, int(index)
    return name, 0


def _check_return_elements(return_elements, by_name):
    for element in return_elements or ():
        if not isinstance(element, str):
            raise TypeError(f"return_elements must be names, not {type(element).__name__}")
        source, index = _split_tensor_name(element)
        node = by_name.get(source)
        if node is None:
            raise ValueError(f"return_elements: {element!r} is not in the GraphDef")
        if ":" in element and index >= len(node.outputs):
            raise ValueError(f"return_elements: {element!r} names an output that node "
                             f"{source!r} does not have ({len(node.outputs)} outputs)")


# -- creating ------------------------------------------------------------------------------------
def _create(graph, node: NodeRecord, created, input_map, by_name) -> Operation:
    """Create ``node`` through its OpDef, then restore what the file says beyond inference."""
    op_def = registry.get(node.op)
    inputs = _inputs_of(node, created, input_map)
    try:
        op = graph.create_op(node.op, inputs, node.attrs, node.name,
                             infer=lambda op: registry.infer_outputs(op_def, op))
    except (ValueError, TypeError) as e:
        raise type(e)(f"importing GraphDef node {node.name!r}: {e}") from None
    # The file's own device wins over an enclosing tw.device scope, field by field (TF1).
    op._set_device(device_names.merge(op.device, node.device))
    controls = [created[c] for c in node.control_inputs]
    op.control_inputs = op.control_inputs + tuple(c for c in controls
                                                  if c not in op.control_inputs)
    op.frames = () if node.location is None else (node.location + (_IMPORTED_FRAME,),)
    # Inputs with the shapes the file recorded rebuild the file's op exactly; an input_map
    # tensor of another shape lets inference refine the outputs instead.
    as_recorded = all(t.shape == by_name[source].outputs[index][1]
                      for t, (source, index) in zip(inputs, node.inputs))
    _check_outputs(node, op, as_recorded)
    return op


def _inputs_of(node: NodeRecord, created, input_map) -> list[Tensor]:
    inputs = []
    for source, index in node.inputs:
        mapped = input_map.get((source, index))
        inputs.append(created[source].outputs[index] if mapped is None else mapped)
    return inputs


def _check_outputs(node: NodeRecord, op: Operation, as_recorded: bool):
    """The recorded outputs must agree with inference (dtype equal, shapes compatible)."""
    if len(op.outputs) != len(node.outputs):
        raise ValueError(f"GraphDef node {node.name!r} ({node.op}): the file records "
                         f"{len(node.outputs)} outputs, but the op has {len(op.outputs)}")
    for t, (dtype, shape) in zip(op.outputs, node.outputs):
        if t.dtype is not dtype or not t.shape.is_compatible_with(shape):
            raise ValueError(f"GraphDef node {node.name!r} ({node.op}): output "
                             f"{t.value_index} is recorded as {format_type(dtype, shape)}, but "
                             f"inference gives {format_type(t.dtype, t.shape)}")
        if as_recorded:
            # Exactly the file's shape, even where it knows less than inference: the original
            # graph had it so when an input was refined (set_shape) after this op was built.
            t._shape = shape
        else:
            t.set_shape(shape)


def _rename_colocation_groups(created):
    """``loc:@W`` in a ``_class`` attr names the file's op W: point it at W's new name."""
    for op in created.values():
        groups = op.attrs.get("_class")
        if not isinstance(groups, list):
            continue
        renamed = []
        for group in groups:
            target = group[len("loc:@"):] if isinstance(group, str) and \
                group.startswith("loc:@") else None
            renamed.append(f"loc:@{created[target].name}" if target in created else group)
        op.attrs["_class"] = sorted(renamed)  # sorted, as Graph.create_op records it


def _resolve(element: str, created):
    if ":" in element:
        source, index = _split_tensor_name(element)
        return created[source].outputs[index]
    return created[element]
