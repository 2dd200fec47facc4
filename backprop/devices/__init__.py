"""Devices: where arrays live and compute. "cpu" is NumPy; "gpu" is CuPy on an NVIDIA GPU; "strict" is a
checking device that computes with NumPy behind CuPy's boundary rules (see ``devices.strict``).

Backprop's numerical code is written once against NumPy's functions, which hand device arrays to
their own library (NumPy's ``__array_ufunc__``/``__array_function__`` protocols, which CuPy
implements); code that creates arrays asks ``array_module(like)`` for the right library. A tensor
lives on the device that was current when it was made (``set_device``, ``with device(...)``,
``BACKPROP_DEVICE``); an op that mixes devices is an error naming them, never a silent copy.
"""
import contextlib
import contextvars
import os

import numpy


class DeviceError(RuntimeError):
    """A device that cannot be used here (CuPy missing, no GPU visible, an unknown name)."""


class Device:
    """A place for arrays: its name, its array module (``xp``) and its array type."""

    def __init__(self, name, xp, array_type, to_host, add_at=numpy.add.at):
        self.name, self.xp, self.array_type, self._to_host = name, xp, array_type, to_host
        self.add_at = add_at  # target[key] += values, repeated indices adding up (np.add.at; CuPy's scatter_add)

    def to_device(self, array):
        """``array`` (host or another device's) as an array of this device; this device's arrays unchanged."""
        if isinstance(array, self.array_type):
            return array
        return self.xp.asarray(to_host(array))

    def to_host(self, array):
        return self._to_host(array)

    def __repr__(self):
        return f"Device({self.name!r})"


CPU = Device("cpu", numpy, numpy.ndarray, numpy.asarray)
_loaded = {"cpu": CPU}
_by_type = {numpy.ndarray: CPU}
array_types = (numpy.ndarray,)  # every loaded device's array type: what Tensor accepts without converting
# True while no other device than the CPU can be current: new tensors then skip asking where to go
only_cpu = os.environ.get("BACKPROP_DEVICE", "cpu").lower() == "cpu"


def _load_strict():
    from backprop.devices import strict
    return Device("strict", strict.module, strict.StrictArray, strict.StrictArray.get, strict.scatter_add)


def _load_gpu():
    try:
        import cupy
    except ImportError:
        raise DeviceError("device 'gpu' needs CuPy, which is not installed: pip install 'backprop[cuda12]' "
                          "(or backprop[cuda13] for CUDA 13)") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as problem:  # CuPy raises its CUDARuntimeError when the driver finds nothing  # noqa: BLE001
        count, reason = 0, f" ({problem})"
    else:
        reason = ""
    if not count:
        raise DeviceError(f"device 'gpu': CuPy is installed but no NVIDIA GPU is visible{reason}; "
                          "check nvidia-smi and CUDA_VISIBLE_DEVICES, or use --device cpu")
    import cupyx  # np.add.at with a tuple of index arrays is refused by CuPy; its scatter_add does it
    return Device("gpu", cupy, cupy.ndarray, cupy.asnumpy, cupyx.scatter_add)


_LOADERS = {"gpu": _load_gpu, "strict": _load_strict}
ALIASES = {"cuda": "gpu"}


def get(name):
    """The Device called ``name`` ("cpu", "gpu" or "cuda", "strict"), loaded on first use; a Device passes."""
    global array_types, only_cpu
    if isinstance(name, Device):
        return name
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in _loaded:
        if key not in _LOADERS:
            raise DeviceError(f"unknown device {name!r}; backprop has cpu, gpu (CuPy) and strict")
        loaded = _loaded[key] = _LOADERS[key]()
        _by_type[loaded.array_type] = loaded
        array_types, only_cpu = tuple(_by_type), False
    return _loaded[key]


_default = [None]  # set_device's choice; None: BACKPROP_DEVICE or "cpu"
_scoped = contextvars.ContextVar("backprop_device", default=None)


def current():
    """The device new tensors and variables are made on."""
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    if _default[0] is None:
        _default[0] = get(os.environ.get("BACKPROP_DEVICE", "cpu"))
    return _default[0]


def set_device(name):
    """Make ``name`` the device for new tensors and models from now on (PyTorch's set_default_device)."""
    _default[0] = get(name)
    return _default[0]


@contextlib.contextmanager
def device(name):
    """Within the block, new tensors and models are made on ``name``."""
    token = _scoped.set(get(name))
    try:
        yield _scoped.get()
    finally:
        _scoped.reset(token)


def of(array):
    """The device an array lives on (host arrays and Python numbers: the CPU)."""
    return _by_type.get(type(array), CPU)


def array_module(array):
    """The array library of ``array``'s device: for code that creates arrays next to it."""
    return _by_type.get(type(array), CPU).xp


def asarray(value, dtype=None):
    """``numpy.asarray`` that leaves every device's arrays on their device (a dtype still converts)."""
    if isinstance(value, array_types):
        return value if dtype is None or value.dtype == dtype else value.astype(dtype)
    return numpy.asarray(value, dtype=dtype)


def to_host(array):
    """A NumPy array of an array of any device (host arrays are not copied); ``bp.to_host`` takes tensors too."""
    return of(array).to_host(array)


_kernels = {}


def elementwise_kernel(like, name, inputs, outputs, source, options=()):
    """A fused CuPy kernel (one launch instead of one per NumPy call) when ``like`` lives on a GPU, else None:
    the caller then runs the NumPy formula the kernel must equal, written next to it. ``options``: NVRTC's."""
    if type(like) is numpy.ndarray or of(like).name != "gpu":
        return None
    kernel = _kernels.get(name)
    if kernel is None:  # pragma: no cover - needs a GPU
        kernel = _kernels[name] = of(like).xp.ElementwiseKernel(inputs, outputs, source, f"backprop_{name}",
                                                                options=tuple(options))
    return kernel  # pragma: no cover


class DeviceMemoryError(MemoryError):
    """A device ran out of memory; the message names the batch size and what to change."""


@contextlib.contextmanager
def memory_errors(what, batch_size):
    """Turn a device's out-of-memory error (CuPy's OutOfMemoryError) into one that says what to do."""
    try:
        yield
    except Exception as error:
        if type(error).__name__ != "OutOfMemoryError":
            raise
        raise DeviceMemoryError(f"{what}: the device ran out of memory with batch_size={batch_size} ({error}); "
                                "use a smaller batch_size, or a smaller model") from None


class DeviceMismatchError(TypeError):
    """An op was given arrays on two devices."""


def check_same_device(what, arrays):
    """Raise DeviceMismatchError naming the devices when ``arrays`` (numbers aside) live on more than one."""
    placed = [(position, of(a).name) for position, a in enumerate(arrays) if hasattr(a, "shape") and a.shape != ()
              or isinstance(a, array_types)]
    names = sorted({name for _, name in placed})
    if len(names) > 1:
        where = ", ".join(f"input {position} on {name}" for position, name in placed)
        raise DeviceMismatchError(f"{what}: inputs on different devices ({where}); move them to one device with "
                                  "bp.to_device(...) or model.to(...)")
