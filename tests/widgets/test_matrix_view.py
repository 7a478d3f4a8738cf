"""MatrixView widget model (no browser): data, selection set as the browser sets it, errors, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronwidgets.widgets import MatrixView

XSS = "<img src=x onerror=alert(1)>"


def make() -> MatrixView:
    return MatrixView(
        [[0.5, -1.0, 0.0], [0.25, 2.0, -0.125]], ["a", "b"], ["x", "y", XSS], label="demo", row_title="site"
    )


def test_values_travel_as_float32_buffer_and_decode_exactly() -> None:
    view = make()
    assert view.values["dtype"] == "float32" and view.values["shape"] == [2, 3]
    assert isinstance(view.values["view"], memoryview)
    np.testing.assert_array_equal(view.matrix, np.float32([[0.5, -1, 0], [0.25, 2, -0.125]]))
    assert view.col_labels == ["x", "y", XSS] and view.selected == []


def test_accepts_tensors_and_replaces_everything_at_once() -> None:
    view = make()
    view.selected = [1, 2]
    view.set_data(torch.ones(1, 2), ["r"], ["c1", "c2"], label="new", selected=[0, 1])
    assert view.row_labels == ["r"] and view.col_labels == ["c1", "c2"] and view.label == "new"
    np.testing.assert_array_equal(view.matrix, np.ones((1, 2), np.float32))
    assert view.selected == [0, 1]
    view.set_data(np.zeros((3, 1)), ["a", "b", "c"], ["z"])
    assert view.selected == [] and view.label == "new"


@pytest.mark.parametrize(
    ("matrix", "rows", "cols", "message"),
    [
        ([1.0, 2.0], ["a"], ["x", "y"], "2-D"),
        ([[1.0, 2.0]], ["a", "b"], ["x", "y"], "one label per row"),
        ([[1.0, float("nan")]], ["a"], ["x", "y"], "NaN"),
        ([[1.0, 1e39]], ["a"], ["x", "y"], "float32"),
    ],
)
def test_bad_data_is_refused_clearly(matrix, rows, cols, message) -> None:
    with pytest.raises(ValueError, match=message):
        MatrixView(matrix, rows, cols)
    view = make()
    with pytest.raises(ValueError, match=message):
        view.set_data(matrix, rows, cols)
    np.testing.assert_array_equal(view.matrix[0], np.float32([0.5, -1, 0]))  # unchanged


def test_selection_from_python_is_checked() -> None:
    view = make()
    view.selected = [1, 0]
    assert view.selected == [1, 0]
    with pytest.raises(ValueError, match="outside the 2 × 3 matrix"):
        view.selected = [2, 0]
    with pytest.raises(ValueError, match=r"\[row, col\]"):
        view.selected = [1]
    assert view.selected == [1, 0]
    with pytest.raises(ValueError, match="outside"):
        view.set_data(np.zeros((1, 1)), ["a"], ["b"], selected=[0, 1])
    assert view.matrix.shape == (2, 3)  # a refused set_data changes nothing


def test_a_bad_selection_from_the_browser_sets_error_and_keeps_the_last_good_one() -> None:
    view = make()
    view.set_state({"selected": [0, 2]})
    assert view.selected == [0, 2] and view.error == ""
    view.set_state({"selected": [5, 5]})
    assert view.selected == [0, 2]
    assert "outside the 2 × 3 matrix" in view.error


def test_static_export_embeds_bundle_and_data_escaped(tmp_path) -> None:
    path = make().to_html(tmp_path / "m.html")
    page = path.read_text()
    assert "createOfflineModel" in page or "data:text/javascript;base64," in page
    assert XSS not in page  # labels are JSON-escaped inside the <script> element
    assert "\\u003cimg" in page


def test_a_good_selection_from_the_browser_clears_an_earlier_refusal() -> None:
    view = make()
    view.set_state({"selected": [9, 9]})
    assert view.error
    view.set_state({"selected": [1, 1]})
    assert view.selected == [1, 1] and view.error == ""
