"""Neural-network ops: activations, the softmax family and the fused dense layer (losses: ops/loss_kernels.py).

All of them are numerically stable for logits of any finite size: no ``exp`` of a
large positive number is ever evaluated.
"""
import math

from backprop import devices, random
from backprop.ops import formula as f
from backprop.ops.op import differentiable
from backprop.devices import asarray, draws
from backprop.tape import into
from backprop.xp import FLOATX, np


def _sigmoid(a, out=None):
    """exp(min(a, 0)) / (1 + exp(-|a|)): neither exponent is positive, so nothing overflows; exact in the limits
    (sigmoid(-1000) = 0, sigmoid(40) = 1) and within 3 ulp elsewhere in float32, 2 in float64 (measured against
    long double). Every step is one of NumPy's SIMD ufuncs: 7-9x faster than the logaddexp form it replaced."""
    if out is None:
        a = asarray(a)
        out = np.empty_like(a, dtype=a.dtype if a.dtype.kind == "f" else FLOATX)  # on a's device
    e = np.absolute(a, out=np.empty_like(out))
    np.negative(e, out=e)
    np.exp(e, out=e)
    np.add(e, 1, out=e)
    np.minimum(a, 0, out=out)  # (after e: out may be a itself)
    np.exp(out, out=out)
    return np.divide(out, e, out=out)


def _log1p_exp_neg_abs(a):
    return np.log1p(np.exp(-np.abs(a)))


@differentiable(formula=(f.sigmoid, lambda g, out, a: (g * out * (1 - out),)))
def sigmoid(a):
    out = _sigmoid(a)
    return out, lambda g, needs: (g * out * (1 - out),)


@differentiable(formula=(f.tanh, lambda g, out, a: (g * (1 - out * out),)))
def tanh(a):
    out = np.tanh(a)
    return out, lambda g, needs: (g * (1 - out * out),)


@differentiable
def relu(a):
    return np.maximum(a, 0), lambda g, needs: (g * (a > 0),)  # relu'(0) = 0


@differentiable(arrays=1)
def leaky_relu(a, alpha=0.2):
    positive = a > 0
    return np.where(positive, a, alpha * a), lambda g, needs: (np.where(positive, g, alpha * g),)


@differentiable(arrays=1)
def elu(a, alpha=1.0):
    positive = a > 0
    expm1 = np.expm1(np.minimum(a, 0))
    return np.where(positive, a, alpha * expm1), lambda g, needs: (np.where(positive, g, g * alpha * (expm1 + 1)),)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


@differentiable
def selu(a):
    """scale * (a if a > 0 else alpha * (exp(a) - 1)), the self-normalising constants of Klambauer et al."""
    positive = a > 0
    negative_part = _SELU_ALPHA * np.expm1(np.minimum(a, 0))
    out = _SELU_SCALE * np.where(positive, a, negative_part)
    return out, lambda g, needs: (g * _SELU_SCALE * np.where(positive, 1, negative_part + _SELU_ALPHA),)


@differentiable
def softsign(a):
    denominator = 1 + np.abs(a)
    return a / denominator, lambda g, needs: (g / (denominator * denominator),)


@differentiable
def relu6(a):
    return np.clip(a, 0, 6), lambda g, needs: (g * ((a > 0) & (a < 6)),)  # the derivative at 0 and 6 is 0


@differentiable
def softplus(a):
    """log(1 + exp(a)), exact for large |a|: softplus(1e4) = 1e4, softplus(-1e4) = 0."""
    return np.maximum(a, 0) + _log1p_exp_neg_abs(a), lambda g, needs: (g * _sigmoid(a),)


@differentiable
def swish(a):
    s = _sigmoid(a)
    return a * s, lambda g, needs: (g * (s + a * s * (1 - s)),)


silu = swish

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_erf_host = np.vectorize(math.erf, otypes=[float])


def _erf(a):
    """erf elementwise, on a's device (CuPy's kernel on a GPU; NumPy's numbers elsewhere)."""
    if type(a) is np.ndarray:
        return _erf_host(a)
    device = devices.of(a)
    if device.name == "gpu":  # pragma: no cover - needs a GPU
        from cupyx.scipy.special import erf
        return erf(a)
    return device.to_device(_erf_host(device.to_host(a)))


@differentiable(arrays=1)
def gelu(a, approximate=True):
    """Gaussian error linear unit; ``approximate=True`` is the tanh form, ``False`` the exact erf form."""
    if approximate:
        inner = _SQRT_2_OVER_PI * (a + 0.044715 * a ** 3)
        t = np.tanh(inner)
        out = 0.5 * a * (1 + t)
        d_inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * a * a)
        return out, lambda g, needs: (g * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * d_inner),)
    cdf = (0.5 * (1 + _erf(a / math.sqrt(2)))).astype(a.dtype)
    pdf = np.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    return a * cdf, lambda g, needs: (g * (cdf + a * pdf),)


def _shifted(a, axis):
    """a - max(a) along axis, with all -inf slices left at -inf rather than NaN."""
    shift = np.max(a, axis=axis, keepdims=True)
    return a - np.where(np.isfinite(shift), shift, 0)


def _log_softmax(a, axis):
    shifted = _shifted(a, axis)
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


@differentiable(arrays=1)
def softmax(a, axis=-1):
    """exp(a) / sum(exp(a)); an all -inf row gives NaN, as in PyTorch."""
    e = np.exp(_shifted(a, axis))
    with np.errstate(invalid="ignore"):
        out = e / np.sum(e, axis=axis, keepdims=True)
    return out, lambda g, needs: (out * (g - np.sum(g * out, axis=axis, keepdims=True)),)


@differentiable(arrays=1)
def log_softmax(a, axis=-1):
    out = _log_softmax(a, axis)
    return out, lambda g, needs: (g - np.exp(out) * np.sum(g, axis=axis, keepdims=True),)


@differentiable(arrays=1)
def dropout(a, rate, generator=None):
    """Inverted dropout: zero each value with probability ``rate``, scale the rest by 1 / (1 - rate). The mask
    is drawn inside the op (from ``generator``, or the library's generator when None), so a replayed step
    draws a new one, continuing the same random stream."""
    draw = host_dropout_scale if devices.of(a) is devices.CPU else draws.dropout_scale  # a device's: on it
    scale = draw(a, rate, generator or random.generator())
    return a * scale, lambda g, needs: (g * scale,)


def host_dropout_scale(a, rate, generator):
    """The CPU's dropout mask, scaled: NumPy's uniform draws, one per value."""
    keep = generator.random(np.shape(a), dtype=np.float32) >= rate
    return keep.astype(a.dtype) * a.dtype.type(1 / (1 - rate))


# --- the fused dense layer ------------------------------------------------------------
# Activations whose derivative is a function of the output alone can be fused into
# matmul + bias: the backward pass then needs no extra tape node and no saved input.
FUSED_ACTIVATIONS = {
    None: (None, None),
    "linear": (None, None),
    "relu": (lambda z: np.maximum(z, 0, out=z), lambda g, out: g * (out > 0)),
    "sigmoid": (lambda z: _sigmoid(z, out=z), lambda g, out: g * out * (1 - out)),
    "tanh": (lambda z: np.tanh(z, out=z), lambda g, out: g * (1 - out * out)),
}


@differentiable(arrays=3)
def dense(x, kernel, bias, activation=None):
    """activation(x @ kernel + bias) as one op with one fused gradient; ``bias`` may be None."""
    if x.ndim < 1 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(f"dense: expects last dim {kernel.shape[0]}, got shape {x.shape}")
    activate, derivative = FUSED_ACTIVATIONS[activation]
    z = np.matmul(x, kernel)
    if bias is not None:
        z += bias
    out = activate(z) if activate is not None else z

    def backward(g, needs):
        gz = derivative(g, out) if derivative is not None else g
        gx = np.matmul(gz, kernel.T) if needs[0] else None
        x2, gz2 = (x, gz) if x.ndim == 2 else (x.reshape(-1, x.shape[-1]), gz.reshape(-1, gz.shape[-1]))
        gk = np.matmul(x2.T, gz2, out=into(needs[1], x2, gz2)) if needs[1] else None
        gb = np.add.reduce(gz2, axis=0, out=into(needs[2], gz2)) if bias is not None and needs[2] else None
        return gx, gk, gb

    backward.activation = activation  # what bp.explain unfolds it into: matmul, add, this activation
    return out, backward
