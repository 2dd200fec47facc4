"""Tensor creation rules and the GradientTape's contract."""
import gc
import weakref

import numpy as np
import pytest

import backprop as bp

pytestmark = pytest.mark.usefixtures("each_device")  # on every device


def test_lecture_perceptron():
    """w0 = 1, W = (3, -2), x = (-1, 2): z = -6, y = sigmoid(-6) ~ 0.00247, with hand-derived gradients."""
    x = bp.tensor([[-1.0, 2.0]])
    w = bp.Variable([[3.0], [-2.0]])
    b = bp.Variable([1.0])
    with bp.GradientTape() as tape:
        z = bp.matmul(x, w) + b
        y = bp.sigmoid(z)
    dw, db = tape.gradient(y, [w, b])
    assert z.numpy().item() == -6.0
    s = 1 / (1 + np.exp(6.0))
    assert y.numpy().item() == pytest.approx(s, rel=1e-6) and round(s, 5) == 0.00247
    ds = s * (1 - s)  # dy/dz
    np.testing.assert_allclose(dw.numpy(), [[-ds], [2 * ds]], rtol=1e-5)
    np.testing.assert_allclose(db.numpy(), [ds], rtol=1e-5)


def test_dtype_rules():
    assert bp.tensor([1, 2]).dtype == np.float32
    assert bp.tensor(3.0).dtype == np.float32
    assert bp.tensor(np.zeros(2)).dtype == np.float64
    assert bp.tensor([1.0], dtype="float64").dtype == np.float64
    assert bp.tensor([1.0], dtype=np.float64).dtype == np.float64
    assert bp.Variable([1, 2]).dtype == np.float32
    x32, x64 = bp.tensor([1.0]), bp.tensor(np.array([1.0]))
    assert (x32 + x64).dtype == np.float64  # NumPy promotion
    assert (x32 * 2.5).dtype == np.float32 and (2 * x32).dtype == np.float32  # Python scalars are weak
    with pytest.raises(TypeError, match="string"):
        bp.tensor(["a", "b"])
    with pytest.raises(TypeError, match="complex"):
        bp.tensor(np.array([1j]))


def test_tensor_protocol():
    t = bp.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert t.shape == (2, 3) and t.ndim == 2 and len(t) == 2
    assert t.T.shape == (3, 2)
    assert t[1, 2].numpy() == 6.0
    if t.device.name == "cpu":
        assert np.asarray(t).shape == (2, 3)
        assert isinstance(np.ones((2, 3)) + t, bp.Tensor)  # ndarray on the left still builds a tensor
    else:  # PyTorch's rules: a device tensor reaches NumPy only through .numpy(), and never mixes with host arrays
        with pytest.raises(TypeError, match=f"tensor on the {t.device.name} device cannot become a NumPy array"):
            np.asarray(t)
        with pytest.raises(bp.devices.DeviceMismatchError, match="inputs on different devices"):
            np.ones((2, 3)) + t
    assert isinstance(np.exp(t), bp.Tensor)
    assert np.array_equal((t > 2).numpy(), [[False, False, True], [True, True, True]])
    n = t.numpy()
    n[0, 0] = 100
    assert t.numpy()[0, 0] == 1.0


def test_operators_match_functions():
    a, b = bp.tensor([[1.0, -2.0]]), bp.tensor([[0.5], [3.0]])
    for got, want in [(a + b, bp.add(a, b)), (a - b, bp.subtract(a, b)), (a * b, bp.multiply(a, b)),
                      (a / b, bp.divide(a, b)), (a @ b, bp.matmul(a, b)), (b ** 2, bp.power(b, 2)),
                      (-a, bp.negative(a)), (abs(a), bp.abs(a))]:
        assert np.array_equal(got.numpy(), want.numpy())


def test_variable_assign_is_in_place():
    source = np.array([1.0, 2.0])
    v = bp.Variable(source)
    storage = v.data
    v.assign([5.0, 6.0]); v.assign_add([1.0, 1.0]); v.assign_sub(np.array([0.5, 0.5]))
    assert v.data is storage and np.array_equal(v.numpy(), [5.5, 6.5])
    assert np.array_equal(source, [1.0, 2.0])  # the user's array is never aliased
    with pytest.raises(ValueError, match="shape"):
        v.assign([1.0, 2.0, 3.0])


def test_x_squared_plus_x_and_diamond():
    x = bp.Variable(3.0, dtype="float64")
    with bp.GradientTape(persistent=True) as tape:
        y = x * x + x
        a = x * 2
        diamond = a * a + a  # two paths from x through a
    assert tape.gradient(y, x).numpy() == 7.0
    assert tape.gradient(diamond, x).numpy() == 2 * (2 * 6.0 + 1)  # d/dx (4x^2 + 2x) = 8x + 2 = 26


def test_unconnected_and_structures():
    x, y = bp.Variable(1.0), bp.Variable(2.0)
    with bp.GradientTape(persistent=True) as tape:
        z = x * 3
    assert tape.gradient(z, [x, y])[1] is None
    assert tape.gradient(z, [x, y], unconnected_gradients="zero")[1].numpy() == 0.0
    grads = tape.gradient(z, {"x": x, "pair": (x, y)})
    assert set(grads) == {"x", "pair"} and isinstance(grads["pair"], tuple)
    assert tape.gradient(z, x).numpy() == 3.0


def test_non_scalar_target_is_summed():
    x = bp.Variable([1.0, 2.0])
    with bp.GradientTape() as tape:
        y = x * bp.tensor([[1.0, 1.0], [2.0, 2.0]])
    assert np.array_equal(tape.gradient(y, x).numpy(), [3.0, 3.0])


def test_second_gradient_call_raises():
    x = bp.Variable(1.0)
    with bp.GradientTape() as tape:
        y = x * x
    tape.gradient(y, x)
    with pytest.raises(RuntimeError, match="persistent=True"):
        tape.gradient(y, x)


def test_watch_constant_and_stop_gradient():
    c = bp.tensor(2.0)
    with bp.GradientTape(persistent=True) as tape:
        tape.watch(c)
        y = c * c + bp.stop_gradient(c * c)
        with tape.stop_recording():
            z = c * c
    assert tape.gradient(y, c).numpy() == 4.0
    assert tape.gradient(z, c) is None


def test_untrainable_variable_is_not_watched():
    v = bp.Variable(1.0, trainable=False)
    with bp.GradientTape() as tape:
        y = v * 2
    assert tape.gradient(y, v) is None


def test_no_grad_records_nothing():
    x = bp.Variable([1.0, 2.0])
    with bp.GradientTape() as tape:
        with bp.no_grad():
            y = x * x
        assert tape._nodes == []
    assert tape.gradient(y, x) is None


def test_tape_drops_references_after_gradient():
    x = bp.Variable(np.ones(100))
    with bp.GradientTape() as tape:
        hidden = x * 2
        y = bp.sum(hidden * hidden)
    ref = weakref.ref(hidden)
    tape.gradient(y, x)
    del hidden, y
    gc.collect()
    assert ref() is None


def test_shape_errors_name_the_op_and_shapes():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(2, 1\) are not aligned"):
        bp.matmul(bp.tensor(np.ones((2, 3))), bp.tensor(np.ones((2, 1))))
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\)"):
        bp.tensor(np.ones((2, 3))) + bp.tensor(np.ones(4))
    with pytest.raises(ValueError, match="reshape"):
        bp.reshape(bp.tensor(np.ones(6)), (4, 2))
    with pytest.raises(ValueError, match="empty"):
        bp.mean(bp.tensor(np.ones((0, 3))), axis=0)


def test_one_hot_and_argmax():
    assert np.array_equal(bp.one_hot([0, 2], 3).numpy(), [[1, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="class index 3"):
        bp.one_hot([0, 3], 3)
    assert np.array_equal(bp.argmax(bp.tensor([[1.0, 5.0], [7.0, 2.0]])).numpy(), [1, 0])


def test_random_is_seeded_and_leaves_numpy_alone():
    state = np.random.get_state()[1].copy()
    bp.random.set_seed(3)
    a = bp.random.normal((4,)).numpy()
    bp.random.set_seed(3)
    assert np.array_equal(a, bp.random.normal((4,)).numpy())
    assert np.array_equal(np.random.get_state()[1], state)


def test_nested_tapes_warn_that_second_order_is_not_supported():
    x = bp.Variable(3.0)
    with bp.GradientTape() as outer:
        with bp.GradientTape() as inner:
            y = x * x * x
        with pytest.warns(UserWarning, match="second-order gradients are not supported"):
            dy = inner.gradient(y, x)
    assert dy.numpy() == 27.0
    assert outer.gradient(dy, x) is None
