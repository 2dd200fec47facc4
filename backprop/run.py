"""A training run, as the command line does it: data -> scaled features -> MLP -> fit -> run folder.

The run folder is written into a temporary directory beside the target and renamed at the end,
so an interrupted or failed run never leaves a half-written folder behind.
"""
import collections
import contextlib
import csv
import glob
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace

import numpy

import backprop as bp
from backprop.datasets import csv_reader, tabular

ACTIVATIONS = ["relu", "tanh", "sigmoid", "elu", "gelu", "leaky_relu", "swish", "softplus"]
PREPROCESSING_FILE = "preprocessing.json"


@dataclass
class RunConfig:
    data: str = "digits"
    target: str = None
    labels: str = None  # IDX labels file, when data is an IDX images file
    task: str = "auto"
    features: list = None  # CSV columns to use (default: all but the target, dropped and identifier columns)
    drop: list = field(default_factory=list)
    missing: str = "error"  # error | drop | mean
    unseen: str = "error"   # an unseen category at predict time: error | zeros
    layers: list = field(default_factory=lambda: [256, 128])
    activation: str = "relu"
    dropout: float = None   # None: 0.2 with 1,000 training examples or more, else 0 (small data underfits with it)
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 60
    patience: int = None    # None: 10 with 1,000 training examples or more, else 30
    val_split: float = 0.2
    test_split: float = 0.2
    seed: int = 0
    out: str = None
    plots: bool = True
    tensorboard: str = None  # a folder for TensorBoard event files (train/ and validation/)
    device: str = "cpu"      # cpu, gpu (CuPy) or strict (the checking device)


@dataclass
class Dataset:
    """Model inputs (already preprocessed), labels, and the Preprocessor that made them."""
    x_train: numpy.ndarray
    y_train: numpy.ndarray
    x_test: numpy.ndarray
    y_test: numpy.ndarray
    preprocessor: tabular.Preprocessor
    notices: list = field(default_factory=list)
    raw_train: numpy.ndarray = None  # raw numeric features, for the decision-boundary plot

    task = property(lambda self: self.preprocessor.task)
    classes = property(lambda self: self.preprocessor.classes)
    target = property(lambda self: self.preprocessor.target)
    feature_names = property(lambda self: self.preprocessor.feature_names)


class NonFiniteLoss(RuntimeError):
    pass


def load_data(config):
    """The named bundled/toy dataset or the user's CSV/IDX file, split into train and test."""
    arrays = raw_arrays(config)
    return _from_arrays(*arrays) if arrays is not None else _from_csv(config)


def raw_arrays(config):
    """(x_train, y_train, x_test, y_test, names, classes, target) of bundled, toy or IDX data; None for a CSV."""
    name = config.data
    if name in bp.datasets.BUNDLED:
        (x_train, y_train), (x_test, y_test) = bp.datasets.BUNDLED[name](test_size=config.test_split, seed=config.seed)
        return x_train, y_train, x_test, y_test, [f"pixel_{i}" for i in range(x_train.shape[1])], \
            [str(c) for c in range(10)], "digit"
    if name in bp.datasets.TOYS:
        x, y = bp.datasets.TOYS[name](seed=config.seed) if name != "pass_fail" else bp.datasets.pass_fail(seed=config.seed)
        names = ["lectures", "project_hours"] if name == "pass_fail" else ["x1", "x2"]
        return (*_split_arrays(x, y, "classification", config), names, None, "label")
    if not os.path.exists(name) and os.sep not in name and "." not in name:
        raise csv_reader.DataError(f"unknown dataset '{name}'; valid: {', '.join(bp.datasets.NAMES)} or a CSV file path")
    if config.labels:
        x, y = bp.datasets.load_idx(name, config.labels)
        y, classes = present_classes(y)
        return (*_split_arrays(x, y, "classification", config), [f"pixel_{i}" for i in range(x.shape[1])], classes,
                "label")
    return None


def present_classes(y):
    """(labels as 0..k-1, class names): classes are the values present, so labels 0 and 1,000,000,000 make
    two classes, not a billion."""
    values, labels = numpy.unique(y, return_inverse=True)
    return labels.reshape(numpy.shape(y)).astype(numpy.int64), [str(v) for v in values]


def _split_arrays(x, y, task, config):
    stratify = task == "classification" and numpy.unique(y, return_counts=True)[1].min() >= 2
    x_train, x_test, y_train, y_test = bp.datasets.train_test_split(x, y, config.test_split, config.seed, stratify)
    return x_train, y_train, x_test, y_test


def _from_arrays(x_train, y_train, x_test, y_test, names, classes, target):
    if classes is None:
        classes = [str(c) for c in range(int(max(y_train.max(), y_test.max())) + 1)]
    preprocessor = tabular.Preprocessor.for_arrays(x_train, names, target, "classification", classes)
    return Dataset(preprocessor.transform_array(x_train), y_train, preprocessor.transform_array(x_test), y_test,
                   preprocessor, raw_train=x_train)


def _from_csv(config):
    """A user's table: columns chosen and encoded (see datasets.tabular), statistics from the training rows."""
    path = config.data
    header, rows = csv_reader.read_table(path)
    names = header or [f"column_{i + 1}" for i in range(len(rows[0][1]))]
    duplicates = sorted(n for n, count in collections.Counter(names).items() if count > 1)
    if duplicates:
        raise csv_reader.DataError(f"{path}: the header names column(s) {', '.join(duplicates)} more than once")
    target = csv_reader.target_index(config.target, names, path)
    notices = []
    cells = [row for _, row in rows]
    if config.target is None:
        reason = tabular.implausible_target(names[target], [row[target] for row in cells])
        if reason:
            raise csv_reader.DataError(f"{path}: no --target given, and the last column '{names[target]}' {reason}; "
                                       f"name the column to predict with --target (columns: {', '.join(names)})")
    chosen = tabular.choose_columns(names, cells, target, config.features, config.drop, notices, path)
    if config.missing == "drop":
        rows = [(line, row) for line, row in rows if not any(tabular.is_missing(row[i]) for i in chosen + [target])]
        if not rows:
            raise csv_reader.DataError(f"{path}: no rows left after dropping rows with missing values")
    elif config.missing == "error":  # name the first missing cell before anything else can go wrong
        for line, row in rows:
            missing = next((i for i in chosen if tabular.is_missing(row[i])), None)
            if missing is not None:
                raise csv_reader.DataError(f"{path}:{line}: column '{names[missing]}' ({missing + 1}): missing value "
                                           "(--missing drop or --missing mean handles it)")
    y, classes, task = csv_reader.parse_target(rows, target, names[target], path, config.task)
    if task == "classification" and classes is None:
        y, classes = present_classes(y)
    if len(rows) < 5:
        for i in chosen:  # report a bad cell before the size
            tabular.numeric_column(names[i], i, [row[i] for _, row in rows], path, [line for line, _ in rows])
        raise csv_reader.DataError(f"{path}: {len(rows)} data row(s): too few to train and test on (at least 5)")
    index_train, y_train, index_test, y_test = _split_arrays(numpy.arange(len(rows)), y, task, config)
    cells, lines = [row for _, row in rows], [line for line, _ in rows]
    preprocessor = tabular.Preprocessor.fit(names, cells, target, task, index_train, chosen, config.unseen, path,
                                            lines)
    if task == "classification" and len(numpy.unique(y)) < 2:
        raise csv_reader.DataError(f"{path}: column '{names[target]}' has a single class; classification needs at "
                                   "least 2 classes")
    preprocessor.missing = config.missing
    if task == "classification":
        preprocessor.classes = classes
    preprocessor.fit_target(y_train)
    x = preprocessor.transform(names, cells, path, config.missing, lines)
    raw = None
    if preprocessor.numeric and len(chosen) == 2:
        raw = numpy.array([[float(cells[i][c]) for c in chosen] for i in index_train])
    return Dataset(x[index_train], y_train, x[index_test], y_test, preprocessor, notices, raw)


def check_validation_split(config, n_train):
    """Refuse a validation split that leaves no example on one side (a 5-row table: 4 training rows)."""
    held_out = math.floor(n_train * config.val_split)
    if config.val_split and not 0 < held_out < n_train:
        raise csv_reader.DataError(f"{config.data}: {n_train} training example(s) cannot be split {config.val_split:g} "
                                   f"for validation (it would hold {held_out}); use more rows or --val-split 0")


def check_memory(config, data):
    """Refuse, before allocating, a network whose weights, gradients and optimizer slots need more than
    three quarters of this machine's memory."""
    head = 1 if data.task == "regression" or len(data.classes) == 2 else len(data.classes)
    sizes = [data.x_train.shape[1], *config.layers, head]
    parameters = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    needed = parameters * 4 * 4  # float32 weights, gradients and two slots (Adam)
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > 0.75 * available:
        raise csv_reader.DataError(f"--layers {','.join(map(str, config.layers))} needs {needed / 1e9:.1f} GB for "
                                   f"{parameters:.3g} parameters; this machine has {available / 1e9:.1f} GB")


def small_data_defaults(config, n_train):
    """(dropout, patience): what was given, else what suits the data's size. On a few hundred examples
    dropout 0.2 and patience 10 on a tiny validation set stop training with an almost linear model."""
    large = n_train >= 1000
    dropout = config.dropout if config.dropout is not None else (0.2 if large else 0.0)
    patience = config.patience if config.patience is not None else (10 if large else 30)
    return dropout, patience


def build_model(config, n_features, data, dropout):
    """An MLP: the hidden layers, dropout after each, and a head fitting the task."""
    bp.random.set_seed(config.seed)
    layers = [bp.layers.Input(shape=(n_features,))]
    for units in config.layers:
        layers.append(bp.layers.Dense(units, activation=config.activation))
        if dropout:
            layers.append(bp.layers.Dropout(dropout))
    if data.task == "regression":
        head, loss, metrics = 1, "mse", ["mae"]
    elif len(data.classes) == 2:
        head, loss, metrics = 1, bp.losses.BinaryCrossentropy(from_logits=True), ["accuracy"]
    else:
        head, loss, metrics = len(data.classes), bp.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"]
    model = bp.Sequential(layers + [bp.layers.Dense(head, name="output")], name="mlp")
    model.compile(optimizer=bp.optimizers.get(config.optimizer, learning_rate=config.lr), loss=loss, metrics=metrics)
    return model


def describe(config, data, model, dropout, patience):
    """What is about to be trained on what (a line, plus notices about dropped columns and small data)."""
    kind = (f"{len(data.classes)} classes" if data.task == "classification" else "regression")
    target = data.preprocessor.target
    kind = f"target '{target}'" + (" (the last column; --target picks another)" if config.target is None and
                                   not raw_arrays_named(config) else "") + f", {kind}"
    sizes = "-".join(str(n) for n in [data.x_train.shape[1], *config.layers, model.layers[-1].units])
    lines = data.notices + [
        f"{config.data}: {len(data.x_train):,} training / {len(data.x_test):,} test examples, "
        f"{data.x_train.shape[1]} features, {kind}; MLP {sizes} ({config.activation}, dropout {dropout:g}, "
        f"{model.count_params():,} parameters), {config.optimizer} lr {config.lr:g}, batch {config.batch_size}, "
        f"up to {config.epochs} epochs with early stopping (patience {patience})"]
    n_val = int(len(data.x_train) * config.val_split)
    if 0 < n_val < 100:
        lines.append(f"validation: {n_val} examples (few: early stopping follows a noisy signal; --val-split "
                     "sets the fraction)")
    return "\n".join(lines)


def raw_arrays_named(config):
    """Whether the data is a bundled or toy dataset (its target is fixed), not a file."""
    return config.data in bp.datasets.BUNDLED or config.data in bp.datasets.TOYS


def check_config(config):
    """Refuse bad settings before any data is read or anything is written."""
    bp.optimizers.get(config.optimizer, learning_rate=config.lr)
    if config.activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{config.activation}'; valid: {', '.join(ACTIVATIONS)}")
    if config.task not in ("auto", "classification", "regression"):
        raise ValueError(f"unknown task '{config.task}'; valid: auto, classification, regression")
    if not config.layers or any(int(u) != u or u <= 0 for u in config.layers):
        raise ValueError(f"--layers needs positive integers, got {config.layers}")
    if config.missing not in tabular.MISSING_CHOICES:
        raise ValueError(f"unknown --missing '{config.missing}'; valid: {', '.join(tabular.MISSING_CHOICES)}")
    if config.unseen not in ("error", "zeros"):
        raise ValueError(f"unknown --unseen '{config.unseen}'; valid: error, zeros")
    if config.tensorboard:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise ValueError("--tensorboard needs tensorboardX: pip install 'backprop[tensorboard]'") from None
        if os.path.exists(config.tensorboard) and not os.path.isdir(config.tensorboard):
            raise ValueError(f"--tensorboard '{config.tensorboard}' is a file, not a folder for event files")
        check_name_lengths(config.tensorboard, "--tensorboard")


def check_name_lengths(path, what):
    """Refuse a path whose folder or file names are longer than the file system allows (255 bytes here)."""
    limit = os.pathconf("/", "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    long = next((part for part in os.path.abspath(path).split(os.sep) if len(part.encode()) > limit - 20), None)
    if long is not None:  # 20 spare: backprop adds .backup, .lock and .run-XXXXXXXX beside it
        raise FileExistsError(f"{what}: the name '{long[:40]}...' is {len(long.encode())} bytes; file names here hold "
                              f"at most {limit - 20} (with room for backprop's .backup and .lock beside it)")


def default_output(data):
    """runs/NAME-TIMESTAMP for data named ``data`` (a long name shortened to fit a file name)."""
    name = os.path.splitext(os.path.basename(data))[0][:100]
    return os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def prepare_output(out, force=False, create_parent=False):
    """The final run folder path, checked: its parent must exist (or be created at the end, for the
    default runs/ folder); an existing run needs ``force``; a file there is never replaced."""
    check_name_lengths(out, "--out")
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    if not create_parent and not os.path.isdir(parent):
        raise FileNotFoundError(f"output directory '{parent}' does not exist")
    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"'{out}' is a file, not a run folder; choose another --out")
    if os.path.exists(os.path.dirname(out)) and not os.path.isdir(os.path.dirname(out)):
        raise FileExistsError(f"'{os.path.dirname(out)}' is a file, so no run folder can be made in it")
    if os.path.exists(out) and not force:
        raise FileExistsError(f"'{out}' already exists; use --force to replace it")
    if os.path.lexists(out):
        check_ours(out, RUN_FILES, "run folder")
    return out


# What backprop writes into a run folder and into its backup beside it: --force replaces a folder only when it
# holds nothing else, so a mistyped --out never deletes a user's directory.
RUN_FILES = {"model.bp", PREPROCESSING_FILE, "metrics.json", "config.json", "history.csv", "curves.png",
             "confusion.png", "boundary.png"}
BACKUP_FILES = {"config.json", "backup.bp", "backup.prev.bp", "finished.bp", "finished.json"}


def check_ours(folder, names, what):
    """Raise FileExistsError unless ``folder`` is a directory backprop made: a real directory (not a link) that is
    not /, the home folder or the working directory (or above it), holding only regular files named ``names``."""
    folder = os.path.abspath(folder)
    protected = {os.path.abspath(os.sep), os.path.realpath(os.path.expanduser("~"))}
    here = os.path.realpath(os.getcwd())
    if os.path.realpath(folder) in protected or here == os.path.realpath(folder) or \
            here.startswith(os.path.realpath(folder).rstrip(os.sep) + os.sep):
        raise FileExistsError(f"'{folder}' is the root, home or working directory (or above it); backprop never "
                              f"replaces it: choose another --out")
    if os.path.islink(folder) or not os.path.isdir(folder):
        raise FileExistsError(f"'{folder}' is not a {what} backprop made (it is a link or not a directory); "
                              "choose another --out")
    foreign = sorted(entry.name for entry in os.scandir(folder)
                     if entry.name not in names or not entry.is_file(follow_symlinks=False))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(f"'{folder}' is not a {what} backprop made (it holds {shown}); --force replaces only "
                              "backprop's own run folders: choose another --out or move those files")


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
        check_ours(directory, BACKUP_FILES, "backup folder")
        shutil.rmtree(directory)
        return
    if not resume:
        raise FileExistsError(f"an interrupted run left a backup in '{directory}'; add --resume to continue it, "
                              "or --force to start over")
    if os.path.exists(saved_config):
        try:
            with open(saved_config) as handle:
                before = json.load(handle)
            if not isinstance(before, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"the backup's settings ({saved_config}) are damaged, so the run cannot be continued "
                             "safely; --force starts over") from None
        now = asdict(config)
        changed = [f"{k}: {before.get(k)!r} -> {now[k]!r}" for k in now if k not in ("out", "plots", "epochs", "device")
                   and before.get(k, RunConfig.device if k == "device" else None) != now[k]]
        if changed:
            raise ValueError(f"cannot resume: the settings changed ({'; '.join(changed)})")


def train(config, out, verbose=1):
    """Train and write the run folder; returns the metrics dict.

    Until the run folder is in place, ``out.backup`` holds what a killed run needs: the latest epoch's
    backup while training, then the finished model and history, so ``--resume`` after a kill at any
    moment ends with the same run folder as an uninterrupted run.
    """
    with bp.device(config.device):  # the model, its training and its test on the chosen device
        return _train(config, out, verbose)


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _train(config, out, verbose):
    if config.plots and not _has_matplotlib():
        print("note: no plots in this run: matplotlib is not installed (pip install 'backprop[plot]'); "
              "everything else is written")
        config = replace(config, plots=False)
    data = load_data(config)
    check_memory(config, data)
    check_validation_split(config, len(data.x_train))
    dropout, patience = small_data_defaults(config, len(data.x_train))
    model = build_model(config, data.x_train.shape[1], data, dropout)
    if verbose:
        print(describe(config, data, model, dropout, patience))
    else:
        for notice in data.notices:  # a dropped column is always worth a line
            print(notice)
    directory = backup_directory(out)
    main = bp.distribute.is_main()  # under MPI every rank trains; rank 0 alone writes
    if main:
        os.makedirs(directory, exist_ok=True)
        _write_json(os.path.join(directory, "config.json"), asdict(config))
    finished = _load_finished(directory, model)
    if finished is None:
        history, stopper = _fit(config, model, data, patience, directory, verbose)
        if main:
            _save_finished(directory, model, history, stopper)
    else:
        history, stopper = finished
    metrics = evaluate(model, data.x_test, data.y_test, data.preprocessor)
    metrics.update(baseline(data), epochs_run=len(history.history.get("loss", [])), best_epoch=stopper.best_epoch + 1,
                   stopped_early=bool(stopper.stopped_epoch), n_train=len(data.x_train), n_test=len(data.x_test))
    if not main:
        return metrics
    parent, name = os.path.split(out)
    os.makedirs(parent, exist_ok=True)
    for stale in glob.glob(os.path.join(parent, f".{name}.run-*")):  # left by a killed run of this --out
        shutil.rmtree(stale, ignore_errors=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{name}.run-")
    try:
        write_run(staging, model, data, config, history, stopper, metrics)
        for path in (staging, *(os.path.join(root, f) for root, _, files in os.walk(staging) for f in files)):
            os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_umask())  # mkdtemp made the folder 0700
        if os.path.lexists(out):
            check_ours(out, RUN_FILES, "run folder")  # again: the folder may have changed while training
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(directory, ignore_errors=True)  # only now: the run folder is in place
    return metrics


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fit(config, model, data, patience, directory, verbose):
    monitor = "val_loss" if config.val_split else "loss"  # --val-split 0: no validation rows to watch
    stopper = bp.callbacks.EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True)
    backup = bp.callbacks.BackupAndRestore(directory, delete_checkpoint=False)
    nan_guard = bp.callbacks.TerminateOnNaN()
    extra = [bp.callbacks.TensorBoard(config.tensorboard)] if config.tensorboard else []
    with numpy.errstate(all="ignore"):  # a diverging run is reported below, not as NumPy warnings
        history = model.fit(data.x_train, data.preprocessor.scale_target(data.y_train), batch_size=config.batch_size,
                            epochs=config.epochs, validation_split=config.val_split, verbose=verbose,
                            callbacks=[stopper, nan_guard, backup] + extra)
    if nan_guard.stopped_at is not None:
        if bp.distribute.is_main():
            shutil.rmtree(directory, ignore_errors=True)
        at = nan_guard.stopped_at
        losses = history.history.get("loss", []) + [float("nan")]
        suggestion = range_test(config, data, dropout=0.0).suggestion
        raise NonFiniteLoss(f"the loss became {at['loss']} at epoch {at['epoch']}, batch {at['batch']}; nothing was "
                            f"written. Diagnosis: {bp.tools.diagnose_divergence(losses, config.lr, suggestion)} "
                            f"(--lr {suggestion:.2g})")
    model.preprocessing = data.preprocessor.to_dict()
    return history, stopper


def range_test(config, data, dropout, steps=100):
    """The learning-rate range test (bp.tools.find_learning_rate) on a fresh copy of this run's model."""
    model = build_model(config, data.x_train.shape[1], data, dropout)
    y = data.preprocessor.scale_target(data.y_train)
    return bp.tools.find_learning_rate(model, data.x_train, y, batch_size=config.batch_size, steps=steps)


def learning_rate_curve(config, steps=100):
    """(curve, data) of the range test for the model ``backprop train`` would build with ``config``."""
    data = load_data(config)
    return range_test(config, data, small_data_defaults(config, len(data.x_train))[0], steps), data


FINISHED_MODEL, FINISHED_STATE = "finished.bp", "finished.json"


def _save_finished(directory, model, history, stopper):
    """The trained model and what the run folder needs of the fit, kept until the folder is in place."""
    model.save(os.path.join(directory, FINISHED_MODEL))
    state = {"history": history.history, "best_epoch": stopper.best_epoch, "stopped_epoch": stopper.stopped_epoch}
    from backprop.saving.tensor_file import atomic_write
    atomic_write(os.path.join(directory, FINISHED_STATE), [json.dumps(state).encode()])


def _load_finished(directory, model):
    """(history, stopper) of a fit that finished before the run was killed, its weights put into ``model``."""
    state_path = os.path.join(directory, FINISHED_STATE)
    if not os.path.exists(state_path):
        return None
    with open(state_path) as handle:
        state = json.load(handle)
    finished = bp.models.load_model(os.path.join(directory, FINISHED_MODEL))
    model.set_weights(finished.get_weights())
    model.preprocessing = finished.preprocessing
    history = bp.callbacks.History()
    history.history = state["history"]
    stopper = bp.callbacks.EarlyStopping()
    stopper.best_epoch, stopper.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
    return history, stopper


@contextlib.contextmanager
def output_lock(out):
    """One run per --out at a time: a second one is refused (the lock dies with its process)."""
    import fcntl
    parent = os.path.dirname(out)
    created = [] if os.path.isdir(parent) else [parent]
    os.makedirs(parent, exist_ok=True)
    path = out + ".lock"
    handle = open(path, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise FileExistsError(f"another backprop train is writing '{out}' right now (it holds {path})") from None
    try:
        yield
    finally:
        os.unlink(path)
        handle.close()
        for folder in created:  # made only for the lock and still empty: a refused run leaves nothing
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def evaluate(model, x, y, preprocessor):
    """Test metrics in the target's own units: accuracy and cross-entropy, or MAE and MSE."""
    if preprocessor.task == "regression":
        predictions = preprocessor.unscale_target(model.predict(x, batch_size=256)[:, 0])
        error = predictions - numpy.asarray(y, numpy.float64)
        return {"test_loss": float(numpy.mean(error ** 2)), "test_mae": float(numpy.mean(numpy.abs(error)))}
    loss, accuracy = model.evaluate(x, y, batch_size=256, verbose=0)
    return {"test_loss": float(loss), "test_accuracy": float(accuracy)}


def baseline(data):
    """What predicting without the features scores on the test set: the training mean (regression, MAE) or
    the most frequent training class (accuracy)."""
    if data.task == "regression":
        return {"baseline_mae": float(numpy.mean(numpy.abs(data.y_test - numpy.mean(data.y_train))))}
    majority = numpy.bincount(data.y_train).argmax()
    return {"baseline_accuracy": float(numpy.mean(data.y_test == majority))}


def sanity_line(metrics):
    """The model's test score beside the baseline's, with a warning when it does not beat it."""
    if "test_mae" in metrics:
        ours, theirs, better = metrics["test_mae"], metrics["baseline_mae"], metrics["test_mae"] < metrics["baseline_mae"]
        line = f"test_mae={ours:.6g} against {theirs:.6g} for always predicting the training mean"
    else:
        ours, theirs = metrics["test_accuracy"], metrics["baseline_accuracy"]
        better = ours > theirs
        line = f"test_accuracy={ours:.4f} against {theirs:.4f} for always predicting the most frequent class"
    return line if better else f"warning: the model does not beat the baseline: {line}"


def predict_labels(model, x, preprocessor):
    """(labels or values, per-class probabilities or values) for model inputs."""
    scores = model.predict(x, batch_size=256)
    if preprocessor.task == "regression":
        values = preprocessor.unscale_target(scores[:, 0])
        return values, values[:, None]
    head = getattr(model.layers[-1], "activation_name", None) if model.layers else None  # probabilities already?
    if scores.shape[1] == 1:
        p = scores[:, 0] if head == "sigmoid" else 1 / (1 + numpy.exp(-numpy.clip(scores[:, 0], -60, 60)))
        return (p > 0.5).astype(int), numpy.stack([1 - p, p], axis=1)
    if head == "softmax":
        return scores.argmax(axis=1), scores
    e = numpy.exp(scores - scores.max(axis=1, keepdims=True))
    return scores.argmax(axis=1), e / e.sum(axis=1, keepdims=True)


def write_run(folder, model, data, config, history, stopper, metrics):
    model.save(os.path.join(folder, "model.bp"))  # carries its preprocessing: the file alone predicts
    _write_json(os.path.join(folder, PREPROCESSING_FILE), model.preprocessing)
    _write_json(os.path.join(folder, "metrics.json"), metrics)
    _write_json(os.path.join(folder, "config.json"), asdict(config))
    with open(os.path.join(folder, "history.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        keys = list(history.history)
        writer.writerow(["epoch"] + keys)
        for epoch in range(len(history.history.get("loss", []))):
            writer.writerow([epoch + 1] + [history.history[k][epoch] for k in keys])
    if config.plots:
        write_plots(folder, model, data, history, stopper)


def write_plots(folder, model, data, history, stopper):
    try:
        from backprop import plot
        from backprop.plot.figure import save
    except ImportError:
        return
    save(plot.history(history, stopper), os.path.join(folder, "curves.png"))
    if data.task == "classification":
        labels, _ = predict_labels(model, data.x_test, data.preprocessor)
        save(plot.confusion_matrix(data.y_test, labels, data.classes), os.path.join(folder, "confusion.png"))
    if data.raw_train is not None and data.raw_train.shape[1] == 2:
        names = [c["name"] for c in data.preprocessor.columns]
        save(plot.decision_boundary(model, data.raw_train, data.y_train, transform=data.preprocessor.transform_array,
                                    feature_names=names), os.path.join(folder, "boundary.png"))


def _write_json(path, value):
    with open(path, "w") as handle:
        json.dump(value, handle, indent=2)
        handle.write("\n")


def load_run(model_path):
    """(model, preprocessing dict or None) from a run folder or a model file. The preprocessing comes from the
    model file itself, else from a preprocessing.json beside it (runs written before it travelled inside)."""
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    model_file = os.path.join(folder, "model.bp") if os.path.isdir(model_path) else model_path
    csv_reader.check_readable(model_file, "model file")
    model = bp.models.load_model(model_file)
    preprocessing = getattr(model, "preprocessing", None)
    preprocessing_path = os.path.join(folder, PREPROCESSING_FILE)
    if preprocessing is None and os.path.exists(preprocessing_path):
        try:
            with open(preprocessing_path) as handle:
                preprocessing = json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise csv_reader.DataError(f"{preprocessing_path}: not valid JSON") from None
    if preprocessing is not None and "columns" in preprocessing:  # older runs are refused by name later
        shape = getattr(model, "_build_input_shape", None)
        outputs = getattr(model.layers[-1], "units", None) if model.layers else None
        try:
            tabular.check_preprocessing(preprocessing, shape[-1] if shape else None, outputs)
        except csv_reader.DataError as error:
            raise csv_reader.DataError(f"{model_file}: {error}") from None
    return model, preprocessing
