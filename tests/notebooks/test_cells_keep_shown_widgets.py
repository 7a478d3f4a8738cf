"""The notebooks, read as a student runs them top to bottom: a cell must not change a widget that an
earlier cell showed unless that is the point, and then it says so, naming the widget *above* (the words
"above" and "follows", in the cell or in the markdown just above it: "the heatmap above follows"). "The
widget follows" alone is not enough: the tour said that, and readers still took the changed heatmap for
the one its heading describes.

Regression (browser audit): in the tour, run all, the punctuation heatmap showed a neuron that a later
cell set, under the punctuation heading. Static (no kernel): the notebooks are parsed, not run.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").rglob("*.ipynb"))
# methods that change what a widget shows (the widgets' public setters and actions)
MUTATING_PREFIXES = ("set_", "switch_", "add_", "send_", "search", "reset", "select")
BOXES = {"VBox", "HBox", "GridBox", "Tab", "Accordion", "display"}


def _code(source: str) -> ast.Module | None:
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _shown(tree: ast.Module) -> set[str]:
    """Names of the widgets a cell shows: its last expression, a name or a box/display of names."""
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return set()
    value = tree.body[-1].value
    names: set[str] = set()
    if isinstance(value, ast.Name):
        names.add(value.id)
    elif isinstance(value, ast.Call):
        func = value.func
        fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if fname in BOXES:
            for arg in value.args:
                for node in ast.walk(arg):
                    if isinstance(node, ast.Name):
                        names.add(node.id)
    return names


def _rebound(tree: ast.Module) -> set[str]:
    return {
        t.id
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }


def _mutations(tree: ast.Module, shown: set[str]) -> list[str]:
    """Changes of ``shown`` widgets, statement by statement (a name bound anew is a new widget)."""
    out = []
    shown = set(shown)
    for statement in tree.body:
        out += _changes(statement, shown)
        shown -= _rebound(ast.Module(body=[statement], type_ignores=[]))
    return out


def _changes(tree: ast.AST, shown: set[str]) -> list[str]:
    out = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in shown:
                out.append(f"{t.value.id}.{t.attr} = ...")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in shown
            and node.func.attr.startswith(MUTATING_PREFIXES)
        ):
            out.append(f"{node.func.value.id}.{node.func.attr}(...)")
    return out


def violations(cells: list[dict]) -> list[str]:
    """``cell i: what`` for every unannounced change of a widget shown by an earlier cell."""
    shown: set[str] = set()
    last_markdown = ""
    found = []
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            last_markdown = source
            continue
        if cell["cell_type"] != "code" or (tree := _code(source)) is None:
            continue
        text = (source + last_markdown).lower()
        said = "follows" in text and "above" in text
        if not said:
            found += [f"cell {i}: {m}" for m in _mutations(tree, shown)]
        shown = (shown - _rebound(tree)) | _shown(tree)
    return found


def _cells(code: list[str], markdown_before: dict[int, str] | None = None) -> list[dict]:
    cells: list[dict] = []
    for i, src in enumerate(code):
        if markdown_before and i in markdown_before:
            cells.append({"cell_type": "markdown", "source": markdown_before[i]})
        cells.append({"cell_type": "code", "source": src})
    return cells


def test_the_check_finds_a_silent_change_and_accepts_an_announced_one() -> None:
    silent = _cells(["heatmap = make()\nheatmap", 'heatmap.neuron = "layer.2.mlp:101"'])
    assert violations(silent) == ["cell 1: heatmap.neuron = ..."]
    boxed = _cells(["ipywidgets.VBox([table, heatmap])", "table.select(3)\npanel.set_scales({})"])
    assert violations(boxed) == ["cell 1: table.select(...)"]
    announced = _cells(["panel", "panel.switch_off_top(3)  # the panel above follows"])
    assert violations(announced) == []
    by_markdown = _cells(["panel", "panel.switch_off_top(3)"], {1: "From Python (the panel above follows)"})
    assert violations(by_markdown) == []
    vague = _cells(["heatmap", "heatmap.neuron = 'x'"], {1: "Pick another neuron (the widget follows)"})
    assert violations(vague) == ["cell 2: heatmap.neuron = ..."]  # the tour's old wording
    new_widget = _cells(["heatmap", "heatmap = make()\nheatmap.neuron = 'x'"])
    assert violations(new_widget) == []  # a new widget under the same name: nothing shown changes
    read_only = _cells(["panel", "panel.to_frame()\nprint(panel.effects)"])
    assert violations(read_only) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_no_cell_silently_changes_a_widget_shown_earlier(path: Path) -> None:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    assert violations(cells) == [], (
        f"{path.name}: a cell changes a widget shown by an earlier cell; run top to bottom, the earlier "
        "output then shows the later state. Show a new widget, or say so ('the panel above follows') if it is the point."
    )
