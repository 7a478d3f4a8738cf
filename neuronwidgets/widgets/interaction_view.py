"""InteractionView: which pairs (or phrases) of words act together on one prediction.

Composed with ipywidgets (docs/architecture.md, "The Python ↔ browser contract"): method, target and word/token pickers; a :class:`MatrixView` of
the pairwise interaction matrix; a list of the strongest pairs (and, for Archipelago, the merged
phrases); and a :class:`TokenHeatmap` of the text where the chosen pair is outlined and every word is
coloured by its interaction with the pair's first word. Choosing a cell of the matrix or a line of the
list selects the same pair everywhere. Numbers come from
:func:`~neuronwidgets.core.attribute_interactions`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import ipywidgets
import numpy as np
import traitlets

from ..core import (
    METHODS,
    ModelHandle,
    TokenInteractions,
    as_handle,
    attribute_interactions,
    get_method,
)
from ._export import save_html
from ._views import ChoiceView, check_choice_args, result_label, status_html, target_options
from .matrix_view import MatrixView
from .token_heatmap import TokenHeatmap

INTERACTION_METHODS: tuple[str, ...] = tuple(n for n, m in METHODS.items() if m.level == "interaction")
_NAMES = {
    "integrated-hessians": "Integrated Hessians",
    "shapley-taylor": "Shapley-Taylor index",
    "archipelago": "Archipelago",
}
DEFAULT_PAIRS = 8
#: first element of a phrase's value in the pair list: ``(PHRASE, *unit indices)``
PHRASE = "phrase"


class InteractionView(ChoiceView):
    """Pairwise interactions between the words (or tokens) of ``text`` for one prediction.

    The selected pair is the ``pair`` trait (``[i, j]`` unit indices, ``i < j``); :attr:`interactions`
    holds the result shown. ``method``, ``target`` and ``level`` traits mirror the pickers.
    Shapley-Taylor is exact up to 12 units by default; a sampled estimate is labelled as one in the status
    line and each listed pair shows its standard error.

    Args:
        model: A :class:`~neuronwidgets.core.ModelHandle` or name with a prediction head.
        text: The input.
        method: ``"integrated-hessians"``, ``"shapley-taylor"`` or ``"archipelago"``.
        target: A class, a next token, or ``None`` for the top prediction.
        level: ``"word"`` or ``"token"``.
        n_pairs: Strongest pairs listed.
        n_targets: A language model's most likely next tokens offered as targets.
        baseline: The baseline token (``"pad"``, ``"mask"``, ``"unk"``, a token id or ``"zero"``), as in
            :func:`~neuronwidgets.core.attribute_interactions`.
        method_options: Keyword arguments per method for
            :func:`~neuronwidgets.core.attribute_interactions` (e.g. ``{"shapley-taylor": {"n_samples": 40}}``).

    Raises:
        ValueError: For an unknown method, target or level, or an empty text.

    Example:
        >>> InteractionView("minilm-sentiment", "The movie was not bad at all.")  # "not" x "bad"
    """

    _method_level = "interaction"
    pair = traitlets.List(traitlets.Int(), help="[i, j] of the selected pair (i < j), [] for none")

    def __init__(
        self,
        model: ModelHandle | str,
        text: str,
        method: str = "integrated-hessians",
        target: str | int | None = None,
        *,
        level: str = "word",
        n_pairs: int = DEFAULT_PAIRS,
        n_targets: int = 10,
        baseline: str | int = "pad",
        method_options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        handle = as_handle(model, "InteractionView(load_model('minilm-sentiment'), 'not bad at all')")
        if isinstance(n_pairs, bool) or not isinstance(n_pairs, (int, np.integer)) or n_pairs < 1:
            raise ValueError(f"n_pairs must be a positive integer, got {n_pairs!r}")
        options = check_choice_args(level, method_options, INTERACTION_METHODS)
        self._handle, self._text, self._baseline, self._options = handle, text, baseline, options
        self._n_pairs = int(n_pairs)
        self._result, self._warnings = self._compute(method, target, level)
        controls = self._make_pickers(
            [(_NAMES.get(m, m), m) for m in INTERACTION_METHODS],
            target_options(handle, text, self._result, n_targets),
            "Units",
        )
        self.status = ipywidgets.HTML()
        self.status.add_class("nw-interaction-status")
        res = self._result
        self.matrix = MatrixView(
            res.matrix,
            res.units,
            res.units,
            label=_matrix_label(res),
            row_title=res.level,
            col_title=res.level,
        )
        self.pair_list = ipywidgets.Select(options=[], rows=min(self._n_pairs, 8), layout={"width": "auto"})
        self.pair_list.add_class("nw-pair-list")
        first = self._top_pair()
        units, values, label, marks = self._text_view(first)
        self.heatmap = TokenHeatmap.from_scores(units, values, label, marked=marks)
        super().__init__(
            [
                controls,
                self.status,
                ipywidgets.HBox(
                    [
                        self.matrix,
                        ipywidgets.VBox([ipywidgets.HTML("<b>Strongest pairs</b>"), self.pair_list]),
                    ]
                ),
                self.heatmap,
            ]
        )
        self.add_class("nw-interaction-view")
        self._sync_selection(first)
        self._watch_pickers()
        self.matrix.observe(self._on_cell, "selected")
        self.pair_list.observe(self._on_list, "value")

    # -- reading ------------------------------------------------------------------------------------
    @property
    def interactions(self) -> TokenInteractions:
        """The interactions shown now."""
        return self._result

    @property
    def model(self) -> ModelHandle:
        return self._handle

    # -- changing -----------------------------------------------------------------------------------
    @traitlets.validate("pair")
    def _valid_pair(self, proposal: Any) -> list[int]:
        value = [int(x) for x in proposal["value"]]
        if not value:
            return []
        n = len(self._result.units)
        if len(value) != 2 or value[0] == value[1] or not all(0 <= x < n for x in value):
            raise ValueError(f"pair must be two different unit indices from 0 to {n - 1}, got {value!r}")
        return sorted(value)

    @traitlets.observe("pair")
    def _on_pair(self, change: Any) -> None:
        if not hasattr(self, "level_picker") or self._busy or change["old"] == change["new"]:
            return
        self._select(list(change["new"]) or None)

    def _current(self) -> tuple[TokenInteractions, str]:
        return self._result, self._result.level

    def _recompute(self, choice: dict[str, Any]) -> None:
        new, new_warnings = self._compute(choice["method"], choice["target"], choice["level"])
        self._result, self._warnings = new, new_warnings
        pair = self._top_pair()
        with self.matrix.hold_sync(), self.heatmap.hold_sync():
            self.matrix.set_data(new.matrix, new.units, new.units, label=_matrix_label(new))
            self.matrix.row_title = self.matrix.col_title = new.level
            self._draw_text(pair)
        self._sync_selection(pair)

    def _draw_status(self, error: str = "") -> None:
        self.status.value = status_html(_status_text(self._result), warnings=self._warnings, error=error)

    def _on_cell(self, change: Any) -> None:
        if self._busy:
            return
        cell = list(change["new"])
        self._select(cell if len(cell) == 2 and cell[0] != cell[1] else None)

    def _on_list(self, change: Any) -> None:
        if self._busy or change["new"] is None:
            return
        value = change["new"]
        self._select(list(value) if value[0] != PHRASE else value)

    def _select(self, pair: list[int] | tuple[Any, ...] | None) -> None:
        """Show ``pair`` (or an Archipelago phrase ``(PHRASE, *units)``, or nothing) in the matrix, the list,
        the text and the ``pair`` trait."""
        self._busy = True
        try:
            self._draw_text(pair)
            self._sync_selection(pair)
        finally:
            self._busy = False

    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write a standalone HTML page of this view as it is now (see :func:`save_html`): the heatmap and
        the matrix keep their values, tooltips and keyboard reading; the pickers become text."""
        return save_html(self, path, title=title or f"InteractionView: {self._text}")

    # -- computing and drawing ------------------------------------------------------------------------
    def _compute(
        self, method: str, target: str | int | None, level: str
    ) -> tuple[TokenInteractions, list[str]]:
        name = get_method(method, "interaction").name
        kwargs = dict(self._options.get(name, {}))
        kwargs.setdefault("baseline", self._baseline)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = attribute_interactions(self._handle, self._text, name, target, level=level, **kwargs)
        return res, [str(w.message) for w in caught]

    def _top_pair(self) -> list[int] | tuple[Any, ...] | None:
        """The first line of the list: Archipelago's strongest phrase, else the strongest pair."""
        options = self._pair_options()
        if not options:
            return None
        value = options[0][1]
        return value if value[0] == PHRASE else list(value)

    def _pair_options(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The list's lines: Archipelago's merged phrases first (value ``(PHRASE, *units)``), then the
        strongest pairs (value ``(i, j)``)."""
        res = self._result
        out: list[tuple[str, tuple[Any, ...]]] = []
        if res.method == "archipelago":
            phrases = [(m, float(v)) for m, v in zip(res.sets, res.set_scores) if len(m) > 1]
            for members, score in sorted(phrases, key=lambda ms: -abs(ms[1])):
                words = " ".join(res.units[k] for k in members)
                out.append((f"phrase {{{words}}}   {score:+.4g}", (PHRASE, *members)))
        for r in res.pairs().head(self._n_pairs).itertuples():
            se = f" ± {r.standard_error:.2g} (s.e.)" if res.is_estimate else ""
            out.append((f"{r.unit_i} ↔ {r.unit_j}   {r.interaction:+.4g}{se}", (int(r.i), int(r.j))))
        return out

    def _text_view(
        self, pair: list[int] | tuple[Any, ...] | None
    ) -> tuple[list[str], np.ndarray, str, list[list[int]]]:
        """Units, values, label and marks of the text view for a pair, a phrase or nothing."""
        res = self._result
        if (pair is not None and pair[0] == PHRASE) or (pair is None and res.method == "archipelago"):
            values = np.zeros(len(res.units))
            for members, score in zip(res.sets, res.set_scores):
                values[list(members)] = score
            marks = [[0, int(k)] for k in pair[1:]] if pair is not None else []
            label = f"{res.method}: ArchAttribute of each phrase (the words of a phrase share its score)"
            return list(res.units), values, label, marks
        if pair is None:
            return list(res.units), res.main.astype(np.float64), f"{res.method}: main effect of each unit", []
        i, j = pair
        values = res.matrix[i].astype(np.float64)
        label = f"{res.method}: interaction of each unit with {res.units[i]!r} (pair {res.units[i]!r}–{res.units[j]!r})"
        return list(res.units), values, label, [[0, i], [0, j]]

    def _sync_selection(self, pair: list[int] | tuple[Any, ...] | None) -> None:
        """The matrix selection, the pair list and the ``pair`` trait show ``pair`` (a phrase selects no
        matrix cell)."""
        busy, self._busy = self._busy, True
        try:
            options = self._pair_options()
            if list(self.pair_list.options) != options:
                self.pair_list.options = options
            chosen = tuple(pair) if pair else None
            self.pair_list.value = chosen if chosen in [v for _, v in options] else None
            is_pair = pair is not None and pair[0] != PHRASE
            self.matrix.selected = list(pair) if is_pair and pair else []
            self.pair = list(pair) if is_pair and pair else []
        finally:
            self._busy = busy

    def _draw_text(self, pair: list[int] | tuple[Any, ...] | None) -> None:
        units, values, label, marks = self._text_view(pair)
        self.heatmap.set_scores(units, values, label, marked=marks)


def _matrix_label(res: TokenInteractions) -> str:
    base = result_label(res)
    return f"{base} · sampled estimate, see ± s.e." if res.is_estimate else base


def _status_text(res: TokenInteractions) -> str:
    parts = [
        f"{res.method} → {res.target!r}: p = {res.prob:.3f}",
        f"F(x) − F(x′) = {res.output_difference:+.4g}",
    ]
    if res.method == "shapley-taylor":
        n = len(res.units)
        if res.is_estimate and res.standard_error is not None:
            iu = np.triu_indices(n, 1)
            worst = float(np.nanmax(res.standard_error[iu])) if n > 1 else 0.0
            parts.append(
                f"ESTIMATE from {res.params.get('n_samples')} sampled permutations (not exact): each pair "
                f"± its standard error, up to ±{worst:.2g}"
            )
        else:
            parts.append(f"exact index (all 2^{n} subsets)")
    if res.delta is not None:
        rel = abs(res.delta) / max(abs(res.output_difference), 1e-12)
        parts.append(f"completeness gap {res.delta:+.3g} ({rel:.1%} of the change)")
    if res.method == "archipelago":
        parts.append("matrix: ArchDetect strength (≥ 0)")
        if res.sets:
            phrases = "; ".join(
                "{" + " ".join(res.units[k] for k in s) + f"}} {score:+.3g}"
                for s, score in zip(res.sets, res.set_scores)
                if len(s) > 1
            )
            if phrases:
                parts.append(f"phrases: {phrases}")
    return " · ".join(parts)
