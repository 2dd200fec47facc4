"""Model: a Layer that can be compiled, trained, evaluated, summarized and saved."""
import contextlib
import math
import signal
import threading

import numpy

from backprop import callbacks as callbacks_module
from backprop import losses, metrics as metrics_module, optimizers, random
from backprop.layers.layer import Layer
from backprop.models import data
from backprop.tape import GradientTape, no_grad
from backprop.xp import np


@contextlib.contextmanager
def _deferred_interrupts(enabled):
    """While enabled (and in the main thread), Ctrl-C only sets a flag, checked between batches, so a
    backup is saved from a consistent state; yields a function telling whether Ctrl-C was pressed."""
    pressed = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


class Model(Layer):
    """Subclass with ``call(self, inputs, training=None)``, or use Sequential."""

    def __init__(self, name=None, trainable=True, dtype=None, **kwargs):
        super().__init__(name=name, trainable=trainable, dtype=dtype, **kwargs)
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self._terminate_on_nan = False
        self._metric_specs = []
        self._fit_variables = None  # within fit, after the first batch: trainable variables, computed once
        self._fit_regularized = False

    # --- building -------------------------------------------------------------------
    def build(self, input_shape):
        """Create every weight by running one zero example of ``input_shape`` through the model."""
        shape = tuple(1 if d is None else d for d in input_shape)
        with no_grad():
            Layer.__call__(self, np.zeros(shape, dtype=self.dtype))

    def _build_on_first_call(self, input_shape):
        """Sublayers build themselves lazily: nothing to do at the model level."""

    # --- compile -----------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """Choose the optimizer, the loss (name or object) and the metrics ("accuracy", "mse", ...)."""
        self.optimizer = optimizers.get(optimizer)
        if loss is None:
            raise ValueError("compile: a loss is required, e.g. loss='mse' or bp.losses.BinaryCrossentropy()")
        self.loss = losses.get(loss)
        self._metric_specs = list(metrics or [])

    def get_compile_config(self):
        """What compile() was given, for model files; None when it holds something unsaveable."""
        if self.loss is None or type(self.loss) not in set(losses.LOSSES.values()):
            return None
        if not all(isinstance(m, str) for m in self._metric_specs) or callable(self.optimizer._learning_rate):
            return None
        optimizer_config = self.optimizer.get_config()
        return {"loss": {"class_name": type(self.loss).__name__, "config": self.loss.options},
                "metrics": list(self._metric_specs),
                "optimizer": {"class_name": type(self.optimizer).__name__, "config": optimizer_config}}

    def compile_from_config(self, config):
        loss_classes = {cls.__name__: cls for cls in losses.LOSSES.values()}
        optimizer_classes = {cls.__name__: cls for cls in optimizers.OPTIMIZERS.values()}
        loss, optimizer = config["loss"], config["optimizer"]
        self.compile(optimizer=optimizer_classes[optimizer["class_name"]](**optimizer["config"]),
                     loss=loss_classes[loss["class_name"]](**loss["config"]), metrics=config["metrics"])

    def _check_compiled(self, what):
        if self.loss is None:
            raise RuntimeError(f"{what}: call model.compile(optimizer=..., loss=...) first")

    def _new_metrics(self):
        return [metrics_module.get(spec, self.loss) for spec in self._metric_specs]

    # --- one step -----------------------------------------------------------------------
    def _loss(self, y, y_pred, sample_weight):
        loss = self.loss(y, y_pred, sample_weight)
        penalties = self.losses if self._fit_variables is None or self._fit_regularized else None
        return loss + sum(penalties[1:], penalties[0]) if penalties else loss

    def train_on_batch(self, x, y, sample_weight=None):
        """One gradient step on one batch; returns the loss (before the step)."""
        self._check_compiled("train_on_batch")
        x = data.features(x, self.dtype)
        return self._train_step(x, data.labels(y), sample_weight)[0]

    def _train_step(self, x, y, sample_weight):
        with GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self._loss(y, y_pred, sample_weight)
        variables = self._fit_variables or self.trainable_variables  # after the call: lazy layers exist now
        grads = tape.gradient(loss, variables)
        value = float(loss.data)
        if self._terminate_on_nan and not math.isfinite(value):
            return value, y_pred, False
        self.optimizer.apply_gradients(zip(grads, variables))
        return value, y_pred, True

    def test_on_batch(self, x, y, sample_weight=None):
        self._check_compiled("test_on_batch")
        with no_grad():
            return float(self._loss(data.labels(y), self(data.features(x, self.dtype), training=False),
                                    sample_weight).data)

    # --- fit ------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0, sample_weight=None):
        """Train for ``epochs`` passes over (x, y); returns a History (``history.history["loss"]``, ...).

        ``batch_size=None`` is full-batch gradient descent. ``validation_split`` holds out the last
        fraction of the data, before shuffling (Keras' rule). Inputs are cast to the model's dtype.
        """
        self._check_compiled("fit")
        x, y = data.features(x, self.dtype), data.labels(y)
        sample_weight = None if sample_weight is None else numpy.asarray(sample_weight, dtype=self.dtype)
        data.check_lengths(x, y, sample_weight)
        if int(epochs) != epochs or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        if validation_data is None and validation_split:
            (x, y, sample_weight), validation = data.split_validation([x, y, sample_weight], validation_split)
            validation_data = tuple(v for v in validation if v is not None)
        batch_size = data.check_batch_size(batch_size, len(x))
        steps = math.ceil(len(x) / batch_size)
        history = callbacks_module.History()
        user_callbacks = list(callbacks or [])
        hooks = user_callbacks + [history]  # last, so it records what user callbacks add to logs
        verbose = 1 if verbose == "auto" else verbose
        if verbose:
            hooks.append(callbacks_module.ProgressBar(epochs, steps, verbose))
        hooks = callbacks_module.CallbackList(hooks, self)
        self.stop_training, self.nonfinite_at, self.history, self._restore_from = False, None, history, None
        self._interrupted = False
        self._loop = loop = {"epoch": initial_epoch, "batch": 0, "order": None, "loss_mean": metrics_module.Mean(),
                             "metrics": self._new_metrics(), "callbacks": user_callbacks, "fingerprint": None}
        hooks.on_train_begin()
        backup = self._restore_from  # set by a BackupAndRestore callback
        if backup is not None:
            self._resume(backup, loop, x, y, batch_size)
        try:
            with _deferred_interrupts(backup is not None) as interrupted:
                self._epochs(x, y, sample_weight, batch_size, epochs, shuffle, validation_data, hooks, loop,
                             backup, interrupted)
        finally:
            self._fit_variables = None  # callbacks may freeze layers between fits
        hooks.on_train_end()
        return history

    def _resume(self, backup, loop, x, y, batch_size):
        from backprop.models import resume
        if not self.built:
            with no_grad():
                self(x[:1], training=False)
        loop["fingerprint"] = resume.fingerprint(self, x, y, batch_size)
        saved = backup.load()
        if saved is not None:
            resume.restore(self, *saved, loop["callbacks"], loop, loop["fingerprint"])

    def _epochs(self, x, y, sample_weight, batch_size, epochs, shuffle, validation_data, hooks, loop, backup,
                interrupted):
        for epoch in range(loop["epoch"], epochs):
            loop["epoch"] = epoch
            hooks.on_epoch_begin(epoch)
            if loop["batch"] == 0:  # a fresh epoch (a resumed one keeps its order and running metrics)
                loop["order"] = random.generator().permutation(len(x)) if shuffle else None
                loop["loss_mean"], loop["metrics"] = metrics_module.Mean(), self._new_metrics()
            logs = self._train_epoch(x, y, sample_weight, batch_size, hooks, loop, backup, interrupted)
            if validation_data is not None and not self.stop_training:
                logs.update({f"val_{k}": v for k, v in
                             self._evaluate_logs(*validation_data, batch_size=batch_size).items()})
            hooks.on_epoch_end(epoch, logs)
            loop.update(epoch=epoch + 1, batch=0, order=None)
            if backup is not None and backup.save_freq == "epoch" and not self.nonfinite_at:
                backup.save(loop)  # after every callback's on_epoch_end, so their state is current
            if self.stop_training:
                break

    def _train_epoch(self, x, y, sample_weight, batch_size, hooks, loop, backup, interrupted):
        loss_mean, metrics, epoch = loop["loss_mean"], loop["metrics"], loop["epoch"]
        batches = list(data.batches(len(x), batch_size, loop["order"]))
        for batch in range(loop["batch"], len(batches)):
            index = batches[batch]
            hooks.on_train_batch_begin(batch)
            yb, wb = y[index], data.take(sample_weight, index)
            value, y_pred, applied = self._train_step(x[index], yb, wb)
            if self._fit_variables is None:
                self._fit_variables = self.trainable_variables
                self._fit_regularized = bool(self.losses)
            if not applied:
                self.nonfinite_at = {"epoch": epoch + 1, "batch": batch + 1, "loss": value}
                if self._terminate_on_nan == "raise":
                    raise FloatingPointError(f"TerminateOnNaN: loss became {value} at epoch {epoch + 1}, "
                                             f"batch {batch + 1}; the update was not applied")
                print(f"TerminateOnNaN: loss became {value} at epoch {epoch + 1}, batch {batch + 1}; "
                      "stopping before applying that update")
                self.stop_training = True
                return {"loss": value}
            loss_mean.update_state(value, None if wb is None else [wb.mean()])
            for metric in metrics:
                metric.update_state(yb, y_pred.data, wb)
            logs = {"loss": loss_mean.result(), **{m.name: m.result() for m in metrics}}
            hooks.on_train_batch_end(batch, logs)
            loop["batch"] = batch + 1
            if backup is not None and (interrupted() or backup.save_freq != "epoch"
                                       and self.optimizer.iterations % backup.save_freq == 0):
                backup.save(loop)
                if interrupted():
                    self._interrupted = True
                    raise KeyboardInterrupt(f"training interrupted at epoch {epoch + 1}, batch {batch + 1}; "
                                            f"a backup is in {backup.directory}: run the same fit again to resume")
        return {"loss": loss_mean.result(), **{m.name: m.result() for m in metrics}}

    # --- evaluate / predict ------------------------------------------------------------
    def evaluate(self, x=None, y=None, batch_size=32, verbose=0, sample_weight=None, return_dict=False):
        """Loss (and metrics) over (x, y), with no dropout and nothing recorded."""
        self._check_compiled("evaluate")
        logs = self._evaluate_logs(x, y, sample_weight, batch_size=batch_size)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _evaluate_logs(self, x, y, sample_weight=None, batch_size=32):
        x, y = data.features(x, self.dtype, "validation x"), data.labels(y, "validation y")
        data.check_lengths(x, y, sample_weight)
        batch_size = data.check_batch_size(batch_size, len(x))
        loss_mean, metrics = metrics_module.Mean(), self._new_metrics()
        with no_grad():
            for index in data.batches(len(x), batch_size):
                wb = data.take(sample_weight, index)
                y_pred = self(x[index], training=False)
                loss_mean.update_state(float(self._loss(y[index], y_pred, wb).data), [len(y_pred)])
                for metric in metrics:
                    metric.update_state(y[index], y_pred.data, wb)
        return {"loss": loss_mean.result(), **{m.name: m.result() for m in metrics}}

    def predict(self, x, batch_size=32, verbose=0):
        """Model outputs as a NumPy array, batch by batch, in inference mode."""
        x = data.features(x, self.dtype)
        batch_size = data.check_batch_size(batch_size, len(x))
        with no_grad():
            if len(x) == 0:
                return self(x, training=False).data  # an empty batch keeps the output's shape: (0, units)
            outputs = [self(x[index], training=False).data for index in data.batches(len(x), batch_size)]
        return numpy.concatenate(outputs)

    # --- inspection and files -----------------------------------------------------------
    def summary(self, print_fn=print):
        """Print each layer's output shape and parameter count, and the totals."""
        from backprop.models.summary import summary_text
        print_fn(summary_text(self))

    def save(self, path):
        """Architecture and weights in one file, written atomically (see bp.saving)."""
        from backprop.saving import model_file
        model_file.save_model(self, path)

    def save_weights(self, path):
        from backprop.saving import model_file
        model_file.save_weights(self, path)

    def load_weights(self, path):
        from backprop.saving import model_file
        model_file.load_weights(self, path)
