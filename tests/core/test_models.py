"""Model loading, structure, neuron addressing and predictions on tiny models of each family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronwidgets.core import load_model

EXPECTED_KIND = {"bert": "encoder", "roberta": "classifier", "gpt2": "causal-lm", "llama": "causal-lm"}


def test_loads_every_family_from_a_local_folder(tiny_models, family: str) -> None:
    m = tiny_models[family]
    assert m.kind == EXPECTED_KIND[family]
    assert m.num_layers == 2 and m.hidden_size == 16 and m.mlp_size == 24
    assert m.layer_names == ["embed", "layer.0", "layer.1"]
    assert [s.name for s in m.sites()] == [
        "embed.resid",
        "layer.0.mlp",
        "layer.0.resid",
        "layer.1.mlp",
        "layer.1.resid",
    ]
    assert m.width("layer.1.mlp") == 24 and m.width("embed.resid") == 16
    assert not m.model.training


def test_neuron_checks_name_the_valid_range(tiny_models) -> None:
    m = tiny_models["gpt2"]
    assert m.check_neuron("layer.1.mlp:23").index == 23
    with pytest.raises(ValueError, match=r"unknown layer 2 .* has 2 layers"):
        m.check_neuron("layer.2.resid:0")
    with pytest.raises(ValueError, match=r"out of range .* 0 … 23"):
        m.check_neuron("layer.0.mlp:24")
    with pytest.raises(ValueError, match=r"out of range .* 0 … 15"):
        m.check_neuron("embed.resid:16")
    with pytest.raises(ValueError, match="unknown component"):
        m.check_neuron("layer.0.attn:1")


def test_unknown_model_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not an embedded default"):
        load_model("no-such-org/no-such-model-xyz")
    with pytest.raises(ValueError, match="empty model name"):
        load_model("  ")


def test_folder_without_config_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="no config.json"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        load_model(str(tmp_path / "missing" / "model"))


def test_encoder_without_head_cannot_predict(tiny_models) -> None:
    with pytest.raises(ValueError, match="without a prediction head"):
        tiny_models["bert"].predict("the quick fox")


def test_classifier_prediction_is_labelled_softmax(tiny_models) -> None:
    m = tiny_models["roberta"]
    pred = m.predict("The quick brown fox")
    assert sorted(pred.labels) == ["neg", "neu", "pos"]
    assert pred.probs.sum() == pytest.approx(1.0, abs=1e-6)
    assert list(pred.probs) == sorted(pred.probs, reverse=True)
    enc = m.tokenizer("The quick brown fox", return_tensors="pt")
    with torch.inference_mode():
        ref = m.model(**enc).logits[0].softmax(-1).numpy()
    for label, p in zip(pred.labels, pred.probs):
        assert p == pytest.approx(ref[m.labels.index(label)], abs=1e-6)
    assert set(pred.to_frame().columns) == {"label", "prob", "id"}


@pytest.mark.parametrize("fam", ["gpt2", "llama"])
def test_causal_lm_prediction_is_next_token_top_k(tiny_models, fam: str) -> None:
    m = tiny_models[fam]
    text = "The capital of France is"
    pred = m.predict(text, top_k=3)
    ids = m.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        probs = m.model(input_ids=ids).logits[0, -1].softmax(-1)
    top = probs.topk(3)
    assert pred.ids == top.indices.tolist()
    np.testing.assert_allclose(pred.probs, top.values.numpy(), rtol=1e-5)


@pytest.mark.parametrize("fam", ["gpt2", "llama", "roberta"])
def test_batched_predictions_equal_one_at_a_time(tiny_models, fam: str) -> None:
    m = tiny_models[fam]
    texts = ["The quick brown fox jumps over the lazy dog.", "Paris is", "It's not bad at all; the actors"]
    batch = m.predict(texts)
    for text, pred in zip(texts, batch):
        single = m.predict(text)
        assert pred.ids == single.ids
        np.testing.assert_allclose(pred.probs, single.probs, atol=1e-5)


def test_predict_rejects_empty_text(tiny_models) -> None:
    with pytest.raises(ValueError, match="empty text"):
        tiny_models["gpt2"].predict("   ")
    with pytest.raises(ValueError, match="no texts"):
        tiny_models["gpt2"].predict([])


def test_too_long_text_is_truncated_with_a_warning(tiny_models) -> None:
    m = tiny_models["gpt2"]
    with pytest.warns(UserWarning, match="truncated"):
        pred = m.predict("the quick brown fox " * 40)
    assert pred.probs.shape == (5,)


def test_embedded_models_refuse_a_contradictory_kind() -> None:
    with pytest.raises(ValueError, match="is a classifier"):
        load_model("minilm-sentiment", kind="encoder")
    with pytest.raises(ValueError, match="unknown kind"):
        load_model("minilm", kind="tagger")


@pytest.mark.parametrize("fam", ["bert", "llama"])
def test_a_handle_pickles_after_transformers_hooked_its_model(tiny_models, fam: str) -> None:
    """transformers hooks local closures on a model called with output_hidden_states; the handle still
    pickles (as Dask ships it), the copy gives the same hidden states, and the original is untouched."""
    import copy
    import pickle

    h = copy.deepcopy(tiny_models[fam])  # the shared fixture keeps no transformers hooks
    assert h.model is not tiny_models[fam].model and copy.copy(h).model is h.model
    inputs = h.tokenizer(["a b c"], return_tensors="pt")
    with torch.no_grad():
        want = h.model(**inputs, output_hidden_states=True).hidden_states
    hooks = [len(m._forward_hooks) for m in h.model.modules()]
    assert sum(hooks) > 0  # what made pickling fail
    back = pickle.loads(pickle.dumps(h))
    assert back.blocks[0] is back.model.get_submodule(_block_path(h))
    with torch.no_grad():
        got = back.model(**inputs, output_hidden_states=True).hidden_states
    assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want))
    assert [len(m._forward_hooks) for m in back.model.modules()] == hooks
    assert [len(m._forward_hooks) for m in h.model.modules()] == hooks


def _block_path(h) -> str:
    return next(n for n, m in h.model.named_modules() if m is h.blocks[0])
