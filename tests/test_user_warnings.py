"""Every warning backprop gives points at the user's own line (the fit, compile or tape call), however deep
inside backprop it is raised, as Python 3.12's ``skip_file_prefixes`` would."""
import warnings

import numpy as np
import pytest

import backprop as bp

rng = np.random.default_rng(0)
X = rng.normal(size=(32, 3)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.float32)


def model(activation="sigmoid", **compile_args):
    bp.random.set_seed(0)
    net = bp.Sequential([bp.layers.Dense(1, activation=activation, input_shape=(3,))])
    net.compile(**{"optimizer": "sgd", "loss": "binary_crossentropy", **compile_args})
    return net


class DoubledMSE(bp.losses.MeanSquaredError):
    """Computes in Python around its kernel: a compiled step cannot replay it."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        return super().__call__(y_true, y_pred, sample_weight) * 2.0


def two_tapes():
    w = bp.Variable([1.0])
    with bp.GradientTape() as outer:
        with bp.GradientTape() as inner:
            y = w * w
        inner.gradient(y, [w])
    return outer


def missing_gradient():
    a, b = bp.Variable([1.0]), bp.Variable([2.0])
    bp.optimizers.SGD().apply_gradients([(np.ones(1), a), (None, b)])


def divergence():
    losses = [0.5, 40.0, 6e4]
    grow = bp.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(loss=losses[epoch]))
    model().fit(X, Y, epochs=3, verbose=0, callbacks=[grow])


CASES = {
    "missing monitor": (lambda: model().fit(X, Y, epochs=1, verbose=0, validation_split=0.25,
                                             callbacks=[bp.callbacks.ReduceLROnPlateau(monitor="val_acc")]),
                        "monitor='val_acc' is not in the logs"),
    "compiled fallback": (lambda: model(activation=None, loss=DoubledMSE(), jit_compile=True).fit(
                              X, Y, epochs=1, verbose=0), "training eagerly"),
    "logits to a probability loss": (lambda: model(activation=None).fit(X * 10, Y, epochs=1, verbose=0),
                                     "look like raw logits"),
    "sigmoid into a logits loss": (lambda: model(loss=bp.losses.BinaryCrossentropy(from_logits=True)),
                                   "would apply it a second time"),
    "missing gradient": (missing_gradient, "no gradient for"),
    "nested tapes": (two_tapes, "inside another recording tape"),
    "divergence": (divergence, "fit: the loss grew"),
    "divergence to NaN": (lambda: model(None, optimizer=bp.optimizers.SGD(1e6), loss="mse").fit(X * 100, Y, epochs=3,
                                                                                            verbose=0),
                          "fit: the loss became NaN or infinite"),
}


@pytest.mark.parametrize("case", CASES)
def test_the_warning_points_at_the_users_line(case):
    action, text = CASES[case]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
    ours = [w for w in caught if text in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert ours[0].filename == __file__
