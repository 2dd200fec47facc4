"""Seeded random numbers: one generator for the whole library, never NumPy's global state.

``set_seed(s)`` makes everything that draws from here (initializers, dropout,
shuffling) repeat exactly on every run.
"""
import functools
import inspect

import numpy

from backprop.ops.op import monitors
from backprop.tensor import Tensor
from backprop.xp import FLOATX

_generator = numpy.random.default_rng()


def set_seed(seed):
    """Reset the library's generator; the same seed gives the same numbers on every run."""
    global _generator
    _generator = numpy.random.default_rng(seed)


def generator(seed=None):
    """The library's generator, or a fresh one when ``seed`` is given."""
    return _generator if seed is None else numpy.random.default_rng(seed)


def get_state():
    return _generator.bit_generator.state


def set_state(state):
    _generator.bit_generator.state = state


def _drawn(draw):
    """A random op: ``draw(**params)`` makes the array. Ops monitors see it as an op without inputs, so a
    recording (bp.function, fit's compiled step) draws again at every replay, from the same generator."""
    name, signature = draw.__name__.lstrip("_"), inspect.signature(draw)

    def replayable(**params):
        return draw(**params), None

    @functools.wraps(draw)
    def op(shape, *args, **kwargs):
        shape = (int(shape),) if numpy.ndim(shape) == 0 else tuple(int(size) for size in shape)
        params = signature.bind(shape, *args, **kwargs).arguments
        result = Tensor._wrap(draw(**params))
        for monitor in monitors.get():
            monitor(name, result, (), params, replayable)
        return result
    op.draw = draw  # the array alone, unrecorded (initializers)
    return op


@_drawn
def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    values = generator(seed).normal(mean, stddev, size=shape)
    return values.astype(dtype or FLOATX)


@_drawn
def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    values = generator(seed).uniform(minval, maxval, size=shape)
    return values.astype(dtype or FLOATX)


@_drawn
def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Normal samples redrawn until they lie within two standard deviations (Keras' rule)."""
    rng = generator(seed)
    values = rng.normal(size=shape)
    bad = numpy.abs(values) > 2
    while bad.any():
        values[bad] = rng.normal(size=int(bad.sum()))
        bad = numpy.abs(values) > 2
    return (mean + stddev * values).astype(dtype or FLOATX)


def permutation(n, seed=None):
    return generator(seed).permutation(n)


def shuffle(value, seed=None):
    """A shuffled copy along the first axis (the input is never modified)."""
    array = value.data if isinstance(value, Tensor) else numpy.asarray(value)
    return Tensor._wrap(array[permutation(len(array), seed)])
