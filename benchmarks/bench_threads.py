"""One BLAS thread against two for fit's steps, on models from a small table's MLP to MNIST's at batch 1024.

Run:  python benchmarks/bench_threads.py
Each case trains one epoch with the thread count forced (``threads.threads_for`` replaced), 1 and 2
threads interleaved, five times each; prints the median ms per step and the ratio. The threshold in
backprop/training/threads.py (SMALL_STEP_FLOPS) comes from this table (benchmarks/RESULTS.md).
"""
import time

import numpy as np

import backprop as bp
from backprop.training import threads

CASES = [(10, [256, 128], 8000, 32, 2), (100, [64, 64], 8000, 32, 2), (100, [256, 256], 8000, 64, 2),
         (784, [256, 128], 4096, 32, 10), (784, [256, 128], 4096, 128, 10), (784, [256, 128], 8192, 1024, 10)]


def seconds_per_epoch(inputs, hidden, rows, batch, classes, thread_count, rng):
    x = rng.normal(size=(rows, inputs)).astype(np.float32)
    y = rng.integers(0, classes, rows)
    threads.threads_for = lambda flops: thread_count
    bp.random.set_seed(0)
    model = bp.Sequential([bp.Input(shape=(inputs,))] + [bp.layers.Dense(h, activation="relu") for h in hidden]
                          + [bp.layers.Dense(classes)])
    model.compile(optimizer="adam", loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:batch * 2], y[:batch * 2], batch_size=batch, epochs=1, verbose=0)  # traced: not timed
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    return time.perf_counter() - start


def main():
    rng = np.random.default_rng(0)
    for inputs, hidden, rows, batch, classes in CASES:
        times = {1: [], 2: []}
        for _ in range(5):
            for count in (1, 2):
                times[count].append(seconds_per_epoch(inputs, hidden, rows, batch, classes, count, rng))
        sizes = [inputs] + hidden + [classes]
        flops = 6 * batch * sum(a * b for a, b in zip(sizes, sizes[1:]))
        one, two = (np.median(times[c]) * 1e3 / (rows / batch) for c in (1, 2))
        print(f"{'-'.join(map(str, sizes))}, batch {batch}: {flops / 1e6:.1f} MFLOP per step; 1 thread {one:.3f} ms, "
              f"2 threads {two:.3f} ms per step, 2 / 1 = {two / one:.2f}", flush=True)


if __name__ == "__main__":
    main()
