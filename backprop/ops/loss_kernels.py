"""Loss ops. Each loss's values and gradient are written once, as a kernel
``kernel(labels, predictions, **params) -> (values, backward)``; two ops are built from it:

- the per-example op (``mean_squared_error(y, p)``): elementwise losses averaged over the last
  axis, one value per example, as Keras' loss functions return;
- the mean op (``mean_squared_error_mean(y, p, weights)``): sum(weights * values) / number of
  values, Keras' "sum over batch size" reduction, as one tape node. With all-one weights it
  computes exactly what it computes without weights.

Every kernel is numerically stable: logits of any finite size, probabilities of exactly 0 or 1.
"""
from backprop.ops.nn import _log1p_exp_neg_abs, _log_softmax, _sigmoid
from backprop.ops.op import differentiable
from backprop.devices import array_module, asarray
from backprop.xp import np


def _clip(values, low, high):
    """The array's own clip: np.clip's Python layers cost more than a small loss's work. NaN is kept."""
    return values.clip(low, high)


def _per_row(g):
    """An incoming gradient (scalar or one per example) shaped to multiply (examples, classes) arrays."""
    return np.expand_dims(g, -1) if np.ndim(g) else g


# --- elementwise kernels: values shaped like the predictions ---------------------------------
def mean_squared_error(labels, predictions):
    diff = predictions - labels
    return diff * diff, lambda g, needs: (None, diff * (2 * g))


def mean_absolute_error(labels, predictions):
    diff = predictions - labels
    return np.abs(diff), lambda g, needs: (None, np.sign(diff) * g)  # abs'(0) = 0


def huber(labels, predictions, delta=1.0):
    """0.5 e^2 where |e| <= delta, else delta (|e| - delta / 2)."""
    diff = predictions - labels
    error = np.abs(diff)
    quadratic = np.minimum(error, delta)
    values = 0.5 * quadratic * quadratic + delta * (error - quadratic)
    return values, lambda g, needs: (None, np.where(error <= delta, diff, delta * np.sign(diff)) * g)


def binary_crossentropy(labels, predictions, from_logits=False, epsilon=1e-7):
    """-[y log p + (1 - y) log(1 - p)]: from logits as max(x, 0) - x y + log(1 + exp(-|x|)); from
    probabilities clipped to [epsilon, 1 - epsilon] (Keras' rule; clipped values get no gradient)."""
    if from_logits:
        return sigmoid_cross_entropy_with_logits.forward(labels, predictions)
    p = _clip(predictions, epsilon, 1 - epsilon)
    q = 1 - p
    values = (labels - 1) * np.log(q) - labels * np.log(p)  # -[y log p + (1 - y) log q], bit for bit

    def backward(g, needs):
        grad = p - labels  # d/dp is (1 - y)/(1 - p) - y/p = (p - y) / (p (1 - p))
        grad /= p * q
        grad *= predictions == p
        return None, grad * g

    return values, backward


def hinge(labels, predictions):
    """max(1 - y p, 0) with labels in {-1, 1} (0/1 labels are mapped to -1/1 by the Hinge loss)."""
    margin = 1 - labels * predictions
    return np.maximum(margin, 0), lambda g, needs: (None, -labels * (margin > 0) * g)


@differentiable
def sigmoid_cross_entropy_with_logits(labels, logits):
    """Elementwise -[z log s(x) + (1 - z) log(1 - s(x))] = max(x, 0) - x z + log(1 + exp(-|x|))."""
    values = np.maximum(logits, 0) - logits * labels + _log1p_exp_neg_abs(logits)
    return values, lambda g, needs: ((-g * logits) if needs[0] else None, (_sigmoid(logits) - labels) * g)


# --- per-example kernels: one value per example (classes on the last axis) -----------------------
def categorical_crossentropy(labels, predictions, from_logits=False, epsilon=1e-7):
    """-sum(labels * log p) with probability labels: p = softmax(logits), or the predictions normalised
    to sum to 1 and clipped to [epsilon, 1 - epsilon]."""
    if from_logits:
        return softmax_cross_entropy_with_logits.forward(labels, predictions)
    total = np.sum(predictions, axis=-1, keepdims=True)
    q = predictions / total
    clipped = _clip(q, epsilon, 1 - epsilon)
    values = -np.sum(labels * np.log(clipped), axis=-1)

    def backward(g, needs):
        c = labels / clipped * (q == clipped)  # -d values / d q
        return None, (np.sum(c * q, axis=-1, keepdims=True) - c) / total * _per_row(g)

    return values, backward


@differentiable(arrays=2)
def softmax_cross_entropy_with_logits(labels, logits, axis=-1):
    """Per-example -sum(labels * log_softmax(logits)); labels are probabilities (e.g. one-hot)."""
    log_p = _log_softmax(logits, axis)
    with np.errstate(invalid="ignore"):  # 0 * -inf for impossible classes counts as 0
        values = -np.sum(np.where(labels != 0, labels * log_p, 0), axis=axis)

    def backward(g, needs):
        g = np.expand_dims(g, axis) if np.ndim(g) else g
        d_logits = (np.exp(log_p) * np.sum(labels, axis=axis, keepdims=True) - labels) * g if needs[1] else None
        return (-g * log_p if needs[0] else None), d_logits

    return values, backward


def sparse_categorical_crossentropy(labels, predictions, from_logits=False, epsilon=1e-7):
    """-log p[label] for integer class indices: p = softmax(logits), or the normalised, clipped predictions."""
    if from_logits:
        return sparse_softmax_cross_entropy_with_logits.forward(labels, predictions)
    index = _class_index(labels, predictions)
    total = np.sum(predictions, axis=-1)
    picked = predictions[index] / total
    clipped = _clip(picked, epsilon, 1 - epsilon)

    def backward(g, needs):
        c = (picked == clipped) / clipped  # -d values / d q[label]
        grad = np.broadcast_to((c * picked / total)[..., None], predictions.shape).copy()
        grad[index] -= c / total
        return None, grad * _per_row(g)

    return -np.log(clipped), backward


def kl_divergence(labels, predictions, epsilon=1e-7):
    """sum(y log(y / p)) over the last axis, with y and p clipped to [epsilon, 1] (Keras' rule)."""
    y = _clip(labels, epsilon, 1)
    p = _clip(predictions, epsilon, 1)
    values = np.sum(y * np.log(y / p), axis=-1)
    return values, lambda g, needs: (None, -y / p * (predictions == p) * _per_row(g))


@differentiable(arrays=2)
def sparse_softmax_cross_entropy_with_logits(labels, logits):
    """Per-example -log_softmax(logits)[label] for integer class indices along the last axis."""
    index = _class_index(labels, logits)
    log_p = _log_softmax(logits, -1)

    def backward(g, needs):
        d_logits = np.exp(log_p)
        d_logits[index] -= 1
        d_logits *= _per_row(g)
        return None, d_logits

    return -log_p[index], backward


def _class_index(labels, scores):
    """An index picking each example's label column: scores[index] has the labels' shape."""
    labels = asarray(labels).astype(np.intp, copy=False)
    xp, ndim = array_module(labels), labels.ndim  # np.indices(shape, sparse=True), on the labels' device
    if ndim == 1:  # one label per example: the common case, without the general construction
        return xp.arange(labels.shape[0]), labels
    return tuple(xp.arange(size).reshape((size,) + (1,) * (ndim - 1 - axis))
                 for axis, size in enumerate(labels.shape)) + (labels,)


# --- the two ops of each kernel ------------------------------------------------------------------
ELEMENTWISE = (mean_squared_error, mean_absolute_error, huber, binary_crossentropy, hinge)
PER_EXAMPLE = (categorical_crossentropy, sparse_categorical_crossentropy, kl_divergence)


def _kernel(function):
    return getattr(function, "forward", function)  # an op built with @differentiable keeps its kernel


def per_example_op(kernel):
    """The op returning one loss value per example (elementwise values averaged over the last axis)."""
    kernel = _kernel(kernel)

    def forward(labels, predictions, **params):
        values, backward = kernel(labels, predictions, **params)
        if kernel not in ELEMENTWISE or values.ndim < 1:  # (n,) values: one example's, averaged (Keras, TF)
            return values, backward
        width = values.shape[-1]
        return np.mean(values, axis=-1), lambda g, needs: backward(np.expand_dims(g, -1) / width, needs)

    forward.__name__ = kernel.__name__
    return differentiable(arrays=2)(forward)


REDUCTIONS = ("sum_over_batch_size", "sum", "mean_with_sample_weight")


def mean_op(kernel):
    """The op sum(weights * values) / divisor, weights broadcast from the start (examples first). Keras'
    reductions choose the divisor: the number of values ("sum_over_batch_size"), the number of values per
    example ("sum": the sum of per-example losses) or the sum of the weights ("mean_with_sample_weight")."""
    kernel = _kernel(kernel)

    def forward(labels, predictions, weights=None, reduction="sum_over_batch_size", **params):
        values, backward = kernel(labels, predictions, **params)
        if weights is not None:
            weights = align_weights(weights, values.shape)
            total = np.add.reduce((values * weights).ravel())
        else:
            total = np.add.reduce(values.ravel())
        divisor = values.size if reduction == "sum_over_batch_size" else _divisor(reduction, kernel, values, weights)

        def mean_backward(g, needs):
            scale = g / divisor
            return None, backward(scale if weights is None else scale * weights, (False, True))[1], None

        return total / divisor, mean_backward

    forward.__name__ = f"{kernel.__name__}_mean"
    return differentiable(arrays=3)(forward)


def _divisor(reduction, kernel, values, weights):
    if reduction == "mean_with_sample_weight" and weights is None:  # ("sum_over_batch_size" never gets here)
        return values.size
    if reduction == "sum":
        return values.shape[-1] if kernel in ELEMENTWISE else 1  # a 1-D y_pred is one example (Keras)
    if reduction == "mean_with_sample_weight":
        total = np.sum(np.broadcast_to(weights, values.shape))
        return np.where(total == 0, 1, total)  # all weights zero: the loss is 0, not NaN; never a read of the device
    raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))} or None, got {reduction!r}")


def align_weights(weights, shape):
    """Sample weights (a scalar, one per example, or one per value) shaped to broadcast over ``shape``."""
    while weights.ndim > len(shape) and weights.shape[-1] == 1:
        weights = weights[..., 0]
    if weights.ndim <= len(shape):
        aligned = weights.reshape(weights.shape + (1,) * (len(shape) - weights.ndim))
        if all(a in (1, s) for a, s in zip(aligned.shape, shape)):
            return aligned
    raise ValueError(f"sample_weight of shape {weights.shape} does not fit loss values of shape {tuple(shape)}: "
                     "give a scalar, one weight per example, or one per value")


KERNELS = ELEMENTWISE + PER_EXAMPLE
PER_EXAMPLE_OPS = {kernel.__name__: per_example_op(kernel) for kernel in KERNELS}
MEAN_OPS = {kernel.__name__: mean_op(kernel) for kernel in KERNELS}
