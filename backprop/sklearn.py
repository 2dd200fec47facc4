"""scikit-learn compatible estimators with backprop's engine: MLPClassifier and MLPRegressor.

They pass ``sklearn.utils.estimator_checks.check_estimator`` except
``check_sample_weight_equivalence_on_dense_data``: with shuffled mini-batch gradient descent a
weight of 2 is not the same as a repeated sample (scikit-learn's own MLP fails it for the same reason).

Needs the ``sklearn`` extra (``pip install 'backprop[sklearn]'``). The fitted network is
``model_``, a ``bp.Sequential``. Estimators pickle (scikit-learn's own contract for process-based
parallelism); backprop's model files stay pickle-free.
"""
import math

import numpy
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelBinarizer, LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

import backprop as bp
from backprop.user_warnings import warn


class _MLP(BaseEstimator):
    """Shared engine: build the network, train it epoch by epoch with scikit-learn's stopping rules."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", optimizer="adam", learning_rate=1e-3,
                 batch_size="auto", max_epochs=200, alpha=1e-4, dropout=0.0, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, random_state=None, verbose=0,
                 warm_start=False, device="cpu", max_iter=None, learning_rate_init=None, solver=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.alpha = alpha
        self.dropout = dropout
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.device = device
        # scikit-learn's own names, so an MLPClassifier(max_iter=..., learning_rate_init=..., solver=...) written
        # for sklearn.neural_network runs here: they win over backprop's names when given
        self.max_iter = max_iter
        self.learning_rate_init = learning_rate_init
        self.solver = solver

    # --- scikit-learn's names -------------------------------------------------------------
    def _epochs(self):
        return self.max_epochs if self.max_iter is None else self.max_iter

    def _rate(self):
        """The learning rate: learning_rate_init when given; scikit-learn's learning_rate names a schedule,
        of which 'constant' (its default) is what backprop does."""
        if self.learning_rate_init is not None:
            rate = self.learning_rate_init
            if isinstance(self.learning_rate, str) and self.learning_rate != "constant":
                raise ValueError(f"learning_rate={self.learning_rate!r}: only scikit-learn's 'constant' schedule is "
                                 "supported; give the rate as learning_rate_init (or learning_rate)")
        elif isinstance(self.learning_rate, str):
            if self.learning_rate != "constant":
                raise ValueError(f"learning_rate={self.learning_rate!r}: only scikit-learn's 'constant' schedule is "
                                 "supported")
            rate = 1e-3  # scikit-learn's learning_rate_init default
        else:
            rate = self.learning_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < math.inf:
            raise ValueError(f"the learning rate must be a positive number, got {rate!r}")
        return float(rate)

    def _optimizer_name(self):
        if self.solver is None:
            return self.optimizer
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not supported: backprop trains with gradient steps; use "
                             "solver='adam' or 'sgd'")
        return self.solver

    # --- what the subclasses provide --------------------------------------------------
    def _encode_targets(self, y, first):
        raise NotImplementedError

    def _head(self):
        """(output units, loss) for the encoded targets."""
        raise NotImplementedError

    def _validation_score(self, x, y):
        raise NotImplementedError

    # --- the network ----------------------------------------------------------------------
    def _batch(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or 'auto', got {self.batch_size!r}")
        return min(int(self.batch_size), n)

    def _build(self, n_features, batch):
        sizes = (self.hidden_layer_sizes,) if numpy.ndim(self.hidden_layer_sizes) == 0 else self.hidden_layer_sizes
        if any(int(s) != s or s < 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        penalty = bp.regularizers.L2(0.5 * self.alpha / batch) if self.alpha else None  # scikit-learn's alpha
        layers = [bp.layers.Input(shape=(n_features,))]
        for units in sizes:
            layers.append(bp.layers.Dense(int(units), activation=self.activation, kernel_regularizer=penalty))
            if self.dropout:
                layers.append(bp.layers.Dropout(self.dropout))
        units, loss = self._head()
        layers.append(bp.layers.Dense(units, kernel_regularizer=penalty))
        model = bp.Sequential(layers)
        model.compile(optimizer=bp.optimizers.get(self._optimizer_name(), learning_rate=self._rate()), loss=loss)
        return model

    def _fit(self, x, y, sample_weight, incremental, classes=None):
        first = not (incremental or self.warm_start) or not hasattr(self, "model_")
        x, y = validate_data(self, x, y, reset=first, dtype=(numpy.float32, numpy.float64), multi_output=True,
                             y_numeric=isinstance(self, RegressorMixin))
        x = x.astype(numpy.float32)
        targets = self._encode_targets(y, first, classes)
        if sample_weight is not None:
            sample_weight = numpy.asarray(sample_weight, dtype=numpy.float32).reshape(-1)
            if len(sample_weight) != len(x):
                raise ValueError(f"sample_weight has {len(sample_weight)} values for {len(x)} samples")
            if (sample_weight < 0).any() or not numpy.isfinite(sample_weight).all():
                raise ValueError("sample_weight must be finite and non-negative")
            if not sample_weight.any():
                raise ValueError("sample_weight is zero for every sample: nothing to learn from")
        if first:
            seed = check_random_state(self.random_state).randint(2 ** 31 - 1)
            bp.random.set_seed(seed)
            with bp.device(self.device):  # the network lives there; data moves to it batch by batch
                self.model_ = self._build(x.shape[1], self._batch(len(x)))
            self.loss_curve_, self.validation_scores_ = [], [] if self.early_stopping else None
            self.best_loss_, self.best_validation_score_, self.n_iter_ = math.inf, None, 0
            self._no_improvement = 0
        self._train(x, targets, sample_weight, epochs=1 if incremental else None)
        return self

    def _train(self, x, targets, sample_weight, epochs=None):
        """Train with backprop's own loop; scikit-learn's stopping rule is a callback (_Stopping)."""
        validation = None
        if self.early_stopping and epochs is None:
            n_val = max(1, int(round(self.validation_fraction * len(x))))
            order = check_random_state(self.random_state).permutation(len(x))
            train, held = order[n_val:], order[:n_val]
            validation = (x[held], targets[held])
            x, targets = x[train], targets[train]
            sample_weight = None if sample_weight is None else sample_weight[train]
        stopping = _Stopping(self, validation, stop=epochs is None)
        limit = int(epochs or self._epochs())
        self.model_.fit(x, targets, batch_size=self._batch(len(x)), epochs=limit, verbose=0,
                        sample_weight=sample_weight, callbacks=[stopping])
        if epochs is None and not self.model_.stop_training and self.n_iter_ >= limit:
            warn(f"Stochastic Optimizer: Maximum iterations ({limit}) reached and the optimization hasn't converged "
                 "yet.", ConvergenceWarning)  # scikit-learn's words and category

    def _scores(self, x):
        check_is_fitted(self, "model_")
        x = validate_data(self, x, reset=False, dtype=(numpy.float32, numpy.float64)).astype(numpy.float32)
        return self.model_.predict(x, batch_size=max(len(x), 1))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class _Stopping(bp.callbacks.Callback):
    """scikit-learn's rule, checked after each epoch: stop after ``n_iter_no_change`` epochs without the
    training loss falling by ``tol`` (or, with early_stopping, the validation score rising by ``tol``,
    keeping the best weights). Also records ``loss_curve_`` and ``n_iter_`` on the estimator."""

    def __init__(self, estimator, validation, stop=True):
        self.estimator, self.validation, self.stop = estimator, validation, stop
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.estimator._no_improvement = 0

    def on_epoch_end(self, epoch, logs=None):
        estimator, loss = self.estimator, logs["loss"]
        estimator.loss_curve_.append(loss)
        estimator.n_iter_ += 1
        if not math.isfinite(loss):
            raise FloatingPointError(f"the training loss became {loss} at epoch {estimator.n_iter_}; "
                                     "try a smaller learning_rate")
        if self.validation is not None:
            score = estimator._validation_score(*self.validation)
            estimator.validation_scores_.append(score)
            best = estimator.best_validation_score_
            improved = best is None or score > best + estimator.tol
            if best is None or score > best:
                estimator.best_validation_score_, self.best_weights = score, self.model.get_weights()
        else:
            improved = loss < estimator.best_loss_ - estimator.tol
        estimator.best_loss_ = min(estimator.best_loss_, loss)
        estimator._no_improvement = 0 if improved else estimator._no_improvement + 1
        if estimator.verbose:
            print(f"Epoch {estimator.n_iter_}, loss = {loss:.6f}")
        if self.stop and estimator._no_improvement > estimator.n_iter_no_change:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class MLPClassifier(ClassifierMixin, _MLP):
    """A multi-layer perceptron classifier: binary, multi-class (softmax) or multi-label (sigmoids)."""

    def _encode_targets(self, y, first, classes=None):
        if first:
            check_classification_targets(y)
            self._multilabel = type_of_target(y) == "multilabel-indicator"
            if self._multilabel:
                self._binarizer = LabelBinarizer().fit(y)
                self.classes_ = self._binarizer.classes_
            else:
                self._encoder = LabelEncoder().fit(classes if classes is not None else y)
                self.classes_ = self._encoder.classes_
        if self._multilabel:
            return numpy.asarray(y, dtype=numpy.float32)
        y = numpy.asarray(y).reshape(-1)
        unknown = numpy.setdiff1d(y, self.classes_)
        if len(unknown):
            raise ValueError(f"y contains classes not seen in the first fit: {unknown[:5]}")
        encoded = self._encoder.transform(y)
        return encoded.astype(numpy.float32) if len(self.classes_) <= 2 else encoded

    def _head(self):
        if self._multilabel or len(self.classes_) <= 2:
            units = len(self.classes_) if self._multilabel else 1
            return units, bp.losses.BinaryCrossentropy(from_logits=True)
        return len(self.classes_), bp.losses.SparseCategoricalCrossentropy(from_logits=True)

    def _validation_score(self, x, y):
        scores = self.model_.predict(x, batch_size=max(len(x), 1))
        if self._multilabel:
            return float(numpy.mean(numpy.all((scores > 0) == (y > 0.5), axis=1)))
        guess = (scores[:, 0] > 0).astype(int) if scores.shape[1] == 1 else scores.argmax(axis=1)
        return float(numpy.mean(guess == y.reshape(-1)))

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y); labels may be any hashable values (strings too)."""
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y); the first call needs ``classes`` (all labels that will ever appear)."""
        if not hasattr(self, "model_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict_proba(self, X):
        scores = self._scores(X)
        if self._multilabel:
            return 1 / (1 + numpy.exp(-numpy.clip(scores, -60, 60)))
        if scores.shape[1] == 1:
            p = 1 / (1 + numpy.exp(-numpy.clip(scores[:, 0], -60, 60)))
            return numpy.stack([1 - p, p], axis=1)
        e = numpy.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        with numpy.errstate(divide="ignore"):
            return numpy.log(self.predict_proba(X))

    def predict(self, X):
        scores = self._scores(X)
        if self._multilabel:
            return self._binarizer.inverse_transform((scores > 0).astype(int))
        index = (scores[:, 0] > 0).astype(int) if scores.shape[1] == 1 else scores.argmax(axis=1)
        return self.classes_[index]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _MLP):
    """A multi-layer perceptron regressor (mean squared error, linear outputs, multi-output)."""

    def _encode_targets(self, y, first, classes=None):
        y = numpy.asarray(y, dtype=numpy.float32)
        if first:
            self._one_dimensional = y.ndim == 1
            self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        return y.reshape(len(y), -1)

    def _head(self):
        return self.n_outputs_, bp.losses.MeanSquaredError()

    def _validation_score(self, x, y):
        from sklearn.metrics import r2_score
        return float(r2_score(y, self.model_.predict(x, batch_size=max(len(x), 1))))

    def fit(self, X, y, sample_weight=None):
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        scores = self._scores(X).astype(numpy.float64)
        return scores[:, 0] if self._one_dimensional else scores

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
