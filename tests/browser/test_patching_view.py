"""PatchingView in JupyterLab with a real kernel and headless Chromium, on SmolLM2.

What a person sees is compared with what Python computes independently in the kernel (``patch`` run
again, not read from the view): the grid's cells, the value shown on hover, the neurons listed after a
click on a cell (their own patching effect, ``patch(..., component="mlp", neurons="all")``), and the
AblationPanel the button opens on exactly those neurons.
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import views
from .harness import LabServer, poll, running_notebook, setup_checks
from .views import READ_CELLS

NOTEBOOK = "patching_view.ipynb"
SHOTS = Path("/tmp/nw-shots")
BUILD_CELL = """
import json
from neuronwidgets.core import load_model, patch
from neuronwidgets.widgets import PatchingView

CLEAN = "The Eiffel Tower is located in the city of"
CORRUPT = "The Colosseum is located in the city of"
model = load_model("smollm2")
result = patch(model, CLEAN, CORRUPT, layers=[10, 20, 28], target=" Paris", foil=" Rome")
view = PatchingView(result, model, top_k=5)
expected = patch(model, CLEAN, CORRUPT, component="mlp", layers=[28], neurons="all", positions=[9],
                 target=" Paris", foil=" Rome").ranking().top(5)
"""
VIEW = ".nw-patching-view"
READ_NEURONS = """(root) => Array.from(root.querySelectorAll('tr.nw-neuron')).map((e) => ({
  name: e.dataset.neuron, value: Number(e.querySelector('.nw-neuron-score').dataset.value),
}))"""


close_all = functools.partial(views.close_all, rel_tol=1e-5, abs_tol=1e-6)


class Rendered(views.Rendered):
    VIEW = VIEW


@pytest.fixture(scope="module")
def rendered(lab_server: LabServer, browser: Any) -> Iterator[Rendered]:
    with running_notebook(
        lab_server, browser, NOTEBOOK, [textwrap.dedent(BUILD_CELL), "view"], viewport=(1400, 2000)
    ) as (
        tab,
        nb,
    ):
        with setup_checks(tab, "patching_view"):
            nb.wait_for(f"{VIEW} td.nw-cell")
        yield Rendered(tab, nb)


@pytest.mark.browser
@pytest.mark.real_model
def test_patching_view_grid_hover_click_and_ablation_panel(rendered: Rendered) -> None:
    view = rendered.view
    cells = view.locator(".nw-matrix").evaluate(READ_CELLS)
    assert cells["rows"] == ["layer.10.resid", "layer.20.resid", "layer.28.resid"]
    recovered = rendered.py("[float(x) for x in result.recovered.astype('float32').ravel()]")
    close_all(cells["values"], recovered, "grid (share of the clean logit difference recovered)")

    # hover: the tooltip names the cell and shows its value
    cell = view.locator('td.nw-cell[data-row="2"][data-col="9"]')
    cell.hover()
    tooltip = view.locator(".nw-matrix .nw-tooltip")
    poll(lambda: tooltip.is_visible(), bool, 10, what="the hover tooltip")
    text = tooltip.inner_text()
    assert "layer.28.resid" in text and "9:" in text
    assert math.isclose(
        float(view.locator(".nw-matrix .nw-tooltip-value").inner_text()), recovered[2 * 10 + 9], rel_tol=1e-5
    )

    # click: that cell's MLP neurons, ranked by their own patching effect, as Python computes them
    cell.click()
    want = rendered.py("{'names': list(expected.neurons), 'scores': [float(s) for s in expected.scores]}")
    neurons = poll(
        lambda: view.evaluate(READ_NEURONS),
        lambda ns: [n["name"] for n in ns] == want["names"],
        120,
        what="the cell's neurons",
    )
    close_all([n["value"] for n in neurons], want["scores"], "neuron scores")
    assert "layer.28.resid" in view.locator(".nw-cell-status").inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    view.screenshot(path=str(SHOTS / "patching_view_cell.png"))

    # the button opens an ablation panel with one slider per listed neuron
    view.locator("button.nw-open-panel").click()
    panel = view.locator(".nw-ablation")
    poll(lambda: panel.count(), lambda n: n == 1, 90, what="the ablation panel")
    sliders = panel.locator("input.nw-scale")
    poll(lambda: sliders.count(), lambda n: n == 5, 30, what="five sliders")
    assert [sliders.nth(i).get_attribute("data-neuron") for i in range(5)] == want["names"]
    view.screenshot(path=str(SHOTS / "patching_view.png"))
    assert not rendered.tab.dialogs
