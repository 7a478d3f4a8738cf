"""ProbeReport: accuracy by layer (with control accuracy, selectivity and the majority baseline) and
accuracy-vs-k curves for the top / random / bottom neurons of a ranking, drawn as SVG with a table of the
same numbers.

The numbers come from the result objects' ``.to_frame()`` and travel as float32 binary buffers; only the
short label lists (sites, series, modes, selections) are JSON. ``figures()`` gives the same views as the
result objects' matplotlib figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import anywidget
import numpy as np
import traitlets
from matplotlib.figure import Figure

from ..core import LayerwiseProbes, RankingAblation
from ._assets import bundle_file, encode_array, require_bundle
from ._export import write_standalone_html

LAYER_SERIES = ("test", "control", "selectivity", "majority")
MODES = ("keep", "zero")
SELECTIONS = ("top", "random", "bottom")
_SYNCED = (
    "sites",
    "layer_series",
    "layer_values",
    "layer_metric",
    "percents",
    "neurons",
    "modes",
    "selections",
    "curve_mean",
    "curve_std",
    "baselines",
    "method",
    "part",
)


class ProbeReport(anywidget.AnyWidget):
    """A probe report: ``ProbeReport(layerwise, ablation)``, either may be None (but not both).

    ``layerwise`` is a :class:`~neuronwidgets.core.LayerwiseProbes` (from ``train_layerwise_probes``):
    shown as test accuracy, control-task accuracy and majority baseline by site (lines) with selectivity
    (bars). ``ablation`` is a :class:`~neuronwidgets.core.RankingAblation` (from ``evaluate_ranking``):
    shown as accuracy vs % of neurons kept and ablated for the top / random (mean ± std band) / bottom
    selections. Each chart has a table of the same numbers. ``figures()`` returns the matplotlib figures.

    Data traits (answers, sent once): ``layer_values`` float32 ``[len(layer_series), len(sites)]``;
    ``curve_mean`` / ``curve_std`` float32 ``[len(modes), len(selections), K]``; ``percents`` and
    ``neurons`` float32 ``[K]``; ``baselines`` float32 ``[2]`` (all neurons, majority). Missing values (e.g. no control task) are NaN.

    Args:
        layerwise: Probes by site, or ``None``.
        ablation: Accuracy vs neurons kept and ablated, or ``None``.

    Raises:
        TypeError: If an argument is not of its type.
        ValueError: If both are ``None``, or a result lacks the numbers the charts need.

    Example:
        >>> layerwise = train_layerwise_probes(acts, corpus.flat_labels("upos"))
        >>> ProbeReport(layerwise, evaluate_ranking(result, ranking, acts, labels))
    """

    _esm = bundle_file("probe_report")
    _css = bundle_file("probe_report", ".css")

    sites = traitlets.List(traitlets.Unicode(), help="probed sites, in forward order").tag(sync=True)
    layer_series = traitlets.List(traitlets.Unicode(), help="rows of layer_values").tag(sync=True)
    layer_values = traitlets.Dict(help="{view, dtype, shape}: float32 [series, sites]").tag(sync=True)
    layer_metric = traitlets.Unicode("accuracy", help="'accuracy', or 'r' for regression probes").tag(
        sync=True
    )
    percents = traitlets.Dict(help="float32 [K]: % of neurons in each selection").tag(sync=True)
    neurons = traitlets.Dict(help="float32 [K]: number of neurons in each selection").tag(sync=True)
    modes = traitlets.List(traitlets.Unicode(), help="'keep' (only the selection) / 'zero' (ablate it)").tag(
        sync=True
    )
    selections = traitlets.List(traitlets.Unicode(), help="'top', 'random', 'bottom'").tag(sync=True)
    curve_mean = traitlets.Dict(help="float32 [modes, selections, K]: accuracy (mean over draws)").tag(
        sync=True
    )
    curve_std = traitlets.Dict(
        help="float32 [modes, selections, K]: std over random draws (0 otherwise)"
    ).tag(sync=True)
    baselines = traitlets.Dict(
        help="float32 [2]: the probe on all neurons and the majority class (NaN when unknown)"
    ).tag(sync=True)
    method = traitlets.Unicode("", help="the ranking method of the ablation").tag(sync=True)
    part = traitlets.Unicode("test", help="the data part the ablation was scored on").tag(sync=True)

    def __init__(
        self, layerwise: LayerwiseProbes | None = None, ablation: RankingAblation | None = None
    ) -> None:
        if layerwise is None and ablation is None:
            raise ValueError("ProbeReport needs a LayerwiseProbes, a RankingAblation, or both")
        if layerwise is not None and not isinstance(layerwise, LayerwiseProbes):
            raise TypeError(
                "layerwise must be a LayerwiseProbes (from train_layerwise_probes), got "
                f"{type(layerwise).__name__}"
            )
        if ablation is not None and not isinstance(ablation, RankingAblation):
            raise TypeError(
                f"ablation must be a RankingAblation (from evaluate_ranking), got {type(ablation).__name__}"
            )
        require_bundle("probe_report")
        self._layerwise = layerwise
        self._ablation = ablation
        state: dict[str, Any] = {}
        state.update(_layer_state(layerwise))
        state.update(_ablation_state(ablation))
        super().__init__(**state)

    def figures(self) -> list[Figure]:
        """The result objects' matplotlib figures: accuracy by layer, then accuracy vs k (those given)."""
        figs: list[Figure] = []
        if self._layerwise is not None:
            figs.append(cast("Figure", self._layerwise.plot().figure))
        if self._ablation is not None:
            figs.append(cast("Figure", self._ablation.plot().figure))
        return figs

    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write a standalone HTML page of this report (bundle, CSS and data inlined; no network)."""
        return write_standalone_html(self, path, title or "ProbeReport")

    def _export_state(self) -> dict[str, Any]:
        """The state a static page renders from (also used by ``save_html`` for composed views)."""
        return self.get_state(list(_SYNCED))


def _finite_or_nan(values: np.ndarray, what: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64)
    if np.isinf(out).any() or (np.abs(out[np.isfinite(out)]) > np.finfo(np.float32).max).any():
        raise ValueError(f"{what} must be finite numbers or NaN")
    return out.astype(np.float32)


def _layer_state(layerwise: LayerwiseProbes | None) -> dict[str, Any]:
    if layerwise is None:
        return {"sites": [], "layer_series": [], "layer_values": encode_array(np.zeros((0, 0)))}
    frame = layerwise.to_frame()
    if frame.empty or "site" not in frame.columns or "test" not in frame.columns:
        raise ValueError("the LayerwiseProbes has no probe results (its frame needs 'site' and 'test')")
    values = np.stack(
        [
            np.asarray(frame[c], dtype=np.float64) if c in frame.columns else np.full(len(frame), np.nan)
            for c in LAYER_SERIES
        ]
    )
    task = str(frame["task"].iloc[0]) if "task" in frame.columns else "classification"
    return {
        "sites": [str(s) for s in frame["site"]],
        "layer_series": list(LAYER_SERIES),
        "layer_values": encode_array(_finite_or_nan(values, "layer-wise accuracies")),
        "layer_metric": "accuracy" if task == "classification" else "r",
    }


def _ablation_state(ablation: RankingAblation | None) -> dict[str, Any]:
    empty = encode_array(np.zeros((0,)))
    if ablation is None:
        return {
            "percents": empty,
            "neurons": empty,
            "modes": [],
            "selections": [],
            "curve_mean": encode_array(np.zeros((0, 0, 0))),
            "curve_std": encode_array(np.zeros((0, 0, 0))),
            "baselines": encode_array(np.full(2, np.nan)),
        }
    frame = ablation.to_frame()
    need = {"mode", "selection", "percent", "neurons", "accuracy", "std"}
    if frame.empty or not need <= set(frame.columns):
        raise ValueError(f"the RankingAblation's frame needs columns {sorted(need)} and at least one row")
    first = frame[(frame["mode"] == MODES[0]) & (frame["selection"] == SELECTIONS[0])]
    percents = np.asarray(first["percent"], dtype=np.float64)
    k = len(percents)
    mean = np.full((len(MODES), len(SELECTIONS), k), np.nan)
    std = np.full((len(MODES), len(SELECTIONS), k), np.nan)
    for i, mode in enumerate(MODES):
        for j, sel in enumerate(SELECTIONS):
            part = frame[(frame["mode"] == mode) & (frame["selection"] == sel)]
            if len(part) != k or not np.array_equal(np.asarray(part["percent"], dtype=np.float64), percents):
                raise ValueError(f"the ablation's {mode}/{sel} curve does not cover the same percents")
            mean[i, j] = np.asarray(part["accuracy"], dtype=np.float64)
            std[i, j] = np.asarray(part["std"], dtype=np.float64)
    return {
        "percents": encode_array(_finite_or_nan(percents, "percents")),
        "neurons": encode_array(_finite_or_nan(np.asarray(first["neurons"], dtype=np.float64), "neurons")),
        "modes": list(MODES),
        "selections": list(SELECTIONS),
        "curve_mean": encode_array(_finite_or_nan(mean, "ablation accuracies")),
        "curve_std": encode_array(_finite_or_nan(std, "ablation spreads")),
        "baselines": encode_array(
            _finite_or_nan(np.array([ablation.full, ablation.majority], dtype=np.float64), "baselines")
        ),
        "method": str(ablation.method),
        "part": str(ablation.part),
    }


__all__ = ["ProbeReport"]
