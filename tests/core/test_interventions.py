"""Interventions: ablation, scaling and steering, checked against independent computations.

Independent routes: zeroing an MLP neuron = zeroing the column of the down projection that reads it (on a
deep copy); zeroing/scaling a residual neuron of a post-LN block (BERT, RoBERTa) = zeroing/scaling that
dimension's LayerNorm weight and bias; a pre-LN model's last-block residual neuron = a manual final norm and
LM head on the edited hidden state. The prefix cache is checked against the full forward pass.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from neuronwidgets.core import (
    Intervention,
    ModelHandle,
    ablate,
    compare_ablations,
    extract_activations,
    generate,
    intervene,
    load_model,
    measure_effect,
    predict,
    predict_logits,
    steering_values,
)
from neuronwidgets.core.interventions.edits import SiteEdit
from neuronwidgets.core.interventions.prefix import prefix_cache

TEXTS = ["the quick brown fox jumps over the lazy dog", "paris is the capital of france"]
REFERENCE = ["a wonderful film about friendship", "numbers like 3.14 appear in text", "the lazy dog"]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_heads(tiny_dirs):
    """The tiny BERT with a masked-LM head and with a sequence-classification head (random heads)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        heads = {
            "bert-mlm": load_model(str(tiny_dirs["bert"]), kind="masked-lm"),
            "bert-cls": load_model(str(tiny_dirs["bert"]), kind="classifier"),
        }
    # the new classifier is initialised with std 0.02: make its logits large enough to compare
    torch.manual_seed(0)
    with torch.no_grad():
        heads["bert-cls"].model.classifier.weight.normal_(0.0, 1.0)  # type: ignore[union-attr,operator]
    return heads


@pytest.fixture(scope="module")
def sentiment():
    return load_model("minilm-sentiment")


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2")


def texts_for(h: ModelHandle) -> list[str]:
    if h.kind == "masked-lm":
        return [
            f"the quick brown fox {h.tokenizer.mask_token} over",
            f"paris is the {h.tokenizer.mask_token}",
        ]
    return TEXTS


def module_name(h: ModelHandle, module: nn.Module) -> str:
    return next(n for n, m in h.model.named_modules() if m is module)


def copied(h: ModelHandle) -> ModelHandle:
    """An independent deep copy of the handle's model (same tokenizer), to edit weights on."""
    model = copy.deepcopy(h.model)
    blocks = model.get_submodule(module_name(h, h.blocks))
    assert isinstance(blocks, nn.ModuleList)
    return dataclasses.replace(h, model=model, blocks=blocks)


def outputs(h: ModelHandle, texts: list[str]) -> torch.Tensor:
    """Every output of a plain forward pass: logits at all positions, or the encoder's last hidden state."""
    with torch.inference_mode():
        out = h.model(**h.encode(texts))
    return out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state


def zero_down_proj_column(h: ModelHandle, layer: int, index: int) -> None:
    proj = h.down_proj(layer)
    weight: torch.Tensor = proj.weight  # type: ignore[assignment]
    with torch.no_grad():
        if isinstance(proj, nn.Linear):
            weight[:, index] = 0.0  # [out, in]
        else:
            weight[index, :] = 0.0  # GPT-2's Conv1D: [in, out]


def assert_matches(got: torch.Tensor, expected: torch.Tensor, clean: torch.Tensor) -> None:
    """``got`` equals the independent ``expected`` (atol 1e-5), and far more closely than the clean output
    does: tiny random models have small effects, so agreement is also judged relative to the effect."""
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    effect = float((clean - expected).abs().max())
    assert effect > 0, "the intervention changed nothing: the comparison would prove nothing"
    assert float((got - expected).abs().max()) <= 1e-2 * effect


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}


def assert_untouched(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict(keep_vars=True)
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed"
    for name, m in model.named_modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, f"hook left on {name or 'model'}"


def all_handles(tiny_models, bert_heads) -> dict[str, ModelHandle]:
    return {**tiny_models, **bert_heads}


# ------------------------------------------------------------------------------------------------
# the spec
# ------------------------------------------------------------------------------------------------


def test_intervention_spec_is_canonical_hashable_and_serialisable() -> None:
    a = Intervention.scale({"layer.1.mlp:3": 0.0, " layer.0.resid:2 ": 2})
    b = Intervention(("layer.1.mlp:3", "layer.0.resid:2"), "scale", (0.0, 2.0))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.neurons == ("layer.1.mlp:3", "layer.0.resid:2") and a.values == (0.0, 2.0)
    for spec in (a, Intervention.zero("embed.resid:1"), Intervention.mean(["layer.0.mlp:1"], REFERENCE)):
        assert Intervention.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert Intervention(["layer.0.mlp:1", "layer.0.mlp:2"], "value", 1.5).values == (1.5, 1.5)
    assert Intervention.scale({}).neurons == ()  # an empty panel state: no change
    assert "scale" in repr(a)


def test_clear_errors(tiny_models) -> None:
    h = tiny_models["gpt2"]
    with pytest.raises(ValueError, match="unknown intervention mode 'off'"):
        Intervention(("layer.0.mlp:1",), "off")
    with pytest.raises(ValueError, match="needs a reference corpus"):
        Intervention(("layer.0.mlp:1",), "mean")
    with pytest.raises(ValueError, match="needs reference="), ablate(h, ["layer.0.mlp:1"], mode="mean"):
        pass
    with pytest.raises(ValueError, match="needs factor="), ablate(h, ["layer.0.mlp:1"], mode="scale"):
        pass
    with (
        pytest.raises(ValueError, match="factor= is for mode 'scale'"),
        ablate(h, ["layer.0.mlp:1"], factor=2.0),
    ):
        pass
    with pytest.raises(ValueError, match="got 1 factors for 2 neurons"):
        Intervention(("layer.0.mlp:1", "layer.0.mlp:2"), "scale", (1.0,))
    with pytest.raises(ValueError, match="takes no values"):
        Intervention(("layer.0.mlp:1",), "zero", (1.0,))
    with pytest.raises(ValueError, match="not a finite number"):
        Intervention.set({"layer.0.mlp:1": float("nan")})
    with pytest.raises(ValueError, match="listed twice"):
        Intervention.zero(["layer.0.mlp:1", "layer.0.mlp:1"])
    with pytest.raises(ValueError, match="cannot parse neuron address"):
        Intervention.zero(["layer.0.mlp"])
    with pytest.raises(ValueError, match=r"unknown layer 5 .* has 2 layers"):
        predict(h, "a", Intervention.zero(["layer.5.mlp:0"]))
    with pytest.raises(ValueError, match=r"out of range .* 0 … 23"), ablate(h, ["layer.1.mlp:24"]):
        pass
    with pytest.raises(TypeError, match=r"Intervention.scale\(\{neuron: factor\}\)"):
        predict(h, "a", {"layer.0.mlp:1": 0.0})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="must be a ModelHandle, a model name or a folder"):
        predict(42, "a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot load model 'no-such-model-here'"):
        predict("no-such-model-here", "a")  # names are accepted (loaded once), unknown ones fail clearly
    with pytest.raises(ValueError, match="not a causal LM"):
        generate(tiny_models["roberta"], "a")
    with pytest.raises(ValueError, match="encoder without a prediction head"):
        predict(tiny_models["bert"], "a", Intervention.zero(["layer.0.mlp:1"]))
    with pytest.raises(ValueError, match="empty text"):
        predict(h, ["a", " "])
    assert_untouched(h.model, snapshot(h.model))  # failed checks registered nothing


# ------------------------------------------------------------------------------------------------
# independent computations
# ------------------------------------------------------------------------------------------------


def test_zero_mlp_neurons_equals_zeroing_down_projection_columns(tiny_models, bert_heads, family) -> None:
    for h in [tiny_models[family], *(bert_heads.values() if family == "bert" else [])]:
        texts = texts_for(h)
        neurons = [(0, 5), (1, 3), (1, 17)]
        ref = copied(h)
        for layer, index in neurons:
            zero_down_proj_column(ref, layer, index)
        expected = outputs(ref, texts)
        addresses = [f"layer.{lay}.mlp:{i}" for lay, i in neurons]
        with ablate(h, addresses) as spec:
            got = outputs(h, texts)
        assert spec == Intervention.zero(addresses)
        assert_matches(got, expected, outputs(h, texts))
        if h.kind != "encoder":  # and through the prefix cache, at the predicted positions
            got = predict_logits(h, texts, Intervention.zero(addresses))
            assert_matches(got, predict_logits(ref, texts), predict_logits(h, texts))


def _layernorm_route(h: ModelHandle, site_layer: int, index: int, factor: float) -> ModelHandle:
    """Post-LN (BERT, RoBERTa): a residual dimension leaves a block (or the embeddings) through a
    LayerNorm, so scaling it equals scaling that dimension's LayerNorm weight and bias."""
    ref = copied(h)
    if site_layer < 0:
        ln = next(m for n, m in ref.model.named_modules() if n.endswith("embeddings.LayerNorm"))
    else:
        ln = ref.blocks[site_layer].get_submodule("output.LayerNorm")
    with torch.no_grad():
        ln.weight[index] *= factor
        ln.bias[index] *= factor
    return ref


@pytest.mark.parametrize("name", ["roberta", "bert-cls"])
def test_residual_neurons_of_post_ln_models_equal_layernorm_edits(tiny_models, bert_heads, name) -> None:
    h = all_handles(tiny_models, bert_heads)[name]
    for layer, index, factor in [(-1, 3, 0.0), (0, 7, 0.0), (1, 11, 0.0), (1, 2, 2.5), (0, 0, 0.5)]:
        site = "embed.resid" if layer < 0 else f"layer.{layer}.resid"
        ref = _layernorm_route(h, layer, index, factor)
        spec = Intervention(f"{site}:{index}", "scale", factor)
        expected = predict_logits(ref, TEXTS)
        for cached in (True, False):
            got = predict_logits(h, TEXTS, spec, prefix_cache=cached)
            assert_matches(got, expected, predict_logits(h, TEXTS))


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_last_block_residual_neuron_of_pre_ln_models_equals_a_manual_head(tiny_models, name) -> None:
    h = tiny_models[name]
    model = h.model
    norm = model.get_submodule("transformer.ln_f" if name == "gpt2" else "model.norm")
    recorded: dict[str, torch.Tensor] = {}
    handle = h.blocks[-1].register_forward_hook(
        lambda m, a, out: recorded.update(h=out[0] if isinstance(out, tuple) else out)
    )
    try:
        enc = h.encode(TEXTS)
        with torch.inference_mode():
            model(**enc)
    finally:
        handle.remove()
    hidden = recorded["h"].clone()
    hidden[..., 9] = 0.0
    last = enc["attention_mask"].sum(1) - 1
    with torch.inference_mode():
        expected = model.get_submodule("lm_head")(norm(hidden))[torch.arange(2), last]
    spec = Intervention.zero(["layer.1.resid:9"])
    for cached in (True, False):
        got = predict_logits(h, TEXTS, spec, prefix_cache=cached)
        assert_matches(got, expected, predict_logits(h, TEXTS))


@pytest.mark.real_model
def test_minilm_sentiment_ablation_equals_weight_edits(sentiment) -> None:
    texts = ["A wonderful, moving film.", "The plot was dull and the acting worse, sadly."]
    mlp = [(1, 100), (3, 1200), (5, 7)]
    ref = copied(sentiment)
    for layer, index in mlp:
        zero_down_proj_column(ref, layer, index)
    ref = _layernorm_route(ref, 5, 42, 0.0)  # and the last block's residual neuron 42
    spec = Intervention.zero([f"layer.{lay}.mlp:{i}" for lay, i in mlp] + ["layer.5.resid:42"])
    expected = predict_logits(ref, texts)
    for cached in (True, False):
        got = predict_logits(sentiment, texts, spec, prefix_cache=cached)
        assert_matches(got, expected, predict_logits(sentiment, texts))


# ------------------------------------------------------------------------------------------------
# modes
# ------------------------------------------------------------------------------------------------


def test_scale_one_is_bit_identical_and_scale_zero_is_zero(tiny_models, bert_heads) -> None:
    for name, h in all_handles(tiny_models, bert_heads).items():
        if h.kind == "encoder":
            continue
        texts = texts_for(h)
        with torch.inference_mode():
            clean, _ = h.logits(texts)
        neurons = ["embed.resid:1", "layer.0.mlp:4", "layer.1.resid:2", "layer.1.mlp:20"]
        for cached in (True, False):
            one = predict_logits(h, texts, Intervention(neurons, "scale", 1.0), prefix_cache=cached)
            assert torch.equal(one, clean), name
            zero = predict_logits(h, texts, Intervention(neurons, "scale", 0.0), prefix_cache=cached)
            assert torch.equal(
                zero, predict_logits(h, texts, Intervention.zero(neurons), prefix_cache=cached)
            )
            assert not torch.allclose(zero, clean)
        with ablate(h, neurons, "scale", factor=1.0):
            assert torch.equal(h.logits(texts)[0], clean)


def test_mean_mode_sets_the_reference_mean_and_caches_it(tiny_models, monkeypatch) -> None:
    h = tiny_models["llama"]
    import neuronwidgets.core.store.extraction as extraction

    sites = {"layer.0.mlp": 6, "layer.1.resid": 3}
    means = {
        s: extract_activations(
            h, REFERENCE, layers=[int(s.split(".")[1])], components=s.split(".")[2], granularity="token"
        )
        .layer(s)
        .mean(0)[i]
        for s, i in sites.items()
    }
    neurons = [f"{s}:{i}" for s, i in sites.items()]
    calls = []
    real = extraction.extract_activations

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(extraction, "extract_activations", counting)
    for _ in range(2):
        with ablate(h, neurons, mode="mean", reference=REFERENCE):
            seen = extract_activations(h, TEXTS, layers=[0, 1], components="all", granularity="token")
        for s, i in sites.items():
            np.testing.assert_allclose(seen.layer(s)[:, i], means[s], rtol=1e-6, atol=1e-6)
        assert len(calls) == 2  # one extraction per component, then cached
    assert steering_values(h, neurons, REFERENCE) == pytest.approx(
        {n: float(means[n.rpartition(":")[0]]) for n in neurons}
    )
    assert len(calls) == 2


def test_value_mode_and_composition(tiny_models) -> None:
    h = tiny_models["gpt2"]
    both = [
        Intervention.scale({"layer.0.mlp:1": 3.0}),
        Intervention.set({"layer.0.mlp:1": 0.25, "layer.1.mlp:2": -1.0}),
    ]
    with intervene(h, both) as edits:
        seen = extract_activations(h, TEXTS, layers=[0, 1], components="mlp", granularity="token")
    assert [s.name for s in edits] == ["layer.0.mlp", "layer.1.mlp"]  # one edit per site
    np.testing.assert_array_equal(seen.layer("layer.0.mlp")[:, 1], 0.25)  # set after scale wins
    np.testing.assert_array_equal(seen.layer("layer.1.mlp")[:, 2], -1.0)
    before = extract_activations(h, TEXTS, layers=[0], components="mlp", granularity="token").layer(
        "layer.0.mlp"
    )
    with ablate(
        h, ["layer.0.mlp:1", "layer.0.mlp:2"], "scale", factor={"layer.0.mlp:2": 2.0, "layer.0.mlp:1": 0.5}
    ):
        after = extract_activations(h, TEXTS, layers=[0], components="mlp", granularity="token").layer(
            "layer.0.mlp"
        )
    np.testing.assert_allclose(after[:, 1], before[:, 1] * 0.5, rtol=1e-6)
    np.testing.assert_allclose(after[:, 2], before[:, 2] * 2.0, rtol=1e-6)
    np.testing.assert_array_equal(after[:, 3], before[:, 3])


# ------------------------------------------------------------------------------------------------
# hooks always removed, model never changed
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_model_bit_identical_and_hook_free_after_an_error_inside(tiny_models, error) -> None:
    h = tiny_models["llama"]
    before = snapshot(h.model)
    with torch.inference_mode():
        clean, _ = h.logits(TEXTS)
    neurons = ["embed.resid:0", "layer.0.mlp:3", "layer.1.resid:5"]
    with pytest.raises(error), ablate(h, neurons, "scale", factor=2.0):
        changed, _ = h.logits(TEXTS)
        assert not torch.allclose(changed, clean)
        raise error("stop")
    assert_untouched(h.model, before)
    assert torch.equal(h.logits(TEXTS)[0], clean)


def test_interrupt_during_a_cached_prediction_leaves_no_hook(tiny_models, monkeypatch) -> None:
    h = tiny_models["gpt2"]
    spec = Intervention.zero(["layer.1.mlp:3"])
    expected = predict_logits(h, TEXTS, spec)  # warm cache
    before = snapshot(h.model)

    def interrupt(self, x):
        raise KeyboardInterrupt

    monkeypatch.setattr(SiteEdit, "__call__", interrupt)
    for cached in (True, False):
        with pytest.raises(KeyboardInterrupt):
            predict_logits(h, TEXTS, spec, prefix_cache=cached)
    monkeypatch.undo()
    assert_untouched(h.model, before)
    assert torch.equal(predict_logits(h, TEXTS, spec), expected)


# ------------------------------------------------------------------------------------------------
# prefix cache
# ------------------------------------------------------------------------------------------------


def random_states(h: ModelHandle, n: int, seed: int) -> list[list[Intervention]]:
    rng = random.Random(seed)
    sites = [s.name for s in h.sites()]
    states = []
    for _ in range(n):
        ivs = []
        for _ in range(rng.randint(1, 3)):
            site = rng.choice(sites)
            idx = rng.sample(range(h.width(site)), rng.randint(1, 6))
            neurons = [f"{site}:{i}" for i in idx]
            mode = rng.choice(["zero", "value", "scale", "scale", "mean"])
            if mode == "zero":
                ivs.append(Intervention.zero(neurons))
            elif mode == "mean":
                ivs.append(Intervention.mean(neurons, REFERENCE))
            else:
                ivs.append(Intervention(neurons, mode, tuple(rng.uniform(-2, 3) for _ in neurons)))
        states.append(ivs)
    return states


def test_prefix_cache_equals_full_forward_for_every_family(tiny_models, bert_heads) -> None:
    for name, h in all_handles(tiny_models, bert_heads).items():
        if h.kind == "encoder":
            continue
        texts = texts_for(h)
        for batch in (texts, texts[:1]):
            for state in random_states(h, 12, seed=len(name)):
                fast = predict_logits(h, batch, state)
                full = predict_logits(h, batch, state, prefix_cache=False)
                torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5, msg=f"{name} {state}")
        cache = prefix_cache(h)
        assert cache.status == "ok" and len(cache) >= 2, (name, cache.status)


def test_prefix_cache_runs_only_from_the_first_intervened_block(tiny_models, monkeypatch) -> None:
    h = tiny_models["llama"]
    predict(h, TEXTS[0])  # warm
    calls = {0: 0, 1: 0}
    for i in calls:
        block = h.blocks[i]
        real = block.forward

        def counting(*a, _i=i, _real=real, **k):
            calls[_i] += 1
            return _real(*a, **k)

        monkeypatch.setattr(block, "forward", counting)
    predict(h, TEXTS[0], Intervention.scale({"layer.1.mlp:2": 0.5}))
    assert calls == {0: 0, 1: 1}
    predict(h, TEXTS[0], Intervention.scale({"layer.0.resid:2": 0.5}))  # edits block 1's input directly
    assert calls == {0: 0, 1: 2}
    predict(h, TEXTS[0], Intervention.scale({"layer.0.mlp:2": 0.5, "layer.1.resid:1": 2.0}))
    assert calls == {0: 1, 1: 3}
    predict(h, TEXTS[0], Intervention.scale({"layer.1.resid:1": 2.0}))  # only the head runs
    assert calls == {0: 1, 1: 3}


def test_prefix_cache_follows_weight_edits_and_outside_hooks(tiny_dirs) -> None:
    h = load_model(str(tiny_dirs["llama"]))  # our own copy: its weights get edited
    spec = Intervention.zero(["layer.1.mlp:3"])
    predict_logits(h, TEXTS, spec)
    with torch.no_grad():
        h.down_proj(0).weight.mul_(1.5)  # type: ignore[operator]
    torch.testing.assert_close(
        predict_logits(h, TEXTS, spec), predict_logits(h, TEXTS, spec, prefix_cache=False)
    )
    torch.testing.assert_close(predict_logits(h, TEXTS), h.logits(TEXTS)[0].detach())
    # inside an enclosing ablate, a prediction composes both and never feeds the cache
    outer = Intervention.scale({"layer.0.mlp:1": 0.0, "embed.resid:2": 3.0})
    with intervene(h, outer):
        inside = predict_logits(h, TEXTS, spec)
    torch.testing.assert_close(inside, predict_logits(h, TEXTS, [outer, spec], prefix_cache=False))
    assert torch.equal(predict_logits(h, TEXTS), h.logits(TEXTS)[0].detach())


def test_batches_and_predictions(tiny_models) -> None:
    h = tiny_models["roberta"]
    spec = Intervention.zero(["layer.0.mlp:1"])
    texts = [*TEXTS, "a wonderful film", "the dog"]
    torch.testing.assert_close(
        predict_logits(h, texts, spec, batch_size=3),
        predict_logits(h, texts, spec, batch_size=1),
        atol=1e-5,
        rtol=1e-5,
    )
    preds = predict(h, texts, spec)
    assert isinstance(preds, list) and len(preds) == 4 and preds[0].labels[0] in h.labels
    one = predict(h, texts[0], spec)
    assert not isinstance(one, list)
    probs = predict_logits(h, texts[0], spec).softmax(-1)[0]
    assert one.top_prob == pytest.approx(float(probs.max()), abs=1e-6)
    assert one.top == h.labels[int(probs.argmax())]


# ------------------------------------------------------------------------------------------------
# effects
# ------------------------------------------------------------------------------------------------


def test_measure_effect_matches_manual_computation(tiny_models) -> None:
    h = tiny_models["gpt2"]
    spec = Intervention.set({"layer.0.mlp:1": 5.0, "layer.1.resid:3": -4.0})
    effect = measure_effect(h, TEXTS, spec)
    p = predict_logits(h, TEXTS, prefix_cache=False).double().softmax(-1)
    q = predict_logits(h, TEXTS, spec, prefix_cache=False).double().softmax(-1)
    top = p.argmax(-1)
    np.testing.assert_allclose(effect.original_prob, p[torch.arange(2), top].numpy(), atol=1e-6)
    np.testing.assert_allclose(effect.intervened_prob, q[torch.arange(2), top].numpy(), atol=1e-6)
    np.testing.assert_allclose(effect.kl, (p * (p / q).log()).sum(-1).numpy(), atol=1e-6)
    assert effect.flip_rate == float((q.argmax(-1) != top).double().mean())
    assert list(effect.to_frame().columns)[:2] == ["text", "original"]
    none = measure_effect(h, TEXTS, Intervention.scale({"layer.0.mlp:1": 1.0}))
    assert none.mean_kl == 0.0 and none.mean_delta_prob == 0.0 and none.flip_rate == 0.0


@dataclasses.dataclass(frozen=True)
class Ranked:
    neurons: tuple[str, ...]


def test_compare_ablations_draws_from_the_same_sites(tiny_models) -> None:
    h = tiny_models["llama"]
    ranking = {"layer.1.mlp:3": 5.0, "layer.0.mlp:7": 9.0, "layer.1.mlp:11": 1.0, "layer.0.resid:2": 0.5}
    c = compare_ablations(h, TEXTS, ranking, 3, n_random=4, seed=1)
    assert c.top_neurons == ("layer.0.mlp:7", "layer.1.mlp:3", "layer.1.mlp:11")
    assert len(c.random) == 4 and len(c.random_neurons) == 4
    for draw in c.random_neurons:
        assert sorted(n.rpartition(":")[0] for n in draw) == ["layer.0.mlp", "layer.1.mlp", "layer.1.mlp"]
        assert not set(draw) & set(c.top_neurons)
    again = compare_ablations(h, TEXTS, ranking, 3, n_random=4, seed=1)
    assert again.random_neurons == c.random_neurons  # seeded
    assert list(c.summary().index) == ["delta_prob", "kl", "flip_rate"]
    assert c.summary().loc["kl", "top"] == pytest.approx(c.top.mean_kl)
    ranked = Ranked((*c.top_neurons, "layer.0.resid:2"))  # a ranking object: addresses best first
    again = compare_ablations(h, TEXTS, ranked, 3, n_random=4, seed=1)
    assert again.top_neurons == c.top_neurons and again.random_neurons == c.random_neurons
    with pytest.raises(ValueError, match="k=5 but the ranking has only 4"):
        compare_ablations(h, TEXTS, ranking, 5)


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_compare_ablations_runs_the_clean_model_once(tiny_models, monkeypatch, mode) -> None:
    """One clean run serves the top-k and every draw, and the effects are bit-identical to measuring each
    ablation on its own (the old behaviour: a clean run per draw)."""
    from neuronwidgets.core.interventions import effects

    h = tiny_models["llama"]
    ranking = ["layer.0.mlp:7", "layer.1.mlp:3", "layer.1.mlp:11"]
    calls: list[bool] = []

    def counting(*args, **kwargs):
        intervened = (len(args) > 2 and args[2] is not None) or kwargs.get("interventions") is not None
        calls.append(intervened)
        return predict_logits(*args, **kwargs)

    monkeypatch.setattr(effects, "predict_logits", counting)
    reference = REFERENCE if mode == "mean" else None
    c = compare_ablations(
        h, TEXTS, ranking, 3, n_random=4, seed=2, mode=mode, reference=reference, batch_size=1
    )
    assert calls.count(False) == 1 and calls.count(True) == 5
    monkeypatch.undo()
    for neurons, got in zip((c.top_neurons, *c.random_neurons), (c.top, *c.random)):
        spec = Intervention.mean(neurons, REFERENCE) if mode == "mean" else Intervention.zero(neurons)
        alone = measure_effect(h, TEXTS, spec, batch_size=1)
        for field in dataclasses.fields(alone):
            a, b = getattr(got, field.name), getattr(alone, field.name)
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b, strict=True)
            else:
                assert a == b, field.name
    with pytest.raises(ValueError, match="mode 'mean' needs reference"):
        compare_ablations(h, TEXTS, ranking, 3, mode="mean")


@pytest.mark.real_model
def test_top_neurons_move_sentiment_more_than_random_ones(sentiment) -> None:
    from neuronwidgets.core.models.addresses import Site
    from neuronwidgets.core.models.hooks import site_hooks

    texts = [
        "A wonderful, moving film with superb acting.",
        "The plot was dull and the dialogue was painfully bad.",
        "I loved every minute of this charming story.",
        "A tedious, boring mess that wastes its cast.",
    ]
    # importance: |gradient × activation| of the predicted class at layer 2's residual stream
    store = {}

    def keep(site, act):
        act.retain_grad()
        store["act"] = act

    with site_hooks(sentiment, [Site(2, "resid")], keep):  # ModelHandle.logits runs without autograd
        logits = sentiment.model(**sentiment.encode(texts)).logits
    logits.gather(1, logits.argmax(-1, keepdim=True)).sum().backward()
    act = store["act"]
    score = (act.grad * act).abs().sum((0, 1)).detach().numpy()
    ranking = {f"layer.2.resid:{i}": float(v) for i, v in enumerate(score)}
    c = compare_ablations(sentiment, texts, ranking, 20, n_random=5, seed=0)
    s = c.summary()
    assert s.loc["kl", "top"] > s.loc["kl", "random_mean"] + 3 * s.loc["kl", "random_std"]
    assert c.top.mean_delta_prob < c.random_values("delta_prob").min()


# ------------------------------------------------------------------------------------------------
# generation and steering
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_generate_is_greedy_and_applies_interventions_at_every_step(tiny_models, name) -> None:
    h = tiny_models[name]
    prompt = "the quick brown"
    enc = h.encode([prompt])
    n = enc["input_ids"].shape[1]
    with torch.inference_mode():
        direct = h.model.generate(**enc, max_new_tokens=6, do_sample=False)
    plain = generate(h, prompt, max_new_tokens=6)
    assert not isinstance(plain, list)
    assert plain.ids == direct[0, n:].tolist()
    # with an intervention: the same as greedy decoding by full forward passes under ablate (no KV cache)
    spec = Intervention.set({"layer.0.mlp:4": 8.0, "layer.1.resid:1": -6.0})
    steered = generate(h, prompt, spec, max_new_tokens=6)
    ids = enc["input_ids"]
    with intervene(h, spec), torch.inference_mode():
        for _ in range(6):
            nxt = h.model(input_ids=ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], 1)
            if int(nxt) == h.model.generation_config.eos_token_id:
                break
    assert not isinstance(steered, list)
    assert steered.ids == ids[0, n:].tolist()
    assert generate(h, [prompt, prompt], spec, max_new_tokens=6) == [steered, steered]


@pytest.mark.real_model
def test_smollm2_generate_equals_transformers_greedy(smollm2) -> None:
    prompt = "The capital of France is"
    enc = smollm2.encode([prompt])
    with torch.inference_mode():
        direct = smollm2.model.generate(**enc, max_new_tokens=8, do_sample=False)
    g = generate(smollm2, prompt, max_new_tokens=8)
    assert not isinstance(g, list)
    assert g.ids == direct[0, enc["input_ids"].shape[1] :].tolist()
    assert g.text.startswith(" Paris")


@pytest.mark.real_model
def test_steering_smollm2_towards_the_sea(smollm2) -> None:
    """Expert units (Suau et al. 2020): MLP neurons more active on sea texts than on office texts, set to
    4× their mean on the sea texts, pull a neutral prompt towards ' beach'."""
    sea = [
        "I love the ocean and the waves on the beach.",
        "The sea was calm and blue under the sun.",
        "We sailed across the ocean for days.",
        "Fish swim in the deep sea near the coral reef.",
        "The beach was covered with sand and shells.",
    ]
    office = [
        "I went to the office to finish my report.",
        "The meeting was moved to Tuesday afternoon.",
        "She bought a new phone at the store.",
        "The train arrived late at the station.",
        "He read a book about history.",
    ]
    layers = list(range(4, 20, 2))
    acts = extract_activations(smollm2, sea + office, layers=layers, components="mlp", granularity="token")
    on, off = range(len(sea)), range(len(sea), len(sea) + len(office))
    neurons = []
    for layer in layers:
        site = f"layer.{layer}.mlp"
        diff = acts.layer(site, on).mean(0) - acts.layer(site, off).mean(0)
        neurons += [f"{site}:{i}" for i in np.argsort(-diff)[:20]]
    values = steering_values(smollm2, neurons, sea)
    spec = Intervention.set({n: 4 * v for n, v in values.items()})

    prompt = "Yesterday after work I went to the"
    beach = smollm2.tokenizer.encode(" beach")[0]
    p_before = float(predict_logits(smollm2, prompt).softmax(-1)[0, beach])
    p_after = float(predict_logits(smollm2, prompt, spec).softmax(-1)[0, beach])
    assert p_after > 2 * p_before
    assert measure_effect(smollm2, prompt, spec).mean_kl > 0.1
    plain = generate(smollm2, prompt, max_new_tokens=6)
    steered = generate(smollm2, prompt, spec, max_new_tokens=6)
    assert steered != plain
    assert generate(smollm2, prompt, spec, max_new_tokens=6) == steered  # deterministic


@pytest.mark.real_model
def test_prefix_cache_equals_full_forward_on_real_models(sentiment, smollm2) -> None:
    text = "The film was a quiet and moving story about two old friends"
    for h in (sentiment, smollm2):
        for state in random_states(h, 4, seed=3):
            torch.testing.assert_close(
                predict_logits(h, text, state),
                predict_logits(h, text, state, prefix_cache=False),
                # float32 reassociation: the cached prefix and the full pass round differently, by CPU
                # (1.5e-5 on one of SmolLM2's 49,152 logits on an AMD EPYC); 1e-4 is the project's
                # float32 tolerance in logit units
                atol=1e-4,
                rtol=1e-5,
            )
        assert prefix_cache(h).status == "ok"
