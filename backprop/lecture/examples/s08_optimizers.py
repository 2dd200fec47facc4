"""8. Adaptive optimizers compared on one non-convex surface."""
import os

import backprop as bp

TITLE = "Adaptive optimizers compared"
TEXT = ("SGD, SGD with momentum, Adagrad, RMSprop, Adadelta and Adam start from the same point, next to "
        "the flat local maximum of Himmelblau's function (four minima). The gradient there is tiny, so plain "
        "SGD hardly moves in 150 steps; momentum builds up speed, and the adaptive methods rescale the small "
        "gradient and escape - into different minima, depending on their paths.")


def run(out="."):
    figure, runs = bp.plot.optimizers(bp.landscape.himmelblau, start=(-0.3, -0.9), steps=150)
    bp.plot.figure.save(figure, os.path.join(out, "optimizers.png"))
    return {**{f"{name}: final loss": float(losses[-1]) for name, (_, losses) in runs.items()},
            "figures": ["optimizers.png"]}


if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
