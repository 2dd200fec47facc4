"""Turning user data into arrays and batches for fit/evaluate/predict, without copying the dataset."""
import math
import numbers

import numpy

from backprop import devices
from backprop.tensor import Tensor

_BAD = {"U": "string", "S": "bytes", "O": "object", "c": "complex", "M": "datetime", "m": "timedelta", "V": "void"}


def features(x, dtype, what="x", example_shape=None):
    """Inputs as an array of the model's float dtype. Ints and bools are cast (documented); strings,
    objects and complex numbers are refused. The user's array is never modified. ``example_shape``
    (the model's, when known) turns one example passed without its batch axis into a clear error."""
    array = x.data if isinstance(x, Tensor) else devices.asarray(x)  # a device's array stays there
    if array.dtype.kind in _BAD:
        raise TypeError(f"{what}: unsupported dtype {array.dtype} ({_BAD[array.dtype.kind]}); expected numbers")
    if array.ndim == 0:
        raise ValueError(f"{what}: expected an array of examples, got a scalar")
    if example_shape is not None and array.shape == tuple(example_shape) and len(example_shape) >= 1:
        raise ValueError(f"{what}: got one example of shape {array.shape} without its batch axis; the model takes "
                         f"batches of shape (n, {', '.join(map(str, example_shape))}): use x[None] for a batch of one")
    return array if array.dtype == dtype else array.astype(dtype)


def labels(y, what="y"):
    """Labels on the host: the losses check them there (a device's labels are read once, here)."""
    array = devices.to_host(y.data) if isinstance(y, Tensor) else devices.to_host(devices.asarray(y))
    if array.dtype.kind in _BAD:
        raise TypeError(f"{what}: unsupported dtype {array.dtype} ({_BAD[array.dtype.kind]}); expected numbers")
    return array


def prepare(model, x, y, sample_weight=None, what=""):
    """(x, y, sample_weight) as fit and evaluate take them: x in the model's dtype (one example without its
    batch axis refused), labels, float weights; lengths and weights checked."""
    prefix = f"{what} " if what else ""
    x = features(x, model.dtype, f"{prefix}x", model.example_shape)
    y = labels(y, f"{prefix}y")
    sample_weight = None if sample_weight is None else devices.asarray(sample_weight, dtype=model.dtype)
    check_lengths(x, y, sample_weight)
    check_sample_weight(sample_weight)
    return x, y, sample_weight


def check_lengths(x, y, sample_weight=None):
    if y is not None and len(x) != len(y):
        raise ValueError(f"x and y have different numbers of examples: {len(x)} vs {len(y)}")
    if sample_weight is not None and len(sample_weight) != len(x):
        raise ValueError(f"sample_weight has {len(sample_weight)} values for {len(x)} examples")
    if len(x) == 0:
        raise ValueError("no examples: x is empty")


def whole_number(name, value, minimum=0):
    """``value`` as an int, if it is a whole number >= ``minimum`` (not a bool, not inf or NaN), else a
    ValueError naming the argument and its value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or int(value) != value or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return int(value)


def check_batch_size(batch_size, n):
    if batch_size is None:
        return n
    return whole_number("batch_size (or None)", batch_size, 1)


def check_finite(name, array):
    """Refuse NaN or infinite values, naming how many and where the first is."""
    if array is None or array.dtype.kind not in "fc":
        return
    bad = ~numpy.isfinite(array)
    if bad.any():
        first = numpy.argwhere(bad)[0]
        where = f"row {first[0]}" + (f", column {first[1]}" if len(first) > 1 else "")
        raise ValueError(f"{name} holds {int(bad.sum()):,} NaN or infinite value(s), the first at {where}; they would "
                         "train the weights to NaN (fit(..., allow_nonfinite=True) trains anyway)")


def check_sample_weight(sample_weight):
    if sample_weight is not None and (not numpy.isfinite(sample_weight).all() or (sample_weight < 0).any()):
        raise ValueError("sample_weight must be finite and non-negative")


def check_steps(steps_per_epoch, batches):
    """The number of batches an epoch trains: all of them, or the first ``steps_per_epoch`` (Keras)."""
    if steps_per_epoch is None:
        return batches
    steps_per_epoch = whole_number("steps_per_epoch (or None)", steps_per_epoch, 1)
    if steps_per_epoch > batches:
        raise ValueError(f"steps_per_epoch={steps_per_epoch} but the data makes only {batches} batches an epoch; "
                         "use a smaller steps_per_epoch or batch_size")
    return steps_per_epoch


def class_weights(y, class_weight, sample_weight, dtype):
    """Per-example weights from a {class: weight} dict (class indices, or the argmax of one-hot rows),
    multiplied into ``sample_weight`` as Keras does."""
    y = devices.to_host(y)  # one read of a device's labels, not one per example
    classes = numpy.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(len(y))
    if classes.dtype.kind == "f" and not numpy.all(classes == numpy.round(classes)):
        raise ValueError("class_weight needs class labels (integers or one-hot rows), got fractional labels")
    missing = sorted(set(numpy.unique(classes).astype(int).tolist()) - set(class_weight))
    if missing:
        raise ValueError(f"class_weight has no weight for class(es) {missing}")
    bad = {c: w for c, w in class_weight.items() if not isinstance(w, (int, float, numpy.number)) or isinstance(w, bool)
           or not math.isfinite(w) or w < 0}
    if bad:
        raise ValueError(f"class_weight: weights must be finite numbers >= 0, got {bad}")
    weights = numpy.array([class_weight[int(c)] for c in classes], dtype=dtype)
    if sample_weight is not None and type(sample_weight) is not numpy.ndarray:
        weights = devices.of(sample_weight).to_device(weights)
    return weights if sample_weight is None else weights * sample_weight


def split_validation(arrays, fraction):
    """Keras' rule: the last ``fraction`` of the examples, taken before any shuffling."""
    if not 0 <= fraction < 1:
        raise ValueError(f"validation_split must be in [0, 1), got {fraction!r}")
    n = len(arrays[0])
    cut = n - int(math.floor(n * fraction)) if fraction else n
    if fraction and (cut == n or cut == 0):
        raise ValueError(f"validation_split={fraction} leaves no examples for training or validation (n={n})")
    train = [a[:cut] if a is not None else None for a in arrays]
    validation = [a[cut:] if a is not None else None for a in arrays]
    return train, validation


def batches(n, batch_size, order=None):
    """Index slices (views) when ``order`` is None, else index arrays from a permutation."""
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        yield slice(start, stop) if order is None else order[start:stop]


def take(array, index):
    return None if array is None else array[index]


RESIDENT_BYTES = 1 << 30  # inputs up to this size move to the model's device once, not a batch at a time


def resident(model, x):
    """``x`` on the model's device when that is not the CPU and it fits in RESIDENT_BYTES: fit then copies the
    inputs over once instead of every batch. Labels and weights stay on the host, where the losses check them."""
    device = model.device
    if device is devices.CPU or not hasattr(x, "nbytes") or x.nbytes > RESIDENT_BYTES:
        return x
    return device.to_device(x)


def to_model_device(model, *arrays):
    """The batch's arrays on the model's device (None stays None); on the CPU, the arrays themselves."""
    device = model.device
    if device is devices.CPU:
        return arrays
    return tuple(None if a is None else device.to_device(a) for a in arrays)
