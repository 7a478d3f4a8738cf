"""Course pages (``python -m neuronwidgets course build``) opened in headless Chromium from files, with no
kernel and no network: the index links to the page, the page's widget is drawn by its own front end inside
the page, and its numbers are the Python values. Where CI has built the real course (``build/course``),
one of its pages is opened too and must show a rendered widget."""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import numpy as np
import pytest

from .harness import KERNELSPEC, Tab, poll

REPO = Path(__file__).resolve().parents[2]
READ_TOKENS = """(root) => Array.from(root.querySelectorAll('span.nw-token')).map((e) => ({
  text: e.textContent, value: Number(e.dataset.value),
}))"""

VALUES = (np.arange(12, dtype=np.float32).reshape(6, 2) - 5.5) / 2
CELLS = [
    "import numpy as np\nfrom neuronwidgets import TokenHeatmap, as_activations",
    "values = (np.arange(12, dtype=np.float32).reshape(6, 2) - 5.5) / 2\n"
    "words = [['the', 'cat', 'sat'], ['a', '<b>dog</b>', 'ran']]\n"
    "acts = as_activations(values, lengths=[3, 3], words=words)\n"
    "TokenHeatmap(acts, neuron='layer.0.resid:1')",
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]);",
]


def _offline(tab: Tab) -> list[str]:
    """Every request the tab makes to the network (none may happen)."""
    seen: list[str] = []
    tab.page.on("request", lambda r: seen.append(r.url) if r.url.startswith(("http:", "https:")) else None)
    return seen


@pytest.mark.browser
def test_built_course_page_renders_its_widget_offline(tab: Tab, tmp_path: Path) -> None:
    from neuronwidgets.course_pages import build_course

    src = tmp_path / "notebooks"
    src.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.cells = [nbformat.v4.new_markdown_cell("# Mini lesson")] + [
        nbformat.v4.new_code_cell(c) for c in CELLS
    ]
    nbformat.write(nb, src / "mini.ipynb")
    pages = build_course(src, tmp_path / "course")
    assert [p.name for p in pages] == ["mini.html"]
    html = pages[0].read_text(encoding="utf-8")
    assert '<script src="http' not in html and "cdnjs.cloudflare.com" not in html
    assert (tmp_path / "course" / "mini.executed.ipynb").exists()

    requests = _offline(tab)
    tab.page.goto((tmp_path / "course" / "index.html").as_uri())
    tab.page.click("text=Mini lesson")
    tab.page.wait_for_url("**/mini.html")
    frame = tab.page.frame_locator("iframe.nw-course-widget").first
    frame.locator("span.nw-token").first.wait_for(timeout=30_000)
    tokens = frame.locator(".nw-heatmap").first.evaluate(READ_TOKENS)
    assert [t["text"] for t in tokens] == ["the", "cat", "sat", "a", "<b>dog</b>", "ran"]
    for got, want in zip([t["value"] for t in tokens], VALUES[:, 1]):
        assert math.isclose(got, float(want), rel_tol=1e-6)
    assert tab.page.locator("img").count() >= 1  # the matplotlib figure, embedded
    height = poll(
        lambda: tab.page.locator("iframe.nw-course-widget").first.bounding_box()["height"],
        lambda h: h > 80,
        10,
        what="the widget frame resized to its content",
    )
    assert height > 80
    assert not requests, f"the course page reached the network: {requests[:5]}"
    errors = [c for c in tab.console if "error" in c or "uncaught" in c]
    assert not errors, errors


@pytest.mark.browser
def test_ci_course_page_shows_a_widget(tab: Tab) -> None:
    course = REPO / "build" / "course"
    pages = sorted(course.glob("0*.html"))
    if not pages:
        pytest.skip("the course is not built here (scripts/test.sh builds it into build/course first)")
    requests = _offline(tab)
    tab.page.goto((course / "index.html").as_uri())
    links = tab.page.locator("li a").evaluate_all("(as) => as.map((a) => a.getAttribute('href'))")
    assert links and all((course / href).exists() for href in links), links
    tab.page.goto((course / links[0]).as_uri())
    frame = tab.page.frame_locator("iframe.nw-course-widget").first
    frame.locator("[class^='nw-'], [class*=' nw-']").first.wait_for(timeout=30_000)
    assert not requests, f"the course page reached the network: {requests[:5]}"
