"""The playground server through Starlette's test client: token, Origin, bounds, messages, training."""
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
        assert first["epoch"] == 0 and len(first["boundary"]) == first["grid"] ** 2
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
    (json.dumps({"type": "setup", "learning_rate": float("inf")}), "learning_rate must be a number"),
    (json.dumps({"type": "setup", "dataset": "../../etc/passwd"}), "dataset must be one of"),
    (json.dumps({"type": "setup", "path": "/tmp/x"}), "unknown setting(s): path"),
    (json.dumps({"type": "play"}), "send a setup first"),
    (json.dumps({"type": "shutdown"}), "unknown message type 'shutdown'"),
    ("x" * 70_000, "the limit is 65536"),
])
def test_bad_messages_get_an_error_and_the_connection_goes_on(client, message, problem):
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        ws.send_text(message)
        answer = ws.receive_json()
        assert answer["type"] == "error" and problem in answer["message"]
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


def chromium():
    import shutil
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="no system Chromium (.ci/run installs Debian's)")
def test_in_a_real_browser_xor_is_learnt_while_you_watch(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    process = subprocess.Popen([sys.executable, "-m", "backprop", "playground", "--no-browser"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split("backprop playground: ")[1].split()[0]
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.wait_for_selector("text=Epoch 0", timeout=30_000)
            page.select_option("#dataset", "xor")
            page.wait_for_timeout(500)
            before = page.evaluate("document.getElementById('boundary').toDataURL()")
            page.get_by_role("button", name="Play", exact=True).click()
            page.wait_for_function("parseFloat(document.getElementById('test-loss').textContent.split(' ').pop()) < 0.1",
                                   timeout=60_000)
            page.get_by_role("button", name="Pause", exact=True).click()
            assert page.evaluate("document.getElementById('boundary').toDataURL()") != before
            assert page.inner_text("#error") == ""
            page.screenshot(path=str(tmp_path / "playground.png"))
            assert "dataset=xor" in page.url  # the setup travels in the link
            shared = browser.new_page()
            shared.goto(page.url)
            shared.wait_for_selector("text=Epoch 0", timeout=30_000)
            assert shared.input_value("#dataset") == "xor"
            browser.close()
        assert (tmp_path / "playground.png").stat().st_size > 20_000
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


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


def test_the_code_panel_repeats_the_training_and_the_model_downloads(client, tmp_path):
    import base64

    import numpy as np

    import backprop as bp
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        ws.send_json({"type": "setup", "dataset": "moons", "points": 120, "layers": [5, 3], "l2": 0.001,
                      "dropout": 0.1, "features": ["x1", "x2", "x1*x2"], "optimizer": "rmsprop", "batch_size": 10})
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
    x, test = namespace["x"], namespace["test"]
    loss = downloaded.evaluate(x[test], namespace["y"][test], verbose=0, batch_size=1000)
    assert loss == pytest.approx(frame["test_loss"], rel=1e-5)  # and predicts what the page shows
