"""Streaming statistics: what a corpus analysis needs from the activations, computed during extraction,
block by block, with no activation store (:func:`extract_statistics` → :class:`ActivationStatistics`).

Per neuron: moments (count, mean, variance — per-block shifted sums merged with Chan et al.'s parallel
update, in float64 — min and max); a quantile sketch (a uniform sample of units, the ones with the
smallest hash of their unit index: deterministic and independent of how the corpus is cut into blocks);
the top-k and bottom-k contexts and the exact firing threshold (as :func:`top_activations`); and, given
concepts, the concept-alignment counts (as :func:`align_concepts`). Memory is one block of activations
plus ``O(neurons × (k + quantile · units + sample))``, whatever the corpus size.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..display import Result, listing, new_axes, summary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
from ..store.extraction import ExtractionPlan
from ..store.pipeline import consume_overlapped
from ..store.streaming import StreamingTopK, quantile_k
from .alignment import ConceptAlignment
from .concepts import Concepts
from .selection import DEFAULT_QUANTILE, TopActivations, _locate


@dataclass(frozen=True)
class ActivationStatistics(Result):
    """Statistics of every extracted neuron over a corpus, computed while extracting.

    Attributes:
        neurons: Neuron addresses ``[n]``, site by site in forward order.
        num_units: Units (words or tokens) seen.
        granularity: ``"word"`` or ``"token"``.
        mean: float64 ``[n]``.
        var: float64 ``[n]``, the population variance.
        min: float32 ``[n]``.
        max: float32 ``[n]``.
        sample: float32 ``[n, s]``, each neuron's values on the sampled units (the quantile sketch
            behind :meth:`quantiles`; every unit when the corpus has at most ``s``).
        sample_units: int64 ``[s]``, the sampled units (global rows).
        top: The top-k / bottom-k contexts and firing thresholds, as
            :func:`~neuronwidgets.core.concepts.top_activations` computes them.
        alignment: Concept-alignment counts, as :func:`~neuronwidgets.core.concepts.align_concepts`
            computes them, when concepts were given (else ``None``).

    Example:
        >>> st = extract_statistics("minilm", corpus, k=20)  # doctest: +SKIP
        >>> st.to_frame().sort_values("std").tail()  # doctest: +SKIP
    """

    neurons: tuple[str, ...]
    num_units: int
    granularity: str
    mean: np.ndarray
    var: np.ndarray
    min: np.ndarray
    max: np.ndarray
    sample: np.ndarray
    sample_units: np.ndarray
    top: TopActivations
    alignment: ConceptAlignment | None = None

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    def quantiles(self, q: float | Sequence[float]) -> np.ndarray:
        """float ``[n, len(q)]`` (or ``[n]`` for one ``q``): quantiles estimated from the sample (exact
        when every unit is sampled; otherwise a rank error of about ``sqrt(q(1-q)/s)``)."""
        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if ((qs < 0) | (qs > 1)).any():
            raise ValueError(f"quantiles must be in [0, 1], got {q!r}")
        out = np.quantile(self.sample.astype(np.float64), qs, axis=1).T
        return out[:, 0] if np.ndim(q) == 0 else out

    def to_frame(self) -> pd.DataFrame:
        """One row per neuron: mean, std, min, max, median (sketch), firing threshold."""
        return pd.DataFrame(
            {
                "neuron": list(self.neurons),
                "mean": self.mean,
                "std": self.std,
                "min": self.min,
                "max": self.max,
                "median": self.quantiles(0.5),
                "threshold": self.top.thresholds,
            }
        )

    def plot(self, neurons: int = 50, ax: Any = None) -> Axes:
        """Mean ± std, and min / max, of the first ``neurons`` neurons, drawn into ``ax`` (default: a new
        figure); returns the Axes."""
        ax = new_axes(ax, (10.0, 3.0))
        n = min(neurons, len(self.neurons))
        x = np.arange(n)
        ax.errorbar(x, self.mean[:n], yerr=self.std[:n], fmt="o", ms=3, label="mean ± std")
        ax.scatter(x, self.min[:n], marker="_", color="gray", label="min / max")
        ax.scatter(x, self.max[:n], marker="_", color="gray")
        step = max(1, n // 10)
        ax.set_xticks(x[::step], [self.neurons[i] for i in x[::step]], rotation=30)
        ax.set_ylabel("activation")
        ax.legend(loc="best")
        return ax

    def __repr__(self) -> str:
        extra = ", concept alignment" if self.alignment is not None else ""
        return summary(
            f"ActivationStatistics({len(self.neurons)} neurons over {self.num_units} {self.granularity}s, "
            f"top k={self.top.k}, sample of {self.sample.shape[1]} units{extra})",
            f"neurons: {listing(self.neurons, n=4)}",
            doors=".to_frame() · .plot() · .top (TopActivations) · .quantiles(q) · .alignment",
        )


def _unit_hash(units: np.ndarray) -> np.ndarray:
    """splitmix64 of unit indices: a fixed pseudo-random order of the units."""
    z = units.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class _SiteStats:
    """Running statistics of one site's neurons."""

    def __init__(self, width: int, k: int, k_fire: int, bottom: bool, keep_fire_units: bool):
        self.n = 0
        self.mean = np.zeros(width, np.float64)
        self.m2 = np.zeros(width, np.float64)
        self.shift: np.ndarray | None = None
        self.min = np.full(width, np.inf, np.float32)
        self.max = np.full(width, -np.inf, np.float32)
        self.k, self.k_fire = k, k_fire
        self.fire = StreamingTopK(width, k_fire, keep_units=False)
        # with concepts: every (neuron, unit, value) at or above the neuron's running threshold; the
        # threshold only rises, so the final pruning leaves exactly the units that fire (ties included)
        self.firing: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = [] if keep_fire_units else None
        self.firing_size = 0
        self.top = StreamingTopK(width, k)
        self.low = StreamingTopK(width, k) if bottom else None
        self.sample: list[np.ndarray] = []

    def update(self, x: np.ndarray, first_unit: int, rows: np.ndarray) -> None:
        n = x.shape[0]
        if self.shift is None:
            self.shift = x.mean(axis=0)
        d = x - self.shift
        s1 = d.sum(axis=0).astype(np.float64)
        s2 = np.einsum("ij,ij->j", d, d).astype(np.float64)
        mean_b = self.shift + s1 / n
        m2_b = np.maximum(s2 - s1 * s1 / n, 0.0)
        tot = self.n + n
        delta = mean_b - self.mean
        self.mean += delta * (n / tot)
        self.m2 += m2_b + delta * delta * (self.n * n / tot)
        self.n = tot
        lo, hi = x.min(axis=0), x.max(axis=0)
        np.minimum(self.min, lo, out=self.min)
        np.maximum(self.max, hi, out=self.max)
        # the larger top-k screens the block; the smaller one takes its candidates (as top_activations);
        # the columns' extremes spare the scan of columns with no candidate (most, for the bottom-k)
        if self.k_fire >= self.k:
            self.top.merge(self.fire.update(x, first_unit, extreme=hi))
        else:
            self.fire.merge(self.top.update(x, first_unit, extreme=hi))
        if self.low is not None:
            self.low.update(x, first_unit, negate=True, extreme=-lo)
        if len(rows):
            self.sample.append(x[rows])
        if self.firing is not None:
            r, c = np.nonzero(x >= self.fire.lower_bound[None, :])  # a superset: pruned later
            self.firing.append((c.astype(np.int32), first_unit + r, x[r, c]))
            self.firing_size += len(r)
            if self.firing_size > 2 * self.k_fire * x.shape[1] + 4 * x.size:
                self.prune_firing()

    def prune_firing(self) -> tuple[np.ndarray, np.ndarray]:
        """Drop entries below the current thresholds; returns the kept ``(neuron, unit)`` pairs."""
        assert self.firing is not None
        if not self.firing:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        c, u, v = (np.concatenate(a) for a in zip(*self.firing))
        keep = v >= self.fire.floor[c]
        self.firing = [(c[keep], u[keep], v[keep])]
        self.firing_size = int(keep.sum())
        return c[keep], u[keep]


def extract_statistics(
    model: Any,
    data: Any,
    layers: Any = None,
    components: Sequence[str] | str | None = "resid",
    *,
    k: int = 20,
    quantile: float = DEFAULT_QUANTILE,
    bottom: bool = True,
    concepts: Concepts | None = None,
    sample: int = 4096,
    granularity: str = "word",
    aggregation: str = "mean",
    chunk_sentences: int = 256,
    batch_size: int = 32,
    max_batch_tokens: int = 4096,
    max_length: int | None = None,
    progress: bool | None = None,
) -> ActivationStatistics:
    """Extract activations block by block and keep only their statistics (no store, bounded memory).

    A neuron fires on every unit at or above its threshold (ties included), as in ``align_concepts``.

    Args:
        model: A :class:`~neuronwidgets.core.ModelHandle` or an embedded model's name.
        data: A :class:`~neuronwidgets.core.Corpus`, texts, or lists of words.
        layers: As :func:`~neuronwidgets.core.extract_activations` (default every layer).
        components: As :func:`~neuronwidgets.core.extract_activations` (default ``"resid"``).
        k: Top (and bottom) units kept per neuron, with their contexts.
        quantile: The top fraction of units at which a neuron fires (its threshold).
        bottom: Also keep each neuron's ``k`` most negative units.
        concepts: :class:`~neuronwidgets.core.concepts.Concepts` of the same corpus (word granularity):
            adds the concept-alignment counts.
        sample: Units in the quantile sketch (a uniform sample, by a hash of the unit index).
        granularity: ``"word"`` or ``"token"``.
        aggregation: How subwords make a word (``"mean"``, ``"first"``, ``"last"``, ``"max"``).
        chunk_sentences: About this many sentences per block, cut by rows (memory is one group of blocks'
            activations; see ``row_blocks`` in ``store/extraction.py``).
        batch_size: Texts per forward pass.
        max_batch_tokens: Padded tokens per forward pass.
        max_length: Tokens per forward pass (default the model's maximum).
        progress: Show a progress bar (default: for 256 sentences or more).

    Returns:
        An :class:`ActivationStatistics`.

    Example:
        >>> st = extract_statistics("minilm", corpus, k=20, concepts=Concepts.from_corpus(corpus))  # doctest: +SKIP
        >>> st.top.contexts("layer.3.resid:117")  # doctest: +SKIP
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not isinstance(sample, (int, np.integer)) or sample < 1:
        raise ValueError(f"sample must be a positive number of units, got {sample!r}")
    plan = ExtractionPlan.make(
        model, data, layers, components, granularity, aggregation, chunk_sentences, batch_size,
        max_batch_tokens, max_length, "float32",
    )  # fmt: skip
    corpus = plan.corpus
    word_mode = granularity == "word"
    if concepts is not None:
        if not isinstance(concepts, Concepts):
            raise TypeError(
                f"concepts must be Concepts (Concepts.from_corpus(corpus)), got {type(concepts).__name__}"
            )
        if not word_mode:
            raise ValueError("concepts= needs granularity='word' (concepts are per word)")
        counts = np.array([len(w) for w in corpus.words])
        if concepts.num_sentences != len(corpus) or not np.array_equal(np.diff(concepts.offsets), counts):
            raise ValueError("concepts must be built from the same corpus: other sentences or word counts")
    n_units_hint = corpus.num_words if word_mode else None
    sites = plan.meta["sites"]
    widths = plan.meta["widths"]
    k_fire = quantile_k(n_units_hint, quantile) if n_units_hint is not None else None
    if k_fire is None:  # token granularity: count the tokens first (one tokenisation pass)
        n_units_hint = int(plan.layout().offsets[-1])
        k_fire = quantile_k(n_units_hint, quantile)
    stats = {s: _SiteStats(widths[s], int(k), k_fire, bottom, concepts is not None) for s in sites}
    hashes: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    units_of: list[tuple[str, ...]] = []
    offsets = [0]
    from tqdm.auto import tqdm

    show = progress if progress is not None else len(corpus) >= 256
    bar = tqdm(total=len(corpus), desc=f"statistics of {plan.handle.name}", unit="sent", disable=not show)
    threads = ThreadPoolExecutor(max(1, torch.get_num_threads()), thread_name_prefix="neuronwidgets-stats")
    try:
        blocks = range(len(plan.bounds))
        groups = plan.groups(blocks, plan.layout())

        def take(chunks: list) -> None:
            blocks = []  # (chunk, first unit, sampled rows) of each block, in order
            for _, chunk in chunks:
                first = offsets[-1]
                n = int(chunk.offsets[-1])
                offsets.extend(first + chunk.offsets[1:])
                if not word_mode:
                    units_of.extend(tuple(u) for u in chunk.units)
                h = _unit_hash(np.arange(first, first + n))
                cut = _cutoff(hashes, sample)
                rows = np.flatnonzero(h < cut) if cut is not None else np.arange(n)
                hashes.append(h[rows])
                ids.append(first + rows)
                blocks.append((chunk, first, rows))
            # the sites on threads of their own, each seeing its blocks in order; each block's rows are
            # dropped once taken, so its buffers go back to the extractor's pool for the next group
            chunks.clear()
            work = {s: [(chunk.arrays.pop(s), first, rows) for chunk, first, rows in blocks] for s in sites}

            def update(site: str) -> None:
                todo = work.pop(site)
                while todo:
                    x, first, rows = todo.pop(0)
                    stats[site].update(np.ascontiguousarray(x, np.float32), first, rows)
                    del x

            for _ in threads.map(update, sites):
                pass
            if sum(len(x) for x in hashes) > 2 * sample:
                _prune(hashes, ids, [stats[s].sample for s in sites], sample)
            bar.update(sum(chunk.num_sentences for chunk, _, _ in blocks))

        # The statistics of a group are taken after its forward passes, the sites on as many threads as
        # torch uses (NumPy releases the GIL): taken in a background thread while the next group goes
        # through the model instead, they slowed the forward passes down more than they took (2 cores, 10k
        # sentences: 2,250 against 2,790 words/s), as torch's threads wait for the one that lost its core.
        plan.extractor.reuse_buffers = True  # each group is done with before the next one starts
        consume_overlapped((plan.run_group(g, blocks) for g in groups), take, overlap=False)
    finally:
        bar.close()
        threads.shutdown()
    plan.warn()
    _prune(hashes, ids, [stats[s].sample for s in sites], sample)
    num_units = offsets[-1]
    off = np.asarray(offsets, dtype=np.int64)
    names = tuple(f"{s}:{i}" for s in sites for i in range(widths[s]))
    cat = lambda f: np.concatenate([f(stats[s]) for s in sites])  # noqa: E731
    tv, tu = (np.concatenate(a) for a in zip(*(stats[s].top.result() for s in sites)))
    if bottom:
        bv, bu = (np.concatenate(a) for a in zip(*(stats[s].low.result() for s in sites)))  # type: ignore[union-attr]
        bv = -bv
    else:
        bv, bu = np.zeros((len(names), 0), np.float32), np.zeros((len(names), 0), np.int64)
    thresholds = cat(lambda st: st.fire.floor).astype(np.float32)
    sent, _ = _locate(off, np.concatenate([tu.ravel(), bu.ravel()]))
    wanted = np.unique(sent[sent >= 0])
    source = corpus.words if word_mode else units_of
    top = TopActivations(
        names, int(k), tv, tu, bv, bu, float(quantile), thresholds, num_units, off,
        {int(i): tuple(source[int(i)]) for i in wanted}, granularity,
    )  # fmt: skip
    order = np.argsort(np.concatenate(hashes), kind="stable") if hashes else np.zeros(0, np.int64)
    sampled = np.concatenate([np.concatenate(stats[s].sample, axis=0) for s in sites], axis=1)[order]
    sample_units = np.concatenate(ids).astype(np.int64)[order] if ids else np.zeros(0, np.int64)
    alignment = (
        _alignment(stats, sites, names, concepts, thresholds, num_units, quantile) if concepts else None
    )
    return ActivationStatistics(
        names,
        num_units,
        granularity,
        cat(lambda st: st.mean),
        cat(lambda st: st.m2 / max(st.n, 1)),
        cat(lambda st: st.min),
        cat(lambda st: st.max),
        np.ascontiguousarray(sampled.T),
        sample_units,
        top,
        alignment,
    )


def _cutoff(hashes: list[np.ndarray], sample: int) -> np.uint64 | None:
    """The ``sample``-th smallest hash so far (``None`` while fewer units were seen)."""
    allh = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    if len(allh) < sample:
        return None
    return np.partition(allh, sample - 1)[sample - 1] + np.uint64(1)


def _prune(
    hashes: list[np.ndarray], ids: list[np.ndarray], samples: list[list[np.ndarray]], sample: int
) -> None:
    """Keep the ``sample`` units with the smallest hashes (in place)."""
    allh = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    if len(allh) <= sample:
        return
    keep = np.sort(np.argpartition(allh, sample - 1)[:sample])
    hashes[:] = [allh[keep]]
    ids[:] = [np.concatenate(ids)[keep]]
    for lst in samples:
        vals = np.concatenate(lst, axis=0)[keep]
        lst[:] = [vals]


def _alignment(
    stats: dict[str, _SiteStats],
    sites: list[str],
    names: tuple[str, ...],
    concepts: Concepts,
    thresholds: np.ndarray,
    num_units: int,
    quantile: float,
) -> ConceptAlignment:
    """Concept counts over each neuron's firing units (every unit at or above its threshold)."""
    n_c = len(concepts.names)
    rows = []
    fires = []
    for s in sites:
        width = len(stats[s].fire.floor)
        col, units = stats[s].prune_firing()
        which, ids = concepts.expand(units.astype(np.int64))
        counts = np.bincount(col[which].astype(np.int64) * n_c + ids, minlength=width * n_c)
        rows.append(counts.reshape(width, n_c).astype(np.int32))
        fires.append(np.bincount(col, minlength=width).astype(np.int64))
    return ConceptAlignment(
        names,
        concepts.names,
        concepts.kinds,
        np.concatenate(rows),
        np.concatenate(fires),
        concepts.counts,
        thresholds,
        num_units,
        float(quantile),
    )
