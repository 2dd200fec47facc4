"""4. "Will I pass this class?": a 2-3-1 network before and after training."""
import os

import numpy as np

import backprop as bp

TITLE = "Will I pass this class?"
TEXT = ("Two features (lectures attended, hours on the final project) and one hidden layer of 3 sigmoid "
        "units. Untrained, the network's answer for a student with 4 lectures and 5 project hours is "
        "arbitrary; after training on 200 students it has learned the curved boundary of the data.")


def run(out="."):
    x, y = bp.datasets.pass_fail(200, seed=0)
    x_scaled, scaler = bp.datasets.standardize(x)
    student = scaler.transform(np.array([[4.0, 5.0]]))
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Dense(3, activation="sigmoid"), bp.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=bp.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    untrained = model.predict(student)[0, 0]
    history = model.fit(x_scaled, y, epochs=300, batch_size=32, verbose=0)
    trained = model.predict(student)[0, 0]
    figure = bp.plot.decision_boundary(model, x, y, transform=scaler.transform,
                                       feature_names=("lectures attended", "hours on the final project"),
                                       title="will I pass? (trained 2-3-1 network)")
    figure.axes[0].scatter([4], [5], marker="*", s=250, color="gold", edgecolors="black", zorder=6)
    bp.plot.figure.save(figure, os.path.join(out, "pass_fail.png"))
    return {"untrained P(pass | 4 lectures, 5 hours)": float(untrained),
            "trained P(pass | 4 lectures, 5 hours)": float(trained),
            "training accuracy": history.history["accuracy"][-1], "figures": ["pass_fail.png"]}


if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
