"""Tensor and Variable: thin wrappers around an array that the tape can follow."""

import contextvars
import threading

from backprop import devices
from backprop.naming import unique_name
from backprop.xp import FLOATX, np

# Bumped whenever a variable's trainable flag changes: what every tape watches changes, so bp.function's
# recordings are made again. A layer's variable also tells its layer (Layer.version), which is all that a
# model's cached lists and compiled step watch: freezing one model's layer never retraces another model.
trainable_version = [0]

# Set while backprop.tracing records a function: called with each tensor whose values Python reads
# (numpy(), float(), bool(), ...), so a trace can refuse a value that would be frozen into the recording.
value_reads = contextvars.ContextVar("backprop_value_reads", default=None)

# Set while backprop.tracing records a function: called as (variable, kind, value) after each assign,
# assign_add, assign_sub, *= or /= on a Variable, so a replay repeats the write.
variable_writes = contextvars.ContextVar("backprop_variable_writes", default=None)


class _Births(threading.local):
    """Set per thread while backprop.tracing records: called with every tensor made from an array by ``_wrap``
    (an op's result is then claimed by the op's node; any other is a value the recording cannot place)."""
    hook = None


births = _Births()
recordings = [0]  # recordings running in any thread: tested before the per-thread lookups, which cost more

_BAD_KINDS = {"U": "string", "S": "bytes", "O": "object", "c": "complex", "V": "void", "M": "datetime", "m": "timedelta"}


def check_dtype(array, what="tensor"):
    """Raise TypeError for arrays no op can differentiate (strings, objects, complex)."""
    kind = array.dtype.kind
    if kind in _BAD_KINDS:
        raise TypeError(f"{what}: unsupported dtype {array.dtype} ({_BAD_KINDS[kind]}); expected numbers")
    return array


def as_array(value, dtype=None):
    """Convert a value to an array following backprop's rules.

    Python numbers and lists become float32; NumPy arrays keep their dtype
    (float64 stays float64, ints stay ints); ``dtype`` forces one.
    """
    if isinstance(value, Tensor):
        array = value.data
    elif isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, np.generic):
        array = np.asarray(value)
    elif isinstance(value, devices.array_types):  # a device's array stays on its device
        array = value
    else:
        array = np.asarray(value)
        if dtype is None and array.dtype.kind in "iuf":
            array = array.astype(FLOATX)
    check_dtype(array)
    if dtype is not None:
        array = array.astype(np.dtype(dtype), copy=False)
    return array


def placed(array):
    """A host array moved to the current device (a device's array stays where it is)."""
    if not devices.only_cpu and type(array) is np.ndarray:
        target = devices.current()
        if target is not devices.CPU:
            return target.to_device(array)
    return array


def _reading(tensor):
    check = value_reads.get()
    if check is not None:
        check(tensor)


class Tensor:
    """An immutable n-dimensional array whose operations a GradientTape can record."""

    __slots__ = ("data", "__weakref__")
    __array_priority__ = 1000
    _trainable = False

    def __init__(self, value, dtype=None):
        self.data = placed(as_array(value, dtype))

    @classmethod
    def _wrap(cls, array):
        """Fast constructor for op results: no conversion, no checks."""
        tensor = object.__new__(Tensor)
        tensor.data = array if isinstance(array, devices.array_types) else np.asarray(array)
        if recordings[0] and births.hook is not None:
            births.hook(tensor)
        return tensor

    # --- array-like protocol -------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: devices.of(self.data), doc="The Device the values live on.")

    def numpy(self):
        """The values as a NumPy array on the host (a copy, so changing it never changes the tensor)."""
        _reading(self)
        return np.array(self.data) if type(self.data) is np.ndarray else devices.to_host(self.data)

    def __array__(self, dtype=None, copy=None):
        _reading(self)
        if type(self.data) is not np.ndarray:  # PyTorch's rule: a device tensor is copied only when asked
            raise TypeError(f"a tensor on the {self.device.name} device cannot become a NumPy array implicitly; "
                            "call .numpy() to copy it to the host")
        array = self.data if dtype is None else self.data.astype(dtype, copy=False)
        return array.copy() if copy else array

    # Operators, NumPy ufuncs and the method forms of ops (x + y, x @ w, x.sum()) are ops: they are attached
    # by backprop/ops/methods.py, because ops need Tensor first (JAX attaches jax.Array's methods the same way).

    def __len__(self):
        if not self.data.ndim:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self):
        body = np.array2string(devices.to_host(self.data), separator=", ", prefix="tensor(")
        where = "" if type(self.data) is np.ndarray else f", device={self.device.name!r}"
        return f"{type(self).__name__.lower()}({body}, dtype={self.dtype.name}{where})"

    def __float__(self):
        _reading(self)
        return float(self.data)

    def __int__(self):
        _reading(self)
        return int(self.data)

    def __bool__(self):
        _reading(self)
        return bool(self.data)

    def item(self):
        _reading(self)
        return self.data.item()

    __hash__ = object.__hash__


def _raw(value):
    return value.data if isinstance(value, Tensor) else value


class Variable(Tensor):
    """A mutable tensor holding model state; trainable ones are watched by every tape.

    Updates (``assign``, ``assign_add``, ``assign_sub``) write into the same array,
    so views of it (optimizer buffers, saved references) stay valid.
    """

    __slots__ = ("_trainable", "name", "path", "owner")

    def __init__(self, value, dtype=None, trainable=True, name=None, copy=True):
        array = as_array(value, dtype)
        if dtype is None and array.dtype.kind in "iub":
            array = array.astype(FLOATX)
        # own storage: never alias the user's array (``copy=False`` is for arrays made just for it)
        if type(array) is np.ndarray:
            self.data = placed(np.array(array, copy=True) if copy or array.base is not None else array)
        else:
            self.data = array.copy() if copy else array
        self._trainable = bool(trainable)
        self.name = name
        self.owner = None  # the layer whose weight this is (Layer.add_weight sets it)
        # The name optimizer state is kept under: a layer sets 'layer/weight' (Keras' path); a model
        # training with fit uses the paths its files use.
        self.path = name if name else unique_name("variable")

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        trainable_version[0] += 1
        if self.owner is not None:
            self.owner._changed()

    def assign(self, value):
        given, value = value, self._joined(value)
        if np.shape(value) != self.data.shape:
            raise ValueError(f"assign to variable {self.name!r}: shape {np.shape(value)} does not match {self.data.shape}")
        self.data[...] = value
        return self._written("assign", given)  # the tensor itself: a recording knows which op made it

    def assign_add(self, delta):
        self.data += self._joined(delta)
        return self._written("assign_add", delta)

    def assign_sub(self, delta):
        self.data -= self._joined(delta)
        return self._written("assign_sub", delta)

    def _joined(self, value):
        """A value written into the variable, on the variable's device (assigning data copies it over)."""
        value = _raw(value)
        if type(self.data) is not np.ndarray and type(value) is not type(self.data) and hasattr(value, "__len__"):
            return devices.of(self.data).to_device(value)
        return value

    def _written(self, kind, value):
        hook = variable_writes.get()
        if hook is not None:
            hook(self, kind, value)
        return self

    # In-place operators update the variable itself, as in PyTorch (`w -= lr * g`). Without them Python
    # would rebind the name to a new Tensor and the model's variable would silently never change.
    def __iadd__(self, other): return self.assign_add(other)
    def __isub__(self, other): return self.assign_sub(other)

    def __imul__(self, other):
        self.data *= _raw(other)
        return self._written("multiply_assign", other)

    def __itruediv__(self, other):
        self.data /= _raw(other)
        return self._written("divide_assign", other)

    def __repr__(self):
        body = np.array2string(devices.to_host(self.data), separator=", ")
        return f"<Variable '{self.path}' shape={self.shape} dtype={self.dtype.name}, numpy=\n{body}>"


def tensor(value, dtype=None):
    """Create a Tensor: ``bp.tensor([[1., 2.]])`` is float32, a float64 NumPy array stays float64."""
    return Tensor(value, dtype)


def zeros(shape, dtype="float32"):
    """A tensor of zeros (TensorFlow's ``tf.zeros``): float32 unless ``dtype`` says otherwise."""
    return Tensor(np.zeros(shape, np.dtype(dtype)))


def ones(shape, dtype="float32"):
    return Tensor(np.ones(shape, np.dtype(dtype)))


def zeros_like(value, dtype=None):
    """Zeros of ``value``'s shape and (unless given) dtype; a list's dtype is float32."""
    return zeros(*_shape_and_dtype(value, dtype))


def ones_like(value, dtype=None):
    return ones(*_shape_and_dtype(value, dtype))


def _shape_and_dtype(value, dtype):
    array = _raw(value)
    return np.shape(array), dtype or getattr(array, "dtype", FLOATX)


def to_host(value):
    """A NumPy array of ``value`` (a Tensor or an array of any device); host arrays are not copied."""
    return devices.to_host(value.data if isinstance(value, Tensor) else value)


def to_device(value, device=None):
    """``value`` (a Tensor, or an array of any device) on ``device`` (default: the current one). A Tensor
    gives a Tensor (a copy, when it moves), an array an array."""
    target = devices.current() if device is None else devices.get(device)
    if isinstance(value, Tensor):
        return Tensor._wrap(target.to_device(value.data))
    return target.to_device(value)


def is_tensor(value):
    return isinstance(value, Tensor)

