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

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="generator" content="neuronwidgets">
<title>{title}</title>
<style>
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


def write_standalone_html(path: str | Path, *, title: str, esm: str, css: str, state: dict[str, Any]) -> Path:
    """Write a page that renders one widget offline from ``state`` (the widget's synced traits)."""
    page = _PAGE.format(
        title=html.escape(title),
        css=css.replace("</", "<\\/"),  # a CSS escape; keeps the <style> element closed only by us
        state=script_json(exported_state(state)),
        esm=base64.b64encode(esm.encode("utf-8")).decode("ascii"),
    )
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out
