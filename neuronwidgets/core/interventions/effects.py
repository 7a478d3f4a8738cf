"""How much an intervention changes predictions, and top-k vs random-k ablation.

- :func:`measure_effect` compares the clean and the intervened prediction of each text: the change in the
  probability of the original top prediction, KL(original ‖ intervened) over the whole output
  distribution, and whether the top prediction flipped.
- :func:`compare_ablations` ablates the top-k neurons of a ranking and, as the baseline, several draws of
  k random neurons from the same sites (Dalvi et al. 2019; Durrani et al. 2020): important neurons should
  move the prediction more than as many random ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..display import TableResult, steps_bar, summary
from ..models.addresses import NeuronAddress, Site, parse_neuron
from ..models.handle import ModelHandle
from .edits import MODES, Intervention, _check_handle, predict_logits


@dataclass(frozen=True)
class InterventionEffect(TableResult):
    """The effect of one intervention on a batch of ``n`` texts (made by :func:`measure_effect`).

    Attributes:
        texts: The ``n`` texts.
        labels: ``[n]``, the original top prediction of each text.
        ids: ``[n]``, its token id or class index.
        original_prob: ``[n]``, its clean probability.
        intervened_prob: ``[n]``, its probability under the intervention.
        kl: ``[n]``, KL(original ‖ intervened) in nats over all outputs.
        intervened_labels: ``[n]``, the top prediction under the intervention.
        intervened_ids: ``[n]``, its token id or class index.
    """

    _plot_columns = ("text", "delta_prob")

    texts: list[str]
    labels: list[str]
    ids: np.ndarray
    original_prob: np.ndarray
    intervened_prob: np.ndarray
    kl: np.ndarray
    intervened_labels: list[str]
    intervened_ids: np.ndarray

    @property
    def delta_prob(self) -> np.ndarray:
        """``[n]``: intervened minus original probability of the original top prediction (negative: it
        lost probability)."""
        return self.intervened_prob - self.original_prob

    @property
    def flipped(self) -> np.ndarray:
        """bool ``[n]``: the top prediction changed."""
        return self.intervened_ids != self.ids

    @property
    def flip_rate(self) -> float:
        return float(self.flipped.mean())

    @property
    def mean_delta_prob(self) -> float:
        return float(self.delta_prob.mean())

    @property
    def mean_kl(self) -> float:
        return float(self.kl.mean())

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "text": self.texts,
                "original": self.labels,
                "original_prob": self.original_prob,
                "intervened_prob": self.intervened_prob,
                "delta_prob": self.delta_prob,
                "kl": self.kl,
                "intervened": self.intervened_labels,
                "flipped": self.flipped,
            }
        )

    def __repr__(self) -> str:
        return summary(
            f"InterventionEffect({len(self.texts)} texts: mean Δp {self.mean_delta_prob:+.3f}, "
            f"mean KL {self.mean_kl:.3f}, flip rate {self.flip_rate:.2f})"
        )


def measure_effect(
    model: ModelHandle | str,
    texts: str | Sequence[str],
    interventions: Intervention | Iterable[Intervention],
    *,
    batch_size: int = 32,
) -> InterventionEffect:
    """Compare each text's clean prediction with its prediction under ``interventions``.

    Args:
        model: A loaded model or a model name.
        texts: One text or several.
        interventions: One :class:`~neuronwidgets.core.Intervention` or several, applied together.
        batch_size: Texts per forward pass.

    Returns:
        Probabilities, KL and top predictions, clean and intervened, per text.

    Example:
        >>> effect = measure_effect("minilm-sentiment", ["Not bad at all."],
        ...                         Intervention.zero(["layer.5.mlp:17", "layer.5.mlp:301"]))
        >>> effect.kl, effect.intervened_labels"""
    handle = _check_handle(model)
    texts = [texts] if isinstance(texts, str) else list(texts)
    return _effect(handle, texts, _clean_logp(handle, texts, batch_size), interventions, batch_size)


def _clean_logp(handle: ModelHandle, texts: list[str], batch_size: int) -> torch.Tensor:
    """float64 log-probabilities ``[n, outputs]`` of the clean model."""
    return predict_logits(handle, texts, batch_size=batch_size).double().log_softmax(-1)


def _effect(
    handle: ModelHandle,
    texts: list[str],
    clean: torch.Tensor,
    interventions: Intervention | Iterable[Intervention],
    batch_size: int,
) -> InterventionEffect:
    """:func:`measure_effect` given the clean log-probabilities (one clean run serves many interventions)."""
    new = predict_logits(handle, texts, interventions, batch_size=batch_size).double().log_softmax(-1)
    e = compare_distributions(clean, new)
    return InterventionEffect(
        texts,
        [handle.output_label(int(i)) for i in e.top],
        e.top.numpy(),
        e.original_prob.numpy(),
        e.intervened_prob.numpy(),
        e.kl.numpy(),
        [handle.output_label(int(i)) for i in e.new_top],
        e.new_top.numpy(),
    )


@dataclass(frozen=True)
class DistributionChange:
    """Per row, how an intervened output distribution differs from the original one (tensors ``[n]``).

    ``top`` / ``new_top``: the top output before / after; ``original_prob`` / ``intervened_prob``: the
    probability of the original top output before / after; ``new_top_prob``: the probability of the new
    top output; ``kl``: KL(original ‖ intervened) in nats.
    """

    top: torch.Tensor
    new_top: torch.Tensor
    original_prob: torch.Tensor
    intervened_prob: torch.Tensor
    new_top_prob: torch.Tensor
    kl: torch.Tensor


def compare_distributions(clean_logp: torch.Tensor, new_logp: torch.Tensor) -> DistributionChange:
    """The one place the effect maths lives (:func:`measure_effect` and the ablation panel use it).

    Args:
        clean_logp: ``[n, outputs]`` or ``[outputs]`` log-probabilities of the original run (float64
            recommended: KL of nearly equal distributions cancels in float32).
        new_logp: the same shape, under the intervention.

    Returns:
        A :class:`DistributionChange` with one entry per row (a 1-d input is one row).
    """
    clean = clean_logp.reshape(-1, clean_logp.shape[-1])
    new = new_logp.reshape(-1, new_logp.shape[-1])
    top = clean.argmax(-1)
    new_top = new.argmax(-1)
    rows = torch.arange(clean.shape[0])
    return DistributionChange(
        top=top,
        new_top=new_top,
        original_prob=clean[rows, top].exp(),
        intervened_prob=new[rows, top].exp(),
        new_top_prob=new[rows, new_top].exp(),
        kl=(clean.exp() * (clean - new)).sum(-1).clamp(min=0.0),
    )


@dataclass(frozen=True)
class AblationComparison(TableResult):
    """Ablating the top-``k`` neurons of a ranking vs ``k`` random neurons from the same sites (made by
    :func:`compare_ablations`).

    Attributes:
        k: Neurons ablated per draw.
        mode: ``"zero"`` or ``"mean"``.
        top_neurons: The ablated top-k.
        random_neurons: One tuple of k per random draw (the same number per site as the top-k, never one
            of them).
        top: The :class:`InterventionEffect` of the top-k.
        random: The :class:`InterventionEffect` of each random draw.
    """

    _plot_columns = (None, "delta_prob")

    k: int
    mode: str
    top_neurons: tuple[str, ...]
    random_neurons: tuple[tuple[str, ...], ...]
    top: InterventionEffect
    random: tuple[InterventionEffect, ...]

    MEASURES = ("delta_prob", "kl", "flip_rate")

    def random_values(self, measure: str) -> np.ndarray:
        """``[n_random]``: ``measure`` (mean over texts) of each random draw."""
        return np.array([_measure(e, measure) for e in self.random])

    def summary(self) -> pd.DataFrame:
        """One row per measure (mean over texts): the top-k value and the random draws' mean and standard
        deviation."""
        rows = []
        for m in self.MEASURES:
            r = self.random_values(m)
            rows.append(
                {
                    "measure": m,
                    "top": _measure(self.top, m),
                    "random_mean": float(r.mean()),
                    "random_std": float(r.std(ddof=1)) if len(r) > 1 else 0.0,
                }
            )
        return pd.DataFrame(rows).set_index("measure")

    def to_frame(self) -> pd.DataFrame:
        """One row per run (``"top"``, ``"random 0"``, …) with each measure's mean over texts."""
        runs = [("top", self.top)] + [(f"random {i}", e) for i, e in enumerate(self.random)]
        return pd.DataFrame(
            [{"run": name, **{m: _measure(e, m) for m in self.MEASURES}} for name, e in runs]
        ).set_index("run")

    def __repr__(self) -> str:
        s = self.summary()
        parts = [
            f"{m}: top {s.loc[m, 'top']:+.3f} vs random {s.loc[m, 'random_mean']:+.3f} ± "
            f"{s.loc[m, 'random_std']:.3f}"
            for m in self.MEASURES
        ]
        return summary(
            f"AblationComparison(k={self.k}, {len(self.random)} random draws; " + "; ".join(parts) + ")"
        )


def _measure(effect: InterventionEffect, name: str) -> float:
    return {"delta_prob": effect.mean_delta_prob, "kl": effect.mean_kl, "flip_rate": effect.flip_rate}[name]


def compare_ablations(
    model: ModelHandle | str,
    texts: str | Sequence[str],
    ranking_or_neurons: Any,
    k: int,
    *,
    n_random: int = 5,
    seed: int = 0,
    mode: str = "zero",
    reference: Sequence[str] | None = None,
    batch_size: int = 32,
    progress: bool | None = None,
) -> AblationComparison:
    """Ablate the top ``k`` neurons of ``ranking_or_neurons`` and ``n_random`` draws of ``k`` random
    neurons from the same sites (as many per site), and measure each on ``texts``.

    Args:
        model: A loaded model or a model name.
        texts: One text or several.
        ranking_or_neurons: Neuron addresses best first, a dict neuron → importance (higher first), or an
            object with a ``neurons`` attribute (addresses best first), e.g. a ``NeuronRanking``.
        k: How many neurons to ablate.
        n_random: Random draws.
        seed: Seed of the draws.
        mode: ``"zero"`` or ``"mean"`` (with ``reference`` texts).
        reference: Texts whose mean activation ``"mean"`` ablation uses.
        batch_size: Texts per forward pass.
        progress: A bar over the ``1 + n_random`` measurements (``None``: shown for 100 text passes or
            more).

    Returns:
        The top-k's effect beside each random draw's.

    Raises:
        ValueError: For a bad ``k``, ``n_random`` or ``mode``, or sites
            with fewer neurons than the draws need.

    Example:
        >>> cmp = compare_ablations("minilm-sentiment", texts, ranking, k=10, n_random=5)
        >>> cmp.top.kl.mean(), [r.kl.mean() for r in cmp.random]
    """
    handle = _check_handle(model)
    ranked = _ranked(ranking_or_neurons)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > len(ranked):
        raise ValueError(f"k={k} but the ranking has only {len(ranked)} neurons")
    if n_random < 1:
        raise ValueError("n_random must be at least 1: the random draws are the baseline")
    if mode not in ("zero", "mean"):
        raise ValueError(
            f"compare_ablations ablates with mode 'zero' or 'mean', not {mode!r} (modes: {MODES})"
        )
    top = [handle.check_neuron(n) for n in ranked[:k]]
    per_site: dict[Site, list[int]] = {}
    for a in top:
        per_site.setdefault(a.site, []).append(a.index)
    for site, chosen in per_site.items():
        if handle.width(site) - len(chosen) < len(chosen):
            raise ValueError(
                f"{site.name} has too few other neurons to draw {len(chosen)} random ones: choose a smaller k"
            )
    rng = np.random.default_rng(seed)
    draws: list[tuple[str, ...]] = []
    for _ in range(n_random):
        drawn: list[str] = []
        for site, chosen in per_site.items():
            pool = np.setdiff1d(np.arange(handle.width(site)), chosen)
            drawn += [f"{site.name}:{int(i)}" for i in rng.choice(pool, size=len(chosen), replace=False)]
        draws.append(tuple(drawn))

    if mode == "mean" and not reference:
        raise ValueError("mode 'mean' needs reference=[texts...]")

    def spec(neurons: Sequence[str]) -> Intervention:
        if mode == "mean" and reference is not None:  # checked above: mode "mean" has its reference
            return Intervention.mean(neurons, reference)
        return Intervention.zero(neurons)

    top_names = tuple(a.name for a in top)
    text_list = [texts] if isinstance(texts, str) else list(texts)
    bar = steps_bar(
        1 + n_random, "ablations", progress, auto=len(text_list) * (1 + n_random) >= 100, unit="draw"
    )
    effects = []
    with bar:
        clean: torch.Tensor | None = None  # one clean run serves the top-k and every random draw
        for neurons in (top_names, *draws):
            intervention = spec(neurons)
            if clean is None:
                clean = _clean_logp(handle, text_list, batch_size)
            effects.append(_effect(handle, text_list, clean, intervention, batch_size))
            bar.update(1)
    top_effect, random_effects = effects[0], tuple(effects[1:])
    return AblationComparison(k, mode, top_names, tuple(draws), top_effect, random_effects)


def _ranked(ranking: Any) -> list[NeuronAddress]:
    if isinstance(ranking, (str, NeuronAddress)):
        raise TypeError(
            "pass a ranking: a list of neuron addresses best first, or a dict neuron → importance"
        )
    if isinstance(ranking, Mapping):
        items = sorted(ranking.items(), key=lambda kv: -float(kv[1]))
        return [parse_neuron(n) for n, _ in items]
    if hasattr(ranking, "neurons") and not isinstance(ranking, (list, tuple)):
        ranking = ranking.neurons
    return [parse_neuron(n) for n in ranking]
