"""6. Gradient descent on a loss landscape: a single neuron's two weights, and the path they take."""
import os

import backprop as bp

TITLE = "Gradient descent on a loss landscape"
TEXT = ("The loss of a single neuron (two weights, no bias) on the standardized pass/fail data, drawn over "
        "its two weights. Gradient descent starts at a poor guess and follows the negative gradient "
        "downhill; each dot is one step.")


def run(out="."):
    x, y = bp.datasets.pass_fail(200, seed=0)
    x, _ = bp.datasets.standardize(x)
    loss = bp.landscape.logistic(x, y)
    path, losses = bp.landscape.path(bp.optimizers.SGD(learning_rate=1.0), loss, start=(-3.0, -2.5), steps=40)
    figure = bp.plot.loss_landscape(loss, ((-4, 6), (-4, 6)), paths={"gradient descent, lr = 1": path},
                                    resolution=60, title="binary cross-entropy over (w1, w2)")
    bp.plot.figure.save(figure, os.path.join(out, "landscape.png"))
    return {"loss at start": float(losses[0]), "loss after 40 steps": float(losses[-1]),
            "final w1": float(path[-1, 0]), "final w2": float(path[-1, 1]), "figures": ["landscape.png"]}


if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
