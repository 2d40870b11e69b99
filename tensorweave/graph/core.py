"""The graph IR: ``Graph``, ``Operation`` and ``Tensor``.

A Graph is append-only: ops are created in topological order (an op's inputs always exist before
it), so ``graph.get_operations()`` is a valid schedule. An Operation is plain data — type,
inputs, control inputs, attrs, output specs, requested device and where the user created it. What
an op type *does* lives in its OpDef (``tensorweave.ops.registry``); the graph knows nothing of it.

Scopes (name, device, control dependencies, colocation) live on the Graph as stacks, so the
``with`` blocks of the public API only push and pop.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading

from tensorweave.graph import device_names
from tensorweave.graph.dtypes import DType
from tensorweave.graph.shapes import TensorShape, as_shape

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_VALID_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/]*$")
_MAX_FRAMES = 6


class Tensor:
    """One output of an Operation: a symbolic value with a dtype and a static shape."""

    __array_priority__ = 100  # numpy defers ``ndarray + Tensor`` to Tensor.__radd__

    def __init__(self, op: "Operation", value_index: int, dtype: DType, shape: TensorShape):
        self.op = op
        self.value_index = value_index
        self.dtype = dtype
        self._shape = shape
        self._consumers: list[Operation] = []

    @property
    def name(self) -> str:
        return f"{self.op.name}:{self.value_index}"

    @property
    def graph(self) -> "Graph":
        return self.op.graph

    @property
    def device(self) -> str:
        return self.op.device

    @property
    def shape(self) -> TensorShape:
        return self._shape

    def get_shape(self) -> TensorShape:
        return self._shape

    def set_shape(self, shape):
        """Refine the static shape with what the caller knows (must be compatible)."""
        try:
            self._shape = self._shape.merge_with(as_shape(shape))
        except ValueError:
            raise ValueError(f"tensor {self.name}: shape {self._shape} is not compatible with "
                             f"{as_shape(shape)}") from None

    def consumers(self) -> list["Operation"]:
        return list(self._consumers)

    def eval(self, feed_dict=None, session=None):
        """Run the default (or given) session to compute this tensor, as ``sess.run(t)``."""
        return _session_for(self.graph, session, "Tensor.eval()").run(self, feed_dict)

    def __repr__(self):
        return f"<tw.Tensor '{self.name}' shape={self._shape} dtype={self.dtype.name}>"

    def __bool__(self):
        raise TypeError(f"using the tensor {self.name} as a Python bool is not allowed: it has no "
                        f"value until a Session runs it (use tw.cond / tw.where for choices)")

    def __iter__(self):
        raise TypeError(f"tensor {self.name} is not iterable; use tw.unstack to split it")

    def __len__(self):
        raise TypeError(f"len() is not defined for tensor {self.name}; use tw.shape")

    __hash__ = object.__hash__


class Operation:
    """A node of the graph. Created through the op functions (``tw.add``...), not directly."""

    def __init__(self, graph, name, op_type, inputs, control_inputs, attrs, device, frames):
        self.graph = graph
        self.name = name
        self.type = op_type
        self.inputs: tuple[Tensor, ...] = tuple(inputs)
        self.control_inputs: tuple[Operation, ...] = tuple(control_inputs)
        self.attrs: dict = dict(attrs)
        self.device: str = device
        self.frames: tuple = frames
        self.outputs: tuple[Tensor, ...] = ()
        self._id = -1

    # -- TF1 accessors ----------------------------------------------------------------------
    @property
    def node_def(self) -> dict:
        return {"name": self.name, "op": self.type, "device": self.device,
                "input": [t.name for t in self.inputs] + ["^" + c.name for c in self.control_inputs],
                "attr": dict(self.attrs)}

    def get_attr(self, name):
        if name not in self.attrs:
            raise ValueError(f"op {self.name} ({self.type}) has no attr {name!r}")
        return self.attrs[name]

    def values(self):
        return self.outputs

    def colocation_groups(self) -> list[str]:
        """Names of the ops this op must share a device with (itself by default)."""
        return list(self.attrs.get("_class", [f"loc:@{self.name}"]))

    def _set_device(self, device):
        self.device = device_names.canonical(device)

    def location(self):
        """(file, line) where the user created this op, or None if unknown."""
        return self.frames[0][:2] if self.frames else None

    def location_str(self) -> str:
        where = self.location()
        return "<unknown location>" if where is None else f"{where[0]}:{where[1]}"

    def run(self, feed_dict=None, session=None):
        """Run this op in the default (or given) session, as ``sess.run(op)``."""
        _session_for(self.graph, session, "Operation.run()").run(self, feed_dict)

    def __repr__(self):
        return f"<tw.Operation '{self.name}' type={self.type}>"


def _session_for(graph, session, what):
    if session is None:
        session = get_default_session()
        if session is None:
            raise ValueError(f"{what} needs a session: pass session=... or use it inside "
                             f"`with sess.as_default():` (or an InteractiveSession)")
    if session.graph is not graph:
        raise ValueError(f"{what}: the session's graph is not the graph of this tensor/op")
    return session


class Graph:
    """A dataflow graph: the ops a program built, in creation order, plus its scopes."""

    def __init__(self):
        self._ops: list[Operation] = []
        self._by_name: dict[str, Operation] = {}
        self._names_in_use: dict[str, int] = {}
        self._name_stack = ""
        self._device_stack: list = []
        self._control_stack: list[_ControlScope] = []
        self._colocation_stack: list[Operation] = []
        self._collections: dict[str, list] = {}
        self._finalized = False
        self._lock = threading.Lock()
        self.seed = None
        self.version = 0

    # -- building ---------------------------------------------------------------------------
    def create_op(self, op_type: str, inputs, attrs: dict, name: str | None, infer, *,
                  frames=None, device=None, control_inputs=None):
        """Create an op under the current scopes.

        ``infer(op)`` returns the list of (dtype, shape) of its outputs; it sees the op fully
        scoped (name, device, location) so its errors can name it. If it raises, the graph is
        left as it was (the name stays reserved, as in TF).

        Passes that copy ops into a new graph pass what the original had: ``frames`` (where the
        user created it, instead of the caller's stack), ``device`` (a canonical device name,
        instead of the device scopes) and ``control_inputs`` (ops of this graph, added to those
        of the control-dependency scopes).
        """
        if self._finalized:
            raise RuntimeError("Graph is finalized and cannot be modified "
                               f"(tried to add a {op_type} op)")
        inputs = list(inputs)
        for t in inputs:
            if t.graph is not self:
                raise ValueError(f"{op_type} op: input {t.name} belongs to another graph; "
                                 f"tensors of different graphs cannot be combined")
        for c in control_inputs or ():
            if c.graph is not self:
                raise ValueError(f"{op_type} op: control input {c.name} belongs to another "
                                 f"graph")
        with self._lock:
            # Names starting with "_" are reserved for internal op types (_Send, _Recv, ...).
            full_name = self.unique_name(name or op_type, internal=op_type.startswith("_"))
            controls = self._control_inputs_for(inputs)
            for c in control_inputs or ():
                if c not in controls:
                    controls.append(c)
            op = Operation(self, full_name, op_type, inputs, controls, attrs, "",
                           user_frames() if frames is None else tuple(frames))
            self._apply_colocation_and_device(op)
            if device is not None:
                op.device = device
            specs = infer(op)
            op.outputs = tuple(Tensor(op, i, dtype, as_shape(shape))
                               for i, (dtype, shape) in enumerate(specs))
            self._add(op)
        return op

    def _add(self, op: Operation):
        op._id = len(self._ops)
        self._ops.append(op)
        self._by_name[op.name] = op
        for t in op.inputs:
            t._consumers.append(op)
        for scope in self._control_stack:
            scope.seen.add(op)
        self.version += 1

    def _control_inputs_for(self, inputs) -> list[Operation]:
        input_ops = {t.op for t in inputs}
        result: list[Operation] = []
        for scope in self._control_stack:
            # An input created inside the same scope already depends on the scope's ops.
            if any(op in scope.seen for op in input_ops):
                continue
            for c in scope.ops:
                if c not in input_ops and c not in result:
                    result.append(c)
        return result

    def _apply_colocation_and_device(self, op: Operation):
        device = ""
        for item in self._device_stack:
            if item is None:
                device = ""
            elif callable(item):
                device = device_names.merge(device, item(op) or "")
            else:
                device = device_names.merge(device, item)
        op.device = device
        if self._colocation_stack:
            groups: list[str] = []
            inherited = ""
            for target in self._colocation_stack:
                for g in target.colocation_groups():
                    if g not in groups:
                        groups.append(g)
                if target.device:
                    inherited = target.device
            op.attrs["_class"] = sorted(groups)
            # colocate_with clears the enclosing device scopes, so a device set here was
            # requested inside the colocation scope: it stays the op's own pin, and placement
            # reports it when it conflicts with the group's, instead of it being lost here.
            if not op.device:
                op.device = inherited

    def unique_name(self, name: str, mark_as_used: bool = True, internal: bool = False) -> str:
        """``name`` under the current name scope, with ``_1``, ``_2``... if already used."""
        if name.endswith("/") and len(name) > 1:
            # TF1: ``with name_scope("x") as scope: op(name=scope)`` names the op exactly "x".
            return name[:-1]
        if not _VALID_NAME.match(name[1:] if internal and name.startswith("_") else name):
            raise ValueError(f"{name!r} is not a valid op name (letters, digits, '.', '_', '-', "
                             f"'/'; must not start with '_' or '-')")
        full = f"{self._name_stack}/{name}" if self._name_stack else name
        key = full.lower()
        count = self._names_in_use.get(key, 0)
        if mark_as_used:
            self._names_in_use[key] = count + 1
        if count == 0:
            return full
        candidate = f"{full}_{count}"
        while candidate.lower() in self._names_in_use:
            count += 1
            candidate = f"{full}_{count}"
        if mark_as_used:
            self._names_in_use[key] = count + 1
            self._names_in_use[candidate.lower()] = 1
        return candidate

    # -- scopes -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def name_scope(self, name):
        """Prefix the names of ops created inside with ``name/`` (made unique)."""
        old = self._name_stack
        if not name:
            new = ""
        elif name.endswith("/"):
            new = name[:-1]  # re-enter an existing scope as given
        else:
            new = self.unique_name(name)
        self._name_stack = new
        try:
            yield (new + "/") if new else ""
        finally:
            self._name_stack = old

    def get_name_scope(self) -> str:
        return self._name_stack

    @contextlib.contextmanager
    def device(self, device_name_or_function):
        """Request a device for ops created inside (merged with enclosing requests)."""
        item = device_name_or_function
        if isinstance(item, str) or item is None:
            item = device_names.canonical(item) if item else (None if item is None else "")
        self._device_stack.append(item)
        try:
            yield
        finally:
            self._device_stack.pop()

    @contextlib.contextmanager
    def control_dependencies(self, control_inputs):
        """Ops created inside run only after every op in ``control_inputs`` (None clears)."""
        if control_inputs is None:
            saved, self._control_stack = self._control_stack, []
            try:
                yield
            finally:
                self._control_stack = saved
            return
        ops = []
        for c in control_inputs:
            c = _as_control_op(c, self)
            if c not in ops:
                ops.append(c)
        self._control_stack.append(_ControlScope(ops))
        try:
            yield
        finally:
            self._control_stack.pop()

    @contextlib.contextmanager
    def colocate_with(self, op, ignore_existing: bool = False):
        """Ops created inside share a device with ``op`` (a Tensor, Operation or Variable)."""
        saved_coloc = self._colocation_stack
        saved_devices = self._device_stack
        if ignore_existing:
            self._colocation_stack = []
        if op is not None:
            target = _as_control_op(op, self)
            self._colocation_stack = self._colocation_stack + [target]
            # The colocated op's device wins over enclosing device scopes, as in TF1.
            self._device_stack = []
        try:
            yield
        finally:
            self._colocation_stack = saved_coloc
            self._device_stack = saved_devices

    # -- lookup -----------------------------------------------------------------------------
    def get_operations(self) -> list[Operation]:
        return list(self._ops)

    def get_operation_by_name(self, name: str) -> Operation:
        if name not in self._by_name:
            raise KeyError(f"the name {name!r} refers to an Operation not in the graph")
        return self._by_name[name]

    def get_tensor_by_name(self, name: str) -> Tensor:
        op_name, sep, index = name.rpartition(":")
        if not sep or not index.isdigit():
            raise ValueError(f"the name {name!r} looks like an op name; a tensor name has the "
                             f"form 'op_name:output_index'")
        op = self.get_operation_by_name(op_name)
        if int(index) >= len(op.outputs):
            raise KeyError(f"the name {name!r} refers to output {index} of op {op_name}, which "
                           f"has {len(op.outputs)} outputs")
        return op.outputs[int(index)]

    def as_graph_element(self, obj, allow_tensor=True, allow_operation=True):
        """Resolve a Tensor, Operation or name to the element of this graph it names."""
        if hasattr(obj, "_as_graph_element"):
            obj = obj._as_graph_element()
        if isinstance(obj, str):
            if ":" in obj:
                if not allow_tensor:
                    raise ValueError(f"{obj!r} names a tensor; an operation was expected")
                return self.get_tensor_by_name(obj)
            if not allow_operation:
                raise ValueError(f"{obj!r} names an operation; a tensor was expected")
            return self.get_operation_by_name(obj)
        if isinstance(obj, Tensor) and allow_tensor:
            if obj.graph is not self:
                raise ValueError(f"tensor {obj.name} is not an element of this graph")
            return obj
        if isinstance(obj, Operation) and allow_operation:
            if obj.graph is not self:
                raise ValueError(f"operation {obj.name} is not an element of this graph")
            return obj
        raise TypeError(f"can not convert a {type(obj).__name__} into a Tensor or Operation")

    def __len__(self):
        return len(self._ops)

    def as_graph_def(self) -> dict:
        """The graph as a GraphDef-like dict (see ``tensorweave.graph.serialization``)."""
        from tensorweave.graph.serialization import graph_to_dict
        return graph_to_dict(self)

    # -- collections ------------------------------------------------------------------------
    def add_to_collection(self, name, value):
        if self._finalized:
            raise RuntimeError("Graph is finalized and cannot be modified "
                               f"(tried to add to collection {name!r})")
        self._collections.setdefault(name, []).append(value)

    def add_to_collections(self, names, value):
        for name in ([names] if isinstance(names, str) else names):
            self.add_to_collection(name, value)

    def get_collection_ref(self, name) -> list:
        return self._collections.setdefault(name, [])

    def get_collection(self, name, scope=None) -> list:
        items = list(self._collections.get(name, []))
        if scope is None:
            return items
        pattern = re.compile(scope)
        return [i for i in items if hasattr(i, "name") and pattern.match(i.name)]

    def get_all_collection_keys(self) -> list:
        return sorted(self._collections)

    def clear_collection(self, name):
        self._collections.pop(name, None)

    # -- lifecycle --------------------------------------------------------------------------
    def finalize(self):
        """Make the graph read-only; later attempts to add ops raise RuntimeError."""
        self._finalized = True

    @property
    def finalized(self) -> bool:
        return self._finalized

    def _unsafe_unfinalize(self):
        self._finalized = False

    @contextlib.contextmanager
    def as_default(self):
        """Make this the default graph inside the ``with`` block."""
        stack = _graph_stack()
        stack.append(self)
        try:
            yield self
        finally:
            stack.pop()


class _ControlScope:
    __slots__ = ("ops", "seen")

    def __init__(self, ops):
        self.ops = ops
        self.seen: set = set()


def _as_control_op(obj, graph) -> Operation:
    if hasattr(obj, "_as_graph_element"):
        obj = obj._as_graph_element()
    if isinstance(obj, Tensor):
        obj = obj.op
    if isinstance(obj, str):
        obj = graph.as_graph_element(obj)
        obj = obj.op if isinstance(obj, Tensor) else obj
    if not isinstance(obj, Operation):
        raise TypeError(f"expected an Operation or Tensor, got {type(obj).__name__}")
    if obj.graph is not graph:
        raise ValueError(f"{obj.name} belongs to another graph")
    return obj


def user_frames() -> tuple:
    """The caller's stack outside tensorweave, innermost first: ((file, line, function), ...)."""
    frames = []
    frame = sys._getframe(1)
    while frame is not None and len(frames) < _MAX_FRAMES:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE_DIR):
            frames.append((filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    return tuple(frames)


# -- default graph and session ------------------------------------------------------------------
_state = threading.local()
_global_default = Graph()


def _graph_stack() -> list:
    if not hasattr(_state, "graphs"):
        _state.graphs = []
    return _state.graphs


def get_default_graph() -> Graph:
    stack = _graph_stack()
    return stack[-1] if stack else _global_default


def reset_default_graph():
    """Replace the global default graph with a fresh one."""
    global _global_default
    if _graph_stack():
        raise AssertionError("do not call reset_default_graph() inside a `with g.as_default()` "
                             "block or an open Session's graph context")
    _global_default = Graph()


def _session_stack() -> list:
    if not hasattr(_state, "sessions"):
        _state.sessions = []
    return _state.sessions


def get_default_session():
    stack = _session_stack()
    return stack[-1] if stack else None


def push_default_session(session):
    _session_stack().append(session)


def pop_default_session(session):
    stack = _session_stack()
    if stack and stack[-1] is session:
        stack.pop()
    elif session in stack:
        stack.remove(session)
