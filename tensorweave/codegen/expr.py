"""The expression IR of a fused kernel: a small DAG of elementwise ops, as plain data.

A ``FusedExpr`` is what a fused op computes, written down so that every backend (numpy, numba,
CUDA) can generate its code from the same description and a GraphDef can carry it as JSON::

    {"inputs":  [{"dtype": "float32", "shape": [1024]}, {"dtype": "float32", "shape": null}],
     "nodes":   [{"op": "Mul",  "args": [["in", 0], ["in", 1]], "attrs": {}, "dtype": "float32"},
                 {"op": "Add",  "args": [["node", 0], ["const", 0.5, "float32"]], "attrs": {},
                  "dtype": "float32"},
                 {"op": "Relu", "args": [["node", 1]], "attrs": {}, "dtype": "float32"}],
     "outputs": [2],
     "reduce": null,
     "epilogue_of": null}

* An arg is ``["in", i]`` (input i), ``["node", j]`` (an earlier node, j < this node's index) or
  ``["const", value, dtype]`` (a typed scalar: ``0.5`` in a float32 expression is a float32).
* Each node names an op type of the rule table ``ELEMENTWISE`` (``codegen/rules.py``); its
  ``dtype`` is the one the unfused op would produce, so a backend never has to infer it.
* Broadcasting follows numpy: a node's shape is the broadcast of its args' shapes, and the
  kernel's shape is the broadcast of all inputs. Input shapes are the static shapes (``None``
  dims and ``null`` shapes for unknown ones); kernels take the real shapes from their arrays.
* ``reduce`` (optional) reduces output 0 after the elementwise part: ``{"op": "Sum", "axes":
  [0, 1], "keepdims": false}``, axes non-negative and sorted, op one of ``REDUCTIONS``. Other
  outputs (intermediates used outside the fused group) stay unreduced.
* ``epilogue_of`` (optional) says the kernel is the epilogue of a heavy op:
  ``{"op": "MatMul", "attrs": {...encoded attrs...}, "num_inputs": 2}``. The fused op's inputs
  are then the heavy op's ``num_inputs`` inputs followed by the expression's inputs 1, 2, ...;
  the heavy op's result is the expression's input 0. Backends only see the expression.

The JSON text (``to_json``) is canonical (sorted keys, no spaces), so it is also the cache key of
compiled kernels.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from tensorweave.codegen.rules import ELEMENTWISE, REDUCTIONS, ElementwiseRule, ReduceRule

__all__ = ["FusedExpr", "ELEMENTWISE", "REDUCTIONS", "ElementwiseRule", "ReduceRule",
           "evaluate", "broadcast_shapes"]


@dataclasses.dataclass(frozen=True)
class FusedExpr:
    """One fused kernel's computation; see the module docstring for the fields."""

    inputs: tuple
    nodes: tuple
    outputs: tuple
    reduce: dict | None = None
    epilogue_of: dict | None = None

    def __post_init__(self):
        # Canonicalise through JSON so equal expressions compare (and hash via to_json) equal.
        for field in ("inputs", "nodes", "outputs"):
            object.__setattr__(self, field, tuple(_plain(getattr(self, field))))
        _validate(self)

    # -- (de)serialisation --
    def to_dict(self) -> dict:
        """The expression as plain JSON-ready data."""
        return {"inputs": [dict(i) for i in self.inputs], "nodes": [dict(n) for n in self.nodes],
                "outputs": list(self.outputs), "reduce": self.reduce,
                "epilogue_of": self.epilogue_of}

    def to_json(self) -> str:
        """Canonical JSON text: sorted keys, no spaces (the kernel cache key)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> "FusedExpr":
        return cls(inputs=tuple(data["inputs"]), nodes=tuple(data["nodes"]),
                   outputs=tuple(data["outputs"]), reduce=data.get("reduce"),
                   epilogue_of=data.get("epilogue_of"))

    @classmethod
    def from_json(cls, text: str) -> "FusedExpr":
        return cls.from_dict(json.loads(text))

    # -- questions backends ask --
    @property
    def input_dtypes(self) -> list:
        return [spec["dtype"] for spec in self.inputs]

    @property
    def output_dtypes(self) -> list:
        return [self.nodes[k]["dtype"] for k in self.outputs]

    def rule(self, index: int) -> ElementwiseRule:
        """The rule of node ``index``."""
        return ELEMENTWISE[self.nodes[index]["op"]]

    def uses(self) -> list:
        """For each node, the indices of the nodes that read it (in order)."""
        readers = [[] for _ in self.nodes]
        for j, node in enumerate(self.nodes):
            for kind, *rest in node["args"]:
                if kind == "node":
                    readers[rest[0]].append(j)
        return readers

    def __str__(self) -> str:
        return format_expr(self)


def _plain(value):
    """``value`` as JSON would give it back (lists for tuples, str keys)."""
    return json.loads(json.dumps(value))


# -- validation ----------------------------------------------------------------------------------
def _validate(expr: FusedExpr) -> None:
    """Check references, arities and dtypes; a malformed expression is our bug, or a bad file."""
    if not expr.nodes:
        raise ValueError("a fused expression needs at least one node")
    for i, spec in enumerate(expr.inputs):
        if set(spec) != {"dtype", "shape"}:
            raise ValueError(f"input {i} must have exactly 'dtype' and 'shape', got {spec}")
    for j, node in enumerate(expr.nodes):
        _validate_node(expr, j, node)
    if not expr.outputs:
        raise ValueError("a fused expression needs at least one output")
    for k in expr.outputs:
        if not (isinstance(k, int) and 0 <= k < len(expr.nodes)):
            raise ValueError(f"output {k} is not a node index")
    if expr.reduce is not None:
        _validate_reduce(expr)
    if expr.epilogue_of is not None:
        _validate_epilogue(expr)


def _validate_node(expr, j, node) -> None:
    if set(node) != {"op", "args", "attrs", "dtype"}:
        raise ValueError(f"node {j} must have exactly 'op', 'args', 'attrs' and 'dtype', "
                         f"got {sorted(node)}")
    rule = ELEMENTWISE.get(node["op"])
    if rule is None:
        raise ValueError(f"node {j}: op type {node['op']!r} has no elementwise rule")
    args = node["args"]
    unknown = set(node["attrs"]) - set(rule.attrs)
    if unknown:
        raise ValueError(f"node {j} ({node['op']}): attrs {sorted(unknown)} are not read by "
                         f"its rule (which reads {list(rule.attrs)})")
    if not rule.takes(len(args)):
        raise ValueError(f"node {j} ({node['op']}): {len(args)} args for arity {rule.arity}")
    arg_dtypes = [_arg_dtype(expr, j, arg) for arg in args]
    expected = rule.result_dtype(arg_dtypes, node["attrs"])
    if expected != node["dtype"]:
        raise ValueError(f"node {j} ({node['op']}) of args {arg_dtypes} has dtype "
                         f"{expected}, not {node['dtype']}")


def _arg_dtype(expr, j, arg) -> str:
    kind = arg[0] if arg else None
    if kind == "in" and len(arg) == 2 and 0 <= arg[1] < len(expr.inputs):
        return expr.inputs[arg[1]]["dtype"]
    if kind == "node" and len(arg) == 2 and 0 <= arg[1] < j:
        return expr.nodes[arg[1]]["dtype"]
    if kind == "const" and len(arg) == 3:
        np.dtype(arg[2])  # raises TypeError for an unknown dtype name
        return arg[2]
    raise ValueError(f"node {j}: bad arg {arg} (want ['in', i], ['node', j < {j}] or "
                     f"['const', value, dtype])")


def _validate_reduce(expr) -> None:
    reduce = expr.reduce
    if set(reduce) != {"op", "axes", "keepdims"} or reduce["op"] not in REDUCTIONS:
        raise ValueError(f"bad reduce {reduce}: want {{'op': one of {sorted(REDUCTIONS)}, "
                         f"'axes': [...], 'keepdims': bool}}")
    axes = reduce["axes"]
    if axes != sorted(set(axes)) or any(a < 0 for a in axes):
        raise ValueError(f"reduce axes {axes} must be sorted, distinct and non-negative")


def _validate_epilogue(expr) -> None:
    epilogue = expr.epilogue_of
    if set(epilogue) != {"op", "attrs", "num_inputs"}:
        raise ValueError(f"bad epilogue_of {epilogue}: want 'op', 'attrs' and 'num_inputs'")
    if not expr.inputs:
        raise ValueError("an epilogue reads the heavy op's result as input 0")


# -- shapes ----------------------------------------------------------------------------------------
def broadcast_shapes(*shapes) -> tuple:
    """numpy's broadcast of concrete shapes (tuples of ints)."""
    return tuple(np.broadcast_shapes(*shapes))


def node_shapes(expr: FusedExpr, input_shapes) -> list:
    """The concrete shape of every node for the given input shapes."""
    shapes = []
    for node in expr.nodes:
        arg_shapes = []
        for kind, *rest in node["args"]:
            if kind == "in":
                arg_shapes.append(tuple(input_shapes[rest[0]]))
            elif kind == "node":
                arg_shapes.append(shapes[rest[0]])
            else:
                arg_shapes.append(())
        shapes.append(broadcast_shapes(*arg_shapes))
    return shapes


# -- the reference evaluation ----------------------------------------------------------------------
def constant(arg):
    """The typed numpy scalar of a ``["const", value, dtype]`` arg (numpy and cupy take it)."""
    return np.dtype(arg[2]).type(arg[1])


def evaluate(expr: FusedExpr, xp, *arrays) -> tuple:
    """Evaluate ``expr`` op by op with whole arrays: the plain reference the backends must match.

    ``arrays`` are the expression's inputs (for an epilogue, input 0 is the heavy op's result).
    Returns a tuple with one array per output.
    """
    if len(arrays) != len(expr.inputs):
        raise ValueError(f"the expression takes {len(expr.inputs)} inputs, got {len(arrays)}")
    values = []
    for node in expr.nodes:
        args = [_arg_value(xp, arg, arrays, values) for arg in node["args"]]
        result = xp.asarray(ELEMENTWISE[node["op"]].numpy(xp, *args, **node["attrs"]))
        assert result.dtype == np.dtype(node["dtype"]), (node, result.dtype)
        values.append(result)
    outputs = [values[k] for k in expr.outputs]
    if expr.reduce is not None:
        outputs[0] = reduce_value(expr.reduce, xp, outputs[0])
    return tuple(outputs)


def _arg_value(xp, arg, arrays, values):
    kind = arg[0]
    if kind == "in":
        return arrays[arg[1]]
    if kind == "node":
        return values[arg[1]]
    return constant(arg)


def reduce_value(reduce: dict, xp, x, out=None):
    """Apply the expression's ``reduce`` step to ``x``."""
    rule = REDUCTIONS[reduce["op"]]
    return rule.numpy(xp, x, tuple(reduce["axes"]), reduce["keepdims"], out=out)


# -- printing --------------------------------------------------------------------------------------
def format_expr(expr: FusedExpr) -> str:
    """A readable multi-line form: ``t2 = Relu(t1)``, one line per node."""
    lines = []
    for i, spec in enumerate(expr.inputs):
        shape = "[?]" if spec["shape"] is None else spec["shape"]
        lines.append(f"in{i}: {spec['dtype']}{shape}")
    for j, node in enumerate(expr.nodes):
        args = ", ".join(_format_arg(arg) for arg in node["args"])
        attrs = "".join(f", {k}={v!r}" for k, v in sorted(node["attrs"].items()))
        lines.append(f"t{j}: {node['dtype']} = {node['op']}({args}{attrs})")
    outs = ", ".join(f"t{k}" for k in expr.outputs)
    if expr.reduce is not None:
        r = expr.reduce
        outs += f"  (output 0 reduced by {r['op']} over {r['axes']}, keepdims={r['keepdims']})"
    if expr.epilogue_of is not None:
        outs += f"  (epilogue of {expr.epilogue_of['op']}, whose result is in0)"
    lines.append(f"return {outs}")
    return "\n".join(lines)


def _format_arg(arg) -> str:
    if arg[0] == "in":
        return f"in{arg[1]}"
    if arg[0] == "node":
        return f"t{arg[1]}"
    return f"{arg[1]!r}:{arg[2]}"
