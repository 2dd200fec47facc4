"""The array library every op is written against: NumPy.

All numerical code imports it from here (``from backprop.xp import np``). On another device the same
code runs unchanged: NumPy's functions hand a device's arrays to that device's library through the
``__array_ufunc__`` and ``__array_function__`` protocols (CuPy implements both), and code that creates
arrays asks ``backprop.devices.array_module(like)``. See backprop.devices.
"""
import numpy

np = numpy
FLOATX = numpy.dtype("float32")
