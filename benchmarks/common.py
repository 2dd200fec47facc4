"""Shared benchmark helpers: thread control, interleaved timing, machine description."""
import os
import platform
import resource
import statistics
import time

import numpy as np


def set_threads(n):
    """Limit BLAS (and PyTorch, when present) to ``n`` threads."""
    from threadpoolctl import threadpool_limits
    limiter = threadpool_limits(limits=n)
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass
    return limiter


def interleaved(contenders, repeats=7, block=50, warmup=20, pause=0.25):
    """Time each contender's step in alternating blocks; returns {name: [seconds per step, ...]}.

    Each block starts after ``pause`` seconds: a library's worker threads busy-wait for a while after its last call
    (OpenBLAS's, OpenMP's), and on two cores those of the block before would slow the next one (PyTorch's step
    measured right after ours: 2.5 ms; after a pause: 1.9 ms)."""
    for step in contenders.values():
        for _ in range(warmup):
            step()
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, step in contenders.items():
            time.sleep(pause)
            start = time.perf_counter()
            for _ in range(block):
                step()
            samples[name].append((time.perf_counter() - start) / block)
    return samples


def paired_ratio(numerators, denominators):
    """The median over rounds of numerator / denominator, each pair timed in the same round of ``interleaved``:
    steadier than the ratio of two medians when the VM changes speed between rounds."""
    return statistics.median(n / d for n, d in zip(numerators, denominators))


def summary(samples):
    """median, min, max of a list of seconds."""
    return statistics.median(samples), min(samples), max(samples)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine():
    from threadpoolctl import threadpool_info
    cpu = "unknown"
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    simd = [f for f in ("avx2", "fma", "avx512f") if f" {f} " in flags]
    blas = [f"{i['internal_api']} {i['version']} ({i.get('architecture')})" for i in threadpool_info()
            if i["user_api"] == "blas"]
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("torch", "sklearn"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "simd": simd, "blas": blas, "versions": versions}


def mnist_like(n=5000, seed=0):
    """The bundled MNIST sample scaled to [0, 1] (random data of the same shape if absent)."""
    try:
        import backprop as bp
        (x_train, y_train), (x_test, y_test) = bp.datasets.mnist_sample()
        return x_train / 255.0, y_train, x_test / 255.0, y_test
    except Exception:  # noqa: BLE001 - benchmarks run even without the bundled data
        rng = np.random.default_rng(seed)
        x, y = rng.uniform(size=(n, 784)).astype(np.float32), rng.integers(0, 10, n)
        return x[:4000], y[:4000], x[4000:], y[4000:]


def write_section(marker, lines, heading):
    """Replace the block between <!-- marker:begin --> and <!-- marker:end --> in RESULTS.md (or append it)."""
    from pathlib import Path
    path = Path(__file__).parent / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = "\n".join([f"<!-- {marker}:begin -->", *lines, f"<!-- {marker}:end -->"])
    begin = f"<!-- {marker}:begin -->"
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(f"<!-- {marker}:end -->", 1)[1]
    else:
        text += f"\n## {heading}\n\n{block}\n"
    path.write_text(text)
