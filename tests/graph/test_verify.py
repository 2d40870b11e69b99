"""verify(graph): each IR invariant, broken on purpose, is reported with the op it concerns."""

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.graph.shapes import TensorShape
from tensorweave.graph.verify import verify
from tensorweave.ops import registry
from tensorweave.ops.importer import verify_with_registry


def _model():
    """(graph, x, W, y, init) of a small valid graph."""
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [None, 3], name="x")
        W = tw.constant(np.ones((3, 2), np.float32), name="W")
        init = tw.no_op(name="init")
        with tw.control_dependencies([init]):
            y = tw.matmul(x, W, name="y")
        tw.add(y, y, name="z")
    return g, x, W, y, init


def _fails(graph, *fragments, lookup=None, strict_shapes=False):
    with pytest.raises(tw.errors.InternalError) as info:
        verify(graph, lookup=lookup, strict_shapes=strict_shapes)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def test_a_valid_graph_passes_with_and_without_the_registry():
    g, *_ = _model()
    verify(g)
    verify(g, lookup=registry.lookup)
    verify_with_registry(g)
    verify_with_registry(g, strict_shapes=True)
    verify(tw.Graph())


def test_a_shape_refined_with_set_shape_passes_even_in_strict_mode():
    g, *_ = _model()
    g.get_tensor_by_name("z:0").set_shape([5, 2])  # more specific than inference gives
    verify_with_registry(g, strict_shapes=True)


def test_refining_an_input_after_its_consumers_were_built_passes():
    g, x, W, y, init = _model()
    x.set_shape([5, 3])  # y still records [?,2] (TF1 does not re-infer consumers)
    verify_with_registry(g)
    _fails(g, "'y'", "recorded as f32[?,2], but inference gives f32[5,2]",
           lookup=registry.lookup, strict_shapes=True)


def test_ops_out_of_topological_order():
    g, x, W, y, init = _model()
    ops = g._ops
    i, j = ops.index(W.op), ops.index(y.op)
    ops[i], ops[j] = ops[j], ops[i]
    error = _fails(g, "'y'", "input 1 (W:0)", "created after it", "not topological")
    assert error.op is y.op


def test_control_input_created_after_its_consumer():
    g, x, W, y, init = _model()
    z = g.get_operation_by_name("z")
    init.control_inputs = (z,)
    _fails(g, "'init'", "control input z", "created after it")


def test_input_from_an_op_that_is_not_in_the_graph():
    g, x, W, y, init = _model()
    g._ops.remove(W.op)
    del g._by_name["W"]
    _fails(g, "'y'", "input 1 (W:0)", "not in this graph")


def test_input_from_another_graph():
    g, x, W, y, init = _model()
    other = tw.Graph()
    with other.as_default():
        foreign = tw.constant(np.ones((3, 2), np.float32), name="foreign")
    y.op.inputs = (x, foreign)
    _fails(g, "'y'", "input 1 (foreign:0) belongs to another graph")


def test_control_input_from_another_graph():
    g, x, W, y, init = _model()
    other = tw.Graph()
    with other.as_default():
        foreign = tw.no_op(name="foreign")
    y.op.control_inputs = (foreign,)
    _fails(g, "'y'", "control input foreign belongs to another graph")


def test_op_of_another_graph_in_the_op_list():
    g, *_ = _model()
    other = tw.Graph()
    with other.as_default():
        stray = tw.no_op(name="stray")
    g._ops.append(stray)
    _fails(g, "'stray'", "belongs to another graph")


def test_duplicate_names():
    g, x, W, y, init = _model()
    init.name = "x"
    _fails(g, "'x' (NoOp", "shares its name with another op")


def test_op_missing_from_the_name_table():
    g, *_ = _model()
    del g._by_name["z"]
    _fails(g, "'z'", "missing from the name table")


def test_name_table_entry_for_an_op_not_in_the_graph():
    g, x, W, y, init = _model()
    g._ops.remove(g.get_operation_by_name("z"))
    y.consumers()  # z is still listed as a consumer of y; the name table is checked first
    _fails(g, "name table has entries for ops not in the graph: ['z']")


def test_an_op_listed_twice():
    g, x, *_ = _model()
    g._ops.append(x.op)
    _fails(g, "'x'", "appears twice")


def test_output_that_does_not_point_back_at_its_op():
    g, x, W, y, init = _model()
    W.op.outputs = (x,)
    _fails(g, "'W'", "output 0 is the tensor x:0")


def test_input_that_is_not_an_output_of_its_op():
    g, x, W, y, init = _model()
    y.op.inputs = (x, tw.Tensor(W.op, 0, W.dtype, W.shape))
    _fails(g, "'y'", "input 1 (W:0) is not an output of the op W")


def test_consumer_list_missing_a_reader():
    g, x, W, y, init = _model()
    W._consumers.clear()
    _fails(g, "'W'", "consumer list of W:0", "missing: ['y']")


def test_consumer_list_with_an_op_that_does_not_read_it():
    g, x, W, y, init = _model()
    x._consumers.append(init)
    _fails(g, "'x'", "consumer list of x:0", "not reading it: ['init']")


def test_consumer_list_counts_repeated_inputs():
    g, x, W, y, init = _model()
    assert y.consumers().count(g.get_operation_by_name("z")) == 2
    y._consumers.pop()
    _fails(g, "consumer list of y:0", "missing: ['z']")


def test_unknown_op_type_with_a_lookup():
    g, *_ = _model()
    with g.as_default():
        g.create_op("Bogus", [], {}, "bogus", infer=lambda op: [])
    verify(g)  # without a lookup, op types are not checked
    _fails(g, "'bogus'", "unknown op type 'Bogus'", lookup=registry.lookup)


def test_recorded_dtype_that_inference_disagrees_with():
    g, x, W, y, init = _model()
    y.dtype = tw.float64
    _fails(g, "'y'", "output 0 is recorded as f64[?,2], but inference gives f32[?,2]",
           lookup=registry.lookup)


def test_recorded_shape_incompatible_with_inference():
    g, x, W, y, init = _model()
    y._shape = TensorShape([None, 3])
    _fails(g, "recorded as f32[?,3], but inference gives f32[?,2]", lookup=registry.lookup)


def test_recorded_shape_less_specific_than_inference_fails_in_strict_mode():
    g, x, W, y, init = _model()
    W._shape = TensorShape([None, 2])
    verify_with_registry(g)
    _fails(g, "'W'", "recorded as f32[?,2], but inference gives f32[3,2]",
           lookup=registry.lookup, strict_shapes=True)
    W._shape = TensorShape(None)
    _fails(g, "recorded as f32[*], but inference gives f32[3,2]", lookup=registry.lookup,
           strict_shapes=True)


def test_wrong_number_of_recorded_outputs():
    g, x, W, y, init = _model()
    init.outputs = (tw.Tensor(init, 0, tw.float32, TensorShape([])),)
    _fails(g, "'init'", "records 1 outputs, but inference gives 0", lookup=registry.lookup)


def test_inference_that_fails_on_the_recorded_op():
    g, x, W, y, init = _model()
    del y.op.attrs["transpose_a"]
    _fails(g, "'y'", "inference fails", "transpose_a", lookup=registry.lookup)


def test_the_message_shows_the_ops_printed_line():
    g, x, W, y, init = _model()
    y.dtype = tw.int32
    _fails(g, "%y:0 i32[?,2] = MatMul(%x:0, %W:0)", lookup=registry.lookup)
