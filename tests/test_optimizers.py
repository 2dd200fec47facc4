"""Each optimizer against Keras 3's update rule, written out independently here, over 100 steps in float64."""
import math

import numpy as np
import pytest

import backprop as bp

pytestmark = pytest.mark.usefixtures("each_device")  # on every device


def reference_step(rule, w, g, state, t, lr, opts):
    """One step of Keras 3's formulas on plain NumPy arrays (t = iterations before the step)."""
    if rule == "sgd":
        mom, nesterov = opts.get("momentum", 0.0), opts.get("nesterov", False)
        if not mom:
            return w - lr * g
        v = state.get("v", np.zeros_like(w))
        v = mom * v - lr * g
        state["v"] = v
        return w + mom * v - lr * g if nesterov else w + v
    if rule == "adam":
        b1, b2, eps = opts.get("beta_1", 0.9), opts.get("beta_2", 0.999), opts.get("epsilon", 1e-7)
        m = state.get("m", np.zeros_like(w)) * b1 + (1 - b1) * g
        v = state.get("v", np.zeros_like(w)) * b2 + (1 - b2) * g * g
        state["m"], state["v"] = m, v
        if opts.get("amsgrad"):
            state["vhat"] = np.maximum(state.get("vhat", np.zeros_like(w)), v)
            v = state["vhat"]
        wd = opts.get("weight_decay", 0.0)
        w = w - w * wd * lr
        # Keras folds the bias corrections into alpha and adds epsilon to sqrt(v) uncorrected:
        alpha = lr * math.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
        return w - alpha * m / (np.sqrt(v) + eps)
    if rule == "adamax":
        b1, b2, eps = 0.9, 0.999, 1e-7
        state["m"] = b1 * state.get("m", np.zeros_like(w)) + (1 - b1) * g
        state["u"] = np.maximum(b2 * state.get("u", np.zeros_like(w)), np.abs(g))
        return w - lr * state["m"] / ((1 - b1 ** (t + 1)) * (state["u"] + eps))
    if rule == "nadam":  # Dozat's schedule as Keras 3 writes it: mu_k = b1 (1 - 0.5 * 0.96^k)
        b1, b2, eps = 0.9, 0.999, 1e-7
        mu = [b1 * (1 - 0.5 * 0.96 ** k) for k in range(1, t + 3)]
        product = np.prod(mu[:t + 1])
        state["m"] = b1 * state.get("m", np.zeros_like(w)) + (1 - b1) * g
        state["v"] = b2 * state.get("v", np.zeros_like(w)) + (1 - b2) * g * g
        m_hat = mu[t + 1] * state["m"] / (1 - product * mu[t + 1]) + (1 - mu[t]) * g / (1 - product)
        return w - lr * m_hat / (np.sqrt(state["v"] / (1 - b2 ** (t + 1))) + eps)
    if rule == "adagrad":
        eps = opts.get("epsilon", 1e-7)
        acc = state.get("acc", np.full_like(w, opts.get("initial_accumulator_value", 0.1))) + g * g
        state["acc"] = acc
        return w - lr * g / np.sqrt(acc + eps)
    if rule == "rmsprop":
        rho, mom, eps, centered = opts.get("rho", 0.9), opts.get("momentum", 0.0), opts.get("epsilon", 1e-7), opts.get("centered", False)
        s = rho * state.get("s", np.zeros_like(w)) + (1 - rho) * g * g
        state["s"] = s
        denominator = s + eps
        if centered:
            mg = rho * state.get("mg", np.zeros_like(w)) + (1 - rho) * g
            state["mg"] = mg
            denominator = s - mg * mg + eps
        increment = lr * g / np.sqrt(denominator)
        if mom:
            state["mom"] = mom * state.get("mom", np.zeros_like(w)) + increment
            return w - state["mom"]
        return w - increment
    if rule == "adadelta":
        rho, eps = opts.get("rho", 0.95), opts.get("epsilon", 1e-7)
        eg = rho * state.get("eg", np.zeros_like(w)) + (1 - rho) * g * g
        delta = -np.sqrt(state.get("ed", np.zeros_like(w)) + eps) / np.sqrt(eg + eps) * g
        state["ed"] = rho * state.get("ed", np.zeros_like(w)) + (1 - rho) * delta * delta
        state["eg"] = eg
        return w + lr * delta
    raise ValueError(rule)


CASES = [
    ("sgd", bp.optimizers.SGD, {"learning_rate": 0.05}),
    ("sgd", bp.optimizers.SGD, {"learning_rate": 0.05, "momentum": 0.9}),
    ("sgd", bp.optimizers.SGD, {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
    ("adam", bp.optimizers.Adam, {"learning_rate": 0.01}),
    ("adam", bp.optimizers.Adam, {"learning_rate": 0.01, "amsgrad": True}),
    ("adam", bp.optimizers.AdamW, {"learning_rate": 0.01, "weight_decay": 0.004}),
    ("adagrad", bp.optimizers.Adagrad, {"learning_rate": 0.1}),
    ("rmsprop", bp.optimizers.RMSprop, {"learning_rate": 0.01}),
    ("rmsprop", bp.optimizers.RMSprop, {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
    ("adadelta", bp.optimizers.Adadelta, {"learning_rate": 1.0}),
    ("adamax", bp.optimizers.Adamax, {"learning_rate": 0.02}),
    ("nadam", bp.optimizers.Nadam, {"learning_rate": 0.01}),
]

A = np.array([[3.0, 0.5], [0.5, 1.0]])


def quadratic_grad(w):
    return A @ w - np.array([1.0, -2.0])


@pytest.mark.parametrize("rule, cls, opts", CASES)
def test_quadratic_matches_keras_formula(rule, cls, opts):
    optimizer = cls(**opts)
    variable = bp.Variable(np.array([2.0, -1.0]))
    w, state = variable.numpy(), {}
    for t in range(100):
        g = quadratic_grad(variable.numpy())
        optimizer.apply_gradients([(g, variable)])
        w = reference_step(rule, w, quadratic_grad(w), state, t, opts["learning_rate"], opts)
        np.testing.assert_allclose(variable.numpy(), w, rtol=1e-10, atol=1e-12)
    assert optimizer.iterations == 100


@pytest.mark.parametrize("rule, cls, opts", CASES)
def test_small_mlp_matches_keras_formula(rule, cls, opts):
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Dense(4, activation="tanh", dtype="float64"),
                           bp.layers.Dense(1, dtype="float64")], dtype="float64")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 3)), rng.normal(size=(16, 1))
    model(x)
    reference = [v.numpy() for v in model.trainable_variables]
    states = [{} for _ in reference]
    optimizer = cls(**opts)
    for t in range(100):
        with bp.GradientTape() as tape:
            loss = bp.losses.mean_squared_error(y, model(x))
            loss = bp.mean(loss)
        grads = tape.gradient(loss, model.trainable_variables)
        # the reference updates the same gradients (computed at the shared current point)
        reference = [reference_step(rule, w, g.numpy(), s, t, opts["learning_rate"], opts)
                     for w, g, s in zip(reference, grads, states)]
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        for v, w in zip(model.trainable_variables, reference):
            np.testing.assert_allclose(v.numpy(), w, rtol=1e-10, atol=1e-12)
            v.assign(w)  # keep both exactly on the same path


def test_defaults_are_keras_defaults():
    assert bp.optimizers.SGD().learning_rate == 0.01
    adam = bp.optimizers.Adam()
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon, adam.amsgrad) == (0.001, 0.9, 0.999, 1e-7, False)
    adagrad = bp.optimizers.Adagrad()
    assert (adagrad.learning_rate, adagrad.initial_accumulator_value, adagrad.epsilon) == (0.001, 0.1, 1e-7)
    rms = bp.optimizers.RMSprop()
    assert (rms.learning_rate, rms.rho, rms.momentum, rms.epsilon, rms.centered) == (0.001, 0.9, 0.0, 1e-7, False)
    ada = bp.optimizers.Adadelta()
    assert (ada.learning_rate, ada.rho, ada.epsilon) == (0.001, 0.95, 1e-7)


def test_clipping():
    variable = bp.Variable(np.zeros(2))
    bp.optimizers.SGD(1.0, clipnorm=1.0).apply_gradients([(np.array([3.0, 4.0]), variable)])
    np.testing.assert_allclose(variable.numpy(), [-0.6, -0.8])
    variable.assign([0.0, 0.0])
    bp.optimizers.SGD(1.0, clipvalue=0.5).apply_gradients([(np.array([3.0, -0.1]), variable)])
    np.testing.assert_allclose(variable.numpy(), [-0.5, 0.1])
    a, b = bp.Variable(np.zeros(1)), bp.Variable(np.zeros(1))
    bp.optimizers.SGD(1.0, global_clipnorm=1.0).apply_gradients([(np.array([3.0]), a), (np.array([4.0]), b)])
    np.testing.assert_allclose([a.numpy()[0], b.numpy()[0]], [-0.6, -0.8])


def test_schedules():
    schedule = bp.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert schedule(20) == pytest.approx(0.025)
    assert bp.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True)(15) == pytest.approx(0.05)
    piecewise = bp.optimizers.schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert [piecewise(s) for s in (0, 10, 11, 20, 21)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    cosine = bp.optimizers.schedules.CosineDecay(1.0, 100, alpha=0.1)
    assert cosine(0) == pytest.approx(1.0) and cosine(50) == pytest.approx(0.55) and cosine(200) == pytest.approx(0.1)
    optimizer = bp.optimizers.SGD(learning_rate=lambda step: 1.0 / (step + 1))
    variable = bp.Variable(np.zeros(1))
    for _ in range(3):
        optimizer.apply_gradients([(np.ones(1), variable)])
    assert variable.numpy()[0] == pytest.approx(-(1 + 1 / 2 + 1 / 3))


def test_state_round_trip_resumes_exactly():
    def run(steps, optimizer, variable):
        for _ in range(steps):
            optimizer.apply_gradients([(quadratic_grad(variable.numpy()), variable)])

    straight, v1 = bp.optimizers.Adam(0.1), bp.Variable(np.array([2.0, -1.0]))
    run(20, straight, v1)
    first, v2 = bp.optimizers.Adam(0.1), bp.Variable(np.array([2.0, -1.0]))
    run(10, first, v2)
    state = {k: np.array(v) for k, v in first.get_state().items()}
    resumed = bp.optimizers.Adam(0.1)
    resumed.set_state(state, [v2])
    run(10, resumed, v2)
    assert np.array_equal(v1.numpy(), v2.numpy())


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "abc"])
def test_bad_learning_rates(bad):
    with pytest.raises(ValueError, match="learning_rate"):
        bp.optimizers.Adam(learning_rate=bad)


def test_setting_a_bad_learning_rate_names_it_and_keeps_the_old_one():
    optimizer = bp.optimizers.SGD(0.1)
    with pytest.raises(ValueError, match=r"^learning_rate must be a positive finite number or a schedule, got -1$"):
        optimizer.learning_rate = -1
    assert optimizer.learning_rate == 0.1


def test_the_public_view_of_rate_and_state():
    schedule = bp.optimizers.schedules.ExponentialDecay(0.5, 10, 0.5)
    assert bp.optimizers.SGD(0.1).learning_rate_schedule is None
    assert bp.optimizers.SGD(schedule).learning_rate_schedule is schedule
    optimizer, variable = bp.optimizers.Adam(0.1), bp.Variable(np.zeros(2))
    assert not optimizer.variables_known
    optimizer.apply_gradients([(np.ones(2), variable)])
    assert optimizer.variables_known
    optimizer.forget_variables()
    assert not optimizer.variables_known


@pytest.mark.parametrize("gradient", [bp.Tensor(np.array([1.0, -2.0])), np.array([1.0, -2.0]), [1.0, -2.0]],
                         ids=["tensor", "array", "list"])
def test_gradients_as_tensors_arrays_or_lists(gradient):
    variable = bp.Variable(np.zeros(2))
    bp.optimizers.SGD(0.5).apply_gradients([(gradient, variable)])
    assert variable.numpy().tolist() == [-0.5, 1.0]


def test_a_gradient_of_the_wrong_shape_names_both_shapes():
    variable = bp.Variable(np.zeros((2, 3)), name="kernel")
    with pytest.raises(ValueError, match=r"^sgd: gradient of shape \(3, 2\) for variable 'kernel' of shape \(2, 3\)$"):
        bp.optimizers.SGD().apply_gradients([(np.zeros((3, 2)), variable)])
    with pytest.raises(ValueError, match=r"^sgd.apply_gradients: no \(gradient, variable\) pairs were given$"):
        bp.optimizers.SGD().apply_gradients(zip([], []))


def test_unknown_optimizer_lists_valid():
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'; valid: sgd, adam, adamw, adagrad, rmsprop, "
                                         "adadelta, adamax, nadam"):
        bp.optimizers.get("adamm")


@pytest.mark.parametrize("rule, cls, opts", CASES)
def test_a_none_gradient_is_a_zero_gradient(rule, cls, opts):
    """A None gradient takes the formula's step with g = 0 (slots decay, momentum carries on), with a warning."""
    optimizer = cls(**opts)
    a, b = bp.Variable(np.array([2.0, -1.0])), bp.Variable(np.array([0.5]))
    state_a, state_b = {}, {}
    expected_a = reference_step(rule, a.numpy(), quadratic_grad(a.numpy()), state_a, 0, opts["learning_rate"], opts)
    expected_b = reference_step(rule, b.numpy(), np.array([0.3]), state_b, 0, opts["learning_rate"], opts)
    optimizer.apply_gradients([(quadratic_grad(a.numpy()), a), (np.array([0.3]), b)])
    expected_a = reference_step(rule, expected_a, quadratic_grad(expected_a), state_a, 1, opts["learning_rate"], opts)
    expected_b = reference_step(rule, expected_b, np.zeros(1), state_b, 1, opts["learning_rate"], opts)
    with pytest.warns(UserWarning, match=f"no gradient for {b.path}"):
        optimizer.apply_gradients([(quadratic_grad(a.numpy()), a), (None, b)])
    np.testing.assert_allclose(a.numpy(), expected_a, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.numpy(), expected_b, rtol=1e-10, atol=1e-12)


def test_all_gradients_none_is_an_error_that_shows_the_tape_order():
    w = bp.Variable(np.ones(2), name="w")
    prediction = w * 2.0  # the forward pass outside the tape: the slide's mistake
    with bp.GradientTape() as tape:
        loss = bp.reduce_sum(prediction * 1.0)
    grads = tape.gradient(loss, [w])
    with pytest.raises(ValueError, match="No gradients provided for any variable \\(w\\)(.|\n)*with bp.GradientTape"):
        bp.optimizers.Adam().apply_gradients(zip(grads, [w]))
    assert np.array_equal(w.numpy(), [1.0, 1.0])


def test_state_is_restored_by_name_whatever_the_order_and_none_pattern():
    """Issue #12's reproduction: a None gradient on the first step used to swap a's and b's moments."""
    a, b = bp.Variable(np.array([1.0]), name="a"), bp.Variable(np.array([2.0, 3.0]), name="b")
    optimizer = bp.optimizers.Adam(0.1)
    with pytest.warns(UserWarning):
        optimizer.apply_gradients([(None, a), (np.array([0.5, -0.5]), b)])
    optimizer.apply_gradients([(np.array([-5.0]), a), (np.array([0.5, 1.0]), b)])
    state = optimizer.get_state()
    assert set(state) == {"iterations", "a/m", "a/v", "b/m", "b/v"}
    for order in ([a, b], [b, a]):
        restored = bp.optimizers.Adam(0.1)
        restored.set_state(state, order)
        for variable in (a, b):
            for slot in ("m", "v"):
                assert np.array_equal(restored.slots(variable)[slot], optimizer.slots(variable)[slot])
        assert restored.iterations == 2


def test_state_that_does_not_fit_is_refused_whole():
    a, b = bp.Variable(np.array([1.0]), name="a"), bp.Variable(np.array([2.0]), name="b")
    optimizer = bp.optimizers.Adam()
    optimizer.apply_gradients([(np.array([1.0]), a), (np.array([1.0]), b)])
    state = optimizer.get_state()
    other = bp.Variable(np.array([1.0, 2.0]), name="a")
    fresh = bp.optimizers.Adam()
    with pytest.raises(ValueError, match="a/m: shape \\(1,\\) instead of \\(2,\\)"):
        fresh.set_state(state, [other, b])
    with pytest.raises(ValueError, match="unexpected b/m"):
        fresh.set_state(state, [a])
    assert fresh.iterations == 0


def test_slots_follow_a_variable_when_the_set_of_variables_changes():
    """Training a subset (a frozen layer) and then all again keeps every variable's moments."""
    a, b = bp.Variable(np.array([1.0]), name="a"), bp.Variable(np.array([2.0]), name="b")
    optimizer = bp.optimizers.Adam(0.1)
    optimizer.apply_gradients([(np.array([1.0]), a), (np.array([2.0]), b)])
    m_b = bp.to_host(optimizer.slots(b)["m"]).copy()  # slots live on the variables' device
    optimizer.apply_gradients([(np.array([1.0]), a)])  # b is not passed at all: it keeps its state
    optimizer.apply_gradients([(np.array([1.0]), a), (np.array([2.0]), b)])
    np.testing.assert_allclose(bp.to_host(optimizer.slots(b)["m"]), 0.9 * m_b + 0.1 * 2.0, rtol=1e-15)
    assert optimizer.iterations == 3


def test_exclude_from_weight_decay_and_the_lr_alias():
    kernel, bias = bp.Variable(np.ones(2), name="kernel"), bp.Variable(np.ones(2), name="bias")
    optimizer = bp.optimizers.SGD(0.1, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    optimizer.apply_gradients([(np.zeros(2), kernel), (np.zeros(2), bias)])
    assert np.array_equal(kernel.numpy(), [0.95, 0.95]) and np.array_equal(bias.numpy(), [1.0, 1.0])
    optimizer.lr = 0.2
    assert optimizer.learning_rate == 0.2 and optimizer.lr == 0.2


def test_cosine_decay_with_warmup_against_its_formula():
    schedule = bp.optimizers.schedules.CosineDecay(0.1, decay_steps=100, alpha=0.2, warmup_target=1.0,
                                                   warmup_steps=10)
    assert schedule(0) == pytest.approx(0.1) and schedule(5) == pytest.approx(0.55)
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(60) == pytest.approx(0.8 * 0.5 * (1 + math.cos(math.pi * 0.5)) + 0.2)
    assert schedule(110) == pytest.approx(0.2) and schedule(500) == pytest.approx(0.2)


def test_fresh_state_and_iterations_are_required():
    variable = bp.Variable(np.ones(2), name="fresh")
    optimizer = bp.optimizers.Adam()
    optimizer.set_state({"iterations": np.asarray(0)}, [variable])  # saved before any step
    assert optimizer.iterations == 0 and set(optimizer.get_state()) == {"iterations", "fresh/m", "fresh/v"}
    with pytest.raises(ValueError, match="missing fresh/m"):
        bp.optimizers.Adam().set_state({"iterations": np.asarray(3)}, [variable])
    with pytest.raises(ValueError, match="no 'iterations'"):
        bp.optimizers.Adam().set_state({}, [variable])
