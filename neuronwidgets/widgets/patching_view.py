"""PatchingView: the grid of an activation-patching, causal-tracing or mediation result; click a cell to rank
that cell's neurons by their own patching effect, and open them in an :class:`AblationPanel`.

- :class:`PatchingGrid` (anywidget, front end ``js/patching_view``): the grid (the MatrixView's front end,
  same traits, colours, hover values and keyboard), below it the selected cell's neurons with their effect,
  and a button that asks Python (the ``send`` counter) to open them in a panel.
- :class:`PatchingView` (``ipywidgets.VBox``): a grid, and the ablation panel its button opens.

What a cell's neurons are:

- patching (:func:`~neuronwidgets.core.patch`) and tracing (:func:`~neuronwidgets.core.causal_trace`)
  results: the MLP neurons (``layer.L.mlp:i``) of the cell's block, each patched alone at the cell's
  position(s) with the same prompts, metric and direction (tracing: the same noise samples), ranked by
  the share of the clean behaviour it restores (:meth:`PatchingResult.ranking`);
- mediation results (:func:`~neuronwidgets.core.mediate`, grid = layer × head NIE): the neurons of the
  cell's layer (Vig et al.'s: the MLP output dimensions ``layer.L.mlp_out:i``) ranked by their NIE, read
  from the result (only for the ``neuron_layers`` it analysed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import ipywidgets
import numpy as np
import traitlets

from ..core import MediationResult, ModelHandle, NeuronRanking, PatchingResult, causal_trace, patch
from ._assets import BrowserStateGuard, bundle_file, decode_array, encode_array, require_bundle
from ._export import save_html, write_standalone_html
from .ablation_panel import AblationPanel
from .matrix_view import _SYNCED as _MATRIX_SYNCED
from .matrix_view import _check_matrix

_SYNCED = (
    *_MATRIX_SYNCED,  # the grid is a MatrixView front end
    "cell",
    "neurons",
    "neuron_scores",
    "neuron_label",
    "can_send",
)


class PatchingGrid(BrowserStateGuard, anywidget.AnyWidget):
    """The grid of a patching result and the ranked neurons of its selected cell (see the module docstring).

    Synced traits: the MatrixView's (``row_labels``, ``col_labels``, ``values``, ``label``, ``selected``,
    ``error``, …) and ``cell`` (which cell's neurons are listed), ``neurons`` / ``neuron_scores`` (float32
    ``[k]``), ``neuron_label``, ``can_send``; the browser sets ``selected`` and increments ``send``.

    Args:
        result: A :class:`~neuronwidgets.core.PatchingResult` (patching or tracing) or a
            :class:`~neuronwidgets.core.MediationResult` (grid: layer × head NIE).
        model: The :class:`~neuronwidgets.core.ModelHandle` the result came from (needed to rank a
            patching or tracing cell's neurons).
        top_k: How many of the cell's neurons are listed.
        what: What the grid shows of a patching result: ``"recovered"`` (share of the clean behaviour,
            the default), ``"effect"`` or ``"values"``.

    Example:
        >>> grid = PatchingGrid(patch(lm, clean, corrupted), lm)  # doctest: +SKIP
        >>> grid.selected = [12, 3]; grid.neurons[:3]  # doctest: +SKIP
    """

    _esm = bundle_file("patching_view")
    _css = bundle_file("patching_view", ".css")

    row_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    col_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    values = traitlets.Dict(help="{view, dtype, shape}: float32 [rows, cols]").tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)
    row_title = traitlets.Unicode("").tag(sync=True)
    col_title = traitlets.Unicode("").tag(sync=True)
    annotate = traitlets.Bool(False).tag(sync=True)
    selected = traitlets.List(traitlets.Int(), help="[row, col] of the selected cell, [] for none").tag(
        sync=True
    )
    error = traitlets.Unicode("").tag(sync=True)
    cell = traitlets.Unicode(
        "", help="the cell whose neurons are listed, e.g. 'layer.12.resid × 4: Tower'"
    ).tag(sync=True)
    neurons = traitlets.List(traitlets.Unicode(), help="the cell's top neurons, best first").tag(sync=True)
    neuron_scores = traitlets.Dict(help="{view, dtype, shape}: float32 [k]").tag(sync=True)
    neuron_label = traitlets.Unicode("", help="what the neuron scores are").tag(sync=True)
    can_send = traitlets.Bool(False, help="whether the neurons can go to an ablation panel").tag(sync=True)
    send = traitlets.Int(0, help="incremented by the browser's 'Open in an ablation panel' button").tag(
        sync=True
    )

    def __init__(
        self,
        result: PatchingResult | MediationResult,
        model: ModelHandle | None = None,
        *,
        top_k: int = 20,
        what: str = "recovered",
    ) -> None:
        if not isinstance(result, (PatchingResult, MediationResult)):
            raise TypeError(
                f"result must be a PatchingResult (patch, causal_trace) or a MediationResult (mediate), "
                f"got {type(result).__name__}"
            )
        if model is not None and not isinstance(model, ModelHandle):
            raise TypeError(f"model must be the ModelHandle the result came from, got {type(model).__name__}")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        require_bundle("patching_view")
        self._result = result
        self._handle = model
        self._top_k = int(top_k)
        self._rankings: dict[tuple[int, int], NeuronRanking] = {}
        self.ranking: NeuronRanking | None = None
        rows, cols, grid, label, rt, ct = _grid(result, what)
        self._matrix = _check_matrix(np.nan_to_num(grid), rows, cols)
        self._good: list[int] = []
        super().__init__(
            row_labels=rows,
            col_labels=cols,
            values=encode_array(self._matrix),
            label=label,
            row_title=rt,
            col_title=ct,
            annotate=len(rows) * len(cols) <= 120,
            neuron_scores=encode_array(np.zeros(0)),
        )

    @property
    def matrix(self) -> np.ndarray:
        return decode_array(self.values)

    @property
    def result(self) -> PatchingResult | MediationResult:
        return self._result

    # -- the selected cell's neurons ---------------------------------------------------------------
    def _check_selected(self, value: list[int]) -> list[int]:
        if not value:
            return []
        rows, cols = self._matrix.shape
        if len(value) != 2 or not (0 <= value[0] < rows and 0 <= value[1] < cols):
            raise ValueError(f"selected must be [row, col] inside the {rows} × {cols} grid, got {value!r}")
        return [int(value[0]), int(value[1])]

    @traitlets.validate("selected")
    def _valid_selected(self, proposal: Any) -> list[int]:
        try:
            good = self._check_selected(list(proposal["value"]))
        except (ValueError, TypeError) as err:
            if not self._from_frontend:
                raise ValueError(str(err)) from None
            self.error = str(err)
            return list(self._good)
        self._good = good
        return good

    @traitlets.observe("selected")
    def _on_selected(self, change: Any) -> None:
        sel = change["new"]
        if not sel:
            with self.hold_sync():
                self.cell, self.neurons, self.can_send = "", [], False
                self.neuron_scores = encode_array(np.zeros(0))
            self.ranking = None
            return
        try:
            ranking = self.cell_ranking(sel[0], sel[1])
        except Exception as err:  # shown in the page: the kernel has no one else to tell
            with self.hold_sync():
                self.error = f"{type(err).__name__}: {err}"
                self.cell = self._cell_name(sel[0], sel[1])
                self.neurons, self.can_send = [], False
                self.neuron_scores = encode_array(np.zeros(0))
            self.ranking = None
            return
        top = ranking.top(min(self._top_k, len(ranking)))
        self.ranking = top
        with self.hold_sync():
            self.error = ""
            self.cell = self._cell_name(sel[0], sel[1])
            self.neurons = list(top.neurons)
            self.neuron_scores = encode_array(top.scores)
            self.neuron_label = _score_label(self._result)
            self.can_send = self._handle is not None and len(top) > 0

    def _cell_name(self, r: int, c: int) -> str:
        return f"{self.row_labels[r]} × {self.col_labels[c]}"

    def cell_ranking(self, row: int, col: int) -> NeuronRanking:
        """The MLP neurons of the cell's block ranked by their own patching effect at the cell (cached)."""
        key = (int(row), int(col))
        self._check_selected(list(key))
        if key not in self._rankings:
            self._rankings[key] = _cell_ranking(self._result, self._handle, *key)
        return self._rankings[key]

    # -- export --------------------------------------------------------------------------------------
    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """A standalone page of the grid and the listed neurons (offline; no kernel, so no new cells)."""
        return write_standalone_html(self, path, title or f"PatchingView: {self.label}")

    def _export_state(self) -> dict[str, Any]:
        state = self.get_state(list(_SYNCED))
        state["can_send"] = False
        return state


class PatchingView(ipywidgets.VBox):
    """A :class:`PatchingGrid` and the :class:`AblationPanel` its button opens on the cell's neurons.

    Select a cell with ``view.grid.selected = [row, col]`` (or a click); :meth:`open_panel` (or the button)
    opens the neurons listed.

    Args:
        result: A :class:`~neuronwidgets.core.PatchingResult` or :class:`~neuronwidgets.core.MediationResult`.
        model: The model the result came from (to rank a cell's neurons and run the panel).
        top_k: How many of the cell's neurons are listed and sent to the panel.
        what: ``"recovered"``, ``"effect"`` or ``"values"`` (patching results).
        text: The input the panel runs (default: the clean prompt of a patching result, the traced text,
            the first mediation prompt).

    Example:
        >>> view = PatchingView(causal_trace(lm, text, "The Eiffel Tower"), lm)  # doctest: +SKIP
        >>> view  # click a cell, then "Open these neurons in an ablation panel"  # doctest: +SKIP
    """

    def __init__(
        self,
        result: PatchingResult | MediationResult,
        model: ModelHandle | None = None,
        *,
        top_k: int = 20,
        what: str = "recovered",
        text: str | None = None,
    ) -> None:
        self.grid = PatchingGrid(result, model, top_k=top_k, what=what)
        self._text = text if text is not None else _default_text(result)
        self.panel: AblationPanel | None = None
        self._panel_box = ipywidgets.VBox()
        self.grid.observe(lambda _: self._send_clicked(), "send")
        super().__init__([self.grid, self._panel_box])
        self.add_class("nw-patching-view")

    def open_panel(self) -> AblationPanel:
        """An AblationPanel (on ``text``) over the neurons listed for the selected cell."""
        if self.grid._handle is None:
            raise ValueError(
                "PatchingView needs the model to open an ablation panel: PatchingView(result, model)"
            )
        if self.grid.ranking is None or not len(self.grid.ranking):
            raise ValueError("no neurons listed: select a cell first (view.grid.selected = [row, col])")
        top = self.grid.ranking
        self.panel = AblationPanel(self.grid._handle, self._text, top, n_neurons=len(top))
        note = ipywidgets.HTML(
            f"The top {len(top)} neurons of <b>{_escape(self.grid.cell)}</b>, switch them off and watch the prediction."
        )
        self._panel_box.children = (note, self.panel)
        return self.panel

    def _send_clicked(self) -> None:
        try:
            self.open_panel()
        except Exception as err:
            self.grid.error = f"{type(err).__name__}: {err}"

    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        return save_html(self, path, title=title or "PatchingView")


# ------------------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def _grid(
    result: PatchingResult | MediationResult, what: str
) -> tuple[list[str], list[str], np.ndarray, str, str, str]:
    if isinstance(result, MediationResult):
        n_layers, n_heads = result.head_nie.shape
        rows = [f"layer.{i}" for i in range(n_layers)]
        cols = [f"head {h}" for h in range(n_heads)]
        label = f"NIE per head (mediation, TE = {result.total_effect:.3g}, {len(result.cases)} prompts)"
        return rows, cols, result.head_nie, label, "layer", "head"
    grids = {"recovered": result.recovered, "effect": result.effect, "values": result.values}
    if what not in grids:
        raise ValueError(f"what must be 'recovered', 'effect' or 'values', got {what!r}")
    grid = grids[what]
    if what == "recovered" and not np.isfinite(grid).any():
        grid, what = result.effect, "effect"  # clean equals corrupted: no share to show
    target = f" → {result.target!r}" if result.target else ""
    label = f"{result.method}{target}: {what} ({result.metric}, clean {result.clean:.3g}, corrupted {result.corrupted:.3g})"
    return list(result.units), result.position_labels, grid, label, result.component, "position"


def _score_label(result: PatchingResult | MediationResult) -> str:
    if isinstance(result, MediationResult):
        return "natural indirect effect (NIE) of each neuron"
    return (
        "share of the clean behaviour each neuron restores alone"
        if result.direction == "restore"
        else ("share of the clean behaviour each neuron destroys alone")
    )


def _default_text(result: PatchingResult | MediationResult) -> str:
    if isinstance(result, MediationResult):
        return result.cases[0]
    return str(result.meta.get("clean_text") or result.meta.get("text") or "")


def _cell_ranking(
    result: PatchingResult | MediationResult, handle: ModelHandle | None, row: int, col: int
) -> NeuronRanking:
    if isinstance(result, MediationResult):
        if row not in result.neuron_layers:
            raise ValueError(
                f"the mediation analysed the neurons of layers {list(result.neuron_layers)} only, not layer {row}: "
                "run mediate(..., neuron_layers=[...]) with it"
            )
        i = result.neuron_layers.index(row)
        nie, nde = result.neuron_nie[i], result.neuron_nde[i]
        names = [f"layer.{row}.{result.neuron_component}:{j}" for j in range(len(nie))]
        return NeuronRanking.from_scores(names, nie, "mediation-nie", columns={"nde": nde})
    layer = int(result.layers[row])
    if layer < 0:
        raise ValueError("the embeddings have no MLP neurons: choose a cell of a block (layer 0 or later)")
    if handle is None:
        raise ValueError("ranking a cell's neurons re-runs the model: PatchingView(result, model)")
    if not isinstance(result.metric, str) or result.metric not in ("logit_diff", "prob", "logprob", "kl"):
        raise ValueError(
            f"the metric {result.metric!r} was a function: re-run it as patch(..., neurons='all')"
        )
    group = list(result.positions[col])
    meta = result.meta
    if result.method == "causal tracing":
        traced = causal_trace(
            handle,
            meta["text"],
            list(meta["subject_positions"]),
            target=result.target,
            samples=int(meta["samples"]),
            noise=float(meta["noise_std"]),
            seed=int(meta["seed"]),
            component="mlp",
            layers=[layer],
            positions=[group],
            neurons="all",
            metric=result.metric,
        )
        return traced.ranking()
    res = patch(
        handle,
        meta["clean_text"],
        meta["corrupted_text"],
        component="mlp",
        layers=[layer],
        neurons="all",
        positions=[group],
        metric=result.metric,
        target=result.target,
        foil=result.foil,
        direction=result.direction,
    )
    return res.ranking()
