"""The built-in layers: Dense, Activation, Dropout, Flatten and Input."""
import math

from backprop import activations, initializers, ops, random, regularizers
from backprop.layers.layer import Layer, example_shape
from backprop.layers.symbolic import SymbolicTensor
from backprop.ops.nn import FUSED_ACTIVATIONS


def _initializer_config(initializer):
    return initializer if isinstance(initializer, str) else {
        "class_name": type(initializer).__name__, "config": initializer.get_config()}


class Dense(Layer):
    """activation(inputs @ kernel + bias), computed as one fused op with one fused gradient."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, float)) or not math.isfinite(units) \
                or int(units) != units or units <= 0:
            raise ValueError(f"Dense: units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.activation_name = activations.name_of(activation)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self._fused = self.activation_name if self.activation_name in FUSED_ACTIVATIONS else None
        if self.input_shape is not None:
            self.build((None,) + self.input_shape)
            self.built = True

    def build(self, input_shape):
        if input_shape is None or len(input_shape) < 1:
            raise ValueError(f"Dense '{self.name}': needs inputs with a last dimension, got shape {input_shape}")
        self.input_dim = int(input_shape[-1])
        self.kernel = self.add_weight((self.input_dim, self.units), self.kernel_initializer, name="kernel",
                                      regularizer=self.kernel_regularizer)
        self.bias = self.add_weight((self.units,), self.bias_initializer, name="bias",
                                    regularizer=self.bias_regularizer) if self.use_bias else None

    def call(self, inputs):
        try:  # the dense op checks the shapes; this only puts the layer's name in its message
            z = ops.dense(inputs, self.kernel, self.bias, self._fused)
        except ValueError as error:
            if not str(error).startswith("dense: expects last dim"):
                raise
            raise ValueError(f"Dense '{self.name}' expects last dim {self.input_dim}, got shape {inputs.shape}") from None
        return z if self._fused is not None or self.activation_name == "linear" else self.activation(z)

    def get_config(self):
        if self.activation_name is None:
            raise ValueError(f"Dense '{self.name}': a custom activation callable cannot be saved in a config")
        return {**super().get_config(), "units": self.units, "activation": self.activation_name,
                "use_bias": self.use_bias, "kernel_initializer": _initializer_config(self.kernel_initializer),
                "bias_initializer": _initializer_config(self.bias_initializer),
                "kernel_regularizer": _regularizer_config(self.kernel_regularizer),
                "bias_regularizer": _regularizer_config(self.bias_regularizer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("kernel_initializer", "bias_initializer"):
            if isinstance(config.get(key), dict):
                spec = config[key]
                config[key] = initializers.from_config(spec)
        return cls(**config)


def _regularizer_config(regularizer):
    if regularizer is None:
        return None
    if not hasattr(regularizer, "get_config"):
        raise ValueError("a custom regularizer callable cannot be saved in a config")
    return regularizer.get_config()


class Activation(Layer):
    """Applies an activation function by name or callable."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self.activation_name = activations.name_of(activation)

    def call(self, inputs):
        return self.activation(inputs)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation_name}


class Softmax(Layer):
    """softmax over ``axis`` (Keras' layer): scores in, probabilities out."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"Softmax: axis must be an integer, got {axis!r}")
        self.axis = axis

    def call(self, inputs):
        return ops.softmax(inputs, axis=self.axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability ``rate`` and scale the rest by
    1 / (1 - rate), so the expected activation is unchanged; at inference it is the identity."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.seed = seed
        self._generator = random.generator(seed) if seed is not None else None

    def call(self, inputs, training=None):
        if not training or self.rate == 0:
            return inputs
        return ops.dropout(inputs, self.rate, self._generator)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)."""

    def call(self, inputs):
        return ops.reshape(inputs, (inputs.shape[0], -1))


class InputLayer(Layer):
    """Declares the shape of one example (without the batch dimension), so models build before data."""

    def __init__(self, shape=None, input_shape=None, **kwargs):
        shape = shape if shape is not None else input_shape
        if shape is None:
            raise ValueError("Input: shape is required, e.g. Input(shape=(2,))")
        super().__init__(input_shape=example_shape(shape, "Input: shape"), **kwargs)

    def call(self, inputs):
        expected = self.input_shape
        if tuple(inputs.shape[1:]) != expected:
            raise ValueError(f"input '{self.name}' expects examples of shape {expected}, got batch shape {inputs.shape}")
        return inputs

    def get_config(self):
        config = super().get_config()
        config["shape"] = config.pop("input_shape")
        return config


def Input(shape, name=None, dtype=None):
    """The input of a model: ``bp.Input(shape=(64,))``, for the functional API or as a Sequential's first item."""
    layer = InputLayer(shape=shape, name=name, dtype=dtype)
    return SymbolicTensor((None,) + layer.input_shape, layer.dtype, layer)