"""Reliability: non-finite diagnostics, long-run memory, deep graphs (../shared/RELIABILITY.md F4, F5, M1-M4)."""
import gc
import os
import tracemalloc
import weakref

import numpy as np
import pytest

import backprop as bp


def test_check_numerics_works_on_the_strict_device():
    """It read every op's output through numpy.asarray, which a device refuses (as CuPy does)."""
    with bp.device("strict"):
        x = bp.Variable([1.0, 0.0])
        with bp.debug.check_numerics():
            bp.argmax(x * 2.0)
            with pytest.raises(bp.debug.NonFiniteError, match="op 'log' produced NaN or Inf"), \
                    np.errstate(divide="ignore"):
                bp.log(x)


def test_check_numerics_names_the_first_bad_op():
    x = bp.Variable([1.0, 0.0])
    with bp.debug.check_numerics():
        with pytest.raises(bp.debug.NonFiniteError, match=r"op 'log' produced NaN or Inf \(output shape \(2,\)"):
            with bp.GradientTape():
                bp.sum(bp.log(x * 2.0))
        with bp.GradientTape() as tape:
            y = bp.sum(bp.sqrt(x))  # finite value (1 + 0), infinite gradient at 0
        with pytest.raises(bp.debug.NonFiniteError, match="gradient of op 'sqrt'"), np.errstate(divide="ignore"):
            tape.gradient(y, x)
    with bp.GradientTape() as tape:  # off again: no check, NumPy's inf comes through
        y = bp.sum(bp.sqrt(x))
    with np.errstate(divide="ignore"):
        assert np.isinf(tape.gradient(y, x).numpy()[1])


def test_double_where_keeps_the_gradient_finite():
    x = bp.Variable([4.0, 0.0])
    with bp.GradientTape() as tape:
        safe = bp.where(x.numpy() > 0, x, 1.0)  # the inner where keeps log away from 0
        y = bp.sum(bp.where(x.numpy() > 0, bp.log(safe), 0.0))
    grad = tape.gradient(y, x).numpy()
    assert np.isfinite(grad).all() and grad[0] == pytest.approx(0.25) and grad[1] == 0.0


def test_clipnorm_refuses_a_non_finite_gradient():
    variable = bp.Variable([1.0, 1.0])
    for optimizer in (bp.optimizers.SGD(0.1, clipnorm=1.0), bp.optimizers.SGD(0.1, global_clipnorm=1.0)):
        with pytest.raises(FloatingPointError, match="inf|nan"):
            optimizer.apply_gradients([(np.array([np.inf, 1.0]), variable)])
    assert np.array_equal(variable.numpy(), [1.0, 1.0])


def live_tensors():
    return sum(isinstance(o, bp.Tensor) for o in gc.get_objects())


@pytest.mark.slow
def test_ten_thousand_steps_do_not_grow_memory():
    bp.random.set_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 8)).astype(np.float32), rng.integers(0, 3, 32)
    model = bp.Sequential([bp.layers.Dense(16, activation="relu"), bp.layers.Dense(3)])
    model.compile(optimizer="adam", loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True))
    for _ in range(1000):
        model.train_on_batch(x, y)
    gc.collect()
    tensors_before = live_tensors()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for _ in range(9000):
        model.train_on_batch(x, y)
    growth = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    gc.collect()
    assert growth < 1_000_000, f"memory grew by {growth} bytes"
    assert live_tensors() == tensors_before


@pytest.mark.slow
def test_hundred_thousand_op_chain_differentiates_and_is_freed():
    x = bp.Variable(1.0, dtype="float64")
    with bp.GradientTape() as tape:
        y = x
        for _ in range(100_000):
            y = y * 1.0
        last = weakref.ref(y)
    assert tape.gradient(y, x).numpy() == 1.0
    del y, tape
    gc.collect()
    assert last() is None


def test_terminate_on_nan_can_raise():
    x = np.ones((8, 2), dtype=np.float32)
    x[3] = np.nan
    model = bp.Sequential([bp.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    ended = []
    with pytest.raises(FloatingPointError, match="epoch 1, batch 2"), np.errstate(invalid="ignore"):
        model.fit(x, np.zeros(8), batch_size=2, shuffle=False, verbose=0, allow_nonfinite=True,
                  callbacks=[bp.callbacks.TerminateOnNaN(raise_error=True),
                             bp.callbacks.LambdaCallback(on_train_end=lambda logs: ended.append(True))])
    assert ended  # on_train_end runs whatever happens (CSVLogger closes its file, ...)
    model.fit(x[:2], np.zeros(2), verbose=0)  # and nothing of that fit outlives it: issue #12's reproduction


def test_whole_model_directional_derivative():
    """HIPS/JAX style: <grad f, u> against (f(theta + eps u) - f(theta - eps u)) / 2 eps, float64."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 4)), rng.integers(0, 3, 6)
    model = bp.Sequential([bp.layers.Dense(5, activation="tanh", dtype="float64"),
                           bp.layers.Dense(5, activation="elu", dtype="float64"),
                           bp.layers.Dense(3, dtype="float64")], dtype="float64")
    model(x)
    loss_fn = bp.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    with bp.GradientTape() as tape:
        loss = loss_fn(y, model(x))
    grads = tape.gradient(loss, variables)
    direction = [rng.normal(size=v.shape) for v in variables]
    analytic = sum(float(np.sum(g.numpy() * u)) for g, u in zip(grads, direction))
    start = [v.numpy() for v in variables]

    def loss_at(step):
        for v, s, u in zip(variables, start, direction):
            v.assign(s + step * u)
        return float(loss_fn(y, model(x)).numpy())

    eps = 1e-6
    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert abs(analytic - numeric) <= 1e-6 * max(abs(analytic), abs(numeric)) + 1e-9


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: m.fit(x, y, batch_size=float("inf"), verbose=0), "batch_size"),
    (lambda m, x, y: m.fit(x, y, epochs=float("inf"), verbose=0), "epochs must be an integer >= 0, got inf"),
    (lambda m, x, y: m.fit(x, y, batch_size=True, verbose=0), "batch_size"),
    (lambda m, x, y: m.fit(x, y, initial_epoch=-1, verbose=0), "initial_epoch must be an integer >= 0"),
    (lambda m, x, y: m.fit(x, y, sample_weight=np.full(8, np.nan), verbose=0), "sample_weight must be finite"),
    (lambda m, x, y: m.fit(x, y, sample_weight=-np.ones(8), verbose=0), "non-negative"),
    (lambda m, x, y: m.fit(np.where(np.arange(16).reshape(8, 2) == 5, np.inf, x), y, verbose=0),
     "x holds 1 NaN or infinite value\\(s\\), the first at row 2, column 1"),
    (lambda m, x, y: m.fit(x, np.full(8, np.nan), verbose=0), "y holds 8 NaN"),
])
def test_python_api_arguments_are_checked(call, message):
    model = bp.Sequential([bp.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=message):
        call(model, np.ones((8, 2)), np.zeros(8))


@pytest.mark.parametrize("make, message", [
    (lambda: bp.optimizers.Adam(beta_2=2), "beta_2 must be in"),
    (lambda: bp.optimizers.SGD(clipnorm=-1), "clipnorm must be a positive"),
    (lambda: bp.optimizers.RMSprop(rho=1.5), "rho must be in"),
    (lambda: bp.optimizers.AdamW(weight_decay=float("nan")), "weight_decay"),
    (lambda: bp.layers.Dense(True), "units must be a positive integer, got True"),
    (lambda: bp.layers.Dense(float("inf")), "units must be a positive integer"),
])
def test_constructor_arguments_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_model_files_follow_the_umask(tmp_path):
    mask = os.umask(0o022)
    try:
        bp.Sequential([bp.layers.Input(shape=(2,)), bp.layers.Dense(1)]).save(tmp_path / "m.bp")
    finally:
        os.umask(mask)
    assert (tmp_path / "m.bp").stat().st_mode & 0o777 == 0o644


def test_uniform_initializers_draw_the_same_numbers_without_a_float64_copy():
    tracemalloc.start()
    kernel = bp.initializers.get("glorot_uniform")((1000, 2000), dtype="float32")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.5 * kernel.nbytes  # drawing all of it in float64, then casting, peaked at 3x
    limit = np.sqrt(6 / 3000)
    expected = np.random.default_rng(7).uniform(-limit, limit, (1000, 2000)).astype(np.float32)
    again = bp.initializers.VarianceScaling(1.0, "fan_avg", "uniform", seed=7)((1000, 2000), dtype="float32")
    assert np.array_equal(again, expected)


# --- arguments that trained wrongly or failed inside NumPy are refused naming themselves (issue #29) -------
@pytest.mark.parametrize("make, message", [
    (lambda: bp.Input(shape=(-1,)), r"Input: shape must hold positive whole numbers \(or None\), got \(-1,\)"),
    (lambda: bp.Input(shape=(0,)), r"Input: shape .* got \(0,\)"),
    (lambda: bp.Input(shape=(2.5,)), r"Input: shape .* got \(2.5,\)"),
    (lambda: bp.layers.Dense(4, input_shape=(-2,)), r"Dense input_shape .* got \(-2,\)"),
    (lambda: bp.layers.Dense(4, input_dim=True), r"Dense input_dim .* got \(True,\)"),
    (lambda: bp.regularizers.L2(-1), "regularizer: l2 must be a finite number >= 0, got -1.0"),
    (lambda: bp.regularizers.L1(float("nan")), "regularizer: l1 must be a finite number >= 0, got nan"),
    (lambda: bp.optimizers.Adagrad(initial_accumulator_value=-1), "initial_accumulator_value must be a finite"),
])
def test_bad_arguments_are_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("weights", [{0: -1.0, 1: 1.0}, {0: float("nan"), 1: 1.0}, {0: float("inf"), 1: 1.0},
                                     {0: "2", 1: 1.0}])
def test_class_weights_must_be_finite_and_not_negative(weights):
    model = bp.Sequential([bp.Input(shape=(2,)), bp.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.get_weights()
    with pytest.raises(ValueError, match="class_weight: weights must be finite numbers >= 0"):
        model.fit(np.ones((4, 2), np.float32), np.array([0, 1, 0, 1]), class_weight=weights, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_good_shapes_and_weights_still_pass():
    assert bp.Input(shape=(None, 3)).shape == (None, None, 3)
    assert bp.layers.Dense(2, input_shape=np.array([4])).input_shape == (4,)
    assert bp.optimizers.Adagrad(initial_accumulator_value=np.float32(0.0)).initial_accumulator_value == 0
