"""Compiled training steps: replays give bit for bit what eager training gives, and what cannot be replayed
trains eagerly with one warning."""
import warnings

import numpy as np
import pytest

import backprop as bp
from backprop.training.compiled import CompiledTrainStep, step_info

pytestmark = pytest.mark.usefixtures("each_device_slow")  # on every device (others: slow)

rng = np.random.default_rng(0)
X = rng.normal(size=(90, 4)).astype(np.float32)
CLASSES = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 0.5)
BINARY = (X[:, 0] - X[:, 3] > 0).astype(np.float32)
TARGET = (X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=90)).astype(np.float32)[:, None]


def mlp(head=3, activation="relu", dropout=0.0, dtype=None, seeded_dropout=False, regularizer=None):
    layers = [bp.layers.Dense(8, activation=activation, input_shape=(4,), kernel_regularizer=regularizer, dtype=dtype)]
    if dropout:
        layers.append(bp.layers.Dropout(dropout, seed=7 if seeded_dropout else None))
    layers += [bp.layers.Dense(6, dtype=dtype), bp.layers.Activation(activation), bp.layers.Dense(head, dtype=dtype)]
    return bp.Sequential(layers)


def fit_both(build, compile_options, y, epochs=3, **fit_options):
    """Train the same model eagerly and compiled from the same seed; both must agree to the last bit."""
    runs = []
    for jit in (False, True):
        bp.random.set_seed(0)
        model = build()
        model.compile(**compile_options(), jit_compile=jit)
        history = model.fit(X, y, epochs=epochs, batch_size=16, verbose=0, **fit_options)
        runs.append((model, history.history))
    (eager, eager_history), (compiled, compiled_history) = runs
    for a, b in zip(eager.get_weights(), compiled.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert compiled_history == eager_history
    eager_state, compiled_state = eager.optimizer.get_state(), compiled.optimizer.get_state()  # names differ
    assert len(eager_state) == len(compiled_state)
    for a, b in zip(eager_state.values(), compiled_state.values()):
        np.testing.assert_array_equal(a, b)
    return compiled


def replayed(model):
    infos = list(step_info(model).values())
    return infos and infos[0]["replays"] > 0 and infos[0]["fallback"] is None


def sparse(**options):
    return lambda: {"optimizer": bp.optimizers.Adam(0.01), "metrics": ["accuracy"],
                    "loss": bp.losses.SparseCategoricalCrossentropy(from_logits=True, **options)}


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "gelu", "elu", "leaky_relu", "softplus", "swish",
                                        "selu", "softsign", "relu6", "linear"])
def test_every_activation(activation):
    assert replayed(fit_both(lambda: mlp(activation=activation), sparse(), CLASSES))


@pytest.mark.parametrize("loss, y, head", [
    (lambda: bp.losses.MeanSquaredError(), TARGET, 1),
    (lambda: bp.losses.MeanAbsoluteError(), TARGET, 1),
    (lambda: bp.losses.Huber(delta=0.5), TARGET, 1),
    (lambda: bp.losses.MeanSquaredError(reduction="sum"), TARGET, 1),
    (lambda: bp.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), BINARY, 1),
    (lambda: bp.losses.Hinge(), BINARY, 1),
    (lambda: bp.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2), np.eye(3)[CLASSES], 3),
    (lambda: bp.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight"),
     CLASSES, 3),
    (lambda: bp.losses.KLDivergence(), np.eye(3)[CLASSES] * 0.8 + 0.2 / 3, 3),
    (lambda: (lambda y_true, y_pred: bp.ops.mean(bp.ops.square(y_pred - y_true), axis=-1)), TARGET, 1),
])
def test_every_loss(loss, y, head):
    options = lambda: {"optimizer": bp.optimizers.SGD(0.05, momentum=0.9), "loss": loss()}  # noqa: E731
    assert replayed(fit_both(lambda: mlp(head=head), options, y))


@pytest.mark.parametrize("optimizer", [
    lambda: bp.optimizers.SGD(0.1),
    lambda: bp.optimizers.SGD(0.05, momentum=0.9, nesterov=True, clipnorm=0.5),
    lambda: bp.optimizers.Adam(0.01, clipvalue=0.1),
    lambda: bp.optimizers.AdamW(0.01, weight_decay=0.1, global_clipnorm=1.0),
    lambda: bp.optimizers.RMSprop(0.01, centered=True, momentum=0.5),
    lambda: bp.optimizers.Adagrad(0.1),
    lambda: bp.optimizers.Adadelta(1.0),
    lambda: bp.optimizers.Nadam(0.01),
    lambda: bp.optimizers.Adamax(0.01),
    lambda: bp.optimizers.Adam(bp.optimizers.schedules.ExponentialDecay(0.05, 5, 0.5)),
])
def test_every_optimizer_clipping_mode_and_schedule(optimizer):
    options = lambda: {"optimizer": optimizer(), "loss": bp.losses.SparseCategoricalCrossentropy(True)}  # noqa: E731
    assert replayed(fit_both(lambda: mlp(), options, CLASSES))


@pytest.mark.parametrize("seeded", [False, True])
def test_dropout_draws_continue_the_same_generator(seeded):
    assert replayed(fit_both(lambda: mlp(dropout=0.4, seeded_dropout=seeded), sparse(), CLASSES))


def test_regularizers_sample_and_class_weights_validation_and_float64():
    weights = rng.uniform(0.5, 2.0, size=90).astype(np.float32)
    model = fit_both(lambda: mlp(regularizer=bp.regularizers.L1L2(0.01, 0.02), dtype="float64"), sparse(), CLASSES,
                     sample_weight=weights, class_weight={0: 1.0, 1: 2.0, 2: 0.5}, validation_split=0.2)
    assert replayed(model) and model.get_weights()[0].dtype == np.float64


def test_callbacks_keep_working():
    def callbacks():
        return [bp.callbacks.ReduceLROnPlateau(monitor="loss", patience=1, factor=0.5),
                bp.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True),
                bp.callbacks.TerminateOnNaN()]
    runs = []
    for jit in (False, True):
        bp.random.set_seed(0)
        model = mlp()
        model.compile(**sparse()(), jit_compile=jit)
        history = model.fit(X, CLASSES, epochs=8, batch_size=16, verbose=0, validation_split=0.3,
                            callbacks=callbacks())
        runs.append((model.get_weights(), history.history))
    assert runs[0][1] == runs[1][1]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][0], runs[1][0]))


class Residual(bp.Model):
    """A subclassed model computing with ops directly, and a layer that writes a variable every batch."""

    def __init__(self):
        super().__init__()
        self.inner, self.head = bp.layers.Dense(4, activation="tanh"), bp.layers.Dense(3)
        self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False, name="seen")

    def call(self, inputs, training=None):
        if training:
            self.seen.assign_add(float(inputs.shape[0]))
        h = self.inner(inputs) + inputs * 0.5
        return self.head(bp.ops.concat([h, bp.ops.maximum(h, 0.0)], axis=1))


def test_flatten_and_activation_layers():
    def build():
        return bp.Sequential([bp.layers.Flatten(input_shape=(2, 2)), bp.layers.Dense(5), bp.layers.Activation("softmax"),
                              bp.layers.Dense(3)])
    runs = []
    for jit in (False, True):
        bp.random.set_seed(0)
        model = build()
        model.compile(**sparse()(), jit_compile=jit)
        model.fit(X.reshape(-1, 2, 2), CLASSES, epochs=3, batch_size=16, verbose=0)
        runs.append(model)
    assert replayed(runs[1])
    for a, b in zip(runs[0].get_weights(), runs[1].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_subclassed_and_functional_models():
    model = fit_both(Residual, sparse(), CLASSES)
    assert replayed(model) and float(model.seen.numpy()) == 3 * 90  # the write is replayed on every batch

    def functional():
        inputs = bp.Input(shape=(4,))
        hidden = bp.layers.Dense(5, activation="relu")(inputs)
        return bp.Model(inputs, bp.layers.Dense(3)(bp.layers.Dropout(0.2)(hidden)))
    assert replayed(fit_both(functional, sparse(), CLASSES))


def test_a_replay_writes_the_weights_gradients_straight_into_the_optimizer_s_buffer():
    """No copy of the gradients per step: each dense op's backward writes its kernel's and bias's gradients into
    their places in the gradient buffer (an optimizer reads them there), and the training stays the eager one."""
    model = fit_both(mlp, sparse(), CLASSES)
    views = model.parameters.gradient_views()
    assert all(g is v for g, v in zip(replayed_gradients(model), views))


def replayed_gradients(model):
    """The gradients one more replay of the model's batch-16 step returns."""
    signature = next(s for s in model._train_steps[False].signatures.values() if s.plan is not None)
    labels = model.loss.prepared_labels(CLASSES[:16], signature.prediction)
    return signature.plan.run([model.device.to_device(X[:16]), labels])[2]


def test_a_layer_applied_twice_adds_its_two_gradients_as_eagerly():
    """A weight read by two ops gets no destination (the second write would overwrite the first share)."""
    def twice():
        inputs = bp.Input(shape=(4,))
        shared = bp.layers.Dense(4, activation="tanh")
        return bp.Model(inputs, bp.layers.Dense(3)(shared(shared(inputs))))
    model = fit_both(twice, sparse(), CLASSES)
    views = model.parameters.gradient_views()
    assert [g is v for g, v in zip(replayed_gradients(model), views)] == [False, False, True, True]


class PeekingLayer(bp.layers.Layer):
    """Reads a value in Python on every call: a recording would freeze it."""

    def call(self, inputs, training=None):
        return inputs * (2.0 if float(bp.ops.mean(inputs)) > 0 else 0.5)


@pytest.mark.parametrize("build, options, reason", [
    (lambda: bp.Sequential([PeekingLayer(), bp.layers.Dense(3)]), sparse(), "reads a tensor's values in Python"),
    (mlp, sparse(ignore_class=2), "computes in Python around its kernel"),
])
def test_what_cannot_be_replayed_trains_eagerly_with_one_warning(build, options, reason):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fit_both(build, options, CLASSES)
    messages = [str(w.message) for w in caught if "cannot be compiled" in str(w.message)]
    assert len(messages) == 1 and reason in messages[0]
    assert list(step_info(model).values())[0]["replays"] == 0


def test_signatures_are_traced_twice_then_replayed_and_the_cache_is_bounded():
    model = mlp()
    model.compile(**sparse()())
    model.fit(X, CLASSES, epochs=4, batch_size=16, verbose=0)  # 5 batches of 16 and one of 10, per epoch
    info = step_info(model)[False]
    assert info["tracing_count"] == 4 and info["cache_size"] == 2 and info["replays"] == 4 * 6 - 4
    step = CompiledTrainStep(model, max_signatures=2)
    for size in (3, 4, 5, 3):
        step(X[:size], CLASSES[:size])
    assert step.info()["cache_size"] == 2 and step.info()["tracing_count"] == 4
    model.compile(**sparse()())  # a new compile starts afresh, as in Keras
    assert step_info(model) == {}


def test_freezing_a_layer_retraces_its_own_model_only():
    """Each model watches its own layers' versions (issue #32): building or freezing a layer elsewhere retraces
    nothing; freezing one model's layer retraces that model's step, which then leaves the frozen kernel alone."""
    models = [mlp(), mlp()]
    for model in models:
        model.compile(**sparse()())
        model.fit(X[:80], CLASSES[:80], epochs=2, batch_size=16, verbose=0)
    traced = [step_info(model)[False]["tracing_count"] for model in models]
    elsewhere = bp.Sequential([bp.layers.Dense(4, input_shape=(3,))])  # a layer built anywhere else
    elsewhere.layers[0].trainable = False
    for model in models:
        model.fit(X[:80], CLASSES[:80], epochs=1, batch_size=16, verbose=0)
    assert [step_info(model)[False]["tracing_count"] for model in models] == traced
    models[0].layers[0].trainable = False
    frozen = models[0].layers[0].kernel.numpy()
    for model in models:
        model.fit(X[:80], CLASSES[:80], epochs=2, batch_size=16, verbose=0)
    assert [step_info(model)[False]["tracing_count"] for model in models] == [traced[0] + 2, traced[1]]
    np.testing.assert_array_equal(models[0].layers[0].kernel.numpy(), frozen)
    assert not np.array_equal(models[1].layers[0].kernel.numpy(), frozen)


def test_jit_compile_false_and_bad_values():
    model = mlp()
    model.compile(**sparse()(), jit_compile=False)
    model.fit(X, CLASSES, epochs=1, verbose=0)
    assert step_info(model) == {}
    with pytest.raises(ValueError, match="jit_compile must be True, False or 'auto'"):
        model.compile(**sparse()(), jit_compile="xla")
