"""Keras' normalisation layers for tabular data: Normalization (statistics from ``adapt``) and
BatchNormalization (statistics of each batch while training, moving averages at inference).

Both are written with backprop's ops, so their gradients come from the ops' own and a compiled step
replays them; BatchNormalization's moving averages are Variable writes, replayed in order.
"""
import numpy

from backprop import ops
from backprop.layers.layer import Layer
from backprop.tensor import Tensor


def _feature_axis(axis, ndim, what):
    if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim:
        raise ValueError(f"{what}: axis must be an integer in [-{ndim}, {ndim}) for inputs of rank {ndim}, got {axis!r}")
    return axis % ndim


def _stat_shape(input_shape, axis):
    """The shape statistics broadcast with: the features' size on ``axis``, 1 elsewhere (without the batch)."""
    return tuple(input_shape[axis] if i == axis else 1 for i in range(1, len(input_shape)))


class Normalization(Layer):
    """(x - mean) / sqrt(variance) per feature, the statistics from ``adapt(data)`` or given (Keras)."""

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if (mean is None) != (variance is None):
            raise ValueError("Normalization: give both mean and variance, or neither (then call adapt)")
        self.axis, self.invert = axis, bool(invert)
        self.given = None if mean is None else (numpy.asarray(mean, numpy.float64), numpy.asarray(variance, numpy.float64))

    def build(self, input_shape):
        axis = _feature_axis(self.axis, len(input_shape), "Normalization")
        shape = _stat_shape(input_shape, axis)
        self.mean = self.add_weight(shape, initializer="zeros", trainable=False, name="mean")
        self.variance = self.add_weight(shape, initializer="ones", trainable=False, name="variance")
        if self.given is not None:
            self._set(*self.given)

    def adapt(self, data):
        """Compute the mean and variance of ``data`` (examples first) per feature."""
        data = numpy.asarray(data.numpy() if isinstance(data, Tensor) else data, numpy.float64)
        if data.ndim < 2 or not len(data) or not numpy.isfinite(data).all():
            raise ValueError(f"Normalization.adapt: needs finite data of shape (examples, features...), got "
                             f"shape {data.shape}")
        if not self.built:
            self.build((None,) + data.shape[1:])
            self.built = True
        axis = _feature_axis(self.axis, data.ndim, "Normalization")
        reduced = tuple(i for i in range(data.ndim) if i != axis)
        self._set(data.mean(axis=reduced), data.var(axis=reduced))

    def _set(self, mean, variance):
        shape = self.mean.shape
        try:
            self.mean.assign(numpy.broadcast_to(mean, shape).astype(self.mean.dtype))
            self.variance.assign(numpy.broadcast_to(variance, shape).astype(self.variance.dtype))
        except ValueError:
            raise ValueError(f"Normalization: statistics of shape {numpy.shape(mean)} do not fit features of shape "
                             f"{shape}") from None

    def call(self, inputs):
        spread = ops.maximum(ops.sqrt(self.variance), 1e-7)  # Keras: a constant feature is only centred
        if self.invert:
            return inputs * spread + self.mean
        return (inputs - self.mean) / spread

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "invert": self.invert}


class BatchNormalization(Layer):
    """Keras 3's BatchNormalization: in training, each batch is normalised by its own mean and (biased)
    variance, then scaled by ``gamma`` and shifted by ``beta``; the moving averages follow
    ``moving = moving * momentum + batch * (1 - momentum)`` and normalise at inference."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= momentum < 1 or not epsilon > 0:
            raise ValueError(f"BatchNormalization: momentum must be in [0, 1) and epsilon > 0, got {momentum!r}, "
                             f"{epsilon!r}")
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)

    def build(self, input_shape):
        axis = _feature_axis(self.axis, len(input_shape), "BatchNormalization")
        shape = _stat_shape(input_shape, axis)
        self.reduced = tuple(i for i in range(len(input_shape)) if i != axis)
        self.gamma = self.add_weight(shape, initializer="ones", name="gamma") if self.scale else None
        self.beta = self.add_weight(shape, initializer="zeros", name="beta") if self.center else None
        self.moving_mean = self.add_weight(shape, initializer="zeros", trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape, initializer="ones", trainable=False, name="moving_variance")

    def call(self, inputs, training=None):
        if training:
            mean = ops.mean(inputs, axis=self.reduced, keepdims=True)[0]
            variance = ops.mean(ops.square(inputs - mean), axis=self.reduced, keepdims=True)[0]
            keep = self.momentum
            self.moving_mean.assign(self.moving_mean * keep + ops.stop_gradient(mean) * (1 - keep))
            self.moving_variance.assign(self.moving_variance * keep + ops.stop_gradient(variance) * (1 - keep))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        out = (inputs - mean) / ops.sqrt(variance + self.epsilon)
        if self.gamma is not None:
            out = out * self.gamma
        return out + self.beta if self.beta is not None else out

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}
