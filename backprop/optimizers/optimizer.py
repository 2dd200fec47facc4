"""The optimizer base class: learning rate (or schedule), gradient clipping, weight decay, slots.

A subclass names its slots and writes ``update(variable, gradient, slots, lr)``: the
update rule of one variable, in place on preallocated arrays. Everything common to all
rules (Keras 3's semantics) lives here.
"""
import math

from backprop.tensor import Tensor
from backprop.xp import np


def _check_positive(name, value):
    if not callable(value) and (not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a positive finite number or a schedule, got {value!r}")
    return value


class Optimizer:
    slot_names = ()

    def __init__(self, learning_rate=0.001, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 weight_decay=None, name=None):
        self._learning_rate = _check_positive("learning_rate", learning_rate)
        if sum(option is not None for option in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("use only one of clipnorm, clipvalue and global_clipnorm")
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.weight_decay = weight_decay
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._slots = {}  # id(variable) -> {slot name: array}
        self._variables = []

    # --- learning rate ------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The current learning rate (a schedule is evaluated at ``iterations``)."""
        lr = self._learning_rate
        return float(lr(self.iterations)) if callable(lr) else float(lr)

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = _check_positive("learning_rate", value)

    # --- slots ----------------------------------------------------------------------------
    def build(self, variables):
        """Allocate every slot array once; later steps update them in place."""
        for variable in variables:
            if id(variable) not in self._slots:
                self._slots[id(variable)] = {name: self.initial_slot(name, variable.data) for name in self.slot_names}
                self._variables.append(variable)

    def initial_slot(self, name, value):
        return np.zeros_like(value)

    def slots(self, variable):
        return self._slots[id(variable)]

    # --- the step ------------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """Apply one update to each variable; ``None`` gradients are skipped."""
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        if not pairs:
            return self.iterations
        grads = [g.data if isinstance(g, Tensor) else np.asarray(g) for g, _ in pairs]
        variables = [v for _, v in pairs]
        self.build(variables)
        grads = self._clip(grads)
        lr = self.learning_rate
        for grad, variable in zip(grads, variables):
            if grad.shape != variable.shape:
                raise ValueError(f"{self.name}: gradient of shape {grad.shape} for variable "
                                 f"{variable.name!r} of shape {variable.shape}")
            if grad.dtype != variable.dtype:
                grad = grad.astype(variable.dtype)
            if self.weight_decay:
                variable.data -= variable.data * (self.weight_decay * lr)
            self.update(variable.data, grad, self._slots[id(variable)], lr)
        self.iterations += 1
        return self.iterations

    def apply(self, grads, variables):
        return self.apply_gradients(zip(grads, variables))

    def minimize(self, loss_fn, variables):
        """One step on ``loss_fn()`` (a function of no arguments) with respect to ``variables``."""
        from backprop.tape import GradientTape
        with GradientTape() as tape:
            loss = loss_fn()
        self.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def _clip(self, grads):
        if self.clipvalue is not None:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        if self.clipnorm is not None:
            return [g * (self.clipnorm / max(float(np.sqrt(np.sum(g * g))), self.clipnorm)) for g in grads]
        if self.global_clipnorm is not None:
            norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
            if not math.isfinite(norm):
                raise FloatingPointError(f"{self.name}: the global gradient norm is {norm}")
            scale = self.global_clipnorm / max(norm, self.global_clipnorm)
            return [g * scale for g in grads]
        return grads

    def update(self, value, grad, slots, lr):
        """Update ``value`` in place from ``grad``; ``slots`` holds this variable's state arrays."""
        raise NotImplementedError

    # --- state -----------------------------------------------------------------------------
    def get_state(self):
        """Iterations and every slot, keyed by the variable's position: enough to resume exactly."""
        state = {"iterations": np.asarray(self.iterations, dtype=np.int64)}
        for index, variable in enumerate(self._variables):
            for name, array in self._slots[id(variable)].items():
                state[f"{index}/{name}"] = array
        return state

    def set_state(self, state, variables):
        """Restore what get_state returned, for ``variables`` in the same order."""
        self.build(variables)
        self.iterations = int(state["iterations"])
        for index, variable in enumerate(variables):
            for name, array in self._slots[id(variable)].items():
                array[...] = state[f"{index}/{name}"]

    def get_config(self):
        """The constructor's keyword arguments (a schedule is not serializable: it raises)."""
        if callable(self._learning_rate):
            raise ValueError(f"{self.name}: a learning-rate schedule cannot be saved in a config")
        config = {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in ("iterations", "slot_names")}
        return {**config, "learning_rate": self._learning_rate}
