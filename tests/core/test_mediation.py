"""Causal mediation analysis (Vig et al. 2020) against an independent hand-written implementation.

The reference runs the model with eager attention through a hand-written attention function that can
overwrite one head's attention probabilities (the head mediator of Vig et al.), and uses a plain forward
hook on the down projection's output for the neurons (one dimension of the MLP output at the profession
position). Tiny random models: Llama with grouped-query attention (9 query heads on 3 key/value heads)
and GPT-2 (fused ``c_attn``).
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from transformers.models.gpt2 import modeling_gpt2
from transformers.models.llama import modeling_llama

from neuronwidgets.core import Intervention, ablate, load_model, mediate, predict_logits
from neuronwidgets.core.interventions.prefix import has_hooks
from neuronwidgets.core.models import ModelHandle

TOL = 1e-4
TEMPLATES = ["The {} jumps over the", "A {} is the"]


@pytest.fixture(scope="module")
def models(tiny_dirs, tmp_path_factory) -> dict[str, ModelHandle]:
    """Tiny Llama with 9 query heads on 3 key/value heads, and tiny GPT-2 with 4 heads."""
    import transformers as T

    out = {}
    root = tmp_path_factory.mktemp("mediation-models")
    for fam in ("llama", "gpt2"):
        src = tiny_dirs[fam]
        cfg = T.AutoConfig.from_pretrained(src)
        if fam == "llama":
            cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads = 36, 9, 3
            cfg.head_dim = 4
            cls = T.LlamaForCausalLM
        else:
            cfg.n_embd, cfg.n_head = 16, 4
            cls = T.GPT2LMHeadModel
        torch.manual_seed(1)
        model = cls(cfg)
        with torch.no_grad():  # larger weights than the tiny default init, so patterns matter
            for name, p in model.named_parameters():
                if p.dim() == 2:
                    p.mul_(25.0 if fam == "gpt2" else 1.0 if "embed" in name else 4.0)
        folder = root / fam
        model.save_pretrained(folder)
        for f in src.iterdir():
            if "token" in f.name or f.name == "special_tokens_map.json":
                shutil.copy(f, folder / f.name)
        out[fam] = load_model(str(folder))
    return out


def words(h: ModelHandle) -> list[str]:
    """Words that are one token with a leading space (the tiny tokenizers know few)."""
    tok = h.tokenizer
    out = []
    for i in range(len(tok)):
        w = tok.decode([i])
        single = tok(w, add_special_tokens=False)["input_ids"] == [i]
        if w.startswith(" ") and w[1:].isalpha() and len(w) > 2 and single:
            out.append(w[1:])
    assert len(out) >= 6, out
    return sorted(out)[:6]


def setup(h: ModelHandle):
    w = words(h)
    pronouns = (w[0], w[1])
    set_words = {w[0]: w[2], w[1]: w[3]}
    professions = {w[4]: w[0], w[5]: w[1]}
    return pronouns, set_words, professions


# ------------------------------------------------------------------------------------------------
# The reference
# ------------------------------------------------------------------------------------------------


@contextmanager
def reference_attention(h: ModelHandle, override: dict[int, tuple[int, torch.Tensor]], record: dict):
    """Eager attention computed by hand; ``override[layer] = (head, probs [T, T])`` replaces that head's
    attention probabilities; every layer's probabilities are recorded in ``record``."""

    def attn(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        rep = query.shape[1] // key.shape[1]
        k = key.repeat_interleave(rep, 1)
        v = value.repeat_interleave(rep, 1)
        scale = query.shape[-1] ** -0.5 if scaling is None else scaling
        w = query @ k.transpose(-1, -2) * scale
        t = w.shape[-1]
        causal = torch.ones(t, t, dtype=torch.bool).triu(1)
        p = w.masked_fill(causal, float("-inf")).softmax(-1)
        record[module.layer_idx] = p[0].detach().clone()
        if module.layer_idx in override:
            head, probs = override[module.layer_idx]
            p = p.clone()
            p[0, head] = probs
        return (p @ v).transpose(1, 2).contiguous(), p

    mod = modeling_llama if "llama" in type(h.model).__name__.lower() else modeling_gpt2
    old_fn, old_impl = mod.eager_attention_forward, h.model.config._attn_implementation
    mod.eager_attention_forward = attn
    h.model.set_attn_implementation("eager")
    try:
        yield
    finally:
        mod.eager_attention_forward = old_fn
        h.model.set_attn_implementation(old_impl)


def ref_logits(h, text, override=None, record=None, mlp_out=None) -> torch.Tensor:
    """Last-position logits; ``mlp_out = (layer, position, dim, value)`` sets one MLP output dimension."""
    record = {} if record is None else record
    hooks = []
    if mlp_out is not None:
        layer, pos, dim, value = mlp_out

        def set_dim(m, a, out):
            out = out.clone()
            out[0, pos, dim] = value
            return out

        hooks.append(h.down_proj(layer).register_forward_hook(set_dim))
    try:
        with torch.no_grad(), reference_attention(h, override or {}, record):
            return h.model(**h.encode([text]), use_cache=False).logits[0, -1]
    finally:
        for r in hooks:
            r.remove()


def ref_mlp_out(h, text, layer) -> torch.Tensor:
    store = {}
    r = h.down_proj(layer).register_forward_hook(lambda m, a, o: store.setdefault("a", o[0].clone()))
    try:
        with torch.no_grad():
            h.model(**h.encode([text]), use_cache=False)
    finally:
        r.remove()
    return store["a"]


def reference(h: ModelHandle, templates, professions, set_words, layers):
    """TE, head NIE/NDE [layers, heads] and neuron NIE/NDE [layers, d_model], by hand."""
    tok = h.tokenizer
    n_heads = h.model.config.num_attention_heads
    d = h.hidden_size
    te, h_nie, h_nde = [], np.zeros((len(layers), n_heads)), np.zeros((len(layers), n_heads))
    n_nie, n_nde = np.zeros((len(layers), d)), np.zeros((len(layers), d))
    c = 0
    for prof, stereo in professions.items():
        anti = next(p for p in set_words if p != stereo)
        a_id = tok(f" {anti}", add_special_tokens=False)["input_ids"][0]
        s_id = tok(f" {stereo}", add_special_tokens=False)["input_ids"][0]

        def y(lg, a_id=a_id, s_id=s_id):
            p = lg.double().softmax(-1)
            return float(p[a_id] / p[s_id])

        for t in templates:
            null, setg = t.format(prof), t.format(set_words[stereo])
            pos = int((h.encode([null])["input_ids"][0] != h.encode([setg])["input_ids"][0]).nonzero()[0])
            rec_null, rec_set = {}, {}
            y0 = y(ref_logits(h, null, record=rec_null))
            y1 = y(ref_logits(h, setg, record=rec_set))
            te.append(y1 / y0 - 1)
            c += 1
            for i, L in enumerate(layers):
                for head in range(n_heads):
                    nie = y(ref_logits(h, null, {L: (head, rec_set[L][head])})) / y0 - 1
                    nde = y(ref_logits(h, setg, {L: (head, rec_null[L][head])})) / y0 - 1
                    h_nie[i, head] += nie
                    h_nde[i, head] += nde
                out_null, out_set = ref_mlp_out(h, null, L), ref_mlp_out(h, setg, L)
                for dim in range(d):
                    n_nie[i, dim] += y(ref_logits(h, null, mlp_out=(L, pos, dim, out_set[pos, dim]))) / y0 - 1
                    n_nde[i, dim] += (
                        y(ref_logits(h, setg, mlp_out=(L, pos, dim, out_null[pos, dim]))) / y0 - 1
                    )
    return np.mean(te), h_nie / c, h_nde / c, n_nie / c, n_nde / c


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fam", ["llama", "gpt2"])
def test_mediation_matches_the_hand_written_reference(models, fam) -> None:
    h = models[fam]
    _, set_words, professions = setup(h)
    layers = [0, 1]
    res = mediate(h, TEMPLATES, professions, set_words=set_words, neuron_layers=layers, head_layers=layers)
    te, h_nie, h_nde, n_nie, n_nde = reference(h, TEMPLATES, professions, set_words, layers)
    assert len(res.cases) == len(TEMPLATES) * len(professions)
    assert res.total_effect == pytest.approx(te, abs=TOL)
    assert res.head_mediator == "attention" and res.neuron_component == "mlp_out"
    assert np.abs(res.head_nie - h_nie).max() <= TOL
    assert np.abs(res.head_nde - h_nde).max() <= TOL
    assert np.abs(res.neuron_nie - n_nie).max() <= TOL
    assert np.abs(res.neuron_nde - n_nde).max() <= TOL
    # the swap is not vacuous: heads (and neurons) do carry effects in these random models
    assert np.abs(h_nie).max() > 1e-3 and np.abs(n_nie).max() > 1e-3
    assert res.neurons.neurons[0].startswith("layer.") and ".mlp_out:" in res.neurons.neurons[0]
    assert h.model.config._attn_implementation == "sdpa"
    assert not has_hooks(h.model)


@pytest.mark.parametrize("fam", ["llama", "gpt2"])
def test_identical_prompts_give_exactly_zero_effects(models, fam) -> None:
    h = models[fam]
    w = words(h)
    res = mediate(
        h,
        TEMPLATES,
        {w[4]: w[0]},
        set_words={w[0]: w[4], w[1]: w[4]},
        neuron_layers=[0, 1],
        head_layers=[0, 1],
    )
    for arr in (res.te, res.head_nie, res.head_nde, res.neuron_nie, res.neuron_nde):
        assert np.all(arr == 0.0)


def test_neuron_ranking_addresses_work_with_ablate(models) -> None:
    h = models["llama"]
    _, set_words, professions = setup(h)
    res = mediate(h, TEMPLATES[:1], professions, set_words=set_words, neuron_layers=[1], head_layers=[])
    top = res.neurons.neurons[0]
    assert top == f"layer.1.mlp_out:{int(np.argmax(res.neuron_nie[0]))}"
    assert len(res.neurons) == h.hidden_size and np.isnan(res.head_nie).all()
    text = res.cases[0]
    dim = int(top.rsplit(":", 1)[1])
    enc = h.encode([text])
    # zeroing one MLP output dimension at every position, by hand
    r = h.down_proj(1).register_forward_hook(lambda m, a, o: o.index_fill(-1, torch.tensor([dim]), 0.0))
    try:
        with torch.no_grad():
            expected = h.model(**enc, use_cache=False).logits[0, -1]
    finally:
        r.remove()
    with torch.no_grad():
        plain = h.model(**enc, use_cache=False).logits[0, -1]
        ours = predict_logits(h, [text], Intervention.zero([top]))[0]
        with ablate(h, [top]):
            inside = h.model(**enc, use_cache=False).logits[0, -1]
    assert (expected - plain).abs().max() > 1e-6
    assert (torch.as_tensor(ours) - expected).abs().max() <= 1e-5
    assert (inside - expected).abs().max() <= 1e-5
    assert not has_hooks(h.model)


def test_hooks_and_attention_implementation_restored_on_errors(models, monkeypatch) -> None:
    h = models["llama"]
    _, set_words, professions = setup(h)
    from neuronwidgets.core.interventions import mediation

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(mediation, "row_values", boom)
    with pytest.raises(RuntimeError, match="boom"):
        mediate(h, TEMPLATES[:1], professions, set_words=set_words, neuron_layers=[], head_layers=[0])
    assert not has_hooks(h.model) and h.model.config._attn_implementation == "sdpa"

    calls = []

    def bad_forward(*a, **k):
        calls.append(h.model.config._attn_implementation)
        raise RuntimeError("inside the eager pass")

    monkeypatch.undo()
    monkeypatch.setattr(h.model, "forward", bad_forward)
    with pytest.raises(RuntimeError):
        mediation.attention_state(h, h.encode(["The fox"]))
    assert calls == ["eager"] and h.model.config._attn_implementation == "sdpa"


def test_mediation_on_smollm2_follows_vig_et_al() -> None:
    h = load_model("smollm2")
    res = mediate(
        h, ["The {} said that"], {"nurse": "she", "engineer": "he"}, neuron_layers=[29], head_layers=[20]
    )
    he, she = (h.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in (" he", " she"))

    def y(lg, anti, stereo):
        p = lg.double().softmax(-1)
        return float(p[anti] / p[stereo])

    rec_null, rec_set = {}, {}
    y0 = y(ref_logits(h, "The nurse said that", record=rec_null), he, she)
    y1 = y(ref_logits(h, "The man said that", record=rec_set), he, she)
    assert res.y_null[0] == pytest.approx(y0, rel=1e-4)
    assert res.te[0] == pytest.approx(y1 / y0 - 1, rel=1e-3, abs=1e-5)
    assert len(res.cases) == 2 and res.total_effect == pytest.approx(res.te.mean())
    # head 20.4 (query head 4 of 9, on key/value head 1 of 3): the nurse case's NIE and NDE
    nie = y(ref_logits(h, "The nurse said that", {20: (4, rec_set[20][4])}), he, she) / y0 - 1
    nde = y(ref_logits(h, "The man said that", {20: (4, rec_null[20][4])}), he, she) / y0 - 1
    one = mediate(h, ["The {} said that"], {"nurse": "she"}, neuron_layers=[29], head_layers=[20])
    assert abs(one.head_nie[20, 4] - nie) <= TOL and abs(one.head_nde[20, 4] - nde) <= TOL
    assert np.isnan(one.head_nie[19]).all()
    # NDE of neuron layer.29.mlp_out:5: the set-gender prompt with that MLP output dimension held at null
    src = ref_mlp_out(h, "The nurse said that", 29)
    lg = ref_logits(h, "The man said that", mlp_out=(29, 1, 5, src[1, 5]))
    assert one.neuron_nde[0, 5] == pytest.approx(y(lg, he, she) / y0 - 1, rel=1e-3, abs=1e-5)
    assert one.neurons.method == "mediation-nie" and len(one.neurons) == h.hidden_size == 576
    assert one.neurons.neurons[0] == f"layer.29.mlp_out:{int(np.argmax(one.neuron_nie[0]))}"
    assert set(res.top_heads(5).columns) >= {"head", "nie", "nde"}
    assert not has_hooks(h.model) and h.model.config._attn_implementation == "sdpa"


def test_mlp_out_site_is_the_down_projection_output(models) -> None:
    from neuronwidgets.core import extract_activations, parse_site

    h = models["llama"]
    assert (
        parse_site("layer.1.mlp_out").component == "mlp_out" and h.width("layer.1.mlp_out") == h.hidden_size
    )
    with pytest.raises(ValueError, match="embeddings"):
        parse_site("embed.mlp_out")
    assert [s.name for s in h.sites()] == [s.name for s in h.sites(["resid", "mlp"])]  # "all" unchanged
    text = "The quick brown fox"
    acts = extract_activations(
        h, [text], layers=[1], components=["mlp", "mlp_out", "resid"], granularity="token", progress=False
    )
    assert [str(s) for s in acts.sites] == ["layer.1.mlp", "layer.1.mlp_out", "layer.1.resid"]
    n = h.encode([text])["input_ids"].shape[1]
    expected = ref_mlp_out(h, text, 1)
    got = acts.layer("layer.1.mlp_out")
    assert got.shape[1] == h.hidden_size and got.shape[0] <= n
    assert np.abs(got - expected[n - got.shape[0] :].numpy()).max() <= 1e-5
