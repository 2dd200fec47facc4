"""TensorFlow's names for backprop: below ``import backprop.compat.tensorflow as tf`` the code blocks of the
introductory lecture run unchanged.

This is a name map and nothing else: every name is a backprop object under the name TensorFlow gives
it (``tf.matmul`` is ``bp.matmul``, ``tf.keras.layers.Dense`` is ``bp.layers.Dense``), so what runs is
backprop, with backprop's errors. The one addition is that ``Dropout`` also takes the slides' ``p=``
for its rate (TensorFlow itself wants ``rate=``). Anything TensorFlow has and this map lacks raises
AttributeError with the module it was looked up in.
"""
import types

import backprop as bp


def _namespace(name, **members):
    module = types.ModuleType(f"{__name__}.{name}")
    module.__dict__.update(members)
    return module


# --- tensors, variables, tapes ------------------------------------------------------------------------
Tensor, Variable, GradientTape, function = bp.Tensor, bp.Variable, bp.GradientTape, bp.function
constant = convert_to_tensor = bp.tensor
float16, float32, float64, int32, int64, bool = "float16", "float32", "float64", "int32", "int64", "bool"  # noqa: A001
stop_gradient = bp.stop_gradient

# --- ops at the top level, as TensorFlow has them -------------------------------------------------------
matmul, add, subtract, multiply, divide = bp.matmul, bp.add, bp.subtract, bp.multiply, bp.divide
square, sqrt, exp, abs, maximum, minimum = bp.square, bp.sqrt, bp.exp, bp.abs, bp.maximum, bp.minimum  # noqa: A001
reduce_mean, reduce_sum, reduce_max, reduce_min = bp.reduce_mean, bp.reduce_sum, bp.reduce_max, bp.reduce_min
reshape, transpose, concat, stack, where, cast = bp.reshape, bp.transpose, bp.concat, bp.stack, bp.where, bp.cast
argmax, one_hot, clip_by_value = bp.argmax, bp.one_hot, bp.clip
expand_dims, squeeze = bp.expand_dims, bp.squeeze
ones, zeros, ones_like, zeros_like = bp.ones, bp.zeros, bp.ones_like, bp.zeros_like

math = _namespace("math", sigmoid=bp.sigmoid, tanh=bp.tanh, exp=bp.exp, log=bp.log, square=bp.square,
                  sqrt=bp.sqrt, abs=bp.abs, add=bp.add, subtract=bp.subtract, multiply=bp.multiply,
                  divide=bp.divide, maximum=bp.maximum, minimum=bp.minimum, reduce_mean=bp.reduce_mean,
                  reduce_sum=bp.reduce_sum, reduce_max=bp.reduce_max, reduce_min=bp.reduce_min,
                  reduce_logsumexp=bp.reduce_logsumexp, softplus=bp.softplus, argmax=bp.argmax,
                  greater=bp.greater, less=bp.less, equal=bp.equal)
nn = _namespace("nn", sigmoid=bp.sigmoid, tanh=bp.tanh, relu=bp.relu, relu6=bp.relu6, elu=bp.elu, selu=bp.selu,
                gelu=bp.activations.gelu, silu=bp.silu, swish=bp.swish, leaky_relu=bp.leaky_relu, softplus=bp.softplus,
                softsign=bp.softsign, softmax=bp.softmax, log_softmax=bp.log_softmax,
                softmax_cross_entropy_with_logits=bp.softmax_cross_entropy_with_logits,
                sigmoid_cross_entropy_with_logits=bp.sigmoid_cross_entropy_with_logits,
                sparse_softmax_cross_entropy_with_logits=bp.sparse_softmax_cross_entropy_with_logits)
random = _namespace("random", normal=bp.random.normal, uniform=bp.random.uniform,
                    truncated_normal=bp.random.truncated_normal, set_seed=bp.random.set_seed,
                    shuffle=bp.random.shuffle)


# --- keras ------------------------------------------------------------------------------------------------
class Dropout(bp.layers.Dropout):
    """bp.layers.Dropout, also taking the slides' ``p=`` for ``rate``."""

    def __init__(self, rate=None, p=None, **kwargs):
        if (rate is None) == (p is None):
            raise TypeError("Dropout: give the drop probability once, as rate= (or the slides' p=)")
        super().__init__(rate if rate is not None else p, **kwargs)


layers = _namespace("keras.layers", Layer=bp.layers.Layer, Dense=bp.layers.Dense, Dropout=Dropout,
                    Flatten=bp.layers.Flatten, Activation=bp.layers.Activation, Input=bp.Input,
                    InputLayer=bp.layers.InputLayer, Softmax=bp.layers.Softmax,
                    Normalization=bp.layers.Normalization, BatchNormalization=bp.layers.BatchNormalization)
losses = _namespace("keras.losses", **{name: getattr(bp.losses, name) for name in (
    "MeanSquaredError", "MeanAbsoluteError", "Huber", "BinaryCrossentropy", "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy", "Hinge", "KLDivergence", "Loss", "mean_squared_error", "mean_absolute_error",
    "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "huber", "hinge")},
    MSE=bp.losses.mean_squared_error, mse=bp.losses.mean_squared_error, MAE=bp.losses.mean_absolute_error,
    mae=bp.losses.mean_absolute_error, KLD=bp.losses.kl_divergence, kld=bp.losses.kl_divergence)
keras = _namespace("keras", layers=layers, losses=losses, Sequential=bp.Sequential, Model=bp.Model, Input=bp.Input,
                   optimizers=bp.optimizers, callbacks=bp.callbacks, metrics=bp.metrics, activations=bp.activations,
                   initializers=bp.initializers, regularizers=bp.regularizers, models=bp.models, utils=bp.utils,
                   datasets=bp.datasets)
