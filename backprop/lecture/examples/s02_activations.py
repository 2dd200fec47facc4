"""2. Activation functions, and why non-linearity matters."""
import os

import backprop as bp

TITLE = "Activation functions and non-linearity"
TEXT = ("Sigmoid, tanh and ReLU with their derivatives (computed by the tape). Without a non-linearity a "
        "stack of layers is still one linear map: on the circles data it can only draw a straight line, "
        "while the same network with ReLU bends its boundary around the inner class.")


def run(out="."):
    bp.plot.figure.save(bp.plot.activation_functions(["sigmoid", "tanh", "relu"]), os.path.join(out, "activations.png"))
    x, y = bp.datasets.circles(300, noise=0.08, seed=0)
    accuracy = {}
    for activation in ("linear", "relu"):
        bp.random.set_seed(0)
        model = bp.Sequential([bp.layers.Dense(16, activation=activation), bp.layers.Dense(16, activation=activation),
                               bp.layers.Dense(1)])
        model.compile(optimizer=bp.optimizers.Adam(0.02), loss=bp.losses.BinaryCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        model.fit(x, y, epochs=60, batch_size=32, verbose=0)
        accuracy[activation] = model.evaluate(x, y, verbose=0)[1]
        figure = bp.plot.decision_boundary(model, x, y, title=f"{activation} network: accuracy {accuracy[activation]:.2f}")
        bp.plot.figure.save(figure, os.path.join(out, f"boundary_{activation}.png"))
    return {"linear network accuracy": accuracy["linear"], "ReLU network accuracy": accuracy["relu"],
            "figures": ["activations.png", "boundary_linear.png", "boundary_relu.png"]}


if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
