"""NeuronExplorer: one linked view over a neuron ranking, composed from the existing widgets with ipywidgets
layout (no bundle of its own).

Selecting a neuron in the :class:`~neuronwidgets.widgets.NeuronTable` shows, for that neuron: its
:class:`~neuronwidgets.widgets.TokenHeatmap` on chosen sentences; its top-activating contexts over the whole
corpus (:func:`~neuronwidgets.core.top_activations`, streamed from the activation store) as a second heatmap
with the firing units outlined; its best-aligned concepts (label, IoU, precision, recall) and its
compositional formula (:func:`~neuronwidgets.core.explain_neurons`, computed on first selection and
cached); and a button that adds it to an :class:`~neuronwidgets.widgets.AblationPanel`. A search box
re-ranks the table by alignment with a concept ("Tense=Past", "ADJ").
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets
import numpy as np
import pandas as pd

from ..core import (
    Activations,
    ConceptAlignment,
    Concepts,
    FormulaExplanation,
    NeuronRanking,
    TopActivations,
    align_concepts,
    explain_neurons,
    parse_neuron,
    top_activations,
)
from ._export import save_html
from .ablation_panel import AblationPanel
from .neuron_table import NeuronTable
from .token_heatmap import TokenHeatmap, _by_granularity

DEFAULT_CONCEPTS_SHOWN = 5
_HEADING = "margin:10px 0 2px;font-weight:600"


class NeuronExplorer(ipywidgets.VBox):
    """A ranking table linked to everything known about the selected neuron.

    Parts (public attributes, for linking more views): ``table``, ``heatmap``, ``contexts`` (a
    ``from_scores`` heatmap: one row per context sentence, firing units ``marked``), ``info``
    (``ipywidgets.HTML``), ``search_box``, ``send_button``, ``panel``. From Python: :meth:`select`,
    :meth:`search`, :meth:`reset_ranking`, :meth:`send_to_panel`, :meth:`explanation`,
    :meth:`top_contexts`; ``selected`` is the selected neuron and ``context_sentences`` the corpus
    sentence of each context row. The table drives the other parts; the heatmap's own site/neuron controls
    show another neuron in that heatmap only.

    Args:
        activations: :class:`~neuronwidgets.core.Activations` of a corpus (an on-disk store works:
            everything is read streaming), or a word- and a token-level set of the same texts (the
            heatmap then gets a word/subword toggle; contexts, concepts and formulas use the word-level set).
        ranking: Any :class:`~neuronwidgets.core.NeuronRanking` (probing, attribution, concept alignment)
            or its DataFrame; default: ``alignment.ranking()`` (each neuron by its best concept's IoU).
        alignment: A :class:`~neuronwidgets.core.ConceptAlignment` of these activations: the concept
            labels of each neuron, and the concept search; computed from ``concepts`` when not given.
        concepts: :class:`~neuronwidgets.core.Concepts` of the same corpus: compositional formulas.
        sentences: The sentences of the neuron heatmap (default: the first 10).
        panel: An :class:`~neuronwidgets.widgets.AblationPanel` of the same model: the "Send to ablation
            panel" button adds the selected neuron to it (:meth:`AblationPanel.add_neurons`); it is shown
            at the bottom of the explorer.
        k_contexts: Top-activating units shown per neuron.
        top: Precomputed :class:`~neuronwidgets.core.TopActivations` to reuse (neurons it lacks are
            computed on selection).
        metric: ``"iou"``, ``"precision"`` or ``"recall"``: the alignment score that ranks neurons and concepts.
        page_size: Rows of the table visible at once.
        formula_options: Go to :func:`~neuronwidgets.core.explain_neurons` (e.g. ``max_length=2``).

    Raises:
        TypeError: If ``activations``, ``ranking`` or ``alignment`` is not of its type.
        ValueError: For an unknown metric, no ranking and nothing to make one from, or parts of
            different corpora.

    Example:
        >>> NeuronExplorer(acts, concepts=Concepts.from_corpus(annotate(texts)), panel=panel)
    """

    def __init__(
        self,
        activations: Activations | Sequence[Activations],
        ranking: NeuronRanking | pd.DataFrame | None = None,
        *,
        alignment: ConceptAlignment | None = None,
        concepts: Concepts | None = None,
        sentences: Sequence[int] | None = None,
        panel: AblationPanel | None = None,
        k_contexts: int = 10,
        top: TopActivations | None = None,
        metric: str = "iou",
        page_size: int = 10,
        formula_options: Mapping[str, Any] | None = None,
    ) -> None:
        items = [activations] if isinstance(activations, Activations) else activations
        if isinstance(items, (str, bytes)) or not all(isinstance(a, Activations) for a in items):
            raise TypeError(
                "NeuronExplorer needs Activations from extract_activations (or a word- and a token-level set "
                f"of the same texts), got {type(activations).__name__}"
            )
        if ranking is not None and not isinstance(ranking, (NeuronRanking, pd.DataFrame)):
            raise TypeError(
                "ranking must be a NeuronRanking (rank_probeless, attribute_neurons, alignment.ranking(), ...) "
                f"or its .to_frame() DataFrame, got {type(ranking).__name__}"
            )
        acts = _by_granularity(activations)
        self._acts = acts.get("word") or acts["token"]
        if alignment is not None and not isinstance(alignment, ConceptAlignment):
            raise TypeError(
                f"alignment must be a ConceptAlignment (align_concepts(acts, concepts)), got {type(alignment).__name__}"
            )
        if concepts is not None:
            if not isinstance(concepts, Concepts):
                raise TypeError(
                    f"concepts must be Concepts (Concepts.from_corpus(corpus)), got {type(concepts).__name__}"
                )
            concepts.for_activations(self._acts)  # the same corpus? (raises a ValueError naming the fix)
            if alignment is None:
                alignment = align_concepts(self._acts, concepts, progress=False)
        if metric not in ("iou", "precision", "recall"):
            raise ValueError(f"metric must be 'iou', 'precision' or 'recall', got {metric!r}")
        if isinstance(k_contexts, bool) or not isinstance(k_contexts, (int, np.integer)) or k_contexts < 1:
            raise ValueError(f"k_contexts must be a positive integer, got {k_contexts!r}")
        if top is not None and not isinstance(top, TopActivations):
            raise TypeError(f"top must be TopActivations (top_activations(acts)), got {type(top).__name__}")
        if panel is not None:
            _check_panel(panel, self._acts)
        if ranking is None:
            if alignment is None:
                raise TypeError(
                    "NeuronExplorer needs a ranking (a NeuronRanking, e.g. from rank_probeless or "
                    "attribute_neurons) or alignment=/concepts= to rank neurons by their best concept"
                )
            ranking = alignment.ranking(metric)
        self._ranking = ranking
        self._alignment = alignment
        self._concepts = concepts
        self._panel = panel
        self._k = int(k_contexts)
        self._top = top
        self._metric = metric
        self._formula_options = dict(formula_options or {})
        self._contexts_cache: dict[str, tuple[list[int], list[list[int]]]] = {}
        self._formulas: dict[str, FormulaExplanation | str] = {}
        self.context_sentences: list[int] = []

        self.table = NeuronTable(ranking, page_size=page_size)
        if not self.table.addresses:
            raise ValueError("the ranking is empty: pass a ranking with at least one neuron")
        for name in self.table.addresses:
            try:
                self._acts.check_neuron(name)
            except ValueError as err:
                raise ValueError(
                    f"the ranking's neuron {name} is not in the activations ({err}): extract its site too, or "
                    "pass ranking.restrict(...) with the neurons the activations have"
                ) from None
        first = self.table.selected
        self.heatmap = TokenHeatmap(activations, neuron=first, sentences=sentences)
        tokens, scores, marked, label = self._context_view(first)
        self.contexts = TokenHeatmap.from_scores(tokens, scores, label=label, marked=marked)
        self.info = ipywidgets.HTML()

        self.search_box = ipywidgets.Combobox(
            value="",
            options=list(alignment.concepts) if alignment is not None else [],
            placeholder="concept, e.g. Tense=Past or ADJ" if alignment is not None else "needs alignment=",
            description="Search by concept",
            ensure_option=False,
            continuous_update=False,
            disabled=alignment is None,
            style={"description_width": "initial"},
            layout=ipywidgets.Layout(width="360px"),
        )
        self.reset_button = ipywidgets.Button(
            description="Show the original ranking",
            disabled=True,
            tooltip="Undo the concept search",
            layout=ipywidgets.Layout(width="auto"),
        )
        self.search_status = ipywidgets.HTML()
        self.send_button = ipywidgets.Button(
            description="Send to ablation panel",
            icon="arrow-right",
            disabled=panel is None,
            tooltip="Add the selected neuron to the ablation panel"
            if panel is not None
            else "Pass panel=AblationPanel(...) to the explorer to send neurons to it",
            layout=ipywidgets.Layout(width="auto"),
        )
        self.send_status = ipywidgets.HTML()

        self.table.observe(self._on_selected, "selected")
        self.search_box.observe(self._on_search, "value")
        self.reset_button.on_click(lambda _: self.reset_ranking())
        self.send_button.on_click(lambda _: self._on_send())

        side = ipywidgets.VBox(
            [self.info, ipywidgets.HBox([self.send_button, self.send_status])],
            layout=ipywidgets.Layout(flex="1 1 300px", min_width="280px", padding="0 0 0 12px"),
        )
        self.table.layout = ipywidgets.Layout(flex="2 1 600px", min_width="420px")
        children: list[ipywidgets.Widget] = [
            ipywidgets.HBox([self.search_box, self.reset_button, self.search_status]),
            ipywidgets.HBox([self.table, side], layout=ipywidgets.Layout(flex_flow="row wrap")),
            _heading("The neuron on chosen sentences"),
            self.heatmap,
            _heading(f"Top-activating contexts in the corpus (the {self._k} highest units outlined)"),
            self.contexts,
        ]
        if panel is not None:
            children += [_heading("Ablation panel"), panel]
        super().__init__(children)
        self.add_class("nw-explorer")
        self.info.value = self._info_html(first)  # heatmap and contexts already show ``first``

    # -- Python API --------------------------------------------------------------------------------
    @property
    def selected(self) -> str:
        """The selected neuron's address (``""`` for none)."""
        return str(self.table.selected)

    @property
    def alignment(self) -> ConceptAlignment | None:
        return self._alignment

    def select(self, neuron: str) -> None:
        """Select ``neuron`` (one of the table's rows), as a click on its row does."""
        self.table.selected = neuron

    def search(self, concept: str) -> NeuronRanking:
        """Re-rank the table by alignment with ``concept`` (its name or an unambiguous part of it, e.g.
        ``"past"``; see :meth:`neuronwidgets.core.ConceptAlignment.search`) and select its best neuron; returns the ranking."""
        if self._alignment is None:
            raise ValueError("searching by concept needs a ConceptAlignment: pass alignment= or concepts=")
        ranking = self._alignment.search(concept, self._metric)
        self._rerank(ranking, ranking.neurons[0])
        self.reset_button.disabled = False
        concept_name = ranking.meta["concept"]
        if self.search_box.value.strip() != concept.strip():
            self._set_box(concept_name)
        self.search_status.value = (
            f"<span>Neurons ranked by {html.escape(self._metric)} with "
            f"<b>{html.escape(concept_name)}</b></span>"
        )
        return ranking

    def reset_ranking(self) -> None:
        """Show the ranking the explorer was made with again."""
        self._rerank(self._ranking, None)
        self.reset_button.disabled = True
        self.search_status.value = ""
        self._set_box("")

    def _rerank(self, ranking: NeuronRanking, selected: str | None) -> None:
        """Show ``ranking`` in the table. A new selection redraws every part (``_on_selected``); when the
        selection stays, the side panel is still redrawn: its rank and ranking name are the new ranking's."""
        before = self.selected
        self.table.set_ranking(ranking, selected=selected)
        if self.selected == before:
            self.info.value = self._info_html(before)

    def _set_box(self, text: str) -> None:
        """Show ``text`` in the search box without searching again."""
        self.search_box.unobserve(self._on_search, "value")
        try:
            self.search_box.value = text
        finally:
            self.search_box.observe(self._on_search, "value")

    def send_to_panel(self, neuron: str | None = None) -> list[str]:
        """Add ``neuron`` (default: the selected one) to the panel; returns what was added (``[]`` when it
        is there already)."""
        if self._panel is None:
            raise ValueError(
                "this explorer has no ablation panel: pass panel=AblationPanel(model, text, neurons)"
            )
        name = neuron or self.selected
        if not name:
            raise ValueError("no neuron is selected: select a row of the table first")
        return self._panel.add_neurons([name])

    def top_contexts(self, neuron: str) -> tuple[list[int], list[list[int]]]:
        """``(sentences, marked)``: the corpus sentences holding ``neuron``'s top ``k_contexts`` units (in
        the order of their best unit) and ``[row, position]`` of each top unit among them."""
        name = self._acts.check_neuron(neuron).name
        if name not in self._contexts_cache:
            top = self._top
            if top is None or name not in top.neurons or top.k < self._k:
                top = top_activations(self._acts, [name], k=self._k, bottom=False, progress=False)
            i = top.index(name)
            units = top.top_units[i, : self._k]
            units = units[units >= 0]
            sent = np.searchsorted(top.offsets, units, side="right") - 1
            pos = units - top.offsets[sent]
            rows: dict[int, int] = {}
            marked: list[list[int]] = []
            for s, p in zip(sent.tolist(), pos.tolist()):
                row = rows.setdefault(int(s), len(rows))
                marked.append([row, int(p)])
            self._contexts_cache[name] = (list(rows), marked)
        sentences, marked = self._contexts_cache[name]
        return list(sentences), [list(m) for m in marked]

    def explanation(self, neuron: str) -> FormulaExplanation | None:
        """``neuron``'s compositional explanation (computed once, then cached); ``None`` without concepts.
        A failure is raised here (the view shows it as text instead)."""
        if self._concepts is None:
            return None
        name = parse_neuron(neuron).name
        cached = self._formulas.get(name)
        if not isinstance(cached, FormulaExplanation):
            covered = self._alignment is not None and name in self._alignment.neurons
            result = explain_neurons(
                self._acts,
                self._concepts,
                [name],
                thresholds=self._alignment if covered else None,
                progress=False,
                **self._formula_options,
            )
            cached = self._formulas[name] = result[0]
        return cached

    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write a standalone HTML page of the explorer as it is now (see :func:`save_html`): table,
        heatmaps, concept labels and panel from their current state; without the kernel, selecting
        another row does not update the other parts there."""
        return save_html(self, path, title=title or f"NeuronExplorer: {self.selected}")

    # -- reacting to the page ----------------------------------------------------------------------
    def _on_selected(self, change: Any) -> None:
        if change["new"] and change["new"] != change["old"]:
            self._show(change["new"])

    def _on_search(self, change: Any) -> None:
        text = str(change["new"]).strip()
        if not text:
            if not self.reset_button.disabled:
                self.reset_ranking()
            return
        try:
            self.search(text)
        except ValueError as err:
            self.search_status.value = (
                f'<span style="color:var(--jp-error-color1,#b3261e)">{html.escape(str(err))}</span>'
            )

    def _on_send(self) -> None:
        try:
            added = self.send_to_panel()
        except (ValueError, TypeError) as err:
            self.send_status.value = (
                f'<span style="color:var(--jp-error-color1,#b3261e)">{html.escape(str(err))}</span>'
            )
            return
        name = html.escape(self.selected)
        self.send_status.value = (
            f"<span>Added <code>{name}</code> to the panel</span>"
            if added
            else f"<span><code>{name}</code> is in the panel already</span>"
        )

    def _show(self, neuron: str) -> None:
        """Point every part at ``neuron``."""
        self.heatmap.neuron = neuron
        tokens, scores, marked, label = self._context_view(neuron)
        self.contexts.set_scores(tokens, scores, label=label, marked=marked)
        self.send_status.value = ""
        self.info.value = self._info_html(neuron)

    def _context_view(self, neuron: str) -> tuple[list[list[str]], list[np.ndarray], list[list[int]], str]:
        sentences, marked = self.top_contexts(neuron)
        self.context_sentences = sentences
        values = self._acts.neuron(neuron, sentences)
        tokens = [self._acts.units(s) for s in sentences]
        cuts = np.cumsum([len(t) for t in tokens])[:-1]
        label = f"{neuron}: top {len(marked)} {self._acts.granularity}s in {len(sentences)} sentences"
        return tokens, list(np.split(values, cuts)), marked, label

    def _info_html(self, neuron: str) -> str:
        esc = html.escape
        parts = [
            f'<div style="font-family:var(--jp-code-font-family,monospace);font-weight:600;overflow-wrap:anywhere">'
            f"{esc(neuron)}</div>"
        ]
        rank = self.table.selected_rank
        if rank is not None:
            parts.append(
                f"<div>rank {rank} (0 = best) of {len(self.table.addresses):,} in "
                f"<i>{esc(self.table.method or 'the ranking')}</i></div>"
            )
        al = self._alignment
        if al is None:
            parts.append("<div><i>No concept labels: pass alignment= or concepts= to see them.</i></div>")
        elif parse_neuron(neuron).name not in al.neurons:
            parts.append("<div><i>This neuron was not aligned with concepts.</i></div>")
        else:
            frame = al.concepts_of(neuron, k=DEFAULT_CONCEPTS_SHOWN, metric=self._metric)
            i = al.index(neuron)
            head = "".join(
                f'<th style="text-align:{a};padding:1px 6px">{h}</th>'
                for h, a in (
                    ("concept", "left"),
                    ("IoU", "right"),
                    ("precision", "right"),
                    ("recall", "right"),
                )
            )
            rows = "".join(
                "<tr>"
                f'<td style="{_CONCEPT_CELL}" title="{esc(str(r.concept))}">{esc(str(r.concept))}</td>'
                + "".join(
                    f'<td style="text-align:right;padding:1px 6px;font-variant-numeric:tabular-nums">{v:.3f}</td>'
                    for v in (r.iou, r.precision, r.recall)
                )
                + "</tr>"
                for r in frame.itertuples()
            )
            parts.append(
                f"<div style='{_HEADING}'>Best concepts (by {esc(self._metric)})</div>"
                f"<div>fires on {int(al.fires[i]):,} of {al.num_units:,} units "
                f"(activation ≥ {float(al.thresholds[i]):.3g})</div>"
                f"<table class='nw-explorer-concepts'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
            )
        if self._concepts is None:
            parts.append("<div><i>No formula: pass concepts= to see compositional explanations.</i></div>")
        else:
            try:
                ex = self.explanation(neuron)
            except Exception as err:  # shown, not raised: the view must keep working
                parts.append(f"<div>Cannot explain this neuron: {esc(str(err))}</div>")
            else:
                assert ex is not None
                parts.append(
                    f"<div style='{_HEADING}'>Compositional explanation</div>"
                    f"<div class='nw-explorer-formula' style='font-family:var(--jp-code-font-family,monospace);overflow-wrap:anywhere'>{esc(str(ex.formula))}</div>"
                    f"<div>IoU {ex.iou:.3f}, precision {ex.precision:.3f}, recall {ex.recall:.3f}</div>"
                )
        return "".join(parts)


# a long concept name ends in "…" in the side panel instead of widening it (the full name is the tooltip)
_CONCEPT_CELL = "padding:1px 6px;max-width:16em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap"


def _heading(text: str) -> ipywidgets.HTML:
    return ipywidgets.HTML(f"<div style='{_HEADING}'>{html.escape(text)}</div>")


def _check_panel(panel: Any, acts: Activations) -> None:
    """The panel must run a model with the activations' sites and widths."""
    if not isinstance(panel, AblationPanel):
        raise TypeError(f"panel must be an AblationPanel, got {type(panel).__name__}")
    for site, width in acts.widths.items():
        try:
            panel.model.check_neuron(f"{site}:{width - 1}")
            wider = True
            try:
                panel.model.check_neuron(f"{site}:{width}")
            except ValueError:
                wider = False
        except ValueError as err:
            raise ValueError(
                f"the panel's model ({panel.model_name}) does not match the activations ({acts.model_name}): "
                f"{err}; pass a panel of the model the activations come from"
            ) from None
        if wider:
            raise ValueError(
                f"the panel's model ({panel.model_name}) has more neurons in {site} than the activations "
                f"({acts.model_name}, {width}): pass a panel of the model the activations come from"
            )
