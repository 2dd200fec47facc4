"""13. Choosing the learning rate: the range test, the three regimes, and a diverging run explained."""
import os

import numpy as np

import backprop as bp

TITLE = "Finding a learning rate, and reading a divergence"
TEXT = ("The learning-rate range test raises the rate every batch of one short run and watches the loss; the "
        "suggestion is where it falls fastest. A sweep of full runs then shows the lecture's three regimes: too "
        "small is stuck, a good rate converges, too large diverges, and the diagnosis says why and what next.")


def build(rate):
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Dense(16, activation="relu", input_shape=(2,)), bp.layers.Dense(1)])
    model.compile(optimizer=bp.optimizers.SGD(rate, momentum=0.5), loss=bp.losses.BinaryCrossentropy(from_logits=True))
    return model


def run(out="."):
    x, y = bp.datasets.moons(300)
    y = y.astype(np.float32)
    curve = bp.tools.find_learning_rate(build(0.01), x, y)
    bp.plot.figure.save(curve.plot(), os.path.join(out, "lr_finder.png"))
    sweep = bp.tools.learning_rate_sweep(build, x, y, rates=(1e-5, curve.suggestion, 300.0), epochs=8)
    regimes = {f"regime at learning rate {r.learning_rate:.2g}": r.regime for r in sweep}
    diverged = sweep[-1]
    diagnosis = bp.tools.diagnose_divergence(diverged.losses, diverged.learning_rate, curve.suggestion,
                                             initial=diverged.initial)
    return {"suggested learning rate": curve.suggestion, **regimes,
            "diagnosis of the diverged run": diagnosis or "(the run did not diverge)", "figures": ["lr_finder.png"]}


if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
