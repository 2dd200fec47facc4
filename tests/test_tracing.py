"""The recorder places every value by where it came from (issue #28): what it cannot place is an error in
bp.function and an eager fallback with one warning in fit, never a constant; replays equal eager execution
on fresh inputs at every step."""
import warnings

import numpy as np
import pytest

import backprop as bp
from backprop.tracing import TraceError


def losses_of(build, jit, x, y, epochs, batch_size, **fit_options):
    bp.random.set_seed(0)
    model = build()
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, **fit_options)
    fallbacks = [str(w.message) for w in caught if "cannot be compiled" in str(w.message)]
    return history.history["loss"], model, fallbacks


class WarmUp(bp.layers.Layer):
    """A warm-up switch read in Python from a Variable: the branch changes at the fourth call."""

    def build(self, input_shape):
        self.steps = self.add_weight((), initializer="zeros", trainable=False, name="steps")
        self.w = self.add_weight((input_shape[-1], 1), initializer="ones")

    def call(self, x):
        self.steps.assign_add(1.0)
        scale = 0.0 if float(self.steps.numpy()) > 3 else 1.0
        return bp.matmul(x, self.w) * scale


def test_a_variable_read_in_python_trains_eagerly_with_a_warning():
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 1), np.float32)
    build = lambda: bp.Sequential([bp.Input(shape=(3,)), WarmUp()])  # noqa: E731
    eager, _, _ = losses_of(build, False, x, y, epochs=6, batch_size=8)
    compiled, model, fallbacks = losses_of(build, True, x, y, epochs=6, batch_size=8)
    assert compiled == eager and eager[4:] == [0.0, 0.0] and eager[0] > 1
    assert len(fallbacks) == 1 and "reads the values of the variable 'warm_up" in fallbacks[0]
    assert "test_tracing.py" in fallbacks[0]  # names the user's line


def test_a_float64_head_with_sample_weights_replays_the_cast():
    """The weights' cast to the head's dtype was a new array, frozen as a constant: the first two batches
    (both weighted 1) were recorded, the later ones (weighted 0) replayed with weights of 1."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 3)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32)
    weights = np.array([1.0] * 32 + [0.0] * 32, np.float32)
    build = lambda: bp.Sequential([bp.Input(shape=(3,)), bp.layers.Dense(4),  # noqa: E731
                                   bp.layers.Dense(1, dtype="float64")])
    eager, _, _ = losses_of(build, False, x, y, 3, 8, sample_weight=weights, shuffle=False)
    compiled, model, fallbacks = losses_of(build, True, x, y, 3, 8, sample_weight=weights, shuffle=False)
    assert compiled == eager and not fallbacks
    assert bp.training.compiled.step_info(model)[False]["replays"] > 0


class Wrapping(bp.layers.Layer):
    """Computes on the arrays and wraps the result: a value the recorder cannot place."""

    def call(self, x):
        return bp.Tensor._wrap(x.data * 2.0)


def test_a_tensor_made_outside_the_ops_is_never_a_constant():
    x, y = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32), np.zeros((32, 1), np.float32)
    build = lambda: bp.Sequential([bp.Input(shape=(3,)), Wrapping(), bp.layers.Dense(1)])  # noqa: E731
    eager, _, _ = losses_of(build, False, x, y, 2, 8)
    compiled, _, fallbacks = losses_of(build, True, x, y, 2, 8)
    assert compiled == eager
    assert len(fallbacks) == 1 and "made outside backprop's ops" in fallbacks[0] and "'dense" in fallbacks[0]
    with pytest.raises(TraceError, match="op 'multiply' takes a tensor that was made outside backprop's ops"):
        bp.function(lambda t: bp.Tensor._wrap(t.data + 1) * 3)(bp.tensor([1.0]))


def test_a_variable_read_is_an_error_in_bp_function():
    v = bp.Variable([2.0], name="gain")

    @bp.function
    def scaled(x):
        return x * (2.0 if float(v.numpy()[0]) > 1 else 1.0)
    with pytest.raises(TraceError, match="reads the values of the variable 'gain' in Python at .*test_tracing.py"):
        scaled(bp.tensor([1.0]))


def test_a_tensor_index_is_an_input_of_the_op():
    take = bp.function(lambda x, i: x[i] * 1.0)
    take_row_col = bp.function(lambda x, i, j: x[i, 1:, j])
    x = bp.tensor(np.arange(24.0).reshape(4, 3, 2))
    for k in range(4):
        index = bp.tensor(np.array([k, (k + 1) % 4]))
        np.testing.assert_array_equal(take(x, index).numpy(), x.numpy()[[k, (k + 1) % 4]])
        np.testing.assert_array_equal(take_row_col(x, index, bp.tensor(np.array([1, 0]))).numpy(),
                                      x.numpy()[[k, (k + 1) % 4], 1:, [1, 0]])
    assert take.experimental_get_tracing_count() == 1


def test_the_gradient_through_a_tensor_index_scatters_back():
    @bp.function
    def grad(x, i):
        with bp.GradientTape() as tape:
            tape.watch(x)
            y = bp.sum(x[i] * 2.0)
        return tape.gradient(y, x)
    x = bp.tensor([1.0, 2.0, 3.0])
    for index, expected in (([0, 0], [4, 0, 0]), ([2, 1], [0, 2, 2]), ([1, 2], [0, 2, 2])):
        np.testing.assert_array_equal(grad(x, bp.tensor(np.array(index))).numpy(), expected)


def test_random_draws_are_drawn_again_at_every_replay():
    noisy = bp.function(lambda x: x + bp.random.normal((3,)) + bp.random.uniform((3,)) +
                        bp.random.truncated_normal((3,)))
    x = bp.tensor([0.0, 0.0, 0.0])
    bp.random.set_seed(5)
    eager = [(x + bp.random.normal((3,)) + bp.random.uniform((3,)) + bp.random.truncated_normal((3,))).numpy()
             for _ in range(4)]
    bp.random.set_seed(5)
    compiled = [noisy(x).numpy() for _ in range(4)]
    np.testing.assert_array_equal(eager, compiled)
    assert len({tuple(row) for row in compiled}) == 4


def test_stop_gradient_is_computed_again_and_stops_the_gradient():
    @bp.function
    def value_and_grad(x):
        with bp.GradientTape() as tape:
            tape.watch(x)
            y = bp.sum(bp.stop_gradient(x * 2.0) * x)
        return y, tape.gradient(y, x)
    for values in ([1.0, 2.0], [10.0, -3.0], [0.5, 0.5]):
        x = np.array(values, np.float32)
        y, g = value_and_grad(bp.tensor(x))
        assert float(y) == pytest.approx(float(np.sum(2 * x * x)))
        np.testing.assert_array_equal(g.numpy(), 2 * x)  # only the path that is not stopped


def test_watching_a_tensor_after_it_was_used_counts_only_later_uses():
    @bp.function
    def late(x):
        with bp.GradientTape() as tape:
            doubled = x * 2.0  # before the watch: not on the tape
            tape.watch(x)
            z = doubled + x * 3.0
        return tape.gradient(z, x)
    assert [late(bp.tensor([v])).numpy()[0] for v in (1.0, 2.0, 3.0)] == [3.0, 3.0, 3.0]


def test_a_watched_closure_constant_gets_its_gradient_on_replay():
    c = bp.tensor([2.0])

    @bp.function
    def grad_of_constant(x):
        with bp.GradientTape() as tape:
            tape.watch(c)
            z = x * c * c
        return tape.gradient(z, c)
    assert [grad_of_constant(bp.tensor([v])).numpy()[0] for v in (1.0, 2.0, 3.0)] == [4.0, 8.0, 12.0]


def test_a_constant_the_function_makes_itself_is_allowed():
    shifted = bp.function(lambda x: x + bp.tensor([1.0, 2.0]))
    for v in (0.0, 5.0):
        np.testing.assert_array_equal(shifted(bp.tensor([v, v])).numpy(), [v + 1, v + 2])


def test_a_replay_uses_each_calls_inputs(monkeypatch):
    """The mutant the issue named: a replay that keeps its first inputs must fail this test."""
    from backprop.compiled import plan
    affine = bp.function(lambda x: x * 2.0 + 1.0)
    outputs = [float(affine(bp.tensor(v))) for v in (1.0, 2.0, 3.0, 4.0)]
    assert outputs == [3.0, 5.0, 7.0, 9.0]
    original = plan.Plan._compiled_run  # the mutant: every run gets the same inputs

    def frozen_inputs(self):
        run = original(self)
        return lambda inputs: run([np.float32(1.0)] * len(inputs))
    monkeypatch.setattr(plan.Plan, "_compiled_run", frozen_inputs)
    frozen = bp.function(lambda x: x * 2.0 + 1.0)
    assert [float(frozen(bp.tensor(v))) for v in (1.0, 2.0, 3.0)] != [3.0, 5.0, 7.0]


# --- what a recording holds on to, and when it is made again ------------------------------------------------
class Scaled(bp.Model):
    def __init__(self, scale):
        super().__init__()
        self.dense = bp.layers.Dense(1, kernel_initializer="ones", use_bias=False)
        self.scale = scale

    @bp.function
    def forward(self, x):
        return self.dense(x) * self.scale

    __hash__ = None  # counted by identity all the same


def test_a_decorated_method_holds_its_instance_weakly_and_never_serves_another():
    import gc
    import weakref
    x = bp.tensor([[1.0, 1.0]])
    first = Scaled(1.0)
    assert first.forward(x).numpy()[0, 0] == 2.0 and Scaled.forward.cache_size == 1
    reference = weakref.ref(first)
    del first
    gc.collect()
    assert reference() is None and Scaled.forward.cache_size == 0  # its recordings went with it
    for _ in range(20):  # new objects, some at the old one's address: each computes with its own weights
        other = Scaled(10.0)
        assert other.forward(x).numpy()[0, 0] == 20.0
        del other


def test_a_changed_dropout_rate_between_fits_is_traced_again():
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)

    def fit_twice(jit):
        bp.random.set_seed(0)
        model = bp.Sequential([bp.Input(shape=(4,)), bp.layers.Dense(16), bp.layers.Dropout(0.0), bp.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse", jit_compile=jit)
        model.fit(x, x[:, :1], epochs=1, batch_size=16, verbose=0)
        model.layers[1].rate = 0.9
        return model.fit(x, x[:, :1], epochs=2, batch_size=16, verbose=0).history["loss"]
    assert fit_twice(True) == fit_twice(False)


def test_building_another_layer_does_not_retrace_a_model():
    bp.random.set_seed(0)
    model = bp.Sequential([bp.Input(shape=(4,)), bp.layers.Dense(3)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((32, 4), np.float32), np.ones((32, 3), np.float32)

    class BuildsALayer(bp.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            bp.layers.Dense(2)(np.ones((1, 2), np.float32))
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[BuildsALayer()])
    assert bp.training.compiled.step_info(model)[False]["tracing_count"] == 2  # the two recordings, then replays


def test_a_bp_function_traces_again_when_a_layer_it_called_changes():
    dense = bp.layers.Dense(2, kernel_initializer="ones")
    dropout = bp.layers.Dropout(0.0)
    forward = bp.function(lambda x: dropout(dense(x), training=True))
    x = bp.tensor(np.ones((4, 3), np.float32))
    forward(x)
    bp.layers.Dense(5)(np.ones((1, 2), np.float32))  # elsewhere: changes nothing here
    forward(x)
    assert forward.experimental_get_tracing_count() == 1
    dropout.rate = 0.5
    assert (forward(x).numpy() == 0).any() and forward.experimental_get_tracing_count() == 2


class Restless(bp.layers.Layer):
    """Sets a public attribute to a new object at every call: its version changes at every step."""

    def call(self, x):
        self.last_seen = object()
        return x


def test_a_model_that_changes_at_every_step_trains_eagerly_with_a_warning():
    x, y = np.ones((160, 3), np.float32), np.zeros((160, 1), np.float32)
    build = lambda: bp.Sequential([bp.Input(shape=(3,)), Restless(), bp.layers.Dense(1)])  # noqa: E731
    eager, _, _ = losses_of(build, False, x, y, 2, 8)
    compiled, _, fallbacks = losses_of(build, True, x, y, 2, 8)
    assert compiled == eager and len(fallbacks) == 1 and "the model changed at every step" in fallbacks[0]


def test_a_model_copied_or_pickled_keeps_its_versions_flowing():
    import copy
    import pickle
    model = bp.Sequential([bp.Input(shape=(3,)), bp.layers.Dense(2), bp.layers.Dropout(0.1)])
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        before = twin.version
        twin.layers[1].rate = 0.5
        assert twin.version > before


# --- random small models: 20 replayed steps equal 20 eager steps to the last bit ----------------------------
from hypothesis import given, settings, strategies as st  # noqa: E402

from backprop.compiled import fusion  # noqa: E402

ACTIVATIONS = ["relu", "tanh", "sigmoid", "gelu", "elu", "swish", "linear"]
LOSSES = {"mse": 1, "mae": 1, "huber": 1, "binary_crossentropy": 1, "sparse_categorical_crossentropy": 3,
          "categorical_crossentropy": 3}
LOSS_CLASSES = {"mse": bp.losses.MeanSquaredError, "mae": bp.losses.MeanAbsoluteError, "huber": bp.losses.Huber,
                "binary_crossentropy": bp.losses.BinaryCrossentropy,
                "sparse_categorical_crossentropy": bp.losses.SparseCategoricalCrossentropy,
                "categorical_crossentropy": bp.losses.CategoricalCrossentropy}


@st.composite
def small_models(draw):
    hidden = draw(st.lists(st.tuples(st.integers(1, 6), st.sampled_from(ACTIVATIONS + sorted(HAND_WRITTEN)),
                                     st.sampled_from([0.0, 0.3])), min_size=0, max_size=3))
    loss = draw(st.sampled_from(sorted(LOSSES)))
    return {"hidden": hidden, "loss": loss, "from_logits": draw(st.booleans()),
            "optimizer": draw(st.sampled_from(["sgd", "adam", "rmsprop", "adagrad", "nadam", "adamw"])),
            "dtype": draw(st.sampled_from(["float32", "float64"])), "head_dtype": draw(st.sampled_from([None, "float64"])),
            "weights": draw(st.sampled_from([None, "per_example"])), "batch": draw(st.sampled_from([4, 5, 8])),
            "l2": draw(st.sampled_from([None, 0.01]))}


# Activations written as ops in a layer of the user's: elementwise groups that a compiled step joins into one op
# (backprop.compiled.fusion), which must still give the eager bits.
HAND_WRITTEN = {"hand: swish": lambda z: z * bp.sigmoid(z) - 0.5 * z,
                "hand: tanh and a square": lambda z: bp.tanh(z) * 1.5 + z * z * 0.1,
                "hand: a ratio and exp": lambda z: z / (1.0 + z * z) + bp.exp(-z * z)}


class HandWritten(bp.layers.Layer):
    def __init__(self, formula, **kwargs):
        super().__init__(**kwargs)
        self.formula = formula

    def call(self, x):
        return HAND_WRITTEN[self.formula](x)


def build_small(spec):
    layers = [bp.Input(shape=(3,))]
    for units, activation, rate in spec["hidden"]:
        hand = activation in HAND_WRITTEN
        layers.append(bp.layers.Dense(units, activation=None if hand else activation, dtype=spec["dtype"],
                                      kernel_regularizer=bp.regularizers.L2(spec["l2"]) if spec["l2"] else None))
        if hand:
            layers.append(HandWritten(activation, dtype=spec["dtype"]))
        if rate:
            layers.append(bp.layers.Dropout(rate))
    probabilities = spec["loss"] in ("binary_crossentropy", "categorical_crossentropy",
                                     "sparse_categorical_crossentropy") and not spec["from_logits"]
    head = "sigmoid" if probabilities and LOSSES[spec["loss"]] == 1 else "softmax" if probabilities else None
    layers.append(bp.layers.Dense(LOSSES[spec["loss"]], activation=head, dtype=spec["head_dtype"] or spec["dtype"]))
    return bp.Sequential(layers)


def small_data(spec, rows=20):
    rng = np.random.default_rng(len(spec["hidden"]))
    x = rng.normal(size=(rows, 3)).astype(spec["dtype"])
    classes = rng.integers(0, LOSSES[spec["loss"]] if LOSSES[spec["loss"]] > 1 else 2, rows)
    y = {"sparse_categorical_crossentropy": classes, "categorical_crossentropy": np.eye(3)[classes],
         "binary_crossentropy": classes[:, None].astype(np.float32)}.get(spec["loss"], rng.normal(size=(rows, 1)))
    weights = None if spec["weights"] is None else rng.random(rows).astype(np.float32)
    return x, y, weights


def train_small(spec, jit):
    bp.random.set_seed(3)
    model = build_small(spec)
    loss = LOSS_CLASSES[spec["loss"]]
    loss = loss(from_logits=True) if spec["from_logits"] and "crossentropy" in spec["loss"] else loss()
    model.compile(optimizer=spec["optimizer"], loss=loss, jit_compile=jit)
    x, y, weights = small_data(spec)
    steps = -(-len(x) // spec["batch"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # from_logits hints on random heads: not what this test is about
        history = model.fit(x, y, sample_weight=weights, batch_size=spec["batch"], epochs=-(-20 // steps), verbose=0)
    return model, history.history


@settings(max_examples=20, deadline=None)
@given(small_models())
def test_random_small_models_replay_twenty_steps_bit_for_bit(spec):
    check_replay(spec)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(small_models())
def test_many_random_small_models_replay_bit_for_bit(spec):
    check_replay(spec)


def check_replay(spec):
    eager, eager_history = train_small(spec, jit=False)
    with fusion.using(fusion.EVERYTHING):  # join the hand-written activations' small groups too
        compiled, compiled_history = train_small(spec, jit=True)
    assert compiled_history == eager_history and np.isfinite(eager_history["loss"]).all()
    for a, b in zip(eager.get_weights(), compiled.get_weights()):
        np.testing.assert_array_equal(a, b)
    info = bp.training.compiled.step_info(compiled)[False]
    assert info["fallback"] is None and info["replays"] > 0, info
    if any(activation in HAND_WRITTEN for _, activation, _ in spec["hidden"]):
        plans = [s.plan for s in compiled._train_steps[False].signatures.values() if s.plan is not None]
        assert any(type(call).__name__ == "Joined" for plan in plans for _, call, *_ in plan._steps)


def test_labels_prepared_by_a_loss_are_prepared_again_at_every_replay():
    """Float class labels become integers inside the loss: that new array was recorded as a constant, so every
    replay scored the first call's labels."""
    loss = bp.losses.SparseCategoricalCrossentropy(from_logits=True)
    scored = bp.function(lambda y, p: loss(y, p))
    logits = bp.tensor(np.array([[2.0, 0.0, -2.0]] * 4, np.float32))
    for labels in ([0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0], [1.0, 0.0, 2.0, 1.0]):
        eager = float(loss(bp.tensor(np.array(labels, np.float32)), logits))
        assert float(scored(bp.tensor(np.array(labels, np.float32)), logits)) == eager
    assert scored.experimental_get_tracing_count() == 1


def test_a_loss_with_ignore_class_is_refused_in_bp_function():
    loss = bp.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=2)
    with pytest.raises(TraceError, match="ignore_class computes its mask in Python"):
        bp.function(lambda y, p: loss(y, p))(bp.tensor(np.array([0, 2])), bp.tensor(np.zeros((2, 3), np.float32)))
