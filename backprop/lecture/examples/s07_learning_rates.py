"""7. The learning rate: too small, good, too large."""
import os

import backprop as bp

TITLE = "Learning rates: too small, good, too large"
TEXT = ("The same valley, the same start, three learning rates. Too small crawls and is still far from "
        "the minimum after 60 steps; a good one arrives; too large overshoots further with every step "
        "(here: above 2 / curvature = 0.2) and diverges.")


def run(out="."):
    figure, runs = bp.plot.learning_rates(bp.landscape.bowl, rates=(0.01, 0.15, 0.205))
    bp.plot.figure.save(figure, os.path.join(out, "learning_rates.png"))
    numbers = {f"final loss, {label}": float(losses[-1]) for label, (_, losses) in runs.items()}
    return {**numbers, "figures": ["learning_rates.png"]}


if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
