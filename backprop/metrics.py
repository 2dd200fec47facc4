"""Metrics: stateful objects (``update_state``, ``result``, ``reset_state``) computed on arrays, never taped."""
import numpy

from backprop.naming import snake_case
from backprop.tensor import Tensor


def _array(value):
    return value.data if isinstance(value, Tensor) else numpy.asarray(value)


class Metric:
    def __init__(self, name=None):
        self.name = name or snake_case(type(self).__name__)
        self.reset_state()

    def reset_state(self):
        self.total, self.count = 0.0, 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self.values(_array(y_true), _array(y_pred))
        weights = numpy.ones(len(values)) if sample_weight is None else numpy.asarray(sample_weight, float).reshape(-1)
        self.total += float(numpy.sum(values * weights))
        self.count += float(numpy.sum(weights))

    def values(self, y_true, y_pred):
        """One value per example."""
        raise NotImplementedError

    def result(self):
        return self.total / self.count if self.count else 0.0

    def get_state(self):
        """The running state (for resuming a run exactly)."""
        return {k: v for k, v in vars(self).items() if k not in ("name", "threshold")}

    def set_state(self, state):
        for key, value in state.items():
            setattr(self, key, value)


class Mean(Metric):
    """The running (weighted) mean of the values given to update_state(values)."""

    def update_state(self, values, sample_weight=None):
        values = numpy.asarray(_array(values), dtype=float).reshape(-1)
        weights = numpy.ones(len(values)) if sample_weight is None else numpy.asarray(sample_weight, float).reshape(-1)
        self.total += float(numpy.sum(values * weights))
        self.count += float(numpy.sum(weights))


def _column(y_true, y_pred):
    y_true = y_true.reshape(len(y_true), -1) if y_true.ndim else y_true.reshape(1, 1)
    return y_true, y_pred.reshape(len(y_pred), -1)


class BinaryAccuracy(Metric):
    """Fraction of outputs on the right side of ``threshold`` (0.5 for probabilities, 0 for logits)."""

    def __init__(self, name="accuracy", threshold=0.5):
        self.threshold = threshold
        super().__init__(name)

    def values(self, y_true, y_pred):
        y_true, y_pred = _column(y_true, y_pred)
        return numpy.mean((y_pred > self.threshold) == (y_true > 0.5), axis=1)


class CategoricalAccuracy(Metric):
    def __init__(self, name="accuracy"):
        super().__init__(name)

    def values(self, y_true, y_pred):
        return (numpy.argmax(y_pred, -1) == numpy.argmax(y_true, -1)).astype(float)


class SparseCategoricalAccuracy(Metric):
    def __init__(self, name="accuracy"):
        super().__init__(name)

    def values(self, y_true, y_pred):
        return (numpy.argmax(y_pred, -1) == y_true.reshape(len(y_pred))).astype(float)


class MeanSquaredError(Metric):
    def __init__(self, name="mse"):
        super().__init__(name)

    def values(self, y_true, y_pred):
        y_true, y_pred = _column(y_true, y_pred)
        return numpy.mean((y_pred - y_true) ** 2, axis=1)


class MeanAbsoluteError(Metric):
    def __init__(self, name="mae"):
        super().__init__(name)

    def values(self, y_true, y_pred):
        y_true, y_pred = _column(y_true, y_pred)
        return numpy.mean(numpy.abs(y_pred - y_true), axis=1)


class _Confusion(Metric):
    """Counts of true/false positives for a binary problem, thresholded like BinaryAccuracy."""

    def __init__(self, name=None, threshold=0.5):
        self.threshold = threshold
        super().__init__(name)

    def reset_state(self):
        self.tp = self.fp = self.fn = 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = _array(y_true).reshape(-1) > 0.5
        guess = _array(y_pred).reshape(-1) > self.threshold
        w = numpy.ones(len(truth)) if sample_weight is None else numpy.asarray(sample_weight, float).reshape(-1)
        self.tp += float(numpy.sum(w * (truth & guess)))
        self.fp += float(numpy.sum(w * (~truth & guess)))
        self.fn += float(numpy.sum(w * (truth & ~guess)))


class Precision(_Confusion):
    def result(self):
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0


class Recall(_Confusion):
    def result(self):
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0


class AUC(Metric):
    """Exact area under the ROC curve over everything seen since the last reset (ties count half)."""

    def reset_state(self):
        self.scores, self.labels = [], []

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.labels.append(_array(y_true).reshape(-1) > 0.5)
        self.scores.append(_array(y_pred).reshape(-1).astype(float))

    def get_state(self):
        return {"scores": numpy.concatenate(self.scores) if self.scores else numpy.zeros(0),
                "labels": numpy.concatenate(self.labels) if self.labels else numpy.zeros(0, bool)}

    def set_state(self, state):
        self.scores, self.labels = [numpy.asarray(state["scores"])], [numpy.asarray(state["labels"], bool)]

    def result(self):
        if not self.scores:
            return 0.0
        scores, labels = numpy.concatenate(self.scores), numpy.concatenate(self.labels)
        positives, negatives = labels.sum(), (~labels).sum()
        if not positives or not negatives:
            return 0.0
        order = numpy.argsort(scores, kind="mergesort")
        ranks = numpy.empty(len(scores))
        sorted_scores = scores[order]
        _, first, counts = numpy.unique(sorted_scores, return_index=True, return_counts=True)
        average_rank = first + (counts + 1) / 2  # 1-based mean rank of each tie group
        ranks[order] = numpy.repeat(average_rank, counts)
        return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


METRICS = {"mse": MeanSquaredError, "mean_squared_error": MeanSquaredError, "mae": MeanAbsoluteError,
           "mean_absolute_error": MeanAbsoluteError, "precision": Precision, "recall": Recall, "auc": AUC,
           "binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
           "sparse_categorical_accuracy": SparseCategoricalAccuracy}


def get(identifier, loss=None):
    """A Metric from a name; "accuracy" picks binary, categorical or sparse from the loss (Keras' rule)."""
    if isinstance(identifier, Metric):
        return identifier
    if identifier in ("accuracy", "acc"):
        return accuracy_for(loss)
    if identifier in METRICS:
        metric = METRICS[identifier]()
        if isinstance(metric, _Confusion) and getattr(loss, "options", {}).get("from_logits"):
            metric.threshold = 0.0
        return metric
    raise ValueError(f"unknown metric {identifier!r}; valid: accuracy, {', '.join(METRICS)}")


def accuracy_for(loss):
    name = getattr(loss, "name", "")
    from_logits = getattr(loss, "options", {}).get("from_logits", False)
    if name == "sparse_categorical_crossentropy":
        return SparseCategoricalAccuracy()
    if name == "categorical_crossentropy":
        return CategoricalAccuracy()
    return BinaryAccuracy(threshold=0.0 if from_logits else 0.5)
