"""InteractionView: which pairs (or phrases) of words act together on one prediction.

Composed with ipywidgets (DESIGN.md §4): method, target and word/token pickers; a :class:`MatrixView` of
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

from ..core import METHODS, ModelHandle, TokenInteractions, attribute_interactions, get_method, load_model
from ._export import save_html
from ._views import status_html, target_options
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


class InteractionView(ipywidgets.VBox):
    """Pairwise interactions between the words (or tokens) of ``text`` for one prediction.

    ``InteractionView(model, text, method="integrated-hessians", target=None, level="word")``: ``model``
    a :class:`~neuronwidgets.core.ModelHandle` or name with a prediction head; ``method`` one of
    ``"integrated-hessians"``, ``"shapley-taylor"`` or ``"archipelago"``; ``target`` a class, a next
    token, or ``None`` for the top prediction; ``n_pairs`` strongest pairs listed; ``method_options``:
    keyword arguments per method for :func:`~neuronwidgets.core.attribute_interactions` (e.g.
    ``{"shapley-taylor": {"n_samples": 40}}``).

    The selected pair is the ``pair`` trait (``[i, j]`` unit indices, ``i < j``); :attr:`interactions`
    holds the result shown. ``method``, ``target`` and ``level`` traits mirror the pickers.
    """

    method = traitlets.Unicode("integrated-hessians", help="the interaction method shown")
    target = traitlets.Int(-1, help="target id explained")
    level = traitlets.Unicode("word", help="'word' or 'token'")
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
        handle = load_model(model) if isinstance(model, str) else model
        if not isinstance(handle, ModelHandle):
            raise TypeError(
                f"model must be a ModelHandle or a model name, got {type(model).__name__}: "
                "e.g. InteractionView(load_model('minilm-sentiment'), 'not bad at all')"
            )
        if level not in ("word", "token"):
            raise ValueError(f"unknown level {level!r}: choose 'word' or 'token'")
        if isinstance(n_pairs, bool) or not isinstance(n_pairs, (int, np.integer)) or n_pairs < 1:
            raise ValueError(f"n_pairs must be a positive integer, got {n_pairs!r}")
        options = dict(method_options or {})
        for name in options:
            if name not in INTERACTION_METHODS:
                raise ValueError(
                    f"method_options has unknown method {name!r}: choose from {', '.join(INTERACTION_METHODS)}"
                )
        self._handle, self._text, self._baseline, self._options = handle, text, baseline, options
        self._n_pairs = int(n_pairs)
        self._busy = False
        self._warnings: list[str] = []
        self._selection: list[int] | tuple[Any, ...] | None = None
        self._result = self._compute(method, target, level)
        self._targets = target_options(handle, text, self._result, n_targets)

        self.method_picker = ipywidgets.Dropdown(
            options=[(_NAMES.get(m, m), m) for m in INTERACTION_METHODS], value=self._result.method,
            description="Method",
        )  # fmt: skip
        self.target_picker = ipywidgets.Dropdown(
            options=self._targets, value=self._result.target_id, description="Target"
        )
        self.level_picker = ipywidgets.Dropdown(
            options=[("words", "word"), ("subword tokens", "token")],
            value=level,
            description="Units",
            layout={"width": "220px"},
        )
        self.status = ipywidgets.HTML()
        self.status.add_class("nw-interaction-status")
        res = self._result
        self.matrix = MatrixView(
            res.matrix, res.units, res.units, label=_label(res), row_title=res.level, col_title=res.level
        )
        self.pair_list = ipywidgets.Select(options=[], rows=min(self._n_pairs, 8), layout={"width": "auto"})
        self.pair_list.add_class("nw-pair-list")
        first = self._top_pair()
        units, values, label, marks = self._text_view(first)
        self.heatmap = TokenHeatmap.from_scores(units, values, label, marked=marks)
        super().__init__(
            [
                ipywidgets.HBox(
                    [self.method_picker, self.target_picker, self.level_picker],
                    layout={"flex_flow": "row wrap"},
                ),
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
        self._sync(first)
        self.method_picker.observe(lambda c: self._pick("method", c["new"]), "value")
        self.target_picker.observe(lambda c: self._pick("target", c["new"]), "value")
        self.level_picker.observe(lambda c: self._pick("level", c["new"]), "value")
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
    @traitlets.validate("method")
    def _valid_method(self, proposal: Any) -> str:
        return get_method(proposal["value"], "interaction").name

    @traitlets.validate("pair")
    def _valid_pair(self, proposal: Any) -> list[int]:
        value = [int(x) for x in proposal["value"]]
        if not value:
            return []
        n = len(self._result.units)
        if len(value) != 2 or value[0] == value[1] or not all(0 <= x < n for x in value):
            raise ValueError(f"pair must be two different unit indices from 0 to {n - 1}, got {value!r}")
        return sorted(value)

    @traitlets.observe("method", "target", "level", "pair")
    def _on_trait(self, change: Any) -> None:
        if not hasattr(self, "method_picker") or self._busy or change["old"] == change["new"]:
            return
        if change["name"] == "pair":
            self._select(list(change["new"]) or None)
        else:
            self._pick(change["name"], change["new"], from_python=True)

    def _pick(self, what: str, value: Any, from_python: bool = False) -> None:
        if self._busy:
            return
        res = self._result
        shown = {"method": res.method, "target": res.target_id, "level": res.level}
        if value == shown[what]:
            return
        args = {**shown, what: value}
        self._busy = True
        try:
            self.status.value = status_html("Computing…", busy=True)
            try:
                new = self._compute(args["method"], args["target"], args["level"])
            except Exception as err:
                self._sync(self._selection)
                self.status.value = status_html(
                    _status_text(self._result), warnings=self._warnings, error=f"{type(err).__name__}: {err}"
                )
                if from_python:
                    raise
                return
            self._result = new
            pair = self._top_pair()
            with self.matrix.hold_sync(), self.heatmap.hold_sync():
                self.matrix.set_data(new.matrix, new.units, new.units, label=_label(new))
                self.matrix.row_title = self.matrix.col_title = new.level
                self._draw_text(pair)
            self._sync(pair)
        finally:
            self._busy = False

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
            self._sync(pair)
        finally:
            self._busy = False

    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write a standalone HTML page of this view as it is now (see :func:`save_html`): the heatmap and
        the matrix keep their values, tooltips and keyboard reading; the pickers become text."""
        return save_html(self, path, title=title or f"InteractionView: {self._text}")

    # -- computing and drawing ------------------------------------------------------------------------
    def _compute(self, method: str, target: str | int | None, level: str) -> TokenInteractions:
        name = get_method(method, "interaction").name
        kwargs = dict(self._options.get(name, {}))
        kwargs.setdefault("baseline", self._baseline)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = attribute_interactions(self._handle, self._text, name, target, level=level, **kwargs)
        self._warnings = [str(w.message) for w in caught]
        return res

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
            out.append((f"{r.unit_i} ↔ {r.unit_j}   {r.interaction:+.4g}", (int(r.i), int(r.j))))
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

    def _sync(self, pair: list[int] | tuple[Any, ...] | None) -> None:
        """Pickers, traits, matrix selection, pair list and status show the current result and pair."""
        busy, self._busy = self._busy, True
        try:
            res = self._result
            if res.target_id not in [v for _, v in self._targets]:
                self._targets.append((f"{res.target!r} (p={res.prob:.3f})", res.target_id))
                self.target_picker.options = list(self._targets)
            self.method_picker.value = res.method
            self.target_picker.value = res.target_id
            self.level_picker.value = res.level
            self.method, self.target, self.level = res.method, res.target_id, res.level
            options = self._pair_options()
            if list(self.pair_list.options) != options:
                self.pair_list.options = options
            chosen = tuple(pair) if pair else None
            self.pair_list.value = chosen if chosen in [v for _, v in options] else None
            is_pair = pair is not None and pair[0] != PHRASE
            self.matrix.selected = list(pair) if is_pair and pair else []
            self.pair = list(pair) if is_pair and pair else []
            self.status.value = status_html(_status_text(res), warnings=self._warnings)
            self._selection = pair
        finally:
            self._busy = busy

    def _draw_text(self, pair: list[int] | tuple[Any, ...] | None) -> None:
        units, values, label, marks = self._text_view(pair)
        self.heatmap.set_scores(units, values, label, marked=marks)


def _label(res: TokenInteractions) -> str:
    return f"{res.method} → {res.target!r} ({res.output})"


def _status_text(res: TokenInteractions) -> str:
    parts = [
        f"{res.method} → {res.target!r}: p = {res.prob:.3f}",
        f"F(x) − F(x′) = {res.output_difference:+.4g}",
    ]
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
