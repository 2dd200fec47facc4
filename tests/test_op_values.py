"""Every op's values (not only its gradient) against NumPy or a formula written out here, with the defaults a
user relies on: a mutated forward pass whose gradient stays self-consistent fails here."""
import math

import numpy as np
import pytest

import backprop as bp
from gradcheck import check_gradients

pytestmark = pytest.mark.usefixtures("each_device")

rng = np.random.default_rng(3)
A = rng.uniform(-3, 3, (3, 4))
B = rng.uniform(0.5, 2, (3, 4))
POSITIVE = rng.uniform(0.1, 4, (3, 4))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
UNARY = {
    "negative": (bp.negative, -A), "square": (bp.square, A * A), "exp": (bp.exp, np.exp(A)), "sin": (bp.sin, np.sin(A)),
    "abs": (bp.abs, np.abs(A)), "sigmoid": (bp.sigmoid, sigmoid(A)), "tanh": (bp.tanh, np.tanh(A)),
    "relu": (bp.relu, np.maximum(A, 0)), "relu6": (bp.relu6, np.clip(A * 3, 0, 6)),
    "leaky_relu": (bp.leaky_relu, np.where(A > 0, A, 0.2 * A)),  # Keras' default slope is 0.2
    "elu": (bp.elu, np.where(A > 0, A, np.expm1(A))),
    "selu": (bp.selu, SELU_SCALE * np.where(A > 0, A, SELU_ALPHA * np.expm1(A))),
    "softplus": (bp.softplus, np.log1p(np.exp(A))), "softsign": (bp.softsign, A / (1 + np.abs(A))),
    "swish": (bp.swish, A * sigmoid(A)),
    "gelu": (bp.gelu, 0.5 * A * (1 + np.tanh(np.sqrt(2 / np.pi) * (A + 0.044715 * A ** 3)))),  # keras.ops.gelu
    "gelu activation": (bp.activations.get("gelu"), 0.5 * A * (1 + np.vectorize(math.erf)(A / np.sqrt(2)))),
    "softmax": (bp.softmax, softmax(A)), "log_softmax": (bp.log_softmax, np.log(softmax(A))),
}
BINARY = {
    "add": (bp.add, A + B), "subtract": (bp.subtract, A - B), "multiply": (bp.multiply, A * B),
    "divide": (bp.divide, A / B), "maximum": (bp.maximum, np.maximum(A, B)), "minimum": (bp.minimum, np.minimum(A, B)),
    "matmul": (lambda a, b: bp.matmul(a, bp.transpose(b)), A @ B.T),
}


@pytest.mark.parametrize("name", UNARY)
def test_unary_ops(name):
    op, expected = UNARY[name]
    x = A * 3 if name == "relu6" else A
    out = op(bp.tensor(x))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", BINARY)
def test_binary_ops(name):
    op, expected = BINARY[name]
    out = op(bp.tensor(A), bp.tensor(B))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


def test_ops_with_parameters():
    x = bp.tensor(A)
    np.testing.assert_allclose(bp.sqrt(bp.tensor(POSITIVE)).numpy(), np.sqrt(POSITIVE))
    np.testing.assert_allclose(bp.log(bp.tensor(POSITIVE)).numpy(), np.log(POSITIVE))
    np.testing.assert_allclose(bp.power(bp.tensor(POSITIVE), bp.tensor(B)).numpy(), POSITIVE ** B)
    np.testing.assert_allclose(bp.power(x, 2).numpy(), A ** 2)
    np.testing.assert_allclose(bp.clip(x, -1, 2).numpy(), np.clip(A, -1, 2))
    np.testing.assert_allclose(bp.leaky_relu(x, 0.01).numpy(), np.where(A > 0, A, 0.01 * A))
    np.testing.assert_allclose(bp.elu(x, 0.5).numpy(), np.where(A > 0, A, 0.5 * np.expm1(A)))
    np.testing.assert_allclose(bp.softmax(x, axis=0).numpy(), softmax(A, axis=0))
    np.testing.assert_allclose(bp.log_softmax(x, axis=0).numpy(), np.log(softmax(A, axis=0)))
    np.testing.assert_allclose(bp.where(bp.tensor(A > 0), x, bp.tensor(B)).numpy(), np.where(A > 0, A, B))


@pytest.mark.parametrize("reduce, reference", [
    (bp.sum, np.sum), (bp.mean, np.mean), (bp.max, np.max), (bp.min, np.min),
    (bp.logsumexp, lambda a, **kw: np.log(np.sum(np.exp(a), **kw))),
])
@pytest.mark.parametrize("kwargs", [{}, {"axis": 0}, {"axis": -1}, {"axis": (0, 1)}, {"axis": 1, "keepdims": True}])
def test_reductions_give_numpys_values_and_shapes(reduce, reference, kwargs):
    out = reduce(bp.tensor(A), **kwargs)
    expected = reference(A, **kwargs)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


def test_argmax_and_argmin_take_the_last_axis_by_default():
    np.testing.assert_array_equal(bp.argmax(bp.tensor(A)).numpy(), np.argmax(A, axis=-1))
    np.testing.assert_array_equal(bp.argmin(bp.tensor(A)).numpy(), np.argmin(A, axis=-1))
    np.testing.assert_array_equal(bp.argmax(bp.tensor(A), axis=0).numpy(), np.argmax(A, axis=0))


def test_shape_ops():
    x = bp.tensor(A)
    np.testing.assert_array_equal(bp.reshape(x, (4, 3)).numpy(), A.reshape(4, 3))
    np.testing.assert_array_equal(bp.reshape(x, (-1,)).numpy(), A.reshape(-1))
    np.testing.assert_array_equal(bp.transpose(x).numpy(), A.T)
    cube = rng.normal(size=(2, 3, 4))
    np.testing.assert_array_equal(bp.transpose(bp.tensor(cube), (2, 0, 1)).numpy(), cube.transpose(2, 0, 1))
    assert bp.expand_dims(x, 1).shape == (3, 1, 4) and bp.expand_dims(x, -1).shape == (3, 4, 1)
    assert bp.squeeze(bp.tensor(A.reshape(3, 1, 4))).shape == (3, 4)
    assert bp.squeeze(bp.tensor(A.reshape(1, 3, 1, 4)), 2).shape == (1, 3, 4)
    np.testing.assert_array_equal(bp.broadcast_to(bp.tensor(A[0]), (2, 4)).numpy(), np.broadcast_to(A[0], (2, 4)))
    assert bp.cast(x, "float32").dtype == np.float32
    np.testing.assert_array_equal(bp.concat([x, x], axis=0).numpy(), np.concatenate([A, A], 0))
    np.testing.assert_array_equal(bp.concat([x, x], axis=1).numpy(), np.concatenate([A, A], 1))
    np.testing.assert_array_equal(bp.stack([x, x]).numpy(), np.stack([A, A]))
    np.testing.assert_array_equal(bp.stack([x, x], axis=-1).numpy(), np.stack([A, A], -1))
    np.testing.assert_array_equal(x[1:, ::2].numpy(), A[1:, ::2])
    np.testing.assert_array_equal(x[[2, 0]].numpy(), A[[2, 0]])
    one_hot = bp.one_hot(bp.tensor(np.array([2, 0, 1])), 4)
    assert one_hot.dtype == np.float32
    np.testing.assert_array_equal(one_hot.numpy(), np.eye(4)[[2, 0, 1]])


def test_comparisons_are_elementwise_and_not_differentiable():
    x, y = bp.tensor(A), bp.tensor(B)
    for op, reference in [(bp.greater, np.greater), (bp.greater_equal, np.greater_equal), (bp.less, np.less),
                          (bp.less_equal, np.less_equal), (bp.equal, np.equal), (bp.not_equal, np.not_equal)]:
        np.testing.assert_array_equal(op(x, y).numpy(), reference(A, B))
    np.testing.assert_array_equal((x > 0).numpy(), A > 0)


def test_fused_cross_entropies_against_their_formulas():
    labels = (A > 0).astype(float)
    np.testing.assert_allclose(bp.sigmoid_cross_entropy_with_logits(bp.tensor(labels), bp.tensor(A)).numpy(),
                               -(labels * np.log(sigmoid(A)) + (1 - labels) * np.log(1 - sigmoid(A))), rtol=1e-10)
    probabilities = softmax(B)
    np.testing.assert_allclose(bp.softmax_cross_entropy_with_logits(bp.tensor(probabilities), bp.tensor(A)).numpy(),
                               -np.sum(probabilities * np.log(softmax(A)), axis=-1), rtol=1e-10)
    classes = np.array([3, 0, 2])
    np.testing.assert_allclose(bp.sparse_softmax_cross_entropy_with_logits(bp.tensor(classes), bp.tensor(A)).numpy(),
                               -np.log(softmax(A)[np.arange(3), classes]), rtol=1e-10)


def test_max_and_min_of_one_value_and_of_none():
    one = bp.tensor(np.array([2.5]))
    assert bp.max(one).numpy() == 2.5 and bp.min(one).numpy() == 2.5
    with pytest.raises(ValueError, match=r"max: cannot reduce an empty tensor of shape \(0, 3\)"):
        bp.max(bp.tensor(np.zeros((0, 3))))


def test_logsumexp_shifts_each_slice_on_its_own_and_keeps_other_unit_axes():
    far_apart = bp.tensor(np.array([[1000.0, 1000.0], [-1000.0, -1000.0]]))
    np.testing.assert_allclose(bp.logsumexp(far_apart, axis=1).numpy(), [1000 + np.log(2), -1000 + np.log(2)])
    column = A.reshape(3, 1, 4)
    for reduce in (bp.logsumexp, bp.sum, bp.mean, bp.max, bp.min):
        assert reduce(bp.tensor(column), axis=2).shape == (3, 1)


def test_logsumexp_of_an_all_minus_infinity_slice_is_minus_infinity_without_warnings():
    x = bp.Variable(np.array([[-np.inf, -np.inf], [0.0, np.log(3.0)]]))
    with bp.GradientTape() as tape:  # RuntimeWarnings are errors in this suite
        y = bp.logsumexp(x, axis=1)
    np.testing.assert_allclose(y.numpy(), [-np.inf, np.log(4.0)])
    np.testing.assert_allclose(tape.gradient(y, x).numpy()[1], [0.25, 0.75])


def test_matmul_follows_numpy_for_batches_and_refuses_scalars_by_name():
    a, batch = rng.normal(size=(4, 3)), rng.normal(size=(2, 3, 5))
    np.testing.assert_allclose(bp.matmul(bp.tensor(a), bp.tensor(batch)).numpy(), np.matmul(a, batch))
    np.testing.assert_allclose(bp.matmul(bp.tensor(a[0]), bp.tensor(a.T)).numpy(), a[0] @ a.T)  # 1-D on the left
    for left, right in ((np.float64(2.0), a), (a, np.float64(2.0))):
        with pytest.raises(ValueError, match=r"matmul: shapes \(.*\) and \(.*\) are not aligned"):
            bp.matmul(bp.tensor(left), bp.tensor(right))
    with pytest.raises(ValueError, match=r"matmul: shapes \(4, 3\) and \(4, 3\) are not aligned"):
        bp.matmul(bp.tensor(a), bp.tensor(a))


def test_joining_and_reshaping_say_what_does_not_fit():
    x = bp.tensor(A)
    with pytest.raises(ValueError, match=r"^reshape: cannot reshape a tensor of shape \(3, 4\) \(12 values\) into \(5, 2\)$"):
        bp.reshape(x, (5, 2))
    with pytest.raises(ValueError, match=r"^concat: cannot join shapes \(3, 4\), \(2, 3\) along axis 0 \("):
        bp.concat([x, bp.tensor(np.ones((2, 3)))])
    with pytest.raises(ValueError, match=r"^stack: cannot join shapes \(3, 4\), \(4, 3\) along axis 0 \("):
        bp.stack([x, bp.tensor(A.T)])


def test_concat_of_three_sends_each_its_own_gradient():
    parts = [bp.Variable(rng.normal(size=(n, 2))) for n in (1, 2, 3)]
    weights = bp.tensor(np.arange(12.0).reshape(6, 2))
    with bp.GradientTape() as tape:
        total = bp.sum(bp.concat(parts, axis=0) * weights)
    for grad, expected in zip(tape.gradient(total, parts), np.split(weights.numpy(), [1, 3])):
        np.testing.assert_array_equal(grad.numpy(), expected)


def test_one_hot_names_the_labels_it_cannot_take():
    with pytest.raises(ValueError, match=r"^one_hot: class indices must be whole numbers, got \[0.5, 2.5\]$"):
        bp.one_hot(bp.tensor(np.array([0.5, 1.0, 2.5])), 3)
    with pytest.raises(ValueError, match=r"^one_hot: class index 3 is outside \[0, 3\) for 3 classes$"):
        bp.one_hot(bp.tensor(np.array([0, 3])), 3)
    np.testing.assert_array_equal(bp.one_hot(bp.tensor(np.array([2.0, 0.0])), 3).numpy(), np.eye(3)[[2, 0]])


def test_softmax_shifts_each_row_on_its_own_and_a_row_of_minus_infinity_is_nan_quietly():
    rows = bp.tensor(np.array([[1000.0, 1000.0], [-1000.0, -1000.0], [-np.inf, -np.inf]]))
    out = bp.softmax(rows).numpy()  # RuntimeWarnings are errors in this suite
    np.testing.assert_array_equal(out[:2], [[0.5, 0.5], [0.5, 0.5]])
    assert np.isnan(out[2]).all()  # as in PyTorch


@pytest.mark.parametrize("approximate", [True, False])
def test_gelu_keeps_float32(approximate):
    out = bp.gelu(bp.tensor(A.astype(np.float32)), approximate=approximate)
    assert out.dtype == np.float32


def test_dense_on_sequences_single_vectors_and_constant_weights():
    kernel, bias = rng.normal(size=(3, 4)), rng.normal(size=4)
    sequences = rng.normal(size=(2, 5, 3))
    np.testing.assert_allclose(bp.dense(bp.tensor(sequences), bp.tensor(kernel), bp.tensor(bias)).numpy(),
                               sequences @ kernel + bias)
    np.testing.assert_allclose(bp.dense(bp.tensor(sequences[0, 0]), bp.tensor(kernel), None).numpy(),
                               sequences[0, 0] @ kernel)  # one example, no batch axis
    x, k = bp.Variable(sequences), bp.Variable(kernel)
    with bp.GradientTape() as tape:
        total = bp.sum(bp.dense(x, k, bp.tensor(bias), "tanh"))
    gz = 1 - np.tanh(sequences @ kernel + bias) ** 2
    grad_x, grad_k = tape.gradient(total, [x, k])
    np.testing.assert_allclose(grad_x.numpy(), gz @ kernel.T)
    np.testing.assert_allclose(grad_k.numpy(), sequences.reshape(-1, 3).T @ gz.reshape(-1, 4))
    with bp.GradientTape() as tape:  # frozen weights: the input still gets its gradient
        total = bp.sum(bp.dense(x, bp.tensor(kernel), bp.tensor(bias)))
    np.testing.assert_allclose(tape.gradient(total, x).numpy(), np.ones((2, 5, 4)) @ kernel.T)
    with pytest.raises(ValueError, match=r"^dense: expects last dim 3, got shape \(2, 4\)$"):
        bp.dense(bp.tensor(np.ones((2, 4))), bp.tensor(kernel), None)


def test_dropout_keeps_the_dtype_and_the_expected_value():
    x = bp.tensor(np.ones((200, 50), dtype=np.float32))
    out = bp.dropout(x, 0.25, np.random.default_rng(0)).numpy()
    assert out.dtype == np.float32
    assert set(np.unique(out).tolist()) == {0.0, np.float32(1 / 0.75)}
    assert abs(np.mean(out == 0) - 0.25) < 0.01


def test_cross_entropies_with_logits_differentiate_the_labels_too_and_take_sequences():
    """TensorFlow's *_with_logits ops give the labels a gradient, take unnormalised labels and sequences."""
    labels, logits = bp.Variable(rng.uniform(size=(3, 4))), bp.tensor(A)
    with bp.GradientTape() as tape:
        total = bp.sum(bp.sigmoid_cross_entropy_with_logits(labels, logits))
    np.testing.assert_allclose(tape.gradient(total, labels).numpy(), -A)
    with bp.GradientTape() as tape:
        total = bp.sum(bp.softmax_cross_entropy_with_logits(labels, logits))
    np.testing.assert_allclose(tape.gradient(total, labels).numpy(), -np.log(softmax(A)))
    unnormalised = np.array([[2.0, 0.0, 0.0, 1.0]] * 3)
    check_gradients(lambda z: bp.softmax_cross_entropy_with_logits(bp.tensor(unnormalised), z), A)
    impossible = np.array([[0.0, -np.inf, 1.0]])  # a class that cannot happen, labelled 0: it counts 0, quietly
    np.testing.assert_allclose(bp.softmax_cross_entropy_with_logits(bp.tensor(np.array([[0.5, 0.0, 0.5]])),
                                                                    bp.tensor(impossible)).numpy(),
                               [-0.5 * np.log(softmax(np.array([0.0, 1.0]))).sum()])
    sequences, classes = rng.normal(size=(2, 5, 3)), rng.integers(0, 3, (2, 5))
    expected = -np.take_along_axis(np.log(softmax(sequences)), classes[..., None], -1)[..., 0]
    np.testing.assert_allclose(
        bp.sparse_softmax_cross_entropy_with_logits(bp.tensor(classes), bp.tensor(sequences)).numpy(), expected)


@pytest.mark.parametrize("op", [bp.add, bp.multiply, bp.maximum, bp.subtract])
def test_a_python_list_operand_takes_the_tensors_dtype(op):
    """As in TensorFlow: [1, 2] next to a float32 tensor is float32 (not NumPy's int64, promoting to float64),
    made on the current device (on the strict device a host array would be refused)."""
    x = bp.Tensor(np.array([0.5, 4.0], np.float32))
    result = op(x, [1, 2])
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result.numpy(), op(x, bp.Tensor(np.array([1, 2], np.float32))).numpy())
