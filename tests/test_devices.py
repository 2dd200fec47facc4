"""Devices: the same models on every device. The strict device computes with NumPy behind CuPy's boundary
rules (no implicit conversion to NumPy, no mixing with host arrays), so here it must give the CPU's numbers
bit for bit; on a GPU (when CuPy sees one) the results agree to float32 precision."""
import inspect
import subprocess
import sys

import numpy as np
import pytest

import backprop as bp
from backprop.devices import draws, strict
from backprop.ops import nn
import cuda_on_cpu
from backprop import elementwise
from backprop.optimizers import rules as rules_module
from conftest import DEVICES

OTHER_DEVICES = [d for d in DEVICES if d != "cpu"]
rng = np.random.default_rng(0)
X = rng.normal(size=(96, 5)).astype(np.float32)
CLASSES = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(np.int64) + (X[:, 2] > 0.8)


def same(a, b, device):
    if device == "gpu":  # other kernels (cuBLAS, its reductions): the same numbers to float32 precision
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-5)
    else:
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def device_masks(monkeypatch):
    """The CPU drawing its dropout masks as the devices draw theirs (backprop.devices.draws), so that a device's
    training can be compared with the CPU's number for number."""
    monkeypatch.setattr(nn, "host_dropout_scale", draws.dropout_scale)


def train(device, optimizer="adam", epochs=3, callbacks=(), batch_size=16):
    """A small classifier with dropout, metrics, validation and callbacks, trained on ``device``."""
    with bp.device(device):
        bp.random.set_seed(0)
        model = bp.Sequential([bp.layers.Input(shape=(5,)), bp.layers.Dense(16, activation="relu"),
                               bp.layers.Dropout(0.2), bp.layers.Dense(8, activation="tanh"), bp.layers.Dense(3)])
        model.compile(optimizer=bp.optimizers.get(optimizer, learning_rate=0.01),
                      loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        history = model.fit(X, CLASSES, epochs=epochs, batch_size=batch_size, verbose=0, validation_split=0.25,
                            callbacks=list(callbacks))
    return model, history


@pytest.mark.parametrize("device", OTHER_DEVICES)
@pytest.mark.parametrize("optimizer", ["adam"] + [pytest.param(name, marks=pytest.mark.slow)
                                                  for name in ("sgd", "adamw", "rmsprop", "adagrad", "adadelta")])
def test_fit_on_a_device_gives_the_cpus_training(device, optimizer, device_masks):
    cpu_model, cpu_history = train("cpu", optimizer)
    model, history = train(device, optimizer)
    assert model.device.name == device and all(v.device.name == device for v in model.variables)
    same(np.array(list(history.history.values())), np.array(list(cpu_history.history.values())), device)
    for a, b in zip(model.get_weights(), cpu_model.get_weights()):
        same(a, b, device)
    predictions = model.predict(X)  # on the host, as on the CPU
    assert type(predictions) is np.ndarray
    same(predictions, cpu_model.predict(X), device)
    same(model.evaluate(X, CLASSES, verbose=0), cpu_model.evaluate(X, CLASSES, verbose=0), device)


def test_the_training_loop_does_not_wait_for_the_device_at_every_step():
    """Host reads (on a GPU, waits) per epoch stay the same whether an epoch has 6 or 24 steps."""
    def reads(batch_size):
        before = strict.transfers[0]
        train("strict", epochs=2, batch_size=batch_size)
        return strict.transfers[0] - before
    assert reads(batch_size=12) == reads(batch_size=3)


def test_the_progress_bar_does_not_wait_for_the_device_at_every_step(monkeypatch):
    """fit's default (verbose=1) read the running metrics every batch: two host reads per step (issue #30)."""
    pytest.importorskip("tqdm")
    import io
    monkeypatch.setattr(bp.callbacks, "interactive", lambda stream: True)  # the live bar, as in a terminal

    def reads(batch_size, verbose=1):
        with bp.device("strict"):
            bp.random.set_seed(0)
            model = bp.Sequential([bp.layers.Input(shape=(5,)), bp.layers.Dense(8), bp.layers.Dense(3)])
            model.compile(optimizer="adam", loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
            monkeypatch.setattr("sys.stdout", io.StringIO())
            before = strict.transfers[0]
            model.fit(X, CLASSES, epochs=2, batch_size=batch_size, verbose=verbose)
            return strict.transfers[0] - before
    assert reads(batch_size=4) == reads(batch_size=4, verbose=0) == reads(batch_size=12)  # 48 steps or 16


def test_callbacks_see_the_same_logs_and_weights(tmp_path, device_masks):
    def run(device):
        callbacks = [bp.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True),
                     bp.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5),
                     bp.callbacks.ModelCheckpoint(tmp_path / f"{device}.bp", monitor="val_loss", save_best_only=True),
                     bp.callbacks.CSVLogger(tmp_path / f"{device}.csv"), bp.callbacks.TerminateOnNaN()]
        return train(device, epochs=8, callbacks=callbacks)
    (cpu, cpu_history), (_, history) = run("cpu"), run("strict")
    assert history.history == cpu_history.history
    assert (tmp_path / "cpu.csv").read_text() == (tmp_path / "strict.csv").read_text()
    for a, b in zip(bp.models.load_model(tmp_path / "strict.bp").get_weights(), cpu.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_model_saved_on_a_device_loads_on_either(tmp_path):
    model, _ = train("strict")
    model.save(tmp_path / "m.bp")
    on_cpu = bp.models.load_model(tmp_path / "m.bp", device="cpu")
    on_device = bp.models.load_model(tmp_path / "m.bp", device="strict")
    assert on_cpu.device.name == "cpu" and on_device.device.name == "strict"
    np.testing.assert_array_equal(on_cpu.predict(X), model.predict(X))
    np.testing.assert_array_equal(on_device.predict(X), model.predict(X))


def test_model_to_moves_weights_and_optimizer_state_and_training_goes_on_unchanged(device_masks):
    straight, _ = train("cpu", epochs=4)
    model, _ = train("cpu", epochs=2)
    model.to("strict")
    assert model.device.name == "strict"
    assert all(type(a) is strict.StrictArray for slots in model.optimizer._slots.values() for a in slots.values())
    with bp.device("strict"):
        model.fit(X, CLASSES, epochs=4, initial_epoch=2, batch_size=16, verbose=0, validation_split=0.25)
    model.to("cpu")
    for a, b in zip(model.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_tensors_live_where_they_were_made():
    host = bp.tensor([1.0, 2.0])
    with bp.device("strict"):
        made = bp.tensor([1.0, 2.0])
        assert made.device.name == "strict" and (made * 2).device.name == "strict"
        assert bp.get_device().name == "strict"
        assert host.device.name == "cpu"  # made before: it stays on the CPU
    assert bp.get_device().name == "cpu" and bp.tensor([1.0]).device.name == "cpu"
    assert type(made.numpy()) is np.ndarray and np.array_equal(made.numpy(), [1.0, 2.0])
    moved = bp.to_device(host, "strict")
    assert moved.device.name == "strict" and bp.to_device(moved, "cpu").device.name == "cpu"
    assert "device='strict'" in repr(made)


def test_mixing_devices_is_an_error_naming_both():
    host = bp.tensor([[1.0, 2.0]])
    with bp.device("strict"):
        weights = bp.Variable(np.ones((2, 2), np.float32))
    with pytest.raises(bp.devices.DeviceMismatchError, match=r"matmul: inputs on different devices \(input 0 on "
                                                             r"cpu, input 1 on strict\)"):
        host @ weights
    with pytest.raises(TypeError, match="cannot become a NumPy array implicitly; call .numpy()"):
        np.asarray(weights)


def test_set_device_and_the_environment_choose_the_default(tmp_path):
    try:
        bp.set_device("strict")
        assert bp.tensor([1.0]).device.name == "strict"
    finally:
        bp.set_device("cpu")
    script = "import backprop as bp; print(bp.tensor([1.0]).device.name, bp.get_device().name)"
    out = subprocess.run([sys.executable, "-c", script], env={**__import__("os").environ, "BACKPROP_DEVICE": "strict"},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["strict", "strict"], out.stderr
    with pytest.raises(bp.devices.DeviceError, match="unknown device 'tpu'; backprop has cpu, gpu"):
        bp.set_device("tpu")


@pytest.mark.skipif("gpu" in DEVICES, reason="a GPU is visible here")
def test_a_gpu_that_is_not_there_is_one_clear_error(tmp_path):
    try:
        import cupy  # noqa: F401
        expected = "no NVIDIA GPU is visible"
    except ImportError:
        expected = "needs CuPy, which is not installed: pip install 'backprop\\[cuda12\\]'"
    with pytest.raises(bp.devices.DeviceError, match=expected):
        bp.set_device("gpu")
    assert bp.get_device().name == "cpu"
    cli = subprocess.run([sys.executable, "-m", "backprop", "train", "--data", "moons", "--device", "gpu",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1 and "device 'gpu'" in cli.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 5 epochs on purpose
def test_the_cli_and_the_estimators_train_on_a_device(tmp_path):
    pytest.importorskip("sklearn")
    from backprop.sklearn import MLPClassifier
    cpu = MLPClassifier(hidden_layer_sizes=(8,), max_epochs=5, random_state=0).fit(X, CLASSES)
    device = MLPClassifier(hidden_layer_sizes=(8,), max_epochs=5, random_state=0, device="strict").fit(X, CLASSES)
    assert device.model_.device.name == "strict"
    np.testing.assert_array_equal(device.predict_proba(X), cpu.predict_proba(X))
    from backprop import cli
    assert cli.main(["train", "--data", "moons", "--device", "strict", "--epochs", "2", "--no-plots", "--quiet",
                     "--out", str(tmp_path / "run")]) in (0, None)
    assert '"device": "strict"' in (tmp_path / "run" / "config.json").read_text()


def test_running_out_of_device_memory_names_the_batch_size_and_what_to_do():
    model, _ = train("strict", epochs=1)
    strict.memory_limit[0] = 4_000  # bytes: a batch of 64 x 16 float32 activations is 4,096
    try:
        with pytest.raises(bp.devices.DeviceMemoryError, match="fit: the device ran out of memory with "
                                                               "batch_size=64 .*use a smaller batch_size"):
            model.fit(X, CLASSES, batch_size=64, epochs=1, verbose=0)
        with pytest.raises(bp.devices.DeviceMemoryError, match="predict: .*batch_size=96"):
            model.predict(X, batch_size=96)
        assert model.predict(X[:8], batch_size=8).shape == (8, 3)  # a smaller batch fits
    finally:
        strict.memory_limit[0] = None


@pytest.mark.skipif("gpu" not in DEVICES, reason="needs CuPy and a GPU")
def test_every_update_rule_is_one_gpu_kernel_with_the_cpus_bits():  # pragma: no cover - needs a GPU
    gpu = bp.devices.get("gpu")
    for formula in RULES:
        names = list(inspect.signature(formula.formula).parameters)
        rng = np.random.default_rng(0)
        host = [rng.uniform(0.1, 1.0, size=1000).astype(np.float32) for _ in names]
        on_gpu = [gpu.to_device(a) for a in host]
        formula(*on_gpu)
        formula.run_numpy(*host)
        for name, a, b in zip(names, on_gpu, host):
            np.testing.assert_array_equal(bp.to_host(a), b, err_msg=f"{formula.__name__}: {name}")
    adam = bp.optimizers.Adam(0.01)
    with bp.device("gpu"):
        w = bp.Variable(np.ones(1000, np.float32))
        adam.apply_gradients([(bp.tensor(np.cos(np.arange(1000)).astype(np.float32)), w)])
    assert bp.devices.elementwise_kernel(w.data, rules_module.adam._kernel_name, "", "", "") is not None


def test_a_model_on_a_device_exports_to_onnx_and_stays_there(tmp_path):
    pytest.importorskip("onnx")
    model, _ = train("strict", epochs=1)
    before = model.predict(X)
    model.export(tmp_path / "m.onnx", format="onnx")  # traced on the host; onnxruntime checks it when installed
    assert model.device.name == "strict" and (tmp_path / "m.onnx").stat().st_size > 1000
    np.testing.assert_array_equal(model.predict(X), before)
    model.fit(X, CLASSES, epochs=1, verbose=0)  # and it trains on where it was


@pytest.mark.parametrize("device", OTHER_DEVICES)
def test_every_metric_keeps_its_state_on_the_device_and_gives_the_cpus_value(device):
    y_binary = (CLASSES > 0).astype(np.float32)
    weights = rng.uniform(0.5, 2.0, len(X)).astype(np.float32)
    probabilities = 1 / (1 + np.exp(-X[:, :1]))
    scores = np.concatenate([X[:, :3], -X[:, :3]], axis=1)
    cases = [(bp.metrics.Precision(), y_binary, probabilities), (bp.metrics.Recall(), y_binary, probabilities),
             (bp.metrics.AUC(), y_binary, probabilities), (bp.metrics.BinaryAccuracy(), y_binary, probabilities),
             (bp.metrics.SparseCategoricalAccuracy(), CLASSES, scores),
             (bp.metrics.CategoricalAccuracy(), np.eye(6, dtype=np.float32)[CLASSES], scores),
             (bp.metrics.SparseTopKCategoricalAccuracy(k=2), CLASSES, scores),
             (bp.metrics.MeanSquaredError(), y_binary, probabilities)]
    for metric, y_true, y_pred in cases:
        results = []
        for where in ("cpu", device):
            metric.reset_state()
            with bp.device(where):
                for part in (slice(0, 50), slice(50, None)):  # labels and weights from the host, predictions there
                    metric.update_state(y_true[part], bp.tensor(y_pred[part]), sample_weight=weights[part])
            results.append(metric.result())
        assert results[0] == pytest.approx(results[1], rel=1e-12, abs=1e-12), type(metric).__name__


@pytest.mark.parametrize("device", OTHER_DEVICES)
@pytest.mark.parametrize("metric", ["BinaryAccuracy", "MeanSquaredError", "Precision", "AUC"])
def test_metrics_weigh_device_predictions_by_host_weights(device, metric):
    """As in fit: predictions on the device, labels and sample weights from the host."""
    labels = (X[:, 0] > 0).astype(np.float32)
    predictions = 1 / (1 + np.exp(-X[:, 1]))
    weights = np.linspace(0.5, 2.0, len(X))
    on_cpu, on_device = getattr(bp.metrics, metric)(), getattr(bp.metrics, metric)()
    on_cpu.update_state(labels, predictions, sample_weight=weights)
    on_device.update_state(labels, bp.devices.get(device).to_device(predictions), sample_weight=weights)
    same(on_device.result(), on_cpu.result(), device)


def test_the_weighted_mean_reduction_does_not_read_the_device(monkeypatch):
    """reduction='mean_with_sample_weight' tested its divisor in Python: a host read at every step (issue #30)."""
    weights = np.linspace(0.5, 1.5, len(X)).astype(np.float32)

    def reads(batch_size):
        with bp.device("strict"):
            bp.random.set_seed(0)
            model = bp.Sequential([bp.layers.Input(shape=(5,)), bp.layers.Dense(3)])
            model.compile(optimizer="sgd", loss=bp.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction="mean_with_sample_weight"))
            before = strict.transfers[0]
            model.fit(X, CLASSES, sample_weight=weights, epochs=2, batch_size=batch_size, verbose=0)
            return strict.transfers[0] - before
    assert reads(batch_size=4) == reads(batch_size=12)
    with bp.device("strict"):  # and all-zero weights still give 0, not NaN
        loss = bp.losses.MeanSquaredError(reduction="mean_with_sample_weight")
        assert float(loss(bp.tensor([[1.0]]), bp.tensor([[3.0]]), sample_weight=bp.tensor([0.0]))) == 0.0


def test_the_hinge_metric_keeps_its_label_test_on_the_device():
    with bp.device("strict"):
        metric = bp.metrics.get("hinge")
        y, p = bp.tensor(np.array([[0.0], [1.0]])), bp.tensor(np.array([[0.3], [0.8]]))
        before = strict.transfers[0]
        metric.update_state(y, p)
        assert strict.transfers[0] == before and metric.result() == pytest.approx(0.75)


class _RunsOutOfMemory:
    """The strict device, whose memory runs out after ``room`` arrays have moved onto it."""

    def __init__(self, room):
        self.device, self.room = bp.devices.get("strict"), room

    def __getattr__(self, name):
        return getattr(self.device, name)

    def to_device(self, array):
        if self.room == 0:
            raise MemoryError("out of device memory")
        self.room -= 1
        return self.device.to_device(array)


def _optimizer_state_runs_out_of_memory(model, monkeypatch):
    set_state = model.optimizer.set_state

    def fails_on_the_device(state, parameters):
        if type(parameters.variables[0].data) is not np.ndarray:  # moving onto the strict device
            set_state(state, parameters)  # part of the moments moved, then:
            raise MemoryError("out of device memory")
        return set_state(state, parameters)
    monkeypatch.setattr(model.optimizer, "set_state", fails_on_the_device)


@pytest.mark.parametrize("room", [1, 5, "optimizer"])  # part-way through the 6 weights, or the optimizer's state
def test_model_to_that_runs_out_of_memory_part_way_leaves_everything_where_it_was(monkeypatch, room):
    model, _ = train("cpu", epochs=2)
    weights, state = model.get_weights(), model.optimizer.get_state()
    if room == "optimizer":
        _optimizer_state_runs_out_of_memory(model, monkeypatch)
    else:
        device = _RunsOutOfMemory(room)
        monkeypatch.setattr(bp.devices, "get", lambda name: device)
    with pytest.raises(MemoryError):
        model.to("strict")
    monkeypatch.undo()
    assert len(model.variables) == 6
    assert model.device.name == "cpu" and all(type(v.data) is np.ndarray for v in model.variables)
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    after = model.optimizer.get_state()
    assert after.keys() == state.keys()
    for key in state:
        np.testing.assert_array_equal(after[key], state[key])
    straight, _ = train("cpu", epochs=4)
    model.fit(X, CLASSES, epochs=4, initial_epoch=2, batch_size=16, verbose=0, validation_split=0.25)
    for a, b in zip(model.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_gradient_of_fancy_indexing_with_repeated_pairs_adds_up_on_a_device():
    """Issue #30: the gradient of t[rows, cols] used np.add.at with a tuple key, which CuPy refuses (the strict
    device refuses it as CuPy does); each device's add_at (cupyx.scatter_add on a GPU) does it."""
    rows, cols = np.array([0, 0, 2, 1]), np.array([1, 1, 3, 0])
    gradients = []
    for device in ("cpu", "strict"):
        with bp.device(device):
            t = bp.Variable(np.arange(12.0).reshape(3, 4))
            with bp.GradientTape() as tape:
                y = bp.reduce_sum(t[rows, cols] * bp.tensor([1.0, 2.0, 3.0, 4.0], dtype="float64"))
            gradients.append(tape.gradient(y, t).numpy())
    expected = np.zeros((3, 4))
    np.add.at(expected, (rows, cols), [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(gradients[0], expected)
    np.testing.assert_array_equal(gradients[1], expected)
    with pytest.raises(TypeError, match="tuple of indices is not supported"):
        np.add.at(strict.module.zeros((3, 4)), (rows, cols), 1.0)


def _fit_on(device, data_on_device, dropout=0.2, epochs=3):
    with bp.device(device):
        bp.random.set_seed(0)
        model = bp.Sequential([bp.layers.Input(shape=(5,)), bp.layers.Dense(16, activation="relu"),
                               *([bp.layers.Dropout(dropout)] if dropout else []), bp.layers.Dense(3)])
        model.compile(optimizer="adam", loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        x, y = (strict.module.asarray(X), strict.module.asarray(CLASSES)) if data_on_device else (X, CLASSES)
        uploads = strict.input_uploads[0]
        history = model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, validation_split=0.25,
                            class_weight={0: 1.0, 1: 2.0, 2: 1.0})
        return model.get_weights(), history.history, strict.input_uploads[0] - uploads


def test_fit_takes_data_already_on_the_device_and_keeps_host_data_resident(device_masks):
    """Issue #30: fit refused a device's arrays, and copied every batch of host data to the device. Now device
    data stays where it is and a dataset that fits moves over once: the same training as on the CPU."""
    on_cpu = _fit_on("cpu", False)
    from_host, from_device = _fit_on("strict", False), _fit_on("strict", True)
    for weights, history, _ in (from_host, from_device):
        for a, b in zip(weights, on_cpu[0]):
            np.testing.assert_array_equal(a, b)
        assert history == on_cpu[1]
    assert max(from_host[2], from_device[2]) <= 2  # the inputs moved once (training and validation parts), not
    # every batch, and no dropout mask was drawn on the host and copied over


def splitmix64_uniform(key, i):
    """Element i of a device's uniform draws for ``key``, in Python integers (SplitMix64's output function)."""
    mask = 2**64 - 1
    z = (key + (i + 1) * 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    z ^= z >> 31
    return (z >> 40) / 2**24


def test_a_device_draws_its_dropout_masks_on_itself_from_one_key_of_the_generator():
    """Issue #30: dropout masks were drawn on the host and copied to the device at every step. A device now
    makes its mask from one 64-bit key the model's generator draws: no copy, nothing read back, and a backup
    of the generator holds the device's draws too."""
    values = draws.uniform(strict.module, 12345, (40, 25))
    assert type(values) is strict.StrictArray and values.dtype == np.float32
    host = values.get()
    assert [host.flat[i] for i in (0, 1, 999)] == [splitmix64_uniform(12345, i) for i in (0, 1, 999)]
    with bp.device("strict"):
        a = bp.tensor(np.ones((400, 250), np.float32))
        uploads, reads = strict.uploads[0], strict.transfers[0]
        generator = np.random.default_rng(5)
        out = bp.ops.dropout(a, 0.3, generator).data
        assert (strict.uploads[0], strict.transfers[0]) == (uploads, reads)
        again = bp.ops.dropout(a, 0.3, np.random.default_rng(5)).data
    kept = out.get() != 0
    np.testing.assert_array_equal(out.get(), again.get())  # the generator's state decides the mask
    assert abs(kept.mean() - 0.7) < 0.01 and set(np.unique(out.get())) == {0.0, np.float32(1 / 0.7)}
    key = int(np.random.default_rng(5).integers(2**63, dtype=np.uint64))
    np.testing.assert_array_equal(kept, (draws.uniform(np, key, (400, 250)) >= np.float32(0.3)))
    cpu = bp.ops.dropout(np.ones((400, 250), np.float32), 0.3, np.random.default_rng(5)).numpy()
    assert (cpu != 0).mean() != kept.mean()  # the CPU keeps its own masks (NumPy's draws)


@pytest.mark.skipif("gpu" not in DEVICES, reason="needs CuPy and a GPU")
def test_the_gpu_dropout_kernel_draws_the_strict_devices_masks():  # pragma: no cover - needs a GPU
    masks = {}
    for device in ("gpu", "strict"):
        with bp.device(device):
            a = bp.tensor(np.ones((512, 300), np.float64))
            masks[device] = bp.to_host(bp.ops.dropout(a, 0.25, np.random.default_rng(9)))
    np.testing.assert_array_equal(masks["gpu"], masks["strict"])


@pytest.mark.skipif(not cuda_on_cpu.available(), reason="needs g++ to compile the kernel's body for the CPU")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_dropout_kernel_s_arithmetic_gives_the_strict_device_s_masks(tmp_path, dtype):
    """Without a GPU: the CUDA body, compiled as C++ and run per element, draws the masks the strict device
    draws, bit for bit (a key with its top bits set, so the 64-bit products wrap)."""
    key, factor = 2**63 - 12345, np.dtype(dtype).type(1 / 0.7)
    scale = np.full((300, 70), -1, dtype)
    cuda_on_cpu.run(draws._KERNEL, tmp_path, {"scale": scale}, {"key": key, "rate": 0.3, "factor": factor}, T=dtype)
    expected = (draws.uniform(np, key, scale.shape) >= np.float32(0.3)).astype(dtype) * factor
    np.testing.assert_array_equal(scale, expected)


RULES = [rules_module.__dict__[name] for name in sorted(rules_module.__dict__)
         if isinstance(rules_module.__dict__[name], elementwise.Elementwise)]


@pytest.mark.skipif(not cuda_on_cpu.available(), reason="needs g++ to compile the kernel's body for the CPU")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("formula", RULES, ids=lambda formula: formula.__name__)
def test_every_update_rule_s_gpu_kernel_computes_the_numpy_engine_s_bits(tmp_path, formula, dtype):
    """Without a GPU: the CUDA kernel each optimizer formula becomes on a GPU, its body compiled as C++ and run
    per element on the CPU, gives the NumPy engine's numbers, NaN and infinities included (on a GPU it is compiled
    with --fmad=false so that a * b + c is rounded twice, as NumPy rounds it)."""
    names = list(inspect.signature(formula.formula).parameters)
    rng = np.random.default_rng(len(names))
    values = {name: rng.uniform(0.1, 1.0, size=500).astype(dtype) for name in names}
    for k, a in enumerate(values.values()):  # each argument NaN and infinite at its own places
        a[k], a[20 + k] = np.nan, np.inf
    expected = {name: a.copy() for name, a in values.items()}
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        formula.run_numpy(*expected.values())
    inputs, outputs, _ = formula.cuda_source()
    assert outputs == ", ".join(f"T {names[i]}" for i in formula.updated)
    cuda_on_cpu.run(formula.cuda_source(), tmp_path, values, {}, T=dtype)
    for name in names:
        np.testing.assert_array_equal(values[name], expected[name], err_msg=name)
    assert len(RULES) == inspect.getsource(rules_module).count("\n@elementwise(")  # every rule is here
