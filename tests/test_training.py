"""compile/fit/evaluate/predict, callbacks, determinism and the issue's accuracy targets."""
import csv
import re
import sys
import time
import warnings

import numpy as np
import pytest

import backprop as bp

pytestmark = pytest.mark.usefixtures("each_device_slow")  # on every device (others: slow)


def binary_problem(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return x, (x[:, 0] * x[:, 1] > 0).astype(np.int64)


def small_model(seed=0, **compile_args):
    bp.random.set_seed(seed)
    model = bp.Sequential([bp.layers.Input(shape=(2,)), bp.layers.Dense(8, activation="tanh"), bp.layers.Dense(1)])
    model.compile(**{"optimizer": bp.optimizers.Adam(0.01), "loss": bp.losses.BinaryCrossentropy(from_logits=True),
                     "metrics": ["accuracy"], **compile_args})
    return model


def test_issue_example_runs():
    bp.random.set_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = rng.normal(size=(200, 20)), rng.integers(0, 10, 200)
    model = bp.Sequential([bp.layers.Dense(64, activation="relu"), bp.layers.Dropout(0.5), bp.layers.Dense(10)])
    model.compile(optimizer=bp.optimizers.Adam(learning_rate=1e-3),
                  loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=32, epochs=100, validation_split=0.2, verbose=0,
                        callbacks=[bp.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)])
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) < 100  # random labels: early stopping kicks in
    loss, accuracy = model.evaluate(x_train, y_train)
    logits = model.predict(x_train)
    assert logits.shape == (200, 10)
    assert accuracy == pytest.approx(np.mean(logits.argmax(axis=1) == y_train))


def test_history_values_are_python_floats_and_evaluate_matches():
    x, y = binary_problem()
    model = small_model()
    history = model.fit(x, y, epochs=3, verbose=0, shuffle=False)
    assert all(type(v) is float for values in history.history.values() for v in values)
    loss, accuracy = model.evaluate(x, y, batch_size=len(x))
    logits = model.predict(x)[:, 0]
    expected = np.mean(np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits))))
    assert loss == pytest.approx(expected, rel=1e-5)
    assert accuracy == pytest.approx(np.mean((logits > 0) == (y == 1)))


def test_fit_equals_hand_written_loop():
    x, y = binary_problem()
    fitted = small_model(seed=3)
    fitted.fit(x, y, batch_size=16, epochs=2, verbose=0)

    manual = small_model(seed=3)
    bp.random.set_seed(11)  # not fit's stream: fit draws from the model's own generator, forked when it was made
    x32 = x.astype(np.float32)
    optimizer, loss_fn = manual.optimizer, manual.loss
    with bp.random.using(manual.random_generator):
        for _ in range(2):  # epochs
            order = bp.random.generator().permutation(len(x))
            for start in range(0, len(x), 16):
                index = order[start:start + 16]
                with bp.GradientTape() as tape:
                    loss = loss_fn(y[index], manual(x32[index], training=True))
                grads = tape.gradient(loss, manual.trainable_variables)
                optimizer.apply_gradients(zip(grads, manual.trainable_variables))
    for a, b in zip(fitted.get_weights(), manual.get_weights()):
        assert np.array_equal(a, b)


def test_same_seed_same_history_different_seed_different_weights():
    x, y = binary_problem()
    runs = []
    for seed in (0, 0, 1):
        model = small_model(seed)
        runs.append((model.fit(x, y, epochs=3, verbose=0, validation_split=0.25).history, model.get_weights()))
    assert runs[0][0] == runs[1][0] and all(np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    assert not np.array_equal(runs[0][1][0], runs[2][1][0])


def test_full_batch_and_single_example_sgd():
    x, y = binary_problem(40)
    steps = []
    counter = bp.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: steps.append(batch))
    small_model().fit(x, y, batch_size=None, epochs=2, verbose=0, callbacks=[counter])
    assert steps == [0, 0]
    steps.clear()
    small_model().fit(x, y, batch_size=1, epochs=1, verbose=0, callbacks=[counter])
    assert steps == list(range(40))


def test_validation_split_takes_the_last_examples():
    x, y = binary_problem(100)
    model = small_model()
    history = model.fit(x, y, epochs=1, verbose=0, validation_split=0.2)
    assert history.history["val_loss"][0] == pytest.approx(model.evaluate(x[80:], y[80:])[0], rel=1e-6)


def test_inputs_are_cast_and_user_arrays_untouched():
    x, y = binary_problem()
    x_copy, y_copy = x.copy(), y.copy()
    state = np.random.get_state()[1].copy()
    model = small_model()
    model.fit(x, y, epochs=2, verbose=0)
    model.predict(x)
    assert model.layers[0].kernel.dtype == np.float32
    assert np.array_equal(x, x_copy) and np.array_equal(y, y_copy)
    assert np.array_equal(np.random.get_state()[1], state)


def test_predict_records_nothing():
    x, _ = binary_problem()
    model = small_model()
    model.fit(x[:10], np.zeros(10), epochs=1, verbose=0)
    with bp.GradientTape() as tape:
        model.predict(x)
        model.evaluate(x, np.zeros(len(x)))
    assert tape._nodes == []


def test_bad_arguments():
    x, y = binary_problem(100)
    model = small_model()
    with pytest.raises(ValueError, match="100 vs 99"):
        model.fit(x, y[:99], verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="epochs"):
        model.fit(x, y, epochs=-1, verbose=0)
    with pytest.raises(TypeError, match="string"):
        model.fit(np.array([["a", "b"]]), [1], verbose=0)
    with pytest.raises(RuntimeError, match="compile"):
        bp.Sequential([bp.layers.Dense(1)]).fit(x, y)


def test_sample_weight_zero_ignores_examples():
    x, y = binary_problem(64)
    weights = np.r_[np.ones(32), np.zeros(32)]
    model = small_model()
    loss = model.evaluate(x, y, sample_weight=weights, batch_size=64)[0]
    full = model.evaluate(x[:32], y[:32], batch_size=32)[0]
    assert loss == pytest.approx(full / 2, rel=1e-6)  # Keras: sum(w * loss) / number of examples


class ScriptedLoss(bp.callbacks.Callback):
    """Feeds a scripted val_loss sequence into the logs (runs before EarlyStopping)."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def run_scripted(values, **early):
    x, y = binary_problem(20)
    model = small_model()
    stopper = bp.callbacks.EarlyStopping(**early)
    history = model.fit(x, y, epochs=len(values), verbose=0, callbacks=[ScriptedLoss(values), stopper])
    return len(history.history["loss"]), stopper


def test_early_stopping_scripted():
    assert run_scripted([5, 4, 3, 3.5, 3.6, 3.7, 1, 1], patience=2)[0] == 5
    assert run_scripted([5, 4, 3.95, 3.9, 3.85, 3.8], patience=2, min_delta=0.1)[0] == 4
    # Keras: a flat run that never beats the baseline stops once patience runs out ...
    assert run_scripted([5, 5, 5, 5, 5], patience=2, baseline=1.0)[0] == 2
    # ... while one that keeps improving on its best is never stopped, baseline or not
    assert run_scripted([5, 4, 3, 2, 1.5, 1.2], patience=1, baseline=0.1)[0] == 6
    assert run_scripted([5, 6, 7, 8, 9, 10], patience=1, start_from_epoch=3)[0] == 5
    length, stopper = run_scripted([5, 4, 3, 3.5, 3.6, 3.7], patience=2)
    assert stopper.best == 3 and stopper.best_epoch == 2 and stopper.stopped_epoch == 4


def test_early_stopping_restores_best_weights():
    x, y = binary_problem(20)
    model = small_model()
    saved = {}
    record = bp.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: saved.__setitem__(epoch, model.get_weights()))
    stopper = bp.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    model.fit(x, y, epochs=6, verbose=0, callbacks=[ScriptedLoss([5, 4, 1, 3.5, 3.6, 3.7]), record, stopper])
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), saved[2]))


@pytest.mark.parametrize("jit_compile", [True, False])  # the recorded step and the eager one
def test_terminate_on_nan_stops_before_the_bad_update(jit_compile):
    x, y = binary_problem(64)
    x[40] = np.nan  # batch 2 (index 1) of size 32 without shuffling
    model = small_model(jit_compile=jit_compile)
    weights = {}
    record = bp.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: weights.__setitem__(b, model.get_weights()))
    with np.errstate(invalid="ignore"):  # NumPy warns about the NaN row itself
        history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0, allow_nonfinite=True,
                            callbacks=[bp.callbacks.TerminateOnNaN(), record])
    assert list(weights) == [0, 1]  # batch 2 ran and was reported, then training stopped
    for after_first, after_second, final in zip(weights[0], weights[1], model.get_weights()):
        assert np.array_equal(after_first, after_second) and np.array_equal(after_first, final)
        assert np.isfinite(final).all()
    assert np.isnan(history.history["loss"][-1]) and len(history.history["loss"]) == 1


def test_terminate_on_nan_explains_with_the_epochs_before(capsys):
    x, y = binary_problem(64)
    model = small_model(optimizer=bp.optimizers.SGD(0.5))
    poison = bp.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: epoch == 2 and model.layers[-1].bias.assign(np.array([np.nan], np.float32)))
    with np.errstate(invalid="ignore"):
        model.fit(x, y, epochs=4, verbose=0, allow_nonfinite=True, callbacks=[poison, bp.callbacks.TerminateOnNaN()])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("TerminateOnNaN: loss became nan at epoch 3, batch 1 (the loss became NaN or infinite "
                           "after 2 finite epochs at learning rate 0.5:")
    assert line.endswith("try 0.05, or the rate the learning-rate finder suggests (bp.tools.find_learning_rate, "
                         "`backprop lr-find`)); stopping before applying that update")


def test_divergence_without_callback_shows_in_history():
    """A loss that becomes NaN gets the diagnosis (it had none: only a loss growing while finite did) and
    no NumPy RuntimeWarning from inside backprop (the suite turns those into errors)."""
    x, y = binary_problem()
    model = small_model(optimizer=bp.optimizers.SGD(learning_rate=1e6), loss="mse", metrics=[])
    with pytest.warns(UserWarning, match="fit: the loss became NaN or infinite .* at learning rate 1e\\+06"):
        history = model.fit(x, y, epochs=5, verbose=0)
    assert not np.isfinite(history.history["loss"][-1])


def test_checkpoint_csv_logger_and_schedulers(tmp_path):
    x, y = binary_problem()
    model = small_model()
    callbacks = [bp.callbacks.ModelCheckpoint(tmp_path / "best.bp", monitor="val_loss", save_best_only=True),
                 bp.callbacks.CSVLogger(tmp_path / "log.csv"),
                 bp.callbacks.LearningRateScheduler(lambda epoch, lr: 0.01 * 0.5 ** epoch),
                 bp.callbacks.ReduceLROnPlateau(patience=1, factor=0.5)]
    history = model.fit(x, y, epochs=3, verbose=0, validation_split=0.25, callbacks=callbacks)
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(history.history["val_loss"])
    assert history.history["learning_rate"] == pytest.approx([0.01, 0.005, 0.0025])


def test_checkpoint_keeps_the_best_epoch(tmp_path):
    """save_best_only writes the model of the epoch with the lowest monitored value, and only that one."""
    x, y = binary_problem()
    model = small_model()
    saved = {}
    record = bp.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: saved.__setitem__(epoch, model.get_weights()))
    scripted = ScriptedLoss([3.0, 1.0, 2.0, 0.5, 0.7])
    checkpoint = bp.callbacks.ModelCheckpoint(tmp_path / "best.bp", monitor="val_loss", save_best_only=True)
    model.fit(x, y, epochs=5, verbose=0, callbacks=[scripted, record, checkpoint])
    best = bp.models.load_model(tmp_path / "best.bp")
    for a, b in zip(best.get_weights(), saved[3]):
        assert np.array_equal(a, b)


def test_reduce_lr_on_plateau_reduces_after_patience_and_cools_down():
    x, y = binary_problem()
    model = small_model(optimizer=bp.optimizers.SGD(0.1))
    rates = []
    plateau = bp.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=1, min_lr=0.02)
    record = bp.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: rates.append(model.optimizer.learning_rate))
    model.fit(x, y, epochs=9, verbose=0, callbacks=[ScriptedLoss([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5]),
                                                       plateau, record])
    # Keras' rule: halve when wait reaches 2 (epoch 2); the cooldown epoch after a reduction resets wait, then
    # counting resumes (epoch 3 counts 1, epoch 4 reduces); 0.0125 is floored at min_lr (epoch 6); 0.5 improves
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02, 0.02])


def test_reduce_lr_on_plateau_counts_a_longer_cooldown_and_says_what_it_did(capsys):
    x, y = binary_problem()
    model = small_model(optimizer=bp.optimizers.SGD(0.1))
    rates = []
    plateau = bp.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, cooldown=2, min_lr=0.02,
                                             verbose=1)
    record = bp.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: rates.append(model.optimizer.learning_rate))
    model.fit(x, y, epochs=8, verbose=0, callbacks=[ScriptedLoss([1.0] * 8), plateau, record])
    # a reduction, then two epochs of cooldown that count nothing, then the next; at min_lr nothing is said
    assert rates == pytest.approx([0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02, 0.02])
    assert capsys.readouterr().out.splitlines() == ["Epoch 2: reducing learning rate to 0.05",
                                                    "Epoch 4: reducing learning rate to 0.025",
                                                    "Epoch 6: reducing learning rate to 0.02"]


def test_reduce_lr_on_plateau_in_max_mode_needs_a_rise_of_min_delta():
    x, y = binary_problem()
    model = small_model(optimizer=bp.optimizers.SGD(0.1))
    rates = []
    plateau = bp.callbacks.ReduceLROnPlateau(monitor="val_loss", mode="max", factor=0.5, patience=1, min_delta=0.1)
    record = bp.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: rates.append(model.optimizer.learning_rate))
    model.fit(x, y, epochs=4, verbose=0, callbacks=[ScriptedLoss([1.0, 1.05, 1.1, 1.5]), plateau, record])
    assert rates == pytest.approx([0.1, 0.05, 0.025, 0.025])  # rises of 0.05 are not improvements; 0.4 is


def test_early_stopping_follows_an_explicit_mode():
    assert run_scripted([5, 4, 3, 2], patience=1, mode="max")[0] == 2  # falling is getting worse
    assert run_scripted([5, 6, 7, 8], patience=1, mode="min")[0] == 2
    assert run_scripted([5, 6, 7, 8], patience=1, mode="max")[0] == 4


def test_progress_output(capsys):
    x, y = binary_problem()
    small_model().fit(x, y, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "loss:" in out
    small_model().fit(x, y, epochs=1, verbose=1)
    captured = capsys.readouterr()
    assert "Epoch 1/1" in captured.out + captured.err
    small_model().fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_verbose_2_prints_one_line_per_epoch(capsys):
    x, y = binary_problem()
    small_model().fit(x, y, epochs=2, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for epoch, line in enumerate(lines, 1):
        assert re.fullmatch(rf"Epoch {epoch}/2 - \d+\.\d\ds - loss: \d\.\d{{4}} - accuracy: \d\.\d{{4}}", line), line


@pytest.fixture
def a_terminal(monkeypatch):
    """Standard output taken for a terminal, where verbose=1 draws a live bar."""
    monkeypatch.setattr(bp.callbacks, "interactive", lambda stream: True)


def test_verbose_1_into_a_file_or_pipe_writes_a_line_per_epoch(capsys):
    """A live bar written into a log keeps every redraw in the text; captured output is not a terminal."""
    x, y = binary_problem()
    small_model().fit(x, y, epochs=2, verbose=1)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2"] and "\r" not in captured.out
    assert captured.err == ""


def test_verbose_1_draws_a_bar_per_epoch_with_the_final_metrics(capsys, a_terminal):
    x, y = binary_problem()  # 120 examples: 4 batches of 32
    history = small_model().fit(x, y, epochs=2, verbose=1)
    captured = capsys.readouterr()
    out = captured.out + captured.err
    for epoch in (1, 2):
        final = f"loss: {history.history['loss'][epoch - 1]:.4f} - accuracy: {history.history['accuracy'][epoch - 1]:.4f}"
        assert re.search(rf"Epoch {epoch}/2: 100%.*\b4/4\b.*{final}", out), out


def test_without_tqdm_verbose_1_falls_back_to_lines(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    x, y = binary_problem()
    small_model().fit(x, y, epochs=2, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2"]


def test_train_and_test_on_batch():
    x, y = binary_problem(32)
    model = small_model()
    before = model.test_on_batch(x, y)
    for _ in range(20):
        model.train_on_batch(x, y)
    assert model.test_on_batch(x, y) < before


def test_pass_fail_reaches_95_percent():
    x, y = bp.datasets.pass_fail(200)
    x, scaler = bp.datasets.standardize(x)
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Dense(3, activation="sigmoid"), bp.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=bp.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=300, verbose=0)
    assert history.history["accuracy"][-1] >= 0.95


@pytest.mark.slow
def test_digits_mlp_reaches_97_percent_quickly():
    (x_train, y_train), (x_test, y_test) = bp.datasets.digits()
    x_train, scaler = bp.datasets.standardize(x_train)
    start = time.perf_counter()
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Dense(256, activation="relu"), bp.layers.Dropout(0.2),
                           bp.layers.Dense(128, activation="relu"), bp.layers.Dropout(0.2), bp.layers.Dense(10)])
    steps = 60 * int(np.ceil(len(x_train) / 32))
    model.compile(optimizer=bp.optimizers.Adam(bp.optimizers.schedules.CosineDecay(1e-3, steps)),
                  loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=60, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(scaler.transform(x_test), y_test)
    elapsed = time.perf_counter() - start
    print(f"digits: test accuracy {accuracy:.4f} in {elapsed:.1f} s")
    assert accuracy >= 0.97


def test_predict_on_no_examples_keeps_the_output_width():
    model = small_model()
    assert model.predict(np.zeros((0, 2))).shape == (0, 1)


def test_two_threads_train_two_models_at_once():
    """Tapes are per thread: one thread's validation (no_grad) or tape never touches the other's."""
    import sys
    import threading
    x, y = binary_problem(96)

    def make(seed):
        model = small_model(seed)
        model.build((None, 2))
        return model

    def train(model, results, key):
        history = model.fit(x, y, batch_size=8, epochs=6, shuffle=False, verbose=0, validation_data=(x, y))
        for _ in range(30):  # and a hand-written loop
            with bp.GradientTape() as tape:
                loss = model.loss(y[:8], model(x[:8].astype(np.float32), training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        results[key] = (history.history, model.get_weights())

    alone = {}
    for seed in (1, 2):
        train(make(seed), alone, seed)
    together, models = {}, {seed: make(seed) for seed in (1, 2)}
    threads = [threading.Thread(target=train, args=(models[seed], together, seed)) for seed in (1, 2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so their steps interleave
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert set(together) == {1, 2}
    for seed in (1, 2):
        assert together[seed][0] == alone[seed][0]
        assert all(np.array_equal(a, b) for a, b in zip(together[seed][1], alone[seed][1]))


def test_the_loop_reads_loss_and_metrics_once_per_epoch_not_per_batch(monkeypatch):
    """Running values stay arrays between batches; numbers are made when logs are built."""
    reads = []
    original = bp.metrics.Metric.result
    monkeypatch.setattr(bp.metrics.Metric, "result", lambda self: reads.append(self.name) or original(self))
    x, y = binary_problem(96)
    small_model().fit(x, y, batch_size=8, epochs=2, verbose=0)  # 12 batches per epoch
    assert sorted(reads) == ["accuracy", "accuracy", "loss", "loss"]


@pytest.mark.parametrize("monitor, best_first", [("val_loss", "min"), ("loss", "min"), ("val_accuracy", "max"),
                                                 ("acc", "max"), ("val_auc", "max"), ("precision", "max"),
                                                 ("recall", "max"), ("mae", "min")])
def test_auto_mode_picks_the_direction_from_the_name(monitor, best_first):
    """Keras' rule: accuracy-like names are maximised, everything else minimised."""
    for callback in (bp.callbacks.EarlyStopping(monitor=monitor), bp.callbacks.ReduceLROnPlateau(monitor=monitor),
                     bp.callbacks.ModelCheckpoint("unused.bp", monitor=monitor)):
        assert callback.monitor_op is (np.less if best_first == "min" else np.greater)
    with pytest.raises(ValueError, match="mode must be"):
        bp.callbacks.EarlyStopping(mode="largest")


def test_callback_messages_and_arguments(tmp_path, capsys):
    x, y = binary_problem()
    model = small_model()
    checkpoint = bp.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch}.bp"), monitor="loss", verbose=1)
    stopper = bp.callbacks.EarlyStopping(monitor="val_loss", patience=1, verbose=1)
    model.fit(x, y, epochs=6, verbose=0, callbacks=[ScriptedLoss([3.0, 2.0, 2.5, 2.6, 1.0, 1.0]), stopper, checkpoint])
    out = capsys.readouterr().out
    assert "Epoch 3: early stopping (best epoch 2)" in out  # patience 1: the first epoch without improvement
    assert f"Epoch 1: saving model to {tmp_path / 'm-1.bp'}" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-1.bp", "m-2.bp", "m-3.bp"]
    with pytest.raises(ValueError, match="factor must be < 1"):
        bp.callbacks.ReduceLROnPlateau(factor=1.0)
    assert bp.callbacks.ReduceLROnPlateau().min_lr == 0.0


def test_csv_logger_writes_what_keras_3_writes(tmp_path):
    """Checked against keras.callbacks.CSVLogger (Keras 3, torch backend): the same header and cells, NA included."""
    x, y = binary_problem()
    path = tmp_path / "log.csv"
    small_model().fit(x, y, epochs=2, verbose=0, callbacks=[bp.callbacks.CSVLogger(path)])
    small_model().fit(x, y, epochs=1, verbose=0, callbacks=[bp.callbacks.CSVLogger(path, append=True)])
    rows = list(csv.reader(open(path, newline="")))
    # without validation the val_ columns are there all the same (validation may start later), as NA
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "0"] and all(r[3:] == ["NA", "NA"] for r in rows[1:])
    history = small_model().fit(x, y, epochs=1, verbose=0, validation_split=0.25,
                                callbacks=[bp.callbacks.CSVLogger(path, separator=";")])
    lines = open(path).read().splitlines()
    assert lines[0] == "epoch;accuracy;loss;val_accuracy;val_loss"
    assert lines[1].split(";") == ["0"] + [repr(history.history[key][0]) for key in lines[0].split(";")[1:]]
    path.write_text("")  # an empty file gets a header when appended to
    small_model().fit(x, y, epochs=1, verbose=0, callbacks=[bp.callbacks.CSVLogger(path, append=True)])
    assert open(path).read().splitlines()[0] == "epoch,accuracy,loss,val_accuracy,val_loss"


def test_terminate_on_nan_says_where_it_stopped():
    x, y = binary_problem(64)
    x[40] = np.nan
    guard = bp.callbacks.TerminateOnNaN()
    with np.errstate(invalid="ignore"):
        small_model().fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0, callbacks=[guard],
                          allow_nonfinite=True)
    assert guard.stopped_at["epoch"] == 1 and guard.stopped_at["batch"] == 2 and np.isnan(guard.stopped_at["loss"])


def test_validation_and_evaluate_errors_name_their_argument():
    model = small_model()
    x, y = binary_problem(20)
    with pytest.raises(TypeError, match="validation x: unsupported dtype"):
        model.fit(x, y, verbose=0, validation_data=(np.array([["a", "b"]]), [1]))
    with pytest.raises(TypeError, match="^y: unsupported dtype"):
        model.evaluate(x, np.array(["a"] * 20), verbose=0)
    weighted = model.evaluate(x, y, sample_weight=np.arange(20) % 2, verbose=0, return_dict=True)
    odd = model.evaluate(x[1::2], y[1::2], verbose=0, return_dict=True)
    assert weighted["accuracy"] == pytest.approx(odd["accuracy"])
    assert weighted["loss"] == pytest.approx(odd["loss"] / 2)  # sum(w * loss) / batch size


def test_predict_runs_in_inference_mode():
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Input(shape=(4,)), bp.layers.Dropout(0.5)])
    x = np.ones((8, 4), dtype=np.float32)
    assert np.array_equal(model.predict(x), x) and np.array_equal(model.predict(x, batch_size=3), x)
    assert model.predict(np.ones((0, 4))).shape == (0, 4)


def test_evaluate_and_predict_check_their_arguments():
    model = small_model()
    x, y = binary_problem(20)
    with pytest.raises(ValueError, match="x and y have different numbers of examples: 20 vs 19"):
        model.evaluate(x, y[:19], verbose=0)
    with pytest.raises(ValueError, match="sample_weight has 3 values for 20 examples"):
        model.evaluate(x, y, sample_weight=np.ones(3), verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        model.evaluate(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(x, batch_size=-1)
    with pytest.raises(ValueError, match="one example of shape \\(2,\\)"):
        model.evaluate(x[0], y[:1], verbose=0)
    with pytest.raises(ValueError, match="validation y: unsupported|x and y have different"):
        model.fit(x, y, verbose=0, validation_data=(x, y[:5]))
    ints = model.evaluate(np.round(x).astype(int), y, verbose=0, return_dict=True)  # ints are cast
    floats = model.evaluate(np.round(x), y, verbose=0, return_dict=True)
    assert ints == floats
    assert model.predict(np.round(x).astype(int)).dtype == np.float32


@pytest.mark.parametrize("fraction, message", [(1.0, "must be in \\[0, 1\\)"), (-0.1, "must be in"),
                                               (0.01, "leaves no examples for training or validation")])
def test_validation_split_bounds(fraction, message):
    x, y = binary_problem(20)
    with pytest.raises(ValueError, match=message):
        small_model().fit(x, y, validation_split=fraction, verbose=0)



def test_class_weight_is_a_per_example_weight_times_sample_weight():
    """Keras' rule, against weights written out here: class_weight[label] * sample_weight, labels read from
    class indices or from the argmax of one-hot rows."""
    x, y = binary_problem(40)
    sample_weight = np.linspace(0.5, 2.0, 40)

    def trained(y_fit, **weights):
        if y_fit.ndim == 1 or y_fit.shape[1] == 1:
            model = small_model()
        else:  # one-hot rows
            bp.random.set_seed(0)
            model = bp.Sequential([bp.layers.Input(shape=(2,)), bp.layers.Dense(y_fit.shape[1])])
            model.compile(optimizer=bp.optimizers.SGD(0.1), loss=bp.losses.CategoricalCrossentropy(from_logits=True))
        model.fit(x, y_fit, batch_size=40, epochs=2, shuffle=False, verbose=0, **weights)
        return model.get_weights()

    by_class = trained(y, class_weight={0: 1.0, 1: 3.0}, sample_weight=sample_weight)
    written_out = trained(y, sample_weight=np.where(y == 1, 3.0, 1.0) * sample_weight)
    for a, b in zip(by_class, written_out):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    classes = np.arange(40) % 3
    one_hot = np.eye(3)[classes]
    for a, b in zip(trained(one_hot, class_weight={0: 1.0, 1: 2.0, 2: 0.5}),
                    trained(one_hot, sample_weight=np.array([1.0, 2.0, 0.5])[classes])):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    column = y.astype(np.float32).reshape(40, 1)  # one binary label per row, as a column of floats
    for a, b in zip(trained(column, class_weight={0: 1.0, 1: 3.0}),
                    trained(column, sample_weight=np.where(y == 1, 3.0, 1.0))):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    two = np.eye(2)[y.astype(int)]  # one-hot rows of two classes
    for a, b in zip(trained(two, class_weight={0: 1.0, 1: 3.0}),
                    trained(two, sample_weight=np.where(y == 1, 3.0, 1.0))):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ValueError, match="^class_weight needs class labels \\(integers or one-hot rows\\), got fractional"):
        small_model().fit(x, np.full(40, 0.5), verbose=0, class_weight={0: 1.0, 1: 1.0})
    with pytest.raises(ValueError, match=r"^class_weight has no weight for class\(es\) \[1\]$"):
        small_model().fit(x, y, verbose=0, class_weight={0: 1.0})


def test_a_missing_monitor_message_names_the_callback_and_the_fix():
    x, y = binary_problem(20)
    with pytest.raises(ValueError, match=r"^EarlyStopping: monitor='val_loss' is not in the logs \(there is no validation "
                                         r"data: pass validation_data or validation_split\); available: loss, accuracy$"):
        small_model().fit(x, y, epochs=1, verbose=0, callbacks=[bp.callbacks.EarlyStopping()])


def test_model_checkpoint_defaults_save_every_epoch_quietly(tmp_path, capsys):
    x, y = binary_problem(20)
    small_model().fit(x, y, epochs=2, verbose=0,
                      callbacks=[bp.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{loss:.3f}.bp"))])
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert [name[:5] for name in saved] == ["m-01-", "m-02-"] and all(re.fullmatch(r"m-0\d-\d\.\d{3}\.bp", n) for n in saved)
    assert capsys.readouterr().out == ""


def test_model_checkpoint_in_max_mode_saves_the_first_epoch_and_only_rises(tmp_path):
    x, y = binary_problem(20)
    model = small_model()
    checkpoint = bp.callbacks.ModelCheckpoint(str(tmp_path / "best-{epoch}.bp"), monitor="val_loss", mode="max",
                                              save_best_only=True)
    model.fit(x, y, epochs=4, verbose=0, callbacks=[ScriptedLoss([0.5, 0.4, 0.6, 0.6]), checkpoint])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-1.bp", "best-3.bp"]


def test_model_checkpoint_can_save_weights_only(tmp_path):
    x, y = binary_problem(20)
    model = small_model()
    model.fit(x, y, epochs=1, verbose=0,
              callbacks=[bp.callbacks.ModelCheckpoint(tmp_path / "w.weights.bp", save_weights_only=True)])
    fresh = small_model(seed=1)
    fresh.load_weights(tmp_path / "w.weights.bp")
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(bp.saving.tensor_file.FileFormatError, match="not a backprop model file"):
        bp.models.load_model(tmp_path / "w.weights.bp")  # weights, not a model


def test_learning_rate_scheduler_gets_the_current_rate_and_says_so_when_verbose(capsys):
    x, y = binary_problem(20)
    model = small_model(optimizer=bp.optimizers.SGD(0.1))
    model.fit(x, y, epochs=3, verbose=0, callbacks=[bp.callbacks.LearningRateScheduler(lambda epoch, lr: lr / 2)])
    assert model.optimizer.learning_rate == pytest.approx(0.0125) and capsys.readouterr().out == ""
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[bp.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 2, verbose=1)])
    assert capsys.readouterr().out.splitlines() == ["Epoch 1: learning rate 0.025", "Epoch 2: learning rate 0.05"]


def test_lambda_callback_names_an_unknown_hook():
    with pytest.raises(ValueError, match=r"^LambdaCallback: unknown hook 'on_epoch_finish'$"):
        bp.callbacks.LambdaCallback(on_epoch_finish=print)


def test_a_progress_bar_made_directly_draws_on_standard_output(capsys):
    bar = bp.callbacks.ProgressBar(epochs=1, steps=2, live=True)
    bar.on_epoch_begin(0)
    for batch in range(2):
        bar.on_train_batch_end(batch, {"loss": 0.5})
    bar.on_epoch_end(0, {"loss": 0.25})
    captured = capsys.readouterr()
    assert "Epoch 1/1: 100%" in captured.out and "loss: 0.2500" in captured.out and captured.err == ""


def test_compiled_step_info_says_what_it_did():
    from backprop.training.compiled import step_info
    x, y = binary_problem(64)
    model = small_model(jit_compile=True)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    info = step_info(model)[False]
    assert 0 < info.pop("compile_seconds") < 5
    assert info == {"tracing_count": 2, "replays": 2, "cache_size": 1, "max_signatures": 8, "fallback": None}


def test_predict_gives_the_models_dtype_whatever_the_input():
    model = bp.Sequential([bp.layers.Dense(2, input_shape=(3,))])
    for x in (np.ones((40, 3)), np.ones((40, 3), np.int64), [[1, 2, 3]], np.ones((0, 3))):
        predictions = model.predict(x)
        assert predictions.dtype == np.float32 and predictions.shape == (len(x), 2)


def test_sample_weights_take_the_models_dtype():
    """float64 weights and the same weights in float32 train a float32 model identically."""
    x, y = binary_problem(40)
    weights = np.linspace(0.5, 2.0, 40)
    runs = [small_model().fit(x, y, epochs=2, verbose=0, sample_weight=w).history["loss"]
            for w in (weights, weights.astype(np.float32))]
    assert runs[0] == runs[1]


def test_verbose_auto_is_the_progress_bar(capsys, a_terminal):
    x, y = binary_problem()
    small_model().fit(x, y, epochs=1)
    captured = capsys.readouterr()
    assert "Epoch 1/1: 100%" in captured.out + captured.err


class DoubledBCE(bp.losses.BinaryCrossentropy):
    """Python around the loss kernel: the compiled step falls back to eager steps."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        return super().__call__(y_true, y_pred, sample_weight) * 2.0


def test_the_eager_fallback_of_a_compiled_step_keeps_sample_weights():
    x, y = binary_problem(40)
    weights = np.linspace(0.0, 2.0, 40)
    histories = []
    for jit_compile in (True, False):
        model = small_model(loss=DoubledBCE(from_logits=True), jit_compile=jit_compile)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fallback's warning
            histories.append(model.fit(x, y, epochs=2, verbose=0, sample_weight=weights).history["loss"])
    assert histories[0] == histories[1]


@pytest.mark.parametrize("options, message", [
    ({"epochs": -1}, "epochs must be an integer >= 0, got -1"),
    ({"epochs": 2.5}, "epochs must be an integer >= 0, got 2.5"),
    ({"steps_per_epoch": 0}, r"steps_per_epoch \(or None\) must be a positive integer, got 0"),
    ({"steps_per_epoch": 5, "batch_size": 40}, r"steps_per_epoch=5 but the data makes only 3 batches an epoch; use a "
                                               r"smaller steps_per_epoch or batch_size"),
])
def test_fit_names_a_bad_count(options, message):
    x, y = binary_problem()
    with pytest.raises(ValueError, match=f"^{message}$"):
        small_model().fit(x, y, verbose=0, **options)


def test_steps_per_epoch_may_be_one_or_every_batch():
    x, y = binary_problem()  # 120 examples: 4 batches of 32
    for steps in (1, 4):
        model = small_model()
        model.fit(x, y, epochs=2, verbose=0, steps_per_epoch=steps)
        assert model.optimizer.iterations == 2 * steps


def test_predict_names_x_in_a_dtype_error():
    with pytest.raises(TypeError, match=r"^x: unsupported dtype <U1 \(string\); expected numbers$"):
        small_model().predict(np.array([["a", "b"]]))


@pytest.mark.parametrize("call", ["fit", "evaluate", "train_on_batch", "test_on_batch"])
def test_an_uncompiled_model_says_what_to_call_first(call):
    x, y = binary_problem(8)
    model = bp.Sequential([bp.layers.Dense(1, input_shape=(2,))])
    with pytest.raises(RuntimeError, match=rf"^{call}: call model.compile\(optimizer=..., loss=...\) first$"):
        getattr(model, call)(x, y)


def test_sample_weights_scale_the_loss_and_its_gradient():
    """Weights of 2 everywhere double the loss and its gradient: SGD then takes the steps of twice the rate."""
    x, y = binary_problem(40)
    weighted = small_model(optimizer=bp.optimizers.SGD(0.1))
    weighted_loss = weighted.fit(x, y, epochs=2, batch_size=10, shuffle=False, verbose=0,
                                 sample_weight=np.full(40, 2.0)).history["loss"]
    doubled_rate = small_model(optimizer=bp.optimizers.SGD(0.2))
    plain_loss = doubled_rate.fit(x, y, epochs=2, batch_size=10, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(weighted_loss, 2 * np.array(plain_loss), rtol=1e-6)
    for a, b in zip(weighted.get_weights(), doubled_rate.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_history_lists_the_epochs_it_ran():
    x, y = binary_problem()
    model = small_model()
    assert model.fit(x, y, epochs=2, verbose=0).epoch == [0, 1]
    assert model.fit(x, y, epochs=4, initial_epoch=2, verbose=0).epoch == [2, 3]


def test_early_stopping_defaults_stop_at_the_first_worse_epoch_quietly(capsys):
    epochs, stopper = run_scripted([1.0, 2.0, 0.5, 0.4])
    assert epochs == 2 and capsys.readouterr().out == ""  # patience 0, verbose 0
    assert stopper.best_weights is None  # restore_best_weights defaults to False


def test_early_stopping_counts_epochs_short_of_the_baseline():
    assert run_scripted([1.0] * 6, patience=3, baseline=0.5)[0] == 3


def test_early_stopping_says_nothing_when_it_never_stopped(capsys):
    run_scripted([3.0, 2.0, 1.0], patience=1, verbose=1)
    assert capsys.readouterr().out == ""


def test_a_validation_split_may_leave_a_single_training_example():
    x, y = binary_problem(4)
    history = small_model().fit(x, y, epochs=1, verbose=0, validation_split=0.75)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_early_stopping_says_where_it_stopped(capsys):
    run_scripted([1.0, 2.0, 3.0], verbose=1)
    assert capsys.readouterr().out == "Epoch 2: early stopping (best epoch 1)\n"


def test_reduce_lr_on_plateau_defaults(capsys):
    """Keras' defaults: patience 10, factor 0.1, min_delta 1e-4 (a smaller fall is no improvement),
    no cooldown, quiet; after a reduction the count starts again from 0."""
    x, y = binary_problem(20)
    model = small_model(optimizer=bp.optimizers.SGD(0.1))
    rates = []
    record = bp.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: rates.append(model.optimizer.learning_rate))
    falling_slowly = [1.0 - 1e-6 * epoch for epoch in range(23)]  # 2.2e-5 in all: less than min_delta
    model.fit(x, y, epochs=23, verbose=0, callbacks=[ScriptedLoss(falling_slowly), bp.callbacks.ReduceLROnPlateau(),
                                                      record])
    assert rates == pytest.approx([0.1] * 10 + [0.01] * 10 + [0.001] * 3)
    assert capsys.readouterr().out == ""  # verbose=0


def _dropout_model(seed):
    bp.random.set_seed(seed)
    model = bp.Sequential([bp.layers.Input(shape=(2,)), bp.layers.Dense(16, activation="relu"),
                           bp.layers.Dropout(0.3), bp.layers.Dense(1)])
    model.compile(optimizer="adam", loss=bp.losses.BinaryCrossentropy(from_logits=True))
    return model


def test_two_threads_training_with_shuffling_and_dropout_train_as_each_would_alone():
    """Each model shuffles and drops out from its own generator (issue #32): threads cannot steal each other's
    draws, so a model trained beside another ends where it ends alone."""
    import threading
    x, y = binary_problem(n=400)
    alone = []
    for seed in (0, 1):
        model = _dropout_model(seed)
        model.fit(x, y, batch_size=4, epochs=3, verbose=0)
        alone.append(model.get_weights())
    models = [_dropout_model(seed) for seed in (0, 1)]
    start = threading.Barrier(2)

    def train(model):
        start.wait(timeout=30)
        for _ in range(3):
            model.fit(x, y, batch_size=4, epochs=1, verbose=0)
            bp.random.generator().random(7)  # this thread's other draws come from the library's stream

    workers = [threading.Thread(target=train, args=(model,)) for model in models]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers)
    for model, weights in zip(models, alone):
        for a, b in zip(model.get_weights(), weights):
            np.testing.assert_array_equal(a, b)


class _Recorder(bp.callbacks.Callback):
    def __init__(self, log):
        self.log = log

    def on_train_begin(self, logs=None):
        self.log.append(("begin", self))

    def on_train_end(self, logs=None):
        self.log.append(("end", self))


class _FailsToBegin(_Recorder):
    def on_train_begin(self, logs=None):
        raise OSError("the log folder is read-only")


class _FailsToEnd(_Recorder):
    def on_train_end(self, logs=None):
        raise ValueError("could not close its file")


def test_only_callbacks_that_began_are_ended_and_the_first_error_is_the_one_raised():
    """Keras' contract, and issue #32: a callback whose on_train_begin never ran is not ended (a CSVLogger whose
    file never opened would fail to close it), and a callback failing to end does not hide why training stopped."""
    x, y = binary_problem()
    log = []
    first, failing, never = _Recorder(log), _FailsToBegin(log), _Recorder(log)
    with pytest.raises(OSError, match="read-only"):
        small_model().fit(x, y, epochs=1, verbose=0, callbacks=[first, failing, never])
    assert log == [("begin", first), ("end", first)]

    class Stop(Exception):
        pass

    def stop(batch, logs):
        raise Stop("the user's real error")

    log.clear()
    ends_badly = _FailsToEnd(log)
    with pytest.warns(UserWarning, match="_FailsToEnd.on_train_end failed too, after Stop: ValueError"), \
            pytest.raises(Stop, match="real error"):
        small_model().fit(x, y, epochs=1, verbose=0, callbacks=[
            ends_badly, bp.callbacks.LambdaCallback(on_train_batch_end=stop), first])
    assert log == [("begin", ends_badly), ("begin", first), ("end", first)]


def test_batch_logs_a_callback_keeps_show_their_own_batch():
    """Batch logs are computed when read; one a callback keeps is computed before the next batch changes the
    running values (issue #32: a kept log showed a later batch's loss)."""
    x, y = binary_problem()
    kept, read_at_once = [], []
    for callback in (lambda batch, logs: kept.append(logs),            # keeps them, reads them later
                     lambda batch, logs: read_at_once.append(dict(logs))):  # the same training, read at once
        small_model().fit(x, y, epochs=1, batch_size=8, verbose=0,
                          callbacks=[bp.callbacks.LambdaCallback(on_train_batch_end=callback)])
    assert len(kept) == 15 and len({logs["loss"] for logs in read_at_once}) == 15
    assert [dict(logs) for logs in kept] == read_at_once
