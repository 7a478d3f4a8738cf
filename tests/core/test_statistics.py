"""Streaming statistics computed during extraction (no store) against the same quantities computed from
the full activations by NumPy and by the store-based analyses (top_activations, align_concepts)."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_acts import random_corpus

from neuronwidgets.core import (
    Concepts,
    align_concepts,
    extract_activations,
    extract_statistics,
    top_activations,
)


@pytest.fixture(scope="module")
def setup(tiny_models, tmp_path_factory):
    m = tiny_models["bert"]
    corpus = random_corpus(45, seed=2)
    # the same blocks of sentences (and so the same batches, the same bits) as the statistics below
    acts = extract_activations(
        m, corpus, components="all", chunk_sentences=7, store=tmp_path_factory.mktemp("st") / "s"
    )
    concepts = Concepts.from_corpus(corpus, min_count=2)
    stats = extract_statistics(
        m, corpus, components="all", k=4, quantile=0.05, concepts=concepts, sample=10**6, chunk_sentences=7
    )
    return m, corpus, acts, concepts, stats


def test_moments_and_quantiles_equal_numpy_over_the_full_activations(setup) -> None:
    _, _, acts, _, st = setup
    x = acts.matrix().astype(np.float64)
    assert st.neurons == tuple(acts.feature_names()) and st.num_units == x.shape[0]
    np.testing.assert_allclose(st.mean, x.mean(axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(st.var, x.var(axis=0), rtol=1e-5, atol=1e-8)
    assert np.array_equal(st.min, x.min(axis=0).astype(np.float32))
    assert np.array_equal(st.max, x.max(axis=0).astype(np.float32))
    # every unit is in the sample here, so the sketch's quantiles are exact
    np.testing.assert_allclose(st.quantiles([0.1, 0.5, 0.9]), np.quantile(x, [0.1, 0.5, 0.9], axis=0).T)
    assert st.to_frame().shape == (len(st.neurons), 7)


def test_top_contexts_and_thresholds_equal_top_activations(setup) -> None:
    _, _, acts, _, st = setup
    ref = top_activations(acts, k=4, quantile=0.05)
    for field in ("top_values", "top_units", "bottom_values", "bottom_units", "thresholds", "offsets"):
        assert np.array_equal(getattr(st.top, field), getattr(ref, field)), field
    assert st.top.sentence_units == ref.sentence_units
    neuron = st.neurons[5]
    assert st.top.contexts(neuron).equals(ref.contexts(neuron))


def test_concept_alignment_counts_equal_align_concepts(setup) -> None:
    _, _, acts, concepts, st = setup
    ref = align_concepts(acts, concepts, thresholds=top_activations(acts, k=4, quantile=0.05))
    assert st.alignment is not None
    assert np.array_equal(st.alignment.fires, ref.fires)
    assert np.array_equal(st.alignment.intersection, ref.intersection)
    assert np.array_equal(st.alignment.concept_counts, ref.concept_counts)
    np.testing.assert_allclose(st.alignment.iou, ref.iou)


def test_the_sketch_samples_the_same_units_however_the_corpus_is_cut(setup) -> None:
    m, corpus, acts, _, _ = setup
    a = extract_statistics(m, corpus, components="all", k=2, sample=40, chunk_sentences=7)
    b = extract_statistics(m, corpus, components="all", k=2, sample=40, chunk_sentences=16)
    assert a.sample.shape == (len(a.neurons), 40)
    assert np.array_equal(a.sample_units, b.sample_units)
    assert len(np.unique(a.sample_units)) == 40
    np.testing.assert_array_equal(a.sample, acts.matrix()[a.sample_units].T)
    # a uniform sample: its median is near the true one (rank error ~ 1/sqrt(40))
    x = acts.matrix()
    ranks = (x <= a.quantiles(0.5)[None, :]).mean(axis=0)
    assert np.abs(ranks - 0.5).mean() < 0.1


def test_bad_arguments_are_named(tiny_models) -> None:
    m = tiny_models["bert"]
    with pytest.raises(ValueError, match="k must be"):
        extract_statistics(m, [["a", "b"]], k=0)
    with pytest.raises(ValueError, match="sample"):
        extract_statistics(m, [["a", "b"]], sample=0)
    with pytest.raises(ValueError, match="same corpus"):
        extract_statistics(m, [["a", "b"]], concepts=Concepts.from_corpus(random_corpus(3), min_count=1))
