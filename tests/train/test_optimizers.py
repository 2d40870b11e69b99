"""Optimizers: updates against hand-written numpy, slots, global step, errors, convergence."""

import numpy as np
import pytest

import tensorweave as tw
import tensorweave.train  # noqa: F401  (tw.train)


# -- numpy references: one step of each rule, in float64, from the TF1 formulas -------------------
def _sgd(lr):
    def step(w, g, s):
        return w - lr * g
    return step, {}


def _momentum(lr, momentum, nesterov=False):
    def step(w, g, s):
        s["momentum"] = momentum * s["momentum"] + g
        if nesterov:
            return w - lr * g - lr * momentum * s["momentum"]
        return w - lr * s["momentum"]
    return step, {"momentum": 0.0}


def _adam(lr, beta1=0.9, beta2=0.999, epsilon=1e-8):
    powers = {"t": 0}

    def step(w, g, s):
        t = powers["t"] = powers["t"] + 1
        lr_t = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        s["m"] = beta1 * s["m"] + (1 - beta1) * g
        s["v"] = beta2 * s["v"] + (1 - beta2) * g * g
        return w - lr_t * s["m"] / (np.sqrt(s["v"]) + epsilon)
    return step, {"m": 0.0, "v": 0.0}


def _rms_prop(lr, decay=0.9, momentum=0.0, epsilon=1e-10, centered=False):
    def step(w, g, s):
        s["rms"] = decay * s["rms"] + (1 - decay) * g * g
        denominator = s["rms"] + epsilon
        if centered:
            s["mg"] = decay * s["mg"] + (1 - decay) * g
            denominator = denominator - s["mg"] ** 2
        s["momentum"] = momentum * s["momentum"] + lr * g / np.sqrt(denominator)
        return w - s["momentum"]
    slots = {"rms": 1.0, "momentum": 0.0}  # TF1 starts the mean square at 1
    if centered:
        slots["mg"] = 0.0
    return step, slots


def _adagrad(lr, initial=0.1):
    def step(w, g, s):
        s["accumulator"] = s["accumulator"] + g * g
        return w - lr * g / np.sqrt(s["accumulator"])
    return step, {"accumulator": initial}


RULES = {
    "sgd": (lambda: tw.train.GradientDescentOptimizer(0.1), lambda: _sgd(0.1)),
    "momentum": (lambda: tw.train.MomentumOptimizer(0.1, 0.9), lambda: _momentum(0.1, 0.9)),
    "nesterov": (lambda: tw.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
                 lambda: _momentum(0.1, 0.9, nesterov=True)),
    "adam": (lambda: tw.train.AdamOptimizer(0.01), lambda: _adam(0.01)),
    "adam_custom": (lambda: tw.train.AdamOptimizer(0.05, beta1=0.5, beta2=0.8, epsilon=1e-3),
                    lambda: _adam(0.05, 0.5, 0.8, 1e-3)),
    "rmsprop": (lambda: tw.train.RMSPropOptimizer(0.01), lambda: _rms_prop(0.01)),
    "rmsprop_momentum": (lambda: tw.train.RMSPropOptimizer(0.01, decay=0.8, momentum=0.5),
                         lambda: _rms_prop(0.01, 0.8, 0.5)),
    "rmsprop_centered": (lambda: tw.train.RMSPropOptimizer(0.01, momentum=0.5, centered=True),
                         lambda: _rms_prop(0.01, momentum=0.5, centered=True)),
    "adagrad": (lambda: tw.train.AdagradOptimizer(0.1), lambda: _adagrad(0.1)),
}

_W0 = np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.5]], np.float32)
_B0 = np.float32(0.75)
_GRADS = [(np.array([[0.1, -0.2, 0.3], [0.4, -0.5, 0.6]], np.float32), np.float32(0.5)),
          (np.array([[-1.0, 2.0, 0.0], [0.5, 0.25, -0.75]], np.float32), np.float32(-0.25)),
          (np.array([[0.3, 0.3, -0.3], [1.5, -2.0, 0.1]], np.float32), np.float32(1.0))]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_three_steps_match_numpy(graph, rule):
    make_optimizer, make_reference = RULES[rule]
    w = tw.Variable(_W0, name="w")
    b = tw.Variable(_B0, name="b")
    gw = tw.placeholder(tw.float32, _W0.shape)
    gb = tw.placeholder(tw.float32, [])
    opt = make_optimizer()
    train = opt.apply_gradients([(gw, w), (gb, b)])
    references = {"w": make_reference(), "b": make_reference()}
    values = {"w": _W0.astype(np.float64), "b": np.float64(_B0)}
    slots = {name: dict(ref[1]) for name, ref in references.items()}
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        for grad_w, grad_b in _GRADS:
            sess.run(train, {gw: grad_w, gb: grad_b})
            for name, grad in (("w", grad_w), ("b", grad_b)):
                values[name] = references[name][0](values[name], grad.astype(np.float64),
                                                   slots[name])
            for name, var in (("w", w), ("b", b)):
                got = sess.run(var)
                assert got.dtype == np.float32
                np.testing.assert_allclose(got, values[name], rtol=2e-5, atol=1e-6,
                                           err_msg=f"{rule}: variable {name}")
                for slot_name, want in slots[name].items():
                    slot = sess.run(opt.get_slot(var, slot_name))
                    assert slot.dtype == np.float32
                    np.testing.assert_allclose(slot, np.broadcast_to(want, slot.shape),
                                               rtol=2e-5, atol=1e-6,
                                               err_msg=f"{rule}: slot {slot_name} of {name}")


def test_adam_beta_powers_advance_once_per_step(graph):
    w = tw.Variable([1.0, 2.0], name="w")
    b = tw.Variable(0.5, name="b")
    opt = tw.train.AdamOptimizer(0.1, beta1=0.8, beta2=0.9)
    train = opt.apply_gradients([(tw.constant([1.0, 1.0]), w), (tw.constant(1.0), b)])
    beta1_power, beta2_power = (v for v in opt.variables() if "power" in v.name)
    assert (beta1_power.name, beta2_power.name) == ("beta1_power:0", "beta2_power:0")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        for _ in range(3):
            sess.run(train)
        np.testing.assert_allclose(sess.run(beta1_power), 0.8 ** 4, rtol=1e-6)
        np.testing.assert_allclose(sess.run(beta2_power), 0.9 ** 4, rtol=1e-6)


def test_learning_rate_may_be_a_fed_tensor(graph):
    w = tw.Variable([1.0, 2.0], name="w")
    lr = tw.placeholder(tw.float32, [])
    train = tw.train.GradientDescentOptimizer(lr).apply_gradients([(tw.constant([1.0, 2.0]), w)])
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(train, {lr: 0.5})
        sess.run(train, {lr: 0.25})
        np.testing.assert_allclose(sess.run(w), [1.0 - 0.75, 2.0 - 1.5])


def test_float64_learning_rate_tensor_is_cast_to_the_variable_dtype(graph):
    w = tw.Variable([1.0], name="w")
    lr = tw.constant(0.5, dtype=tw.float64)
    train = tw.train.MomentumOptimizer(lr, 0.0).apply_gradients([(tw.constant([2.0]), w)])
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(train)
        got = sess.run(w)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [0.0])


def test_float64_variables_stay_float64(graph):
    w = tw.Variable(np.array([1.0, 2.0]), name="w")
    opt = tw.train.AdamOptimizer(0.1)
    train = opt.minimize(tw.reduce_sum(w * w))
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(train)
        assert sess.run(w).dtype == np.float64
        assert sess.run(opt.get_slot(w, "m")).dtype == np.float64
        np.testing.assert_allclose(sess.run(w), [0.9, 1.9])


# -- slots ----------------------------------------------------------------------------------------
SLOT_NAMES = {
    "adam": (lambda: tw.train.AdamOptimizer(), {"m": "w/Adam:0", "v": "w/Adam_1:0"}),
    "momentum": (lambda: tw.train.MomentumOptimizer(0.1, 0.9), {"momentum": "w/Momentum:0"}),
    "rmsprop": (lambda: tw.train.RMSPropOptimizer(0.1),
                {"rms": "w/RMSProp:0", "momentum": "w/RMSProp_1:0"}),
    "rmsprop_centered": (lambda: tw.train.RMSPropOptimizer(0.1, centered=True),
                         {"rms": "w/RMSProp:0", "mg": "w/RMSProp_1:0",
                          "momentum": "w/RMSProp_2:0"}),
    "adagrad": (lambda: tw.train.AdagradOptimizer(0.1), {"accumulator": "w/Adagrad:0"}),
    "sgd": (lambda: tw.train.GradientDescentOptimizer(0.1), {}),
}


@pytest.mark.parametrize("rule", sorted(SLOT_NAMES))
def test_slot_names_collections_and_colocation(graph, rule):
    make_optimizer, expected = SLOT_NAMES[rule]
    with tw.device("/cpu:0"):
        w = tw.Variable(tw.zeros([2, 3]), name="w")
    x = tw.placeholder(tw.float32, [2, 3])
    opt = make_optimizer()
    with tw.name_scope("training"):  # slot names do not depend on the caller's scope
        opt.minimize(tw.reduce_sum(w * x))
    assert opt.get_slot_names() == sorted(expected)
    trainable = tw.trainable_variables()
    global_vars = tw.global_variables()
    for slot_name, var_name in expected.items():
        slot = opt.get_slot(w, slot_name)
        assert slot.name == var_name
        assert slot.shape.as_list() == [2, 3] and slot.dtype is tw.float32
        assert slot not in trainable and slot in global_vars
        assert slot.op.colocation_groups() == ["loc:@w"]
        assert slot.device == w.device
    assert opt.get_slot(w, "no_such_slot") is None
    assert trainable == [w]


def test_slot_initial_values(graph):
    w = tw.Variable(tw.zeros([2]), name="w")
    rms = tw.train.RMSPropOptimizer(0.1, momentum=0.9)
    ada = tw.train.AdagradOptimizer(0.1, initial_accumulator_value=0.25)
    rms.minimize(tw.reduce_sum(w))
    ada.minimize(tw.reduce_sum(w))
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(rms.get_slot(w, "rms")), [1.0, 1.0])
        np.testing.assert_array_equal(sess.run(rms.get_slot(w, "momentum")), [0.0, 0.0])
        np.testing.assert_array_equal(sess.run(ada.get_slot(w, "accumulator")), [0.25, 0.25])


def test_variables_lists_slots_and_beta_powers_sorted(graph):
    w = tw.Variable([1.0], name="w")
    b = tw.Variable([1.0], name="b")
    opt = tw.train.AdamOptimizer()
    opt.minimize(tw.reduce_sum(w * b))
    assert [v.name for v in opt.variables()] == [
        "b/Adam:0", "b/Adam_1:0", "beta1_power:0", "beta2_power:0", "w/Adam:0", "w/Adam_1:0"]
    # beta powers are colocated with the first variable by name, as in TF1
    assert opt.variables()[2].op.colocation_groups() == ["loc:@b"]


def test_second_minimize_reuses_slots(graph):
    w = tw.Variable([1.0], name="w")
    opt = tw.train.MomentumOptimizer(0.1, 0.9)
    opt.minimize(tw.reduce_sum(w))
    slot = opt.get_slot(w, "momentum")
    opt.minimize(tw.reduce_sum(w * w))
    assert opt.get_slot(w, "momentum") is slot
    assert len(tw.global_variables()) == 2


def test_adagrad_rejects_non_positive_initial_accumulator():
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        tw.train.AdagradOptimizer(0.1, initial_accumulator_value=0.0)


# -- global step ----------------------------------------------------------------------------------
def test_global_step_increments_after_the_updates(graph):
    w = tw.Variable([1.0, 2.0], name="w")
    step = tw.train.get_or_create_global_step()
    train = tw.train.GradientDescentOptimizer(0.5).minimize(tw.reduce_sum(w * w),
                                                             global_step=step)
    assert train.op.name == "GradientDescent" and train.op.type == "AssignAdd"
    # The increment waits for the update group, which waits for every update.
    update = graph.get_operation_by_name("GradientDescent/update")
    assert update in _ancestors(train.op)
    assert {c.type for c in update.control_inputs} == {"ApplyGradientDescent"}
    assert train in graph.get_collection(tw.GraphKeys.TRAIN_OP)
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        assert [int(sess.run(train)) for _ in range(3)] == [1, 2, 3]
        np.testing.assert_allclose(sess.run(w), [1.0 * 0.0 ** 3, 0.0])
        assert sess.run(step) == 3


def _ancestors(op):
    """Every op ``op`` waits for, through data and control edges."""
    seen, stack = set(), [op]
    while stack:
        current = stack.pop()
        for parent in [t.op for t in current.inputs] + list(current.control_inputs):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def test_without_global_step_the_train_op_is_named_like_the_optimizer(graph):
    w = tw.Variable([1.0], name="w")
    train = tw.train.AdamOptimizer().minimize(tw.reduce_sum(w))
    assert isinstance(train, tw.Operation) and train.name == "Adam"
    train2 = tw.train.AdamOptimizer().minimize(tw.reduce_sum(w), name="second")
    assert train2.name == "second"


def test_global_step_must_be_a_variable(graph):
    w = tw.Variable([1.0], name="w")
    with pytest.raises(TypeError, match="global_step"):
        tw.train.GradientDescentOptimizer(0.1).minimize(tw.reduce_sum(w),
                                                        global_step=tw.constant(0))


# -- convergence ----------------------------------------------------------------------------------
CONVERGING = {
    "sgd": (lambda: tw.train.GradientDescentOptimizer(0.1), 100),
    "momentum": (lambda: tw.train.MomentumOptimizer(0.05, 0.9), 200),
    "nesterov": (lambda: tw.train.MomentumOptimizer(0.05, 0.9, use_nesterov=True), 200),
    "adam": (lambda: tw.train.AdamOptimizer(0.1), 300),
    "rmsprop": (lambda: tw.train.RMSPropOptimizer(0.05), 300),
    "rmsprop_centered": (lambda: tw.train.RMSPropOptimizer(0.02, momentum=0.5, centered=True),
                         300),
    "adagrad": (lambda: tw.train.AdagradOptimizer(0.5), 300),
}


@pytest.mark.parametrize("rule", sorted(CONVERGING))
def test_minimize_converges_on_a_quadratic(graph, rule):
    make_optimizer, steps = CONVERGING[rule]
    target = np.array([3.0, -1.0, 0.5], np.float32)
    w = tw.Variable(tw.zeros([3]), name="w")
    loss = tw.reduce_sum(tw.square(w - target))
    train = make_optimizer().minimize(loss)
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        start = sess.run(loss)
        for _ in range(steps):
            sess.run(train)
        assert sess.run(loss) < 1e-2 * start
        np.testing.assert_allclose(sess.run(w), target, atol=0.05)


# -- gradients and var_list -----------------------------------------------------------------------
def test_compute_gradients_keeps_none_for_unconnected_variables(graph):
    w = tw.Variable([1.0, 2.0], name="w")
    unused = tw.Variable([5.0], name="unused")
    loss = tw.reduce_sum(w * w)
    pairs = tw.train.GradientDescentOptimizer(0.1).compute_gradients(loss)
    assert [v for _, v in pairs] == [w, unused]
    assert pairs[1][0] is None
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        np.testing.assert_allclose(sess.run(pairs[0][0]), [2.0, 4.0])


def test_apply_gradients_skips_none_and_leaves_that_variable_alone(graph):
    w = tw.Variable([1.0, 2.0], name="w")
    unused = tw.Variable([5.0], name="unused")
    opt = tw.train.MomentumOptimizer(0.5, 0.9)
    train = opt.minimize(tw.reduce_sum(w * w))
    assert opt.get_slot(unused, "momentum") is None
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(train)
        np.testing.assert_allclose(sess.run(w), [0.0, 0.0])
        np.testing.assert_allclose(sess.run(unused), [5.0])


def test_var_list_restricts_the_update(graph):
    a = tw.Variable([1.0], name="a")
    b = tw.Variable([1.0], name="b")
    opt = tw.train.AdamOptimizer(0.1)
    train = opt.minimize(tw.reduce_sum(a * b), var_list=[b])
    assert opt.get_slot(a, "m") is None and opt.get_slot(b, "m") is not None
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(train)
        np.testing.assert_allclose(sess.run(a), [1.0])
        np.testing.assert_allclose(sess.run(b), [0.9], rtol=1e-5)


def test_all_none_gradients_raise_naming_the_variables(graph):
    w = tw.Variable([1.0], name="w")
    v = tw.Variable([1.0], name="v")
    x = tw.placeholder(tw.float32, [1])
    opt = tw.train.GradientDescentOptimizer(0.1)
    with pytest.raises(ValueError, match="No gradients provided for any variable") as e:
        opt.minimize(tw.reduce_sum(x), var_list=[w, v])
    assert "w:0" in str(e.value) and "v:0" in str(e.value)
    with pytest.raises(ValueError, match=r"No gradients provided for any variable.*w:0"):
        opt.apply_gradients([(None, w), (None, v)])


def test_var_list_errors(graph):
    w = tw.Variable([1.0], name="w")
    counter = tw.Variable(0, name="counter")
    loss = tw.reduce_sum(w * w)
    opt = tw.train.GradientDescentOptimizer(0.1)
    with pytest.raises(ValueError, match="only tw.Variables.*Const"):
        opt.minimize(loss, var_list=[w, tw.constant(1.0)])
    with pytest.raises(ValueError, match="int32.*counter"):
        opt.minimize(loss, var_list=[w, counter])
    with pytest.raises(ValueError, match="twice"):
        opt.minimize(loss, var_list=[w, w])
    with pytest.raises(ValueError, match="list of tw.Variables"):
        opt.minimize(loss, var_list=w)
    with pytest.raises(ValueError, match="var_list is empty"):
        opt.minimize(loss, var_list=[])
    other = tw.Graph()
    with other.as_default():
        stranger = tw.Variable([1.0], name="stranger")
    with pytest.raises(ValueError, match="another graph"):
        opt.minimize(loss, var_list=[stranger])


def test_loss_must_be_float(graph):
    n = tw.Variable(3, name="n")
    with pytest.raises(ValueError, match="int32 for loss"):
        tw.train.GradientDescentOptimizer(0.1).minimize(n * 2)


def test_no_trainable_variables(graph):
    with pytest.raises(ValueError, match="No variables to optimize"):
        tw.train.GradientDescentOptimizer(0.1).minimize(tw.constant(1.0) * 2.0)


def test_apply_gradients_checks_pairs(graph):
    w = tw.Variable([1.0, 2.0], name="w")
    opt = tw.train.GradientDescentOptimizer(0.1)
    with pytest.raises(ValueError, match="pairs"):
        opt.apply_gradients([w])
    with pytest.raises(ValueError, match="only with tw.Variables"):
        opt.apply_gradients([(tw.constant([1.0, 1.0]), tw.constant([1.0, 1.0]))])
    with pytest.raises(ValueError, match="shape"):
        opt.apply_gradients([(tw.constant([1.0, 1.0, 1.0]), w)])
    with pytest.raises(ValueError, match="float64"):
        opt.apply_gradients([(tw.constant([1.0, 1.0], dtype=tw.float64), w)])
    with pytest.raises(ValueError, match="No variables provided"):
        opt.apply_gradients([])


def test_grad_loss_weights_the_loss(graph):
    w = tw.Variable([1.0, 2.0], name="w")
    opt = tw.train.GradientDescentOptimizer(1.0)
    pairs = opt.compute_gradients(w * 1.0, grad_loss=tw.constant([0.5, -1.0]))
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        np.testing.assert_allclose(sess.run(pairs[0][0]), [0.5, -1.0])


def test_gate_graph_gives_the_same_update(graph):
    w = tw.Variable([1.0, 2.0], name="w")
    opt = tw.train.GradientDescentOptimizer(0.5)
    train = opt.minimize(tw.reduce_sum(w * w), gate_gradients=tw.train.Optimizer.GATE_GRAPH)
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(train)
        np.testing.assert_allclose(sess.run(w), [0.0, 0.0])


def test_failed_update_step_changes_nothing(graph):
    w = tw.Variable([1.0, 2.0], name="w")
    g = tw.placeholder(tw.float32, None)  # shape unknown until run time
    opt = tw.train.AdamOptimizer(0.1)
    train = opt.apply_gradients([(g, w)])
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(train, {g: [1.0, 1.0]})
        before = {v.name: sess.run(v) for v in tw.global_variables()}
        with pytest.raises(tw.errors.InvalidArgumentError, match="w.*shape"):
            sess.run(train, {g: [1.0, 1.0, 1.0]})
        after = {v.name: sess.run(v) for v in tw.global_variables()}
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)


def test_learning_rate_may_be_a_callable(graph):
    w = tw.Variable([1.0], name="w")
    train = tw.train.GradientDescentOptimizer(lambda: 0.25).minimize(tw.reduce_sum(w * 2.0))
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(train)
        np.testing.assert_allclose(sess.run(w), [0.5])


def _train_two_layers(threads):
    """Five Adam steps on two independent 128x128 matmuls (enough work for the dataflow
    runner to run them in parallel when threads allow)."""
    graph = tw.Graph()
    with graph.as_default():
        rng = np.random.default_rng(0)
        x = tw.constant(rng.normal(size=(128, 128)).astype(np.float32))
        w1 = tw.Variable(rng.normal(size=(128, 128)).astype(np.float32) * 0.01, name="w1")
        w2 = tw.Variable(rng.normal(size=(128, 128)).astype(np.float32) * 0.01, name="w2")
        loss = tw.reduce_sum(tw.square(tw.matmul(x, w1))) + \
            tw.reduce_sum(tw.square(tw.matmul(x, w2)))
        step = tw.train.get_or_create_global_step()
        opt = tw.train.AdamOptimizer(0.01)
        train = opt.minimize(loss, global_step=step)
        config = tw.ConfigProto(inter_op_parallelism_threads=threads)
        with tw.Session(config=config) as sess:
            sess.run(tw.global_variables_initializer())
            for _ in range(5):
                sess.run(train)
            return sess.run([w1, w2, step] + opt.variables())


def test_dataflow_runner_gives_the_straight_line_result():
    parallel, sequential = _train_two_layers(0), _train_two_layers(1)
    assert int(parallel[2]) == 5 and len(parallel) == 3 + 6  # 2 slots each, 2 beta powers
    for got, want in zip(parallel, sequential):
        np.testing.assert_array_equal(got, want)


def test_update_buffers_are_recycled_only_when_unreferenced(graph):
    w = tw.Variable(np.ones((256, 256), np.float32), name="w")
    step = tw.train.GradientDescentOptimizer(0.5).minimize(tw.reduce_sum(w * w))
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        held = sess.run(w)                    # a fetched copy: the store's array stays private
        for _ in range(4):
            sess.run(step)
        store = sess.variable_store
        assert any(store._pool.values()), "replaced values should be recycled"
        before = sess.run(w)
        kept = store.values["w"]              # a reference held outside the store...
        sess.run(step)
        np.testing.assert_array_equal(kept, before)   # ...is never written into
        sess.run(step)
        np.testing.assert_array_equal(kept, before)
    np.testing.assert_array_equal(held, np.ones((256, 256)))
