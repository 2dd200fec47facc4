"""Learning-rate finder, the regimes sweep and the divergence diagnosis."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import backprop as bp
from backprop import tools

X, Y = bp.datasets.moons(300)
Y = Y.astype(np.float32)


def build(rate):
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Dense(16, activation="relu", input_shape=(2,)), bp.layers.Dense(1)])
    model.compile(optimizer=bp.optimizers.SGD(rate, momentum=0.5),
                  loss=bp.losses.BinaryCrossentropy(from_logits=True))
    return model


def test_the_range_test_suggests_a_rate_that_trains_and_leaves_everything_as_it_was():
    model = build(0.01)
    model.fit(X, Y, epochs=1, verbose=0)  # optimizer state exists: it must come back too
    weights, state = model.get_weights(), model.optimizer.get_state()
    random_state = bp.random.get_state()
    curve = tools.find_learning_rate(model, X, Y, steps=80)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    assert all(np.array_equal(a, b) for a, b in zip(state.values(), model.optimizer.get_state().values()))
    assert model.optimizer.learning_rate == pytest.approx(0.01) and bp.random.get_state() == random_state
    rates = curve.learning_rates
    assert rates[0] == pytest.approx(1e-7) and all(b > a for a, b in zip(rates, rates[1:]))
    assert 1e-3 < curve.suggestion < rates[-1]
    # the suggestion is where the curve falls fastest, before its lowest point
    lowest = int(np.nanargmin(curve.smoothed))
    assert curve.suggestion <= rates[lowest]
    trained = build(curve.suggestion)
    history = trained.fit(X, Y, epochs=15, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    assert curve.plot().axes[0].get_xscale() == "log"


def test_the_test_stops_once_the_loss_diverges():
    curve = tools.find_learning_rate(build(0.1), X, Y, stop=1e6, steps=80)
    assert curve.stopped_early and len(curve.learning_rates) < 80 and curve.learning_rates[-1] < 1e6


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError, match="0 < start < stop"):
        tools.find_learning_rate(build(0.1), X, Y, start=1.0, stop=0.1)


def test_the_sweep_labels_the_three_regimes():
    results = tools.learning_rate_sweep(build, X, Y, rates=(1e-6, 0.3, 300.0), epochs=6)
    assert [r.regime for r in results] == ["stuck", "converging", "diverged"]
    assert tools.regime([0.7, float("nan")], 0.7) == "diverged" and tools.regime([0.7, 0.69], 0.7) == "stuck"
    assert tools.regime([0.7, 1.2], 0.7) == "diverged" and tools.regime([0.6, 0.3], 0.7) == "converging"


def test_the_diagnosis_names_the_cause_and_the_next_step():
    text = tools.diagnose_divergence([0.7, 3.0, float("nan")], 1.0, suggestion=0.03)
    assert "became NaN or infinite after 2 finite epochs at learning rate 1:" in text
    assert "try 0.03, the learning-rate finder's suggestion" in text
    grew = tools.diagnose_divergence([0.5, 40.0, 6e4], 2.0)
    assert "grew 1.2e+05×" in grew and "try 0.2" in grew and "backprop lr-find" in grew
    assert tools.diagnose_divergence([0.7, 0.5, 0.4], 0.1) is None and tools.diagnose_divergence([], 0.1) is None
    above = tools.diagnose_divergence([5.0, 4.0, 4.5], 300.0, initial=0.69)
    assert "ended 6.52× above where it started (0.69) over 3 epochs at learning rate 300" in above
    assert tools.diagnose_divergence([0.6, 0.5], 0.1, initial=0.69) is None


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "backprop", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})


@pytest.mark.slow
def test_cli_lr_find_and_the_diverged_run_it_answers(tmp_path):
    found = cli("lr-find", "--data", "moons", "--optimizer", "sgd", "--steps", "60", "--plot", "lr.png", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    suggestion = float(found.stdout.split("suggested learning rate: ")[1].split()[0])
    assert 1e-3 < suggestion < 10 and (tmp_path / "lr.png").stat().st_size > 5000
    diverged = cli("train", "--data", "moons", "--optimizer", "sgd", "--lr", "1000", "--out", "run", "--quiet",
                   cwd=tmp_path)
    assert diverged.returncode == 1 and not (tmp_path / "run").exists()
    line = diverged.stderr.strip().splitlines()[-1]
    assert "Diagnosis: the loss became NaN or infinite" in line and "learning-rate finder's suggestion" in line
    assert not math.isnan(float(line.rsplit("--lr ", 1)[1].rstrip(")")))


def test_fit_explains_a_nan_and_a_loss_that_exploded(capsys):
    model = build(1e4)
    with np.errstate(all="ignore"):  # the overflow is the point
        model.fit(X, Y, epochs=3, verbose=0, callbacks=[bp.callbacks.TerminateOnNaN()])
    printed = capsys.readouterr().out
    assert "became NaN or infinite" in printed and "at learning rate 10000" in printed and "try 1000" in printed
    history = bp.callbacks.History()
    history.history = {"loss": [0.5, 80.0, 900.0]}
    trainer = bp.training.Trainer(build(1.0))
    trainer.history = history
    with pytest.warns(UserWarning, match="fit: the loss grew 1.8e\\+03× over 3 epochs at learning rate 1"):
        trainer._diagnose()
