"""Model files: round trips, interoperability, and every kind of bad file (RELIABILITY.md B1-B12)."""
import json
import os
import pickle  # only to build a malicious file for the test; the package itself never imports it
import struct
from pathlib import Path

import numpy as np
import pytest

import backprop as bp
from backprop.saving import FileFormatError
from backprop.saving import tensor_file

pytestmark = pytest.mark.usefixtures("each_device_slow")  # on every device (others: slow)


def trained_model(seed=0):
    bp.random.set_seed(seed)
    model = bp.Sequential([bp.layers.Input(shape=(4,)), bp.layers.Dense(5, activation="relu", name="hidden"),
                           bp.layers.Dropout(0.2), bp.layers.Dense(3, name="logits")])
    return model


X = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)


def test_round_trip_is_bit_identical(tmp_path):
    model = trained_model()
    model.save(tmp_path / "m.bp")
    loaded = bp.models.load_model(tmp_path / "m.bp")
    assert np.array_equal(model.predict(X), loaded.predict(X))
    assert [l.get_config()["name"] for l in loaded.layers] == [l.name for l in model.layers]


@bp.saving.register("TinyNet")
class TinyNet(bp.Model):
    def __init__(self, hidden=4, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = hidden
        self.hidden = bp.layers.Dense(hidden, activation="tanh")
        self.out = bp.layers.Dense(1)

    def call(self, inputs, training=None):
        return self.out(self.hidden(inputs))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden_units}


class Unregistered(bp.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = bp.layers.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


def test_subclassed_model_round_trip(tmp_path):
    model = TinyNet(hidden=6)
    expected = model.predict(X)
    model.save(tmp_path / "t.bp")
    loaded = bp.models.load_model(tmp_path / "t.bp")
    assert isinstance(loaded, TinyNet) and loaded.hidden_units == 6
    assert np.array_equal(loaded.predict(X), expected)


def test_unregistered_class_says_how_to_register(tmp_path):
    model = Unregistered()
    model(X)
    with pytest.raises(ValueError, match="register"):
        model.save(tmp_path / "u.bp")
    model.save_weights(tmp_path / "u.weights")
    other = Unregistered()
    other(X)
    other.load_weights(tmp_path / "u.weights")
    assert np.array_equal(other.predict(X), model.predict(X))


def test_custom_objects_and_missing_class(tmp_path):
    path = tmp_path / "t.bp"
    TinyNet()(X)
    model = TinyNet()
    model(X)
    model.save(path)
    tensors, metadata = tensor_file.read(path)
    metadata["config"] = metadata["config"].replace('"TinyNet"', '"Ghost"')
    tensor_file.write(path, tensors, metadata)
    with pytest.raises(ValueError, match=r"unknown class 'Ghost'.*bp.saving.register\('Ghost'\).*custom_objects"):
        bp.models.load_model(path)
    assert isinstance(bp.models.load_model(path, custom_objects={"Ghost": TinyNet}), TinyNet)


def test_files_load_with_the_safetensors_package(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    model = trained_model()
    model.save(tmp_path / "m.bp")
    loaded = safetensors_numpy.load_file(str(tmp_path / "m.bp"))
    assert set(loaded) == {"hidden/kernel", "hidden/bias", "logits/kernel", "logits/bias"}
    safetensors_numpy.save_file({k: np.zeros_like(v) for k, v in loaded.items()}, str(tmp_path / "w.st"),
                                metadata={"format": "backprop.weights", "format_version": "1"})
    model.load_weights(tmp_path / "w.st")
    assert all(not w.any() for w in model.get_weights())


def write_raw(path, header, body=b""):
    blob = json.dumps(header).encode()
    Path(path).write_bytes(struct.pack("<Q", len(blob)) + blob + body)


@pytest.fixture
def saved(tmp_path):
    model = trained_model()
    path = tmp_path / "good.bp"
    model.save(path)
    return model, path


def assert_refused(model, path, pattern):
    before = model.get_weights()
    with pytest.raises(FileFormatError, match=pattern):
        bp.models.load_model(path)
    with pytest.raises(FileFormatError, match=pattern):
        model.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "partly loaded"


@pytest.mark.parametrize("keep", [0, 1, 0.5])
def test_truncated_files(saved, tmp_path, keep):
    model, path = saved
    data = path.read_bytes()
    bad = tmp_path / "bad.bp"
    bad.write_bytes(data[:int(len(data) * keep) if isinstance(keep, float) else keep])
    assert_refused(model, bad, "truncated")


def test_wrong_magic(saved, tmp_path):
    model, _ = saved
    png = tmp_path / "image.bp"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    assert_refused(model, png, "not a backprop model file")


def test_pickle_payload_never_runs(saved, tmp_path):
    model, _ = saved
    marker = tmp_path / "MARKER"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.bp"
    evil.write_bytes(pickle.dumps(Exploit()))
    assert_refused(model, evil, "not a backprop model file|truncated")
    npz = tmp_path / "evil.npz"
    np.savez(npz, w=np.array([Exploit()], dtype=object))
    assert_refused(model, npz, "not a backprop model file|truncated")
    assert not marker.exists()


def test_package_never_uses_pickle_or_eval():
    root = Path(bp.__file__).parent
    for source in root.rglob("*.py"):
        text = source.read_text()
        for word in ("import pickle", "marshal", "eval(", "allow_pickle=True", "importlib"):
            if source.name == "elementwise.py" and word == "importlib":
                continue  # it imports the loops it generated (checked, text for text) so numba caches them
            assert word not in text, f"{source}: {word}"


def test_closed_registry_refuses_dangerous_names(saved, tmp_path):
    model, path = saved
    tensors, metadata = tensor_file.read(path)
    for name in ("os.system", "builtins.eval"):
        metadata["config"] = json.dumps({"class_name": name, "config": {}})
        tensor_file.write(tmp_path / "x.bp", tensors, metadata)
        with pytest.raises(ValueError, match="register"):
            bp.models.load_model(tmp_path / "x.bp")


def test_huge_header_and_shapes_are_refused_before_allocation(saved, tmp_path):
    import tracemalloc
    model, _ = saved
    big = tmp_path / "big.bp"
    tracemalloc.start()
    big.write_bytes(struct.pack("<Q", 2 ** 63) + b"{}")
    assert_refused(model, big, "header length")
    write_raw(big, {"w": {"dtype": "F32", "shape": [10 ** 6, 10 ** 6], "data_offsets": [0, 16]}}, b"\0" * 16)
    assert_refused(model, big, "needs")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50_000_000


def test_overlapping_offsets_and_duplicates(saved, tmp_path):
    model, _ = saved
    bad = tmp_path / "bad.bp"
    write_raw(bad, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12)
    assert_refused(model, bad, "overlap")
    blob = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'
    bad.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * 8)
    assert_refused(model, bad, "duplicate")


def test_nonfinite_weights_refused_unless_allowed(saved, tmp_path):
    model, path = saved
    tensors, metadata = tensor_file.read(path)
    tensors["hidden/bias"][0] = np.nan
    tensor_file.write(tmp_path / "nan.bp", tensors, metadata)
    assert_refused(model, tmp_path / "nan.bp", "NaN")
    assert np.isnan(bp.models.load_model(tmp_path / "nan.bp", allow_nonfinite=True).layers[0].bias.numpy()[0])


def test_architecture_mismatch_lists_everything(saved, tmp_path):
    _, path = saved
    other = bp.Sequential([bp.layers.Input(shape=(4,)), bp.layers.Dense(6, name="hidden"),
                           bp.layers.Dense(3, name="output")])
    with pytest.raises(FileFormatError, match=r"size mismatch for hidden/kernel: file \(4, 5\), model \(4, 6\); "
                                              r"size mismatch for hidden/bias.*missing in file: output/kernel"):
        other.load_weights(path)


def test_newer_format_version(saved, tmp_path):
    model, path = saved
    tensors, metadata = tensor_file.read(path)
    metadata["format_version"] = "3"
    tensor_file.write(tmp_path / "new.bp", tensors, metadata)
    assert_refused(model, tmp_path / "new.bp", "file format 3 is newer than supported 1")


def test_atomic_save_keeps_the_old_file(saved, monkeypatch):
    model, path = saved
    original = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        trained_model(seed=1).save(path)
    assert path.read_bytes() == original
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_save_never_replaces_what_is_not_a_regular_file(saved, tmp_path):
    import stat
    model, path = saved
    model.save("/dev/null")  # a device is written through, and stays a device
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(tensor_file.UnwritableOutput, match="a pipe that no process is reading"):
        model.save(tmp_path / "pipe")  # refused at once, not waited on
    (tmp_path / "folder.bp").mkdir()
    with pytest.raises(tensor_file.UnwritableOutput, match="is a directory, not a regular file"):
        model.save(tmp_path / "folder.bp")
    assert stat.S_ISFIFO(os.stat(tmp_path / "pipe").st_mode) and (tmp_path / "folder.bp").is_dir()
    os.symlink(path, tmp_path / "link.bp")  # a link to a model file: the file is replaced, the link stays
    trained_model(seed=3).save(tmp_path / "link.bp")
    assert (tmp_path / "link.bp").is_symlink() and bp.models.load_model(path) is not None


def fuzz(saved_path, tmp_path, cases, seed):
    data = bytearray(saved_path.read_bytes())
    rng = np.random.default_rng(seed)
    target = tmp_path / "fuzz.bp"
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(cases):
        mutated = bytearray(data)
        kind = rng.integers(3)
        if kind == 0:
            for _ in range(rng.integers(1, 8)):
                position = rng.integers(len(mutated))
                mutated[position] ^= 1 << rng.integers(8)
        elif kind == 1:
            mutated = mutated[:rng.integers(len(mutated))]
        else:
            header_end = 8 + struct.unpack("<Q", bytes(data[:8]))[0]
            position = rng.integers(8, header_end)
            mutated[position] = rng.integers(32, 127)
        target.write_bytes(bytes(mutated))
        try:
            bp.models.load_model(target)
            outcomes["loaded"] += 1
        except FileFormatError:
            outcomes["refused"] += 1
    return outcomes


def test_fuzzed_files_only_raise_the_library_error(saved, tmp_path):
    outcomes = fuzz(saved[1], tmp_path, 300, seed=0)
    assert outcomes["refused"] > 100


@pytest.mark.slow
def test_fuzz_many(saved, tmp_path):
    fuzz(saved[1], tmp_path, 10_000, seed=1)


@pytest.mark.parametrize("dtype", ["float3,", "|V1000000000", "(2,)f4", "int32", "O"])
def test_layer_dtypes_outside_the_float_types_are_refused(saved, tmp_path, dtype):
    """Found by the slow fuzzer: 'float3,' made NumPy parse a structured dtype and raise SyntaxError."""
    _, path = saved
    tensors, metadata = tensor_file.read(path)
    config = json.loads(metadata["config"])
    config["config"]["layers"][-1]["config"]["dtype"] = dtype
    metadata["config"] = json.dumps(config)
    tensor_file.write(tmp_path / "dtype.bp", tensors, metadata)
    with pytest.raises(FileFormatError, match="dtype must be one of float16, float32, float64"):
        bp.models.load_model(tmp_path / "dtype.bp")


def test_weights_go_by_name_when_every_name_matches_in_another_order(tmp_path):
    """Two layers named dense_7 and dense_8, in the other order in the new model: by place they were swapped."""
    first, second = bp.layers.Dense(2, name="dense_7"), bp.layers.Dense(2, name="dense_8")
    saved = bp.Sequential([bp.Input(shape=(2,)), first, second])
    saved.save_weights(tmp_path / "w.bp")
    swapped = bp.Sequential([bp.Input(shape=(2,)), bp.layers.Dense(2, name="dense_8"), bp.layers.Dense(2, name="dense_7")])
    swapped.load_weights(tmp_path / "w.bp")
    np.testing.assert_array_equal(swapped.layers[1].kernel.numpy(), first.kernel.numpy())
    np.testing.assert_array_equal(swapped.layers[0].kernel.numpy(), second.kernel.numpy())


def test_a_model_built_twice_in_one_process_loads_the_first_ones_weights(tmp_path):
    """Automatic layer names count up (dense_4 saved, dense_6 loading): the weights still find their places,
    as Keras 3's do; names given by hand must match, and shapes always."""
    def build(units=1):
        return bp.Sequential([bp.layers.Dense(3, input_shape=(2,)), bp.layers.Dense(units)])

    first = build()
    first.save_weights(tmp_path / "w.bp")
    second = build()
    assert [v.path for v in second.variables] != [v.path for v in first.variables]
    second.load_weights(tmp_path / "w.bp")
    for a, b in zip(second.get_weights(), first.get_weights()):
        np.testing.assert_array_equal(a, b)
    wider = build(units=2)
    with pytest.raises(FileFormatError, match=r"size mismatch for dense_\d+/kernel: file \(3, 1\), model \(3, 2\)"):
        wider.load_weights(tmp_path / "w.bp")


@pytest.mark.parametrize("save, name, suggested", [
    (lambda m, p: m.save(p), "m.keras", "m.bp"), (lambda m, p: m.save(p), "m.h5", "m.bp"),
    (lambda m, p: m.save_weights(p), "m.weights.h5", "m.bp"),
    (lambda m, p: bp.callbacks.ModelCheckpoint(p), "best.keras", "best.bp"),
])
def test_keras_file_names_are_refused_with_the_right_one(tmp_path, save, name, suggested):
    """A '.keras' file in backprop's format would look like one Keras can open (issue #31)."""
    with pytest.raises(ValueError, match=f"is a Keras file name, .* name it '.*{suggested}'"):
        save(trained_model(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_load_model_refuses_a_pipe_and_a_device_at_once(tmp_path):
    """A FIFO hung load_model and /dev/zero read until MemoryError (the CLI refused both; Python did not)."""
    import os
    os.mkfifo(tmp_path / "pipe.bp")
    for path, kind in ((tmp_path / "pipe.bp", "a pipe"), ("/dev/zero", "a character device"), (tmp_path, "a directory")):
        with pytest.raises(FileFormatError, match=f"is {kind}, not a model file"):
            bp.models.load_model(path)
