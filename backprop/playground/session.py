"""One playground connection's training: a setup checked against bounds, the model it builds, epochs on
demand, and frames (epoch, losses, the output over a grid) for the page."""
import math
import time

import numpy as np

import backprop as bp

DATASETS = {"circle": lambda n, noise, seed: bp.datasets.circles(n, noise=noise * 0.5, seed=seed),
            "xor": lambda n, noise, seed: _xor(n, noise, seed),
            "moons": lambda n, noise, seed: bp.datasets.moons(n, noise=noise, seed=seed),
            "spiral": lambda n, noise, seed: bp.datasets.spirals(n, noise=noise, seed=seed),
            "gauss": lambda n, noise, seed: _gauss(n, noise, seed),
            "pass_fail": lambda n, noise, seed: bp.datasets.pass_fail(n, seed=seed)}
FEATURES = {"x1": lambda a, b: a, "x2": lambda a, b: b, "x1^2": lambda a, b: a * a, "x2^2": lambda a, b: b * b,
            "x1*x2": lambda a, b: a * b, "sin(x1)": lambda a, b: np.sin(a), "sin(x2)": lambda a, b: np.sin(b)}
OPTIMIZERS = ("sgd", "adam", "adamw", "adagrad", "rmsprop", "adadelta")
SPAN = 2.5  # the page shows standardised inputs in [-SPAN, SPAN]
LIMITS = {"layers": 8, "units": 64, "points": 10_000, "grid": 60}
DEFAULTS = {"dataset": "xor", "points": 400, "noise": 0.1, "test_ratio": 0.3, "features": ["x1", "x2"],
            "layers": [4, 4], "activation": "tanh", "optimizer": "adam", "learning_rate": 0.03, "batch_size": 16,
            "l2": 0.0, "dropout": 0.0, "seed": 0}


class SetupError(ValueError):
    """A setup outside the playground's bounds; the message names the field."""


def _xor(n, noise, seed):
    """The Playground's xor: quadrants kept a little apart from the axes, labels from the clean points."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    x += np.sign(x) * 0.15
    y = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(np.int64)
    return (x + 0.3 * noise * rng.normal(size=(n, 2))).astype(np.float32), y


def _gauss(n, noise, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 0.5 + 2 * noise, size=(n, 2)) + np.where(y[:, None] == 1, 1.5, -1.5)
    return x.astype(np.float32), y


def _number(setup, key, low, high, whole=False):
    value = setup[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high or (whole and int(value) != value):
        raise SetupError(f"{key} must be {'a whole number' if whole else 'a number'} in [{low}, {high}], got {value!r}")
    return int(value) if whole else float(value)


def checked(message):
    """The setup from a page message, every field bounded; unknown fields are an error."""
    if not isinstance(message, dict):
        raise SetupError("a setup must be a JSON object")
    unknown = sorted(set(message) - set(DEFAULTS) - {"type"})
    if unknown:
        raise SetupError(f"unknown setting(s): {', '.join(unknown)}")
    setup = {**DEFAULTS, **{k: v for k, v in message.items() if k != "type"}}
    if setup["dataset"] not in DATASETS:
        raise SetupError(f"dataset must be one of {', '.join(DATASETS)}, got {setup['dataset']!r}")
    layers = setup["layers"]
    if not isinstance(layers, list) or len(layers) > LIMITS["layers"]:
        raise SetupError(f"layers must be a list of at most {LIMITS['layers']} hidden layer sizes")
    for units in layers:
        if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= LIMITS["units"]:
            raise SetupError(f"each hidden layer needs 1 to {LIMITS['units']} units, got {units!r}")
    features = setup["features"]
    if not isinstance(features, list) or not features or any(f not in FEATURES for f in features):
        raise SetupError(f"features must be a non-empty list of {', '.join(FEATURES)}")
    if setup["activation"] not in bp.activations.ACTIVATIONS or setup["activation"] in ("softmax", "log_softmax"):
        raise SetupError(f"unknown activation {setup['activation']!r}")
    if setup["optimizer"] not in OPTIMIZERS:
        raise SetupError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
    setup["points"] = _number(setup, "points", 20, LIMITS["points"], whole=True)
    setup["batch_size"] = _number(setup, "batch_size", 1, 1000, whole=True)
    setup["seed"] = _number(setup, "seed", 0, 2**31 - 1, whole=True)
    for key, low, high in (("noise", 0, 1), ("test_ratio", 0.05, 0.9), ("learning_rate", 1e-6, 10), ("l2", 0, 1),
                           ("dropout", 0, 0.9)):
        setup[key] = _number(setup, key, low, high)
    return setup


class Session:
    """The model, data and progress of one connection's training."""

    def __init__(self, setup, grid=40):
        self.setup, self.grid = setup, grid
        x, y = DATASETS[setup["dataset"]](setup["points"], setup["noise"], setup["seed"])
        x = np.asarray(x, np.float64)
        self.raw_x = (x - x.mean(0)) / x.std(0).clip(1e-9)  # standardised: one view fits every dataset
        self.y = (np.asarray(y) > 0).astype(np.float32)
        n_test = max(1, int(round(len(self.y) * setup["test_ratio"])))
        order = np.random.default_rng(setup["seed"]).permutation(len(self.y))
        self.test_rows, self.train_rows = order[:n_test], order[n_test:]
        self.features = self.featurize(self.raw_x)
        self.model = self.build()
        self.epoch, self.history = 0, {"loss": [], "val_loss": []}
        span = np.linspace(-SPAN, SPAN, grid)
        a, b = np.meshgrid(span, span)
        self.grid_features = self.featurize(np.stack([a.ravel(), b.ravel()], axis=1))

    def featurize(self, raw):
        return np.stack([FEATURES[name](raw[:, 0], raw[:, 1]) for name in self.setup["features"]],
                        axis=1).astype(np.float32)

    def build(self):
        setup = self.setup
        bp.random.set_seed(setup["seed"])
        regularizer = bp.regularizers.L2(setup["l2"]) if setup["l2"] else None
        layers = [bp.layers.Input(shape=(len(setup["features"]),))]
        for units in setup["layers"]:
            layers.append(bp.layers.Dense(units, activation=setup["activation"], kernel_regularizer=regularizer))
            if setup["dropout"]:
                layers.append(bp.layers.Dropout(setup["dropout"]))
        layers.append(bp.layers.Dense(1))
        model = bp.Sequential(layers)
        model.compile(optimizer=bp.optimizers.get(setup["optimizer"], learning_rate=setup["learning_rate"]),
                      loss=bp.losses.BinaryCrossentropy(from_logits=True))
        return model

    def train(self, epochs=1, seconds=None):
        """Train ``epochs`` epochs, or as many as fit in ``seconds``; returns how many ran."""
        start, ran = time.perf_counter(), 0
        x, y = self.features, self.y
        while ran < epochs or (seconds is not None and time.perf_counter() - start < seconds):
            with np.errstate(all="ignore"):
                history = self.model.fit(x[self.train_rows], y[self.train_rows], epochs=1, verbose=0,
                                         batch_size=self.setup["batch_size"],
                                         validation_data=(x[self.test_rows], y[self.test_rows]), allow_nonfinite=True)
            self.epoch += 1
            ran += 1
            for key in self.history:
                self.history[key].append(history.history[key][0])
            if seconds is None and ran >= epochs:
                break
        return ran

    def frame(self):
        """What the page draws: epoch, losses and the output probability over the grid."""
        with np.errstate(all="ignore"):
            logits = self.model.predict(self.grid_features, batch_size=4096)[:, 0]
        probability = 1 / (1 + np.exp(-np.clip(logits, -60, 60)))
        finite = lambda v: v if math.isfinite(v) else None  # noqa: E731 - JSON has no NaN
        return {"type": "frame", "epoch": self.epoch,
                "train_loss": finite(self.history["loss"][-1]) if self.history["loss"] else None,
                "test_loss": finite(self.history["val_loss"][-1]) if self.history["val_loss"] else None,
                "grid": self.grid, "boundary": [round(float(p), 3) for p in probability]}

    def code(self):
        """Python that rebuilds this network and repeats its training so far on backprop, exactly."""
        setup = self.setup
        regularizer = f", kernel_regularizer=bp.regularizers.L2({setup['l2']!r})" if setup["l2"] else ""
        layers = [f"    bp.layers.Input(shape=({len(setup['features'])},)),"]
        for units in setup["layers"]:
            layers.append(f"    bp.layers.Dense({units}, activation={setup['activation']!r}{regularizer}),")
            if setup["dropout"]:
                layers.append(f"    bp.layers.Dropout({setup['dropout']!r}),")
        layers.append("    bp.layers.Dense(1),")
        settings = {k: setup[k] for k in DEFAULTS}
        return "\n".join([
            "import backprop as bp",
            "from backprop.playground.session import Session",
            "",
            "# the data, features and train/test split the page shows",
            f"session = Session({settings!r})",
            "x, y = session.features, session.y",
            "train, test = session.train_rows, session.test_rows",
            "",
            f"bp.random.set_seed({setup['seed']})",
            "model = bp.Sequential([", *layers, "])",
            f"model.compile(optimizer=bp.optimizers.get({setup['optimizer']!r}, "
            f"learning_rate={setup['learning_rate']!r}),",
            "              loss=bp.losses.BinaryCrossentropy(from_logits=True))",
            f"for epoch in range({self.epoch}):  # the page trains one epoch at a time",
            f"    model.fit(x[train], y[train], epochs=1, batch_size={setup['batch_size']}, verbose=0,",
            "              validation_data=(x[test], y[test]))",
        ]) + "\n"

    def model_file(self):
        """The trained model as the bytes of a .bp file (bp.models.load_model opens it)."""
        import os
        import tempfile
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "playground.bp")
            self.model.save(path)
            with open(path, "rb") as handle:
                return handle.read()

    def points(self):
        return {"type": "points", "span": SPAN, "x": np.round(self.raw_x, 3).tolist(), "y": self.y.astype(int).tolist(),
                "test": sorted(int(i) for i in self.test_rows)}
