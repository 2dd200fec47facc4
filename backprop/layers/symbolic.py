"""Symbolic tensors: what ``bp.Input`` (layers/core.py) returns and what calling a layer on one returns (Keras' KerasTensor).

Calling a layer on a SymbolicTensor builds the layer on a one-example batch of zeros, to learn its
output shape, and returns a new SymbolicTensor that remembers the layer and its inputs; a
functional model (backprop.models.functional) replays those calls on real data.
"""
from backprop.tape import no_grad
from backprop.xp import np


class SymbolicTensor:
    """A batch that does not exist yet: its shape (``None`` for the batch axis), dtype, and origin."""

    def __init__(self, shape, dtype, layer, inputs=()):
        self.shape, self.dtype, self.layer, self.inputs = tuple(shape), np.dtype(dtype), layer, tuple(inputs)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<SymbolicTensor shape={self.shape} dtype={self.dtype.name} from {self.layer.name!r}>"


def is_symbolic(value):
    return isinstance(value, SymbolicTensor) or (
        isinstance(value, (list, tuple)) and value and all(isinstance(v, SymbolicTensor) for v in value))


def call_symbolically(layer, inputs, **kwargs):
    """Build ``layer`` for these inputs and return the SymbolicTensor of its output."""
    sources = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    dummies = [np.zeros((1,) + s.shape[1:], dtype=s.dtype) for s in sources]
    with no_grad():
        out = layer(dummies if isinstance(inputs, (list, tuple)) else dummies[0], **kwargs)
    return SymbolicTensor((None,) + out.shape[1:], out.dtype, layer, sources)
