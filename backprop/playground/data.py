"""The playground's datasets, by problem: each is ``(n, noise, seed) -> (x of shape (n, 2), y)``, with
``noise`` in [0, 1]. Classification labels are 0/1; regression targets lie about in [-1, 1]."""
import numpy as np

from backprop import datasets


def xor(n, noise, seed):
    """The Playground's xor: quadrants kept a little apart from the axes, labels from the clean points."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    x += np.sign(x) * 0.15
    y = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(np.int64)
    return (x + 0.3 * noise * rng.normal(size=(n, 2))).astype(np.float32), y


def gauss(n, noise, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 0.5 + 2 * noise, size=(n, 2)) + np.where(y[:, None] == 1, 1.5, -1.5)
    return x.astype(np.float32), y


def plane(n, noise, seed):
    """A tilted plane: the target grows along x1 + x2."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    return x.astype(np.float32), ((x[:, 0] + x[:, 1]) / 2 + 0.5 * noise * rng.normal(size=n)).astype(np.float32)


GAUSS_CENTRES = [(-0.6, 0.6, 1), (0.6, 0.6, -1), (0, 0, 1), (-0.6, -0.6, -1), (0.6, -0.6, 1), (0, 0.9, -1)]


def multi_gauss(n, noise, seed):
    """Bumps up and down: a sum of signed Gaussians around fixed centres."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    y = sum(sign * np.exp(-((x[:, 0] - a) ** 2 + (x[:, 1] - b) ** 2) / (2 * 0.25 ** 2)) for a, b, sign in GAUSS_CENTRES)
    return x.astype(np.float32), (np.clip(y, -1, 1) + 0.5 * noise * rng.normal(size=n)).astype(np.float32)


DATASETS = {
    "classification": {
        "circle": lambda n, noise, seed: datasets.circles(n, noise=noise * 0.5, seed=seed),
        "xor": xor,
        "gauss": gauss,
        "spiral": lambda n, noise, seed: datasets.spirals(n, noise=noise, seed=seed),
        "moons": lambda n, noise, seed: datasets.moons(n, noise=noise, seed=seed),
        "pass_fail": lambda n, noise, seed: datasets.pass_fail(n, seed=seed),
    },
    "regression": {"plane": plane, "multi_gauss": multi_gauss},
}
