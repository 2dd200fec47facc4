"""Losses: the mean over examples of a per-example loss (the lecture's empirical loss).

Each loss is a function ``f(y_true, y_pred) -> per-example tensor`` and a class whose
``__call__(y_true, y_pred, sample_weight=None)`` gives the (weighted) mean; both come from one
kernel in backprop.ops.loss_kernels, which also holds the gradient.
Probabilities (``from_logits=False``) are clipped to [1e-7, 1 - 1e-7] before the log,
as Keras does, so p in {0, 1} stays finite.
"""

from backprop import devices, ops, tracing
from backprop.ops import loss_kernels as loss_ops, op as op_module
from backprop.naming import snake_case
from backprop.tensor import Tensor, as_array
from backprop.devices import asarray
from backprop.xp import np
from backprop.user_warnings import warn



def _labels(y_true, y_pred, what):
    """Labels as an array of y_pred's dtype and shape, with a clear error instead of silent broadcasting."""
    labels = y_true.data if isinstance(y_true, Tensor) else y_true
    if type(labels) is np.ndarray and labels.dtype == y_pred.dtype:  # the common cases, without conversions
        if labels.shape == y_pred.shape:
            return labels
        if labels.shape + (1,) == y_pred.shape:
            return labels[..., None]  # (batch,) labels for a (batch, 1) output: Keras' expand rule
    labels = as_array(labels)
    if labels.shape != y_pred.shape:
        if labels.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1 and labels.shape == y_pred.shape[:-1]:
            labels = labels[..., None]  # (batch,) labels for a (batch, 1) output: Keras' expand rule
        elif labels.ndim == y_pred.ndim + 1 and labels.shape[-1] == 1 and labels.shape[:-1] == y_pred.shape:
            labels = labels[..., 0]
        else:
            raise ValueError(f"{what}: labels of shape {labels.shape} do not match predictions of shape {y_pred.shape}")
    return labels.astype(y_pred.dtype, copy=False)


def _joined(data, y_pred):
    """Labels or weights (checked on the host) on the predictions' device: they are data, not tensors."""
    if data is not None and type(y_pred.data) is not np.ndarray and type(_raw(data)) is not type(y_pred.data):
        return devices.of(y_pred.data).to_device(_raw(data))
    return data


def _raw(value):
    return value.data if isinstance(value, Tensor) else value


def _pred(y_pred):
    return y_pred if isinstance(y_pred, Tensor) else Tensor(y_pred)


def _labels_for(kernel, y_true, y_pred):
    """Labels validated the way the kernel needs them (class indices, one-hot rows or y_pred's shape), on
    y_pred's device."""
    return _joined(LABEL_CHECKS.get(kernel, _labels)(y_true, y_pred, kernel), y_pred)


def _per_example(kernel):
    op = loss_ops.PER_EXAMPLE_OPS[kernel]

    def loss(y_true, y_pred, **options):
        y_pred = _pred(y_pred)
        return op(_labels_for(kernel, y_true, y_pred), y_pred, **options)

    loss.__name__ = kernel
    loss.__doc__ = f"Per-example {kernel.replace('_', ' ')} (elementwise losses: mean over the last axis)."
    return loss


def _signed_labels(y_true, y_pred, what="hinge"):
    """Hinge labels in {-1, 1}; 0/1 labels are mapped to -1/1, as Keras does."""
    labels = _labels(y_true, y_pred, what)
    return 2 * labels - 1 if ((labels == 0) | (labels == 1)).all() else labels


mean_squared_error = _per_example("mean_squared_error")
mean_absolute_error = _per_example("mean_absolute_error")
huber = _per_example("huber")
binary_crossentropy = _per_example("binary_crossentropy")
categorical_crossentropy = _per_example("categorical_crossentropy")
sparse_categorical_crossentropy = _per_example("sparse_categorical_crossentropy")
hinge = _per_example("hinge")
kl_divergence = kld = _per_example("kl_divergence")


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


def class_indices(y_true, n_classes, what="sparse_categorical_crossentropy"):
    """Validate integer class labels in [0, n_classes); (batch, 1) columns are flattened."""
    labels = y_true.data if isinstance(y_true, Tensor) else asarray(y_true)
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
    raw = y_true.data if isinstance(y_true, Tensor) else asarray(y_true)
    if raw.shape == y_pred.shape and y_pred.shape[-1] > 1:
        raise ValueError(f"{what} expects class indices of shape {y_pred.shape[:-1]}, got one-hot labels of "
                         f"shape {raw.shape}; use categorical_crossentropy for one-hot labels")
    labels = class_indices(raw, y_pred.shape[-1], what)
    if labels.shape != y_pred.shape[:-1]:
        raise ValueError(f"{what}: labels of shape {raw.shape} do not match predictions of shape {y_pred.shape}")
    return labels


# the label check of each kernel that takes other labels than y_pred's shape (the rest: _labels)
LABEL_CHECKS = {"sparse_categorical_crossentropy": sparse_labels, "categorical_crossentropy": one_hot_labels,
                "hinge": _signed_labels}


def stand_in(y_pred):
    """A tensor of y_pred's shape, dtype and device without its values (one zero, broadcast): what label
    preparation needs of the predictions, which depends on nothing else."""
    xp = devices.array_module(y_pred.data)
    return Tensor._wrap(xp.broadcast_to(xp.zeros((), y_pred.dtype), y_pred.shape))


def _labels_op(loss, y_true, y_pred):
    """``loss.prepared_labels`` of a label tensor, as an op without gradient (what ops monitors, and so a
    recording, see): its forward prepares new labels against a stand-in of y_pred."""
    template = stand_in(y_pred)

    def forward(labels):
        return _raw(loss.prepared_labels(labels, template)), None
    result = Tensor._wrap(forward(y_true.data)[0])
    for monitor in op_module.monitors.get():
        monitor("prepared_labels", result, (y_true,), {}, forward)
    return result


def reduce_mean(per_example, sample_weight=None):
    """Mean of a user loss function's values; with weights, sum(w * loss) / number of values (Keras' rule)."""
    if per_example.size == 0:
        raise ValueError("loss: the batch is empty")
    if sample_weight is None:
        return ops.mean(per_example)
    weights = loss_ops.align_weights(_weights_like(sample_weight, per_example), per_example.shape)
    return ops.sum(per_example * weights) / per_example.size


def _weights_like(sample_weight, y_pred):
    """Sample weights in y_pred's dtype, on its device. A tensor of weights is cast by the cast op, so that a
    recorded step casts each batch's weights again."""
    if isinstance(sample_weight, Tensor) and type(sample_weight.data) is type(y_pred.data):
        return sample_weight if sample_weight.dtype == y_pred.dtype else ops.cast(sample_weight, y_pred.dtype)
    return _joined(asarray(_raw(sample_weight), dtype=y_pred.dtype), y_pred)


class Loss:
    """Callable loss object: ``loss(y_true, y_pred, sample_weight=None)`` -> scalar tensor.

    ``kernel`` names the loss in backprop.ops.loss_kernels, whose one definition gives both the
    per-example values and the (weighted) mean computed here as a single op. ``reduction`` is
    Keras': "sum_over_batch_size" (the mean), "sum", "mean_with_sample_weight", or None for the
    per-example (weighted) values.
    """

    kernel = None
    label_smoothing = 0.0  # s: labels become y (1 - s) + s u, u = self.uniform(y_pred) (the smoothed cross-entropies)
    _checks_left = 3  # batches whose predictions are still checked against from_logits

    def __init__(self, name=None, reduction="sum_over_batch_size"):
        if reduction is not None and reduction not in loss_ops.REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of "
                             f"{', '.join(map(repr, loss_ops.REDUCTIONS))} or None, got {reduction!r}")
        self.name = name or snake_case(type(self).__name__)
        self.reduction = reduction
        self.options = {}

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = _pred(y_pred)
        return self.from_kernel_labels(self.kernel_labels(y_true, y_pred), y_pred, sample_weight)

    def kernel_labels(self, y_true, y_pred):
        """The labels as the kernel takes them (checked, converted, smoothed): a function of the labels and
        of y_pred's shape and dtype only, which a compiled step computes before replaying the rest. Given a
        tensor of labels, the preparation is an op of its own, so a recording (bp.function) prepares each
        call's labels again instead of keeping the first call's as a constant."""
        if y_pred.data.size == 0:
            raise ValueError(f"{self.name}: the batch is empty")
        if self._checks_left and "from_logits" in self.options:
            self._check_predictions(y_pred.data)
        if isinstance(y_true, Tensor):
            return _labels_op(self, y_true, y_pred)
        return self.prepared_labels(y_true, y_pred)

    @property
    def replayable(self):
        """Whether ``from_kernel_labels(kernel_labels(y, p), p, w)`` is the whole loss, as a compiled step runs
        it: not for a subclass whose ``__call__`` computes more in Python."""
        return type(self).__call__ is Loss.__call__

    def prepared_labels(self, y_true, y_pred):
        """``kernel_labels`` without the checks of the predictions: labels (an array) in, labels out."""
        predictions = y_pred.data
        labels = LABEL_CHECKS.get(self.kernel, _labels)(y_true, y_pred, self.kernel)
        if self.label_smoothing:
            s = self.label_smoothing
            labels = labels * (1 - s) + s * self.uniform(y_pred)
        if type(self).prepare_labels is not Loss.prepare_labels:
            labels = self.prepare_labels(labels, y_pred)
        return labels if type(predictions) is np.ndarray else _joined(labels, y_pred)

    def _check_predictions(self, values):
        """On the first batches only: warn once when the predictions look like the other kind than
        ``from_logits`` says (probabilities to a loss expecting logits, or the reverse)."""
        self._checks_left -= 1
        message = _logits_mismatch(self.options["from_logits"], self.kernel, values)
        if message:
            self._checks_left = 0
            warn(f"{type(self).__name__}: {message}")

    def from_kernel_labels(self, labels, y_pred, sample_weight=None):
        """The loss from labels that ``kernel_labels`` made (or a tensor holding them)."""
        weights = None if sample_weight is None else _weights_like(sample_weight, y_pred)
        if self.reduction is None:
            values = loss_ops.PER_EXAMPLE_OPS[self.kernel](labels, y_pred, **self.options)
            return values if weights is None else values * loss_ops.align_weights(weights, values.shape)
        if weights is None:  # two inputs, not three: a little less for the op and the tape to go through
            return loss_ops.MEAN_OPS[self.kernel](labels, y_pred, reduction=self.reduction, **self.options)
        return loss_ops.MEAN_OPS[self.kernel](labels, y_pred, weights, self.reduction, **self.options)

    def prepare_labels(self, labels, y_pred):
        """A subclass's own change to the labels (after checking and smoothing); none by default."""
        return labels

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, **self.options}


class MeanSquaredError(Loss):
    kernel = "mean_squared_error"


class MeanAbsoluteError(Loss):
    kernel = "mean_absolute_error"


class Huber(Loss):
    kernel = "huber"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name=None):
        super().__init__(name, reduction)
        self.options = {"delta": delta}


class Hinge(Loss):
    """mean(max(1 - y p, 0)) for labels in {-1, 1} (or 0/1, mapped to -1/1)."""

    kernel = "hinge"


class KLDivergence(Loss):
    """sum(y log(y / p)) over classes, y and p clipped to [1e-7, 1]."""

    kernel = "kl_divergence"


def _logits_mismatch(from_logits, kernel, values):
    """Why ``values`` look like probabilities when ``from_logits`` (or like logits when not), or None."""
    if values.dtype.kind != "f" or values.size < 8 or not np.isfinite(values).all():
        return None
    in_unit_interval = values.min() >= 0 and values.max() <= 1
    sums_to_one = kernel != "binary_crossentropy" and values.shape[-1] > 1 and \
        np.allclose(values.sum(axis=-1), 1, atol=1e-3)
    if from_logits and in_unit_interval and sums_to_one:  # raw logits almost never do both
        return ("from_logits=True, but the predictions look like probabilities (all in [0, 1], each row summing "
                "to 1), as from a softmax output layer. Either remove that final activation or build the loss "
                "with from_logits=False")
    if not from_logits and not in_unit_interval:
        return (f"from_logits=False, but the predictions look like raw logits (values from {values.min():.3g} to "
                f"{values.max():.3g}, outside [0, 1]); they are clipped into [1e-7, 1 - 1e-7], which makes the loss "
                "meaningless. Build the loss with from_logits=True, or end the model with a sigmoid/softmax")
    return None


def check_output_activation(model, loss):
    """Warn when a model ending in sigmoid or softmax is compiled with a loss that expects logits; otherwise
    the loss checks the first batches' predictions again (a loss object can serve several models)."""
    if isinstance(loss, Loss):
        loss._checks_left = Loss._checks_left
    layers = getattr(model, "layers", None) or []
    name = getattr(layers[-1], "activation_name", None) if layers else None
    if name in ("sigmoid", "softmax") and getattr(loss, "options", {}).get("from_logits"):
        warn(f"{type(loss).__name__}(from_logits=True), but the model's last layer ({layers[-1].name!r}) "
             f"applies {name}: the loss would apply it a second time. Either remove that final activation "
             "or build the loss with from_logits=False")
        loss._checks_left = 0


def _check_smoothing(label_smoothing):
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return float(label_smoothing)


class _SmoothedCrossentropy(Loss):
    """A cross-entropy whose labels can be smoothed towards the uniform distribution (Keras'
    ``label_smoothing`` s): y (1 - s) + s u, with u = 1 / classes (1/2 for binary labels)."""

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size", name=None):
        super().__init__(name, reduction)
        self.options = {"from_logits": from_logits}
        self.label_smoothing = _check_smoothing(label_smoothing)

    def uniform(self, y_pred):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


class BinaryCrossentropy(_SmoothedCrossentropy):
    kernel = "binary_crossentropy"

    def uniform(self, y_pred):
        return 0.5


class CategoricalCrossentropy(_SmoothedCrossentropy):
    kernel = "categorical_crossentropy"

    def uniform(self, y_pred):
        return 1 / y_pred.shape[-1]


class SparseCategoricalCrossentropy(Loss):
    """``ignore_class``: examples with that label add nothing to the loss and are not counted (Keras)."""

    kernel = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size", name=None):
        super().__init__(name, reduction)
        self.options = {"from_logits": from_logits}
        self.ignore_class = ignore_class

    @property
    def replayable(self):
        return self.ignore_class is None  # the mask of ignored labels is computed in Python

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self.ignore_class is None:
            return super().__call__(y_true, y_pred, sample_weight)
        recorder = tracing.current.get()
        if recorder is not None:  # the mask below is computed on the label arrays: a recording would freeze it
            recorder.refuse(f"{self.name} with ignore_class computes its mask in Python; it cannot be recorded")
        y_pred, raw = _pred(y_pred), asarray(_raw(y_true))
        if raw.ndim == y_pred.ndim and raw.shape[-1] == 1:
            raw = raw[..., 0]
        keep = raw != self.ignore_class
        weights = keep.astype(y_pred.dtype)
        if sample_weight is not None:
            weights = weights * asarray(_raw(sample_weight), dtype=weights.dtype)
        labels = np.where(keep, raw, 0)
        loss = super().__call__(labels, y_pred, weights)
        return loss if self.reduction != "sum_over_batch_size" or keep.all() else \
            loss * (len(keep) / max(int(keep.sum()), 1))

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


mse, mae = mean_squared_error, mean_absolute_error

LOSSES = {
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError, "huber": Huber,
    "binary_crossentropy": BinaryCrossentropy, "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "hinge": Hinge, "kl_divergence": KLDivergence, "kld": KLDivergence,
}


def get(identifier):
    """A Loss object from a name, a Loss, or a function ``f(y_true, y_pred) -> per-example loss``."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = LOSSES.get(identifier) or {cls.__name__: cls for cls in LOSSES.values()}.get(identifier)
        if cls is None:
            raise ValueError(f"unknown loss {identifier!r}; valid: {', '.join(LOSSES)} (or the class names, "
                             "e.g. 'SparseCategoricalCrossentropy')")
        return cls()
    if callable(identifier):
        return _FunctionLoss(identifier)
    raise ValueError(f"a loss must be a name, a Loss or a function, got {identifier!r}")


class _FunctionLoss(Loss):
    def __init__(self, fn):
        super().__init__(getattr(fn, "__name__", "loss"))
        self.function = fn

    replayable = True  # the function gets the labels as a tensor: what it reads in Python, the tracer sees

    def kernel_labels(self, y_true, y_pred):
        """The labels at the predictions' rank, as Keras' function losses take them: (n,) labels for (n, 1)
        predictions gain their last axis (a silent broadcast to (n, n) would train on the wrong loss)."""
        labels = y_true if isinstance(y_true, Tensor) else asarray(y_true)  # a tensor through ops: traceable
        if labels.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1 and labels.shape == y_pred.shape[:-1]:
            labels = ops.expand_dims(labels, -1) if isinstance(labels, Tensor) else labels[..., None]
        elif labels.ndim == y_pred.ndim + 1 and labels.shape[-1:] == (1,) and labels.shape[:-1] == y_pred.shape:
            labels = labels[..., 0]
        return _joined(labels, y_pred)

    prepared_labels = kernel_labels  # nothing to check: the function takes the labels as they come

    def from_kernel_labels(self, labels, y_pred, sample_weight=None):
        out = self.function(labels, y_pred)
        return out if out.ndim == 0 and sample_weight is None else reduce_mean(out, sample_weight)

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = _pred(y_pred)
        return self.from_kernel_labels(self.kernel_labels(y_true, y_pred), y_pred, sample_weight)
