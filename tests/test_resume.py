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
