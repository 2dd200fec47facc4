"""Metrics: stateful objects (``update_state``, ``result``, ``reset_state``) computed on arrays, never taped.

``update_state`` keeps its running totals as float64 arrays and never converts them to Python
numbers, so a training loop can update metrics every batch without waiting for the device;
``result()`` converts once, when the value is shown or logged.
"""
import numbers

import numpy

from backprop import devices, tracing
from backprop.devices import asarray
from backprop.naming import snake_case
from backprop.tensor import Tensor, to_host


def _array(value, like=None):
    """The array of ``value`` (a device's array stays there); with ``like``, on ``like``'s device (labels
    arrive from the host while predictions live on the model's device)."""
    array = value.data if isinstance(value, Tensor) else asarray(value)
    if like is not None and type(like) is not numpy.ndarray:
        return devices.of(like).to_device(array)
    return array


def _weights(sample_weight, values):
    """Per-example float64 weights shaped like ``values`` on their device, a number for all of them, or None."""
    if sample_weight is None:
        return None
    if type(sample_weight) in (int, float) or isinstance(sample_weight, numbers.Real):  # (the first test: no ABC)
        return float(sample_weight)
    weights = _array(sample_weight).astype(numpy.float64).reshape(-1)
    return weights if type(values) is numpy.ndarray else devices.of(values).to_device(weights)


def _weighted_sum(values, weights):
    values = values.astype(numpy.float64, copy=False)
    return values.sum() if weights is None else (values * weights).sum()


def _count(values, weights):
    if weights is None:
        return values.size
    return weights * values.size if isinstance(weights, float) else weights.sum()


class Metric:
    def __init_subclass__(cls, **kwargs):
        """Every update_state is @replayed: a compiled function (bp.function) calls it again on replay."""
        super().__init_subclass__(**kwargs)
        if "update_state" in cls.__dict__:
            cls.update_state = tracing.replayed(cls.__dict__["update_state"])

    def __init__(self, name=None):
        self.name = name or snake_case(type(self).__name__)
        self.reset_state()

    def reset_state(self):
        self.total, self.count = 0.0, 0.0

    @tracing.replayed
    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = _array(y_pred)
        y_true = _array(y_true, like=y_pred)
        if numpy.ndim(sample_weight) >= 2 and hasattr(self, "elementwise"):  # a weight per value (Keras 3's rule)
            return self._update_per_value(self.elementwise(y_true, y_pred), sample_weight)
        values = self.values(y_true, y_pred)
        weights = _weights(sample_weight, values)
        self.total = self.total + _weighted_sum(values, weights)
        self.count = self.count + _count(values, weights)

    def values(self, y_true, y_pred):
        """One value per example."""
        raise NotImplementedError

    def _update_per_value(self, values, sample_weight):
        """Values (examples, k) weighted value by value: each example adds the mean of its weighted values and
        counts the mean of its weights, as Keras 3's reduce_to_samplewise_values does."""
        values = values.reshape(len(values), -1).astype(numpy.float64)
        weights = _array(sample_weight, like=values).astype(numpy.float64).reshape(len(values), -1)
        weights = devices.array_module(values).broadcast_to(weights, values.shape)
        self.total = self.total + (values * weights).mean(axis=1).sum()
        self.count = self.count + weights.mean(axis=1).sum()

    def result(self):
        return float(self.total / self.count) if self.count else 0.0

    def get_state(self):
        """The running state (for resuming a run exactly), on the host."""
        return {k: to_host(v) if hasattr(v, "dtype") else v for k, v in vars(self).items()
                if k not in ("name", "threshold", "k")}

    def set_state(self, state):
        for key, value in state.items():  # totals as Python numbers: they add to any device's arrays
            setattr(self, key, float(value) if numpy.ndim(value) == 0 else value)

    @staticmethod
    def merge_states(state, workers):
        """This rank's state (get_state) joined with the other ranks' (a collective every rank calls): counts and
        totals add up, number by number. A metric whose state does not add up overrides this (AUC)."""
        keys = sorted(state)
        try:
            parts = [numpy.asarray(state[k], dtype=numpy.float64) for k in keys]
        except (TypeError, ValueError):
            raise TypeError(f"a metric's state {keys} is not numbers that add up across MPI ranks: give the "
                            "metric a merge_states(state, workers) of its own (see AUC)") from None
        summed = workers.sum_(numpy.concatenate([p.ravel() for p in parts]) if parts else numpy.zeros(0))
        ends = numpy.cumsum([p.size for p in parts])
        return {k: (float(v[0]) if p.ndim == 0 else v.reshape(p.shape))
                for k, p, v in zip(keys, parts, numpy.split(summed, ends[:-1]))}


class Mean(Metric):
    """The running (weighted) mean of the values given to update_state(values)."""

    def update_state(self, values, sample_weight=None):
        if type(values) is numpy.ndarray and values.size == 1 and type(sample_weight) in (int, float):
            # fit's call at every batch (a host loss, the batch's examples): the same float64 operations, in Python
            self.total = self.total + float(values.item()) * float(sample_weight)
            self.count = self.count + float(sample_weight)
            return
        values = _array(values).reshape(-1)
        weights = _weights(sample_weight, values)
        self.total = self.total + _weighted_sum(values, weights)
        self.count = self.count + _count(values, weights)


def _column(y_true, y_pred):
    y_true = y_true.reshape(len(y_true), -1) if y_true.ndim else y_true.reshape(1, 1)
    return y_true, y_pred.reshape(len(y_pred), -1)


class BinaryAccuracy(Metric):
    """Fraction of outputs on the right side of ``threshold`` (0.5 for probabilities, 0 for logits)."""

    def __init__(self, name="binary_accuracy", threshold=0.5):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 <= threshold < 1:
            raise ValueError(f"Invalid value for argument `threshold` of BinaryAccuracy: {threshold!r}; expected a "
                             "number in [0, 1) (0 for logits, Keras' own range is (0, 1))")
        self.threshold = threshold
        super().__init__(name)

    def elementwise(self, y_true, y_pred):
        y_true, y_pred = _column(y_true, y_pred)
        return (y_pred > self.threshold) == (y_true > 0.5)

    def values(self, y_true, y_pred):
        return numpy.mean(self.elementwise(y_true, y_pred), axis=1)


class CategoricalAccuracy(Metric):
    def __init__(self, name="categorical_accuracy"):
        super().__init__(name)

    def values(self, y_true, y_pred):
        return (numpy.argmax(y_pred, -1) == numpy.argmax(y_true, -1)).astype(float)


class SparseCategoricalAccuracy(Metric):
    def __init__(self, name="sparse_categorical_accuracy"):
        super().__init__(name)

    def values(self, y_true, y_pred):
        """Per example: whether the highest score is the label's class; labels of shape (n, 1) or any shape
        with one label per prediction row ((2, 1) labels for (1, 2, k) scores: Keras' reshape)."""
        matches = numpy.argmax(y_pred, -1)
        hits = (matches == y_true.reshape(matches.shape)).astype(float)
        return hits.reshape(len(hits), -1).mean(axis=1) if hits.ndim > 1 else hits


class MeanSquaredError(Metric):
    def __init__(self, name="mean_squared_error"):
        super().__init__(name)

    def values(self, y_true, y_pred):
        y_true, y_pred = _column(y_true, y_pred)
        return numpy.mean((y_pred - y_true) ** 2, axis=1)


class MeanAbsoluteError(Metric):
    def __init__(self, name="mean_absolute_error"):
        super().__init__(name)

    def values(self, y_true, y_pred):
        y_true, y_pred = _column(y_true, y_pred)
        return numpy.mean(numpy.abs(y_pred - y_true), axis=1)


class Hinge(Metric):
    """mean(max(1 - y * p, 0)) per example, with 0/1 labels read as -1/1 (Keras' rule)."""

    def __init__(self, name="hinge"):
        super().__init__(name)

    def values(self, y_true, y_pred):
        y_true, y_pred = _column(y_true, y_pred)
        binary = ((y_true == 0) | (y_true == 1)).all()  # kept on the device: no host read per batch
        y_true = numpy.where(binary, 2 * y_true - 1, y_true)
        return numpy.mean(numpy.maximum(1 - y_true * y_pred, 0), axis=1)


class _Confusion(Metric):
    """Counts of true/false positives for a binary problem, thresholded like BinaryAccuracy."""

    def __init__(self, name=None, threshold=0.5):
        self.threshold = threshold
        super().__init__(name)

    def reset_state(self):
        self.tp = self.fp = self.fn = 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        guess = _array(y_pred).reshape(-1) > self.threshold
        truth = _array(y_true, like=guess).reshape(-1) > 0.5
        weights = _weights(sample_weight, truth)
        self.tp = self.tp + _weighted_sum(truth & guess, weights)
        self.fp = self.fp + _weighted_sum(~truth & guess, weights)
        self.fn = self.fn + _weighted_sum(truth & ~guess, weights)


class Precision(_Confusion):
    def result(self):
        return float(self.tp / (self.tp + self.fp)) if self.tp + self.fp else 0.0


class Recall(_Confusion):
    def result(self):
        return float(self.tp / (self.tp + self.fn)) if self.tp + self.fn else 0.0


class AUC(Metric):
    """Exact area under the ROC curve over everything seen since the last reset: the (weighted) fraction of
    positive-negative pairs ranked correctly, ties counting half. Keras approximates it with 200
    thresholds; this is the value those approximations converge to."""

    def reset_state(self):
        self.scores, self.labels, self.weights = [], [], []

    def update_state(self, y_true, y_pred, sample_weight=None):
        scores = _array(y_pred).reshape(-1).astype(numpy.float64)
        self.labels.append(_array(y_true, like=scores).reshape(-1) > 0.5)
        self.scores.append(scores)
        weights = _weights(sample_weight, scores)
        self.weights.append(numpy.ones_like(scores) if weights is None else weights)  # (on scores' device)

    def get_state(self):
        # each part to the host first: a restored state is there while new batches are on the device
        joined = [numpy.concatenate([to_host(p) for p in parts]) if parts else numpy.zeros(0, dtype)
                  for parts, dtype in ((self.scores, float), (self.labels, bool), (self.weights, float))]
        return dict(zip(("scores", "labels", "weights"), joined))

    def set_state(self, state):
        self.scores, self.labels = [numpy.asarray(state["scores"])], [numpy.asarray(state["labels"], bool)]
        self.weights = [numpy.asarray(state.get("weights", numpy.ones(len(self.scores[0]))))]

    @staticmethod
    def merge_states(state, workers):
        """Every rank's scores, labels and weights, in rank order (the area needs them all, not their sums)."""
        counts = workers.gather_rows(numpy.array([len(state["scores"])]), [1] * workers.size, (), numpy.int64)
        counts = [int(c) for c in counts]
        return {key: workers.gather_rows(state[key], counts, (), dtype)
                for key, dtype in (("scores", numpy.float64), ("labels", numpy.bool_), ("weights", numpy.float64))}

    def result(self):
        state = self.get_state()
        scores, labels, weights = (numpy.asarray(state[k]) for k in ("scores", "labels", "weights"))
        positive, negative = numpy.where(labels, weights, 0.0), numpy.where(labels, 0.0, weights)
        if not positive.sum() or not negative.sum():
            return 0.0
        order = numpy.argsort(scores, kind="mergesort")
        _, first = numpy.unique(scores[order], return_index=True)
        positive_per_score = numpy.add.reduceat(positive[order], first)
        negative_per_score = numpy.add.reduceat(negative[order], first)
        negatives_below = numpy.cumsum(negative_per_score) - negative_per_score
        pairs = numpy.sum(positive_per_score * (negatives_below + 0.5 * negative_per_score))
        return float(pairs / (positive.sum() * negative.sum()))


class Accuracy(Metric):
    """Exact match: the fraction of predictions equal to their labels (Keras' ``Accuracy``)."""

    def __init__(self, name="accuracy"):
        super().__init__(name)

    def elementwise(self, y_true, y_pred):
        y_true, y_pred = _column(y_true, y_pred)
        return y_true == y_pred

    def values(self, y_true, y_pred):
        return numpy.mean(self.elementwise(y_true, y_pred), axis=1)


class TopKCategoricalAccuracy(Metric):
    """Whether the true class (one-hot labels) is among the ``k`` highest scores."""

    def __init__(self, k=5, name="top_k_categorical_accuracy"):
        self.k = k
        super().__init__(name)

    def values(self, y_true, y_pred):
        return _in_top_k(numpy.argmax(y_true, -1), y_pred, self.k)


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """Whether the true class (an index) is among the ``k`` highest scores."""

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy"):
        super().__init__(k, name)

    def values(self, y_true, y_pred):
        return _in_top_k(y_true.reshape(len(y_pred)).astype(numpy.intp), y_pred, self.k)


def _in_top_k(labels, scores, k):
    """1.0 where the label's score is beaten by fewer than k others (ties count for the label, as in Keras)."""
    own = numpy.take_along_axis(scores, labels[:, None], axis=-1)
    return (numpy.sum(scores > own, axis=-1) < k).astype(numpy.float64)


METRICS = {"mse": MeanSquaredError, "mean_squared_error": MeanSquaredError, "mae": MeanAbsoluteError,
           "mean_absolute_error": MeanAbsoluteError, "hinge": Hinge, "precision": Precision, "recall": Recall, "auc": AUC,
           "binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
           "sparse_categorical_accuracy": SparseCategoricalAccuracy,
           "top_k_categorical_accuracy": TopKCategoricalAccuracy,
           "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy}
CLASSES = {cls.__name__: cls for cls in (*METRICS.values(), Accuracy)}


def get(identifier, loss=None):
    """A Metric from a name; "accuracy" picks binary, categorical or sparse from the loss (Keras' rule). As in
    Keras, a metric asked for by a short name logs under that name ("mse", "acc"); a class logs under its
    own default ("mean_squared_error", "binary_accuracy")."""
    if isinstance(identifier, Metric):
        return identifier
    if identifier in ("accuracy", "acc"):
        metric = accuracy_for(loss)
        metric.name = identifier  # Keras logs "acc" / "val_acc" when asked for "acc"
        return metric
    cls = METRICS.get(identifier) or CLASSES.get(identifier) if isinstance(identifier, str) else None
    if cls is None:
        raise ValueError(f"unknown metric {identifier!r}; valid: accuracy, acc, {', '.join(METRICS)}, "
                         f"or a class name such as {', '.join(sorted(CLASSES)[:4])}")
    metric = cls() if identifier in CLASSES else cls(name=identifier)
    if isinstance(metric, _Confusion) and getattr(loss, "options", {}).get("from_logits"):
        metric.threshold = 0.0
    return metric


def accuracy_for(loss):
    name = getattr(loss, "name", "")
    from_logits = getattr(loss, "options", {}).get("from_logits", False)
    if name == "sparse_categorical_crossentropy":
        return SparseCategoricalAccuracy(name="accuracy")
    if name == "categorical_crossentropy":
        return CategoricalAccuracy(name="accuracy")
    return BinaryAccuracy(name="accuracy", threshold=0.0 if from_logits else 0.5)
