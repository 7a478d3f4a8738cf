"""The notebook extension: ``%load_ext neuronwidgets`` (or :func:`enable`) makes every result *show
itself* as its widget when it is the value of a cell; ``%unload_ext neuronwidgets`` (or :func:`disable`)
undoes it.

How the two display paths relate:

- **Without the extension** every result still renders everywhere, through methods of its own that need
  no widget library: ``__repr__`` (a short text summary) and ``_repr_html_`` (a compact HTML table).
  Front ends that load no IPython extension (marimo, VS Code, Colab, nbconvert HTML, GitHub) use these;
  ``result.show()`` returns the live widget anywhere anywidget runs (e.g. the value of a marimo cell).
- **With the extension** IPython's mimebundle formatter is told, per result type, to answer with the
  widget of :func:`neuronwidgets.widgets._show.widget_for` (an ``application/vnd.jupyter.widget-view+json``
  view), keeping the text and HTML as fallbacks for viewers without a kernel. The extension also adds the
  magics (:mod:`neuronwidgets.magics`).

Widget rendering is opt-in because a widget needs a live kernel (a saved notebook shows the HTML table
instead) and building one costs more than printing a table.
"""

from __future__ import annotations

import warnings
from typing import Any

_REGISTERED: dict[int, list[type]] = {}


def result_types() -> list[type]:
    """The result types that have a widget (the rest keep their HTML table when the extension is on)."""
    from .widgets._show import BUILDERS

    return list(BUILDERS)


def _as_widget_bundle(result: Any) -> dict[str, Any] | None:
    """The widget's mimebundle for ``result``; ``None`` (IPython then falls back to text/HTML) when the
    widget cannot be built, with the reason as a warning."""
    from .widgets._show import widget_for

    try:
        widget = widget_for(result)
    except Exception as err:  # a display must never raise: show the table and say why
        warnings.warn(
            f"neuronwidgets: no widget for this {type(result).__name__} ({err}); showing its table",
            stacklevel=2,
        )
        return None
    bundle: dict[str, Any] = widget._repr_mimebundle_()
    return bundle


def _shell(ip: Any) -> Any:
    if ip is not None:
        return ip
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        get_ipython = None
    shell = get_ipython() if get_ipython is not None else None
    if shell is None:
        raise RuntimeError(
            "neuronwidgets.enable() needs a running IPython kernel (JupyterLab, Notebook, VS Code, Colab); "
            "elsewhere (marimo, scripts) call result.show() to get the widget"
        )
    return shell


def enable(ip: Any = None) -> None:
    """Render every neuronwidgets result as its widget when it is the value of a cell (IPython: the
    current shell, or ``ip``). Idempotent; undone by :func:`disable`."""
    shell = _shell(ip)
    formatter = shell.display_formatter.mimebundle_formatter
    types = result_types()
    for cls in types:
        formatter.for_type(cls, _as_widget_bundle)
    _REGISTERED[id(shell)] = types


def disable(ip: Any = None) -> None:
    """Undo :func:`enable`: results render as their text and HTML table again."""
    shell = _shell(ip)
    formatter = shell.display_formatter.mimebundle_formatter
    for cls in _REGISTERED.pop(id(shell), []):
        formatter.pop(cls, None)


def enabled(ip: Any = None) -> bool:
    """Whether :func:`enable` is in effect for the shell."""
    return id(_shell(ip)) in _REGISTERED


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext neuronwidgets``: widget rendering (:func:`enable`) and the magics."""
    from .magics import register

    enable(ip)
    register(ip)


def unload_ipython_extension(ip: Any) -> None:
    """``%unload_ext neuronwidgets``: results render as text/HTML again and the magics are gone."""
    from .magics import unregister

    disable(ip)
    unregister(ip)
