"""Supervised neuron rankings, each returning a :class:`~neuronwidgets.core.results.NeuronRanking`.

Supervised rankings of neurons for a property (one label per activation row):

- :func:`rank_weight_mass` — probe weight mass (Dalvi et al. 2019, "one grain of sand"): per class, the
  neurons holding a share of the class's absolute weight mass; all neurons ordered by the weight-mass share
  at which they first enter any class's selection (NeuroX's ``get_neuron_ordering`` in the limit of an
  infinitely fine sweep; ``search_stride=100`` reproduces its 1 % steps).
- :func:`rank_probeless` — probeless ranking (Antverg & Belinkov 2022): differences of class means.
- :func:`rank_iou` — intersection over union of a neuron's top activations with each class's words.
- :func:`rank_gaussian` — intrinsic probing (Torroba Hennigen et al. 2020): greedy selection of the
  dimensions that most increase the dev log-likelihood of a Gaussian classifier.

Unsupervised cross-model rankings (MaxCorr, MinCorr, LinReg, SVCCA) live in
:mod:`neuronwidgets.core.similarity`; conductance rankings in :mod:`neuronwidgets.core.attribution`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..models.addresses import NeuronAddress, Site
from ..results import NeuronRanking
from ..store.activations import Activations
from ..store.design import Design, encode_labels, resolve_split, threads_by_size
from .probes import Probe, ProbeResult

if TYPE_CHECKING:
    from ..store.design import Split


# ------------------------------------------------------------------------------------------------
# Probe weight mass (Dalvi et al. 2019)
# ------------------------------------------------------------------------------------------------


def rank_weight_mass(probe: Probe | ProbeResult, *, search_stride: int | None = None) -> NeuronRanking:
    """Order all of a probe's neurons by weight mass (Dalvi et al. 2019).

    For each class, sort the neurons by absolute weight; a neuron enters that class's selection at the
    share of the class's total weight mass held by the neurons before it. Its overall entry point is the
    earliest over classes, and neurons are ordered by it (ties: larger normalised weight first). This is
    NeuroX's ``get_neuron_ordering`` swept continuously; ``search_stride=100`` reproduces its 1 % steps
    (neurons entering within one step are then ordered by their exact entry point).

    Scores: ``1 − entry share`` (1 for each class's top neuron). ``class_scores``: each neuron's share of
    each class's weight mass (``|w_cn| / Σ_n |w_cn|``), which gives per-class top neurons.

    Args:
        probe: A trained probe (or its result).
        search_stride: ``None`` for the continuous sweep, or NeuroX's steps per 100 % (100: 1 % steps).

    Returns:
        Every input neuron of the probe, best first.

    Raises:
        TypeError: If ``probe`` is not a :class:`~neuronwidgets.core.Probe` or ``ProbeResult``.
        ValueError: For a ``search_stride`` that is not a positive int.

    Example:
        >>> ranking = rank_weight_mass(train_probe(acts, corpus.flat_labels("upos")))
        >>> ranking.to_frame().head()
    """
    p = probe.probe if isinstance(probe, ProbeResult) else probe
    if not isinstance(p, Probe):
        raise TypeError(f"expected a Probe or ProbeResult, got {type(probe).__name__}")
    a = np.abs(p.weight.astype(np.float64))  # [C, F]
    total = a.sum(1, keepdims=True)
    total[total == 0] = 1.0
    share = a / total  # [C, F]
    c, f = share.shape
    entry = np.full(f, np.inf)
    for j in range(c):
        order = np.argsort(-share[j], kind="stable")
        before = np.cumsum(share[j, order]) - share[j, order]  # mass strictly before each neuron
        before[0] = 0.0
        e = np.empty(f)
        e[order] = before
        entry = np.minimum(entry, e)
    if search_stride is not None:
        if int(search_stride) < 1:
            raise ValueError(f"search_stride must be a positive int, got {search_stride}")
        s = int(search_stride)
        step = np.where(entry <= 0, 0, np.floor(entry * s + 1e-12) + 1)  # first k with entry < k/s
        key_primary = step
    else:
        key_primary = entry
    strongest = share.max(0)
    order = np.lexsort((-strongest, entry, key_primary))
    meta: dict[str, Any] = {"search_stride": search_stride, "l1": p.l1, "l2": p.l2}
    return NeuronRanking.from_scores(
        p.features,
        1.0 - entry,
        "weight_mass",
        classes=p.classes if p.task == "classification" else (),
        class_scores=share.T if p.task == "classification" else None,
        columns={"entry_share": entry},
        meta=meta,
        order=order,
    )


# ------------------------------------------------------------------------------------------------
# Helpers for data-driven rankings
# ------------------------------------------------------------------------------------------------


def _class_labels(
    activations: Activations, labels: Sequence[Any] | np.ndarray
) -> tuple[np.ndarray, tuple[str, ...]]:
    enc = encode_labels(labels, activations.num_units, "classification")
    return enc.y, enc.classes


def _rows_arg(rows: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray | None:
    if rows is None:
        return None
    if isinstance(rows, (str, bytes)):
        raise TypeError(f"rows must be row positions (ints), 'train' or 'all', got {rows!r}")
    arr = np.asarray(rows)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError(f"rows must be integer row positions, got an array of {arr.dtype}")
    r = np.unique(arr.astype(np.int64))
    if len(r) == 0:
        raise ValueError("rows= is empty")
    if r[0] < 0 or r[-1] >= n:
        raise ValueError(f"rows must be within 0 … {n - 1}")
    return r


def _ranking_rows(
    rows: Sequence[int] | np.ndarray | str,
    split: Split | Sequence[float] | None,
    seed: int,
    activations: Activations,
    n: int,
) -> np.ndarray | None:
    """Rows a supervised ranking may look at: the training rows of ``split`` by default (the same split
    :func:`train_probe` makes with the same ``split``/``seed``), so test rows stay unseen; ``"all"`` every
    row (explicitly); or given row positions."""
    if isinstance(rows, str):
        if rows == "all":
            if split is not None:
                raise ValueError("rows='all' uses every row: leave split= out")
            return None
        if rows != "train":
            raise ValueError(f"rows must be 'train' (default), 'all' or row positions, got {rows!r}")
        tr, _, _ = resolve_split(split, activations, seed).rows(activations.offsets)
        return _rows_arg(tr, n)
    if split is not None:
        raise ValueError("give rows= or split=, not both")
    return _rows_arg(rows, n)


_FULL_MATRIX_BYTES = 4 * 1024**3


def column_blocks(
    design: Design, rows: np.ndarray | None, max_cols: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(column positions, X[:, cols])`` (float32, all of ``rows``) covering every column: one read
    of the whole matrix when it fits in 4 GB, else blocks of columns (each a pass over the rows)."""
    n = design.num_rows if rows is None else len(rows)
    f = design.num_features
    if n * f * 4 <= _FULL_MATRIX_BYTES:
        x = design.matrix(rows)
        step = max_cols or f
        for a in range(0, f, step):
            yield np.arange(a, min(f, a + step)), x[:, a : a + step]
        return
    step = max(1, min(max_cols or f, _FULL_MATRIX_BYTES // (8 * n)))
    for a in range(0, f, step):
        cols = np.arange(a, min(f, a + step))
        yield cols, design.subset(cols).matrix(rows)


# ------------------------------------------------------------------------------------------------
# Probeless (Antverg & Belinkov 2022)
# ------------------------------------------------------------------------------------------------


@threads_by_size
def rank_probeless(
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    *,
    sites: Sequence[str | Site] | str | Site | None = None,
    neurons: Iterable[str | NeuronAddress] | None = None,
    rows: Sequence[int] | np.ndarray | str = "train",
    split: Split | Sequence[float] | None = None,
    seed: int = 0,
    standardize: bool = True,
) -> NeuronRanking:
    """Rank neurons without a probe (Antverg & Belinkov 2022): by how far apart the class means are.

    Score of a neuron: ``Σ_{c<c'} |q_c − q_c'|`` over pairs of class means ``q`` (the paper's definition
    and NeuroX's ``probeless.get_neuron_ordering``; with ``standardize=False`` the order is identical to
    NeuroX's). Per-class score: ``|mean over the class − mean over the other rows|``. ``standardize``
    divides by each neuron's standard deviation first, so neurons with a large scale do not win by scale
    alone (on held-out UD POS this also ranks better: see docs/benchmarks.md).

    ``rows``: ``"train"`` (default) uses only the training rows of ``split`` (fractions or a
    :class:`Split`; default 80/10/10 shuffled with ``seed``, exactly what :func:`train_probe` uses with the
    same arguments), so test rows cannot leak into the ranking by accident; ``"all"`` uses every row;
    or give row positions.

    Args:
        activations: The activations (rows aligned with ``labels``).
        labels: One class label per row.
        sites: Rank whole sites (default all of them).
        neurons: Or given neuron addresses.
        rows: ``"train"`` (the training rows of ``split``), ``"all"``, or row positions.
        split: A :class:`~neuronwidgets.core.Split` or fractions (default 80/10/10 shuffled with ``seed``).
        seed: Seed of the split.
        standardize: Divide by each neuron's standard deviation first.

    Returns:
        The neurons, best first, with per-class scores.

    Example:
        >>> rank_probeless(acts, corpus.flat_labels("upos")).to_frame().head()
    """
    design = Design(activations, sites=sites, neurons=neurons)
    y, classes = _class_labels(activations, labels)
    r = _ranking_rows(rows, split, seed, activations, design.num_rows)
    yr = y if r is None else y[r]
    c = len(classes)
    counts = np.bincount(yr, minlength=c).astype(np.float64)
    f = design.num_features
    sums = np.zeros((c, f))
    total = np.zeros(f)
    total2 = np.zeros(f)
    pos = 0
    shift: np.ndarray | None = None  # a per-neuron offset taken out before the float32 class sums
    for ids, x in design.iter_blocks(r):
        yb = yr[pos : pos + len(ids)]
        pos += len(ids)
        onehot = np.zeros((len(yb), c), dtype=np.float32)
        onehot[np.arange(len(yb)), yb] = 1.0
        if shift is None:
            shift = x.mean(0, dtype=np.float64).astype(np.float32)
        sums += (torch.from_numpy(onehot).T @ torch.from_numpy(x - shift)).double().numpy()
        xd = x.astype(np.float64)
        total += xd.sum(0)
        total2 += np.einsum("ij,ij->j", xd, xd)
    n = counts.sum()
    if shift is not None:
        sums += counts[:, None] * shift.astype(np.float64)[None, :]
    present = counts > 0
    means = np.zeros((c, f))
    means[present] = sums[present] / counts[present, None]
    rest = np.zeros((c, f))
    others = n - counts
    ok = others > 0
    rest[ok] = (total[None, :] - sums[ok]) / others[ok, None]
    if standardize:
        var = np.maximum(total2 / n - (total / n) ** 2, 0.0)
        sd = np.sqrt(var)
        sd[sd == 0] = 1.0
        means = means / sd
        rest = rest / sd
    q = np.sort(means[present], axis=0)  # [C', F]
    k = q.shape[0]
    weights = (2 * np.arange(k) - k + 1)[:, None]
    score = (q * weights).sum(0)  # Σ_{i<j} |q_i − q_j| for sorted q
    per_class = np.abs(means - rest).T  # [F, C]
    per_class[:, ~present] = 0.0
    return NeuronRanking.from_scores(
        design.names,
        score,
        "probeless",
        classes=classes,
        class_scores=per_class,
        meta={
            "standardize": standardize,
            "rows": "all" if r is None else ("train" if isinstance(rows, str) else "given"),
            "num_rows": design.num_rows if r is None else len(r),
        },
    )


# ------------------------------------------------------------------------------------------------
# IoU of thresholded activations with label masks
# ------------------------------------------------------------------------------------------------


@threads_by_size
def rank_iou(
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    *,
    sites: Sequence[str | Site] | str | Site | None = None,
    neurons: Iterable[str | NeuronAddress] | None = None,
    rows: Sequence[int] | np.ndarray | str = "train",
    split: Split | Sequence[float] | None = None,
    seed: int = 0,
    quantile: float | None = None,
    signed: bool = True,
) -> NeuronRanking:
    """Rank neurons by the intersection over union of their top activations with each class's rows
    (network dissection, Bau et al. 2017; Mu & Andreas 2020).

    For neuron ``n`` and class ``c``, the neuron "fires" on its highest-activating rows: as many rows as
    the class has (``quantile=None``, so a perfect detector scores 1), or the rows above its ``quantile``
    (e.g. 0.99). ``IoU = |fires ∩ class| / |fires ∪ class|``. With ``signed`` the lowest-activating rows
    count too (a neuron can signal a class by going negative); the better direction is kept. Score: the
    best IoU over classes; per-class scores: the IoUs.

    Args:
        activations: The activations (rows aligned with ``labels``).
        labels: One class label per row.
        sites: Rank whole sites (default all of them).
        neurons: Or given neuron addresses.
        rows: ``"train"`` (the training rows of ``split``), ``"all"``, or row positions.
        split: A :class:`~neuronwidgets.core.Split` or fractions (default 80/10/10 shuffled with ``seed``).
        seed: Seed of the split.
        quantile: Fire on the rows above this quantile (``None``: as many rows as the class has).
        signed: Let the lowest-activating rows count too.

    Returns:
        The neurons, best first, with per-class IoUs.

    Raises:
        ValueError: For a ``quantile`` outside (0, 1).

    Example:
        >>> rank_iou(acts, corpus.flat_labels("upos"), quantile=0.99).to_frame().head()
    """
    if quantile is not None and not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    design = Design(activations, sites=sites, neurons=neurons)
    y, classes = _class_labels(activations, labels)
    r = _ranking_rows(rows, split, seed, activations, design.num_rows)
    yr = y if r is None else y[r]
    n = len(yr)
    c = len(classes)
    counts = np.bincount(yr, minlength=c)
    f = design.num_features
    iou = np.zeros((f, c))
    for cols, x in column_blocks(design, r, max_cols=512):
        xt = torch.from_numpy(np.ascontiguousarray(x))
        directions = [xt, -xt] if signed else [xt]
        for xs in directions:
            order = torch.argsort(xs, dim=0, descending=True, stable=True)  # [n, b]
            rank = torch.empty_like(order)
            rank.scatter_(0, order, torch.arange(n)[:, None].expand_as(order))  # 0 = highest
            for j in range(c):
                m = int(counts[j])
                if m == 0:
                    continue
                k = m if quantile is None else max(1, round((1 - quantile) * n))
                inside = (rank[torch.from_numpy(np.flatnonzero(yr == j))] < k).sum(0).double().numpy()
                val = inside / (k + m - inside)
                iou[cols, j] = np.maximum(iou[cols, j], val)
    score = iou.max(1)
    return NeuronRanking.from_scores(
        design.names,
        score,
        "iou",
        classes=classes,
        class_scores=iou,
        meta={"quantile": quantile, "signed": signed},
    )


# ------------------------------------------------------------------------------------------------
# Gaussian intrinsic probing (Torroba Hennigen et al. 2020)
# ------------------------------------------------------------------------------------------------


@threads_by_size
def rank_gaussian(
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    *,
    k: int = 20,
    sites: Sequence[str | Site] | str | Site | None = None,
    neurons: Iterable[str | NeuronAddress] | None = None,
    covariance: str = "full",
    split: Split | Sequence[float] | None = None,
    seed: int = 0,
    max_train_rows: int = 20000,
    max_dev_rows: int = 2000,
    shrinkage: float = 10.0,
    progress: bool | None = None,
) -> NeuronRanking:
    """Intrinsic probing by greedy dimension selection (Torroba Hennigen et al. 2020).

    A Gaussian classifier ``p(x_S | c) p(c)`` on a growing set ``S`` of neurons (full or diagonal
    covariance per class, shrunk towards the pooled within-class covariance by ``shrinkage`` pseudo-rows):
    at each of ``k`` steps, add the neuron that most increases the dev-set log-likelihood of the labels,
    ``mean log p(y | x_S)``. Training rows estimate the Gaussians, dev rows score them (the split's dev
    part, or its test part when it has none).

    Scores: for the ``k`` selected neurons, the gain in estimated mutual information ``I(X_S; Y)`` in bits
    when each was added; the other neurons follow, ordered by their information alone (their score).
    ``meta["information"]``: the estimate after each step.

    Args:
        activations: The activations (rows aligned with ``labels``).
        labels: One class label per row.
        sites: Rank whole sites (default all of them).
        neurons: Or given neuron addresses.
        k: Neurons selected greedily.
        covariance: ``"full"`` or ``"diag"``.
        split: A :class:`~neuronwidgets.core.Split` or fractions (default 80/10/10 shuffled with ``seed``).
        seed: Seed of the split and the row samples.
        max_train_rows: Training rows sampled to estimate the Gaussians.
        max_dev_rows: Dev rows sampled to score them.
        shrinkage: Pseudo-rows of the pooled within-class covariance.
        progress: A bar over the ``k`` steps.

    Returns:
        The ``k`` selected neurons first, in order, then the others.

    Raises:
        ValueError: For an unknown ``covariance``, a ``k`` out of range, or fewer than two classes.

    Example:
        >>> ranking = rank_gaussian(acts, corpus.flat_labels("upos"), k=10, sites="layer.3.resid")
        >>> ranking.meta["information"]
    """
    if covariance not in ("full", "diag"):
        raise ValueError(f"covariance must be 'full' or 'diag', got {covariance!r}")
    design = Design(activations, sites=sites, neurons=neurons)
    f = design.num_features
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= f:
        raise ValueError(f"k={k} is out of range: choose 1 … {f} (the number of neurons)")
    k = int(k)
    y, classes = _class_labels(activations, labels)
    sp = resolve_split(split, activations, seed)
    tr, dv, te = sp.rows(activations.offsets)
    if len(dv) == 0:
        dv = te
    rng = np.random.default_rng(seed)
    if len(tr) > max_train_rows:
        tr = np.sort(rng.choice(tr, max_train_rows, replace=False))
    n_cls = len(np.unique(y[tr]))
    max_dev_rows = max(100, min(max_dev_rows, int(1e8 // max(1, n_cls * f))))  # bounds the [C, dev, F] state
    if len(dv) > max_dev_rows:
        dv = np.sort(rng.choice(dv, max_dev_rows, replace=False))
    ytr = y[tr]
    present = [int(c) for c in np.flatnonzero(np.bincount(ytr, minlength=len(classes)) > 0)]
    if len(present) < 2:
        raise ValueError("the training rows have fewer than two classes")
    dv = dv[np.isin(y[dv], present)]
    if len(dv) == 0:
        raise ValueError("no dev rows of a class seen in training")
    xtr = torch.from_numpy(design.matrix(tr))
    xdv = torch.from_numpy(design.matrix(dv))
    sd_all, mu_all = torch.std_mean(xtr.double(), 0, correction=0)
    sd_all[sd_all == 0] = 1.0
    xtr = (xtr - mu_all.float()) / sd_all.float()
    xdv = (xdv - mu_all.float()) / sd_all.float()
    cls_idx = {int(c): torch.from_numpy(np.flatnonzero(ytr == c)) for c in present}
    n_tr = len(tr)
    counts = {c: len(ix) for c, ix in cls_idx.items()}
    log_prior = {c: math.log(counts[c] / n_tr) for c in present}
    centred = {}
    means = {}
    for c, ix in cls_idx.items():
        xc = xtr[ix]
        means[c] = xc.mean(0)
        centred[c] = xc - means[c]
    var_c = {c: (centred[c].double() ** 2).mean(0).float() for c in present}
    pooled_var = torch.stack([counts[c] * var_c[c] for c in present]).sum(0) / n_tr
    eps = 1e-3

    def lam(c: int) -> float:
        return shrinkage / (counts[c] + shrinkage)

    # conditional state per class: variances given S [F], residuals of dev rows [n_dev, F], factor rows G
    cond_var = {c: (1 - lam(c)) * var_c[c] + lam(c) * pooled_var + eps for c in present}
    resid = {c: xdv - means[c] for c in present}
    ll_s = {c: torch.full((len(dv),), log_prior[c]) for c in present}  # log p(x_S, c) of dev rows
    factors: dict[int, list[torch.Tensor]] = {c: [] for c in present}
    ydv = torch.from_numpy(y[dv])
    y_pos = {int(c): i for i, c in enumerate(present)}
    ydv_pos = torch.tensor([y_pos[int(v)] for v in ydv.tolist()])
    freq = np.bincount(y[dv], minlength=len(classes))[present] / len(dv)
    h_y = float(-(freq[freq > 0] * np.log(freq[freq > 0])).sum())

    selected: list[int] = []
    gains: list[float] = []
    info: list[float] = []
    alone = np.zeros(f)
    current = 0.0  # estimated information of the selected set, nats
    from tqdm.auto import tqdm

    show = progress if progress is not None else f * len(dv) * k > 5e8
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    for step in tqdm(range(k), desc="gaussian probe", disable=not show):
        # log p(x_S, x_d, c) for every candidate d, every dev row, every class → log p(y | x_S, x_d)
        run_max: torch.Tensor | None = None
        run_sum: torch.Tensor | None = None
        true_term = torch.zeros(len(dv), f)
        for pos, c in enumerate(present):
            v = cond_var[c].clamp_min(1e-6)
            term = ll_s[c][:, None] - half_log_2pi - 0.5 * torch.log(v)[None, :] - 0.5 * resid[c] ** 2 / v
            mask = ydv_pos == pos
            true_term[mask] = term[mask]
            if run_max is None or run_sum is None:
                run_max, run_sum = term, torch.ones_like(term)
            else:
                new_max = torch.maximum(run_max, term)
                run_sum = run_sum * torch.exp(run_max - new_max) + torch.exp(term - new_max)
                run_max = new_max
        assert run_max is not None and run_sum is not None
        cll = (true_term - (run_max + torch.log(run_sum))).mean(0).double().numpy()  # [F]
        cand_info = h_y + cll
        if step == 0:
            alone = cand_info / math.log(2)
        cand_info[selected] = -np.inf
        j = int(np.argmax(cand_info))
        gains.append((cand_info[j] - current) / math.log(2))
        current = float(cand_info[j])
        info.append(current / math.log(2))
        selected.append(j)
        if step == k - 1:
            break
        # condition every class's Gaussian on x_j (a rank-one update of each conditional covariance)
        rows_c: dict[int, torch.Tensor] = {}
        if covariance == "full":
            rows_c = {c: (centred[c][:, j] @ centred[c]) / counts[c] for c in present}
            pooled_row = torch.stack([counts[c] * rows_c[c] for c in present]).sum(0) / n_tr
        for c in present:
            vj = float(cond_var[c][j].clamp_min(1e-6))
            rj = resid[c][:, j].clone()
            ll_s[c] = ll_s[c] - half_log_2pi - 0.5 * math.log(vj) - 0.5 * rj**2 / vj
            if covariance == "diag":
                continue
            kj = (1 - lam(c)) * rows_c[c] + lam(c) * pooled_row
            kj[j] += eps
            for g in factors[c]:
                kj -= g[j] * g
            g_new = kj / math.sqrt(vj)
            factors[c].append(g_new)
            cond_var[c] = cond_var[c] - g_new**2
            resid[c] = resid[c] - (rj / math.sqrt(vj))[:, None] * g_new[None, :]
    chosen = set(selected)
    rest = [int(i) for i in np.argsort(-alone, kind="stable") if int(i) not in chosen]
    order = np.asarray(selected + rest, dtype=np.int64)
    scores = alone.copy()
    scores[selected] = gains
    return NeuronRanking.from_scores(
        design.names,
        scores,
        "gaussian",
        columns={"information_alone": alone},
        meta={
            "k": k,
            "covariance": covariance,
            "information": info,
            "entropy_bits": h_y / math.log(2),
            "train_rows": int(n_tr),
            "dev_rows": len(dv),
        },
        order=order,
    )
