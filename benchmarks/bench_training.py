"""Training-step and fit benchmarks: backprop vs PyTorch vs scikit-learn vs a hand-fused NumPy step.

Run:  python benchmarks/bench_training.py [--quick] [--write]
Every case runs the contenders interleaved in one process (A, B, C, A, B, C ...), on the same data,
layer sizes, initial weights and batches, with the same thread count; medians with min-max.
``--write`` rewrites the tables in benchmarks/RESULTS.md between the markers.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import backprop as bp  # noqa: E402
from common import (interleaved, machine, mnist_like, paired_ratio, peak_rss_mb, set_threads, summary,  # noqa: E402
                    write_section)
from reference_numpy import FusedMLP  # noqa: E402

try:
    import torch
except ImportError:
    torch = None
try:
    from sklearn.neural_network import MLPClassifier
except ImportError:
    MLPClassifier = None


def backprop_mlp(sizes, seed=0, jit_compile=True):
    bp.random.set_seed(seed)
    layers = [bp.layers.Input(shape=(sizes[0],))]
    layers += [bp.layers.Dense(n, activation="relu") for n in sizes[1:-1]] + [bp.layers.Dense(sizes[-1])]
    model = bp.Sequential(layers)
    model.compile(optimizer=bp.optimizers.Adam(1e-3), loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    return model


def gemm_only(weights, x):
    """The matrix products of one step (forward, then the input and weight gradients): the BLAS floor."""
    kernels = weights[0::2]
    activations, h = [x], x
    for kernel in kernels:
        h = h @ kernel
        activations.append(h)

    def step():
        g = activations[-1]
        for kernel, h in zip(kernels, activations):
            h @ kernel
        for i in range(len(kernels) - 1, -1, -1):
            activations[i].T @ g
            if i:
                g = g @ kernels[i].T
    return step


def trace_ms(make_model, x, y):
    """Milliseconds of the two recorded (eager) steps that precede the first replay of a signature."""
    model = make_model()
    start = time.perf_counter()
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    return (time.perf_counter() - start) * 1e3 / 2


def torch_mlp(weights, adam_variant):
    modules = []
    for i in range(0, len(weights), 2):
        linear = torch.nn.Linear(*weights[i].shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weights[i].T.copy()))
            linear.bias.copy_(torch.from_numpy(weights[i + 1]))
        modules += [linear, torch.nn.ReLU()]
    net = torch.nn.Sequential(*modules[:-1])
    options = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[adam_variant]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7, **options)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        return loss
    return net, step


def mlp_batch(sizes, batch):
    rng = np.random.default_rng(0)
    return rng.uniform(size=(batch, sizes[0])).astype(np.float32), rng.integers(0, sizes[-1], batch)


def step_case(sizes, batch, threads, repeats, block):
    """ms per training step for each contender."""
    limiter = set_threads(threads)
    x, y = mlp_batch(sizes, batch)
    model, eager = backprop_mlp(sizes), backprop_mlp(sizes, jit_compile=False)
    weights = model.get_weights()
    fused = FusedMLP([w.copy() for w in weights])
    contenders = {"backprop": lambda: model.train_on_batch(x, y), "backprop_eager": lambda: eager.train_on_batch(x, y),
                  "numpy_fused": lambda: fused.step(x, y), "gemm_only": gemm_only(weights, x)}
    if torch is not None:
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        for variant in ("default", "fused"):
            _, torch_step = torch_mlp(weights, variant)
            contenders[f"torch_{variant}"] = (lambda s: lambda: s(tx, ty))(torch_step)
    if MLPClassifier is not None:
        clf = MLPClassifier(sizes[1:-1], batch_size=batch, learning_rate_init=1e-3, random_state=0)
        clf.partial_fit(x, y, classes=np.arange(sizes[-1]))
        contenders["sklearn"] = lambda: clf.partial_fit(x, y)
    samples = interleaved(contenders, repeats=repeats, block=block)
    limiter.unregister() if hasattr(limiter, "unregister") else None
    return {name: [s * 1e3 for s in values] for name, values in samples.items()}


def lecture_model(jit_compile=True):
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Input(shape=(2,)), bp.layers.Dense(3, activation="sigmoid"),
                           bp.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=bp.optimizers.SGD(0.1), loss="binary_crossentropy", jit_compile=jit_compile)
    return model


def tape_loop(model, x, y):
    """The lecture's own training loop on a GradientTape."""
    loss_fn, optimizer = bp.losses.BinaryCrossentropy(), bp.optimizers.SGD(0.1)
    x, y = bp.Tensor(x), bp.Tensor(y[:, None])

    def train_step(x, y):
        with bp.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss
    return train_step, x, y


def lecture_case(repeats, block):
    """The lecture's 2-3-1 sigmoid net, BCE, SGD, batch 32: steps per second."""
    set_threads(1)
    x, y = bp.datasets.pass_fail(32)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    yf = y.astype(np.float32)
    model, eager = lecture_model(), lecture_model(jit_compile=False)
    step, tx_bp, ty_bp = tape_loop(lecture_model(), x, yf)
    compiled_step = bp.function(tape_loop(lecture_model(), x, yf)[0])
    contenders = {"backprop fit step": lambda: model.train_on_batch(x, yf),
                  "backprop fit step, eager": lambda: eager.train_on_batch(x, yf),
                  "bp.function tape loop": lambda: compiled_step(tx_bp, ty_bp),
                  "eager tape loop": lambda: step(tx_bp, ty_bp)}
    if torch is not None:
        w = model.get_weights()
        net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 1), torch.nn.Sigmoid())
        with torch.no_grad():
            for layer, (k, b) in zip((net[0], net[2]), ((w[0], w[1]), (w[2], w[3]))):
                layer.weight.copy_(torch.from_numpy(k.T.copy()))
                layer.bias.copy_(torch.from_numpy(b))
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        tx, ty = torch.from_numpy(x), torch.from_numpy(yf[:, None])
        loss_fn = torch.nn.BCELoss()

        def torch_step():
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(tx), ty).backward()
            optimizer.step()
        contenders["torch"] = torch_step
    samples = interleaved(contenders, repeats=repeats, block=block * 10)
    trace = trace_ms(lecture_model, x, yf)
    return {name: [1 / s for s in values] for name, values in samples.items()}, trace


def fit_case(epochs, threads, repeats=3):
    """A full fit on the MNIST sample, batch 128: median wall time of ``repeats`` alternating runs, accuracy."""
    set_threads(threads)
    x_train, y_train, x_test, y_test = mnist_like()
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    runners = {"backprop": lambda: fit_backprop(x_train, y_train, x_test, y_test, epochs),
               "backprop_eager": lambda: fit_backprop(x_train, y_train, x_test, y_test, epochs, jit_compile=False)}
    if torch is not None:
        runners["torch_fused"] = lambda: fit_torch(x_train, y_train, x_test, y_test, epochs)
    if MLPClassifier is not None:
        runners["sklearn"] = lambda: fit_sklearn(x_train, y_train, x_test, y_test, epochs)
    times, accuracy = {k: [] for k in runners}, {}
    for _ in range(repeats):
        for name, run in runners.items():
            time.sleep(0.25)  # the previous contender's worker threads stop busy-waiting (common.interleaved)
            start = time.perf_counter()
            accuracy[name] = run()
            times[name].append(time.perf_counter() - start)
    return {name: (summary(times[name])[0], accuracy[name], times[name]) for name in runners}


def fit_backprop(x_train, y_train, x_test, y_test, epochs, jit_compile=True):
    model = backprop_mlp([784, 256, 128, 10], jit_compile=jit_compile)  # no metrics during fit: the PyTorch loop computes none either
    model.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=0)
    return float((model.predict(x_test).argmax(1) == y_test).mean())


def fit_torch(x_train, y_train, x_test, y_test, epochs):
    net, step = torch_mlp(backprop_mlp([784, 256, 128, 10]).get_weights(), "fused")
    tx, ty = torch.from_numpy(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(tx), generator=generator)
        for i in range(0, len(tx), 128):
            index = order[i:i + 128]
            step(tx[index], ty[index])
    with torch.no_grad():
        return float((net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())


def fit_sklearn(x_train, y_train, x_test, y_test, epochs):
    import warnings
    clf = MLPClassifier((256, 128), batch_size=128, learning_rate_init=1e-3, max_iter=epochs,
                        n_iter_no_change=epochs + 1, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(x_train, y_train)
    return clf.score(x_test, y_test)


def memory_case(epochs, jit_compile=True):
    """Peak traced memory of a fit vs what it must hold; memory at each epoch end (growth check)."""
    import tracemalloc
    tracemalloc.start()  # before the data and the model exist: everything they allocate is counted
    x_train, y_train, _, _ = mnist_like()
    x_train = x_train.astype(np.float32)
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0] - x_train.nbytes - y_train.nbytes  # keep only the training set
    model = backprop_mlp([784, 256, 128, 10], jit_compile=jit_compile)
    at_epoch_end = []
    tracker = bp.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: at_epoch_end.append(
        tracemalloc.get_traced_memory()[0]))
    model.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=0, callbacks=[tracker])
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    weights = sum(w.nbytes for w in model.get_weights())
    activations = 128 * (784 + 256 + 128 + 10) * 4 * 3  # inputs and outputs of each layer, plus their gradients
    needed = weights * 3 + activations + x_train.nbytes + y_train.nbytes  # weights, Adam m and v
    growth = at_epoch_end[-1] - at_epoch_end[1]
    return peak, needed, growth


def fmt(values, unit="ms"):
    median, low, high = summary(values)
    return f"{median:.3f} ({low:.3f}–{high:.3f})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--write", action="store_true", help="write the tables into benchmarks/RESULTS.md")
    parser.add_argument("--json", help="also write raw results to this file")
    args = parser.parse_args()
    repeats, block = (3, 10) if args.quick else (9, 40)
    sizes = [784, 256, 128, 10]
    lines = ["| batch, threads | backprop (compiled) | backprop eager | hand-fused NumPy | GEMM only | PyTorch default Adam | "
             "PyTorch fused Adam | scikit-learn | PyTorch(best) / backprop | backprop / hand-fused | backprop / GEMM | "
             "backprop samples/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    raw = {"machine": machine(), "steps": {}}
    for threads in (1, 2):
        for batch in (32, 128, 1024):
            result = step_case(sizes, batch, threads, repeats, block if batch < 1024 else max(block // 4, 5))
            raw["steps"][f"{batch},{threads}"] = result
            med = {k: summary(v)[0] for k, v in result.items()}
            torch_rounds = [min(times) for times in zip(*(v for k, v in result.items() if k.startswith("torch")))]
            best_torch = paired_ratio(torch_rounds, result["backprop"]) if torch_rounds else float("nan")
            row = (f"| {batch}, {threads} | {fmt(result['backprop'])} | {fmt(result['backprop_eager'])} | "
                   f"{fmt(result['numpy_fused'])} | {fmt(result['gemm_only'])} | "
                   f"{fmt(result['torch_default']) if 'torch_default' in result else '-'} | "
                   f"{fmt(result['torch_fused']) if 'torch_fused' in result else '-'} | "
                   f"{fmt(result['sklearn']) if 'sklearn' in result else '-'} | "
                   f"{best_torch:.2f} | {paired_ratio(result['backprop'], result['numpy_fused']):.2f} | "
                   f"{paired_ratio(result['backprop'], result['gemm_only']):.2f} | "
                   f"{batch / med['backprop'] * 1e3:,.0f} |")
            lines.append(row)
            print(row, flush=True)
    lecture, lecture_trace = lecture_case(repeats, block)
    raw["lecture"] = lecture
    lecture_line = " · ".join(f"{k}: {summary(v)[0]:,.0f} steps/s ({summary(v)[1]:,.0f}–{summary(v)[2]:,.0f})"
                              for k, v in lecture.items())
    if "torch" in lecture:
        lecture_line += " · ratios to PyTorch: " + ", ".join(
            f"{k} {paired_ratio(v, lecture['torch']):.1f}×" for k, v in lecture.items() if k != "torch")
    mlp_trace = {batch: trace_ms(lambda: backprop_mlp(sizes), *mlp_batch(sizes, batch)) for batch in (32, 1024)}
    lecture_line += (f"\n\nTrace time per signature (the mean of its two recorded eager steps): lecture net "
                     f"{lecture_trace:.2f} ms; MLP batch 32 {mlp_trace[32]:.2f} ms, batch 1024 {mlp_trace[1024]:.2f} ms.")
    print(lecture_line, flush=True)
    fit = fit_case(3 if args.quick else 20, threads=2, repeats=5)
    raw["fit"] = fit
    fit_lines = ["| contender | wall time (s), median of 5 | test accuracy |", "|---|---|---|"]
    fit_lines += [f"| {k} | {t:.2f} | {a:.3f} |" for k, (t, a, _) in fit.items()]
    fit_lines.append("\nEach round's time over backprop's in the same round, median over the rounds: " + ", ".join(
        f"{k} {paired_ratio(rounds, fit['backprop'][2]):.2f}" for k, (_, _, rounds) in fit.items() if k != "backprop"))
    peak, needed, growth = memory_case(20)
    eager_peak, _, eager_growth = memory_case(20, jit_compile=False)
    fit_lines.append(f"\nMemory of that fit (tracemalloc, NumPy arrays included): compiled, peak {peak / 1e6:.1f} MB vs "
                     f"{needed / 1e6:.1f} MB for weights + Adam slots + one batch's activations + the dataset "
                     f"(ratio {peak / needed:.2f}), growth from epoch 2 to epoch 20 {growth / 1e3:.1f} kB; eager, peak "
                     f"{eager_peak / 1e6:.1f} MB, growth {eager_growth / 1e3:.1f} kB. "
                     f"Peak RSS of the whole benchmark process (Python, NumPy, PyTorch, scikit-learn loaded): "
                     f"{peak_rss_mb():.0f} MB.")
    print("\n".join(fit_lines))
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=float))
    if args.write:
        write_results(lines, lecture_line, fit_lines, raw["machine"], args.quick)


def write_results(step_lines, lecture_line, fit_lines, machine_info, quick):
    write_section("training", [
        f"Machine: {machine_info['cpu']}, {machine_info['cores']} cores, SIMD {', '.join(machine_info['simd'])}; "
        f"BLAS {', '.join(machine_info['blas'])}; versions {machine_info['versions']}." + (" (quick run)" if quick else ""),
        "", "MLP 784-256-128-10, float32, Adam, softmax cross-entropy; ms per training step, median (min–max) of 9 "
        "interleaved blocks, each after a 0.25 s pause; the ratios are the median over the rounds of each round's "
        "own ratio (PyTorch(best): the faster of its two Adams in that round):",
        "", *step_lines, "",
        f"Lecture net 2-3-1 (sigmoid, BCE, SGD, batch 32, 1 thread): {lecture_line}", "",
        "`fit`, 20 epochs, batch 128, MNIST sample (4,000 train / 1,000 test), 2 threads:", "", *fit_lines],
        "Training steps and fit")

if __name__ == "__main__":
    main()
