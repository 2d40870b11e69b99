"""What every graph pass shares: ``PassResult``, ``PassOptions``, ``Rewriter``, ``run_pipeline``.

A pass is a pure function ``pass(graph, *, options) -> PassResult(graph, changes)``. It never
mutates its input: it builds a new Graph with a ``Rewriter`` — copying the ops it keeps, in
creation (topological) order, with the same names, attrs, devices, control inputs and user
frames — or returns its input unchanged when it has nothing to do. ``changes`` are lines a
person can read ("cse: merged Add_1 into Add (Add)").

``run_pipeline`` runs a list of named passes, optionally verifying the graph after each one and
writing its printed form to a directory.
"""

from __future__ import annotations

import dataclasses
import os

from tensorweave import errors
from tensorweave.graph.core import Graph
from tensorweave.graph.printer import format_graph
from tensorweave.graph.shapes import TensorShape, as_shape
from tensorweave.ops import registry
from tensorweave.ops.function import RESULT_TYPES

# Folded constants never exceed this many elements (so folding cannot blow up memory).
DEFAULT_FOLD_LIMIT = 1 << 20


@dataclasses.dataclass(frozen=True)
class PassResult:
    """The graph a pass produced and what it changed (empty: the graph is the input)."""

    graph: Graph
    changes: list


@dataclasses.dataclass(frozen=True)
class PassOptions:
    """What a pass may read besides the graph.

    * ``config``: the Session's ConfigProto (None outside a Session);
    * ``feed_shapes``: static shape of each fed value by ``_Arg`` index (checked when fed);
    * ``fold_limit``: the largest constant, in elements, that constant folding may create.
    """

    config: object = None
    feed_shapes: dict = dataclasses.field(default_factory=dict)
    fold_limit: int = DEFAULT_FOLD_LIMIT


def op_def_of(op):
    """The OpDef of ``op``, or None for a type nobody registered (passes leave those alone)."""
    return registry.lookup(op.type)


def is_stateful(op) -> bool:
    """Stateful (or unknown) ops have effects: they are never folded, merged or removed."""
    op_def = op_def_of(op)
    return op_def is None or op_def.stateful


def roots(graph) -> list:
    """The ops whose effects are the point of the graph: ``_Retval`` and ``_Targets``."""
    return [op for op in graph.get_operations() if op.type in RESULT_TYPES]


def live_ops(graph, roots_) -> set:
    """Every op that ``roots_`` need, through data and control edges (the roots included)."""
    live = set()
    stack = list(roots_)
    while stack:
        op = stack.pop()
        if op in live:
            continue
        live.add(op)
        stack.extend(t.op for t in op.inputs if t.op not in live)
        stack.extend(c for c in op.control_inputs if c not in live)
    return live


def describe(op) -> str:
    """``Add_3 (Add)``: how change lines name an op."""
    return f"{op.name} ({op.type})"


class Rewriter:
    """Builds the output graph of a pass from its input graph, one source op at a time.

    Source ops are visited in creation order. Each is copied (``copy``), replaced by tensors
    already in the new graph (``replace``), replaced by a new op (``create(replaces=...)``), or
    dropped. Consumers read the *images* of their inputs: the tensors that stand for them in
    the new graph.

    Output specs: a copy whose inputs are plain images (a copy of the same kind with the same
    dtype and shape) keeps its recorded specs; otherwise its OpDef's inference runs again and
    the result is merged with the recorded specs (both describe the same value, so the merge
    is exact and never less specific than either).
    """

    def __init__(self, source: Graph):
        self.source = source
        self.graph = Graph()
        self.graph.seed = source.seed
        self._images: dict = {}       # source tensor -> tensor of the new graph
        self._plain: dict = {}        # source tensor -> True when its image is a plain copy
        self._op_images: dict = {}    # source op -> op of the new graph (for control edges)
        self._names = {op.name.lower() for op in source.get_operations()}
        self._control_consumed = {c for op in source.get_operations()
                                  for c in op.control_inputs}

    # -- reading --------------------------------------------------------------------------------
    def image(self, tensor):
        """The tensor of the new graph that stands for source ``tensor``."""
        return self._images[tensor]

    def images(self, tensors) -> list:
        return [self._images[t] for t in tensors]

    def control_inputs(self, op) -> list:
        """Images of ``op``'s control inputs (ops without an image are skipped)."""
        result = []
        for c in op.control_inputs:
            image = self._op_images.get(c)
            if image is not None and image not in result:
                result.append(image)
        return result

    def op_image(self, op):
        """The op of the new graph that stands for source ``op`` (None if it has none)."""
        return self._op_images.get(op)

    def has_control_consumers(self, op) -> bool:
        return op in self._control_consumed

    # -- writing --------------------------------------------------------------------------------
    def copy(self, op, inputs=None, *, refine: bool = False, trust_recorded: bool = True):
        """Copy source ``op`` reading ``inputs`` (default: the images of its own inputs).

        ``refine`` re-runs inference even on plain inputs and merges it with the recorded
        specs, keeping the recorded ones where inference fails (the step will report it);
        ``trust_recorded=False`` keeps only what inference gives (for ops whose recorded
        shapes were derived from a value that is now fed instead).
        """
        plain = inputs is None and all(self._plain[t] for t in op.inputs)
        inputs = self.images(op.inputs) if inputs is None else list(inputs)
        recorded = [(t.dtype, t.shape) for t in op.outputs]
        op_def = registry.lookup(op.type)
        if op_def is None or (plain and not refine and trust_recorded):
            infer = _fixed(recorded)  # nothing to learn (or no OpDef to learn it from)
        elif not trust_recorded:
            infer = _inferred_or_unknown(op_def, recorded)
        elif refine:
            infer = _merged_with(op_def, op, fallback=recorded)
        else:
            infer = _merged_with(op_def, op)
        new = self.graph.create_op(op.type, inputs, op.attrs, op.name, infer, frames=op.frames,
                                   device=op.device, control_inputs=self.control_inputs(op))
        if new.name != op.name:
            raise errors.InternalError(None, op, f"copying op {op.name} renamed it {new.name}")
        self._map(op, new.outputs, new)
        return new

    def create(self, op_type, inputs, attrs, *, like=None, replaces=None, name=None,
               control_inputs=()):
        """A new op built by the pass; ``like`` (a source op) lends its frames and device.

        With ``replaces`` (a source op), the new op takes that op's name and control inputs and
        stands for it: its outputs become the images of the replaced op's outputs.
        """
        op_def = registry.get(op_type)
        controls = list(control_inputs)
        if replaces is not None:
            name = replaces.name
            infer = _merged_with(op_def, replaces)
            controls += self.control_inputs(replaces)
        else:
            name = self.fresh_name(name or op_type)
            infer = lambda op: registry.infer_outputs(op_def, op)  # noqa: E731
        new = self.graph.create_op(op_type, list(inputs), attrs, name, infer,
                                   frames=() if like is None else like.frames,
                                   device="" if like is None else like.device,
                                   control_inputs=controls)
        if replaces is not None:
            self._map(replaces, new.outputs, new)
        return new

    def replace(self, op, tensors):
        """Let tensors of the new graph stand for the outputs of source ``op``.

        An op that other ops depend on by control edge is still copied, so they keep waiting
        for it; only its data consumers are redirected.
        """
        if op in self._control_consumed:
            self.copy(op)
        for t, image in zip(op.outputs, tensors):
            self._images[t] = image
            self._plain[t] = _same_kind(t, image)

    def alias(self, op, survivor):
        """Source ``op`` computes what ``survivor`` (an op of the new graph) computes."""
        for t, image in zip(op.outputs, survivor.outputs):
            self._images[t] = image
            self._plain[t] = _same_kind(t, image)
        self._op_images[op] = survivor

    def fresh_name(self, base: str) -> str:
        """A name used neither by a source op nor by an op made so far (``base``, ``base_1``...)."""
        candidate, n = base, 0
        while candidate.lower() in self._names:
            n += 1
            candidate = f"{base}_{n}"
        self._names.add(candidate.lower())
        return candidate

    def result(self, changes: list) -> PassResult:
        """The pass's result: the new graph, or the input itself when nothing changed."""
        return PassResult(self.graph if changes else self.source, list(changes))

    def _map(self, op, outputs, new_op):
        for t, image in zip(op.outputs, outputs):
            self._images[t] = image
            self._plain[t] = _same_kind(t, image)
        self._op_images[op] = new_op


def _same_kind(source_tensor, image) -> bool:
    return (image.op.type == source_tensor.op.type and image.dtype is source_tensor.dtype
            and image.shape == source_tensor.shape)


def _fixed(specs):
    return lambda op: specs


def _inferred_or_unknown(op_def, recorded):
    """Fresh inference; where it fails, the recorded dtypes with unknown shapes."""
    def infer(op):
        try:
            return op_def.infer(op)
        except Exception:  # noqa: BLE001 — the step reports what is wrong when it runs
            return [(dtype, TensorShape(None)) for dtype, _ in recorded]
    return infer


def _merged_with(op_def, source_op, fallback=None):
    """An ``infer`` that merges fresh inference with the specs ``source_op`` recorded for the
    same values. Without a ``fallback``, an op its OpDef rejects is a pass's bug."""
    def infer(op):
        try:
            inferred = op_def.infer(op)
            if len(inferred) != len(source_op.outputs):
                raise errors.InternalError(None, source_op, f"a pass rebuilt op "
                                           f"{errors.describe(source_op)} with "
                                           f"{len(inferred)} outputs instead of "
                                           f"{len(source_op.outputs)}")
            return [_merge_spec(source_op, t, spec)
                    for t, spec in zip(source_op.outputs, inferred)]
        except Exception as e:  # noqa: BLE001 — any failure of inference is what we report
            if fallback is not None:
                return fallback
            if isinstance(e, errors.InternalError):
                raise
            raise errors.InternalError(None, source_op, f"a pass rebuilt op "
                                       f"{errors.describe(source_op)} with inputs its shape "
                                       f"inference rejects: {type(e).__name__}: {e}") from e
    return infer


def _merge_spec(source_op, recorded, inferred):
    dtype, shape = inferred[0], as_shape(inferred[1])
    if dtype is not recorded.dtype or not shape.is_compatible_with(recorded.shape):
        raise errors.InternalError(None, source_op, f"a pass rebuilt op "
                                   f"{errors.describe(source_op)} so that output "
                                   f"{recorded.value_index} is {dtype.name}{shape}, but it was "
                                   f"{recorded.dtype.name}{recorded.shape}")
    return dtype, recorded.shape.merge_with(shape)


# -- the pipeline -------------------------------------------------------------------------------
def run_pipeline(graph, passes, *, options: PassOptions | None = None, verify: bool = False,
                 dump_dir: str | None = None) -> PassResult:
    """Run ``passes`` (a list of ``(name, fn)``) in order; the changes of all, concatenated.

    ``verify`` checks the graph (strict shapes) before the first pass and after each one and
    raises InternalError naming the pass that broke it; ``dump_dir`` receives the printed
    graph as ``00_input.txt`` and then ``NN_<pass>.txt`` after the N-th pass.
    """
    options = options or PassOptions()
    changes: list = []
    if verify:
        _verify(graph, "before the first pass")
    if dump_dir is not None:
        os.makedirs(dump_dir, exist_ok=True)
        _dump(dump_dir, "00_input.txt", graph)
    for number, (name, fn) in enumerate(passes, start=1):
        try:
            result = fn(graph, options=options)
        except errors.OpError:
            raise
        except Exception as e:
            raise errors.InternalError(None, None, f"graph pass {name!r} failed: "
                                       f"{type(e).__name__}: {e}") from e
        if verify:
            _verify(result.graph, f"after pass {name!r}")
        if dump_dir is not None:
            _dump(dump_dir, f"{number:02d}_{name}.txt", result.graph)
        changes.extend(result.changes)
        graph = result.graph
    return PassResult(graph, changes)


def _verify(graph, when: str):
    from tensorweave.ops.importer import verify_with_registry
    try:
        verify_with_registry(graph, strict_shapes=True)
    except errors.InternalError as e:
        raise errors.InternalError(e.node_def, e.op, f"{when}: {e.message}") from e


def _dump(directory, filename, graph):
    with open(os.path.join(directory, filename), "w", encoding="utf-8") as f:
        f.write(format_graph(graph))
