"""3. A dense layer written by hand, and the built-in Dense: the same outputs."""
import numpy as np

import backprop as bp

TITLE = "A dense layer by hand vs the built-in Dense"
TEXT = ("A layer is weights plus a call: the hand-written layer creates W and b with add_weight and "
        "computes sigmoid(x W + b). Given the same weights, the built-in Dense (one fused op with one "
        "fused gradient) gives identical outputs.")


class MyDenseLayer(bp.layers.Layer):
    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.W = self.add_weight(shape=(input_dim, output_dim))
        self.b = self.add_weight(shape=(1, output_dim))

    def call(self, inputs):
        return bp.sigmoid(bp.matmul(inputs, self.W) + self.b)


def run(out="."):
    bp.random.set_seed(0)
    x = bp.random.normal((5, 2))
    mine = MyDenseLayer(2, 3)
    dense = bp.layers.Dense(3, activation="sigmoid")
    dense.build((None, 2))
    dense.set_weights([mine.W.numpy(), mine.b.numpy()[0]])
    difference = np.abs(mine(x).numpy() - dense(x).numpy()).max()
    return {"max |hand-written - Dense|": float(difference), "parameters": dense.count_params(), "figures": []}


if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
