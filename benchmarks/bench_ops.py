"""Per-op overhead: microseconds per add / matmul / relu on small arrays, raw NumPy vs backprop
(no tape, recorded on a tape, and recorded + differentiated).

Run:  python benchmarks/bench_ops.py [--write]
"""
import argparse
import statistics
import sys
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import backprop as bp  # noqa: E402
from common import machine, write_section  # noqa: E402

OPS = 200  # ops per timed block (one tape per block)


def measure(fn, repeats=7, number=50):
    return statistics.median(t / number / OPS * 1e6 for t in timeit.repeat(fn, repeat=repeats, number=number))


def cases():
    a = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    b = np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32)
    va, tb = bp.Variable(a), bp.tensor(b)
    ops = {"add": (np.add, bp.add), "matmul": (np.matmul, bp.matmul),
           "relu": (lambda x, _: np.maximum(x, 0), lambda x, _: bp.relu(x))}
    for name, (raw, op) in ops.items():
        def numpy_block():
            for _ in range(OPS):
                raw(a, b)

        def untaped():
            for _ in range(OPS):
                op(va, tb)

        def recorded():
            with bp.GradientTape():
                for _ in range(OPS):
                    op(va, tb)

        def differentiated():
            with bp.GradientTape() as tape:
                total = None
                for _ in range(OPS // 2):
                    out = op(va, tb)
                    total = out if total is None else total + out
            tape.gradient(total, va)

        yield name, {"numpy": measure(numpy_block), "backprop, no tape": measure(untaped),
                     "backprop, recorded": measure(recorded), "recorded + gradient": measure(differentiated)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    lines = ["| op (4x4 float32) | NumPy | backprop, no tape | backprop, recorded | recorded + gradient (per op) |",
             "|---|---|---|---|---|"]
    for name, result in cases():
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f} µs" for v in result.values()) + " |")
        print(lines[-1], flush=True)
    if args.write:
        info = machine()
        write_section("ops", [f"Machine: {info['cpu']}; {info['versions']}.", "", *lines], "Per-op overhead")

if __name__ == "__main__":
    main()
