"""snapshot: the ops a signature needs, with feeds as _Arg and fetches as _Retval ops."""

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.graph.printer import format_graph
from tensorweave.ops.importer import verify_with_registry
from tests.passes.passtest import step_graph


def test_feeds_become_args_fetches_retvals_and_targets_one_sink(graph):
    x = tw.placeholder(tw.float32, [None, 3], name="x")
    tw.placeholder(tw.float32, [], name="unused")
    w = tw.Variable(np.ones((3, 2), np.float32), name="W")
    with tw.device("/cpu:0"):
        y = tw.matmul(x, w, name="y")
    init = tw.global_variables_initializer()
    z = tw.add(y, 1.0, name="z")
    before = format_graph(graph)
    step = step_graph([z, y], [x], [init])
    assert format_graph(graph) == before
    assert step is not graph
    assert format_graph(step) == (
        "%_arg_x_0:0 f32[?,3] = _Arg() {dtype=f32, index=0, shape=[?,3]}\n"
        "%W/initial_value:0 f32[3,2] = Const() {dtype=f32, value=<f32[3,2] [[1.0, 1.0], "
        "[1.0, 1.0], [1.0, 1.0]]>}\n"
        "%W:0 f32[3,2] = VariableV2() {container='', dtype=f32, shape=[3,2], shared_name='W'}\n"
        "%W/Assign:0 f32[3,2] = Assign(%W/initial_value:0) {_class=['loc:@W'], dtype=f32, "
        "shape=[3,2], shared_name='W', use_locking=False, validate_shape=True}\n"
        "%W/read:0 f32[3,2] = Identity(%W:0) {_class=['loc:@W']}\n"
        "%y:0 f32[?,2] = MatMul(%_arg_x_0:0, %W/read:0) {transpose_a=False, transpose_b=False}"
        " @/device:CPU:0\n"
        "%init = NoOp() ^W/Assign\n"
        "%Const:0 f32[] = Const() {dtype=f32, value=<f32[] 1.0>}\n"
        "%z:0 f32[?,2] = Add(%y:0, %Const:0)\n"
        "%_retval_z_0 = _Retval(%z:0) {index=0}\n"
        "%_retval_y_0 = _Retval(%y:0) {index=1} @/device:CPU:0\n"
        "%_targets = _Targets() ^init\n")
    verify_with_registry(step, strict_shapes=True)


def test_copies_keep_where_the_user_created_them(graph):
    x = tw.placeholder(tw.float32, [2], name="x")
    y = tw.square(x, name="y")
    step = step_graph([y], [x])
    copy = step.get_operation_by_name("y")
    assert copy is not y.op
    assert copy.frames == y.op.frames
    assert copy.location_str().endswith(f"test_snapshot.py:{y.op.location()[1]}")
    arg = step.get_operation_by_name("_arg_x_0")
    assert arg.frames == x.op.frames


def test_feeding_an_intermediate_cuts_its_producers(graph):
    x = tw.placeholder(tw.float32, [], name="x")
    h = tw.exp(x, name="h")
    y = tw.negative(h, name="y")
    step = step_graph([y], [h])
    assert format_graph(step) == (
        "%_arg_h_0:0 f32[] = _Arg() {dtype=f32, index=0, shape=[]}\n"
        "%y:0 f32[] = Neg(%_arg_h_0:0)\n"
        "%_retval_y_0 = _Retval(%y:0) {index=0}\n")


def test_a_fed_tensor_can_be_fetched(graph):
    x = tw.placeholder(tw.float32, [], name="x")
    step = step_graph([x], [x])
    assert format_graph(step) == (
        "%_arg_x_0:0 f32[] = _Arg() {dtype=f32, index=0, shape=[]}\n"
        "%_retval_x_0 = _Retval(%_arg_x_0:0) {index=0}\n")


def test_a_needed_placeholder_that_is_not_fed_is_an_error_naming_it(graph):
    x = tw.placeholder(tw.float32, [None, 3], name="images")
    y = tw.add(x, 1.0)
    with pytest.raises(tw.errors.InvalidArgumentError, match="images") as e:
        step_graph([y])
    assert "test_snapshot.py" in str(e.value)
    assert e.value.op is x.op


def test_shapes_set_after_consumers_were_built_are_refined_in_the_copy(graph):
    x = tw.placeholder(tw.float32, None, name="x")
    y = tw.exp(x, name="y")
    x.set_shape([2, 3])
    assert y.shape.rank is None  # TF1 does not re-infer consumers
    step = step_graph([y], [x])
    assert step.get_operation_by_name("y").outputs[0].shape == tw.TensorShape([2, 3])
    verify_with_registry(step, strict_shapes=True)


def test_downstream_of_a_fed_constant_only_inference_is_trusted(graph):
    shape = tw.constant([2, 3], name="shape")
    x = tw.placeholder(tw.float32, [6], name="x")
    y = tw.reshape(x, shape, name="y")
    assert y.shape == tw.TensorShape([2, 3])  # read from the constant's value
    step = step_graph([y], [x, shape])
    # The fed shape may be [3, 2]: the copy must not claim [2, 3].
    assert step.get_operation_by_name("y").outputs[0].shape.as_list() == [None, None]
    with tw.Session() as sess:
        assert sess.run(y, {x: np.arange(6.0), shape: [3, 2]}).shape == (3, 2)


def test_a_fed_placeholder_run_as_a_target_has_nothing_left_to_do(graph):
    x = tw.placeholder(tw.float32, [], name="x")
    y = tw.add(x, 1.0, name="y")
    step = step_graph([y], [x], [x.op])
    assert "Placeholder" not in format_graph(step)
    assert "_Targets" not in format_graph(step)


def test_a_graph_whose_late_shapes_contradict_an_op_fails_when_it_runs(graph):
    x = tw.placeholder(tw.float32, [None], name="x")
    y = tw.reshape(x, [2, 3], name="y")
    x.set_shape([5])  # no value of x can be reshaped to [2, 3] now
    step = step_graph([y], [x])
    assert step.get_operation_by_name("y").outputs[0].shape == tw.TensorShape([2, 3])
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError, match="'y'"):
            sess.run(y, {x: np.zeros(5, np.float32)})
