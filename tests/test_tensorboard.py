"""TensorBoard logs, read back with TensorBoard's own event reader."""
import os
import subprocess
import sys

import numpy as np
import pytest

import backprop as bp

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read(folder):
    events = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    return events


def scalars(events, tag):
    return [(e.step, e.value) for e in events.Scalars(tag)]


def small_model():
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Dense(4, activation="tanh", input_shape=(3,), name="hidden"),
                           bp.layers.Dense(1, activation="sigmoid", name="out")])
    model.compile(optimizer=bp.optimizers.SGD(learning_rate=bp.optimizers.schedules.ExponentialDecay(0.5, 10, 0.5)),
                  loss="binary_crossentropy", metrics=["accuracy"])
    return model


def fit(model, callbacks, epochs=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    return model.fit(x, y, epochs=epochs, batch_size=20, validation_split=0.25, verbose=0, callbacks=callbacks)


def trained(log_dir, **options):
    model = small_model()
    return model, fit(model, [bp.callbacks.TensorBoard(log_dir, **options)])


def test_epoch_scalars_learning_rate_and_histograms(tmp_path):
    model, history = trained(tmp_path)
    train, validation = read(tmp_path / "train"), read(tmp_path / "validation")
    for tag, key in (("epoch_loss", "loss"), ("epoch_accuracy", "accuracy")):
        assert scalars(train, tag) == [(i, pytest.approx(v, rel=1e-6)) for i, v in enumerate(history.history[key])]
        assert scalars(validation, tag) == [(i, pytest.approx(v, rel=1e-6))
                                            for i, v in enumerate(history.history[f"val_{key}"])]
    # 90 training examples in batches of 20: 5 steps an epoch; the rate halves every 10 steps
    assert [v for _, v in scalars(train, "epoch_learning_rate")] == pytest.approx(
        [0.5 * 0.5 ** (5 * (epoch + 1) / 10) for epoch in range(3)])
    assert sorted(train.Tags()["histograms"]) == ["hidden/bias/histogram", "hidden/kernel/histogram",
                                                  "out/bias/histogram", "out/kernel/histogram"]
    last = train.Histograms("out/kernel/histogram")[-1]
    assert last.step == 2 and last.histogram_value.num == 4
    assert last.histogram_value.sum == pytest.approx(float(model.layers[1].kernel.numpy().sum()), rel=1e-5)
    assert "batch_loss" not in train.Tags()["scalars"]


def test_batch_scalars_and_options(tmp_path):
    trained(tmp_path, update_freq=2, histogram_freq=0)
    train = read(tmp_path / "train")
    assert [step for step, _ in scalars(train, "batch_loss")] == [2, 4, 6, 8, 10, 12, 14]
    assert train.Tags()["histograms"] == []
    with pytest.raises(ValueError, match="update_freq must be"):
        bp.callbacks.TensorBoard(tmp_path, update_freq="sometimes")
    with pytest.raises(ValueError, match="histogram_freq must be"):
        bp.callbacks.TensorBoard(tmp_path, histogram_freq=-1)


def test_defaults_and_one_callback_over_two_fits(tmp_path, monkeypatch):
    """Keras' defaults but histogram_freq=1: ./logs, a histogram every epoch; batch steps go on counting from
    the optimizer's iterations in a second fit, which the same callback can log after closing the first."""
    monkeypatch.chdir(tmp_path)
    import tensorboardX.event_file_writer
    monkeypatch.setattr(tensorboardX.event_file_writer.time, "time", lambda: 1795780000.5)  # both fits in one second
    model, callback = small_model(), bp.callbacks.TensorBoard(update_freq="batch")
    fit(model, [callback], epochs=2)
    fit(model, [callback], epochs=1)
    train = read(tmp_path / "logs" / "train")
    assert [step for step, _ in scalars(train, "batch_loss")] == list(range(1, 16))  # 5 batches an epoch
    assert [h.step for h in train.Histograms("out/kernel/histogram")] == [0, 1, 0]
    assert [step for step, _ in scalars(train, "epoch_learning_rate")] == [0, 1, 0]


def test_a_learning_rate_in_the_logs_is_written_once(tmp_path):
    model = small_model()
    schedule = bp.callbacks.LearningRateScheduler(lambda epoch, rate: 0.1 / (epoch + 1))
    fit(model, [schedule, bp.callbacks.TensorBoard(tmp_path)])
    assert scalars(read(tmp_path / "train"), "epoch_learning_rate") == [
        (epoch, pytest.approx(0.1 / (epoch + 1))) for epoch in range(3)]


@pytest.mark.parametrize("update_freq", [0, -1, True, "batches", 1.5])
def test_bad_update_freq(tmp_path, update_freq):
    with pytest.raises(ValueError, match="update_freq must be 'epoch', 'batch' or a positive number of batches"):
        bp.callbacks.TensorBoard(tmp_path, update_freq=update_freq)


@pytest.mark.parametrize("histogram_freq", [-1, 1.5, True, "1"])
def test_bad_histogram_freq(tmp_path, histogram_freq):
    with pytest.raises(ValueError, match="histogram_freq must be a whole number of epochs >= 0"):
        bp.callbacks.TensorBoard(tmp_path, histogram_freq=histogram_freq)


def test_every_batch_is_a_number_too(tmp_path):
    trained(tmp_path, update_freq=1, histogram_freq=0)
    assert [step for step, _ in scalars(read(tmp_path / "train"), "batch_loss")] == list(range(1, 16))


def test_without_tensorboardx_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"^TensorBoard logs need tensorboardX: pip install 'backprop\[tensorboard\]'$"):
        bp.callbacks.TensorBoard(tmp_path)


def test_weights_sharing_a_name_each_get_a_histogram(tmp_path):
    class TwoOfAName(bp.layers.Layer):
        def build(self, input_shape):
            self.first = self.add_weight(name="w", shape=(input_shape[-1], 1))
            self.second = self.add_weight(name="w", shape=(input_shape[-1], 1))

        def call(self, inputs):
            return bp.sigmoid(inputs @ self.first + inputs @ self.second)

    model = bp.Sequential([TwoOfAName(name="twice")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    fit(model, [bp.callbacks.TensorBoard(tmp_path)], epochs=1)
    assert len(read(tmp_path / "train").Histograms("twice/w/histogram")) == 2


@pytest.mark.slow
def test_cli_writes_tensorboard_logs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "backprop", "train", "--data", "xor", "--epochs", "4", "--quiet",
                             "--no-plots", "--out", "run", "--tensorboard", "tb"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, result.stderr
    assert [step for step, _ in scalars(read(tmp_path / "tb" / "train"), "epoch_loss")] == [0, 1, 2, 3]
    assert len(scalars(read(tmp_path / "tb" / "validation"), "epoch_accuracy")) == 4
