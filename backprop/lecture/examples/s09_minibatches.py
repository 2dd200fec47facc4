"""9. Mini-batches: full batch vs batch 32 vs single examples."""
import os
import time

import numpy as np

import backprop as bp

TITLE = "Mini-batches"
TEXT = ("The gradient of a mini-batch is a noisy estimate of the full-batch gradient: the smaller the "
        "batch, the noisier the estimate but the more steps per epoch. Full batch takes one careful step "
        "per epoch, single examples take hundreds of noisy ones, batch 32 sits in between.")


def gradient_noise(model, x, y, batch_size, samples=50):
    """Mean distance between mini-batch gradients and the full-batch gradient, relative to its norm."""
    def gradient(xb, yb):
        with bp.GradientTape() as tape:
            loss = model.loss(yb, model(xb, training=True))
        return np.concatenate([g.numpy().ravel() for g in tape.gradient(loss, model.trainable_variables)])
    full = gradient(x, y)
    rng = np.random.default_rng(0)
    picks = [rng.choice(len(x), batch_size, replace=False) for _ in range(samples)]
    return float(np.mean([np.linalg.norm(gradient(x[i], y[i]) - full) for i in picks]) / np.linalg.norm(full))


def run(out="."):
    x, y = bp.datasets.moons(400, noise=0.2, seed=0)
    results = {}
    plt = bp.plot.figure.pyplot()
    figure, ax = plt.subplots(figsize=(6, 4))
    for batch_size in (None, 32, 1):
        bp.random.set_seed(0)
        model = bp.Sequential([bp.layers.Dense(16, activation="relu"), bp.layers.Dense(1)])
        model.compile(optimizer=bp.optimizers.SGD(0.1), loss=bp.losses.BinaryCrossentropy(from_logits=True))
        model(x[:1])
        noise = gradient_noise(model, x.astype(np.float32), y.astype(np.float32), batch_size or len(x))
        start = time.perf_counter()
        history = model.fit(x, y, batch_size=batch_size, epochs=20, verbose=0)
        seconds = (time.perf_counter() - start) / 20
        label = "full batch" if batch_size is None else f"batch {batch_size}"
        ax.plot(np.arange(1, 21), history.history["loss"], label=label)
        results[f"{label}: seconds per epoch"] = seconds
        results[f"{label}: relative gradient noise"] = noise
        results[f"{label}: final loss"] = history.history["loss"][-1]
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title("SGD, learning rate 0.1, by batch size")
    ax.grid(alpha=0.3)
    ax.legend()
    bp.plot.figure.save(figure, os.path.join(out, "minibatches.png"))
    return {**results, "figures": ["minibatches.png"]}


if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
