"""8. Adaptive optimizers compared on one non-convex surface."""
import os

import backprop as bp

TITLE = "Adaptive optimizers compared"
TEXT = ("SGD, SGD with momentum, Adagrad, RMSprop, Adadelta and Adam start from the same point on "
        "Himmelblau's function, which has four minima. Momentum and the adaptive methods move faster "
        "across the flat regions; where each one ends depends on its path.")


def run(out="."):
    figure, runs = bp.plot.optimizers(bp.landscape.himmelblau, start=(-0.5, -4.5), steps=150)
    bp.plot.figure.save(figure, os.path.join(out, "optimizers.png"))
    return {**{f"{name}: final loss": float(losses[-1]) for name, (_, losses) in runs.items()},
            "figures": ["optimizers.png"]}


if __name__ == "__main__":
    print(run())
