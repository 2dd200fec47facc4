"""The gradients' allreduce overlapped with the backward pass (training/parallel.py), in one process: a stand-in
for the MPI ranks records when each bucket's sum starts. Real mpiexec jobs: test_distributed.py."""
import numpy as np
import pytest

import backprop as bp
from backprop.training.parallel import DataParallelStep, GradientBuckets
from backprop.training.step import TrainStep
from backprop.training.compiled import CompiledTrainStep


class OneRank:
    """The collectives of a job of one rank (sums are the identity), recording each bucket's start."""
    rank, size = 0, 1

    def __init__(self, bucket_bytes):
        self.bucket_bytes, self.started, self.waited = bucket_bytes, [], 0
        self.buckets = None  # the GradientBuckets whose progress each start records

    def shard(self, n):
        return 0, n

    def start_sum(self, array):
        done = list(self.buckets._done) if self.buckets is not None else None
        self.started.append((array.size, done))
        return array

    def wait(self, request, what=None):
        self.waited += 1

    def sum_(self, array):
        return array


def model_and_data(dtype="float32"):
    bp.random.set_seed(3)
    model = bp.Sequential([bp.layers.Dense(32, activation="relu", input_shape=(20,), dtype=dtype),
                           bp.layers.Dense(16, activation="tanh", dtype=dtype), bp.layers.Dense(4, dtype=dtype)])
    model.compile(optimizer=bp.optimizers.Adam(0.01), loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(64, 20)).astype(dtype), rng.integers(0, 4, size=64)


def train(step_type, bucket_bytes, steps=6):
    model, x, y = model_and_data()
    workers = OneRank(bucket_bytes)
    step = DataParallelStep(step_type(model), workers)
    losses = []
    for k in range(steps):
        rows = slice(8 * k, 8 * k + 8)  # fresh batches: a replay that ignored its inputs would show
        if step._buckets is not None:
            workers.buckets = step._buckets
        losses.append(float(step(x[rows], y[rows]).loss))
        workers.buckets = step._buckets
    if step_type is CompiledTrainStep:
        assert step.step.replays == steps - 2 and step.step.fallback is None
    return model, losses, workers


@pytest.mark.parametrize("step_type", [TrainStep, CompiledTrainStep])
def test_overlapped_sums_train_bit_for_bit_as_one_sum_after_the_backward_pass(step_type):
    model, losses, workers = train(step_type, 1)
    reference, reference_losses, one_sum = train(step_type, 0)
    assert losses == reference_losses
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(workers.started) == 6 * 3 and len(one_sum.started) == 0  # a bucket per layer; one sum_ per dtype


@pytest.mark.parametrize("step_type", [TrainStep, CompiledTrainStep])
def test_the_last_layer_s_sum_starts_before_the_first_layer_s_gradient_is_computed(step_type):
    model, _, workers = train(step_type, 1, steps=4)
    last_step = workers.started[-3:]
    assert [size for size, _ in last_step] == [16 * 4 + 4, 32 * 16 + 16, 20 * 32 + 32]  # layers, backwards
    assert last_step[0][1] == [False, False, False, False, True, True]  # only the last layer's were complete
    assert last_step[1][1] == [False, False, True, True, True, True]  # the second layer's went before the first's


def test_buckets_hold_whole_layers_up_to_their_size_and_follow_the_layers_backwards():
    """A bucket never takes a small bias from the next layer: it would wait for that layer's whole backward pass."""
    model, x, y = model_and_data()
    model.train_on_batch(x[:8], y[:8])
    params = model.parameters
    two_layers = (16 * 4 + 4 + 32 * 16 + 16) * 4
    for size, expected in [(two_layers, [596, 672]), (two_layers + 32 * 4, [596, 672]), (10**6, [596 + 672])]:
        buckets = GradientBuckets(params, OneRank(0), bucket_bytes=size)
        assert [part.size for part, _ in buckets.buckets] == expected
    grads = params.groups[np.dtype("float32")][1]
    assert np.shares_memory(buckets.buckets[0][0], grads)  # views, no copies


def test_a_gradient_the_backward_pass_never_reaches_is_still_summed_as_zero():
    bp.random.set_seed(0)
    inputs = bp.layers.Input(shape=(3,))
    used, unused = bp.layers.Dense(2), bp.layers.Dense(2)
    model = bp.Model(inputs, used(inputs))
    model.unused = unused
    unused.build((None, 3))
    model.compile(optimizer="sgd", loss="mse")
    workers = OneRank(1)
    step = DataParallelStep(TrainStep(model), workers)
    with pytest.warns(UserWarning, match="no gradient"):
        step(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32))
    assert sum(size for size, _ in workers.started) == sum(v.size for v in model.parameters.variables) == 16


def test_a_model_of_two_dtypes_sums_each_dtype_s_buffer_in_its_own_buckets():
    def build(bucket_bytes):
        bp.random.set_seed(1)
        model = bp.Sequential([bp.layers.Dense(8, activation="tanh", input_shape=(5,)),
                               bp.layers.Dense(6, dtype="float64"), bp.layers.Dense(3)])
        model.compile(optimizer="adam", loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True))
        workers = OneRank(bucket_bytes)
        step = DataParallelStep(CompiledTrainStep(model), workers)
        rng = np.random.default_rng(2)
        for k in range(5):
            step(rng.normal(size=(16, 5)).astype(np.float32), rng.integers(0, 3, 16))
        return model, step
    (model, step), (reference, _) = build(10**6), build(0)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    parts = [part for part, _ in step._buckets.buckets]
    assert [part.dtype for part in parts] == [np.float32, np.float64, np.float32]  # layers backwards
    assert sum(part.size for part in parts) == model.count_params()
