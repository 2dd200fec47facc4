"""Losses against their formulas written out here; metrics against direct computations."""
import numpy as np
import pytest

import backprop as bp
from gradcheck import check_gradients

rng = np.random.default_rng(0)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_mse_mae_huber():
    y, p = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    assert bp.losses.MeanSquaredError()(y, p).numpy() == pytest.approx(np.mean((y - p) ** 2))
    assert bp.losses.MeanAbsoluteError()(y, p).numpy() == pytest.approx(np.mean(np.abs(y - p)))
    e = np.abs(y - p)
    huber = np.where(e <= 1, 0.5 * e ** 2, e - 0.5)
    assert bp.losses.Huber()(y, p).numpy() == pytest.approx(np.mean(huber))


def test_binary_crossentropy_both_ways():
    y = (rng.uniform(size=(8, 1)) > 0.5).astype(float)
    z = rng.normal(size=(8, 1)) * 3
    expected = np.mean(-(y * np.log(sigmoid(z)) + (1 - y) * np.log(1 - sigmoid(z))))
    assert bp.losses.BinaryCrossentropy(from_logits=True)(y, z).numpy() == pytest.approx(expected, rel=1e-10)
    assert bp.losses.BinaryCrossentropy()(y, sigmoid(z)).numpy() == pytest.approx(expected, rel=1e-6)


def test_categorical_and_sparse_crossentropy_both_ways():
    labels = rng.integers(0, 4, size=7)
    onehot = np.eye(4)[labels]
    z = rng.normal(size=(7, 4)) * 2
    expected = np.mean(-np.log(softmax(z)[np.arange(7), labels]))
    for loss, y, pred in [(bp.losses.CategoricalCrossentropy(from_logits=True), onehot, z),
                          (bp.losses.CategoricalCrossentropy(), onehot, softmax(z)),
                          (bp.losses.SparseCategoricalCrossentropy(from_logits=True), labels, z),
                          (bp.losses.SparseCategoricalCrossentropy(), labels, softmax(z))]:
        assert loss(y, pred).numpy() == pytest.approx(expected, rel=1e-6)


def test_probability_losses_stay_finite_at_zero_and_one():
    """Keras' choice, documented in bp.losses: probabilities are clipped to [1e-7, 1 - 1e-7]."""
    y = np.array([[1.0], [0.0]])
    p = np.array([[0.0], [1.0]])
    value = bp.losses.BinaryCrossentropy()(y, p).numpy()
    assert np.isfinite(value) and value == pytest.approx(-np.log(1e-7), rel=1e-3)


def test_extreme_logits_stay_finite():
    z = np.array([[1e4, -1e4, 0.0]], dtype=np.float32)
    assert np.isfinite(bp.losses.SparseCategoricalCrossentropy(from_logits=True)([1], z).numpy())
    assert np.isfinite(bp.losses.CategoricalCrossentropy(from_logits=True)([[0, 1, 0]], z).numpy())
    assert bp.losses.BinaryCrossentropy(from_logits=True)([[0.0, 1.0, 1.0]], z).numpy() == pytest.approx(
        (1e4 + 1e4 + np.log(2)) / 3, rel=1e-6)


def test_label_shape_errors():
    with pytest.raises(ValueError, match=r"label 10 is outside \[0, 10\)"):
        bp.losses.SparseCategoricalCrossentropy()(np.array([10]), np.ones((1, 10)) / 10)
    with pytest.raises(ValueError, match="label -1"):
        bp.losses.SparseCategoricalCrossentropy()(np.array([-1]), np.ones((1, 10)) / 10)
    with pytest.raises(ValueError, match="label 1.5"):
        bp.losses.SparseCategoricalCrossentropy()(np.array([1.5]), np.ones((1, 10)) / 10)
    with pytest.raises(ValueError, match="width 3.*10 outputs"):
        bp.losses.CategoricalCrossentropy()(np.ones((2, 3)), np.ones((2, 10)))
    with pytest.raises(ValueError, match=r"labels of shape \(32, 2\) do not match predictions of shape \(32, 1\)"):
        bp.losses.MeanSquaredError()(np.ones((32, 2)), np.ones((32, 1)))


def test_column_vs_vector_never_broadcasts():
    y = np.arange(32, dtype=float)
    assert bp.losses.MeanSquaredError()(y, y.reshape(32, 1)).numpy() == 0.0


def test_sample_weight():
    y, p = np.array([[0.0], [1.0], [2.0]]), np.array([[1.0], [1.0], [0.0]])
    w = np.array([1.0, 2.0, 0.5])
    assert bp.losses.MeanSquaredError()(y, p, sample_weight=w).numpy() == pytest.approx((1 + 0 + 0.5 * 4) / 3)


def test_loss_gradients_numerically():
    y = (rng.uniform(size=(4, 1)) > 0.5).astype(float)
    check_gradients(lambda z: bp.losses.BinaryCrossentropy(from_logits=True)(y, z), rng.normal(size=(4, 1)))
    check_gradients(lambda p: bp.losses.BinaryCrossentropy()(y, p), rng.uniform(0.1, 0.9, size=(4, 1)))
    check_gradients(lambda p: bp.losses.CategoricalCrossentropy()(np.eye(3)[[0, 2]], p), rng.uniform(0.1, 0.9, (2, 3)))
    check_gradients(lambda p: bp.losses.SparseCategoricalCrossentropy()(np.array([0, 2]), p), rng.uniform(0.1, 0.9, (2, 3)))
    check_gradients(lambda p: bp.losses.Huber()(np.zeros((3, 2)), p), rng.uniform(-3, 3, (3, 2)))


def test_loss_by_name_and_unknown():
    assert isinstance(bp.losses.get("mse"), bp.losses.MeanSquaredError)
    with pytest.raises(ValueError, match="unknown loss"):
        bp.losses.get("msee")


def test_metrics():
    acc = bp.metrics.SparseCategoricalAccuracy()
    acc.update_state([0, 1, 2], np.eye(3)[[0, 2, 2]])
    assert acc.result() == pytest.approx(2 / 3)
    acc.reset_state()
    assert acc.result() == 0.0
    binary = bp.metrics.BinaryAccuracy()
    binary.update_state([[1], [0], [1], [0]], [[0.9], [0.2], [0.4], [0.6]])
    assert binary.result() == 0.5
    precision, recall = bp.metrics.Precision(), bp.metrics.Recall()
    for m in (precision, recall):
        m.update_state([1, 0, 1, 1], [0.9, 0.8, 0.3, 0.7])
    assert precision.result() == pytest.approx(2 / 3) and recall.result() == pytest.approx(2 / 3)
    auc = bp.metrics.AUC()
    auc.update_state([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert auc.result() == pytest.approx(0.75)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    y, s = rng.integers(0, 2, 200), rng.uniform(size=200).round(1)
    auc.reset_state(); auc.update_state(y, s)
    assert auc.result() == pytest.approx(sklearn_metrics.roc_auc_score(y, s))


def test_label_kind_mistakes_say_which_loss_to_use():
    logits = np.zeros((4, 3))
    with pytest.raises(ValueError, match="got one-hot labels of shape \\(4, 3\\); use categorical_crossentropy"):
        bp.losses.SparseCategoricalCrossentropy(from_logits=True)(np.eye(3)[[0, 1, 2, 0]], logits)
    with pytest.raises(ValueError, match="got class indices of shape \\(4,\\); use sparse_categorical_crossentropy"):
        bp.losses.CategoricalCrossentropy(from_logits=True)(np.array([0, 1, 2, 0]), logits)
