"""The array library every op computes with.

All numerical code imports its array module from here (``from backprop.xp import np``),
so a CuPy backend can be swapped in without touching the ops. As in Keras, the backend
is chosen once, at import time, by the environment variable ``BACKPROP_BACKEND``
("numpy", the default, or "cupy").
"""
import os

import numpy

BACKEND = os.environ.get("BACKPROP_BACKEND", "numpy").lower()

if BACKEND == "numpy":
    np = numpy
elif BACKEND == "cupy":  # pragma: no cover - needs a GPU
    import cupy as np  # noqa: F401 - the module is the backend
else:
    raise ImportError(f"BACKPROP_BACKEND={BACKEND!r} is not supported; valid: numpy, cupy")

FLOATX = numpy.dtype("float32")


def to_numpy(array):
    """A NumPy copy of a backend array (a no-op on the NumPy backend)."""
    return array.get() if hasattr(array, "get") and BACKEND == "cupy" else numpy.asarray(array)
