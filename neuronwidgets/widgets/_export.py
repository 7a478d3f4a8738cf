"""Standalone HTML export shared by every widget: bundle, CSS and state inlined, no network needed.

The page imports the widget's own ES module (from a ``data:`` URL) and renders it with a stand-in model
(``createOfflineModel`` exported by the bundle), so the exported view is drawn by the same ``render()``.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ipywidgets.widgets.widget import _remove_buffers

# the head both page kinds start with ({title} filled in by each)
_HEAD = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="generator" content="neuronwidgets">
<title>{title}</title>
"""

_PAGE = (
    _HEAD
    + """<style>
body {{ margin: 16px; background: #ffffff; }}
@media (prefers-color-scheme: dark) {{ body {{ background: #1e1e1e; }} }}
</style>
<style>
{css}
</style>
</head>
<body>
<div id="nw-widget"></div>
<script type="application/json" id="nw-state">{state}</script>
<script type="module">
const el = document.getElementById("nw-widget");
try {{
  const mod = await import("data:text/javascript;base64,{esm}");
  const data = JSON.parse(document.getElementById("nw-state").textContent);
  await mod.default.render({{ model: mod.createOfflineModel(data), el }});
}} catch (err) {{
  el.textContent = "This export could not be displayed: " + err;
}}
</script>
</body>
</html>
"""
)


def script_json(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` escaped, so no text can close it."""
    text = json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def exported_state(state: dict[str, Any]) -> dict[str, Any]:
    """The state as ipywidgets sends it (binary buffers cut out), buffers base64-encoded."""
    plain, paths, buffers = _remove_buffers(state)
    return {
        "state": plain,
        "buffer_paths": paths,
        "buffers": [base64.b64encode(bytes(b)).decode("ascii") for b in buffers],
    }


def write_standalone_html(widget: Any, path: str | Path, title: str) -> Path:
    """Write a page that renders one widget offline, by its own front end, from its export state
    (``widget._export_state()``: its synced traits and whatever else its static page needs)."""
    page = _PAGE.format(
        title=html.escape(title),
        css=widget._css.replace("</", "<\\/"),  # a CSS escape; keeps the <style> element closed only by us
        state=script_json(exported_state(widget._export_state())),
        esm=base64.b64encode(widget._esm.encode("utf-8")).decode("ascii"),
    )
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------------------
# Composed views (dashboards)
# ------------------------------------------------------------------------------------------------

_DASHBOARD = (
    _HEAD
    + """<style>
body {{ margin: 16px; background: #ffffff; color: #1f1f1f; font-family: system-ui, sans-serif; font-size: 13px; }}
@media (prefers-color-scheme: dark) {{ body {{ background: #1e1e1e; color: #e6e6e6; }} }}
.nw-export-vbox {{ display: flex; flex-direction: column; gap: 6px; }}
.nw-export-hbox {{ display: flex; flex-direction: row; flex-wrap: wrap; gap: 12px; align-items: flex-start; }}
.nw-export-control {{ color: #5f6368; }}
.nw-export-note {{ color: #5f6368; font-style: italic; margin-bottom: 8px; }}
</style>
<style>
{css}
</style>
</head>
<body>
<div class="nw-export-note">{note}</div>
{body}
<script type="application/json" id="nw-modules">{modules}</script>
<script type="application/json" id="nw-states">{states}</script>
<script type="module">
const modules = JSON.parse(document.getElementById("nw-modules").textContent);
const states = JSON.parse(document.getElementById("nw-states").textContent);
const loaded = await Promise.all(modules.map((m) => import("data:text/javascript;base64," + m)));
for (const [i, s] of states.entries()) {{
  const el = document.getElementById("nw-part-" + i);
  try {{
    const mod = loaded[s.module];
    await mod.default.render({{ model: mod.createOfflineModel(s.data), el }});
  }} catch (err) {{
    el.textContent = "This part could not be displayed: " + err;
  }}
}}
</script>
</body>
</html>
"""
)
_NOTE = (
    "Static export: every widget here is drawn from its saved state; choices that need the Python kernel "
    "(other methods, targets, neurons) and the links between widgets work in the notebook only."
)


def save_html(widget: Any, path: str | Path, *, title: str | None = None) -> Path:
    """Write a standalone HTML page of a widget or of a composed view (an ``HBox``/``VBox`` of widgets, such
    as :class:`~neuronwidgets.widgets.AttributionView`), for slides and teaching material; no network.

    Each neuronwidgets widget inside is drawn by its own front end from its current state, exactly as in
    the notebook; ``HTML`` and ``Label`` widgets keep their text; pickers (dropdowns, toggles, text boxes)
    become a line saying their current choice; buttons and output areas are left out. Links between
    widgets need the Python kernel, so in the page each widget stands alone.

    Args:
        widget: A neuronwidgets widget or a box of widgets.
        path: The ``.html`` file to write.
        title: The page title (default: the widget's).

    Returns:
        The path written.

    Raises:
        ValueError: If ``widget`` holds nothing that can be exported.

    Example:
        >>> save_html(AttributionView("minilm-sentiment", "Not bad at all."), "attribution.html")
    """
    import ipywidgets

    modules: list[str] = []
    styles: list[str] = []
    states: list[dict[str, Any]] = []

    def part(w: Any) -> str:
        state_fn = getattr(w, "_export_state", None)
        if callable(state_fn):
            esm = base64.b64encode(w._esm.encode("utf-8")).decode("ascii")
            if esm not in modules:
                modules.append(esm)
            if w._css not in styles:
                styles.append(w._css)
            states.append({"module": modules.index(esm), "data": exported_state(state_fn())})
            return f'<div id="nw-part-{len(states) - 1}"></div>'
        if isinstance(w, ipywidgets.Box):
            kind = "hbox" if isinstance(w, ipywidgets.HBox) else "vbox"
            inner = "".join(part(c) for c in w.children)
            return f'<div class="nw-export-{kind}">{inner}</div>' if inner else ""
        if isinstance(w, (ipywidgets.HTML, ipywidgets.HTMLMath)):
            return f"<div>{w.value}</div>"  # our own HTML widgets escape every text they hold
        if isinstance(w, ipywidgets.Label):
            return f"<div>{html.escape(str(w.value))}</div>"
        if isinstance(w, (ipywidgets.Button, ipywidgets.Output)) or not hasattr(w, "value"):
            return ""
        shown = getattr(w, "label", None)
        shown = w.value if shown is None else shown
        desc = getattr(w, "description", "") or ""
        text = f"{desc}: {shown}" if desc else str(shown)
        return f'<div class="nw-export-control">{html.escape(text)}</div>'

    body = part(widget)
    if not states:
        raise ValueError(
            "nothing to export: this widget holds no neuronwidgets widget (TokenHeatmap, MatrixView, …)"
        )
    page = _DASHBOARD.format(
        title=html.escape(title or type(widget).__name__),
        css="\n".join(s.replace("</", "<\\/") for s in styles),
        note=html.escape(_NOTE),
        body=body,
        modules=script_json(modules),
        states=script_json(states),
    )
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out
