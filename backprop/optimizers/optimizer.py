"""The optimizer base class: learning rate (or schedule), gradient clipping, weight decay, slots.

A subclass names its slots and writes ``update(values, gradients, slots, lr)``: the update
rule, in place, over one flat buffer of parameters (see backprop.parameters) and its slots.
Everything common to all rules (Keras 3's semantics) lives here. Slots are keyed by the
variables' names, so state survives reordering, restarts and variables without gradients.
"""
import math
import re

from backprop import devices
from backprop.parameters import FlatParameters
from backprop.tensor import Tensor, to_host
from backprop import tracing
from backprop.devices import asarray
from backprop.xp import np
from backprop.user_warnings import warn


def _check_positive(name, value):
    if not callable(value) and (isinstance(value, bool) or not isinstance(value, (int, float))
                                or not math.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a positive finite number{' or a schedule' if name == 'learning_rate' else ''}, "
                         f"got {value!r}")
    return value


def check_fraction(name, value):
    """A hyperparameter in [0, 1): betas, rho, momentum."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


def _check_finite(optimizer, what, values):
    if not np.isfinite(values).all():
        bad = asarray(values).reshape(-1)
        raise FloatingPointError(f"{optimizer}: {what} is {bad[~np.isfinite(bad)][0]}; nothing was updated")


def no_gradients_message(variables):
    names = ", ".join(v.path for v in variables[:4]) + (", ..." if len(variables) > 4 else "")
    return (f"No gradients provided for any variable ({names}): the loss does not depend on them. If the "
            "forward pass ran before the tape, move it inside:\n"
            "    with bp.GradientTape() as tape:\n"
            "        prediction = model(x)\n"
            "        loss = loss_fn(y, prediction)\n"
            "    grads = tape.gradient(loss, model.trainable_variables)")


class Optimizer:
    slot_names = ()

    def __init__(self, learning_rate=0.001, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 weight_decay=None, name=None):
        self._learning_rate = _check_positive("learning_rate", learning_rate)
        for option, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            if value is not None:
                _check_positive(option, value)
        if weight_decay is not None and (isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float))
                                         or not math.isfinite(weight_decay) or weight_decay < 0):
            raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
        if sum(option is not None for option in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("use only one of clipnorm, clipvalue and global_clipnorm")
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.weight_decay = weight_decay
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._params = None   # the FlatParameters being updated
        self._slots = {}      # dtype -> {slot name: flat array laid out like params' dtype group}
        self._parked = {}     # name -> {slot name: array}: state of variables not in the current params
        self._scratch = {}
        self._warned = set()
        self._no_decay_ids, self._no_decay_names = set(), ()
        self._decay_masks = None  # dtype -> 0/1 array when some variables are excluded from weight decay

    # --- learning rate ------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The current learning rate (a schedule is evaluated at ``iterations``)."""
        lr = self._learning_rate
        return float(lr(self.iterations)) if callable(lr) else float(lr)

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = _check_positive("learning_rate", value)

    lr = learning_rate  # the alias Keras still accepts

    @property
    def learning_rate_schedule(self):
        """The schedule the learning rate follows, or None for a constant rate."""
        return self._learning_rate if callable(self._learning_rate) else None

    # --- slots, kept per dtype group of a FlatParameters, by name ---------------------------
    def build(self, variables):
        """Allocate every slot once (Keras' ``optimizer.build(var_list)``); later steps update them in place."""
        self._use(self._parameters_for(list(variables)))

    def _parameters_for(self, variables):
        """A FlatParameters holding exactly ``variables``: the current one when it does, else a new one."""
        if isinstance(variables, FlatParameters):
            return variables
        current = self._params
        if current is not None and current.covers(variables):
            return current  # _use attaches it
        return FlatParameters([(v.path, v) for v in variables])

    @property
    def variables_known(self):
        """Whether the optimizer holds state for some variables (its slots exist)."""
        return self._params is not None

    def forget_variables(self):
        """Drop the slots and the buffer this optimizer updates (``model.to`` moves them through get_state)."""
        self._params, self._slots, self._parked, self._scratch, self._decay_masks = None, {}, {}, {}, None

    def _use(self, params):
        """Make ``params`` the buffer this optimizer updates, carrying every slot over: by variable where the
        same variable was seen before, else by name; slots of names no longer present are kept aside."""
        if params is self._params:
            params.attach()
            return
        previous = self._slot_views_by_variable()
        parked = self._parked
        if self._params is not None:
            for name, variable in zip(self._params.names, self._params.variables):
                parked[name] = {slot: array.copy() for slot, array in previous[id(variable)].items()}
        params.attach()
        self._slots = {dtype: {name: self.initial_slot(name, values) for name in self.slot_names}
                       for dtype, (values, _) in params.groups.items()}
        self._params = params
        self._decay_masks = self._masks_for(params)
        for position, (name, variable) in enumerate(zip(params.names, params.variables)):
            saved = previous.get(id(variable)) or parked.get(name)
            if saved is not None:
                for slot, view in self._slot_views(position).items():
                    view[...] = devices.of(view).to_device(saved[slot])
            parked.pop(name, None)

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Keras' call: no weight decay for these variables, or for those whose name matches one of the
        regular expressions in ``var_names`` (a bias, a normalisation scale)."""
        self._no_decay_ids |= {id(v) for v in var_list or []}
        self._no_decay_names += tuple(var_names or ())
        self._decay_masks = None
        if self._params is not None:
            self._decay_masks = self._masks_for(self._params)

    def _decays(self, variable):
        return id(variable) not in self._no_decay_ids and not any(
            re.search(pattern, variable.name or variable.path) for pattern in self._no_decay_names)

    def _masks_for(self, params):
        if not self._no_decay_ids and not self._no_decay_names:
            return None
        masks = {dtype: np.ones_like(values) for dtype, (values, _) in params.groups.items()}
        for position, (_, variable, dtype, _, _) in enumerate(params.entries):
            if not self._decays(variable):
                params.view(masks[dtype], position)[...] = 0
        return masks

    def _slot_views(self, position):
        dtype = self._params.entries[position][2]
        return {slot: self._params.view(flat, position) for slot, flat in self._slots[dtype].items()}

    def _slot_views_by_variable(self):
        if self._params is None:
            return {}
        return {id(v): self._slot_views(position) for position, v in enumerate(self._params.variables)}

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
        """This variable's slot arrays by slot name (views of the optimizer's flat slots)."""
        return self._slot_views_by_variable()[id(variable)]

    # --- the step ------------------------------------------------------------------------
    def _recorded_update(self, args, kwargs):
        """How a recording replays apply_gradients: the gradients as inputs, the variables fixed."""
        pairs = list(args[0])
        present = [i for i, (grad, _) in enumerate(pairs) if grad is not None]
        variables = [variable for _, variable in pairs]

        def replay(*grads):
            full = [None] * len(variables)
            for position, grad in zip(present, grads):
                full[position] = grad
            return self._apply(full, variables), None
        return [pairs[i][0] for i in present], replay

    @tracing.replayed(recorded=_recorded_update)
    def apply_gradients(self, grads_and_vars):
        """One update of every variable. A ``None`` gradient counts as zero (the variable still takes the
        step its slots and weight decay give), with a warning; all ``None`` is an error."""
        grads, variables = [], []
        for grad, variable in grads_and_vars:
            if grad is not None:
                grad = grad.data if isinstance(grad, Tensor) else asarray(grad)
                if grad.shape != variable.data.shape:
                    raise ValueError(f"{self.name}: gradient of shape {grad.shape} for variable "
                                     f"{variable.path!r} of shape {variable.shape}")
            grads.append(grad)
            variables.append(variable)
        if not variables:
            raise ValueError(f"{self.name}.apply_gradients: no (gradient, variable) pairs were given")
        return self._apply(grads, variables)

    def _apply(self, grads, variables):
        """apply_gradients on checked arrays: the variables' FlatParameters found (or made), then one update."""
        params = self._params
        if params is None or not params.holds(variables):  # the usual case: the same variables every step
            params = self._parameters_for(variables)
            self._use(params)
            grads = [grads[position] for position in params.order_of(variables)]
        self.load_gradients(params, grads)
        return self.apply_to(params)

    def load_gradients(self, params, grads):
        """Copy ``grads`` (in ``params``' order) into its gradient buffer; ``None`` counts as zero (with a
        warning), all ``None`` is an error that shows the usual cause."""
        missing = params.load_gradients(grads)
        if len(missing) == len(grads):  # (the zeros it wrote are never applied)
            raise ValueError(no_gradients_message(params.variables))
        if missing:
            self._warn_missing([params.names[position] for position in missing])

    def _warn_missing(self, names):
        key = tuple(names)
        if key not in self._warned:
            self._warned.add(key)
            warn(f"{self.name}: no gradient for {', '.join(names)} (the loss does not depend on them); "
                 "they are updated with a zero gradient")

    def apply_to(self, params):
        """One update from the gradients already in ``params``' gradient buffers (the training loop's path)."""
        if params is self._params:
            params.attach()
        else:
            self._use(params)
        lr = self.learning_rate
        if self.clipvalue is not None or self.clipnorm is not None or self.global_clipnorm is not None:
            self._clip(params)
        for dtype, (values, grads) in params.groups.items():
            if self.weight_decay:
                decay = np.multiply(values, self.weight_decay * lr, out=self.scratch(values))
                if self._decay_masks is not None:
                    decay *= self._decay_masks[dtype]
                values -= decay
            self.update(values, grads, self._slots[dtype], lr)
        self.iterations += 1
        if self.iterations % 64 == 0:
            self._flush_subnormals()
        return self.iterations

    def _flush_subnormals(self):
        """Set subnormal slot values to zero. Moments of weights whose gradient became exactly zero (dead
        units) decay geometrically into the subnormal range, where x86 arithmetic is many times slower;
        values below 1e-38 change no update measurably."""
        for slots in self._slots.values():
            for array in slots.values():
                if array.dtype.kind == "f":
                    np.copyto(array, 0, where=np.abs(array) < np.finfo(array.dtype).tiny)

    def _clip(self, params):
        """clipvalue elementwise; clipnorm per variable; global_clipnorm over all of them (Keras' rules).
        A non-finite norm is refused before anything changes."""
        if self.clipvalue is not None:
            for _, grads in params.groups.values():
                np.clip(grads, -self.clipvalue, self.clipvalue, out=grads)
            return
        if self.clipnorm is None and self.global_clipnorm is None:
            return
        views = params.gradient_views()
        # the norms stay arrays on the gradients' device: no wait for it; the finite check reads them on the
        # CPU only (on a GPU a non-finite norm reaches the loss, where TerminateOnNaN sees it)
        squares = np.stack([np.sum(g * g) for g in views]).astype(np.float64)
        host = type(squares) is np.ndarray
        if self.clipnorm is not None:
            norms = np.sqrt(squares)
            if host:
                _check_finite(self.name, "a gradient norm", norms)
            scales = self.clipnorm / np.maximum(norms, self.clipnorm)
            for view, scale in zip(views, scales):
                view *= scale.astype(view.dtype)
            return
        norm = np.sqrt(np.sum(squares))
        if host:
            _check_finite(self.name, "the global gradient norm", norm)
        scale = self.global_clipnorm / np.maximum(norm, self.global_clipnorm)
        for _, grads in params.groups.values():
            grads *= scale.astype(grads.dtype)

    def apply(self, grads, variables):
        return self.apply_gradients(zip(grads, variables))

    def minimize(self, loss_fn, variables):
        """One step on ``loss_fn()`` (a function of no arguments) with respect to ``variables``."""
        from backprop.tape import GradientTape
        with GradientTape() as tape:
            loss = loss_fn()
        self.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def update(self, value, grad, slots, lr):
        """Update ``value`` in place from ``grad``; ``slots`` holds this variable's state arrays."""
        raise NotImplementedError

    # --- state -----------------------------------------------------------------------------
    def get_state(self):
        """Iterations and every slot as ``"{variable name}/{slot}"``: enough to resume exactly, in any order."""
        state = {"iterations": np.asarray(self.iterations, dtype=np.int64)}
        if self._params is not None:
            for position, name in enumerate(self._params.names):
                for slot, view in self._slot_views(position).items():
                    state[f"{name}/{slot}"] = np.array(to_host(view))  # host copies, whatever the device
        return state

    def set_state(self, state, variables):
        """Restore what get_state returned onto ``variables`` (a list or a FlatParameters), matched by name.
        Every slot must be there with its shape, and nothing else: otherwise nothing changes."""
        params = self._parameters_for(variables if isinstance(variables, FlatParameters) else list(variables))
        if "iterations" not in state:
            raise ValueError(f"{self.name}.set_state: the state has no 'iterations'")
        expected = {f"{name}/{slot}": (variable.shape, position)
                    for position, (name, variable) in enumerate(zip(params.names, params.variables))
                    for slot in self.slot_names}
        given = set(state) - {"iterations"}
        fresh = not given and int(state["iterations"]) == 0  # saved before the first step: no slots yet
        problems = [] if fresh else [f"missing {key}" for key in expected if key not in state]
        problems += [f"unexpected {key}" for key in sorted(given - set(expected))]
        problems += [f"{key}: shape {np.shape(state[key])} instead of {shape}" for key, (shape, _) in expected.items()
                     if key in state and tuple(np.shape(state[key])) != tuple(shape)]
        if problems:
            raise ValueError(f"{self.name}.set_state: the state does not fit these variables: {'; '.join(problems)}")
        self._use(params)
        self.iterations = int(state["iterations"])
        if not fresh:
            for key, (_, position) in expected.items():
                view = self._slot_views(position)[key.rsplit("/", 1)[1]]
                view[...] = devices.of(view).to_device(np.asarray(to_host(state[key])))

    def get_config(self):
        """The constructor's keyword arguments (a schedule is not serializable: it raises)."""
        if callable(self._learning_rate):
            raise ValueError(f"{self.name}: a learning-rate schedule cannot be saved in a config")
        config = {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in ("iterations", "slot_names")}
        return {**config, "learning_rate": self._learning_rate}
