"""What the view tests share: page readers for the heatmap's tokens and a matrix's grid, the comparison of
page values with Python's, and a handle on a rendered notebook that asks its kernel for values."""

from __future__ import annotations

import json
import math
from typing import Any

from .harness import OpenNotebook, Tab

READ_TOKENS = """(root) => Array.from(root.querySelectorAll('span.nw-token')).map((e) => ({
  text: e.textContent, value: Number(e.dataset.value), marked: e.classList.contains('nw-marked'),
}))"""
READ_CELLS = """(root) => ({
  rows: Array.from(root.querySelectorAll('th.nw-rowhead')).map((e) => e.textContent),
  cols: Array.from(root.querySelectorAll('th.nw-col')).map((e) => e.textContent),
  values: Array.from(root.querySelectorAll('td.nw-cell')).map((e) => Number(e.dataset.value)),
})"""


def close_all(
    page: list[float], expected: list[float], what: str, *, rel_tol: float, abs_tol: float = 0.0
) -> None:
    """Assert the page shows as many values as Python computed, each within the given tolerances."""
    assert len(page) == len(expected), f"{what}: {len(page)} values on the page, {len(expected)} in Python"
    bad = [
        (i, p, e)
        for i, (p, e) in enumerate(zip(page, expected))
        if not math.isclose(p, e, rel_tol=rel_tol, abs_tol=abs_tol)
    ]
    assert not bad, f"{what}: page values differ from Python's at {bad[:5]}"


class Rendered:
    """A notebook running in a tab; ``VIEW`` (set by a subclass) selects the view under test. The
    notebook's kernel must have imported ``json`` for :meth:`py`."""

    VIEW = ""

    def __init__(self, tab: Tab, nb: OpenNotebook) -> None:
        self.tab, self.nb = tab, nb

    @property
    def view(self) -> Any:
        return self.tab.page.locator(self.VIEW).first

    def py(self, expr: str) -> Any:
        """``expr`` evaluated in the kernel, through JSON."""
        return json.loads(self.nb.kernel_exec(f"print(json.dumps({expr}))"))
