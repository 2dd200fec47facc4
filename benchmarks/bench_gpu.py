"""Training steps on one GPU: backprop (device "gpu") against PyTorch CUDA eager with fused Adam and a
hand-fused CuPy step (issue 13).

Run:  python benchmarks/bench_gpu.py [--write]        (on a machine with an NVIDIA GPU, CuPy and PyTorch)
      python benchmarks/bench_gpu.py --dry-run        (anywhere: tiny sizes, NumPy in CuPy's place, the CPU)

Cases: MLP 784-256-128-10 at batch 128, 1024, 8192 and 65,536, and 784-4096-4096-10 at batch 8192;
float32, Adam (lr 1e-3), softmax cross-entropy on integer labels. Every contender trains on the same
batch, already on the device, for a fixed number of steps after warm-up; the time ends after a device
synchronisation. Targets (issue 13): backprop at least 1.2x PyTorch's steps/s at batch 128 and 1024,
1.0x at 8192, 0.8x at 65,536. Anchors from ../shared/PERFORMANCE.md (H200): at batch <= 1024 a fused
CuPy step beats PyTorch eager by about 1.3x; at 65,536 a naive CuPy step is 2.7x slower.
"""
import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import write_section  # noqa: E402

CASES = [((784, 256, 128, 10), 128), ((784, 256, 128, 10), 1024), ((784, 256, 128, 10), 8192),
         ((784, 256, 128, 10), 65536), ((784, 4096, 4096, 10), 8192)]
DRY_CASES = [((32, 16, 8, 4), 64), ((32, 16, 8, 4), 256)]


ROUNDS = 3


def _ratio(rates):
    return f"{rates['backprop'] / rates['pytorch']:.2f}" if "pytorch" in rates else "— (no PyTorch)"


def timed(step, sync, steps, warmup=5):
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps / (time.perf_counter() - start)


def initial_weights(sizes, seed=0):
    rng = np.random.default_rng(seed)
    weights = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        limit = np.sqrt(6 / (fan_in + fan_out))
        weights += [rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32), np.zeros(fan_out, np.float32)]
    return weights


# --- backprop -------------------------------------------------------------------------------------------
def backprop_step(sizes, x, y, device):
    import backprop as bp
    from backprop.training.compiled import train_step
    with bp.device(device):
        layers = [bp.layers.Input(shape=(sizes[0],))]
        layers += [bp.layers.Dense(units, activation="relu") for units in sizes[1:-1]] + [bp.layers.Dense(sizes[-1])]
        model = bp.Sequential(layers)
        model.set_weights(initial_weights(sizes))
        model.compile(optimizer=bp.optimizers.Adam(1e-3),
                      loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True))
        x_device = bp.to_device(x, device)
    step = train_step(model)  # the step fit runs: traced, then replayed
    return lambda: step(x_device, y)


# --- PyTorch --------------------------------------------------------------------------------------------
def torch_step(sizes, x, y, device):
    import torch
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).to(device)
    with torch.no_grad():
        for layer, (w, b) in zip([m for m in model if isinstance(m, torch.nn.Linear)],
                                 zip(*[iter(initial_weights(sizes))] * 2)):
            layer.weight.copy_(torch.from_numpy(w.T.copy()))
            layer.bias.copy_(torch.from_numpy(b))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=device == "cuda")
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(xt), yt).backward()
        optimizer.step()
    return step


# --- a hand-fused CuPy step: what the GPU can do with a few kernels ---------------------------------------
ADAM_SOURCE = """
    float m_new = b1 * m + (1 - b1) * g;
    float v_new = b2 * v + (1 - b2) * g * g;
    m = m_new; v = v_new;
    w -= lr_t * m_new / (sqrt(v_new) + eps);
"""


def fused_step(sizes, x, y, xp):
    """Forward, softmax cross-entropy and backward by hand on one flat weight buffer; Adam as one kernel."""
    shapes = [(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    counts = [n for a, b in shapes for n in (a * b, b)]
    flat = xp.asarray(np.concatenate([w.ravel() for w in initial_weights(sizes)]))
    grads, m, v = xp.zeros_like(flat), xp.zeros_like(flat), xp.zeros_like(flat)
    offsets = np.cumsum([0] + counts)
    views = [flat[offsets[i]:offsets[i + 1]] for i in range(len(counts))]
    grad_views = [grads[offsets[i]:offsets[i + 1]] for i in range(len(counts))]
    weights = [views[2 * i].reshape(shape) for i, shape in enumerate(shapes)]
    biases = [views[2 * i + 1] for i in range(len(shapes))]
    grad_w = [grad_views[2 * i].reshape(shape) for i, shape in enumerate(shapes)]
    grad_b = [grad_views[2 * i + 1] for i in range(len(shapes))]
    xd, yd = xp.asarray(x), xp.asarray(y)
    rows = xp.arange(len(y))
    adam = None
    if xp.__name__ == "cupy":
        adam = xp.ElementwiseKernel("float32 g, float32 lr_t, float32 b1, float32 b2, float32 eps",
                                    "float32 w, float32 m, float32 v", ADAM_SOURCE, "bp_adam")
    t = [0]

    def step():
        activations = [xd]
        for i, (w, b) in enumerate(zip(weights, biases)):
            z = activations[-1] @ w + b
            activations.append(xp.maximum(z, 0) if i < len(weights) - 1 else z)
        logits = activations[-1]
        probabilities = xp.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        probabilities[rows, yd] -= 1
        delta = probabilities / len(y)
        for i in reversed(range(len(weights))):
            xp.matmul(activations[i].T, delta, out=grad_w[i])
            xp.sum(delta, axis=0, out=grad_b[i])
            if i:
                delta = (delta @ weights[i].T) * (activations[i] > 0)
        t[0] += 1
        lr_t = 1e-3 * np.sqrt(1 - 0.999 ** t[0]) / (1 - 0.9 ** t[0])
        if adam is not None:
            adam(grads, np.float32(lr_t), np.float32(0.9), np.float32(0.999), np.float32(1e-7), flat, m, v)
        else:
            m[...] = 0.9 * m + 0.1 * grads
            v[...] = 0.999 * v + 0.001 * grads * grads
            flat[...] -= lr_t * m / (xp.sqrt(v) + 1e-7)
    return step


def accuracy_check(device):
    """The MNIST sample trained on the CPU and on ``device`` from one seed: (cpu, device) test accuracy."""
    import backprop as bp
    (x_train, y_train), (x_test, y_test) = bp.datasets.mnist_sample()
    x_train, x_test = x_train / 255, x_test / 255
    scores = []
    for where in ("cpu", device):
        with bp.device(where):
            bp.random.set_seed(0)
            model = bp.Sequential([bp.layers.Input(shape=(784,)), bp.layers.Dense(256, activation="relu"),
                                   bp.layers.Dropout(0.2), bp.layers.Dense(128, activation="relu"), bp.layers.Dense(10)])
            model.compile(optimizer="adam", loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
            model.fit(x_train, y_train, epochs=5, batch_size=128, verbose=0)
            scores.append(model.evaluate(x_test, y_test, verbose=0)[1])
    return scores


DROPOUT_SHAPES, DRY_DROPOUT_SHAPES = [(8192, 256), (8192, 4096)], [(64, 32)]


def dropout_masks(device, shapes, sync):
    """ms per float32 dropout mask: drawn on the host and copied over (before issue 30) against drawn on the
    device from one key (backprop.devices.draws)."""
    import backprop as bp
    from backprop.devices import draws
    from backprop.ops import nn
    place, generator, rows = bp.devices.get(device), np.random.default_rng(0), []
    for shape in shapes:
        like, host_like = place.to_device(np.ones(shape, np.float32)), np.ones(shape, np.float32)
        ways = {"host": lambda: place.to_device(nn.host_dropout_scale(host_like, 0.2, generator)),
                "device": lambda: draws.dropout_scale(like, 0.2, generator)}
        rows.append((shape, {way: 1e3 / timed(draw, sync, 20) for way, draw in ways.items()}))
        print(f"dropout mask {shape}: " + ", ".join(f"{way} {ms:.3f} ms" for way, ms in rows[-1][1].items()), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the script itself")
    parser.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = parser.parse_args()
    has_torch = importlib.util.find_spec("torch") is not None
    if args.dry_run:  # the script itself, checked anywhere: PyTorch is optional here
        xp, sync, bp_device, torch_device, cases, name = np, (lambda: None), "strict", "cpu", DRY_CASES, "CPU (dry run)"
    else:
        import cupy
        import torch
        xp, bp_device, torch_device, cases = cupy, "gpu", "cuda", CASES

        def sync():
            cupy.cuda.Device().synchronize()
            torch.cuda.synchronize()
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    cpu_accuracy, device_accuracy = accuracy_check(bp_device)
    print(f"MNIST sample, 5 epochs: test accuracy {cpu_accuracy:.4f} on the CPU, {device_accuracy:.4f} on {bp_device}",
          flush=True)
    masks = dropout_masks(bp_device, DRY_DROPOUT_SHAPES if args.dry_run else DROPOUT_SHAPES, sync)
    rows = []
    for sizes, batch in cases:
        rng = np.random.default_rng(1)
        x = rng.normal(size=(batch, sizes[0])).astype(np.float32)
        y = rng.integers(0, sizes[-1], batch)
        steps = max(10, min(200, 2_000_000 // batch)) if not args.dry_run else 5
        contenders = {"backprop": backprop_step(sizes, x, y, bp_device), "fused": fused_step(sizes, x, y, xp)}
        if has_torch:
            contenders["pytorch"] = torch_step(sizes, x, y, torch_device)
        samples = {name: [] for name in contenders}
        for _ in range(ROUNDS):  # interleaved rounds, the median kept: one slow moment does not decide a case
            for contender, step in contenders.items():
                samples[contender].append(timed(step, sync, steps))
        rates = {contender: statistics.median(values) for contender, values in samples.items()}
        rows.append((sizes, batch, rates))
        print(f"{'-'.join(map(str, sizes))} batch {batch}: " + ", ".join(f"{k} {v:,.0f} steps/s" for k, v in rates.items())
              + f"; backprop / PyTorch {_ratio(rates)}", flush=True)
    if args.write and not args.dry_run:
        targets = {128: "≥ 1.2", 1024: "≥ 1.2", 8192: "≥ 1.0", 65536: "≥ 0.8"}
        lines = [f"GPU: {name}. Command: `python benchmarks/bench_gpu.py --write`. Steps per second, the median of "
                 f"{ROUNDS} interleaved rounds (float32, Adam, softmax cross-entropy; the features already on the GPU; "
                 "backprop's integer labels on the host, where its losses check them, PyTorch's on the GPU).", "",
                 "| network | batch | backprop | PyTorch eager (fused Adam) | hand-fused CuPy | backprop / PyTorch | target |",
                 "|---|---|---|---|---|---|---|"]
        for sizes, batch, rates in rows:
            target = targets.get(batch, "") if sizes[1] == 256 else ""
            lines.append(f"| {'-'.join(map(str, sizes))} | {batch:,} | {rates['backprop']:,.0f} | {rates['pytorch']:,.0f} | "
                         f"{rates['fused']:,.0f} | {_ratio(rates)} | {target} |")
        lines += ["", f"MNIST sample, 784-256-128-10 with dropout, 5 epochs, one seed: test accuracy "
                      f"{device_accuracy:.4f} on the GPU, {cpu_accuracy:.4f} on the CPU.", "",
                  "Dropout masks (float32, rate 0.2), ms each: " + "; ".join(
                      f"{shape[0]}×{shape[1]}: drawn on the host and copied {ms['host']:.3f}, drawn on the GPU "
                      f"{ms['device']:.3f}" for shape, ms in masks)]
        write_section("gpu", lines, "One GPU (issue 13)")


if __name__ == "__main__":
    main()
