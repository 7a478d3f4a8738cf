"""Causal mediation analysis of gender bias (Vig et al. 2020, "Investigating Gender Bias in Language
Models Using Causal Mediation Analysis").

For a prompt ``u`` such as "The nurse said that", with a profession whose stereotypical pronoun is
" she":

- ``y(u) = p(anti-stereotypical pronoun | u) / p(stereotypical pronoun | u)`` (here p(" he") / p(" she"));
- the *set-gender* intervention swaps the profession for an anti-stereotypical gendered word (nurse →
  " man"; engineer → " woman"), giving ``u_set``;
- total effect ``TE = y(u_set) / y(u) − 1``;
- per mediator ``z`` (one neuron, or one attention head):
  natural indirect effect ``NIE = y(u, z set to its value under u_set) / y(u) − 1`` and natural direct
  effect ``NDE = y(u_set, z held at its value under u) / y(u) − 1``;
- everything averaged over templates × single-token professions.

The mediators, as in Vig et al.:

- a **neuron** is one dimension of a block's MLP output (what its down / ``c_proj`` projection returns,
  ``d_model`` wide, before it is added to the residual stream) at the profession position: address
  ``layer.L.mlp_out:i``, which :func:`~neuronwidgets.core.ablate`, :func:`~neuronwidgets.core.intervene`
  and the ablation panel accept like any other neuron;
- a **head**'s mediator is its attention pattern: for the NIE the null prompt runs with that head's
  attention weights replaced by the weights it has under the set-gender prompt, multiplied by the values
  of the current (null) run; for the NDE the set-gender prompt runs with that head's weights held at their
  null values, times the set-gender run's values. Everything else (the other heads, the MLPs, the head's
  own queries/keys/values) is computed as usual. With grouped-query attention (SmolLM2: 9 query heads on
  3 key/value heads) a query head's pattern multiplies the values of the key/value head it shares.

How: one extra forward pass per prompt with eager attention records every head's pattern (softmax of
``QK^T`` with the model's own scaling and mask, after RoPE) and the values it multiplies (the model's
key/value cache); a head's swapped output is then ``A_swapped @ V_current``, written into that head's
slice of the attention output projection's input. Patterns are equal before the profession (causal
attention), so only the rows that differ are written, and a head whose pattern is identical in both runs
is not re-run at all (identical prompts give exactly zero effects). The intervened runs themselves use the
model's own attention implementation (SDPA) and recompute only the blocks and positions after the patch
(:mod:`~neuronwidgets.core.interventions.patch_engine`).

Deviation from Vig et al.'s experiments: they measured heads on Winobias / Winogender sentences (the
intervention swaps the pronoun and y compares two continuations); here heads and neurons share the
profession-template protocol above, so the head ranking need not reproduce theirs exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..display import Result, new_axes, number, summary
from ..results import NeuronRanking
from .edits import _check_handle
from .patch_engine import _ATTN_OUT_PATHS, Engine, Row, Run, _model_cache, eval_mode, num_heads
from .patching import Metric, Unit, make_units, row_values, sweep

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DEFAULT_SET_WORDS: Mapping[str, str] = {"she": "man", "he": "woman"}


@dataclass(frozen=True)
class MediationResult(Result):
    """Vig et al.'s effects, averaged over template × profession prompts (from :func:`mediate`).

    Attributes:
        cases: ``[C]`` the null prompts.
        y_null: ``[C]`` y of each null prompt (p(anti-stereotypical) / p(stereotypical) pronoun).
        y_set: ``[C]`` y of each set-gender prompt.
        te: ``[C]`` each prompt's total effect; :attr:`total_effect` is their mean.
        head_nie: float64 ``[layers, heads]``, each head's mean NIE (NaN for blocks not analysed).
        head_nde: float64 ``[layers, heads]``, each head's mean NDE (NaN for blocks not analysed).
        neuron_layers: The blocks whose neurons (MLP output dimensions) were analysed.
        neuron_nie: ``[len(neuron_layers), width]`` mean NIE per neuron (width ``d_model`` for the MLP
            output).
        neuron_nde: ``[len(neuron_layers), width]`` mean NDE per neuron.
        neurons: A :class:`~neuronwidgets.core.NeuronRanking` of those neurons by NIE (column ``"nde"``),
            addresses ``layer.L.mlp_out:i``, usable by every ranking view, :func:`~neuronwidgets.core.ablate` and the
            ablation panel.
        head_mediator: What a head's intervention swaps: ``"attention"``, the head's attention weights
            (Vig et al.), multiplied by the current run's values.
        neuron_component: The site component of the neurons: ``"mlp_out"``, one dimension of the MLP
            output at the profession position (Vig et al.).
        meta: Skipped professions and the settings.

    Example:
        >>> med = mediate(lm, ["The {} said that"], {"nurse": "she", "engineer": "he"})  # doctest: +SKIP
        >>> med.top_heads(5)  # doctest: +SKIP
    """

    cases: tuple[str, ...]
    y_null: np.ndarray
    y_set: np.ndarray
    te: np.ndarray
    head_nie: np.ndarray
    head_nde: np.ndarray
    neuron_layers: tuple[int, ...]
    neuron_nie: np.ndarray
    neuron_nde: np.ndarray
    neurons: NeuronRanking
    head_mediator: str = "attention"
    neuron_component: str = "mlp_out"
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total_effect(self) -> float:
        return float(np.mean(self.te))

    def top_heads(self, k: int = 10, by: str = "nie") -> pd.DataFrame:
        """The ``k`` heads with the largest mean NIE (or ``by="nde"``)."""
        if by not in ("nie", "nde"):
            raise ValueError(f"by must be 'nie' or 'nde', got {by!r}")
        frame = self.heads_frame().dropna()
        return frame.sort_values(by, ascending=False, kind="stable").head(k).reset_index(drop=True)

    def heads_frame(self) -> pd.DataFrame:
        layers, heads = np.meshgrid(
            np.arange(self.head_nie.shape[0]), np.arange(self.head_nie.shape[1]), indexing="ij"
        )
        return pd.DataFrame(
            {
                "head": [f"{a}.{b}" for a, b in zip(layers.ravel(), heads.ravel())],
                "layer": layers.ravel(),
                "index": heads.ravel(),
                "nie": self.head_nie.ravel(),
                "nde": self.head_nde.ravel(),
            }
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per case: prompt, y_null, y_set, TE."""
        return pd.DataFrame({"prompt": self.cases, "y_null": self.y_null, "y_set": self.y_set, "te": self.te})

    def plot(self, ax: Any = None) -> Axes:
        """Heatmap of the heads' mean NIE (layers × heads), drawn into ``ax`` (default: a new figure);
        returns the Axes."""
        ax = new_axes(ax, (5.0, max(3.0, 0.2 * self.head_nie.shape[0] + 1)))
        lim = float(np.nanmax(np.abs(self.head_nie))) if np.isfinite(self.head_nie).any() else 1.0
        lim = lim or 1.0
        im = ax.imshow(self.head_nie, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(f"NIE per head (TE = {self.total_effect:.3g})")
        ax.figure.colorbar(im, ax=ax, label="natural indirect effect")
        return ax

    def __repr__(self) -> str:
        top = self.top_heads(3)
        heads = ", ".join(f"{h} ({number(v, 3)})" for h, v in zip(top["head"], top["nie"]))
        return summary(
            f"MediationResult: {len(self.cases)} prompts, total effect {number(self.total_effect)}",
            f"top heads by NIE: {heads}" if heads else "",
            f"neurons of layers {list(self.neuron_layers)}: top {self.neurons.neurons[0]}"
            if len(self.neurons)
            else "",
            doors=".to_frame() · .top_heads() · .neurons · .plot() · .show()",
        )


def _single(handle: Any, word: str) -> int | None:
    ids = handle.tokenizer(word, add_special_tokens=False)["input_ids"]
    return int(ids[0]) if len(ids) == 1 else None


def mediate(
    model: Any,
    templates: Sequence[str],
    professions: Mapping[str, str],
    *,
    set_words: Mapping[str, str] = DEFAULT_SET_WORDS,
    neuron_layers: Sequence[int] | None = None,
    head_layers: Sequence[int] | None = None,
    chunk_tokens: int = 4096,
) -> MediationResult:
    """Vig et al.'s causal mediation analysis of gender bias in a causal LM.

    For each template × single-token profession, the null prompt ``u`` ("The nurse said that") and the
    set-gender prompt ``u_set`` (the profession replaced by an anti-stereotypical word: "The man said
    that") give ``y = p(anti-stereotypical pronoun) / p(stereotypical pronoun)`` at the last position,
    ``TE = y(u_set) / y(u) − 1``, and per mediator ``NIE = y(u, mediator set to its u_set value) / y(u) − 1``
    and ``NDE = y(u_set, mediator held at its u value) / y(u) − 1``, each averaged over the prompts.

    - A head's mediator is its attention pattern (Vig et al.): NIE runs ``u`` with that head's attention
      weights replaced by its weights under ``u_set``, multiplied by ``u``'s own values; NDE runs
      ``u_set`` with the head's weights held at their ``u`` values, times ``u_set``'s values. With
      grouped-query attention a query head's pattern multiplies its shared key/value head's values. The
      patterns come from one extra eager-attention pass per prompt (the model's attention implementation
      is restored afterwards); the intervened runs use the model's own implementation.
    - A neuron is one dimension of a block's MLP output (the down projection's output, ``d_model`` wide)
      at the profession position, address ``layer.L.mlp_out:i``.

    Deviation: Vig et al. measured heads on Winobias / Winogender sentences; here heads use the same
    profession templates as neurons. A template whose two prompts differ in more than one token (or in
    length) is skipped.

    Args:
        model: A causal LM (:class:`~neuronwidgets.core.ModelHandle`).
        templates: Prompts with one ``{}`` for the profession, e.g. ``"The {} said that"``.
        professions: Profession → its stereotypical pronoun (``"he"`` / ``"she"``); professions that are
            not single tokens are skipped (listed in ``meta["skipped"]``).
        set_words: Stereotypical pronoun → the anti-stereotypical word the set-gender intervention puts
            in the profession's place.
        neuron_layers: Blocks whose neurons (MLP output dimensions) are analysed (default all:
            ``d_model × layers`` patched runs per prompt, two effects each).
        head_layers: Blocks whose heads are analysed (default all).
        chunk_tokens: Most rows × positions re-run at once.

    Returns:
        A :class:`MediationResult`.

    Example:
        >>> med = mediate(lm, ["The {} said that"], {"nurse": "she", "engineer": "he"}, neuron_layers=[0])  # doctest: +SKIP
        >>> med.total_effect, med.top_heads(5), med.neurons.top(5)  # doctest: +SKIP
    """
    handle = _check_handle(model)
    if handle.kind != "causal-lm":
        raise ValueError(f"mediation analysis needs a causal LM, but {handle.name} is a {handle.kind}")
    if isinstance(templates, str) or not templates:
        raise ValueError(
            "templates must be a non-empty list of prompts, each with one '{}' for the profession"
        )
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(f"template {t!r} must contain exactly one '{{}}' where the profession goes")
    if not isinstance(professions, Mapping) or not professions:
        raise ValueError(
            "professions must be a non-empty mapping profession → stereotypical pronoun ('he'/'she')"
        )
    pronouns = {p.strip() for p in set_words}
    if len(pronouns) != 2:
        raise ValueError(f"set_words must map each of two pronouns to a word, got {dict(set_words)!r}")
    pron_ids = {}
    for p in pronouns:
        tid = _single(handle, f" {p}")
        if tid is None:
            raise ValueError(f"pronoun {p!r} is not one token for {handle.name}")
        pron_ids[p] = tid
    for prof, stereo in professions.items():
        if stereo.strip() not in pronouns:
            raise ValueError(
                f"the stereotypical pronoun of {prof!r} must be one of {sorted(pronouns)}, got {stereo!r}"
            )
    n_layers, n_heads = handle.num_layers, num_heads(handle)
    hl = list(range(n_layers)) if head_layers is None else list(head_layers)
    units_h = make_units(handle, "attn", hl, None, None) if hl else []
    nl = list(range(n_layers)) if neuron_layers is None else list(neuron_layers)
    units_n = make_units(handle, "mlp_out", nl, None, "all") if nl else []
    engine = Engine(handle, chunk_tokens)
    sites = sorted({(u.kind, u.layer) for u in units_n})
    cases, skipped = [], []
    y_null, y_set, te = [], [], []
    h_nie = np.zeros(len(units_h))
    h_nde = np.zeros(len(units_h))
    n_nie = np.zeros(len(units_n))
    n_nde = np.zeros(len(units_n))
    for prof, stereo in professions.items():
        stereo = stereo.strip()
        anti = next(p for p in pronouns if p != stereo)
        word = set_words[stereo].strip()
        if _single(handle, f" {prof.strip()}") is None or _single(handle, f" {word}") is None:
            skipped.append(prof)
            continue
        a_id, s_id = pron_ids[anti], pron_ids[stereo]

        def y(logits: torch.Tensor, a_id: int = a_id, s_id: int = s_id) -> torch.Tensor:
            # p(anti) / p(stereo): the softmax normaliser cancels; float64, so the ratio of two
            # probabilities far apart (a logit gap over 88) stays finite instead of overflowing float32
            return (logits[:, a_id].double() - logits[:, s_id].double()).exp()

        # patched runs compute only the two pronouns' logits (columns 0 and 1)
        ym = Metric("y", y, (a_id, s_id), lambda lg: y(lg, 0, 1))

        for template in templates:
            null_text, set_text = template.format(prof.strip()), template.format(word)
            enc_null = handle.encode([null_text], truncate=False)
            enc_set = handle.encode([set_text], truncate=False)
            if enc_null["input_ids"].shape != enc_set["input_ids"].shape:
                skipped.append(f"{prof} in {template!r}")
                continue
            diff = (enc_null["input_ids"][0] != enc_set["input_ids"][0]).nonzero().flatten().tolist()
            if len(diff) > 1:
                skipped.append(f"{prof} in {template!r}")
                continue
            pos = diff[0] if diff else 0
            null = engine.record(enc_null, sites)
            setg = engine.record(enc_set, sites)
            y0 = float(y(null.logits)[0])
            y1 = float(y(setg.logits)[0])
            cases.append(null_text)
            y_null.append(y0)
            y_set.append(y1)
            te.append(y1 / y0 - 1)
            if units_h:
                att_null = attention_state(handle, enc_null)
                att_set = attention_state(handle, enc_set)
                h_nie += _head_effects(engine, null, att_null, att_set, units_h, ym) / y0 - 1
                h_nde += _head_effects(engine, setg, att_set, att_null, units_h, ym) / y0 - 1
            if units_n:
                n_nie += sweep(engine, null, setg, units_n, [(pos,)], ym)[:, 0] / y0 - 1
                n_nde += sweep(engine, setg, null, units_n, [(pos,)], ym)[:, 0] / y0 - 1
    if not cases:
        raise ValueError(
            f"no usable prompt: every profession or its set-gender word is several tokens for {handle.name} "
            f"(skipped: {', '.join(skipped)})"
        )
    if skipped:
        warnings.warn(f"skipped (not single tokens): {', '.join(skipped)}", stacklevel=2)
    c = len(cases)
    width = handle.hidden_size
    nie_n, nde_n = n_nie / c, n_nde / c
    ranking = NeuronRanking.from_scores(
        [u.label for u in units_n],
        nie_n,
        "mediation-nie",
        columns={"nde": nde_n},
        meta={"total_effect": float(np.mean(te)), "prompts": c},
    )
    head_nie = np.full((n_layers, n_heads), np.nan)
    head_nde = np.full((n_layers, n_heads), np.nan)
    head_nie[hl] = (h_nie / c).reshape(len(hl), n_heads)
    head_nde[hl] = (h_nde / c).reshape(len(hl), n_heads)
    return MediationResult(
        cases=tuple(cases),
        y_null=np.array(y_null),
        y_set=np.array(y_set),
        te=np.array(te),
        head_nie=head_nie,
        head_nde=head_nde,
        neuron_layers=tuple(nl),
        neuron_nie=nie_n.reshape(len(nl), width) if nl else np.zeros((0, width)),
        neuron_nde=nde_n.reshape(len(nl), width) if nl else np.zeros((0, width)),
        neurons=ranking,
        head_mediator="attention",
        neuron_component="mlp_out",
        meta={"skipped": skipped, "set_words": dict(set_words), "professions": dict(professions)},
    )


@dataclass(frozen=True)
class AttentionState:
    """Every block's attention pattern and the values it multiplies, for one prompt (batch 1).

    ``patterns[L]``: ``[heads, T, T]`` (softmax weights, rows = query positions); ``values[L]``:
    ``[kv_heads, T, head_dim]``; query head ``h`` reads key/value head ``h // (heads // kv_heads)``.
    """

    patterns: list[torch.Tensor]
    values: list[torch.Tensor]


@contextmanager
def _eager_attention(model: Any) -> Iterator[None]:
    """The model with eager attention (which returns its weights) for the duration; its own
    implementation restored afterwards, whatever happens."""
    impl = getattr(model.config, "_attn_implementation", None)
    if impl == "eager":
        yield
        return
    if not hasattr(model, "set_attn_implementation"):
        raise ValueError(
            f"{type(model).__name__} cannot switch to eager attention, which head mediation needs "
            "to read the attention patterns"
        )
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(impl)


def _attention_module(handle: Any, layer: int) -> nn.Module:
    """Block ``layer``'s attention module (the parent of its output projection), whose forward returns
    ``(output, weights)``."""
    block = handle.blocks[layer]
    for path in _ATTN_OUT_PATHS:
        try:
            block.get_submodule(path)
        except AttributeError:
            continue
        return block.get_submodule(path.rsplit(".", 1)[0])
    raise ValueError(
        f"cannot find the attention module in the blocks of {handle.name} ({type(block).__name__}); "
        f"known layouts: {', '.join(_ATTN_OUT_PATHS)}"
    )


def attention_state(handle: Any, enc: dict[str, torch.Tensor]) -> AttentionState:
    """One forward pass of ``enc`` with eager attention, returning each block's attention pattern (what
    each attention module returns beside its output, read by a hook removed afterwards) and the values it
    multiplies (from the model's key/value cache): the two factors of each head's output."""
    model = handle.model
    n = handle.num_layers
    patterns: list[torch.Tensor | None] = [None] * n

    def keep(i: int) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, tuple) and len(output) > 1 and isinstance(output[1], torch.Tensor):
                patterns[i] = output[1][0].detach()

        return hook

    removers = []
    with torch.no_grad(), eval_mode(model), _eager_attention(model):
        try:
            for i in range(n):
                removers.append(_attention_module(handle, i).register_forward_hook(keep(i)))
            out = model(**enc, use_cache=True)
        finally:
            for r in removers:
                r.remove()
    cache = _model_cache(out)
    layers = getattr(cache, "layers", None)
    if any(p is None for p in patterns) or layers is None or len(layers) != n:
        raise ValueError(
            f"{handle.name} returned no attention pattern or no key/value cache for each of its {n} blocks: "
            "head mediation (which swaps attention patterns) needs both"
        )
    pats = [p for p in patterns if p is not None]
    values = [layer.values[0].detach() for layer in layers]
    for a, v in zip(pats, values):
        t = a.shape[-1]
        if a.dim() != 3 or v.dim() != 3 or a.shape[0] % v.shape[0] or v.shape[1] != t:
            raise ValueError(
                f"unexpected attention shapes in {handle.name}: pattern {tuple(a.shape)}, values {tuple(v.shape)}"
            )
    return AttentionState(pats, values)


def _head_effects(
    engine: Engine,
    base: Run,
    here: AttentionState,
    there: AttentionState,
    units: Sequence[Unit],
    metric: Metric,
) -> np.ndarray:
    """The metric ``[U]`` of ``base`` with each head's attention pattern set to ``there``'s: the head's
    output becomes ``A_there @ V_here`` (``V`` of the run being intervened on) at the query positions
    whose pattern differs; a head whose pattern is the same in both runs is not re-run."""
    rows: list[Row] = []
    where: list[int] = []
    for u, unit in enumerate(units):
        layer = unit.layer
        a_here, a_there = here.patterns[layer], there.patterns[layer]
        v = here.values[layer]
        width = len(unit.dims)
        head = int(unit.dims[0]) // width
        group = a_here.shape[0] // v.shape[0]
        if v.shape[-1] != width:
            raise ValueError(
                f"block {layer}'s heads are {v.shape[-1]} wide but its attention output gives each {width} "
                "dimensions: an unsupported attention layout"
            )
        changed = (a_here[head] != a_there[head]).any(-1).nonzero().flatten()
        if len(changed) == 0:
            continue
        out = a_there[head][changed].to(v.dtype) @ v[head // group]
        rows.append(
            Row(
                layer,
                "attn",
                changed.repeat_interleave(width),
                unit.dims.repeat(len(changed)),
                out.reshape(-1),
            )
        )
        where.append(u)
    res = np.full(len(units), float(metric.fn(base.logits.float())[0]))
    res[where] = row_values(engine, base, rows, metric)
    return res
