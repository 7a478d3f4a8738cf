"""Activation patching, causal tracing and attribution patching, each checked against
hand-written PyTorch hooks on full forward passes (no prefix reuse, no batching)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neuronwidgets.core import (
    attribution_patch,
    causal_trace,
    load_model,
    patch,
)
from neuronwidgets.core.interventions.prefix import has_hooks
from neuronwidgets.core.models import ModelHandle

TOL = 1e-4
TINY_CLEAN, TINY_CORRUPT = "Paris is the capital of", "Berl is the capital of"
SMOL_CLEAN = "The Eiffel Tower is located in the city of"
SMOL_CORRUPT = "The Colosseum is located in the city of"


@pytest.fixture(scope="module")
def smollm2() -> ModelHandle:
    return load_model("smollm2")


# ------------------------------------------------------------------------------------------------
# The reference: one full forward pass per cell, with a plain hook
# ------------------------------------------------------------------------------------------------


def o_proj(h: ModelHandle, layer: int) -> nn.Module:
    block = h.blocks[layer]
    return block.self_attn.o_proj if hasattr(block, "self_attn") else block.attn.c_proj


def _module(h: ModelHandle, kind: str, layer: int) -> tuple[nn.Module, str]:
    if kind == "resid":
        return (h.blocks[0], "pre") if layer < 0 else (h.blocks[layer], "post")
    return (h.down_proj(layer), "pre") if kind == "mlp" else (o_proj(h, layer), "pre")


def reference_acts(h: ModelHandle, text: str, kind: str, layer: int, embeds=None) -> torch.Tensor:
    module, where = _module(h, kind, layer)
    store = {}

    def pre(m, args, kwargs):
        store["a"] = (args[0] if args else kwargs["hidden_states"]).clone()

    def post(m, args, out):
        store["a"] = (out[0] if isinstance(out, tuple) else out).clone()

    r = (
        module.register_forward_pre_hook(pre, with_kwargs=True)
        if where == "pre"
        else module.register_forward_hook(post)
    )
    try:
        with torch.no_grad():
            enc = h.encode([text])
            if embeds is None:
                h.model(**enc, use_cache=False)
            else:
                h.model(inputs_embeds=embeds, attention_mask=enc["attention_mask"], use_cache=False)
    finally:
        r.remove()
    return store["a"][0]


def reference_logits(h, text, kind, layer, positions, dims, values, embeds=None) -> torch.Tensor:
    """Logits at the last position of ``text`` with act[positions, dims] = values at the site."""
    module, where = _module(h, kind, layer)
    idx = torch.tensor(positions)[:, None], torch.as_tensor(dims)[None, :]

    def edit(t):
        t = t.clone()
        t[0][idx] = values
        return t

    def pre(m, args, kwargs):
        if args:
            return (edit(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}

    def post(m, args, out):
        return (edit(out[0]), *out[1:]) if isinstance(out, tuple) else edit(out)

    r = (
        module.register_forward_pre_hook(pre, with_kwargs=True)
        if where == "pre"
        else module.register_forward_hook(post)
    )
    try:
        with torch.no_grad():
            enc = h.encode([text])
            if embeds is None:
                return h.model(**enc, use_cache=False).logits[0, -1]
            return h.model(
                inputs_embeds=embeds, attention_mask=enc["attention_mask"], use_cache=False
            ).logits[0, -1]
    finally:
        r.remove()


def reference_grid(h, clean, corrupt, kind, layers, positions, units, metric, direction="restore"):
    """units: list of dims tensors per unit (per layer the same list)."""
    base, source = (corrupt, clean) if direction == "restore" else (clean, corrupt)
    out = []
    for layer in layers:
        src = reference_acts(h, source, kind, layer)
        for dims in units:
            row = []
            for p in positions:
                group = [p] if isinstance(p, int) else list(p)
                vals = src[torch.tensor(group)[:, None], torch.as_tensor(dims)[None, :]]
                row.append(metric(reference_logits(h, base, kind, layer, group, dims, vals)))
            out.append(row)
    return np.array(out)


def logit_diff(h, target, foil):
    t = h.tokenizer(target, add_special_tokens=False)["input_ids"][0]
    f = h.tokenizer(foil, add_special_tokens=False)["input_ids"][0]
    return lambda lg: float(lg[t] - lg[f])


def tiny_pair(h: ModelHandle) -> tuple[str, str]:
    a, b = (h.encode([t])["input_ids"].shape[1] for t in (TINY_CLEAN, TINY_CORRUPT))
    assert a == b, "the tiny test prompts must have equal token counts"
    return TINY_CLEAN, TINY_CORRUPT


def tiny_target(h: ModelHandle) -> tuple[int, int]:
    with torch.no_grad():
        lg = h.model(**h.encode([TINY_CLEAN]), use_cache=False).logits[0, -1]
    top = lg.topk(2).indices
    return int(top[0]), int(top[1])


# ------------------------------------------------------------------------------------------------
# patch() against the reference
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fam", ["llama", "gpt2"])
@pytest.mark.parametrize("direction", ["restore", "break"])
def test_resid_grid_matches_hooks_on_tiny_models(tiny_models, fam, direction) -> None:
    h = tiny_models[fam]
    clean, corrupt = tiny_pair(h)
    t, f = tiny_target(h)
    res = patch(h, clean, corrupt, layers=[-1, 0, 1], target=t, foil=f, direction=direction)
    n = h.encode([clean])["input_ids"].shape[1]
    ref = reference_grid(
        h, clean, corrupt, "resid", [-1, 0, 1], list(range(n)), [torch.arange(h.hidden_size)],
        lambda lg: float(lg[t] - lg[f]), direction,
    )  # fmt: skip
    assert res.values.shape == (3, n)
    assert np.abs(res.values - ref).max() <= TOL
    assert res.units == ("embed.resid", "layer.0.resid", "layer.1.resid")
    assert res.meta["suffix_reruns"] is (fam == "llama")


@pytest.mark.parametrize("fam", ["llama", "gpt2"])
def test_heads_and_neurons_match_hooks_on_tiny_models(tiny_models, fam) -> None:
    h = tiny_models[fam]
    clean, corrupt = tiny_pair(h)
    t, f = tiny_target(h)
    metric = lambda lg: float(lg[t] - lg[f])  # noqa: E731
    positions = [0, 2, (3, 5), -1]
    n = h.encode([clean])["input_ids"].shape[1]
    ref_pos = [0, 2, (3, 5), n - 1]
    heads = patch(h, clean, corrupt, component="attn", layers=[0, 1], positions=positions, target=t, foil=f)
    width = h.hidden_size // 2
    ref = reference_grid(
        h,
        clean,
        corrupt,
        "attn",
        [0, 1],
        ref_pos,
        [torch.arange(k * width, (k + 1) * width) for k in range(2)],
        metric,
    )
    assert heads.units == ("layer.0.head.0", "layer.0.head.1", "layer.1.head.0", "layer.1.head.1")
    assert np.abs(heads.values - ref).max() <= TOL
    neurons = patch(
        h,
        clean,
        corrupt,
        component="mlp",
        layers=[1],
        neurons=[0, 7, 23],
        positions=positions,
        target=t,
        foil=f,
    )
    ref = reference_grid(
        h, clean, corrupt, "mlp", [1], ref_pos, [torch.tensor([i]) for i in (0, 7, 23)], metric
    )
    assert np.abs(neurons.values - ref).max() <= TOL
    ranking = neurons.ranking()
    assert set(ranking.neurons) == {"layer.1.mlp:0", "layer.1.mlp:7", "layer.1.mlp:23"}
    whole = patch(h, clean, corrupt, component="mlp", positions=[1], target=t, foil=f)
    ref = reference_grid(h, clean, corrupt, "mlp", [0, 1], [1], [torch.arange(h.mlp_size)], metric)
    assert np.abs(whole.values - ref).max() <= TOL


def test_smollm2_resid_heads_neurons_match_hooks(smollm2) -> None:
    h = smollm2
    metric = logit_diff(h, " Paris", " Rome")
    pos = [3, 9]
    res = patch(h, SMOL_CLEAN, SMOL_CORRUPT, layers=[0, 29], positions=pos, target=" Paris", foil=" Rome")
    ref = reference_grid(h, SMOL_CLEAN, SMOL_CORRUPT, "resid", [0, 29], pos, [torch.arange(576)], metric)
    assert np.abs(res.values - ref).max() <= TOL
    assert res.meta["suffix_reruns"]
    # grouped-query attention: 9 query heads share 3 key/value heads; a head is its 64 dims before o_proj
    heads = patch(
        h,
        SMOL_CLEAN,
        SMOL_CORRUPT,
        component="attn",
        layers=[20],
        heads=[0, 4, 8],
        positions=[3],
        target=" Paris",
        foil=" Rome",
    )
    ref = reference_grid(
        h,
        SMOL_CLEAN,
        SMOL_CORRUPT,
        "attn",
        [20],
        [3],
        [torch.arange(k * 64, (k + 1) * 64) for k in (0, 4, 8)],
        metric,
    )
    assert np.abs(heads.values - ref).max() <= TOL
    neurons = patch(
        h,
        SMOL_CLEAN,
        SMOL_CORRUPT,
        component="mlp",
        layers=[25],
        neurons=[3, 1000],
        positions=[3],
        target=" Paris",
        foil=" Rome",
    )
    ref = reference_grid(
        h, SMOL_CLEAN, SMOL_CORRUPT, "mlp", [25], [3], [torch.tensor([3]), torch.tensor([1000])], metric
    )
    assert np.abs(neurons.values - ref).max() <= TOL
    assert res.clean == pytest.approx(
        metric(
            reference_logits(
                h, SMOL_CLEAN, "resid", 0, [0], [0], reference_acts(h, SMOL_CLEAN, "resid", 0)[:1, :1]
            )
        ),
        abs=TOL,
    )


# ------------------------------------------------------------------------------------------------
# Properties other tools got wrong
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fam", ["llama", "gpt2"])
def test_identical_prompts_give_exactly_zero_even_in_train_mode(tiny_models, fam) -> None:
    h = tiny_models[fam]
    t, f = tiny_target(h)
    h.model.train()
    try:
        for component in ("resid", "attn", "mlp"):
            res = patch(h, TINY_CLEAN, TINY_CLEAN, component=component, target=t, foil=f)
            assert np.all(res.effect == 0.0)
            assert res.clean == res.corrupted
        assert h.model.training  # the caller's mode is restored
    finally:
        h.model.eval()


def test_train_mode_gives_the_eval_results(tiny_models) -> None:
    h = tiny_models["llama"]
    h.model.config.attention_dropout = 0.5
    for block in h.blocks:
        block.self_attn.attention_dropout = 0.5
    try:
        t, f = tiny_target(h)
        ev = patch(h, TINY_CLEAN, TINY_CORRUPT, target=t, foil=f)
        h.model.train()
        tr = patch(h, TINY_CLEAN, TINY_CORRUPT, target=t, foil=f)
        assert np.array_equal(ev.values, tr.values)
    finally:
        h.model.eval()
        for block in h.blocks:
            block.self_attn.attention_dropout = 0.0


def test_batched_equals_one_at_a_time_and_is_not_the_corrupted_run(smollm2) -> None:
    kw = dict(layers=[3, 28], positions=[3, 9], target=" Paris", foil=" Rome")
    batched = patch(smollm2, SMOL_CLEAN, SMOL_CORRUPT, **kw)
    single = patch(smollm2, SMOL_CLEAN, SMOL_CORRUPT, chunk_tokens=1, **kw)
    assert np.abs(batched.values - single.values).max() <= 1e-5
    assert np.abs(batched.values[:, 0] - batched.corrupted).max() > 1.0  # patches really act


@pytest.mark.parametrize("fam", ["llama", "gpt2"])
def test_patching_every_position_restores_the_clean_output(tiny_models, fam) -> None:
    h = tiny_models[fam]
    t, f = tiny_target(h)
    n = h.encode([TINY_CLEAN])["input_ids"].shape[1]
    res = patch(h, TINY_CLEAN, TINY_CORRUPT, layers=[-1, 0, 1], positions=[tuple(range(n))], target=t, foil=f)
    assert np.abs(res.values - res.clean).max() <= 1e-5
    assert np.allclose(res.recovered, 1.0, atol=1e-4)
    broken = patch(
        h, TINY_CLEAN, TINY_CORRUPT, positions=[tuple(range(n))], target=t, foil=f, direction="break"
    )
    assert np.abs(broken.values - broken.corrupted).max() <= 1e-5


def test_hooks_are_removed_even_on_errors(tiny_models) -> None:
    h = tiny_models["llama"]
    before = {k: v.clone() for k, v in h.model.state_dict().items()}

    def bad(logits):
        raise RuntimeError("metric failed")

    for component in ("resid", "attn", "mlp"):
        with pytest.raises(RuntimeError, match="metric failed"):
            patch(h, TINY_CLEAN, TINY_CORRUPT, component=component, metric=bad)
        assert not has_hooks(h.model)
    with pytest.raises(RuntimeError, match="metric failed"):
        attribution_patch(h, TINY_CLEAN, TINY_CORRUPT, metric=bad)
    assert not has_hooks(h.model)
    assert all(torch.equal(v, before[k]) for k, v in h.model.state_dict().items())


def test_metrics_kl_prob_and_callable(tiny_models) -> None:
    h = tiny_models["llama"]
    t, _ = tiny_target(h)
    kl = patch(h, TINY_CLEAN, TINY_CORRUPT, metric="kl", layers=[1])
    assert kl.clean == pytest.approx(0.0, abs=1e-6) and kl.corrupted > 0
    with torch.no_grad():
        lc = h.model(**h.encode([TINY_CLEAN]), use_cache=False).logits[0, -1].log_softmax(-1)
        lk = h.model(**h.encode([TINY_CORRUPT]), use_cache=False).logits[0, -1].log_softmax(-1)
    assert kl.corrupted == pytest.approx(float((lc.exp() * (lc - lk)).sum()), abs=1e-5)
    prob = patch(h, TINY_CLEAN, TINY_CORRUPT, metric="prob", target=t, layers=[1])
    assert prob.clean == pytest.approx(float(lc.exp()[t]), abs=1e-6)
    custom = patch(h, TINY_CLEAN, TINY_CORRUPT, metric=lambda lg: lg.float().softmax(-1)[:, t], layers=[1])
    assert np.allclose(custom.values, prob.values, atol=1e-7)
    frame = prob.to_frame()
    assert len(frame) == prob.values.size and set(frame.columns) >= {"unit", "position", "value", "effect"}
    prob.plot()


def test_clear_errors(tiny_models) -> None:
    h = tiny_models["llama"]
    t, f = tiny_target(h)
    with pytest.raises(ValueError, match="same number of tokens"):
        patch(h, TINY_CLEAN, "Paris is", target=t, foil=f)
    with pytest.raises(ValueError, match="unknown component 'heads'"):
        patch(h, TINY_CLEAN, TINY_CORRUPT, component="heads")
    with pytest.raises(ValueError, match="layer 5 is out of range"):
        patch(h, TINY_CLEAN, TINY_CORRUPT, layers=[5])
    with pytest.raises(ValueError, match="head 2 is out of range"):
        patch(h, TINY_CLEAN, TINY_CORRUPT, component="attn", heads=[2])
    with pytest.raises(ValueError, match="neuron 24 is out of range"):
        patch(h, TINY_CLEAN, TINY_CORRUPT, component="mlp", neurons=[24])
    with pytest.raises(ValueError, match="position 40 in positions is out of range"):
        patch(h, TINY_CLEAN, TINY_CORRUPT, positions=[40])
    with pytest.raises(ValueError, match="foil"):
        patch(h, TINY_CLEAN, TINY_CORRUPT, target=t, foil=t)
    with pytest.raises(ValueError, match="exactly one"):
        patch(h, TINY_CLEAN, TINY_CORRUPT, target="capital of")
    with pytest.raises(ValueError, match="unknown metric"):
        patch(h, TINY_CLEAN, TINY_CORRUPT, metric="accuracy")
    with pytest.raises(ValueError, match="unknown direction"):
        patch(h, TINY_CLEAN, TINY_CORRUPT, direction="forward")
    with pytest.raises(ValueError, match="one number per row"):
        patch(h, TINY_CLEAN, TINY_CORRUPT, metric=lambda lg: lg)
    with pytest.raises(TypeError, match="ModelHandle"):
        patch(123, TINY_CLEAN, TINY_CORRUPT)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="language model"):
        patch(tiny_models["bert"], TINY_CLEAN, TINY_CORRUPT)
    with pytest.raises(ValueError, match="does not occur"):
        causal_trace(h, TINY_CLEAN, "Rome")
    with pytest.raises(ValueError, match="samples must be"):
        causal_trace(h, TINY_CLEAN, "Paris", samples=0)
    assert not has_hooks(h.model)


# ------------------------------------------------------------------------------------------------
# Causal tracing, attribution patching (mediation: test_mediation.py)
# ------------------------------------------------------------------------------------------------


def test_causal_trace_matches_hooks_with_the_same_noise(tiny_models) -> None:
    h = tiny_models["llama"]
    t, _ = tiny_target(h)
    res = causal_trace(h, TINY_CLEAN, "Paris", target=t, samples=2, seed=3, layers=[-1, 0, 1])
    subj = res.meta["subject_positions"]
    assert subj == [0, 1, 2]
    enc = h.encode([TINY_CLEAN])
    with torch.no_grad():
        embeds = h.model.get_input_embeddings()(enc["input_ids"])
    std = float(h.model.get_input_embeddings().weight.std())
    gen = torch.Generator().manual_seed(3)
    n = enc["input_ids"].shape[1]
    total = np.zeros((3, n))
    corr = []
    for _ in range(2):
        noisy = embeds.clone()
        noisy[0, subj] += torch.randn((len(subj), embeds.shape[-1]), generator=gen) * 3 * std
        with torch.no_grad():
            corr.append(
                float(
                    h.model(inputs_embeds=noisy, attention_mask=enc["attention_mask"], use_cache=False)
                    .logits[0, -1]
                    .softmax(-1)[t]
                )
            )
        for i, layer in enumerate([-1, 0, 1]):
            src = reference_acts(h, TINY_CLEAN, "resid", layer)
            for p in range(n):
                lg = reference_logits(
                    h, TINY_CLEAN, "resid", layer, [p], torch.arange(h.hidden_size), src[[p]], embeds=noisy
                )
                total[i, p] += float(lg.softmax(-1)[t])
    assert res.corrupted == pytest.approx(np.mean(corr), abs=1e-6)
    assert np.abs(res.values - total / 2).max() <= TOL
    again = causal_trace(h, TINY_CLEAN, "Paris", target=t, samples=2, seed=3, layers=[-1, 0, 1])
    assert np.array_equal(res.values, again.values)


def test_attribution_patching_is_the_first_order_term_and_reports_agreement(tiny_models) -> None:
    h = tiny_models["llama"]
    t, f = tiny_target(h)
    res = attribution_patch(h, TINY_CLEAN, TINY_CORRUPT, layers=[0, 1], target=t, foil=f)
    # independent: gradient of the metric at layer 0's output in the corrupted run, times the difference
    enc = h.encode([TINY_CORRUPT])
    store = {}

    def keep(m, a, o):
        store["a"] = o[0] if isinstance(o, tuple) else o

    r = h.blocks[0].register_forward_hook(keep)
    try:
        lg = h.model(**enc, use_cache=False).logits[0, -1]
    finally:
        r.remove()
    (g,) = torch.autograd.grad(lg[t] - lg[f], [store["a"]])
    delta = reference_acts(h, TINY_CLEAN, "resid", 0) - reference_acts(h, TINY_CORRUPT, "resid", 0)
    expected = (delta * g[0]).sum(-1).numpy()
    assert np.abs(res.approx.effect[0] - expected).max() <= 1e-5
    true = patch(h, TINY_CLEAN, TINY_CORRUPT, layers=[0, 1], target=t, foil=f)
    assert np.array_equal(res.true.values, true.values)
    assert res.correlation == pytest.approx(np.corrcoef(true.effect.ravel(), res.approx.effect.ravel())[0, 1])
    assert res.approx.method == "attribution patching"
    assert not has_hooks(h.model)
