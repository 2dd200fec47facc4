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

binary_crossentropy_mean = _losses.MEAN_OPS["binary_crossentropy"]
mean_squared_error_mean = _losses.MEAN_OPS["mean_squared_error"]
clip_by_value = clip
concatenate = concat
pow = power  # noqa: A001

from backprop.ops import methods as _methods  # noqa: E402
from backprop.ops.methods import UFUNC_OPS  # noqa: E402,F401

_methods.attach()  # Tensor's operators and methods are the ops above
