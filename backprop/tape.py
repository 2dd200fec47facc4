"""Reverse-mode differentiation: GradientTape records ops, then replays them backwards.

Every op calls :func:`record` after computing its result. A tape keeps a node
``(result, inputs, backward)`` only when one of the inputs is watched by it
(trainable Variables are watched automatically). Nodes are appended in execution
order, which is already a topological order, so ``gradient`` is a single reverse
loop: no recursion, no depth limit.
"""
import contextlib
import contextvars
import functools
import operator
import threading
from itertools import repeat

from backprop.tensor import Tensor, Variable
from backprop.devices import asarray
from backprop.xp import np
from backprop.user_warnings import warn


class _ThreadTapes(threading.local):
    """The tapes recording in this thread, innermost last: per thread, so two threads training two models never
    record onto each other's tapes. Not a context variable: setting one on every tape would make each NumPy ufunc
    call look its own context variable up in a non-empty context (about 4 % of a small op's time)."""
    tapes = ()


_this_thread = _ThreadTapes()
# Functions called with (op name, input index, gradient, incoming) during backprop: see backprop.debug.
gradient_monitors = contextvars.ContextVar("backprop_gradient_monitors", default=())
# Set while backprop.tracing records: called by gradient() with (tape, target, sources, results, unconnected,
# output_gradients).
gradient_hooks = contextvars.ContextVar("backprop_gradient_hooks", default=None)
# Set by a data-parallel step (backprop.training.parallel): (variables, ready). A gradient taken with respect to
# exactly those variables, in that order, calls ready(position, gradient) as soon as no op left in the reverse
# pass can add to that variable's gradient, and keeps the array it returns as the gradient.
gradient_ready = contextvars.ContextVar("backprop_gradient_ready", default=None)
_wrap = Tensor._wrap


class Into:
    """A gradient's destination, handed to a backward function in ``needs`` (where it counts as True): an op that
    knows it writes that input's gradient into ``array`` (``np.matmul(..., out=array)``), any other op ignores it.
    A replay gives the model's weights their places in the optimizer's gradient buffer this way, so the
    gradients need no copy (backprop.compiled.plan)."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array


def into(need, *operands):
    """The array to write a gradient computed from ``operands`` into: ``need``'s, when it is an Into and the
    operands have its dtype and device (else None: a new array)."""
    if type(need) is not Into:
        return None
    array = need.array
    for operand in operands:
        if operand.dtype != array.dtype or type(operand) is not type(array):
            return None
    return array


def recording():
    """The tapes recording in this thread (a tuple, empty when none)."""
    return _this_thread.tapes


def record(result, inputs, backward, name="op"):
    """Called by every op: let each recording tape decide whether to keep the node."""
    for tape in _this_thread.tapes:
        tape._record(result, inputs, backward, name)


@contextlib.contextmanager
def _recording_only(tapes):
    """Let only ``tapes`` record for the duration of a block, then restore the tapes recording before."""
    before, _this_thread.tapes = _this_thread.tapes, tapes
    try:
        yield
    finally:
        _this_thread.tapes = before


def unbroadcast(grad, shape):
    """Sum a gradient back down to the shape its input had before broadcasting."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def reverse(nodes, grads, keep, values=None, monitors=(), ready=None):
    """The reverse pass, shared by GradientTape and a replayed recording (backprop.compiled.plan).

    ``nodes`` are ``(out, inputs, backward, needs, name)`` in the order the ops ran. Their handles are
    tensors (a tape's: a value is named by its id) or, given ``values``, slots of that list (a replay's).
    ``grads`` holds the seed gradients by name and receives the rest; gradients of names in ``keep`` are
    kept, the others freed as soon as they are used. Each gradient is summed back to its input's shape
    and cast to its dtype; gradients reaching one value add up in the order the nodes are visited.
    ``ready`` maps names to functions called with the name's gradient once it is complete (the pass has
    visited the first op that read the value), which return the array to keep in its place.
    """
    slots = values is not None
    completes = _completions(nodes, ready, slots) if ready else {}
    for position in range(len(nodes) - 1, -1, -1):
        out, inputs, backward, needs, name = nodes[position]
        k = out if slots else id(out)
        g = grads.get(k) if k in keep else grads.pop(k, None)
        if g is not None:
            for index, (x, needed, gx) in enumerate(zip(inputs, needs, backward(g, needs))):
                if not needed or gx is None:
                    continue
                for monitor in monitors:
                    monitor(name, index, gx, g)
                if slots:
                    data, k = values[x], x
                else:
                    data, k = x.data, id(x)
                if gx.shape != data.shape:
                    gx = unbroadcast(gx, data.shape)
                if gx.dtype != data.dtype:
                    gx = gx.astype(data.dtype)
                grads[k] = grads[k] + gx if k in grads else gx
        if position in completes:
            for k in completes[position]:
                if k in grads:
                    grads[k] = ready[k](grads[k])


def _completions(nodes, names, slots):
    """position -> the names in ``names`` whose gradient is complete once the reverse pass has visited it."""
    first_read = {}
    for position, (_, inputs, _, needs, _) in enumerate(nodes):
        for x, needed in zip(inputs, needs):
            k = x if slots else id(x)
            if needed and k in names and k not in first_read:
                first_read[k] = position
    completes = {}
    for k, position in first_read.items():
        completes.setdefault(position, []).append(k)
    return completes


def ready_callbacks(sources, keys):
    """The ``ready`` argument of :func:`reverse` for a gradient with respect to ``sources`` (named by ``keys``):
    the data-parallel step's, when one is set for exactly these sources, else None."""
    hook = gradient_ready.get()
    if hook is None:
        return None
    variables, ready = hook
    if len(variables) != len(sources) or not all(map(operator.is_, variables, sources)):
        return None
    return {key: functools.partial(ready, position) for position, key in enumerate(keys)}


class GradientTape:
    """Records operations on watched tensors so that their gradients can be computed.

    >>> with GradientTape() as tape:
    ...     y = x * x
    >>> tape.gradient(y, x)
    """

    def __init__(self, persistent=False, watch_accessed_variables=True):
        self.persistent = persistent
        self.watch_accessed_variables = watch_accessed_variables
        self._nodes = []
        self._ids = set()      # ids of watched tensors and of recorded results
        self._keep_alive = []  # watched tensors, so their ids cannot be reused while we hold them
        self._used = False

    def __enter__(self):
        _this_thread.tapes += (self,)
        return self

    def __exit__(self, *exc):
        _this_thread.tapes = tuple(t for t in _this_thread.tapes if t is not self)

    def watch(self, tensor):
        """Watch a tensor (or a list/tuple/dict of them) so gradients with respect to it can be taken."""
        for t in _flatten(tensor):
            if not isinstance(t, Tensor):
                raise TypeError(f"GradientTape.watch: expected a Tensor, got {type(t).__name__}")
            if id(t) not in self._ids:
                self._ids.add(id(t))
                self._keep_alive.append(t)

    @contextlib.contextmanager
    def stop_recording(self):
        """Temporarily stop this tape from recording."""
        tapes = _this_thread.tapes
        if self not in tapes:
            raise RuntimeError("GradientTape.stop_recording: the tape is not recording")
        with _recording_only(tuple(t for t in tapes if t is not self)):
            yield

    def reset(self):
        self._nodes, self._ids, self._keep_alive = [], set(), []

    def _record(self, result, inputs, backward, name="op"):
        ids = self._ids
        needs = []
        for x in inputs:
            if isinstance(x, Tensor):
                if id(x) in ids:
                    needs.append(True)
                    continue
                if x._trainable and self.watch_accessed_variables:
                    ids.add(id(x))
                    self._keep_alive.append(x)
                    needs.append(True)
                    continue
            needs.append(False)
        if True in needs:
            self._nodes.append((result, inputs, backward, tuple(needs), name))
            ids.add(id(result))

    def gradient(self, target, sources, output_gradients=None, unconnected_gradients="none"):
        """d(sum of target)/d(source) for each source, in the structure of ``sources``.

        A non-scalar target is summed (TensorFlow's rule). A source the target does not
        depend on gets ``None``, or zeros with ``unconnected_gradients="zero"``.
        """
        if unconnected_gradients not in ("none", "zero"):
            raise ValueError(f"unconnected_gradients must be 'none' or 'zero', got {unconnected_gradients!r}")
        if self._used:
            raise RuntimeError("GradientTape.gradient can only be called once on a non-persistent tape; "
                               "create the tape with GradientTape(persistent=True) to call it several times")
        simple = type(sources) is list and all(map(isinstance, sources, repeat(Tensor)))  # the common case
        flat_sources = sources if simple else _flatten(sources)
        for s in flat_sources:
            if type(s) is not Variable:  # variables are always watched; plain tensors only when recorded
                self._check_source(s, flat_sources)
        self._warn_if_nested(flat_sources)
        grads = self._seed(target, output_gradients)
        keys = list(map(id, flat_sources))
        self._backpropagate(grads, set(keys), ready_callbacks(flat_sources, keys))
        results = [_wrap(grads[id(s)]) if id(s) in grads else self._unconnected(s, unconnected_gradients)
                   for s in flat_sources]
        hook = gradient_hooks.get()
        if hook is not None:
            hook(self, target, flat_sources, results, unconnected_gradients, output_gradients)
        if not self.persistent:
            self._used = True
            self.reset()
        return results if simple else _unflatten(sources, iter(results))

    def _warn_if_nested(self, sources):
        """Gradients are computed on raw arrays, so an outer tape cannot differentiate them again."""
        for outer in _this_thread.tapes:
            if outer is not self and any(id(s) in outer._ids for s in sources):
                warn("GradientTape.gradient inside another recording tape: second-order gradients are not "
                     "supported, so the outer tape sees these gradients as constants")
                return

    def _seed(self, target, output_gradients):
        targets = [target] if isinstance(target, Tensor) else _flatten(target)
        seeds = _flatten(output_gradients) if output_gradients is not None else [None] * len(targets)
        grads = {}
        for t, seed in zip(targets, seeds):
            if not isinstance(t, Tensor):
                raise TypeError(f"GradientTape.gradient: the target must be a Tensor, got {type(t).__name__}")
            if seed is not None:
                g = asarray(getattr(seed, "data", seed), dtype=t.dtype)
            else:  # a scalar loss, the usual target, without ones_like's Python layers
                data = t.data  # (ones_like hands a device's array to its own library)
                g = np.array(1, dtype=data.dtype) if data.ndim == 0 and type(data) is np.ndarray else np.ones_like(data)
            grads[id(t)] = grads[id(t)] + g if id(t) in grads else g
        return grads

    def _backpropagate(self, grads, keep, ready=None):
        reverse(self._nodes, grads, keep, monitors=gradient_monitors.get(), ready=ready)

    def _check_source(self, source, sources):
        if not isinstance(source, Tensor):
            raise TypeError(f"GradientTape.gradient: sources must be Tensors, got {type(source).__name__}")
        if type(source) is Tensor and id(source) not in self._ids:
            position = next(i for i, s in enumerate(sources) if s is source)
            raise ValueError(_unwatched_message(position, source))

    @staticmethod
    def _unconnected(source, unconnected):
        return Tensor._wrap(np.zeros_like(source.data)) if unconnected == "zero" else None


def _unwatched_message(position, source):
    return (f"GradientTape.gradient: source {position} is a Tensor of shape {source.shape} that this tape neither "
            "watched nor computed, so it has no gradient. If it was a Variable that became a Tensor through "
            "`w = w - lr * g`, keep it a Variable and update it in place: `w.assign_sub(lr * g)` (or `w -= lr * g`). "
            "To differentiate with respect to a constant tensor, call tape.watch(t) before using it.")


def _flatten(structure):
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in _flatten(item)]
    if isinstance(structure, dict):
        return [leaf for key in structure for leaf in _flatten(structure[key])]
    return [structure]


def _unflatten(structure, leaves):
    if isinstance(structure, (list, tuple)):
        items = [_unflatten(item, leaves) for item in structure]
        return type(structure)(items) if type(structure) in (list, tuple) else type(structure)(*items)
    if isinstance(structure, dict):
        return {key: _unflatten(structure[key], leaves) for key in structure}
    return next(leaves)


@contextlib.contextmanager
def no_grad():
    """Nothing computed inside is recorded on any tape (inference, metric computation)."""
    with _recording_only(()):
        yield

