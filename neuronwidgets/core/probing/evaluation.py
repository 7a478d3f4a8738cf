"""How good is a neuron ranking? Ablation on the probe and minimal neuron subsets.

- :func:`evaluate_ranking` (Dalvi et al. 2019): the probe's accuracy when only the top / random / bottom
  k % of its neurons are kept (the others ablated), and when they are ablated (the others kept), over a
  range of k; random selections are drawn several times (mean and spread). A good ranking keeps accuracy
  with few top neurons and loses it when they are removed; bottom neurons should matter least.
- :func:`train_minimal_probe` (Durrani et al. 2020): the smallest number of top-ranked neurons whose
  retrained probe recovers a share (default 97 %) of the full probe's accuracy.

Ablating a probe input sets its raw activation to 0 by default (``ablation="zero"``), as NeuroX's
``zero_out_activations_keep_neurons`` and Dalvi et al. (2019) do, so the curves compare with the
literature. ``ablation="mean"`` sets it to its training mean instead (its standardised value to 0): a
neutral value rather than a raw 0, which for a residual stream with large offsets can be far outside the
data; top-vs-random gaps are smaller under it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..display import Result, listing, new_axes, new_axes_row, number, steps_bar, summary
from ..results import NeuronRanking
from ..store.activations import Activations
from ..store.design import Design, Split, compute_threads, encode_labels, resolve_split
from .probes import ProbeResult
from .scores import classification_scores, regression_scores
from .training import train_probe

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DEFAULT_PERCENTS = (1, 2, 5, 10, 20, 30, 50, 75, 100)
SELECTIONS = ("top", "random", "bottom")
ABLATIONS = ("zero", "mean")


@dataclass(frozen=True, eq=False)
class RankingAblation(Result):
    """Probe accuracy under ablation, for one ranking.

    Made by :func:`evaluate_ranking`. Accuracy is Pearson's r for regression probes.

    Attributes:
        method: The ranking's method.
        percents: Float64 ``[K]``, the sizes as % of the neurons.
        counts: Int64 ``[K]``, neurons in each selection.
        keep_top: Float64 ``[K]``, accuracy when only the top neurons are kept.
        keep_random: Float64 ``[draws, K]`` (nested random selections, one permutation per draw).
        keep_bottom: Float64 ``[K]``.
        zero_top: Float64 ``[K]``, accuracy when the top neurons are ablated.
        zero_random: Float64 ``[draws, K]``.
        zero_bottom: Float64 ``[K]``.
        full: The probe with every neuron.
        majority: The majority-class baseline.
        part: The rows scored, ``"test"`` or ``"dev"``.
        meta: How it was computed.
        ablation: What an ablated neuron was set to, ``"zero"`` (raw 0) or ``"mean"`` (its training mean).
    """

    method: str
    percents: np.ndarray
    counts: np.ndarray
    keep_top: np.ndarray
    keep_random: np.ndarray
    keep_bottom: np.ndarray
    zero_top: np.ndarray
    zero_random: np.ndarray
    zero_bottom: np.ndarray
    full: float
    majority: float = math.nan
    part: str = "test"
    meta: Mapping[str, Any] = field(default_factory=dict)
    ablation: str = "zero"

    def curve(self, mode: str, selection: str) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` accuracy over ``percents`` for ``mode`` in keep/zero and a selection."""
        if mode not in ("keep", "zero") or selection not in SELECTIONS:
            raise ValueError(f"mode is 'keep' or 'zero' and selection one of {SELECTIONS}")
        arr = getattr(self, f"{mode}_{selection}")
        if selection == "random":
            return arr.mean(0), arr.std(0)
        return arr, np.zeros_like(arr)

    def __repr__(self) -> str:
        pct = ", ".join(f"{p:g}%" for p in self.percents)
        return summary(
            f"RankingAblation({self.method}, {len(self.percents)} sizes ({pct}), {self.part} accuracy)",
            f"all neurons {number(self.full)}, majority {number(self.majority)}",
            f"keep top {number(self.keep_top[0])} vs bottom {number(self.keep_bottom[0])} at {self.percents[0]:g}%",
        )

    def to_frame(self) -> pd.DataFrame:
        """Long table: mode, selection, percent, neurons, accuracy (mean over draws), std."""
        rows = []
        for mode in ("keep", "zero"):
            for sel in SELECTIONS:
                mean, std = self.curve(mode, sel)
                for p, n, m, s in zip(self.percents, self.counts, mean, std):
                    rows.append(
                        {
                            "mode": mode,
                            "selection": sel,
                            "percent": p,
                            "neurons": int(n),
                            "accuracy": m,
                            "std": s,
                        }
                    )
        return pd.DataFrame(rows)

    def plot(self, *, title: str | None = None, ax: Any = None) -> Axes:
        """Accuracy vs k % for top / random (mean ± std) / bottom, keeping (left) and ablating (right),
        drawn into ``ax`` (two Axes; default: a new figure). Returns the left Axes (``.figure`` has both)."""
        panels = new_axes_row(ax, 2, (9.0, 3.6))
        colours = {"top": "tab:blue", "random": "tab:grey", "bottom": "tab:red"}
        for i, (ax, mode) in enumerate(zip(panels, ("keep", "zero"))):
            for sel in SELECTIONS:
                mean, std = self.curve(mode, sel)
                ax.plot(self.percents, mean, marker="o", ms=3, color=colours[sel], label=sel)
                if sel == "random":
                    ax.fill_between(self.percents, mean - std, mean + std, color=colours[sel], alpha=0.2)
            ax.axhline(self.full, color="black", linestyle="--", linewidth=0.8, label="all neurons")
            if math.isfinite(self.majority):
                ax.axhline(self.majority, color="grey", linestyle=":", linewidth=0.8, label="majority")
            ax.set_xscale("log")
            ax.set_xlabel("% of neurons " + ("kept" if mode == "keep" else "ablated"))
            ax.set_ylabel(f"{self.part} accuracy")
            ax.set_title("keep only the selection" if mode == "keep" else "ablate the selection")
            if i == 0:
                ax.legend(fontsize="small")
        panels[0].figure.suptitle(title or f"ablation on the probe: {self.method} ranking")
        return panels[0]


def _metric(task: str, y: np.ndarray, out: np.ndarray, classes: Sequence[str], probe: Any) -> float:
    if task == "classification":
        return classification_scores(y, out.argmax(1), classes).accuracy
    return regression_scores(y, out[:, 0] * probe.target_scale + probe.target_mean).pearson


def evaluate_ranking(
    result: ProbeResult,
    ranking: NeuronRanking,
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    *,
    percents: Sequence[float] = DEFAULT_PERCENTS,
    draws: int = 5,
    seed: int = 0,
    part: str = "test",
    ablation: str = "zero",
    progress: bool | None = None,
) -> RankingAblation:
    """Accuracy of ``result``'s probe keeping only, or ablating, the top / random / bottom k % of its
    neurons by ``ranking``, on the ``part`` ("test" or "dev") rows of its split (no retraining: this
    measures what the trained probe relies on).

    Args:
        result: A trained probe's result.
        ranking: An order of (at least) the probe's neurons.
        activations: The activations the probe was trained on.
        labels: Its labels.
        percents: The sizes, as % of the probe's neurons.
        draws: Random selections per size.
        seed: Seed of the random selections.
        part: ``"test"`` or ``"dev"``.
        ablation: ``"zero"`` (default; NeuroX and Dalvi et al. 2019) sets an ablated neuron's raw
            activation to 0; ``"mean"`` sets it to its training mean.
        progress: A bar over the sizes (``None``: shown for large probes, over 50M products in all).

    Returns:
        Accuracy by size for top, random and bottom selections, kept and ablated.

    Raises:
        TypeError: If ``result`` or ``ranking`` is not of its type.
        ValueError: For a bad ``part``, ``ablation``, ``draws`` or ``percents``.

    Example:
        >>> result = train_probe(acts, labels)
        >>> evaluate_ranking(result, rank_weight_mass(result), acts, labels).plot()"""
    if not isinstance(result, ProbeResult):
        raise TypeError(f"result must be a ProbeResult (from train_probe), got {type(result).__name__}")
    if not isinstance(ranking, NeuronRanking):
        raise TypeError(f"ranking must be a NeuronRanking, got {type(ranking).__name__}")
    probe = result.probe
    if part not in ("test", "dev"):
        raise ValueError(f"part must be 'test' or 'dev', got {part!r}")
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {ABLATIONS}, got {ablation!r}")
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or int(draws) < 1:
        raise ValueError(f"draws must be an int of at least 1, got {draws!r}")
    try:
        pcts = np.asarray([float(p) for p in percents], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"percents must be numbers in (0, 100], got {percents!r}") from None
    if len(pcts) == 0 or not np.isfinite(pcts).all() or (pcts <= 0).any() or (pcts > 100).any():
        raise ValueError(f"percents must be in (0, 100], got {list(percents)}")
    pcts = np.unique(pcts)
    ranked = ranking.restrict(probe.features)
    order = probe.feature_index(ranked.neurons)
    counts = np.array([ranked.count(p) for p in pcts], dtype=np.int64)
    _, dv, te = result.split.rows(activations.offsets)
    rows = te if part == "test" else dv
    if len(rows) == 0:
        raise ValueError(f"the probe's split has no {part} rows")
    enc = encode_labels(labels, activations.num_units, probe.task, classes=probe.classes or None)
    x = Design(activations, neurons=list(probe.features)).matrix(rows)
    with compute_threads(x.size):
        return _ablation_curves(
            result,
            ranking,
            probe,
            x,
            enc.y[rows],
            order,
            counts,
            pcts,
            int(draws),
            seed,
            part,
            ablation,
            progress,
        )


def _ablation_curves(
    result: ProbeResult,
    ranking: NeuronRanking,
    probe: Any,
    x: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    counts: np.ndarray,
    pcts: np.ndarray,
    draws: int,
    seed: int,
    part: str,
    ablation: str,
    progress: bool | None = None,
) -> RankingAblation:
    f = probe.num_features
    mean = np.asarray(probe.mean, dtype=np.float64)
    scale = np.asarray(probe.scale, dtype=np.float64)
    z = torch.from_numpy(((x - mean) / scale).astype(np.float32))
    w = torch.from_numpy(probe.weight.astype(np.float32))  # [C, F]
    # the standardised value an ablated neuron takes: 0 for its training mean, (0 - mean) / scale for raw 0
    z0 = torch.from_numpy((np.zeros(f) if ablation == "mean" else -mean / scale).astype(np.float32))
    contrib_all = z @ w.T
    contrib_ablated = w @ z0  # [C]: every neuron ablated
    bias = torch.from_numpy(probe.bias.astype(np.float32))

    def part_of(sel: np.ndarray) -> torch.Tensor:
        s = torch.from_numpy(sel)
        return z[:, s] @ w[:, s].T

    def ablated_of(sel: np.ndarray) -> torch.Tensor:
        s = torch.from_numpy(sel)
        return w[:, s] @ z0[s]

    def acc_keep(sel: np.ndarray) -> float:
        out = part_of(sel) + (contrib_ablated - ablated_of(sel)) + bias
        return _metric(probe.task, y, out.numpy(), probe.classes, probe)

    def acc_zero(sel: np.ndarray) -> float:
        out = contrib_all - part_of(sel) + ablated_of(sel) + bias
        return _metric(probe.task, y, out.numpy(), probe.classes, probe)

    rng = np.random.default_rng(seed)
    perms = [rng.permutation(f) for _ in range(int(draws))]
    k_top, k_bot, z_top, z_bot = (np.zeros(len(pcts)) for _ in range(4))
    k_rand = np.zeros((int(draws), len(pcts)))
    z_rand = np.zeros((int(draws), len(pcts)))
    work = x.size * len(counts) * (2 + int(draws))
    with steps_bar(len(counts), "ranking ablation", progress, auto=work > 50_000_000, unit="size") as bar:
        for i, k in enumerate(counts):
            top, bottom = order[:k], order[f - k :]
            k_top[i], k_bot[i] = acc_keep(top), acc_keep(bottom)
            z_top[i], z_bot[i] = acc_zero(top), acc_zero(bottom)
            for d, perm in enumerate(perms):
                k_rand[d, i] = acc_keep(perm[:k])
                z_rand[d, i] = acc_zero(perm[:k])
            bar.update(1)
    full = _metric(probe.task, y, (contrib_all + bias).numpy(), probe.classes, probe)
    return RankingAblation(
        method=ranking.method,
        percents=pcts,
        counts=counts,
        keep_top=k_top,
        keep_random=k_rand,
        keep_bottom=k_bot,
        zero_top=z_top,
        zero_random=z_rand,
        zero_bottom=z_bot,
        full=full,
        majority=result.majority if part == "test" else math.nan,
        part=part,
        meta={"draws": int(draws), "seed": seed},
        ablation=ablation,
    )


# ------------------------------------------------------------------------------------------------
# Minimal neuron subsets (Durrani et al. 2020)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MinimalSubset(Result):
    """The smallest top-of-ranking neuron set whose retrained probe reaches ``target × full`` accuracy on
    the selection part (dev, or test when the split has no dev part).

    Made by :func:`train_minimal_probe`.

    Attributes:
        neurons: The subset (ranking order).
        accuracy: Its selection-part accuracy.
        full: The all-neuron accuracy on the selection part.
        target: The share of ``full`` asked for.
        part: The selection part, ``"dev"`` or ``"test"``.
        result: Its :class:`~neuronwidgets.core.ProbeResult` (held-out test scores in ``result.test``).
        sizes: ``[T]``, every size tried, in the order tried.
        accuracies: ``[T]``, the accuracy of each size tried.
        method: The ranking's method.
        reached: False when even all neurons fall short (then ``neurons`` is the whole ranking).
    """

    neurons: tuple[str, ...]
    accuracy: float
    full: float
    target: float
    part: str
    result: ProbeResult
    sizes: np.ndarray
    accuracies: np.ndarray
    method: str
    reached: bool = True

    @property
    def size(self) -> int:
        return len(self.neurons)

    @property
    def test_accuracy(self) -> float:
        return self.result.accuracy

    def __repr__(self) -> str:
        state = "reached" if self.reached else "not reached"
        return summary(
            f"MinimalSubset({len(self.neurons)} neurons by {self.method}: {self.part} accuracy "
            f"{number(self.accuracy)} of {number(self.full)}, target {self.target:g} {state})",
            f"neurons: {listing(self.neurons)}",
        )

    def to_frame(self) -> pd.DataFrame:
        """The sizes tried and their accuracy, smallest first."""
        order = np.argsort(self.sizes)
        return pd.DataFrame({"neurons": self.sizes[order], "accuracy": self.accuracies[order]})

    def plot(self, *, title: str | None = None, ax: Any = None) -> Axes:
        """Accuracy vs number of top neurons (retrained probes), with the target line, drawn into ``ax``
        (default: a new figure)."""
        df = self.to_frame()
        ax = new_axes(ax, (5.5, 3.4))
        ax.plot(df["neurons"], df["accuracy"], marker="o")
        ax.axhline(self.full, color="black", linestyle="--", linewidth=0.8, label="all neurons")
        ax.axhline(self.target * self.full, color="tab:red", linestyle=":", label=f"{self.target:.0%} of all")
        ax.axvline(self.size, color="tab:green", linewidth=0.8, label=f"{self.size} neurons")
        ax.set_xscale("log")
        ax.set_xlabel(f"top neurons ({self.method})")
        ax.set_ylabel(f"{self.part} accuracy")
        ax.legend(fontsize="small")
        ax.set_title(title or "minimal neuron subset")
        return ax


def train_minimal_probe(
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    ranking: NeuronRanking,
    *,
    target: float = 0.97,
    reference: ProbeResult | None = None,
    split: Split | Sequence[float] | None = None,
    seed: int = 0,
    **probe_kwargs: Any,
) -> MinimalSubset:
    """Find the fewest top-ranked neurons whose retrained probe recovers ``target`` (default 97 %) of the
    full probe's accuracy (Durrani et al. 2020).

    Sizes double from 1 until the target is met, then a bisection finds the smallest passing size
    (accuracy is close to monotone in the size, so this needs about ``2·log2(size)`` probes). Accuracy is
    measured on the dev part (test when there is none); the full accuracy comes from ``reference`` (a
    probe on the same neurons and split) or from a probe trained here on every ranked neuron.

    Args:
        activations: The activations.
        labels: One label per row.
        ranking: The order to take neurons in.
        target: Share of the full accuracy to recover, in (0, 1].
        reference: A probe on the same neurons and split, for the full accuracy.
        split: As :func:`~neuronwidgets.core.train_probe`.
        seed: As :func:`~neuronwidgets.core.train_probe`.
        **probe_kwargs: Go to :func:`~neuronwidgets.core.train_probe` (e.g. ``l1``, ``l2``, ``max_iter``).

    Returns:
        The subset, its probe and every size tried.

    Raises:
        ValueError: For a ``target`` outside (0, 1] or a ``probe_kwargs`` key this function sets itself.

    Example:
        >>> subset = train_minimal_probe(acts, labels, rank_weight_mass(result), target=0.97)
        >>> len(subset.neurons), subset.result.test.accuracy
    """
    if not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1], got {target}")
    for bad in ("neurons", "sites", "control", "baselines"):
        if bad in probe_kwargs:
            raise ValueError(f"{bad}= is set by train_minimal_probe itself")
    sp = reference.split if reference is not None else resolve_split(split, activations, seed)
    part = "dev" if len(sp.dev) else "test"
    kw = {"split": sp, "seed": seed, "control": False, "baselines": False, **probe_kwargs}

    def score(res: ProbeResult) -> float:
        s = res.dev if part == "dev" and res.dev is not None else res.test
        return s.main

    if reference is not None:
        full = score(reference)
    else:
        full = score(train_probe(activations, labels, neurons=list(ranking.neurons), **kw))
    goal = target * full
    tried: dict[int, tuple[float, ProbeResult]] = {}

    def attempt(k: int) -> float:
        if k not in tried:
            res = train_probe(activations, labels, neurons=list(ranking.top(k)), **kw)
            tried[k] = (score(res), res)
        return tried[k][0]

    n = len(ranking)
    lo, hi = 0, None  # lo: largest failing size; hi: smallest passing size
    k = 1
    while True:
        if attempt(k) >= goal:
            hi = k
            break
        lo = k
        if k == n:
            break
        k = min(n, 2 * k)
    reached = hi is not None
    if hi is None:
        hi = n
    while reached and hi - lo > 1:
        mid = (lo + hi) // 2
        if attempt(mid) >= goal:
            hi = mid
        else:
            lo = mid
    acc, res = tried[hi]
    sizes = np.array(list(tried), dtype=np.int64)
    return MinimalSubset(
        neurons=ranking.top(hi).neurons,
        accuracy=acc,
        full=full,
        target=target,
        part=part,
        result=res,
        sizes=sizes,
        accuracies=np.array([tried[int(s)][0] for s in sizes]),
        method=ranking.method,
        reached=reached,
    )
