"""Data for the examples: MNIST's test set from IDX gzip files, or scikit-learn's digits.

The examples train on the first 8,000 MNIST test images and report accuracy on the last 2,000.
Without the MNIST files they fall back to the 8x8 digits that ship with scikit-learn (1,797
images, shuffled once with a fixed seed: 1,437 to train, 360 to test), so they run on any fresh
machine.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct

import numpy as np

DEFAULT_MNIST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                 "shared", "data", "mnist")


@dataclasses.dataclass
class Split:
    images: np.ndarray   # float32 [n, side*side] in [0, 1]
    labels: np.ndarray   # int64 [n]

    @property
    def one_hot(self) -> np.ndarray:
        out = np.zeros((len(self.labels), 10), np.float32)
        out[np.arange(len(self.labels)), self.labels] = 1.0
        return out


@dataclasses.dataclass
class Dataset:
    name: str
    side: int            # images are side x side pixels
    train: Split
    test: Split

    def batches(self, batch_size: int, seed: int = 0):
        """Endless shuffled minibatches of the training split: (images, one-hot labels)."""
        rng = np.random.default_rng(seed)
        n = len(self.train.labels)
        one_hot = self.train.one_hot
        while True:
            order = rng.permutation(n)
            for start in range(0, n - batch_size + 1, batch_size):
                idx = order[start:start + batch_size]
                yield self.train.images[idx], one_hot[idx]


def load(data_dir: str | None = None, n_train: int = 8000) -> Dataset:
    """MNIST from ``data_dir`` (default: the shared data folder) if its files exist, else digits."""
    data_dir = data_dir or DEFAULT_MNIST_DIR
    images_path = os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")
    labels_path = os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz")
    if os.path.exists(images_path) and os.path.exists(labels_path):
        images = _read_idx(images_path).reshape(-1, 28 * 28).astype(np.float32) / 255.0
        labels = _read_idx(labels_path).astype(np.int64)
        return Dataset("mnist", 28, Split(images[:n_train], labels[:n_train]),
                       Split(images[n_train:], labels[n_train:]))
    return _digits()


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # The file is ordered by writer, so its tail is a different population from its head; a
    # fixed shuffle gives a held-out set drawn like the training set (and the same every run).
    order = np.random.default_rng(0).permutation(len(digits.target))
    images = (digits.data[order] / 16.0).astype(np.float32)
    labels = digits.target[order].astype(np.int64)
    n_train = int(len(labels) * 0.8)
    return Dataset("digits", 8, Split(images[:n_train], labels[:n_train]),
                   Split(images[n_train:], labels[n_train:]))
