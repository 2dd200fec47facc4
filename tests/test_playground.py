"""The playground server through Starlette's test client: token, Origin, bounds, messages, training."""
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from backprop.playground.server import create_app  # noqa: E402

TOKEN = "secret-token"
ORIGIN = "http://127.0.0.1:8765"


@pytest.fixture
def client():
    return TestClient(create_app(TOKEN, {ORIGIN}))


def receive(ws, kind):
    """The next message of that type (errors are returned too, so a test sees them)."""
    while True:
        message = ws.receive_json()
        if message["type"] in (kind, "error"):
            return message


def decoded(text):
    import base64
    return list(base64.b64decode(text))


def test_the_page_needs_the_token(client):
    assert client.get("/").status_code == 403 and client.get("/?token=wrong").status_code == 403
    page = client.get(f"/?token={TOKEN}")
    assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
    for text in ("<button id=\"play\">Play</button>", "Pause", "Step", "Reset", "Epoch 0", "Train loss", "Test loss"):
        assert text in page.text
    assert "http" not in page.text.split("<script>")[1].replace("https:", "")  # no CDN: everything is in the page


@pytest.mark.parametrize("path, headers", [("/ws", {}), ("/ws?token=wrong", {}),
                                           (f"/ws?token={TOKEN}", {"origin": "https://evil.example"})])
def test_sockets_without_the_token_or_from_another_site_are_refused(client, path, headers):
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect(path, headers=headers) as ws:
            ws.receive_json()
    assert refused.value.code == 1008


def test_a_setup_steps_and_plays(client):
    with client.websocket_connect(f"/ws?token={TOKEN}", headers={"origin": ORIGIN}) as ws:
        ws.send_json({"type": "setup", "dataset": "xor", "points": 300, "layers": [8, 8], "learning_rate": 0.03})
        points = receive(ws, "points")
        assert len(points["x"]) == 300 and set(points["y"]) == {0, 1} and len(points["test"]) == 90
        first = receive(ws, "frame")
        assert first["epoch"] == 0 and len(decoded(first["boundary"])) == first["grid"] ** 2
        ws.send_json({"type": "step"})
        stepped = receive(ws, "frame")
        assert stepped["epoch"] == 1 and stepped["train_loss"] > 0 and stepped["test_loss"] > 0
        ws.send_json({"type": "play"})
        frame = stepped
        deadline = time.monotonic() + 60
        while frame["test_loss"] > 0.1 and time.monotonic() < deadline:
            frame = receive(ws, "frame")
        ws.send_json({"type": "pause"})
        assert frame["test_loss"] < 0.1 and frame["epoch"] > 1  # xor learnt while playing
        assert frame["boundary"] != first["boundary"]
        ws.send_json({"type": "reset"})
        receive(ws, "points")
        while receive(ws, "frame")["epoch"] != 0:  # frames played before the pause may still arrive
            pass


@pytest.mark.parametrize("message, problem", [
    ("not json", "not JSON"),
    (json.dumps({"type": "setup", "layers": [8] * 9}), "at most 8 hidden layer sizes"),
    (json.dumps({"type": "setup", "layers": [65]}), "1 to 64 units"),
    (json.dumps({"type": "setup", "points": 10_001}), "points must be a whole number in [20, 10000]"),
    (json.dumps({"type": "setup", "learning_rate": float("inf")}), "the non-standard constant Infinity"),
    (json.dumps({"type": "setup", "learning_rate": 20.0}), "learning_rate must be a number"),
    (json.dumps({"type": "setup", "dataset": "../../etc/passwd"}), "dataset must be one of"),
    (json.dumps({"type": "setup", "path": "/tmp/x"}), "unknown setting(s): path"),
    (json.dumps({"type": "play"}), "send a setup first"),
    (json.dumps({"type": "shutdown"}), "unknown message type 'shutdown'"),
    (json.dumps({"type": "setup", "dataset": "x" * 70_000}), "the limit is 65536"),
    ("x" * 11_000_000, "the limit is 65536 (an upload's: 5 MB of CSV)"),
    (json.dumps({"type": "upload", "name": "big.csv", "text": "1,2,0\n" * 900_000}), "a CSV may have at most 5 MB"),
    (json.dumps({"type": "upload", "name": "a.csv", "text": "x,y,label\n1,2,0\n3,oops,1\n"}),
     "a.csv:3: column 'y' (2): cannot parse 'oops' as a number"),
    (json.dumps({"type": "upload", "name": "a.csv", "text": "x,y,z,label\n" + "1,2,3,0\n" * 30}),
     "3 feature columns; the playground takes 2"),
    (json.dumps({"type": "upload", "name": 7, "text": None}), "an upload needs a file name"),
    (json.dumps({"type": "setup", "dataset": "csv"}), "upload a CSV file first"),
    (json.dumps({"type": "setup", "problem": "regression", "dataset": "xor"}), "dataset must be one of plane"),
    (json.dumps({"type": "setup", "problem": "regression", "dataset": "plane", "loss": "bce"}),
     "loss must be one of mse"),
    (json.dumps({"type": "setup", "regularization": "l3"}), "regularization must be one of none, l1, l2"),
    (json.dumps({"type": "setup", "early_stopping": "yes"}), "early_stopping must be true or false"),
    (json.dumps({"type": "setup", "patience": 0}), "patience must be a whole number in [1, 1000]"),
    (json.dumps({"type": "setup", "features": ["x1", "x1"]}), "features must be a non-empty list of distinct"),
])
def test_bad_messages_get_an_error_and_the_connection_goes_on(client, message, problem):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        ws.send_text(message)
        answer = ws.receive_json()
        assert answer["type"] == "error" and problem in answer["message"]
        assert answer.get("about") == ("upload" if '"type": "upload"' in message else None)  # the page undoes a failed upload
        ws.send_json({"type": "setup", "points": 50})  # still serving
        assert receive(ws, "points")["type"] == "points"


def test_the_cli_serves_on_localhost_with_a_token_and_stops_on_ctrl_c(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "backprop", "playground", "--no-browser"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = line.split("backprop playground: ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and "token=" in url
        for _ in range(50):
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert b"backprop playground" in response.read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not answer")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url.split("?")[0], timeout=5)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) is not None
    finally:
        process.kill()
        process.wait(timeout=20)


def ipv6_loopback():
    import socket
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("host, shown", [("127.0.0.1", "127.0.0.1"), pytest.param("::1", "[::1]", marks=pytest.mark.skipif(
    not ipv6_loopback(), reason="no IPv6 loopback here"))])
def test_the_printed_address_answers_at_once(tmp_path, host, shown):
    """The URL was printed (and the browser opened) before the server listened, and ::1 gave http://::1:port."""
    process = subprocess.Popen([sys.executable, "-m", "backprop", "playground", "--no-browser", "--host", host],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split("backprop playground: ")[1].split()[0]
        assert url.startswith(f"http://{shown}:")
        with urllib.request.urlopen(url, timeout=10) as response:  # no retry: it listens already
            assert b"backprop playground" in response.read()
    finally:
        process.kill()
        process.wait(timeout=20)


def chromium():
    import shutil
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def served_page(tmp_path, height=800):
    """(browser, page): `backprop playground` started as a user starts it, its page open in Chromium at Epoch 0;
    the server gets Ctrl-C at the end."""
    sync_api = pytest.importorskip("playwright.sync_api")
    process = subprocess.Popen([sys.executable, "-m", "backprop", "playground", "--no-browser"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split("backprop playground: ")[1].split()[0]
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": height})
            page.goto(url)
            page.wait_for_selector("text=Epoch 0", timeout=30_000)
            yield browser, page
            browser.close()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="no system Chromium (.ci/run installs Debian's)")
def test_in_a_real_browser_xor_is_learnt_while_you_watch(tmp_path):
    with served_page(tmp_path) as (browser, page):
        page.select_option("#dataset", "xor")
        page.wait_for_timeout(500)
        before = page.evaluate("document.getElementById('boundary').toDataURL()")
        page.get_by_role("button", name="Play", exact=True).click()
        page.wait_for_function("parseFloat(document.getElementById('test-loss').textContent.split(' ').pop()) < 0.1",
                               timeout=60_000)
        page.get_by_role("button", name="Pause", exact=True).click()
        assert page.evaluate("document.getElementById('boundary').toDataURL()") != before
        assert page.inner_text("#error") == ""
        blank = page.evaluate("(() => { const c = document.createElement('canvas'); c.width = 560; c.height = 600;"
                              " return c.toDataURL(); })()")
        assert page.evaluate("document.getElementById('network').toDataURL()") != blank  # units and links drawn
        with page.expect_download() as download:
            page.get_by_role("button", name="Download model", exact=True).click()
        download.value.save_as(tmp_path / "downloaded.bp")
        page.screenshot(path=str(tmp_path / "playground.png"))
        assert "dataset=xor" in page.url  # the setup travels in the link
        shared = browser.new_page()
        shared.goto(page.url)
        shared.wait_for_selector("text=Epoch 0", timeout=30_000)
        assert shared.input_value("#dataset") == "xor"
    assert (tmp_path / "playground.png").stat().st_size > 20_000
    import numpy as np

    import backprop as bp
    from backprop.playground.session import Session, checked
    session = Session(checked({"dataset": "xor"}))  # the page's defaults: the same data and features
    model = bp.models.load_model(tmp_path / "downloaded.bp")
    loss = model.evaluate(session.x[session.test_rows], session.y[session.test_rows], verbose=0)
    assert loss < 0.1 and np.isfinite(model.predict(session.x)).all()

@pytest.mark.slow
def test_closing_the_tab_stops_its_training_and_leaves_nothing_behind(client):
    import gc
    import threading
    import tracemalloc

    def cycle():
        with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
            ws.send_json({"type": "setup", "points": 60, "layers": [4]})
            receive(ws, "frame")
            ws.send_json({"type": "play"})
            receive(ws, "frame")
            receive(ws, "frame")  # playing: frames keep coming until the socket closes
    for _ in range(5):
        cycle()
    gc.collect()
    threads = threading.active_count()
    tracemalloc.start()
    settled = tracemalloc.get_traced_memory()[0]
    for _ in range(100):
        cycle()
    time.sleep(0.3)  # a training chunk that was running when its tab closed finishes
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - settled
    tracemalloc.stop()
    assert threading.active_count() <= threads and grown < 500_000


@pytest.mark.parametrize("setup", [
    {"dataset": "moons", "points": 120, "layers": [5, 3], "regularization": "l2", "dropout": 0.1,
     "features": ["x1", "x2", "x1*x2"], "optimizer": "rmsprop", "batch_size": 10},
    {"dataset": "circle", "points": 100, "layers": [3], "loss": "mse", "regularization": "l1", "optimizer": "sgd"},
    {"problem": "regression", "dataset": "multi_gauss", "points": 100, "loss": "mse", "layers": [4, 4, 2],
     "activation": "relu", "optimizer": "adagrad", "early_stopping": True, "patience": 2},
])
def test_the_code_panel_repeats_the_training_and_the_model_downloads(client, tmp_path, setup):
    import base64

    import numpy as np

    import backprop as bp
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        ws.send_json({"type": "setup", **setup})
        receive(ws, "frame")
        for _ in range(3):
            ws.send_json({"type": "step"})
            frame = receive(ws, "frame")
        ws.send_json({"type": "code"})
        code = receive(ws, "code")["code"]
        ws.send_json({"type": "download"})
        model_message = receive(ws, "model")
    namespace = {}
    exec(compile(code, "playground_code.py", "exec"), namespace)  # the page's code, run as a user would
    path = tmp_path / model_message["name"]
    path.write_bytes(base64.b64decode(model_message["data"]))
    downloaded = bp.models.load_model(path)
    for mine, theirs in zip(namespace["model"].get_weights(), downloaded.get_weights()):
        np.testing.assert_array_equal(mine, theirs)  # the code trained exactly the page's network
    raw, test = namespace["session"].x, namespace["test"]  # the data's own columns: the file standardises them
    loss = downloaded.evaluate(raw[test], namespace["y"][test], verbose=0, batch_size=1000)
    assert loss == pytest.approx(frame["test_loss"], rel=1e-5)  # and predicts what the page shows


def test_each_hidden_unit_and_link_is_what_the_network_computes():
    import numpy as np

    from backprop.playground.session import GRID, THUMBNAIL, Session, checked
    session = Session(checked({"dataset": "circle", "layers": [3, 2], "features": ["x1", "x2", "x1^2"],
                               "activation": "tanh"}))
    session.train(epochs=3)
    frame = session.frame()
    dense = [layer for layer in session.model.layers if hasattr(layer, "kernel")]
    assert [len(layer) for layer in frame["units"]] == [3, 2]
    assert [np.array(w).shape for w in frame["weights"]] == [(3, 3), (3, 2), (2, 1)]
    np.testing.assert_allclose(frame["weights"][1], dense[1].kernel.numpy(), atol=5e-4)
    rows = np.zeros((GRID, GRID), bool)
    rows[::GRID // THUMBNAIL, ::GRID // THUMBNAIL] = True
    inputs = session.grid_features[rows.ravel()]
    first = np.tanh(inputs @ dense[0].kernel.numpy() + dense[0].bias.numpy())
    for unit in range(3):
        expected = (first[:, unit] / np.abs(first[:, unit]).max() + 1) / 2 * 255
        np.testing.assert_allclose(decoded(frame["units"][0][unit]), expected, atol=1.0)
    logits = np.tanh(first @ dense[1].kernel.numpy() + dense[1].bias.numpy()) @ dense[2].kernel.numpy()
    probability = 1 / (1 + np.exp(-(logits[:, 0] + dense[2].bias.numpy()[0])))
    np.testing.assert_allclose(np.array(decoded(frame["boundary"])).reshape(GRID, GRID)[rows], probability * 255,
                               atol=1.0)


def test_early_stopping_stops_play_after_patience_epochs_without_a_better_test_loss(client):
    import numpy as np
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        ws.send_json({"type": "setup", "dataset": "gauss", "noise": 0.6, "points": 200, "layers": [16, 16],
                      "learning_rate": 0.05, "early_stopping": True, "patience": 4})
        receive(ws, "frame")
        ws.send_json({"type": "play"})
        frame = receive(ws, "frame")
        deadline = time.monotonic() + 60
        while frame["stopped_at"] is None and time.monotonic() < deadline:
            frame = receive(ws, "frame")
        assert frame["stopped_at"] == frame["epoch"] and frame["stopped_at"] - frame["best_epoch"] == 4
        ws.send_json({"type": "step"})  # stopped: nothing more trains until Reset
        assert receive(ws, "frame")["epoch"] == frame["epoch"]
        ws.send_json({"type": "code"})
        assert f"stopped the page after epoch {frame['stopped_at']}" in receive(ws, "code")["code"]
    from backprop.playground.session import Session, checked
    session = Session(checked({"dataset": "gauss", "noise": 0.6, "points": 200, "layers": [16, 16],
                               "learning_rate": 0.05, "early_stopping": True, "patience": 4}))
    session.train(epochs=1000)
    losses = np.array(session.history["validation_loss"])  # early stopping watches a validation split, not test
    best = int(np.argmin(losses))
    assert session.stopped_at == len(losses) == best + 5 and (losses[best + 1:] >= losses[best]).all()
    assert (np.minimum.accumulate(losses)[:best] > losses[best]).all()
    validation, train, test = (set(session.validation_rows), set(session.train_rows), set(session.test_rows))
    assert len(validation) == round(0.2 * (200 - 60)) and not validation & train and not validation & test
    assert len(train | validation | test) == 200
    no_stopping = Session(checked({"dataset": "gauss", "noise": 0.6, "points": 200}))
    assert len(no_stopping.validation_rows) == 0 and len(no_stopping.train_rows) == 140


@pytest.mark.parametrize("dataset", ["plane", "multi_gauss"])
def test_regression_learns_the_surface_with_squared_error(dataset):
    import numpy as np

    import backprop as bp
    from backprop.playground.session import Session, checked
    session = Session(checked({"problem": "regression", "dataset": dataset, "loss": "mse", "noise": 0,
                               "layers": [8, 8], "learning_rate": 0.01, "points": 500}))
    assert isinstance(session.model.loss, bp.losses.MeanSquaredError)
    start = np.var(session.y[session.test_rows])
    session.train(epochs=40)
    assert session.history["test_loss"][-1] < 0.2 * start  # a fifth of the constant predictor's error
    assert session.points()["problem"] == "regression"


def test_a_csv_upload_trains_and_its_code_reads_the_same_file(client, tmp_path, monkeypatch):
    import base64

    import numpy as np

    import backprop as bp
    rng = np.random.default_rng(3)
    x = rng.normal(size=(150, 2))
    lines = ["height,weight,passed"] + [f"{a:.4f},{b:.4f},{'yes' if a + b > 0 else 'no'}" for a, b in x]
    text = "\n".join(lines) + "\n"
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        ws.send_json({"type": "upload", "name": "exam.csv", "text": text})
        assert receive(ws, "uploaded") == {"type": "uploaded", "name": "exam.csv", "rows": 150}
        ws.send_json({"type": "setup", "dataset": "csv", "layers": [4], "test_ratio": 0.2})
        points = receive(ws, "points")
        assert len(points["x"]) == 150 and sum(points["y"]) == int((x.sum(1) > 0).sum())  # "yes" is class 1
        for _ in range(5):
            ws.send_json({"type": "step"})
            frame = receive(ws, "frame")
        assert frame["test_loss"] < 0.5
        ws.send_json({"type": "code"})
        code = receive(ws, "code")["code"]
        ws.send_json({"type": "download"})
        downloaded = receive(ws, "model")
        ws.send_json({"type": "setup", "problem": "regression", "dataset": "csv", "loss": "mse"})
        first = "yes" if x[0].sum() > 0 else "no"
        assert f"exam.csv:2: column 'passed' (3): cannot parse '{first}' as a number" in receive(ws, "points")["message"]
    (tmp_path / "exam.csv").write_text(text)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "playground_code.py", "exec"), namespace)
    (tmp_path / "m.bp").write_bytes(base64.b64decode(downloaded["data"]))
    for mine, theirs in zip(namespace["model"].get_weights(), bp.models.load_model(tmp_path / "m.bp").get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_an_upload_with_more_than_two_classes_is_refused_for_classification(client):
    text = "a,b,kind\n" + "".join(f"{i},{i % 7},{'xyz'[i % 3]}\n" for i in range(40))
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        ws.send_json({"type": "upload", "name": "three.csv", "text": text})
        receive(ws, "uploaded")
        ws.send_json({"type": "setup", "dataset": "csv"})
        assert "the target has 3 classes" in receive(ws, "points")["message"]


def test_the_page_offers_every_activation_optimizer_and_feature(client):
    import backprop as bp
    from backprop.playground.session import FEATURES, OPTIMIZERS
    page = client.get(f"/?token={TOKEN}").text
    for name in set(bp.activations.ACTIVATIONS) - {"softmax", "log_softmax"}:
        assert f"<option>{name}</option>" in page
    for name in OPTIMIZERS:
        assert f"<option>{name}</option>" in page
    for name in FEATURES:
        assert f'"{name}"' in page
    for label in ("Problem", "CSV file", "Regularization", "Regularization rate", "Early stopping", "Patience",
                  "Add layer", "Remove layer", "Dropout", "Batch size", "Learning rate"):
        assert label in page


@pytest.mark.parametrize("problem, loss", [("classification", "bce"), ("classification", "mse"),
                                           ("regression", "mse")])
def test_a_downloaded_model_predicts_raw_rows_with_the_cli(client, tmp_path, problem, loss):
    """The download lacked the page's standardisation: `backprop predict` labelled all 274 penguins class 1
    (issue #29). Now the file takes the table's own columns and carries their names, classes and target scale."""
    import base64
    import csv
    import subprocess
    import sys

    import numpy as np
    rng = np.random.default_rng(0)
    species = rng.integers(0, 2, 200)
    flipper = np.where(species == 1, 217, 190) + rng.normal(0, 6, 200)  # millimetres and grams: far from unit scale
    mass = np.where(species == 1, 5000, 3700) + rng.normal(0, 400, 200)
    target = [["Adelie", "Gentoo"][s] for s in species] if problem == "classification" else \
        [f"{0.02 * f + 0.001 * m:.3f}" for f, m in zip(flipper, mass)]
    text = "flipper_mm,mass_g,answer\n" + "".join(f"{f:.0f},{m:.0f},{t}\n" for f, m, t in zip(flipper, mass, target))
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        ws.send_json({"type": "upload", "name": "penguins.csv", "text": text})
        receive(ws, "uploaded")
        ws.send_json({"type": "setup", "dataset": "csv", "problem": problem, "loss": loss, "layers": [4],
                      "learning_rate": 0.03, "optimizer": "adam"})
        receive(ws, "points")
        for _ in range(15):
            ws.send_json({"type": "step"})
            receive(ws, "frame")
        ws.send_json({"type": "download"})
        downloaded = receive(ws, "model")
    (tmp_path / "page.bp").write_bytes(base64.b64decode(downloaded["data"]))
    (tmp_path / "penguins.csv").write_text(text)
    result = subprocess.run([sys.executable, "-m", "backprop", "predict", "page.bp", "--input", "penguins.csv",
                             "--output", "p.csv"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "p.csv") as handle:
        predicted = [row[0] for row in csv.reader(handle)][1:]
    if problem == "classification":
        assert np.mean(np.array(predicted) == np.array(target)) > 0.9 and len(set(predicted)) == 2
    else:
        assert np.mean(np.abs(np.array(predicted, float) - np.array(target, float))) < 0.3 * np.std(np.array(target, float))


def test_the_features_layer_computes_what_the_page_computes():
    import numpy as np

    import backprop as bp
    from backprop.playground.session import FEATURES, Session, checked
    session = Session(checked({"dataset": "spiral", "features": list(FEATURES)}))
    layer = bp.layers.TwoInputFeatures(list(FEATURES), session.shift.tolist(), session.scale.tolist())
    np.testing.assert_allclose(layer(session.x.astype(np.float32)).numpy(), session.features, rtol=1e-5, atol=1e-6)


# --- hostile messages, abandoned tabs, too many tabs (issue #29) ----------------------------------------------
from backprop.playground.server import MAX_CONNECTIONS, UNFORESEEN  # noqa: E402

HOSTILE = ["[" * 50_000, '{"type": "setup", "points": ' + "9" * 400 + "}", '{"type": "setup", "activation": []}',
           '{"type": "setup", "features": [[1]]}', '{"type": "setup", "dataset": {}}', '{"type": "setup", "loss": 5}',
           '{"type": "upload", "name": "\\ud800.csv", "text": "a,b,c\\n"}', '{"type": "\\udfff"}',
           '{"type": "setup", "seed": 1e400}', '{"type": ["play"]}', "null", "[]", '"setup"']


def test_hostile_messages_get_an_error_and_the_connection_goes_on(client):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        for text in HOSTILE:
            ws.send_text(text)
            answer = receive(ws, "error")
            assert answer["type"] == "error" and UNFORESEEN not in answer["message"], (text[:60], answer)
        ws.send_bytes(b"\x00\xff binary")
        assert "not binary frames" in receive(ws, "error")["message"]
        ws.send_json({"type": "setup", "points": 50, "layers": [2]})
        assert receive(ws, "points")["type"] == "points"  # still serving


def mutated_messages(rng, count):
    """Valid page messages with one field replaced by a hostile value, or a field added."""
    valid = [{"type": "setup", "dataset": "xor", "points": 40, "layers": [2], "features": ["x1", "x2"]},
             {"type": "upload", "name": "a.csv", "text": "a,b,c\n" + "1,2,0\n" * 25}, {"type": "step"},
             {"type": "play"}, {"type": "pause"}, {"type": "code"}, {"type": "reset"}]
    values = [None, True, -1, 0, 10 ** 17, 1e300, -1e300, "", "x" * 300, "\u0000", [], {}, [[]], [1] * 100,
              {"type": "setup"}, "csv", "regression", "../../x", ["x1", "x1"], [64] * 8]
    for _ in range(count):
        message = dict(valid[rng.integers(len(valid))])
        keys = list(message) + ["layers", "seed", "noise", "name", "text", "problem", "extra"]
        message[keys[rng.integers(len(keys))]] = values[rng.integers(len(values))]
        yield json.dumps(message)


def fuzz_messages(client, count, seed):
    import numpy as np
    unforeseen = []
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        for text in mutated_messages(np.random.default_rng(seed), count):
            ws.send_text(text)
            ws.send_json({"type": "ping-check"})  # answered with an error: everything before it was handled
            while True:
                answer = ws.receive_json()
                if answer["type"] == "error" and UNFORESEEN in answer["message"]:
                    unforeseen.append((text[:80], answer["message"]))
                if answer["type"] == "error" and "'ping-check'" in answer["message"]:
                    break
            ws.send_json({"type": "pause"})
    assert not unforeseen, unforeseen[:5]


def test_structure_aware_fuzzing_of_messages(client):
    fuzz_messages(client, 150, seed=0)


@pytest.mark.slow
def test_structure_aware_fuzzing_of_messages_many(client):
    fuzz_messages(client, 3000, seed=1)


def test_a_tab_that_goes_stops_its_training_at_the_next_batch():
    import threading

    from backprop.playground.session import Session, checked
    session = Session(checked({"dataset": "spiral", "points": 10_000, "layers": [64] * 8, "batch_size": 1}))
    worker = threading.Thread(target=session.train, kwargs={"epochs": 1000})
    worker.start()
    time.sleep(0.5)
    session.cancelled.set()
    worker.join(timeout=10)  # an epoch of 7,000 single-example batches takes far longer
    assert not worker.is_alive() and session.epoch == 0


def test_more_tabs_than_the_limit_are_refused(client):
    from contextlib import ExitStack

    from starlette.websockets import WebSocketDisconnect
    with ExitStack() as tabs:
        for _ in range(MAX_CONNECTIONS):
            tabs.enter_context(client.websocket_connect(f"/ws?token={TOKEN}"))
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect(f"/ws?token={TOKEN}") as extra:
                extra.receive_json()
        assert refused.value.code == 1013
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:  # the tabs closed: room again
        ws.send_json({"type": "pause"})
        assert receive(ws, "error")["message"] == "send a setup first"


def test_pause_during_a_long_epoch_undoes_it_and_the_training_still_repeats():
    """One epoch at the largest settings took 13-16 s and Pause could not stop it (issue #29); now Pause stops it
    at the next batch and undoes it, so the epochs counted are whole ones that the Code panel repeats."""
    import threading

    import numpy as np

    from backprop.playground.session import Session, checked
    setup = checked({"dataset": "spiral", "points": 10_000, "layers": [64] * 8, "batch_size": 1, "dropout": 0.2})
    session = Session(setup)
    before = session.model.get_weights()
    worker = threading.Thread(target=session.train, kwargs={"epochs": 1})
    worker.start()
    time.sleep(0.3)
    session.interrupted.set()
    worker.join(timeout=10)
    assert not worker.is_alive() and session.epoch == 0 and not session.interrupted.is_set()
    for a, b in zip(before, session.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    small = checked({"dataset": "xor", "points": 100, "layers": [3], "dropout": 0.2})
    paused = Session(small)
    paused.interrupted.set()
    assert paused.train(epochs=1) == 0  # interrupted before it began: nothing trained, the flag cleared
    paused.train(epochs=2)
    straight = Session(small)
    straight.train(epochs=2)
    for a, b in zip(paused.model.get_weights(), straight.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_two_pages_training_in_turn_train_as_each_would_alone():
    """Each page has its own random stream (issue #32): with two tabs open, the Code panel still repeats each."""
    import numpy as np

    from backprop.playground.session import Session, checked
    setups = [checked({"dataset": "xor", "points": 100, "layers": [4], "dropout": 0.3, "batch_size": 5, "seed": s})
              for s in (1, 2)]
    alone = []
    for setup in setups:
        session = Session(setup)
        session.train(epochs=3)
        alone.append(session.model.get_weights())
    pages = [Session(setup) for setup in setups]
    for _ in range(3):
        for page in pages:
            page.train(epochs=1)
            Session(setups[0])  # a third tab opens and builds meanwhile
    for page, weights in zip(pages, alone):
        for a, b in zip(page.model.get_weights(), weights):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="no system Chromium (.ci/run installs Debian's)")
def test_in_a_real_browser_the_controls_a_learner_reaches_for(tmp_path):
    """Issue #31: the loss follows the problem, an invalid field and a failed upload are shown, early stopping
    watches a validation curve, and the TensorFlow Playground's show-test-data, discretize, regenerate and
    hover-to-enlarge controls work."""
    with served_page(tmp_path, height=820) as (browser, page):
        boundary = "document.getElementById('boundary').toDataURL()"

        page.select_option("#problem", "regression")
        assert page.input_value("#loss") == "mse"
        page.select_option("#problem", "classification")
        assert page.input_value("#loss") == "bce"  # not the regression's mean squared error kept

        page.check("#early_stopping")
        page.get_by_role("button", name="Step", exact=True).click()
        page.wait_for_function("losses.validation.length > 0 && losses.validation[0] !== null", timeout=30_000)

        page.fill("#points", "5")
        page.dispatch_event("#points", "change")
        assert page.get_attribute("#points", "aria-invalid") == "true"
        assert 'Points must be 20 to 10000 (got "5")' in page.inner_text("#error")
        page.get_by_role("button", name="Play", exact=True).click()
        assert "last valid settings" in page.inner_text("#error")  # Play trains on, and says with what
        page.get_by_role("button", name="Pause", exact=True).click()
        page.fill("#points", "200")
        page.dispatch_event("#points", "change")
        page.wait_for_function("document.getElementById('error').textContent === ''")
        assert page.get_attribute("#points", "aria-invalid") == "false"

        page.wait_for_function("points && points.x.length === 200", timeout=30_000)
        first_points = page.evaluate("points.x[0]")
        page.get_by_role("button", name="Regenerate data", exact=True).click()
        page.wait_for_function(f"points.x[0][0] !== {first_points[0]}", timeout=30_000)
        assert page.input_value("#seed") == "1" and "seed=1" in page.url

        page.wait_for_function("lastFrame !== null")
        shown = page.evaluate(boundary)
        page.uncheck("#show-test")
        without_test = page.evaluate(boundary)
        page.check("#discretize")
        discretized = page.evaluate(boundary)
        assert len({shown, without_test, discretized}) == 3
        page.screenshot(path=str(tmp_path / "options.png"))

        unit = page.evaluate("unitsDrawn[1][0]")
        box = page.locator("#network").bounding_box()
        page.mouse.move(box["x"] + unit["x"] * box["width"] / 560, box["y"] + unit["y"] * box["height"] / 600)
        page.wait_for_function("hovered !== null")
        assert page.inner_text("#boundary-note").startswith("Showing unit 1 of layer 1")
        assert page.evaluate(boundary) != discretized
        page.mouse.move(2, 2)
        page.wait_for_function("hovered === null")
        assert page.inner_text("#boundary-note").startswith("Output probability of class 1")

        page.set_input_files("#csv", files=[{"name": "bad.csv", "mimeType": "text/csv", "buffer": b"a,b\n1,2\n"}])
        page.wait_for_function("document.getElementById('error').textContent.includes('still shows')")
        assert "bad.csv" in page.inner_text("#error") and page.input_value("#csv") == ""
    assert (tmp_path / "options.png").stat().st_size > 20_000
