"""Data-parallel fit on MPI: real jobs under mpiexec (subprocesses with timeouts, so a hang fails)."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import backprop as bp

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'backprop[mpi]')")
MPIEXEC = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
if not os.path.exists(MPIEXEC):
    pytest.skip("no mpiexec on PATH (pip install 'backprop[mpi]' brings MPICH's)", allow_module_level=True)

SCRIPT = Path(__file__).parent / "scripts" / "train_distributed.py"


def run(tmp_path, name, ranks, options=None, timeout=120):
    out = tmp_path / f"{name}.npz"
    command = [sys.executable, str(SCRIPT), str(out), json.dumps(options or {})]
    if ranks:
        command = [MPIEXEC, "-n", str(ranks)] + command
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
    return result, out, time.monotonic() - started


def load(path):
    with np.load(path) as archive:
        weights = [archive[k] for k in sorted((k for k in archive.files if k.startswith("arr_")),
                                              key=lambda k: int(k[4:]))]
        return weights, json.loads(str(archive["history"])), int(archive["size"])


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    result, out, _ = run(tmp_path_factory.mktemp("single"), "single", 0)
    assert result.returncode == 0, result.stderr
    return load(out)


def assert_same_training(a, b):
    (weights_a, history_a, _), (weights_b, history_b, _) = a, b
    assert history_a.keys() == history_b.keys() and len(history_a["loss"]) == len(history_b["loss"])
    for key in history_a:
        np.testing.assert_allclose(history_b[key], history_a[key], rtol=1e-9)
    for wa, wb in zip(weights_a, weights_b):
        np.testing.assert_allclose(wb, wa, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ranks", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_ranks_train_like_one_process_with_the_global_batch(tmp_path, single, ranks):
    # float64, shuffling, a validation split, ragged last batches (3 ranks: one rank gets no example),
    # a schedule, L2, EarlyStopping and ReduceLROnPlateau (see the script)
    result, out, _ = run(tmp_path, "parallel", ranks)
    assert result.returncode == 0, result.stderr
    parallel = load(out)
    assert parallel[2] == ranks
    assert_same_training(single, parallel)


@pytest.mark.parametrize("ranks, bucket_bytes", [(2, 0), (2, 1), pytest.param(3, 500, marks=pytest.mark.slow)])
def test_sums_during_the_backward_pass_or_after_it_train_alike(tmp_path, single, ranks, bucket_bytes):
    """Issue #30: the gradients' allreduce overlaps the backward pass, in buckets (the default's one bucket
    holds this small model whole): one sum after the backward pass (0), a bucket per variable (1), or
    buckets of several variables with a rank that has no example (3 ranks)."""
    result, out, _ = run(tmp_path, "parallel", ranks, {"bucket_bytes": bucket_bytes})
    assert result.returncode == 0, result.stderr
    assert_same_training(single, load(out))


@pytest.mark.slow
@pytest.mark.parametrize("options", [{"shuffle": False}, {"validation_split": 0.0}])
def test_other_fits_too(tmp_path, options):
    result, out, _ = run(tmp_path, "single", 0, options)
    assert result.returncode == 0, result.stderr
    result, parallel, _ = run(tmp_path, "parallel", 2, options)
    assert result.returncode == 0, result.stderr
    assert_same_training(load(out), load(parallel))


def test_each_rank_s_metrics_add_up_once_an_epoch_to_one_process_s(tmp_path):
    """Issue #30: every step gathered all predictions to every rank for the metrics. Now each rank keeps its own
    shards' metric states and the ranks add them up at the end of each epoch (AUC: its scores joined), and a
    backup in the middle of an epoch holds every rank's share: the History is still one process's, and a killed
    job resumes to it."""
    options = {"binary": True}
    result, out, _ = run(tmp_path, "single", 0, options)
    assert result.returncode == 0, result.stderr
    single = load(out)
    assert {"auc", "precision", "recall", "mse", "binary_accuracy"} <= single[1].keys()
    result, parallel, _ = run(tmp_path, "parallel", 2, options)
    assert result.returncode == 0, result.stderr
    assert_same_training(single, load(parallel))
    backup = {**options, "backup": str(tmp_path / "backup")}
    result, _, _ = run(tmp_path, "killed", 2, {**backup, "kill_at": 5}, timeout=60)  # backed up after 3 of 6
    assert result.returncode != 0 and (tmp_path / "backup" / "backup.bp").exists()
    result, resumed, _ = run(tmp_path, "resumed", 2, backup)
    assert result.returncode == 0, result.stderr
    assert_same_training(single, load(resumed))


def test_ctrl_c_reaching_one_rank_first_ends_the_job_and_resumes_exactly(tmp_path, single):
    """A rank that sees Ctrl-C stops at its next batch; it must not enter a collective the others are not in
    (a backup's metric merge, out of step with their next allreduce). The job ends, and resuming from the
    last backup the ranks all made trains exactly as one process."""
    options = {"backup": str(tmp_path / "backup")}
    result, out, seconds = run(tmp_path, "interrupted", 2, {**options, "interrupt_at": 5}, timeout=60)
    assert result.returncode != 0 and not out.exists() and seconds < 30, result.stderr
    assert "training interrupted" in result.stderr and "the last backup the ranks made together" in result.stderr
    result, out, _ = run(tmp_path, "resumed", 2, options)
    assert result.returncode == 0, result.stderr
    assert_same_training(single, load(out))


def test_an_exception_on_one_rank_stops_every_rank(tmp_path):
    result, out, seconds = run(tmp_path, "failing", 2, {"fail_on_rank": 1}, timeout=60)
    assert result.returncode != 0 and "rank 1 failed on purpose" in result.stderr
    assert not out.exists() and seconds < 30


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_and_the_backup_resumes_exactly(tmp_path, single):
    options = {"backup": str(tmp_path / "backup")}
    result, out, seconds = run(tmp_path, "killed", 2, {**options, "kill_at": 10}, timeout=60)
    assert result.returncode != 0 and not out.exists() and seconds < 30
    assert (tmp_path / "backup" / "backup.bp").exists()
    result, out, _ = run(tmp_path, "resumed", 2, options)
    assert result.returncode == 0, result.stderr
    assert_same_training(single, load(out))
    assert not (tmp_path / "backup" / "backup.bp").exists()  # rank 0 cleans up after a finished run


def test_a_stalled_rank_ends_the_job_after_the_timeout(tmp_path, monkeypatch):
    """Issue #30: a rank that stops answering (here: asleep for a minute) left the others in a collective for
    ever; after BACKPROP_MPI_TIMEOUT seconds a waiting rank ends the job, saying why."""
    monkeypatch.setenv("BACKPROP_MPI_TIMEOUT", "3")
    result, out, seconds = run(tmp_path, "stalled", 2, {"stall_at": 5}, timeout=50)
    assert result.returncode != 0 and not out.exists() and seconds < 30
    assert "rank 0: no answer from the other ranks in" in result.stderr and "a rank stalled" in result.stderr


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_a_bad_stall_timeout_is_refused(monkeypatch, value):
    monkeypatch.setenv("BACKPROP_MPI_TIMEOUT", value)
    with pytest.raises(ValueError, match="BACKPROP_MPI_TIMEOUT must be a"):
        bp.distribute.stall_timeout()


@pytest.mark.parametrize("value", ["big", "-1", "nan", "inf"])
def test_a_bad_bucket_size_is_refused(monkeypatch, value):
    monkeypatch.setenv("BACKPROP_MPI_BUCKET_KB", value)
    with pytest.raises(ValueError, match="BACKPROP_MPI_BUCKET_KB must be"):
        bp.distribute.bucket_size()


def test_bucket_sizes_in_kibibytes(monkeypatch):
    for text, size in [("0", 0), ("256", 262144), ("0.5", 512)]:
        monkeypatch.setenv("BACKPROP_MPI_BUCKET_KB", text)
        assert bp.distribute.bucket_size() == size
    monkeypatch.delenv("BACKPROP_MPI_BUCKET_KB")
    assert bp.distribute.bucket_size() == 256 * 1024


@pytest.mark.slow
def test_a_backup_on_rank_0_s_disk_alone_resumes_every_rank(tmp_path, single):
    """Issue #30: on nodes without a shared disk only rank 0's folder holds the backup (rank 0 writes it);
    every rank must resume from it, not rank 1 from nothing."""
    options = {"backup": str(tmp_path / "backup"), "node_local": True}
    result, out, _ = run(tmp_path, "killed", 2, {**options, "kill_at": 10}, timeout=60)
    assert result.returncode != 0 and (tmp_path / "backup" / "node0" / "backup.bp").exists()
    assert not (tmp_path / "backup" / "node1" / "backup.bp").exists()
    result, out, _ = run(tmp_path, "resumed", 2, options)
    assert result.returncode == 0, result.stderr
    assert_same_training(single, load(out))


def test_in_one_process_distribute_is_a_no_op():
    assert bp.distribute.init() == 0 and bp.distribute.size() == 1 and bp.distribute.is_main()
    assert bp.distribute.current() is None


@pytest.mark.slow
def test_too_many_ranks_for_the_batch_is_a_clear_error(tmp_path):
    script = tmp_path / "tiny.py"
    script.write_text("import numpy as np, backprop as bp\nbp.distribute.init()\n"
                      "m = bp.Sequential([bp.layers.Dense(1, input_shape=(2,))])\nm.compile(loss='mse')\n"
                      "m.fit(np.ones((8, 2)), np.ones(8), batch_size=1, verbose=0)\n")
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and "batch_size of at least 2" in result.stderr


def cli(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "backprop", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=180, env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})


@pytest.mark.slow
def test_cli_workers_train_like_one_process(tmp_path):
    common = ["train", "--data", "moons", "--epochs", "6", "--quiet", "--no-plots"]
    alone = cli(*common, "--out", "alone", cwd=tmp_path)
    together = cli(*common, "--workers", "2", "--out", "together", cwd=tmp_path)
    assert alone.returncode == 0 and together.returncode == 0, together.stderr
    assert together.stdout == alone.stdout.replace("alone", "together")  # rank 0 alone prints
    a, b = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("alone", "together"))
    assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-5) and b["test_accuracy"] == a["test_accuracy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone", "together"]  # no stray files from rank 1


@pytest.mark.parametrize("args, env, message", [
    (["--workers", "0"], None, "--workers: invalid value: '0'"),
    (["--workers", "3", "--batch-size", "2"], None, "--batch-size 2 is smaller than --workers 3"),
    (["--workers", "2"], "no-mpi4py", "--workers needs mpi4py and an MPI"),
])
def test_cli_workers_refuses_what_cannot_run(tmp_path, args, env, message):
    extra = None
    if env == "no-mpi4py":  # a package of that name that fails to import stands for a missing mpi4py
        (tmp_path / "shadow" / "mpi4py").mkdir(parents=True)
        (tmp_path / "shadow" / "mpi4py" / "__init__.py").write_text("raise ImportError('no MPI here')\n")
        extra = {"PYTHONPATH": str(tmp_path / "shadow")}
    result = cli("train", "--data", "moons", "--out", "run", *args, cwd=tmp_path, env=extra)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) <= 13
    assert not (tmp_path / "run").exists()


def test_an_error_on_one_rank_of_the_cli_ends_the_job(tmp_path):
    """The CLI catches errors to print one line, so the uncaught-exception hook never aborted the job: rank 0
    waited in an allreduce forever (issue #30). Now the failing rank ends the job with its exit code."""
    script = Path(__file__).parent / "scripts" / "cli_fails_on_one_rank.py"
    started = time.monotonic()
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode != 0 and time.monotonic() - started < 30
    assert "rank 1 broke" in result.stderr + result.stdout and "rank 1 of 2: exit code 1; aborting the job" in \
        result.stderr + result.stdout


def test_a_rank_that_starts_late_joins_the_run_rank_0_began(tmp_path):
    """Every rank checked --out itself, so a rank arriving after rank 0 had made the run's backup folder met
    "an interrupted run left a backup" and ended the job with exit 2 (seen in CI). Rank 0 alone checks now."""
    script = Path(__file__).parent / "scripts" / "cli_late_rank.py"
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script)], capture_output=True, text=True,
                            timeout=90, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r" / "model.bp").is_file() and "test_accuracy=" in result.stdout


def test_workers_on_a_gpu_are_refused_in_one_line(monkeypatch, capsys):
    """Until NCCL is built, every rank would use GPU 0 and hand device arrays to an MPI that cannot read them
    (issue #30): refused before any process is started. A GPU is faked by the strict device."""
    from backprop import cli, devices
    real = devices.get
    monkeypatch.setattr(devices, "get", lambda name: real("strict") if name == "gpu" else real(name))
    assert cli.main(["train", "--workers", "2", "--device", "gpu"]) == 2
    assert "--workers with --device gpu is not supported yet" in capsys.readouterr().err


def test_a_model_built_by_fit_trains_alike_on_ranks_and_in_one_process(tmp_path):
    """One process drew the shuffled order before the weights (built at the first step), ranks drew the
    weights first (built before the broadcast): different trainings with the default shuffle (issue #30)."""
    options = {"built_by_fit": True}
    result, out_single, _ = run(tmp_path, "single_unbuilt", 0, options)
    assert result.returncode == 0, result.stderr
    result, out_ranks, _ = run(tmp_path, "ranks_unbuilt", 2, options)
    assert result.returncode == 0, result.stderr
    assert_same_training(load(out_single), load(out_ranks))
