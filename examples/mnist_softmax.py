"""MNIST for beginners: softmax regression trained with gradient descent.

    python examples/mnist_softmax.py [--data-dir DIR] [--steps 1000] [--devices 2 | --target local:2]

The TF1 program, with only the import changed. Trains on the first 8,000 MNIST test images,
reports accuracy on the last 2,000 (or uses scikit-learn's 8x8 digits when MNIST is absent).
With ``--devices 2`` the session has two virtual CPU devices: the matmul runs on the first,
the bias and the loss on the second, and the step is cut between them; with
``--target local:2`` the same two layers run on two Ray worker processes.
"""

import argparse
import contextlib

import datasets
from progress import Progress

import tensorweave as tf


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST t10k IDX files")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=0.5)
    parser.add_argument("--devices", type=int, default=1,
                        help="virtual CPU devices to spread the layers over")
    parser.add_argument("--target", default="",
                        help="'local:<n>' runs the layers on n Ray worker tasks")
    args = parser.parse_args(argv)

    data = datasets.load(args.data_dir)
    pixels = data.side * data.side
    print(f"data: {data.name}, {len(data.train.labels)} training and "
          f"{len(data.test.labels)} test images of {data.side}x{data.side}")

    tf.reset_default_graph()
    tf.set_random_seed(0)
    x = tf.placeholder(tf.float32, [None, pixels], name="x")
    y_ = tf.placeholder(tf.float32, [None, 10], name="labels")
    with on_device(0, args):
        W = tf.Variable(tf.zeros([pixels, 10]), name="W")
        scores = tf.matmul(x, W)
    with on_device(1, args):
        b = tf.Variable(tf.zeros([10]), name="b")
        logits = scores + b
        cross_entropy = tf.reduce_mean(
            tf.nn.softmax_cross_entropy_with_logits_v2(labels=y_, logits=logits))
    train_step = tf.train.GradientDescentOptimizer(args.learning_rate).minimize(cross_entropy)
    correct = tf.equal(tf.argmax(logits, 1), tf.argmax(y_, 1))
    accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))

    config = tf.ConfigProto(device_count={} if args.target else {"CPU": args.devices})
    with tf.Session(args.target, config=config) as sess:
        sess.run(tf.global_variables_initializer())
        progress = Progress(args.steps, args.batch_size)
        batches = data.batches(args.batch_size)
        for step in range(1, args.steps + 1):
            xs, ys = next(batches)
            _, loss = sess.run([train_step, cross_entropy], feed_dict={x: xs, y_: ys})
            progress.update(step, float(loss))
        seconds = progress.close()
        acc = sess.run(accuracy, feed_dict={x: data.test.images, y_: data.test.one_hot})
    print(f"test accuracy: {acc:.4f}  ({seconds:.1f} s of training)")
    return float(acc)


def on_device(layer: int, args):
    """Pin a layer to worker task ``layer % n`` of a ``local:<n>`` target, else to virtual
    CPU ``layer % devices`` (no pin on a single device)."""
    if args.target.startswith("local:"):
        return tf.device(f"/job:worker/task:{layer % int(args.target[6:])}")
    if args.devices > 1:
        return tf.device(f"/cpu:{layer % args.devices}")
    return contextlib.nullcontext()


if __name__ == "__main__":
    main()
