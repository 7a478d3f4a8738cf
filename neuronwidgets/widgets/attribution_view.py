"""AttributionView: which input words, layers and neurons caused one prediction, in one linked view.

Composed with ipywidgets from widgets that each do one thing (docs/architecture.md, "The Python ↔ browser contract"): method, target and view
pickers; a :class:`TokenHeatmap` of the token attributions (same front end and colour scale: positive
orange, negative purple, zero the background); the completeness check of path methods (sum of the
scores, ``F(x) − F(x')`` and the convergence delta); a :class:`MatrixView` of layer conductance (layer ×
word); a :class:`NeuronTable` of the neurons ranked by conductance, whose top ``k`` go to an
:class:`AblationPanel` with one click.

Every number comes from :func:`~neuronwidgets.core.attribute_tokens`,
:func:`~neuronwidgets.core.attribute_layers` and :func:`~neuronwidgets.core.attribute_neurons`; the
view never shows numbers from an earlier choice: a failed computation puts the pickers back and says why.
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets
import numpy as np

from ..core import (
    METHODS,
    FaithfulnessCurves,
    LayerAttribution,
    ModelHandle,
    NeuronRanking,
    TokenAttribution,
    as_handle,
    attribute_layers,
    attribute_neurons,
    attribute_tokens,
    faithfulness_curves,
    get_method,
)
from ._export import save_html
from ._views import (
    ChoiceView,
    Verdict,
    check_choice_args,
    prediction_verdict,
    result_label,
    status_html,
    target_options,
)
from .ablation_panel import AblationPanel
from .matrix_view import MatrixView
from .neuron_table import NeuronTable
from .token_heatmap import TokenHeatmap

TOKEN_METHODS: tuple[str, ...] = tuple(name for name, m in METHODS.items() if m.level == "token")
DEFAULT_TARGETS = 10
DEFAULT_SEND = 10
_NAMES = {
    "integrated-gradients": "Integrated Gradients",
    "saliency": "Saliency",
    "input-x-gradient": "Input × Gradient",
    "deeplift": "DeepLift",
    "gradient-shap": "GradientSHAP",
    "kernel-shap": "KernelSHAP",
    "shapley-sampling": "Shapley value sampling",
    "occlusion": "Occlusion",
    "feature-ablation": "Feature ablation",
}


@dataclass(frozen=True)
class _Shown:
    """Everything the view shows for one choice of method, target and level (computed as a whole)."""

    attr: TokenAttribution
    level: str
    layer: LayerAttribution | None
    ranking: NeuronRanking | None
    faith: FaithfulnessCurves | None
    token_warnings: list[str]
    layer_warnings: list[str]

    @property
    def warnings(self) -> list[str]:
        return self.token_warnings + self.layer_warnings


class AttributionView(ChoiceView):
    """Attributions of one prediction on ``text``: tokens (heatmap), layers (layer × word matrix) and
    neurons (ranking table), with method, target and word/token pickers.

    Read what is shown from :attr:`attribution`, :attr:`layer_attribution` and :attr:`neuron_ranking`;
    change it with the ``method``, ``target`` and ``level`` traits (or the pickers);
    :meth:`send_top_neurons` opens an :class:`AblationPanel` on the top neurons (also a button). Layer and
    neuron conductance are recomputed when the target changes (about a second each on MiniLM, tens of
    seconds over SmolLM2's 30 layers): ``layers=False`` and ``neuron_sites=None`` make a faster view of a
    large model.

    Args:
        model: A :class:`~neuronwidgets.core.ModelHandle` or a model name with a prediction head
            (``"minilm-sentiment"``, ``"smollm2"``, …).
        text: The input.
        method: The token attribution method (a name in :data:`~neuronwidgets.core.METHODS`).
        target: What to explain — a class (name or index), a next token (string or id) — or ``None``
            for the top prediction. The target picker lists every class of a classifier, or a language
            model's ``n_targets`` most likely next tokens.
        level: ``"word"`` (subword scores summed into words) or ``"token"``.
        n_steps: Integration steps of the path methods (IG, layer and neuron conductance); the status
            line reports the convergence delta and warns when it is large.
        layers: Compute the layer × token conductance matrix.
        neuron_sites: The sites whose neurons are ranked by conductance (default the last block's MLP;
            ``None`` or ``False`` for no neuron ranking).
        send_k: How many of the top neurons the button sends to the panel.
        n_targets: Next tokens offered as targets for a language model.
        baseline: The baseline token (``"pad"``, ``"mask"``, ``"unk"``, a token id or ``"zero"``).
        method_options: Keyword arguments per method, passed to ``attribute_tokens`` (e.g.
            ``{"kernel-shap": {"n_samples": 400}}``).
        panel: An :class:`AblationPanel` (same model) to add the sent neurons to, e.g. one shown beside
            other views; by default each send opens a new panel on ``text`` below the table.
        faithfulness: The status line also gives the deletion and insertion areas of the shown
            attribution against ``n_random`` random orders (:func:`~neuronwidgets.core.faithfulness_curves`),
            so methods can be compared on this very example.
        n_random: Random orders of the faithfulness comparison.
        label: The true label of ``text``, if known (a class name or index; a next token or its id).
            The status line then says whether the model's prediction is right, and flags a wrong one: an
            explanation of a wrong prediction explains the mistake. :attr:`verdict` gives it in Python.

    Raises:
        TypeError: If ``model`` is not a model or a name.
        ValueError: For an unknown method, target, level or label, an empty text, or a panel of another
            model.

    Example:
        >>> AttributionView("minilm-sentiment", "The movie was not bad at all.", neuron_sites="layer.5.mlp")
    """

    _method_level = "token"

    def __init__(
        self,
        model: ModelHandle | str,
        text: str,
        method: str = "integrated-gradients",
        target: str | int | None = None,
        *,
        level: str = "word",
        n_steps: int = 50,
        layers: bool = True,
        neuron_sites: Any = "auto",
        send_k: int = DEFAULT_SEND,
        n_targets: int = DEFAULT_TARGETS,
        baseline: str | int = "pad",
        method_options: dict[str, dict[str, Any]] | None = None,
        panel: AblationPanel | None = None,
        faithfulness: bool = True,
        n_random: int = 10,
        label: str | int | None = None,
    ) -> None:
        handle = as_handle(model, "AttributionView(load_model('minilm-sentiment'), text)")
        if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 2:
            raise ValueError(f"n_steps must be an integer of at least 2, got {n_steps!r}")
        if isinstance(send_k, bool) or not isinstance(send_k, (int, np.integer)) or send_k < 1:
            raise ValueError(f"send_k must be a positive integer, got {send_k!r}")
        options = check_choice_args(level, method_options, TOKEN_METHODS)
        if panel is not None and not isinstance(panel, AblationPanel):
            raise TypeError(f"panel must be an AblationPanel, got {type(panel).__name__}")
        if panel is not None and panel.model is not handle:
            raise ValueError("panel works on another model: give a panel made with the same ModelHandle")
        self._handle = handle
        self._text = text
        self._n_steps = int(n_steps)
        self._baseline = baseline
        self._options = options
        self._want_layers = bool(layers)
        if neuron_sites == "auto":
            neuron_sites = f"layer.{handle.num_layers - 1}.mlp"
        self._neuron_sites = neuron_sites or None
        self._want_faith = bool(faithfulness)
        self._n_random = int(n_random)

        # first computation: validates text, target and method, and gives the target list
        first = self._shown = self._compute(method, target, level, None)
        self._verdict = prediction_verdict(handle, text, label)

        # -- children ---------------------------------------------------------------------------------
        controls = self._make_pickers(
            [(_NAMES.get(m, m), m) for m in TOKEN_METHODS],
            target_options(handle, text, first.attr, n_targets),
            "Show",
        )
        self.status = ipywidgets.HTML()
        self.status.add_class("nw-attr-status")
        units, scores = _units_scores(first.attr, level)
        self.heatmap = TokenHeatmap.from_scores(units, scores, label=result_label(first.attr))
        self.matrix: MatrixView | None = None
        if self._shown.layer is not None:
            rows, cols, values = _layer_matrix(self._shown.layer, level)
            self.matrix = MatrixView(
                values,
                rows,
                cols,
                label=result_label(self._shown.layer),
                row_title="site",
                col_title=level,
            )
        self.table: NeuronTable | None = None
        self.send_k = ipywidgets.BoundedIntText(
            value=int(send_k), min=1, max=100, description="Top k", layout={"width": "150px"}
        )
        self.send_button = ipywidgets.Button(
            description="Send top k to an ablation panel",
            icon="sliders",
            tooltip="Open an AblationPanel on the top k neurons of this ranking",
            layout={"width": "auto"},
        )
        self._panel_box: ipywidgets.VBox = ipywidgets.VBox()
        self._given_panel = panel
        self.panel: AblationPanel | None = panel
        neuron_part: list[ipywidgets.Widget] = []
        if self._shown.ranking is not None:
            self.table = NeuronTable(self._shown.ranking, page_size=8)
            self.send_button.on_click(lambda _: self._send_clicked())
            neuron_part = [
                ipywidgets.HTML(
                    f"<b>Neurons</b> ranked by conductance ({html.escape(_sites_text(self._shown.ranking))})"
                ),
                self.table,
                ipywidgets.HBox([self.send_k, self.send_button]),
                self._panel_box,
            ]
        parts: list[ipywidgets.Widget] = [controls, self.status, self.heatmap]
        if self.matrix is not None:
            parts += [
                ipywidgets.HTML("<b>Layers</b>: conductance of each layer at each position"),
                self.matrix,
            ]
        super().__init__(parts + neuron_part)
        self.add_class("nw-attribution-view")
        self._watch_pickers()

    # -- reading what is shown ----------------------------------------------------------------------
    @property
    def model(self) -> ModelHandle:
        return self._handle

    @property
    def text(self) -> str:
        return self._text

    @property
    def verdict(self) -> Verdict:
        """The model's prediction for the text and, given ``label=``, whether it is right
        (``verdict.correct``: ``True``, ``False``, or ``None`` without a label)."""
        return self._verdict

    @property
    def attribution(self) -> TokenAttribution:
        """The token attribution shown now."""
        return self._shown.attr

    @property
    def layer_attribution(self) -> LayerAttribution | None:
        """The layer conductance shown now (``None`` when ``layers=False``)."""
        return self._shown.layer

    @property
    def faithfulness(self) -> FaithfulnessCurves | None:
        """Deletion and insertion curves of the attribution shown, at the shown level, against
        ``n_random`` random orders (``None`` when ``faithfulness=False``)."""
        return self._shown.faith

    @property
    def neuron_ranking(self) -> NeuronRanking | None:
        """The neurons ranked by conductance for the current target (``None`` without ``neuron_sites``)."""
        return self._shown.ranking

    # -- changing it --------------------------------------------------------------------------------
    def _current(self) -> tuple[TokenAttribution, str]:
        return self._shown.attr, self._shown.level

    def _recompute(self, choice: dict[str, Any]) -> None:
        self._draw(self._compute(choice["method"], choice["target"], choice["level"], self._shown))

    def send_top_neurons(self, k: int | None = None) -> AblationPanel:
        """Send the top ``k`` neurons of the conductance ranking (default: the ``Top k`` box) to an
        :class:`AblationPanel`: added to the ``panel`` given to the view (its other sliders stay), or else a
        new panel on this text, shown below the table in place of the previous one. Returns the panel."""
        if self._shown.ranking is None:
            raise ValueError(
                "this view ranks no neurons: create it with neuron_sites=... (e.g. 'layer.5.mlp')"
            )
        k = int(self.send_k.value if k is None else k)
        if not 1 <= k <= len(self._shown.ranking):
            raise ValueError(f"k must be from 1 to {len(self._shown.ranking)} (the ranked neurons), got {k}")
        top = self._shown.ranking.top(k)
        if self._given_panel is not None:
            self._given_panel.add_neurons(top)
            return self._given_panel
        panel = AblationPanel(self._handle, self._text, top, n_neurons=k)
        self.panel = panel
        note = ipywidgets.HTML(
            f"Top {k} neurons for {html.escape(repr(self._shown.attr.target))} by conductance: switch them off and "
            "watch the prediction (the panel's 'Switch off the top k' compares with as many random neurons)."
        )
        self._panel_box.children = (note, panel)
        return panel

    def _send_clicked(self) -> None:
        try:
            self.send_top_neurons()
        except Exception as err:
            self._draw_status(error=f"{type(err).__name__}: {err}")

    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write a standalone HTML page of this view as it is now (see :func:`save_html`): the heatmap and
        the matrix keep their values, tooltips and keyboard reading; the pickers become text."""
        return save_html(self, path, title=title or f"AttributionView: {self._text}")

    # -- computing: a new _Shown is complete before anything is drawn ---------------------------------
    def _tokens(self, method: str, target: str | int | None) -> tuple[TokenAttribution, list[str]]:
        name = get_method(method, "token").name
        kwargs = dict(self._options.get(name, {}))
        kwargs.setdefault("n_steps", self._n_steps)
        kwargs.setdefault("baseline", self._baseline)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            attr = attribute_tokens(self._handle, self._text, name, target, **kwargs)
        return attr, [str(w.message) for w in caught]

    def _target_parts(
        self, target_id: int
    ) -> tuple[LayerAttribution | None, NeuronRanking | None, list[str]]:
        """Layer conductance and the neuron ranking for ``target_id`` (both change with the target only)."""
        layer = ranking = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if self._want_layers:
                layer = attribute_layers(
                    self._handle, self._text, target=target_id, n_steps=self._n_steps, baseline=self._baseline
                )
            if self._neuron_sites is not None:
                ranking = attribute_neurons(
                    self._handle,
                    self._text,
                    self._neuron_sites,
                    target=target_id,
                    n_steps=self._n_steps,
                    baseline=self._baseline,
                )
        return layer, ranking, [f"layer/neuron conductance: {w.message}" for w in caught]

    def _compute(self, method: str, target: str | int | None, level: str, old: _Shown | None) -> _Shown:
        """Everything shown for a choice, reusing from ``old`` what does not depend on what changed."""
        same = old is not None and old.attr.method == get_method(method, "token").name
        if old is not None and same and target == old.attr.target_id:  # only the level changed
            attr, token_warnings = old.attr, old.token_warnings
        else:
            attr, token_warnings = self._tokens(method, target)
        if old is not None and old.attr.target_id == attr.target_id:
            layer, ranking, layer_warnings = old.layer, old.ranking, old.layer_warnings
        else:
            layer, ranking, layer_warnings = self._target_parts(attr.target_id)
        faith = None
        if self._want_faith:
            faith = faithfulness_curves(self._handle, attr, level=level, n_random=self._n_random)
        return _Shown(attr, level, layer, ranking, faith, token_warnings, layer_warnings)

    # -- drawing ------------------------------------------------------------------------------------
    def _draw(self, new: _Shown) -> None:
        """Show ``new`` in every part (nothing here can fail on checked results)."""
        old, self._shown = self._shown, new
        units, scores = _units_scores(new.attr, new.level)
        self.heatmap.set_scores(units, scores, label=result_label(new.attr))
        if self.matrix is not None and new.layer is not None:
            rows, cols, values = _layer_matrix(new.layer, new.level)
            with self.matrix.hold_sync():
                self.matrix.col_title = new.level
                self.matrix.set_data(values, rows, cols, label=result_label(new.layer))
        if self.table is not None and new.ranking is not None and new.ranking is not old.ranking:
            self.table.set_ranking(new.ranking, selected=new.ranking.neurons[0])
            if self._given_panel is None:  # a panel of the old target's neurons would mislead: drop it
                self.panel = None
                self._panel_box.children = ()

    def _draw_status(self, error: str = "") -> None:
        shown = self._shown
        lines = [_status_text(shown.attr)]
        if shown.faith is not None:
            lines.append(_faithfulness_text(shown.faith))
        verdict = self._verdict.text()
        if self._verdict.correct is False:  # a warning: an explanation of a mistake must say so
            self.status.value = status_html(*lines, warnings=[verdict, *shown.warnings], error=error)
        else:
            self.status.value = status_html(verdict, *lines, warnings=shown.warnings, error=error)


# ------------------------------------------------------------------------------------------------


def _units_scores(attr: TokenAttribution, level: str) -> tuple[list[str], np.ndarray]:
    return attr.units(level), np.asarray(attr.scores(level), dtype=np.float64)


def _layer_matrix(layer: LayerAttribution, level: str) -> tuple[list[str], list[str], np.ndarray]:
    if level == "word":
        return list(layer.sites), list(layer.words), layer.word_scores
    return list(layer.sites), list(layer.tokens), layer.scores


def _sites_text(ranking: NeuronRanking) -> str:
    sites = ranking.meta.get("sites", [])
    return ", ".join(sites) if sites else ranking.method


def _faithfulness_text(curves: FaithfulnessCurves) -> str:
    """Deletion and insertion areas against random order, as one line of plain text."""
    s = curves.summary()
    units = "words" if curves.level == "word" else "tokens"
    return (
        f"faithfulness ({units} removed or inserted by score, p of {curves.target!r}): deletion AUC "
        f"{s['deletion_auc']:.3f} vs {s['random_deletion_auc']:.3f} in random order "
        f"(gain {s['deletion_gain']:+.3f}), insertion AUC {s['insertion_auc']:.3f} vs "
        f"{s['random_insertion_auc']:.3f} (gain {s['insertion_gain']:+.3f})"
    )


def _status_text(attr: TokenAttribution) -> str:
    """What was explained and, for path methods, the completeness check (plain text, escaped when drawn)."""
    parts = [f"{attr.method} → {attr.target!r}: p = {attr.prob:.3f}"]
    if attr.delta is not None and attr.output_difference is not None:
        total = float(attr.token_scores.sum())
        rel = abs(attr.delta) / max(abs(attr.output_difference), 1e-12)
        parts += [
            f"sum of scores {total:+.4g}",
            f"F(x) − F(x′) = {attr.output_difference:+.4g}",
            f"convergence delta {attr.delta:+.3g} ({rel:.1%} of the change)",
        ]
    parts.append(f"baseline: {attr.baseline}")
    return " · ".join(parts)
