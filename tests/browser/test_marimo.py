"""The marimo tour (notebooks/tour_marimo.py) under ``marimo run --headless`` in headless Chromium: the
TokenHeatmap renders its words, and choosing another neuron in the page changes the values shown and the
Python cell that reads the widget's state (marimo renders anywidgets without any extension)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import free_port, poll

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "tour_marimo.py"
ROOT = ".nw-root.nw-heatmap"
SHOTS = Path("/tmp/nw-shots")


@pytest.fixture(scope="module")
def marimo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("marimo", path=str(Path(sys.executable).parent)) or shutil.which("marimo")
    if exe is None:
        pytest.skip("marimo is not installed (pip install -e .[dev])")
    port = free_port()
    log = tmp_path_factory.mktemp("marimo") / "marimo.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                exe,
                "run",
                str(NOTEBOOK),
                "--headless",
                "--no-token",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"marimo run did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_heatmap_renders_and_responds_in_marimo(browser, marimo_url) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        page.goto(marimo_url, wait_until="domcontentloaded")
        root = page.locator(ROOT)
        tokens = root.locator("span.nw-token")
        poll(lambda: tokens.count(), lambda n: n > 0, 240, what="the heatmap's tokens in marimo")
        words = tokens.evaluate_all("(es) => es.map((e) => e.textContent)")
        assert "wonderful" in words and "movie" in words, words
        first = tokens.evaluate_all("(es) => es.map((e) => e.dataset.value)")
        poll(
            lambda: page.inner_text("body"),
            lambda t: "Python sees neuron layer.3.mlp:117" in t,
            60,
            what="the Python cell to read the widget's neuron",
        )
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "marimo_heatmap.png"), full_page=True)

        box = root.locator("input.nw-neuron")
        box.fill("5")
        box.press("Enter")
        poll(
            lambda: root.locator(".nw-status").inner_text(),
            lambda t: "layer.3.mlp:5" in t,
            60,
            what="the status to show layer.3.mlp:5",
        )
        poll(
            lambda: tokens.evaluate_all("(es) => es.map((e) => e.dataset.value)"),
            lambda v: v != first,
            30,
            what="the token values to change",
        )
        poll(
            lambda: page.inner_text("body"),
            lambda t: "Python sees neuron layer.3.mlp:5" in t,
            60,
            what="the Python cell to follow the widget",
        )
        assert root.locator(".nw-error").inner_text().strip() == ""
        page.screenshot(path=str(SHOTS / "marimo_heatmap_after.png"), full_page=True)
    except Exception:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "marimo_failure.png"), full_page=True)
        print(f"screenshot: {SHOTS / 'marimo_failure.png'}")
        raise
    finally:
        page.close()
