"""Weight initializers with Keras' names and formulas, drawn from the seeded generator."""
import math

import numpy

from backprop import random
from backprop.xp import FLOATX, np


def _fans(shape):
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    def __call__(self, shape, dtype=None):
        raise NotImplementedError

    def get_config(self):
        return dict(vars(self))


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype=None):
        return np.full(shape, self.value, dtype=dtype or FLOATX)


class Zeros(Constant):
    def __init__(self):
        super().__init__(0.0)

    def get_config(self):
        return {}


class Ones(Constant):
    def __init__(self):
        super().__init__(1.0)

    def get_config(self):
        return {}


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape, dtype=None):
        return random.generator(self.seed).normal(self.mean, self.stddev, shape).astype(dtype or FLOATX)


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def __call__(self, shape, dtype=None):
        return uniform_in_chunks(random.generator(self.seed), self.minval, self.maxval, shape, dtype or FLOATX)


CHUNK = 1 << 18  # 2 MB of float64 at a time


def uniform_in_chunks(generator, low, high, shape, dtype):
    """generator.uniform(low, high, shape) cast to ``dtype``, drawn 262,144 values at a time into the result:
    the same numbers (the generator's stream is sequential), without a float64 copy of the whole kernel."""
    out = numpy.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    for start in range(0, flat.size, CHUNK):
        stop = min(start + CHUNK, flat.size)
        flat[start:stop] = generator.uniform(low, high, stop - start)
    return out


class VarianceScaling(Initializer):
    """Keras' family: variance = scale / fan, drawn truncated-normal or uniform."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = _fans(tuple(shape))
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, fan)
        if self.distribution == "uniform":
            limit = math.sqrt(3 * variance)
            return uniform_in_chunks(random.generator(self.seed), -limit, limit, shape, dtype or FLOATX)
        else:
            stddev = math.sqrt(variance) / 0.87962566103423978  # std of a unit normal truncated at 2 sigma
            values = random.truncated_normal.draw(shape, 0.0, stddev, dtype=numpy.float64, seed=self.seed)
        return values.astype(dtype or FLOATX)


def GlorotUniform(seed=None): return VarianceScaling(1.0, "fan_avg", "uniform", seed)
def GlorotNormal(seed=None): return VarianceScaling(1.0, "fan_avg", "truncated_normal", seed)
def HeUniform(seed=None): return VarianceScaling(2.0, "fan_in", "uniform", seed)
def HeNormal(seed=None): return VarianceScaling(2.0, "fan_in", "truncated_normal", seed)
def LecunNormal(seed=None): return VarianceScaling(1.0, "fan_in", "truncated_normal", seed)
def LecunUniform(seed=None): return VarianceScaling(1.0, "fan_in", "uniform", seed)


INITIALIZERS = {
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal, "he_uniform": HeUniform,
    "he_normal": HeNormal, "lecun_normal": LecunNormal, "lecun_uniform": LecunUniform,
    "random_normal": RandomNormal, "random_uniform": RandomUniform, "zeros": Zeros, "ones": Ones,
    "constant": Constant,
}


def get(identifier):
    if isinstance(identifier, str):
        if identifier not in INITIALIZERS:
            raise ValueError(f"unknown initializer {identifier!r}; valid: {', '.join(INITIALIZERS)}")
        return INITIALIZERS[identifier]()
    if callable(identifier):
        return identifier
    raise ValueError(f"an initializer must be a name or a callable, got {identifier!r}")


def from_config(spec):
    """Rebuild an initializer saved as {"class_name": ..., "config": {...}}."""
    classes = {cls.__name__: cls for cls in (Constant, Zeros, Ones, RandomNormal, RandomUniform, VarianceScaling)}
    name = spec.get("class_name")
    if name not in classes:
        raise ValueError(f"unknown initializer class {name!r}; valid: {', '.join(classes)}")
    return classes[name](**spec.get("config", {}))
