"""Real data shipped with the package: UCI digits (8x8) and a 5,000-image MNIST sample (see data/README.md)."""
import gzip
from pathlib import Path

import numpy

from backprop.datasets.preprocessing import train_test_split

DATA = Path(__file__).parent / "data"


def digits(split=True, test_size=0.2, seed=0):
    """1,797 8x8 images flattened to 64 float32 pixels (0..16), labels 0-9.

    ``split=True`` returns ``(x_train, y_train), (x_test, y_test)`` with a fixed, seeded
    split (1,437 / 360 by default); ``split=False`` returns ``(x, y)``.
    """
    with gzip.open(DATA / "digits.csv.gz", "rt") as handle:
        table = numpy.loadtxt(handle, delimiter=",", dtype=numpy.float32)
    x, y = table[:, :-1], table[:, -1].astype(numpy.int64)
    return _maybe_split(x, y, split, test_size, seed)


def mnist_sample(split=True, test_size=0.2, seed=0, flatten=True):
    """5,000 MNIST images as float32 pixels 0..255 (flattened to 784 unless ``flatten=False``), labels 0-9."""
    with numpy.load(DATA / "mnist_5k.npz", allow_pickle=False) as archive:
        images, labels = archive["images"], archive["labels"].astype(numpy.int64)
    x = images.reshape(len(images), -1) if flatten else images
    return _maybe_split(x.astype(numpy.float32), labels, split, test_size, seed)


def _maybe_split(x, y, split, test_size, seed):
    if not split:
        return x, y
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, seed=seed, stratify=True)
    return (x_train, y_train), (x_test, y_test)
