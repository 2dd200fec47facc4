"""Finite-difference gradient checking in float64 (central differences, random cotangent)."""
import numpy as np

import backprop as bp


def numeric_vjp(fn, arrays, cotangent, index, eps=1e-6):
    """d<fn(arrays), cotangent>/d arrays[index], by central differences."""
    base = [a.copy() for a in arrays]
    grad = np.zeros_like(base[index])
    flat = grad.reshape(-1)
    for i in range(flat.size):
        plus = [a.copy() for a in base]
        minus = [a.copy() for a in base]
        plus[index].reshape(-1)[i] += eps
        minus[index].reshape(-1)[i] -= eps
        f_plus = np.sum(np.asarray(fn(*[bp.tensor(a) for a in plus]).numpy()) * cotangent)
        f_minus = np.sum(np.asarray(fn(*[bp.tensor(a) for a in minus]).numpy()) * cotangent)
        flat[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def analytic_vjp(fn, arrays, cotangent):
    tensors = [bp.tensor(a) for a in arrays]
    with bp.GradientTape() as tape:
        tape.watch(tensors)
        out = fn(*tensors)
        target = bp.sum(out * bp.tensor(cotangent))  # on the current device, as out is
    return out, tape.gradient(target, tensors)


def check_gradients(fn, *arrays, seed=0, rtol=1e-6, atol=1e-7):
    """Assert the tape's gradient of ``fn`` matches finite differences for every input."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    originals = [a.copy() for a in arrays]
    out = fn(*[bp.tensor(a) for a in arrays])
    cotangent = np.random.default_rng(seed).uniform(-1, 1, size=out.shape)
    _, grads = analytic_vjp(fn, arrays, cotangent)
    for i, (array, grad) in enumerate(zip(arrays, grads)):
        assert grad is not None, f"input {i}: no gradient"
        assert grad.shape == array.shape, f"input {i}: gradient shape {grad.shape} != input shape {array.shape}"
        assert grad.dtype == np.float64
        expected = numeric_vjp(fn, arrays, cotangent, i)
        error = np.abs(grad.numpy() - expected)
        bound = rtol * np.maximum(np.abs(grad.numpy()), np.abs(expected)) + atol
        assert np.all(error <= bound), f"input {i}: max error {error.max():.3g}\nanalytic\n{grad.numpy()}\nnumeric\n{expected}"
    for a, original in zip(arrays, originals):
        assert np.array_equal(a, original), "an op modified its input"
