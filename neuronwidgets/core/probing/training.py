"""Training entry points: :func:`train_probe` (one probe with its control task and baselines) and
:func:`train_layerwise_probes` (one probe per site, with a table and a plot).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..display import Result, new_axes, number, summary
from ..models.addresses import NeuronAddress, Site, parse_site
from ..store.activations import Activations
from ..store.design import (
    Design,
    Split,
)
from .engine import _check_hyper, _prepare
from .probes import ProbeResult
from .regularization import resolve_preset, run_preset

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def train_probe(
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    *,
    sites: Sequence[str | Site] | str | Site | None = None,
    neurons: Iterable[str | NeuronAddress] | None = None,
    task: str = "auto",
    regularization: str = "smooth",
    l1: float | None = None,
    l2: float | None = None,
    split: Split | Sequence[float] | None = None,
    seed: int = 0,
    control: bool = True,
    baselines: bool = True,
    max_iter: int | None = None,
    precision: str = "auto",
    in_memory: bool | None = None,
    progress: bool | None = None,
) -> ProbeResult:
    """Train a linear probe from activations to one label per row.

    Deterministic for a given ``seed``, data and machine.

    Args:
        activations: The activations (rows aligned with ``labels``).
        labels: One per activation row, e.g. ``corpus.flat_labels("upos")``; strings/ints are classes
            (logistic regression), floats a real target (linear regression); force with ``task=``.
        sites: Probe whole sites (default all of them).
        neurons: Or given neuron addresses.
        task: ``"auto"``, ``"classification"`` or ``"regression"``.
        regularization: A named preset (penalty, solver, steps), each documented in
            :mod:`neuronwidgets.core.probing.regularization`: ``"smooth"`` (the default: elastic net
            ``l1=1e-5``, ``l2=3e-3`` by 30 L-BFGS steps with ``|w|`` smoothed, so no weight is exactly
            zero), ``"elastic-net"`` (the same objective solved exactly by OWL-QN, ``l1=1e-3``: exact
            zeros), ``"lasso"`` (as ``"elastic-net"`` with ``l2=0``) or ``"neurox"`` (Dalvi et al. 2019 /
            NeuroX: ``l1·Σ|w| + l2·‖W‖`` with λ1 = λ2 chosen on the dev rows among 1e-1 … 1e-5, the most
            selective λ within 0.01 of the best dev accuracy; the search is in ``result.meta``).
        l1: L1 weight on the standardised-neuron weights (loss: mean CE + l1·Σ|w| + l2·Σw²); None: the
            preset's. For ``"neurox"``, giving ``l1`` (or ``l2``) skips the λ search.
        l2: L2 weight; None: the preset's.
        split: A :class:`~neuronwidgets.core.Split`, fractions ``(train, dev, test)`` or ``(train, test)``,
            or None for 80/10/10; always by sentence, shuffled with ``seed``.
        seed: Seed of the split, the control labels and the random features.
        control: Also train the control-task probe (one more training).
        baselines: Also train the random-feature probe and compute the majority baseline.
        max_iter: Solver steps (each one or two passes over the training rows); None: the preset's
            (30 L-BFGS steps for ``"smooth"``, at most 300 OWL-QN steps for the others).
        precision: ``"auto"`` (bfloat16 products where the CPU supports them natively), ``"float32"``
            or ``"bfloat16"``.
        in_memory: Keep the standardised training matrix in memory (default: when it takes at most
            6 GB), else stream it from the activations at every step.
        progress: A progress bar (default: for long trainings).

    Returns:
        The probe, its scores on train/dev/test and the baselines.

    Raises:
        ValueError: For labels that do not match the rows, an unknown task, site, precision or preset, or
            a bad split or weight.

    Example:
        >>> result = train_probe(acts, corpus.flat_labels("upos"), sites="layer.3.resid")
        >>> result.test.accuracy, result.selectivity
        >>> sparse = train_probe(acts, corpus.flat_labels("upos"), regularization="neurox")
        >>> sparse.probe.meta["nonzero_weights"], sparse.meta["lambda_search"]
    """
    preset, search = resolve_preset(regularization, l1, l2, max_iter)
    _check_hyper(preset.l1, preset.l2, preset.max_iter)
    design = Design(activations, sites=sites, neurons=neurons)
    prep = _prepare(activations, labels, task, split, seed, control, baselines)
    return run_preset(
        prep,
        design,
        preset,
        search,
        control=control,
        baselines=baselines,
        precision=precision,
        in_memory=in_memory,
        progress=progress,
    )


# ------------------------------------------------------------------------------------------------
# Layer-wise probing
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LayerwiseProbes(Result):
    """Probes by site (made by :func:`train_layerwise_probes`), all on the same split and the same
    control labels, so the numbers compare across layers.

    Attributes:
        results: One :class:`ProbeResult` per site (``results[site]``, in forward order)."""

    results: Mapping[str, ProbeResult]

    @property
    def sites(self) -> list[str]:
        return list(self.results)

    def __getitem__(self, site: str) -> ProbeResult:
        return self.results[site]

    def __repr__(self) -> str:
        lines = [f"{site}: test {number(r.accuracy)}" for site, r in self.results.items()]
        return summary(f"LayerwiseProbes({len(self.results)} sites, best {self.best})", *lines)

    def to_frame(self) -> pd.DataFrame:
        """One row per site: site, layer, component, test accuracy, macro-F1, control accuracy,
        selectivity, majority and random-feature baselines."""
        rows = []
        for s, r in self.results.items():
            site = parse_site(s)
            rows.append({"site": s, "layer": site.layer, "component": site.component, **r.summary()})
        return pd.DataFrame(rows)

    @property
    def best(self) -> str:
        """The site with the highest test accuracy."""
        return max(self.results, key=lambda s: self.results[s].accuracy)

    def plot(self, *, title: str | None = None, ax: Any = None) -> Axes:
        """Test accuracy, control accuracy and selectivity by site, drawn into ``ax`` (default: a new
        figure); returns the Axes."""
        df = self.to_frame()
        ax = new_axes(ax, (max(5.0, 0.55 * len(df) + 2), 3.6))
        x = np.arange(len(df))
        ax.plot(x, df["test"], marker="o", label="probe (test)")
        if "control" in df and df["control"].notna().any():
            ax.plot(x, df["control"], marker="s", linestyle="--", label="control task")
            ax.bar(x, df["selectivity"], alpha=0.25, color="tab:green", label="selectivity")
        if "majority" in df and df["majority"].notna().any():
            ax.axhline(float(df["majority"].iloc[0]), color="grey", linestyle=":", label="majority class")
        if df["random_features"].notna().any():
            ax.plot(
                x,
                df["random_features"],
                marker="^",
                linestyle="-.",
                color="tab:purple",
                label="random features",
            )
        ax.set_xticks(x, [s.replace(".resid", "").replace("layer.", "L") for s in df["site"]], rotation=45)
        ax.set_ylabel("accuracy" if self.results[df["site"].iloc[0]].probe.task == "classification" else "r")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize="small", loc="lower right")
        ax.set_title(title or "probe accuracy by layer")
        return ax


def train_layerwise_probes(
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    *,
    sites: Sequence[str | Site] | None = None,
    task: str = "auto",
    regularization: str = "smooth",
    l1: float | None = None,
    l2: float | None = None,
    split: Split | Sequence[float] | None = None,
    seed: int = 0,
    control: bool = True,
    baselines: bool = True,
    max_iter: int | None = None,
    precision: str = "auto",
    in_memory: bool | None = None,
    progress: bool | None = None,
) -> LayerwiseProbes:
    """One probe per site (default every extracted site) in one call, all on the same sentence split and
    the same control labels, so accuracy and selectivity compare across layers.

    Args:
        activations: The activations; one probe per site.
        labels: One per activation row.
        sites: The sites to probe (default every extracted site).
        task: As :func:`train_probe`.
        regularization: As :func:`train_probe` (the ``"neurox"`` search runs for each site).
        l1: As :func:`train_probe`.
        l2: As :func:`train_probe`.
        split: As :func:`train_probe` (one split for every site).
        seed: As :func:`train_probe`.
        control: As :func:`train_probe` (one set of control labels for every site).
        baselines: As :func:`train_probe`.
        max_iter: As :func:`train_probe`.
        precision: As :func:`train_probe`.
        in_memory: As :func:`train_probe`.
        progress: A bar over the sites.

    Returns:
        One result per site.

    Raises:
        ValueError: For no sites or bad arguments (as :func:`train_probe`).

    Example:
        >>> layerwise = train_layerwise_probes(acts, corpus.flat_labels("upos"))
        >>> layerwise.plot()  # accuracy and selectivity by layer
    """
    chosen = [activations.check_site(s) for s in sites] if sites is not None else activations.sites
    if not chosen:
        raise ValueError("no sites to probe")
    preset, search = resolve_preset(regularization, l1, l2, max_iter)
    _check_hyper(preset.l1, preset.l2, preset.max_iter)
    prep = _prepare(activations, labels, task, split, seed, control, baselines)
    from tqdm.auto import tqdm

    results: dict[str, ProbeResult] = {}
    show = progress if progress is not None else len(chosen) > 2
    for s in tqdm(chosen, desc="layer-wise probes", disable=not show):
        results[s] = run_preset(
            prep,
            Design(activations, sites=[s]),
            preset,
            search,
            control=control,
            baselines=baselines,
            precision=precision,
            in_memory=in_memory,
            progress=False,
        )
    return LayerwiseProbes(results)
