"""What the composed views (AttributionView, InteractionView) share: the target list, the status line,
result labels, and the method/target/level pickers with their recompute-or-revert logic."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets
import numpy as np
import traitlets

from ..core import ModelHandle, get_method

LEVELS = ("word", "token")


def check_choice_args(
    level: str, method_options: dict[str, dict[str, Any]] | None, methods: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Check a view's ``level`` and ``method_options`` (keyword arguments per method, keyed by one of
    ``methods``); return a copy of the options."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}: choose 'word' or 'token'")
    options = dict(method_options or {})
    for name in options:
        if name not in methods:
            raise ValueError(f"method_options has unknown method {name!r}: choose from {', '.join(methods)}")
    return options


def target_options(handle: ModelHandle, text: str, explained: Any, n_targets: int) -> list[tuple[str, int]]:
    """``(label, id)`` choices: every class of a classifier, or the ``n_targets`` likeliest tokens; the
    target of ``explained`` (any result with ``target_id``, ``target`` and ``prob``) is always among them."""
    pred = handle.predict(text, top_k=max(1, int(n_targets)))
    assert not isinstance(pred, list)
    if handle.kind == "classifier":
        order = sorted(range(len(pred.ids)), key=lambda i: pred.ids[i])
    else:
        order = list(range(len(pred.ids)))
    out = [(f"{pred.labels[i]!r} (p={float(pred.probs[i]):.3f})", int(pred.ids[i])) for i in order]
    if explained.target_id not in [v for _, v in out]:
        out.append((f"{explained.target!r} (p={explained.prob:.3f})", explained.target_id))
    return out


@dataclass(frozen=True)
class Verdict:
    """The model's own prediction for a text and, when the true label is known, whether it is right.

    ``predicted`` / ``predicted_id`` / ``prob``: the top class (or next token) and its probability;
    ``label`` / ``label_id``: the true label given by the user (``None``: not given).
    """

    predicted: str
    predicted_id: int
    prob: float
    label: str | None = None
    label_id: int | None = None

    @property
    def correct(self) -> bool | None:
        """``True`` / ``False`` when the true label is known, else ``None``."""
        return None if self.label_id is None else self.label_id == self.predicted_id

    def text(self) -> str:
        """One line: what the model predicts and, with a true label, whether that is right."""
        line = f"the model predicts {self.predicted!r} (p = {self.prob:.3f})"
        if self.correct is None:
            return line
        if self.correct:
            return f"{line}, the true label: correct"
        return f"{line}, but the true label is {self.label!r}: this prediction is WRONG"


def prediction_verdict(handle: ModelHandle, text: str, label: str | int | None = None) -> Verdict:
    """The model's top prediction for ``text`` and, given the true ``label`` (a class name or index of a
    classifier; a one-token string or a token id of a language model), whether it is right."""
    pred = handle.predict(text, top_k=1)
    assert not isinstance(pred, list)
    verdict = Verdict(str(pred.labels[0]), int(pred.ids[0]), float(pred.probs[0]))
    if label is None:
        return verdict
    if isinstance(label, bool) or not isinstance(label, (str, int, np.integer)):
        raise TypeError(f"label must be the true class (a name or an index) or None, got {label!r}")
    n = len(handle.labels) if handle.kind == "classifier" else len(handle.tokenizer)
    if isinstance(label, str):
        if handle.kind == "classifier":
            if label not in handle.labels:
                raise ValueError(
                    f"label {label!r} is not a class of {handle.name}: choose from {handle.labels}"
                )
            idx = handle.labels.index(label)
        else:
            ids = handle.tokenizer.encode(label, add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(
                    f"label {label!r} is {len(ids)} tokens for {handle.name}: give the one true next token "
                    "(mind the leading space, e.g. ' Paris') or its id"
                )
            idx = int(ids[0])
    else:
        idx = int(label)
        if not 0 <= idx < n:
            raise ValueError(
                f"label index {idx} is out of range: {handle.name} has {n} outputs (0 … {n - 1})"
            )
    name = handle.labels[idx] if handle.kind == "classifier" else handle.tokenizer.decode([idx])
    return Verdict(verdict.predicted, verdict.predicted_id, verdict.prob, name, idx)


def status_html(*lines: str, warnings: list[str] | None = None, error: str = "", busy: bool = False) -> str:
    """The status lines of the composed views: each of ``lines``, then each warning and the error, all
    escaped."""
    out = "".join(
        f'<div class="nw-status-line" data-busy="{str(busy).lower()}">{html.escape(t)}</div>' for t in lines
    )
    for w in warnings or []:
        out += f'<div class="nw-status-warning" style="color:#b06000">⚠ {html.escape(w)}</div>'
    if error:
        out += f'<div class="nw-status-error" role="alert" style="color:#b3261e">{html.escape(error)}</div>'
    return out


def result_label(result: Any) -> str:
    """``"method → 'target' (output)"``: what a result explains, as the views label it."""
    return f"{result.method} → {result.target!r} ({result.output})"


class ChoiceView(ipywidgets.VBox):
    """Base of the composed views that show one result for a choice of method, target and level.

    The pickers (``method_picker``, ``target_picker``, ``level_picker``) and the traits ``method``,
    ``target`` and ``level`` always say what is shown. A change of either recomputes through
    :meth:`_recompute`, which must leave everything as it was when it fails; then the pickers and traits
    are put back, the status line says why, and a Python caller gets the exception too.

    Subclasses set ``_method_level`` (the level of :func:`~neuronwidgets.core.get_method`) and implement
    :meth:`_current` (the result shown, with ``method``, ``target``, ``target_id`` and ``prob``, and its
    level), :meth:`_recompute` and :meth:`_draw_status`.
    """

    method = traitlets.Unicode("", help="the method shown")
    target = traitlets.Int(-1, help="the target explained: class index or token id")
    level = traitlets.Unicode("word", help="'word' or 'token'")
    _method_level = "token"

    # -- for subclasses -----------------------------------------------------------------------------
    def _current(self) -> tuple[Any, str]:
        raise NotImplementedError

    def _recompute(self, choice: dict[str, Any]) -> None:
        raise NotImplementedError

    def _draw_status(self, error: str = "") -> None:
        raise NotImplementedError

    def _make_pickers(
        self, methods: Sequence[tuple[str, str]], targets: list[tuple[str, int]], level_description: str
    ) -> ipywidgets.HBox:
        """The three pickers, in one row, showing :meth:`_current` (call once, before ``__init__`` of the
        box; :meth:`_watch_pickers` starts listening once everything is built)."""
        self._busy = False
        self._targets = targets
        result, level = self._current()
        self.method_picker = ipywidgets.Dropdown(
            options=list(methods), value=result.method, description="Method"
        )
        self.target_picker = ipywidgets.Dropdown(
            options=targets, value=result.target_id, description="Target"
        )
        self.level_picker = ipywidgets.Dropdown(
            options=[("words", "word"), ("subword tokens", "token")],
            value=level,
            description=level_description,
            layout={"width": "220px"},
        )
        return ipywidgets.HBox(
            [self.method_picker, self.target_picker, self.level_picker], layout={"flex_flow": "row wrap"}
        )

    def _watch_pickers(self) -> None:
        self._sync_pickers()
        self._draw_status()
        pickers = {"method": self.method_picker, "target": self.target_picker, "level": self.level_picker}
        for name, picker in pickers.items():
            picker.observe(lambda c, name=name: self._pick(name, c["new"]), "value")

    # -- the choice -----------------------------------------------------------------------------------
    @property
    def targets(self) -> list[tuple[str, int]]:
        """The target picker's choices: ``(label, id)``."""
        return list(self._targets)

    @traitlets.validate("method")
    def _valid_method(self, proposal: Any) -> str:
        return get_method(proposal["value"], self._method_level).name

    @traitlets.validate("level")
    def _valid_level(self, proposal: Any) -> str:
        if proposal["value"] not in LEVELS:
            raise ValueError(f"unknown level {proposal['value']!r}: choose 'word' or 'token'")
        return str(proposal["value"])

    @traitlets.observe("method", "target", "level")
    def _on_trait(self, change: Any) -> None:
        if not hasattr(self, "level_picker") or self._busy or change["old"] == change["new"]:
            return
        self._pick(change["name"], change["new"], from_python=True)

    def _pick(self, what: str, value: Any, from_python: bool = False) -> None:
        """A picker or trait changed: recompute, or put everything back and say why."""
        if self._busy:
            return
        result, level = self._current()
        choice: dict[str, Any] = {"method": result.method, "target": result.target_id, "level": level}
        if value == choice[what]:
            self._sync_pickers()
            return
        choice[what] = value
        self._busy = True
        try:
            self.status.value = status_html("Computing…", busy=True)
            try:
                self._recompute(choice)
            except Exception as err:  # what is shown stays consistent with the pickers
                self._sync_pickers()
                self._draw_status(error=f"{type(err).__name__}: {err}")
                if from_python:
                    raise
                return
            self._sync_pickers()
            self._draw_status()
        finally:
            self._busy = False

    def _sync_pickers(self) -> None:
        """Pickers and traits show what is drawn (with ``_busy`` set, so nothing recomputes)."""
        busy, self._busy = self._busy, True
        try:
            result, level = self._current()
            if result.target_id not in [v for _, v in self._targets]:
                self._targets.append((f"{result.target!r} (p={result.prob:.3f})", result.target_id))
                self.target_picker.options = list(self._targets)
            self.method_picker.value = result.method
            self.target_picker.value = result.target_id
            self.level_picker.value = level
            self.method, self.target, self.level = result.method, result.target_id, level
        finally:
            self._busy = busy
