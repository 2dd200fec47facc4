"""The data-parallel step: each rank trains on its shard of the global batch; one allreduce per step.

The gradient of the batch's mean loss is the sum over shards of (shard size / batch size) times the
shard's own mean-loss gradient, so every rank scales its gradient buffer by its share and the
allreduce sums them: a ragged last batch, or a rank with no example at all, stays exact. The batch's loss
is summed the same way; the predictions stay on their rank: each rank's metrics count its own shards, and
the trainer adds the ranks' metric states up once an epoch (training/logs.py), so all Histories agree.
"""
from backprop.training.step import StepResult
from backprop.xp import np


class DataParallelStep:
    """Wraps a TrainStep (eager or compiled) for the ranks of ``workers`` (backprop.distribute)."""

    def __init__(self, step, workers):
        self.step, self.workers = step, workers
        self._share = 1.0
        self._row = None  # the shape and dtype of one prediction, for a rank whose shard is empty

    def __call__(self, x, y, sample_weight=None):
        start, stop = self.workers.shard(len(x))
        self._share = (stop - start) / len(x)
        # The hook is set for this call only: the wrapped step is the model's own (kept between fits), and a
        # later train_on_batch must not enter a collective.
        self.step.reduce_gradients = self._reduce
        try:
            result = self._local_step(x[start:stop], y[start:stop],
                                      None if sample_weight is None else sample_weight[start:stop])
        finally:
            self.step.reduce_gradients = None
        return StepResult(result.loss, result.y_pred, result.applied, slice(start, stop))

    def _local_step(self, x, y, sample_weight):
        if len(x):
            result = self.step(x, y, sample_weight)
            self._row = (result.y_pred.shape[1:], result.y_pred.dtype)
            return result
        # fewer examples than ranks: this one adds zeros, but joins every collective
        params = self.step.model.parameters
        zeros = [np.zeros_like(variable.data) for variable in params.variables]
        return self.step.update(zeros, np.zeros((), self.step.model.dtype), np.empty((0,) + self._row[0], self._row[1]))

    def _reduce(self, params, loss):
        """The hook TrainStep calls between its gradients and the update: weighted sums over the ranks."""
        for _, grads in params.groups.values():
            grads *= grads.dtype.type(self._share)
            self.workers.sum_(grads)
        total = np.array([float(loss) * self._share])
        return self.workers.sum_(total)[0]
