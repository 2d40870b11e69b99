"""run_pipeline and the compile pipeline through a Session: options, verify, dumps, errors."""

import os

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.graph.printer import format_graph
from tensorweave.passes import PassResult, pipeline, run_pipeline
from tensorweave.passes.base import Rewriter
from tests.passes.passtest import step_graph


def _model():
    x = tw.placeholder(tw.float32, [2], name="x")
    c = tw.multiply(tw.constant(2.0, name="two"), 3.0, name="six")
    y = tw.add(tw.multiply(x, 1.0, name="x1"), c, name="y")
    z = tw.add(tw.exp(x, name="e1"), tw.exp(x, name="e2"), name="z")
    return x, y, z


def _step(sess):
    return sess._compiled_steps()[0]


def test_pipeline_names_and_order():
    assert tw.passes.PIPELINE == ["prune", "constant_fold", "cse", "simplify", "fuse_updates",
                                  "dce", "fusion"]
    names = [name for name, _ in pipeline()]
    assert names == [n for n in tw.passes.PIPELINE if n in names]
    assert names[:6] == ["prune", "constant_fold", "cse", "simplify", "fuse_updates", "dce"]
    assert [name for name, _ in pipeline(["cse", "fusion"])][:5] == \
        ["prune", "constant_fold", "simplify", "fuse_updates", "dce"]


def test_run_pipeline_concatenates_changes_and_dumps_each_graph(graph, tmp_path):
    x, y, z = _model()
    step = step_graph([y, z], [x])
    chosen = pipeline(["fusion"])
    result = run_pipeline(step, chosen, verify=True, dump_dir=str(tmp_path))
    assert result.changes == [
        "constant_fold: folded six (Mul) -> Const",
        "cse: merged e2 (Exp) into e1",
        "simplify: x1 (Mul) -> _arg_x_0:0 (x*1)",
        "dce: removed two (Const)",
        "dce: removed Const (Const)",
        "dce: removed Const_1 (Const)"]
    assert sorted(os.listdir(tmp_path)) == ["00_input.txt", "01_prune.txt",
                                            "02_constant_fold.txt", "03_cse.txt",
                                            "04_simplify.txt", "05_fuse_updates.txt",
                                            "06_dce.txt"]
    assert (tmp_path / "00_input.txt").read_text() == format_graph(step)
    assert (tmp_path / "06_dce.txt").read_text() == format_graph(result.graph) == (
        "%_arg_x_0:0 f32[2] = _Arg() {dtype=f32, index=0, shape=[2]}\n"
        "%six:0 f32[] = Const() {dtype=f32, value=<f32[] 6.0>}\n"
        "%y:0 f32[2] = Add(%_arg_x_0:0, %six:0)\n"
        "%e1:0 f32[2] = Exp(%_arg_x_0:0)\n"
        "%z:0 f32[2] = Add(%e1:0, %e1:0)\n"
        "%_retval_y_0 = _Retval(%y:0) {index=0}\n"
        "%_retval_z_0 = _Retval(%z:0) {index=1}\n")


def _breaks_shapes(graph, *, options):
    """A broken pass: it records a wrong output shape on every Exp."""
    rw = Rewriter(graph)
    for op in graph.get_operations():
        copy = rw.copy(op)
        if op.type == "Exp":
            copy.outputs[0]._shape = tw.TensorShape([7])
    return PassResult(rw.graph, ["broken: did something"])


def test_verify_names_the_pass_that_broke_the_graph(graph):
    x, y, z = _model()
    step = step_graph([z], [x])
    passes = [("cse", pipeline()[2][1]), ("breaks_shapes", _breaks_shapes)]
    with pytest.raises(tw.errors.InternalError, match="after pass 'breaks_shapes'.*e1"):
        run_pipeline(step, passes, verify=True)
    run_pipeline(step, passes, verify=False)  # not checked unless asked


def test_a_failing_pass_is_an_internal_error_naming_it(graph):
    x, y, z = _model()

    def crashes(graph, *, options):
        raise KeyError("boom")
    with pytest.raises(tw.errors.InternalError, match="graph pass 'crashes' failed: KeyError"):
        run_pipeline(step_graph([z], [x]), [("crashes", crashes)])


def test_session_runs_the_pipeline_and_keeps_the_step_graph(graph):
    x, y, z = _model()
    with tw.Session(config=tw.ConfigProto(disabled_passes=["fusion"])) as sess:
        got_y, got_z = sess.run([y, z], {x: [0.0, 1.0]})
        step = _step(sess)
    np.testing.assert_array_equal(got_y, [6.0, 7.0])
    np.testing.assert_array_equal(got_z, 2 * np.exp(np.float32([0.0, 1.0])))
    assert "cse: merged e2 (Exp) into e1" in step.changes
    assert [op.name for op in step.ops] == ["six", "y", "e1", "z"]


def test_disabled_passes_are_skipped(graph):
    x, y, z = _model()
    config = tw.ConfigProto(disabled_passes=["cse", "constant_fold", "fusion"])
    with tw.Session(config=config) as sess:
        got_y, got_z = sess.run([y, z], {x: [0.0, 1.0]})
        step = _step(sess)
    assert not any(line.startswith(("cse:", "constant_fold:")) for line in step.changes)
    assert "simplify: x1 (Mul) -> _arg_x_0:0 (x*1)" in step.changes
    assert {"e1", "e2", "six"} <= {op.name for op in step.ops}
    np.testing.assert_array_equal(got_y, [6.0, 7.0])


def test_all_passes_can_be_disabled(graph):
    x, y, z = _model()
    config = tw.ConfigProto(disabled_passes=list(tw.passes.PIPELINE))
    with tw.Session(config=config) as sess:
        np.testing.assert_array_equal(sess.run(y, {x: [0.0, 1.0]}), [6.0, 7.0])
        assert _step(sess).changes == []


def test_unknown_pass_names_are_refused_with_the_list(graph):
    x, y, z = _model()
    with tw.Session(config=tw.ConfigProto(disabled_passes=["constant_folding"])) as sess:
        with pytest.raises(ValueError, match="constant_folding.*prune, constant_fold, cse"):
            sess.run(y, {x: [0.0, 1.0]})


def test_dump_dir_gets_one_directory_per_signature(graph, tmp_path):
    x, y, z = _model()
    with tw.Session(config=tw.ConfigProto(dump_dir=str(tmp_path))) as sess:
        sess.run(y, {x: [0.0, 1.0]})
        sess.run(z, {x: [0.0, 1.0]})
        step = _step(sess)
    dirs = sorted(os.listdir(tmp_path))
    assert len(dirs) == 2 and dirs[0].startswith("y_0-") and dirs[1].startswith("z_0-")
    files = sorted(os.listdir(tmp_path / dirs[0]))
    assert files[:7] == ["00_input.txt", "01_prune.txt", "02_constant_fold.txt", "03_cse.txt",
                         "04_simplify.txt", "05_fuse_updates.txt", "06_dce.txt"]
    assert (tmp_path / dirs[0] / files[-1]).read_text() == format_graph(step.optimized) or \
        (tmp_path / dirs[1] / files[-1]).read_text() == format_graph(step.optimized)


def test_verify_passes_through_a_session(graph):
    x, y, z = _model()
    with tw.Session(config=tw.ConfigProto(verify_passes=True)) as sess:
        np.testing.assert_array_equal(sess.run(y, {x: [0.0, 1.0]}), [6.0, 7.0])


def test_kernel_errors_name_the_users_op_and_line(graph):
    x = tw.placeholder(tw.float32, [None], name="x")
    doubled = tw.identity(tw.multiply(x, 1.0), name="doubled")  # both simplified away
    bad = tw.reshape(doubled, [2, 2], name="bad_reshape")
    line = bad.op.location()[1]
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError) as e:
            sess.run(bad, {x: [1.0, 2.0, 3.0]})
    message = str(e.value)
    assert "bad_reshape" in message and f"test_pipeline.py:{line}" in message
    assert "x:0: float32[3]" in message  # the fed tensor by the user's name
    assert e.value.op is bad.op
