"""InteractionView widget model (no browser): the matrix, the pair list and the text view equal what
attribute_interactions computes independently; choosing a pair in the matrix (as the browser does), in the
list or through the trait selects it everywhere; method/level/target pickers recompute; errors."""

from __future__ import annotations

import html

import numpy as np
import pytest

from neuronwidgets.core import attribute_interactions, load_model
from neuronwidgets.widgets import InteractionView

TEXT = "The movie was not bad at all."


@pytest.fixture(scope="module")
def sentiment():
    return load_model("minilm-sentiment")


@pytest.fixture(scope="module")
def view(sentiment) -> InteractionView:
    return InteractionView(sentiment, TEXT, "shapley-taylor", n_pairs=5)


def test_matrix_pairs_and_text_equal_the_core(view: InteractionView, sentiment) -> None:
    res = attribute_interactions(sentiment, TEXT, "shapley-taylor", level="word")
    assert view.matrix.row_labels == res.units == view.matrix.col_labels
    np.testing.assert_allclose(view.matrix.matrix, res.matrix.astype(np.float32), rtol=1e-6, atol=1e-8)
    top = res.pairs().head(5)
    assert [v for _, v in view.pair_list.options] == [(int(r.i), int(r.j)) for r in top.itertuples()]
    # the strongest pair is selected at first, and it is the negation: "not" with "bad"
    i, j = int(top.i[0]), int(top.j[0])
    assert (res.units[i], res.units[j]) == ("not", "bad")
    assert view.pair == [i, j] and view.matrix.selected == [i, j] and view.pair_list.value == (i, j)
    assert view.heatmap.marked == [[0, i], [0, j]]
    np.testing.assert_allclose(
        view.heatmap.shown_values, res.matrix[i].astype(np.float32), rtol=1e-6, atol=1e-8
    )
    status = html.unescape(view.status.value)
    assert f"completeness gap {res.delta:+.3g}" in status and f"p = {res.prob:.3f}" in status


def test_choosing_a_pair_anywhere_selects_it_everywhere(view: InteractionView) -> None:
    res = view.interactions
    view.matrix.set_state({"selected": [1, 4]})  # a click in the browser
    assert view.pair == [1, 4] and view.pair_list.value in ((1, 4), None)
    assert view.heatmap.marked == [[0, 1], [0, 4]]
    np.testing.assert_allclose(
        view.heatmap.shown_values, res.matrix[1].astype(np.float32), rtol=1e-6, atol=1e-8
    )
    second = view.pair_list.options[1][1]
    view.pair_list.value = second
    assert view.pair == list(second) and view.matrix.selected == list(second)
    view.pair = [5, 2]  # order does not matter
    assert view.pair == [2, 5] and view.matrix.selected == [2, 5]
    view.pair = []  # no pair: each unit's main effect
    assert view.matrix.selected == [] and view.heatmap.marked == []
    np.testing.assert_allclose(view.heatmap.shown_values, res.main.astype(np.float32), rtol=1e-6, atol=1e-8)
    view.matrix.set_state({"selected": [3, 3]})  # the diagonal is no pair
    assert view.pair == []
    with pytest.raises(ValueError, match="two different unit indices"):
        view.pair = [0, 0]
    with pytest.raises(ValueError, match="two different unit indices"):
        view.pair = [0, 99]


@pytest.mark.filterwarnings("ignore:convergence delta")  # 16 steps: fast, not converged
def test_method_and_level_pickers_recompute(sentiment) -> None:
    view = InteractionView(
        sentiment, TEXT, "archipelago", method_options={"integrated-hessians": {"n_steps": 16}}
    )
    res = attribute_interactions(sentiment, TEXT, "archipelago", level="word")
    np.testing.assert_allclose(view.matrix.matrix, res.matrix.astype(np.float32), rtol=1e-6, atol=1e-8)
    assert "phrases:" in html.unescape(view.status.value)
    # Archipelago's merged phrases head the list; the strongest is outlined, each word coloured by the
    # ArchAttribute score of its phrase
    phrases = [(m, float(v)) for m, v in zip(res.sets, res.set_scores) if len(m) > 1]
    best, score = max(phrases, key=lambda ms: abs(ms[1]))
    assert f"{score:+.4g}" in view.pair_list.options[0][0]
    assert {res.units.index("not"), res.units.index("bad")} <= set(best)
    first_label, first_value = view.pair_list.options[0]
    assert first_label.startswith("phrase {") and first_value == ("phrase", *best)
    assert view.pair_list.value == first_value and view.pair == [] and view.matrix.selected == []
    assert view.heatmap.marked == [[0, k] for k in best]
    expected = np.zeros(len(res.units))
    for members, v in zip(res.sets, res.set_scores):
        expected[list(members)] = v
    np.testing.assert_allclose(view.heatmap.shown_values, expected.astype(np.float32), rtol=1e-6)
    pair_value = next(v for _, v in view.pair_list.options if v[0] != "phrase")
    view.pair_list.value = pair_value  # a pair line: back to the pair view
    assert view.pair == list(pair_value) and view.heatmap.marked == [[0, pair_value[0]], [0, pair_value[1]]]
    view.level_picker.value = "token"
    tok = attribute_interactions(sentiment, TEXT, "archipelago", level="token")
    assert view.level == "token" and view.matrix.col_labels == tok.units
    view.method_picker.value = "integrated-hessians"
    ih = attribute_interactions(sentiment, TEXT, "integrated-hessians", level="token", n_steps=16)
    assert view.method == "integrated-hessians"
    np.testing.assert_allclose(view.matrix.matrix, ih.matrix.astype(np.float32), rtol=1e-4, atol=1e-6)
    assert view.pair == [int(ih.pairs().i[0]), int(ih.pairs().j[0])]


def test_other_target_and_failures(sentiment) -> None:
    view = InteractionView(
        sentiment, TEXT, "shapley-taylor", method_options={"integrated-hessians": {"n_steps": 0}}
    )
    other = 1 - view.target
    view.target_picker.value = other
    res = attribute_interactions(sentiment, TEXT, "shapley-taylor", other, level="word")
    assert view.target == other
    np.testing.assert_allclose(view.matrix.matrix, res.matrix.astype(np.float32), rtol=1e-6, atol=1e-8)
    before = view.matrix.matrix.copy()
    view.method_picker.value = "integrated-hessians"  # fails: n_steps=0
    assert view.method_picker.value == "shapley-taylor" and view.method == "shapley-taylor"
    assert "Error" in view.status.value
    np.testing.assert_array_equal(view.matrix.matrix, before)
    with pytest.raises(ValueError, match="unknown interaction attribution method"):
        view.method = "saliency"
    with pytest.raises(ValueError, match="method_options"):
        InteractionView(sentiment, TEXT, method_options={"ig": {}})
    with pytest.raises(ValueError, match="n_pairs"):
        InteractionView(sentiment, TEXT, n_pairs=0)


def test_short_text_is_exact_and_a_sampled_estimate_is_labelled_with_its_standard_error(
    view: InteractionView, sentiment
) -> None:
    # 8 words (the full stop is one) ≤ 12: the default is the exact index, and the view says so
    exact = attribute_interactions(sentiment, TEXT, "shapley-taylor", level="word", n_samples=None)
    assert not view.interactions.is_estimate and view.interactions.params["exact"]
    np.testing.assert_allclose(view.interactions.matrix, exact.matrix, rtol=1e-12, atol=1e-15)
    status = html.unescape(view.status.value)
    n = len(view.interactions.units)
    assert f"exact index (all 2^{n} subsets)" in status and "ESTIMATE" not in status
    assert all("±" not in label for label, _ in view.pair_list.options)
    # asked to sample, the view labels the estimate and lists each pair's standard error
    sampled = InteractionView(
        sentiment, TEXT, "shapley-taylor", n_pairs=3, method_options={"shapley-taylor": {"n_samples": 6}}
    )
    res = sampled.interactions
    assert res.is_estimate and res.standard_error is not None
    status = html.unescape(sampled.status.value)
    assert "ESTIMATE from 6 sampled permutations" in status
    assert "sampled estimate" in sampled.matrix.label
    for (label, (i, j)), row in zip(sampled.pair_list.options, res.pairs().head(3).itertuples()):
        assert (i, j) == (row.i, row.j)
        assert label.endswith(f"{row.interaction:+.4g} ± {row.standard_error:.2g} (s.e.)")
