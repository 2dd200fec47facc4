"""Everything a training run needs to continue bit-identically after a kill, as arrays + JSON.

Captured after a completed batch (or epoch): weights, optimizer slots and iterations (which also
fix the learning-rate schedule's position), every random generator's state, the epoch, the next
batch and the epoch's shuffled order, the epoch's running loss and metrics, the history so far,
and the state of each callback that has one. A fingerprint of the model and the data guards
against resuming a different run.
"""
import hashlib
import json

import numpy

from backprop import random
from backprop.saving.model_file import weight_paths


class ResumeError(ValueError):
    """A backup that does not belong to this run (other model, data or batch size)."""


def fingerprint(model, x, y, batch_size):
    digest = hashlib.sha256()
    for name, variable in weight_paths(model):
        digest.update(f"{name}:{variable.shape}:{variable.dtype};".encode())
    for array in (x, y):
        digest.update(f"{array.shape}:{array.dtype};".encode())
        digest.update(numpy.ascontiguousarray(array).tobytes())
    digest.update(f"batch_size={batch_size}".encode())
    return digest.hexdigest()


def _generators(model):
    """(path, generator) for the library's generator and every layer that owns one (seeded Dropout)."""
    found = [("library", random.generator())]

    def walk(layer, path):
        generator = getattr(layer, "_generator", None)
        if generator is not None:
            found.append((path, generator))
        for sub in layer._layers:
            walk(sub, f"{path}/{layer._key_of(sub)}")

    walk(model, "model")
    return found


def capture(model, loop, callbacks, fit_fingerprint):
    """(tensors, metadata) describing the run at ``loop`` (the fit loop's position)."""
    tensors = {f"weights/{name}": v.numpy() for name, v in weight_paths(model)}
    tensors.update({f"optimizer/{k}": numpy.asarray(v) for k, v in model.optimizer.get_state().items()})
    if loop["order"] is not None:
        tensors["loop/order"] = numpy.asarray(loop["order"], dtype=numpy.int64)
    state = {"fingerprint": fit_fingerprint, "epoch": loop["epoch"], "batch": loop["batch"],
             "history": model.history.history, "history_epochs": model.history.epoch,
             "generators": {path: g.bit_generator.state for path, g in _generators(model)},
             "metrics": [], "callbacks": {}, "learning_rate": _plain(model.optimizer._learning_rate)}
    for index, metric in enumerate([loop["loss_mean"]] + loop["metrics"]):
        values, arrays = _split(metric.get_state())
        state["metrics"].append(values)
        tensors.update({f"metric/{index}/{k}": a for k, a in arrays.items()})
    for index, callback in enumerate(callbacks):
        if hasattr(callback, "get_state"):
            values, arrays = _split(callback.get_state())
            state["callbacks"][str(index)] = {"class": type(callback).__name__, "state": values}
            tensors.update({f"callback/{index}/{k}": a for k, a in arrays.items()})
    return tensors, {"format": "backprop.backup", "format_version": "1", "state": json.dumps(state)}


def restore(model, tensors, metadata, callbacks, loop, fit_fingerprint):
    """Put the model, optimizer, generators, callbacks and loop back where ``capture`` saw them."""
    state = json.loads(metadata["state"])
    if state.get("fingerprint") != fit_fingerprint:
        raise ResumeError("the backup was made by a different run (the model, the data or the batch size "
                          "changed); delete the backup directory to start over")
    pairs = weight_paths(model)
    for name, variable in pairs:
        variable.assign(tensors[f"weights/{name}"])
    optimizer_state = {k[len("optimizer/"):]: v for k, v in tensors.items() if k.startswith("optimizer/")}
    model.optimizer.set_state(optimizer_state, model.trainable_variables)
    if state["learning_rate"] is not None:
        model.optimizer._learning_rate = state["learning_rate"]
    generators = dict(_generators(model))
    for path, generator_state in state["generators"].items():
        generators[path].bit_generator.state = generator_state
    model.history.history = {k: list(v) for k, v in state["history"].items()}
    model.history.epoch = list(state["history_epochs"])
    for index, metric in enumerate([loop["loss_mean"]] + loop["metrics"]):
        arrays = {k.split("/", 2)[2]: v for k, v in tensors.items() if k.startswith(f"metric/{index}/")}
        metric.set_state({**state["metrics"][index], **arrays})
    for index, callback in enumerate(callbacks):
        saved = state["callbacks"].get(str(index))
        if saved is not None and saved["class"] == type(callback).__name__:
            arrays = {k.split("/", 2)[2]: v for k, v in tensors.items() if k.startswith(f"callback/{index}/")}
            callback.set_state({**saved["state"], **arrays})
    loop.update(epoch=state["epoch"], batch=state["batch"], order=tensors.get("loop/order"))


def _plain(value):
    return value if isinstance(value, (int, float)) else None


def _split(state):
    """JSON values and arrays (lists of arrays are stored as numbered arrays)."""
    values, arrays = {}, {}
    for key, value in state.items():
        if isinstance(value, numpy.ndarray):
            arrays[key] = value
        elif isinstance(value, list) and value and isinstance(value[0], numpy.ndarray):
            values[key] = {"__arrays__": len(value)}
            arrays.update({f"{key}#{i}": a for i, a in enumerate(value)})
        else:
            values[key] = value
    return values, arrays


def join_arrays(state, key):
    """The list of arrays _split stored under ``key``."""
    count = state[key]["__arrays__"]
    return [state[f"{key}#{i}"] for i in range(count)]
