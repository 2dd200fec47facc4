"""Diagnostics: find the first op whose value or gradient stops being finite.

    with bp.debug.check_numerics():
        loss = model_loss()                 # raises at the first op that turns finite inputs into NaN/Inf
        grads = tape.gradient(loss, vars)   # ... or whose gradient becomes NaN/Inf from a finite one

Off by default and free when off: ops only loop over an empty list of monitors.
"""
import contextlib

from backprop import devices, tape
from backprop.ops import op as op_module
from backprop.xp import np


class NonFiniteError(FloatingPointError):
    """Raised by check_numerics; the message names the op, its output shape and dtype."""


def _all_finite(array):
    array = devices.asarray(array)  # a device's array stays there: check_numerics works on every device
    return array.dtype.kind not in "fc" or bool(np.isfinite(array).all())


def _check_value(name, result, inputs, params, forward):
    if not _all_finite(result.data) and all(_all_finite(op_module.operand(a)) for a in inputs if a is not None):
        raise NonFiniteError(f"check_numerics: op '{name}' produced NaN or Inf (output shape {result.shape}, "
                             f"dtype {result.dtype}) from finite inputs")


def _check_gradient(name, position, gradient, incoming):
    if not _all_finite(gradient) and _all_finite(incoming):
        raise NonFiniteError(f"check_numerics: the gradient of op '{name}' with respect to input {position} "
                             f"became NaN or Inf (shape {np.shape(gradient)})")


@contextlib.contextmanager
def check_numerics():
    """Raise NonFiniteError at the first op (forward or backward) that creates a NaN or Inf."""
    value_token = op_module.monitors.set(op_module.monitors.get() + (_check_value,))
    gradient_token = tape.gradient_monitors.set(tape.gradient_monitors.get() + (_check_gradient,))
    try:
        yield
    finally:
        tape.gradient_monitors.reset(gradient_token)
        op_module.monitors.reset(value_token)
