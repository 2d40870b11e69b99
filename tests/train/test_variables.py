"""Variables: initialization, reads and updates, step atomicity, scopes, collections,
initializers and the global step."""

import numpy as np
import pytest

import tensorweave as tw
import tensorweave.train  # noqa: F401  (tw.train)


def _op_names(graph):
    return [op.name for op in graph.get_operations()]


# -- creating, initializing, reading ------------------------------------------------------------
def test_variable_ops_are_named_like_tf1(graph):
    w = tw.Variable([[1.0, 2.0]], name="W")
    assert w.name == "W:0"
    assert w.op.type == "VariableV2" and w.op.name == "W"
    assert _op_names(graph) == ["W/initial_value", "W", "W/Assign", "W/read"]
    assert w.initializer.name == "W/Assign"
    assert w.value().name == "W/read:0"
    assert w.initial_value.name == "W/initial_value:0"
    assert w.dtype is tw.float32 and w.shape == [1, 2] and w.get_shape() == [1, 2]
    assert w.graph is graph
    assert tw.Variable(1.0, name="W").name == "W_1:0"
    assert tw.Variable(2.0).name == "Variable:0"


def test_variable_in_name_scope_and_callable_initial_value(graph):
    with tw.name_scope("layer"):
        v = tw.Variable(lambda: tw.constant([1, 2, 3]), name="b")
    assert v.name == "layer/b:0"
    assert "layer/b/Initializer/Const" in _op_names(graph)
    assert v.dtype is tw.int32


def test_initialize_and_read(graph):
    w = tw.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="W")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(w), np.arange(6).reshape(2, 3))
        np.testing.assert_array_equal(sess.run(w.value()), np.arange(6).reshape(2, 3))
        np.testing.assert_array_equal(w.eval(), np.arange(6).reshape(2, 3))
        assert sess.run(w).dtype == np.float32


def test_explicit_dtype_converts_python_values(graph):
    v = tw.Variable([1, 2], dtype=tw.float64)
    assert v.dtype is tw.float64
    with tw.Session() as sess:
        sess.run(v.initializer)
        assert sess.run(v).dtype == np.float64


def test_uninitialized_read_names_the_variable(graph):
    w = tw.Variable([1.0], name="weights")
    y = w * 2.0
    with tw.Session() as sess:
        with pytest.raises(tw.errors.FailedPreconditionError) as info:
            sess.run(y)
    message = str(info.value)
    assert "uninitialized value weights" in message
    assert "test_variables.py" in message  # where the failing op was created


def test_fetch_returns_a_copy(graph):
    v = tw.Variable([1.0, 2.0])
    with tw.Session() as sess:
        sess.run(v.initializer)
        got = sess.run(v)
        got[0] = 100.0  # a writable copy: changing it must not change the variable
        read = sess.run(v.value())
        read[1] = 100.0
        np.testing.assert_array_equal(sess.run(v), [1.0, 2.0])


def test_assigned_feed_is_copied(graph):
    v = tw.Variable([0.0, 0.0])
    x = tw.placeholder(tw.float32, [2])
    update = v.assign(x)
    fed = np.array([1.0, 2.0], dtype=np.float32)
    with tw.Session() as sess:
        sess.run(update, {x: fed})
        fed[0] = 50.0
        assert fed.flags.writeable
        np.testing.assert_array_equal(sess.run(v), [1.0, 2.0])


def test_two_sessions_do_not_share_values(graph):
    v = tw.Variable(1.0)
    inc = v.assign_add(1.0)
    with tw.Session() as a, tw.Session() as b:
        a.run(v.initializer)
        b.run(v.initializer)
        a.run(inc)
        a.run(inc)
        assert a.run(v) == 3.0
        assert b.run(v) == 1.0
    with tw.Session() as c:
        with pytest.raises(tw.errors.FailedPreconditionError):
            c.run(v)


# -- updates ------------------------------------------------------------------------------------
def test_assign_assign_add_assign_sub(graph):
    v = tw.Variable([1.0, 2.0])
    with tw.Session() as sess:
        sess.run(v.initializer)
        np.testing.assert_array_equal(sess.run(v.assign([5.0, 6.0])), [5.0, 6.0])
        np.testing.assert_array_equal(sess.run(v.assign_add([1.0, 1.0])), [6.0, 7.0])
        np.testing.assert_array_equal(sess.run(v.assign_sub([0.5, 2.0])), [5.5, 5.0])
        np.testing.assert_array_equal(sess.run(tw.assign(v, [0.0, 1.0])), [0.0, 1.0])
        np.testing.assert_array_equal(sess.run(tw.assign_add(v, [2.0, 2.0])), [2.0, 3.0])
        np.testing.assert_array_equal(sess.run(tw.assign_sub(v, [1.0, 1.0])), [1.0, 2.0])
        np.testing.assert_array_equal(sess.run(v), [1.0, 2.0])


def test_updates_keep_the_variable_dtype(graph):
    counter = tw.Variable(0, dtype=tw.int64, name="counter")
    inc = counter.assign_add(1)
    half = tw.Variable(np.zeros(3, np.float16))
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        for _ in range(3):
            sess.run(inc)
        value = sess.run(counter)
        assert value == 3 and value.dtype == np.int64
        assert sess.run(half.assign_add(np.ones(3, np.float16))).dtype == np.float16


def test_assign_without_read_value_returns_the_op(graph):
    v = tw.Variable(1.0)
    op = v.assign(2.0, read_value=False)
    assert isinstance(op, tw.Operation) and op.type == "Assign"
    with tw.Session() as sess:
        sess.run(v.initializer)
        assert sess.run(op) is None
        assert sess.run(v) == 2.0


def test_assign_initializes_an_uninitialized_variable(graph):
    v = tw.Variable([1.0, 2.0])
    with tw.Session() as sess:
        sess.run(v.assign([3.0, 4.0]))
        np.testing.assert_array_equal(sess.run(v), [3.0, 4.0])
        with pytest.raises(tw.errors.FailedPreconditionError, match="uninitialized"):
            tw.Session().run(v.assign_add([1.0, 1.0]))


def test_read_value_after_assign_sees_the_new_value(graph):
    v = tw.Variable(1.0)
    with tw.control_dependencies([v.assign(5.0)]):
        after = v.read_value()
    assert after.op.type == "ReadVariableOp"
    with tw.Session() as sess:
        sess.run(v.initializer)
        assert sess.run(after) == 5.0


def test_reads_in_one_step_see_its_earlier_updates(graph):
    v = tw.Variable(1.0)
    first = v.assign_add(1.0)
    with tw.control_dependencies([first]):
        second = v.assign_add(10.0)
    with tw.Session() as sess:
        sess.run(v.initializer)
        assert sess.run(second) == 12.0
        assert sess.run(v) == 12.0


def test_update_ops_are_colocated_with_the_variable(graph):
    with tw.device("/cpu:0"):
        v = tw.Variable(1.0, name="v")
    with tw.device("/gpu:0"):
        update = v.assign_add(1.0)
        read = v.read_value()
    for op in (v.initializer, v.value().op, update.op, read.op):
        assert op.colocation_groups() == ["loc:@v"]
        assert op.device == v.device


def test_load(graph):
    v = tw.Variable([0.0, 0.0])
    ops_before = len(graph.get_operations())
    with tw.Session() as sess:
        v.load([3.0, 4.0], sess)
        np.testing.assert_array_equal(sess.run(v), [3.0, 4.0])
        with sess.as_default():
            v.load(np.array([5.0, 6.0]))
            np.testing.assert_array_equal(v.eval(), [5.0, 6.0])
    assert len(graph.get_operations()) == ops_before


def test_initialized_value_initializes_dependent_variables_in_one_step(graph):
    w1 = tw.Variable([1.0, 2.0], name="w1")
    w2 = tw.Variable(w1.initialized_value() * 2.0, name="w2")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(w2), [2.0, 4.0])
        sess.run(w1.assign([5.0, 5.0]))
        np.testing.assert_array_equal(sess.run(w1.initialized_value()), [5.0, 5.0])


def test_variable_ignores_enclosing_control_dependencies(graph):
    x = tw.placeholder(tw.float32, [])
    guard = tw.identity(x)
    with tw.control_dependencies([guard]):
        v = tw.Variable(1.0)
    assert not v.initializer.control_inputs and not v.op.control_inputs
    with tw.Session() as sess:
        sess.run(v.initializer)  # needs no feed for x


# -- a step's updates commit only when the step succeeds -----------------------------------------
def test_failed_step_leaves_variables_unchanged(graph):
    v = tw.Variable(1.0)
    x = tw.placeholder(tw.float32, [None])
    inc = v.assign_add(1.0)
    with tw.control_dependencies([inc]):
        bad = tw.reshape(x, [2, 2])  # fails at run time unless x has 4 elements
    with tw.Session() as sess:
        sess.run(v.initializer)
        with pytest.raises(tw.errors.InvalidArgumentError):
            sess.run([inc, bad], {x: [1.0, 2.0, 3.0]})
        assert sess.run(v) == 1.0
        sess.run([inc, bad], {x: [1.0, 2.0, 3.0, 4.0]})
        assert sess.run(v) == 2.0


def test_failed_step_on_the_dataflow_runner_leaves_variables_unchanged(graph, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # so the step's matmuls run side by side
    a = tw.Variable(np.eye(200, dtype=np.float32) * 2.0, name="a")
    b = tw.Variable(np.eye(200, dtype=np.float32) * 3.0, name="b")
    x = tw.placeholder(tw.float32, [None])
    # Two independent matmuls: enough work for the session to pick the concurrent runner.
    updates = [a.assign(tw.matmul(a, a)), b.assign(tw.matmul(b, b))]
    with tw.control_dependencies(updates):
        bad = tw.reshape(x, [2, 2])
    config = tw.ConfigProto(inter_op_parallelism_threads=2)
    with tw.Session(config=config) as sess:
        sess.run(tw.global_variables_initializer())
        with pytest.raises(tw.errors.InvalidArgumentError, match="Reshape"):
            sess.run(bad, {x: [1.0]})
        assert any(step.parallel for step in sess._compiled_steps())
        assert sess.run(a)[0, 0] == 2.0 and sess.run(b)[0, 0] == 3.0
        sess.run(bad, {x: [1.0, 2.0, 3.0, 4.0]})
        assert sess.run(a)[0, 0] == 4.0 and sess.run(b)[0, 0] == 9.0


def test_failed_initializer_step_leaves_variables_uninitialized(graph):
    a = tw.Variable(1.0, name="a")
    x = tw.placeholder(tw.float32, [None])
    b = tw.Variable(lambda: tw.reshape(x, [2]), name="b")
    init = tw.global_variables_initializer()
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError):
            sess.run(init, {x: [1.0]})
        assert sorted(sess.run(tw.report_uninitialized_variables())) == ["a", "b"]
        sess.run(init, {x: [1.0, 2.0]})
        assert sess.run(tw.report_uninitialized_variables()).size == 0


# -- validation ---------------------------------------------------------------------------------
def test_assign_checks_shape_when_building(graph):
    v = tw.Variable([1.0, 2.0], name="v")
    with pytest.raises(ValueError, match=r"shape \(3,\) to variable v of shape \(2,\)"):
        v.assign([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="variable's shape"):
        v.assign_add([[1.0, 2.0]])


def test_assign_checks_shape_when_running(graph):
    v = tw.Variable([1.0, 2.0], name="v")
    x = tw.placeholder(tw.float32, [None])
    assign = v.assign(x)
    add = v.assign_add(x)
    with tw.Session() as sess:
        sess.run(v.initializer)
        with pytest.raises(tw.errors.InvalidArgumentError, match=r"shape \[2\].*\[3\]"):
            sess.run(assign, {x: [1.0, 2.0, 3.0]})
        with pytest.raises(tw.errors.InvalidArgumentError, match=r"shape \[2\].*\[1\]"):
            sess.run(add, {x: [1.0]})
        np.testing.assert_array_equal(sess.run(v), [1.0, 2.0])


def test_variable_without_validate_shape_changes_shape(graph):
    v = tw.Variable([1.0, 2.0], validate_shape=False)
    assert v.shape.rank is None
    x = tw.placeholder(tw.float32, [None])
    free = tw.assign(v, x, validate_shape=False)
    checked = tw.assign(v, x)
    with tw.Session() as sess:
        sess.run(v.initializer)
        sess.run(free, {x: [1.0, 2.0, 3.0]})
        np.testing.assert_array_equal(sess.run(v), [1.0, 2.0, 3.0])
        with pytest.raises(tw.errors.InvalidArgumentError, match="shapes of both"):
            sess.run(checked, {x: [1.0]})


def test_assign_checks_dtype(graph):
    v = tw.Variable([1.0, 2.0], name="v")
    with pytest.raises(TypeError, match="dtype float64, which does not match dtype float32"):
        v.assign(tw.constant([1.0, 2.0], dtype=tw.float64))
    counter = tw.Variable(0, name="counter")
    with pytest.raises(TypeError, match="counter"):
        counter.assign(1.5)
    text = tw.Variable("a", name="text")
    with pytest.raises(TypeError, match="numeric"):
        text.assign_add("b")


def test_variable_argument_errors(graph):
    with pytest.raises(ValueError, match="initial_value must be specified"):
        tw.Variable()
    x = tw.placeholder(tw.float32, [None, 3])
    with pytest.raises(ValueError, match="fully defined shape"):
        tw.Variable(x)
    assert tw.Variable(x, validate_shape=False).shape.rank is None
    with pytest.raises(ValueError, match="requested dtype float64"):
        tw.Variable(tw.constant(1.0), dtype=tw.float64)
    with pytest.raises(ValueError, match="collections"):
        tw.Variable(1.0, collections="variables")


# -- using a variable as a tensor ---------------------------------------------------------------
def test_gradients_with_respect_to_a_variable(graph):
    v = tw.Variable([1.0, -2.0, 3.0])
    (grad,) = tw.gradients(tw.reduce_sum(v * v), [v])
    with tw.Session() as sess:
        sess.run(v.initializer)
        np.testing.assert_allclose(sess.run(grad), [2.0, -4.0, 6.0])


def test_variable_operator_overloads(graph):
    v = tw.Variable(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
    m = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    results = {
        "add": v + 1.0, "radd": 1.0 + v, "sub": v - 1.0, "rsub": 10.0 - v, "mul": v * 2.0,
        "rmul": m * v, "div": v / 2.0, "rdiv": 12.0 / v, "floordiv": v // 2.0,
        "mod": v % 2.0, "pow": v ** 2.0, "matmul": v @ m, "rmatmul": m @ v, "neg": -v,
        "abs": abs(-v), "getitem": v[1], "slice": v[:, 1], "lt": v < 2.5, "ge": v >= 2.0,
        "var_var": v + v,
    }
    a = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    expected = {
        "add": a + 1, "radd": 1 + a, "sub": a - 1, "rsub": 10 - a, "mul": a * 2, "rmul": m * a,
        "div": a / 2, "rdiv": 12 / a, "floordiv": a // 2, "mod": a % 2, "pow": a ** 2,
        "matmul": a @ m, "rmatmul": m @ a, "neg": -a, "abs": a, "getitem": a[1],
        "slice": a[:, 1], "lt": a < 2.5, "ge": a >= 2.0, "var_var": a + a,
    }
    with tw.Session() as sess:
        sess.run(v.initializer)
        got = sess.run(results)
    for key, want in expected.items():
        np.testing.assert_allclose(got[key], want, err_msg=key)


def test_variable_equality_is_identity(graph):
    v = tw.Variable(1.0)
    w = tw.Variable(1.0)
    assert v == v and v != w
    assert len({v, w, v}) == 2
    with pytest.raises(TypeError):
        bool(v)


def test_conversion_to_tensor(graph):
    v = tw.Variable([1.0], name="v")
    assert tw.convert_to_tensor(v) is v.value()
    with pytest.raises(ValueError, match="requested dtype int32 for variable v:0"):
        tw.convert_to_tensor(v, dtype=tw.int32)
    assert tw.identity(v).op.inputs[0] is v.value()


# -- collections and initialization checks -------------------------------------------------------
def test_collections(graph):
    a = tw.Variable(1.0, name="a")
    b = tw.Variable(1.0, name="b", trainable=False)
    c = tw.Variable(1.0, name="c", collections=[tw.GraphKeys.LOCAL_VARIABLES], trainable=False)
    with tw.name_scope("scope"):
        d = tw.Variable(1.0, name="d")
    assert tw.global_variables() == [a, b, d]
    assert tw.trainable_variables() == [a, d]
    assert tw.local_variables() == [c]
    assert tw.global_variables("scope") == [d]
    assert tw.model_variables() == []
    assert not b.trainable and a.trainable
    init = tw.global_variables_initializer()
    assert init.name == "init" and set(init.control_inputs) == {a.initializer, b.initializer,
                                                                d.initializer}
    assert tw.variables_initializer([]).type == "NoOp"
    with tw.Session() as sess:
        sess.run(tw.local_variables_initializer())
        assert sess.run(c) == 1.0


def test_report_uninitialized_variables(graph):
    a = tw.Variable(1.0, name="a")
    with tw.variable_scope("s"):
        b = tw.get_variable("b", [2])
    report = tw.report_uninitialized_variables()
    assert report.dtype is tw.string
    only_a = tw.report_uninitialized_variables([a])
    empty = tw.report_uninitialized_variables([])
    with tw.Session() as sess:
        assert list(sess.run(report)) == ["a", "s/b"]
        sess.run(a.initializer)
        assert list(sess.run(report)) == ["s/b"]
        assert sess.run(only_a).shape == (0,)
        assert sess.run(tw.is_variable_initialized(a))
        assert not sess.run(tw.is_variable_initialized(b))
        assert sess.run(empty).shape == (0,)


# -- get_variable and variable_scope -------------------------------------------------------------
def test_get_variable_creates_and_reuses(graph):
    with tw.variable_scope("foo"):
        w = tw.get_variable("W", [2, 3])
    assert w.name == "foo/W:0" and w.dtype is tw.float32
    with tw.variable_scope("foo", reuse=True):
        assert tw.get_variable("W", [2, 3]) is w
        assert tw.get_variable("W") is w
    with tw.variable_scope("foo") as scope:
        scope.reuse_variables()
        assert tw.get_variable("W") is w
    with tw.variable_scope("foo", reuse=tw.AUTO_REUSE):
        assert tw.get_variable("W", [2, 3]) is w
        fresh = tw.get_variable("V", [1])
    assert fresh.name == "foo/V:0"
    assert tw.global_variables() == [w, fresh]


def test_get_variable_errors(graph):
    with tw.variable_scope("foo"):
        tw.get_variable("W", [2, 3])
        with pytest.raises(ValueError, match="Variable foo/W already exists, disallowed. Did you "
                                             "mean to set reuse=True"):
            tw.get_variable("W", [2, 3])
    with tw.variable_scope("foo", reuse=True):
        with pytest.raises(ValueError, match="Variable foo/missing does not exist, or was not "
                                             "created with tw.get_variable()"):
            tw.get_variable("missing", [1])
        with pytest.raises(ValueError, match=r"specified shape \(3, 2\) and found shape \(2, 3\)"):
            tw.get_variable("W", [3, 2])
        with pytest.raises(ValueError, match="specified dtype float64 and found dtype float32"):
            tw.get_variable("W", [2, 3], dtype=tw.float64)
    with pytest.raises(ValueError, match=r"must be fully defined, but instead was \(\?, 3\)"):
        tw.get_variable("partial", [None, 3])
    with pytest.raises(ValueError, match="do not specify shape"):
        tw.get_variable("const", [2], initializer=tw.constant([1.0, 2.0]))
    with pytest.raises(ValueError, match="An initializer for variable s of string is required"):
        tw.get_variable("s", [1], dtype=tw.string)


def test_tf_variable_is_not_visible_to_get_variable(graph):
    tw.Variable(1.0, name="plain")
    with tw.variable_scope("", reuse=True):
        with pytest.raises(ValueError, match="does not exist"):
            tw.get_variable("plain")


def test_reuse_is_inherited_and_cannot_be_switched_off(graph):
    with tw.variable_scope("a"):
        with tw.variable_scope("b"):
            w = tw.get_variable("W", [1])
    with tw.variable_scope("a", reuse=True):
        with tw.variable_scope("b", reuse=False) as inner:
            assert inner.reuse is True
            assert tw.get_variable("W", [1]) is w


def test_variable_scope_names_ops_and_variables(graph):
    with tw.variable_scope("net") as net:
        w = tw.get_variable("W", [1])
        y = tw.identity(w, name="y")
        with tw.variable_scope("inner"):
            b = tw.get_variable("b", [1])
    assert net.name == "net" and net.original_name_scope == "net/"
    assert y.name == "net/y:0" and b.name == "net/inner/b:0"
    with tw.variable_scope("net", reuse=True):
        again = tw.identity(w, name="y")
        assert tw.get_variable("W") is w
    # Re-entering a variable scope opens a fresh name scope; variable names stay.
    assert again.name == "net_1/y:0"
    with tw.variable_scope(net, reuse=True) as jumped:
        assert jumped.name == "net" and tw.get_variable("W") is w
    with tw.name_scope("outer"), tw.variable_scope("vs"):
        v = tw.get_variable("v", [1])  # name scopes do not prefix get_variable's names
        plain = tw.Variable(1.0, name="plain")  # but do prefix tw.Variable's
    assert v.name == "vs/v:0" and plain.name == "outer/vs/plain:0"
    assert tw.get_variable_scope().name == ""


def test_default_names_are_made_unique(graph):
    names = []
    for _ in range(3):
        with tw.variable_scope(None, default_name="dense"):
            names.append(tw.get_variable("W", [1]).name)
    assert names == ["dense/W:0", "dense_1/W:0", "dense_2/W:0"]
    # Re-entering the parent numbers its sub-scopes afresh, so a model built twice shares.
    built = []
    for reuse in (False, True):
        with tw.variable_scope("model", reuse=reuse):
            with tw.variable_scope(None, default_name="layer"):
                built.append(tw.get_variable("W", [1]))
    assert built[0] is built[1] and built[0].name == "model/layer/W:0"
    with pytest.raises(TypeError, match="default_name"):
        with tw.variable_scope(None):
            pass


def test_scope_defaults_for_new_variables(graph):
    with tw.variable_scope("s", initializer=tw.constant_initializer(3.0), dtype=tw.float64):
        w = tw.get_variable("W", [2])
        with tw.variable_scope("t"):
            u = tw.get_variable("U", [1])
        n = tw.get_variable("n", [2], dtype=tw.int32, initializer=tw.zeros_initializer())
    assert w.dtype is tw.float64 and u.dtype is tw.float64 and n.dtype is tw.int32
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(w), [3.0, 3.0])
        np.testing.assert_array_equal(sess.run(u), [3.0])
        np.testing.assert_array_equal(sess.run(n), [0, 0])


def test_get_variable_default_initializers(graph):
    ints = tw.get_variable("ints", [3], dtype=tw.int64)
    floats = tw.get_variable("floats", [40, 60])
    from_value = tw.get_variable("from_value", initializer=np.array([1, 2], np.int32))
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(ints), [0, 0, 0])
        values = sess.run(floats)
        limit = np.sqrt(6.0 / (40 + 60))  # glorot_uniform
        assert np.all(np.abs(values) <= limit) and values.std() > limit / 3
        np.testing.assert_array_equal(sess.run(from_value), [1, 2])


def test_regularizer_losses_are_collected(graph):
    with tw.variable_scope("reg", regularizer=lambda w: tw.reduce_sum(w * w)):
        w = tw.get_variable("W", initializer=np.array([1.0, 2.0], np.float32))
        tw.get_variable("b", [1], regularizer=tw.no_regularizer)
    (loss,) = tw.get_collection(tw.GraphKeys.REGULARIZATION_LOSSES)
    assert loss.name.startswith("reg/W/Regularizer/")
    with tw.Session() as sess:
        sess.run(w.initializer)
        assert sess.run(loss) == 5.0


def test_custom_getter(graph):
    seen = []

    def getter(next_getter, name, *args, **kwargs):
        seen.append(name)
        kwargs["trainable"] = False
        return next_getter(name, *args, **kwargs)

    with tw.variable_scope("cg", custom_getter=getter):
        v = tw.get_variable("v", [1])
    assert seen == ["cg/v"] and not v.trainable


# -- initializers -------------------------------------------------------------------------------
def _run_initializer(init, shape, dtype=tw.float32):
    with tw.Graph().as_default():
        with tw.Session() as sess:
            return sess.run(init(shape, dtype=dtype))


def test_constant_initializers():
    np.testing.assert_array_equal(_run_initializer(tw.zeros_initializer(), [2, 2]),
                                  np.zeros((2, 2)))
    ones = _run_initializer(tw.ones_initializer(), [3], tw.int32)
    assert ones.dtype == np.int32 and list(ones) == [1, 1, 1]
    np.testing.assert_array_equal(_run_initializer(tw.constant_initializer(7.0), [2]), [7, 7])
    np.testing.assert_array_equal(_run_initializer(tw.constant_initializer([1.0, 2.0]), [2, 2]),
                                  [[1, 2], [2, 2]])  # padded with the last element
    with pytest.raises(ValueError, match="too many elements"):
        _run_initializer(tw.constant_initializer([1.0, 2.0, 3.0]), [2])
    assert tw.initializers.zeros is tw.zeros_initializer


def test_random_initializers_shapes_and_ranges():
    uniform = _run_initializer(tw.random_uniform_initializer(-1.0, 1.0, seed=1), [1000])
    assert uniform.min() >= -1.0 and uniform.max() < 1.0
    normal = _run_initializer(tw.random_normal_initializer(2.0, 0.5, seed=1), [4000])
    assert abs(normal.mean() - 2.0) < 0.05 and abs(normal.std() - 0.5) < 0.05
    truncated = _run_initializer(tw.truncated_normal_initializer(0.0, 1.0, seed=1), [4000])
    assert np.abs(truncated).max() <= 2.0
    glorot = _run_initializer(tw.glorot_normal_initializer(seed=3), [100, 300])
    assert abs(glorot.std() - np.sqrt(2.0 / 400)) < 0.01
    scaled = _run_initializer(tw.variance_scaling_initializer(2.0, "fan_in", "uniform", seed=4),
                              [3, 3, 50, 8])
    limit = np.sqrt(3.0 * 2.0 / (3 * 3 * 50))
    assert scaled.shape == (3, 3, 50, 8) and np.abs(scaled).max() <= limit
    assert scaled.std() > limit / 3
    with pytest.raises(ValueError, match="floating point"):
        tw.random_normal_initializer(dtype=tw.int32)
    with pytest.raises(ValueError, match="mode"):
        tw.variance_scaling_initializer(mode="fan_wrong")


def test_seeded_initializers_repeat_across_sessions(graph):
    v = tw.get_variable("v", [5], initializer=tw.glorot_uniform_initializer(seed=42))
    values = []
    for _ in range(2):
        with tw.Session() as sess:
            sess.run(v.initializer)
            values.append(sess.run(v))
    np.testing.assert_array_equal(values[0], values[1])


# -- the global step ----------------------------------------------------------------------------
def test_global_step(graph):
    assert tw.train.get_global_step() is None
    with tw.variable_scope("somewhere"):
        step = tw.train.get_or_create_global_step()
    assert step.name == "global_step:0" and step.dtype is tw.int64 and step.shape == []
    assert not step.trainable
    assert tw.train.get_or_create_global_step() is step
    assert tw.train.get_global_step() is step
    assert tw.get_collection(tw.GraphKeys.GLOBAL_STEP) == [step]
    assert step in tw.global_variables() and step not in tw.trainable_variables()
    with pytest.raises(ValueError, match="already exists"):
        tw.train.create_global_step()
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(step.assign_add(1))
        assert tw.train.global_step(sess, step) == 1


def test_global_step_of_an_explicit_empty_graph():
    other = tw.Graph()
    step = tw.train.get_or_create_global_step(other)
    assert step.graph is other
    assert tw.train.get_global_step(other) is step
