"""Small helpers Keras users reach for."""
import numpy


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot rows for integer class labels: ``to_categorical([0, 2], 3)`` -> [[1, 0, 0], [0, 0, 1]]."""
    labels = numpy.asarray(y)
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.size and (labels.dtype.kind not in "iu" and not numpy.all(labels == numpy.round(labels))):
        raise ValueError("to_categorical: labels must be integer class indices")
    labels = labels.astype(numpy.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"to_categorical: label {labels.min()} is negative")
    classes = int(labels.max()) + 1 if num_classes is None and labels.size else int(num_classes or 0)
    if labels.size and labels.max() >= classes:
        raise ValueError(f"to_categorical: label {labels.max()} is outside [0, {classes}) (num_classes={classes})")
    return numpy.eye(classes, dtype=dtype)[labels]
