"""Elementwise formulas: a function of numbers, written once as its math reads, run over whole arrays in place.

    @elementwise(updates=("mean", "square"))
    def running_moments(mean, square, value, weight):
        mean = mean + (value - mean) * weight
        square = square + (value * value - square) * weight
        return mean, square

``running_moments(mean, square, values, 0.1)`` writes the new ``mean`` and ``square`` into those arrays (the
names in ``updates``, in the order the formula returns them); optimizers/rules.py writes every update rule so.
The engines give the same bits, because each runs the formula's operations in the same order and precision:

- numba, when installed (the ``fast`` extra), for host arrays of float32 or float64 with at least
  ``NUMBA_FROM`` elements: one compiled pass that reads each element once (the formula, inlined into a loop
  generated for it; single-threaded, so it never competes with BLAS for the cores);
- NumPy otherwise: the formula is traced once into a list of ufunc calls, each writing into a preallocated
  buffer or straight into the array it updates (no temporaries, so no page faults per step);
- on a GPU, one CUDA kernel written from that same list of calls (``cuda_source``: a C++ statement per call,
  compiled without fused multiply-adds); on another device (the strict one) the formula on the whole arrays.

Write constants as arguments, not literals: numba would compute ``1 - b`` in float64 where NumPy keeps the
arrays' precision. Scalars are converted to the arrays' dtype before either engine sees them.
"""
import functools
import hashlib
import importlib.util
import inspect
import os
import pathlib
import sys
import threading
import time

import numpy

from backprop import devices

_NUMBA_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))
# Arrays smaller than this take the NumPy plan: its dozen ufunc calls cost microseconds, while starting numba
# costs about half a second a process (a cached loop still needs LLVM), which a small model never earns back.
NUMBA_FROM = 65_536


@functools.lru_cache(maxsize=None)
def numba_module():
    """numba, or None when it is not installed or BACKPROP_NUMBA=0 turns it off (imported on first use)."""
    if os.environ.get("BACKPROP_NUMBA", "1") == "0":
        return None
    try:
        import numba
    except ImportError:
        return None
    return numba


class Elementwise:
    """A formula applied in place; see the module docstring."""

    def __init__(self, formula, updates):
        self.formula = formula
        names = list(inspect.signature(formula).parameters)
        unknown = [name for name in updates if name not in names]
        if unknown:
            raise ValueError(f"elementwise {formula.__name__}: updates names {unknown}, which it does not take")
        self.updated = [names.index(name) for name in updates]
        _Plan(formula, [numpy.zeros(())] * len(names), self.updated)  # a literal is an error here, not on first use
        self._loops = {}  # which arguments are arrays -> compiled loop
        self._plans = threading.local()  # per thread (a plan owns its buffers): shapes and dtypes -> plan
        self.compile_seconds = 0.0
        self._cuda = self._kernel_name = None  # cuda_source() and its kernel's name, made on first use
        self.numba = True  # False: always the NumPy engine (a formula of functions NumPy computes faster)
        functools.update_wrapper(self, formula)

    def __call__(self, *args):
        first = args[self.updated[0]]
        if first.size >= NUMBA_FROM and self.numba and self._numba_can_run(args):
            self.run_numba(*args)
            return
        plan = self._plans.__dict__.get((first.shape, first.dtype, *map(type, args)))
        if plan is not None and not plan.types_numbers and plan._fits(*args):  # the usual step: straight in
            plan._run(*args, *plan.buffers)
        else:
            self.run_numpy(*args)

    def _typed(self, args):
        dtype = args[self.updated[0]].dtype
        return [a if hasattr(a, "dtype") and numpy.ndim(a) else dtype.type(a) for a in args]

    def _numba_can_run(self, args):
        """Host arrays of one float dtype, C-contiguous: all of one 1-D shape, or of one 2-D shape beside rows of
        its width (a bias, broadcast over the rows as NumPy would)."""
        if numba_module() is None:
            return False
        first = args[self.updated[0]]
        if first.ndim > 2 or first.dtype not in _NUMBA_DTYPES:
            return False
        return all(type(a) is numpy.ndarray and a.dtype == first.dtype and a.flags.c_contiguous and
                   (a.shape == first.shape or (first.ndim == 2 and a.shape == first.shape[1:]))
                   for a in args if numpy.ndim(a))

    def run_numpy(self, *args):
        """The NumPy engine. A Python number stays a Python number: NumPy computes it in the arrays' precision,
        as the numba engine does with the number converted to their dtype."""
        first = args[self.updated[0]]
        if type(first) is not numpy.ndarray:  # a device's arrays: one kernel on a GPU, else the formula as written
            args = self._typed(args)
            source = self.cuda_source()
            kernel = None if source is None else devices.elementwise_kernel(first, self._kernel_name, *source,
                                                                            options=_EXACT)
            if kernel is not None:  # pragma: no cover - needs a GPU
                kernel(*(a for i, a in enumerate(args) if i not in self.updated), *(args[i] for i in self.updated))
                return
            self._write(args, self.formula(*args))
            return
        key = (first.shape, first.dtype, *map(type, args))
        plans = self._plans.__dict__
        plan = plans.get(key)
        if plan is None or not plan.fits(args):
            plan = plans[key] = _Plan(self.formula, self._typed(args), self.updated)
            # a NumPy number of another precision (np.float64 with float32 arrays) is not weak: type it each run
            plan.types_numbers |= any(isinstance(a, numpy.generic) and a.dtype != first.dtype for a in args)
        plan.run(self._typed(args) if plan.types_numbers else args)

    def cuda_source(self):
        """(inputs, outputs, body) of one CUDA elementwise kernel computing the formula, every argument in the arrays'
        dtype ``T``, the updated ones outputs: each ufunc call of the traced formula becomes one C++ statement in the
        same order, and the outputs are written at the end, so the body reads only their old values. None when the
        formula calls a ufunc without an exact CUDA form (exp, log: CUDA's are not NumPy's)."""
        if self._cuda is None:
            names = list(inspect.signature(self.formula).parameters)
            steps = []
            traced = [_Traced(steps, (), numpy.dtype(numpy.float64), ("arg", i)) for i in range(len(names))]
            results = self._as_tuple(self.formula(*traced))
            if not all(ufunc in _CUDA for ufunc, *_ in steps):
                self._cuda = False
                return None
            name_of = lambda source: names[source[1]] if source[0] == "arg" else f"_t{source[1]}"  # noqa: E731
            body = [f"T _t{k} = {_CUDA[ufunc].format(*map(name_of, sources))};"
                    for k, (ufunc, sources, _, _) in enumerate(steps)]
            body += [f"{names[target]} = {name_of(result.source)};" for result, target in zip(results, self.updated)]
            inputs = ", ".join(f"T {name}" for i, name in enumerate(names) if i not in self.updated)
            outputs = ", ".join(f"T {names[i]}" for i in self.updated)
            self._cuda = (inputs, outputs, "\n".join(body))
            # the formula's name and a digest of its kernel: two formulas of one name get two kernels
            self._kernel_name = f"{self.formula.__name__}_{hashlib.sha256(repr(self._cuda).encode()).hexdigest()[:8]}"
        return self._cuda or None

    def _write(self, args, results):
        for index, value in zip(self.updated, self._as_tuple(results)):
            args[index][...] = value

    def _as_tuple(self, results):
        return results if len(self.updated) > 1 else (results,)

    def run_numba(self, *args):
        args = self._typed(args)
        mask = tuple(numpy.ndim(a) for a in args)  # 0: a number, 1: a row, 2: a matrix (1-D arrays: 1 only)
        loop = self._loops.get(mask)
        if loop is None:
            started = time.perf_counter()
            loop = self._loops[mask] = _compiled_loop(self.formula, mask, self.updated)
            loop(*args)  # numba compiles on the first call, for these dtypes
            self.compile_seconds += time.perf_counter() - started
            return
        loop(*args)


def _loop_source(array_mask, updated):
    """One loop over 1-D arrays (``array_mask``: 1 for an array, 0 for a number), or two over matrices (2) and
    rows of their width (1)."""
    names = [f"a{i}" for i in range(len(array_mask))]
    first = names[updated[0]]
    if array_mask[updated[0]] == 2:
        index = {0: "", 1: "[j]", 2: "[i, j]"}
        loops = (f"    for i in range({first}.shape[0]):\n"
                 f"        for j in range({first}.shape[1]):\n            ")
    else:
        index = {0: "", 1: "[i]"}
        loops = f"    for i in range({first}.shape[0]):\n        "
    element = [name + index[dimensions] for name, dimensions in zip(names, array_mask)]
    targets = ", ".join(element[i] for i in updated)
    return f"def loop({', '.join(names)}):\n{loops}{targets} = formula({', '.join(element)})\n"


def _compiled_loop(formula, array_mask, updated):
    """numba's loop over the arrays, calling ``formula`` inlined on each element's numbers; compiled once per
    machine when the formula can be imported by name (numba's disk cache), else once per process."""
    numba = numba_module()
    source = _loop_source(array_mask, updated)
    cached = _cached_module(formula, source)
    if cached is not None:
        return cached.loop
    namespace = {"formula": numba.njit(inline="always", error_model="numpy")(formula)}
    exec(compile(source, f"<elementwise {formula.__name__}>", "exec"), namespace)
    return numba.njit(error_model="numpy")(namespace["loop"])


def cache_folder():
    return pathlib.Path(os.environ.get("BACKPROP_CACHE") or pathlib.Path.home() / ".cache" / "backprop") / "elementwise"


def _cached_module(formula, loop_source):
    """The loop as a module of its own in the cache folder, named by a hash of the generated code, the formula's
    source and numba's version (a changed formula is a new file), so numba can keep its machine code on disk.
    None when the formula is not importable by name or the folder cannot be written."""
    name, generated = formula.__name__, getattr(formula, "source", None)
    if generated is not None:  # a formula written by backprop (backprop.compiled.fusion): its text goes in whole
        formula_source = generated
        defined = (f"# generated by backprop.elementwise\nimport numba\nimport numpy as np\n\n\n{generated}\n\n"
                   f"formula = numba.njit(inline='always', error_model='numpy')({name})\n")
    else:
        module = formula.__module__
        if "<" in formula.__qualname__ or getattr(sys.modules.get(module), name, None) is None:
            return None
        try:
            formula_source = inspect.getsource(formula)
        except (OSError, TypeError):
            return None
        defined = (f"# generated by backprop.elementwise from {module}.{name}\n"
                   f"import numba\nfrom {module} import {name} as _elementwise\n\n"
                   f"formula = numba.njit(inline='always', error_model='numpy')(_elementwise.formula)\n")
    text = f"{defined}\n\n@numba.njit(error_model='numpy', cache=True)\n{loop_source}"
    digest = hashlib.sha256((text + formula_source + numba_module().__version__).encode()).hexdigest()[:16]
    path = cache_folder() / f"{name}_{digest}.py"
    try:
        if not path.is_file() or path.is_symlink() or path.read_bytes() != text.encode():  # only ever our own text
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.write_text(text)
            os.replace(temporary, path)  # another process writing the same file writes the same text
        spec = importlib.util.spec_from_file_location(f"backprop_elementwise_{name}_{digest}", path)
        loaded = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # numba's cache imports it by name
        spec.loader.exec_module(loaded)
        return loaded
    except OSError:
        return None


# Each ufunc a formula may call, as CUDA C++ on the kernel's scalars (the same IEEE operation as NumPy's: maximum
# returns a NaN operand as NumPy does). _EXACT: compiled without contracting a * b + c into one rounding (nvcc's
# default), so a GPU computes a formula's bits as NumPy does.
_CUDA = {numpy.add: "{0} + {1}", numpy.subtract: "{0} - {1}", numpy.multiply: "{0} * {1}",
         numpy.true_divide: "{0} / {1}", numpy.negative: "-{0}", numpy.sqrt: "sqrt({0})", numpy.absolute: "fabs({0})",
         numpy.maximum: "({0} >= {1} || {0} != {0}) ? {0} : {1}"}
_EXACT = ("--fmad=false",)


class _Traced:
    """A value while a formula is traced: each operation on it becomes a step of the plan."""

    def __init__(self, steps, shape, dtype, source):
        self.steps, self.shape, self.dtype, self.source = steps, shape, dtype, source

    def _op(self, ufunc, *operands):
        literal = next((o for o in operands if not isinstance(o, _Traced)), None)
        if literal is not None:
            raise TypeError(f"an elementwise formula uses the literal {literal!r}: pass it as an argument, so both "
                            "engines compute in the arrays' precision")
        sources = [o.source for o in operands]
        shapes = [o.shape for o in operands]
        shape = numpy.broadcast_shapes(*shapes)
        with numpy.errstate(all="ignore"):
            dtype = ufunc(*(numpy.ones((), o.dtype) for o in operands)).dtype
        result = _Traced(self.steps, shape, dtype, ("step", len(self.steps)))
        self.steps.append((ufunc, sources, shape, dtype))
        return result

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs:
            return NotImplemented
        return self._op(ufunc, *inputs)

    __add__ = lambda self, other: self._op(numpy.add, self, other)  # noqa: E731
    __radd__ = lambda self, other: self._op(numpy.add, other, self)  # noqa: E731
    __sub__ = lambda self, other: self._op(numpy.subtract, self, other)  # noqa: E731
    __rsub__ = lambda self, other: self._op(numpy.subtract, other, self)  # noqa: E731
    __mul__ = lambda self, other: self._op(numpy.multiply, self, other)  # noqa: E731
    __rmul__ = lambda self, other: self._op(numpy.multiply, other, self)  # noqa: E731
    __truediv__ = lambda self, other: self._op(numpy.true_divide, self, other)  # noqa: E731
    __rtruediv__ = lambda self, other: self._op(numpy.true_divide, other, self)  # noqa: E731
    __neg__ = lambda self: self._op(numpy.negative, self)  # noqa: E731


class _Plan:
    """A formula as ufunc calls on preallocated buffers. A step that computes an updated array's new value
    writes straight into that array when nothing after it reads the old value; the others go to buffers,
    reused once their value is dead, and are copied into place at the end."""

    def __init__(self, formula, args, updated):
        steps = []
        traced = [_Traced(steps, numpy.shape(a), a.dtype, ("arg", i)) for i, a in enumerate(args)]
        results = formula(*traced)
        results = results if len(updated) > 1 else (results,)
        last_read = {}
        for position, (_, sources, _, _) in enumerate(steps):
            for source in sources:
                last_read[source] = position
        produced_by = {r.source[1]: target for r, target in zip(results, updated) if r.source[0] == "step"}
        self.calls, self.copies, self.buffers = [], [], []
        places, free = {}, []
        for position, (ufunc, sources, shape, dtype) in enumerate(steps):
            target = produced_by.get(position)
            if target is not None and last_read.get(("arg", target), -1) <= position:
                place = ("arg", target)  # the old value is read for the last time by this very step
            else:
                place = self._buffer(free, shape, dtype)
            places[("step", position)] = place
            self.calls.append((ufunc, [places.get(s, s) for s in sources], place))
            for source in set(sources):  # a buffer whose value nothing reads again is free for the next steps
                if source[0] == "step" and last_read[source] == position and places[source][0] == "buffer" and \
                        source[1] not in produced_by:
                    free.append(places[source])
        for result, target in zip(results, updated):
            where = places.get(result.source, result.source)
            if where != ("arg", target):
                self.copies.append((where, target))
        self.arrays = [(numpy.shape(a), a.dtype) if type(a) is numpy.ndarray else (None, None) for a in args]
        # a step on numbers alone would compute Python floats in float64: then the numbers are typed each run
        self.types_numbers = any(all(s[0] == "arg" and self.arrays[s[1]][0] is None for s in sources)
                                 for _, sources, _, _ in steps)
        self._compile(len(args))

    def _buffer(self, free, shape, dtype):
        for place in free:
            buffer = self.buffers[place[1]]
            if buffer.shape == shape and buffer.dtype == dtype:
                free.remove(place)
                return place
        self.buffers.append(numpy.empty(shape, dtype))
        return ("buffer", len(self.buffers) - 1)

    def _compile(self, count):
        """The plan as a Python function of the arguments and the buffers, one line per ufunc call (no loop to
        interpret at each run), and ``fits`` as one expression."""
        def name(place):
            return f"a{place[1]}" if place[0] == "arg" else f"b{place[1]}"
        arguments = [f"a{i}" for i in range(count)]
        buffers = [f"b{i}" for i in range(len(self.buffers))]
        ufuncs = {f"u{i}": ufunc for i, (ufunc, _, _) in enumerate(self.calls)}
        lines = [f"    u{i}({', '.join(map(name, operands))}, out={name(place)})"
                 for i, (_, operands, place) in enumerate(self.calls)]
        lines += [f"    copyto(a{target}, {name(place)})" for place, target in self.copies]
        specs = {f"s{i}": spec for i, spec in enumerate(self.arrays) if spec[0] is not None}
        checks = [f"a{i[1:]}.shape == {i}[0] and a{i[1:]}.dtype == {i}[1]" for i in specs] or ["True"]
        source = (f"def run({', '.join(arguments + buffers)}):\n" + "\n".join(lines or ["    pass"]) + "\n"
                  f"def fits({', '.join(arguments)}):\n    return {' and '.join(checks)}\n")
        namespace = {**ufuncs, **specs, "copyto": numpy.copyto}
        exec(compile(source, "<elementwise plan>", "exec"), namespace)
        self._run, self._fits = namespace["run"], namespace["fits"]

    def fits(self, args):
        """Every array argument has the shape and dtype this plan was traced for (a broadcast formula may mix)."""
        return self._fits(*args)

    def run(self, args):
        self._run(*args, *self.buffers)


def elementwise(updates):
    """Decorator: see the module docstring."""
    return lambda formula: Elementwise(formula, tuple(updates))
