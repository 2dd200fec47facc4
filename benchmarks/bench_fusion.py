"""Joined elementwise groups (backprop.compiled.fusion) against the same replay op by op, and PyTorch eager.

Run:  python benchmarks/bench_fusion.py [--write]
The step: x @ W + b, a hand-written activation made of ops (the way a learner writes one in a layer of their
own), the mean of its output, gradients of W and b, 1 thread. Contenders interleaved in one process: the
replay with groups joined, the replay with every op its own node (``Plan(graph, fuse=False)``), and PyTorch's
eager step on the same numbers. ``--write`` puts the table in benchmarks/RESULTS.md.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import backprop as bp  # noqa: E402
from backprop.compiled import fusion  # noqa: E402
from common import interleaved, set_threads, summary, write_section  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

ACTIVATIONS = {  # (backprop, PyTorch)
    "arithmetic: (2z - 1)(z/2 + 3)": (lambda z: (z * 2.0 - 1.0) * (z * 0.5 + 3.0),
                                      lambda z: (z * 2.0 - 1.0) * (z * 0.5 + 3.0)),
    "tanh(z) * 1.5 + 0.1 z²": (lambda z: bp.tanh(z) * 1.5 + z * z * 0.1,
                                lambda z: torch.tanh(z) * 1.5 + z * z * 0.1),
    "swish by hand: z * sigmoid(z)": (lambda z: z * bp.sigmoid(z), lambda z: z * torch.sigmoid(z)),
}


def backprop_steps(activation, x, w0, b0):
    w, b = bp.Variable(w0), bp.Variable(b0)

    def step(x):
        with bp.GradientTape() as tape:
            loss = bp.reduce_mean(activation(bp.matmul(x, w) + b))
        return tape.gradient(loss, [w, b])
    steps = {}
    for fuse in (True, False):
        compiled = bp.function(step)
        with fusion.using(fusion.EVERYTHING if fuse else fusion.Policy(smallest=sys.maxsize)):
            compiled(x), compiled(x)  # this case's group, joined whatever its size and ops, or not at all
        steps["joined" if fuse else "op by op"] = lambda compiled=compiled: compiled(x)
    return steps


def torch_step(activation, x, w0, b0):
    tx, w, b = torch.from_numpy(x), torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)

    def step():
        w.grad = b.grad = None
        activation(tx @ w + b).mean().backward()
    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    set_threads(1)
    rng = np.random.default_rng(0)
    lines = ["| activation | batch × width | joined | op by op | PyTorch eager | op by op / joined | PyTorch / joined |",
             "|---|---|---|---|---|---|---|"]
    for name, (ours, theirs) in ACTIVATIONS.items():
        for batch, width in ((64, 256), (256, 256), (1024, 512)):
            x = rng.normal(size=(batch, 64)).astype(np.float32)
            w0, b0 = (rng.normal(size=(64, width)) * 0.1).astype(np.float32), np.zeros(width, np.float32)
            contenders = backprop_steps(ours, bp.Tensor(x), w0, b0)
            if torch is not None:
                contenders["torch"] = torch_step(theirs, x, w0, b0)
            block = max(3, 40_000 // (batch * width // 64))
            medians = {k: summary(v)[0] * 1e6 for k, v in interleaved(contenders, repeats=7, block=block).items()}
            torch_cell = f"{medians['torch']:,.0f} µs" if "torch" in medians else "—"
            torch_ratio = f"{medians['torch'] / medians['joined']:.2f}×" if "torch" in medians else "—"
            lines.append(f"| {name} | {batch} × {width} | {medians['joined']:,.0f} µs | {medians['op by op']:,.0f} µs"
                         f" | {torch_cell} | {medians['op by op'] / medians['joined']:.2f}× | {torch_ratio} |")
            print(lines[-1], flush=True)
    if args.write:
        write_section("fusion", ["Command: `python benchmarks/bench_fusion.py --write` (1 thread; medians of 7 "
                                 "interleaved blocks; a step is the forward, the mean and the gradients of W and b).",
                                 "", *lines], "Joined elementwise groups")


if __name__ == "__main__":
    main()
