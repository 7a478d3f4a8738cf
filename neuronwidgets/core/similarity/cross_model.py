"""Cross-model neuron rankings (Bau et al. 2019): MaxCorr, MinCorr, LinReg and SVCCA scores of every
neuron of one model against another's (:func:`rank_cross_model` → :class:`NeuronRanking`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..display import steps_bar
from ..models.addresses import Site
from ..results import NeuronRanking
from ..store.activations import Activations
from ..store.design import Design, sample_rows, threads_by_size
from .measures import _basis, _check_same_rows

if TYPE_CHECKING:
    pass

CROSS_METHODS = ("maxcorr", "mincorr", "linreg", "svcca")


# ------------------------------------------------------------------------------------------------
# Cross-model neuron rankings (Bau et al. 2019)
# ------------------------------------------------------------------------------------------------


def _unit_columns(x: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Centred columns scaled to unit norm (so dot products are correlations), float32; constant columns
    become zero."""
    t = torch.from_numpy(x)
    sd, mu = torch.std_mean(t.double(), 0, correction=0)
    norm = sd * math.sqrt(len(x))
    const = (norm <= 1e-12).numpy()
    norm[norm <= 1e-12] = math.inf
    return ((t - mu.float()) / norm.float()), const


@threads_by_size
def rank_cross_model(
    activations: Activations,
    others: Activations | Sequence[Activations],
    *,
    method: str = "maxcorr",
    sites: Sequence[str | Site] | str | Site | None = None,
    other_sites: Sequence[str | Site] | str | Site | None = None,
    max_rows: int | None = 20000,
    seed: int = 0,
    variance: float = 0.99,
    block: int = 2048,
    progress: bool | None = None,
) -> NeuronRanking:
    """Rank the neurons of ``activations`` by how well ``others`` (other models, layers or checkpoints on
    the same words) reproduce them (Bau et al. 2019).

    ``method``: ``"maxcorr"`` (best ``|ρ|`` with any neuron of any other), ``"mincorr"`` (the worst over the
    others of each one's best ``|ρ|``; equal to MaxCorr with one other), ``"linreg"`` (correlation of a
    linear regression from each other's whole representation, worst over the others) or ``"svcca"``
    (share of the neuron along the canonical directions shared with each other, weighted by their
    canonical correlation — SVD directions explaining ``variance`` kept — worst over the others).

    When an "other" is the very same neurons (same activations and sites), a neuron is not compared with
    itself: MaxCorr then finds its most correlated *other* neuron, LinReg predicts it from the others.
    Columns: ``partner`` and ``partner_corr`` (MaxCorr/MinCorr: the best-matching neuron and the signed
    correlation), ``per_model`` scores otherwise in ``meta``.

    Args:
        activations: The neurons to rank.
        others: One or more activation sets on the same words.
        method: ``"maxcorr"``, ``"mincorr"``, ``"linreg"`` or ``"svcca"`` (above).
        sites: Sites of ``activations`` to rank (default all).
        other_sites: Sites of the others to compare with (default all).
        max_rows: Words sampled (``None``: all).
        seed: Seed of the sample.
        variance: Share of variance the SVD directions keep (``"svcca"``).
        block: Neurons per block of the correlation products.
        progress: A bar over the other models (``None``: shown for over 50M products in all).

    Returns:
        The neurons, best reproduced first.

    Raises:
        TypeError: If an "other" is not :class:`~neuronwidgets.core.Activations`.
        ValueError: For an unknown method, no others, or others on different words.

    Example:
        >>> ranking = rank_cross_model(acts_model_a, [acts_model_b, acts_model_c], method="maxcorr")
        >>> ranking.to_frame().head()
    """
    if method not in CROSS_METHODS:
        raise ValueError(f"unknown method {method!r}: choose from {', '.join(CROSS_METHODS)}")
    other_list = [others] if isinstance(others, Activations) else list(others)
    if not other_list:
        raise ValueError("give at least one other activation set to compare with")
    target = Design(activations, sites=sites)
    rows = sample_rows(activations.num_units, max_rows, seed)
    za, const_a = _unit_columns(target.matrix(rows))
    na = target.num_features
    per_model = np.zeros((len(other_list), na))
    partners: list[list[str]] = []
    partner_corr = np.zeros((len(other_list), na))
    work = za.shape[0] * na * len(other_list)
    bar = steps_bar(len(other_list), "cross-model", progress, auto=work > 50_000_000, unit="model")
    for m, oth in enumerate(other_list):
        if not isinstance(oth, Activations):
            raise TypeError(f"others must be Activations, got {type(oth).__name__}")
        _check_same_rows(activations, oth)
        od = Design(oth, sites=other_sites)
        same = oth is activations and od.names == target.names
        zb = za if same else _unit_columns(od.matrix(rows))[0]
        if method in ("maxcorr", "mincorr"):
            best = np.zeros(na)
            arg = np.zeros(na, dtype=np.int64)
            signed = np.zeros(na)
            for a in range(0, na, block):
                c = za[:, a : a + block].T @ zb  # [b, Nb]
                if same:
                    idx = torch.arange(c.shape[0])
                    c[idx, idx + a] = 0.0
                ab = c.abs()
                val, j = ab.max(1)
                best[a : a + block] = val.numpy()
                arg[a : a + block] = j.numpy()
                signed[a : a + block] = c.gather(1, j[:, None]).squeeze(1).numpy()
            per_model[m] = best
            partners.append([od.names[int(j)] for j in arg])
            partner_corr[m] = signed
        elif method == "linreg":
            if same:
                corr = za.T.double() @ za.double()
                corr.diagonal().add_(1e-6)
                inv_diag = torch.linalg.pinv(corr, hermitian=True).diagonal().numpy()
                r2 = np.clip(1.0 - 1.0 / np.maximum(inv_diag, 1e-12), 0.0, 1.0)
                per_model[m] = np.sqrt(r2)
            else:
                ub, _, _ = _basis(zb.double())
                proj = ub.float().T @ za  # [r, Na]
                per_model[m] = np.clip(proj.norm(dim=0).numpy(), 0.0, 1.0)
        else:  # svcca
            ua, _, _ = _basis(za.double(), variance)
            ub, _, _ = _basis(zb.double(), variance)
            p, rho, _ = torch.linalg.svd(ua.T @ ub, full_matrices=False)
            h = ua @ p[:, : len(rho)]  # canonical variates of this representation [n, r]
            load = za.double().T @ h  # correlation of each neuron with each variate [Na, r]
            per_model[m] = ((load * rho.clamp(0, 1)[None, :]) ** 2).sum(1).sqrt().numpy()
        bar.update(1)
    bar.close()
    per_model[:, const_a] = 0.0
    if method == "maxcorr":
        which = per_model.argmax(0)
        score = per_model.max(0)
    else:
        which = per_model.argmin(0)
        score = per_model.min(0)
    columns: dict[str, np.ndarray] = {}
    if method in ("maxcorr", "mincorr"):
        columns["partner"] = np.asarray([partners[int(w)][i] for i, w in enumerate(which)], dtype=object)
        columns["partner_corr"] = partner_corr[which, np.arange(na)]
    if len(other_list) > 1:
        columns["model"] = which.astype(np.int64)
    return NeuronRanking.from_scores(
        target.names,
        score,
        method,
        columns=columns,
        meta={
            "rows": len(rows),
            "others": [o.model_name for o in other_list],
            "variance": variance if method == "svcca" else None,
        },
    )
