"""Loss surfaces over two weights, and the path an optimizer takes across one.

A loss function here takes a Variable ``w`` of shape (2,) and returns a scalar tensor, so the
same function serves the plot (evaluated on a grid) and the optimizer (differentiated).
"""
import numpy

from backprop import ops
from backprop.tape import GradientTape
from backprop.tensor import Tensor, Variable


def bowl(w, scale=10.0):
    """0.5 (w1^2 + scale w2^2): a convex, ill-conditioned valley with its minimum at (0, 0)."""
    return 0.5 * (w[0] * w[0] + scale * w[1] * w[1])


def himmelblau(w):
    """Himmelblau's function / 100: non-convex, four minima (one at (3, 2)), a maximum, saddles."""
    x, y = w[0], w[1]
    a = x * x + y - 11
    b = x + y * y - 7
    return (a * a + b * b) / 100


def logistic(x, y):
    """The mean binary cross-entropy of a single neuron sigmoid(w1 x1 + w2 x2) on data (x, y)."""
    x = numpy.asarray(x, dtype=numpy.float64)
    y = numpy.asarray(y, dtype=numpy.float64)

    def loss(w):
        z = ops.matmul(x, ops.reshape(w, (2, 1)))
        return ops.binary_crossentropy_mean(y.reshape(-1, 1), z, from_logits=True)
    return loss


def path(optimizer, loss_fn, start, steps):
    """Run ``steps`` optimizer steps on ``loss_fn`` from ``start``; returns (positions, losses).

    positions has shape (steps + 1, 2); a diverging run stops at the first non-finite loss.
    """
    w = Variable(numpy.asarray(start, dtype=numpy.float64))
    positions, losses = [w.numpy()], []
    for _ in range(steps):
        with GradientTape() as tape:
            loss = loss_fn(w)
        value = float(loss.numpy())
        losses.append(value)
        if not numpy.isfinite(value) or numpy.abs(w.numpy()).max() > 1e6:
            break
        optimizer.apply_gradients([(tape.gradient(loss, w), w)])
        positions.append(w.numpy())
    return numpy.array(positions), numpy.array(losses)


def grid(loss_fn, w_range, resolution=120):
    """The loss on a resolution x resolution grid over w_range = ((w1_min, w1_max), (w2_min, w2_max))."""
    (a0, a1), (b0, b1) = w_range
    w1, w2 = numpy.meshgrid(numpy.linspace(a0, a1, resolution), numpy.linspace(b0, b1, resolution))
    values = numpy.empty_like(w1)
    batched = Tensor(numpy.stack([w1.ravel(), w2.ravel()]))
    try:  # vectorized: most losses here broadcast over a (2, n) "w"
        values = numpy.asarray(loss_fn(batched).numpy(), dtype=float).reshape(w1.shape)
    except (ValueError, TypeError):
        for index in numpy.ndindex(w1.shape):
            values[index] = float(loss_fn(Tensor(numpy.array([w1[index], w2[index]]))).numpy())
    return w1, w2, values
