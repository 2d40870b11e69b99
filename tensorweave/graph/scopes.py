"""The TF1 scope functions on the default graph: ``tw.name_scope``, ``tw.device``, ...

Each is a thin front to the Graph method of the same name, picking the graph the way TF1 does
(the graph of the tensors given, else the default graph).
"""

from __future__ import annotations

from tensorweave.graph.core import Operation, Tensor, get_default_graph


class GraphKeys:
    """Standard collection names."""

    GLOBAL_VARIABLES = "variables"
    LOCAL_VARIABLES = "local_variables"
    TRAINABLE_VARIABLES = "trainable_variables"
    MODEL_VARIABLES = "model_variables"
    SUMMARIES = "summaries"
    UPDATE_OPS = "update_ops"
    LOSSES = "losses"
    REGULARIZATION_LOSSES = "regularization_losses"
    GLOBAL_STEP = "global_step"
    TRAIN_OP = "train_op"
    INIT_OP = "init_op"
    SAVERS = "savers"
    QUEUE_RUNNERS = "queue_runners"


def _graph_of(values):
    for v in values or ():
        if isinstance(v, (Tensor, Operation)):
            return v.graph
        op = getattr(v, "op", None)
        if isinstance(op, Operation):
            return op.graph
    return get_default_graph()


def name_scope(name, default_name=None, values=None):
    """Prefix names of ops created inside with ``name/``; yields the scope string."""
    graph = _graph_of(values)
    return graph.name_scope(name if name is not None else default_name)


def device(device_name_or_function):
    """Request a device for ops created inside, e.g. ``"/gpu:0"`` or ``"/job:ps/task:0"``."""
    return get_default_graph().device(device_name_or_function)


def control_dependencies(control_inputs):
    """Ops created inside run after every op/tensor in ``control_inputs``."""
    return _graph_of(control_inputs).control_dependencies(control_inputs)


def colocate_with(op, ignore_existing=False):
    """Ops created inside are placed on the same device as ``op``."""
    return get_default_graph().colocate_with(op, ignore_existing)


def add_to_collection(name, value):
    get_default_graph().add_to_collection(name, value)


def add_to_collections(names, value):
    get_default_graph().add_to_collections(names, value)


def get_collection(key, scope=None):
    return get_default_graph().get_collection(key, scope)


def get_collection_ref(key):
    return get_default_graph().get_collection_ref(key)
