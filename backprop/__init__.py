"""backprop: a deep-learning framework on NumPy, built to be read, taught with and fast."""
from backprop.tensor import Tensor, Variable, is_tensor, ones, ones_like, tensor, zeros, zeros_like
from backprop.tape import GradientTape, no_grad
from backprop.ops import *  # noqa: F401,F403
from backprop.ops import UFUNC_OPS as _UFUNC_OPS  # noqa: F401
from backprop import ops, random
from backprop import activations, initializers, regularizers, layers, losses, metrics, optimizers, callbacks
from backprop import datasets, debug, distribute, explain, landscape, models, saving, tools, utils
from backprop.layers import Input
from backprop.models import Model, Sequential
from backprop.compiled.function import function
from backprop import devices
from backprop.devices import device, set_device
from backprop.tensor import to_device, to_host

convert_to_tensor = tensor
get_device = devices.current

from backprop.version import __version__  # noqa: E402,F401


def __getattr__(name):
    """``bp.plot`` loads on first use: it needs matplotlib, which is optional."""
    if name == "plot":
        import backprop.plot as plot  # importing the submodule sets the attribute: no recursion
        return plot
    raise AttributeError(f"module 'backprop' has no attribute {name!r}")
