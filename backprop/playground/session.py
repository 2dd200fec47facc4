"""One playground connection's training: a setup checked against bounds, the model it builds, epochs on
demand with optional early stopping, and frames (losses, the output and every hidden unit over a grid,
the weights) for the page."""
import base64
import math
import pprint
import threading
import time

import numpy as np

import backprop as bp
from backprop.datasets import csv_reader
from backprop.playground import data
from backprop.saving.model_file import model_bytes

FEATURES = {"x1": lambda a, b: a, "x2": lambda a, b: b, "x1^2": lambda a, b: a * a, "x2^2": lambda a, b: b * b,
            "x1*x2": lambda a, b: a * b, "sin(x1)": lambda a, b: np.sin(a), "sin(x2)": lambda a, b: np.sin(b)}
OPTIMIZERS = ("sgd", "adam", "adamw", "adagrad", "rmsprop", "adadelta")
LOSSES = {"classification": ("bce", "mse"), "regression": ("mse",)}
REGULARIZERS = {"none": None, "l1": bp.regularizers.L1, "l2": bp.regularizers.L2}
SPAN = 2.5  # the page shows standardised inputs in [-SPAN, SPAN]
VALIDATION_SPLIT = 0.2  # of the training points, when early stopping is on (as the lecture says: never the test set)
GRID, THUMBNAIL = 40, 20  # cells across the output's view and each hidden unit's thumbnail
LIMITS = {"layers": 8, "units": 64, "points": 10_000, "upload_bytes": 5 << 20}
DEFAULTS = {"problem": "classification", "dataset": "xor", "points": 400, "noise": 0.1, "test_ratio": 0.3,
            "features": ["x1", "x2"], "layers": [4, 4], "activation": "tanh", "loss": "bce", "optimizer": "adam",
            "learning_rate": 0.03, "batch_size": 16, "regularization": "none", "regularization_rate": 0.001,
            "dropout": 0.0, "early_stopping": False, "patience": 20, "seed": 0}


class SetupError(ValueError):
    """A setup outside the playground's bounds; the message names the field."""


def _number(setup, key, low, high, whole=False):
    value = setup[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high \
            or (whole and int(value) != value):  # a 400-digit integer is compared, never made a float
        raise SetupError(f"{key} must be {'a whole number' if whole else 'a number'} in [{low}, {high}], got {value!r}")
    return int(value) if whole else float(value)


def _one_of(setup, key, choices):
    if not isinstance(setup[key], str) or setup[key] not in choices:
        raise SetupError(f"{key} must be one of {', '.join(choices)}, got {setup[key]!r}")


def checked(message):
    """The setup from a page message, every field bounded; unknown fields are an error."""
    if not isinstance(message, dict):
        raise SetupError("a setup must be a JSON object")
    unknown = sorted(set(message) - set(DEFAULTS) - {"type"})
    if unknown:
        raise SetupError(f"unknown setting(s): {', '.join(unknown)}")
    setup = {**DEFAULTS, **{k: v for k, v in message.items() if k != "type"}}
    _one_of(setup, "problem", tuple(LOSSES))
    _one_of(setup, "dataset", (*data.DATASETS[setup["problem"]], "csv"))
    layers = setup["layers"]
    if not isinstance(layers, list) or len(layers) > LIMITS["layers"]:
        raise SetupError(f"layers must be a list of at most {LIMITS['layers']} hidden layer sizes")
    for units in layers:
        if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= LIMITS["units"]:
            raise SetupError(f"each hidden layer needs 1 to {LIMITS['units']} units, got {units!r}")
    features = setup["features"]
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features) \
            or any(f not in FEATURES for f in features) or len(set(features)) != len(features):
        raise SetupError(f"features must be a non-empty list of distinct names from {', '.join(FEATURES)}")
    if not isinstance(setup["activation"], str) or setup["activation"] not in bp.activations.ACTIVATIONS \
            or setup["activation"] in ("softmax", "log_softmax"):
        raise SetupError(f"unknown activation {setup['activation']!r}")
    _one_of(setup, "loss", LOSSES[setup["problem"]])
    _one_of(setup, "optimizer", OPTIMIZERS)
    _one_of(setup, "regularization", tuple(REGULARIZERS))
    if not isinstance(setup["early_stopping"], bool):
        raise SetupError(f"early_stopping must be true or false, got {setup['early_stopping']!r}")
    for key, low, high in (("points", 20, LIMITS["points"]), ("batch_size", 1, 1000), ("patience", 1, 1000),
                           ("seed", 0, 2**31 - 1)):
        setup[key] = _number(setup, key, low, high, whole=True)
    for key, low, high in (("noise", 0, 1), ("test_ratio", 0.05, 0.9), ("learning_rate", 1e-6, 10),
                           ("regularization_rate", 0, 1), ("dropout", 0, 0.9)):
        setup[key] = _number(setup, key, low, high)
    return setup


def read_upload(name, text, problem=None):
    """(x, y) from an uploaded CSV: two feature columns and a target (the last), a header optional.
    Classification needs exactly two classes; a regression target is standardised; without a ``problem``
    the file is only checked (y is then its target as read)."""
    if not isinstance(name, str) or not isinstance(text, str) or not 0 < len(name) <= 255:
        raise SetupError("an upload needs a file name (at most 255 characters) and its text")
    try:
        (name + text).encode("utf-8")
    except UnicodeEncodeError:
        raise SetupError("the upload's name or text is not valid Unicode (a lone surrogate)") from None
    if len(text.encode()) > LIMITS["upload_bytes"]:
        raise SetupError(f"{name}: {len(text.encode()) / 2**20:.1f} MB; a CSV may have at most 5 MB")
    try:
        table = csv_reader.load_csv(name, text=text, task=problem or "auto")
    except (csv_reader.DataError, ValueError) as problem_found:
        raise SetupError(str(problem_found)) from None
    if table.x.shape[1] != 2:
        raise SetupError(f"{name}: {table.x.shape[1]} feature columns; the playground takes 2 and a target (the last)")
    if not 20 <= len(table.y) <= LIMITS["points"]:
        raise SetupError(f"{name}: {len(table.y)} rows; the playground takes 20 to {LIMITS['points']}")
    described = {"columns": table.feature_names, "target": table.target}
    if problem is None:
        return table.x, table.y, described
    if problem == "classification":
        values = np.unique(table.y)
        if len(values) != 2:
            raise SetupError(f"{name}: the target has {len(values)} classes; classification here "
                             "needs exactly 2 (or choose regression)")
        described["classes"] = [table.classes[int(v)] for v in values] if table.classes else [str(v) for v in values]
        return table.x, (table.y == table.y.max()).astype(np.float32), described
    y = table.y.astype(np.float64)
    described["target_scale"] = [float(y.mean()), max(float(y.std()), 1e-12)]
    return table.x, ((y - described["target_scale"][0]) / described["target_scale"][1]).astype(np.float32), described


def _bytes(values):
    """Values in [0, 1] as base64 of one byte each: the page's colour scale, a quarter of JSON's size."""
    return base64.b64encode(np.round(np.clip(values, 0, 1) * 255).astype(np.uint8).tobytes()).decode()


def _unit_colours(outputs):
    """Each column of ``outputs`` scaled by its largest magnitude to [0, 1] (0.5 is zero)."""
    scale = np.abs(outputs).max(axis=0).clip(1e-12)
    return (outputs / scale + 1) / 2


class Call:
    """A call of a backprop function by its dotted name, kept as data so that one description both makes
    the object (``make``) and shows the code that makes it (``source``)."""

    def __init__(self, name, *args, **kwargs):
        self.name, self.args, self.kwargs = name, args, kwargs

    def make(self):
        function = bp
        for part in self.name.split("."):
            function = getattr(function, part)
        made = lambda value: value.make() if isinstance(value, Call) else value  # noqa: E731
        return function(*map(made, self.args), **{key: made(value) for key, value in self.kwargs.items()})

    def source(self):
        shown = lambda value: value.source() if isinstance(value, Call) else repr(value)  # noqa: E731
        arguments = [*map(shown, self.args), *(f"{key}={shown(value)}" for key, value in self.kwargs.items())]
        return f"bp.{self.name}({', '.join(arguments)})"


class Session:
    """The model, data and progress of one connection's training; ``upload`` is (name, text) of a CSV."""

    def __init__(self, setup, upload=None):
        self.setup = setup
        self.cancelled = threading.Event()  # set from the server's thread when the tab goes: training stops
        self.interrupted = threading.Event()  # Pause during an epoch: the epoch is undone, training stops
        self.stream = bp.random.Stream()  # this page's random numbers, apart from every other page's
        if setup["dataset"] == "csv":
            if upload is None:
                raise SetupError("upload a CSV file first")
            x, y, self.described = read_upload(*upload, setup["problem"])
        else:
            x, y = data.DATASETS[setup["problem"]][setup["dataset"]](setup["points"], setup["noise"], setup["seed"])
            self.described = {"columns": ["x1", "x2"], "target": "label" if setup["problem"] == "classification"
                              else "target", "classes": ["0", "1"], "target_scale": [0.0, 1.0]}
        self.x = np.asarray(x, np.float64)  # as the data has them: what a downloaded model takes
        self.shift, self.scale = self.x.mean(0), self.x.std(0).clip(1e-9)
        self.raw_x = (self.x - self.shift) / self.scale  # standardised: one view fits every dataset
        self.y = np.asarray(y, np.float32)
        n_test = max(1, round(len(self.y) * setup["test_ratio"]))
        order = np.random.default_rng(setup["seed"]).permutation(len(self.y))
        self.test_rows, self.train_rows = order[:n_test], order[n_test:]
        self.validation_rows = order[:0]  # early stopping watches these: a part of the training points, never test
        if setup["early_stopping"]:
            n_validation = max(1, round(len(self.train_rows) * VALIDATION_SPLIT))
            self.validation_rows, self.train_rows = self.train_rows[:n_validation], self.train_rows[n_validation:]
        self.features = self.featurize(self.raw_x)
        self.model = self.build()
        self.epoch, self.stopped_at, self.shown = 0, None, 0  # shown: epochs whose losses a frame has carried
        self.history = {"loss": [], "validation_loss": [], "test_loss": []}
        span = np.linspace(-SPAN, SPAN, GRID)
        a, b = np.meshgrid(span, span)
        self.grid_raw = np.stack([a.ravel(), b.ravel()], axis=1)
        self.grid_features = self.featurize(self.grid_raw)

    def featurize(self, raw):
        return np.stack([FEATURES[name](raw[:, 0], raw[:, 1]) for name in self.setup["features"]],
                        axis=1).astype(np.float32)

    def _layers(self):
        """The network as calls: ``build`` makes them, the Code panel shows their source."""
        setup = self.setup
        rate, kind = setup["regularization_rate"], setup["regularization"]
        regularizer = {"kernel_regularizer": Call(f"regularizers.{kind.upper()}", rate)} if kind != "none" and rate else {}
        calls = [Call("layers.Input", shape=(len(setup["features"]),))]
        for units in setup["layers"]:
            calls.append(Call("layers.Dense", units, activation=setup["activation"], **regularizer))
            if setup["dropout"]:
                calls.append(Call("layers.Dropout", setup["dropout"]))
        calls.append(Call("layers.Dense", 1, activation="sigmoid") if self._sigmoid_output else Call("layers.Dense", 1))
        return calls

    @property
    def _sigmoid_output(self):
        return self.setup["problem"] == "classification" and self.setup["loss"] == "mse"

    def _loss(self):
        return Call("losses.BinaryCrossentropy", from_logits=True) if self.setup["loss"] == "bce" \
            else Call("losses.MeanSquaredError")

    def _optimizer(self):
        return Call("optimizers.get", self.setup["optimizer"], learning_rate=self.setup["learning_rate"])

    def build(self):
        with bp.random.using(self.stream):  # this page's own stream: another tab building meanwhile cannot move it
            bp.random.set_seed(self.setup["seed"])
            model = bp.Sequential([call.make() for call in self._layers()])
        model.compile(optimizer=self._optimizer().make(), loss=self._loss().make())
        return model

    def train(self, epochs=1, seconds=None):
        """Train ``epochs`` epochs, or as many as fit in ``seconds``, until early stopping; returns how many ran."""
        start, ran = time.perf_counter(), 0
        x, y, train, test = self.features, self.y, self.train_rows, self.test_rows
        watch = bp.callbacks.LambdaCallback(on_train_batch_end=self._stop_if_cancelled)
        try:
            while self.stopped_at is None and not self.cancelled.is_set() and not self.interrupted.is_set() and \
                    (ran < epochs or (seconds is not None and time.perf_counter() - start < seconds)):
                before = self._snapshot()
                with np.errstate(all="ignore"):
                    history = self.model.fit(x[train], y[train], epochs=1, verbose=0,
                                             batch_size=self.setup["batch_size"], allow_nonfinite=True,
                                             callbacks=[watch])
                    if self.cancelled.is_set() or self.interrupted.is_set():
                        self._restore(before)  # a paused epoch never happened: the Code panel still repeats it
                        break
                    test_loss = self._loss_on(test)
                    validation_loss = self._loss_on(self.validation_rows) if len(self.validation_rows) else None
                self._record(history, validation_loss, test_loss)
                ran += 1
        finally:
            self.interrupted.clear()
        return ran

    def _loss_on(self, rows):
        return float(self.model.evaluate(self.features[rows], self.y[rows], batch_size=len(rows), verbose=0))

    def _record(self, history, validation_loss, test_loss):
        self.epoch += 1
        self.history["loss"].append(history.history["loss"][0])
        self.history["validation_loss"].append(validation_loss)
        self.history["test_loss"].append(test_loss)
        self._check_early_stopping()

    def _snapshot(self):
        """What an epoch changes: weights, optimizer state, the model's random stream (Dropout, shuffling)."""
        return (self.model.get_weights(), self.model.optimizer.get_state(),
                self.model.random_generator.bit_generator.state)

    def _restore(self, snapshot):
        weights, optimizer_state, random_state = snapshot
        self.model.set_weights(weights)
        self.model.optimizer.set_state(optimizer_state, self.model.parameters)
        self.model.random_generator.bit_generator.state = random_state

    def _stop_if_cancelled(self, batch, logs=None):
        if self.cancelled.is_set() or self.interrupted.is_set():
            self.model.stop_training = True

    @property
    def best_epoch(self):
        """The epoch (counted from 1) with the lowest finite loss on what early stopping watches (the
        validation split; the test points when early stopping is off), or None."""
        watched = "validation_loss" if self.setup["early_stopping"] else "test_loss"
        losses = np.array(self.history[watched], dtype=np.float64)
        finite = np.isfinite(losses)
        return int(np.argmin(np.where(finite, losses, np.inf))) + 1 if finite.any() else None

    def _check_early_stopping(self):
        """Keras' rule: stop when the validation loss has not improved for ``patience`` epochs."""
        if self.setup["early_stopping"] and self.epoch - (self.best_epoch or 0) >= self.setup["patience"]:
            self.stopped_at = self.epoch

    def _outputs(self, inputs):
        """Each hidden Dense layer's outputs and the model's output for ``inputs``, in inference mode."""
        hidden = []
        with bp.no_grad(), np.errstate(all="ignore"):
            value = bp.Tensor(inputs)
            for layer in self.model.layers:
                value = layer(value, training=False)
                if isinstance(layer, bp.layers.Dense):
                    hidden.append(value.numpy())
        return hidden[:-1], hidden[-1][:, 0]

    def colour(self, output):
        """The output as the page's colour scale: class 1's probability, or the target's range."""
        if self.setup["problem"] == "regression":
            low, high = float(self.y.min()), float(self.y.max())
            return (output - low) / max(high - low, 1e-12)
        return output if self._sigmoid_output else 1 / (1 + np.exp(-np.clip(output, -60, 60)))

    def frame(self):
        """What the page draws: epoch, the losses of the epochs since the last frame, the best and stopping
        epochs, the output over the grid, each hidden unit's output as a thumbnail (its own scale) and the
        weights of every link."""
        hidden, output = self._outputs(self.grid_features)
        step = GRID // THUMBNAIL
        thumbnail = np.zeros((GRID, GRID), bool)
        thumbnail[::step, ::step] = True
        finite = lambda v: v if math.isfinite(v) else None  # noqa: E731 - JSON has no NaN
        kernels = [layer.kernel.numpy() for layer in self.model.layers if isinstance(layer, bp.layers.Dense)]
        first, self.shown = self.shown, self.epoch
        return {"type": "frame", "epoch": self.epoch, "first_epoch": first + 1,
                "train_losses": [finite(v) for v in self.history["loss"][first:]],
                "validation_losses": [None if v is None else finite(v) for v in self.history["validation_loss"][first:]],
                "test_losses": [finite(v) for v in self.history["test_loss"][first:]],
                "train_loss": finite(self.history["loss"][-1]) if self.history["loss"] else None,
                "test_loss": finite(self.history["test_loss"][-1]) if self.history["test_loss"] else None,
                "best_epoch": self.best_epoch, "stopped_at": self.stopped_at,
                "grid": GRID, "boundary": _bytes(np.nan_to_num(self.colour(output), nan=0.5)),
                "thumbnail": THUMBNAIL,
                "units": [[_bytes(column) for column in np.nan_to_num(_unit_colours(h[thumbnail.ravel()])).T]
                          for h in hidden],
                "weights": [np.nan_to_num(np.round(k.astype(np.float64), 3)).tolist() for k in kernels]}

    def points(self):
        """The data (colours on the page's scale), and each input feature over the thumbnail grid."""
        raw = self.grid_raw.reshape(GRID, GRID, 2)[::GRID // THUMBNAIL, ::GRID // THUMBNAIL].reshape(-1, 2)
        return {"type": "points", "span": SPAN, "problem": self.setup["problem"],
                "x": np.round(self.raw_x, 3).tolist(), "y": np.round(self.colour_of_targets(), 3).tolist(),
                "test": sorted(int(i) for i in self.test_rows), "features": self.setup["features"],
                "thumbnail": THUMBNAIL,
                "feature_maps": [_bytes(column) for column in _unit_colours(self.featurize(raw).astype(np.float64)).T]}

    def colour_of_targets(self):
        if self.setup["problem"] == "regression":
            return self.colour(self.y.astype(np.float64))
        return self.y

    def code(self, upload_name=None):
        """Python that rebuilds this network and repeats its training so far on backprop, exactly."""
        setup = self.setup
        settings = {k: setup[k] for k in DEFAULTS}
        settings = pprint.pformat(settings, width=88, sort_dicts=False).replace("\n", "\n" + " " * 17)
        data_line = f"session = Session({settings})"
        if setup["dataset"] == "csv":
            name = upload_name or "data.csv"
            data_line = (f"session = Session({settings},\n                  "
                         f"upload=({name!r}, open({name!r}, encoding='utf-8').read()))")
        stopping = []
        if self.stopped_at is not None:
            stopping = [f"# early stopping (patience {setup['patience']}) stopped the page after epoch "
                        f"{self.stopped_at}; the best validation loss was at epoch {self.best_epoch}"]
        return "\n".join([
            "import backprop as bp",
            "from backprop.playground.session import Session",
            "",
            "# the data (inputs standardised), features and train/test split the page shows",
            data_line,
            "x, y = session.features, session.y",
            "train, test = session.train_rows, session.test_rows"
            + ("  # (early stopping watched session.validation_rows, split off the training points)"
               if setup["early_stopping"] else ""),
            "",
            f"bp.random.set_seed({setup['seed']})",
            "model = bp.Sequential([", *(f"    {call.source()}," for call in self._layers()), "])",
            f"model.compile(optimizer={self._optimizer().source()},",
            f"              loss={self._loss().source()})",
            *stopping,
            f"for epoch in range({self.epoch}):  # the page trains one epoch at a time",
            f"    model.fit(x[train], y[train], epochs=1, batch_size={setup['batch_size']}, verbose=0)",
            'print("test loss", model.evaluate(x[test], y[test], batch_size=len(test), verbose=0))',
        ]) + "\n"

    def model_file(self):
        """The trained model as the bytes of a .bp file (bp.models.load_model opens it); no disk is touched. It
        takes the data's two columns as they are: the page's standardisation and features are its first layer,
        and it carries the preprocessing `backprop predict` needs (column names, classes, target scale)."""
        return model_bytes(self.downloadable())

    def downloadable(self):
        """The trained network behind a TwoInputFeatures layer, compiled as the page's, with its preprocessing."""
        setup, described = self.setup, self.described
        features = bp.layers.TwoInputFeatures(setup["features"], self.shift.tolist(), self.scale.tolist())
        model = bp.Sequential([bp.layers.Input(shape=(2,)), features, *self.model.layers])
        model.compile(optimizer=self._optimizer().make(), loss=self._loss().make())
        classification = setup["problem"] == "classification"
        model.preprocessing = {
            "columns": [{"name": name, "kind": "numeric", "shift": 0.0, "scale": 1.0, "fill": float(mean)}
                        for name, mean in zip(described["columns"], self.shift)],
            "target": described["target"], "task": setup["problem"],
            "classes": described["classes"] if classification else None,
            "target_scale": None if classification else described["target_scale"],
            "unseen": "error", "positions": [0, 1], "width": 3, "missing": "error"}
        return model
