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


# --- the landscape of a real network (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets") ------
class Trajectory:
    """A callback keeping the model's trainable weights (one flat copy per dtype) after every epoch."""

    def __init__(self):
        self.points = []
        self.model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        if not self.points:
            self.points.append(_flat_copy(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self.points.append(_flat_copy(self.model))

    def __getattr__(self, hook):  # the other hooks do nothing
        if hook.startswith("on_"):
            return lambda *args: None
        raise AttributeError(hook)


def _flat_copy(model):
    params = model.parameters
    params.attach()
    return numpy.concatenate([values.astype(numpy.float64) for values, _ in params.groups.values()])


def _filter_normalized(model, direction):
    """Li et al.'s filter normalisation: each output unit's slice of a kernel gets the norm of the weights'
    own slice; biases get no component (so every unit's scale is respected)."""
    params, start = model.parameters, 0
    for name, variable, _, _, _ in params.entries:
        size, shape = variable.size, variable.shape
        part = direction[start:start + size].reshape(shape)
        if len(shape) < 2:
            part[...] = 0
        else:
            weights = variable.data.astype(numpy.float64)
            norms = numpy.linalg.norm(weights.reshape(-1, shape[-1]), axis=0)
            own = numpy.linalg.norm(part.reshape(-1, shape[-1]), axis=0)
            part *= norms / numpy.where(own > 0, own, 1)
        start += size
    return direction


class NetworkSurface:
    """The loss on a grid around ``center`` along directions ``d1``, ``d2`` (plus the trajectory's projection)."""

    def __init__(self, alphas, betas, losses, path=None, path_losses=None):
        self.alphas, self.betas, self.losses = alphas, betas, losses
        self.path, self.path_losses = path, path_losses


def network_surface(model, x, y, resolution=31, span=1.0, trajectory=None, seed=0):
    """The loss of ``model`` (compiled, trained) on (x, y) over a plane through its weights. Without a
    trajectory the plane is spanned by two filter-normalised random directions and ``span`` is in units
    of them; with one (a list of flat weight copies, e.g. ``Trajectory().points``) by the trajectory's two
    principal directions, as Li et al. do for paths, and the path is projected onto it. Each grid point is
    one batched forward pass without a tape; the model's weights are restored afterwards."""
    from backprop.tape import no_grad
    from backprop.training import data
    x, y, _ = data.prepare(model, x, y)
    center = _flat_copy(model)
    if trajectory:
        deltas = numpy.array(trajectory) - center
        _, _, vt = numpy.linalg.svd(deltas, full_matrices=False)
        d1, d2 = vt[0], vt[1] if len(vt) > 1 else numpy.zeros_like(vt[0])
        coordinates = deltas @ numpy.stack([d1, d2]).T
        extent = max(numpy.abs(coordinates).max() * 1.3, 1e-3)
        alphas = betas = numpy.linspace(-extent, extent, resolution)
    else:
        generator = numpy.random.default_rng(seed)
        d1, d2 = (_filter_normalized(model, generator.standard_normal(center.size)) for _ in range(2))
        coordinates = None
        alphas = betas = numpy.linspace(-span, span, resolution)
    params = model.parameters
    buffers = [values for values, _ in params.groups.values()]
    sizes = numpy.cumsum([0] + [b.size for b in buffers])

    def set_weights(flat):
        for buffer, start, stop in zip(buffers, sizes[:-1], sizes[1:]):
            buffer[...] = flat[start:stop]

    def loss_at(flat):
        set_weights(flat)
        with no_grad(), numpy.errstate(all="ignore"):
            return float(model.compute_loss(y, model(x, training=False)).data)

    losses = numpy.empty((resolution, resolution))
    try:
        for i, beta in enumerate(betas):
            for j, alpha in enumerate(alphas):
                losses[i, j] = loss_at(center + alpha * d1 + beta * d2)
        path_losses = None if coordinates is None else [loss_at(center + a * d1 + b * d2) for a, b in coordinates]
    finally:
        set_weights(center)
    return NetworkSurface(alphas, betas, losses, coordinates, path_losses)
