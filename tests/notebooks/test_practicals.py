"""Every notebook ends with its practical, and every exercise is both asked and solved: the notebook's
"Practical" section calls check() on each of its exercises with names the notebook defines earlier, and its
solutions notebook (executed in CI) checks each one too. Static: the notebooks are parsed, not run."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from neuronwidgets.course import EXERCISES

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
PRACTICAL = sorted({e.notebook for e in EXERCISES.values()})


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _code(cell: dict) -> ast.Module:
    source = "".join(cell["source"])
    return ast.parse("\n".join(s for s in source.splitlines() if not s.lstrip().startswith(("%", "!"))))


def _checked(cells: list[dict]) -> set[str]:
    found = set()
    for c in cells:
        if c["cell_type"] == "code":
            found |= set(re.findall(r'check\("(\d\d\.\d)"', "".join(c["source"])))
    return found


@pytest.mark.parametrize("name", PRACTICAL)
def test_the_practical_ends_the_notebook_and_asks_every_exercise(name: str) -> None:
    cells = _cells(NOTEBOOKS / f"{name}.ipynb")
    starts = [i for i, c in enumerate(cells) if "".join(c["source"]).startswith("## Practical")]
    assert len(starts) == 1, f"{name}: one '## Practical' section expected"
    practical = cells[starts[0] :]
    assert all(
        "check(" in "".join(c["source"])
        or c["cell_type"] == "markdown"
        or "exercises(" in "".join(c["source"])
        for c in practical
    )
    wanted = {e.id for e in EXERCISES.values() if e.notebook == name}
    assert _checked(practical) == wanted
    # the objects passed to check() are defined before the practical (a NameError would stop the notebook)
    defined: set[str] = set()
    for c in cells[: starts[0]]:
        if c["cell_type"] == "code":
            for node in ast.walk(_code(c)):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    defined.add(node.id)
                elif isinstance(node, ast.FunctionDef):
                    defined.add(node.name)
    for c in practical:
        if c["cell_type"] != "code":
            continue
        for node in ast.walk(_code(c)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "check":
                for kw in node.keywords:
                    used = {n.id for n in ast.walk(kw.value) if isinstance(n, ast.Name)}
                    assert used <= defined | {"answer", "neuron"}, (name, kw.arg, used - defined)
                ex = EXERCISES[node.args[0].value]  # type: ignore[attr-defined]
                assert {kw.arg for kw in node.keywords} == set(ex.needs), (ex.id, ex.needs)


@pytest.mark.parametrize("name", PRACTICAL)
def test_the_solutions_check_and_assert_every_exercise(name: str) -> None:
    cells = _cells(NOTEBOOKS / "solutions" / f"{name}_solutions.ipynb")
    wanted = {e.id for e in EXERCISES.values() if e.notebook == name}
    assert _checked(cells) == wanted
    asserted = set()
    for c in cells:
        asserted |= set(re.findall(r'assert evaluate\("(\d\d\.\d)"', "".join(c["source"])))
    assert asserted == wanted
