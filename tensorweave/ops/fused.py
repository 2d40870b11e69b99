"""The fused op: one kernel standing for a group of elementwise ops (and maybe a reduction or
the heavy op whose epilogue they are).

Only the fusion pass (``passes/fusion.py``) creates ``Fused`` ops, in compiled graphs, after
gradients were built. Its attrs are plain data, so a GraphDef carries it and the printed graph
shows what it replaced::

    %fused:0 f32[1024] = Fused(%x:0, %w:0, %b:0) {expr='{"epilogue_of":null,...}',
                                                  fused_ops=['Mul:mul', 'Add:add', 'Relu:relu']}

* ``expr``: the ``FusedExpr`` as canonical JSON text (``codegen/expr.py``);
* ``fused_ops``: ``"Type:name"`` of each replaced op, in graph order.

With ``expr.epilogue_of`` set, the op's first ``num_inputs`` inputs feed the heavy op (MatMul,
Conv2D) through its own kernel and the rest feed the expression, whose input 0 is the heavy op's
result. The epilogue writes its output over that result when no later node reads it: the heavy
result is a temporary nobody else can see (checked, not assumed). Below the break-even size an
epilogue that is a plain chain (bias add, activation) runs op by op in that result too, rather
than into a new array per op.
"""

from __future__ import annotations

import functools
import sys
import types

from tensorweave import codegen
from tensorweave.codegen.expr import ELEMENTWISE, FusedExpr, constant, evaluate
from tensorweave.graph import dtypes
from tensorweave.graph.serialization import decode_attr
from tensorweave.graph.shapes import TensorShape, broadcast_all
from tensorweave.ops import registry
from tensorweave.ops.registry import Cost, OpDef, register

__all__ = ["FUSED_OP_TYPE", "MIN_FUSED_ELEMENTS", "expr_of", "heavy_inputs"]

FUSED_OP_TYPE = "Fused"

# Below this many elements a fused kernel costs more than its ops one by one (measured on the
# development machine: DESIGN.md, "Kernel fusion"). The fusion pass does not fuse groups known
# to be smaller; a fused op whose sizes were unknown then evaluates op by op when its arrays
# turn out to be smaller, which is exactly what the unfused ops would have computed.
MIN_FUSED_ELEMENTS = 32768


@functools.lru_cache(maxsize=1024)
def _parse(text: str) -> FusedExpr:
    return FusedExpr.from_json(text)


def expr_of(op) -> FusedExpr:
    """The expression of a ``Fused`` op (parsed once per distinct text)."""
    return _parse(op.attrs["expr"])


def heavy_inputs(expr: FusedExpr) -> int:
    """How many of the op's inputs feed the heavy op (0 without an epilogue)."""
    return 0 if expr.epilogue_of is None else expr.epilogue_of["num_inputs"]


# -- inference -------------------------------------------------------------------------------------
def _heavy_stand_in(op, expr):
    """What the heavy op's OpDef needs to infer or cost it: its inputs and attrs."""
    epilogue = expr.epilogue_of
    attrs = {k: decode_attr(v) for k, v in epilogue["attrs"].items()}
    return types.SimpleNamespace(inputs=list(op.inputs[:epilogue["num_inputs"]]), attrs=attrs,
                                 name=op.name, type=epilogue["op"], device=op.device)


def _expr_input_specs(op, expr) -> list:
    """(dtype, shape) of each expression input: the op's inputs, or the heavy op's result."""
    n = heavy_inputs(expr)
    specs = [(t.dtype, t.shape) for t in op.inputs[n:]]
    if expr.epilogue_of is not None:
        heavy_def = registry.get(expr.epilogue_of["op"])
        (dtype, shape), *_ = heavy_def.infer(_heavy_stand_in(op, expr))
        specs.insert(0, (dtype, TensorShape(shape)))
    return specs


def _fused_infer(op):
    expr = expr_of(op)
    specs = _expr_input_specs(op, expr)
    if len(specs) != len(expr.inputs):
        raise ValueError(f"the fused expression takes {len(expr.inputs)} inputs, got "
                         f"{len(specs)}")
    for i, ((dtype, _), want) in enumerate(zip(specs, expr.inputs)):
        if dtype.name != want["dtype"]:
            raise TypeError(f"input {i} of the fused expression must be {want['dtype']}, "
                            f"got {dtype.name}")
    shapes = _node_shapes(expr, [shape for _, shape in specs])
    outputs = [(dtypes.as_dtype(expr.nodes[j]["dtype"]), shapes[j]) for j in expr.outputs]
    if expr.reduce is not None:
        outputs[0] = (outputs[0][0], _reduced(outputs[0][1], expr.reduce))
    return outputs


def _node_shapes(expr, input_shapes) -> list:
    shapes = []
    for node in expr.nodes:
        arg_shapes = []
        for kind, *rest in node["args"]:
            if kind == "in":
                arg_shapes.append(input_shapes[rest[0]])
            elif kind == "node":
                arg_shapes.append(shapes[rest[0]])
        shapes.append(broadcast_all(arg_shapes))
    return shapes


def _reduced(shape: TensorShape, reduce: dict) -> TensorShape:
    dims = shape.as_tuple()
    axes = set(reduce["axes"])
    if dims is None:
        return TensorShape(None)
    if any(a >= len(dims) for a in axes):
        raise ValueError(f"reduction axes {sorted(axes)} out of range for shape {shape}")
    if reduce["keepdims"]:
        return TensorShape([1 if i in axes else d for i, d in enumerate(dims)])
    return TensorShape([d for i, d in enumerate(dims) if i not in axes])


# -- kernel ----------------------------------------------------------------------------------------
def _fused_kernel(attrs, xp):
    expr = _parse(attrs["expr"])
    # One kernel per op instance: its plans and the outputs it keeps for reuse live as long as
    # the compiled step that holds it (compiled machine code is cached by the backends).
    compiled = codegen.compile_expr(expr, xp)
    single = len(expr.outputs) == 1
    if expr.epilogue_of is None:
        def fused(*arrays):
            if _small(arrays):
                outputs = evaluate(expr, xp, *arrays)
            else:
                outputs = compiled(*arrays)
            return outputs[0] if single else outputs
        return fused
    epilogue = expr.epilogue_of
    heavy = registry.get(epilogue["op"]).kernel(
        {k: decode_attr(v) for k, v in epilogue["attrs"].items()}, xp)
    n = epilogue["num_inputs"]
    chain = _in_place_chain(expr)

    def fused_epilogue(*arrays):
        result = heavy(*arrays[:n])
        if getattr(result, "size", 0) < MIN_FUSED_ELEMENTS:
            if chain and _donatable(result, arrays) and _fits(result, arrays[n:]):
                outputs = _evaluate_chain_into(expr, xp, result, arrays[n:])
            else:
                outputs = evaluate(expr, xp, result, *arrays[n:])
        else:
            outputs = compiled(result, *arrays[n:], donate=_donatable(result, arrays))
        return outputs[0] if single else outputs
    return fused_epilogue


def _in_place_chain(expr) -> bool:
    """Whether an epilogue below the break-even size can run op by op in the heavy op's result:
    every node reads the one before it (node 0: input 0), its other arguments are inputs or
    constants, its rule may write over its arguments, it keeps input 0's dtype, and only the
    last node is an output. Then each node overwrites a value nobody reads again."""
    if expr.reduce is not None or tuple(expr.outputs) != (len(expr.nodes) - 1,):
        return False
    dtype = expr.inputs[0]["dtype"]
    for j, node in enumerate(expr.nodes):
        carried = ["in", 0] if j == 0 else ["node", j - 1]
        others = [a for a in node["args"] if list(a) != carried]
        if len(others) != len(node["args"]) - 1 or any(a[0] == "node" or a == ["in", 0]
                                                        for a in others):
            return False
        if not ELEMENTWISE[node["op"]].out_may_alias or node["dtype"] != dtype:
            return False
    return True


def _fits(result, inputs) -> bool:
    """Whether every input broadcasts into ``result``'s shape (so no node is larger)."""
    shape = result.shape
    for a in inputs:
        dims = getattr(a, "shape", ())
        if len(dims) > len(shape) or any(d not in (1, r) for d, r in
                                         zip(reversed(dims), reversed(shape))):
            return False
    return True


def _evaluate_chain_into(expr, xp, result, inputs) -> tuple:
    """``evaluate`` of an ``_in_place_chain`` expression, every node written into ``result``
    (the same ufuncs on the same values, so the same bits, without a new array per node)."""
    arrays = (result,) + tuple(inputs)  # the expression's inputs; input 0 is result
    for node in expr.nodes:
        args = [_chain_arg(arg, arrays) for arg in node["args"]]
        ELEMENTWISE[node["op"]].numpy(xp, *args, out=result, **node["attrs"])
    return (result,)


def _chain_arg(arg, arrays):
    if arg[0] == "node":
        return arrays[0]  # the value carried along the chain, in result
    if arg[0] == "in":
        return arrays[arg[1]]
    return constant(arg)


def _small(arrays) -> bool:
    """Whether every array is below the break-even size (a broadcast output may be larger
    than its inputs; then the op-by-op evaluation is merely slower, never wrong)."""
    for a in arrays:
        if getattr(a, "size", 1) >= MIN_FUSED_ELEMENTS:
            return False
    return True


def _donatable(result, arrays) -> tuple:
    """(0,) when the heavy op's result is provably a temporary: it owns its memory, is none of
    the inputs, and our local name and this argument are its only references."""
    if getattr(result, "base", True) is not None or any(result is a for a in arrays):
        return ()
    # references: the caller's local `result`, this argument, getrefcount's argument
    return (0,) if sys.getrefcount(result) <= 3 else ()


def _fused_cost(op) -> Cost:
    expr = expr_of(op)
    base = registry.default_cost(op)
    elements = max((t.shape.num_elements() or 1 for t in op.outputs), default=1)
    flops = float(len(expr.nodes) * elements)
    if expr.epilogue_of is not None:
        heavy_def = registry.get(expr.epilogue_of["op"])
        stand_in = _heavy_stand_in(op, expr)
        stand_in.outputs = [op.outputs[0]]
        flops += (heavy_def.cost or registry.default_cost)(stand_in).flops
    return Cost(flops, base.bytes_read, base.bytes_written)


# No gradient rule: fused ops exist only in compiled graphs, which fusion builds after
# tw.gradients has run on the user's graph; nobody differentiates through one. "opaque": a fused
# op is never fused again.
register(OpDef(FUSED_OP_TYPE, _fused_infer, _fused_kernel, grad=None, fusion="opaque",
               cost=_fused_cost))
