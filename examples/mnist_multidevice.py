"""MNIST on two devices: a two-layer network whose layers are pinned to two virtual CPUs.

    python examples/mnist_multidevice.py [--out out/mnist_multidevice] [--steps 1000]

The session splits this machine's CPU into two devices (``device_count={"CPU": 2}``); the hidden
layer is pinned to the first and the output layer with the loss to the second. The compiler
places every other op, cuts the step into one partition per device joined by ``_Send``/``_Recv``
pairs, and the partitions run concurrently. The example prints that plan, trains, prints the
test accuracy, and writes to the output folder:

* ``plan.txt``, ``plan.json``, ``plan.dot``: the step's placement and its transfers;
* ``trace.json``: a Chrome trace of one training step, one lane per device, with an arrow from
  each ``_Send`` to its ``_Recv`` (open it in chrome://tracing or https://ui.perfetto.dev).

Uses the MNIST test set (first 8,000 images to train, last 2,000 to test) when it is found,
else scikit-learn's 8x8 digits.
"""

import argparse
import os

import datasets
from progress import Progress

import tensorweave as tw


def build(pixels: int, hidden: int, learning_rate: float):
    tw.reset_default_graph()
    tw.set_random_seed(0)
    x = tw.placeholder(tw.float32, [None, pixels], name="x")
    labels = tw.placeholder(tw.float32, [None, 10], name="labels")  # one-hot
    with tw.device("/cpu:0"), tw.name_scope("hidden"):
        w1 = tw.Variable(tw.truncated_normal([pixels, hidden], stddev=0.05), name="weights")
        b1 = tw.Variable(tw.zeros([hidden]), name="biases")
        h = tw.nn.relu(tw.matmul(x, w1) + b1)
    with tw.device("/cpu:1"), tw.name_scope("output"):
        w2 = tw.Variable(tw.truncated_normal([hidden, 10], stddev=0.05), name="weights")
        b2 = tw.Variable(tw.zeros([10]), name="biases")
        logits = tw.matmul(h, w2) + b2
        loss = tw.reduce_mean(tw.nn.softmax_cross_entropy_with_logits_v2(
            labels=labels, logits=logits), name="loss")
        correct = tw.equal(tw.argmax(logits, 1), tw.argmax(labels, 1))
        accuracy = tw.reduce_mean(tw.cast(correct, tw.float32))
    train_op = tw.train.AdamOptimizer(learning_rate).minimize(loss)
    return x, labels, loss, accuracy, train_op


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST t10k IDX files")
    parser.add_argument("--out", default=os.path.join("out", "mnist_multidevice"),
                        help="folder for the plan and the trace")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args(argv)

    data = datasets.load(args.data_dir)
    print(f"data: {data.name}, {len(data.train.labels)} training and "
          f"{len(data.test.labels)} test images of {data.side}x{data.side}")
    x, labels, loss, accuracy, train_op = build(data.side * data.side, args.hidden,
                                                args.learning_rate)
    os.makedirs(args.out, exist_ok=True)
    config = tw.ConfigProto(device_count={"CPU": 2})
    with tw.Session(config=config) as sess:
        sess.run(tw.global_variables_initializer())
        batches = data.batches(args.batch_size)
        xs, ys = next(batches)
        feed = {x: xs, labels: ys}

        plan = sess.step_plan([train_op, loss], feed)
        print(plan.summary())
        plan.to_json(os.path.join(args.out, "plan.json"))
        plan.to_dot(os.path.join(args.out, "plan.dot"))
        with open(os.path.join(args.out, "plan.txt"), "w", encoding="utf-8") as f:
            f.write(plan.summary() + "\n")

        progress = Progress(args.steps, args.batch_size)
        for step in range(1, args.steps + 1):
            if step == 2:  # trace a warm step (the first one compiled it)
                metadata = tw.RunMetadata()
                _, value = sess.run([train_op, loss], feed, run_metadata=metadata,
                                    options=tw.RunOptions(trace_level=tw.RunOptions.FULL_TRACE))
                tw.trace.to_chrome_trace(metadata, os.path.join(args.out, "trace.json"))
            else:
                _, value = sess.run([train_op, loss], feed)
            progress.update(step, float(value))
            xs, ys = next(batches)
            feed = {x: xs, labels: ys}
        seconds = progress.close()
        acc = float(sess.run(accuracy, {x: data.test.images, labels: data.test.one_hot}))
    print(f"test accuracy: {acc:.4f}  ({seconds:.1f} s of training on 2 devices)")
    print(f"wrote plan.txt, plan.json, plan.dot and trace.json to {args.out}")
    return acc


if __name__ == "__main__":
    main()
