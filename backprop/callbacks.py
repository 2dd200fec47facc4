"""Callbacks hooked into fit/evaluate/predict, with Keras' names and semantics."""
import csv
import itertools
import math
import os
import sys
import time

import numpy

from backprop.user_warnings import warn


class Callback:
    """Override any of the hooks; ``self.model`` is the model being trained."""

    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass


class CallbackList:
    """Calls a hook on every callback in order."""

    def __init__(self, callbacks, model):
        self.callbacks = list(callbacks or [])
        self.begun = []  # the callbacks whose on_train_begin ran: only they are ended
        for callback in self.callbacks:
            callback.set_model(model)

    def on_train_begin(self, logs=None):
        for callback in self.callbacks:
            callback.on_train_begin(logs)
            self.begun.append(callback)

    def on_train_end(self, logs=None):
        for callback in self.begun:
            callback.on_train_end(logs)

    def end_after(self, error, logs=None):
        """``on_train_end`` for each callback that began, while ``error`` ends the training: a callback failing
        to end is a warning, so the error the user sees is the one that stopped training."""
        for callback in self.begun:
            try:
                callback.on_train_end(logs)
            except Exception as also:
                warn(f"{type(callback).__name__}.on_train_end failed too, after {type(error).__name__}: "
                     f"{type(also).__name__}: {also}")

    def __getattr__(self, hook):
        arity = 1 if hook in ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end") else 2

        def call_all(*args):
            args = args + (None,) * (arity - len(args))  # hooks always get their logs argument (Keras)
            for callback in self.callbacks:
                getattr(callback, hook)(*args)
        self.__dict__[hook] = call_all  # made once per hook: fit calls two of them at every batch
        return call_all


class History(Callback):
    """Per-epoch values of the loss and every metric: ``history.history["val_loss"]``."""

    def __init__(self):
        self.history, self.epoch = {}, []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))


def _monitored(callback, logs, strict=False):
    """The monitored value from an epoch's logs; a missing one is warned about (or, ``strict``, an error)
    naming what the logs do hold, so a misspelt monitor never silently disables the callback."""
    logs = logs or {}
    value = logs.get(callback.monitor)
    if value is None:
        hint = " (there is no validation data: pass validation_data or validation_split)" \
            if callback.monitor.startswith("val_") and not any(k.startswith("val_") for k in logs) else ""
        message = (f"{type(callback).__name__}: monitor={callback.monitor!r} is not in the logs{hint}; "
                   f"available: {', '.join(logs) or 'none'}")
        if strict:
            raise ValueError(message)
        warn(message)
    return value


def _monitor_op(monitor, mode):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if any(word in monitor for word in ("acc", "auc", "precision", "recall")) else "min"
    return numpy.less if mode == "min" else numpy.greater


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        self.monitor, self.patience, self.verbose = monitor, patience, verbose
        self.baseline, self.restore_best_weights, self.start_from_epoch = baseline, restore_best_weights, start_from_epoch
        self.monitor_op = _monitor_op(monitor, mode)
        self.min_delta = abs(min_delta) if self.monitor_op is numpy.greater else -abs(min_delta)
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best = math.inf if self.monitor_op is numpy.less else -math.inf
        self.best_weights = None

    def _improves(self, value, reference):
        return bool(self.monitor_op(value - self.min_delta, reference))

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            return
        current = _monitored(self, logs, strict=True)
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def get_state(self):
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best_epoch": self.best_epoch,
                "best": float(self.best), "best_weights": self.best_weights}

    def set_state(self, state):
        from backprop.training.resume import join_arrays
        self.wait, self.stopped_epoch, self.best_epoch = state["wait"], state["stopped_epoch"], state["best_epoch"]
        self.best = state["best"]
        self.best_weights = join_arrays(state, "best_weights") if isinstance(state["best_weights"], dict) else None

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping (best epoch {self.best_epoch + 1})")
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (or weights) after each epoch; ``filepath`` may use ``{epoch}`` and log keys."""

    writes_files = True  # under MPI, rank 0's alone

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto"):
        from backprop.saving.model_file import check_suffix
        self.filepath, self.monitor, self.verbose = check_suffix(os.fspath(filepath), "ModelCheckpoint"), monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.monitor_op = _monitor_op(monitor, mode)
        self.best = math.inf if self.monitor_op is numpy.less else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = _monitored(self, logs)
            if current is None or not math.isfinite(current) or not self.monitor_op(current, self.best):
                return
            self.best = current
        if self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        self._save(path)

    def get_state(self):
        return {"best": float(self.best)}

    def set_state(self, state):
        self.best = state["best"]

    def _save(self, path):
        (self.model.save_weights if self.save_weights_only else self.model.save)(path)


class TerminateOnNaN(Callback):
    """Stop at the first batch whose loss is NaN or infinite, before its update is applied.

    By default training ends gracefully (``on_train_end`` runs, checkpoints stay); with
    ``raise_error=True`` a FloatingPointError naming the epoch and batch is raised instead.
    ``stopped_at`` says where it stopped (epoch, batch, loss), or is None.
    """

    guards_updates = True  # the training loop checks each batch's loss before applying its update

    def __init__(self, raise_error=False):
        self.raise_error = raise_error
        self.stopped_at = None
        self.epoch = 0

    def on_train_begin(self, logs=None):
        self.stopped_at = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        self.stopped_at = {"epoch": self.epoch + 1, "batch": batch + 1, "loss": loss}
        message = f"TerminateOnNaN: loss became {loss} at epoch {self.epoch + 1}, batch {batch + 1}"
        from backprop.tools import diagnose_divergence
        history = getattr(getattr(self.model, "history", None), "history", {}).get("loss", [])
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            message += f" ({diagnose_divergence(list(history) + [loss], optimizer.learning_rate)})"
        if self.raise_error:
            raise FloatingPointError(f"{message}; the update was not applied")
        print(f"{message}; stopping before applying that update")
        self.model.stop_training = True


class BackupAndRestore(Callback):
    """Back the run up to ``directory`` so that a killed or interrupted ``fit`` resumes exactly.

    ``save_freq="epoch"`` backs up after every epoch, an integer N every N batches. Run the same
    ``fit`` again with the same callback and it continues from the last backup: same weights,
    optimizer state, random state, batch order and history as if it had never stopped. A
    successful finish deletes the backup; Ctrl-C during fit saves one and raises KeyboardInterrupt.
    The previous backup is kept too, and used if the latest one is damaged. The training loop
    decides when to save and what (backprop.training.resume); this object stores it.
    """

    def __init__(self, directory, save_freq="epoch", delete_checkpoint=True):
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"save_freq must be 'epoch' or a positive number of batches, got {save_freq!r}")
        self.directory, self.save_freq, self.delete_checkpoint = os.fspath(directory), save_freq, delete_checkpoint
        self.latest = os.path.join(self.directory, "backup.bp")
        self.previous = os.path.join(self.directory, "backup.prev.bp")

    def load(self):
        """(tensors, metadata) of the newest readable backup, or None when there is none; when backups exist
        but none can be read, an error says so rather than silently starting over."""
        import json
        from backprop.saving import tensor_file
        from backprop.training.resume import ResumeError
        found = [path for path in (self.latest, self.previous) if os.path.exists(path)]
        for path in found:
            try:
                tensors, metadata = tensor_file.read(path, allow_nonfinite=True)
                if metadata.get("format") == "backprop.backup" and isinstance(json.loads(metadata["state"]), dict) \
                        and metadata.get("checksum", _checksum(tensors, metadata)) == _checksum(tensors, metadata):
                    return tensors, metadata
            except (tensor_file.FileFormatError, OSError, KeyError, ValueError):
                pass  # damaged or foreign: fall back to the previous backup
        if found:
            raise ResumeError(f"every backup in '{self.directory}' is damaged ({', '.join(map(os.path.basename, found))}); "
                              "delete the directory to start over")
        return None

    def save(self, tensors, metadata):
        """Write a backup atomically, keeping the one before as the previous backup."""
        from backprop.saving import tensor_file
        os.makedirs(self.directory, exist_ok=True)
        if os.path.exists(self.latest):
            os.replace(self.latest, self.previous)
        tensor_file.write(self.latest, tensors, {**metadata, "checksum": _checksum(tensors, metadata)})

    def finish(self):
        """The run completed: delete the backups (unless ``delete_checkpoint=False``)."""
        if self.delete_checkpoint:
            for path in (self.latest, self.previous):
                if os.path.exists(path):
                    os.remove(path)


def _checksum(tensors, metadata):
    """SHA-256 of a backup's arrays and state: a flipped bit anywhere makes the backup count as damaged (the
    previous one is used), where the file format alone would load the wrong numbers."""
    import hashlib
    digest = hashlib.sha256()
    for name in sorted(tensors):
        array = numpy.ascontiguousarray(tensors[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    for key in sorted(k for k in metadata if k != "checksum"):
        digest.update(f"{key}={metadata[key]}".encode())
    return digest.hexdigest()


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch start to ``schedule(epoch, lr)``."""

    def __init__(self, schedule, verbose=0):
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        optimizer.learning_rate = float(self.schedule(epoch, optimizer.learning_rate))
        if self.verbose:
            print(f"Epoch {epoch + 1}: learning rate {optimizer.learning_rate:g}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.model.optimizer.learning_rate


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be < 1, got {factor}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
        self.monitor_op = _monitor_op(monitor, mode)
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.wait, self.cooldown_counter = 0, 0
        self.best = math.inf if self.monitor_op is numpy.less else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(self, logs)
        if current is None:
            return
        delta = -self.min_delta if self.monitor_op is numpy.less else self.min_delta
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.monitor_op(current - delta, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = self.model.optimizer.learning_rate
                new = max(old * self.factor, self.min_lr)
                if new < old:
                    self.model.optimizer.learning_rate = new
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: reducing learning rate to {new:g}")
                self.cooldown_counter, self.wait = self.cooldown, 0

    def get_state(self):
        return {"wait": self.wait, "cooldown_counter": self.cooldown_counter, "best": float(self.best)}

    def set_state(self, state):
        self.wait, self.cooldown_counter, self.best = state["wait"], state["cooldown_counter"], state["best"]


class CSVLogger(Callback):
    """Append one row per epoch to a CSV file, as Keras 3 writes it: the epoch, then every log key in sorted
    order. When the first epoch has no ``val_`` keys, ``val_`` columns for each key are added all the same
    (validation may start later); a value an epoch lacks is written ``NA``. With ``append``, the header is
    written only when the file is missing or empty."""

    writes_files = True  # under MPI, rank 0's alone

    def __init__(self, filename, separator=",", append=False):
        self.filename, self.separator, self.append = os.fspath(filename), separator, append

    def on_train_begin(self, logs=None):
        self.keys = self.writer = None
        self.needs_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as existing:
                self.needs_header = not existing.readline()
        self.file = open(self.filename, "a" if self.append else "w", newline="")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.writer is None:
            self.keys = sorted(logs)
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys += [f"val_{key}" for key in self.keys]
            self.writer = csv.writer(self.file, delimiter=self.separator)
            if self.needs_header:
                self.writer.writerow(["epoch"] + self.keys)
        self.writer.writerow([epoch] + [logs.get(key, "NA") for key in self.keys])
        self.file.flush()

    def on_train_end(self, logs=None):
        self.file.close()


_event_files = itertools.count()


class TensorBoard(Callback):
    """Write TensorBoard event files: Keras' layout (``log_dir/train`` and ``log_dir/validation``) and tags
    (``epoch_loss``, ``epoch_accuracy``, ``epoch_learning_rate``; ``batch_loss`` with ``update_freq``).

    ``histogram_freq`` (epochs between weight histograms, 0 for none) defaults to 1 here, where Keras' is 0:
    the models trained with backprop are small enough for it to cost little. ``update_freq`` is "epoch",
    "batch" or a number of batches. Needs tensorboardX (``pip install 'backprop[tensorboard]'``).
    """

    writes_files = True  # under MPI, rank 0's alone

    def __init__(self, log_dir="logs", histogram_freq=1, update_freq="epoch"):
        if update_freq != "epoch" and update_freq != "batch" and not (
                isinstance(update_freq, int) and not isinstance(update_freq, bool) and update_freq > 0):
            raise ValueError(f"TensorBoard: update_freq must be 'epoch', 'batch' or a positive number of batches, "
                             f"got {update_freq!r}")
        if isinstance(histogram_freq, bool) or not isinstance(histogram_freq, int) or histogram_freq < 0:
            raise ValueError(f"TensorBoard: histogram_freq must be a whole number of epochs >= 0, got {histogram_freq!r}")
        try:
            import tensorboardX  # noqa: F401 - fail at construction, not after the first epoch
        except ImportError:
            raise ImportError("TensorBoard logs need tensorboardX: pip install 'backprop[tensorboard]'") from None
        self.log_dir, self.histogram_freq = os.fspath(log_dir), histogram_freq
        self.batch_every = 1 if update_freq == "batch" else None if update_freq == "epoch" else update_freq
        self._writers, self._batches = {}, 0

    def _writer(self, which):
        if which not in self._writers:
            from tensorboardX import SummaryWriter
            # tensorboardX names a file by the second it opens: a second writer within that second (the next
            # fit) would truncate the first's file, without a suffix of its own
            suffix = f".{os.getpid()}.{next(_event_files)}"
            self._writers[which] = SummaryWriter(os.path.join(self.log_dir, which), filename_suffix=suffix)
        return self._writers[which]

    def on_train_begin(self, logs=None):
        self._batches = getattr(self.model.optimizer, "iterations", 0) if self.model is not None else 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.batch_every and self._batches % self.batch_every == 0 and logs:
            for key, value in logs.items():
                self._writer("train").add_scalar(f"batch_{key}", float(value), self._batches)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            which, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._writer(which).add_scalar(f"epoch_{name}", float(value), epoch)
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not (logs and "learning_rate" in logs):
            self._writer("train").add_scalar("epoch_learning_rate", optimizer.learning_rate, epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            from backprop.layers.layer import weight_paths
            for path, variable in weight_paths(self.model, unique=False):
                self._writer("train").add_histogram(f"{path}/histogram", variable.numpy(), epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class LambdaCallback(Callback):
    """A callback from functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, **hooks):
        for name, fn in hooks.items():
            if not hasattr(Callback, name):
                raise ValueError(f"LambdaCallback: unknown hook {name!r}")
            setattr(self, name, fn)


def interactive(stream):
    """Whether ``stream`` shows a redrawn line as one line: a terminal, or a notebook's output."""
    isatty = getattr(stream, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except ValueError:  # a closed stream
        return False
    return "ipykernel" in sys.modules


class ProgressBar(Callback):
    """verbose=1: a live per-epoch bar with ETA and running metrics (tqdm); verbose=2: a line per epoch.
    A live bar needs a terminal or a notebook: written into a file or a pipe (a log, CI) its every redraw
    would stay in the text, so there verbose=1 writes a line per epoch too (``live=True`` draws it anyway)."""

    def __init__(self, epochs, steps, verbose=1, stream=None, live=None):
        self.epochs, self.steps, self.verbose = epochs, steps, verbose
        self.stream = stream or sys.stdout
        self.bar = None
        if verbose == 1:
            try:
                import tqdm  # noqa: F401
            except ImportError:
                self.verbose = 2  # tqdm is optional: fall back to one line per epoch
            if not (interactive(self.stream) if live is None else live):
                self.verbose = 2

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
        if self.verbose == 1:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.steps, desc=f"Epoch {epoch + 1}/{self.epochs}", unit="batch",
                            file=self.stream, leave=True, dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(1)
            # running metrics every 5 batches on the CPU; on a device they would make the loop wait for it
            # (a host read) at every 5th step, so there they appear once per epoch
            if (batch % 5 == 0 or batch == self.steps - 1) and self._on_host() and logs:
                self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)

    def _on_host(self):
        from backprop import devices
        return getattr(self, "model", None) is None or self.model.device is devices.CPU

    def on_epoch_end(self, epoch, logs=None):
        text = " - ".join(f"{k}: {v:.4f}" for k, v in (logs or {}).items())
        if self.bar is not None:
            self.bar.set_postfix_str(text)
            self.bar.close()
            self.bar = None
        elif self.verbose == 2:
            seconds = time.perf_counter() - self.start
            print(f"Epoch {epoch + 1}/{self.epochs} - {seconds:.2f}s - {text}", file=self.stream, flush=True)
