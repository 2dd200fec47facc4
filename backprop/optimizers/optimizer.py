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
        self._slots = {}  # id(variable) -> {slot name: array (a view of the flat slot when adopted)}
        self._variables = []
        self._flat = None
        self._scratch = {}

    # --- learning rate ------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The current learning rate (a schedule is evaluated at ``iterations``)."""
        lr = self._learning_rate
        return float(lr(self.iterations)) if callable(lr) else float(lr)

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = _check_positive("learning_rate", value)

    # --- slots and the flat buffer --------------------------------------------------------
    def build(self, variables):
        """Allocate every slot once; later steps update them in place.

        The first variables an optimizer sees are adopted into one flat buffer: their arrays become
        views of it, and so do their gradients and slots, so a step is a handful of NumPy calls over
        one array however many variables the model has.
        """
        new = [v for v in variables if id(v) not in self._slots]
        if not new:
            return
        if not self._variables and len({v.dtype for v in new}) == 1:
            self._adopt(new)
            return
        for variable in new:
            self._slots[id(variable)] = {name: self.initial_slot(name, variable.data) for name in self.slot_names}
            self._variables.append(variable)

    def _adopt(self, variables):
        sizes = [v.size for v in variables]
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        dtype = variables[0].dtype
        self._flat = np.empty(offsets[-1], dtype=dtype)
        self._flat_grad = np.zeros(offsets[-1], dtype=dtype)
        self._flat_slots = {name: self.initial_slot(name, self._flat) for name in self.slot_names}
        self._views = []
        for variable, start, stop in zip(variables, offsets, offsets[1:]):
            view = self._flat[start:stop].reshape(variable.shape)
            view[...] = variable.data
            variable.data = view
            self._views.append((view, self._flat_grad[start:stop].reshape(variable.shape)))
            self._slots[id(variable)] = {name: flat[start:stop].reshape(variable.shape)
                                         for name, flat in self._flat_slots.items()}
            self._variables.append(variable)

    def _readopt(self):
        """Someone rebound a variable's array (another optimizer adopted it): copy it back in."""
        for variable, (view, _) in zip(self._variables, self._views):
            if variable.data is not view:
                view[...] = variable.data
                variable.data = view

    def initial_slot(self, name, value):
        return np.zeros_like(value)

    def scratch(self, like, index=0):
        """A reusable work array shaped like ``like``: no temporaries (and no page faults) per step."""
        key = (like.shape, like.dtype, index)
        buffer = self._scratch.get(key)
        if buffer is None:
            buffer = self._scratch[key] = np.empty_like(like)
        return buffer

    def slots(self, variable):
        return self._slots[id(variable)]

    # --- the step ------------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """Apply one update to each variable; ``None`` gradients are skipped (those variables do not move)."""
        grads, variables = [], []
        for grad, variable in grads_and_vars:
            if grad is None:
                continue
            grad = grad.data if isinstance(grad, Tensor) else np.asarray(grad)
            if grad.shape != variable.data.shape:
                raise ValueError(f"{self.name}: gradient of shape {grad.shape} for variable "
                                 f"{variable.name!r} of shape {variable.shape}")
            grads.append(grad)
            variables.append(variable)
        if not variables:
            return self.iterations
        self.build(variables)
        lr = self.learning_rate
        if self._flat is not None and len(variables) == len(self._variables) and all(
                a is b for a, b in zip(variables, self._variables)):
            self._apply_flat(grads, lr)
        else:
            self._apply_each(grads, variables, lr)
        self.iterations += 1
        if self.iterations % 64 == 0:
            self._flush_subnormals()
        return self.iterations

    def _flush_subnormals(self):
        """Set subnormal slot values to zero. Moments of weights whose gradient became exactly zero (dead
        units) decay geometrically into the subnormal range, where x86 arithmetic is many times slower;
        values below 1e-38 change no update measurably."""
        arrays = list(self._flat_slots.values()) if self._flat is not None else []
        arrays += [a for v in self._variables[len(self._views) if self._flat is not None else 0:]
                   for a in self._slots[id(v)].values()]
        for array in arrays:
            if array.dtype.kind == "f":
                tiny = np.finfo(array.dtype).tiny
                np.copyto(array, 0, where=np.abs(array) < tiny)

    def _apply_flat(self, grads, lr):
        self._readopt()
        for grad, (_, grad_view) in zip(grads, self._views):
            np.copyto(grad_view, grad, casting="same_kind")
        grad = self._flat_grad
        if self.clipnorm is not None or self.global_clipnorm is not None:
            scales = self._clip_scales([g for _, g in self._views])
            for (_, grad_view), scale in zip(self._views, scales):
                if scale != 1.0:
                    grad_view *= scale
        elif self.clipvalue is not None:
            np.clip(grad, -self.clipvalue, self.clipvalue, out=grad)
        if self.weight_decay:
            self._flat -= np.multiply(self._flat, self.weight_decay * lr, out=self.scratch(self._flat))
        self.update(self._flat, grad, self._flat_slots, lr)

    def _apply_each(self, grads, variables, lr):
        grads = [g.astype(v.dtype) if g.dtype != v.dtype else g for g, v in zip(grads, variables)]
        if self.clipvalue is not None:
            grads = [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        else:
            grads = [g * scale if scale != 1.0 else g for g, scale in zip(grads, self._clip_scales(grads))]
        for grad, variable in zip(grads, variables):
            if self.weight_decay:
                variable.data -= variable.data * (self.weight_decay * lr)
            self.update(variable.data, grad, self._slots[id(variable)], lr)

    def apply(self, grads, variables):
        return self.apply_gradients(zip(grads, variables))

    def minimize(self, loss_fn, variables):
        """One step on ``loss_fn()`` (a function of no arguments) with respect to ``variables``."""
        from backprop.tape import GradientTape
        with GradientTape() as tape:
            loss = loss_fn()
        self.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def _clip_scales(self, grads):
        """Per-gradient factors for clipnorm (each gradient's norm) or global_clipnorm (all together)."""
        if self.clipnorm is not None:
            norms = [float(np.sqrt(np.sum(g * g))) for g in grads]
            if not all(math.isfinite(n) for n in norms):
                raise FloatingPointError(f"{self.name}: a gradient norm is {[n for n in norms if not math.isfinite(n)][0]}")
            return [self.clipnorm / max(norm, self.clipnorm) for norm in norms]
        if self.global_clipnorm is not None:
            norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
            if not math.isfinite(norm):
                raise FloatingPointError(f"{self.name}: the global gradient norm is {norm}")
            return [self.global_clipnorm / max(norm, self.global_clipnorm)] * len(grads)
        return [1.0] * len(grads)

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
