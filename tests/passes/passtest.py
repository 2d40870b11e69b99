"""Helpers for pass tests: build a step graph, run a pass on it, check purity and invariants."""

from tensorweave.graph.printer import format_graph
from tensorweave.ops.importer import verify_with_registry
from tensorweave.passes import PassOptions, snapshot


def step_graph(fetches=(), feeds=(), targets=()):
    """The snapshot a Session would compile for (fetches, feeds, targets)."""
    first = list(fetches) + list(targets)
    graph = first[0].graph
    return snapshot(graph, fetches, feeds, targets)


def run(pass_fn, graph, **options):
    """Run ``pass_fn``; check it left its input untouched and produced a valid graph."""
    before = format_graph(graph)
    result = pass_fn(graph, options=PassOptions(**options))
    assert format_graph(graph) == before, "the pass mutated its input graph"
    verify_with_registry(result.graph, strict_shapes=True)
    if not result.changes:
        assert result.graph is graph
    return result
