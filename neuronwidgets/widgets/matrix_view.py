"""MatrixView: a labelled matrix of values (layer × token attributions, token × token interactions) on the
TokenHeatmap's symmetric diverging scale, with a selectable cell.

The data (labels and a float32 binary buffer) are answers set from Python with :meth:`MatrixView.set_data`;
the browser chooses ``selected`` (a ``[row, col]`` cell, ``[]`` for none), which Python checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from ._assets import BrowserStateGuard, bundle_file, decode_array, encode_array, require_bundle
from ._export import write_standalone_html

_SYNCED = (
    "row_labels",
    "col_labels",
    "values",
    "label",
    "row_title",
    "col_title",
    "annotate",
    "selected",
    "error",
)


class MatrixView(BrowserStateGuard, anywidget.AnyWidget):
    """A matrix of values with labelled rows and columns, coloured on the shared symmetric diverging scale
    (negative purple, zero the background, positive orange); hover or use the arrow keys to read a cell,
    click (or Enter) to select it.

    ``MatrixView(matrix, row_labels, col_labels, label="", row_title="", col_title="")``: ``matrix`` a
    ``[rows, cols]`` array (NumPy, list or tensor) of finite numbers. ``annotate=True`` prints each value
    in its cell (for small matrices). Replace everything at once with :meth:`set_data`.

    Synced traits: ``selected`` (``[row, col]`` or ``[]``) can be set from Python (a bad cell raises
    ``ValueError``) or by the browser (a bad cell sets ``error``); the data traits are answers.

    Args:
        matrix: ``[rows, cols]`` finite numbers.
        row_labels: One label per row.
        col_labels: One label per column.
        label: What the values are (shown with the colour scale).
        row_title: The title of the rows.
        col_title: The title of the columns.
        annotate: Print each value in its cell.
        selected: The cell selected at first, ``[row, col]`` (default none).

    Raises:
        ValueError: For a matrix that is not 2-D and finite, label counts that do not match, or a bad cell.

    Example:
        >>> MatrixView(sim.values, sim.rows, sim.columns, label="CKA", annotate=True)
    """

    _esm = bundle_file("matrix_view")
    _css = bundle_file("matrix_view", ".css")

    row_labels = traitlets.List(traitlets.Unicode(), help="label of each row").tag(sync=True)
    col_labels = traitlets.List(traitlets.Unicode(), help="label of each column").tag(sync=True)
    values = traitlets.Dict(help="{view, dtype, shape}: float32 [rows, cols]").tag(sync=True)
    label = traitlets.Unicode("", help="what the values are").tag(sync=True)
    row_title = traitlets.Unicode("", help="what the rows are, e.g. 'site'").tag(sync=True)
    col_title = traitlets.Unicode("", help="what the columns are, e.g. 'token'").tag(sync=True)
    annotate = traitlets.Bool(False, help="print each value in its cell").tag(sync=True)
    selected = traitlets.List(traitlets.Int(), help="[row, col] of the selected cell, [] for none").tag(
        sync=True
    )
    error = traitlets.Unicode("", help="why the last choice made in the browser was refused").tag(sync=True)

    def __init__(
        self,
        matrix: Any,
        row_labels: Sequence[str],
        col_labels: Sequence[str],
        *,
        label: str = "",
        row_title: str = "",
        col_title: str = "",
        annotate: bool = False,
        selected: Sequence[int] = (),
    ) -> None:
        require_bundle("matrix_view")
        self._matrix = _check_matrix(matrix, row_labels, col_labels)
        state = {
            "row_labels": [str(r) for r in row_labels],
            "col_labels": [str(c) for c in col_labels],
            "values": encode_array(self._matrix),
            "label": str(label),
            "row_title": str(row_title),
            "col_title": str(col_title),
            "annotate": bool(annotate),
        }
        state["selected"] = self._good = self._check_selected(list(selected))
        super().__init__(**state)

    @property
    def matrix(self) -> np.ndarray:
        """float32 ``[rows, cols]``: the values shown (decoded from the ``values`` buffer)."""
        return decode_array(self.values)

    def set_data(
        self,
        matrix: Any,
        row_labels: Sequence[str],
        col_labels: Sequence[str],
        *,
        label: str | None = None,
        selected: Sequence[int] = (),
    ) -> None:
        """Show a new matrix (labels and values change together, in one message); the selection is reset
        to ``selected``."""
        checked = _check_matrix(matrix, row_labels, col_labels)
        rows, cols = [str(r) for r in row_labels], [str(c) for c in col_labels]
        old = self._matrix
        self._matrix = checked
        try:
            sel = self._check_selected(list(selected))
        except ValueError:
            self._matrix = old
            raise
        with self.hold_sync():
            self.row_labels = rows
            self.col_labels = cols
            self.values = encode_array(checked)
            if label is not None:
                self.label = str(label)
            self.selected = sel
            self.error = ""

    # -- validation: Python callers get ValueError, the browser gets ``error`` ---------------------
    def _check_selected(self, value: list[int]) -> list[int]:
        if not value:
            return []
        rows, cols = self._matrix.shape
        if len(value) != 2:
            raise ValueError(f"selected must be [row, col] or [], got {value!r}")
        r, c = value
        if not (0 <= r < rows and 0 <= c < cols):
            raise ValueError(f"cell {value!r} is outside the {rows} × {cols} matrix")
        return [int(r), int(c)]

    @traitlets.validate("selected")
    def _valid_selected(self, proposal: Any) -> list[int]:
        try:
            good = self._check_selected(list(proposal["value"]))
        except (ValueError, TypeError) as err:
            if not self._from_frontend:
                raise ValueError(str(err)) from None
            self.error = str(err)  # the trait keeps (and re-sends) the last good value
            return list(self._good)
        self._good = good
        if self._from_frontend:
            self.error = ""  # a good choice dismisses an earlier refusal
        return good

    # -- export -------------------------------------------------------------------------------------
    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write a standalone HTML page of this matrix (bundle, CSS and data inlined; works offline)."""
        return write_standalone_html(self, path, title or f"MatrixView: {self.label}")

    def _export_state(self) -> dict[str, Any]:
        """The state a static page renders from (also used by :func:`save_html` for composed views)."""
        return self.get_state(list(_SYNCED))


def _check_matrix(matrix: Any, row_labels: Sequence[str], col_labels: Sequence[str]) -> np.ndarray:
    """A finite float32 ``[rows, cols]`` matrix matching the labels, or a clear error."""
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().cpu().numpy()
    arr = np.asarray(matrix, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"matrix must be 2-D [rows, cols], got shape {arr.shape}")
    if arr.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"matrix has shape {arr.shape} but there are {len(row_labels)} row labels and "
            f"{len(col_labels)} column labels: give one label per row and per column"
        )
    with np.errstate(over="ignore"):  # beyond float32 becomes inf: refused just below
        out = arr.astype(np.float32)
    bad = np.argwhere(~np.isfinite(out))
    if len(bad):
        raise ValueError(f"matrix has a NaN or infinite (or beyond float32) value at {tuple(bad[0])}")
    return out
