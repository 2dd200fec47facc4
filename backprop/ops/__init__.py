"""Every op of backprop, as top-level functions (also re-exported as ``bp.<name>``)."""
from backprop.ops.arithmetic import (abs, add, clip, divide, equal, exp, greater, greater_equal, less, less_equal,
                                     log, matmul, maximum, minimum, multiply, negative, not_equal, power, sin, sqrt,
                                     square, subtract, where)
from backprop.ops.nn import (dense, dropout, elu, gelu, leaky_relu, log_softmax, relu, relu6, selu, sigmoid, silu, softmax,
                             softplus, softsign, swish, tanh)
from backprop.ops import loss_kernels as _losses
from backprop.ops.loss_kernels import (sigmoid_cross_entropy_with_logits, softmax_cross_entropy_with_logits,
                                 sparse_softmax_cross_entropy_with_logits)
from backprop.ops.reductions import (argmax, argmin, logsumexp, max, mean, min, reduce_logsumexp, reduce_max,
                                     reduce_mean, reduce_min, reduce_sum, sum)
from backprop.ops.shape import (broadcast_to, cast, concat, expand_dims, getitem, one_hot, reshape, squeeze,
                                stack, stop_gradient, transpose)
from backprop.xp import np as _np

binary_crossentropy_mean = _losses.MEAN_OPS["binary_crossentropy"]
mean_squared_error_mean = _losses.MEAN_OPS["mean_squared_error"]
clip_by_value = clip
concatenate = concat
pow = power  # noqa: A001

# NumPy ufuncs that map onto a differentiable op (used by Tensor.__array_ufunc__).
UFUNC_OPS = {
    _np.add: add, _np.subtract: subtract, _np.multiply: multiply, _np.true_divide: divide,
    _np.negative: negative, _np.power: power, _np.square: square, _np.sqrt: sqrt, _np.exp: exp,
    _np.log: log, _np.sin: sin, _np.absolute: abs, _np.maximum: maximum, _np.minimum: minimum, _np.matmul: matmul,
    _np.tanh: tanh,
}
