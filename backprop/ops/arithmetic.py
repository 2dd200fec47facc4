"""Elementwise arithmetic and matrix multiplication, each forward next to its gradient."""
import math

from backprop.ops import formula as f
from backprop.ops.op import constant, differentiable
from backprop.devices import asarray
from backprop.xp import np



def _quiet():
    """log(0) = -inf and log(-1) = nan, as in NumPy, without warnings or raised errors."""
    return np.errstate(divide="ignore", invalid="ignore")


@differentiable(formula=(lambda a, b: a + b, lambda g, out, a, b: (g, g)))
def add(a, b):
    return a + b, lambda g, needs: (g, g)


@differentiable(formula=(lambda a, b: a - b, lambda g, out, a, b: (g, -g)))
def subtract(a, b):
    return a - b, lambda g, needs: (g, -g if needs[1] else None)


@differentiable(formula=(lambda a, b: a * b, lambda g, out, a, b: (g * b, g * a)))
def multiply(a, b):
    return a * b, lambda g, needs: (g * b if needs[0] else None, g * a if needs[1] else None)


@differentiable(formula=(lambda a, b: a / b, lambda g, out, a, b: (g / b, -g * out / b)))
def divide(a, b):
    out = a / b
    return out, lambda g, needs: (g / b if needs[0] else None, -g * out / b if needs[1] else None)


@differentiable(formula=(lambda a: -a, lambda g, out, a: (-g,)))
def negative(a):
    return -a, lambda g, needs: (-g,)


@differentiable
def power(a, b):
    out = a ** b

    def backward(g, needs):
        ga = g * b * a ** (b - 1) if needs[0] else None
        if not needs[1]:
            return ga, None
        if not hasattr(a, "shape"):  # a Python number: a number, which joins any device's arrays
            log_a = math.log(a) if a > 0 else 0.0
        else:
            with _quiet():
                log_a = np.where(a > 0, np.log(np.where(a > 0, a, 1)), 0)
        return ga, g * out * log_a

    return out, backward


@differentiable(formula=(lambda a: a * a, lambda g, out, a: (2 * a * g,)))
def square(a):
    return a * a, lambda g, needs: (2 * a * g,)


@differentiable(formula=(f.sqrt, lambda g, out, a: (g / (2 * out),)))
def sqrt(a):
    with _quiet():
        out = np.sqrt(a)
    return out, lambda g, needs: (g / (2 * out),)


@differentiable(formula=(f.exp, lambda g, out, a: (g * out,)))
def exp(a):
    out = np.exp(a)
    return out, lambda g, needs: (g * out,)


@differentiable(formula=(f.sin, lambda g, out, a: (g * f.cos(a),)))
def sin(a):
    return np.sin(a), lambda g, needs: (g * np.cos(a),)


@differentiable(formula=(f.log, lambda g, out, a: (g / a,)))
def log(a):
    with _quiet():
        out = np.log(a)
    return out, lambda g, needs: (g / a,)


@differentiable
def abs(a):  # noqa: A001 - the public name users expect
    return np.abs(a), lambda g, needs: (g * np.sign(a),)  # abs'(0) = 0


@differentiable
def maximum(a, b):
    """Elementwise maximum; at ties the gradient goes to ``a`` (TensorFlow's rule)."""
    return np.maximum(a, b), lambda g, needs: _route(g, a >= b, needs)


@differentiable
def minimum(a, b):
    """Elementwise minimum; at ties the gradient goes to ``a``."""
    return np.minimum(a, b), lambda g, needs: _route(g, a <= b, needs)


def _route(g, to_first, needs):
    return (np.where(to_first, g, 0) if needs[0] else None,
            np.where(to_first, 0, g) if needs[1] else None)


@differentiable
def where(condition, x, y):
    """Pick ``x`` where ``condition`` holds, else ``y``; the gradient flows only to the picked one."""
    condition = asarray(condition, dtype=bool)
    return np.where(condition, x, y), lambda g, needs: (None,) + _route(g, condition, needs[1:])


@differentiable(arrays=1)
def clip(a, min_value, max_value):
    """Clip to [min_value, max_value]; the gradient is zero where clipped."""
    inside = (a >= min_value) & (a <= max_value)
    return np.clip(a, min_value, max_value), lambda g, needs: (np.where(inside, g, 0),)


@differentiable
def matmul(a, b):
    """Matrix product with NumPy's rules for 1-D and batched operands."""
    a_shape, b_shape = np.shape(a), np.shape(b)
    if not a_shape or not b_shape or a_shape[-1] != b_shape[-2 if len(b_shape) > 1 else 0]:
        raise ValueError(f"matmul: shapes {a_shape} and {b_shape} are not aligned")
    return np.matmul(a, b), lambda g, needs: _matmul_grads(a, b, g, needs)


def _matmul_grads(a, b, g, needs):
    if a.ndim == 1 and b.ndim == 1:  # dot product: g is a scalar
        return g * b, g * a
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = np.expand_dims(g2, -2)
    if b.ndim == 1:
        g2 = np.expand_dims(g2, -1)
    ga = np.matmul(g2, np.swapaxes(b2, -1, -2)) if needs[0] else None
    gb = np.matmul(np.swapaxes(a2, -1, -2), g2) if needs[1] else None
    if ga is not None and a.ndim == 1:
        ga = ga.reshape(ga.shape[:-2] + ga.shape[-1:])
    if gb is not None and b.ndim == 1:
        gb = gb[..., 0]
    return ga, gb


# --- comparisons: elementwise booleans, never differentiated ------------------------------------------
def _comparison(ufunc):
    def forward(a, b):
        return ufunc(a, b)
    forward.__name__ = ufunc.__name__
    return constant(forward, arrays=2)


less, less_equal, greater, greater_equal, equal, not_equal = map(
    _comparison, (np.less, np.less_equal, np.greater, np.greater_equal, np.equal, np.not_equal))
