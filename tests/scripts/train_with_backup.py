"""A training run for the kill-and-resume tests: python train_with_backup.py OUT BACKUP_DIR SAVE_FREQ [KILL_AT].

Trains 6 epochs with dropout, shuffling, a validation split, Adam with a decaying schedule and
EarlyStopping; a BatchCounter layer counts (in a saved, non-trainable weight) every training batch.
With KILL_AT the process SIGKILLs itself after that many batches. Writes OUT (.npz) at the end.
"""
import json
import os
import signal
import sys

import numpy as np

import backprop as bp


class BatchCounter(bp.layers.Layer):
    def build(self, input_shape):
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False, name="count")

    def call(self, inputs, training=None):
        if training:
            self.count.assign_add(1.0)
        return inputs


def main():
    out, backup_dir, save_freq = sys.argv[1], sys.argv[2], sys.argv[3]
    kill_at = int(sys.argv[4]) if len(sys.argv) > 4 else None
    data_seed = int(os.environ.get("DATA_SEED", "0"))
    rng = np.random.default_rng(data_seed)
    x = rng.normal(size=(150, 5)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] + 0.3 * rng.normal(size=150) > 0).astype(np.int64)
    bp.random.set_seed(0)
    model = bp.Sequential([BatchCounter(), bp.layers.Dense(16, activation="relu"), bp.layers.Dropout(0.3),
                           bp.layers.Dense(1)])
    schedule = bp.optimizers.schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.9)
    model.compile(optimizer=bp.optimizers.Adam(schedule), loss=bp.losses.BinaryCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    callbacks = [bp.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
                 bp.callbacks.BackupAndRestore(backup_dir, save_freq="epoch" if save_freq == "epoch" else int(save_freq))]
    if kill_at is not None:
        counter = {"batches": 0}

        def maybe_die(batch, logs):
            counter["batches"] += 1
            if counter["batches"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        callbacks.append(bp.callbacks.LambdaCallback(on_train_batch_end=maybe_die))
    history = model.fit(x, y, batch_size=16, epochs=6, validation_split=0.2, verbose=0, callbacks=callbacks)
    np.savez(out, *model.get_weights(), count=model.layers[0].count.numpy(),
             history=json.dumps(history.history), iterations=model.optimizer.iterations)


if __name__ == "__main__":
    main()
