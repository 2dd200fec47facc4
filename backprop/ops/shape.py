"""Ops that move values around without changing them: reshape, transpose, slicing, joining."""
from backprop.ops.op import constant, differentiable
from backprop.tensor import Tensor
from backprop import devices
from backprop.devices import asarray
from backprop.xp import np


@differentiable(arrays=1)
def reshape(a, shape):
    a = asarray(a)
    try:
        out = a.reshape(shape)
    except ValueError:
        target = tuple(np.atleast_1d(shape).tolist())  # Python ints: NumPy 2 would print np.int64(5)
        raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} ({a.size} values) into {target}") from None
    return out, lambda g, needs: (g.reshape(a.shape),)


@differentiable(arrays=1)
def transpose(a, perm=None):
    a = asarray(a)
    perm = tuple(range(a.ndim))[::-1] if perm is None else tuple(perm)
    inverse = tuple(np.argsort(perm))
    return np.transpose(a, perm), lambda g, needs: (np.transpose(g, inverse),)


@differentiable(arrays=1)
def expand_dims(a, axis):
    a = asarray(a)
    return np.expand_dims(a, axis), lambda g, needs: (g.reshape(a.shape),)


@differentiable(arrays=1)
def squeeze(a, axis=None):
    a = asarray(a)
    return np.squeeze(a, axis=axis), lambda g, needs: (g.reshape(a.shape),)


@differentiable(arrays=1)
def broadcast_to(a, shape):
    return np.broadcast_to(a, shape), lambda g, needs: (g,)  # the tape sums g back to a's shape


@differentiable(arrays=1)
def cast(a, dtype):
    a = asarray(a)
    return a.astype(np.dtype(dtype)), lambda g, needs: (g.astype(a.dtype),)


def _is_basic(index):
    """True for indices made only of ints, slices, None and Ellipsis (no repeated elements)."""
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice, type(None), type(Ellipsis))) for i in items)


def getitem(a, index):
    """Indexing and slicing, ``t[1:, [0, 2]]``; the gradient scatters back (repeated indices add up). Tensors in
    the index are inputs of the op, so a recording indexes with each call's own index tensors."""
    parts = index if isinstance(index, tuple) else (index,)
    tensors = [part for part in parts if isinstance(part, Tensor)]
    if not tensors:
        return _getitem(a, index)
    template = tuple(_TENSOR_SLOT if isinstance(part, Tensor) else part for part in parts)
    return _getitem_by(a, *tensors, template=template, single=not isinstance(index, tuple))


_TENSOR_SLOT = "tensor"  # where the template of an index takes the next index tensor


@differentiable
def _getitem_by(a, *index_arrays, template, single):
    arrays = iter(index_arrays)
    key = tuple(next(arrays) if part is _TENSOR_SLOT else part for part in template)
    out, backward = _getitem.forward(a, key[0] if single else key)
    return out, lambda g, needs: backward(g, needs[:1]) + (None,) * len(index_arrays)


@differentiable(arrays=1)
def _getitem(a, key):
    a = asarray(a)
    if type(a) is not np.ndarray:  # index arrays given from the host (data, as CuPy takes them) join a
        key = _key_on(devices.of(a), key)

    def backward(g, needs):
        grad = np.zeros_like(a, dtype=g.dtype)
        if _is_basic(key):
            grad[key] = g
        else:
            devices.of(grad).add_at(grad, key, g)  # on a GPU: CuPy's scatter_add (np.add.at refuses tuple keys)
        return (grad,)

    return a[key], backward


def _key_on(device, key):
    if isinstance(key, tuple):
        return tuple(_key_on(device, part) for part in key)
    if isinstance(key, list) or type(key) is np.ndarray:
        return device.to_device(np.asarray(key))
    return key


def concat(values, axis=0):
    """Join tensors along an existing axis."""
    return _concat(*values, axis=axis)


def stack(values, axis=0):
    """Join tensors along a new axis."""
    return _stack(*values, axis=axis)


def _joined(join, arrays, axis, name):
    try:
        return join(arrays, axis=axis)
    except ValueError as error:
        shapes = ", ".join(str(np.shape(a)) for a in arrays)
        raise ValueError(f"{name}: cannot join shapes {shapes} along axis {axis} ({error})") from None


@differentiable
def _concat(*arrays, axis=0):
    cuts = np.cumsum([np.shape(a)[axis] for a in arrays])[:-1].tolist()  # numbers, for any device
    return _joined(np.concatenate, arrays, axis, "concat"), lambda g, needs: tuple(np.split(g, cuts, axis=axis))


@differentiable
def _stack(*arrays, axis=0):
    return _joined(np.stack, arrays, axis, "stack"), lambda g, needs: tuple(np.moveaxis(g, axis, 0))


@constant
def stop_gradient(a):
    """The same values, seen by every tape as a constant (an op, so a recording computes it again)."""
    return a


@constant
def one_hot(indices, depth, dtype="float32"):
    """Class indices -> one-hot rows; an index outside [0, depth) raises ValueError."""
    indices = asarray(indices)
    if indices.dtype.kind == "f":
        if not np.all(indices == np.round(indices)):
            fractional = devices.to_host(indices[indices != np.round(indices)][:3]).tolist()
            raise ValueError(f"one_hot: class indices must be whole numbers, got {fractional}")
        indices = indices.astype(np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= depth):
        bad = devices.to_host(indices[(indices < 0) | (indices >= depth)][:1]).tolist()[0]
        raise ValueError(f"one_hot: class index {bad} is outside [0, {depth}) for {depth} classes")
    return devices.array_module(indices).eye(depth, dtype=np.dtype(dtype))[indices]  # on the indices' device
