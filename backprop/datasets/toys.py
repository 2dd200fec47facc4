"""Small synthetic problems for the lecture and for decision-boundary pictures.

Each returns ``(x, y)``: float32 features of shape (n, 2) and integer labels of shape (n,).
"""
import numpy

PASS_FAIL_THRESHOLD = 40.0


def pass_fail(n=200, seed=0, noise=4.0):
    """The lecture's "will I pass this class?" data.

    Features: lectures attended (0-12) and hours spent on the final project (0-15). A student
    passes when ``(lectures + 1) * (hours + 1) + noise * N(0, 1) > 40``: effort on either
    front compensates for the other, a curved (hyperbolic) boundary no single straight line fits.
    """
    rng = numpy.random.default_rng(seed)
    lectures = rng.integers(0, 13, size=n).astype(float)
    hours = rng.uniform(0, 15, size=n)
    score = (lectures + 1) * (hours + 1) + noise * rng.normal(size=n)
    x = numpy.stack([lectures, hours], axis=1).astype(numpy.float32)
    return x, (score > PASS_FAIL_THRESHOLD).astype(numpy.int64)


def moons(n=200, noise=0.1, seed=0):
    """Two interleaving half circles."""
    rng = numpy.random.default_rng(seed)
    n_top = n // 2
    angle_top, angle_bottom = numpy.linspace(0, numpy.pi, n_top), numpy.linspace(0, numpy.pi, n - n_top)
    top = numpy.stack([numpy.cos(angle_top), numpy.sin(angle_top)], 1)
    bottom = numpy.stack([1 - numpy.cos(angle_bottom), 0.5 - numpy.sin(angle_bottom)], 1)
    x = numpy.concatenate([top, bottom]) + noise * rng.normal(size=(n, 2))
    y = numpy.concatenate([numpy.zeros(n_top), numpy.ones(n - n_top)]).astype(numpy.int64)
    return _shuffled(x, y, rng)


def circles(n=200, noise=0.05, factor=0.5, seed=0):
    """A small circle (class 1) inside a large one (class 0)."""
    rng = numpy.random.default_rng(seed)
    n_outer = n // 2
    angles = rng.uniform(0, 2 * numpy.pi, size=n)
    radius = numpy.where(numpy.arange(n) < n_outer, 1.0, factor)
    x = numpy.stack([radius * numpy.cos(angles), radius * numpy.sin(angles)], 1) + noise * rng.normal(size=(n, 2))
    return _shuffled(x, (numpy.arange(n) >= n_outer).astype(numpy.int64), rng)


def spirals(n=200, noise=0.2, classes=2, seed=0):
    """Interleaved spiral arms, one per class: hard for a linear model, easy for a deep one."""
    rng = numpy.random.default_rng(seed)
    y = numpy.arange(n) % classes
    t = numpy.sqrt(rng.uniform(0.05, 1, size=n)) * 3 * numpy.pi
    angle = t + 2 * numpy.pi * y / classes
    x = numpy.stack([t * numpy.cos(angle), t * numpy.sin(angle)], 1) / (3 * numpy.pi)
    return _shuffled(x + noise * 0.1 * rng.normal(size=(n, 2)), y.astype(numpy.int64), rng)


def xor(n=200, noise=0.1, seed=0):
    """Points in the four quadrants; the label is 1 where the signs of the coordinates differ."""
    rng = numpy.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    y = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(numpy.int64)
    return (x + noise * rng.normal(size=(n, 2))).astype(numpy.float32), y


def blobs(n=200, centers=3, spread=0.5, seed=0):
    """Gaussian clusters around ``centers`` random centres (or the given (k, 2) array)."""
    rng = numpy.random.default_rng(seed)
    centres = rng.uniform(-3, 3, size=(centers, 2)) if numpy.ndim(centers) == 0 else numpy.asarray(centers, float)
    y = numpy.arange(n) % len(centres)
    return _shuffled(centres[y] + spread * rng.normal(size=(n, 2)), y.astype(numpy.int64), rng)


def _shuffled(x, y, rng):
    order = rng.permutation(len(x))
    return x[order].astype(numpy.float32), y[order]
