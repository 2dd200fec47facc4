"""Weight penalties added to the training loss: L1, L2 and both together."""
import math

from backprop import ops


class Regularizer:
    def __call__(self, weight):
        raise NotImplementedError


class L1L2(Regularizer):
    """penalty = l1 * sum(|w|) + l2 * sum(w^2) (Keras' definition, no factor 1/2)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = float(l1), float(l2)
        for name, value in (("l1", self.l1), ("l2", self.l2)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"regularizer: {name} must be a finite number >= 0, got {value!r}")

    def __call__(self, weight):
        penalty = 0.0
        if self.l1:
            penalty = penalty + self.l1 * ops.sum(ops.abs(weight))
        if self.l2:
            penalty = penalty + self.l2 * ops.sum(ops.square(weight))
        return penalty

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


def L1(l1=0.01):
    return L1L2(l1=l1)


def L2(l2=0.01):
    return L1L2(l2=l2)


l1, l2, l1_l2 = L1, L2, L1L2


def get(identifier):
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, dict):
        return L1L2(**identifier)
    if identifier in ("l1", "l2", "l1_l2"):
        return {"l1": L1, "l2": L2, "l1_l2": L1L2}[identifier]()
    if callable(identifier):
        return identifier
    raise ValueError(f"unknown regularizer {identifier!r}; valid: l1, l2, l1_l2 or a Regularizer")
