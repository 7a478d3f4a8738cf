"""Alignment of neurons with concepts: precision, recall and IoU of each neuron's top activations with each
concept (:func:`align_concepts` → :class:`ConceptAlignment`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ..display import TableResult, summary
from ..models.addresses import NeuronAddress, parse_neuron
from ..results import NeuronRanking
from ..store.activations import Activations
from ..store.streaming import (
    NeuronSelection,
    NeuronSpec,
    as_float32,
    iter_blocks,
    progress_bar,
    resolve_thresholds,
)
from .concepts import Concepts

DEFAULT_QUANTILE = 0.005
METRICS = ("iou", "precision", "recall")


# ------------------------------------------------------------------------------------------------
# Alignment
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConceptAlignment(TableResult):
    """How every neuron's firing aligns with every concept.

    Made by :func:`align_concepts`. ``precision``, ``recall`` and ``iou`` are float32 ``[n, C]``,
    computed on access.

    Attributes:
        neurons: Addresses ``[n]``.
        concepts: Concept names ``[C]``.
        kinds: Their families ``[C]``.
        intersection: Int32 ``[n, C]``, units where the neuron fires and the concept holds.
        fires: Int64 ``[n]``, units where the neuron fires (activation ≥ its threshold).
        concept_counts: Int64 ``[C]``, units with each concept.
        thresholds: Float32 ``[n]``, the firing thresholds.
        num_units: Units in the corpus.
        quantile: The top fraction the thresholds stand for (``None`` when given explicitly).
    """

    _plot_columns = ("neuron", "iou")

    neurons: tuple[str, ...]
    concepts: tuple[str, ...]
    kinds: tuple[str, ...]
    intersection: np.ndarray
    fires: np.ndarray
    concept_counts: np.ndarray
    thresholds: np.ndarray
    num_units: int
    quantile: float | None

    @property
    def precision(self) -> np.ndarray:
        return (self.intersection / np.maximum(self.fires, 1)[:, None]).astype(np.float32)

    @property
    def recall(self) -> np.ndarray:
        return (self.intersection / np.maximum(self.concept_counts, 1)[None, :]).astype(np.float32)

    @property
    def iou(self) -> np.ndarray:
        union = self.fires[:, None] + self.concept_counts[None, :] - self.intersection
        return (self.intersection / np.maximum(union, 1)).astype(np.float32)

    def scores(self, metric: str = "iou") -> np.ndarray:
        """float32 ``[n, C]``: ``"iou"``, ``"precision"`` or ``"recall"``."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}: choose iou, precision or recall")
        return getattr(self, metric)

    @cached_property
    def _neuron_index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.neurons)}

    def index(self, neuron: str | NeuronAddress) -> int:
        name = parse_neuron(neuron).name
        if name not in self._neuron_index:
            raise ValueError(f"neuron {name} was not aligned: pass it in neurons= to align_concepts")
        return self._neuron_index[name]

    def concept_index(self, concept: str) -> int:
        """Column of ``concept``: its exact name, or a case-insensitive part of exactly one name
        (``"past"`` → ``Tense=Past``)."""
        if concept in self.concepts:
            return self.concepts.index(concept)
        low = concept.lower()
        hits = [i for i, c in enumerate(self.concepts) if low in c.lower()]
        if len(hits) == 1:
            return hits[0]
        if hits:
            shown = ", ".join(self.concepts[i] for i in hits[:12])
            raise ValueError(
                f"{concept!r} matches {len(hits)} concepts ({shown}{' …' if len(hits) > 12 else ''}): name one"
            )
        close = difflib.get_close_matches(concept, self.concepts, n=5, cutoff=0.5)
        raise ValueError(
            f"unknown concept {concept!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
        )

    def best(self, metric: str = "iou") -> tuple[np.ndarray, np.ndarray]:
        """``(concept_index int64 [n], score float32 [n])``: each neuron's best concept by ``metric``
        (ties: the first concept)."""
        s = self.scores(metric)
        idx = np.argmax(s, axis=1) if s.shape[1] else np.zeros(len(self.neurons), dtype=np.int64)
        score = (
            s[np.arange(len(self.neurons)), idx] if s.shape[1] else np.zeros(len(self.neurons), np.float32)
        )
        return idx.astype(np.int64), score.astype(np.float32)

    def concepts_of(self, neuron: str | NeuronAddress, k: int = 10, metric: str = "iou") -> pd.DataFrame:
        """The ``k`` concepts that best match ``neuron`` by ``metric``: ``concept``, ``kind``,
        ``intersection``, ``precision``, ``recall``, ``iou``."""
        i = self.index(neuron)
        s = self.scores(metric)[i]
        order = np.lexsort((np.arange(len(s)), -s))[:k]
        return pd.DataFrame(
            {
                "concept": [self.concepts[j] for j in order],
                "kind": [self.kinds[j] for j in order],
                "intersection": self.intersection[i, order],
                "precision": self.precision[i, order],
                "recall": self.recall[i, order],
                "iou": self.iou[i, order],
            }
        )

    def search(self, concept: str, metric: str = "iou", k: int | None = None) -> NeuronRanking:
        """Neurons ranked by how well they align with ``concept`` (``metric``, best first): "which neurons
        respond to past tense?" → ``search("Tense=Past")`` (or ``search("past")``). The ranking's columns
        give each neuron's ``precision``, ``recall`` and ``iou`` for the concept."""
        c = self.concept_index(concept)
        s = self.scores(metric)[:, c]
        order = np.lexsort((np.arange(len(s)), -s))[: (k if k is not None else len(s))]
        return NeuronRanking(
            tuple(self.neurons[i] for i in order),
            s[order].astype(np.float64),
            f"concept {self.concepts[c]} ({metric})",
            columns={
                "precision": self.precision[order, c],
                "recall": self.recall[order, c],
                "iou": self.iou[order, c],
            },
            meta={"concept": self.concepts[c], "metric": metric, "quantile": self.quantile},
        )

    def ranking(self, metric: str = "iou") -> NeuronRanking:
        """Every neuron ranked by its best concept's ``metric``, with per-concept scores: the ranking's
        ``top_class`` is each neuron's best concept and ``per_class(k)`` each concept's best neurons."""
        s = self.scores(metric)
        idx, best = self.best(metric)
        return NeuronRanking.from_scores(
            self.neurons,
            best,
            f"concept alignment ({metric})",
            classes=self.concepts,
            class_scores=s,
            columns={"concept": np.array([self.concepts[j] for j in idx], dtype=object), "fires": self.fires},
            meta={"metric": metric, "quantile": self.quantile},
        )

    def to_frame(self, metric: str = "iou") -> pd.DataFrame:
        """One row per neuron with its best concept by ``metric``: ``neuron``, ``threshold``, ``fires``,
        ``concept``, ``kind``, ``precision``, ``recall``, ``iou``."""
        idx, _ = self.best(metric)
        rows = np.arange(len(self.neurons))
        has = len(self.concepts) > 0
        return pd.DataFrame(
            {
                "neuron": list(self.neurons),
                "threshold": self.thresholds,
                "fires": self.fires,
                "concept": [self.concepts[j] if has else "" for j in idx],
                "kind": [self.kinds[j] if has else "" for j in idx],
                "precision": self.precision[rows, idx] if has else 0.0,
                "recall": self.recall[rows, idx] if has else 0.0,
                "iou": self.iou[rows, idx] if has else 0.0,
            }
        )

    def __repr__(self) -> str:
        q = f"top {self.quantile:.2%}" if self.quantile is not None else "given thresholds"
        return summary(
            f"ConceptAlignment({len(self.neurons)} neurons × {len(self.concepts)} concepts over "
            f"{self.num_units} units, firing at the {q})"
        )


def align_concepts(
    acts: Activations,
    concepts: Concepts,
    neurons: NeuronSpec = None,
    *,
    quantile: float = DEFAULT_QUANTILE,
    thresholds: Any = None,
    progress: bool | None = None,
) -> ConceptAlignment:
    """Precision, recall and IoU of every selected neuron's firing against every concept.

    A neuron fires on the units where its activation is ≥ its threshold: by default the top ``quantile``
    of units (0.5%, Mu & Andreas 2020; one extra streaming pass), or ``thresholds``: a
    :class:`~neuronwidgets.core.concepts.selection.TopActivations` (reuses its thresholds: no extra pass), a
    mapping neuron → value, one value for all, or an array aligned with the selected neurons.

    Args:
        acts: The activations.
        concepts: The concepts of the same corpus (same units).
        neurons: ``None`` (all), a site, addresses, or a list of them.
        quantile: The top fraction of units a neuron fires on.
        thresholds: Explicit thresholds instead (see above).
        progress: A bar over the streaming passes.

    Returns:
        Counts from which precision, recall and IoU follow.

    Raises:
        TypeError: If ``concepts`` is not :class:`~neuronwidgets.core.Concepts`.

    Example:
        >>> alignment = align_concepts(acts, Concepts.from_corpus(corpus), "layer.3.mlp")
        >>> alignment.ranking("iou").to_frame().head()
    """
    if not isinstance(concepts, Concepts):
        raise TypeError(f"expected Concepts (Concepts.from_corpus(corpus)), got {type(concepts).__name__}")
    units = concepts.for_activations(acts)
    sel = NeuronSelection.of(acts, neurons)
    thr, q = resolve_thresholds(acts, sel, thresholds, quantile, progress)
    n_c = len(units.names)
    inter = np.zeros((len(sel), n_c), dtype=np.int32)
    fires = np.zeros(len(sel), dtype=np.int64)
    bar = progress_bar(acts, len(sel), "concept alignment", progress)
    try:
        for first, i, block in iter_blocks(acts, sel, bar):
            rows = sel.rows(i)
            x = as_float32(block)
            width = x.shape[1]
            flat = np.flatnonzero(x >= thr[rows][None, :])
            r, c = np.divmod(flat, width)
            fires[rows] += np.bincount(c, minlength=width)
            if n_c and len(r):
                which, ids = units.expand(first + r)
                counts = np.bincount(c[which] * n_c + ids, minlength=width * n_c)
                inter[rows] += counts.reshape(width, n_c).astype(np.int32)
    finally:
        bar.close()
    return ConceptAlignment(
        sel.names, units.names, units.kinds, inter, fires, units.counts, thr, acts.num_units, q
    )
