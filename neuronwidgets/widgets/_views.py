"""Helpers shared by the composed views (AttributionView, InteractionView)."""

from __future__ import annotations

import html
from typing import Any

from ..core import ModelHandle


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
