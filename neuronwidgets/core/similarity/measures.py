"""Unsupervised comparisons of representations: of whole layers (linear CKA, SVCCA, PWCCA) and of single
neurons across models (MaxCorr, MinCorr, LinReg, SVCCA rankings).

- :func:`linear_cka` (Kornblith et al. 2019), :func:`svcca` (Raghu et al. 2017), :func:`pwcca` (Morcos et
  al. 2018): similarity of two ``[words, neurons]`` matrices of the same words, as Wu et al. (2020) use to
  compare layers and models. :func:`representation_similarity` fills a site × site matrix with one of
  them, with a heatmap plot.
- :func:`rank_cross_model` (Bau et al. 2019): rank one representation's neurons by how well other
  representations of the same words (other models, layers or checkpoints) reproduce them. MaxCorr: a
  neuron's best absolute correlation with any neuron elsewhere; MinCorr: the worst, over the other models,
  of each model's best; LinReg: how well a linear regression on a whole other representation predicts it
  (the correlation of the fit), worst over models; SVCCA: how much of the neuron lies along the shared
  canonical directions, weighted by their correlation, worst over models.

Every comparison needs the same rows (words) in the same order on both sides; rows are subsampled
(``max_rows``) identically on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..display import Result, listing, new_axes, summary
from ..models.addresses import Site
from ..store.activations import Activations
from ..store.design import Design, compute_threads, sample_rows, threads_by_size

if TYPE_CHECKING:
    from matplotlib.axes import Axes

METHODS = ("cka", "pwcca", "svcca")


# ------------------------------------------------------------------------------------------------
# Matrix-level similarity
# ------------------------------------------------------------------------------------------------


def _as_matrix(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix [rows, neurons], got shape {tuple(t.shape)}")
    if t.shape[0] < 2 or t.shape[1] < 1:
        raise ValueError(f"{name} needs at least 2 rows and 1 column, got shape {tuple(t.shape)}")
    return t.double()


def _pair(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both matrices as float64 tensors with centred columns (torch, so that :func:`compute_threads`
    governs their products)."""
    a, b = _as_matrix(x, "x"), _as_matrix(y, "y")
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"x has {a.shape[0]} rows but y has {b.shape[0]}: compare activations of the same words"
        )
    return a - a.mean(0), b - b.mean(0)


def linear_cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Linear centred kernel alignment of ``x [n, p]`` and ``y [n, q]`` (Kornblith et al. 2019):
    ``‖yᵀx‖²_F / (‖xᵀx‖_F ‖yᵀy‖_F)`` on centred columns. 1 for identical representations; invariant to
    orthogonal transforms and isotropic scaling; 0 when either is constant.

    Args:
        x: ``[n, p]``, one row per word.
        y: ``[n, q]``, the same words.

    Returns:
        The CKA, in [0, 1].

    Raises:
        ValueError: If a matrix is not 2-D with at least 2 rows, or the row counts differ.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(200, 16))
        >>> round(linear_cka(x, 3 * x), 6)
        1.0"""
    a, b = _pair(x, y)
    n, p = a.shape
    q = b.shape[1]
    with compute_threads(n * (p + q)):
        if n < max(p, q):  # the n × n Gram form is cheaper
            ka, kb = a @ a.T, b @ b.T
            num = float((ka * kb).sum())
            den = math.sqrt(float((ka * ka).sum()) * float((kb * kb).sum()))
        else:
            num = float(torch.linalg.matrix_norm(b.T @ a) ** 2)
            den = float(torch.linalg.matrix_norm(a.T @ a) * torch.linalg.matrix_norm(b.T @ b))
    return num / den if den > 0 else 0.0


def _basis(
    a: torch.Tensor, variance: float | None = None, rtol: float = 1e-7
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Orthonormal basis ``U [n, r]`` of the centred float64 columns ``a [n, p]``, with singular values
    ``s [r]`` and right vectors ``V [p, r]``; directions below ``rtol`` of the largest are dropped, and
    with ``variance`` only the leading ones that explain that share of the variance (SVCCA's SV step). For
    tall matrices the p × p Gram matrix is decomposed instead of ``a`` (much cheaper)."""
    n, p = a.shape
    tall = n > 2 * p
    if tall:
        evals, v = torch.linalg.eigh(a.T @ a)
        evals, v = evals.flip(0), v.flip(1)
        s = evals.clamp_min(0.0).sqrt()
        tol = max(rtol, 1e-6)
    else:
        u, s, vt = torch.linalg.svd(a, full_matrices=False)
        v = vt.T
        tol = rtol
    if len(s) == 0 or float(s[0]) == 0:
        return a.new_zeros((n, 0)), s[:0], v[:, :0]
    r = int((s > tol * s[0]).sum())
    if variance is not None:
        energy = s[:r] ** 2
        share = (torch.cumsum(energy, 0) / energy.sum()).numpy()
        r = min(r, int(np.searchsorted(share, variance - 1e-12) + 1))
    if tall:
        u = (a @ v[:, :r]) / s[:r]
    return u[:, :r], s[:r], v[:, :r]


def canonical_correlations(
    x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *, variance: float | None = None
) -> np.ndarray:
    """Canonical correlations (descending, ``[min(rank x, rank y)]``) of the centred columns of ``x`` and
    ``y``, optionally after keeping the SVD directions that explain ``variance`` of each (SVCCA).

    Args:
        x: ``[n, p]``, one row per word.
        y: ``[n, q]``, the same words.
        variance: Share of variance the kept SVD directions explain (``None``: no reduction).

    Returns:
        Float64 correlations in [0, 1], descending.

    Raises:
        ValueError: If a matrix is not 2-D with at least 2 rows, or the row counts differ.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(500, 8))
        >>> canonical_correlations(x, x @ np.random.default_rng(1).normal(size=(8, 8))).round(6)[:2]
        array([1., 1.])"""
    a, b = _pair(x, y)
    with compute_threads(a.shape[0] * (a.shape[1] + b.shape[1])):
        ua, _, _ = _basis(a, variance)
        ub, _, _ = _basis(b, variance)
        if ua.shape[1] == 0 or ub.shape[1] == 0:
            return np.zeros(0)
        return np.clip(torch.linalg.svdvals(ua.T @ ub).numpy(), 0.0, 1.0)


def svcca(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *, variance: float = 0.99) -> float:
    """SVCCA similarity (Raghu et al. 2017): mean canonical correlation after reducing each side to the SVD
    directions that explain ``variance`` (default 99 %) of its variance.

    Args:
        x: ``[n, p]``, one row per word.
        y: ``[n, q]``, the same words.
        variance: Share of each side's variance the kept SVD directions explain.

    Returns:
        The mean canonical correlation, in [0, 1].

    Raises:
        ValueError: If a matrix is not 2-D with at least 2 rows, or the row counts differ.

    Example:
        >>> svcca(acts.layer("layer.2.resid"), acts.layer("layer.3.resid"), variance=0.99)"""
    rho = canonical_correlations(x, y, variance=variance)
    return float(rho.mean()) if len(rho) else 0.0


def pwcca(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Projection-weighted CCA (Morcos et al. 2018): canonical correlations weighted by how much of ``x``'s
    neurons each canonical direction of ``x`` accounts for (``Σ_j |⟨h_i, x_j⟩|``). Not symmetric. Needs
    many more rows than neurons: with ``n`` close to the width, every correlation tends to 1.

    Args:
        x: ``[n, p]``, one row per word (the side whose neurons weight the correlations).
        y: ``[n, q]``, the same words.

    Returns:
        The PWCCA similarity, in [0, 1].

    Raises:
        ValueError: If a matrix is not 2-D with at least 2 rows, or the row counts differ.

    Example:
        >>> pwcca(acts.layer("layer.2.resid"), acts.layer("layer.3.resid"))"""
    a, b = _pair(x, y)
    with compute_threads(a.shape[0] * (a.shape[1] + b.shape[1])):
        ua, _, _ = _basis(a)
        ub, _, _ = _basis(b)
        if ua.shape[1] == 0 or ub.shape[1] == 0:
            return 0.0
        p, rho, _ = torch.linalg.svd(ua.T @ ub, full_matrices=False)
        h = ua @ p[:, : len(rho)]  # canonical variates of x, unit norm [n, r]
        alpha = (h.T @ a).abs().sum(1)
    if float(alpha.sum()) == 0:
        return 0.0
    return float((alpha / alpha.sum()) @ rho.clamp(0.0, 1.0))


_SIMILARITY = {"cka": linear_cka, "pwcca": pwcca, "svcca": svcca}


@dataclass(frozen=True, eq=False)
class SimilarityMatrix(Result):
    """Similarity of every row site with every column site (made by :func:`representation_similarity`).

    Attributes:
        rows: The ``A`` row sites.
        columns: The ``B`` column sites.
        values: Float64 ``[A, B]``.
        method: ``"cka"``, ``"pwcca"`` or ``"svcca"``.
        row_model: The name of the model of the rows.
        column_model: The name of the model of the columns.
        meta: How it was computed (rows sampled, seed)."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    values: np.ndarray
    method: str
    row_model: str = ""
    column_model: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        models = f" ({self.row_model} × {self.column_model})" if self.row_model or self.column_model else ""
        finite = self.values[np.isfinite(self.values)]
        rng = f", values {finite.min():.3g} … {finite.max():.3g}" if finite.size else ""
        return summary(
            f"SimilarityMatrix({self.method}, {len(self.rows)} × {len(self.columns)}{models}{rng})",
            f"rows: {listing(self.rows)}",
            f"columns: {listing(self.columns)}",
        )

    def to_frame(self) -> pd.DataFrame:
        """The matrix as a DataFrame (index: row sites, columns: column sites)."""
        return pd.DataFrame(self.values, index=list(self.rows), columns=list(self.columns))

    def plot(self, *, title: str | None = None, annotate: bool = True, ax: Any = None) -> Axes:
        """Heatmap with the values written in the cells, drawn into ``ax`` (default: a new figure); returns
        the Axes."""
        a, b = self.values.shape
        ax = new_axes(ax, (1.0 + 0.6 * b + 1.5, 1.0 + 0.5 * a))
        im = ax.imshow(self.values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        short = [s.replace(".resid", "").replace("layer.", "L") for s in self.columns]
        ax.set_xticks(np.arange(b), short, rotation=45)
        ax.set_yticks(np.arange(a), [s.replace(".resid", "").replace("layer.", "L") for s in self.rows])
        if self.column_model or self.row_model:
            ax.set_xlabel(self.column_model)
            ax.set_ylabel(self.row_model)
        if annotate and a * b <= 400:
            for i in range(a):
                for j in range(b):
                    v = self.values[i, j]
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if v > 0.6 else "white",
                    )
        ax.figure.colorbar(im, ax=ax, shrink=0.8)
        ax.set_title(title or f"{self.method.upper()} similarity")
        return ax


def _check_same_rows(a: Activations, b: Activations) -> None:
    if a.num_units != b.num_units or not np.array_equal(a.offsets, b.offsets):
        raise ValueError(
            f"the two activation sets have different rows ({a.num_units} vs {b.num_units} words, or different "
            "sentence lengths): extract both from the same corpus with the same granularity"
        )


@threads_by_size
def representation_similarity(
    activations: Activations,
    other: Activations | None = None,
    *,
    sites: Sequence[str | Site] | None = None,
    other_sites: Sequence[str | Site] | None = None,
    method: str = "cka",
    max_rows: int | None = 10000,
    seed: int = 0,
) -> SimilarityMatrix:
    """Similarity of every site of ``activations`` with every site of ``other`` (default: itself, i.e.
    between all pairs of layers) by ``method``: ``"cka"`` (linear CKA), ``"pwcca"`` or ``"svcca"``.
    Both sides use the same ``max_rows`` randomly chosen words.

    Args:
        activations: The row side.
        other: The column side, on the same words (default: ``activations`` itself).
        sites: Row sites (default: all of ``activations``).
        other_sites: Column sites (default: all of ``other``).
        method: ``"cka"``, ``"pwcca"`` or ``"svcca"``.
        max_rows: Words sampled (``None``: all).
        seed: Seed of the sample.

    Returns:
        The ``[sites, other_sites]`` matrix.

    Raises:
        ValueError: For an unknown method or activation sets with different rows.

    Example:
        >>> acts = extract_activations("minilm", corpus)
        >>> representation_similarity(acts).plot()  # layer x layer CKA"""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
    other_acts = activations if other is None else other
    _check_same_rows(activations, other_acts)
    rs = [activations.check_site(s) for s in sites] if sites is not None else activations.sites
    cs = (
        [other_acts.check_site(s) for s in other_sites]
        if other_sites is not None
        else (rs if other is None else other_acts.sites)
    )
    rows = sample_rows(activations.num_units, max_rows, seed)
    cache: dict[tuple[int, str], np.ndarray] = {}

    def get(acts: Activations, site: str) -> np.ndarray:
        key = (id(acts), site)
        if key not in cache:
            cache[key] = Design(acts, sites=[site]).matrix(rows)
        return cache[key]

    fn = _SIMILARITY[method]
    vals = np.zeros((len(rs), len(cs)))
    symmetric = other is None and rs == cs and method == "cka"
    for i, r in enumerate(rs):
        for j, c in enumerate(cs):
            if symmetric and j < i:
                vals[i, j] = vals[j, i]
                continue
            vals[i, j] = fn(get(activations, r), get(other_acts, c))
    return SimilarityMatrix(
        rows=tuple(rs),
        columns=tuple(cs),
        values=vals,
        method=method,
        row_model=activations.model_name,
        column_model=other_acts.model_name,
        meta={"rows": len(rows)},
    )
