"""Datasets: toys, bundled data, the CSV and IDX readers (RELIABILITY.md C1-C7, N8), helpers."""
import gzip
import struct
import tracemalloc

import numpy as np
import pytest

import backprop as bp
from backprop.datasets import DataError


@pytest.mark.parametrize("name", ["pass_fail", "moons", "circles", "spirals", "xor", "blobs"])
def test_toys_are_seeded_and_shaped(name):
    make = bp.datasets.TOYS[name]
    x, y = make(seed=3) if name != "pass_fail" else make(100, seed=3)
    x2, y2 = make(seed=3) if name != "pass_fail" else make(100, seed=3)
    assert x.dtype == np.float32 and x.shape[1] == 2 and y.dtype == np.int64 and len(x) == len(y)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert len(np.unique(y)) >= 2


def test_pass_fail_rule_is_the_documented_one():
    x, y = bp.datasets.pass_fail(500, noise=0.0)
    assert np.array_equal(y, ((x[:, 0] + 1) * (x[:, 1] + 1) > 40).astype(int))


def test_bundled_data():
    (x_train, y_train), (x_test, y_test) = bp.datasets.digits()
    assert x_train.shape[1] == 64 and len(x_train) + len(x_test) == 1797 and x_train.max() == 16
    assert len(x_test) == 360 and set(np.unique(y_test)) == set(range(10))
    x, y = bp.datasets.mnist_sample(split=False)
    assert x.shape == (5000, 784) and np.bincount(y).tolist() == [500] * 10


def write(tmp_path, text, name="data.csv", mode="w"):
    path = tmp_path / name
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_csv_reading_variants(tmp_path):
    plain = bp.datasets.load_csv(write(tmp_path, "a,b,label\n1,2,cat\n3,4,dog\n5,6,cat\n"))
    assert plain.feature_names == ["a", "b"] and plain.classes == ["cat", "dog"] and plain.y.tolist() == [0, 1, 0]
    bom_crlf = write(tmp_path, "\ufeffa,b,label\r\n1,2,0\r\n3,4,1\r\n\r\n\r\n".encode(), "bom.csv", "wb")
    table = bp.datasets.load_csv(bom_crlf)
    assert table.feature_names == ["a", "b"] and table.x.tolist() == [[1, 2], [3, 4]]
    quoted = bp.datasets.load_csv(write(tmp_path, 'a,"b, with comma",label\n"1","2",0\n3,4,1\n', "q.csv"))
    assert quoted.feature_names == ["a", "b, with comma"] and quoted.x[0].tolist() == [1, 2]
    semicolon = bp.datasets.load_csv(write(tmp_path, "a;b;label\n1;2;0\n3;4;1\n", "s.csv"))
    assert semicolon.x.shape == (2, 2)
    headerless = bp.datasets.load_csv(write(tmp_path, "1,2,0\n3,4,1\n", "h.csv"))
    assert headerless.feature_names == ["column_1", "column_2"]
    regression = bp.datasets.load_csv(write(tmp_path, "a,price\n1,2.5\n2,3.7\n", "r.csv"), target="price")
    assert regression.task == "regression" and regression.y.dtype == np.float32
    by_index = bp.datasets.load_csv(tmp_path / "r.csv", target="0")
    assert by_index.target == "a" and by_index.feature_names == ["price"]
    dropped = bp.datasets.load_csv(write(tmp_path, "a,b,label\n1,?,0\n3,4,1\n", "m.csv"), missing="drop")
    assert dropped.x.tolist() == [[3, 4]]


@pytest.mark.parametrize("text, message", [
    ("a,b,age\n1,2,3\n1,2,3\n1,2,3\n4,5,\n", "data.csv:5: column 'age' (3): missing target value"),
    ("a,x2,c\n" + "1,2,0\n" * 7 + "1,abc,0\n", "data.csv:9: column 'x2' (2): cannot parse 'abc' as a number"),
    ("a,b,c,d,e\n" + "1,2,3,4,5\n" * 5 + "1,2,3,4\n", "data.csv:7: 4 fields, expected 5 (from header)"),
    ("", "no data rows"),
    ("a,b,label\n", "no data rows"),
    ("a,b,c\n1,2,3\n", "target 'label' not found; columns: a, b, c"),
    ("a,label\n0x10,1\n", "cannot parse '0x10'"),
])
def test_csv_errors_name_file_line_and_column(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bp.datasets.load_csv(path, target="label" if "label" in message else None)


def test_csv_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="data file '.*missing.csv' not found"):
        bp.datasets.load_csv(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="is a directory"):
        bp.datasets.load_csv(tmp_path)


def idx_bytes(array, code):
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_idx_round_trip_gzip_and_errors(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(6, 4, 4)).astype(np.uint8)
    labels = np.arange(6, dtype=np.uint8)
    bp.datasets.write_idx(tmp_path / "images.idx", images)
    (tmp_path / "labels.idx.gz").write_bytes(gzip.compress(idx_bytes(labels, 0x08)))
    x, y = bp.datasets.load_idx(tmp_path / "images.idx", tmp_path / "labels.idx.gz")
    assert x.shape == (6, 16) and np.array_equal(x.reshape(6, 4, 4), images) and y.tolist() == list(range(6))
    assert (tmp_path / "images.idx").stat().st_size == 4 + 4 * 3 + images.size
    (tmp_path / "short.idx").write_bytes(idx_bytes(labels[:5], 0x08))
    with pytest.raises(DataError, match="6 images but 5 labels"):
        bp.datasets.load_idx(tmp_path / "images.idx", tmp_path / "short.idx")
    (tmp_path / "bad.idx").write_bytes(b"\x12\x34\x08\x01" + b"\0" * 8)
    with pytest.raises(DataError, match="bad magic"):
        bp.datasets.read_idx(tmp_path / "bad.idx")
    (tmp_path / "cut.idx").write_bytes(idx_bytes(images, 0x08)[:-3])
    with pytest.raises(DataError, match="does not match dimensions"):
        bp.datasets.read_idx(tmp_path / "cut.idx")


def test_idx_huge_dimensions_refused_before_allocation(tmp_path):
    (tmp_path / "huge.idx").write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 60000, 100000, 100000))
    tracemalloc.start()
    with pytest.raises(DataError, match="refusing"):
        bp.datasets.read_idx(tmp_path / "huge.idx")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50_000_000


def test_split_and_scaling():
    x = np.arange(40, dtype=float).reshape(20, 2)
    y = np.array([0, 1] * 10)
    x_train, x_test, y_train, y_test = bp.datasets.train_test_split(x, y, test_size=0.25, seed=0, stratify=True)
    assert len(x_test) == 5 and sorted(np.bincount(y_test)) == [2, 3]
    assert sorted(np.concatenate([x_train[:, 0], x_test[:, 0]]).tolist()) == x[:, 0].tolist()
    scaled, scaler = bp.datasets.standardize(x)
    np.testing.assert_allclose(scaled.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(scaler.transform(x), scaled)
    constant, scaler = bp.datasets.standardize(np.ones((5, 2)))
    assert np.isfinite(constant).all() and not constant.any()
    unit, _ = bp.datasets.min_max_scale(x)
    assert unit.min() == 0 and unit.max() == 1
    with pytest.raises(ValueError, match="fitted on 2 features, got 3"):
        scaler.transform(np.ones((1, 3)))


def test_batch_iterator_yields_views_without_shuffle():
    x = np.arange(10.0).reshape(5, 2)
    batches = list(bp.datasets.iterate_batches(x, batch_size=2, shuffle=False))
    assert [len(b) for b, _ in batches] == [2, 2, 1] and np.shares_memory(batches[0][0], x)
    shuffled = np.concatenate([b for b, _ in bp.datasets.iterate_batches(x, batch_size=2, seed=0)])
    assert sorted(shuffled[:, 0].tolist()) == x[:, 0].tolist()


def test_a_table_too_big_for_memory_is_refused_with_its_size(tmp_path, monkeypatch):
    """Reading a CSV takes about six times its size: a 2 GiB file ended in MemoryError after 25 s (issue #29)."""
    from backprop.datasets import csv_reader
    path = tmp_path / "big.csv"
    path.write_text("a,b\n" + "1,2\n" * 1000)
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 2}  # a machine of 8 KiB
    monkeypatch.setattr(csv_reader.os, "sysconf", lambda name: pages[name])
    with pytest.raises(csv_reader.DataError, match=r"reading it as a table needs about .* take a sample of its rows"):
        csv_reader.check_readable(path)
