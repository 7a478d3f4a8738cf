"""Corpus selection: what a neuron responds to, read from a corpus's activations.

- :func:`top_activations`: each neuron's top-activating (and most negative) units with their contexts
  (Kádár et al. 2017; Poerner et al. 2018; Na et al. 2019), and its firing threshold (the activation of
  the top ``quantile`` of units, 0.5% by default as in Mu & Andreas 2020) — for every neuron of a model
  in one streaming pass over the activation store.
- :func:`quantile_samples`: units sampled from each activation quantile bin of one neuron, so a reader
  sees what it does across its range, not only at the extremes.
- :func:`word_types`: which word types activate a neuron, normalised by frequency (mean activation and
  firing rate per type rather than raw counts among the top units, which favour frequent words).

Units are the rows of the activations (words, or tokens for token-level activations); ``unit`` fields
are global row indices, in corpus order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from ..display import TableResult, summary
from ..models.addresses import NeuronAddress, parse_neuron
from ..store.activations import Activations
from ..store.streaming import (
    NeuronSelection,
    NeuronSpec,
    StreamingTopK,
    as_float32,
    iter_blocks,
    iter_chunks,
    progress_bar,
    quantile_k,
)

DEFAULT_QUANTILE = 0.005


# ------------------------------------------------------------------------------------------------
# Unit positions and contexts
# ------------------------------------------------------------------------------------------------


def _locate(offsets: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sentence and position of global unit rows (``-1`` rows stay ``-1``)."""
    units = np.asarray(units, dtype=np.int64)
    sent = np.searchsorted(offsets, units, side="right") - 1
    pos = units - offsets[np.clip(sent, 0, len(offsets) - 1)]
    bad = units < 0
    sent[bad] = -1
    pos[bad] = -1
    return sent, pos


def _sentence_units(acts: Activations, sentences: np.ndarray) -> dict[int, tuple[str, ...]]:
    """The unit strings of the given sentences (one pass over the chunks' unit lists)."""
    wanted = np.unique(sentences[sentences >= 0])
    out: dict[int, tuple[str, ...]] = {}
    if len(wanted) == 0:
        return out
    for first, _, chunk in iter_chunks(acts, []):
        lo = np.searchsorted(wanted, first)
        hi = np.searchsorted(wanted, first + chunk.num_sentences)
        for s in wanted[lo:hi]:
            out[int(s)] = tuple(chunk.units[int(s) - first])
    return out


def _context(units: Sequence[str], position: int, window: int) -> tuple[str, str, str]:
    left = " ".join(units[max(0, position - window) : position])
    right = " ".join(units[position + 1 : position + 1 + window])
    return left, units[position], right


# ------------------------------------------------------------------------------------------------
# Top-activating units
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopActivations(TableResult):
    """Each neuron's ``k`` most positive and most negative units over a corpus, and its firing threshold.

    Made by :func:`top_activations`. Ties keep the earlier unit. Fewer than ``k`` units in the corpus
    leave ``-inf`` values and unit ``-1``.

    Attributes:
        neurons: Addresses ``[n]``, in store order.
        k: Units kept per neuron and direction.
        top_values: Float32 ``[n, k]``, descending.
        top_units: Int64 ``[n, k]``, global unit rows.
        bottom_values: Float32 ``[n, k]``, ascending (``[n, 0]`` when computed with ``bottom=False``).
        bottom_units: Int64 ``[n, k]`` (``[n, 0]`` likewise).
        quantile: The firing quantile.
        thresholds: Float32 ``[n]``: a unit *fires* when its activation is ≥ the neuron's threshold, the
            ``ceil(quantile · num_units)``-th largest activation (exact).
        num_units: Units in the corpus.
        offsets: Int64 ``[num_sentences + 1]``: unit rows of each sentence (unit → sentence, position).
        sentence_units: The unit strings of every sentence that appears above, for contexts.
        granularity: ``"word"`` or ``"token"``.
    """

    _plot_columns = ("word", "activation")

    neurons: tuple[str, ...]
    k: int
    top_values: np.ndarray
    top_units: np.ndarray
    bottom_values: np.ndarray
    bottom_units: np.ndarray
    quantile: float
    thresholds: np.ndarray
    num_units: int
    offsets: np.ndarray
    sentence_units: dict[int, tuple[str, ...]]
    granularity: str = "word"

    def __len__(self) -> int:
        return len(self.neurons)

    def index(self, neuron: str | NeuronAddress) -> int:
        """Row of ``neuron`` in the arrays."""
        name = parse_neuron(neuron).name
        try:
            return self._name_index[name]
        except KeyError:
            raise ValueError(
                f"neuron {name} is not in these results ({len(self.neurons)} neurons from "
                f"{self.neurons[0]} to {self.neurons[-1]}): pass it in neurons= when computing them"
            ) from None

    @cached_property
    def _name_index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.neurons)}

    def threshold(self, neuron: str | NeuronAddress) -> float:
        return float(self.thresholds[self.index(neuron)])

    def contexts(self, neuron: str | NeuronAddress, which: str = "top", window: int = 5) -> pd.DataFrame:
        """One row per unit, best first: ``rank``, ``activation``, ``sentence``, ``position``, the
        ``window`` units to the ``left``, the ``unit`` itself and the ``window`` units to the ``right``."""
        if which not in ("top", "bottom"):
            raise ValueError(f"which must be 'top' or 'bottom', got {which!r}")
        i = self.index(neuron)
        values = (self.top_values if which == "top" else self.bottom_values)[i]
        units = (self.top_units if which == "top" else self.bottom_units)[i]
        keep = units >= 0
        values, units = values[keep], units[keep]
        sent, pos = _locate(self.offsets, units)
        rows = []
        for r, (v, s, p) in enumerate(zip(values, sent, pos)):
            left, unit, right = _context(self.sentence_units[int(s)], int(p), window)
            rows.append(
                {
                    "rank": r,
                    "activation": float(v),
                    "sentence": int(s),
                    "position": int(p),
                    "left": left,
                    self.granularity: unit,
                    "right": right,
                }
            )
        cols = ["rank", "activation", "sentence", "position", "left", self.granularity, "right"]
        return pd.DataFrame(rows, columns=cols)

    def context_units(
        self, neuron: str | NeuronAddress, rank: int, which: str = "top"
    ) -> tuple[list[str], int]:
        """The whole sentence of the ``rank``-th unit (its units) and the unit's position in it, for a view
        that highlights the firing unit."""
        i = self.index(neuron)
        units = (self.top_units if which == "top" else self.bottom_units)[i]
        if not 0 <= rank < len(units) or units[rank] < 0:
            raise ValueError(f"rank {rank} is out of range: there are {int((units >= 0).sum())} units")
        sent, pos = _locate(self.offsets, units[rank : rank + 1])
        return list(self.sentence_units[int(sent[0])]), int(pos[0])

    def to_frame(self) -> pd.DataFrame:
        """One row per neuron × side × rank: ``neuron``, ``which``, ``rank``, ``activation``, ``sentence``,
        ``position`` and the unit."""
        frames = []
        for which, values, units in (
            ("top", self.top_values, self.top_units),
            ("bottom", self.bottom_values, self.bottom_units),
        ):
            if units.shape[1] == 0:
                continue
            sent, pos = _locate(self.offsets, units.ravel())
            text = [self.sentence_units[int(s)][int(p)] if s >= 0 else "" for s, p in zip(sent, pos)]
            frames.append(
                pd.DataFrame(
                    {
                        "neuron": np.repeat(np.array(self.neurons, dtype=object), units.shape[1]),
                        "which": which,
                        "rank": np.tile(np.arange(units.shape[1]), len(self.neurons)),
                        "activation": values.ravel(),
                        "sentence": sent,
                        "position": pos,
                        self.granularity: text,
                    }
                )
            )
        out = pd.concat(frames, ignore_index=True)
        return out[out["sentence"] >= 0].reset_index(drop=True)

    def __repr__(self) -> str:
        return summary(
            f"TopActivations({len(self.neurons)} neurons, k={self.k}, over {self.num_units} "
            f"{self.granularity}s, firing threshold at the top {self.quantile:.2%})"
        )


def top_activations(
    acts: Activations,
    neurons: NeuronSpec = None,
    k: int = 20,
    *,
    quantile: float = DEFAULT_QUANTILE,
    bottom: bool = True,
    progress: bool | None = None,
) -> TopActivations:
    """Each neuron's ``k`` top-activating (and, with ``bottom``, most negative) units over the corpus,
    with their sentences, and its firing threshold at the top ``quantile`` of units.

    One streaming pass over the store; memory is ``O(neurons × (k + quantile · units))`` plus one chunk.

    Args:
        acts: The activations (an on-disk store works).
        neurons: ``None`` (every neuron), a site (``"layer.3.mlp"``), addresses, or a list of them.
        k: Units kept per neuron.
        quantile: The firing quantile of each neuron's threshold.
        bottom: Also keep the ``k`` most negative units.
        progress: A bar over the chunks.

    Returns:
        Top (and bottom) units, their sentences and the thresholds.

    Raises:
        ValueError: For a bad ``k`` or ``quantile``, or unknown neurons.

    Example:
        >>> top = top_activations(acts, "layer.3.mlp", k=10)
        >>> top.contexts("layer.3.mlp:117")  # the top units in their sentences
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    sel = NeuronSelection.of(acts, neurons)
    n_units = acts.num_units
    k_fire = quantile_k(n_units, quantile)
    widths = [int(sel.starts[i + 1] - sel.starts[i]) for i in range(len(sel.sites))]
    fire = [StreamingTopK(w, k_fire, keep_units=False) for w in widths]
    top = [StreamingTopK(w, int(k)) for w in widths]
    low = [StreamingTopK(w, int(k)) for w in widths] if bottom else []
    bar = progress_bar(acts, len(sel), "top activations", progress)
    try:
        for unit, i, block in iter_blocks(acts, sel, bar):
            x = as_float32(block)
            # the larger top-k screens the block; the smaller one takes its candidates
            if k_fire >= k:
                top[i].merge(fire[i].update(x, unit))
            else:
                fire[i].merge(top[i].update(x, unit))
            if bottom:
                low[i].update(x, unit, negate=True)
    finally:
        bar.close()
    tv, tu = (np.concatenate(a) for a in zip(*(h.result() for h in top)))
    if bottom:
        bv, bu = (np.concatenate(a) for a in zip(*(h.result() for h in low)))
        bv = -bv
    else:
        bv, bu = np.zeros((len(sel), 0), np.float32), np.zeros((len(sel), 0), np.int64)
    thresholds = np.concatenate([h.floor for h in fire]).astype(np.float32)
    offsets = acts.offsets
    sent, _ = _locate(offsets, np.concatenate([tu.ravel(), bu.ravel()]))
    return TopActivations(
        sel.names,
        int(k),
        tv,
        tu,
        bv,
        bu,
        float(quantile),
        thresholds,
        n_units,
        offsets,
        _sentence_units(acts, sent),
        acts.granularity,
    )


# ------------------------------------------------------------------------------------------------
# One neuron: quantile samples and word types
# ------------------------------------------------------------------------------------------------


def _neuron_values(acts: Activations, neuron: str | NeuronAddress) -> tuple[str, np.ndarray]:
    addr = acts.check_neuron(neuron)
    sel = NeuronSelection.of(acts, addr)
    parts = [as_float32(block)[:, 0] for _, _, block in iter_blocks(acts, sel)]
    return addr.name, np.concatenate(parts)


def _all_units(acts: Activations) -> list[str]:
    out: list[str] = []
    for _, _, chunk in iter_chunks(acts, []):
        for us in chunk.units:
            out += us
    return out


def _kth_largest(values: np.ndarray, quantile: float) -> float:
    k = quantile_k(len(values), quantile)
    return float(np.partition(values, len(values) - k)[len(values) - k])


@dataclass(frozen=True)
class QuantileSamples(TableResult):
    """Units sampled from each activation quantile bin of one neuron.

    Made by :func:`quantile_samples`. Bin ``b`` holds activations in ``[edges[b], edges[b+1])``, the last
    bin closed.

    Attributes:
        neuron: The neuron's address.
        quantiles: ``[n_bins + 1]``, the bin boundaries as quantiles.
        edges: Float32 ``[n_bins + 1]``, the bin boundaries as activations.
        bins: ``[m]``, each sample's bin.
        units: ``[m]``, each sample's global unit row.
        sentences: ``[m]``, each sample's sentence.
        positions: ``[m]``, each sample's position in its sentence.
        values: ``[m]``, each sample's activation.
        texts: ``texts[j]``, the sample's unit.
        contexts: ``contexts[j]``, its sentence's units.
    """

    _plot_columns = ("unit", "activation")

    neuron: str
    quantiles: np.ndarray
    edges: np.ndarray
    bins: np.ndarray
    units: np.ndarray
    sentences: np.ndarray
    positions: np.ndarray
    values: np.ndarray
    texts: tuple[str, ...]
    contexts: tuple[tuple[str, ...], ...]

    def to_frame(self, window: int = 5) -> pd.DataFrame:
        """One row per sample: ``bin``, the bin's quantile range, ``activation``, ``sentence``,
        ``position``, ``left``, ``unit``, ``right``."""
        rows = []
        for j in range(len(self.units)):
            b = int(self.bins[j])
            left, unit, right = _context(self.contexts[j], int(self.positions[j]), window)
            rows.append(
                {
                    "bin": b,
                    "quantile_from": float(self.quantiles[b]),
                    "quantile_to": float(self.quantiles[b + 1]),
                    "activation": float(self.values[j]),
                    "sentence": int(self.sentences[j]),
                    "position": int(self.positions[j]),
                    "left": left,
                    "unit": unit,
                    "right": right,
                }
            )
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return summary(
            f"QuantileSamples({self.neuron}: {len(self.units)} samples from {len(self.edges) - 1} bins)"
        )


def quantile_samples(
    acts: Activations,
    neuron: str | NeuronAddress,
    quantiles: int | Sequence[float] = 10,
    per_bin: int = 3,
    *,
    seed: int = 0,
) -> QuantileSamples:
    """Sample ``per_bin`` units from each activation quantile bin of ``neuron``.

    Sampling is without replacement, seeded, and ordered by activation.

    Args:
        acts: The activations.
        neuron: The neuron.
        quantiles: A number of equal-mass bins (10: deciles) or explicit boundaries, e.g.
            ``[0, 0.5, 0.9, 0.99, 0.995, 1]``.
        per_bin: Units sampled per bin.
        seed: Seed of the sample.

    Returns:
        The samples with their bins, values and contexts.

    Raises:
        ValueError: For no bins, boundaries that are not increasing within [0, 1], or ``per_bin < 1``.

    Example:
        >>> quantile_samples(acts, "layer.3.mlp:117", quantiles=10, per_bin=3).to_frame()
    """
    name, values = _neuron_values(acts, neuron)
    if isinstance(quantiles, (int, np.integer)):
        if quantiles < 1:
            raise ValueError("quantiles must be at least 1 bin")
        qs = np.linspace(0.0, 1.0, int(quantiles) + 1)
    else:
        qs = np.asarray(quantiles, dtype=np.float64)
        if len(qs) < 2 or np.any(np.diff(qs) <= 0) or qs[0] < 0 or qs[-1] > 1:
            raise ValueError("quantiles must be increasing boundaries within [0, 1], e.g. [0, 0.5, 0.9, 1]")
    if per_bin < 1:
        raise ValueError("per_bin must be at least 1")
    edges = np.quantile(values, qs).astype(np.float32)
    bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    inside = (values >= edges[0]) & (values <= edges[-1])
    rng = np.random.default_rng(seed)
    picked = []
    for b in range(len(edges) - 1):
        pool = np.flatnonzero((bins == b) & inside)
        if len(pool):
            chosen = rng.choice(pool, size=min(per_bin, len(pool)), replace=False)
            picked.append(chosen[np.argsort(values[chosen], kind="stable")])
    units = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    sent, pos = _locate(acts.offsets, units)
    texts = _sentence_units(acts, sent)
    return QuantileSamples(
        name,
        qs,
        edges,
        bins[units],
        units,
        sent,
        pos,
        values[units],
        tuple(texts[int(s)][int(p)] for s, p in zip(sent, pos)),
        tuple(texts[int(s)] for s in sent),
    )


@dataclass(frozen=True)
class WordTypeSummary(TableResult):
    """Which word types activate one neuron, normalised by frequency.

    Made by :func:`word_types`; per type ``[t]``, types seen at least ``min_count`` times;
    ``fire_rate`` = fires / counts.

    Attributes:
        neuron: The neuron's address.
        types: ``[t]``, the word types.
        counts: ``[t]``, occurrences.
        mean: ``[t]``, mean activation.
        max: ``[t]``, max activation.
        fires: ``[t]``, occurrences at or above ``threshold``.
        threshold: The top-``quantile`` firing threshold (or the one given).
        quantile: The quantile of the threshold (``None`` when one was given).
        lowercase: Whether types were lowercased.
    """

    _plot_columns = ("type", "mean")

    neuron: str
    types: tuple[str, ...]
    counts: np.ndarray
    mean: np.ndarray
    max: np.ndarray
    fires: np.ndarray
    threshold: float
    quantile: float | None
    lowercase: bool

    @property
    def fire_rate(self) -> np.ndarray:
        return self.fires / np.maximum(self.counts, 1)

    def to_frame(self, sort: str = "mean") -> pd.DataFrame:
        """One row per type, sorted by ``sort`` (``"mean"``, ``"fire_rate"``, ``"max"``, ``"fires"``,
        ``"count"``) descending."""
        df = pd.DataFrame(
            {
                "type": list(self.types),
                "count": self.counts,
                "mean": self.mean,
                "max": self.max,
                "fires": self.fires,
                "fire_rate": self.fire_rate,
            }
        )
        if sort not in df.columns or sort == "type":
            raise ValueError(f"cannot sort by {sort!r}: choose mean, fire_rate, max, fires or count")
        return df.sort_values([sort, "count"], ascending=[False, False], kind="stable").reset_index(drop=True)

    def __repr__(self) -> str:
        top = ", ".join(self.to_frame()["type"].head(5))
        return summary(f"WordTypeSummary({self.neuron}: {len(self.types)} types; highest mean: {top})")


def word_types(
    acts: Activations,
    neuron: str | NeuronAddress,
    *,
    min_count: int = 3,
    lowercase: bool = True,
    threshold: float | None = None,
    quantile: float = DEFAULT_QUANTILE,
) -> WordTypeSummary:
    """Summarise ``neuron``'s activation per word type (unit string, lowercased by default): how often
    each type occurs, its mean and max activation, and how often it fires (≥ ``threshold``, by default
    the top-``quantile`` threshold as in :func:`top_activations`).

    Args:
        acts: The activations.
        neuron: The neuron.
        min_count: Types seen fewer times are left out.
        lowercase: Lowercase unit strings into types.
        threshold: The firing threshold (default: the top-``quantile`` one).
        quantile: The firing quantile when no ``threshold`` is given.

    Returns:
        Counts, mean and max activation and firings per type.

    Example:
        >>> word_types(acts, "layer.3.mlp:117").to_frame(sort="mean").head()
    """
    name, values = _neuron_values(acts, neuron)
    words = _all_units(acts)
    if lowercase:
        words = [w.lower() for w in words]
    types, inverse = np.unique(np.array(words, dtype=object), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(types))
    sums = np.bincount(inverse, weights=values.astype(np.float64), minlength=len(types))
    maxes = np.full(len(types), -np.inf)
    np.maximum.at(maxes, inverse, values)
    thr = float(threshold) if threshold is not None else _kth_largest(values, quantile)
    fires = np.bincount(inverse, weights=(values >= thr).astype(np.float64), minlength=len(types))
    keep = counts >= max(1, min_count)
    return WordTypeSummary(
        name,
        tuple(str(t) for t in types[keep]),
        counts[keep].astype(np.int64),
        (sums[keep] / counts[keep]).astype(np.float32),
        maxes[keep].astype(np.float32),
        fires[keep].astype(np.int64),
        thr,
        None if threshold is not None else float(quantile),
        lowercase,
    )
