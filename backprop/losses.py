"""Losses: the mean over examples of a per-example loss (the lecture's empirical loss).

Each loss is a function ``f(y_true, y_pred) -> per-example tensor`` and a class whose
``__call__(y_true, y_pred, sample_weight=None)`` reduces it to the (weighted) mean.
Probabilities (``from_logits=False``) are clipped to [1e-7, 1 - 1e-7] before the log,
as Keras does, so p in {0, 1} stays finite.
"""
from backprop import ops
from backprop.naming import snake_case
from backprop.tensor import Tensor, as_array
from backprop.xp import np

EPSILON = 1e-7


def _labels(y_true, y_pred, what):
    """Labels as an array of y_pred's dtype and shape, with a clear error instead of silent broadcasting."""
    labels = y_true.data if isinstance(y_true, Tensor) else y_true
    if type(labels) is np.ndarray and labels.shape == y_pred.shape and labels.dtype == y_pred.dtype:
        return labels  # the common case, without conversions
    labels = as_array(labels)
    if labels.shape != y_pred.shape:
        if labels.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1 and labels.shape == y_pred.shape[:-1]:
            labels = labels[..., None]  # (batch,) labels for a (batch, 1) output: Keras' expand rule
        elif labels.ndim == y_pred.ndim + 1 and labels.shape[-1] == 1 and labels.shape[:-1] == y_pred.shape:
            labels = labels[..., 0]
        else:
            raise ValueError(f"{what}: labels of shape {labels.shape} do not match predictions of shape {y_pred.shape}")
    return labels.astype(y_pred.dtype, copy=False)


def _pred(y_pred):
    return y_pred if isinstance(y_pred, Tensor) else Tensor(y_pred)


def _per_example(elementwise):
    """Mean over the last axis: one value per example (Keras' reduction for elementwise losses)."""
    return ops.mean(elementwise, axis=-1) if elementwise.ndim > 1 else elementwise


def mean_squared_error(y_true, y_pred):
    y_pred = _pred(y_pred)
    return _per_example(ops.square(y_pred - _labels(y_true, y_pred, "mean_squared_error")))


def mean_absolute_error(y_true, y_pred):
    y_pred = _pred(y_pred)
    return _per_example(ops.abs(y_pred - _labels(y_true, y_pred, "mean_absolute_error")))


def huber(y_true, y_pred, delta=1.0):
    y_pred = _pred(y_pred)
    error = ops.abs(y_pred - _labels(y_true, y_pred, "huber"))
    quadratic = ops.minimum(error, delta)
    return _per_example(0.5 * quadratic * quadratic + delta * (error - quadratic))


def binary_crossentropy(y_true, y_pred, from_logits=False):
    y_pred = _pred(y_pred)
    labels = _labels(y_true, y_pred, "binary_crossentropy")
    if from_logits:
        return _per_example(ops.sigmoid_cross_entropy_with_logits(labels, y_pred))
    p = ops.clip(y_pred, EPSILON, 1 - EPSILON)
    return _per_example(-(labels * ops.log(p) + (1 - labels) * ops.log(1 - p)))


def one_hot_labels(y_true, y_pred, what="categorical_crossentropy"):
    """Probability (one-hot) labels of exactly y_pred's shape, or an error that says what arrived."""
    labels = y_true.data if isinstance(y_true, Tensor) else as_array(y_true)
    if labels.shape == y_pred.shape:
        return labels.astype(y_pred.dtype, copy=False)
    if labels.shape == y_pred.shape[:-1] or labels.shape == y_pred.shape[:-1] + (1,):
        raise ValueError(f"{what} expects one-hot labels of shape {y_pred.shape}, got class indices of shape "
                         f"{labels.shape}; use sparse_categorical_crossentropy for class indices")
    raise ValueError(f"{what}: one-hot labels of width {labels.shape[-1] if labels.ndim else 0} (shape {labels.shape}) "
                     f"do not match the {y_pred.shape[-1]} outputs (shape {y_pred.shape})")


def categorical_crossentropy(y_true, y_pred, from_logits=False):
    y_pred = _pred(y_pred)
    labels = one_hot_labels(y_true, y_pred)
    if from_logits:
        return ops.softmax_cross_entropy_with_logits(labels, y_pred)
    p = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
    return -ops.sum(labels * ops.log(ops.clip(p, EPSILON, 1 - EPSILON)), axis=-1)


def class_indices(y_true, n_classes, what="sparse_categorical_crossentropy"):
    """Validate integer class labels in [0, n_classes); (batch, 1) columns are flattened."""
    labels = y_true.data if isinstance(y_true, Tensor) else np.asarray(y_true)
    if labels.ndim >= 2 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.dtype.kind == "f":
        whole = labels == np.round(labels)
        if not whole.all():
            raise ValueError(f"{what}: label {labels[~whole].flat[0]} is not a class index (n_classes={n_classes})")
    elif labels.dtype.kind not in "iu":
        raise TypeError(f"{what}: labels must be integer class indices, got dtype {labels.dtype}")
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        raise ValueError(f"{what}: label {labels[bad].flat[0]} is outside [0, {n_classes}) (n_classes={n_classes})")
    return labels.astype(np.intp, copy=False)


def sparse_labels(y_true, y_pred, what="sparse_categorical_crossentropy"):
    """Integer class indices, one per example (a trailing axis of 1 is dropped), checked against y_pred."""
    raw = y_true.data if isinstance(y_true, Tensor) else np.asarray(y_true)
    if raw.shape == y_pred.shape and y_pred.shape[-1] > 1:
        raise ValueError(f"{what} expects class indices of shape {y_pred.shape[:-1]}, got one-hot labels of "
                         f"shape {raw.shape}; use categorical_crossentropy for one-hot labels")
    labels = class_indices(raw, y_pred.shape[-1], what)
    if labels.shape != y_pred.shape[:-1]:
        raise ValueError(f"{what}: labels of shape {raw.shape} do not match predictions of shape {y_pred.shape}")
    return labels


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    y_pred = _pred(y_pred)
    labels = sparse_labels(y_true, y_pred)
    if from_logits:
        return ops.sparse_softmax_cross_entropy_with_logits(labels, y_pred)
    p = ops.clip(y_pred / ops.sum(y_pred, axis=-1, keepdims=True), EPSILON, 1 - EPSILON)
    picked = ops.getitem(p, (np.arange(len(labels)), labels)) if labels.ndim == 1 else \
        ops.sum(p * np.eye(y_pred.shape[-1], dtype=y_pred.dtype)[labels], axis=-1)
    return -ops.log(picked)


def reduce_mean(per_example, sample_weight=None):
    """Mean over examples; with weights, sum(w * loss) / number of examples (Keras' rule)."""
    if per_example.size == 0:
        raise ValueError("loss: the batch is empty")
    if sample_weight is None:
        return ops.mean(per_example)
    weights = np.asarray(sample_weight, dtype=per_example.dtype).reshape(per_example.shape[:1] + (1,) * (per_example.ndim - 1))
    return ops.sum(per_example * weights) / per_example.size


class Loss:
    """Callable loss object: ``loss(y_true, y_pred, sample_weight=None)`` -> scalar tensor.

    ``fn`` gives the per-example loss; ``fused``, where a subclass has one, computes the
    unweighted mean as a single op with a single gradient (the common, fast case).
    """

    fn = None
    fused = None

    def __init__(self, name=None, **options):
        self.name = name or snake_case(type(self).__name__)
        self.options = options

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is None and type(self).fused is not None:
            return type(self).fused(y_true, _pred(y_pred), **self.options)
        return reduce_mean(type(self).fn(y_true, y_pred, **self.options), sample_weight)

    def get_config(self):
        return {"name": self.name, **self.options}


class MeanSquaredError(Loss):
    fn = staticmethod(mean_squared_error)
    fused = staticmethod(lambda y_true, y_pred: ops.mean_squared_error_mean(
        _labels(y_true, y_pred, "mean_squared_error"), y_pred))


class MeanAbsoluteError(Loss):
    fn = staticmethod(mean_absolute_error)


class Huber(Loss):
    fn = staticmethod(huber)

    def __init__(self, delta=1.0, name=None):
        super().__init__(name, delta=delta)


class BinaryCrossentropy(Loss):
    fn = staticmethod(binary_crossentropy)
    fused = staticmethod(lambda y_true, y_pred, from_logits=False: ops.binary_crossentropy_mean(
        _labels(y_true, y_pred, "binary_crossentropy"), y_pred, from_logits, EPSILON))

    def __init__(self, from_logits=False, name=None):
        super().__init__(name, from_logits=from_logits)


def _fused_categorical(y_true, y_pred, from_logits=False):
    if not from_logits:
        return reduce_mean(categorical_crossentropy(y_true, y_pred))
    return ops.softmax_cross_entropy_mean(one_hot_labels(y_true, y_pred), y_pred)


class CategoricalCrossentropy(Loss):
    fn = staticmethod(categorical_crossentropy)
    fused = staticmethod(_fused_categorical)

    def __init__(self, from_logits=False, name=None):
        super().__init__(name, from_logits=from_logits)


def _fused_sparse(y_true, y_pred, from_logits=False):
    if not from_logits or y_pred.ndim != 2:
        return reduce_mean(sparse_categorical_crossentropy(y_true, y_pred, from_logits))
    return ops.sparse_softmax_cross_entropy_mean(sparse_labels(y_true, y_pred), y_pred)


class SparseCategoricalCrossentropy(Loss):
    fn = staticmethod(sparse_categorical_crossentropy)
    fused = staticmethod(_fused_sparse)

    def __init__(self, from_logits=False, name=None):
        super().__init__(name, from_logits=from_logits)


mse, mae = mean_squared_error, mean_absolute_error

LOSSES = {
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError, "huber": Huber,
    "binary_crossentropy": BinaryCrossentropy, "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}


def get(identifier):
    """A Loss object from a name, a Loss, or a function ``f(y_true, y_pred) -> per-example loss``."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        if identifier not in LOSSES:
            raise ValueError(f"unknown loss {identifier!r}; valid: {', '.join(LOSSES)}")
        return LOSSES[identifier]()
    if callable(identifier):
        return _FunctionLoss(identifier)
    raise ValueError(f"a loss must be a name, a Loss or a function, got {identifier!r}")


class _FunctionLoss(Loss):
    def __init__(self, fn):
        super().__init__(getattr(fn, "__name__", "loss"))
        self.function = fn

    def __call__(self, y_true, y_pred, sample_weight=None):
        out = self.function(y_true, y_pred)
        return out if out.ndim == 0 and sample_weight is None else reduce_mean(out, sample_weight)
