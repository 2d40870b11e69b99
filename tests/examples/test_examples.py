"""The examples run end to end and reach their accuracy goals; seeded training is deterministic."""

import json
import os
import sys

import numpy as np
import pytest

import tensorweave as tw

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
sys.path.insert(0, os.path.abspath(EXAMPLES))

import datasets  # noqa: E402
import mnist_deep  # noqa: E402
import mnist_multidevice  # noqa: E402
import mnist_softmax  # noqa: E402
import walkthrough  # noqa: E402

HAVE_MNIST = os.path.exists(os.path.join(datasets.DEFAULT_MNIST_DIR, "t10k-images-idx3-ubyte.gz"))


def test_walkthrough_runs(capsys):
    walkthrough.main()
    out = capsys.readouterr().out
    assert "row sums: [ 8.5 -1. ]" in out and "as expected" in out


@pytest.mark.skipif(not HAVE_MNIST, reason="MNIST files are not in ../shared/data/mnist")
def test_mnist_softmax_reaches_90_percent_on_mnist():
    assert mnist_softmax.main([]) >= 0.90


def test_mnist_softmax_reaches_93_percent_on_digits(tmp_path):
    assert mnist_softmax.main(["--data-dir", str(tmp_path)]) >= 0.93


def test_mnist_softmax_on_two_devices_matches_one_device(tmp_path, capsys):
    one = mnist_softmax.main(["--data-dir", str(tmp_path), "--steps", "200"])
    two = mnist_softmax.main(["--data-dir", str(tmp_path), "--steps", "200", "--devices", "2"])
    assert one == two >= 0.9
    logged = capsys.readouterr().out
    assert logged.count("step   200/200  loss") == 2


def test_mnist_deep_on_two_devices_matches_one_device(tmp_path):
    args = ["--data-dir", str(tmp_path), "--steps", "20", "--batch-size", "20"]
    assert mnist_deep.main(args) == mnist_deep.main(args + ["--devices", "2"])


def test_mnist_multidevice_writes_its_plan_and_trace(tmp_path, capsys):
    out = tmp_path / "out"
    acc = mnist_multidevice.main(["--data-dir", str(tmp_path), "--out", str(out),
                                  "--steps", "300"])
    assert acc >= 0.9
    printed = capsys.readouterr().out
    assert "_Send/_Recv pairs" in printed and "test accuracy" in printed
    plan = json.loads((out / "plan.json").read_text())
    assert plan["multi_device"] and plan["partitions"]["transfers"]
    assert (out / "plan.dot").read_text().startswith("digraph")
    trace = json.loads((out / "trace.json").read_text())
    names = {e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "process_name"}
    assert {"CPU:0", "CPU:1"} <= names


def _train_small_model(seed_steps=30):
    """An MLP with random init and dropout, trained with Adam; returns its final weights."""
    graph = tw.Graph()
    with graph.as_default():
        tw.set_random_seed(1234)
        x = tw.placeholder(tw.float32, [None, 64])
        y = tw.placeholder(tw.float32, [None, 10])
        w1 = tw.Variable(tw.truncated_normal([64, 32], stddev=0.1))
        b1 = tw.Variable(tw.zeros([32]))
        w2 = tw.Variable(tw.random_uniform([32, 10], -0.1, 0.1))
        hidden = tw.nn.dropout(tw.nn.relu(tw.matmul(x, w1) + b1), keep_prob=0.8)
        logits = tw.matmul(hidden, w2)
        loss = tw.reduce_mean(tw.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=logits))
        train = tw.train.AdamOptimizer(1e-2).minimize(loss)
        data = datasets.load("/nonexistent")
        batches = data.batches(32, seed=5)
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            for _ in range(seed_steps):
                xs, ys = next(batches)
                sess.run(train, {x: xs, y: ys})
            return sess.run([w1, b1, w2])


def test_seeded_training_is_bitwise_deterministic():
    first = _train_small_model()
    second = _train_small_model()
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()
    assert not np.allclose(first[0], 0)
