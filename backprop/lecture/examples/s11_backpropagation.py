"""11. Backpropagation laid out: the chain rule for one weight, and the graph it runs on."""
import os

import numpy as np

import backprop as bp

TITLE = "Backpropagation: the chain rule, path by path"
TEXT = ("The lecture's 1-1-1 network, J = (y - sigmoid(w2 sigmoid(w1 x)))^2, recorded on a tape. dJ/dw1 is the "
        "product of the local derivatives along the one path from J down to w1; each factor comes from its "
        "op's own backward function, and their product is the tape's gradient. The graph shows every value "
        "and, below it, the gradient of J with respect to it.")


def lecture_network():
    """(tape, J, (w1, w2), names): the network recorded on a persistent tape, in float64."""
    w1, w2 = bp.Variable(np.float64(0.5), name="w1"), bp.Variable(np.float64(-0.3), name="w2")
    x, y = bp.Tensor(np.float64(2.0)), bp.Tensor(np.float64(1.0))
    with bp.GradientTape(persistent=True) as tape:
        z1 = x * w1
        a1 = bp.sigmoid(z1)
        z2 = a1 * w2
        y_hat = bp.sigmoid(z2)
        J = bp.square(y - y_hat)
    return tape, J, (w1, w2), {J: "J", y_hat: "ŷ", z2: "z2", a1: "a1", z1: "z1", x: "x", y: "y"}


def run(out="."):
    tape, J, (w1, _), names = lecture_network()
    ledger = bp.explain.chain_rule(J, w1, tape, names=names)
    bp.plot.figure.save(bp.plot.graph(J, tape, names=names), os.path.join(out, "graph.png"))
    factors = {f"∂{upper}/∂{lower}": value for upper, lower, value in ledger.paths[0]}
    return {**factors, "∂J/∂w1, the product": ledger.total, "∂J/∂w1, the tape's gradient": ledger.tape_gradient,
            "figures": ["graph.png"]}


if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
