"""Unsupervised clustering probe, in the spirit of Michael et al. (2020, "Asking without telling"): cluster
the words' activations without any labels, then ask how well the clusters recover a gold annotation.

Per site: k-means (k-means++ start, Lloyd iterations, best of ``restarts``) on the standardised
activations of a sample of words; then **purity** (each cluster votes for its majority tag; the share of
words whose tag is their cluster's) and **NMI** (normalised mutual information between cluster and tag,
arithmetic normalisation as in scikit-learn's default). Baseline: the same scores for a random assignment
with the same cluster sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..display import Result, listing, new_axes, number, summary
from ..models.addresses import Site
from ..store.activations import Activations
from ..store.design import Design, sample_rows

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def contingency(clusters: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """int64 ``[K, C]`` counts of words in each cluster (rows) with each tag (columns), and the tags."""
    tags, y = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    k = int(clusters.max()) + 1
    table = np.zeros((k, len(tags)), dtype=np.int64)
    np.add.at(table, (clusters, y), 1)
    return table, [str(t) for t in tags]


def purity(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Share of words whose tag is the majority tag of their cluster."""
    table, _ = contingency(np.asarray(clusters), np.asarray(labels))
    return float(table.max(1).sum() / table.sum())


def nmi(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Normalised mutual information ``I(K; C) / mean(H(K), H(C))`` (0: independent, 1: the same partition)."""
    table = contingency(np.asarray(clusters), np.asarray(labels))[0].astype(np.float64)
    n = table.sum()
    pk, pc = table.sum(1), table.sum(0)
    hk, hc = _entropy(pk), _entropy(pc)
    nz = table > 0
    mi = float((table[nz] / n * np.log(table[nz] * n / np.outer(pk, pc)[nz])).sum())
    denom = (hk + hc) / 2
    return 1.0 if denom == 0 else max(0.0, mi / denom)


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, iterations: int = 50, restarts: int = 3) -> np.ndarray:
    """Cluster index (int64 ``[n]``) of each row of ``x``: k-means++ start, Lloyd iterations, the best
    (lowest within-cluster sum of squares) of ``restarts`` runs."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of rows ({n}), got {k}")
    rng = np.random.default_rng(seed)
    sq = (x**2).sum(1)
    best, best_inertia = np.zeros(n, dtype=np.int64), np.inf
    for _ in range(restarts):
        centres = [x[rng.integers(n)]]
        d2 = ((x - centres[0]) ** 2).sum(1)
        for _ in range(1, k):
            p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1 / n)
            centres.append(x[rng.choice(n, p=p)])
            d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
        c = np.array(centres)
        assign = np.full(n, -1, dtype=np.int64)
        for _ in range(iterations):
            dist = sq[:, None] - 2 * x @ c.T + (c**2).sum(1)[None, :]
            new = dist.argmin(1)
            if np.array_equal(new, assign):
                break
            assign = new
            for j in range(k):
                members = assign == j
                # an emptied cluster restarts at the row farthest from its centre
                c[j] = x[members].mean(0) if members.any() else x[dist.min(1).argmax()]
        inertia = float(((x - c[assign]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = assign.copy(), inertia
    return best


@dataclass(frozen=True)
class ClusterProbe(Result):
    """Clusters of activations against gold tags, per site (see :func:`cluster_probe`).

    Attributes:
        sites: the clustered sites, in order.
        k: the number of clusters.
        purity: float64 ``[S]``, each site's purity (share of words whose tag is their cluster's majority).
        nmi: float64 ``[S]``, each site's normalised mutual information between cluster and tag.
        purity_random: float64 ``[S]``, purity of a shuffled assignment with the same cluster sizes.
        nmi_random: float64 ``[S]``, NMI of that shuffled assignment.
        clusters: int64 ``[S, n]``, each sampled word's cluster at each site.
        labels: the sampled words' tags ``[n]``.
        rows: the activation rows that were sampled ``[n]``.
        meta: the model's name.

    Example:
        >>> result = cluster_probe(acts, corpus.flat_labels("upos"))  # doctest: +SKIP
        >>> result.best_site(), result.contingency().head()  # doctest: +SKIP
    """

    sites: tuple[str, ...]
    k: int
    purity: np.ndarray
    nmi: np.ndarray
    purity_random: np.ndarray
    nmi_random: np.ndarray
    clusters: np.ndarray
    labels: np.ndarray
    rows: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        best = int(np.argmax(self.nmi))
        return summary(
            f"ClusterProbe(k={self.k}, {len(self.sites)} sites, {len(self.labels)} words)",
            f"best: {self.sites[best]} (NMI {number(self.nmi[best], 3)}, purity {number(self.purity[best], 3)}; "
            f"random NMI {number(self.nmi_random[best], 3)})",
            f"sites: {listing(self.sites)}",
        )

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "site": list(self.sites),
                "purity": self.purity,
                "nmi": self.nmi,
                "purity_random": self.purity_random,
                "nmi_random": self.nmi_random,
            }
        )

    def best_site(self, metric: str = "nmi") -> str:
        if metric not in ("nmi", "purity"):
            raise ValueError(f"metric must be 'nmi' or 'purity', got {metric!r}")
        return self.sites[int(np.argmax(getattr(self, metric)))]

    def contingency(self, site: str | None = None) -> pd.DataFrame:
        """Counts of tags (columns) in each cluster (rows) at ``site`` (default: the best by NMI), each
        cluster named by its majority tag."""
        site = site or self.best_site()
        if site not in self.sites:
            raise ValueError(f"site {site!r} was not clustered: choose from {', '.join(self.sites)}")
        table, tags = contingency(self.clusters[self.sites.index(site)], self.labels)
        names = [f"{i}: {tags[int(row.argmax())]}" for i, row in enumerate(table)]
        return pd.DataFrame(table, index=names, columns=tags)

    def plot(self, *, title: str | None = None, ax: Any = None) -> Axes:
        """NMI and purity per site, with the random-assignment baselines dashed, drawn into ``ax`` (default:
        a new figure)."""
        ax = new_axes(ax, (6.5, 3.4))
        x = np.arange(len(self.sites))
        for name, colour in (("nmi", "tab:blue"), ("purity", "tab:orange")):
            ax.plot(x, getattr(self, name), "o-", color=colour, label=name.upper() if name == "nmi" else name)
            ax.plot(
                x, getattr(self, f"{name}_random"), "--", color=colour, alpha=0.6, label=f"{name} (random)"
            )
        ax.set_xticks(x, [s.replace("layer.", "L") for s in self.sites], rotation=45)
        ax.set_ylim(0, 1)
        ax.set_ylabel("score")
        ax.legend(fontsize="small", ncols=2)
        ax.set_title(title or f"k-means (k={self.k}) clusters vs gold tags")
        return ax


def cluster_probe(
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    *,
    sites: Sequence[str | Site] | str | Site | None = None,
    k: int | None = None,
    max_rows: int | None = 4000,
    seed: int = 0,
    restarts: int = 3,
) -> ClusterProbe:
    """Cluster each site's standardised activations with k-means, without labels, then score the
    clusters against gold ``labels`` by purity and NMI (an unsupervised probe after Michael et al. 2020).

    Args:
        activations: word (or token) activations.
        labels: one tag per activation row, e.g. ``corpus.flat_labels("upos")``.
        sites: the sites to cluster (default all of them).
        k: number of clusters (default: the number of distinct labels).
        max_rows: words sampled, the same for every site (``None``: all).
        seed: seed of the sample, the k-means starts and the shuffled baseline.
        restarts: k-means runs per site; the one with the lowest within-cluster sum of squares is kept.

    Returns:
        A :class:`ClusterProbe` with purity and NMI per site and their random-assignment baselines.

    Example:
        >>> result = cluster_probe(acts, corpus.flat_labels("upos"), max_rows=1500)  # doctest: +SKIP
        >>> result.plot()  # doctest: +SKIP
    """
    y = np.asarray(labels).astype(str)
    if y.ndim != 1 or len(y) != activations.num_units:
        raise ValueError(
            f"labels must have one entry per activation row ({activations.num_units}), got shape {y.shape}"
        )
    if isinstance(sites, (str, Site)):
        sites = [sites]
    site_list = (
        [str(activations.check_site(s)) for s in sites] if sites is not None else list(activations.sites)
    )
    kk = len(np.unique(y)) if k is None else int(k)
    rows = sample_rows(activations.num_units, max_rows, seed)
    ys = y[rows]
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {"purity": [], "nmi": [], "purity_random": [], "nmi_random": []}
    all_clusters = []
    for site in site_list:
        x = Design(activations, sites=[site]).matrix(rows).astype(np.float64)
        x = (x - x.mean(0)) / (x.std(0) + 1e-8)
        cl = kmeans(x, kk, seed=seed, restarts=restarts)
        shuffled = rng.permutation(cl)
        out["purity"].append(purity(cl, ys))
        out["nmi"].append(nmi(cl, ys))
        out["purity_random"].append(purity(shuffled, ys))
        out["nmi_random"].append(nmi(shuffled, ys))
        all_clusters.append(cl)
    return ClusterProbe(
        sites=tuple(site_list),
        k=kk,
        clusters=np.stack(all_clusters),
        labels=ys,
        rows=rows,
        meta={"model": activations.model_name},
        **{name: np.asarray(v) for name, v in out.items()},
    )
