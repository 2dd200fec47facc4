"""Splitting, scaling and batching, with the fitted statistics returned so prediction can reuse them."""
import numpy

def _safe_scale(spread):
    """A column constant in the fitted data gets scale 1, as in scikit-learn: a value seen later that differs
    stays on its own scale instead of being multiplied by millions."""
    return numpy.where(spread > 0, spread, 1.0)


def train_test_split(x, y, test_size=0.2, seed=0, stratify=False):
    """``x_train, x_test, y_train, y_test``; ``stratify`` keeps the class proportions in both parts."""
    x, y = numpy.asarray(x), numpy.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y have different numbers of examples: {len(x)} vs {len(y)}")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    rng = numpy.random.default_rng(seed)
    n_test = int(numpy.ceil(test_size * len(x)))  # scikit-learn's rounding
    if stratify:
        classes, counts = numpy.unique(y, return_counts=True)
        share = counts * n_test / len(x)
        per_class = numpy.floor(share).astype(int)
        per_class[numpy.argsort(per_class - share)[:n_test - per_class.sum()]] += 1  # largest remainders
        test = numpy.concatenate([rng.permutation(numpy.flatnonzero(y == c))[:k] for c, k in zip(classes, per_class)])
        test = rng.permutation(test)
    else:
        test = rng.permutation(len(x))[:n_test]
    mask = numpy.zeros(len(x), bool)
    mask[test] = True
    train = rng.permutation(numpy.flatnonzero(~mask))
    return x[train], x[test], y[train], y[test]


class Scaler:
    """Fitted per-column statistics: ``transform(x) = (x - shift) / scale``; keep it for prediction."""

    def __init__(self, shift, scale):
        self.shift, self.scale = numpy.asarray(shift, numpy.float64), numpy.asarray(scale, numpy.float64)

    def transform(self, x):
        x = numpy.asarray(x)
        if x.shape[-1] != self.shift.shape[-1]:
            raise ValueError(f"the scaler was fitted on {self.shift.shape[-1]} features, got {x.shape[-1]}")
        dtype = x.dtype if x.dtype.kind == "f" else numpy.float32
        return ((x - self.shift) / self.scale).astype(dtype)

    def inverse_transform(self, x):
        return numpy.asarray(x) * self.scale + self.shift

    def to_dict(self):
        return {"shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, values):
        return cls(values["shift"], values["scale"])


def standardize(x, axis=0):
    """Zero mean, unit variance per column: returns ``(scaled, scaler)``."""
    x = numpy.asarray(x, dtype=numpy.float64)
    scaler = Scaler(x.mean(axis=axis), _safe_scale(x.std(axis=axis)))
    return scaler.transform(x).astype(numpy.float32), scaler


def min_max_scale(x, axis=0):
    """Each column to [0, 1]: returns ``(scaled, scaler)``."""
    x = numpy.asarray(x, dtype=numpy.float64)
    low, high = x.min(axis=axis), x.max(axis=axis)
    scaler = Scaler(low, _safe_scale(high - low))
    return scaler.transform(x).astype(numpy.float32), scaler


def iterate_batches(x, y=None, batch_size=32, shuffle=True, seed=None):
    """Yield ``(x_batch, y_batch)``; without shuffling the batches are views, never copies."""
    n = len(x)
    order = numpy.random.default_rng(seed).permutation(n) if shuffle else None
    for start in range(0, n, batch_size):
        index = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
        yield (x[index], None if y is None else y[index])
