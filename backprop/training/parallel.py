"""The data-parallel step: each rank trains on its shard of the global batch; one allreduce per step.

The gradient of the batch's mean loss is the sum over shards of (shard size / batch size) times the
shard's own mean-loss gradient, so every rank scales its gradient buffer by its share and the
allreduce sums them: a ragged last batch, or a rank with no example at all, stays exact. The loss and
the predictions are gathered too, so every rank logs the whole batch and all Histories agree.
"""
from backprop.training.step import StepResult
from backprop.xp import np


class DataParallelStep:
    """Wraps a TrainStep (eager or compiled) for the ranks of ``workers`` (backprop.distribute)."""

    def __init__(self, step, workers):
        self.step, self.workers = step, workers
        step.reduce_gradients = self._reduce
        self._share = 1.0
        self._row = None  # the shape and dtype of one prediction, for a rank whose shard is empty

    def __call__(self, x, y, sample_weight=None):
        start, stop = self.workers.shard(len(x))
        self._share = (stop - start) / len(x)
        if stop > start:
            result = self.step(x[start:stop], y[start:stop], None if sample_weight is None else sample_weight[start:stop])
            self._row = (result.y_pred.shape[1:], result.y_pred.dtype)
        else:  # fewer examples than ranks: this one adds zeros, but joins every collective
            params = self.step.model.parameters
            zeros = [np.zeros_like(variable.data) for variable in params.variables]
            result = self.step.update(zeros, np.zeros((), self.step.model.dtype),
                                      np.empty((0,) + self._row[0], self._row[1]))
        y_pred = self.workers.gather_rows(result.y_pred, self.workers.counts(len(x)), *self._row)
        return StepResult(result.loss, y_pred, result.applied)

    def _reduce(self, params, loss):
        """The hook TrainStep calls between its gradients and the update: weighted sums over the ranks."""
        for _, grads in params.groups.values():
            grads *= grads.dtype.type(self._share)
            self.workers.sum_(grads)
        total = np.array([float(loss) * self._share])
        return self.workers.sum_(total)[0]
