"""Instructions per training step, counted by callgrind: a measure that does not swing with the VM's speed.

    git worktree add /tmp/before 12712c9
    python benchmarks/bench_instructions.py /tmp/before .

Each case runs the hand-written tape loop (forward, loss, ``tape.gradient``, ``apply_gradients``), or
``train_on_batch``, or ``fit`` (per batch), in a child process under ``valgrind --tool=callgrind`` for N1 and for N2 steps; (count(N2) - count(N1)) /
(N2 - N1) removes start-up. One BLAS thread and a fixed hash seed, with each tree's bytecode compiled
first, so that a rerun gives the same count (a random seed or a compile in one of the two runs moves
start-up by millions). The objects made before the first step are frozen out of the garbage collector:
otherwise whether a full collection of them falls between step N1 and step N2 depends on how many objects
start-up allocated, and one more such collection adds about 2 k instructions to every step's average
(session 6 measured a change to an unused module that way). Needs valgrind.
"""
import argparse
import subprocess
import sys

STEP = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import backprop as bp
case, steps = sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(0)
bp.random.set_seed(0)
if case.startswith("lecture"):
    model = bp.Sequential([bp.layers.Dense(3, activation="sigmoid"), bp.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=bp.optimizers.SGD(0.1), loss="binary_crossentropy")
    x, y = rng.normal(size=(32, 2)).astype(np.float32), (rng.random(32) > 0.5).astype(np.float32)
else:
    model = bp.Sequential([bp.layers.Dense(256, activation="relu"), bp.layers.Dense(128, activation="relu"),
                           bp.layers.Dense(10)])
    model.compile(optimizer="adam", loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = rng.normal(size=(32, 784)).astype(np.float32), rng.integers(0, 10, 32)
import gc
gc.collect()
gc.freeze()  # start-up's objects: a full collection of them lands in one run's window and not the other's
if "fit" in case:  # fit's own loop around the compiled step: 10 batches an epoch, or one
    batches = 1 if case.endswith("epoch") else 10
    x, y = np.tile(x, (batches, 1)), np.tile(y, batches)
    model.fit(x, y, batch_size=32, epochs=steps // batches, verbose=0)
    steps = 0
for _ in range(steps):
    if case.endswith("train_on_batch"):  # the compiled step fit runs (traced in its first two steps)
        model.train_on_batch(x, y)
        continue
    with bp.GradientTape() as tape:
        loss = model.loss(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
"""
CASES = {"lecture": ("lecture 2-3-1 net, batch 32, SGD", 200, 1200),
         "mlp": ("MLP 784-256-128-10, batch 32, Adam", 20, 70),
         "lecture train_on_batch": ("lecture net, `train_on_batch` (the compiled step `fit` runs)", 200, 1200),
         "lecture fit": ("lecture net, a batch of `fit` (10 batches an epoch)", 200, 1200),
         "lecture fit, a batch an epoch": ("lecture net, an epoch of `fit` of one batch", 200, 1200)}


def instructions(tree, case, steps):
    subprocess.run([sys.executable, "-m", "compileall", "-q", f"{tree}/backprop"], check=True, capture_output=True)
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c",
                          STEP, tree, case, str(steps)], capture_output=True, text=True, timeout=1200,
                         env={"OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"})
    line = next(line for line in out.stderr.splitlines() if "Collected" in line)
    return int(line.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs="+", help="source trees to compare (each holds a backprop/ folder)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    args = parser.parse_args()
    print("| step | " + " | ".join(args.trees) + " |")
    print("|---|" + "---|" * len(args.trees))
    for case in args.cases:
        name, first, last = CASES[case]
        counts = [(instructions(tree, case, last) - instructions(tree, case, first)) / (last - first)
                  for tree in args.trees]
        print(f"| {name} | " + " | ".join(f"{c / 1000:,.1f} k" for c in counts) + " |", flush=True)


if __name__ == "__main__":
    main()
