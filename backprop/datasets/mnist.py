"""``bp.datasets.mnist.load_data()``: Keras' call and shapes, on the 5,000-image sample bundled with backprop."""
import numpy

from backprop.datasets.bundled import mnist_sample


def load_data():
    """((x_train, y_train), (x_test, y_test)): uint8 images of shape (n, 28, 28) and uint8 labels, as Keras
    returns them; 4,000 training and 1,000 test images (a fixed, stratified split of the bundled sample,
    not the full 60,000 / 10,000 set, which needs a download)."""
    (x_train, y_train), (x_test, y_test) = mnist_sample(flatten=False)
    return ((x_train.astype(numpy.uint8), y_train.astype(numpy.uint8)),
            (x_test.astype(numpy.uint8), y_test.astype(numpy.uint8)))
