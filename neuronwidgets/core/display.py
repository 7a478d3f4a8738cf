"""How every result shows itself: three doors (``.to_frame()``, ``.plot()``, ``.show()``), a short text repr
and a compact HTML table, shared by all public result types through the :class:`Result` mixin.

- ``__repr__``: at most :data:`MAX_LINES` lines built with :func:`summary`: what the result is, its
  size, a few key numbers (never a raw array) and the doors to open next.
- ``_repr_html_``: the repr's first line over the first rows of ``to_frame()`` as a small styled table;
  needs no widget library, so it renders in every front end (marimo, VS Code, Colab, nbconvert HTML).
- ``show()``: the result's widget (``neuronwidgets.widgets``, imported only when called, so the core
  stays importable without any widget library).
- ``plot(ax=None)``: a matplotlib ``Axes`` (the main one when the figure has several panels; the whole
  figure is ``.figure``). It draws into ``ax`` when given; otherwise into a new headless
  ``matplotlib.figure.Figure`` (never pyplot, never ``show()``) made by :func:`new_axes`, whose Axes
  render their whole figure as PNG when they are the value of a notebook cell (``_repr_png_``: Jupyter,
  VS Code, Colab, nbconvert; marimo renders any matplotlib Artist itself). A result class without a
  figure of its own derives from :class:`TableResult` and gets horizontal bars of one ``to_frame()``
  column (``_plot_columns``).
"""

from __future__ import annotations

import functools
import html
import importlib
import io
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MAX_LINES = 12
DOORS = ".to_frame() · .plot() · .show()"
HTML_ROWS = 8
HTML_COLUMNS = 8

_STYLE = (
    "<style>.nw-result{font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:12px;"
    "color:var(--jp-ui-font-color1,inherit)}.nw-result table{border-collapse:collapse;margin:4px 0}"
    ".nw-result th,.nw-result td{padding:2px 8px;text-align:right;border-bottom:1px solid "
    "var(--jp-border-color2,#ddd)}.nw-result th{font-weight:600}.nw-result td:first-child,"
    ".nw-result th:first-child{text-align:left}.nw-result .nw-result-title{font-weight:600}"
    ".nw-result .nw-result-more{color:var(--jp-ui-font-color2,#777)}</style>"
)


def number(x: Any, digits: int = 4) -> str:
    """A float with ``digits`` significant digits, ``nan`` and integers as they are."""
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "nan" if math.isnan(f) else f"{f:.{digits}g}"


def clip(text: str, n: int = 60) -> str:
    """``text`` on one line, shortened to ``n`` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def listing(items: Iterable[Any], n: int = 5, width: int = 80) -> str:
    """The first ``n`` items joined by commas, ``…`` when there are more, shortened to ``width``."""
    items = list(items)
    text = ", ".join(str(i) for i in items[:n]) + (", …" if len(items) > n else "")
    return clip(text, width)


def summary(title: str, *lines: str, doors: str = DOORS) -> str:
    """A repr of at most :data:`MAX_LINES` lines: ``title``, the non-empty ``lines`` (indented; cut
    so that the doors line still fits) and ``→ doors``."""
    body = [f"  {line}" for line in lines if line]
    if len(body) > MAX_LINES - 2:
        body = [*body[: MAX_LINES - 3], f"  … ({len(body) - (MAX_LINES - 3)} more)"]
    return "\n".join([title, *body, f"  → {doors}"])


def frame_html(result: Any) -> str:
    """``_repr_html_`` of any result: the repr's first line over the first rows and columns of
    ``to_frame()`` (HTML-escaped), and how many there are."""
    title = html.escape(repr(result).splitlines()[0])
    try:
        frame = result.to_frame()
    except Exception:  # a to_frame that needs arguments (e.g. Activations): the repr alone
        frame = None
    if not isinstance(frame, pd.DataFrame):
        body = f"<pre>{html.escape(repr(result))}</pre>"
        return f'<div class="nw-result">{_STYLE}{body}</div>'
    shown = frame.iloc[:HTML_ROWS, :HTML_COLUMNS]
    with pd.option_context("display.max_colwidth", 40):
        table = shown.to_html(
            index=not isinstance(frame.index, pd.RangeIndex),
            escape=True,
            border=0,
            float_format=lambda x: number(x),
            na_rep="",
        )
    more = f"{len(frame):,} rows × {frame.shape[1]} columns · {html.escape(DOORS)}"
    return (
        f'<div class="nw-result">{_STYLE}<div class="nw-result-title">{title}</div>{table}'
        f'<div class="nw-result-more">{more}</div></div>'
    )


@functools.cache
def _figure_axes_class() -> type[Axes]:
    """The Axes class of the figures :func:`new_axes` makes (defined on first use: the core does not
    import matplotlib until something is plotted)."""
    from matplotlib.axes import Axes

    class FigureAxes(Axes):
        """A matplotlib ``Axes`` that shows its whole figure (PNG) as the value of a notebook cell: the
        figure is a plain ``matplotlib.figure.Figure``, which pyplot's inline backend does not draw."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            figure: Any = self.figure  # a root Figure: new_axes makes these Axes only on one
            figure.savefig(buffer, format="png", bbox_inches="tight")
            return buffer.getvalue()

    FigureAxes.__module__ = __name__
    return FigureAxes


def _check_axes(ax: Any, name: str) -> Axes:
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise TypeError(
            f"{name} must be a matplotlib Axes (or None for a new figure), got {type(ax).__name__}"
        )
    return ax


def new_axes(ax: Any = None, figsize: tuple[float, float] = (6.0, 4.0)) -> Axes:
    """The Axes a ``plot()`` draws into: ``ax`` itself when given (checked), otherwise the single Axes of a
    new headless ``matplotlib.figure.Figure`` of ``figsize`` inches (no pyplot), which shows the figure as
    a notebook cell's value.

    Raises:
        TypeError: If ``ax`` is neither ``None`` nor a matplotlib Axes."""
    if ax is not None:
        return _check_axes(ax, "ax")
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot(axes_class=_figure_axes_class())


def new_axes_row(ax: Any, n: int, figsize: tuple[float, float]) -> list[Axes]:
    """The ``n`` Axes of a figure with ``n`` panels side by side: ``ax`` when given (a sequence of ``n``
    Axes, checked), otherwise those of a new headless Figure as in :func:`new_axes`.

    Raises:
        TypeError: If ``ax`` is not ``None`` nor a sequence of matplotlib Axes.
        ValueError: If ``ax`` holds other than ``n`` Axes."""
    if ax is not None:
        from matplotlib.axes import Axes

        if isinstance(ax, Axes) or not hasattr(ax, "__iter__"):
            raise TypeError(
                f"ax must be a sequence of {n} matplotlib Axes (one per panel), got {type(ax).__name__}"
            )
        given = list(ax)
        if len(given) != n:
            raise ValueError(
                f"ax must be a sequence of {n} matplotlib Axes (one per panel), got {len(given)}"
            )
        return [_check_axes(a, f"ax[{i}]") for i, a in enumerate(given)]
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return list(fig.subplots(1, n, squeeze=False, subplot_kw={"axes_class": _figure_axes_class()})[0])


def bar_plot(
    frame: pd.DataFrame, label: str | None, value: str, *, k: int, title: str, ax: Any = None
) -> Axes:
    """Horizontal bars of ``frame[value]`` for the first ``k`` rows, labelled by ``frame[label]`` (or the
    index), drawn into ``ax`` (default: a new figure, see :func:`new_axes`)."""
    rows = frame.iloc[:k]
    values = pd.to_numeric(rows[value], errors="coerce").to_numpy(dtype=float)
    names = rows[label] if label is not None else rows.index
    labels = [clip(str(n), 40) for n in names]
    ax = new_axes(ax, (6.0, 0.28 * max(len(rows), 1) + 1.2))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, np.nan_to_num(values), color="tab:blue")
    ax.set_yticks(y, labels, fontsize="small")
    ax.set_xlabel(value)
    ax.set_title(title)
    return ax


def steps_bar(total: int, desc: str, progress: bool | None, *, auto: bool, unit: str = "it") -> Any:
    """A ``tqdm.auto`` bar of ``total`` steps: ``progress=True`` shows it, ``False`` never, ``None`` (the
    default of every long function, as in extraction) when ``auto`` says the work is long."""
    from tqdm.auto import tqdm

    show = progress if progress is not None else auto
    return tqdm(total=total, desc=desc, unit=unit, disable=not show)


class Result:
    """Mixin of every public result type: ``show()`` and ``_repr_html_`` (see the module docstring)."""

    __slots__ = ()

    def show(self) -> Any:
        """The widget that shows this result (``neuronwidgets.widgets``; needs ipywidgets/anywidget)."""
        module = importlib.import_module("neuronwidgets.widgets._show")
        return module.widget_for(self)

    def _repr_html_(self) -> str:
        return frame_html(self)


class TableResult(Result):
    """A result whose figure is bars of one :meth:`to_frame` column: ``_plot_columns`` is ``(label column,
    or None for the index, value column)``."""

    __slots__ = ()
    _plot_columns: ClassVar[tuple[str | None, str]] = (None, "")

    def to_frame(self) -> pd.DataFrame:
        raise NotImplementedError

    def plot(self, k: int = 20, *, title: str | None = None, ax: Any = None) -> Axes:
        """Horizontal bars of the first ``k`` rows of :meth:`to_frame` (column ``_plot_columns[1]``), drawn
        into ``ax`` (default: a new figure); returns the Axes."""
        label, value = self._plot_columns
        return bar_plot(
            self.to_frame(), label, value, k=k, title=title or f"{type(self).__name__}: {value}", ax=ax
        )
