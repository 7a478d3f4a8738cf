"""Which widget shows which core result: ``widget_for(result)`` (behind every result's ``.show()`` and the
notebook extension's display formatters).

A result with a natural widget gets it (a ranking → :class:`NeuronTable`, an attribution →
:class:`TokenHeatmap`, a matrix → :class:`MatrixView`, probe curves → :class:`ProbeReport`); any other
result gets its compact HTML table in an ``ipywidgets.HTML``, so ``.show()`` always returns a widget
that composes with ``HBox``/``VBox``.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets
import numpy as np

from .. import core
from .matrix_view import MatrixView
from .neuron_table import NeuronTable
from .probe_report import ProbeReport
from .token_heatmap import TokenHeatmap


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _ranking(r: core.NeuronRanking) -> ipywidgets.Widget:
    return NeuronTable(r)


def _probe_result(r: core.ProbeResult) -> ipywidgets.Widget:
    head = ipywidgets.HTML(html_of(r))
    return ipywidgets.VBox([head, NeuronTable(core.rank_weight_mass(r))])


def _token_attribution(r: core.TokenAttribution) -> ipywidgets.Widget:
    label = f"{r.method} → {r.target}"
    return TokenHeatmap.from_scores(r.units("word"), r.scores("word"), label=label)


def _layer_attribution(r: core.LayerAttribution) -> ipywidgets.Widget:
    return MatrixView(
        r.word_scores, r.sites, r.words, label=f"{r.method} → {r.target}", row_title="site", col_title="word"
    )


def _interactions(r: core.TokenInteractions) -> ipywidgets.Widget:
    return MatrixView(
        r.matrix, r.units, r.units, label=f"{r.method} → {r.target}", row_title=r.level, col_title=r.level
    )


def _similarity(r: core.SimilarityMatrix) -> ipywidgets.Widget:
    return MatrixView(
        r.values,
        list(r.rows),
        list(r.columns),
        label=r.method,
        row_title=r.row_model,
        col_title=r.column_model,
        annotate=r.values.size <= 144,
    )


def _effect(r: core.InterventionEffect) -> ipywidgets.Widget:
    """One row per text: the original top prediction's probability before and after, its change and the
    KL divergence (annotated cells on the shared diverging scale: a drop is purple)."""
    values = np.stack([r.original_prob, r.intervened_prob, r.delta_prob, r.kl], axis=1)
    rows = [f"{_short(t, 30)} ({lab})" for t, lab in zip(r.texts, r.labels, strict=True)]
    return MatrixView(
        values,
        rows,
        ["p before", "p after", "Δp", "KL"],
        label=f"intervention effect: flip rate {r.flip_rate:.0%}",
        row_title="text (top prediction)",
        annotate=True,
    )


def _patching(r: Any) -> ipywidgets.Widget:
    from .patching_view import PatchingView

    return PatchingView(r)


def _activations(r: core.Activations) -> ipywidgets.Widget:
    return TokenHeatmap(r)


def _layerwise(r: core.LayerwiseProbes) -> ipywidgets.Widget:
    return ProbeReport(layerwise=r)


def _ranking_ablation(r: core.RankingAblation) -> ipywidgets.Widget:
    return ProbeReport(ablation=r)


def _attribution_patching(r: core.AttributionPatching) -> ipywidgets.Widget:
    from .patching_view import PatchingView

    return ipywidgets.VBox([ipywidgets.HTML(html_of(r)), PatchingView(r.true), PatchingView(r.approx)])


def _alignment(r: core.ConceptAlignment) -> ipywidgets.Widget:
    return NeuronTable(r.ranking())


#: result type → widget builder; types not listed get their HTML table (:func:`html_of`) in an HTML widget
BUILDERS: dict[type, Callable[[Any], ipywidgets.Widget]] = {
    core.NeuronRanking: _ranking,
    core.ProbeResult: _probe_result,
    core.TokenAttribution: _token_attribution,
    core.LayerAttribution: _layer_attribution,
    core.TokenInteractions: _interactions,
    core.SimilarityMatrix: _similarity,
    core.InterventionEffect: _effect,
    core.Activations: _activations,
    core.LayerwiseProbes: _layerwise,
    core.RankingAblation: _ranking_ablation,
    core.ConceptAlignment: _alignment,
    core.PatchingResult: _patching,
    core.MediationResult: _patching,
    core.AttributionPatching: _attribution_patching,
}


def html_of(result: Any) -> str:
    """The result's own compact HTML (``_repr_html_``), or its escaped text repr in a ``<pre>``."""
    method = getattr(result, "_repr_html_", None)
    if callable(method):
        out = method()
        if out:
            return str(out)
    return f"<pre>{html.escape(repr(result))}</pre>"


def widget_for(result: Any) -> ipywidgets.Widget:
    """The widget that shows ``result`` (see :data:`BUILDERS`), or its HTML table in an
    ``ipywidgets.HTML``."""
    for cls in type(result).__mro__:
        builder = BUILDERS.get(cls)
        if builder is not None:
            return builder(result)
    return ipywidgets.HTML(html_of(result))
