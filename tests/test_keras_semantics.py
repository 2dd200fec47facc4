"""Issue #19: Keras' semantics where backprop follows Keras, and Keras/PyTorch habits answered.

Each case is checked against a formula written out here; where Keras 3 is installed (torch backend,
float64; never a dependency) the same computation is also run through Keras itself.
"""
import os
import warnings

import numpy as np
import pytest

import backprop as bp

os.environ.setdefault("KERAS_BACKEND", "torch")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras' own NumPy 2 warnings


def keras_or_none():
    try:
        import keras
    except Exception:  # not installed, or no backend: the formula checks still run
        return None
    keras.config.set_floatx("float64")
    return keras


rng = np.random.default_rng(0)


def test_epoch_loss_weights_each_batch_by_its_size():
    """72 examples in batches of 16: the last batch has 8, and counts half as much (Keras 1.1997 in the issue)."""
    x, y = rng.normal(size=(72, 3)), rng.normal(size=(72, 1))
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Input(shape=(3,)), bp.layers.Dense(1, dtype="float64")], dtype="float64")
    model.compile(optimizer=bp.optimizers.SGD(0.01), loss="mse")
    initial = model.get_weights()
    batch_losses = []
    record = bp.callbacks.LambdaCallback(on_train_batch_begin=lambda b, logs: batch_losses.append(
        np.mean((model.predict(x[b * 16:(b + 1) * 16]) - y[b * 16:(b + 1) * 16]) ** 2)))
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[record])
    sizes = [16, 16, 16, 16, 8]
    assert history.history["loss"][0] == pytest.approx(np.dot(batch_losses, sizes) / 72, rel=1e-12)
    assert history.history["loss"][0] != pytest.approx(np.mean(batch_losses), rel=1e-6)
    keras = keras_or_none()
    if keras is not None:
        reference = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        reference.set_weights(initial)
        reference.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        keras_history = reference.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        assert history.history["loss"][0] == pytest.approx(keras_history.history["loss"][0], rel=1e-6)
        for ours, theirs in zip(model.get_weights(), reference.get_weights()):
            np.testing.assert_allclose(ours, theirs, rtol=1e-6)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", None])
def test_reductions(reduction):
    y, p, w = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), rng.uniform(0.2, 2, 5)
    per_example = np.mean((y - p) ** 2, axis=-1)
    expected = {"sum_over_batch_size": np.sum(w * per_example) / 5, "sum": np.sum(w * per_example),
                "mean_with_sample_weight": np.sum(w * per_example) / np.sum(w), None: w * per_example}[reduction]
    got = bp.losses.MeanSquaredError(reduction=reduction)(y, p, sample_weight=w).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    keras = keras_or_none()
    if keras is not None:
        reference = keras.losses.MeanSquaredError(reduction=reduction)(y, p, sample_weight=w)
        np.testing.assert_allclose(got, keras.ops.convert_to_numpy(reference), rtol=1e-6)  # Keras casts to float32


def test_unknown_constructor_arguments_are_type_errors():
    with pytest.raises(TypeError):
        bp.losses.MeanSquaredError(reductoin="sum")
    with pytest.raises(TypeError):
        bp.losses.BinaryCrossentropy(from_logit=True)
    with pytest.raises(ValueError, match="reduction must be one of"):
        bp.losses.MeanSquaredError(reduction="mean")


def test_label_smoothing_and_ignore_class():
    y, p = np.array([[0.0], [1.0], [1.0], [0.0]]), np.array([[0.2], [0.6], [0.3], [0.9]])
    smooth = y * 0.8 + 0.1
    expected = -np.mean(smooth * np.log(p) + (1 - smooth) * np.log(1 - p))
    assert bp.losses.BinaryCrossentropy(label_smoothing=0.2)(y, p).numpy() == pytest.approx(expected, rel=1e-12)
    labels, probs = np.array([0, 1, 2]), np.array([[.5, .3, .2], [.1, .8, .1], [.2, .2, .6]])
    ignored = bp.losses.SparseCategoricalCrossentropy(ignore_class=1)(labels, probs).numpy()
    assert ignored == pytest.approx(-(np.log(0.5) + np.log(0.6)) / 2, rel=1e-12)  # the ignored row is not counted
    onehot = np.eye(3)[labels]
    smoothed = onehot * 0.7 + 0.1
    assert bp.losses.CategoricalCrossentropy(label_smoothing=0.3)(onehot, probs).numpy() == pytest.approx(
        -np.mean(np.sum(smoothed * np.log(probs), axis=1)), rel=1e-12)
    keras = keras_or_none()
    if keras is not None:
        assert bp.losses.BinaryCrossentropy(label_smoothing=0.2)(y, p).numpy() == pytest.approx(
            float(keras.losses.BinaryCrossentropy(label_smoothing=0.2)(y, p)), rel=1e-6)
        assert ignored == pytest.approx(float(keras.losses.SparseCategoricalCrossentropy(ignore_class=1)(labels, probs)),
                                        rel=1e-6)


def test_weighted_auc_matches_keras_case():
    auc = bp.metrics.AUC()
    auc.update_state([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], sample_weight=[1, 2, 3, 4])
    assert auc.result() == pytest.approx(15 / 21)  # Keras' weighted case: 0.7143


def small(metrics, loss="binary_crossentropy"):
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Input(shape=(2,)), bp.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss=loss, metrics=metrics)
    return model


def test_acc_is_logged_as_acc_and_early_stopping_on_it_fires():
    x, y = rng.normal(size=(40, 2)), rng.integers(0, 2, 40)
    model = small(["acc"])
    stopper = bp.callbacks.EarlyStopping(monitor="acc", patience=0, mode="max", min_delta=1.0)
    history = model.fit(x, y, epochs=10, verbose=0, validation_split=0.25, callbacks=[stopper])
    assert set(history.history) == {"loss", "acc", "val_loss", "val_acc"}
    assert len(history.history["loss"]) == 2  # min_delta=1.0: nothing counts as an improvement


def test_automatic_names_follow_keras():
    model = small(["AUC", bp.metrics.AUC(), "auc"])
    assert [m.name for m in model.new_metrics()] == ["auc", "auc_1", "auc_2"]

    class MLP(bp.Model):
        def call(self, inputs):
            return inputs

    assert MLP().name.startswith("mlp")
    assert bp.naming.snake_case("Conv2D") == "conv2d"


def test_names_are_resolved_at_compile():
    with pytest.raises(ValueError, match="unknown metric 'acuracy'"):
        small(["acuracy"])
    model = small(["top_k_categorical_accuracy"], loss="SparseCategoricalCrossentropy")
    assert isinstance(model.loss, bp.losses.SparseCategoricalCrossentropy)
    assert isinstance(model.new_metrics()[0], bp.metrics.TopKCategoricalAccuracy)


def test_a_missing_monitor_is_reported():
    x, y = rng.normal(size=(20, 2)), rng.integers(0, 2, 20)
    with pytest.raises(ValueError, match="monitor='val_accuracy' is not in the logs.*no validation data"):
        small(["accuracy"]).fit(x, y, epochs=2, verbose=0,
                                callbacks=[bp.callbacks.EarlyStopping(monitor="val_accuracy")])
    with pytest.warns(UserWarning, match="monitor='val_acc' is not in the logs; available: loss, accuracy, val_loss"):
        small(["accuracy"]).fit(x, y, epochs=1, verbose=0, validation_split=0.5,
                                callbacks=[bp.callbacks.ReduceLROnPlateau(monitor="val_acc")])


def test_accuracy_and_top_k():
    exact = bp.metrics.Accuracy()
    exact.update_state([1, 2, 3, 4], [1, 2, 0, 4])
    assert exact.result() == 0.75
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    top2 = bp.metrics.SparseTopKCategoricalAccuracy(k=2)
    top2.update_state([2, 2, 0], scores)
    assert top2.result() == pytest.approx(2 / 3)  # class 2 of row 1 is third; class 0 of row 2 ties for second


def test_in_place_operators_update_a_variable():
    """PyTorch's habit `p -= lr * g` updates the variable itself instead of silently rebinding the name."""
    w = bp.Variable([1.0, 2.0], name="w")
    params = [w]
    for p in params:
        p -= 0.5 * np.array([2.0, 2.0])
    assert np.array_equal(w.numpy(), [0.0, 1.0]) and isinstance(params[0], bp.Variable)
    w *= 2.0
    w += 1.0
    w /= 2.0
    assert np.array_equal(w.numpy(), [0.5, 1.5])
    assert "numpy=" in repr(w) and "1.5" in repr(w)  # print(variable) shows its values


def test_a_variable_rebound_to_a_tensor_gets_a_gradient_error_that_says_so():
    w = bp.Variable([1.0, 2.0])
    w = w - 0.1 * bp.tensor([1.0, 1.0])  # no longer a Variable
    with bp.GradientTape() as tape:
        loss = bp.reduce_sum(w * w)
    with pytest.raises(ValueError, match="w.assign_sub"):
        tape.gradient(loss, [w])


def test_predict_on_one_example_without_its_batch_axis():
    model = bp.Sequential([bp.layers.Input(shape=(64,)), bp.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"one example of shape \(64,\).*x\[None\]"):
        model.predict(np.zeros(64))
    assert model.predict(np.zeros(64)[None]).shape == (1, 3)


def test_a_none_gradient_warns_like_keras():
    a, b = bp.Variable([1.0], name="a"), bp.Variable([1.0], name="b")
    with bp.GradientTape() as tape:
        loss = bp.reduce_sum(a * a)
    grads = tape.gradient(loss, [a, b])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bp.optimizers.SGD(0.1).apply_gradients(zip(grads, [a, b]))
    assert any("no gradient for b" in str(w.message) for w in caught)


def test_functional_api():
    """The Keras MNIST tutorial's way: Dense(32)(Input(shape=(64,))) used to fail with 'unsupported dtype object'."""
    inputs = bp.Input(shape=(64,))
    hidden = bp.layers.Dense(32, activation="relu")(inputs)
    outputs = bp.layers.Dense(10)(hidden)
    assert hidden.shape == (None, 32) and outputs.shape == (None, 10)
    model = bp.Model(inputs=inputs, outputs=outputs)
    assert isinstance(model, bp.models.Functional) and [l.units for l in model.layers] == [32, 10]
    x = rng.normal(size=(5, 64)).astype(np.float32)
    expected = np.maximum(x @ model.layers[0].kernel.numpy() + model.layers[0].bias.numpy(), 0) \
        @ model.layers[1].kernel.numpy() + model.layers[1].bias.numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)
    assert model.get_layer(index=0) is model.layers[0] and model.get_layer(model.layers[1].name) is model.layers[1]
    model.compile(optimizer="adam", loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["acc"])
    assert model.metrics_names == ["loss", "acc"]
    model.fit(x, np.arange(5), epochs=2, verbose=0)
    assert np.array_equal(model.predict_on_batch(x), model.predict(x))


def test_functional_model_with_two_inputs_saves_and_loads(tmp_path):
    left, right = bp.Input(shape=(3,), name="left"), bp.Input(shape=(2,), name="right")
    shared = bp.layers.Dense(4, activation="tanh")
    a = shared(bp.layers.Dense(2)(left))  # a layer used twice: two nodes of one layer
    b = shared(right)
    model = bp.Model([left, right], [a, bp.layers.Dense(1)(b)])
    x = [rng.normal(size=(6, 3)), rng.normal(size=(6, 2))]
    first, second = model(x)
    model.save(tmp_path / "two.bp")
    again = bp.models.load_model(tmp_path / "two.bp")
    for ours, theirs in zip(again(x), (first, second)):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    with pytest.raises(ValueError, match="takes 2 inputs, got 1"):
        model(x[0])


def test_sequential_accepts_bp_input_and_one_hot_helper():
    model = bp.Sequential([bp.Input(shape=(3,)), bp.layers.Dense(2)])
    assert model.built and model.predict(np.zeros((1, 3))).shape == (1, 2)
    np.testing.assert_array_equal(bp.utils.to_categorical([0, 2, 1]), np.eye(3)[[0, 2, 1]])
    with pytest.raises(ValueError, match="outside"):
        bp.utils.to_categorical([3], num_classes=3)


def test_fit_class_weight_and_steps_per_epoch():
    x, y = rng.normal(size=(40, 2)), np.array([0] * 30 + [1] * 10)
    weighted, plain = small([]), small([])
    weighted_history = weighted.fit(x, y, batch_size=40, epochs=1, verbose=0, shuffle=False, class_weight={0: 1, 1: 3})
    plain_history = plain.fit(x, y, batch_size=40, epochs=1, verbose=0, shuffle=False,
                              sample_weight=np.where(y == 1, 3.0, 1.0))
    assert weighted_history.history == plain_history.history
    counted = []
    model = small([])
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, steps_per_epoch=3,
              callbacks=[bp.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: counted.append(b))])
    assert counted == [0, 1, 2, 0, 1, 2] and model.optimizer.iterations == 6
    with pytest.raises(ValueError, match="class_weight has no weight for class"):
        small([]).fit(x, y, verbose=0, class_weight={0: 1.0})


def test_more_keras_names():
    assert bp.optimizers.get("Nadam").name == "nadam" and bp.optimizers.get("adamax").name == "adamax"
    for name in ("selu", "softsign", "relu6"):
        bp.layers.Dense(2, activation=name)
    (x_train, y_train), (x_test, y_test) = bp.datasets.mnist.load_data()
    assert x_train.shape[1:] == (28, 28) and x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert len(x_train) == 4000 and len(x_test) == 1000


def test_hinge_and_kl_divergence():
    y, p = rng.choice([0.0, 1.0], (6, 3)), rng.normal(size=(6, 3))
    signed = 2 * y - 1
    assert bp.losses.Hinge()(y, p).numpy() == pytest.approx(np.mean(np.maximum(1 - signed * p, 0)), rel=1e-12)
    q, r = rng.dirichlet(np.ones(4), 5), rng.dirichlet(np.ones(4), 5)
    assert bp.losses.KLDivergence()(q, r).numpy() == pytest.approx(np.mean(np.sum(q * np.log(q / r), axis=1)),
                                                                   rel=1e-12)
    keras = keras_or_none()
    if keras is not None:
        assert bp.losses.Hinge()(y, p).numpy() == pytest.approx(float(keras.losses.Hinge()(y, p)), rel=1e-6)
        assert bp.losses.KLDivergence()(q, r).numpy() == pytest.approx(float(keras.losses.KLDivergence()(q, r)),
                                                                       rel=1e-6)


@pytest.mark.parametrize("name", ["Nadam", "Adamax"])
def test_new_optimizers_against_keras(name):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras is not installed (the formula test in test_optimizers.py covers these)")
    w0 = np.array([2.0, -1.0, 0.5])
    theirs, ours = keras.Variable(w0.copy()), bp.Variable(w0.copy())
    keras_optimizer, our_optimizer = getattr(keras.optimizers, name)(0.1), getattr(bp.optimizers, name)(0.1)
    for step in range(50):
        keras_optimizer.apply_gradients([(keras.ops.convert_to_tensor(2 * keras.ops.convert_to_numpy(theirs)
                                                                      + np.sin(step)), theirs)])
        our_optimizer.apply_gradients([(2 * ours.numpy() + np.sin(step), ours)])
    np.testing.assert_allclose(ours.numpy(), keras.ops.convert_to_numpy(theirs), rtol=1e-8, atol=1e-12)


def test_evaluate_prints_its_result_by_default(capsys):
    model = small(["accuracy"])
    x, y = rng.normal(size=(10, 2)), rng.integers(0, 2, 10)
    loss, accuracy = model.evaluate(x, y)
    assert capsys.readouterr().out.strip() == f"loss: {loss:.4f} - accuracy: {accuracy:.4f}"
    model.evaluate(x, y, verbose=0)
    assert capsys.readouterr().out == ""


def test_per_value_weights_weight_each_value_before_the_mean():
    """One weight per value of y (Keras 3 refuses this shape for elementwise losses; backprop weights each value)."""
    y, p, w = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.uniform(size=(4, 3))
    assert bp.losses.MeanSquaredError()(y, p, sample_weight=w).numpy() == pytest.approx(np.mean(w * (y - p) ** 2))


# --- Keras 3's own tests, transcribed (accuracy_metrics_test, early_stopping_test, optimizers) -- issue #31 ---
@pytest.mark.parametrize("metric, y_true, y_pred, weights, expected", [
    (lambda: bp.metrics.Accuracy(), [[1], [2], [3], [4]], [[0], [2], [3], [4]], None, 0.75),
    (lambda: bp.metrics.Accuracy(), [[1], [2], [3], [4]], [[0], [2], [3], [4]], [1, 1, 0, 0], 0.5),
    (lambda: bp.metrics.BinaryAccuracy(), [[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]], None, 0.75),
    (lambda: bp.metrics.BinaryAccuracy(), [1, 1, 0, 0], [[0.98], [1], [0], [0.6]], None, 0.75),
    (lambda: bp.metrics.BinaryAccuracy(), [[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]], [1, 0, 0, 1], 0.5),
    (lambda: bp.metrics.BinaryAccuracy(threshold=0.3), [[1], [1], [0], [0]], [[0.98], [0.5], [0.1], [0.2]], None,
     1.0),
    (lambda: bp.metrics.BinaryAccuracy(threshold=0.9), [[1], [1], [0], [0]], [[0.98], [0.5], [0.1], [0.2]], None,
     0.75),
    (lambda: bp.metrics.CategoricalAccuracy(), [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], [0.7, 0.3],
     0.3),
    (lambda: bp.metrics.SparseCategoricalAccuracy(), [[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], [0.7, 0.3], 0.3),
    (lambda: bp.metrics.SparseCategoricalAccuracy(), [[0], [0]], [[[0.9, 0.1, 0.0], [0.8, 0.15, 0.05]]], None, 1.0),
    (lambda: bp.metrics.SparseCategoricalAccuracy(), [2, 1, 0], [[0, 0, 1.0], [0, 1, 0], [1, 0, 0]], None, 1.0),
    # a weight per value: each example adds its mean weighted value and counts its mean weight
    (lambda: bp.metrics.Accuracy(), [[1, 2], [3, 4]], [[1, 0], [3, 4]], [[1, 1], [0, 1]], 2 / 3),
    (lambda: bp.metrics.BinaryAccuracy(), [[1, 0], [1, 1]], [[0.9, 0.8], [0.2, 0.7]], [[1, 1], [1, 0]], 1 / 3),
])
def test_keras_accuracy_metric_cases(metric, y_true, y_pred, weights, expected):
    m = metric()
    m.update_state(np.array(y_true), np.array(y_pred), sample_weight=None if weights is None else np.array(weights))
    assert m.result() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("threshold", [-0.5, 1.5])
def test_binary_accuracy_refuses_a_threshold_outside_its_range(threshold):
    with pytest.raises(ValueError, match="Invalid value for argument `threshold`"):
        bp.metrics.BinaryAccuracy(threshold=threshold)


def test_early_stopping_infers_its_mode_from_the_monitor():
    """Keras' cases, monitored quantities that appear only once training logs them (val_ and metrics)."""
    rng = np.random.default_rng(0)
    x, y = rng.random((10, 5)), rng.random((10, 1))
    model = bp.Sequential([bp.layers.Dense(1, activation="relu"), bp.layers.Dense(1, activation="relu")])
    model.compile(loss="mae", optimizer="adam", metrics=["mse", "acc", "accuracy", "hinge"])
    for mode, monitor, expected in [("max", "val_mse", np.greater), ("min", "val_loss", np.less),
                                    ("auto", "val_mse", np.less), ("auto", "loss", np.less),
                                    ("auto", "acc", np.greater), ("auto", "val_accuracy", np.greater),
                                    ("auto", "hinge", np.less)]:
        stopper = bp.callbacks.EarlyStopping(patience=0, monitor=monitor, mode=mode)
        model.fit(x, y, batch_size=5, validation_data=(x, y), callbacks=[stopper], epochs=2, verbose=0)
        assert stopper.monitor_op is expected, monitor
    with pytest.raises(ValueError):
        model.fit(x, y, batch_size=5, validation_data=(x, y), epochs=2, verbose=0,
                  callbacks=[bp.callbacks.EarlyStopping(patience=0, monitor="unknown")])


def test_optimizers_get_none_is_none_and_compile_needs_one():
    assert bp.optimizers.get(None) is None
    with pytest.raises(ValueError, match="an optimizer is required"):
        bp.Sequential([bp.layers.Dense(1)]).compile(optimizer=None, loss="mse")


def test_hinge_metric_matches_its_formula():
    """Keras' Hinge metric: labels 0/1 become -1/1, then mean(max(1 - y p, 0)) over the last axis, averaged."""
    y = np.array([[0, 1], [1, 0]], np.float32)
    p = np.array([[0.3, 0.8], [-0.5, 2.0]], np.float32)
    signed = 2 * y - 1
    expected = np.mean(np.mean(np.maximum(1 - signed * p, 0), axis=1))
    m = bp.metrics.get("hinge")
    m.update_state(y, p)
    assert m.name == "hinge" and m.result() == pytest.approx(expected)
