"""Token, layer and neuron attribution: completeness, agreement with Captum, targets, errors, cleanup."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from neuronwidgets.core import (
    METHODS,
    ModelHandle,
    attribute_layers,
    attribute_neurons,
    attribute_tokens,
    compare_faithfulness,
    faithfulness_curves,
    load_model,
)
from neuronwidgets.core.attribution.conductance import site_attributions
from neuronwidgets.core.attribution.methods import get_method
from neuronwidgets.core.attribution.setup import ScoreModule, prepare_text
from neuronwidgets.core.models.addresses import parse_site
from neuronwidgets.core.models.hooks import site_target

TOKEN_METHODS = [name for name, m in METHODS.items() if m.level == "token"]
FAST = {"n_steps": 8, "n_samples": 4}


def _no_hooks(model: torch.nn.Module) -> bool:
    return all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) for m in model.modules())


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = model.state_dict()
    return (
        all(torch.equal(before[k], after[k]) for k in before)
        and not model.training
        and all(p.grad is None for p in model.parameters())
    )


@pytest.fixture(scope="module")
def heads(tiny_models: dict[str, ModelHandle], tiny_dirs: dict[str, Path]) -> dict[str, ModelHandle]:
    """Every tiny family with a prediction head (the tiny BERT is a bare encoder: give it a classifier)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bert = load_model(str(tiny_dirs["bert"]), kind="classifier")
    return {**tiny_models, "bert": bert}


@pytest.fixture(scope="module")
def sentiment() -> ModelHandle:
    return load_model("minilm-sentiment")


def _model_output(handle: ModelHandle, ids: list[int], target: int) -> float:
    """The target's probability from input ids, through the model's own embedding path."""
    with torch.no_grad():
        logits = handle.model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids))).logits
    if handle.kind == "causal-lm":
        logits = logits[:, -1]
    return float(logits.float().softmax(-1)[0, target])


# -- token level -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", TOKEN_METHODS)
def test_token_methods_run_on_every_tiny_family(heads, family, method) -> None:
    handle = heads[family]
    before = _snapshot(handle.model)
    text = "It's not bad at all; the actors don't disappoint."
    a = attribute_tokens(handle, text, method, **FAST)
    n = len(a.tokens)
    assert a.token_scores.shape == (n,) and a.special.shape == (n,) and a.token_words.shape == (n,)
    assert np.isfinite(a.token_scores).all() and np.abs(a.token_scores).sum() > 0
    assert np.all(a.token_scores[a.special] == 0)  # kept in the baseline: no attribution
    assert a.words == ["It's", "not", "bad", "at", "all", ";", "the", "actors", "don't", "disappoint", "."]
    # words sum their tokens (no token of this text overlaps two words; a lone-space token, which
    # byte-level BPEs produce, belongs to none)
    in_words = a.token_scores[a.token_words >= 0].sum()
    assert a.word_scores.sum() == pytest.approx(in_words, rel=1e-6, abs=1e-12)
    assert a.target == (handle.predict(text).top)
    assert 0 < a.prob <= 1
    assert (a.delta is not None) == (METHODS[method].kind == "path")
    assert _no_hooks(handle.model) and _unchanged(handle.model, before)
    assert len(a.to_frame()) == len(a.words) and len(a.to_frame("token")) == n


def test_integrated_gradients_completeness_on_tiny_models(heads) -> None:
    for family in ("bert", "gpt2", "llama"):  # RoBERTa derives positions from pad ids: checked below
        handle = heads[family]
        text = "The quick brown fox jumps over the lazy dog."
        a = attribute_tokens(handle, text, "integrated-gradients", n_steps=64)
        ids = handle.tokenizer(text)["input_ids"]
        base = [i if s else handle.tokenizer.pad_token_id for i, s in zip(ids, a.special)]
        expected = _model_output(handle, ids, a.target_id) - _model_output(handle, base, a.target_id)
        assert a.output_difference == pytest.approx(expected, abs=1e-5)
        assert a.token_scores.sum() == pytest.approx(expected, abs=2e-3 * max(1.0, abs(expected)) + 1e-5)


@pytest.mark.real_model
def test_integrated_gradients_completeness_minilm_sentiment(sentiment) -> None:
    text = "The acting was wooden and the plot made no sense, but the music was wonderful."
    a = attribute_tokens(sentiment, text, "integrated-gradients", target="positive", n_steps=50)
    ids = sentiment.tokenizer(text)["input_ids"]
    pad = sentiment.tokenizer.pad_token_id
    base = [i if s else pad for i, s in zip(ids, a.special)]
    f_x, f_b = _model_output(sentiment, ids, 1), _model_output(sentiment, base, 1)
    assert a.prob == pytest.approx(f_x, abs=1e-5)
    assert abs(f_x - f_b) > 0.05  # a real difference to explain
    assert a.token_scores.sum() == pytest.approx(f_x - f_b, abs=0.01 * abs(f_x - f_b))
    assert abs(a.delta) < 0.01 * abs(f_x - f_b)
    # the label's name and index explain the same output
    b = attribute_tokens(sentiment, text, "integrated-gradients", target=1, n_steps=50)
    np.testing.assert_allclose(a.token_scores, b.token_scores, atol=1e-7)
    # too few steps: a warning that names the fix
    with pytest.warns(UserWarning, match="increase n_steps"):
        attribute_tokens(sentiment, text, "integrated-gradients", target="positive", n_steps=2)


@pytest.mark.real_model
def test_subword_scores_sum_into_their_word(sentiment) -> None:
    text = "An unwatchable, overwrought melodrama."
    a = attribute_tokens(sentiment, text, "input-x-gradient")
    split = [w for w in range(len(a.words)) if (a.token_words == w).sum() > 1]
    assert split, "the text should contain words split into several tokens"
    for w in range(len(a.words)):
        assert a.word_scores[w] == pytest.approx(a.token_scores[a.token_words == w].sum(), abs=1e-9)


def test_targets_for_causal_lm(heads) -> None:
    gpt2 = heads["gpt2"]
    text = "Paris is the capital of"
    top = attribute_tokens(gpt2, text, "saliency")
    assert top.target == gpt2.predict(text).top
    by_id = attribute_tokens(gpt2, text, "saliency", target=top.target_id)
    by_str = attribute_tokens(gpt2, text, "saliency", target=top.target)
    np.testing.assert_allclose(by_id.token_scores, top.token_scores)
    np.testing.assert_allclose(by_str.token_scores, top.token_scores)
    other = attribute_tokens(gpt2, text, "saliency", target=(top.target_id + 1) % 50)
    assert other.target_id != top.target_id and not np.allclose(other.token_scores, top.token_scores)
    with pytest.raises(ValueError, match="must be one token"):
        attribute_tokens(gpt2, text, target=" Paris is the capital")
    with pytest.raises(ValueError, match="out of range"):
        attribute_tokens(gpt2, text, target=10**7)


def test_masked_lm_target_is_the_mask(tiny_dirs) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlm = load_model(str(tiny_dirs["bert"]), kind="masked-lm")
    a = attribute_tokens(mlm, "The quick brown [MASK] jumps.", "integrated-gradients", n_steps=32)
    assert a.special[a.tokens.index("[MASK]")]
    assert a.target == mlm.predict("The quick brown [MASK] jumps.").top
    # the mask is one word (not "[", "MASK", "]"), kept in the baseline: its score is 0
    assert a.words == ["The", "quick", "brown", "[MASK]", "jumps", "."]
    assert a.word_scores[3] == 0.0
    with pytest.raises(ValueError, match=r"needs a \[MASK\]"):
        attribute_tokens(mlm, "no mask here")


def test_clear_errors(heads, tiny_models) -> None:
    clf = heads["roberta"]
    with pytest.raises(ValueError, match="unknown token attribution method 'magic'.*integrated-gradients"):
        attribute_tokens(clf, "fine text", "magic")
    with pytest.raises(ValueError, match="layer-level method: use attribute_layers"):
        attribute_tokens(clf, "fine text", "layer-conductance")
    with pytest.raises(ValueError, match=r"not a label.*\['neg', 'neu', 'pos'\]"):
        attribute_tokens(clf, "fine text", target="positive")
    with pytest.raises(ValueError, match="encoder without a prediction head"):
        attribute_tokens(tiny_models["bert"], "fine text")
    with pytest.raises(ValueError, match="empty text"):
        attribute_tokens(clf, "   ")
    with pytest.raises(ValueError, match="more than .* maximum"):
        attribute_tokens(clf, "word " * 200)
    with pytest.raises(ValueError, match="unknown baseline"):
        attribute_tokens(clf, "fine text", baseline="noise")
    with pytest.raises(ValueError, match="has no mask token"):
        attribute_tokens(heads["gpt2"], "fine text", baseline="mask")
    with pytest.raises(ValueError, match="unknown output"):
        attribute_tokens(clf, "fine text", output="probability")
    with pytest.raises(ValueError, match="n_steps"):
        attribute_tokens(clf, "fine text", n_steps=1)
    with pytest.raises(ValueError, match="unknown neuron attribution method"):
        attribute_neurons(clf, "fine text", "layer.0.mlp", method="saliency")
    with pytest.raises(ValueError, match="unknown layer 9"):
        attribute_neurons(clf, "fine text", "layer.9.mlp")


def test_method_table_names_and_aliases() -> None:
    assert get_method("IG").name == "integrated-gradients"
    assert get_method("Input_X_Gradient").name == "input-x-gradient"
    assert get_method("ig", "neuron").name == "neuron-integrated-gradients"
    import captum.attr

    for m in METHODS.values():
        if m.captum is not None:
            assert hasattr(captum.attr, m.captum), m


def test_baselines_zero_and_token_id(heads) -> None:
    handle = heads["llama"]
    text = "The quick brown fox"
    zero = attribute_tokens(handle, text, "integrated-gradients", baseline="zero", n_steps=64)
    tok = attribute_tokens(handle, text, "integrated-gradients", baseline=5, n_steps=64)
    # (+ ", first token 'T' kept": the tiny Llama has no BOS, see test_keep_first.py)
    assert zero.baseline.startswith("zero embeddings") and tok.baseline.startswith("token 5")
    assert not np.allclose(zero.token_scores, tok.token_scores)
    for a in (zero, tok):
        assert abs(a.delta) < 0.05 * abs(a.output_difference) + 1e-6


# -- layers and neurons: the batched engine against Captum ------------------------------------------


def _captum_neuron_conductance(setup, site, neuron, n_steps, method) -> np.ndarray:
    """Captum's NeuronConductance for ``(token, neuron)`` at every token, summed over the inputs."""
    from captum.attr import NeuronConductance

    module, where = site_target(setup.handle, site)
    nc = NeuronConductance(ScoreModule(setup), module)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(setup.num_tokens):
            attr = nc.attribute(
                setup.content_embeds,
                neuron_selector=(t, neuron),
                baselines=setup.content_base,
                n_steps=n_steps,
                method=method,
                attribute_to_neuron_input=where == "pre",
            )
            out.append(float(attr.double().sum()))
    return np.array(out)


def _check_against_captum(handle, text, sites, neurons, n_steps=12, method="riemann_trapezoid") -> None:
    setup = prepare_text(handle, text)
    parsed = [parse_site(s) for s in sites]
    ours = site_attributions(setup, parsed, "conductance", n_steps=n_steps, integration=method)
    assert ours.jvp == "forward-ad"
    for site in parsed:
        values = ours.values[site.name]
        assert values.shape == (setup.num_tokens, handle.width(site))
        for j in neurons:
            ref = _captum_neuron_conductance(setup, site, j, n_steps, method)
            scale = max(np.abs(ref).max(), 1e-6)
            np.testing.assert_allclose(values[:, j], ref, atol=1e-5 * scale, rtol=1e-4)


@pytest.mark.real_model
def test_batched_neuron_conductance_equals_captum_minilm(sentiment) -> None:
    rng = np.random.default_rng(0)
    neurons = sorted(rng.choice(384, size=2, replace=False).tolist())
    _check_against_captum(sentiment, "not a bad film", ["layer.2.resid", "layer.4.mlp"], neurons, n_steps=10)


@pytest.mark.parametrize("family", ["gpt2", "llama", "roberta"])
def test_batched_neuron_conductance_equals_captum_tiny(heads, family) -> None:
    _check_against_captum(heads[family], "The quick brown fox", ["layer.0.resid", "layer.1.mlp"], [0, 5, 13])


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_conductance_at_the_embeddings_is_integrated_gradients(heads, family) -> None:
    # GPT-2 and Llama feed the input embeddings (plus positions) straight to block 0, so the conductance
    # of embed.resid is Captum's IntegratedGradients of the embeddings, token by token
    handle = heads[family]
    text = "The quick brown fox jumps"
    layers = attribute_layers(handle, text, sites="embed.resid", n_steps=24)
    ig = attribute_tokens(handle, text, "integrated-gradients", n_steps=24)
    np.testing.assert_allclose(layers.scores[0], ig.token_scores, atol=1e-7)


def test_neuron_integrated_gradients_equals_captum_layer_ig(heads) -> None:
    from captum.attr import LayerIntegratedGradients

    handle = heads["llama"]
    setup = prepare_text(handle, "The quick brown fox")
    for name in ("layer.0.mlp", "layer.1.resid"):
        site = parse_site(name)
        ours = site_attributions(setup, [site], "integrated-gradients", n_steps=20).values[name]
        module, where = site_target(handle, site)
        ref = LayerIntegratedGradients(ScoreModule(setup), module).attribute(
            setup.content_embeds,
            baselines=setup.content_base,
            n_steps=20,
            attribute_to_layer_input=where == "pre",
        )
        np.testing.assert_allclose(ours, ref[0].detach().double().numpy(), atol=1e-6)


@pytest.mark.real_model
def test_neuron_ranking_minilm(sentiment) -> None:
    text = "not a bad film at all"
    before = _snapshot(sentiment.model)
    r = attribute_neurons(sentiment, text, "layer.3.resid")
    assert len(r.neurons) == 384 and len(set(r.neurons)) == 384
    assert all(sentiment.check_neuron(n).site.name == "layer.3.resid" for n in r.neurons)
    assert np.all(np.diff(r.scores) <= 0)  # rank_by="positive": highest first
    np.testing.assert_array_equal(r.scores, r.columns["attribution"])
    assert r.method == "neuron-conductance" and r.meta["target"] == "negative"
    # conductance over a whole residual layer adds up to F(x) − F(x')
    layers = attribute_layers(sentiment, text, sites=["layer.3.resid"])
    assert r.scores.sum() == pytest.approx(layers.output_difference, abs=1e-3)
    assert r.scores.sum() == pytest.approx(layers.totals[0], abs=1e-6)
    by_abs = attribute_neurons(sentiment, text, "layer.3.resid", rank_by="absolute")
    assert np.all(np.diff(by_abs.scores) <= 0) and set(by_abs.neurons) == set(r.neurons)
    np.testing.assert_allclose(by_abs.scores, np.abs(by_abs.columns["attribution"]))
    assert by_abs.to_frame().columns.tolist()[-1] == "attribution"
    mlp = attribute_neurons(sentiment, text, "layer.5.mlp", method="neuron-integrated-gradients")
    assert len(mlp.neurons) == 1536
    assert _no_hooks(sentiment.model) and _unchanged(sentiment.model, before)


@pytest.mark.parametrize("method", ["layer-conductance", "layer-integrated-gradients"])
def test_layer_matrix_rows_are_complete(heads, method) -> None:
    handle = heads["gpt2"]
    la = attribute_layers(handle, "The quick brown fox jumps", method, n_steps=64)
    assert la.sites == ["embed.resid", "layer.0.resid", "layer.1.resid"]
    assert la.scores.shape == (3, len(la.tokens)) and la.word_scores.shape == (3, len(la.words))
    # every residual site carries the whole change from baseline to input
    np.testing.assert_allclose(la.totals, la.output_difference, atol=2e-3 * abs(la.output_difference) + 1e-6)
    assert np.all(np.abs(la.deltas) < 2e-3 * abs(la.output_difference) + 1e-6)
    mlp = attribute_layers(handle, "The quick brown fox jumps", method, sites="mlp", n_steps=8)
    assert mlp.sites == ["layer.0.mlp", "layer.1.mlp"]
    assert len(la.to_frame()) == 3 * len(la.tokens)


def test_hooks_removed_and_model_unchanged_after_an_error(heads) -> None:
    handle = heads["llama"]
    before = _snapshot(handle.model)

    class Boom(Exception):
        pass

    def explode(*_):
        raise Boom

    h = handle.block(1).register_forward_hook(explode)
    try:
        for call in (
            lambda: attribute_neurons(handle, "The quick brown fox", "layer.0.mlp"),
            lambda: attribute_layers(handle, "The quick brown fox", "layer-integrated-gradients"),
        ):
            with pytest.raises(Boom):
                call()
    finally:
        h.remove()
    assert _no_hooks(handle.model) and _unchanged(handle.model, before)


# -- faithfulness ------------------------------------------------------------------------------------


def test_faithfulness_curves_endpoints(heads) -> None:
    handle = heads["roberta"]
    text = "It's not bad at all; the actors don't disappoint."
    a = attribute_tokens(handle, text, "occlusion")
    c = faithfulness_curves(handle, a, n_random=3)
    n = len(a.words)
    assert c.fractions.shape == c.deletion.shape == c.random_insertion.shape == (n + 1,)
    ids = handle.tokenizer(text)["input_ids"]
    assert c.deletion[0] == pytest.approx(a.prob, abs=1e-5) and c.insertion[-1] == pytest.approx(
        a.prob, abs=1e-5
    )
    assert c.deletion[-1] == pytest.approx(c.insertion[0], abs=1e-6)
    assert c.random_deletion[0] == pytest.approx(c.deletion[0]) and c.random_deletion[-1] == pytest.approx(
        c.deletion[-1]
    )
    # removing the single highest-occlusion word changes p by exactly that word's occlusion score
    assert c.deletion[0] - c.deletion[1] == pytest.approx(a.word_scores.max(), abs=1e-5)
    assert len(ids) > n


@pytest.mark.real_model
def test_compare_faithfulness_minilm(sentiment) -> None:
    cmp = compare_faithfulness(
        sentiment,
        "A dull, lifeless and painfully slow film.",
        ["integrated-gradients", "saliency"],
        n_random=4,
    )
    df = cmp.to_frame()
    assert list(df["method"]) == ["integrated-gradients", "saliency"]
    assert {"deletion_auc", "insertion_auc", "deletion_gain", "insertion_gain"} <= set(df.columns)
    assert cmp.attributions[0].target == cmp.attributions[1].target == "negative"
    # integrated gradients on a clear example beats random order at deletion
    assert df.loc[0, "deletion_gain"] > 0


def test_a_model_that_rescales_its_embeddings_is_refused(heads) -> None:
    # e.g. BART/T5-style embedding scales applied only on the input_ids path: attributions to inputs_embeds
    # would explain a different function, so prepare_text must refuse rather than mislead
    inner = heads["gpt2"]

    class Rescaled(torch.nn.Module):
        def __init__(self, model: torch.nn.Module):
            super().__init__()
            self.inner = model
            self.config = model.config

        def forward(self, input_ids=None, inputs_embeds=None, **kw):
            if input_ids is not None:
                inputs_embeds = self.inner.get_input_embeddings()(input_ids) * 2.0
            return self.inner(inputs_embeds=inputs_embeds, **kw)

    weird = ModelHandle(
        "rescaled",
        Rescaled(inner.model).eval(),
        inner.tokenizer,
        "causal-lm",
        inner.blocks,
        [],
        inner._down_proj_path,
    )
    with pytest.raises(ValueError, match="different outputs from input_ids and from inputs_embeds"):
        attribute_tokens(weird, "The quick brown fox")
    with pytest.raises(ValueError, match="different outputs"):  # remembered, still refused
        attribute_neurons(weird, "The quick brown fox", "layer.0.mlp")
