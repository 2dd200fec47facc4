"""backprop: a deep-learning framework on NumPy, built to be read, taught with and fast."""
from backprop.tensor import Tensor, Variable, is_tensor, tensor
from backprop.tape import GradientTape, no_grad, stop_gradient
from backprop.ops import *  # noqa: F401,F403
from backprop.ops import UFUNC_OPS as _UFUNC_OPS  # noqa: F401
from backprop import ops, random
from backprop import activations, initializers, regularizers, layers, losses, metrics, optimizers, callbacks
from backprop import datasets, landscape, models, saving
from backprop.models import Model, Sequential

convert_to_tensor = tensor

__version__ = "0.1.0"
