"""How many threads BLAS may use while a model trains.

OpenBLAS's threads spin while they wait for each other. A small network's step is dozens of small
products, each of which its threads must meet for; when another process holds one of the cores, every
meeting waits for a time slice. On this project's 2-core machines a table of 8,000 rows trained 2.4×
slower with two BLAS threads than with one while two other jobs ran, and a newcomer saw 43× (3.5 s
against 152 s). So ``fit`` gives BLAS one thread when a step's products are small (where a second
thread gains little even on an idle machine, see benchmarks/RESULTS.md) or when the cores are busy
already, and the threads the machine has otherwise; the setting is put back when ``fit`` returns.

The count is set through OpenBLAS's own ``set_num_threads`` (the BLAS inside NumPy's wheels), found
among the loaded libraries, else through threadpoolctl when it is installed (other BLAS libraries);
with neither, nothing changes. It never rises above what was set before (``OPENBLAS_NUM_THREADS``).
"""
import contextlib
import ctypes
import os

SMALL_STEP_FLOPS = 20e6  # products per step below this: one thread (measured: benchmarks/RESULTS.md)


def available_cores():
    """The cores this process may run on, less those other processes keep busy right now."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, round(cores - _busy_elsewhere() + 0.25)))


def _busy_elsewhere():
    """Threads of other processes running now: the runnable count of /proc/loadavg less this process's own
    running threads (its BLAS threads may still be spinning from a previous fit). Without /proc, the
    1-minute load average."""
    try:
        with open("/proc/loadavg") as handle:
            running = int(handle.read().split()[3].split("/")[0])
        ours = 0
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/stat") as handle:
                ours += handle.read().rsplit(")", 1)[1].split()[0] == "R"
        return max(0, running - ours)
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0


def threads_for(flops_per_step):
    """BLAS threads for a training step whose matrix products take ``flops_per_step`` (None: unknown)."""
    if flops_per_step is None:
        return None
    return 1 if flops_per_step < SMALL_STEP_FLOPS else available_cores()


def dense_flops(model, batch_size):
    """Floating-point operations of the matrix products of one training step (forward and backward: 3×
    the forward's), counted from the model's 2-D weights; None before the model has weights."""
    kernels = [v.size for v in model.trainable_variables if len(v.shape) == 2]
    return 6 * batch_size * sum(kernels) if kernels else None


@contextlib.contextmanager
def blas_threads(count):
    """At most ``count`` BLAS threads inside the block, never more than were set before (``None``: leave them)."""
    library = None if count is None else _openblas()
    if library is None:
        with contextlib.nullcontext() if count is None else _through_threadpoolctl(count):
            yield
        return
    before = library.get()
    library.set(min(count, before))
    try:
        yield
    finally:
        library.set(before)


@contextlib.contextmanager
def _through_threadpoolctl(count):
    """Another BLAS than OpenBLAS (MKL, BLIS): through threadpoolctl when it is installed, else unchanged."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        yield
        return
    current = min((info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"), default=count)
    with threadpool_limits(limits=min(count, current), user_api="blas"):
        yield


class _OpenBLAS:
    """OpenBLAS's thread count, through its own functions (named with the prefix and suffix of its build)."""

    NAMES = ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads64_",
             "scipy_openblas_set_num_threads")

    def __init__(self, library, name):
        self.set_threads = getattr(library, name)
        self.get_threads = getattr(library, name.replace("set_num", "get_num"))
        self.get_threads.restype = ctypes.c_int

    def get(self):
        return self.get_threads()

    def set(self, count):
        self.set_threads(ctypes.c_int(int(count)))


_found = []


def _openblas():
    """The OpenBLAS loaded in this process (NumPy's), or None."""
    if not _found:
        _found.append(_find_openblas())
    return _found[0]


def _find_openblas():
    import numpy  # noqa: F401  (its BLAS must be loaded to be found)
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.split()[-1].lower()})
    except OSError:
        return None
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        name = next((name for name in _OpenBLAS.NAMES if hasattr(library, name)), None)
        if name is not None:
            return _OpenBLAS(library, name)
    return None
