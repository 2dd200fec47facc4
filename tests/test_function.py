"""bp.function: TensorFlow's tf.function contract. Replays equal eager execution to the last bit; what a
recording cannot replay is an error at trace time that names the line."""
import tracemalloc

import numpy as np
import pytest

import backprop as bp
from backprop.tracing import TraceError

pytestmark = pytest.mark.usefixtures("each_device_slow")  # on every device (others: slow)

rng = np.random.default_rng(0)
X = rng.normal(size=(32, 4)).astype(np.float32)
Y = (X[:, :1] - X[:, 1:2] > 0).astype(np.float32)


def setup(optimizer=lambda: bp.optimizers.Adam(0.01)):
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Dense(8, activation="relu", input_shape=(4,)), bp.layers.Dropout(0.3),
                           bp.layers.Dense(1)])
    return model, optimizer(), bp.losses.BinaryCrossentropy(from_logits=True), bp.metrics.BinaryAccuracy(threshold=0.0)


def fresh_batches(count=12, rows=8):
    """A different batch for every step (made here: on the test's device), so a replay that kept its first
    inputs would compute other values than eager execution."""
    data = np.random.default_rng(1).normal(size=(count, rows, 4)).astype(np.float32)
    return [(bp.Tensor(x), bp.Tensor((x[:, :1] - x[:, 1:2] > 0).astype(np.float32))) for x in data]


def run_both(make_step, steps=12, batches=None):
    """The same training eagerly and through bp.function, from the same seed: (eager, compiled) results."""
    batches = batches or fresh_batches(steps)
    results = []
    for compiled in (False, True):
        model, optimizer, loss_fn, metric = setup()
        step = make_step(model, optimizer, loss_fn, metric)
        step = bp.function(step) if compiled else step
        outputs = [step(*batches[i % len(batches)]) for i in range(steps)]
        results.append((model, optimizer, metric, outputs, step))
    (eager, eager_opt, eager_metric, eager_out, _), (model, optimizer, metric, out, step) = results
    for a, b in zip(eager.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(eager_opt.get_state().values(), optimizer.get_state().values()):
        np.testing.assert_array_equal(a, b)
    assert eager_metric.result() == metric.result()
    return eager_out, out, step


def lecture_step(model, optimizer, loss_fn, metric):
    def train_step(x, y):
        with bp.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(y, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        metric.update_state(y, logits)
        return loss
    return train_step


def test_the_lecture_training_step_replays_bit_for_bit():
    eager, compiled, step = run_both(lecture_step)
    assert [float(v) for v in eager] == [float(v) for v in compiled]
    assert step.experimental_get_tracing_count() == 1 and isinstance(compiled[-1], bp.Tensor)


def test_ops_on_gradients_persistent_tapes_and_several_outputs():
    def make(model, optimizer, loss_fn, metric):
        def train_step(x, y):
            with bp.GradientTape(persistent=True) as tape:
                tape.watch(x)
                logits = model(x, training=True)
                loss = loss_fn(y, logits)
                penalty = bp.ops.mean(bp.ops.square(logits))
            grads = tape.gradient(loss, model.trainable_variables)
            extra = tape.gradient(penalty, model.trainable_variables)
            saliency = tape.gradient(loss, x)
            grads = [bp.ops.clip(g + 0.1 * e, -0.05, 0.05) for g, e in zip(grads, extra)]
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return {"loss": loss, "saliency": saliency, "pair": (penalty, None)}
        return train_step
    eager, compiled, _ = run_both(make)
    for a, b in zip(eager, compiled):
        np.testing.assert_array_equal(a["saliency"].numpy(), b["saliency"].numpy())
        assert float(a["loss"]) == float(b["loss"]) and b["pair"][1] is None


def test_a_new_signature_traces_again_and_the_cache_is_bounded():
    model, optimizer, loss_fn, metric = setup()
    step = bp.function(lecture_step(model, optimizer, loss_fn, metric), max_signatures=2)
    for size in (32, 32, 16, 16, 8, 32):
        step(X[:size], Y[:size])
    assert step.experimental_get_tracing_count() == 4 and step.cache_size == 2  # 32, 16, 8, then 32 again

    @bp.function
    def scaled(x, factor):
        return x * factor
    assert float(scaled(bp.Tensor(2.0), 3)) == 6 and float(scaled(bp.Tensor(2.0), 4)) == 8
    assert scaled.experimental_get_tracing_count() == 2  # a new Python value traces again, as in TensorFlow


def test_variable_writes_are_replayed():
    counter = bp.Variable(0.0, trainable=False)
    total = bp.Variable(np.zeros(4, np.float32), trainable=False)

    @bp.function
    def accumulate(x):
        counter.assign_add(1.0)
        total.assign_add(bp.ops.sum(x, axis=0))
        return bp.ops.mean(x)

    for _ in range(5):
        accumulate(X)
    assert float(counter.numpy()) == 5
    np.testing.assert_allclose(total.numpy(), 5 * X.sum(axis=0), rtol=1e-5)


def reads_numpy(x):
    return bp.Tensor(x.numpy() * 2)


def branches(x):
    return bp.ops.relu(x) if bp.ops.sum(x) > 0 else x


def returns_a_float(x):
    return 2.0


@pytest.mark.parametrize("fn, message", [
    (reads_numpy, r"reads a tensor's values in Python at .*test_function.py:\d+"),
    (branches, r"reads a tensor's values in Python at .*test_function.py:\d+"),
    (returns_a_float, "returned float 2.0"),
])
def test_what_cannot_be_replayed_is_an_error_at_trace_time(fn, message):
    with pytest.raises(TraceError, match=message):
        bp.function(fn)(X)


def replay_memory_growth(replays):
    model, optimizer, loss_fn, metric = setup()
    step = bp.function(lecture_step(model, optimizer, loss_fn, metric))
    for _ in range(2000):  # Python's free lists and NumPy's caches settle first
        step(X, Y)
    tracemalloc.start()
    for _ in range(200):
        step(X, Y)
    settled = tracemalloc.get_traced_memory()[0]
    for _ in range(replays):
        step(X, Y)
    grown = tracemalloc.get_traced_memory()[0] - settled
    tracemalloc.stop()
    return grown


@pytest.mark.slow
def test_replays_do_not_grow_memory():
    assert replay_memory_growth(1000) < 1000


@pytest.mark.slow
def test_ten_thousand_replays_do_not_grow_memory():
    assert replay_memory_growth(10_000) < 1000


def test_constant_ops_replay_and_pass_check_numerics():
    """argmax, one_hot and comparisons record no gradient but are replayed (and checked) like any op."""
    @bp.function
    def summary(x):
        classes = bp.ops.one_hot(bp.ops.argmax(x), 4)
        return classes, bp.ops.greater(x, 0.0)

    values = rng.normal(size=(6, 4)).astype(np.float32)
    for _ in range(3):
        classes, positive = summary(bp.Tensor(values))
    assert summary.experimental_get_tracing_count() == 1
    np.testing.assert_array_equal(classes.numpy(), np.eye(4)[values.argmax(-1)])
    np.testing.assert_array_equal(positive.numpy(), values > 0)
    with bp.debug.check_numerics():
        np.testing.assert_array_equal(bp.ops.argmin(bp.Tensor(values)).numpy(), values.argmin(-1))
