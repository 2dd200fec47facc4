"""1. The perceptron: z = w0 + x . W, y = sigmoid(z), and the gradients by the chain rule."""
import os

import backprop as bp

TITLE = "The perceptron"
TEXT = ("A single neuron multiplies its inputs by weights, adds a bias w0 and squashes the sum with a "
        "non-linearity. With w0 = 1, W = (3, -2) and x = (-1, 2) the lecture computes z = -6 and "
        "y = sigmoid(-6) = 0.002. The line z = 0 splits the plane: above it y > 0.5, below y < 0.5.")


def run(out="."):
    x = bp.tensor([[-1.0, 2.0]])
    w = bp.Variable([[3.0], [-2.0]])
    w0 = bp.Variable([1.0])
    with bp.GradientTape() as tape:
        z = bp.matmul(x, w) + w0
        y = bp.sigmoid(z)
    dw, dw0 = tape.gradient(y, [w, w0])
    bp.plot.figure.save(bp.plot.perceptron(1.0, [3.0, -2.0], point=(-1, 2)), os.path.join(out, "perceptron.png"))
    return {"z": z.numpy().item(), "y": y.numpy().item(), "dy/dw1": dw.numpy()[0, 0].item(),
            "dy/dw2": dw.numpy()[1, 0].item(), "dy/dw0": dw0.numpy()[0].item(), "figures": ["perceptron.png"]}


if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
