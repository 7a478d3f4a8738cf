"""Training entry points: :func:`train_probe` (one probe with its control task and baselines) and
:func:`train_layerwise_probes` (one probe per site, with a table and a plot).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..display import Result, number, summary
from ..models.addresses import NeuronAddress, Site, parse_site
from ..store.activations import Activations
from ..store.design import (
    Design,
    Split,
)
from .engine import _check_hyper, _prepare, _run
from .probes import ProbeResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def train_probe(
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    *,
    sites: Sequence[str | Site] | str | Site | None = None,
    neurons: Iterable[str | NeuronAddress] | None = None,
    task: str = "auto",
    l1: float = 1e-5,
    l2: float = 3e-3,
    split: Split | Sequence[float] | None = None,
    seed: int = 0,
    control: bool = True,
    baselines: bool = True,
    max_iter: int = 30,
    precision: str = "auto",
    in_memory: bool | None = None,
    progress: bool | None = None,
) -> ProbeResult:
    """Train a linear probe from activations to one label per row.

    - ``labels``: one per activation row, e.g. ``corpus.flat_labels("upos")``; strings/ints are classes
      (logistic regression), floats a real target (linear regression); force with ``task=``.
    - ``sites`` / ``neurons``: probe whole sites (default all of them) or given neuron addresses.
    - ``l1``, ``l2``: elastic-net weights on the standardised-feature weights (mean loss + l1·Σ|w| + l2·Σw²).
    - ``split``: a :class:`Split`, fractions ``(train, dev, test)`` or ``(train, test)``, or None for
      80/10/10; always by sentence, shuffled with ``seed``.
    - ``control`` / ``baselines``: also train the control-task probe and the random-feature probe, and
      compute the majority baseline (each extra probe costs one more training).
    - ``max_iter``: L-BFGS iterations (each one pass over the training rows).
    - ``precision``: ``"auto"`` (bfloat16 products where the CPU supports them natively), ``"float32"``
      or ``"bfloat16"``. ``in_memory``: keep the standardised training matrix in memory (default: when
      it takes at most 6 GB), else stream it from the activations at every step.

    Deterministic for a given ``seed``, data and machine.
    """
    _check_hyper(l1, l2, max_iter)
    design = Design(activations, sites=sites, neurons=neurons)
    prep = _prepare(activations, labels, task, split, seed, control, baselines)
    return _run(
        prep,
        design,
        l1=l1,
        l2=l2,
        max_iter=int(max_iter),
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
    """One :class:`ProbeResult` per site (``results[site]``, in forward order), all on the same split
    and the same control labels, so the numbers compare across layers."""

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

    def plot(self, *, title: str | None = None) -> Figure:
        """Test accuracy, control accuracy and selectivity by site (matplotlib Figure)."""
        from matplotlib.figure import Figure

        df = self.to_frame()
        fig = Figure(figsize=(max(5.0, 0.55 * len(df) + 2), 3.6), layout="constrained")
        ax = fig.add_subplot()
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
        return fig


def train_layerwise_probes(
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    *,
    sites: Sequence[str | Site] | None = None,
    task: str = "auto",
    l1: float = 1e-5,
    l2: float = 3e-3,
    split: Split | Sequence[float] | None = None,
    seed: int = 0,
    control: bool = True,
    baselines: bool = True,
    max_iter: int = 30,
    precision: str = "auto",
    in_memory: bool | None = None,
    progress: bool | None = None,
) -> LayerwiseProbes:
    """One probe per site (default every extracted site) in one call, all on the same sentence split and
    the same control labels, so accuracy and selectivity compare across layers. Arguments as
    :func:`train_probe`."""
    chosen = [activations.check_site(s) for s in sites] if sites is not None else activations.sites
    if not chosen:
        raise ValueError("no sites to probe")
    _check_hyper(l1, l2, max_iter)
    prep = _prepare(activations, labels, task, split, seed, control, baselines)
    from tqdm.auto import tqdm

    results: dict[str, ProbeResult] = {}
    show = progress if progress is not None else len(chosen) > 2
    for s in tqdm(chosen, desc="layer-wise probes", disable=not show):
        results[s] = _run(
            prep,
            Design(activations, sites=[s]),
            l1=l1,
            l2=l2,
            max_iter=int(max_iter),
            control=control,
            baselines=baselines,
            precision=precision,
            in_memory=in_memory,
            progress=False,
        )
    return LayerwiseProbes(results)
