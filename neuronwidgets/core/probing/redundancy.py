"""Redundant neurons (Dalvi et al. 2020): clusters of highly correlated neurons, one representative each,
and how well a probe does with only the representatives.

Clustering is agglomerative on the distance ``1 − |ρ|`` between neurons (Pearson correlation over words),
cut at ``threshold`` (Dalvi et al.'s c_t): with average linkage, a cluster's members are on average at
least ``1 − threshold`` correlated. To handle 10,000+ neurons in bounded memory it never builds a full
distance matrix: correlations are computed a block of neurons at a time, and only pairs closer than the
threshold are kept; clusters cannot span two connected components of that sparse graph (for single,
average and complete linkage, a merge below the cut needs at least one such pair), so each component is
clustered on its own, with an O(m²) nearest-neighbour-chain algorithm on its m × m distances.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..display import Result, new_axes, number, steps_bar, summary
from ..models.addresses import NeuronAddress, Site, parse_neuron
from ..store.activations import Activations
from ..store.design import Design, Split, resolve_split, sample_rows, threads_by_size
from .engine import _compute_dtype
from .probes import ProbeResult
from .training import train_probe

if TYPE_CHECKING:
    from matplotlib.axes import Axes

LINKAGES = ("average", "complete", "single")


@dataclass(frozen=True, eq=False)
class NeuronClusters(Result):
    """Neurons grouped by correlation.

    Made by :func:`cluster_neurons`.

    Attributes:
        neurons: Addresses ``[N]``.
        labels: Int64 ``[N]``, the cluster of each neuron (clusters are numbered by size, largest first).
        representatives: One neuron per cluster ``[K]`` (the member most correlated with the others, or
            chosen as asked).
        threshold: The cut on ``1 − |ρ|``.
        linkage: ``"average"``, ``"complete"`` or ``"single"``.
        meta: How it was computed.
    """

    neurons: tuple[str, ...]
    labels: np.ndarray
    representatives: tuple[str, ...]
    threshold: float
    linkage: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_clusters(self) -> int:
        return len(self.representatives)

    @property
    def sizes(self) -> np.ndarray:
        """int64 ``[K]``: members per cluster."""
        return np.bincount(self.labels, minlength=self.num_clusters)

    def members(self, cluster: int) -> list[str]:
        if not 0 <= cluster < self.num_clusters:
            raise ValueError(f"cluster {cluster} is out of range: there are {self.num_clusters}")
        return [n for n, c in zip(self.neurons, self.labels) if c == cluster]

    def cluster_of(self, neuron: str | NeuronAddress) -> int:
        name = parse_neuron(neuron).name
        try:
            return int(self.labels[self.neurons.index(name)])
        except ValueError:
            raise ValueError(f"neuron {name} was not clustered") from None

    def __repr__(self) -> str:
        return summary(
            f"NeuronClusters({len(self.neurons)} neurons → {self.num_clusters} clusters at "
            f"threshold {self.threshold:g}, {self.linkage} linkage)"
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per neuron: neuron, cluster, cluster size, whether it is its cluster's representative."""
        reps = set(self.representatives)
        sizes = self.sizes
        return pd.DataFrame(
            {
                "neuron": list(self.neurons),
                "cluster": self.labels,
                "size": sizes[self.labels],
                "representative": [n in reps for n in self.neurons],
            }
        )

    def plot(self, *, title: str | None = None, ax: Any = None) -> Axes:
        """Histogram of cluster sizes, drawn into ``ax`` (default: a new figure)."""
        ax = new_axes(ax, (5.0, 3.2))
        sizes = self.sizes
        ax.hist(sizes, bins=[float(b) for b in np.arange(1, sizes.max() + 2) - 0.5], color="tab:blue")
        ax.set_xlabel("cluster size (neurons)")
        ax.set_ylabel("clusters")
        ax.set_yscale("log")
        ax.set_title(
            title
            or f"{len(self.neurons)} neurons → {self.num_clusters} clusters (threshold {self.threshold:g})"
        )
        return ax


# ------------------------------------------------------------------------------------------------
# Hierarchical clustering of one component (nearest-neighbour chain, Lance–Williams updates)
# ------------------------------------------------------------------------------------------------


def nn_chain_linkage(dist: np.ndarray, linkage: str = "average") -> np.ndarray:
    """Agglomerative clustering of ``m`` points from a dense symmetric distance matrix ``[m, m]``
    (modified in place). Returns float64 ``[m − 1, 3]``: merges ``(a, b, height)`` where ``a`` and ``b``
    are point indices standing for their current clusters. Single, complete and average linkage are
    reducible, so the merges below any height give that height's flat clusters."""
    if linkage not in LINKAGES:
        raise ValueError(f"unknown linkage {linkage!r}: choose from {', '.join(LINKAGES)}")
    m = dist.shape[0]
    d = dist
    np.fill_diagonal(d, np.inf)
    active = np.ones(m, dtype=bool)
    size = np.ones(m)
    merges = np.zeros((max(0, m - 1), 3))
    chain: list[int] = []
    done = 0
    while done < m - 1:
        if not chain:
            chain.append(int(np.flatnonzero(active)[0]))
        a = chain[-1]
        row = d[a]
        b = int(np.argmin(row))
        if len(chain) > 1 and row[chain[-2]] <= row[b]:
            b = chain[-2]
        if len(chain) > 1 and b == chain[-2]:
            chain.pop()
            chain.pop()
            merges[done] = (a, b, row[b])
            done += 1
            da, db = d[a].copy(), d[b].copy()
            if linkage == "single":
                new = np.minimum(da, db)
            elif linkage == "complete":
                new = np.maximum(da, db)
            else:
                new = (size[a] * da + size[b] * db) / (size[a] + size[b])
            size[a] += size[b]
            active[b] = False
            new[~active] = np.inf
            new[a] = np.inf
            d[a, :] = new
            d[:, a] = new
            d[b, :] = np.inf
            d[:, b] = np.inf
        else:
            chain.append(b)
    return merges


def _cut(merges: np.ndarray, m: int, threshold: float) -> np.ndarray:
    """Flat cluster label (a representative point index) of each of ``m`` points: merges at or below
    ``threshold`` joined."""
    parent = np.arange(m)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, h in merges:
        if h <= threshold + 1e-12:
            ra, rb = find(int(a)), find(int(b))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(m)])


# ------------------------------------------------------------------------------------------------
# Correlations in blocks
# ------------------------------------------------------------------------------------------------


def _standardised_rows(design: Design, rows: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """float32 ``[n, N]`` columns scaled so that ``Z.T @ Z`` is the correlation matrix; constant columns
    are all zero (correlation 0 with everything). Also the boolean mask of constant columns."""
    x = torch.from_numpy(design.matrix(rows))
    sd, mu = torch.std_mean(x.double(), 0, correction=0)
    const = (sd <= 1e-12).numpy()
    sd[sd <= 1e-12] = math.inf
    z = (x - mu.float()) / (sd.float() * math.sqrt(len(rows)))
    return z, const


def _union(parent: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Join the pairs ``(i, j)`` in a fully compressed union-find forest (``parent[x]`` is x's root, the
    smallest index of its set): hook larger roots to smaller ones, then compress, until nothing changes."""
    while True:
        pi, pj = parent[i], parent[j]
        lo, hi = np.minimum(pi, pj), np.maximum(pi, pj)
        diff = lo != hi
        if not diff.any():
            return parent
        np.minimum.at(parent, hi[diff], lo[diff])
        while True:
            pp = parent[parent]
            if np.array_equal(pp, parent):
                break
            parent = pp


def _components(z: torch.Tensor, min_corr: float, dtype: torch.dtype, block: int = 1024) -> np.ndarray:
    """Connected components of the graph 'pairs with |ρ| ≥ min_corr' (smallest member index per neuron),
    one block of rows of the correlation matrix at a time."""
    n = z.shape[1]
    parent = np.arange(n)
    zc = z.to(dtype)
    for a in range(0, n, block):
        corr = (zc[:, a : a + block].T @ zc).float().abs_()  # [b, N]
        ti, tj = torch.nonzero(corr >= min_corr, as_tuple=True)
        i = ti.numpy() + a
        j = tj.numpy()
        keep = j > i
        if keep.any():
            parent = _union(parent, i[keep], j[keep])
    return parent


def _cluster(
    design: Design,
    thresholds: Sequence[float],
    *,
    linkage: str,
    max_rows: int | None,
    seed: int,
    representative: str,
    precision: str,
    progress: bool | None = None,
) -> list[NeuronClusters]:
    if linkage not in LINKAGES:
        raise ValueError(f"unknown linkage {linkage!r}: choose from {', '.join(LINKAGES)}")
    if representative not in ("medoid", "random", "first"):
        raise ValueError("representative must be 'medoid', 'random' or 'first'")
    ts = [float(t) for t in thresholds]
    for t in ts:
        if not 0 <= t < 1:
            raise ValueError(f"threshold must be in [0, 1) (a distance 1 − |ρ|), got {t}")
    rows = sample_rows(design.num_rows, max_rows, seed)
    z, const = _standardised_rows(design, rows)
    n = design.num_features
    top = max(ts)
    comp = _components(z, 1.0 - top - 1e-6, _compute_dtype(precision))
    comp[const] = np.flatnonzero(const)  # a constant neuron correlates with nothing
    order = np.argsort(comp, kind="stable")
    bounds = np.flatnonzero(np.diff(comp[order])) + 1
    groups = np.split(order, bounds)
    labels = {t: np.empty(n, dtype=np.int64) for t in ts}
    reps: dict[float, dict[int, int]] = {t: {} for t in ts}
    rng = np.random.default_rng(seed)
    bar = steps_bar(len(groups), "clustering", progress, auto=n >= 2000, unit="group")
    for members in groups:
        bar.update(1)
        m = len(members)
        if m == 1:
            for t in ts:
                labels[t][members[0]] = members[0]
                reps[t][int(members[0])] = int(members[0])
            continue
        sub = z[:, members]
        corr = (sub.T.double() @ sub.double()).abs().numpy()
        merges = nn_chain_linkage(1.0 - corr.copy(), linkage)
        for t in ts:
            lab = _cut(merges, m, t)
            for root in np.unique(lab):
                idx = np.flatnonzero(lab == root)
                if representative == "medoid":
                    pick = idx[int(np.argmax(corr[np.ix_(idx, idx)].sum(1)))]
                elif representative == "random":
                    pick = idx[int(rng.integers(len(idx)))]
                else:
                    pick = idx[0]
                labels[t][members[idx]] = members[root]
                reps[t][int(members[root])] = int(members[pick])
    bar.close()
    out = []
    for t in ts:
        raw = labels[t]
        roots, inverse, sizes = np.unique(raw, return_inverse=True, return_counts=True)
        rank = np.lexsort((roots, -sizes))  # largest first, then by first member
        new_id = np.empty(len(roots), dtype=np.int64)
        new_id[rank] = np.arange(len(roots))
        lab = new_id[inverse]
        rep_names = tuple(design.names[reps[t][int(roots[r])]] for r in rank)
        out.append(
            NeuronClusters(
                neurons=tuple(design.names),
                labels=lab,
                representatives=rep_names,
                threshold=t,
                linkage=linkage,
                meta={
                    "rows": len(rows),
                    "representative": representative,
                    "constant_neurons": int(const.sum()),
                },
            )
        )
    return out


@threads_by_size
def cluster_neurons(
    activations: Activations,
    *,
    threshold: float = 0.3,
    sites: Sequence[str | Site] | str | Site | None = None,
    neurons: Iterable[str | NeuronAddress] | None = None,
    linkage: str = "average",
    max_rows: int | None = 5000,
    seed: int = 0,
    representative: str = "medoid",
    precision: str = "auto",
    progress: bool | None = None,
) -> NeuronClusters:
    """Cluster neurons whose activations are highly correlated (Dalvi et al. 2020).

    Args:
        activations: The activations.
        threshold: The cut on the distance ``1 − |ρ|`` (0.3: on average ``|ρ| ≥ 0.7`` within a cluster for
            average linkage, every pair for complete linkage).
        sites: Cluster whole sites (default all of them).
        neurons: Or given neuron addresses.
        linkage: ``"average"``, ``"complete"`` or ``"single"``.
        max_rows: Correlations are estimated on this many randomly chosen words (standard error about
            ``1/√max_rows``; None for all).
        seed: Seed of the row sample (and of ``"random"`` representatives).
        representative: ``"medoid"`` (the member with the highest total ``|ρ|`` to the others),
            ``"random"`` (as the paper) or ``"first"``.
        precision: As :func:`~neuronwidgets.core.probing.train_probe` (for the block products that find
            the candidate pairs).
        progress: A bar over the groups of candidate neurons being linked (``None``: shown for 2,000
            neurons or more).

    Returns:
        The clusters and their representatives.

    Raises:
        ValueError: For a threshold outside [0, 1) or an unknown linkage or representative.

    Example:
        >>> clusters = cluster_neurons(acts, threshold=0.3, sites="layer.3.mlp")
        >>> len(clusters.representatives), clusters.to_frame().head()
    """
    design = Design(activations, sites=sites, neurons=neurons)
    return _cluster(
        design,
        [threshold],
        linkage=linkage,
        max_rows=max_rows,
        seed=seed,
        representative=representative,
        precision=precision,
        progress=progress,
    )[0]


@dataclass(frozen=True, eq=False)
class RedundancyProbes(Result):
    """Probe accuracy with only cluster representatives, at several thresholds.

    Made by :func:`train_redundancy_probes`.

    Attributes:
        thresholds: Float64 ``[T]``.
        clusters: ``clusters[i]`` for ``thresholds[i]``.
        results: ``results[i]``, the probe on the representatives at ``thresholds[i]``.
        full: The probe on every neuron (same split and settings).
    """

    thresholds: np.ndarray
    clusters: tuple[NeuronClusters, ...]
    results: tuple[ProbeResult, ...]
    full: ProbeResult

    def __repr__(self) -> str:
        lines = [
            f"threshold {t:g}: {c.num_clusters} clusters, test {number(r.accuracy)}"
            for t, c, r in zip(self.thresholds, self.clusters, self.results)
        ]
        return summary(
            f"RedundancyProbes({len(self.thresholds)} thresholds, all neurons test {number(self.full.accuracy)})",
            *lines,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per threshold (plus threshold 0 = all neurons): neurons kept, share kept, test
        accuracy, selectivity."""
        n = self.full.probe.num_features
        rows = [
            {
                "threshold": 0.0,
                "neurons": n,
                "kept": 1.0,
                "accuracy": self.full.accuracy,
                "selectivity": self.full.selectivity,
            }
        ]
        for t, cl, r in zip(self.thresholds, self.clusters, self.results):
            rows.append(
                {
                    "threshold": float(t),
                    "neurons": cl.num_clusters,
                    "kept": cl.num_clusters / n,
                    "accuracy": r.accuracy,
                    "selectivity": r.selectivity,
                }
            )
        return pd.DataFrame(rows)

    def plot(self, *, title: str | None = None, ax: Any = None) -> Axes:
        """Accuracy and share of neurons kept by threshold, drawn into ``ax`` (default: a new figure)."""
        df = self.to_frame()
        ax = new_axes(ax, (5.5, 3.4))
        ax.plot(df["threshold"], df["accuracy"], marker="o", label="test accuracy")
        ax.plot(df["threshold"], df["kept"], marker="s", linestyle="--", label="share of neurons kept")
        ax.set_xlabel("clustering threshold (1 − |ρ|)")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize="small")
        ax.set_title(title or "redundancy: probes on cluster representatives")
        return ax


@threads_by_size
def train_redundancy_probes(
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    *,
    thresholds: Sequence[float] = (0.1, 0.3, 0.5, 0.7),
    sites: Sequence[str | Site] | str | Site | None = None,
    neurons: Iterable[str | NeuronAddress] | None = None,
    linkage: str = "average",
    max_rows: int | None = 5000,
    split: Split | Sequence[float] | None = None,
    seed: int = 0,
    representative: str = "medoid",
    **probe_kwargs: Any,
) -> RedundancyProbes:
    """Cluster at each threshold (one correlation pass for all) and train a probe on the representatives
    only, beside the probe on every neuron (same split).

    Args:
        activations: The activations.
        labels: One label per row.
        thresholds: The cuts on ``1 − |ρ|``.
        sites: As :func:`cluster_neurons`.
        neurons: As :func:`cluster_neurons`.
        linkage: As :func:`cluster_neurons`.
        max_rows: As :func:`cluster_neurons`.
        split: As :func:`~neuronwidgets.core.probing.train_probe`.
        seed: As :func:`~neuronwidgets.core.probing.train_probe`.
        representative: As :func:`cluster_neurons`.
        **probe_kwargs: Go to :func:`~neuronwidgets.core.probing.train_probe`.

    Returns:
        Clusters and probe results by threshold, and the full probe.

    Raises:
        ValueError: For no thresholds, or bad clustering or probe arguments.

    Example:
        >>> train_redundancy_probes(acts, labels, thresholds=(0.1, 0.3, 0.5)).plot()"""
    if not len(thresholds):
        raise ValueError("give at least one threshold")
    design = Design(activations, sites=sites, neurons=neurons)
    sp = resolve_split(split, activations, seed)
    clusters = _cluster(
        design,
        list(thresholds),
        linkage=linkage,
        max_rows=max_rows,
        seed=seed,
        representative=representative,
        precision=probe_kwargs.get("precision", "auto"),
    )
    kw = {"split": sp, "seed": seed, **probe_kwargs}
    full = train_probe(activations, labels, neurons=design.names, **kw)
    results = tuple(train_probe(activations, labels, neurons=list(c.representatives), **kw) for c in clusters)
    return RedundancyProbes(np.asarray([float(t) for t in thresholds]), tuple(clusters), results, full)
