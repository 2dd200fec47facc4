"""`backprop export RUN --format onnx`: the file takes the raw values `backprop predict` takes and gives its answers."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from backprop import run
from backprop.datasets import tabular

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def backprop(*args, cwd):
    return subprocess.run([sys.executable, "-m", "backprop", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})


def raw_inputs(path, preprocessor):
    """The ONNX inputs for a CSV: numeric columns as floats (a missing cell as NaN), text columns as strings."""
    with open(path, newline="") as handle:
        header, *rows = list(csv.reader(handle))
    feeds, numeric = {}, []
    for column in preprocessor.columns:
        cells = [row[header.index(column["name"])] for row in rows]
        if column["kind"] == "numeric":
            numeric.append([float(c) if c else np.nan for c in cells])
        else:
            feeds[column["name"]] = np.array(cells, dtype=object)
    if numeric:
        feeds["features"] = np.array(numeric, dtype=np.float32).T
    return header, rows, feeds


def expected(run_folder, header, rows):
    model, preprocessing = run.load_run(str(run_folder))
    preprocessor = tabular.Preprocessor.from_dict(preprocessing)
    x = preprocessor.transform(header, rows, missing=preprocessor.missing)
    return preprocessor, run.predict_labels(model, x, preprocessor)


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(1)
    n = 200
    sqft, city = rng.uniform(50, 250, n), rng.choice(["Paris", "Lyon", "Nice"], n)
    price = 1500 * sqft + np.select([city == "Paris", city == "Lyon"], [120000, 40000], 0) + rng.normal(0, 9000, n)
    band = np.where(price > np.median(price), "high", "low")
    lines = [f"{'' if i % 25 == 3 else f'{sqft[i]:.1f}'},{city[i]},{price[i]:.0f},{band[i]}" for i in range(n)]
    (folder / "houses.csv").write_text("sqft,city,price,band\n" + "\n".join(lines) + "\n")
    return folder


@pytest.mark.slow  # two CLI runs exported and answered (2.5 s)
@pytest.mark.parametrize("target, drop, task", [("price", "band", "regression"), ("band", "price", "classification")])
def test_exported_run_answers_like_predict(houses, target, drop, task):
    out = f"run_{target}"
    result = backprop("train", "--data", "houses.csv", "--target", target, "--drop", drop, "--task", task,
                      "--missing", "mean", "--epochs", "15", "--quiet", "--no-plots", "--out", out, cwd=houses)
    assert result.returncode == 0, result.stderr
    result = backprop("export", out, "--format", "onnx", "--output", f"{target}.onnx", cwd=houses)
    assert result.returncode == 0, result.stderr
    assert "takes the 1 numeric columns as raw values, plus one text input per column city" in result.stdout
    path = houses / f"{target}.onnx"
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    header, rows, feeds = raw_inputs(houses / "houses.csv", tabular.Preprocessor.from_dict(
        run.load_run(str(houses / out))[1]))
    assert np.isnan(feeds["features"]).sum() == 8  # the missing cells, filled with the training mean inside
    preprocessor, (labels, scores) = expected(houses / out, header, rows)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, feeds)
    if task == "regression":
        np.testing.assert_allclose(got[0], labels, rtol=2e-5)
    else:
        assert list(got[0]) == [preprocessor.classes[int(i)] for i in labels]
        np.testing.assert_allclose(got[1], scores, atol=1e-5)
        metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert json.loads(metadata["classes"]) == ["high", "low"] and metadata["target"] == "band"


@pytest.mark.slow
def test_exported_bundled_run_and_a_bad_model_file(tmp_path):
    result = backprop("train", "--data", "blobs", "--epochs", "3", "--quiet", "--no-plots", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert backprop("export", "run", "--output", "blobs.onnx", cwd=tmp_path).returncode == 0
    model, preprocessing = run.load_run(str(tmp_path / "run"))
    preprocessor = tabular.Preprocessor.from_dict(preprocessing)
    raw = np.random.default_rng(0).normal(size=(9, len(preprocessor.columns))).astype(np.float32) * 3
    labels, scores = run.predict_labels(model, preprocessor.transform_array(raw), preprocessor)
    session = ort.InferenceSession(str(tmp_path / "blobs.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": raw})
    assert list(got[0]) == [preprocessor.classes[int(i)] for i in labels]
    np.testing.assert_allclose(got[1], scores, atol=1e-5)
    (tmp_path / "broken.bp").write_bytes(b"not a model")
    result = backprop("export", "broken.bp", "--output", "broken.onnx", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and not (tmp_path / "broken.onnx").exists()


@pytest.mark.parametrize("missing", ["mean", "drop"])
def test_the_graph_equals_predict_on_a_messy_table(tmp_path, missing):
    """Categories with spaces around them, missing numbers and missing categories (NA, ?, an empty cell), on a
    --missing mean and a --missing drop run: before, 36/80 rows were off (categories unstripped), missing
    categories became zeros and a drop model answered NaN (issue #29)."""
    rng = np.random.default_rng(2)
    n = 120
    sqft, city = rng.uniform(50, 250, n), rng.choice(["Paris", "Lyon", "Nice", "Saint Denis"], n)
    price = 1500 * sqft + np.select([city == "Paris", city == "Lyon"], [120000, 40000], 0) + rng.normal(0, 9000, n)
    pads = ["", " ", "  ", "\t"]
    cells = [f"{pads[i % 4]}{c}{pads[(i // 4) % 4]}" for i, c in enumerate(city)]
    train = [f"{sqft[i]:.1f},{cells[i]},{price[i]:.0f}" for i in range(n)]
    train[5], train[9] = f",{cells[5]},{price[5]:.0f}", f"{sqft[9]:.1f},NA,{price[9]:.0f}"
    (tmp_path / "train.csv").write_text("sqft,city,price\n" + "\n".join(train) + "\n")
    result = backprop("train", "--data", "train.csv", "--target", "price", "--missing", missing, "--epochs", "10",
                      "--quiet", "--no-plots", "--out", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert backprop("export", "r", "--output", "r.onnx", cwd=tmp_path).returncode == 0
    new = [f"{sqft[i]:.1f},{cells[i]}" for i in range(40)] + ["100.0, Paris", "120.0,Lyon  ", ",Nice", "80.0,?",
                                                               "90.0,", "95.0, n/a ", "75.0,Saint Denis"]
    (tmp_path / "new.csv").write_text("sqft,city\n" + "\n".join(new) + "\n")
    model, preprocessing = run.load_run(str(tmp_path / "r"))
    preprocessor = tabular.Preprocessor.from_dict(preprocessing)
    header, rows, feeds = raw_inputs(tmp_path / "new.csv", preprocessor)
    _, (values, _) = expected(tmp_path / "r", header, [[c.strip() for c in row] for row in rows])
    got = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, values, rtol=2e-5)
