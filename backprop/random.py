"""Seeded random numbers: streams of the library's own, never NumPy's global state.

``set_seed(s)`` makes everything that draws from here (initializers, dropout, shuffling) repeat exactly on every
run. The stream drawn from is the current one: the process's, or one a caller scopes with ``using`` (each
playground page has its own; each model's ``fit`` shuffles and drops out from the model's own generator, forked
from the current stream when the model is made), so two pages or two threads training never share a stream.
"""
import contextlib
import contextvars
import functools
import inspect

import numpy

from backprop.ops.op import monitors
from backprop.tensor import Tensor
from backprop.xp import FLOATX


class Stream:
    """A generator that ``set_seed`` and ``set_state`` replace or rewind."""

    def __init__(self, generator=None):
        self.generator = generator if generator is not None else numpy.random.default_rng()


_process_stream = Stream()
_scoped = contextvars.ContextVar("backprop_random_stream", default=None)


def current_stream():
    return _scoped.get() or _process_stream


@contextlib.contextmanager
def using(stream_or_generator):
    """Draw from this stream (or NumPy generator) inside the block, in this thread or task only."""
    stream = stream_or_generator if isinstance(stream_or_generator, Stream) else Stream(stream_or_generator)
    token = _scoped.set(stream)
    try:
        yield stream
    finally:
        _scoped.reset(token)


def set_seed(seed):
    """Reset the current stream; the same seed gives the same numbers on every run."""
    current_stream().generator = numpy.random.default_rng(seed)


def generator(seed=None):
    """The current stream's generator, or a fresh one when ``seed`` is given."""
    return current_stream().generator if seed is None else numpy.random.default_rng(seed)


def fork():
    """A new generator seeded by one draw from the current stream (a model's own, made with the model)."""
    return numpy.random.default_rng(generator().integers(2**63))


def get_state():
    return current_stream().generator.bit_generator.state


def set_state(state):
    current_stream().generator.bit_generator.state = state


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
