"""Course pages: every tutorial notebook executed and written as a static HTML page whose widgets stay live
offline, plus an index page (``python -m neuronwidgets course build OUT``).

How: each notebook runs in a fresh kernel with one extra first cell (removed from the result) that makes
every displayed neuronwidgets widget, or composed view containing one, also carry a ``text/html`` output:
the widget's standalone export (:func:`neuronwidgets.widgets.save_html`: bundle, CSS and state inlined, no
network) in an ``<iframe srcdoc>``. The HTML conversion then uses that output instead of the widget view
(which would need a kernel or scripts from a CDN). Matplotlib figures are embedded images. No page
loads anything from the network: MathJax and the widget manager's CDN scripts are left out.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_HOOK_TAG = "neuronwidgets-course-hook"
_HOOK = f"""# {_HOOK_TAG}
from neuronwidgets.course_pages import install_page_hook as _nw_install_page_hook
_nw_install_page_hook()
del _nw_install_page_hook
"""

# resizes each widget frame to its content, which the widget draws after the page has loaded
_RESIZE = """<script>
(() => {
  const fit = (f) => {
    try { f.style.height = (f.contentDocument.documentElement.scrollHeight + 8) + "px"; } catch (e) {}
  };
  const all = () => document.querySelectorAll("iframe.nw-course-widget").forEach(fit);
  window.addEventListener("load", () => {
    all();
    document.querySelectorAll("iframe.nw-course-widget").forEach((f) => {
      try { new ResizeObserver(() => fit(f)).observe(f.contentDocument.documentElement); } catch (e) {}
    });
  });
  let n = 0; const t = setInterval(() => { all(); if (++n > 20) clearInterval(t); }, 500);
})();
</script>
"""


def _is_ours(widget: Any) -> bool:
    """A neuronwidgets widget or composed view, or a box with one inside."""
    if type(widget).__module__.startswith("neuronwidgets."):
        return True
    return any(_is_ours(c) for c in getattr(widget, "children", ()) or ())


def widget_frame(widget: Any) -> str:
    """The widget's standalone export page, in an ``<iframe srcdoc>`` that the course page resizes."""
    import tempfile

    from .widgets import save_html

    with tempfile.TemporaryDirectory(prefix="nw-course-") as tmp:
        page = save_html(widget, Path(tmp) / "widget.html", title=type(widget).__name__).read_text("utf-8")
    return (
        f'<iframe class="nw-course-widget" title="{html.escape(type(widget).__name__)}" '
        f'srcdoc="{html.escape(page, quote=True)}" style="width: 100%; border: 0; min-height: 80px;"></iframe>'
    )


def install_page_hook() -> None:
    """In a kernel: every displayed neuronwidgets widget (or box holding one) also returns its standalone
    export as ``text/html``. Used by :func:`build_course`; harmless elsewhere."""
    import anywidget
    import ipywidgets

    for cls in (ipywidgets.Widget, anywidget.AnyWidget):
        original = cls.__dict__.get("_repr_mimebundle_")
        if original is None or getattr(original, "_nw_course", False):
            continue
        cls._repr_mimebundle_ = _with_frame(original)  # type: ignore[method-assign]


def _with_frame(original: Any) -> Any:
    def _repr_mimebundle_(self: Any, **kwargs: Any) -> Any:
        bundle = original(self, **kwargs)
        data, meta = bundle if isinstance(bundle, tuple) else (bundle, None)
        if isinstance(data, dict) and _is_ours(self):
            try:
                data = {**data, "text/html": widget_frame(self)}
            except Exception as err:  # a page without this widget beats no page; say so in it
                data = {
                    **data,
                    "text/html": f"<p><em>(widget not exported: {html.escape(str(err))})</em></p>",
                }
        return (data, meta) if isinstance(bundle, tuple) else data

    _repr_mimebundle_._nw_course = True  # type: ignore[attr-defined]
    return _repr_mimebundle_


def _title(nb: Any, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, flags=re.M)
            if m:
                return m.group(1).strip()
    return fallback


def execute_notebook(path: Path, timeout: int = 600) -> Any:
    """Run ``path`` in a fresh kernel (working directory: its folder) with the page hook; returns the
    executed notebook without the hook cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(_HOOK))
    NotebookClient(nb, timeout=timeout, resources={"metadata": {"path": str(path.parent)}}).execute()
    nb.cells = [c for c in nb.cells if _HOOK_TAG not in c.source]
    return nb


def notebook_html(nb: Any, title: str) -> str:
    """The notebook as one HTML page with no network access: widget views replaced by their export."""
    import copy

    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data and "text/html" in data:
                data.pop(WIDGET_VIEW)
                data.pop("text/plain", None)
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_anchor_links = True
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    # no network: drop every script loaded from elsewhere (MathJax, RequireJS, the CDN widget manager)
    body = re.sub(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", "", body)
    body = re.sub(r"<link[^>]*\bhref=\"https?://[^\"]*\"[^>]*>", "", body)
    body = re.sub(r"<script type=\"text/x-mathjax-config\">.*?</script>", "", body, flags=re.S)
    # the template's module script that would import mermaid from a CDN (no diagrams in our notebooks)
    body = re.sub(
        r"<script type=\"module\">(?:(?!</script>).)*cdnjs\.cloudflare\.com.*?</script>", "", body, flags=re.S
    )
    return body.replace("</body>", _RESIZE + "</body>", 1)


def index_html(pages: Sequence[tuple[str, str]]) -> str:
    items = "\n".join(
        f'<li><a href="{html.escape(href, quote=True)}">{html.escape(title)}</a></li>'
        for href, title in pages
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>neuronwidgets course</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 32px auto; max-width: 760px; line-height: 1.5; }}
@media (prefers-color-scheme: dark) {{ body {{ background: #1e1e1e; color: #e6e6e6; }} a {{ color: #8ab4f8; }} }}
</style>
</head>
<body>
<h1>neuronwidgets: fine-grained interpretation and causation analysis, hands on</h1>
<p>Every notebook of the tutorial, executed. The widgets work in these pages with no kernel and no network
(hover, sort, select); what needs Python (recomputing, links between widgets) works in the notebooks.</p>
<ol>
{items}
</ol>
</body>
</html>
"""


def build_course(
    notebooks: str | Path,
    out: str | Path,
    *,
    names: Sequence[str] | None = None,
    timeout: int = 600,
    keep_executed: bool = True,
) -> list[Path]:
    """Execute every ``*.ipynb`` in ``notebooks`` (or the given ``names``, without suffix), write one HTML
    page per notebook and ``index.html`` into ``out``; with ``keep_executed`` also ``NAME.executed.ipynb``.
    Returns the page paths."""
    import nbformat

    src, dst = Path(notebooks), Path(out)
    if not src.is_dir():
        raise ValueError(f"notebooks must be a folder of .ipynb files, got {str(src)!r}")
    paths = sorted(src.glob("*.ipynb")) if names is None else [src / f"{n}.ipynb" for n in names]
    missing = [str(p) for p in paths if not p.exists()]
    if missing or not paths:
        raise ValueError(f"no such notebooks: {', '.join(missing) or f'none in {src}'}")
    dst.mkdir(parents=True, exist_ok=True)
    pages: list[Path] = []
    entries: list[tuple[str, str]] = []
    for path in paths:
        print(f"[course] executing {path.name}", flush=True)
        began = time.perf_counter()
        nb = execute_notebook(path, timeout=timeout)
        print(f"[course] {path.name} ran in {time.perf_counter() - began:.0f} s", flush=True)
        title = _title(nb, path.stem)
        if keep_executed:
            nbformat.write(nb, dst / f"{path.stem}.executed.ipynb")
        page = dst / f"{path.stem}.html"
        page.write_text(notebook_html(nb, title), encoding="utf-8")
        pages.append(page)
        entries.append((page.name, title))
    (dst / "index.html").write_text(index_html(entries), encoding="utf-8")
    return pages
