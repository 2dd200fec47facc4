"""10. Overfitting, and early stopping on a held-out validation set."""
import os

import numpy as np

import backprop as bp

TITLE = "Overfitting and early stopping"
TEXT = ("Too little capacity underfits; a lot of capacity trained for long fits the noise. Holding out "
        "a validation set shows the moment the model starts to overfit: the training loss keeps falling while "
        "the validation loss turns and climbs. Early stopping keeps the weights of the best validation epoch, "
        "and those weights are closer to the function behind the noisy points than the last ones.")


def noisy_sine(n, rng):
    x = rng.uniform(-1, 1, n).reshape(-1, 1).astype(np.float32)
    return x, (np.sin(3 * x) + 0.25 * rng.normal(size=x.shape)).astype(np.float32)


def regression_model(units, layers, seed=0, learning_rate=0.01):
    bp.random.set_seed(seed)
    hidden = [bp.layers.Dense(units, activation="tanh") for _ in range(layers)]
    model = bp.Sequential(hidden + [bp.layers.Dense(1)])
    model.compile(optimizer=bp.optimizers.Adam(learning_rate), loss="mse")
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

    rng = np.random.default_rng(2)
    x_train, y_train = noisy_sine(40, rng)  # half of them held out for validation
    x_new = np.linspace(-1, 1, 400, dtype=np.float32).reshape(-1, 1)
    y_new = np.sin(3 * x_new)  # the function itself, without the noise: what a fit should find
    model = regression_model(256, 2, learning_rate=0.002)
    stopper = bp.callbacks.EarlyStopping(monitor="val_loss", patience=1000, restore_best_weights=True)
    last = {}  # the weights of the last epoch, before early stopping puts the best ones back
    keep_last = bp.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: last.update(weights=model.get_weights()))
    history = model.fit(x_train, y_train, epochs=3000, batch_size=None, validation_split=0.5, verbose=0,
                        callbacks=[keep_last, stopper])
    figure = bp.plot.history(history, stopper)
    figure.axes[0].set_yscale("log")  # the climb after the best epoch is small next to the first epochs' losses
    bp.plot.figure.save(figure, os.path.join(out, "early_stopping.png"))
    validation = history.history["val_loss"]
    restored = model.evaluate(x_new, y_new, verbose=0)
    model.set_weights(last["weights"])
    return {"best epoch": stopper.best_epoch + 1, "stopped at epoch": len(validation),
            "validation loss at the best epoch": min(validation), "validation loss when stopped": validation[-1],
            "error to sin(3x), best weights": restored,
            "error to sin(3x), last weights": model.evaluate(x_new, y_new, verbose=0),
            "figures": ["fits.png", "early_stopping.png"]}

if __name__ == "__main__":
    from backprop.lecture.examples import show
    show(run())
