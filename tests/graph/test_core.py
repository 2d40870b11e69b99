"""The graph IR: names, scopes, control dependencies, colocation, collections, default graphs."""

import os

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.graph import core


def _controls(t):
    op = t if isinstance(t, tw.Operation) else t.op
    return [c.name for c in op.control_inputs]


# -- unique names ---------------------------------------------------------------------------------
def test_repeated_names_get_numbered_suffixes(graph):
    names = [tw.add(1, 2).op.name for _ in range(3)]
    assert names == ["Add", "Add_1", "Add_2"]


def test_a_requested_name_that_is_taken_by_a_suffixed_name_skips_it(graph):
    tw.add(1, 2)
    tw.add(1, 2)  # Add_1
    assert tw.constant(1, name="Add_1").op.name == "Add_1_1"
    assert tw.add(1, 2).op.name == "Add_2"


def test_names_collide_case_insensitively(graph):
    assert tw.constant(1, name="W").op.name == "W"
    assert tw.constant(1, name="w").op.name == "w_1"
    assert tw.constant(1, name="W").op.name == "W_2"


def test_names_are_looked_up_exactly(graph):
    c = tw.constant(1.0, name="c")
    assert graph.get_operation_by_name("c") is c.op
    assert graph.get_tensor_by_name("c:0") is c
    with pytest.raises(KeyError, match="C"):
        graph.get_operation_by_name("C")
    with pytest.raises(KeyError, match="1 outputs"):
        graph.get_tensor_by_name("c:1")
    with pytest.raises(ValueError, match="op_name:output_index"):
        graph.get_tensor_by_name("c")


@pytest.mark.parametrize("bad", ["_hidden", "-x", "a b", "a:0", ""])
def test_invalid_op_names_are_rejected(graph, bad):
    with pytest.raises(ValueError, match="valid op name"):
        graph.unique_name(bad) if bad == "" else tw.constant(1, name=bad)


def test_unique_name_can_peek_without_reserving(graph):
    assert graph.unique_name("foo", mark_as_used=False) == "foo"
    assert graph.unique_name("foo", mark_as_used=False) == "foo"
    assert graph.unique_name("foo") == "foo"
    assert graph.unique_name("foo", mark_as_used=False) == "foo_1"


# -- name scopes ----------------------------------------------------------------------------------
def test_name_scopes_nest_and_yield_their_prefix(graph):
    with tw.name_scope("outer") as outer:
        assert outer == "outer/"
        with tw.name_scope("inner") as inner:
            assert inner == "outer/inner/"
            assert tw.constant(1).op.name == "outer/inner/Const"
            assert graph.get_name_scope() == "outer/inner"
        assert tw.constant(1).op.name == "outer/Const"
    assert graph.get_name_scope() == ""
    assert tw.constant(1).op.name == "Const"


def test_reopening_a_scope_by_name_makes_a_new_unique_scope(graph):
    with tw.name_scope("layer") as first:
        tw.constant(1)
    with tw.name_scope("layer") as second:
        c = tw.constant(1)
    assert (first, second) == ("layer/", "layer_1/")
    assert c.op.name == "layer_1/Const"


def test_a_scope_name_ending_in_slash_re_enters_that_scope(graph):
    with tw.name_scope("layer") as scope:
        tw.constant(1)
    with tw.name_scope(scope) as again:
        c = tw.constant(1)
    assert again == "layer/"
    assert c.op.name == "layer/Const_1"


def test_empty_or_none_scope_resets_to_the_top_level(graph):
    with tw.name_scope("a"):
        with tw.name_scope(None):
            assert tw.constant(1).op.name == "Const"
        with tw.name_scope(""):
            assert tw.constant(1).op.name == "Const_1"


def test_name_scope_default_name_is_used_when_name_is_none(graph):
    with tw.name_scope(None, default_name="dense") as scope:
        assert scope == "dense/"


def test_scope_and_op_names_share_one_namespace(graph):
    tw.constant(1, name="block")
    with tw.name_scope("block") as scope:
        pass
    assert scope == "block_1/"


def test_name_scope_is_restored_after_an_exception(graph):
    with pytest.raises(RuntimeError):
        with tw.name_scope("s"):
            raise RuntimeError("boom")
    assert graph.get_name_scope() == ""


# -- device scopes --------------------------------------------------------------------------------
def test_device_short_forms_are_canonicalized(graph):
    with tw.device("/gpu:1"):
        a = tw.constant(1)
    with tw.device("/job:ps/task:0"):
        b = tw.constant(1)
    assert a.device == "/device:GPU:1"
    assert b.device == "/job:ps/task:0"
    assert a.op.device == a.device


def test_nested_device_scopes_merge_job_from_outer_and_device_from_inner(graph):
    with tw.device("/job:worker/task:1"):
        with tw.device("/gpu:0"):
            a = tw.constant(1)
        with tw.device("/job:ps"):
            b = tw.constant(1)
        c = tw.constant(1)
    assert a.device == "/job:worker/task:1/device:GPU:0"
    assert b.device == "/job:ps/task:1"
    assert c.device == "/job:worker/task:1"


def test_inner_device_type_replaces_outer_type_and_index(graph):
    with tw.device("/device:GPU:1"):
        with tw.device("/device:CPU:*"):
            a = tw.constant(1)
    assert a.device == "/device:CPU:*"


def test_device_none_clears_enclosing_scopes(graph):
    with tw.device("/job:worker/gpu:0"):
        with tw.device(None):
            a = tw.constant(1)
            with tw.device("/cpu:0"):
                b = tw.constant(1)
    assert a.device == ""
    assert b.device == "/device:CPU:0"


def test_device_functions_choose_per_op(graph):
    def pick(op):
        return "/gpu:0" if op.type == "MatMul" else "/cpu:0"

    x = tw.constant(np.ones((2, 2), np.float32))
    with tw.device(pick):
        c = tw.constant(np.ones((2, 2), np.float32))
        m = tw.matmul(x, c)
    assert x.device == ""
    assert c.device == "/device:CPU:0"
    assert m.device == "/device:GPU:0"


def test_device_function_result_merges_into_the_outer_scope(graph):
    with tw.device("/job:worker"):
        with tw.device(lambda op: "/gpu:0"):
            a = tw.constant(1)
        with tw.device(lambda op: None):
            b = tw.constant(1)
    assert a.device == "/job:worker/device:GPU:0"
    assert b.device == "/job:worker"


def test_invalid_device_name_is_rejected_when_the_scope_opens(graph):
    with pytest.raises(ValueError, match="cannot parse device name"):
        with tw.device("/foo:1"):
            pass


# -- control dependencies -------------------------------------------------------------------------
def test_control_dependencies_accept_ops_and_tensors(graph):
    a = tw.constant(1, name="a")
    b = tw.no_op(name="b")
    with tw.control_dependencies([a, b]):
        c = tw.constant(2, name="c")
    assert _controls(c) == ["a", "b"]


def test_nested_control_dependencies_accumulate(graph):
    a, b = tw.constant(1, name="a"), tw.constant(2, name="b")
    with tw.control_dependencies([a]):
        with tw.control_dependencies([b]):
            c = tw.constant(3, name="c")
        d = tw.constant(4, name="d")
    assert _controls(c) == ["a", "b"]
    assert _controls(d) == ["a"]


def test_control_dependencies_none_clears_the_enclosing_ones(graph):
    a, b = tw.constant(1, name="a"), tw.constant(2, name="b")
    with tw.control_dependencies([a]):
        with tw.control_dependencies(None):
            c = tw.constant(3, name="c")
            with tw.control_dependencies([b]):
                d = tw.constant(4, name="d")
        e = tw.constant(5, name="e")
    assert _controls(c) == []
    assert _controls(d) == ["b"]
    assert _controls(e) == ["a"]


def test_inputs_created_in_the_scope_are_not_given_redundant_control_edges(graph):
    a = tw.constant(1, name="a")
    with tw.control_dependencies([a]):
        b = tw.constant(2, name="b")
        c = tw.identity(b, name="c")  # b already waits for a
    assert _controls(b) == ["a"]
    assert _controls(c) == []


def test_a_control_input_that_is_also_a_data_input_is_not_duplicated(graph):
    a = tw.constant(1, name="a")
    with tw.control_dependencies([a, a.op]):
        b = tw.identity(a, name="b")
    assert _controls(b) == []


def test_outer_scope_still_applies_when_the_input_is_from_an_inner_scope_only(graph):
    a, b = tw.constant(1, name="a"), tw.constant(2, name="b")
    x = tw.constant(0, name="x")
    with tw.control_dependencies([a]):
        y = tw.identity(x, name="y")
        with tw.control_dependencies([b]):
            z = tw.identity(y, name="z")  # y is dominated by a, not by b
    assert _controls(y) == ["a"]
    assert _controls(z) == ["b"]


def test_control_dependencies_reject_non_ops(graph):
    with pytest.raises(TypeError, match="Operation or Tensor"):
        with tw.control_dependencies([3]):
            pass


def test_control_dependency_on_an_op_of_another_graph_fails(graph):
    other = tw.Graph()
    with other.as_default():
        foreign = tw.constant(1, name="foreign")
    with pytest.raises(ValueError, match="foreign"):
        with graph.control_dependencies([foreign]):
            pass


# -- colocation -----------------------------------------------------------------------------------
def test_colocate_with_records_the_group_and_takes_the_ops_device(graph):
    with tw.device("/cpu:0"):
        v = tw.constant(1.0, name="v")
    with tw.device("/gpu:1"):
        with tw.colocate_with(v):
            r = tw.identity(v, name="r")
    assert r.op.get_attr("_class") == ["loc:@v"]
    assert r.device == "/device:CPU:0"
    assert r.op.colocation_groups() == ["loc:@v"]
    assert v.op.colocation_groups() == ["loc:@v"]


def test_colocating_with_an_unplaced_op_ignores_enclosing_device_scopes(graph):
    v = tw.constant(1.0, name="v")
    with tw.device("/gpu:1"):
        with tw.colocate_with(v.op):
            r = tw.identity(v, name="r")
    assert r.device == ""


def test_nested_colocation_accumulates_groups_unless_ignore_existing(graph):
    a, b = tw.constant(1.0, name="a"), tw.constant(2.0, name="b")
    with tw.colocate_with(a):
        with tw.colocate_with(b):
            both = tw.identity(a, name="both")
        with tw.colocate_with(b, ignore_existing=True):
            only_b = tw.identity(b, name="only_b")
    assert both.op.get_attr("_class") == ["loc:@a", "loc:@b"]
    assert only_b.op.get_attr("_class") == ["loc:@b"]


def test_colocation_follows_the_targets_own_group(graph):
    v = tw.constant(1.0, name="v")
    with tw.colocate_with(v):
        r = tw.identity(v, name="read")
    with tw.colocate_with(r):
        s = tw.identity(r, name="s")
    assert s.op.get_attr("_class") == ["loc:@v"]


def test_colocate_with_none_and_ignore_existing_clears(graph):
    a = tw.constant(1.0, name="a")
    with tw.colocate_with(a):
        with tw.colocate_with(None, ignore_existing=True):
            free = tw.constant(2.0, name="free")
    assert "_class" not in free.op.attrs


# -- collections ----------------------------------------------------------------------------------
def test_collections_keep_insertion_order_and_filter_by_scope_regex(graph):
    with tw.name_scope("layer1"):
        a = tw.constant(1.0, name="w")
    with tw.name_scope("layer2"):
        b = tw.constant(1.0, name="w")
    tw.add_to_collection("weights", a)
    tw.add_to_collections(["weights", "all"], b)
    tw.add_to_collection("weights", "not a graph element")
    assert tw.get_collection("weights") == [a, b, "not a graph element"]
    assert tw.get_collection("weights", scope="layer2") == [b]
    assert tw.get_collection("weights", scope="layer[12]") == [a, b]
    assert tw.get_collection("weights", scope="1") == []  # re.match: anchored at the start
    assert tw.get_collection("missing") == []
    assert graph.get_all_collection_keys() == ["all", "weights"]


def test_get_collection_returns_a_copy_and_get_collection_ref_the_list(graph):
    tw.add_to_collection("c", 1)
    tw.get_collection("c").append(2)
    assert tw.get_collection("c") == [1]
    tw.get_collection_ref("c").append(3)
    assert tw.get_collection("c") == [1, 3]
    graph.clear_collection("c")
    assert tw.get_collection("c") == []


# -- finalize and the default graph ---------------------------------------------------------------
def test_a_finalized_graph_rejects_new_ops(graph):
    tw.constant(1)
    graph.finalize()
    assert graph.finalized
    with pytest.raises(RuntimeError, match="finalized"):
        tw.constant(2)
    assert len(graph) == 1


def test_as_default_nests_and_restores():
    outer_default = tw.get_default_graph()
    g1, g2 = tw.Graph(), tw.Graph()
    with g1.as_default() as entered:
        assert entered is g1
        assert tw.get_default_graph() is g1
        with g2.as_default():
            assert tw.get_default_graph() is g2
            assert tw.constant(1).graph is g2
        assert tw.get_default_graph() is g1
    assert tw.get_default_graph() is outer_default


def test_reset_default_graph_replaces_the_global_graph():
    before = tw.get_default_graph()
    tw.reset_default_graph()
    assert tw.get_default_graph() is not before


def test_reset_default_graph_inside_as_default_raises():
    with tw.Graph().as_default():
        with pytest.raises(AssertionError, match="reset_default_graph"):
            tw.reset_default_graph()


def test_each_thread_has_its_own_default_graph_stack():
    import threading

    seen = []
    g = tw.Graph()
    with g.as_default():
        worker = threading.Thread(target=lambda: seen.append(tw.get_default_graph()))
        worker.start()
        worker.join()
    assert seen and seen[0] is not g


# -- where ops come from, and what tensors refuse -------------------------------------------------
def test_ops_record_the_file_and_line_that_created_them(graph):
    line = _line_of_next_statement()
    c = tw.constant(1.0)
    filename, lineno = c.op.location()
    assert (os.path.realpath(filename), lineno) == (os.path.realpath(__file__), line + 1)
    assert c.op.location_str().endswith(f"test_core.py:{line + 1}")
    assert c.op.frames[0][2] == "test_ops_record_the_file_and_line_that_created_them"


def _line_of_next_statement():
    import sys
    return sys._getframe(1).f_lineno


def test_tensor_truth_value_raises(graph):
    x = tw.constant(1.0)
    with pytest.raises(TypeError, match="Python bool"):
        bool(x)
    with pytest.raises(TypeError, match="Python bool"):
        if x:
            pass


def test_tensors_are_not_iterable_and_have_no_len(graph):
    x = tw.constant([1.0, 2.0])
    with pytest.raises(TypeError, match="not iterable"):
        iter(x)
    with pytest.raises(TypeError, match="len"):
        len(x)


def test_tensors_of_two_graphs_cannot_be_combined():
    g1, g2 = tw.Graph(), tw.Graph()
    with g1.as_default():
        a = tw.constant(1.0, name="a")
    with g2.as_default():
        b = tw.constant(2.0, name="b")
    with pytest.raises(ValueError) as info:
        with g2.as_default():
            tw.add(b, a)
    message = str(info.value)
    assert "a:0" in message and "another graph" in message


def test_tensor_accessors(graph):
    x = tw.placeholder(tw.float32, [None, 3], name="x")
    assert x.name == "x:0"
    assert x.graph is graph
    assert x.get_shape() == tw.TensorShape([None, 3])
    assert x.value_index == 0
    x.set_shape([4, None])
    assert x.shape == tw.TensorShape([4, 3])
    with pytest.raises(ValueError, match="not compatible"):
        x.set_shape([5, 3])
    y = tw.identity(x)
    assert x.consumers() == [y.op]
    assert "x:0" in repr(x) and "float32" in repr(x)


def test_operation_accessors(graph):
    a = tw.constant(1.0, name="a")
    x = tw.placeholder(tw.float32, [2, 2], name="x")
    with tw.control_dependencies([a]):
        m = tw.matmul(x, x, name="m")
    op = m.op
    assert op.get_attr("transpose_a") is False
    with pytest.raises(ValueError, match="no attr"):
        op.get_attr("nope")
    node = op.node_def
    assert node["name"] == "m" and node["op"] == "MatMul"
    assert node["input"] == ["x:0", "x:0", "^a"]
    assert op.values() == op.outputs
    assert graph.as_graph_element("m") is op
    assert graph.as_graph_element("m:0") is m
    with pytest.raises(ValueError, match="an operation was expected"):
        graph.as_graph_element("m:0", allow_tensor=False)


def test_graph_elements_of_another_graph_are_rejected(graph):
    other = tw.Graph()
    with other.as_default():
        foreign = tw.constant(1.0)
    with pytest.raises(ValueError, match="not an element of this graph"):
        graph.as_graph_element(foreign)


def test_user_frames_skip_tensorweave_internals(graph):
    c = tw.add(tw.constant(1.0), 2.0)  # created deep inside tensorweave.ops
    for filename, _, _ in c.op.frames:
        assert not filename.startswith(core._PACKAGE_DIR)


def test_a_finalized_graph_rejects_new_collection_entries():
    # TF1: Graph.add_to_collection checks that the graph is not finalized.
    g = tw.Graph()
    g.finalize()
    with pytest.raises(RuntimeError, match="finalized"):
        g.add_to_collection("c", 1)
