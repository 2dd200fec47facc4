"""Extreme inputs stay finite and exact (../shared/RELIABILITY.md, N1-N7)."""
import numpy as np
import pytest

import backprop as bp

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@pytest.fixture(autouse=True)
def raise_on_float_errors():
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        yield


def grad_of(op, x):
    x = bp.tensor(x)
    with bp.GradientTape() as tape:
        tape.watch(x)
        y = op(x)
    return y.numpy(), tape.gradient(y, x).numpy()


@pytest.mark.parametrize("dtype, ulps, low", [(np.float32, 4, -110.0), (np.float64, 3, -760.0)])
def test_sigmoid_is_within_a_few_ulp_everywhere_against_long_double(dtype, ulps, low):
    """Down into the subnormal tail, where an exp(-a)-based form loses everything and a logaddexp form needed 9
    (float32) and 32 (float64) ulp."""
    a = np.concatenate([np.linspace(low, 60, 100_001), -np.logspace(-30, 3, 500), np.logspace(-30, 3, 500)])
    a = a.astype(dtype)
    exact = 1 / (1 + np.exp(-a.astype(np.longdouble)))
    error = np.abs(bp.sigmoid(bp.tensor(a)).numpy().astype(np.longdouble) - exact)
    assert (error <= ulps * np.spacing(exact.astype(dtype)).astype(np.longdouble)).all()


def test_sigmoid_extremes():
    y = bp.sigmoid(bp.tensor(np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0]))).numpy()
    assert y[0] == 0.0 and y[1] == pytest.approx(4.248354255291589e-18, rel=1e-12)
    assert y[2] == 0.5 and y[3] == 1.0 and y[4] == 1.0
    y32, g32 = grad_of(bp.sigmoid, np.array([1e4, -1e4], dtype=np.float32))
    assert list(y32) == [1.0, 0.0] and list(g32) == [0.0, 0.0]
    _, g64 = grad_of(bp.sigmoid, np.array([1000.0, -1000.0]))
    assert list(g64) == [0.0, 0.0]


def test_softmax_extremes():
    np.testing.assert_allclose(bp.softmax(bp.tensor(np.array([1000.0] * 3))).numpy(), [1 / 3] * 3, rtol=1e-12)
    assert list(bp.softmax(bp.tensor(np.array([1000.0, 0.0]))).numpy()) == [1.0, 0.0]
    assert bp.softmax(bp.tensor(np.array([0.0, -np.inf]))).numpy()[1] == 0.0
    rows = bp.softmax(bp.tensor(np.random.default_rng(0).normal(size=(5, 7)) * 50)).numpy()
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-12)


def test_all_minus_inf_softmax_row_is_nan():
    """Documented choice, as in PyTorch: an all -inf row has no distribution."""
    with np.errstate(invalid="ignore"):
        assert np.isnan(bp.softmax(bp.tensor(np.array([-np.inf, -np.inf]))).numpy()).all()


def test_log_softmax_and_logsumexp_extremes():
    y, g = grad_of(bp.log_softmax, np.array([1e4, 0.0], dtype=np.float32))
    assert list(y) == [0.0, -1e4] and np.isfinite(g).all()
    assert bp.logsumexp(bp.tensor(np.array([1000.0, 1000.0]))).numpy() == pytest.approx(1000 + np.log(2))
    assert bp.logsumexp(bp.tensor(np.array([-np.inf, -np.inf]))).numpy() == -np.inf


def test_fused_cross_entropies_extremes():
    logits = np.array([[1e4, 0.0]], dtype=np.float32)
    loss, grad = grad_of(lambda z: bp.softmax_cross_entropy_with_logits(np.array([[0.0, 1.0]], np.float32), z), logits)
    assert loss[0] == 1e4 and np.all(np.abs(grad) <= 1)
    loss, grad = grad_of(lambda z: bp.sparse_softmax_cross_entropy_with_logits(np.array([1]), z), logits)
    assert loss[0] == 1e4 and np.all(np.abs(grad) <= 1)
    loss, grad = grad_of(lambda z: bp.sigmoid_cross_entropy_with_logits(np.float32(0.0), z),
                         np.array([1e4, 0.0, -1e4], dtype=np.float32))
    assert loss[0] == 1e4 and loss[1] == pytest.approx(np.log(2)) and loss[2] == 0.0
    assert np.all(np.abs(grad) <= 1)


def test_softplus_extremes():
    y = bp.softplus(bp.tensor(np.array([1e4, -1e4], dtype=np.float32))).numpy()
    assert list(y) == [1e4, 0.0]


def test_log_of_zero_and_negative_follow_numpy():
    y = bp.log(bp.tensor(np.array([0.0, -1.0]))).numpy()
    assert y[0] == -np.inf and np.isnan(y[1])


def test_exp_overflow_boundaries():
    with np.errstate(over="ignore"):
        assert np.isfinite(bp.exp(bp.tensor(np.array(709.0))).numpy())
        assert bp.exp(bp.tensor(np.array(710.0))).numpy() == np.inf
