"""tw.py_func: a Python function as an op."""

import numpy as np
import pytest

import tensorweave as tw


def test_py_func_computes_and_converts_to_tout(graph):
    x = tw.placeholder(tw.float32, [None])
    y, n = tw.py_func(lambda a: (np.clip(a, 0, 1), (a > 1).sum()), [x], [tw.float32, tw.int64])
    assert y.dtype == tw.float32 and n.dtype == tw.int64 and y.shape.rank is None
    with tw.Session() as sess:
        got_y, got_n = sess.run([y, n], {x: [0.5, 2.0, 3.0]})
    np.testing.assert_array_equal(got_y, np.float32([0.5, 1.0, 1.0]))
    assert got_n.dtype == np.int64 and got_n == 2


def test_py_func_single_tout_gives_one_tensor_and_runs_every_step(graph):
    calls = []

    def record(a):
        calls.append(a.copy())
        return a * 2
    x = tw.constant([1.0, 2.0])
    y = tw.py_func(record, [x], tw.float32)
    with tw.Session() as sess:
        sess.run(y)
        np.testing.assert_array_equal(sess.run(y), [2.0, 4.0])
    assert len(calls) == 2  # stateful: never folded into a constant


def test_py_func_error_names_the_op_and_line(graph):
    x = tw.constant([1.0])
    y = tw.py_func(lambda a: 1 / 0, [x], tw.float32, name="boom")
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError) as info:
            sess.run(y)
    message = str(info.value)
    assert "'boom' (PyFunc" in message and "ZeroDivisionError" in message
    assert "test_py_func.py:" in message


def test_py_func_wrong_number_of_results_is_reported(graph):
    y = tw.py_func(lambda a: (a, a), [tw.constant([1.0])], tw.float32, name="two")
    with tw.Session() as sess, pytest.raises(tw.errors.InvalidArgumentError, match="returned 2"):
        sess.run(y)
