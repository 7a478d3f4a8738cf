"""The ``keep_first`` baseline option: a causal LM without BOS keeps its first token in the baseline.

Tiny GPT-2 and Llama tokenizers (tests/tiny_models.py) add no BOS, like SmolLM2's; the tiny RoBERTa adds <s>.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronwidgets.core import (
    ModelHandle,
    attribute_interactions,
    attribute_layers,
    attribute_neurons,
    attribute_tokens,
    faithfulness_curves,
    load_model,
)
from neuronwidgets.core.attribution.setup import prepare_text

TEXT = "A wonderful, moving film"  # "A" is one token for every tiny tokenizer


def _logit(handle: ModelHandle, ids: list[int], target: int) -> float:
    """The target's logit from input ids, through the model's own embedding path."""
    with torch.no_grad():
        logits = handle.model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids))).logits
    if handle.kind == "causal-lm":
        logits = logits[:, -1]
    return float(logits.float()[0, target])


def _baseline_logit(handle: ModelHandle, text: str, kept: list[int], target: int) -> float:
    """The target's logit with every token but the ``kept`` positions replaced by pad."""
    ids = handle.tokenizer(text)["input_ids"]
    pad = handle.tokenizer.pad_token_id
    return _logit(handle, [i if t in kept else pad for t, i in enumerate(ids)], target)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_auto_keeps_the_first_token_of_a_causal_lm_without_bos(tiny_models, family) -> None:
    handle = tiny_models[family]
    ids = handle.tokenizer(TEXT)["input_ids"]
    assert not handle.tokenizer(TEXT, return_special_tokens_mask=True)["special_tokens_mask"][0]  # no BOS
    auto = attribute_tokens(handle, TEXT, "integrated-gradients", output="logit", n_steps=64)
    off = attribute_tokens(handle, TEXT, "integrated-gradients", output="logit", n_steps=64, keep_first=False)
    assert auto.special[0] and not off.special[0]
    assert auto.params["keep_first"] is True and off.params["keep_first"] is False
    assert auto.token_scores[0] == 0.0 and off.token_scores[0] != 0.0
    assert "first token 'A' kept" in auto.baseline and "kept" not in off.baseline
    # the kept token is shown as text and still belongs to its word, which scores 0 by construction
    assert auto.tokens[0] == off.tokens[0] == "A" and auto.token_words[0] == 0
    assert auto.words == off.words and auto.word_scores[0] == 0.0
    # completeness against the model's own forward pass on each baseline (which differ)
    for a, kept in ((auto, [0]), (off, [])):
        expected = _logit(handle, ids, a.target_id) - _baseline_logit(handle, TEXT, kept, a.target_id)
        assert a.output_difference == pytest.approx(expected, abs=1e-5)
        assert a.token_scores.sum() == pytest.approx(expected, abs=2e-3 * max(1.0, abs(expected)) + 1e-5)
    assert abs(auto.output_difference - off.output_difference) > 5e-5  # 5x the tolerance above


def test_auto_leaves_encoders_and_bos_models_alone_and_true_keeps_the_first_content_token(
    tiny_models,
) -> None:
    handle = tiny_models["roberta"]  # <s> … </s>
    ids = handle.tokenizer(TEXT)["input_ids"]
    auto = attribute_tokens(handle, TEXT, "integrated-gradients", n_steps=32)
    assert auto.special.tolist() == [True] + [False] * (len(ids) - 2) + [True]
    assert auto.params["keep_first"] is False
    on = attribute_tokens(handle, TEXT, "integrated-gradients", n_steps=32, keep_first=True)
    assert on.special[:2].tolist() == [True, True] and not on.special[2]
    assert on.token_scores[1] == 0.0 and on.tokens[1] == "A"
    setup = prepare_text(handle, TEXT, on.target_id, keep_first=True)
    assert setup.content.tolist() == list(range(2, len(ids) - 1))
    torch.testing.assert_close(setup.base[0, :2], setup.embeds[0, :2], rtol=0, atol=0)


def test_one_token_text_and_bad_values(tiny_models) -> None:
    handle = tiny_models["llama"]
    text = "A"
    assert len(handle.tokenizer(text)["input_ids"]) == 1
    a = attribute_tokens(handle, text, "saliency")  # "auto": nothing else to attribute, so not kept
    assert not a.special[0] and a.token_scores[0] != 0.0
    with pytest.raises(ValueError, match="only content token"):
        attribute_tokens(handle, text, keep_first=True)
    with pytest.raises(ValueError, match="unknown keep_first 'yes'"):
        attribute_tokens(handle, TEXT, keep_first="yes")
    with pytest.raises(TypeError, match="keep_first must be True, False or 'auto'"):
        attribute_tokens(handle, TEXT, keep_first=1)  # type: ignore[arg-type]


def test_layers_neurons_interactions_and_faithfulness_share_the_baseline(tiny_models) -> None:
    handle = tiny_models["llama"]
    tok = attribute_tokens(handle, TEXT, "integrated-gradients", n_steps=16)
    layers = attribute_layers(handle, TEXT, n_steps=16)
    assert layers.special[0] and layers.params["keep_first"] is True
    assert layers.output_difference == pytest.approx(tok.output_difference, abs=1e-6)
    # the embeddings at the kept position do not move along the path: no conductance there
    assert layers.sites[0] == "embed.resid" and layers.scores[0, 0] == 0.0
    assert layers.totals[-1] == pytest.approx(tok.output_difference, abs=0.02 * abs(tok.output_difference))
    off = attribute_layers(handle, TEXT, n_steps=16, keep_first=False)
    assert off.scores[0, 0] != 0.0

    ranking = attribute_neurons(handle, TEXT, "layer.1.mlp", n_steps=16)
    assert ranking.meta["keep_first"] is True and "kept" in ranking.meta["baseline"]
    assert ranking.meta["output_difference"] == pytest.approx(tok.output_difference, abs=1e-6)

    inter = attribute_interactions(handle, TEXT, "shapley-taylor", n_samples=2)
    n_tokens = len(tok.tokens)
    assert len(inter.units) == n_tokens - 1 and inter.params["keep_first"] is True  # "A" is no unit
    assert inter.output_difference == pytest.approx(tok.output_difference, abs=1e-6)
    words = attribute_interactions(handle, TEXT, "shapley-taylor", level="word", n_samples=2)
    assert words.units[0] == "A" and np.all(words.matrix[0] == 0) and words.main[0] == 0

    # faithfulness switches tokens against the attribution's own baseline: all deleted = F(baseline)
    # (by token: the tiny BPE's lone-space tokens belong to no word, so deleting words keeps them)
    curves = faithfulness_curves(handle, tok, level="token", n_random=2)
    assert len(curves.units) == n_tokens - 1
    assert curves.deletion[-1] == pytest.approx(tok.prob - tok.output_difference, abs=1e-5)


@pytest.mark.real_model
def test_smollm2_paris_is_explained_by_words_not_by_the_first_position() -> None:
    lm = load_model("smollm2")
    text = "The capital of France is"
    auto = attribute_tokens(lm, text, "integrated-gradients", " Paris", n_steps=50)
    off = attribute_tokens(lm, text, "integrated-gradients", " Paris", n_steps=50, keep_first=False)
    assert auto.prob > 0.5 and auto.words[0] == "The"
    # from the all-pad baseline, "The" takes most of the credit for " Paris"; kept, the words carry it
    assert off.top(1)[0][0] == "The" and off.word_scores[0] > 0.5 * off.output_difference
    assert auto.word_scores[0] == 0.0 and auto.top(1)[0][0] in ("capital", "of", "France")
    assert auto.word_scores[auto.words.index("France")] > off.word_scores[off.words.index("France")]
    for a in (auto, off):
        assert abs(a.delta) < 0.01 * abs(a.output_difference)
