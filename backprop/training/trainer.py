"""The training loop: epochs of shuffled batches through a TrainStep, with logs, callbacks and backups.

A Trainer lives for one ``fit`` and keeps nothing on the model but what Keras keeps
(``model.history``, ``model.stop_training``). Callbacks steer it only through that public
contract: the logs, ``model.stop_training``, the model's weights and the optimizer's
attributes. A TerminateOnNaN in the list asks the step to refuse non-finite updates; a
BackupAndRestore is the loop's backup store. ``on_train_end`` runs whatever happens.
"""
import math

import numpy

from backprop import callbacks as callbacks_module, devices, distribute, random
from backprop.devices import memory_errors
from backprop.tensor import to_host
from backprop.training import data
from backprop.training.interrupts import deferred_interrupts
from backprop.training.logs import Accumulators
from backprop.training import compiled, parallel, threads
from backprop.training.step import test_step
from backprop.user_warnings import warn


class Trainer:
    """Runs ``fit`` for one model: ``Trainer(model).fit(x, y, ...)`` is what ``model.fit`` does."""

    def __init__(self, model, step=None):
        self.model = model
        self.step = step
        self.epoch = self.batch = 0
        self.order = None          # this epoch's shuffled example order (None without shuffling)
        self.accumulators = None
        self.fingerprint = None    # of model, data and batch size, when backing up
        self.callbacks = []        # the user's callbacks (their states go into backups)
        self.steps_per_epoch = None
        self.history = None
        self.completed = False
        self.logs = None           # the last epoch's logs
        self.workers = None        # the MPI ranks training together (backprop.distribute), or None

    def fit(self, x, y=None, batch_size=32, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, allow_nonfinite=False):
        model = self.model
        model.check_compiled("fit")
        epochs = data.whole_number("epochs", epochs)
        initial_epoch = data.whole_number("initial_epoch", initial_epoch)
        x, y, sample_weight = data.prepare(model, x, y, sample_weight)
        if not allow_nonfinite:
            data.check_finite("x", x)
            data.check_finite("y", y)
        if class_weight is not None:
            sample_weight = data.class_weights(y, class_weight, sample_weight, model.dtype)
        if validation_data is None and validation_split:
            (x, y, sample_weight), validation = data.split_validation([x, y, sample_weight], validation_split)
            validation_data = tuple(v for v in validation if v is not None)
        batch_size = data.check_batch_size(batch_size, len(x))
        self.steps_per_epoch = data.check_steps(steps_per_epoch, math.ceil(len(x) / batch_size))
        self.callbacks = list(callbacks or [])
        if not model.built:  # the weights are drawn before any shuffled order, in one process as on MPI ranks
            model.predict(x[:1])
        x = data.resident(model, x)
        if validation_data is not None:
            validation_data = (data.resident(model, validation_data[0]),) + tuple(validation_data[1:])
        self.workers = distribute.current()
        if self.workers is not None:
            verbose = self._join_workers(x, batch_size, verbose)
        self.history = model.history = callbacks_module.History()
        hooks = self._hooks(epochs, self.steps_per_epoch, verbose)
        backup = next((c for c in self.callbacks if isinstance(c, callbacks_module.BackupAndRestore)), None)
        if self.step is None:
            guard = any(getattr(c, "guards_updates", False) for c in self.callbacks)
            self.step = compiled.train_step(model, guard_nonfinite=guard)
            if self.workers is not None:
                self.step = parallel.DataParallelStep(self.step, self.workers)
        model.stop_training = False
        self.epoch, self.batch = initial_epoch, 0
        try:
            hooks.on_train_begin()
            if backup is not None:
                self._resume(backup, x, y, batch_size)
            with random.using(model._generator), deferred_interrupts(backup is not None) as interrupted, memory_errors("fit", batch_size), \
                    threads.blas_threads(threads.threads_for(threads.dense_flops(model, batch_size))), \
                    numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a blow-up: _diagnose
                self._epochs(x, y, sample_weight, batch_size, epochs, shuffle, validation_data, hooks, backup,
                             interrupted)
            self.completed = True
            self._diagnose()
        except BaseException as error:
            hooks.end_after(error, self.logs)
            raise
        hooks.on_train_end(self.logs)
        if backup is not None and distribute.is_main():
            backup.finish()
        return self.history

    def _diagnose(self):
        """A loss that became NaN or infinite, or grew by orders of magnitude, ends the fit with a diagnosis (in
        place of NumPy's overflow warnings, which point inside backprop)."""
        from backprop.tools import diagnose_divergence
        losses = self.history.history.get("loss", [])
        if any(getattr(c, "guards_updates", False) for c in self.callbacks):
            return  # TerminateOnNaN says it itself, with the batch it stopped at
        if losses:
            diagnosis = diagnose_divergence(losses, self.model.optimizer.learning_rate)
            if diagnosis:
                warn(f"fit: {diagnosis}")

    def _join_workers(self, x, batch_size, verbose):
        """Under MPI: one model everywhere (rank 0's weights), and only rank 0 prints and writes files."""
        workers, model = self.workers, self.model
        if len(x) < workers.size or batch_size < workers.size:
            raise distribute.WorkersError(f"fit on {workers.size} workers needs at least {workers.size} training examples and a "
                             f"batch_size of at least {workers.size} (the global batch is split across them); got "
                             f"{len(x)} examples and batch_size {batch_size}")
        for variable in model.variables:
            workers.broadcast_(variable.data)
        if not distribute.is_main():
            return 0
        return verbose

    def _hooks(self, epochs, steps, verbose):
        callbacks = self.callbacks
        if not distribute.is_main():  # files are written by rank 0 alone; backups are saved by it (see _save)
            callbacks = [c for c in callbacks if not getattr(c, "writes_files", False)]
        hooks = callbacks + [self.history]  # History after the user's: it records what they add to logs
        verbose = 1 if verbose == "auto" else verbose
        if verbose:
            hooks.append(callbacks_module.ProgressBar(epochs, steps, verbose))
        return callbacks_module.CallbackList(hooks, self.model)

    def _resume(self, backup, x, y, batch_size):
        from backprop.training import resume
        model = self.model
        if not model.built:
            model.predict(x[:1])
        self.fingerprint = resume.fingerprint(model, x, y, batch_size)
        if self.workers is None:
            saved = backup.load()
        else:  # rank 0 reads the backup it wrote (on its own disk) and sends it to every rank
            saved = resume.shared(self.workers, backup.load() if distribute.is_main() else None)
        if saved is not None:
            resume.restore(self, *saved)
            if self.workers is not None and not distribute.is_main():
                self.accumulators.clear_metrics()  # the saved metrics count every rank's shards: on rank 0 alone

    def _epochs(self, x, y, sample_weight, batch_size, epochs, shuffle, validation_data, hooks, backup, interrupted):
        model = self.model
        while self.epoch < epochs:
            hooks.on_epoch_begin(self.epoch)
            if self.batch == 0:  # a fresh epoch (a resumed one keeps its order and running metrics)
                self.order = random.generator().permutation(len(x)) if shuffle else None
                if self.order is not None and self.workers is not None:
                    self.workers.broadcast_(self.order)  # rank 0's order everywhere
                self.accumulators = Accumulators(model)
            all_applied = self._train_epoch(x, y, sample_weight, batch_size, hooks, backup, interrupted)
            logs = self.accumulators.results(self.workers)  # under MPI: every rank's metrics added up, once
            if validation_data is not None:
                logs.update({f"val_{k}": v for k, v in
                             evaluate_logs(model, *validation_data, batch_size=batch_size).items()})
            hooks.on_epoch_end(self.epoch, logs)
            self.logs = logs
            self.epoch, self.batch, self.order = self.epoch + 1, 0, None
            if backup is not None and backup.save_freq == "epoch" and all_applied:
                self._save(backup)  # after every callback's on_epoch_end, so their state is current
            if model.stop_training:
                break

    def _train_epoch(self, x, y, sample_weight, batch_size, hooks, backup, interrupted):
        """Batches from ``self.batch`` on; False when a non-finite update was refused."""
        model, accumulators = self.model, self.accumulators
        batches = list(data.batches(len(x), batch_size, self.order))[:self.steps_per_epoch]
        x_batches = batches  # inputs resident on a device take their batches there, with the order sent once
        if self.order is not None and type(x) is not numpy.ndarray:
            x_batches = list(data.batches(len(x), batch_size, devices.of(x).to_device(self.order)))
        while self.batch < len(batches):
            index = batches[self.batch]
            hooks.on_train_batch_begin(self.batch)
            yb, wb = y[index], data.take(sample_weight, index)
            result = self.step(x[x_batches[self.batch]], yb, wb)  # the step moves a host batch to the model's device
            examples = len(yb)
            if result.rows is not None:  # a rank's predictions: its shard's labels for its metrics
                yb, wb = yb[result.rows], None if wb is None else wb[result.rows]
            # (the logs are not kept here: a batch's logs that nobody keeps are never computed)
            hooks.on_train_batch_end(self.batch, accumulators.update(result.loss, yb, result.y_pred, wb, examples))
            self.batch += 1
            if not result.applied:
                return False
            if model.stop_training:  # Keras 3 checks after every batch: a callback can end an epoch early
                break
            scheduled = backup is not None and backup.save_freq != "epoch" and \
                model.optimizer.iterations % backup.save_freq == 0  # (the same batch on every rank)
            if scheduled or backup is not None and interrupted() and self.workers is None:
                self._save(backup)
            if backup is not None and interrupted():
                raise KeyboardInterrupt(f"training interrupted at epoch {self.epoch + 1}, batch {self.batch}; "
                                        + _where_to_resume(backup, saved=scheduled or self.workers is None))
            if model.stop_training:
                break
        return True

    def _save(self, backup):
        """Write a backup (rank 0); under MPI every rank calls it at the same batch: the metrics are merged first."""
        from backprop.training import resume
        if self.workers is None:
            backup.save(*resume.capture(self))
            return
        local, self.accumulators = self.accumulators, self.accumulators.merged(self.workers)  # (every rank joins)
        try:
            if distribute.is_main():  # the backup holds the metrics of every rank's shards so far
                backup.save(*resume.capture(self))
        finally:
            self.accumulators = local


def _where_to_resume(backup, saved):
    if saved:
        return f"a backup is in {backup.directory}: run the same fit again to resume"
    # under MPI a Ctrl-C reaches the ranks at different batches: a backup made by one rank alone would meet the
    # others in no collective (its metrics' merge against their next allreduce), so none is made here
    return (f"the last backup the ranks made together is in {backup.directory}: run the same fit again to resume "
            "from it")


def evaluate_logs(model, x, y, sample_weight=None, batch_size=32, what="validation"):
    """Loss and metrics over (x, y) in inference mode, as Python floats. Under MPI each rank evaluates a
    contiguous share of the batches and the ranks add their running states up once, at the end."""
    x, y, sample_weight = data.prepare(model, x, y, sample_weight, what)
    batch_size = data.check_batch_size(batch_size, len(x))
    accumulators = Accumulators(model)
    batches = list(data.batches(len(x), batch_size))
    workers = distribute.current()
    if workers is not None:
        share = workers.counts(len(batches))
        first = sum(share[:workers.rank])
        batches = batches[first:first + share[workers.rank]]
    for index in batches:
        yb, wb = y[index], data.take(sample_weight, index)
        loss, y_pred = test_step(model, x[index], yb, wb)
        accumulators.update(loss, yb, y_pred, wb)
    return accumulators.results(workers, same_loss_everywhere=False)


def predict(model, x, batch_size=32):
    """Model outputs as a NumPy array, batch by batch, in inference mode."""
    from backprop.tape import no_grad
    x = data.features(x, model.dtype, example_shape=model.example_shape)
    batch_size = data.check_batch_size(batch_size, len(x))
    with no_grad(), memory_errors("predict", batch_size):
        if len(x) == 0:  # an empty batch keeps the output's shape: (0, units)
            return to_host(model(data.to_model_device(model, x)[0], training=False).data)
        return numpy.concatenate([to_host(model(data.to_model_device(model, x[index])[0], training=False).data)
                                  for index in data.batches(len(x), batch_size)])
