"""Issue #21: model files whose JSON is valid but hostile load or fail with backprop's own error, quickly,
in a child process capped at 2 GB of address space (so a bomb fails the test instead of the machine)."""
import json
import subprocess
import sys

import numpy as np
import pytest

import backprop as bp
from backprop.saving import tensor_file

CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
import backprop as bp
from backprop.saving.tensor_file import FileFormatError
results = {}
for path in sys.argv[1:]:
    start = time.perf_counter()
    try:
        bp.models.load_model(path)
        outcome = "loaded"
    except FileFormatError as error:
        outcome = "refused: " + str(error)
    except BaseException as error:  # what the test is looking for
        outcome = "FOREIGN " + type(error).__name__ + ": " + str(error)[:200]
    results[path] = (outcome, time.perf_counter() - start)
print(json.dumps(results))
"""


def mutate(config, edit):
    config = json.loads(json.dumps(config))
    edit(config)
    return config


def deep(levels):
    return "[" * levels + "]" * levels


HOSTILE_CONFIGS = {
    "units 3e8": lambda c: c["config"]["layers"][1]["config"].update(units=300_000_000),
    "units 1e12": lambda c: c["config"]["layers"][1]["config"].update(units=10 ** 12),
    "units as bool": lambda c: c["config"]["layers"][1]["config"].update(units=True),
    "units as float": lambda c: c["config"]["layers"][1]["config"].update(units=8.5),
    "units negative": lambda c: c["config"]["layers"][1]["config"].update(units=-8),
    "input wider than the kernel": lambda c: c["config"]["layers"][0]["config"].update(shape=[40]),
    "input 1e12": lambda c: c["config"]["layers"][0]["config"].update(shape=[10 ** 12]),
    "input 1e5x1e5x4": lambda c: c["config"]["layers"][0]["config"].update(shape=[100000, 100000, 4]),
    "shape of 100 dims": lambda c: c["config"]["layers"][0]["config"].update(shape=[1] * 100),
    "bool in shape": lambda c: c["config"]["layers"][0]["config"].update(shape=[True]),
    "dtype V1e9": lambda c: c["config"]["layers"][1]["config"].update(dtype="|V1000000000"),
    "subarray dtype": lambda c: c["config"]["layers"][1]["config"].update(dtype="(1000,1000)f8"),
    "16,000 layers": lambda c: c["config"].update(layers=[c["config"]["layers"][0]] + [
        {"class_name": "Dropout", "config": {"rate": 0.1, "name": f"d{i}"}} for i in range(16000)]),
    "input_dim 1e9": lambda c: c["config"]["layers"][1]["config"].update(input_dim=10 ** 9),
    "unknown class": lambda c: c["config"]["layers"][1].update(class_name="os.system"),
    "name as list": lambda c: c["config"]["layers"][1]["config"].update(name=[1, 2]),
}


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    model = bp.Sequential([bp.layers.Input(shape=(4,)), bp.layers.Dense(8, name="hidden"), bp.layers.Dense(2)])
    model.save(folder / "good.bp")
    tensors, metadata = tensor_file.read(folder / "good.bp")
    config = json.loads(metadata["config"])
    files = {"good": folder / "good.bp"}
    for name, edit in HOSTILE_CONFIGS.items():
        files[name] = folder / f"{len(files)}.bp"
        tensor_file.write(files[name], tensors, {**metadata, "config": json.dumps(mutate(config, edit))})
    raw = {"deep config": deep(100_000), "5000-digit units": metadata["config"].replace('"units": 8', '"units": ' + "9" * 5000),
           "Infinity units": metadata["config"].replace('"units": 8', '"units": Infinity'),
           "deep compile config": None, "deep shape": None}
    for name, text in raw.items():
        if text is None:
            continue
        files[name] = folder / f"{len(files)}.bp"
        tensor_file.write(files[name], tensors, {**metadata, "config": text})
    files["deep build shape"] = folder / f"{len(files)}.bp"
    tensor_file.write(files["deep build shape"], tensors, {**metadata, "build_input_shape": deep(50_000)})
    files["deep compile"] = folder / f"{len(files)}.bp"
    model.compile(optimizer="adam", loss="mse")
    model.save(files["deep compile"])
    tensors2, metadata2 = tensor_file.read(files["deep compile"])
    tensor_file.write(files["deep compile"], tensors2, {**metadata2, "compile_config": deep(100_000)})
    files["huge header length"] = folder / f"{len(files)}.bp"
    files["huge header length"].write_bytes((2 ** 62).to_bytes(8, "little") + b"{}" * 1000)
    return files


def test_hostile_model_files_fail_with_backprop_s_error_quickly(hostile_files):
    result = subprocess.run([sys.executable, "-c", CHILD, *map(str, hostile_files.values())], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = json.loads(result.stdout)
    by_name = {name: outcomes[str(path)] for name, path in hostile_files.items()}
    assert by_name.pop("good")[0] == "loaded"
    for name, (outcome, seconds) in by_name.items():
        assert outcome.startswith("refused: "), f"{name}: {outcome}"
        assert seconds < 1.0, f"{name}: {seconds:.2f} s"
    assert "hidden.units: 300000000 does not match the stored kernel (4, 8)" in by_name["units 3e8"][0]
    assert "nested 100000 levels deep" in by_name["deep config"][0]
    assert "inputs of width 40 do not match the stored kernel (4, 8)" in by_name["input wider than the kernel"][0]
    assert "an integer of 5000 digits" in by_name["5000-digit units"][0]


HOSTILE_VALUES = [10 ** 9, 10 ** 12, -1, 0, 2.5, float("inf"), True, False, None, "x", "float3,", [], {}, [[[[1]]]],
                  [10 ** 6] * 3, "Dense", "|V100000000"]


def structural_mutants(config, rng, count):
    """Copies of ``config`` with one value replaced by a hostile one, a key duplicated or a class renamed."""
    text = json.dumps(config)
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                paths.append(path + [key])
                walk(value, path + [key])
        elif isinstance(node, list):
            for i, value in enumerate(node):
                paths.append(path + [i])
                walk(value, path + [i])

    walk(config, [])
    for _ in range(count):
        mutant = json.loads(text)
        path = paths[rng.integers(len(paths))]
        node = mutant
        for key in path[:-1]:
            node = node[key]
        value = HOSTILE_VALUES[rng.integers(len(HOSTILE_VALUES))]
        node[path[-1]] = value
        encoded = json.dumps(mutant, allow_nan=True)
        if rng.random() < 0.1:  # duplicate keys, which json.dumps cannot write
            encoded = encoded.replace('"units": ', '"units": 3, "units": ', 1)
        yield encoded


def fuzz_structure(tmp_path, count, seed):
    model = bp.Sequential([bp.layers.Input(shape=(4,)), bp.layers.Dense(8, name="hidden"), bp.layers.Dropout(0.2),
                           bp.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.save(tmp_path / "good.bp")
    tensors, metadata = tensor_file.read(tmp_path / "good.bp")
    rng = np.random.default_rng(seed)
    paths = []
    for i, text in enumerate(structural_mutants(json.loads(metadata["config"]), rng, count)):
        field = "compile_config" if i % 5 == 4 else "config"
        replacement = text if field == "config" else next(structural_mutants(json.loads(metadata["compile_config"]), rng, 1))
        paths.append(tmp_path / f"m{i}.bp")
        tensor_file.write(paths[-1], tensors, {**metadata, field: replacement})
    result = subprocess.run([sys.executable, "-c", CHILD, *map(str, paths)], capture_output=True, text=True,
                            timeout=60 + count // 10)
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = json.loads(result.stdout).values()
    foreign = [outcome for outcome, _ in outcomes if outcome.startswith("FOREIGN")]
    slow = [seconds for _, seconds in outcomes if seconds > 1.0]
    assert not foreign, foreign[:5]
    assert not slow, slow[:5]
    return sum(outcome.startswith("refused") for outcome, _ in outcomes)


def test_structure_aware_fuzzing_of_the_architecture(tmp_path):
    assert fuzz_structure(tmp_path, 300, seed=0) > 100


@pytest.mark.slow
def test_structure_aware_fuzzing_many(tmp_path):
    fuzz_structure(tmp_path, 10_000, seed=1)


# --- the header and the preprocessing a model file carries (issue #29) ----------------------------------------
HEADER_CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from backprop.saving import tensor_file
results = {}
for path in sys.argv[1:]:
    try:
        tensor_file.read(path)
        outcome = "read"
    except tensor_file.FileFormatError as error:
        outcome = "refused: " + str(error)
    except BaseException as error:
        outcome = "FOREIGN " + type(error).__name__ + ": " + str(error)[:200]
    results[path] = outcome
print(json.dumps(results))
"""

HEADER_VALUES = [None, True, -1, 2 ** 64, 2.5, "F32", "<f4", "|V9", "x", [], {}, [-1], [2 ** 40, 2 ** 40], [0, 2 ** 63],
                 [8, 4], ["0", "4"], [1.5, 4], {"dtype": "F32"}]


def header_mutants(path, rng, count):
    """Model files whose header JSON has one tensor entry's dtype, shape or offsets (or the whole entry, or the
    metadata) replaced by a hostile value."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8:8 + length]), data[8 + length:]
    names = [name for name in header if name != "__metadata__"]
    for _ in range(count):
        mutant = json.loads(json.dumps(header))
        name = names[rng.integers(len(names))] if rng.random() < 0.9 else "__metadata__"
        value = HEADER_VALUES[rng.integers(len(HEADER_VALUES))]
        if name == "__metadata__" or rng.random() < 0.1:
            mutant[name] = value
        else:
            mutant[name][["dtype", "shape", "data_offsets"][rng.integers(3)]] = value
        blob = json.dumps(mutant).encode()
        yield len(blob).to_bytes(8, "little") + blob + body


def test_structure_aware_fuzzing_of_the_header(tmp_path):
    model = bp.Sequential([bp.layers.Input(shape=(4,)), bp.layers.Dense(8), bp.layers.Dense(2)])
    model.save(tmp_path / "good.bp")
    paths = []
    for i, data in enumerate(header_mutants(tmp_path / "good.bp", np.random.default_rng(0), 300)):
        paths.append(tmp_path / f"h{i}.bp")
        paths[-1].write_bytes(data)
    result = subprocess.run([sys.executable, "-c", HEADER_CHILD, *map(str, paths)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = list(json.loads(result.stdout).values())
    assert not [o for o in outcomes if o.startswith("FOREIGN")], [o for o in outcomes if o.startswith("FOREIGN")][:5]
    assert sum(o.startswith("refused") for o in outcomes) > 200


PREPROCESSING_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from backprop import run
from backprop.datasets import csv_reader, tabular
from backprop.saving.tensor_file import FileFormatError
header, row = sys.argv[1].split(";")
results = {}
for path in sys.argv[2:]:
    try:
        model, preprocessing = run.load_run(path)
        preprocessor = tabular.Preprocessor.from_dict(preprocessing)
        model.predict(preprocessor.transform(header.split(","), [row.split(",")], "rows.csv"))
        outcome = "predicted"
    except (csv_reader.DataError, FileFormatError) as error:
        outcome = "refused: " + str(error)
    except BaseException as error:
        outcome = "FOREIGN " + type(error).__name__ + ": " + str(error)[:200]
    results[path] = outcome
print(json.dumps(results))
"""


def fuzz_preprocessing(tmp_path, count, seed):
    rng = np.random.default_rng(seed)
    rows = [f"{a:.3f},{['red', 'blue'][i % 2]},{'yes' if a > 0 else 'no'}" for i, a in enumerate(rng.normal(size=40))]
    (tmp_path / "t.csv").write_text("size,colour,label\n" + "\n".join(rows) + "\n")
    subprocess.run([sys.executable, "-m", "backprop", "train", "--data", "t.csv", "--target", "label", "--epochs", "1",
                    "--no-plots", "--quiet", "--out", "run"], cwd=tmp_path, check=True, capture_output=True, timeout=300)
    tensors, metadata = tensor_file.read(tmp_path / "run" / "model.bp")
    preprocessing = json.loads(metadata["preprocessing"])
    paths = []
    for i, text in enumerate(structural_mutants(preprocessing, rng, count)):
        if i % 100 == 0:  # a million categories in one column: bounded by the model's input width
            mutant = json.loads(json.dumps(preprocessing))
            mutant["columns"][1]["categories"] = [f"c{k}" for k in range(10 ** 6)]
            text = json.dumps(mutant)
        paths.append(tmp_path / f"p{i}.bp")
        tensor_file.write(paths[-1], tensors, {**metadata, "preprocessing": text})
    result = subprocess.run([sys.executable, "-c", PREPROCESSING_CHILD, "size,colour;0.5,red", *map(str, paths)],
                            capture_output=True, text=True, timeout=120 + count // 5)
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = list(json.loads(result.stdout).values())
    foreign = [o for o in outcomes if o.startswith("FOREIGN")]
    assert not foreign, foreign[:5]
    return outcomes


def test_structure_aware_fuzzing_of_the_preprocessing(tmp_path):
    outcomes = fuzz_preprocessing(tmp_path, 200, seed=0)
    assert sum(o.startswith("refused") for o in outcomes) > 50 and "predicted" in outcomes


@pytest.mark.slow
def test_structure_aware_fuzzing_of_the_preprocessing_many(tmp_path):
    fuzz_preprocessing(tmp_path, 3000, seed=1)
