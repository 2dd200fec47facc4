"""The data-parallel step: each rank trains on its shard of the global batch; the gradients are summed over ranks.

The gradient of the batch's mean loss is the sum over shards of (shard size / batch size) times the
shard's own mean-loss gradient, so every rank scales its gradient buffer by its share and the
allreduce sums them: a ragged last batch, or a rank with no example at all, stays exact. The batch's loss
is summed the same way; the predictions stay on their rank: each rank's metrics count its own shards, and
the trainer adds the ranks' metric states up once an epoch (training/logs.py), so all Histories agree.

The sums overlap the backward pass (as PyTorch's DDP and Horovod do): the gradient buffer is cut into
buckets of whole layers, last layer first, and each bucket's allreduce starts as soon as the reverse pass
has completed every gradient in it (``tape.gradient_ready``), while the earlier layers' gradients are still
being computed.
"""
from backprop import tape as tape_module
from backprop.training.step import StepResult
from backprop.xp import np


class DataParallelStep:
    """Wraps a TrainStep (eager or compiled) for the ranks of ``workers`` (backprop.distribute)."""

    def __init__(self, step, workers):
        self.step, self.workers = step, workers
        self._share = 1.0
        self._row = None  # the shape and dtype of one prediction, for a rank whose shard is empty
        self._buckets = None  # GradientBuckets of the model's parameters (rebuilt when they change)

    def __call__(self, x, y, sample_weight=None):
        start, stop = self.workers.shard(len(x))
        self._share = (stop - start) / len(x)
        buckets = self._buckets_for(self.step.model.parameters)
        # The hooks are set for this call only: the wrapped step is the model's own (kept between fits), and a
        # later train_on_batch must not enter a collective.
        self.step.reduce_gradients = self._reduce
        token = None
        if buckets is not None:
            buckets.begin(self._share)
            token = tape_module.gradient_ready.set((buckets.params.variables, buckets.ready))
        try:
            result = self._local_step(x[start:stop], y[start:stop],
                                      None if sample_weight is None else sample_weight[start:stop])
        finally:
            self.step.reduce_gradients = None
            if token is not None:
                tape_module.gradient_ready.reset(token)
        return StepResult(result.loss, result.y_pred, result.applied, slice(start, stop))

    def _buckets_for(self, params):
        if not self.workers.bucket_bytes or not params.variables:
            return None
        if self._buckets is None or self._buckets.params is not params:
            self._buckets = GradientBuckets(params, self.workers, self.workers.bucket_bytes)
        return self._buckets

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
        buckets = self._buckets if self._buckets is not None and self._buckets.params is params else None
        if buckets is not None:
            buckets.finish()
        else:
            for _, grads in params.groups.values():
                grads *= grads.dtype.type(self._share)
                self.workers.sum_(grads)
        total = np.array([float(loss) * self._share])
        return self.workers.sum_(total)[0]


class GradientBuckets:
    """A model's gradient buffer summed over the ranks in parts, each started once all its gradients are complete.

    Buckets follow the layers backwards (the last layer's gradients are complete first), each a contiguous part
    of one dtype's gradient buffer holding whole layers, at most ``bucket_bytes`` of them (or one layer, if
    larger): a layer's weights are complete together (a Dense op gives its kernel's and its bias's gradients at
    once), so a bucket that took a small bias from the next layer would wait for that layer's whole backward pass.
    They are started in that order on every rank, whatever order the gradients complete in, since MPI needs the
    same order of collectives everywhere. A step is ``begin(share)``, then ``ready`` for each gradient the reverse
    pass completes (it writes the gradient, scaled by the share, into the buffer), then ``finish()`` after the
    gradients were loaded: the remaining ones are scaled, every bucket started, and all waited for.
    """

    def __init__(self, params, workers, bucket_bytes):
        self.params, self.workers = params, workers
        self.views = params.gradient_views()
        self.buckets = []  # (flat part of a gradient buffer, number of variables in it)
        self.bucket_of = [0] * len(params.entries)  # by parameter position
        for index, (dtype, start, stop, positions) in enumerate(_bucket_bounds(params, bucket_bytes)):
            self.buckets.append((params.groups[dtype][1][start:stop], len(positions)))
            for position in positions:
                self.bucket_of[position] = index
        self._missing = self._started = self._requests = self._done = None

    def begin(self, share):
        self.share = share
        self._missing = [count for _, count in self.buckets]
        self._done = [False] * len(self.views)
        self._started, self._requests = 0, []

    def ready(self, position, grad):
        """The reverse pass's callback for a complete gradient: scaled into its place, its bucket started when full."""
        if self._done[position]:  # a second gradient of the same variables within the step: not the step's own
            return grad
        view = self.views[position]
        np.multiply(grad, view.dtype.type(self.share), out=view)
        self._complete(position)
        return view  # the gradient the step loads: already in place, so not copied again

    def _complete(self, position):
        self._done[position] = True
        self._missing[self.bucket_of[position]] -= 1
        while self._started < len(self.buckets) and not self._missing[self._started]:
            self._requests.append(self.workers.start_sum(self.buckets[self._started][0]))
            self._started += 1

    def finish(self):
        """After the gradients were loaded: scale and send those the reverse pass did not hand over, wait for all."""
        for position, done in enumerate(self._done):
            if not done:
                view = self.views[position]
                view *= view.dtype.type(self.share)
                self._complete(position)
        for request in self._requests:
            self.workers.wait(request)
        self._requests = []


def _bucket_bounds(params, bucket_bytes):
    """[(dtype, start, stop, positions)]: whole layers, last first, joined while they are neighbours in one dtype's
    buffer and stay within ``bucket_bytes``."""
    bounds = []
    for layer in _layers_backwards(params):
        dtype, start, stop = params.entries[layer[-1]][2], params.entries[layer[-1]][3], params.entries[layer[0]][4]
        last = bounds[-1] if bounds else None
        if last and last[0] == dtype and stop == last[1] and (last[2] - start) * dtype.itemsize <= bucket_bytes:
            bounds[-1] = (dtype, start, last[2], last[3] + layer)
        else:
            bounds.append((dtype, start, stop, list(layer)))
    return bounds


def _layers_backwards(params):
    """Parameter positions grouped by layer (the name's part before its last '/'), last layer first: runs of
    neighbours in the same dtype's buffer, each listed backwards."""
    layers = []
    for position in reversed(range(len(params.entries))):
        name, _, dtype, _, stop = params.entries[position]
        layer = name.rpartition("/")[0]
        if layers and layer and layers[-1][0] == (layer, dtype) and params.entries[layers[-1][1][-1]][3] == stop:
            layers[-1][1].append(position)
        else:
            layers.append(((layer, dtype), [position]))
    return [positions for _, positions in layers]
