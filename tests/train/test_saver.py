"""Saver: round trips, the on-disk format, checkpoint bookkeeping, crash safety, bad restores."""

import json
import os

import ml_dtypes
import numpy as np
import pytest

import tensorweave as tw
import tensorweave.train  # noqa: F401  (tw.train)
from tensorweave.train import saver as saver_module


@pytest.fixture
def graph():
    g = tw.Graph()
    with g.as_default():
        yield g


def _variables():
    return {
        "w": tw.Variable(np.arange(6, dtype=np.float32).reshape(2, 3) / 7, name="w"),
        "half": tw.Variable(np.array([1.5, -2.25], np.float16), name="half"),
        "brain": tw.Variable(np.array([1.0, 3.140625, -0.5], ml_dtypes.bfloat16),
                             name="scope/brain"),
        "count": tw.Variable(np.int64(7), name="count"),
        "ints": tw.Variable(np.array([[1, -2]], np.int32), name="ints"),
        "flags": tw.Variable(np.array([True, False]), name="flags"),
    }


def _values(sess, variables):
    return {k: sess.run(v) for k, v in variables.items()}


def _assert_same(got, want):
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        assert got[k].shape == want[k].shape, k
        np.testing.assert_array_equal(got[k].astype(np.float64), want[k].astype(np.float64),
                                      err_msg=k)


# -- round trips ----------------------------------------------------------------------------------
def test_round_trip_into_a_second_session(graph, tmp_path):
    variables = _variables()
    saver = tw.train.Saver()
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(variables["w"].assign_add(tw.ones([2, 3])))  # not the initial value any more
        saved = _values(sess, variables)
        path = saver.save(sess, str(tmp_path / "model"))
    assert path == str(tmp_path / "model")
    with tw.Session() as sess:  # never initialized: restore alone provides every value
        saver.restore(sess, path)
        _assert_same(_values(sess, variables), saved)
        np.testing.assert_allclose(sess.run(variables["w"] * 2.0), saved["w"] * 2.0)


def test_files_are_readable_without_tensorweave(graph, tmp_path):
    variables = _variables()
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        saved = _values(sess, variables)
        path = tw.train.Saver().save(sess, str(tmp_path / "model"), global_step=3)
    with open(path + ".index.json") as f:
        index = json.load(f)
    assert index["format"] == "tensorweave-checkpoint" and index["version"] == 1
    assert index["global_step"] == 3
    entry = index["variables"]["scope/brain"]
    assert entry == {"key": "scope%2Fbrain", "dtype": "bfloat16", "shape": [3],
                     "stored_dtype": "uint16"}
    with np.load(os.path.join(tmp_path, index["data_file"])) as archive:
        raw = archive[entry["key"]]
        assert raw.dtype == np.uint16
        np.testing.assert_array_equal(raw.view(ml_dtypes.bfloat16), saved["brain"])
        np.testing.assert_array_equal(archive["w"], saved["w"])
        assert archive["count"].dtype == np.int64
    with open(tmp_path / "checkpoint") as f:
        state = json.load(f)
    assert state["model_checkpoint_path"] == "model-3"
    assert state["all_model_checkpoint_paths"] == ["model-3"]


def test_dict_var_list_renames_and_restores_into_other_variables(graph, tmp_path):
    a = tw.Variable([1.0, 2.0], name="a")
    b = tw.Variable([0.0, 0.0], name="b")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        path = tw.train.Saver({"weights": a}).save(sess, str(tmp_path / "ck"))
        assert tw.train.list_variables(path) == [("weights", [2])]
        tw.train.Saver({"weights": b}).restore(sess, path)
        np.testing.assert_array_equal(sess.run(b), [1.0, 2.0])
    np.testing.assert_array_equal(tw.train.load_variable(str(tmp_path), "weights"), [1.0, 2.0])


def test_reshape_restores_the_same_elements_in_another_shape(graph, tmp_path):
    a = tw.Variable(np.arange(6, dtype=np.float32), name="a")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        path = tw.train.Saver([a]).save(sess, str(tmp_path / "ck"))
    other = tw.Graph()
    with other.as_default():
        a2 = tw.Variable(tw.zeros([2, 3]), name="a")
        with tw.Session() as sess:
            with pytest.raises(tw.errors.InvalidArgumentError):
                tw.train.Saver([a2]).restore(sess, path)
            tw.train.Saver([a2], reshape=True).restore(sess, path)
            np.testing.assert_array_equal(sess.run(a2), np.arange(6).reshape(2, 3))


def test_optimizer_state_round_trips_and_training_continues_identically(graph, tmp_path):
    w = tw.Variable([1.0, -2.0, 3.0], name="w")
    step = tw.train.get_or_create_global_step()
    train = tw.train.AdamOptimizer(0.1).minimize(tw.reduce_sum(tw.square(w)), global_step=step)
    saver = tw.train.Saver()
    assert {v.name for v in tw.global_variables()} == {
        "w:0", "global_step:0", "beta1_power:0", "beta2_power:0", "w/Adam:0", "w/Adam_1:0"}
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        for _ in range(3):
            sess.run(train)
        path = saver.save(sess, str(tmp_path / "model"), global_step=step)
        for _ in range(2):
            sess.run(train)
        expected = sess.run(w)
    assert path.endswith("model-3")
    with tw.Session() as sess:
        saver.restore(sess, tw.train.latest_checkpoint(str(tmp_path)))
        assert sess.run(step) == 3
        for _ in range(2):
            sess.run(train)
        np.testing.assert_array_equal(sess.run(w), expected)


# -- naming and bookkeeping -----------------------------------------------------------------------
def test_global_step_suffix_from_int_variable_and_tensor(graph, tmp_path):
    w = tw.Variable([1.0], name="w")
    step = tw.train.get_or_create_global_step()
    saver = tw.train.Saver([w])
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(step.assign(42))
        prefix = str(tmp_path / "m")
        assert saver.save(sess, prefix, global_step=7) == prefix + "-7"
        assert saver.save(sess, prefix, global_step=np.int64(8)) == prefix + "-8"
        assert saver.save(sess, prefix, global_step=step) == prefix + "-42"
        assert saver.save(sess, prefix, global_step=step + 1) == prefix + "-43"
        padded = tw.train.Saver([w], pad_step_number=True)
        assert padded.save(sess, prefix, global_step=5) == prefix + "-00000005"
        with pytest.raises(TypeError, match="integer"):
            saver.save(sess, prefix, global_step=tw.constant(1.5))


def test_latest_checkpoint_and_state(graph, tmp_path):
    w = tw.Variable([1.0], name="w")
    saver = tw.train.Saver([w])
    assert tw.train.latest_checkpoint(str(tmp_path)) is None
    assert tw.train.get_checkpoint_state(str(tmp_path)) is None
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        for step in (1, 2):
            saver.save(sess, str(tmp_path / "model"), global_step=step)
    latest = tw.train.latest_checkpoint(str(tmp_path))
    assert latest == str(tmp_path / "model-2")
    assert tw.train.checkpoint_exists(latest)
    state = tw.train.get_checkpoint_state(str(tmp_path))
    assert state.model_checkpoint_path == latest
    assert state.all_model_checkpoint_paths == [str(tmp_path / "model-1"), latest]
    # The state file holds relative paths: the directory can move.
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    os.rename(tmp_path, moved)
    assert tw.train.latest_checkpoint(str(moved)) == str(moved / "model-2")


def test_max_to_keep_deletes_the_oldest(graph, tmp_path):
    w = tw.Variable([1.0], name="w")
    saver = tw.train.Saver([w], max_to_keep=2)
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        for step in range(1, 5):
            saver.save(sess, str(tmp_path / "model"), global_step=step)
    files = sorted(os.listdir(tmp_path))
    assert files == ["checkpoint", "model-3.index.json", "model-3.npz", "model-4.index.json",
                     "model-4.npz"]
    assert saver.last_checkpoints == [str(tmp_path / "model-3"), str(tmp_path / "model-4")]
    state = tw.train.get_checkpoint_state(str(tmp_path))
    assert state.all_model_checkpoint_paths == saver.last_checkpoints


def test_max_to_keep_none_keeps_all_and_same_prefix_is_not_listed_twice(graph, tmp_path):
    w = tw.Variable([1.0], name="w")
    saver = tw.train.Saver([w], max_to_keep=None)
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        for step in range(1, 8):
            saver.save(sess, str(tmp_path / "model"), global_step=step)
        saver.save(sess, str(tmp_path / "model"), global_step=3)
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".npz")]) == 7
    assert saver.last_checkpoints[-1] == str(tmp_path / "model-3")
    assert len(saver.last_checkpoints) == 7


def test_recover_last_checkpoints_lets_a_new_saver_prune_old_files(graph, tmp_path):
    w = tw.Variable([1.0], name="w")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        first = tw.train.Saver([w], max_to_keep=2)
        for step in (1, 2):
            first.save(sess, str(tmp_path / "model"), global_step=step)
        second = tw.train.Saver([w], max_to_keep=2)
        second.recover_last_checkpoints(
            tw.train.get_checkpoint_state(str(tmp_path)).all_model_checkpoint_paths)
        second.save(sess, str(tmp_path / "model"), global_step=3)
    assert not tw.train.checkpoint_exists(str(tmp_path / "model-1"))
    assert tw.train.checkpoint_exists(str(tmp_path / "model-2"))


def test_write_meta_graph(graph, tmp_path):
    w = tw.Variable([1.0], name="w")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        path = tw.train.Saver([w]).save(sess, str(tmp_path / "m"), write_meta_graph=True)
    with open(path + ".meta.json") as f:
        meta = json.load(f)
    assert any(node["name"] == "w" for node in meta["nodes"])


# -- crash safety ---------------------------------------------------------------------------------
def _failing_replace(monkeypatch, fail_on_call):
    """Make the ``fail_on_call``-th os.replace (1-based) raise, as a crash there would."""
    real_replace = os.replace
    calls = {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == fail_on_call:
            raise OSError("simulated crash between writing and renaming")
        return real_replace(src, dst)
    monkeypatch.setattr(saver_module.os, "replace", replace)


# os.replace calls of one save: 1 data file, 2 index, 3 state file
@pytest.mark.parametrize("fail_on_call", [1, 2, 3])
def test_interrupted_save_keeps_the_previous_checkpoint(graph, tmp_path, monkeypatch,
                                                         fail_on_call):
    w = tw.Variable([1.0, 2.0], name="w")
    saver = tw.train.Saver([w], max_to_keep=1)
    prefix = str(tmp_path / "model")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        first = saver.save(sess, prefix, global_step=1)
        sess.run(w.assign([10.0, 20.0]))
        _failing_replace(monkeypatch, fail_on_call)
        with pytest.raises(OSError, match="simulated crash"):
            saver.save(sess, prefix, global_step=2)
        monkeypatch.undo()
        assert tw.train.latest_checkpoint(str(tmp_path)) == first
        assert saver.last_checkpoints == [first]
        assert not any(".tmp-" in f for f in os.listdir(tmp_path)), os.listdir(tmp_path)
        saver.restore(sess, tw.train.latest_checkpoint(str(tmp_path)))
        np.testing.assert_array_equal(sess.run(w), [1.0, 2.0])
        # The saver still works, and only now prunes the first checkpoint.
        second = saver.save(sess, prefix, global_step=2)
        assert tw.train.latest_checkpoint(str(tmp_path)) == second
        assert not tw.train.checkpoint_exists(first)


def test_interrupted_overwrite_of_the_same_prefix_is_detected(graph, tmp_path, monkeypatch):
    w = tw.Variable([1.0, 2.0], name="w")
    saver = tw.train.Saver([w])
    prefix = str(tmp_path / "model")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        saver.save(sess, prefix)
        sess.run(w.assign([10.0, 20.0]))
        _failing_replace(monkeypatch, 2)  # new data in place, old index still there
        with pytest.raises(OSError):
            saver.save(sess, prefix)
        monkeypatch.undo()
        with pytest.raises(tw.errors.DataLossError, match="does not match its index"):
            saver.restore(sess, prefix)
        np.testing.assert_array_equal(sess.run(w), [10.0, 20.0])


def test_damaged_data_file_is_a_data_loss_error(graph, tmp_path):
    w = tw.Variable([1.0, 2.0], name="w")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        path = tw.train.Saver([w]).save(sess, str(tmp_path / "m"))
        with open(path + ".npz", "r+b") as f:
            f.seek(-5, os.SEEK_END)
            f.write(b"xxxxx")
        with pytest.raises(tw.errors.DataLossError):
            tw.train.Saver([w]).restore(sess, path)


# -- bad restores ---------------------------------------------------------------------------------
def test_bad_restore_names_every_variable_and_changes_nothing(graph, tmp_path):
    a = tw.Variable([1.0, 2.0], name="a")
    b = tw.Variable([3.0], name="b")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        path = tw.train.Saver([a, b]).save(sess, str(tmp_path / "m"))
    other = tw.Graph()
    with other.as_default():
        a2 = tw.Variable([0.0, 0.0, 0.0], name="a")        # shape mismatch
        b2 = tw.Variable(np.array([0.0]), name="b")        # dtype mismatch
        c2 = tw.Variable([0.0], name="c")                  # missing
        d2 = tw.Variable([0.0], name="d")                  # missing
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            before = [sess.run(v) for v in (a2, b2, c2, d2)]
            with pytest.raises(tw.errors.NotFoundError) as e:
                tw.train.Saver([a2, b2, c2, d2]).restore(sess, path)
            message = str(e.value)
            for expected in ("c (for variable c:0)", "d (for variable d:0)",
                             "a: variable a:0 expects float32[3], the checkpoint has "
                             "float32[2]",
                             "b: variable b:0 expects float64[1], the checkpoint has "
                             "float32[1]"):
                assert expected in message
            with pytest.raises(tw.errors.InvalidArgumentError, match="a:0 expects"):
                tw.train.Saver([a2]).restore(sess, path)
            for v, old in zip((a2, b2, c2, d2), before):
                np.testing.assert_array_equal(sess.run(v), old)
            with pytest.raises(tw.errors.NotFoundError, match="does not exist"):
                tw.train.Saver([a2]).restore(sess, str(tmp_path / "nothing"))
            with pytest.raises(ValueError, match="None"):
                tw.train.Saver([a2]).restore(sess, None)


def test_saving_uninitialized_variables_names_them(graph, tmp_path):
    a = tw.Variable([1.0], name="a")
    b = tw.Variable([1.0], name="b")
    with tw.Session() as sess:
        sess.run(a.initializer)
        with pytest.raises(tw.errors.FailedPreconditionError, match="b:0"):
            tw.train.Saver([a, b]).save(sess, str(tmp_path / "m"))
    assert os.listdir(tmp_path) == []


def test_var_list_errors(graph, tmp_path):
    w = tw.Variable([1.0], name="w")
    t = tw.constant(1.0, name="not_a_variable")
    with pytest.raises(TypeError, match=r"var_list\[1\].*not_a_variable"):
        tw.train.Saver([w, t])
    with pytest.raises(TypeError, match=r"var_list\['x'\].*not_a_variable"):
        tw.train.Saver({"x": t})
    with pytest.raises(TypeError, match="list or a dict"):
        tw.train.Saver(w)
    with pytest.raises(ValueError, match="more than one variable"):
        tw.train.Saver([w, w])
    empty = tw.Graph()
    with empty.as_default():
        with pytest.raises(ValueError, match="No variables to save"):
            tw.train.Saver()
        assert tw.train.Saver(allow_empty=True).last_checkpoints == []


def test_save_needs_an_existing_directory_and_the_right_graph(graph, tmp_path):
    w = tw.Variable([1.0], name="w")
    saver = tw.train.Saver([w])
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        with pytest.raises(ValueError, match="doesn't exist"):
            saver.save(sess, str(tmp_path / "missing" / "m"))
    with tw.Session(graph=tw.Graph()) as sess:
        with pytest.raises(ValueError, match="graph"):
            saver.save(sess, str(tmp_path / "m"))


def test_absolute_paths_in_the_state_file_when_not_relative(graph, tmp_path, monkeypatch):
    w = tw.Variable([1.0], name="w")
    monkeypatch.chdir(tmp_path)
    os.mkdir("ckpt")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        tw.train.Saver([w], save_relative_paths=False).save(sess, "ckpt/model", global_step=1)
    with open(tmp_path / "ckpt" / "checkpoint") as f:
        assert json.load(f)["model_checkpoint_path"] == str(tmp_path / "ckpt" / "model-1")
    assert tw.train.latest_checkpoint("ckpt") == str(tmp_path / "ckpt" / "model-1")
