"""Every plotting function on small data (Agg backend), and the lecture report's figures and numbers."""
import math
import os
import re

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import backprop as bp  # noqa: E402
import backprop.lecture  # noqa: E402,F401 - an application on top of bp, imported by name


@pytest.fixture(autouse=True)
def close_figures():
    yield
    matplotlib.pyplot.close("all")


def trained_binary_model():
    x, y = bp.datasets.moons(60, seed=0)
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Dense(8, activation="tanh"), bp.layers.Dense(1)])
    model.compile(optimizer=bp.optimizers.Adam(0.05), loss=bp.losses.BinaryCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=5, verbose=0, validation_split=0.2)
    return model, x, y, history


def test_training_plots():
    model, x, y, history = trained_binary_model()
    assert len(bp.plot.history(history, {"best_epoch": 2, "stopped_epoch": 4}).axes) == 2
    assert bp.plot.decision_boundary(model, x, y, resolution=30).axes
    scores = model.predict(x)
    figure = bp.plot.confusion_matrix(y, (scores > 0).astype(int)[:, 0], ["a", "b"])
    assert "confusion" in figure.axes[0].get_title()


def test_multiclass_boundary_and_validation():
    x, y = bp.datasets.blobs(60, centers=3, seed=0)
    model = bp.Sequential([bp.layers.Dense(3)])
    assert bp.plot.decision_boundary(model, x, y, resolution=20).axes
    with pytest.raises(ValueError, match="2 input features"):
        bp.plot.decision_boundary(model, np.ones((5, 3)), np.zeros(5))


@pytest.mark.slow  # every lesson plot (2 s)
def test_lesson_plots():
    assert len(bp.plot.activation_functions(["sigmoid", "relu"]).axes) == 4
    assert bp.plot.perceptron(1, [3, -2], point=(-1, 2)).axes
    path, losses = bp.landscape.path(bp.optimizers.SGD(0.1), bp.landscape.bowl, (2.0, 1.0), 10)
    assert path.shape == (11, 2) and losses[-1] < losses[0]
    assert bp.plot.loss_landscape(bp.landscape.bowl, ((-3, 3), (-2, 2)), path=path, resolution=20).axes
    figure, runs = bp.plot.learning_rates(steps=10)
    assert len(runs) == 3 and figure.axes
    figure, runs = bp.plot.optimizers(steps=10)
    assert set(runs) == {"SGD", "momentum", "Adagrad", "RMSprop", "Adadelta", "Adam"}
    x = np.linspace(-1, 1, 8).reshape(-1, 1).astype(np.float32)
    model = bp.Sequential([bp.layers.Dense(1)])
    assert bp.plot.fits(x, np.sin(3 * x), {"linear": model}).axes


def section_numbers(name, out):
    module = __import__(f"backprop.lecture.examples.{name}", fromlist=["run"])
    return bp.lecture.report.run_section(module, str(out), seed=0)["numbers"]


def test_lecture_numbers_match_independent_formulas(tmp_path):
    """The quick sections' numbers, without building the whole report (that is the slow test below)."""
    numbers = {}
    for name in ("s01_perceptron", "s03_dense_by_hand", "s05_losses", "s07_learning_rates"):
        numbers.update(section_numbers(name, tmp_path))
    check_numbers({k: str(v) for k, v in numbers.items()})


def check_numbers(numbers):
    sigma = 1 / (1 + math.exp(6))  # independent: z = 1 + 3 * -1 + -2 * 2 = -6
    assert float(numbers["z"]) == -6.0
    assert float(numbers["y"]) == pytest.approx(sigma, rel=1e-5)
    assert float(numbers["dy/dw1"]) == pytest.approx(-sigma * (1 - sigma), rel=1e-4)
    assert float(numbers["dy/dw0"]) == pytest.approx(sigma * (1 - sigma), rel=1e-4)
    assert float(numbers["max |hand-written - Dense|"]) == 0.0
    y_true, p = np.array([1, 0, 1, 0.0]), np.array([0.9, 0.1, 0.2, 0.95])
    assert float(numbers["binary cross-entropy"]) == pytest.approx(
        -np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)), rel=1e-5)
    assert float(numbers["mean squared error"]) == pytest.approx(np.mean((y_true - p) ** 2), rel=1e-5)
    assert float(numbers["final loss, lr=0.205 (too large)"]) > float(numbers["final loss, lr=0.15 (good)"]) * 1e6


@pytest.mark.slow
def test_lecture_report(tmp_path):
    path = bp.lecture.build_report(str(tmp_path / "lecture"), seed=0)
    page = open(path).read()
    for figure in re.findall(r"<img src='([^']+)'", page):
        assert os.path.getsize(tmp_path / "lecture" / figure) > 5000, figure
    assert len(re.findall(r"<h2 id=", page)) == 13
    numbers = dict(re.findall(r"<td>([^<]+)</td><td class='value'>([^<]+)</td>", page))
    check_numbers(numbers)
    assert float(numbers["trained P(pass | 4 lectures, 5 hours)"]) < 0.5  # (4+1)(5+1) = 30 < 40: fails
    assert float(numbers["training accuracy"]) >= 0.95
    assert float(numbers["ReLU network accuracy"]) > float(numbers["linear network accuracy"]) + 0.2
    assert "def run(" in page and "bp.sigmoid" in page
    assert numbers["∂J/∂w1, the product"] == numbers["∂J/∂w1, the tape&#x27;s gradient"] or \
        numbers["∂J/∂w1, the product"] == numbers.get("∂J/∂w1, the tape's gradient")
    assert [numbers[k] for k in numbers if k.startswith("regime at")] == ["stuck", "converging", "diverged"]
    assert "too large for this loss surface" in numbers["diagnosis of the diverged run"]
    assert float(numbers["loss after 40 epochs"]) < 0.05


def test_section_3_shows_the_hand_written_layer_it_is_about(tmp_path):
    from backprop.lecture.examples import s03_dense_by_hand
    code = bp.lecture.report.run_section(s03_dense_by_hand, str(tmp_path), seed=0)["code"]
    assert code.startswith("class MyDenseLayer(bp.layers.Layer):") and "def run(" in code
    assert "bp.sigmoid(bp.matmul(inputs, self.W) + self.b)" in code


def test_section_10_overfits_and_early_stopping_keeps_the_better_weights(tmp_path):
    numbers = section_numbers("s10_overfitting", tmp_path)
    assert numbers["stopped at epoch"] > numbers["best epoch"] + 500  # it went on long enough to see the climb
    assert numbers["validation loss when stopped"] > 1.2 * numbers["validation loss at the best epoch"]
    assert numbers["error to sin(3x), last weights"] > 1.3 * numbers["error to sin(3x), best weights"]


def test_the_graph_reads_at_the_report_s_width():
    """Its text was 8 pt on a figure twice the page's width: about 5 px on screen. The report shows figures at
    most 1100 px wide; at that width the graph's text must stay at least 10 px tall."""
    w1, w2 = bp.Variable(np.float64(0.5), name="w1"), bp.Variable(np.float64(-0.3), name="w2")
    with bp.GradientTape(persistent=True) as tape:
        loss = bp.square(1.0 - bp.sigmoid(w2 * bp.sigmoid(w1 * 2.0)))
    figure = bp.plot.graph(loss, tape)
    dpi, width_px = 110, figure.get_size_inches()[0] * 110
    sizes = [text.get_fontsize() for text in figure.axes[0].texts if text.get_text()]  # the boxes, not the arrows
    assert len(sizes) >= 6 and min(sizes) * dpi / 72 * min(1.0, 1100 / width_px) >= 10
