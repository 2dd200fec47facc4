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

from backprop.devices import to_host
from backprop.layers.layer import weight_paths


class ResumeError(ValueError):
    """A backup that does not belong to this run (other model, data or batch size)."""


def fingerprint(model, x, y, batch_size):
    digest = hashlib.sha256()
    for _, variable in weight_paths(model):  # shapes, not names: a model re-created in the same process
        digest.update(f"{variable.shape}:{variable.dtype};".encode())  # gets new automatic layer names
    for array in (x, y):
        digest.update(f"{array.shape}:{array.dtype};".encode())
        digest.update(numpy.ascontiguousarray(to_host(array)).tobytes())  # inputs resident on a device: read once
    digest.update(f"batch_size={batch_size}".encode())
    return digest.hexdigest()


def _generators(model):
    """(path, generator) for every layer that owns a generator: the model (fit's stream), seeded Dropout layers."""
    found = []

    def walk(layer, path):
        generator = getattr(layer, "_generator", None)
        if generator is not None:
            found.append((path, generator))
        for sub in layer._layers:
            walk(sub, f"{path}/{layer._key_of(sub)}")

    walk(model, "model")
    return found


def capture(trainer):
    """(tensors, metadata) describing the run at the trainer's position (after a completed batch or epoch)."""
    model, optimizer = trainer.model, trainer.model.optimizer
    tensors = {f"weights/{name}": v.numpy() for name, v in weight_paths(model)}
    tensors.update({f"optimizer/{k}": numpy.asarray(v) for k, v in optimizer.get_state().items()})
    if trainer.order is not None:
        tensors["loop/order"] = numpy.asarray(trainer.order, dtype=numpy.int64)
    schedule = optimizer.learning_rate_schedule
    state = {"fingerprint": trainer.fingerprint, "epoch": trainer.epoch, "batch": trainer.batch,
             "weight_names": [name for name, _ in weight_paths(model)],
             "history": trainer.history.history, "history_epochs": trainer.history.epoch,
             "generators": [[path, g.bit_generator.state] for path, g in _generators(model)],
             "metrics": [], "callbacks": {}, "learning_rate": None if schedule else optimizer.learning_rate}
    for index, metric in enumerate(trainer.accumulators.all()):
        values, arrays = _split(metric.get_state())
        state["metrics"].append(values)
        tensors.update({f"metric/{index}/{k}": a for k, a in arrays.items()})
    for index, callback in enumerate(trainer.callbacks):
        if hasattr(callback, "get_state"):
            values, arrays = _split(callback.get_state())
            state["callbacks"][str(index)] = {"class": type(callback).__name__, "state": values}
            tensors.update({f"callback/{index}/{k}": a for k, a in arrays.items()})
    return tensors, {"format": "backprop.backup", "format_version": "2", "state": json.dumps(state)}


def restore(trainer, tensors, metadata):
    """Put the model, optimizer, generators, callbacks and loop back where ``capture`` saw them."""
    from backprop.training.logs import Accumulators
    model = trainer.model
    state = json.loads(metadata["state"])
    if state.get("fingerprint") != trainer.fingerprint:
        raise ResumeError("the backup was made by a different run (the model, the data or the batch size "
                          "changed); delete the backup directory to start over")
    pairs = weight_paths(model)
    renamed = dict(zip(state["weight_names"], (name for name, _ in pairs)))  # saved name -> this model's
    for saved, (_, variable) in zip(state["weight_names"], pairs):
        variable.assign(tensors[f"weights/{saved}"])
    optimizer_state = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            name, _, slot = key[len("optimizer/"):].rpartition("/")
            optimizer_state[f"{renamed.get(name, name)}/{slot}" if name else slot] = value
    model.optimizer.set_state(optimizer_state, model.parameters)
    if state["learning_rate"] is not None:
        model.optimizer.learning_rate = state["learning_rate"]
    current = _generators(model)
    if len(current) != len(state["generators"]):
        raise ResumeError("the backup was made by a model with other random layers; delete the backup directory "
                          "to start over")
    for (_, generator), (_, generator_state) in zip(current, state["generators"]):  # in order: names may differ
        generator.bit_generator.state = generator_state
    trainer.history.history = {k: list(v) for k, v in state["history"].items()}
    trainer.history.epoch = list(state["history_epochs"])
    trainer.accumulators = Accumulators(model)
    for index, metric in enumerate(trainer.accumulators.all()):
        arrays = {k.split("/", 2)[2]: v for k, v in tensors.items() if k.startswith(f"metric/{index}/")}
        metric.set_state({**state["metrics"][index], **arrays})
    for index, callback in enumerate(trainer.callbacks):
        saved = state["callbacks"].get(str(index))
        if saved is not None and saved["class"] == type(callback).__name__:
            arrays = {k.split("/", 2)[2]: v for k, v in tensors.items() if k.startswith(f"callback/{index}/")}
            callback.set_state({**saved["state"], **arrays})
    trainer.epoch, trainer.batch, trainer.order = state["epoch"], state["batch"], tensors.get("loop/order")


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


def shared(workers, saved):
    """Rank 0's backup ``(tensors, metadata)`` (or None) on every rank, sent in the backup file's own format:
    ranks on other nodes need not see rank 0's disk."""
    from backprop.saving import tensor_file
    data = workers.share_bytes(None if saved is None else b"".join(tensor_file.encode(*saved)))
    return None if data is None else tensor_file.decode(data, "the backup rank 0 sent", allow_nonfinite=True)
