"""5. Losses: binary cross-entropy vs mean squared error on the same predictions."""
import os

import numpy as np

import backprop as bp

TITLE = "Losses: cross-entropy vs mean squared error"
TEXT = ("The empirical loss is the mean over examples. For the same predicted probabilities, "
        "cross-entropy punishes a confident wrong answer without bound, while the squared error never "
        "exceeds 1 - so its gradient all but vanishes exactly where the model is most wrong.")


def run(out="."):
    y_true = np.array([[1.0], [0.0], [1.0], [0.0]])
    y_pred = np.array([[0.9], [0.1], [0.2], [0.95]])
    cross_entropy = bp.losses.BinaryCrossentropy()(y_true, y_pred).numpy().item()
    squared_error = bp.losses.MeanSquaredError()(y_true, y_pred).numpy().item()
    p = np.linspace(0.001, 0.999, 400)
    plt = bp.plot.figure.pyplot()
    figure, ax = plt.subplots(figsize=(6, 4))
    ax.plot(p, -np.log(p), label="cross-entropy, true label 1")
    ax.plot(p, (1 - p) ** 2, label="squared error, true label 1")
    ax.set_xlabel("predicted probability of class 1")
    ax.set_ylabel("loss for one example")
    ax.set_ylim(0, 5)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("the loss of one example with label 1")
    bp.plot.figure.save(figure, os.path.join(out, "losses.png"))
    return {"binary cross-entropy": cross_entropy, "mean squared error": squared_error, "figures": ["losses.png"]}


if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
