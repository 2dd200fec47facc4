"""Optimizers with Keras 3's update rules and defaults, and learning-rate schedules."""
from backprop.optimizers import schedules
from backprop.optimizers.optimizer import Optimizer
from backprop.optimizers.rules import SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Nadam, RMSprop

OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "adagrad": Adagrad, "rmsprop": RMSprop, "adadelta": Adadelta,
              "adamax": Adamax, "nadam": Nadam}


def get(identifier, **kwargs):
    """An optimizer from a name ('adam') or an Optimizer instance; None gives None, as in Keras."""
    if identifier is None:
        return None
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier.lower()](**kwargs)
    raise ValueError(f"unknown optimizer {identifier!r}; valid: {', '.join(OPTIMIZERS)}")
