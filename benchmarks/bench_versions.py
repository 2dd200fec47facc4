"""Did a change make a step slower? Time the same training steps in two source trees, alternating.

    git worktree add /tmp/before <revision>
    python benchmarks/bench_versions.py /tmp/before . --rounds 7

Two versions of one package cannot share a process, so each round runs every tree in a child
process, in alternating order; the table shows the median over rounds of each case's best-of-5
time, and the ratio before / after (> 1: the change made it faster).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

CASES = """
import json, sys, timeit
import numpy as np
import backprop as bp
rng = np.random.default_rng(0)

def mlp(batch):
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Dense(256, activation="relu"), bp.layers.Dense(128, activation="relu"),
                           bp.layers.Dense(10)])
    model.compile(optimizer="adam", loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, rng.normal(size=(batch, 784)).astype(np.float32), rng.integers(0, 10, batch)

def lecture():
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Dense(3, activation="sigmoid"), bp.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=bp.optimizers.SGD(0.1), loss="binary_crossentropy")
    return model, rng.normal(size=(32, 2)).astype(np.float32), (rng.random(32) > 0.5).astype(np.float32)

def tape_step(model, x, y):
    with bp.GradientTape() as tape:
        loss = model.loss(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply_gradients(zip(grads, model.trainable_variables))

results = {}
for name, (model, x, y), number in [("MLP step, batch 32", mlp(32), 100), ("MLP step, batch 128", mlp(128), 50),
                                    ("MLP step, batch 1024", mlp(1024), 10), ("lecture 2-3-1 step", lecture(), 2000)]:
    model.train_on_batch(x, y)
    results[name + " (train_on_batch)"] = min(timeit.repeat(lambda: model.train_on_batch(x, y), number=number, repeat=5)) / number
    results[name + " (tape loop)"] = min(timeit.repeat(lambda: tape_step(model, x, y), number=number, repeat=5)) / number
model, x, y = mlp(128)
x, y = rng.normal(size=(5000, 784)).astype(np.float32), rng.integers(0, 10, 5000)
results["fit, 5,000 examples, batch 128, 2 epochs"] = min(
    timeit.repeat(lambda: model.fit(x, y, batch_size=128, epochs=2, verbose=0), number=1, repeat=3))
print(json.dumps(results))
"""


def run(tree):
    env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
    out = subprocess.run([sys.executable, "-c", CASES], env=env, capture_output=True, text=True, timeout=600,
                         cwd=os.path.abspath(tree), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times = {args.before: [], args.after: []}
    for round_index in range(args.rounds):
        order = (args.before, args.after) if round_index % 2 == 0 else (args.after, args.before)
        for tree in order:
            times[tree].append(run(tree))
    print("| case | before | after | before / after |\n|---|---|---|---|")
    for case in times[args.before][0]:
        before = statistics.median(r[case] for r in times[args.before])
        after = statistics.median(r[case] for r in times[args.after])
        unit, scale = ("s", 1) if before > 0.1 else ("µs", 1e6)
        print(f"| {case} | {before * scale:,.1f} {unit} | {after * scale:,.1f} {unit} | {before / after:.2f} |")


if __name__ == "__main__":
    main()
