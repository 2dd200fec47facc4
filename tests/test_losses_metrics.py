"""Losses against their formulas written out here; metrics against direct computations."""
import numpy as np
import pytest

import backprop as bp
from gradcheck import check_gradients

pytestmark = pytest.mark.usefixtures("each_device")  # on every device

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
    assert isinstance(bp.losses.get("SparseCategoricalCrossentropy"), bp.losses.SparseCategoricalCrossentropy)
    names = ", ".join(bp.losses.LOSSES)
    with pytest.raises(ValueError) as unknown:
        bp.losses.get("msee")
    assert str(unknown.value) == (f"unknown loss 'msee'; valid: {names} (or the class names, "
                                  "e.g. 'SparseCategoricalCrossentropy')")
    with pytest.raises(ValueError, match="^a loss must be a name, a Loss or a function, got 42$"):
        bp.losses.get(42)


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


LOSS_OBJECTS = [
    (bp.losses.MeanSquaredError(), lambda: rng.normal(size=(5, 3)), lambda: rng.normal(size=(5, 3))),
    (bp.losses.MeanAbsoluteError(), lambda: rng.normal(size=(5, 3)), lambda: rng.normal(size=(5, 3))),
    (bp.losses.Huber(), lambda: rng.normal(size=(5, 3)), lambda: 2 * rng.normal(size=(5, 3))),
    (bp.losses.BinaryCrossentropy(from_logits=True), lambda: rng.integers(0, 2, (5, 1)), lambda: rng.normal(size=(5, 1))),
    (bp.losses.BinaryCrossentropy(), lambda: rng.integers(0, 2, (5, 1)), lambda: rng.uniform(size=(5, 1))),
    (bp.losses.CategoricalCrossentropy(from_logits=True), lambda: np.eye(4)[rng.integers(0, 4, 5)],
     lambda: rng.normal(size=(5, 4))),
    (bp.losses.CategoricalCrossentropy(), lambda: np.eye(4)[rng.integers(0, 4, 5)], lambda: softmax(rng.normal(size=(5, 4)))),
    (bp.losses.SparseCategoricalCrossentropy(from_logits=True), lambda: rng.integers(0, 4, 5), lambda: rng.normal(size=(5, 4))),
    (bp.losses.SparseCategoricalCrossentropy(), lambda: rng.integers(0, 4, 5), lambda: softmax(rng.normal(size=(5, 4)))),
]


def loss_and_gradient(loss, y, p, **kwargs):
    prediction = bp.tensor(p.astype(np.float32))
    with bp.GradientTape() as tape:
        tape.watch(prediction)
        value = loss(y, prediction, **kwargs)
    return value.numpy(), tape.gradient(value, prediction).numpy()


@pytest.mark.parametrize("loss, make_y, make_p", LOSS_OBJECTS, ids=lambda v: getattr(v, "name", ""))
def test_weighted_with_ones_equals_unweighted_to_the_last_bit(loss, make_y, make_p):
    y, p = make_y(), make_p()
    plain = loss_and_gradient(loss, y, p)
    weighted = loss_and_gradient(loss, y, p, sample_weight=np.ones(len(p)))
    assert plain[0].tobytes() == weighted[0].tobytes() and plain[1].tobytes() == weighted[1].tobytes()


@pytest.mark.parametrize("loss, make_y, make_p", LOSS_OBJECTS, ids=lambda v: getattr(v, "name", ""))
def test_scalar_and_per_example_weights_follow_keras(loss, make_y, make_p):
    """A scalar weight multiplies the loss; per-example weights give sum(w * loss_i) / n (Keras 3)."""
    y, p = make_y(), make_p()
    per_example = loss.kernel and getattr(bp.losses, loss.kernel)(y, p.astype(np.float32), **loss.options).numpy()
    unweighted = loss(y, p.astype(np.float32)).numpy()
    assert loss(y, p.astype(np.float32), sample_weight=2.3).numpy() == pytest.approx(2.3 * unweighted, rel=1e-6)
    w = rng.uniform(0, 2, len(p))
    assert loss(y, p.astype(np.float32), sample_weight=w).numpy() == pytest.approx(np.sum(w * per_example) / len(p),
                                                                                   rel=1e-5)
    assert per_example.mean() == pytest.approx(unweighted, rel=1e-6)


def test_weights_that_fit_nothing_are_refused():
    with pytest.raises(ValueError, match=r"sample_weight of shape \(3,\) does not fit loss values of shape \(5, 2\)"):
        bp.losses.MeanSquaredError()(np.zeros((5, 2)), np.ones((5, 2)), sample_weight=np.ones(3))


def test_auc_is_the_weighted_fraction_of_correctly_ranked_pairs():
    y = rng.integers(0, 2, 40)
    scores = np.round(rng.uniform(size=40), 1)  # ties on purpose
    w = rng.uniform(0.1, 3, 40)
    pairs = [(w[i] * w[j], 1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0)
             for i in range(40) for j in range(40) if y[i] == 1 and y[j] == 0]
    expected = sum(weight * credit for weight, credit in pairs) / sum(weight for weight, _ in pairs)
    auc = bp.metrics.AUC()
    auc.update_state(y[:25], scores[:25], sample_weight=w[:25])
    auc.update_state(y[25:], scores[25:], sample_weight=w[25:])
    assert auc.result() == pytest.approx(expected, rel=1e-12)
    unweighted = bp.metrics.AUC()
    unweighted.update_state(y, scores)
    assert unweighted.result() != pytest.approx(expected, rel=1e-6)


def test_labels_as_columns_are_accepted_where_unambiguous():
    z = rng.normal(size=(4, 3))
    column = np.array([[0], [2], [1], [2]])
    assert bp.losses.SparseCategoricalCrossentropy(from_logits=True)(column, z).numpy() == pytest.approx(
        bp.losses.SparseCategoricalCrossentropy(from_logits=True)(column[:, 0], z).numpy())
    with pytest.raises(ValueError, match=r"expects one-hot labels of shape \(4, 3\), got class indices of shape \(4, 1\)"):
        bp.losses.CategoricalCrossentropy()(column, softmax(z))
    with pytest.raises(ValueError, match=r"expects class indices of shape \(4,\), got one-hot labels of shape \(4, 3\)"):
        bp.losses.SparseCategoricalCrossentropy()(np.eye(3)[[0, 2, 1, 2]], softmax(z))
    single = bp.losses.SparseCategoricalCrossentropy()(np.zeros((4, 1)), np.ones((4, 1)))  # one class: label 0
    assert single.numpy() == pytest.approx(0.0, abs=1e-6)


def test_precision_and_recall_with_weights_and_the_threshold():
    y, p = np.array([1, 0, 1, 0, 1]), np.array([0.9, 0.5, 0.5, 0.2, 0.7])
    w = np.array([1.0, 2.0, 3.0, 4.0, 0.5])
    precision, recall = bp.metrics.Precision(), bp.metrics.Recall()
    precision.update_state(y, p, w)
    recall.update_state(y, p, w)
    # predicted positive: p > 0.5 exactly (0.5 is not): rows 0 and 4, both true positives
    assert precision.result() == pytest.approx(1.0)
    assert recall.result() == pytest.approx((1.0 + 0.5) / (1.0 + 3.0 + 0.5))


def test_regression_and_categorical_metrics_against_formulas():
    y, p = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    w = rng.uniform(0.5, 2, 6)
    for metric, per_example in ((bp.metrics.MeanSquaredError(), np.mean((y - p) ** 2, axis=1)),
                                (bp.metrics.MeanAbsoluteError(), np.mean(np.abs(y - p), axis=1))):
        metric.update_state(y[:3], p[:3], w[:3])
        metric.update_state(y[3:], p[3:], w[3:])
        assert metric.result() == pytest.approx(np.sum(w * per_example) / np.sum(w), rel=1e-12)
    onehot, scores = np.eye(3)[[0, 1, 2, 1]], np.array([[2, 1, 0], [0, 1, 2], [0, 0, 3], [1, 2, 0.0]])
    accuracy = bp.metrics.CategoricalAccuracy()
    accuracy.update_state(onehot, scores)
    assert accuracy.result() == 0.75
    fresh = bp.metrics.MeanSquaredError()
    assert fresh.result() == 0.0
    fresh.set_state(accuracy.get_state())
    assert fresh.result() == 0.75


def test_function_losses_are_averaged_and_weighted():
    def squared(y_true, y_pred):
        return bp.reduce_sum(bp.square(y_pred - y_true), axis=-1)

    loss = bp.losses.get(squared)
    y, p, w = rng.normal(size=(4, 2)), rng.normal(size=(4, 2)), rng.uniform(size=4)
    per_example = np.sum((p - y) ** 2, axis=1)
    assert loss.name == "squared"
    assert loss(y, p).numpy() == pytest.approx(per_example.mean())
    assert loss(y, p, sample_weight=w).numpy() == pytest.approx(np.sum(w * per_example) / 4)
    with pytest.raises(ValueError, match="batch is empty"):
        loss(np.zeros((0, 2)), np.zeros((0, 2)))


def _gradient(loss, y, p):
    p = bp.Variable(p)
    with bp.GradientTape() as tape:
        value = loss(y, p)
    return value.numpy(), tape.gradient(value, [p])[0].numpy()


def test_keras_reductions_against_their_formulas():
    y, p = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    w = np.array([0.5, 2.0, 0.0, 1.0])
    per_example = np.mean((y - p) ** 2, axis=-1)
    mse = lambda **k: bp.losses.MeanSquaredError(**k)  # noqa: E731
    assert mse(reduction="sum")(y, p).numpy() == pytest.approx(per_example.sum())
    assert mse(reduction="sum")(y, p, sample_weight=w).numpy() == pytest.approx((w * per_example).sum())
    assert mse(reduction="sum_over_batch_size")(y, p, sample_weight=w).numpy() == pytest.approx(
        (w * per_example).sum() / 4)
    assert mse(reduction="mean_with_sample_weight")(y, p, sample_weight=w).numpy() == pytest.approx(
        (w * per_example).sum() / w.sum())
    assert mse(reduction="mean_with_sample_weight")(y, p).numpy() == pytest.approx(per_example.mean())
    assert mse(reduction="mean_with_sample_weight")(y, p, sample_weight=np.zeros(4)).numpy() == 0  # not NaN
    vector_y, vector_p = np.array([0.0, 1, 2, 3]), np.ones(4)  # a 1-D y_pred is one example: Keras 3 gives 1.5
    assert mse(reduction="sum")(vector_y, vector_p).numpy() == pytest.approx(1.5)
    cce = bp.losses.CategoricalCrossentropy(from_logits=True, reduction="sum")  # one value per example
    onehot = np.eye(3)[[0, 2, 1, 1]]
    assert cce(onehot, p).numpy() == pytest.approx(-np.sum(onehot * np.log(softmax(p))))
    with pytest.raises(ValueError, match="reduction must be one of 'sum_over_batch_size', 'sum', "
                                         "'mean_with_sample_weight' or None, got 'mean'"):
        bp.ops.loss_kernels.MEAN_OPS["mean_squared_error"](bp.tensor(y), bp.tensor(p), None, "mean")


def test_hinge_takes_zero_one_or_signed_labels_and_its_kink_has_zero_gradient():
    p = np.array([[0.3], [-2.0], [1.0], [0.5]])
    signed, zero_one = np.array([[1.0], [-1.0], [1.0], [-1.0]]), np.array([[1.0], [0.0], [1.0], [0.0]])
    expected = np.mean(np.maximum(1 - signed * p, 0))
    assert bp.losses.Hinge()(signed, p).numpy() == pytest.approx(expected)
    assert bp.losses.Hinge()(zero_one, p).numpy() == pytest.approx(expected)
    _, grad = _gradient(bp.losses.Hinge(), signed, p)
    np.testing.assert_allclose(grad[:, 0], [-0.25, 0, 0, 0.25])  # margin 0 at row 2: no gradient (TF's rule)
    with pytest.raises(ValueError, match="hinge"):
        bp.losses.Hinge()(np.ones((3, 1)), np.ones((4, 1)))


def test_kl_divergence_clips_both_sides_as_keras_does_and_works_on_sequences():
    y = np.array([[0.0, 1.0, 0.0], [0.2, 0.5, 1.3]])
    p = np.array([[0.3, 0.0, 1.5], [0.2, 0.3, 0.5]])
    yc, pc = np.clip(y, 1e-7, 1), np.clip(p, 1e-7, 1)
    expected = np.sum(yc * np.log(yc / pc), axis=-1)
    value, grad = _gradient(bp.losses.KLDivergence(), y, p)
    assert value == pytest.approx(expected.mean())
    inside = (p > 1e-7) & (p < 1)
    np.testing.assert_allclose(grad, np.where(inside, -yc / pc / y.size * 3, 0))  # clipped values get none
    sequences_y, sequences_p = rng.uniform(size=(2, 4, 3)), rng.uniform(size=(2, 4, 3))
    per_step = np.sum(sequences_y * np.log(sequences_y / sequences_p), axis=-1)
    np.testing.assert_allclose(bp.losses.kl_divergence(sequences_y, sequences_p).numpy(), per_step)
    _, grad = _gradient(bp.losses.KLDivergence(), sequences_y, sequences_p)
    np.testing.assert_allclose(grad, -sequences_y / sequences_p / per_step.size)
    check_gradients(lambda q: bp.losses.kl_divergence(sequences_y, q), sequences_p * 0.9 + 0.05)  # a cotangent per step


def test_huber_default_delta_is_one_and_names_and_reductions_are_kept():
    y, p = np.zeros((1, 3)), np.array([[0.5, 1.5, -3.0]])
    assert bp.losses.Huber()(y, p).numpy() == pytest.approx(np.mean([0.125, 1.0, 2.5]))
    huber = bp.losses.Huber(delta=2.0, reduction="sum", name="robust")
    two = np.concatenate([p, p])  # two examples: "sum" adds them
    assert huber.name == "robust" and huber(np.zeros((2, 3)), two).numpy() == pytest.approx(2 * np.mean([0.125, 1.125, 4.0]))
    np.testing.assert_allclose(bp.losses.huber(y, p).numpy(), [np.mean([0.125, 1.0, 2.5])])


def test_function_losses_keep_the_dtype_and_take_their_name():
    def squared(y_true, y_pred):
        return bp.mean((y_pred - y_true) ** 2, axis=-1)

    model = bp.Sequential([bp.layers.Input(shape=(2,)), bp.layers.Dense(1)])
    model.compile(optimizer="sgd", loss=squared)
    assert model.loss.name == "squared"
    y, p = np.zeros((3, 1), np.float32), np.ones((3, 1), np.float32)
    weighted = model.loss(y, p, sample_weight=np.array([1.0, 2.0, 3.0]))  # float64 weights
    assert weighted.dtype == np.float32 and weighted.numpy() == pytest.approx(2.0)

    class Scaled:  # a callable object has no __name__: the loss is called "loss"
        def __call__(self, y_true, y_pred):
            return bp.mean((y_pred - y_true) ** 2)
    scalar = bp.losses.get(Scaled())
    assert scalar.name == "loss" and scalar(y, p).numpy() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sample_weight of shape \\(3,\\) does not fit loss values of shape \\(\\)"):
        scalar(y, p, sample_weight=np.array([1.0, 2.0, 3.0]))  # a scalar cannot be weighted per example
    with pytest.raises(ValueError, match="^loss: the batch is empty$"):
        model.loss(np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32))


def test_metric_defaults_and_the_threshold_that_follows_from_logits():
    assert bp.metrics.TopKCategoricalAccuracy().k == 5 and bp.metrics.SparseTopKCategoricalAccuracy().k == 5
    assert bp.metrics.BinaryAccuracy().threshold == 0.5 and bp.metrics.Precision().threshold == 0.5
    for loss, kind, threshold in [(bp.losses.BinaryCrossentropy(from_logits=True), bp.metrics.BinaryAccuracy, 0.0),
                                  (bp.losses.BinaryCrossentropy(), bp.metrics.BinaryAccuracy, 0.5),
                                  (bp.losses.SparseCategoricalCrossentropy(), bp.metrics.SparseCategoricalAccuracy, None),
                                  (bp.losses.CategoricalCrossentropy(), bp.metrics.CategoricalAccuracy, None)]:
        metric = bp.metrics.accuracy_for(loss)
        assert type(metric) is kind and getattr(metric, "threshold", None) == threshold and metric.name == "accuracy"
    for name in ("precision", "recall"):  # logits: the decision is at 0, as for accuracy
        assert bp.metrics.get(name, bp.losses.BinaryCrossentropy(from_logits=True)).threshold == 0.0
        assert bp.metrics.get(name, bp.losses.BinaryCrossentropy()).threshold == 0.5
        assert bp.metrics.get(name, "mse").threshold == 0.5  # a loss named by a string has no from_logits
    with pytest.raises(ValueError, match="^unknown metric 'acuracy'; valid: accuracy, acc, "
                                         + ", ".join(bp.metrics.METRICS)):
        bp.metrics.get("acuracy")


def test_elementwise_losses_on_sequences_average_the_last_axis_only():
    """(batch, steps, features) predictions: one value per step, Keras' rule, and the gradient of their mean."""
    y, p = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 3))
    per_step = np.mean((p - y) ** 2, axis=-1)
    np.testing.assert_allclose(bp.losses.mean_squared_error(y, p).numpy(), per_step)
    np.testing.assert_allclose(bp.losses.MeanSquaredError(reduction=None)(y, p).numpy(), per_step)
    check_gradients(lambda q: bp.losses.mean_squared_error(y, q), p)  # a different cotangent per step
    _, grad = _gradient(bp.losses.MeanSquaredError(), y, p)
    np.testing.assert_allclose(grad, 2 * (p - y) / p.size)


def test_metric_names_follow_keras():
    """Keras 3's names (checked with KERAS_BACKEND=torch): a class logs under its own default, a short name
    under itself, "accuracy" under "accuracy" whichever accuracy the loss picks, repeats get _1, _2."""
    defaults = {bp.metrics.BinaryAccuracy: "binary_accuracy", bp.metrics.CategoricalAccuracy: "categorical_accuracy",
                bp.metrics.SparseCategoricalAccuracy: "sparse_categorical_accuracy", bp.metrics.Accuracy: "accuracy",
                bp.metrics.MeanSquaredError: "mean_squared_error", bp.metrics.MeanAbsoluteError: "mean_absolute_error",
                bp.metrics.AUC: "auc", bp.metrics.Precision: "precision", bp.metrics.Recall: "recall",
                bp.metrics.TopKCategoricalAccuracy: "top_k_categorical_accuracy",
                bp.metrics.SparseTopKCategoricalAccuracy: "sparse_top_k_categorical_accuracy"}
    assert {cls: cls().name for cls in defaults} == defaults
    model = bp.Sequential([bp.layers.Input((2,)), bp.layers.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy", metrics=["mse", "mae", "accuracy", bp.metrics.BinaryAccuracy(),
                                                         bp.metrics.MeanSquaredError(), "binary_accuracy"])
    history = model.fit(rng.random((16, 2)), rng.integers(0, 2, 16), epochs=1, verbose=0)
    assert sorted(history.history) == ["accuracy", "binary_accuracy", "binary_accuracy_1", "loss", "mae",
                                       "mean_squared_error", "mse"]


def test_a_loss_function_gets_labels_at_the_predictions_rank():
    """(n,) labels against (n, 1) predictions broadcast to (n, n) and trained towards w = 0 (issue #29)."""
    x = np.random.default_rng(0).normal(size=(64, 1)).astype(np.float32)
    bp.random.set_seed(0)
    model = bp.Sequential([bp.Input(shape=(1,)), bp.layers.Dense(1)])
    model.compile(optimizer=bp.optimizers.SGD(0.1), loss=lambda y, p: bp.mean(bp.square(y - p)))
    model.fit(x, 3 * x[:, 0], epochs=30, verbose=0)
    assert model.get_weights()[0][0, 0] == pytest.approx(3.0, abs=0.05)
    loss = bp.losses.get(lambda y, p: bp.mean(bp.square(y - p), axis=-1))
    predictions = bp.tensor(np.ones((4, 1), np.float32))
    assert float(loss(bp.tensor(np.zeros((4, 1, 1), np.float32)), predictions)) == 1.0  # (n, 1, 1): one axis less
    traced = bp.function(lambda y, p: loss(y, p))  # inside a trace the reshape is an op: new labels each call
    assert [float(traced(bp.tensor(np.full(4, v, np.float32)), predictions)) for v in (1.0, 3.0)] == [0.0, 4.0]


def test_a_metric_state_that_does_not_add_up_across_ranks_says_what_to_write():
    class Workers:  # one rank: summing is the identity
        def sum_(self, array):
            return array

    counted = bp.metrics.BinaryAccuracy()
    counted.update_state(np.array([1.0, 0.0]), np.array([0.9, 0.8]))
    assert counted.merge_states(counted.get_state(), Workers()) == {"count": 2.0, "total": 1.0}
    with pytest.raises(TypeError, match="give the metric a merge_states"):
        counted.merge_states({"seen": ["cat", "dog"]}, Workers())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_loss_tracker_s_per_batch_path_adds_what_the_general_path_adds(dtype):
    """fit adds each batch's loss (a host number) times its examples in Python floats: the same float64 products
    and sums, bit for bit, as the array path that a device's loss or an array of weights takes."""
    rng = np.random.default_rng(5)
    fast, general = bp.metrics.Mean(), bp.metrics.Mean()
    for _ in range(50):
        loss, examples = np.asarray(rng.random() * 10, dtype=dtype), int(rng.integers(1, 200))
        fast.update_state(loss, examples)
        general.update_state(bp.tensor(loss), np.float64(examples))  # a Tensor and a NumPy number: the array path
    assert float(fast.total) == float(general.total) and float(fast.count) == float(general.count)
    assert fast.result() == general.result()
