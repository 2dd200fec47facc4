"""Running loss and metrics of an epoch, kept as arrays and turned into numbers only when read."""
import copy as copy_module
import weakref
from collections.abc import MutableMapping

from backprop import metrics as metrics_module


class Accumulators:
    """The epoch's loss (weighted by each batch's number of examples, as Keras does) and metrics."""

    def __init__(self, model):
        self.loss = metrics_module.Mean(name="loss")
        self.metrics = model.new_metrics()
        self._handed_out = None  # the last batch's logs, weakly: a callback may keep them

    def update(self, loss, y, y_pred, sample_weight, examples=None):
        """Add a batch (``examples`` in it: the predictions may be one rank's shard of it); returns the logs after
        it, computed when first read (a batch nobody reads costs nothing)."""
        kept = self._handed_out and self._handed_out()
        if kept is not None:  # a callback kept the last batch's logs: they must show that batch, not this one
            kept.materialize()
        self.loss.update_state(loss, len(y_pred) if examples is None else examples)
        for metric in self.metrics:
            metric.update_state(y, y_pred, sample_weight)
        logs = LazyLogs(self.results)
        self._handed_out = weakref.ref(logs)
        return logs

    def all(self):
        """The loss tracker first, then the metrics (the order resume files use)."""
        return [self.loss] + self.metrics

    def results(self, workers=None, same_loss_everywhere=True):
        """The logs; with ``workers`` (MPI ranks, each with its own shards' metrics) those of all ranks."""
        source = self if workers is None else self.merged(workers, same_loss_everywhere)
        return {"loss": source.loss.result(), **{m.name: m.result() for m in source.metrics}}

    def merged(self, workers, same_loss_everywhere=True):
        """A copy whose metrics hold every rank's states added up (a collective: every rank calls it). In
        training the loss is the same on every rank already (each step's loss is summed over the ranks); an
        evaluation, whose ranks take different batches, adds the losses up too."""
        copy = Accumulators.__new__(Accumulators)
        copy._handed_out = None
        copy.loss = self.loss if same_loss_everywhere else _merged(self.loss, workers)
        copy.metrics = [_merged(metric, workers) for metric in self.metrics]
        return copy

    def clear_metrics(self):
        for metric in self.metrics:
            metric.reset_state()


def _merged(metric, workers):
    twin = copy_module.copy(metric)
    twin.set_state(metric.merge_states(metric.get_state(), workers))
    return twin


class LazyLogs(MutableMapping):
    """Batch logs whose values are computed on first access, so a batch no callback reads costs no
    conversion (and, on a GPU, no wait)."""

    def __init__(self, compute):
        self._compute, self._values = compute, None

    def _materialized(self):
        if self._values is None:
            self._values = self._compute()
        return self._values

    materialize = _materialized

    def __getitem__(self, key):
        return self._materialized()[key]

    def __setitem__(self, key, value):
        self._materialized()[key] = value

    def __delitem__(self, key):
        del self._materialized()[key]

    def __iter__(self):
        return iter(self._materialized())

    def __len__(self):
        return len(self._materialized())

    def __repr__(self):
        return repr(self._materialized())
