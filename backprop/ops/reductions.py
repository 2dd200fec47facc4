"""Reductions over axes (sum, mean, max, min, logsumexp) and argmax/argmin."""
import builtins

from backprop.ops.op import constant, differentiable
from backprop.devices import asarray
from backprop.xp import np


def _axes(axis, ndim):
    """Normalize ``axis`` (None, int or sequence) to a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    normalized = []
    for a in axes:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"axis {a} is out of bounds for a tensor of rank {ndim}")
        normalized.append(a % builtins.max(ndim, 1))
    return tuple(sorted(normalized))


def _expand(g, shape, axes, keepdims):
    """Broadcast a reduced gradient back to the input's shape."""
    if not keepdims and axes:
        g = np.expand_dims(g, axes)
    return np.broadcast_to(g, shape)


@differentiable(arrays=1)
def sum(a, axis=None, keepdims=False):  # noqa: A001
    a = asarray(a)
    axes = _axes(axis, a.ndim)
    return np.sum(a, axis=axes, keepdims=keepdims), lambda g, needs: (_expand(g, a.shape, axes, keepdims),)


@differentiable(arrays=1)
def mean(a, axis=None, keepdims=False):
    a = asarray(a)
    axes = _axes(axis, a.ndim)
    count = 1
    for ax in axes:
        count *= a.shape[ax]
    if count == 0:
        raise ValueError(f"mean: cannot average over an empty axis (shape {a.shape}, axis {axis})")
    out = np.mean(a, axis=axes, keepdims=keepdims)
    return out, lambda g, needs: (_expand(g / count, a.shape, axes, keepdims),)


def _extreme(reduce):
    def forward(a, axis=None, keepdims=False):
        a = asarray(a)
        axes = _axes(axis, a.ndim)
        if a.size == 0:
            raise ValueError(f"{reduce.__name__}: cannot reduce an empty tensor of shape {a.shape}")
        out = reduce(a, axis=axes, keepdims=True)

        def backward(g, needs):
            hits = a == out  # ties share the gradient equally, as in TensorFlow
            share = hits / np.sum(hits, axis=axes, keepdims=True)
            return (_expand(g, a.shape, axes, keepdims) * share,)

        return (out if keepdims else np.squeeze(out, axis=axes)), backward

    forward.__name__ = reduce.__name__
    return differentiable(forward, arrays=1)


max = _extreme(np.max)  # noqa: A001
min = _extreme(np.min)  # noqa: A001


@differentiable(arrays=1)
def logsumexp(a, axis=None, keepdims=False):
    """log(sum(exp(a))) without overflow; an all -inf slice gives -inf, not NaN."""
    a = asarray(a)
    axes = _axes(axis, a.ndim)
    shift = np.max(a, axis=axes, keepdims=True)
    shift = np.where(np.isfinite(shift), shift, 0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - shift), axis=axes, keepdims=True)) + shift

    def backward(g, needs):
        with np.errstate(invalid="ignore"):
            weights = np.exp(a - out)
        return (_expand(g, a.shape, axes, keepdims) * weights,)

    return (out if keepdims else np.squeeze(out, axis=axes)), backward


@constant
def argmax(a, axis=-1):
    return np.argmax(a, axis=axis)


@constant
def argmin(a, axis=-1):
    return np.argmin(a, axis=axis)


reduce_sum, reduce_mean, reduce_max, reduce_min, reduce_logsumexp = sum, mean, max, min, logsumexp
