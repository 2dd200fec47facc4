"""10. Overfitting, dropout, and early stopping on a held-out set."""
import os

import numpy as np

import backprop as bp

TITLE = "Overfitting, dropout and early stopping"
TEXT = ("Too little capacity underfits; a lot of capacity trained for long fits the noise. Holding out "
        "a validation set shows the moment the model starts to overfit: early stopping keeps the weights "
        "of the best validation epoch, and dropout makes the overfitting slower.")


def regression_model(units, layers, seed=0):
    bp.random.set_seed(seed)
    hidden = [bp.layers.Dense(units, activation="tanh") for _ in range(layers)]
    model = bp.Sequential(hidden + [bp.layers.Dense(1)])
    model.compile(optimizer=bp.optimizers.Adam(0.01), loss="mse")
    return model


def run(out="."):
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-1, 1, 14)).reshape(-1, 1).astype(np.float32)
    y = (np.sin(3 * x) + 0.25 * rng.normal(size=x.shape)).astype(np.float32)
    models = {"underfit: a straight line": regression_model(1, 0),
              "good: 8 tanh units": regression_model(8, 1),
              "overfit: 2 x 128 tanh units": regression_model(128, 2)}
    for model, epochs in zip(models.values(), (300, 300, 2500)):
        model.fit(x, y, batch_size=None, epochs=epochs, verbose=0)
    bp.plot.figure.save(bp.plot.fits(x, y, models), os.path.join(out, "fits.png"))

    (x_train, y_train), (x_test, y_test) = bp.datasets.digits()
    x_train, scaler = bp.datasets.standardize(x_train[:600])
    y_train = y_train[:600]
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Dense(256, activation="relu"), bp.layers.Dropout(0.3),
                           bp.layers.Dense(10)])
    model.compile(optimizer=bp.optimizers.Adam(1e-3), loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    stopper = bp.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
    history = model.fit(x_train, y_train, epochs=80, batch_size=32, validation_split=0.25, verbose=0,
                        callbacks=[stopper])
    bp.plot.figure.save(bp.plot.history(history, stopper), os.path.join(out, "early_stopping.png"))
    test_accuracy = model.evaluate(scaler.transform(x_test), y_test, verbose=0)[1]
    return {"best epoch": stopper.best_epoch + 1, "stopped at epoch": len(history.history["loss"]),
            "test accuracy with the restored weights": test_accuracy, "figures": ["fits.png", "early_stopping.png"]}


if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
