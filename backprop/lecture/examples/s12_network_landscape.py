"""12. The loss landscape of a real network, with the path training took across it."""
import os

import numpy as np

import backprop as bp

TITLE = "A real network's loss landscape"
TEXT = ("A 2-16-16-1 network trained on the moons data. Its loss lives in 337 dimensions; this is a plane through "
        "the trained weights spanned by the two directions along which training moved most (principal "
        "components of the weights after each epoch, as in Li et al. 2018), with the training path projected "
        "on it. Away from the path the surface is not a bowl: the lecture's non-convex picture, measured.")


def run(out="."):
    x, y = bp.datasets.moons(300)
    model = bp.Sequential([bp.layers.Dense(16, activation="relu", input_shape=(2,)),
                           bp.layers.Dense(16, activation="relu"), bp.layers.Dense(1)])
    model.compile(optimizer=bp.optimizers.Adam(0.02), loss=bp.losses.BinaryCrossentropy(from_logits=True))
    trajectory = bp.landscape.Trajectory()
    model.fit(x, y.astype(np.float32), epochs=40, verbose=0, callbacks=[trajectory])
    figure = bp.plot.network_landscape(model, x, y.astype(np.float32), trajectory=trajectory.points)
    bp.plot.figure.save(figure, os.path.join(out, "network_landscape.png"))
    surface = bp.landscape.network_surface(model, x, y.astype(np.float32), resolution=15,
                                           trajectory=trajectory.points)
    return {"loss at the start of the path (projected on the plane)": surface.path_losses[0],
            "loss after 40 epochs": surface.path_losses[-1],
            "highest loss on the plane": float(surface.losses.max()), "figures": ["network_landscape.png"]}


if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
