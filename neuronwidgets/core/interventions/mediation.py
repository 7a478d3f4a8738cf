"""Causal mediation analysis of gender bias (Vig et al. 2020, "Investigating Gender Bias in Language
Models Using Causal Mediation Analysis").

For a prompt ``u`` such as "The nurse said that", with a profession whose stereotypical pronoun is
" she":

- ``y(u) = p(anti-stereotypical pronoun | u) / p(stereotypical pronoun | u)`` (here p(" he") / p(" she"));
- the *set-gender* intervention swaps the profession for an anti-stereotypical gendered word (nurse →
  " man"; engineer → " woman"), giving ``u_set``;
- total effect ``TE = y(u_set) / y(u) − 1``;
- per mediator ``z`` (one MLP neuron at the profession position, or one attention head):
  natural indirect effect ``NIE = y(u, z set to its value under u_set) / y(u) − 1`` and natural direct
  effect ``NDE = y(u_set, z held at its value under u) / y(u) − 1``;
- everything averaged over templates × single-token professions.

Neurons are the MLP activations that feed each block's down projection (addresses ``layer.L.mlp:i``, the
neurons the rest of neuronwidgets ranks and ablates). A head's intervention swaps its output (its
attention-weighted values, the head's slice before the output projection) at every position from the
profession on; Vig et al. swap only the attention weights — see :class:`MediationResult`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..display import Result, new_axes, number, summary
from ..results import NeuronRanking
from .edits import _check_handle
from .patch_engine import Engine, num_heads
from .patching import Metric, make_units, sweep

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
        neuron_layers: The blocks whose MLP neurons were analysed.
        neuron_nie: ``[len(neuron_layers), mlp width]`` mean NIE per neuron.
        neuron_nde: ``[len(neuron_layers), mlp width]`` mean NDE per neuron.
        neurons: A :class:`~neuronwidgets.core.NeuronRanking` of those neurons by NIE (column ``"nde"``),
            usable by every ranking view and the ablation panel.
        head_mediator: What a head's intervention swaps: ``"output"``, the head's attention-weighted
            values from the profession on (Vig et al. swap the attention weights only).
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
    head_mediator: str = "output"
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
    """Vig et al.'s causal mediation analysis (see the module docstring).

    Args:
        model: A causal LM (:class:`~neuronwidgets.core.ModelHandle`).
        templates: Prompts with one ``{}`` for the profession, e.g. ``"The {} said that"``.
        professions: Profession → its stereotypical pronoun (``"he"`` / ``"she"``); professions that are
            not single tokens are skipped (listed in ``meta["skipped"]``).
        set_words: Stereotypical pronoun → the anti-stereotypical word the set-gender intervention puts
            in the profession's place.
        neuron_layers: Blocks whose MLP neurons are analysed (default all: ``mlp width × layers`` patched
            runs per prompt, two effects each).
        head_layers: Blocks whose heads are analysed (default all).
        chunk_tokens: Most rows × positions re-run at once.

    Returns:
        A :class:`MediationResult`.

    Example:
        >>> med = mediate(lm, ["The {} said that"], {"nurse": "she", "engineer": "he"}, neuron_layers=[29])  # doctest: +SKIP
        >>> med.total_effect, med.neurons.top(5)  # doctest: +SKIP
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
    units_n = make_units(handle, "mlp", nl, None, "all") if nl else []
    engine = Engine(handle, chunk_tokens)
    sites = sorted({(u.kind, u.layer) for u in [*units_h, *units_n]})
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
            # p(anti) / p(stereo): the softmax normaliser cancels
            return (logits[:, a_id].float() - logits[:, s_id].float()).exp()

        # patched runs compute only the two pronouns' logits
        ym = Metric("y", y, (a_id, s_id), lambda lg: (lg[:, 0].float() - lg[:, 1].float()).exp())

        for template in templates:
            null_text, set_text = template.format(prof.strip()), template.format(word)
            enc_null = handle.encode([null_text], truncate=False)
            enc_set = handle.encode([set_text], truncate=False)
            if enc_null["input_ids"].shape != enc_set["input_ids"].shape:
                skipped.append(f"{prof} in {template!r}")
                continue
            diff = (enc_null["input_ids"][0] != enc_set["input_ids"][0]).nonzero().flatten().tolist()
            if len(diff) != 1:
                skipped.append(f"{prof} in {template!r}")
                continue
            pos = diff[0]
            length = enc_null["input_ids"].shape[1]
            null = engine.record(enc_null, sites)
            setg = engine.record(enc_set, sites)
            y0 = float(y(null.logits)[0])
            y1 = float(y(setg.logits)[0])
            cases.append(null_text)
            y_null.append(y0)
            y_set.append(y1)
            te.append(y1 / y0 - 1)
            heads_from = [tuple(range(pos, length))]
            if units_h:
                h_nie += sweep(engine, null, setg, units_h, heads_from, ym)[:, 0] / y0 - 1
                h_nde += sweep(engine, setg, null, units_h, heads_from, ym)[:, 0] / y0 - 1
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
    width = handle.mlp_size
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
        meta={"skipped": skipped, "set_words": dict(set_words), "professions": dict(professions)},
    )
