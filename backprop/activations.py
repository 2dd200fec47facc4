"""Activation functions by name, as Keras users pass them: ``Dense(3, activation="relu")``."""
from backprop import ops


def gelu(x, approximate=False):
    """Keras' and TensorFlow's activation: the exact erf form unless ``approximate`` (``bp.gelu``, like
    ``keras.ops.gelu``, defaults to the tanh form)."""
    return ops.gelu(x, approximate=approximate)


ACTIVATIONS = {
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "relu": ops.relu,
    "leaky_relu": ops.leaky_relu,
    "elu": ops.elu,
    "softplus": ops.softplus,
    "gelu": gelu,
    "swish": ops.swish,
    "silu": ops.swish,
    "selu": ops.selu,
    "softsign": ops.softsign,
    "relu6": ops.relu6,
    "softmax": ops.softmax,
    "log_softmax": ops.log_softmax,
    "linear": lambda x: x,
}

sigmoid, tanh, relu, leaky_relu, elu = ops.sigmoid, ops.tanh, ops.relu, ops.leaky_relu, ops.elu
softplus, swish, silu, softmax = ops.softplus, ops.swish, ops.swish, ops.softmax
selu, softsign, relu6 = ops.selu, ops.softsign, ops.relu6


def linear(x):
    return x


def get(identifier):
    """A callable for ``identifier``: a name, a callable, or None (linear)."""
    if identifier is None:
        return linear
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier in ACTIVATIONS:
        return ACTIVATIONS[identifier]
    raise ValueError(f"unknown activation {identifier!r}; valid: {', '.join(ACTIVATIONS)}")


def name_of(activation):
    """The registered name of an activation (for configs), or None if it is a custom callable."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        get(activation)
        return activation
    for name, fn in ACTIVATIONS.items():
        if fn is activation:
            return name
    return "linear" if activation is linear else None
