"""Thread discipline (issue #28): fit gives BLAS one thread for small steps and on busy cores, never more
than the user allowed, and puts the count back afterwards."""
import numpy as np
import pytest

import backprop as bp
from backprop.training import threads

openblas = threads._openblas()
needs_openblas = pytest.mark.skipif(openblas is None, reason="NumPy's BLAS here is not OpenBLAS")


@needs_openblas
def test_the_count_is_set_inside_and_put_back():
    before = openblas.get()
    with threads.blas_threads(1):
        assert openblas.get() == 1
    assert openblas.get() == before
    with threads.blas_threads(None):
        assert openblas.get() == before


@needs_openblas
def test_the_count_never_rises_above_what_the_user_set():
    before = openblas.get()
    try:
        openblas.set(1)
        with threads.blas_threads(64):
            assert openblas.get() == 1
    finally:
        openblas.set(before)


@needs_openblas
def test_fit_trains_a_small_model_on_one_thread_and_restores_the_count():
    seen = []

    class Watch(bp.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(openblas.get())
    before = openblas.get()
    model = bp.Sequential([bp.Input(shape=(10,)), bp.layers.Dense(16, activation="relu"), bp.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32)
    model.fit(x, x[:, :1], epochs=1, batch_size=32, verbose=0, callbacks=[Watch()])
    assert seen == [1, 1] and openblas.get() == before


def test_small_steps_get_one_thread_and_large_ones_the_idle_cores(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "_busy_elsewhere", lambda: 0)
    assert threads.threads_for(1e6) == 1 and threads.threads_for(1e9) == 4 and threads.threads_for(None) is None
    monkeypatch.setattr(threads, "_busy_elsewhere", lambda: 3)  # three other jobs running
    assert threads.threads_for(1e9) == 1
    monkeypatch.setattr(threads, "_busy_elsewhere", lambda: 9)
    assert threads.available_cores() == 1


def test_busy_cores_are_counted_from_other_processes():
    import subprocess
    import sys
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        import time
        time.sleep(0.3)
        busy = max(threads._busy_elsewhere() for _ in range(5))
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait(timeout=10)
    assert busy >= 1  # runnable, on a core or waiting for one: at least one spinner is seen


def test_the_step_flops_come_from_the_kernels():
    model = bp.Sequential([bp.Input(shape=(784,)), bp.layers.Dense(256), bp.layers.Dense(10)])
    assert threads.dense_flops(model, 32) == 6 * 32 * (784 * 256 + 256 * 10)
    assert threads.dense_flops(bp.Sequential([bp.layers.Dense(3)]), 32) is None  # not built yet: unknown


def test_without_openblas_threadpoolctl_or_nothing_is_used(monkeypatch):
    monkeypatch.setattr(threads, "_openblas", lambda: None)
    with threads.blas_threads(1):  # threadpoolctl when installed, else nothing: never an error
        pass
