"""A training run, as the command line does it: data -> scaled features -> MLP -> fit -> run folder.

The run folder is written into a temporary directory beside the target and renamed at the end,
so an interrupted or failed run never leaves a half-written folder behind.
"""
import csv
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field

import numpy

import backprop as bp
from backprop.datasets import csv_reader

ACTIVATIONS = ["relu", "tanh", "sigmoid", "elu", "gelu", "leaky_relu", "swish", "softplus"]
PREPROCESSING_FILE = "preprocessing.json"


@dataclass
class RunConfig:
    data: str = "digits"
    target: str = None
    labels: str = None  # IDX labels file, when data is an IDX images file
    task: str = "auto"
    layers: list = field(default_factory=lambda: [256, 128])
    activation: str = "relu"
    dropout: float = 0.2
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 60
    patience: int = 10
    val_split: float = 0.2
    test_split: float = 0.2
    seed: int = 0
    out: str = None
    plots: bool = True


@dataclass
class Dataset:
    x_train: numpy.ndarray
    y_train: numpy.ndarray
    x_test: numpy.ndarray
    y_test: numpy.ndarray
    feature_names: list
    task: str
    classes: list = None
    target: str = None


class NonFiniteLoss(RuntimeError):
    pass


def load_data(config):
    """The named bundled/toy dataset or the user's CSV/IDX file, split into train and test."""
    name = config.data
    if name in bp.datasets.BUNDLED:
        (x_train, y_train), (x_test, y_test) = bp.datasets.BUNDLED[name](test_size=config.test_split, seed=config.seed)
        return Dataset(x_train, y_train, x_test, y_test, [f"pixel_{i}" for i in range(x_train.shape[1])],
                       "classification", [str(c) for c in range(10)], "digit")
    if name in bp.datasets.TOYS:
        x, y = bp.datasets.TOYS[name](seed=config.seed) if name != "pass_fail" else bp.datasets.pass_fail(seed=config.seed)
        names = ["lectures", "project_hours"] if name == "pass_fail" else ["x1", "x2"]
        return _split(x, y, names, "classification", None, "label", config)
    if not os.path.exists(name) and os.sep not in name and "." not in name:
        raise csv_reader.DataError(f"unknown dataset '{name}'; valid: {', '.join(bp.datasets.NAMES)} or a CSV file path")
    if config.labels:
        x, y = bp.datasets.load_idx(name, config.labels)
        return _split(x, y, [f"pixel_{i}" for i in range(x.shape[1])], "classification", None, "label", config)
    table = bp.datasets.load_csv(name, target=config.target, task=config.task)
    return _split(table.x, table.y, table.feature_names, table.task, table.classes, table.target, config)


def _split(x, y, names, task, classes, target, config):
    stratify = task == "classification" and numpy.bincount(y).min() >= 2
    x_train, x_test, y_train, y_test = bp.datasets.train_test_split(x, y, config.test_split, config.seed, stratify)
    if task == "classification" and classes is None:
        classes = [str(c) for c in range(int(y.max()) + 1)]
    return Dataset(x_train, y_train, x_test, y_test, list(names), task, classes, target)


def build_model(config, n_features, data):
    """An MLP: the hidden layers, dropout after each, and a head fitting the task."""
    bp.random.set_seed(config.seed)
    layers = [bp.layers.Input(shape=(n_features,))]
    for units in config.layers:
        layers.append(bp.layers.Dense(units, activation=config.activation))
        if config.dropout:
            layers.append(bp.layers.Dropout(config.dropout))
    if data.task == "regression":
        head, loss, metrics = 1, "mse", ["mae"]
    elif len(data.classes) == 2:
        head, loss, metrics = 1, bp.losses.BinaryCrossentropy(from_logits=True), ["accuracy"]
    else:
        head, loss, metrics = len(data.classes), bp.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"]
    model = bp.Sequential(layers + [bp.layers.Dense(head, name="output")], name="mlp")
    model.compile(optimizer=bp.optimizers.get(config.optimizer, learning_rate=config.lr), loss=loss, metrics=metrics)
    return model


def describe(config, data, model):
    """One line saying what is about to be trained on what."""
    kind = (f"{len(data.classes)} classes" if data.task == "classification" else "regression")
    sizes = "-".join(str(n) for n in [data.x_train.shape[1], *config.layers, model.layers[-1].units])
    return (f"{config.data}: {len(data.x_train):,} training / {len(data.x_test):,} test examples, "
            f"{data.x_train.shape[1]} features, {kind}; MLP {sizes} ({config.activation}, dropout {config.dropout:g}, "
            f"{model.count_params():,} parameters), {config.optimizer} lr {config.lr:g}, batch {config.batch_size}, "
            f"up to {config.epochs} epochs with early stopping (patience {config.patience})")


def check_config(config):
    """Refuse bad settings before any data is read or anything is written."""
    bp.optimizers.get(config.optimizer, learning_rate=config.lr)
    if config.activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{config.activation}'; valid: {', '.join(ACTIVATIONS)}")
    if config.task not in ("auto", "classification", "regression"):
        raise ValueError(f"unknown task '{config.task}'; valid: auto, classification, regression")
    if not config.layers or any(int(u) != u or u <= 0 for u in config.layers):
        raise ValueError(f"--layers needs positive integers, got {config.layers}")


def prepare_output(out, force=False, create_parent=False):
    """The final run folder path, checked: its parent must exist (or be created at the end, for the
    default runs/ folder); an existing run needs ``force``."""
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    if not create_parent and not os.path.isdir(parent):
        raise FileNotFoundError(f"output directory '{parent}' does not exist")
    if os.path.exists(out) and not force:
        raise FileExistsError(f"'{out}' already exists; use --force to replace it")
    return out


def backup_directory(out):
    """Where an unfinished run keeps its backup: beside the run folder it will become."""
    return out + ".backup"


def check_backup(config, out, resume, force):
    """Refuse to silently overwrite or wrongly continue an interrupted run."""
    directory = backup_directory(out)
    saved_config = os.path.join(directory, "config.json")
    if not os.path.exists(directory):
        if resume:
            raise FileNotFoundError(f"nothing to resume: no backup in '{directory}'")
        return
    if force and not resume:
        shutil.rmtree(directory)
        return
    if not resume:
        raise FileExistsError(f"an interrupted run left a backup in '{directory}'; add --resume to continue it, "
                              "or --force to start over")
    if os.path.exists(saved_config):
        with open(saved_config) as handle:
            before = json.load(handle)
        now = asdict(config)
        changed = [f"{k}: {before.get(k)!r} -> {now[k]!r}" for k in now if k not in ("out", "plots", "epochs")
                   and before.get(k) != now[k]]
        if changed:
            raise ValueError(f"cannot resume: the settings changed ({'; '.join(changed)})")


def train(config, out, verbose=1):
    """Train and write the run folder; returns the metrics dict. Backs up every epoch beside ``out``."""
    data = load_data(config)
    x_train, scaler = bp.datasets.standardize(data.x_train)
    x_test = scaler.transform(data.x_test)
    model = build_model(config, x_train.shape[1], data)
    if verbose:
        print(describe(config, data, model))
    stopper = bp.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    backup = bp.callbacks.BackupAndRestore(backup_directory(out))
    os.makedirs(backup.directory, exist_ok=True)
    _write_json(os.path.join(backup.directory, "config.json"), asdict(config))
    nan_guard = bp.callbacks.TerminateOnNaN()
    with numpy.errstate(all="ignore"):  # a diverging run is reported below, not as NumPy warnings
        history = model.fit(x_train, data.y_train, batch_size=config.batch_size, epochs=config.epochs,
                            validation_split=config.val_split, verbose=verbose,
                            callbacks=[stopper, nan_guard, backup])
    shutil.rmtree(backup.directory, ignore_errors=True)
    if nan_guard.stopped_at is not None:
        at = nan_guard.stopped_at
        raise NonFiniteLoss(f"the loss became {at['loss']} at epoch {at['epoch']}, batch {at['batch']}; nothing "
                            f"was written (try a smaller --lr than {config.lr:g})")
    losses = history.history.get("loss", [])
    metrics = evaluate(model, x_test, data.y_test, data.task)
    metrics.update(epochs_run=len(losses), best_epoch=stopper.best_epoch + 1,
                   stopped_early=bool(stopper.stopped_epoch), n_train=len(x_train), n_test=len(x_test))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    staging = tempfile.mkdtemp(dir=os.path.dirname(out), prefix=".run-")
    try:
        write_run(staging, model, scaler, data, config, history, stopper, metrics, x_test)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return metrics


def evaluate(model, x, y, task):
    loss, *rest = model.evaluate(x, y, batch_size=256, verbose=0) if model.compiled_metrics else \
        [model.evaluate(x, y, verbose=0)]
    key = "test_mae" if task == "regression" else "test_accuracy"
    return {"test_loss": float(loss), key: float(rest[0])} if rest else {"test_loss": float(loss)}


def predict_labels(model, x, task):
    scores = model.predict(x, batch_size=256)
    if task == "regression":
        return scores[:, 0], scores
    if scores.shape[1] == 1:
        p = 1 / (1 + numpy.exp(-numpy.clip(scores[:, 0], -60, 60)))
        return (p > 0.5).astype(int), numpy.stack([1 - p, p], axis=1)
    e = numpy.exp(scores - scores.max(axis=1, keepdims=True))
    return scores.argmax(axis=1), e / e.sum(axis=1, keepdims=True)


def write_run(folder, model, scaler, data, config, history, stopper, metrics, x_test):
    model.save(os.path.join(folder, "model.bp"))
    preprocessing = {"feature_names": data.feature_names, "target": data.target, "task": data.task,
                     "classes": data.classes, "scaler": scaler.to_dict()}
    _write_json(os.path.join(folder, PREPROCESSING_FILE), preprocessing)
    _write_json(os.path.join(folder, "metrics.json"), metrics)
    _write_json(os.path.join(folder, "config.json"), asdict(config))
    with open(os.path.join(folder, "history.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        keys = list(history.history)
        writer.writerow(["epoch"] + keys)
        for epoch in range(len(history.history.get("loss", []))):
            writer.writerow([epoch + 1] + [history.history[k][epoch] for k in keys])
    if config.plots:
        write_plots(folder, model, scaler, data, history, stopper, x_test)


def write_plots(folder, model, scaler, data, history, stopper, x_test):
    try:
        from backprop import plot
        from backprop.plot.figure import save
    except ImportError:
        return
    save(plot.history(history, stopper), os.path.join(folder, "curves.png"))
    if data.task == "classification":
        labels, _ = predict_labels(model, x_test, data.task)
        save(plot.confusion_matrix(data.y_test, labels, data.classes), os.path.join(folder, "confusion.png"))
    if data.x_train.shape[1] == 2:
        save(plot.decision_boundary(model, data.x_train, data.y_train, transform=scaler.transform,
                                    feature_names=data.feature_names), os.path.join(folder, "boundary.png"))


def _write_json(path, value):
    with open(path, "w") as handle:
        json.dump(value, handle, indent=2)
        handle.write("\n")


def load_run(model_path):
    """(model, preprocessing) from a run folder or a model file inside one."""
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    model_file = os.path.join(folder, "model.bp") if os.path.isdir(model_path) else model_path
    csv_reader.check_readable(model_file, "model file")
    model = bp.models.load_model(model_file)
    preprocessing_path = os.path.join(folder, PREPROCESSING_FILE)
    preprocessing = None
    if os.path.exists(preprocessing_path):
        try:
            with open(preprocessing_path) as handle:
                preprocessing = json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise csv_reader.DataError(f"{preprocessing_path}: not valid JSON") from None
    return model, preprocessing
