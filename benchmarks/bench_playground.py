"""The playground's frame rate: a 2-8-8-1 network on 500 points, played for a while.

Run:  python benchmarks/bench_playground.py [--seconds 10] [--browser] [--write]
      (needs pip install -e '.[playground]'; --browser also Playwright and a system Chromium)

Three measurements of the same setup (xor, 500 points, features x1 and x2, hidden layers 8,8, tanh,
Adam, batch 16):
- the server's cost per frame: ``Session.frame()`` timed in this process, and the frame's size;
- frames and epochs per second reaching a WebSocket client of the real server (``backprop playground``
  in a child process), with the gaps between frames;
- with --browser, the page itself in headless Chromium: frames drawn per second, the time to draw each,
  and how late a 50 ms timer fires while playing (the page's responsiveness).
Targets (issue 16): at least 20 frames a second reach the page, at least 100 epochs a second train.
"""
import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write_section  # noqa: E402

SETUP = {"type": "setup", "dataset": "xor", "points": 500, "features": ["x1", "x2"], "layers": [8, 8],
         "activation": "tanh", "optimizer": "adam", "learning_rate": 0.003, "batch_size": 16}


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def server_cost(repeats=200):
    from backprop.playground.session import Session, checked
    session = Session(checked(SETUP))
    session.train(epochs=5)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        frame = session.frame()
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    epochs = session.train(epochs=200)
    epoch_seconds = (time.perf_counter() - start) / epochs
    return {"frame_ms": 1000 * statistics.median(times), "frame_bytes": len(json.dumps(frame)),
            "epoch_ms": 1000 * epoch_seconds}


def start_server():
    process = subprocess.Popen([sys.executable, "-m", "backprop", "playground", "--no-browser"],
                               stdout=subprocess.PIPE, text=True)
    url = process.stdout.readline().split("backprop playground: ")[1].split()[0]
    import urllib.request
    for _ in range(100):  # the URL is printed just before the server listens
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return process, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the playground server did not answer")


def socket_client(url, seconds):
    from websockets.sync.client import connect
    origin = url.split("/?")[0]
    arrivals, epochs = [], []
    with connect(origin.replace("http", "ws") + "/ws?" + url.split("?")[1], origin=origin) as socket:
        socket.send(json.dumps(SETUP))
        while json.loads(socket.recv(timeout=30))["type"] != "frame":
            pass
        socket.send(json.dumps({"type": "play"}))
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            message = json.loads(socket.recv(timeout=30))
            if message["type"] == "frame":
                arrivals.append(time.perf_counter())
                epochs.append(message["epoch"])
        socket.send(json.dumps({"type": "pause"}))
    gaps = [1000 * (b - a) for a, b in zip(arrivals[5:], arrivals[6:])]
    span = arrivals[-1] - arrivals[5]
    return {"frames_per_s": (len(arrivals) - 6) / span, "epochs_per_s": (epochs[-1] - epochs[5]) / span,
            "gap_p50_ms": percentile(gaps, 0.5), "gap_p95_ms": percentile(gaps, 0.95), "gap_max_ms": max(gaps)}


LAG_PROBE = """() => { window.lags = []; let last = performance.now();
  window.probe = setInterval(() => { const now = performance.now(); lags.push(now - last - 50); last = now; }, 50); }"""


def browser(url, seconds):
    from playwright.sync_api import sync_playwright
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    fragment = "#" + "&".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                              for k, v in SETUP.items() if k != "type")
    with sync_playwright() as playwright:
        chrome = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = chrome.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url + fragment)
        page.wait_for_selector("text=Epoch 0", timeout=30_000)
        page.get_by_role("button", name="Play", exact=True).click()
        page.wait_for_timeout(1000)
        before = page.evaluate("[playgroundStats.frames, parseInt(document.getElementById('epoch').textContent.split(' ')[1])]")
        page.evaluate(LAG_PROBE)
        start = time.perf_counter()
        page.wait_for_timeout(seconds * 1000)
        after = page.evaluate("[playgroundStats.frames, parseInt(document.getElementById('epoch').textContent.split(' ')[1])]")
        span = time.perf_counter() - start
        draw = page.evaluate("playgroundStats.drawMs.slice()")
        lags = page.evaluate("lags.slice()")
        page.get_by_role("button", name="Pause", exact=True).click()
        chrome.close()
    return {"frames_per_s": (after[0] - before[0]) / span, "epochs_per_s": (after[1] - before[1]) / span,
            "draw_p50_ms": percentile(draw, 0.5), "draw_p95_ms": percentile(draw, 0.95),
            "timer_late_p95_ms": percentile(lags, 0.95), "timer_late_max_ms": max(lags)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    cost = server_cost()
    print(f"server: frame {cost['frame_ms']:.2f} ms ({cost['frame_bytes'] / 1024:.1f} kB), "
          f"one epoch {cost['epoch_ms']:.2f} ms ({1000 / cost['epoch_ms']:.0f} epochs/s)")
    process, url = start_server()
    try:
        client = socket_client(url, args.seconds)
        print("socket client:", json.dumps({k: round(v, 1) for k, v in client.items()}))
        page = browser(url, args.seconds) if args.browser else None
        if page:
            print("browser:", json.dumps({k: round(v, 1) for k, v in page.items()}))
    finally:
        process.terminate()
        process.wait(timeout=20)
    if args.write:
        lines = ["Command: `python benchmarks/bench_playground.py --browser --write` (2-8-8-1, xor, 500 points, "
                 f"batch 16, Adam; {args.seconds:.0f} s of play per client).", "",
                 "| measure | value | target |", "|---|---|---|",
                 f"| server: one frame (grid, 16 thumbnails, weights) | {cost['frame_ms']:.2f} ms, "
                 f"{cost['frame_bytes'] / 1024:.1f} kB of JSON | |",
                 f"| server: one epoch (fit + test loss), alone | {cost['epoch_ms']:.2f} ms | |",
                 f"| WebSocket client: frames/s | {client['frames_per_s']:.1f} | ≥ 20 |",
                 f"| WebSocket client: epochs/s while playing | {client['epochs_per_s']:.0f} | ≥ 100 |",
                 f"| WebSocket client: gap between frames p50 / p95 / max | {client['gap_p50_ms']:.0f} / "
                 f"{client['gap_p95_ms']:.0f} / {client['gap_max_ms']:.0f} ms | |"]
        if page:
            lines += [f"| Chromium page: frames drawn/s | {page['frames_per_s']:.1f} | ≥ 20 |",
                      f"| Chromium page: epochs/s shown | {page['epochs_per_s']:.0f} | ≥ 100 |",
                      f"| Chromium page: drawing one frame p50 / p95 | {page['draw_p50_ms']:.1f} / "
                      f"{page['draw_p95_ms']:.1f} ms | |",
                      f"| Chromium page: a 50 ms timer fires late by p95 / max | {page['timer_late_p95_ms']:.0f} / "
                      f"{page['timer_late_max_ms']:.0f} ms | responsive |"]
        write_section("playground", lines, "The playground's frame rate (issue 16)")


if __name__ == "__main__":
    main()
