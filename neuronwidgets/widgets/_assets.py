"""Front-end bundles and the binary array codec shared by every widget (docs/architecture.md, "The Python ↔ browser contract")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

STATIC = Path(__file__).resolve().parent.parent / "static"


class BundleMissingError(RuntimeError):
    """The built JavaScript of a widget is missing (a source checkout that was never built)."""


def bundle_path(name: str) -> Path:
    return STATIC / f"{name}.js"


def _missing(name: str, js: Path) -> BundleMissingError:
    return BundleMissingError(
        f"the {name} front end is not built: {js} is missing. In a source checkout build it with "
        "`cd js && npm ci && npm run build` (needs Node.js >= 18), or install a released wheel, which "
        "ships the bundles."
    )


def bundle_file(name: str, suffix: str = ".js") -> Path | str:
    """The class-level ``_esm`` (``suffix=".js"``) or ``_css`` (``".css"``) of widget ``name``: the file as a
    ``Path`` (anywidget reads it once per class and, with ``ANYWIDGET_HMR=1``, reloads it on change), or
    ``""`` when it is not built, so that importing the widgets still works and :func:`require_bundle` says
    what to do when one is made."""
    path = STATIC / f"{name}{suffix}"
    return path if path.is_file() else ""


def require_bundle(name: str) -> None:
    """Raise :class:`BundleMissingError` (how to build it) when widget ``name``'s JavaScript is missing."""
    js = bundle_path(name)
    if not js.is_file():
        raise _missing(name, js)


def encode_array(values: Any) -> dict[str, Any]:
    """``{view, dtype, shape}`` with the float32 little-endian bytes as a memoryview: ipywidgets sends it as
    a binary buffer, never as a JSON list."""
    arr = np.ascontiguousarray(values, dtype="<f4")
    return {"view": memoryview(arr.tobytes()), "dtype": "float32", "shape": list(arr.shape)}


def decode_array(encoded: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_array` (for tests and exports)."""
    dtype = {"float32": "<f4", "float16": "<f2", "float64": "<f8"}[encoded["dtype"]]
    return np.frombuffer(bytes(encoded["view"]), dtype=dtype).reshape(encoded["shape"])


class BrowserStateGuard:
    """Mixin for widgets whose trait validators must not raise on a value the browser sent.

    While :meth:`set_state` applies state from the browser, ``_from_frontend`` is true: validators then
    store a refused value's message in the widget's ``error`` trait instead of raising into the comm
    handler (where nobody would see the exception). Values set from Python still raise.
    """

    _from_frontend = False

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """State from the browser: a refused value becomes ``error`` instead of an exception."""
        self._from_frontend = True
        try:
            super().set_state(sync_data)  # type: ignore[misc]
        finally:
            self._from_frontend = False
