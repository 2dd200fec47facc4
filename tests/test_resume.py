"""Kill a training process with SIGKILL, resume it, and get the uninterrupted run bit for bit."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "scripts" / "train_with_backup.py"
STEPS_PER_EPOCH = 8  # 120 training examples / batch 16


def train(tmp_path, name, save_freq, kill_at=None, backup="backup", env=None):
    out = tmp_path / f"{name}.npz"
    args = [sys.executable, str(SCRIPT), str(out), str(tmp_path / backup), str(save_freq)]
    if kill_at is not None:
        args.append(str(kill_at))
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
    return result, out


def load(path):
    with np.load(path, allow_pickle=False) as archive:
        weights = [archive[f"arr_{i}"] for i in range(len([k for k in archive.files if k.startswith("arr_")]))]
        return weights, json.loads(str(archive["history"])), float(archive["count"]), int(archive["iterations"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("straight")
    result, out = train(tmp_path, "straight", "epoch")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "backup" / "backup.bp").exists(), "a successful finish deletes the backup"
    return load(out)


@pytest.mark.parametrize("save_freq, kill_at", [(3, 19), ("epoch", 21), (1, 8)])
def test_killed_run_resumes_bit_identically(tmp_path, uninterrupted, save_freq, kill_at):
    killed, _ = train(tmp_path, "run", save_freq, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "backup" / "backup.bp").exists()
    resumed, out = train(tmp_path, "run", save_freq)
    assert resumed.returncode == 0, resumed.stderr
    weights, history, count, iterations = load(out)
    expected_weights, expected_history, expected_count, expected_iterations = uninterrupted
    assert history == expected_history
    assert all(np.array_equal(a, b) for a, b in zip(weights, expected_weights))
    epochs_run = len(history["loss"])
    assert count == expected_count == epochs_run * STEPS_PER_EPOCH  # every batch exactly once
    assert iterations == expected_iterations


def test_corrupted_latest_backup_falls_back_to_the_previous(tmp_path, uninterrupted):
    killed, _ = train(tmp_path, "run", 2, kill_at=13)
    assert killed.returncode == -signal.SIGKILL
    (tmp_path / "backup" / "backup.bp").write_text("0")
    resumed, out = train(tmp_path, "run", 2)
    assert resumed.returncode == 0, resumed.stderr
    weights, history, _, _ = load(out)
    assert history == uninterrupted[1] and all(np.array_equal(a, b) for a, b in zip(weights, uninterrupted[0]))


def test_resume_with_other_data_is_refused(tmp_path):
    killed, _ = train(tmp_path, "run", 2, kill_at=5)
    assert killed.returncode == -signal.SIGKILL
    refused, _ = train(tmp_path, "run", 2, env={"DATA_SEED": "1"})
    assert refused.returncode != 0 and "different run" in refused.stderr


def test_ctrl_c_saves_a_backup(tmp_path):
    import backprop as bp
    bp.random.set_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = bp.Sequential([bp.layers.Dense(4), bp.layers.Dense(1)])
    model.compile(optimizer="adam", loss=bp.losses.BinaryCrossentropy(from_logits=True))
    press = bp.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: os.kill(os.getpid(), signal.SIGINT) if batch == 2 else None)
    backup = bp.callbacks.BackupAndRestore(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt, match="run the same fit again to resume"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[press, backup])
    assert (tmp_path / "b" / "backup.bp").exists()
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[backup])
    assert len(history.history["loss"]) == 3 and not (tmp_path / "b" / "backup.bp").exists()


def test_a_foreign_file_as_latest_backup_is_skipped(tmp_path, uninterrupted):
    import backprop as bp
    killed, _ = train(tmp_path, "run", 2, kill_at=13)
    assert killed.returncode == -signal.SIGKILL
    bp.saving.tensor_file.write(tmp_path / "backup" / "backup.bp", {"w": np.zeros(2)}, {"format": "something.else"})
    resumed, out = train(tmp_path, "run", 2)
    assert resumed.returncode == 0, resumed.stderr
    assert load(out)[1] == uninterrupted[1]


KILL_SCRIPT = """
import os, sys
import backprop.run as run
from backprop import cli
phase = sys.argv[1]

def die(*args, **kwargs):
    os._exit(137)  # as SIGKILL would: no clean-up, no finally

def after(original, count=1):
    calls = []
    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == count:
            die()
        return result
    return wrapped

if phase == "training":
    from backprop import callbacks
    callbacks.BackupAndRestore.save = after(callbacks.BackupAndRestore.save, 3)
elif phase == "after-fit":
    run._save_finished = die
elif phase == "evaluation":
    run.evaluate = die
elif phase == "writing":
    run.write_plots = die
elif phase == "renaming":
    original = os.replace
    os.replace = lambda a, b: die() if ".run-" in str(a) else original(a, b)
elif phase == "cleanup":
    original = run.shutil.rmtree
    run.shutil.rmtree = lambda path, **kw: die() if str(path).endswith(".backup") else original(path, **kw)
sys.exit(cli.main(sys.argv[2:]))
"""

CLI_ARGS = ["train", "--data", "moons", "--layers", "8", "--epochs", "6", "--quiet", "--seed", "3"]


def run_cli(tmp_path, *args, phase="none"):
    return subprocess.run([sys.executable, "-c", KILL_SCRIPT, phase, *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "MPLBACKEND": "Agg"})


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("cli-straight")
    result = run_cli(tmp_path, *CLI_ARGS, "--out", "run")
    assert result.returncode == 0, result.stderr
    return tmp_path / "run"


def run_folder(path):
    import backprop as bp
    return ([w.tolist() for w in bp.models.load_model(path / "model.bp").get_weights()],
            (path / "metrics.json").read_text(), (path / "history.csv").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["training", "after-fit", "evaluation", "writing", "renaming", "cleanup"])
def test_a_cli_run_killed_in_any_phase_resumes_to_the_same_folder(tmp_path, straight_run, phase):
    killed = run_cli(tmp_path, *CLI_ARGS, "--out", "run", phase=phase)
    assert killed.returncode == 137, killed.stderr
    if phase == "cleanup":  # the folder was already in place: nothing to resume, the run is complete
        assert run_folder(tmp_path / "run") == run_folder(straight_run)
        return
    assert not (tmp_path / "run").exists()
    resumed = run_cli(tmp_path, *CLI_ARGS, "--out", "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert run_folder(tmp_path / "run") == run_folder(straight_run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "stale staging folders, locks or backups remain"


def test_two_runs_on_one_output_the_second_is_refused(tmp_path):
    import fcntl
    (tmp_path / "run.lock").write_text("")
    with open(tmp_path / "run.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run_cli(tmp_path, *CLI_ARGS, "--out", "run")
    assert result.returncode == 2 and "another backprop train is writing" in result.stderr


def test_every_backup_damaged_is_said_not_silently_restarted(tmp_path):
    killed = run_cli(tmp_path, *CLI_ARGS, "--out", "run", phase="training")
    assert killed.returncode == 137
    for name in ("backup.bp", "backup.prev.bp"):
        path = tmp_path / "run.backup" / name
        if path.exists():
            path.write_bytes(b"garbage")
    result = run_cli(tmp_path, *CLI_ARGS, "--out", "run", "--resume")
    assert result.returncode == 2 and "is damaged" in result.stderr


class Crash(Exception):
    pass


def in_process_run(tmp_path, crash_after=None, x=None, metrics=("accuracy", "AUC"), **fit_options):
    """fit with per-batch backups in this process; ``crash_after`` raises from a callback after that many batches
    (the backup of the batch before is on disk, as after a kill)."""
    import backprop as bp
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 3)) if x is None else x
    y = (x[:, 0] - x[:, 1] > 0).astype(int)
    bp.random.set_seed(4)
    model = bp.Sequential([bp.layers.Input(shape=(3,)), bp.layers.Dense(8, activation="relu"),
                           bp.layers.Dropout(0.3, seed=5), bp.layers.Dropout(0.2), bp.layers.Dense(1)])
    model.compile(optimizer=bp.optimizers.Adam(bp.optimizers.schedules.ExponentialDecay(0.01, 10, 0.9)),
                  loss=bp.losses.BinaryCrossentropy(from_logits=True), metrics=list(metrics))
    batches = []

    def count(batch, logs):
        batches.append(batch)
        if crash_after is not None and len(batches) == crash_after:
            raise Crash()

    callbacks = [bp.callbacks.EarlyStopping(monitor="val_loss", patience=50, restore_best_weights=True),
                 bp.callbacks.ReduceLROnPlateau(patience=2),
                 bp.callbacks.BackupAndRestore(tmp_path / "backup", save_freq=1),
                 bp.callbacks.LambdaCallback(on_train_batch_end=count)]
    history = model.fit(x, y, batch_size=16, epochs=4, validation_split=0.25, verbose=0, callbacks=callbacks,
                        **fit_options)
    return model, history, batches


@pytest.mark.usefixtures("each_device_slow")  # on a device too (slow): backups hold host copies, restored there
def test_resume_in_process_restores_everything(tmp_path):
    """Weights, Adam slots, the schedule's position, both Dropout generators, the shuffled order, running
    metrics (AUC's scores too), callbacks' states and the history: the resumed run equals a straight one."""
    straight_model, straight_history, _ = in_process_run(tmp_path / "a")
    with pytest.raises(Crash):
        in_process_run(tmp_path / "b", crash_after=7)  # in epoch 2's batch 1 (5 batches an epoch), before its backup
    model, history, batches = in_process_run(tmp_path / "b")
    assert batches[0] == 1, "resumed at the batch after the last backup"
    assert history.history == straight_history.history
    for a, b in zip(model.get_weights(), straight_model.get_weights()):
        assert np.array_equal(a, b)
    assert model.optimizer.iterations == straight_model.optimizer.iterations
    assert not (tmp_path / "b" / "backup" / "backup.bp").exists()


def test_resume_with_other_data_is_refused_in_process(tmp_path):
    from backprop.training.resume import ResumeError
    with pytest.raises(Crash):
        in_process_run(tmp_path, crash_after=3)
    other = np.random.default_rng(0).normal(size=(96, 3))
    other[0, 0] += 1.0
    with pytest.raises(ResumeError, match=r"^the backup was made by a different run \(the model, the data or the batch "
                                          r"size changed\); delete the backup directory to start over$"):
        in_process_run(tmp_path, x=other)


def test_every_backup_damaged_names_them_in_process(tmp_path):
    from backprop.training.resume import ResumeError
    with pytest.raises(Crash):
        in_process_run(tmp_path, crash_after=7)
    for name in ("backup.bp", "backup.prev.bp"):
        (tmp_path / "backup" / name).write_bytes(b"garbage")
    expected = (f"every backup in '{tmp_path / 'backup'}' is damaged (backup.bp, backup.prev.bp); "
                "delete the directory to start over")
    with pytest.raises(ResumeError) as error:
        in_process_run(tmp_path)
    assert str(error.value) == expected


@pytest.mark.filterwarnings("ignore:fit. the loss became NaN")  # the data's NaN, on purpose
def test_a_backup_holding_a_nan_still_resumes(tmp_path):
    """Backups are the run's exact state: NaN weights and logs (allow_nonfinite) are restored, not refused."""
    x = np.random.default_rng(1).normal(size=(96, 3))
    x[20, 0] = np.nan  # batch 2 of epoch 1: its NaN gradient makes every weight NaN from then on
    with np.errstate(invalid="ignore"):
        straight, straight_history, _ = in_process_run(tmp_path / "a", x=x, metrics=(), allow_nonfinite=True)
        with pytest.raises(Crash):
            in_process_run(tmp_path / "b", crash_after=7, x=x, metrics=(), allow_nonfinite=True)
        model, history, batches = in_process_run(tmp_path / "b", x=x, metrics=(), allow_nonfinite=True)
    assert batches[0] == 1 and np.isnan(model.get_weights()[0]).all()
    np.testing.assert_equal(history.history, straight_history.history)  # NaN equals NaN here


def test_checkpoint_and_early_stopping_keep_their_best_across_a_resume(tmp_path):
    """After a resume, save_best_only still compares with the best before the crash (a worse epoch writes
    nothing), and EarlyStopping still restores the best weights, seen before the crash."""
    import backprop as bp
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 2)), rng.integers(0, 2, 32)
    scripted, weights = [1.0, 0.5, 2.0, 3.0], {}

    def run(crash_at=None):
        bp.random.set_seed(0)
        model = bp.Sequential([bp.layers.Input(shape=(2,)), bp.layers.Dense(1)])
        model.compile(optimizer=bp.optimizers.SGD(0.1), loss="mse")

        def script(epoch, logs):
            logs["val_loss"] = scripted[epoch]
            weights[epoch] = model.get_weights()
            ran.append(epoch)
            if epoch == crash_at:
                raise Crash()

        callbacks = [bp.callbacks.LambdaCallback(on_epoch_end=script),
                     bp.callbacks.ModelCheckpoint(str(tmp_path / "best.bp"), save_best_only=True),
                     bp.callbacks.EarlyStopping(patience=10, restore_best_weights=True),
                     bp.callbacks.BackupAndRestore(tmp_path / "backup")]
        model.fit(x, y, epochs=4, verbose=0, callbacks=callbacks)
        return model

    ran = []
    with pytest.raises(Crash):
        run(crash_at=2)  # epoch 3 crashes before its backup: the resume starts there
    ran.clear()
    model = run()
    assert ran == [2, 3]
    best = bp.models.load_model(tmp_path / "best.bp")
    for saved, restored, expected in zip(best.get_weights(), model.get_weights(), weights[1]):
        assert np.array_equal(saved, expected) and np.array_equal(restored, expected)


@pytest.mark.parametrize("save_freq", [0, -2, 2.5, True, "batch"])
def test_backup_save_freq_is_epoch_or_a_positive_whole_number(tmp_path, save_freq):
    import backprop as bp
    with pytest.raises(ValueError, match=r"^save_freq must be 'epoch' or a positive number of batches, got "):
        bp.callbacks.BackupAndRestore(tmp_path, save_freq=save_freq)


def test_a_foreign_file_holding_a_state_is_no_backup(tmp_path):
    import backprop as bp
    from backprop.training.resume import ResumeError
    backup = bp.callbacks.BackupAndRestore(tmp_path)
    bp.saving.tensor_file.write(backup.latest, {"w": np.zeros(2)}, {"format": "something.else", "state": "{}"})
    with pytest.raises(ResumeError, match="every backup in .* is damaged \\(backup.bp\\)"):
        backup.load()


def test_a_constant_learning_rate_lowered_by_a_callback_is_restored(tmp_path):
    """ReduceLROnPlateau changes a constant rate; the backup keeps it (a schedule is restored by position)."""
    straight = plateau_run(tmp_path / "a")
    with pytest.raises(Crash):
        plateau_run(tmp_path / "b", crash_at=2)
    resumed = plateau_run(tmp_path / "b")
    assert resumed.optimizer.learning_rate == straight.optimizer.learning_rate == pytest.approx(0.1 * 0.5 ** 3)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        assert np.array_equal(a, b)


def test_resuming_with_another_batch_size_is_refused(tmp_path):
    from backprop.training.resume import ResumeError
    with pytest.raises(Crash):
        plateau_run(tmp_path, crash_at=2)
    with pytest.raises(ResumeError, match="different run"):
        plateau_run(tmp_path, batch_size=16)


def plateau_run(folder, crash_at=None, batch_size=8):
    """SGD at a constant 0.1 that ReduceLROnPlateau halves every epoch; backups every epoch; a crash in
    epoch ``crash_at``'s end, after the backup of the epoch before."""
    import backprop as bp
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 2)), rng.integers(0, 2, 32)
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Input(shape=(2,)), bp.layers.Dense(1)])
    model.compile(optimizer=bp.optimizers.SGD(0.1), loss="mse")

    def script(epoch, logs):
        logs["val_loss"] = 1.0  # never improves
        if epoch == crash_at:
            raise Crash()

    callbacks = [bp.callbacks.LambdaCallback(on_epoch_end=script), bp.callbacks.ReduceLROnPlateau(patience=0, factor=0.5),
                 bp.callbacks.BackupAndRestore(folder)]
    model.fit(x, y, epochs=4, batch_size=batch_size, verbose=0, callbacks=callbacks)
    return model


def test_a_backup_with_a_flipped_bit_counts_as_damaged(tmp_path):
    """The file format alone would load the wrong numbers: the checksum makes the previous backup the one used."""
    import backprop as bp
    backup = bp.callbacks.BackupAndRestore(tmp_path)
    state = {"format": "backprop.backup", "format_version": "2", "state": "{}"}
    backup.save({"weights/w": np.zeros(4, np.float32)}, state)
    backup.save({"weights/w": np.ones(4, np.float32)}, state)
    data = bytearray((tmp_path / "backup.bp").read_bytes())
    data[-1] ^= 0x01  # inside the last float of the data section
    (tmp_path / "backup.bp").write_bytes(bytes(data))
    tensors, _ = backup.load()
    np.testing.assert_array_equal(tensors["weights/w"], np.zeros(4, np.float32))
