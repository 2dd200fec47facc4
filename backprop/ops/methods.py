"""Tensor's Python operators and methods, each the op it names: ``x + y`` is ``add``, ``x.sum()`` is ``sum``.

They are attached to Tensor here rather than written in tensor.py because every op needs Tensor first;
the ops package attaches them as it is imported (JAX gives jax.Array its methods the same way).
"""
from backprop.ops import arithmetic, nn, reductions, shape
from backprop.tensor import Tensor
from backprop.xp import np

# NumPy ufuncs that map onto a differentiable op: ``ndarray + tensor`` and ``np.exp(tensor)`` are recorded.
UFUNC_OPS = {
    np.add: arithmetic.add, np.subtract: arithmetic.subtract, np.multiply: arithmetic.multiply,
    np.true_divide: arithmetic.divide, np.negative: arithmetic.negative, np.power: arithmetic.power,
    np.square: arithmetic.square, np.sqrt: arithmetic.sqrt, np.exp: arithmetic.exp, np.log: arithmetic.log,
    np.sin: arithmetic.sin, np.absolute: arithmetic.abs, np.maximum: arithmetic.maximum,
    np.minimum: arithmetic.minimum, np.matmul: arithmetic.matmul, np.tanh: nn.tanh,
}


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    """Route NumPy ufuncs on tensors to backprop's ops, so ``ndarray + tensor`` is recorded."""
    op = UFUNC_OPS.get(ufunc) if method == "__call__" and not kwargs else None
    if op is not None:
        return op(*inputs)
    arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
    return getattr(ufunc, method)(*arrays, **kwargs)


def _reshape(self, *new_shape):
    return shape.reshape(self, new_shape[0] if len(new_shape) == 1 else new_shape)


def _reflected(op):
    return lambda self, other: op(other, self)


METHODS = {
    # differentiable operators
    "__add__": arithmetic.add, "__radd__": _reflected(arithmetic.add),
    "__sub__": arithmetic.subtract, "__rsub__": _reflected(arithmetic.subtract),
    "__mul__": arithmetic.multiply, "__rmul__": _reflected(arithmetic.multiply),
    "__truediv__": arithmetic.divide, "__rtruediv__": _reflected(arithmetic.divide),
    "__matmul__": arithmetic.matmul, "__rmatmul__": _reflected(arithmetic.matmul),
    "__pow__": arithmetic.power, "__rpow__": _reflected(arithmetic.power),
    "__neg__": arithmetic.negative, "__pos__": lambda self: self, "__abs__": arithmetic.abs,
    "__getitem__": shape.getitem,
    # comparisons: elementwise, not differentiable
    "__lt__": arithmetic.less, "__le__": arithmetic.less_equal, "__gt__": arithmetic.greater, "__ge__": arithmetic.greater_equal,
    "__eq__": arithmetic.equal, "__ne__": arithmetic.not_equal,
    # method forms of common ops
    "reshape": _reshape,
    "transpose": lambda self, perm=None: shape.transpose(self, perm),
    "sum": lambda self, axis=None, keepdims=False: reductions.sum(self, axis, keepdims),
    "mean": lambda self, axis=None, keepdims=False: reductions.mean(self, axis, keepdims),
    "max": lambda self, axis=None, keepdims=False: reductions.max(self, axis, keepdims),
    "min": lambda self, axis=None, keepdims=False: reductions.min(self, axis, keepdims),
    "astype": lambda self, dtype: shape.cast(self, dtype),
    "__array_ufunc__": _array_ufunc,
}


def attach():
    """Give Tensor its operators and methods (the ops package calls this once, as it is imported)."""
    for name, method in METHODS.items():
        setattr(Tensor, name, method)
    Tensor.T = property(shape.transpose)
