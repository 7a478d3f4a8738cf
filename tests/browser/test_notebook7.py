"""Notebook 7 (the ``notebook`` package, ``jupyter notebook``) in headless Chromium: a TokenHeatmap made in a
cell renders with Python's words and values, a NeuronRanking left as a cell's value after
``%load_ext neuronwidgets`` renders as a NeuronTable, and a result's ``.plot()`` (an Axes) shows its figure
as an image. The server is the JupyterLab harness's (same isolation and clean-up) with another front end.

Notebook 7 starts its application on the window's ``load`` event and exposes it as ``window.jupyterapp``
(``--JupyterNotebookApp.expose_app_in_browser=True``); its shell lists the notebook panel in ``main`` like
JupyterLab's, so the harness's page helpers (open, run all, read the cells) work unchanged.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from .harness import LabServer, Tab, poll, running_notebook, setup_checks

SHOTS = Path("/tmp/nw-shots")
WORDS = ["The", "film", "was", "not", "bad"]
SCORES = [0.5, -1.25, 2.0, -0.375, 0.0625]  # exact in float32: the page must show them unchanged
NEURONS = {"layer.0.mlp:1": 2.0, "layer.1.mlp:7": 1.5, "layer.2.mlp:3": -0.5}

CELLS = [
    "import numpy as np\n"
    "import neuronwidgets as nw\n"
    f"heatmap = nw.TokenHeatmap.from_scores({WORDS!r}, np.array({SCORES!r}, dtype=np.float32))\n"
    "heatmap",
    "%load_ext neuronwidgets\n"
    f"ranking = nw.NeuronRanking.from_scores({list(NEURONS)!r}, np.array({list(NEURONS.values())!r}), "
    "method='test')\n"
    "ranking",
    "ranking.plot()",
]
#: uncaught errors of Notebook 7 itself: seen in the same server on a notebook holding only ``1+1``
NOTEBOOK7_OWN = {"uncaught: Cannot read properties of undefined (reading 'schema')"}
HEATMAP = ".nw-root.nw-heatmap"
TABLE = ".nw-root.nw-table"
READ_TOKENS = """(root) => Array.from(root.querySelectorAll('span.nw-token')).map((e) => ({
  text: e.textContent, value: Number(e.dataset.value),
}))"""


class NotebookServer(LabServer):
    """``jupyter notebook`` (Notebook 7) of this interpreter, isolated like :class:`LabServer`."""

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("lab")] = "notebook"
        return [*cmd, "--JupyterNotebookApp.expose_app_in_browser=True"]

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/notebooks/{quote(name)}?token={self.token}"


@pytest.fixture(scope="module")
def notebook_server(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookServer]:
    if importlib.util.find_spec("notebook") is None:
        pytest.skip("needs Notebook 7: pip install 'notebook==7.*' (in the dev extra)")
    server = NotebookServer(tmp_path_factory.mktemp("notebook7"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.mark.browser
def test_widgets_results_and_plots_render_in_notebook7(notebook_server: NotebookServer, browser) -> None:
    with running_notebook(notebook_server, browser, "notebook7.ipynb", CELLS) as (tab, nb):
        assert isinstance(tab, Tab)
        with setup_checks(tab, "notebook7"):
            nb.wait_for(f"{HEATMAP} span.nw-token")
            nb.wait_for(f"{TABLE} tr.nw-row")
            nb.wait_for(".jp-OutputArea-output img")
        page = tab.page
        shell = page.evaluate("() => [document.body.dataset.notebook, window.jupyterapp.name]")
        assert "/notebooks/" in page.url and shell[0] == "notebooks", f"not Notebook 7's page: {shell}"

        tokens = page.locator(HEATMAP).first.evaluate(READ_TOKENS)
        assert [t["text"] for t in tokens] == WORDS
        for t, expected in zip(tokens, SCORES):
            assert math.isclose(t["value"], expected, rel_tol=0, abs_tol=0), (t, expected)

        rows = poll(
            lambda: page.locator(f"{TABLE} tr.nw-row").evaluate_all(
                "(rs) => rs.map((r) => r.dataset.address)"
            ),
            lambda r: len(r) == len(NEURONS),
            30,
            what="one NeuronTable row per neuron",
        )
        assert rows == sorted(NEURONS, key=lambda n: -NEURONS[n])  # the ranking's order, best first

        img = page.locator(".jp-OutputArea-output img").first
        size = img.evaluate("(e) => [e.naturalWidth, e.naturalHeight]")
        assert size[0] > 200 and size[1] > 50, f"the plot's image is {size} px"
        assert nb.kernel_exec("print(type(ranking.plot()).__name__)").strip() == "FigureAxes"

        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "notebook7.png"), full_page=True)
        errors = [c for c in tab.console if c.startswith("uncaught") and c not in NOTEBOOK7_OWN]
        assert not errors, errors
        assert not tab.dialogs, tab.dialogs
