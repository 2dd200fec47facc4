"""The ``backprop`` command: train, evaluate, predict, info, export, lecture.

Exit codes: 0 success, 2 bad input (one line on stderr, nothing written), 1 unexpected
failure, 130 interrupted (Ctrl-C).
"""
import argparse
import csv
import errno
import json
import math
import os
import sys
from dataclasses import fields

import numpy

EXAMPLES = {
    "train": """examples:
  backprop train                                  # an MLP on the bundled 8x8 digits
  backprop train --data moons --layers 16,16 --epochs 200
  backprop train --data houses.csv --target price --task regression --out runs/houses
  backprop train --config run.toml                # same keys as the options, e.g. lr = 0.01""",
    "evaluate": """examples:
  backprop evaluate runs/digits-20261126-140000 --data digits
  backprop evaluate runs/houses/model.bp --data test.csv --target price""",
    "predict": """examples:
  backprop predict runs/houses --input new_houses.csv --output predictions.csv""",
    "info": """examples:
  backprop info runs/digits-20261126-140000/model.bp""",
    "playground": """examples:
  backprop playground                     # prints the address with its token and opens the browser
  backprop playground --port 8765 --no-browser""",
    "lr-find": """examples:
  backprop lr-find --data moons --optimizer sgd          # then: backprop train --data moons --lr <suggestion>""",
    "export": """examples:
  backprop export runs/houses --format onnx --output houses.onnx   # takes the raw columns predict takes""",
    "lecture": """examples:
  backprop lecture --out lecture          # then open lecture/index.html""",
}


class BadInput(Exception):
    """A user mistake: reported as one line, exit code 2."""


# --- argument types: reject bad values the way argparse does ------------------------------------
def _typed(convert, check, description):
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value: {text!r} ({description})") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"invalid value: {text!r} ({description})")
        return value
    parse.__name__ = description
    return parse


positive_int = _typed(int, lambda v: v > 0, "a positive integer")
non_negative_int = _typed(int, lambda v: v >= 0, "a non-negative integer")
positive_float = _typed(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
fraction = _typed(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
open_fraction = _typed(float, lambda v: 0 < v < 1, "a number in (0, 1)")
seed_value = _typed(int, lambda v: 0 <= v < 2 ** 32, "an integer in [0, 2**32)")
port_number = _typed(int, lambda v: 0 <= v <= 65535, "a port from 0 to 65535, 0 for a free one")
range_test_steps = _typed(int, lambda v: v >= 5, "an integer of at least 5")
column_list = _typed(lambda t: [c.strip() for c in t.split(",") if c.strip()], bool, "comma-separated column names")
layer_sizes = _typed(lambda t: [int(u) for u in t.split(",") if u.strip()], lambda v: v and all(u > 0 for u in v),
                     "comma-separated positive integers, e.g. 128,64")


def build_parser():
    parser = argparse.ArgumentParser(prog="backprop", description="Train, inspect and use neural networks.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def command(name, help_text):
        return commands.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES[name],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    train = command("train", "train an MLP and write a run folder (model, history, metrics, plots)")
    train.add_argument("--data", help="bundled dataset (digits, mnist, pass_fail, moons, circles, spirals, xor, "
                                      "blobs) or a CSV file (default: digits)")
    train.add_argument("--target", help="CSV target column, by name or 0-based index (default: the last)")
    train.add_argument("--labels", help="IDX labels file, when --data is an IDX images file")
    train.add_argument("--task", choices=["auto", "classification", "regression"], help="default: inferred")
    train.add_argument("--features", type=column_list, help="CSV columns to use, e.g. sqft,rooms,city (default: all "
                                                            "but the target and columns that look like identifiers)")
    train.add_argument("--drop", type=column_list, help="CSV columns to leave out, e.g. id,name")
    train.add_argument("--missing", choices=["error", "drop", "mean"],
                       help="missing cells: an error (default), drop those rows, or fill with the training mean "
                            "(most frequent category)")
    train.add_argument("--unseen", choices=["error", "zeros"],
                       help="a category not seen in training, at predict time: an error (default) or all zeros")
    train.add_argument("--layers", type=layer_sizes, help="hidden layer sizes (default: 256,128)")
    train.add_argument("--activation", help="hidden activation (default: relu)")
    train.add_argument("--dropout", type=fraction, help="dropout rate after each hidden layer (default: 0.2 with "
                                                        "1,000 training examples or more, else 0)")
    train.add_argument("--optimizer", help="sgd, adam, adamw, adagrad, rmsprop or adadelta (default: adam)")
    train.add_argument("--lr", type=positive_float, help="learning rate (default: 0.001)")
    train.add_argument("--batch-size", type=positive_int, help="examples per gradient step (default: 32)")
    train.add_argument("--epochs", type=positive_int, help="maximum passes over the data (default: 60)")
    train.add_argument("--patience", type=non_negative_int, help="early-stopping patience in epochs (default: 10 "
                                                                 "with 1,000 training examples or more, else 30)")
    train.add_argument("--val-split", type=fraction, help="fraction held out for validation (default: 0.2)")
    train.add_argument("--test-split", type=open_fraction, help="fraction held out for the test score (default: 0.2)")
    train.add_argument("--seed", type=seed_value, help="random seed (default: 0)")
    train.add_argument("--config", help="TOML or YAML file with the same keys (command-line options win)")
    train.add_argument("--out", help="run folder to write, its parent folders created (default: runs/DATA-TIMESTAMP)")
    train.add_argument("--force", action="store_true", help="replace an existing run folder (or an interrupted "
                                                            "run's backup)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run with the same --out "
                                                             "from its last backup, exactly where it stopped")
    train.add_argument("--workers", type=positive_int, help="train data-parallel on this many MPI processes (needs "
                                                           "pip install 'backprop[mpi]'; the batch size stays global)")
    train.add_argument("--device", choices=["cpu", "gpu", "strict"], help="where to train: cpu (default), gpu (NVIDIA, "
                       "needs pip install 'backprop[cuda12]') or strict (the CPU behind a GPU's rules, for checking)")
    train.add_argument("--no-plots", action="store_true", help="skip the pictures")
    train.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard logs there: loss, metrics and "
                                                            "learning rate per epoch, weight histograms")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = command("evaluate", "score a saved model on a dataset")
    evaluate.add_argument("model", help="run folder or model file")
    evaluate.add_argument("--data", required=True, help="bundled dataset name or CSV file")
    evaluate.add_argument("--target", help="CSV target column")

    predict = command("predict", "predict for the rows of a CSV file")
    predict.add_argument("model", help="run folder or model file")
    predict.add_argument("--input", required=True, help="CSV file of features (a target column is ignored)")
    predict.add_argument("--output", help="CSV file to write (default: standard output)")

    info = command("info", "print a saved model's summary")
    info.add_argument("model", help="run folder or model file")

    export = command("export", "write a run's model for another runtime (ONNX), with its input scaling")
    export.add_argument("model", help="run folder or model file")
    export.add_argument("--format", choices=["onnx"], default="onnx", help="file format (default: onnx)")
    export.add_argument("--output", required=True, help="file to write, e.g. model.onnx")

    playground = command("playground", "a page in your browser that trains a network while you watch")
    playground.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this "
                                                                "machine only)")
    playground.add_argument("--port", type=port_number, default=0, help="port (default: a free one)")
    playground.add_argument("--no-browser", action="store_true", help="print the address without opening a browser")

    lr_find = command("lr-find", "the learning-rate range test for the model `backprop train` would build")
    for flag in ("--data", "--target", "--features", "--drop", "--layers", "--activation", "--optimizer",
                 "--batch-size", "--seed", "--missing", "--task"):
        action = next(a for a in train._actions if flag in a.option_strings)
        lr_find.add_argument(flag, type=action.type, choices=action.choices, help=action.help)
    lr_find.add_argument("--steps", type=range_test_steps, default=100, help="batches in the test (default: 100)")
    lr_find.add_argument("--plot", help="also save the curve as a PNG there")

    lecture = command("lecture", "build the introductory lecture as an HTML report with figures")
    lecture.add_argument("--out", default="lecture", help="folder for index.html (default: lecture)")
    lecture.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


# --- commands -------------------------------------------------------------------------------------
def run_config(args, parser):
    from backprop.run import RunConfig
    values = load_config_file(args.config) if getattr(args, "config", None) else {}
    known = {f.name for f in fields(RunConfig)}
    unknown = set(values) - known
    if unknown:
        raise BadInput(f"{args.config}: unknown keys {', '.join(sorted(unknown))}; valid: {', '.join(sorted(known))}")
    values = {key: checked_setting(parser, key, value, args.config) for key, value in values.items()}
    for name in known:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    if getattr(args, "no_plots", False):
        values["plots"] = False
    return RunConfig(**values)


def checked_setting(parser, key, value, path):
    """A config file's value, checked by the same type and choices as the command-line option."""
    action = next((a for a in train_actions(parser) if a.dest == key), None)
    if value is None:
        raise BadInput(f"{path}: {key}: a value is needed (leave the key out for the default)")
    if action is None:
        return value
    if isinstance(value, (dict, bool)) or (isinstance(value, list) and not all(isinstance(v, (int, str)) for v in value)):
        raise BadInput(f"{path}: {key}: expected {getattr(action.type, '__name__', 'a value')}, got {_abridged(value)}")
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    if action.type is not None:
        try:
            value = action.type(text)
        except argparse.ArgumentTypeError as error:
            raise BadInput(f"{path}: {key}: {error}") from None
    elif action.nargs is None and not isinstance(value, str):
        raise BadInput(f"{path}: {key}: expected text, got {_abridged(value)}")
    if action.choices is not None and value not in action.choices:
        raise BadInput(f"{path}: {key}: {_abridged(value)} is not one of {', '.join(action.choices)}")
    return value


def _abridged(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


def train_actions(parser):
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["train"]._actions


MAX_CONFIG_BYTES = 64 * 1024


def load_config_file(path):
    if not os.path.isfile(path):
        raise BadInput(f"config file '{path}' not found")
    with open(path, "rb") as handle:
        raw = handle.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise BadInput(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; a config holds a few settings")
    try:
        if path.endswith((".yaml", ".yml")):
            if b"&" in raw or b"*" in raw:  # anchors and aliases: the way to a billion laughs
                raise BadInput(f"{path}: YAML anchors and aliases (& and *) are not accepted in a config")
            import yaml
            values = yaml.safe_load(raw) or {}
        else:
            import tomllib
            values = tomllib.loads(raw.decode())
    except BadInput:
        raise
    except ImportError as error:
        raise BadInput(f"reading {path} needs {error.name}: pip install {'pyyaml' if 'yaml' in str(error) else 'tomli'}") from None
    except Exception as error:  # the parsers' own error types differ
        raise BadInput(f"{path}: cannot parse config ({_abridged(str(error), 200)})") from None
    if not isinstance(values, dict):
        raise BadInput(f"{path}: expected a table of settings")
    return {key.replace("-", "_"): value for key, value in values.items()}


def launch_workers(args):
    """``--workers N`` outside an MPI job: the same command under ``mpiexec -n N``; its exit code."""
    import shutil
    import subprocess
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise BadInput("--workers needs mpi4py and an MPI: pip install 'backprop[mpi]'") from None
    mpiexec = shutil.which("mpiexec") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    if mpiexec is None:
        raise BadInput("--workers needs an mpiexec on PATH (pip install 'backprop[mpi]' brings MPICH's)")
    argv, skip = [], False
    for word in args.argv:
        if skip or word == "--workers" or word.startswith("--workers="):
            skip = word == "--workers"
            continue
        argv.append(word)
    return subprocess.run([mpiexec, "-n", str(args.workers), sys.executable, "-m", "backprop", *argv]).returncode


def checked_config(args):
    """The run's settings from the command line and config file, refused before anything is read or written
    when they are bad or name a device that cannot be used here."""
    from backprop import devices, run
    config = run_config(args, build_parser())
    try:
        run.check_config(config)
        devices.get(config.device)
    except (ValueError, devices.DeviceError) as error:
        raise BadInput(str(error)) from None
    return config


def cmd_train(args):
    from backprop import distribute, run
    config = checked_config(args)  # in the launcher too: a bad setting is one line, not one per rank
    if args.workers and args.workers > 1 and config.device == "gpu":
        raise BadInput("--workers with --device gpu is not supported yet: the ranks would all use GPU 0 and send "
                       "device arrays through an MPI that cannot read them; train on one GPU (no --workers), or on "
                       "CPUs with --workers")
    if args.workers and args.workers > 1 and not distribute._launched_by_mpi():
        if args.batch_size and args.batch_size < args.workers:
            raise BadInput(f"--batch-size {args.batch_size} is smaller than --workers {args.workers}: the global batch "
                           "is split across the workers")
        return launch_workers(args)
    distribute.init()
    workers = distribute.current()
    if distribute.is_main():  # rank 0 speaks for the job and decides on its folder
        out = run.prepare_output(config.out or run.default_output(config.data), args.force, create_parent=True)
        with run.output_lock(out):
            try:
                run.check_backup(config, out, args.resume, args.force)
            except ValueError as error:
                raise BadInput(str(error)) from None
            if workers is not None:  # the others start once the folder is checked (a refusal aborts the job)
                workers.share_bytes(out.encode())
            metrics = train_interruptibly(run, config, out, args.quiet)
    else:  # checking the folder here too raced rank 0 making it ("already exists", exit 2 on rank 1 alone)
        sys.stdout = open(os.devnull, "w")
        out = workers.share_bytes(None).decode()
        metrics = train_interruptibly(run, config, out, args.quiet)
    score = " ".join(f"{k}={v:.6g}" for k, v in metrics.items() if k.startswith("test_"))
    print(f"{score} (epochs run: {metrics['epochs_run']}, best epoch: {metrics['best_epoch']})")
    print(run.sanity_line(metrics))
    print(f"run folder: {out}")


def train_interruptibly(run, config, out, quiet):
    from backprop.distribute import WorkersError
    from backprop.training.resume import ResumeError
    try:
        return run.train(config, out, verbose=0 if quiet else 1)
    except WorkersError as error:
        raise BadInput(str(error)) from None
    except ResumeError as error:
        raise BadInput(f"{error} (or run with --force to start over)") from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"training interrupted; a backup is in {run.backup_directory(out)}: continue "
                                f"with the same command plus --out {os.path.relpath(out)} --resume") from None
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise BadInput(f"the disk is full ({error.filename or out}); the last complete backup is in "
                       f"{run.backup_directory(out)}: free some space and continue with the same command plus "
                       f"--out {os.path.relpath(out)} --resume") from None


def model_inputs(model, preprocessing, path, what):
    """(x, preprocessor or None, y or None) from a CSV, the way the model's preprocessing says."""
    from backprop.datasets import csv_reader, tabular
    expected = [c["name"] for c in preprocessing["columns"]] if preprocessing and "columns" in preprocessing else None
    header, rows = csv_reader.read_table(path, expected_names=expected)
    cells, lines = [row for _, row in rows], [line for line, _ in rows]
    if preprocessing is None:
        note_no_preprocessing(what, path)
        width = model.example_shape[-1] if model.example_shape else len(cells[0])
        names = header or [f"column_{i + 1}" for i in range(len(cells[0]))]
        if len(cells[0]) != width:
            raise BadInput(f"{path}: {len(cells[0])} columns, but the model takes {width} numbers per example")
        return csv_reader.numbers(rows, names, path, range(width)).astype(numpy.float32), None, header, rows
    if "columns" not in preprocessing:
        raise BadInput(f"{what}: its preprocessing.json comes from an older backprop; retrain the run")
    preprocessor = tabular.Preprocessor.from_dict(preprocessing)
    x = preprocessor.transform(header, cells, path, preprocessor.missing, lines)
    return x, preprocessor, header, rows


def cmd_predict(args):
    from backprop.datasets.csv_reader import check_readable
    from backprop.run import load_run, predict_labels
    model, preprocessing = load_run(args.model)
    check_readable(args.input, "input file")
    x, preprocessor, _, _ = model_inputs(model, preprocessing, args.input, args.model)
    if preprocessor is None:
        scores = model.predict(x, batch_size=256)
        header = [f"output_{i}" for i in range(scores.shape[1])]
        rows = [[f"{v:.6g}" for v in row] for row in scores]
    else:
        labels, scores = predict_labels(model, x, preprocessor)
        classes = preprocessor.classes if preprocessor.task == "classification" else None
        header = ["prediction"] + ([f"p_{c}" for c in classes] if classes else [])
        rows = [[classes[int(label)] if classes else f"{label:.6g}"] + ([f"{p:.6f}" for p in score] if classes else [])
                for label, score in zip(labels, scores)]
    if not numpy.isfinite(scores).all():
        raise BadInput(f"{args.input}: the model's outputs are not finite for some rows (values far outside the "
                       "training data?); nothing was written")
    if args.output:
        from backprop.saving.tensor_file import atomic_write
        import io
        buffer = io.StringIO()
        csv.writer(buffer).writerows([header] + rows)
        atomic_write(args.output, [buffer.getvalue().encode()])
        print(f"wrote {len(rows)} predictions to {args.output}")
    else:
        writer = csv.writer(sys.stdout)
        writer.writerows([header] + rows)


def cmd_evaluate(args):
    from backprop import run
    from backprop.datasets import csv_reader, tabular
    model, preprocessing = run.load_run(args.model)
    if preprocessing is None:
        return evaluate_prepared(model, args)
    if "columns" not in preprocessing:
        raise BadInput(f"{args.model}: its preprocessing.json comes from an older backprop; retrain the run")
    preprocessor = tabular.Preprocessor.from_dict(preprocessing)
    config = run.RunConfig(data=args.data, target=args.target or preprocessor.target, task=preprocessor.task)
    arrays = run.raw_arrays(config)
    if arrays is not None:
        x, y = preprocessor.transform_array(arrays[2]), arrays[3]
    else:
        x, _, header, rows = model_inputs(model, preprocessing, args.data, args.model)
        names = header or [f"column_{i + 1}" for i in range(len(rows[0][1]))]
        target = csv_reader.target_index(config.target, names, args.data)
        classes = preprocessor.classes if preprocessor.task == "classification" else None
        y, _, _ = csv_reader.parse_target(rows, target, names[target], args.data, preprocessor.task, classes)
    metrics = run.evaluate(model, x, y, preprocessor)
    print(json.dumps({k: round(v, 6) for k, v in metrics.items()}, indent=2))


def note_no_preprocessing(model_path, data_path):
    print(f"note: {model_path} has no preprocessing (it was saved from Python): the columns of {data_path} are fed "
          "to it as they are", file=sys.stderr)


def evaluate_prepared(model, args):
    """A model saved from Python: the CSV's numbers as they are, the target column (--target, default the last)
    as labels, scored with the loss and metrics the model was compiled with."""
    from backprop.datasets import csv_reader
    if model.loss is None:
        raise BadInput(f"{args.model}: saved without compile, so there is no loss to evaluate with")
    note_no_preprocessing(args.model, args.data)
    header, rows = csv_reader.read_table(args.data)
    names = header or [f"column_{i + 1}" for i in range(len(rows[0][1]))]
    target = csv_reader.target_index(args.target, names, args.data)
    x = csv_reader.numbers(rows, names, args.data, [i for i in range(len(names)) if i != target])
    y = csv_reader.numbers(rows, names, args.data, [target])[:, 0]
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    print(json.dumps({f"test_{k}": round(v, 6) for k, v in logs.items()}, indent=2))


def cmd_info(args):
    from backprop.run import load_run
    model, preprocessing = load_run(args.model)
    model.summary()
    config = os.path.join(args.model, "config.json") if os.path.isdir(args.model) else None
    if config and os.path.exists(config):
        with open(config, encoding="utf-8") as handle:
            print(f"trained on: {json.load(handle).get('device', 'cpu')}")
    if preprocessing:
        print(f"task: {preprocessing['task']}; features: {len(preprocessing['feature_names'])}; "
              f"classes: {', '.join(preprocessing['classes']) if preprocessing.get('classes') else '-'}")


def cmd_export(args):
    from backprop.datasets import tabular
    from backprop.export import onnx as onnx_export
    from backprop.run import load_run
    from backprop.tracing import TraceError
    model, preprocessing = load_run(args.model)
    try:
        if preprocessing is None:
            onnx_export.export(model, args.output)
            print(f"wrote {args.output}: takes the model's inputs as they are (the model has no preprocessing)")
            return
        if "columns" not in preprocessing:
            raise BadInput(f"{args.model}: its preprocessing.json comes from an older backprop; retrain the run")
        from backprop.export.tabular import export_run
        preprocessor = tabular.Preprocessor.from_dict(preprocessing)
        export_run(model, preprocessor, args.output)
    except TraceError as error:
        raise BadInput(f"{args.model}: {error}") from None
    categorical = [c["name"] for c in preprocessor.columns if c["kind"] == "categorical"]
    print(f"wrote {args.output}: input 'features' takes the {len(preprocessor.columns) - len(categorical)} numeric "
          f"columns as raw values" + (f", plus one text input per column {', '.join(categorical)}" if categorical
                                      else "") + "; output 'prediction'"
          + (" and 'probabilities'" if preprocessor.task == "classification" else ""))


def cmd_playground(args):
    import secrets
    import socket
    try:
        import uvicorn
        from backprop.playground.server import MAX_UPLOAD_MESSAGE, create_app
    except ImportError:
        raise BadInput("the playground needs Starlette and uvicorn: pip install 'backprop[playground]'") from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach it and has the token can train here",
              file=sys.stderr)
    listener = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((args.host, args.port))
        listener.listen(64)  # listening before the address is printed: a browser opened now is answered
    except (OSError, OverflowError) as error:
        listener.close()
        raise BadInput(f"cannot listen on {args.host}:{args.port}: {getattr(error, 'strerror', None) or error}") \
            from None
    port = listener.getsockname()[1]
    token = secrets.token_urlsafe(16)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(args.host, args.host)
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL is bracketed
    origins = {f"http://{name}:{port}" for name in ("127.0.0.1", "localhost", shown)}
    url = f"http://{shown}:{port}/?token={token}"
    print(f"backprop playground: {url}  (Ctrl-C stops it)", flush=True)
    if not args.no_browser:
        import webbrowser
        webbrowser.open(url)
    config = uvicorn.Config(create_app(token, origins), log_level="warning", ws_max_size=MAX_UPLOAD_MESSAGE)
    uvicorn.Server(config).run(sockets=[listener])


def cmd_lr_find(args):
    from backprop import devices, run
    config = checked_config(args)
    with devices.device(config.device):  # a config file may name one
        curve, _ = run.learning_rate_curve(config, steps=args.steps)
    low, high = curve.learning_rates[0], curve.learning_rates[-1]
    print(f"learning-rate range test: {len(curve.learning_rates)} batches from {low:.1g} to {high:.2g}"
          f"{' (stopped: the loss diverged)' if curve.stopped_early else ''}; lowest smoothed loss "
          f"{min(curve.smoothed):.4g} at {curve.learning_rates[curve.smoothed.index(min(curve.smoothed))]:.2g}")
    print(f"suggested learning rate: {curve.suggestion:.2g} (where the loss falls fastest); "
          f"backprop train ... --lr {curve.suggestion:.2g}")
    if args.plot:
        from backprop.plot import figure as figures
        figures.save(curve.plot(), args.plot)
        print(f"curve: {args.plot}")


def cmd_lecture(args):
    from backprop.lecture import build_report
    path = build_report(args.out, seed=args.seed)
    print(f"lecture report: {path}")


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "info": cmd_info,
            "export": cmd_export, "lr-find": cmd_lr_find,
            "playground": cmd_playground, "lecture": cmd_lecture}


def main(argv=None):
    """Run a command; its exit code. In a multi-rank MPI job, a rank that fails ends the job (the error
    is caught here, so no uncaught-exception hook would end it, and the other ranks would wait forever)."""
    from backprop import distribute
    code = _main(argv)
    distribute.end_job_if_failed(code)
    return code


def _main(argv):
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    from backprop.datasets.csv_reader import DataError
    from backprop.saving.tensor_file import FileFormatError, UnwritableOutput
    from backprop.run import NonFiniteLoss
    try:
        return COMMANDS[args.command](args) or 0
    except KeyboardInterrupt as interrupt:
        print(f"\ninterrupted: {interrupt}" if interrupt.args else "\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `backprop predict ... | head`: the reader has gone; end as a killed writer does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes it
        return 128 + 13
    except NonFiniteLoss as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (BadInput, DataError, FileFormatError, UnwritableOutput, FileNotFoundError, FileExistsError, PermissionError,
            IsADirectoryError, NotADirectoryError) as error:
        if args.debug:
            raise
        message = error.args[0] if isinstance(error, OSError) and error.args and isinstance(error.args[0], str) \
            and len(error.args) == 1 else str(error)
        from backprop import distribute
        if distribute.is_main():  # under MPI every rank meets the same bad input: one line, from rank 0
            print(f"error: {message}".replace("\n", "\\n"), file=sys.stderr)  # always one line
        return 2
    except ImportError as error:  # an optional dependency (matplotlib, scikit-learn) is missing
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if args.debug:
            raise
        print(f"error: unexpected {type(error).__name__}: {error} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
