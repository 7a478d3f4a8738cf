"""NeuronExplorer (no browser): a selection made in the table as the browser makes it points the heatmap,
the top-activating contexts (checked against a brute-force top-k over every unit), the concept labels and
the formula at the new neuron; concept search re-ranks the table; the send button adds the neuron to an
AblationPanel; bad input fails with messages that name the fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import ipywidgets
import numpy as np
import pytest
from synthetic_acts import make_activations, random_corpus

import neuronwidgets
from neuronwidgets.core import (
    Concepts,
    Corpus,
    align_concepts,
    explain_neurons,
    extract_activations,
    load_model,
    rank_probeless,
    top_activations,
)
from neuronwidgets.widgets import AblationPanel, NeuronExplorer, NeuronTable, TokenHeatmap
from neuronwidgets.widgets import neuron_explorer as explorer_module

XSS = "<img src=x onerror=alert(1)>"
K = 6


class Data:
    def __init__(self, root: Path) -> None:
        self.corpus = random_corpus(150, seed=4)
        upos = np.array(self.corpus.flat_labels("upos"))
        n = self.corpus.num_words
        rng = np.random.default_rng(5)
        self.arrays = {
            "layer.0.mlp": rng.normal(size=(n, 6)).astype(np.float32),
            "layer.2.resid": rng.normal(size=(n, 4)).astype(np.float32),
        }
        self.arrays["layer.2.resid"][:, 1] += 3.0 * (upos == "ADJ")  # an ADJ neuron
        self.arrays["layer.0.mlp"][:, 2] += 3.0 * (upos == "VERB")  # a VERB neuron
        # an on-disk store in uneven chunks: contexts and formulas are read streaming
        self.acts = make_activations(self.corpus, self.arrays, [50, 1, 60, 39], store=root / "store")
        self.concepts = Concepts.from_corpus(self.corpus)
        self.alignment = align_concepts(self.acts, self.concepts, progress=False)
        labels = [u for s in self.corpus.labels["upos"] for u in s]
        self.ranking = rank_probeless(self.acts, labels)

    def values(self, neuron: str) -> np.ndarray:
        site, index = neuron.rsplit(":", 1)
        return self.arrays[site][:, int(index)]

    def brute_top(self, neuron: str, k: int = K) -> list[tuple[int, int]]:
        """(sentence, position) of the k highest units, ties to the earlier unit."""
        v = self.values(neuron)
        order = np.lexsort((np.arange(len(v)), -v))[:k]
        offsets = self.acts.offsets
        sent = np.searchsorted(offsets, order, side="right") - 1
        return [(int(s), int(u - offsets[s])) for s, u in zip(sent, order)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    return Data(tmp_path_factory.mktemp("explorer"))


def browser_selects(table: NeuronTable, neuron: str) -> None:
    """A row click as the widget manager delivers it."""
    msg = {"content": {"data": {"method": "update", "state": {"selected": neuron}, "buffer_paths": []}}}
    table._handle_msg({**msg, "buffers": []})


def shown_contexts(ex: NeuronExplorer) -> list[tuple[int, int]]:
    """(corpus sentence, position) of each marked context unit."""
    return [(ex.context_sentences[r], i) for r, i in ex.contexts.marked]


def check_points_at(ex: NeuronExplorer, data: Data, neuron: str) -> None:
    assert ex.selected == neuron == ex.heatmap.neuron == ex.heatmap.label
    np.testing.assert_array_equal(
        ex.heatmap.shown_values, data.acts.neuron(neuron, list(ex.heatmap.sentences))
    )
    brute = data.brute_top(neuron)
    assert shown_contexts(ex) == brute  # best first, exactly the brute-force top-k
    # one row per distinct sentence, in the order of its best unit, all of its words, the neuron's values
    assert ex.context_sentences == list(dict.fromkeys(s for s, _ in brute))
    assert ex.contexts.tokens == [data.acts.units(s) for s in ex.context_sentences]
    expected = np.concatenate([data.acts.neuron(neuron, [s]) for s in ex.context_sentences])
    np.testing.assert_array_equal(ex.contexts.shown_values, expected)
    # the marked units are the highest values shown
    flat = {
        (r, i): k
        for k, (r, i) in enumerate((r, i) for r, t in enumerate(ex.contexts.tokens) for i in range(len(t)))
    }
    marked_values = sorted((float(expected[flat[tuple(m)]]) for m in ex.contexts.marked), reverse=True)
    np.testing.assert_array_equal(marked_values, np.sort(data.values(neuron))[::-1][:K])
    assert neuron in ex.contexts.label


# -- selection drives every part ----------------------------------------------------------------------
def test_selecting_a_row_points_every_part_at_the_neuron(data: Data) -> None:
    ex = NeuronExplorer(data.acts, data.ranking, concepts=data.concepts, k_contexts=K, sentences=[3, 0, 9])
    assert isinstance(ex, ipywidgets.VBox)
    assert ex.table.addresses == list(data.ranking.neurons)
    check_points_at(ex, data, data.ranking.neurons[0])
    for neuron in ["layer.2.resid:1", "layer.0.mlp:5", "layer.0.mlp:2"]:
        browser_selects(ex.table, neuron)
        check_points_at(ex, data, neuron)
        assert ex.heatmap.sentences == [3, 0, 9]
    ex.select("layer.2.resid:3")  # the same from Python
    check_points_at(ex, data, "layer.2.resid:3")
    browser_selects(ex.table, "layer.9.mlp:0")  # refused by the table: nothing moves
    assert ex.table.error and ex.selected == "layer.2.resid:3" == ex.heatmap.neuron


def test_concept_labels_and_cached_formula(data: Data, monkeypatch: Any) -> None:
    calls: list[Any] = []
    real = explorer_module.explain_neurons

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(explorer_module, "explain_neurons", counting)
    ex = NeuronExplorer(data.acts, data.ranking, alignment=data.alignment, concepts=data.concepts)
    browser_selects(ex.table, "layer.2.resid:1")
    info = ex.info.value
    best = data.alignment.concepts_of("layer.2.resid:1", k=5)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", info)
    for row in best.itertuples():  # label, IoU, precision, recall of each best concept, in order
        j = cells.index(row.concept)
        assert cells[j + 1 : j + 4] == [f"{row.iou:.3f}", f"{row.precision:.3f}", f"{row.recall:.3f}"]
    # the formula: explain_neurons with the alignment's thresholds, computed once per neuron
    expected = explain_neurons(data.acts, data.concepts, ["layer.2.resid:1"], thresholds=data.alignment)[0]
    assert str(expected.formula) in info and f"IoU {expected.iou:.3f}" in info
    assert ex.explanation("layer.2.resid:1") == expected
    browser_selects(ex.table, "layer.0.mlp:2")
    browser_selects(ex.table, "layer.2.resid:1")
    shown = [data.ranking.neurons[0], "layer.2.resid:1", "layer.0.mlp:2", "layer.2.resid:1"]
    assert calls == [[n] for n in dict.fromkeys(shown)]  # once per neuron, on its first selection
    other = explain_neurons(data.acts, data.concepts, ["layer.0.mlp:2"], thresholds=data.alignment)[0]
    assert ex.explanation("layer.0.mlp:2") == other
    ex.select("layer.0.mlp:2")
    assert str(other.formula) in ex.info.value and len(calls) == 2


def test_without_concepts_the_view_says_what_to_pass(data: Data) -> None:
    ex = NeuronExplorer(data.acts, data.ranking)
    assert "pass alignment= or concepts=" in ex.info.value and "pass concepts=" in ex.info.value
    assert ex.explanation("layer.0.mlp:0") is None
    assert ex.search_box.disabled and ex.send_button.disabled
    with pytest.raises(ValueError, match="needs a ConceptAlignment: pass alignment= or concepts="):
        ex.search("ADJ")
    with pytest.raises(ValueError, match="no ablation panel: pass panel="):
        ex.send_to_panel()


def test_text_is_escaped_in_the_info(tmp_path: Path) -> None:
    words = [[XSS, "a", "b"], ["c", XSS, "d"], ["e", "f", XSS]] * 10
    upos = [["X" if w == XSS else "NOUN" for w in s] for s in words]
    corpus = Corpus.from_words(words, {"upos": upos})
    fires = np.array([[5.0 if w == XSS else 0.0] for s in words for w in s], dtype=np.float32)
    acts = make_activations(corpus, {"layer.0.mlp": fires}, 10)
    ex = NeuronExplorer(acts, concepts=Concepts.from_corpus(corpus, min_count=2), k_contexts=3)
    assert "<img" not in ex.info.value and "word:&lt;img src=x onerror=alert(1)&gt;" in ex.info.value
    assert ex.contexts.tokens[0] == words[0]  # tokens travel as text (the heatmap inserts them as text)
    ex.search_box.value = XSS + "?"
    assert "<img" not in ex.search_status.value and "unknown concept" in ex.search_status.value


def test_reuses_precomputed_top_activations(data: Data, monkeypatch: Any) -> None:
    top = top_activations(data.acts, k=K, progress=False)
    monkeypatch.setattr(explorer_module, "top_activations", None)  # must not be called
    ex = NeuronExplorer(data.acts, data.ranking, top=top, k_contexts=K)
    browser_selects(ex.table, "layer.2.resid:1")
    check_points_at(ex, data, "layer.2.resid:1")
    sentences, marked = ex.top_contexts("layer.0.mlp:3")
    assert [(sentences[r], i) for r, i in marked] == data.brute_top("layer.0.mlp:3")


# -- concept search ----------------------------------------------------------------------------------------
def test_concept_search_reranks_the_table(data: Data) -> None:
    ex = NeuronExplorer(data.acts, data.ranking, alignment=data.alignment, k_contexts=K)
    assert ex.search_box.options == data.alignment.concepts
    ex.search_box.value = "ADJ"  # typed and committed (Enter) in the page
    expected = data.alignment.search("ADJ")
    assert ex.table.addresses == list(expected.neurons)
    assert ex.table.method == expected.method
    assert ex.selected == expected.neurons[0] == "layer.2.resid:1"  # the best ADJ neuron is shown
    check_points_at(ex, data, "layer.2.resid:1")
    assert "ADJ" in ex.search_status.value and not ex.reset_button.disabled
    # a part of a name works when it names one concept; an unknown one is said, the table stays
    ex.search_box.value = "Tense"
    assert ex.table.addresses == list(data.alignment.search("Tense=Past").neurons)
    ex.search_box.value = "no such concept"
    assert "unknown concept" in ex.search_status.value
    assert ex.table.addresses == list(data.alignment.search("Tense=Past").neurons)
    # back to the original ranking (emptied box or the reset button), the selection kept
    ex.select("layer.0.mlp:4")
    ex.reset_button.click()
    assert ex.table.addresses == list(data.ranking.neurons) and ex.selected == "layer.0.mlp:4"
    assert ex.search_box.value == "" and ex.reset_button.disabled
    ex.search("ADJ")
    ex.search_box.value = ""
    assert ex.table.addresses == list(data.ranking.neurons)


def test_default_ranking_is_the_alignment_ranking(data: Data) -> None:
    ex = NeuronExplorer(data.acts, concepts=data.concepts, metric="precision")
    assert ex.table.addresses == list(data.alignment.ranking("precision").neurons)
    assert ex.search("ADJ").method == "concept ADJ (precision)"


# -- the ablation panel -------------------------------------------------------------------------------------
@pytest.mark.real_model
def test_send_button_adds_the_selected_neuron_to_the_panel() -> None:
    model = load_model("minilm-sentiment")
    texts = ["A wonderful film.", "Dull and far too long.", "The acting is superb!", "I hated every minute."]
    acts = extract_activations(model, texts, layers=[4], components="mlp", progress=False)
    labels = ["pos" if i in (0, 2) else "neg" for i, t in enumerate(texts) for _ in acts.units(i)]
    ranking = rank_probeless(acts, labels)
    panel = AblationPanel(model, texts[0], ranking.neurons[:2])
    ex = NeuronExplorer(acts, ranking, panel=panel, k_contexts=3)
    assert ex.children[-1] is panel and not ex.send_button.disabled
    browser_selects(ex.table, ranking.neurons[5])
    rid = panel.request_id
    ex.send_button.click()
    assert panel.neurons == [*ranking.neurons[:2], ranking.neurons[5]]
    assert panel.state[ranking.neurons[5]] == 1.0 and panel.request_id == rid + 1
    assert "Added" in ex.send_status.value and ranking.neurons[5] in ex.send_status.value
    ex.send_button.click()  # twice: nothing more
    assert len(panel.neurons) == 3 and "already" in ex.send_status.value
    browser_selects(ex.table, ranking.neurons[7])
    assert ex.send_status.value == ""
    assert ex.send_to_panel() == [ranking.neurons[7]]
    # a panel of another model is refused (the synthetic activations have 6 neurons in layer.0.mlp)
    small = random_corpus(5)
    other = make_activations(small, {"layer.0.mlp": np.zeros((small.num_words, 6), np.float32)}, 5)
    one = ranking.from_scores(["layer.0.mlp:1"], [1.0], "x")
    with pytest.raises(ValueError, match=r"has more neurons in layer\.0\.mlp than the activations"):
        NeuronExplorer(other, one, panel=panel)


# -- bad input ------------------------------------------------------------------------------------------------
def test_bad_input_names_the_fix(data: Data, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="needs a ranking .* or alignment=/concepts="):
        NeuronExplorer(data.acts)
    with pytest.raises(TypeError, match="NeuronExplorer needs Activations from extract_activations"):
        NeuronExplorer([[1.0, 2.0]], data.ranking)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="ranking must be a NeuronRanking .* got dict"):
        NeuronExplorer(data.acts, {"layer.0.mlp:1": 1.0})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="alignment must be a ConceptAlignment"):
        NeuronExplorer(data.acts, data.ranking, alignment=data.concepts)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="concepts must be Concepts"):
        NeuronExplorer(data.acts, data.ranking, concepts=data.alignment)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="panel must be an AblationPanel"):
        NeuronExplorer(data.acts, data.ranking, panel="panel")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="top must be TopActivations"):
        NeuronExplorer(data.acts, data.ranking, top={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k_contexts must be a positive integer"):
        NeuronExplorer(data.acts, data.ranking, k_contexts=0)
    with pytest.raises(ValueError, match="metric must be"):
        NeuronExplorer(data.acts, data.ranking, metric="f1")
    other = Concepts.from_corpus(random_corpus(20, seed=1))
    with pytest.raises(ValueError, match="build both from the same corpus"):
        NeuronExplorer(data.acts, data.ranking, concepts=other)
    foreign = data.ranking.__class__.from_scores(["layer.5.mlp:1", "layer.0.mlp:0"], [2.0, 1.0], "x")
    with pytest.raises(ValueError, match=r"neuron layer\.5\.mlp:1 is not in the activations .*restrict"):
        NeuronExplorer(data.acts, foreign)
    with pytest.raises(ValueError, match="sentence 999 is out of range"):
        NeuronExplorer(data.acts, data.ranking, sentences=[999])


def test_exported_lazily_from_the_top_level() -> None:
    assert neuronwidgets.NeuronExplorer is NeuronExplorer
    assert "NeuronExplorer" in neuronwidgets.__all__
    assert issubclass(NeuronExplorer, ipywidgets.VBox)
    assert isinstance(TokenHeatmap, type)


def test_side_panel_follows_a_search_that_keeps_the_selected_neuron(data: Data) -> None:
    """Regression (browser audit): a concept search whose best neuron is the one already selected left
    the side panel showing the old ranking's rank and name."""
    ex = NeuronExplorer(data.acts, data.ranking, alignment=data.alignment, k_contexts=K)
    adj = data.alignment.search("ADJ")
    ex.select(adj.neurons[0])  # the best ADJ neuron, selected before the search
    old_rank = list(data.ranking.neurons).index(adj.neurons[0])
    assert f"rank {old_rank} (0 = best)" in ex.info.value
    ex.search("ADJ")
    assert ex.selected == adj.neurons[0]  # the selection stayed...
    assert "rank 0 (0 = best)" in ex.info.value  # ...and the side panel shows the new ranking
    assert f"<i>{adj.method}</i>" in ex.info.value
    ex.reset_ranking()  # and back
    assert f"rank {old_rank} (0 = best)" in ex.info.value
    assert f"<i>{data.ranking.method}</i>" in ex.info.value
