"""A fit for the MPI tests: python train_distributed.py OUT [options as JSON]; run alone or under mpiexec.

Float64, shuffling, a validation split, a ragged last batch (101 training examples, batch 20), L2,
Adam with a schedule, EarlyStopping and ReduceLROnPlateau; rank 0 writes OUT (.npz): weights and
history (after one more train_on_batch, on rank 0 alone). Options: {"fail_on_rank": r} raises on that rank after the first epoch; {"backup": dir,
"kill_at": n} backs up and SIGKILLs rank 1 after n batches; {"stall_at": n} makes rank 1 sleep for a minute
after n batches; {"interrupt_at": n} sends rank 1 alone a SIGINT after n batches; "shuffle" and "validation_split" change the fit;
"built_by_fit" leaves the input shape out, so fit builds the model; "node_local" gives each rank its own
backup folder; "binary" trains one logit with AUC, precision, recall and MSE among the metrics; "bucket_bytes" sets
the size of the gradients' buckets summed during the backward pass (0: one sum after it).
"""
import json
import os
import signal
import sys
import time

import numpy as np

import backprop as bp


def after_batches(count, action):
    """A callback that calls ``action()`` at the end of its ``count``-th training batch."""
    seen = {"batches": 0}

    def at_batch_end(batch, logs):
        seen["batches"] += 1
        if seen["batches"] == count:
            action()
    return bp.callbacks.LambdaCallback(on_train_batch_end=at_batch_end)


def main():
    out = sys.argv[1]
    options = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    bp.distribute.init()
    if "bucket_bytes" in options and bp.distribute.current() is not None:
        bp.distribute.current().bucket_bytes = options["bucket_bytes"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(130, 6))
    y = (x[:, 0] - x[:, 1] + 0.5 * x[:, 2] ** 2 > 0.3).astype(np.int64)
    bp.random.set_seed(0)
    shape = {} if options.get("built_by_fit") else {"input_shape": (6,)}  # without: fit builds the model
    binary = options.get("binary", False)  # one logit and the metrics whose states are not a sum (AUC)
    model = bp.Sequential([bp.layers.Dense(16, activation="tanh", dtype="float64",
                                           kernel_regularizer=bp.regularizers.L2(1e-3), **shape),
                           bp.layers.Dense(1 if binary else 3, dtype="float64")])
    schedule = bp.optimizers.schedules.ExponentialDecay(0.02, decay_steps=7, decay_rate=0.9)
    if binary:
        y = y.astype(np.float64)
        model.compile(optimizer=bp.optimizers.Adam(schedule), loss=bp.losses.BinaryCrossentropy(from_logits=True),
                      metrics=["binary_accuracy", "auc", "precision", "recall", "mse"])
    else:
        model.compile(optimizer=bp.optimizers.Adam(schedule), metrics=["accuracy"],
                      loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True))
    monitor = "val_loss" if options.get("validation_split", 0.22) else "loss"
    callbacks = [bp.callbacks.EarlyStopping(monitor=monitor, patience=4, restore_best_weights=True),
                 bp.callbacks.ReduceLROnPlateau(monitor="loss", patience=1, factor=0.5)]
    if "backup" in options:  # "node_local": each rank its own folder, as on nodes that share no disk
        folder = os.path.join(options["backup"], f"node{bp.distribute.rank()}") if options.get("node_local") \
            else options["backup"]
        callbacks.append(bp.callbacks.BackupAndRestore(folder, save_freq=3))
    if "fail_on_rank" in options and bp.distribute.rank() == options["fail_on_rank"]:
        def fail(epoch, logs):
            raise RuntimeError(f"rank {bp.distribute.rank()} failed on purpose")
        callbacks.append(bp.callbacks.LambdaCallback(on_epoch_end=fail))
    faults = {"kill_at": lambda: os.kill(os.getpid(), signal.SIGKILL),
              "interrupt_at": lambda: os.kill(os.getpid(), signal.SIGINT),  # Ctrl-C reaching one rank first
              "stall_at": lambda: time.sleep(60)}
    for option, fault in faults.items():
        if option in options and bp.distribute.rank() == 1:
            callbacks.append(after_batches(options[option], fault))
    history = model.fit(x, y, batch_size=20, epochs=12, validation_split=options.get("validation_split", 0.22),
                        shuffle=options.get("shuffle", True), verbose=0, callbacks=callbacks)
    if bp.distribute.is_main():
        model.train_on_batch(x[:4], y[:4])  # rank 0 alone, after fit: must not wait in a collective
        np.savez(out, *model.get_weights(), history=json.dumps(history.history), size=bp.distribute.size())


if __name__ == "__main__":
    main()
