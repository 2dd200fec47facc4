"""Every differentiable op against central finite differences in float64."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import backprop as bp
from gradcheck import check_gradients

rng = np.random.default_rng(0)
pytestmark = pytest.mark.usefixtures("each_device")  # every op on every device


def away_from_zero(shape, low=-2.0, high=2.0, gap=1e-2):
    """Uniform samples that keep clear of the kink at 0 (relu, abs, leaky_relu, elu)."""
    x = rng.uniform(low, high, size=shape)
    return np.where(np.abs(x) < gap, np.copysign(gap, x), x)  # never exactly 0: that is the kink


def positive(shape):
    return rng.uniform(0.1, 2.0, size=shape)


SHAPES = [(), (5,), (3, 4)]
BROADCAST_PAIRS = [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((4,), (3, 4)), ((), (3, 4)), ((3, 4), ())]


@pytest.mark.parametrize("shapes", BROADCAST_PAIRS)
@pytest.mark.parametrize("op", [bp.add, bp.subtract, bp.multiply, bp.maximum, bp.minimum])
def test_binary_broadcasting(op, shapes):
    a, b = rng.uniform(-2, 2, size=shapes[0]), rng.uniform(-2, 2, size=shapes[1])
    check_gradients(op, a, b)


@pytest.mark.parametrize("shapes", BROADCAST_PAIRS)
def test_divide_and_power(shapes):
    check_gradients(bp.divide, positive(shapes[0]), positive(shapes[1]))
    check_gradients(bp.power, positive(shapes[0]), positive(shapes[1]))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op, sample", [
    (bp.negative, away_from_zero), (bp.square, away_from_zero), (bp.exp, away_from_zero), (bp.sin, away_from_zero),
    (bp.abs, away_from_zero), (bp.sigmoid, away_from_zero), (bp.tanh, away_from_zero),
    (bp.relu, away_from_zero), (bp.leaky_relu, away_from_zero), (bp.elu, away_from_zero),
    (bp.softplus, away_from_zero), (bp.swish, away_from_zero), (bp.gelu, away_from_zero),
    (lambda x: bp.gelu(x, approximate=False), away_from_zero),
    (bp.selu, away_from_zero), (bp.softsign, away_from_zero), (lambda x: bp.relu6(4 * x), away_from_zero),
    (bp.sqrt, positive), (bp.log, positive),
    (lambda x: bp.clip(x, -1.0, 1.0), away_from_zero),
    (lambda x: x ** 3, away_from_zero), (lambda x: 2.0 ** x, away_from_zero),
])
def test_unary(op, sample, shape):
    x = sample(shape)
    x = np.where(np.abs(np.abs(x) - 1) < 1e-2, x + 0.05, x)  # keep clear of clip's corners
    check_gradients(op, x)


@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)),
                                              ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((3, 4), (2, 4, 5))])
def test_matmul(a_shape, b_shape):
    check_gradients(bp.matmul, rng.uniform(-2, 2, a_shape), rng.uniform(-2, 2, b_shape))


@pytest.mark.parametrize("reduce", [bp.sum, bp.mean, bp.max, bp.min, bp.logsumexp])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(reduce, axis, keepdims):
    x = rng.permutation(12).reshape(3, 4) / 5.0 - 1.0  # distinct values: max/min have no ties
    check_gradients(lambda t: reduce(t, axis=axis, keepdims=keepdims), x)


def test_max_ties_share_the_gradient():
    x = bp.tensor(np.array([1.0, 3.0, 3.0]))
    with bp.GradientTape() as tape:
        tape.watch(x)
        y = bp.max(x)
    assert np.array_equal(tape.gradient(y, x).numpy(), [0.0, 0.5, 0.5])


@pytest.mark.parametrize("op", [
    lambda x: bp.reshape(x, (4, 3)), lambda x: bp.transpose(x), lambda x: x.T,
    lambda x: bp.transpose(bp.reshape(x, (1, 3, 4)), (2, 0, 1)), lambda x: bp.expand_dims(x, 1),
    lambda x: bp.squeeze(bp.reshape(x, (3, 1, 4)), 1), lambda x: x[1:, ::2], lambda x: x[:, 1],
    lambda x: x[[0, 0, 2]], lambda x: x[np.array([True, False, True])], lambda x: x[..., None],
    lambda x: bp.broadcast_to(x[:1], (3, 4)), lambda x: bp.cast(x * 2, "float64"),
    lambda x: bp.softmax(x), lambda x: bp.softmax(x, axis=0), lambda x: bp.log_softmax(x),
    lambda x: bp.log_softmax(x, axis=0),
])
def test_shape_and_softmax_ops(op):
    check_gradients(op, rng.uniform(-2, 2, (3, 4)))


def test_dropout_with_a_fixed_mask():
    # a fresh generator with one seed per call: the same mask at every finite-difference probe
    check_gradients(lambda a: bp.ops.dropout(a, 0.4, generator=np.random.default_rng(3)), rng.uniform(-2, 2, (4, 5)))
    out = bp.ops.dropout(bp.Tensor(np.ones((200, 50))), 0.4, generator=np.random.default_rng(3)).numpy()
    assert set(np.unique(out)) == {0.0, 1 / 0.6} and abs((out == 0).mean() - 0.4) < 0.02


def test_concat_and_stack():
    check_gradients(lambda a, b: bp.concat([a, b], axis=1), rng.uniform(-2, 2, (3, 2)), rng.uniform(-2, 2, (3, 4)))
    check_gradients(lambda a, b: bp.stack([a, b], axis=1), rng.uniform(-2, 2, (3, 4)), rng.uniform(-2, 2, (3, 4)))


def test_where():
    condition = rng.uniform(size=(3, 4)) > 0.5
    check_gradients(lambda a, b: bp.where(bp.tensor(condition), a, b), rng.uniform(-2, 2, (3, 4)), rng.uniform(-2, 2, (1, 4)))


def test_cross_entropies():
    labels = rng.dirichlet(np.ones(4), size=3)
    check_gradients(bp.softmax_cross_entropy_with_logits, labels, rng.uniform(-2, 2, (3, 4)))
    check_gradients(lambda z: bp.sparse_softmax_cross_entropy_with_logits(bp.tensor(np.array([0, 3, 1])), z),
                    rng.uniform(-2, 2, (3, 4)))
    check_gradients(bp.sigmoid_cross_entropy_with_logits, rng.uniform(0, 1, (3, 4)), away_from_zero((3, 4)))


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh"])
def test_fused_dense(activation):
    x, w, b = away_from_zero((5, 3)), rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, (4,))
    check_gradients(lambda x, w, b: bp.dense(x, w, b, activation), x, w, b)
    check_gradients(lambda x, w: bp.dense(x, w, None, activation), x, w)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=0, max_size=3), st.data())
def test_broadcast_multiply_any_shapes(shape, data):
    """Random shape pairs that broadcast: b drops leading dims and sets some dims to 1."""
    drop = data.draw(st.integers(0, len(shape)))
    b_shape = [1 if data.draw(st.booleans()) else s for s in shape[drop:]]
    check_gradients(bp.multiply, rng.uniform(-2, 2, shape), rng.uniform(-2, 2, b_shape))


@pytest.mark.parametrize("op", [bp.sigmoid, bp.tanh, bp.softplus, bp.log_softmax, bp.softmax, bp.gelu])
def test_float32_gradient_matches_float64(op):
    x64 = rng.uniform(-2, 2, (3, 4))
    grads = []
    for dtype in ("float32", "float64"):
        x = bp.tensor(x64, dtype=dtype)
        with bp.GradientTape() as tape:
            tape.watch(x)
            y = bp.sum(op(x) * bp.tensor(np.linspace(-1, 1, 4), dtype=dtype))
        grads.append(tape.gradient(y, x))
    assert grads[0].dtype == np.float32
    np.testing.assert_allclose(grads[0].numpy(), grads[1].numpy(), rtol=1e-4, atol=1e-5)


LOSS_CASES = [  # (kernel, labels, predictions, options): every loss kernel in each of its modes
    ("mean_squared_error", rng.normal(size=(4, 3)), rng.uniform(-2, 2, (4, 3)), {}),
    ("mean_absolute_error", rng.normal(size=(4, 3)), away_from_zero((4, 3)), {}),
    ("huber", np.zeros((4, 3)), rng.choice([-1, 1], (4, 3)) * rng.uniform(0.2, 0.8, (4, 3)) * [[1, 2, 3]], {}),
    ("binary_crossentropy", (rng.uniform(size=(4, 3)) > 0.5).astype(float), rng.uniform(-3, 3, (4, 3)),
     {"from_logits": True}),
    ("binary_crossentropy", (rng.uniform(size=(4, 3)) > 0.5).astype(float), rng.uniform(0.05, 0.95, (4, 3)), {}),
    ("categorical_crossentropy", rng.dirichlet(np.ones(3), 4), rng.uniform(-2, 2, (4, 3)), {"from_logits": True}),
    ("categorical_crossentropy", np.eye(3)[[0, 2, 1, 2]], rng.uniform(0.1, 0.9, (4, 3)), {}),
    ("sparse_categorical_crossentropy", np.array([0, 2, 1, 2]), rng.uniform(-2, 2, (4, 3)), {"from_logits": True}),
    ("sparse_categorical_crossentropy", np.array([0, 2, 1, 2]), rng.uniform(0.1, 0.9, (4, 3)), {}),
    ("hinge", rng.choice([-1.0, 1.0], (4, 3)), rng.uniform(-3, 3, (4, 3)), {}),
    ("kl_divergence", rng.dirichlet(np.ones(3), 4), rng.dirichlet(np.ones(3), 4), {}),
]


@pytest.mark.parametrize("kernel, labels, predictions, options", LOSS_CASES)
def test_loss_ops_per_example_and_mean(kernel, labels, predictions, options):
    from backprop.ops import loss_kernels as losses
    per_example, mean = losses.PER_EXAMPLE_OPS[kernel], losses.MEAN_OPS[kernel]
    weights = rng.uniform(0.5, 2.0, len(predictions))
    labels, weights_on_device = bp.tensor(labels, dtype=labels.dtype), bp.tensor(weights)  # data on the test's device
    check_gradients(lambda p: per_example(labels, p, **options), predictions)
    check_gradients(lambda p: mean(labels, p, **options), predictions)
    check_gradients(lambda p: mean(labels, p, weights_on_device, **options), predictions)
    values = per_example(labels, bp.tensor(predictions), **options).numpy()
    assert values.shape == (4,)
    np.testing.assert_allclose(mean(labels, bp.tensor(predictions), weights_on_device, **options).numpy(),
                               np.mean(values * weights), rtol=1e-12)


def _grads(function, *values):
    """Gradients of sum(function(*variables)) with respect to each value, as NumPy arrays."""
    variables = [bp.Variable(np.asarray(v, dtype=float)) for v in values]
    with bp.GradientTape() as tape:
        total = bp.sum(function(*variables))
    return [g.numpy() for g in tape.gradient(total, variables)]


def test_gradients_at_the_points_finite_differences_avoid():
    """Kinks, ties and bases of a power that are not positive: the conventions TensorFlow uses."""
    np.testing.assert_array_equal(_grads(bp.abs, [-1.0, 0.0, 2.0])[0], [-1.0, 0.0, 1.0])  # abs'(0) = 0
    # activations at 0 take their negative side's slope, as TensorFlow's gradients do (x > 0 is the positive side)
    at = [-1.0, 0.0, 2.0]
    np.testing.assert_allclose(_grads(bp.relu, at)[0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(_grads(bp.leaky_relu, at)[0], [0.2, 0.2, 1.0])
    np.testing.assert_allclose(_grads(bp.relu6, [0.0, 3.0, 6.0, 7.0])[0], [0.0, 1.0, 0.0, 0.0])  # 0 at both kinks
    np.testing.assert_allclose(_grads(lambda x: bp.elu(x, 0.5), at)[0], [0.5 * np.exp(-1), 0.5, 1.0])
    scale, alpha = 1.0507009873554805, 1.6732632423543772
    np.testing.assert_allclose(_grads(bp.selu, at)[0], [scale * alpha * np.exp(-1), scale * alpha, scale])
    # clip passes the gradient inside its closed interval, bounds included (TensorFlow's clip_by_value)
    np.testing.assert_array_equal(_grads(lambda x: bp.clip(x, -1.0, 2.0), [-3.0, -1.0, 0.5, 2.0, 3.0])[0],
                                  [0.0, 1.0, 1.0, 1.0, 0.0])
    # ties: maximum and minimum send the gradient to their first argument
    np.testing.assert_array_equal(_grads(bp.maximum, [1.0, 2.0, 5.0], [1.0, 3.0, 4.0]), [[1, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(_grads(bp.minimum, [1.0, 2.0, 5.0], [1.0, 3.0, 4.0]), [[1, 1, 0], [0, 0, 1]])
    # d/db a^b = a^b log a where a > 0, and 0 where a <= 0 (no NaN from log of a non-positive base)
    base, exponent = np.array([-2.0, 0.0, 0.5, 3.0]), np.array([2.0, 2.0, 3.0, 2.0])
    grad_base, grad_exponent = _grads(bp.power, base, exponent)
    np.testing.assert_allclose(grad_exponent, [0.0, 0.0, 0.125 * np.log(0.5), 9 * np.log(3.0)])
    np.testing.assert_allclose(grad_base, exponent * base ** (exponent - 1))
    for number, expected in ((0.5, np.log(0.5)), (0.0, 0.0), (-2.0, 0.0), (3.0, np.log(3.0))):  # a Python number
        np.testing.assert_allclose(_grads(lambda b: bp.power(number, b), [2.0])[0], [number ** 2 * expected])


def test_gradients_with_respect_to_one_input_of_two():
    """Only the input that needs a gradient gets one; a constant on either side is left alone."""
    x, c = bp.Variable(np.array([1.0, 4.0])), bp.tensor(np.array([2.0, 8.0]))
    for function, expected in ((lambda: x / c, 1 / c.numpy()), (lambda: c / x, -c.numpy() / x.numpy() ** 2),
                               (lambda: x * c, c.numpy()), (lambda: c - x, -np.ones(2)), (lambda: x - c, np.ones(2)),
                               (lambda: bp.power(x, c), c.numpy() * x.numpy() ** (c.numpy() - 1)),
                               (lambda: bp.power(c, x), c.numpy() ** x.numpy() * np.log(c.numpy()))):
        with bp.GradientTape() as tape:
            total = bp.sum(function())
        np.testing.assert_allclose(tape.gradient(total, x).numpy(), expected)
