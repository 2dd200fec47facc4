"""Normalization and BatchNormalization (issue #31): Keras 3's formulas written out, gradients by finite
differences, the compiled step, files and ONNX."""
import numpy as np
import pytest

import backprop as bp
from gradcheck import check_gradients

rng = np.random.default_rng(0)
X = (rng.normal(size=(64, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]).astype(np.float32)


def test_normalization_adapts_to_the_data_and_inverts():
    layer = bp.layers.Normalization()
    layer.adapt(X)
    out = layer(X).numpy()
    np.testing.assert_allclose(out, (X - X.mean(0)) / X.std(0), rtol=1e-4, atol=1e-5)
    back = bp.layers.Normalization(mean=X.mean(0), variance=X.var(0), invert=True)
    np.testing.assert_allclose(back(out).numpy(), X, rtol=1e-4, atol=1e-4)
    constant = bp.layers.Normalization(mean=[1.0], variance=[0.0])  # a constant feature is only centred
    assert constant(np.array([[3.0]], np.float32)).numpy()[0, 0] == pytest.approx(2 / 1e-7, rel=1e-3)
    with pytest.raises(ValueError, match="give both mean and variance"):
        bp.layers.Normalization(mean=[0.0])
    with pytest.raises(ValueError, match="needs finite data"):
        bp.layers.Normalization().adapt(np.array([[np.nan]]))


def batch_norm_formula(x, gamma, beta, epsilon=1e-3):
    mean, variance = x.mean(0), x.var(0)  # biased, as Keras 3's ops.moments
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta, mean, variance


def test_batch_normalization_follows_keras_formulas():
    layer = bp.layers.BatchNormalization(momentum=0.9)
    layer(X[:2])  # built
    layer.gamma.assign(np.array([1.5, 0.5, 2.0], np.float32))
    layer.beta.assign(np.array([0.1, -0.2, 0.3], np.float32))
    out = layer(X, training=True).numpy()
    expected, mean, variance = batch_norm_formula(X.astype(np.float64), layer.gamma.numpy(), layer.beta.numpy())
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 + 0.1 * variance, rtol=1e-5)
    inference = layer(X, training=False).numpy()  # the moving statistics, nothing updated
    np.testing.assert_allclose(inference, (X - layer.moving_mean.numpy()) / np.sqrt(layer.moving_variance.numpy()
                                                                                  + 1e-3) * layer.gamma.numpy()
                               + layer.beta.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)


def test_batch_normalization_gradients_match_finite_differences():
    layer = bp.layers.BatchNormalization(dtype="float64")
    layer(np.zeros((2, 3)))
    gamma, beta = np.array([1.5, 0.5, 2.0]), np.array([0.1, -0.2, 0.3])

    def run(x, g, b):
        layer.gamma.assign(g.numpy())
        layer.beta.assign(b.numpy())
        mean = bp.mean(x, axis=0, keepdims=True)
        variance = bp.mean(bp.square(x - mean), axis=0, keepdims=True)
        return (x - mean) / bp.sqrt(variance + 1e-3) * g + b  # the layer's training formula, for g and b too

    check_gradients(run, rng.normal(size=(5, 3)), gamma, beta)
    check_gradients(lambda x: layer(x, training=True), rng.normal(size=(5, 3)))  # through the layer itself


def test_a_compiled_step_replays_batch_normalization_bit_for_bit():
    y = (X[:, 0] > 0).astype(np.float32)
    runs = []
    for jit in (False, True):
        bp.random.set_seed(0)
        model = bp.Sequential([bp.Input(shape=(3,)), bp.layers.Normalization(mean=X.mean(0), variance=X.var(0)),
                               bp.layers.Dense(8), bp.layers.BatchNormalization(), bp.layers.Activation("relu"),
                               bp.layers.Dense(1)])
        model.compile(optimizer="adam", loss=bp.losses.BinaryCrossentropy(from_logits=True), jit_compile=jit)
        history = model.fit(X, y, epochs=3, batch_size=16, verbose=0)
        runs.append((history.history, model.get_weights(), bp.training.compiled.step_info(model)))
    (eager, eager_weights, _), (compiled, compiled_weights, info) = runs
    assert eager == compiled and info[False]["replays"] > 0 and info[False]["fallback"] is None
    for a, b in zip(eager_weights, compiled_weights):  # moving statistics included
        np.testing.assert_array_equal(a, b)


def test_files_and_onnx_keep_the_statistics(tmp_path):
    norm = bp.layers.Normalization()
    norm.adapt(X)
    model = bp.Sequential([bp.Input(shape=(3,)), norm, bp.layers.Dense(4), bp.layers.BatchNormalization(),
                           bp.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X, X[:, :2], epochs=2, verbose=0)
    model.save(tmp_path / "m.bp")
    loaded = bp.models.load_model(tmp_path / "m.bp")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = model.export(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: X})[0]
    np.testing.assert_allclose(got, model.predict(X), rtol=1e-5, atol=1e-5)
