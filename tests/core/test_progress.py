"""Long functions show a tqdm bar with progress=True and none with progress=False (as extraction does)."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_acts import make_activations, random_corpus

import neuronwidgets.core as nw


@pytest.fixture(scope="module")
def acts():
    corpus = random_corpus(20, seed=3)
    rng = np.random.default_rng(0)
    return make_activations(
        corpus, {"layer.0.mlp": rng.normal(size=(corpus.num_words, 8)).astype(np.float32)}, 10
    )


def _calls(acts, lm):
    labels = acts_labels(acts)
    probe = nw.train_probe(acts, labels, control=False, baselines=False, progress=False)
    ranking = nw.rank_weight_mass(probe)
    text = "the cat sat"
    attribution = nw.attribute_tokens(lm, text, method="saliency")
    return {
        "ablations": lambda p: nw.compare_ablations(lm, [text], ["layer.1.mlp:1"], 1, n_random=2, progress=p),
        "faithfulness": lambda p: nw.faithfulness_curves(lm, attribution, n_random=2, progress=p),
        "faithfulness ": lambda p: nw.compare_faithfulness(lm, text, ["saliency"], n_random=2, progress=p),
        "ranking ablation": lambda p: nw.evaluate_ranking(probe, ranking, acts, labels, draws=1, progress=p),
        "clustering": lambda p: nw.cluster_neurons(acts, progress=p),
        "cross-model": lambda p: nw.rank_cross_model(acts, acts, progress=p),
    }


def acts_labels(acts):
    return ["a" if i % 2 else "b" for i in range(acts.num_units)]


@pytest.mark.parametrize(
    "desc", ["ablations", "faithfulness", "faithfulness ", "ranking ablation", "clustering", "cross-model"]
)
def test_progress_on_and_off(acts, tiny_models, capsys, desc) -> None:
    call = _calls(acts, tiny_models["gpt2"])[desc]
    capsys.readouterr()
    call(False)
    assert capsys.readouterr().err == ""
    call(True)
    assert desc.strip() in capsys.readouterr().err
