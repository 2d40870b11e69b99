"""Deep MNIST for experts: a two-layer convolutional network trained with Adam.

    python examples/mnist_deep.py [--data-dir DIR] [--steps 2000] [--batch-size 50] [--devices 2]

conv 5x5x32 -> max pool -> conv 5x5x64 -> max pool -> fc 1024 -> dropout -> fc 10, Adam 1e-4:
the TF1 program with only the import changed. Trains on the first 8,000 MNIST test images and
reports accuracy on the last 2,000 (or scikit-learn's 8x8 digits when MNIST is absent).
With ``--devices N`` the layers are pinned round-robin to N virtual CPU devices; with
``--target local:N``, to N Ray worker processes.
"""

import argparse
import contextlib

import datasets
from progress import Progress

import tensorweave as tf


def weight_variable(shape):
    return tf.Variable(tf.truncated_normal(shape, stddev=0.1))


def bias_variable(shape):
    return tf.Variable(tf.constant(0.1, shape=shape))


def conv2d(x, W):
    return tf.nn.conv2d(x, W, strides=[1, 1, 1, 1], padding="SAME")


def max_pool_2x2(x):
    return tf.nn.max_pool(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")


def deepnn(x, side, devices=1, workers=0):
    def layer(name, index):
        """A name scope, pinned to worker task ``index % workers`` of a remote target, else to
        virtual CPU ``index % devices`` when there are several."""
        stack = contextlib.ExitStack()
        stack.enter_context(tf.name_scope(name))
        if workers:
            stack.enter_context(tf.device(f"/job:worker/task:{index % workers}"))
        elif devices > 1:
            stack.enter_context(tf.device(f"/cpu:{index % devices}"))
        return stack

    with layer("reshape", 0):
        x_image = tf.reshape(x, [-1, side, side, 1])
    with layer("conv1", 0):
        h_conv1 = tf.nn.relu(conv2d(x_image, weight_variable([5, 5, 1, 32])) +
                             bias_variable([32]))
    with layer("pool1", 0):
        h_pool1 = max_pool_2x2(h_conv1)
    with layer("conv2", 1):
        h_conv2 = tf.nn.relu(conv2d(h_pool1, weight_variable([5, 5, 32, 64])) +
                             bias_variable([64]))
    with layer("pool2", 1):
        h_pool2 = max_pool_2x2(h_conv2)
    pooled = -(-side // 4)  # two SAME 2x2 pools
    with layer("fc1", 2):
        flat = tf.reshape(h_pool2, [-1, pooled * pooled * 64])
        h_fc1 = tf.nn.relu(tf.matmul(flat, weight_variable([pooled * pooled * 64, 1024])) +
                           bias_variable([1024]))
    with layer("dropout", 2):
        keep_prob = tf.placeholder(tf.float32, name="keep_prob")
        h_fc1_drop = tf.nn.dropout(h_fc1, keep_prob)
    with layer("fc2", 3):
        y_conv = tf.matmul(h_fc1_drop, weight_variable([1024, 10])) + bias_variable([10])
    return y_conv, keep_prob


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST t10k IDX files")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--devices", type=int, default=1,
                        help="virtual CPU devices to spread the layers over (round-robin)")
    parser.add_argument("--target", default="",
                        help="'local:<n>' runs the layers on n Ray worker tasks (round-robin)")
    args = parser.parse_args(argv)
    workers = int(args.target[6:]) if args.target.startswith("local:") else 0

    data = datasets.load(args.data_dir)
    print(f"data: {data.name}, {len(data.train.labels)} training and "
          f"{len(data.test.labels)} test images of {data.side}x{data.side}")

    tf.reset_default_graph()
    tf.set_random_seed(0)
    x = tf.placeholder(tf.float32, [None, data.side * data.side], name="x")
    y_ = tf.placeholder(tf.float32, [None, 10], name="labels")
    y_conv, keep_prob = deepnn(x, data.side, args.devices, workers)
    cross_entropy = tf.reduce_mean(
        tf.nn.softmax_cross_entropy_with_logits_v2(labels=y_, logits=y_conv))
    train_step = tf.train.AdamOptimizer(args.learning_rate).minimize(cross_entropy)
    correct = tf.equal(tf.argmax(y_conv, 1), tf.argmax(y_, 1))
    accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))

    config = tf.ConfigProto(device_count={} if workers else {"CPU": args.devices})
    with tf.Session(args.target, config=config) as sess:
        sess.run(tf.global_variables_initializer())
        progress = Progress(args.steps, args.batch_size)
        batches = data.batches(args.batch_size)
        for step in range(1, args.steps + 1):
            xs, ys = next(batches)
            _, loss = sess.run([train_step, cross_entropy],
                               feed_dict={x: xs, y_: ys, keep_prob: 0.5})
            progress.update(step, float(loss))
        seconds = progress.close()
        acc = evaluate(sess, accuracy, x, y_, keep_prob, data)
    print(f"test accuracy: {acc:.4f}  (wall time {seconds:.1f} s for {args.steps} steps)")
    return acc


def evaluate(sess, accuracy, x, y_, keep_prob, data, batch=500):
    total = 0.0
    n = len(data.test.labels)
    one_hot = data.test.one_hot
    for start in range(0, n, batch):
        xs, ys = data.test.images[start:start + batch], one_hot[start:start + batch]
        total += float(sess.run(accuracy, {x: xs, y_: ys, keep_prob: 1.0})) * len(xs)
    return total / n


if __name__ == "__main__":
    main()
