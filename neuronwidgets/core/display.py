"""How every result shows itself: three doors (``.to_frame()``, ``.plot()``, ``.show()``), a short text repr
and a compact HTML table, shared by all public result types through the :class:`Result` mixin.

- ``__repr__``: at most :data:`MAX_LINES` lines built with :func:`summary`: what the result is, its
  size, a few key numbers (never a raw array) and the doors to open next.
- ``_repr_html_``: the repr's first line over the first rows of ``to_frame()`` as a small styled table;
  needs no widget library, so it renders in every front end (marimo, VS Code, Colab, nbconvert HTML).
- ``show()``: the result's widget (``neuronwidgets.widgets``, imported only when called, so the core
  stays importable without any widget library).
- ``plot()``: a matplotlib ``Figure``; a result class without a figure of its own derives from
  :class:`TableResult` and gets horizontal bars of one ``to_frame()`` column (``_plot_columns``).
"""

from __future__ import annotations

import html
import importlib
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def bar_plot(frame: pd.DataFrame, label: str | None, value: str, *, k: int, title: str) -> Figure:
    """Horizontal bars of ``frame[value]`` for the first ``k`` rows, labelled by ``frame[label]`` (or the
    index)."""
    from matplotlib.figure import Figure

    rows = frame.iloc[:k]
    values = pd.to_numeric(rows[value], errors="coerce").to_numpy(dtype=float)
    names = rows[label] if label is not None else rows.index
    labels = [clip(str(n), 40) for n in names]
    fig = Figure(figsize=(6.0, 0.28 * max(len(rows), 1) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    ax.barh(y, np.nan_to_num(values), color="tab:blue")
    ax.set_yticks(y, labels, fontsize="small")
    ax.set_xlabel(value)
    ax.set_title(title)
    return fig


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

    def plot(self, k: int = 20, *, title: str | None = None) -> Figure:
        """Horizontal bars of the first ``k`` rows of :meth:`to_frame` (column ``_plot_columns[1]``)."""
        label, value = self._plot_columns
        return bar_plot(self.to_frame(), label, value, k=k, title=title or f"{type(self).__name__}: {value}")
