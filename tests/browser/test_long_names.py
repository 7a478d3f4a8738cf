"""Long class and concept names stay inside the AblationPanel and the NeuronExplorer (regression of the
browser audit: they overflowed). Both are opened as standalone exports in headless Chromium, in a narrow
window: every label ends inside its widget, a cut name ends in "…" and keeps its full text as a tooltip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .harness import Tab

LONG_CLASS = "an extremely enthusiastic recommendation by a critic who loved every single minute"
LONG_VALUE = "sentences_sampled_from_an_unusually_long_named_annotation_layer_of_the_corpus"

# labels whose right edge passes the widget's (0.5 px tolerance for subpixel layout), and labels whose
# text is cut without a tooltip holding all of it
OVERFLOW = """([root, selector]) => {
  const box = root.getBoundingClientRect();
  return Array.from(root.querySelectorAll(selector)).map((e) => {
    const r = e.getBoundingClientRect();
    const cut = e.scrollWidth > e.clientWidth + 1;
    return {text: e.textContent, title: e.getAttribute('title') || '', out: r.right > box.right + 0.5,
            cut, width: r.width, root: box.width};
  });
}"""


def _check(tab: Tab, root_selector: str, selector: str, full: str) -> list[dict]:
    root = tab.page.locator(root_selector).first
    items = tab.page.evaluate(OVERFLOW, [root.element_handle(), selector])
    assert items, f"no {selector} in {root_selector}"
    out = [i for i in items if i["out"]]
    assert not out, f"{selector} past the right edge of {root_selector}: {out[:3]}"
    for i in items:
        if i["cut"] and (full[:20] in i["text"] or full[:20] in i["title"]):
            assert full in i["title"], f"a cut name without its full text as tooltip: {i}"
    return items


@pytest.mark.browser
def test_long_class_names_stay_inside_the_ablation_panel(tab: Tab, tmp_path: Path) -> None:
    from tiny_models import make_tiny_model

    from neuronwidgets.core import load_model
    from neuronwidgets.widgets import AblationPanel

    folder = make_tiny_model("roberta", tmp_path / "roberta")
    config = json.loads((folder / "config.json").read_text())
    names = ["neutral", LONG_CLASS, f"not {LONG_CLASS}"]
    config["id2label"] = {str(i): n for i, n in enumerate(names)}
    config["label2id"] = {n: i for i, n in enumerate(names)}
    (folder / "config.json").write_text(json.dumps(config))
    handle = load_model(str(folder))
    assert handle.labels == names
    panel = AblationPanel(handle, "a good film", ["layer.0.mlp:1", "layer.1.mlp:2"], random_k=1)
    path = panel.to_html(tmp_path / "panel.html")
    tab.page.set_viewport_size({"width": 640, "height": 900})
    tab.page.goto(path.resolve().as_uri())
    tab.page.wait_for_selector(".nw-ablation .nw-bar-row", timeout=30_000)
    root = ".nw-root.nw-ablation"
    width = tab.page.locator(root).first.evaluate("(e) => e.getBoundingClientRect().right")
    assert width <= 640 + 0.5, f"the panel is wider than the window: {width}"
    bars = _check(tab, root, ".nw-bar-label", LONG_CLASS)
    effects = _check(tab, root, ".nw-effect .nw-label", LONG_CLASS)
    assert any(i["cut"] for i in bars + effects), "the long name was never cut: is the test's window narrow?"


@pytest.mark.browser
def test_long_concept_names_stay_inside_the_neuron_explorer(tab: Tab, tmp_path: Path) -> None:
    from synthetic_acts import make_activations, random_corpus

    from neuronwidgets.core import Concepts, align_concepts
    from neuronwidgets.widgets import NeuronExplorer

    corpus = random_corpus(60, seed=2)
    marked = np.arange(len(corpus)) % 20 == 0  # 3 sentences carry the long-named label
    per_word = np.concatenate([[m] * len(s) for m, s in zip(marked, corpus.words)])
    rng = np.random.default_rng(0)
    arrays = {"layer.1.resid": rng.normal(size=(corpus.num_words, 4)).astype(np.float32)}
    arrays["layer.1.resid"][:, 2] += 3.0 * per_word  # neuron 2 fires on those sentences
    acts = make_activations(corpus, arrays, [60])
    labels = [LONG_VALUE if m else "other" for m in marked]
    concepts = Concepts.from_corpus(corpus, sentence_labels={"source": labels})
    alignment = align_concepts(acts, concepts, progress=False)
    ex = NeuronExplorer(acts, alignment=alignment, concepts=concepts, k_contexts=4)
    ex.select("layer.1.resid:2")
    assert any(LONG_VALUE in c for c in alignment.concepts_of("layer.1.resid:2", k=5)["concept"])
    path = ex.to_html(tmp_path / "explorer.html")
    tab.page.set_viewport_size({"width": 560, "height": 900})
    tab.page.goto(path.resolve().as_uri())
    tab.page.wait_for_selector(".nw-explorer-concepts td", timeout=30_000)
    # the export lays the parts out in the page's body: the side panel's cells must end inside it
    items = _check(tab, "body", ".nw-explorer-concepts td, .nw-explorer-formula", LONG_VALUE)
    long = [i for i in items if LONG_VALUE in i["title"]]
    assert long and all(i["cut"] for i in long), f"the long concept name is not cut: {long}"
