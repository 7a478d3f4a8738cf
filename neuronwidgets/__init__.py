"""neuronwidgets: Jupyter widgets for neuron-level interpretation and causation analysis of NLP models.

``neuronwidgets.core`` is headless (models, extraction, analyses); the widgets live in
``neuronwidgets.widgets`` and are imported lazily from here, so ``import neuronwidgets`` stays light.
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import Any

from .core import *  # noqa: F403
from .core import __all__ as _core_all

try:  # the one version string is pyproject.toml's, read from the installed package's metadata
    __version__ = _metadata.version("neuronwidgets")
except _metadata.PackageNotFoundError:  # pragma: no cover - source tree without an install
    __version__ = "0+unknown"

_WIDGETS = {
    "AblationPanel",
    "AttributionView",
    "InteractionView",
    "MatrixView",
    "NeuronExplorer",
    "NeuronTable",
    "PatchingGrid",
    "PatchingView",
    "ProbeReport",
    "TokenHeatmap",
    "save_html",
}

__all__ = [*_core_all, *sorted(_WIDGETS)]


def enable() -> None:
    """Show every result as its widget when it is a cell's value (see :mod:`neuronwidgets.extension`)."""
    from .extension import enable as _enable

    _enable()


def disable() -> None:
    """Undo :func:`enable`."""
    from .extension import disable as _disable

    _disable()


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext neuronwidgets``: results show as widgets, and the magics (:mod:`neuronwidgets.magics`)."""
    from .extension import load_ipython_extension as _load

    _load(ip)


def unload_ipython_extension(ip: Any) -> None:
    """``%unload_ext neuronwidgets``."""
    from .extension import unload_ipython_extension as _unload

    _unload(ip)


def __dir__() -> list[str]:
    """Module attributes plus the lazily imported widgets, so tab completion lists them."""
    return sorted({*globals(), *_WIDGETS})


def __getattr__(name: str) -> Any:
    if name in _WIDGETS:
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'neuronwidgets' has no attribute {name!r}")
