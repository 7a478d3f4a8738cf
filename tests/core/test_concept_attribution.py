"""Concept-based interpretation of a prediction: attribution summed by concept, and the ablation check."""

from __future__ import annotations

import numpy as np
import pytest

from neuronwidgets.core.concepts.alignment import ConceptAlignment
from neuronwidgets.core.concepts.attribution import (
    NONE,
    NOT_ALIGNED,
    aggregate_by_concept,
    check_concept_ablation,
)
from neuronwidgets.core.interventions.edits import Intervention
from neuronwidgets.core.interventions.effects import measure_effect
from neuronwidgets.core.results import NeuronRanking


def hand_alignment() -> ConceptAlignment:
    """Four neurons × three concepts with hand-picked counts (100 units; concepts on 20, 30, 50 units)."""
    inter = np.array(
        [
            [9, 1, 0],  # iou with ADJ: 9 / (10 + 20 - 9) = 0.43
            [0, 8, 2],  # NOUN: 8 / (10 + 30 - 8) = 0.25
            [7, 0, 3],  # ADJ: 7 / 23 = 0.30
            [1, 1, 1],  # best 1 / (10 + 20 - 1) = 0.034 → below min_score
        ],
        dtype=np.int32,
    )
    return ConceptAlignment(
        neurons=("layer.0.mlp:0", "layer.0.mlp:1", "layer.1.mlp:5", "layer.1.resid:2"),
        concepts=("ADJ", "NOUN", "Number=Plur"),
        kinds=("upos", "upos", "feats"),
        intersection=inter,
        fires=np.array([10, 10, 10, 10]),
        concept_counts=np.array([20, 30, 50]),
        thresholds=np.ones(4, dtype=np.float32),
        num_units=100,
        quantile=0.1,
    )


def test_aggregation_sums_by_concept() -> None:
    alignment = hand_alignment()
    ranking = NeuronRanking(
        ("layer.1.mlp:5", "layer.0.mlp:0", "layer.0.mlp:1", "layer.1.resid:2", "layer.1.resid:9"),
        np.array([0.5, -0.3, 0.4, 0.2, 0.1]),
        "integrated gradients",
    )
    ca = aggregate_by_concept(ranking, alignment, min_score=0.05)
    assert ca.labels == ("ADJ", "ADJ", "NOUN", NONE, NOT_ALIGNED)
    np.testing.assert_allclose(ca.label_scores[:4], [7 / 23, 9 / 21, 8 / 32, 1 / 29], rtol=1e-6)
    assert np.isnan(ca.label_scores[4])
    total_abs = 0.5 + 0.3 + 0.4 + 0.2 + 0.1
    frame = ca.to_frame().set_index("concept")
    assert list(frame.index) == ["ADJ", "NOUN", NONE, NOT_ALIGNED]  # largest share first
    assert frame.loc["ADJ", "total"] == pytest.approx(0.5 - 0.3)
    assert frame.loc["ADJ", "abs_total"] == pytest.approx(0.8)
    assert frame.loc["ADJ", "share"] == pytest.approx(0.8 / total_abs)
    assert frame.loc["NOUN", "share"] == pytest.approx(0.4 / total_abs)
    assert frame["neurons"].tolist() == [2, 1, 1, 1]
    assert ca.shares.sum() == pytest.approx(1.0)
    assert ca.totals.sum() == pytest.approx(ranking.scores.sum())
    assert ca.share("ADJ") == pytest.approx(0.8 / total_abs) and ca.share("VERB") == 0.0
    assert ca.neurons_of("ADJ") == ("layer.1.mlp:5", "layer.0.mlp:0")
    assert ca.method == "integrated gradients"
    assert ca.neuron_frame()["concept"].tolist() == list(ca.labels)

    by_kind = aggregate_by_concept(ranking, alignment, min_score=0.05, by="kind")
    assert by_kind.share("upos") == pytest.approx(1.2 / total_abs)
    low = aggregate_by_concept(ranking, alignment, min_score=0.0)
    assert low.labels[3] == "ADJ"  # the weak neuron's best concept once every score counts
    by_precision = aggregate_by_concept(ranking, alignment, metric="precision", min_score=0.0)
    assert by_precision.labels[:3] == ("ADJ", "ADJ", "NOUN")


def test_aggregation_with_labels_and_bad_input() -> None:
    ca = aggregate_by_concept(
        {"layer.0.mlp:0": 1.0, "layer.0.mlp:1": -3.0}, {"layer.0.mlp:1": "NOUN AND Number=Plur"}
    )
    assert ca.labels == (NOT_ALIGNED, "NOUN AND Number=Plur")
    assert ca.share("NOUN AND Number=Plur") == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no neuron is labelled"):
        ca.neurons_of("VERB")
    with pytest.raises(TypeError, match="NeuronRanking"):
        aggregate_by_concept(["layer.0.mlp:0"], hand_alignment())
    with pytest.raises(ValueError, match="twice"):
        aggregate_by_concept({"layer.0.mlp:0": 1.0, " layer.0.mlp:0": 2.0}, hand_alignment())
    with pytest.raises(ValueError, match="NaN"):
        aggregate_by_concept({"layer.0.mlp:0": float("nan")}, hand_alignment())


def test_concept_ablation_vs_random(tiny_models) -> None:
    model = tiny_models["gpt2"]
    ranking = NeuronRanking(
        ("layer.0.mlp:0", "layer.0.mlp:1", "layer.1.mlp:5", "layer.1.resid:2"),
        np.array([0.4, 0.3, 0.2, 0.1]),
        "stand-in attribution",
    )
    ca = aggregate_by_concept(ranking, hand_alignment(), min_score=0.0)
    texts = ["The quick brown fox", "A wonderful, moving film"]
    check = check_concept_ablation(model, texts, ca, "ADJ", n_random=3, seed=1)
    assert check.neurons == ("layer.0.mlp:0", "layer.1.mlp:5", "layer.1.resid:2")
    assert check.comparison.top_neurons == check.neurons
    for draw in check.comparison.random_neurons:
        assert len(draw) == 3 and not set(draw) & set(check.neurons)
        sites = sorted(n.rpartition(":")[0] for n in draw)
        assert sites == ["layer.0.mlp", "layer.1.mlp", "layer.1.resid"]  # as many per site
    direct = measure_effect(model, texts, Intervention.zero(check.neurons))
    np.testing.assert_allclose(check.comparison.top.kl, direct.kl, rtol=1e-6)
    assert list(check.summary().columns) == ["concept", "random_mean", "random_std"]
    assert list(check.to_frame().index) == ["concept", "random 0", "random 1", "random 2"]
