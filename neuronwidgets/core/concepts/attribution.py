"""Concept-based interpretation of a prediction (tutorial part 4): which concept-aligned neurons drive it.

- :func:`aggregate_by_concept` takes any :class:`NeuronRanking` of one prediction's neuron attributions
  (from the causation methods, or any other score per neuron) and a
  :class:`~neuronwidgets.core.concepts.ConceptAlignment`, labels each neuron with its best-aligned
  concept, and sums attribution per concept: "this sentiment prediction draws 40% of its neuron
  attribution from ADJ-aligned neurons". Shares are of the total *absolute* attribution, so a concept's
  share says how much of the evidence, for or against, runs through its neurons; the signed totals are
  kept too. Neurons whose best concept scores below ``min_score`` go to ``(none)``; neurons the alignment
  did not cover go to ``(not aligned)``; the shares of all groups sum to 1.
- :func:`check_concept_ablation` checks such a claim causally: switch off every neuron of a concept and,
  as the baseline, as many random neurons from the same sites (several draws), and compare how much the
  prediction moves (:func:`~neuronwidgets.core.interventions.effects.compare_ablations`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..display import TableResult, summary
from ..interventions.effects import AblationComparison, compare_ablations
from ..models.addresses import parse_neuron
from ..models.handle import ModelHandle
from .alignment import ConceptAlignment

NONE = "(none)"
NOT_ALIGNED = "(not aligned)"


@dataclass(frozen=True)
class ConceptAttribution(TableResult):
    """Neuron attributions of one prediction, grouped by the concept each neuron is aligned with.

    Made by :func:`aggregate_by_concept`. Per neuron ``[n]`` in the ranking's order; per group ``[m]``,
    largest share first.

    Attributes:
        neurons: ``[n]`` addresses.
        attributions: Float64 ``[n]``.
        labels: ``[n]``, the neuron's concept, or ``(none)`` / ``(not aligned)``.
        label_scores: Float32 ``[n]``, the alignment score of that concept, NaN when not aligned.
        concepts: ``[m]``, the groups.
        totals: ``[m]``, signed sum of attributions.
        abs_totals: ``[m]``, sum of absolute attributions.
        shares: ``[m]``, ``abs_totals`` / total absolute attribution; they sum to 1.
        counts: ``[m]``, neurons per group.
        metric: How neurons were labelled (the alignment metric).
        min_score: The least alignment score of a label.
        method: The ranking's description.
    """

    _plot_columns = ("concept", "share")

    neurons: tuple[str, ...]
    attributions: np.ndarray
    labels: tuple[str, ...]
    label_scores: np.ndarray
    concepts: tuple[str, ...]
    totals: np.ndarray
    abs_totals: np.ndarray
    shares: np.ndarray
    counts: np.ndarray
    metric: str
    min_score: float
    method: str = ""

    def share(self, concept: str) -> float:
        """The share of absolute attribution carried by ``concept``'s neurons (0 if none)."""
        return float(self.shares[self.concepts.index(concept)]) if concept in self.concepts else 0.0

    def neurons_of(self, concept: str) -> tuple[str, ...]:
        """The neurons labelled ``concept``, in the ranking's order."""
        if concept not in self.concepts:
            raise ValueError(
                f"no neuron is labelled {concept!r}: the groups are {', '.join(self.concepts[:12])}"
                + (" …" if len(self.concepts) > 12 else "")
            )
        return tuple(n for n, lab in zip(self.neurons, self.labels) if lab == concept)

    def to_frame(self) -> pd.DataFrame:
        """One row per concept, largest share first: ``concept``, ``neurons``, ``total``,
        ``abs_total``, ``share``."""
        return pd.DataFrame(
            {
                "concept": list(self.concepts),
                "neurons": self.counts,
                "total": self.totals,
                "abs_total": self.abs_totals,
                "share": self.shares,
            }
        )

    def neuron_frame(self) -> pd.DataFrame:
        """One row per neuron: ``neuron``, ``attribution``, ``concept``, ``score`` (its alignment)."""
        return pd.DataFrame(
            {
                "neuron": list(self.neurons),
                "attribution": self.attributions,
                "concept": list(self.labels),
                "score": self.label_scores,
            }
        )

    def __repr__(self) -> str:
        shown = ", ".join(f"{c} {s:.0%}" for c, s in zip(self.concepts[:5], self.shares[:5]))
        return summary(
            f"ConceptAttribution({len(self.neurons)} neurons in {len(self.concepts)} groups: {shown})"
        )


def _ranking_arrays(ranking: Any) -> tuple[list[str], np.ndarray, str]:
    if isinstance(ranking, Mapping):
        names = [parse_neuron(n).name for n in ranking]
        return names, np.array([float(v) for v in ranking.values()], dtype=np.float64), ""
    if not (hasattr(ranking, "neurons") and hasattr(ranking, "scores")):
        raise TypeError(
            "expected a NeuronRanking (neurons and their attribution scores) or a dict neuron → attribution, "
            f"got {type(ranking).__name__}"
        )
    names = [parse_neuron(n).name for n in ranking.neurons]
    scores = np.asarray(ranking.scores, dtype=np.float64)
    if len(names) != len(scores):
        raise ValueError(f"the ranking has {len(names)} neurons but {len(scores)} scores")
    return names, scores, str(getattr(ranking, "method", "") or "")


def aggregate_by_concept(
    ranking: Any,
    alignment: ConceptAlignment | Mapping[str, str],
    *,
    metric: str = "iou",
    min_score: float = 0.05,
    by: str = "concept",
) -> ConceptAttribution:
    """Sum a prediction's neuron attributions by the concept each neuron is aligned with.

    Args:
        ranking: A :class:`NeuronRanking` of attributions (``neurons`` and ``scores``), or a dict neuron →
            attribution.
        alignment: A :class:`~neuronwidgets.core.concepts.ConceptAlignment` (each neuron's best concept by
            ``metric``, kept when its score is ≥ ``min_score``) or a dict neuron → label (e.g. its formula).
        metric: ``"iou"``, ``"precision"`` or ``"recall"``.
        min_score: Least alignment score of a label.
        by: ``"concept"`` or ``"kind"`` (the concept's family: upos, feats, dep, lexical …).

    Returns:
        The attribution by concept.

    Raises:
        TypeError: If ``ranking`` or ``alignment`` is neither of its kinds.
        ValueError: For an unknown ``metric`` or ``by``, a neuron listed twice, or non-finite attributions.

    Example:
        >>> ranking = attribute_neurons(model, "Not bad at all.", sites="layer.5.mlp")
        >>> aggregate_by_concept(ranking, alignment).to_frame()
    """
    if by not in ("concept", "kind"):
        raise ValueError(f"by must be 'concept' or 'kind', got {by!r}")
    names, scores, method = _ranking_arrays(ranking)
    if len(set(names)) != len(names):
        raise ValueError("the ranking lists a neuron twice")
    if not np.all(np.isfinite(scores)):
        raise ValueError("the attributions contain NaN or infinite values")
    labels: list[str] = []
    label_scores = np.full(len(names), np.nan, dtype=np.float32)
    if isinstance(alignment, ConceptAlignment):
        idx, best = alignment.best(metric)
        where = {n: i for i, n in enumerate(alignment.neurons)}
        groups = alignment.concepts if by == "concept" else alignment.kinds
        for j, n in enumerate(names):
            i = where.get(n)
            if i is None or not len(alignment.concepts):
                labels.append(NOT_ALIGNED)
                continue
            label_scores[j] = best[i]
            labels.append(groups[idx[i]] if best[i] >= min_score else NONE)
    elif isinstance(alignment, Mapping):
        if by != "concept":
            raise ValueError("by='kind' needs a ConceptAlignment (a dict of labels has no kinds)")
        lookup = {parse_neuron(k).name: str(v) for k, v in alignment.items()}
        labels = [lookup.get(n, NOT_ALIGNED) for n in names]
    else:
        raise TypeError(
            f"alignment must be a ConceptAlignment or a dict neuron → label, not {type(alignment).__name__}"
        )
    lab = np.array(labels, dtype=object)
    groups_found = list(dict.fromkeys(labels))
    totals = np.array([scores[lab == g].sum() for g in groups_found], dtype=np.float64)
    abs_totals = np.array([np.abs(scores[lab == g]).sum() for g in groups_found], dtype=np.float64)
    counts = np.array([int((lab == g).sum()) for g in groups_found], dtype=np.int64)
    grand = abs_totals.sum()
    shares = abs_totals / grand if grand > 0 else np.zeros(len(groups_found))
    order = np.lexsort((np.arange(len(groups_found)), -shares))
    return ConceptAttribution(
        tuple(names),
        scores,
        tuple(labels),
        label_scores,
        tuple(groups_found[i] for i in order),
        totals[order],
        abs_totals[order],
        shares[order],
        counts[order],
        metric,
        float(min_score),
        method,
    )


@dataclass(frozen=True)
class ConceptAblation(TableResult):
    """Switching off every neuron of ``concept`` vs as many random neurons from the same sites (made by
    :func:`check_concept_ablation`).

    Attributes:
        concept: The concept.
        neurons: Its neurons, switched off.
        comparison: ``comparison.top`` is the concept's ablation, ``comparison.random`` the random draws."""

    _plot_columns = (None, "delta_prob")

    concept: str
    neurons: tuple[str, ...]
    comparison: AblationComparison

    def summary(self) -> pd.DataFrame:
        """One row per measure (mean over texts): the concept's value and the random draws' mean ± std."""
        return self.comparison.summary().rename(columns={"top": "concept"})

    def to_frame(self) -> pd.DataFrame:
        """One row per run (``"concept"``, ``"random 0"``, …) with each measure's mean over texts."""
        return self.comparison.to_frame().rename(index={"top": "concept"})

    def __repr__(self) -> str:
        s = self.summary()
        parts = [
            f"{m}: {s.loc[m, 'concept']:+.3f} vs random {s.loc[m, 'random_mean']:+.3f} ± {s.loc[m, 'random_std']:.3f}"
            for m in s.index
        ]
        return summary(
            f"ConceptAblation({self.concept}, {len(self.neurons)} neurons; " + "; ".join(parts) + ")"
        )


def check_concept_ablation(
    model: ModelHandle | str,
    texts: str | Sequence[str],
    attribution: ConceptAttribution,
    concept: str,
    *,
    n_random: int = 5,
    seed: int = 0,
    mode: str = "zero",
    reference: Sequence[str] | None = None,
    batch_size: int = 32,
) -> ConceptAblation:
    """Switch off every neuron labelled ``concept`` in ``attribution`` and, ``n_random`` times, as many
    random neurons (the same number per site, none of the concept's), and measure how each changes the
    predictions on ``texts``.

    Args:
        model: A loaded model or a model name.
        texts: One text or several.
        attribution: Its neuron labels say which neurons are the concept's.
        concept: The concept (a group of ``attribution``).
        n_random: Random draws.
        seed: Seed of the draws.
        mode: ``"zero"`` or ``"mean"`` (with ``reference`` texts).
        reference: Texts whose mean activation ``"mean"`` uses.
        batch_size: Texts per forward pass.

    Returns:
        The concept's ablation beside the random draws.

    Raises:
        ValueError: For a concept ``attribution`` does not have, or as
            :func:`~neuronwidgets.core.compare_ablations`.

    Example:
        >>> check_concept_ablation(model, texts, aggregate_by_concept(ranking, alignment), "upos=ADJ")
    """
    neurons = attribution.neurons_of(concept)
    comparison = compare_ablations(
        model,
        texts,
        list(neurons),
        len(neurons),
        n_random=n_random,
        seed=seed,
        mode=mode,
        reference=reference,
        batch_size=batch_size,
    )
    return ConceptAblation(concept, neurons, comparison)
