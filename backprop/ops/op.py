"""The one mechanism that turns an array function into a differentiable op.

An op is written as ``forward(*arrays, **params) -> (out, backward)`` where
``backward(g, needs)`` returns one gradient per positional input (``None`` where
``needs[i]`` is false or the input is not differentiable). Gradients may keep the
broadcast shape of ``out``: the tape sums them back to each input's shape.
``backward`` must never modify ``g`` in place: several inputs may share it.
"""
import contextvars
import functools
import inspect
import numbers

from backprop import devices, tape
from backprop.tensor import Tensor, as_array, placed
from backprop.xp import np

_this_thread = tape._this_thread
# Functions called with (op name, result, inputs, params, forward) after every op, per context: see backprop.debug
# (which checks values) and backprop.tracing (which records the graph for export).
monitors = contextvars.ContextVar("backprop_op_monitors", default=())
_monitors = monitors.get
_new_tensor = object.__new__
_ndarray = np.ndarray


def operand(value):
    """The array behind an op's input: tensors unwrap, Python scalars stay weak (NumPy 2 promotion), lists
    become arrays on the current device, as ``Tensor(list)`` does."""
    if isinstance(value, Tensor):
        return value.data
    if value is None:
        return None
    if isinstance(value, (np.ndarray, numbers.Number, np.generic)) and not isinstance(value, bool):
        return value
    return placed(as_array(value))


def _explain(op_name, error, arrays):
    """Raise a clearer error than NumPy's when there is one: shapes that do not broadcast, arrays on two devices."""
    if isinstance(error, ValueError) and "broadcast" in str(error):
        shapes = " and ".join(str(np.shape(a)) for a in arrays)
        raise ValueError(f"{op_name}: shapes {shapes} cannot be broadcast together") from None
    if isinstance(error, TypeError):
        devices.check_same_device(op_name, arrays)


def differentiable(forward=None, *, arrays=None, formula=None):
    """Decorator: ``forward(*arrays, *params) -> (out, backward)`` becomes ``op(*inputs) -> Tensor``.

    ``arrays`` says how many leading positional arguments are array inputs (all of them
    by default); later positional arguments are parameters such as an axis or a shape.
    An elementwise op may give its ``formula`` (backprop.ops.formula): a compiled step can then join it
    with its neighbours into one loop.
    """
    if forward is None:
        return functools.partial(differentiable, arrays=arrays, formula=formula)
    forward.formula = formula
    name = forward.__name__.lstrip("_")
    parameter_names = list(inspect.signature(forward).parameters)

    @functools.wraps(forward)
    def op(*args, **params):
        inputs = args if arrays is None else args[:arrays]
        values = [x.data if isinstance(x, Tensor) else x if x is None or type(x) is _ndarray else operand(x)
                  for x in inputs]
        if arrays is not None:
            values.extend(args[arrays:])
        try:
            out, backward = forward(*values, **params)
        except (ValueError, TypeError) as error:
            _explain(name, error, values[:len(inputs)])
            raise
        result = _new_tensor(Tensor)
        result.data = out if type(out) is _ndarray or isinstance(out, devices.array_types) else np.asarray(out)
        for recording_tape in _this_thread.tapes:
            recording_tape._record(result, inputs, backward, name)
        for monitor in _monitors():  # empty unless check_numerics() or a tracer is active
            monitor(name, result, inputs, {**dict(zip(parameter_names[len(inputs):], args[len(inputs):])), **params},
                    forward)
        return result

    op.forward = forward
    return op


def constant(forward, arrays=1):
    """Decorator for non-differentiable ops (argmax, one_hot, comparisons): unwraps the first ``arrays``
    inputs, wraps the result; no tape records it. ``constant(forward, arrays=2)`` for two array inputs."""
    name = forward.__name__.lstrip("_")
    parameter_names = list(inspect.signature(forward).parameters)[arrays:]

    def replayable(*values, **params):  # the (out, backward) form that a compiled replay calls
        return forward(*values, **params), None

    @functools.wraps(forward)
    def op(*args, **kwargs):
        inputs, params = args[:arrays], args[arrays:]
        result = Tensor._wrap(forward(*[operand(value) for value in inputs], *params, **kwargs))
        for monitor in _monitors():
            monitor(name, result, inputs, {**dict(zip(parameter_names, params)), **kwargs}, replayable)
        return result
    return op
