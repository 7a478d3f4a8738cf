"""The layering of the package, as docs/architecture.md draws it, checked on the source.

- widgets → core, never back; inside core, each subpackage imports only from layers below it;
- no import cycle between modules (module-level imports; imports inside functions or under
  ``TYPE_CHECKING`` do not run at import time and are exempt);
- no private name (``_x``) imported from another subpackage;
- no module over 600 lines, and no pointer to a design file outside the repository.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "neuronwidgets"
CORE = PKG / "core"

# lower number = lower layer; a subpackage may import from its own layer's peers only if listed here
LAYERS = {
    "assets": 0,
    "display": 0,
    "plotting": 0,
    "models": 1,
    "results": 2,
    "data": 2,
    "store": 3,
    "probing": 4,
    "similarity": 4,
    "attribution": 4,
    "interventions": 4,
    "concepts": 5,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path, *, module_level_only: bool) -> list[tuple[str, ast.ImportFrom]]:
    """``(resolved module, node)`` of each ``from … import``: all of them, or only those that run at import
    time (top level, inside ``try``/``if``, but not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    if not module_level_only:
        return [(_resolve(path, n), n) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    out: list[tuple[str, ast.ImportFrom]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.ImportFrom):
                out.append((_resolve(path, node), node))
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + [s for h in node.handlers for s in h.body] + node.orelse)

    visit(tree.body)
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["neuronwidgets", "core"] or len(parts) < 3:
        return None
    return parts[2]


FILES = sorted(PKG.rglob("*.py"))


def test_widgets_import_core_never_the_reverse() -> None:
    for path in sorted(CORE.rglob("*.py")):
        for module, _ in _imports(path, module_level_only=False):
            assert not module.startswith("neuronwidgets.widgets"), f"{path} imports {module}"


def test_core_subpackages_import_only_lower_layers() -> None:
    for path in sorted(CORE.rglob("*.py")):
        own = _layer(_module_name(path))
        if own is None:  # core/__init__.py re-exports everything
            continue
        assert own in LAYERS, (
            f"{path}: subpackage {own!r} is not placed in a layer (tests/test_architecture.py)"
        )
        for module, _ in _imports(path, module_level_only=False):
            other = _layer(module)
            if other is None or other == own:
                continue
            assert other in LAYERS, f"{path} imports {module}, which is in no layer"
            assert LAYERS[other] < LAYERS[own], (
                f"{path} ({own}, layer {LAYERS[own]}) imports {module} ({other}, layer {LAYERS[other]}):"
                " an import from the same or a higher layer"
            )


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    names = {_module_name(p) for p in FILES}
    for path in FILES:
        deps = graph.setdefault(_module_name(path), set())
        for module, node in _imports(path, module_level_only=True):
            for target in [module] + [f"{module}.{a.name}" for a in node.names]:
                if target in names and target != _module_name(path):
                    deps.add(target)
    # packages import their submodules by design; a cycle through an __init__ re-export is not one
    packages = {_module_name(p) for p in FILES if p.name == "__init__.py"}
    state: dict[str, int] = {}

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep in packages:
                continue
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep] if dep in stack else [node, dep]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if dep not in state:
                dfs(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state and node not in packages:
            dfs(node, [node])


def test_no_private_name_crosses_a_subpackage() -> None:
    for path in sorted(CORE.rglob("*.py")):
        own = _layer(_module_name(path))
        for module, node in _imports(path, module_level_only=False):
            other = _layer(module)
            if other is None or other == own:
                continue
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{path} imports private {private} from {module}"
    for path in sorted((PKG / "widgets").rglob("*.py")):
        for module, node in _imports(path, module_level_only=False):
            if module.startswith("neuronwidgets.core"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path} imports private {private} from {module}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_over_600_lines(path: Path) -> None:
    n = len(path.read_text().splitlines())
    assert n <= 600, f"{path.relative_to(PKG)} has {n} lines: split it by responsibility"


# the guide this project started from lived outside the repository; spelled in parts so that this
# test does not itself contain the pointer it looks for
_OUTSIDE_GUIDE = "DESIGN" + ".md"


def test_no_pointer_to_a_design_file_outside_the_repository() -> None:
    roots = [PKG, PKG.parent / "js", PKG.parent / "tests", PKG.parent / "bench", PKG.parent / "notebooks"]
    for root in roots:
        for path in root.rglob("*"):
            if "node_modules" in path.parts or not path.is_file():
                continue
            if path.suffix not in {".py", ".ts", ".md", ".ipynb", ".css", ".mjs"}:
                continue
            text = path.read_text(errors="replace")
            assert _OUTSIDE_GUIDE not in text, (
                f"{path} points to {_OUTSIDE_GUIDE}, which is not in this repository"
            )
