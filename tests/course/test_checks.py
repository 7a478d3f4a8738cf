"""The course's checking machinery, and the headless checkers that need no real model: right answers in
any equivalent form are accepted, wrong ones get a hint that never contains the answer, and the truth is
computed from the objects given (synthetic activations whose answers are planted)."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from synthetic_acts import make_activations, random_corpus

from neuronwidgets.core import Concepts, NeuronRanking, align_concepts, train_probe
from neuronwidgets.course import EXERCISES, check, evaluate, exercises
from neuronwidgets.course.checks import as_fraction, as_layer, as_neuron, as_word


def test_every_notebook_has_two_to_four_exercises_sized_to_its_slot() -> None:
    table = exercises()
    for nb in ("00", "01", "02", "03", "04", "05"):
        part = table[table["notebook"].str.startswith(nb)]
        assert 2 <= len(part) <= 4, nb
        budget = 20 if nb == "04" else 15  # the causation practical is 20 minutes, the others 15
        assert part["minutes"].sum() <= budget, (nb, part["minutes"].sum())
    assert list(table["id"]) == sorted(EXERCISES)


def test_unanswered_unknown_and_missing_context() -> None:
    fb = evaluate("02.4", ..., minimal=SimpleNamespace(neurons=[1, 2]))
    assert fb.correct is None and "replace ..." in str(fb)
    with pytest.raises(ValueError, match="unknown exercise '9.9'"):
        evaluate("9.9", 1)
    with pytest.raises(
        TypeError, match=r"needs by_weight: call check\('02.2', answer, by_weight=by_weight\)"
    ):
        evaluate("02.2", 3)
    with pytest.raises(TypeError, match="takes layerwise, not model"):
        evaluate("02.1", 3, layerwise=None, model=None)


def test_answers_in_equivalent_forms() -> None:
    assert {as_layer(a) for a in (3, "3", "L3", "layer.3", "layer.3.resid", " Layer.3 ")} == {3}
    assert as_layer("embed.resid") == -1
    assert as_fraction(0.91) == as_fraction("91%") == as_fraction(91) == pytest.approx(0.91)
    assert as_neuron("layer.3.resid:42") == as_neuron(42, "layer.3.resid") == as_neuron("'layer.3.resid:42'")
    assert as_word(" Wonderful, ") == as_word("'wonderful'") == "wonderful"
    assert as_word(";") == ";"
    bad = evaluate("02.1", "the third one", layerwise=_layerwise({"layer.1.resid": 0.2}))
    assert bad.correct is False and "expected a layer" in bad.message


def test_check_prints_the_feedback(capsys: pytest.CaptureFixture[str]) -> None:
    check("02.1", 2, layerwise=_layerwise({"layer.1.resid": 0.1, "layer.2.resid": 0.3}))
    assert capsys.readouterr().out.startswith("✅ right (02.1)")


def _layerwise(selectivity: dict[str, float]) -> SimpleNamespace:
    frame = pd.DataFrame({"site": list(selectivity), "selectivity": list(selectivity.values())})
    return SimpleNamespace(to_frame=lambda: frame)


def test_most_selective_layer_accepts_ties_and_hides_the_answer() -> None:
    lw = _layerwise(
        {"embed.resid": 0.05, "layer.1.resid": 0.21, "layer.2.resid": 0.30, "layer.3.resid": 0.30}
    )
    assert evaluate("02.1", "layer.2.resid", layerwise=lw).correct
    assert evaluate("02.1", 3, layerwise=lw).correct  # a tie: both are right
    wrong = evaluate("02.1", "embed", layerwise=lw)
    assert wrong.correct is False and "layer 2" not in wrong.message and "layer 3" not in wrong.message
    assert evaluate("02.1", 9, layerwise=lw).correct is False


def test_where_the_top_neurons_live() -> None:
    names = [f"layer.{1 + (i % 5 == 0)}.resid:{i}" for i in range(120)]  # layer 1 holds 4 in 5
    ranking = NeuronRanking.from_scores(names, np.linspace(1, 0, 120), "weight_mass")
    assert evaluate("02.2", "layer.1", by_weight=ranking).correct
    wrong = evaluate("02.2", 2, by_weight=ranking)
    assert wrong.correct is False and "layer 1" not in wrong.message


@pytest.fixture(scope="module")
def planted():
    corpus = random_corpus(120, seed=3)
    upos = np.array(corpus.flat_labels("upos"))
    rng = np.random.default_rng(1)
    n = corpus.num_words
    arrays = {"layer.1.resid": rng.normal(size=(n, 8)).astype(np.float32)}
    arrays["layer.1.resid"][:, 5] += 4.0 * (upos == "ADJ")  # the ADJ neuron
    arrays["layer.1.resid"][:, 2] += 4.0 * (upos == "VERB")
    acts = make_activations(corpus, arrays, [120])
    return corpus, upos, acts


def test_a_probe_on_few_neurons_recomputes_the_accuracy(planted) -> None:
    _corpus, upos, acts = planted
    ranking = NeuronRanking.from_scores(
        [f"layer.1.resid:{i}" for i in (5, 2, 0, 1)], np.array([4.0, 3, 2, 1]), "w"
    )
    probing = importlib.import_module("neuronwidgets.course.probing")
    truth = train_probe(
        acts, list(upos), neurons=list(ranking.neurons)[: probing.FEW], control=False
    ).accuracy
    labels = list(upos)
    assert evaluate("02.3", truth, acts=acts, labels=labels, by_weight=ranking).correct
    assert evaluate("02.3", f"{100 * truth:.1f}%", acts=acts, labels=labels, by_weight=ranking).correct
    wrong = evaluate("02.3", truth - 0.05, acts=acts, labels=labels, by_weight=ranking)
    assert wrong.correct is False and f"{truth:.3f}" not in wrong.message and "higher" in wrong.message


def test_concept_checkers_on_planted_neurons(planted) -> None:
    corpus, upos, acts = planted
    concepts = Concepts.from_corpus(corpus)
    alignment = align_concepts(acts, concepts, progress=False)
    concepts_module = sys.modules["neuronwidgets.course.concepts"]
    c = alignment.concepts.index("ADJ")
    best = alignment.neurons[int(np.argmax(alignment.iou[:, c]))]
    assert best == "layer.1.resid:5"
    original = concepts_module.CONCEPT
    try:
        concepts_module.CONCEPT = "ADJ"
        assert evaluate("05.1", "layer.1.resid:5", alignment=alignment).correct
        wrong = evaluate("05.1", "layer.1.resid:2", alignment=alignment)
        assert wrong.correct is False and "resid:5" not in wrong.message
    finally:
        concepts_module.CONCEPT = original
    # any formula better than the best single concept is right; a worse one is not
    ctx = dict(acts=acts, concepts=concepts, alignment=alignment, neuron="layer.1.resid:5")
    single = float(alignment.iou[alignment.index("layer.1.resid:5")].max())
    feedback = {f: evaluate("05.2", f, **ctx) for f in ("ADJ", "NOUN OR VERB", "no such concept")}
    assert feedback["ADJ"].correct is False  # equal to the best single concept: not better
    assert feedback["NOUN OR VERB"].correct is False
    assert feedback["no such concept"].correct is False
    acts_fire = (
        np.asarray(acts.neuron("layer.1.resid:5")) >= alignment.thresholds[alignment.index("layer.1.resid:5")]
    )
    # a formula that is better: the firing words' own word types (checked independently here)
    words = np.array([w.lower() for s in corpus.words for w in s])
    fired = sorted({w for w in words[acts_fire]})
    names = [f"word:{w}" for w in fired if f"word:{w}" in concepts.names]
    assert names
    formula = "ADJ AND (" + " OR ".join(names) + ")"
    mask = (upos == "ADJ") & np.isin(words, [n[5:] for n in names])
    iou = (mask & acts_fire).sum() / (mask | acts_fire).sum()
    assert iou > single  # planted: better than any single concept
    fb = evaluate("05.2", formula, **ctx)
    assert fb.correct is True and f"IoU {iou:.3f}" in fb.message


def test_unsupervised_checkers_read_the_results_given() -> None:
    from neuronwidgets.core import SimilarityMatrix

    names = [f"{site}:{i}" for site in ("embed.resid", "layer.1.resid", "layer.2.resid") for i in range(3)]
    scores = np.array([0.2, 0.3, 0.1, 0.9, 0.8, 0.7, 0.5, 0.6, 0.4])  # layer 1 is shared most (mean 0.8)
    order = np.argsort(-scores)
    ranking = NeuronRanking.from_scores(names, scores, "maxcorr", order=order)
    assert evaluate("01.1", "layer.1.resid", ranking=ranking).correct
    wrong = evaluate("01.1", "embed", ranking=ranking)
    assert wrong.correct is False and "layer 1" not in wrong.message
    cka = SimilarityMatrix(
        rows=("embed.resid", "layer.1.resid", "layer.2.resid"),
        columns=("layer.6.resid", "layer.12.resid"),
        values=np.array([[0.9, 0.2], [0.5, 0.4], [0.3, 0.7]]),
        method="cka",
    )
    assert evaluate("01.2", 2, cka=cka).correct
    wrong = evaluate("01.2", "embed.resid", cka=cka)  # best for the other column: not this one
    assert wrong.correct is False and "layer 2" not in wrong.message
