"""The "strict" device: NumPy's arithmetic behind an array type that behaves like CuPy's at the boundary.

Like a ``cupy.ndarray`` it refuses implicit conversion to NumPy (``numpy.asarray(a)`` raises
TypeError; ``a.get()`` copies to the host), refuses to compute with NumPy arrays (another device)
and is reached through NumPy's dispatch protocols, so ``numpy.exp(a)`` returns a strict array.
Running backprop on it in the ordinary test suite finds every stray host/device mix that a GPU
would hit, with the same numbers as the CPU. ``transfers`` counts host reads (``get``, ``float``,
``bool``, ``item`` ...), which on a GPU are the waits for the device.
"""
import numpy

transfers = [0]  # host reads since import; tests read the difference
uploads = [0]  # host arrays copied onto the device since import
input_uploads = [0]  # of them, arrays of two or more dimensions (a batch of inputs, not labels or a mask row)
memory_limit = [None]  # bytes one array may take, to test running out of memory as on a GPU


class OutOfMemoryError(MemoryError):
    """CuPy's name for an allocation the device cannot make."""


class StrictArray:
    __slots__ = ("raw",)
    __array_priority__ = 100

    def __init__(self, raw):
        self.raw = raw

    # --- the boundary with NumPy ------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (strict device, as on CuPy): "
                        "use .get() to copy it to the host")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == "at" and isinstance(inputs[1], tuple):
            raise TypeError(f"{ufunc.__name__}.at with a tuple of indices is not supported (strict device, as on "
                            "CuPy): use the device's add_at (cupyx.scatter_add)")
        outs = kwargs.get("out")
        if outs:
            kwargs["out"] = tuple(_unwrap(o) for o in outs)
        result = getattr(ufunc, method)(*(_unwrap(x) for x in inputs), **kwargs)
        if outs:  # the out arrays themselves, as NumPy and CuPy return them (x += y keeps x's identity)
            return outs[0] if len(outs) == 1 else outs
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        return _wrap(func(*_unwrap_all(args), **_unwrap_all(kwargs)))

    def get(self):
        """A NumPy copy on the host (CuPy's name)."""
        transfers[0] += 1
        return self.raw.copy()

    # --- attributes and methods, delegated ------------------------------------------------------
    shape = property(lambda self: self.raw.shape)
    dtype = property(lambda self: self.raw.dtype)
    ndim = property(lambda self: self.raw.ndim)
    size = property(lambda self: self.raw.size)
    nbytes = property(lambda self: self.raw.nbytes)
    itemsize = property(lambda self: self.raw.itemsize)
    strides = property(lambda self: self.raw.strides)
    T = property(lambda self: StrictArray(self.raw.T))
    flat = property(lambda self: StrictArray(self.raw.reshape(-1)))

    def __getattr__(self, name):
        if name.startswith("__") or name in ("data", "ctypes"):  # these would expose the host memory
            raise AttributeError(f"{name!r}: a strict-device array does not expose its memory")
        attribute = getattr(self.raw, name)
        if not callable(attribute):
            return _wrap(attribute)
        return lambda *args, **kwargs: _wrap(attribute(*_unwrap_all(args), **_unwrap_all(kwargs)))

    def tolist(self):
        transfers[0] += 1
        return self.raw.tolist()

    def item(self):
        transfers[0] += 1
        return self.raw.item()

    def __float__(self):
        transfers[0] += 1
        return float(self.raw)

    def __int__(self):
        transfers[0] += 1
        return int(self.raw)

    def __bool__(self):
        transfers[0] += 1
        return bool(self.raw)

    def __index__(self):
        transfers[0] += 1
        return self.raw.__index__()

    def __len__(self):
        return len(self.raw)

    def __iter__(self):
        return (StrictArray(row) for row in self.raw)

    def __getitem__(self, key):
        return _wrap(self.raw[_unwrap_all(key)])

    def __setitem__(self, key, value):
        self.raw[_unwrap_all(key)] = _unwrap(value)

    def __repr__(self):
        return f"strict_array({numpy.array2string(self.raw, separator=', ')}, dtype={self.dtype})"

    __hash__ = None

    # --- operators, through the ufuncs (so mixing is checked in one place) ----------------------
    def __neg__(self): return numpy.negative(self)
    def __pos__(self): return numpy.positive(self)
    def __abs__(self): return numpy.absolute(self)
    def __invert__(self): return numpy.invert(self)


def _binary(ufunc):
    def forward(self, other):
        return ufunc(self, other)

    def reflected(self, other):
        return ufunc(other, self)

    def in_place(self, other):
        return ufunc(self, other, out=(self,))
    return forward, reflected, in_place


for _name, _ufunc in [("add", numpy.add), ("sub", numpy.subtract), ("mul", numpy.multiply),
                      ("truediv", numpy.true_divide), ("floordiv", numpy.floor_divide), ("mod", numpy.remainder),
                      ("pow", numpy.power), ("matmul", numpy.matmul), ("and", numpy.bitwise_and),
                      ("or", numpy.bitwise_or), ("xor", numpy.bitwise_xor)]:
    _forward, _reflected, _in_place = _binary(_ufunc)
    setattr(StrictArray, f"__{_name}__", _forward)
    setattr(StrictArray, f"__r{_name}__", _reflected)
    setattr(StrictArray, f"__i{_name}__", _in_place)
for _name, _ufunc in [("lt", numpy.less), ("le", numpy.less_equal), ("gt", numpy.greater),
                      ("ge", numpy.greater_equal), ("eq", numpy.equal), ("ne", numpy.not_equal)]:
    setattr(StrictArray, f"__{_name}__", _binary(_ufunc)[0])


def _unwrap(value):
    """The NumPy array behind a strict array; scalars pass; a NumPy array is another device's."""
    if isinstance(value, StrictArray):
        return value.raw
    if isinstance(value, numpy.ndarray):
        raise TypeError(f"a NumPy array of shape {value.shape} (on the cpu) was mixed with strict-device arrays; "
                        "move it with bp.to_device or keep both on one device")
    return value


def _unwrap_all(value):
    if isinstance(value, (tuple, list)):
        return type(value)(_unwrap_all(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap_all(v) for k, v in value.items()}
    if isinstance(value, (StrictArray, numpy.ndarray)):
        return _unwrap(value)
    return value


def _wrap(value):
    if isinstance(value, numpy.ndarray):
        if memory_limit[0] is not None and value.nbytes > memory_limit[0]:
            raise OutOfMemoryError(f"out of memory allocating {value.nbytes:,} bytes")
        return StrictArray(value)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, numpy.generic):  # reductions give 0-d device arrays, as CuPy does
        return StrictArray(numpy.asarray(value))
    return value


def scatter_add(target, key, values):
    """``target[key] += values`` with repeated indices adding up: cupyx.scatter_add's contract."""
    numpy.add.at(target.raw, _unwrap_all(key), _unwrap(values))


class StrictModule:
    """The strict device's array module: creation functions make strict arrays, everything else is
    NumPy's own function, which dispatches to StrictArray."""

    ndarray = StrictArray

    def __getattr__(self, name):
        return getattr(numpy, name)

    @staticmethod
    def asarray(value, dtype=None):
        """A strict array; host data is copied over, as a transfer to a GPU copies it."""
        if isinstance(value, StrictArray):
            return value if dtype is None else value.astype(dtype, copy=False)
        if isinstance(value, numpy.ndarray) and value.ndim:
            uploads[0] += 1
            input_uploads[0] += value.ndim >= 2
        return StrictArray(numpy.array(value, dtype=dtype, copy=True))

    array = asarray

    @staticmethod
    def asnumpy(value):
        return value.get() if isinstance(value, StrictArray) else numpy.asarray(value)


def _creator(name):
    function = getattr(numpy, name)
    return staticmethod(lambda *args, **kwargs: StrictArray(function(*args, **kwargs)))


for _name in ("zeros", "ones", "empty", "full", "arange", "eye", "linspace"):
    setattr(StrictModule, _name, _creator(_name))

module = StrictModule()

