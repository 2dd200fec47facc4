"""A CuPy ElementwiseKernel's body compiled as C++ for the CPU, to check its arithmetic where no GPU is.

The body is CUDA C++ run once per element ``i``, reading its inputs and assigning its outputs by name; here it
runs in a plain loop (g++, no fast-math, no contracted multiply-adds, float overloads of the math functions as
in CUDA). What it cannot check is CuPy itself (its argument rules, options and launch) and the GPU's own
instructions: those need tests/test_devices.py on a GPU.
"""
import ctypes
import hashlib
import shutil
import subprocess

C_TYPES = {"float32": ("float", ctypes.c_float), "float64": ("double", ctypes.c_double),
           "uint64": ("unsigned long long", ctypes.c_ulonglong), "int64": ("long long", ctypes.c_longlong)}


def available():
    return shutil.which("g++") is not None


def run(kernel, folder, arrays, scalars, T="float32"):
    """Run ``kernel`` = (in_params, out_params, body) over ``arrays`` (name -> array, every output among them,
    updated in place) with ``scalars`` (name -> value); ``T`` is the type placeholder's dtype."""
    in_params, out_params, body = kernel
    params = [_param(p, T) for p in in_params.split(",")] + [_param(p, T) for p in out_params.split(",")]
    n = len(next(iter(arrays.values())).reshape(-1))
    signature, loads, stores, arguments = [], [], [], []
    for (c_type, c_scalar), name in params:
        if name in arrays:
            signature.append(f"{c_type}* {name}_at")
            loads.append(f"{c_type} {name} = {name}_at[i];")
            stores.append(f"{name}_at[i] = {name};")
            arguments.append(arrays[name].ctypes.data_as(ctypes.c_void_p))
        else:
            signature.append(f"{c_type} {name}")
            arguments.append(c_scalar(scalars[name]))
    source = (f"#include <cmath>\nusing std::sqrt; using std::exp; using std::log; using std::fabs;\ntypedef {C_TYPES[T][0]} T;\n"
              f'extern "C" void run(long long n, {", ".join(signature)}) {{\n'
              f"  for (long long i = 0; i < n; i++) {{\n    {' '.join(loads)}\n    {{ {body} }}\n"
              f"    {' '.join(stores)}\n  }}\n}}\n")
    name = f"kernel_{hashlib.sha256(source.encode()).hexdigest()[:12]}"  # dlopen returns a path's first library
    (folder / f"{name}.cpp").write_text(source)
    command = ["g++", "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(folder / f"{name}.so"),
               str(folder / f"{name}.cpp")]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    library = ctypes.CDLL(str(folder / f"{name}.so"))
    library.run(ctypes.c_longlong(n), *arguments)


def _param(text, T):
    kind, name = text.split()
    return C_TYPES[T if kind == "T" else kind], name
