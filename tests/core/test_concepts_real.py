"""Corpus selection and concepts on MiniLM over spaCy-tagged movie-review snippets (real behaviour)."""

from __future__ import annotations

import numpy as np
import pytest

from neuronwidgets.core import annotate, extract_activations
from neuronwidgets.core.concepts.alignment import align_concepts
from neuronwidgets.core.concepts.concepts import Concepts, lexicon_sentiment
from neuronwidgets.core.concepts.formulas import explain_neurons
from neuronwidgets.core.concepts.selection import top_activations
from neuronwidgets.core.models.offline import load_movie_snippets

pytestmark = pytest.mark.real_model


def test_minilm_has_punctuation_neurons_and_formulas(minilm) -> None:
    snippets = load_movie_snippets()[:120]
    corpus = annotate([t for t, _ in snippets])
    corpus = corpus.with_labels("sentiment", lexicon_sentiment(corpus))
    concepts = Concepts.from_corpus(
        corpus, sentence_labels={"review": ["pos" if s > 0 else "neg" for _, s in snippets]}
    )
    assert {"PUNCT", "ADJ", "Number=Plur", "dep:nsubj", "sentiment:pos", "review:pos", "word:the"} <= set(
        concepts.names
    )
    acts = extract_activations(minilm, corpus, layers=[1], components="all")
    top = top_activations(acts, k=10, quantile=0.05)
    alignment = align_concepts(acts, concepts, thresholds=top)
    assert alignment.intersection.shape == (384 + 1536, len(concepts))
    # some early neuron fires (top 5% of words) almost only on punctuation
    ranking = alignment.search("PUNCT")
    best = ranking.neurons[0]
    row = alignment.concepts_of(best, k=len(concepts)).set_index("concept")
    assert row.loc["PUNCT", "precision"] >= 0.9 and row.loc["PUNCT", "iou"] >= 0.3
    punct = set(concepts.units_of("PUNCT").tolist())
    tops = top.top_units[top.index(best)]
    assert np.mean([u in punct for u in tops]) >= 0.8
    # formulas are at least as good as the best single concept, and never worse than it
    sample = list(alignment.to_frame().sort_values("iou", ascending=False)["neuron"][:5])
    explained = explain_neurons(acts, concepts, sample, thresholds=top)
    assert np.all(explained.iou >= explained.single_iou - 1e-6)
    assert np.all(explained.iou > 0.3)


def test_concept_based_explanation_of_a_sentiment_prediction() -> None:
    from neuronwidgets.core import attribute_neurons, load_model
    from neuronwidgets.core.concepts.attribution import aggregate_by_concept, check_concept_ablation

    model = load_model("minilm-sentiment")
    snippets = load_movie_snippets()[:100]
    corpus = annotate([t for t, _ in snippets])
    corpus = corpus.with_labels("sentiment", lexicon_sentiment(corpus))
    concepts = Concepts.from_corpus(corpus)
    acts = extract_activations(model, corpus, layers=[5], components="mlp")
    alignment = align_concepts(acts, concepts, quantile=0.05)
    text = "A wonderful, moving film with a brilliant cast."
    ranking = attribute_neurons(model, text, sites=["layer.5.mlp"], n_steps=16)
    explained = aggregate_by_concept(ranking, alignment, min_score=0.05)
    assert len(explained.neurons) == 1536
    assert explained.shares.sum() == pytest.approx(1.0)
    assert explained.totals.sum() == pytest.approx(float(np.sum(ranking.scores)))
    labelled = [c for c in explained.concepts if not c.startswith("(")]
    assert labelled, "no neuron of the last MLP aligns with any concept"
    check = check_concept_ablation(model, [text], explained, labelled[0], n_random=2)
    assert check.comparison.top_neurons == explained.neurons_of(labelled[0])
    assert np.isfinite(check.summary().to_numpy()).all()
