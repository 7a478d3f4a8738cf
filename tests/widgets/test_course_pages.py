"""Course pages without a browser: a widget becomes its standalone export in an iframe, the page has no
script or stylesheet from the network, the index links every page, and the CLI names the command."""

from __future__ import annotations

import html

import nbformat
import numpy as np

from neuronwidgets import TokenHeatmap, as_activations
from neuronwidgets.cli import main
from neuronwidgets.course_pages import WIDGET_VIEW, index_html, install_page_hook, notebook_html, widget_frame


def _heatmap() -> TokenHeatmap:
    acts = as_activations(
        np.arange(6, dtype=np.float32).reshape(3, 2), lengths=[3], words=[["a", "<b>", "c"]]
    )
    return TokenHeatmap(acts, neuron="layer.0.resid:1")


def test_widget_frame_embeds_the_standalone_export() -> None:
    frame = widget_frame(_heatmap())
    assert frame.startswith('<iframe class="nw-course-widget"')
    page = html.unescape(frame.split('srcdoc="', 1)[1].rsplit('" style=', 1)[0])
    assert "data:text/javascript;base64," in page and 'type="application/json"' in page
    state = page.split('id="nw-states">', 1)[1].split("</script>", 1)[0]
    assert "<b>" not in state and "\\u003cb\\u003e" in state  # the word is data, escaped in the state


def test_the_hook_adds_the_export_to_a_widgets_mimebundle() -> None:
    install_page_hook()
    install_page_hook()  # idempotent
    w = _heatmap()
    bundle = w._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert WIDGET_VIEW in data and data["text/html"].startswith('<iframe class="nw-course-widget"')


def test_page_has_no_network_resources_and_prefers_the_export() -> None:
    nb = nbformat.v4.new_notebook()
    out = nbformat.v4.new_output(
        "display_data",
        data={WIDGET_VIEW: {"model_id": "x", "version_major": 2}, "text/html": "<p id='mark'>exported</p>"},
    )
    cell = nbformat.v4.new_code_cell("w", outputs=[out])
    nb.cells = [nbformat.v4.new_markdown_cell("# Title $x^2$"), cell]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    page = notebook_html(nb, "Title")
    assert "exported</p>" in page and WIDGET_VIEW not in page
    assert '<script src="http' not in page and "cdnjs.cloudflare.com" not in page
    assert "iframe.nw-course-widget" in page  # the resize script
    assert cell.outputs[0]["data"][WIDGET_VIEW]  # the notebook given is left as it was


def test_index_links_every_page_escaped() -> None:
    page = index_html([("a.html", "A <lesson>"), ("b.html", "B")])
    assert '<a href="a.html">A &lt;lesson&gt;</a>' in page and 'href="b.html"' in page


def test_cli_course_build_rejects_a_missing_folder(tmp_path, capsys) -> None:
    import pytest

    with pytest.raises(ValueError, match="notebooks must be a folder"):
        main(["course", "build", str(tmp_path / "out"), "--notebooks", str(tmp_path / "nope")])
