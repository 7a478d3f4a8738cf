"""Every public name is documented in the Google style the API reference (napoleon) reads.

Walks ``neuronwidgets.core.__all__`` and the widgets' ``__all__``:

- a function has ``Args:`` naming each of its parameters (and no parameter it does not have),
  ``Returns:`` (``Yields:`` for a context manager or generator) and an ``Example:``;
- a class documents its constructor's parameters under ``Args:`` and has an ``Example:``; a plain
  result dataclass (no ``__init__`` of its own) documents its fields under ``Attributes:`` instead (its
  example is the function that returns it).

Whether the sections parse and every cross-reference resolves is checked by the docs build
(``scripts/docs.sh``, Sphinx with warnings as errors).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

import neuronwidgets.core as core
import neuronwidgets.widgets as widgets

SECTION = re.compile(r"^(\s*)([A-Z][A-Za-z ]*):\s*$")
ENTRY = re.compile(r"^\s*\*{0,2}([A-Za-z_][A-Za-z_0-9]*)\s*(\(.*\))?\s*:")

# Names whose docstrings are not converted yet (issue 11); this list only shrinks: a name that passes
# must be taken off it (test_outstanding_list_is_current).
OUTSTANDING: set[str] = set()


def _public() -> list[tuple[str, Any]]:
    names = [(n, getattr(core, n)) for n in core.__all__]
    names += [(n, getattr(widgets, n)) for n in widgets.__all__]
    return [(n, o) for n, o in names if inspect.isclass(o) or inspect.isroutine(o)]


def sections(doc: str) -> dict[str, list[str]]:
    """Google-style sections of a docstring: name → its (dedented) lines."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    indent = 0
    for line in inspect.cleandoc(doc).splitlines():
        m = SECTION.match(line)
        if m and m.group(2) in {
            "Args",
            "Arguments",
            "Attributes",
            "Returns",
            "Yields",
            "Raises",
            "Example",
            "Examples",
            "Note",
            "Notes",
            "Warning",
            "See Also",
        }:
            current = out.setdefault(m.group(2), [])
            indent = len(m.group(1))
            continue
        if current is not None:
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                current = None  # dedented prose ends the section
            else:
                current.append(line)
    return out


def entries(lines: list[str]) -> set[str]:
    """The names of a section's entries (``name (type): ...`` or ``name: ...`` at the first indent)."""
    body = [ln for ln in lines if ln.strip()]
    if not body:
        return set()
    first = min(len(ln) - len(ln.lstrip()) for ln in body)
    return {
        m.group(1)
        for ln in body
        if len(ln) - len(ln.lstrip()) == first and (m := ENTRY.match(ln)) is not None
    }


def _params(fn: Callable[..., Any], *, skip_first: bool) -> list[str]:
    params = list(inspect.signature(fn).parameters.values())
    if skip_first:
        params = params[1:]
    return [p.name for p in params]


def _own_init(cls: type) -> bool:
    """Whether a dataclass has an ``__init__`` written by hand (not the one ``@dataclass`` generates)."""
    init = cls.__dict__.get("__init__")
    return (
        init is not None
        and getattr(init, "__code__", None) is not None
        and (init.__code__.co_filename != "<string>")
    )


def problems(name: str, obj: Any) -> list[str]:
    doc = inspect.getdoc(obj) or ""
    if not doc.strip():
        return [f"{name} has no docstring"]
    found = sections(doc)
    out = []
    plain_dataclass = dataclasses.is_dataclass(obj) and not _own_init(obj)
    if "Example" not in found and "Examples" not in found and not plain_dataclass:
        out.append(f"{name}: no Example section")  # a result type's example is the function making it
    if inspect.isclass(obj):
        if plain_dataclass:
            fields = {f.name for f in dataclasses.fields(obj) if f.init and not f.name.startswith("_")}
            documented = entries(found.get("Attributes", [])) | entries(found.get("Args", []))
            if not found.get("Attributes") and not found.get("Args"):
                out.append(f"{name}: a dataclass documents its fields under Attributes (or Args)")
            elif missing := sorted(fields - documented):
                out.append(f"{name}: fields not documented: {missing}")
            return out
        params = [p for p in _params(obj, skip_first=False) if p not in {"args", "kwargs"}]
        fn: Callable[..., Any] = obj
    else:
        fn = inspect.unwrap(obj)
        params = [p for p in _params(fn, skip_first=False) if p not in {"args", "kwargs"}]
        if "Returns" not in found and "Yields" not in found:
            out.append(f"{name}: no Returns (or Yields) section")
    if params and "Args" not in found:
        out.append(f"{name}: no Args section for {params}")
    elif params:
        documented = entries(found["Args"])
        if missing := [p for p in params if p not in documented]:
            out.append(f"{name}: parameters not in Args: {missing}")
        if extra := sorted(documented - set(_params(fn, skip_first=False))):
            out.append(f"{name}: Args documents parameters it does not have: {extra}")
    return out


@pytest.mark.parametrize(("name", "obj"), _public(), ids=lambda x: x if isinstance(x, str) else "")
def test_public_name_is_documented(name: str, obj: Any) -> None:
    if name in OUTSTANDING:
        pytest.skip(f"{name}: docstring not converted yet (OUTSTANDING in tests/test_docstrings.py)")
    found = problems(name, obj)
    assert not found, "\n".join(found)


def test_outstanding_list_is_current() -> None:
    public = dict(_public())
    assert set(public) >= OUTSTANDING, f"not public any more: {sorted(OUTSTANDING - set(public))}"
    done = sorted(n for n in OUTSTANDING if not problems(n, public[n]))
    assert not done, f"documented now, take them off OUTSTANDING: {done}"


def test_the_checker_can_fail() -> None:
    def undocumented(x: int, *, y: int = 0) -> int:
        """Adds.

        Args:
            x: A number.

        Returns:
            The sum.
        """
        return x + y

    assert problems("undocumented", undocumented) == [
        "undocumented: no Example section",
        "undocumented: parameters not in Args: ['y']",
    ]

    @dataclasses.dataclass(frozen=True)
    class Result:
        """A result.

        Attributes:
            a: The a.
        """

        a: int
        b: int

    assert problems("Result", Result) == ["Result: fields not documented: ['b']"]
