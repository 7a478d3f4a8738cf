"""NeuronTable: a sortable, filterable table of a neuron ranking that stays smooth with 50,000 rows.

The rows travel once, as binary buffers (scores float32, layer/rank/component/top-class codes int32) plus
one JSON list of addresses and the short lists of component and class names; sorting, filtering and
virtualised scrolling happen in the browser. Selecting a row sets the synced trait ``selected`` (the
neuron address), so ``traitlets.link((table, "selected"), (heatmap, "neuron"))`` makes a
:class:`~neuronwidgets.widgets.TokenHeatmap` show the chosen neuron.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import pandas as pd
import traitlets

from ..core import NeuronRanking, parse_neuron
from ._assets import BrowserStateGuard, bundle_file, encode_array, require_bundle
from ._export import write_standalone_html

DEFAULT_PAGE_SIZE = 15
_SYNCED = (
    "addresses",
    "ranks",
    "layers",
    "components",
    "component_codes",
    "scores",
    "classes",
    "class_codes",
    "method",
    "page_size",
    "selected",
    "error",
)


def encode_int32(values: Any) -> dict[str, Any]:
    """``{view, dtype: "int32", shape}``: little-endian int32 bytes as a binary buffer (never a JSON list)."""
    arr = np.ascontiguousarray(values, dtype="<i4")
    return {"view": memoryview(arr.tobytes()), "dtype": "int32", "shape": list(arr.shape)}


def decode_buffer(encoded: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_int32` and of the float32 codec (for tests and exports)."""
    dtype = {"int32": "<i4", "float32": "<f4"}[encoded["dtype"]]
    return np.frombuffer(bytes(encoded["view"]), dtype=dtype).reshape(encoded["shape"])


class NeuronTable(BrowserStateGuard, anywidget.AnyWidget):
    """A ranking table: rank, address, layer, component, score and top class of every neuron.

    ``NeuronTable(ranking)`` takes a :class:`~neuronwidgets.core.NeuronRanking` or its
    :meth:`~neuronwidgets.core.NeuronRanking.to_frame` DataFrame (columns ``neuron`` and ``score`` needed;
    ``rank`` and ``top_class`` used when present). Click a column header (or press Enter on it) to sort,
    type in the filter box to keep addresses/top classes containing the text, choose a layer or component,
    and move the selection with the arrow keys. ``page_size`` is the number of rows visible at once (the
    rest scroll; only the visible rows are in the page).

    Synced traits: ``selected`` (the selected neuron's address, ``""`` for none; a Python caller setting an
    address that is not in the ranking gets ``ValueError``, the browser gets ``error``) and ``page_size``
    can be set; the data traits are answers, sent once, or again by :meth:`set_ranking`.

    Args:
        ranking: A :class:`~neuronwidgets.core.NeuronRanking` or its DataFrame.
        page_size: Rows visible at once.
        selected: The neuron selected at first (default none).

    Raises:
        ValueError: For a DataFrame without ``neuron``/``score`` columns, a bad ``page_size``, or a
            ``selected`` neuron that is not in the ranking.

    Example:
        >>> table = NeuronTable(rank_weight_mass(probe), page_size=20)
        >>> traitlets.link((table, "selected"), (heatmap, "neuron"))
    """

    _esm = bundle_file("neuron_table")
    _css = bundle_file("neuron_table", ".css")

    addresses = traitlets.List(traitlets.Unicode(), help="neuron addresses in ranking order").tag(sync=True)
    ranks = traitlets.Dict(help="{view, dtype, shape}: int32 [N], the rank of each row").tag(sync=True)
    layers = traitlets.Dict(help="int32 [N]: layer of each neuron (-1 for the embeddings)").tag(sync=True)
    components = traitlets.List(traitlets.Unicode(), help="component names (e.g. 'mlp', 'resid')").tag(
        sync=True
    )
    component_codes = traitlets.Dict(help="int32 [N]: index into components").tag(sync=True)
    scores = traitlets.Dict(help="float32 [N]: the ranking's score of each neuron").tag(sync=True)
    classes = traitlets.List(traitlets.Unicode(), help="class names (top class column)").tag(sync=True)
    class_codes = traitlets.Dict(help="int32 [N]: index into classes, -1 when unknown").tag(sync=True)
    method = traitlets.Unicode("", help="how the ranking was made, e.g. 'probeless'").tag(sync=True)
    page_size = traitlets.Int(DEFAULT_PAGE_SIZE, help="rows visible at once").tag(sync=True)
    selected = traitlets.Unicode("", help="address of the selected neuron, '' for none").tag(sync=True)
    error = traitlets.Unicode("", help="why the last choice made in the browser was refused").tag(sync=True)

    def __init__(
        self,
        ranking: NeuronRanking | pd.DataFrame,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        selected: str | None = None,
    ) -> None:
        require_bundle("neuron_table")
        self._ready = False
        state = _table_state(ranking)
        self._index = {a: i for i, a in enumerate(state["addresses"])}
        state["page_size"] = self._check_page_size(page_size)
        state["selected"] = self._check_selected(
            state["addresses"][0] if selected is None and state["addresses"] else selected or ""
        )
        self._good = state["selected"]
        super().__init__(**state)
        self._ready = True

    # -- validation: Python callers get ValueError, the browser gets ``error`` ---------------------
    def _check_selected(self, value: str) -> str:
        if not value:
            return ""
        try:
            name = parse_neuron(value).name
        except (ValueError, TypeError) as err:
            raise ValueError(f"cannot select {value!r}: {err}") from None
        if name not in self._index:
            raise ValueError(
                f"neuron {value!r} is not in this table's ranking ({len(self._index)} neurons): select one of "
                "its rows (use traitlets.dlink from the table to a heatmap if the heatmap may show others)"
            )
        return name

    @staticmethod
    def _check_page_size(value: int) -> int:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 1 <= value <= 500:
            raise ValueError(f"page_size must be an integer from 1 to 500, got {value!r}")
        return int(value)

    @traitlets.validate("selected")
    def _valid_selected(self, proposal: Any) -> str:
        if not self._ready:
            return str(proposal["value"])
        try:
            return self._check_selected(proposal["value"])
        except ValueError as err:
            if not self._from_frontend:
                raise
            self.error = str(err)
            return self._good

    @traitlets.validate("page_size")
    def _valid_page_size(self, proposal: Any) -> int:
        return self._check_page_size(proposal["value"])

    @traitlets.observe("selected")
    def _on_selected(self, change: Any) -> None:
        if self._ready:
            self._good = change["new"]
            if change["old"] != change["new"]:
                self.error = ""

    def set_ranking(self, ranking: NeuronRanking | pd.DataFrame, *, selected: str | None = None) -> None:
        """Show another ranking (e.g. the neurons of another concept) in one update: the rows are replaced
        and ``selected`` becomes ``selected`` (must be in the new ranking), else the current selection if
        the new ranking has it, else the new top neuron."""
        state = _table_state(ranking)
        index = {a: i for i, a in enumerate(state["addresses"])}
        old_index = self._index
        self._index = index
        try:
            if selected is None:
                keep = self.selected if self.selected in index else ""
                selected = keep or (state["addresses"][0] if state["addresses"] else "")
            chosen = self._check_selected(selected)
        except Exception:
            self._index = old_index
            raise
        with self.hold_sync():
            for key, value in state.items():
                self.set_trait(key, value)
            self.selected = chosen
            self.error = ""
        self._good = chosen

    # -- views ----------------------------------------------------------------------------------------
    @property
    def selected_rank(self) -> int | None:
        """Rank (position in the ranking, 0 = best) of the selected neuron, or None."""
        return self._index.get(self.selected) if self.selected else None

    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write a standalone HTML page of this table (bundle, CSS and data inlined; sorting, filtering
        and selection keep working offline)."""
        return write_standalone_html(self, path, title or f"NeuronTable: {self.method}")

    def _export_state(self) -> dict[str, Any]:
        """The state a static page renders from (also used by ``save_html`` for composed views)."""
        return self.get_state(list(_SYNCED))


def _table_state(ranking: NeuronRanking | pd.DataFrame) -> dict[str, Any]:
    """The data traits of a ranking or its DataFrame."""
    if isinstance(ranking, NeuronRanking):
        frame, method = ranking.to_frame(), ranking.method
    elif isinstance(ranking, pd.DataFrame):
        frame, method = ranking, str(ranking.attrs.get("method", ""))
    else:
        raise TypeError(
            f"NeuronTable needs a NeuronRanking or its .to_frame() DataFrame, got {type(ranking).__name__}"
        )
    col = "neuron" if "neuron" in frame.columns else "address" if "address" in frame.columns else None
    if col is None or "score" not in frame.columns:
        raise ValueError("the DataFrame needs a 'neuron' (or 'address') column and a 'score' column")
    addrs = [parse_neuron(str(a)) for a in frame[col]]
    names = [a.name for a in addrs]
    if len(set(names)) != len(names):
        raise ValueError("a neuron appears twice in the table")
    scores = np.asarray(frame["score"], dtype=np.float64)
    if not np.all(np.isfinite(scores.astype(np.float32))):
        raise ValueError("scores must be finite (and within float32's range)")
    ranks = np.asarray(frame["rank"], dtype=np.int64) if "rank" in frame.columns else np.arange(len(names))
    components = sorted({a.component for a in addrs})
    comp_code = {c: i for i, c in enumerate(components)}
    classes: list[str] = []
    class_codes = np.full(len(names), -1, dtype=np.int32)
    if "top_class" in frame.columns:
        tops = [
            None if (t is None or (isinstance(t, float) and np.isnan(t))) else str(t)
            for t in frame["top_class"]
        ]
        classes = sorted({t for t in tops if t is not None})
        code = {c: i for i, c in enumerate(classes)}
        class_codes = np.array([code[t] if t is not None else -1 for t in tops], dtype=np.int32)
    return {
        "addresses": names,
        "ranks": encode_int32(ranks),
        "layers": encode_int32([a.layer for a in addrs]),
        "components": components,
        "component_codes": encode_int32([comp_code[a.component] for a in addrs]),
        "scores": encode_array(scores.astype(np.float32)),
        "classes": classes,
        "class_codes": encode_int32(class_codes),
        "method": method,
    }
