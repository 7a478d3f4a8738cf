"""The embedded offline models, loaded from their PyPI packages."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from neuronwidgets.core import extract_activations, load_conllu, load_model

pytestmark = pytest.mark.real_model


def test_minilm_structure_and_activations_match_transformers(minilm) -> None:
    assert minilm.kind == "encoder" and minilm.num_layers == 6
    assert minilm.hidden_size == 384 and minilm.mlp_size == 1536
    words = ["The", "movie", "wasn't", "unwatchable", "."]
    acts = extract_activations(minilm, [words])
    enc = minilm.tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.inference_mode():
        hs = minilm.model(**enc, output_hidden_states=True).hidden_states
    ids = enc.word_ids()
    for layer in range(7):
        h = hs[layer][0].numpy()
        expected = np.stack([h[[t for t, w in enumerate(ids) if w == k]].mean(0) for k in range(len(words))])
        site = "embed.resid" if layer == 0 else f"layer.{layer - 1}.resid"
        np.testing.assert_allclose(acts.sentence(0, site), expected, atol=1e-4)


def test_minilm_on_real_ud_sentences(minilm, ud_dev) -> None:
    corpus = load_conllu(ud_dev, max_sentences=40)
    acts = extract_activations(minilm, corpus, layers=[2], components="all")
    assert acts.num_units == corpus.num_words
    assert acts.matrix().shape == (corpus.num_words, 384 + 1536)
    for i in (0, 17, 39):
        assert acts.units(i) == corpus.words[i]


def test_minilm_long_text_is_split_not_crashed(minilm) -> None:
    words = ["word"] * 700
    with pytest.warns(UserWarning, match="split into windows"):
        acts = extract_activations(minilm, [words], layers=[0])
    assert acts.num_units == 700


def test_smollm2_predicts_paris() -> None:
    m = load_model("smollm2")
    assert m.kind == "causal-lm" and m.num_layers == 30 and m.hidden_size == 576 and m.mlp_size == 1536
    pred = m.predict("The capital of France is")
    assert pred.top == " Paris"
    assert pred.top_prob == pytest.approx(0.77, abs=0.05)
    t0 = time.perf_counter()
    load_model("smollm2")  # cached plain weights: no second dequantisation
    assert time.perf_counter() - t0 < 15


def test_smollm2_extraction_stops_after_the_last_needed_layer() -> None:
    m = load_model("smollm2")
    calls = {"head": 0}
    hook = m.model.lm_head.register_forward_hook(lambda *a: calls.__setitem__("head", calls["head"] + 1))
    try:
        acts = extract_activations(m, ["The capital of France is Paris."], layers=[3], components="all")
    finally:
        hook.remove()
    assert calls["head"] == 0
    assert acts.sites == ["layer.3.mlp", "layer.3.resid"]
    assert acts.sentence(0, "layer.3.mlp").shape == (7, 1536)
