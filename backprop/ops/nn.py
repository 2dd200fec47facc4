"""Neural-network ops: activations, softmax family, fused cross-entropies and the fused dense layer.

All of them are numerically stable for logits of any finite size: no ``exp`` of a
large positive number is ever evaluated.
"""
import math

from backprop.ops.op import differentiable
from backprop.xp import FLOATX, np


def _sigmoid(a, out=None):
    """1 / (1 + exp(-a)) computed as exp(-log(1 + exp(-a))): logaddexp never overflows, so the result is
    exact in the limits (sigmoid(-1000) = 0, sigmoid(40) = 1) and within a few ulp elsewhere."""
    if out is None:
        a = np.asarray(a)
        out = np.empty(a.shape, dtype=a.dtype if a.dtype.kind == "f" else FLOATX)
    np.negative(a, out=out)
    np.logaddexp(0, out, out=out)
    np.negative(out, out=out)
    return np.exp(out, out=out)


def _log1p_exp_neg_abs(a):
    return np.log1p(np.exp(-np.abs(a)))


@differentiable
def sigmoid(a):
    out = _sigmoid(a)
    return out, lambda g, needs: (g * out * (1 - out),)


@differentiable
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
_erf = np.vectorize(math.erf, otypes=[float])


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


@differentiable(arrays=2)
def softmax_cross_entropy_with_logits(labels, logits, axis=-1):
    """Per-example -sum(labels * log_softmax(logits)); labels are probabilities (e.g. one-hot)."""
    log_p = _log_softmax(logits, axis)
    with np.errstate(invalid="ignore"):  # 0 * -inf for impossible classes counts as 0
        out = -np.sum(np.where(labels != 0, labels * log_p, 0), axis=axis)

    def backward(g, needs):
        g = np.expand_dims(g, axis)
        d_logits = g * (np.exp(log_p) * np.sum(labels, axis=axis, keepdims=True) - labels) if needs[1] else None
        return (-g * log_p if needs[0] else None), d_logits

    return out, backward


@differentiable(arrays=2)
def sparse_softmax_cross_entropy_with_logits(labels, logits):
    """Per-example -log_softmax(logits)[label] for integer class indices along the last axis."""
    labels = np.asarray(labels).astype(np.intp, copy=False)
    log_p = _log_softmax(logits, -1)
    picked = np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]

    def backward(g, needs):
        d_logits = np.exp(log_p)
        np.put_along_axis(d_logits, labels[..., None], np.take_along_axis(d_logits, labels[..., None], -1) - 1, -1)
        return None, d_logits * g[..., None]

    return -picked, backward


@differentiable
def sigmoid_cross_entropy_with_logits(labels, logits):
    """Elementwise -[z log s(x) + (1 - z) log(1 - s(x))] = max(x, 0) - x z + log(1 + exp(-|x|))."""
    out = np.maximum(logits, 0) - logits * labels + _log1p_exp_neg_abs(logits)
    return out, lambda g, needs: ((-g * logits) if needs[0] else None, g * (_sigmoid(logits) - labels))


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
    if np.ndim(x) < 1 or np.shape(x)[-1] != kernel.shape[0]:
        raise ValueError(f"dense: expects last dim {kernel.shape[0]}, got shape {np.shape(x)}")
    activate, derivative = FUSED_ACTIVATIONS[activation]
    z = np.matmul(x, kernel)
    if bias is not None:
        z += bias
    out = activate(z) if activate is not None else z

    def backward(g, needs):
        gz = derivative(g, out) if derivative is not None else g
        gx = np.matmul(gz, kernel.T) if needs[0] else None
        x2, gz2 = (x, gz) if x.ndim == 2 else (x.reshape(-1, x.shape[-1]), gz.reshape(-1, gz.shape[-1]))
        gk = np.matmul(x2.T, gz2) if needs[1] else None
        gb = np.add.reduce(gz2, axis=0) if bias is not None and needs[2] else None
        return gx, gk, gb

    return out, backward


# --- fused mean losses: the whole "loss = mean over examples" as one op --------------------------
@differentiable(arrays=2)
def binary_crossentropy_mean(labels, predictions, from_logits=False, epsilon=1e-7):
    """mean(-[y log p + (1 - y) log(1 - p)]) over all elements; p = sigmoid(logits) when ``from_logits``,
    else the probabilities clipped to [epsilon, 1 - epsilon] (Keras' rule)."""
    n = predictions.size
    if from_logits:
        x = predictions
        out = np.add.reduce((np.maximum(x, 0) - x * labels + _log1p_exp_neg_abs(x)).ravel()) / n
        return out, lambda g, needs: (None, (_sigmoid(x) - labels) * (g / n))
    p = np.clip(predictions, epsilon, 1 - epsilon)
    q = 1 - p
    out = -np.add.reduce((labels * np.log(p) + (1 - labels) * np.log(q)).ravel()) / n

    def backward(g, needs):
        grad = p - labels  # d/dp of the loss is (1 - y)/(1 - p) - y/p = (p - y) / (p (1 - p))
        grad /= p * q
        grad *= predictions == p  # clipped values (changed by the clip) get no gradient
        grad *= g / n
        return None, grad

    return out, backward


@differentiable(arrays=2)
def mean_squared_error_mean(labels, predictions):
    diff = predictions - labels
    n = diff.size
    return np.add.reduce((diff * diff).ravel()) / n, lambda g, needs: (None, diff * (2 * g / n))


@differentiable(arrays=2)
def sparse_softmax_cross_entropy_mean(labels, logits):
    """mean over examples of -log_softmax(logits)[label] (integer labels, classes on the last axis)."""
    rows = np.arange(len(labels))
    log_p = _log_softmax(logits, -1)
    out = -np.mean(log_p[rows, labels])

    def backward(g, needs):
        d_logits = np.exp(log_p)
        d_logits[rows, labels] -= 1
        d_logits *= g / len(labels)
        return None, d_logits

    return out, backward


@differentiable(arrays=2)
def softmax_cross_entropy_mean(labels, logits):
    """mean over examples of -sum(labels * log_softmax(logits)) for probability labels (one-hot)."""
    log_p = _log_softmax(logits, -1)
    with np.errstate(invalid="ignore"):
        out = -np.sum(np.where(labels != 0, labels * log_p, 0)) / len(logits)
    return out, lambda g, needs: (None, (np.exp(log_p) * np.sum(labels, -1, keepdims=True) - labels) * (g / len(logits)))
