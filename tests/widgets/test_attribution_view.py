"""AttributionView widget model (no browser): every number shown (heatmap, status line, layer matrix,
neuron table, panel) equals what the core computes independently for the same choice; pickers changed as
the browser changes them recompute; a failed computation puts the picker back and says why; no hook is
left on the model."""

from __future__ import annotations

import html

import numpy as np
import pytest

from neuronwidgets.core import attribute_layers, attribute_neurons, attribute_tokens, load_model
from neuronwidgets.widgets import AblationPanel, AttributionView, MatrixView, NeuronTable, TokenHeatmap
from neuronwidgets.widgets._assets import decode_array

TEXT = "The movie was not bad at all, surprisingly funny."


@pytest.fixture(scope="module")
def sentiment():
    return load_model("minilm-sentiment")


@pytest.fixture(scope="module")
def view(sentiment) -> AttributionView:
    return AttributionView(sentiment, TEXT, n_steps=32, neuron_sites="layer.5.mlp")


def _no_hooks(handle) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        for m in handle.model.modules()
    )


def test_everything_shown_equals_the_core(view: AttributionView, sentiment) -> None:
    ig = attribute_tokens(sentiment, TEXT, "integrated-gradients", n_steps=32)
    assert view.method == "integrated-gradients" and view.target == ig.target_id and view.level == "word"
    assert isinstance(view.heatmap, TokenHeatmap) and isinstance(view.matrix, MatrixView)
    assert view.heatmap.tokens == [ig.words]
    np.testing.assert_allclose(view.heatmap.shown_values, ig.word_scores.astype(np.float32), rtol=1e-6)
    layers = attribute_layers(sentiment, TEXT, target=ig.target_id, n_steps=32)
    assert view.matrix.row_labels == layers.sites and view.matrix.col_labels == layers.words
    np.testing.assert_allclose(
        view.matrix.matrix, layers.word_scores.astype(np.float32), rtol=1e-5, atol=1e-7
    )
    ranking = attribute_neurons(sentiment, TEXT, "layer.5.mlp", target=ig.target_id, n_steps=32)
    assert isinstance(view.table, NeuronTable)
    assert view.table.addresses[:20] == list(ranking.neurons[:20])
    np.testing.assert_allclose(decode_array(view.table.scores), ranking.scores.astype(np.float32), rtol=1e-5)
    status = html.unescape(view.status.value)
    assert f"p = {ig.prob:.3f}" in status
    assert f"convergence delta {ig.delta:+.3g}" in status
    assert f"F(x) − F(x′) = {ig.output_difference:+.4g}" in status
    assert _no_hooks(sentiment)


def test_level_picker_shows_tokens_and_back(view: AttributionView, sentiment) -> None:
    ig = view.attribution
    view.level_picker.value = "token"
    assert view.level == "token"
    assert view.heatmap.tokens == [ig.tokens]
    np.testing.assert_allclose(view.heatmap.shown_values, ig.token_scores.astype(np.float32), rtol=1e-6)
    assert view.matrix is not None and view.matrix.col_labels == ig.tokens
    np.testing.assert_allclose(
        view.matrix.matrix, view.layer_attribution.scores.astype(np.float32), rtol=1e-5
    )
    view.level = "word"  # the trait works too
    assert view.level_picker.value == "word" and view.heatmap.tokens == [ig.words]


@pytest.mark.parametrize("method", ["saliency", "occlusion", "shapley-sampling"])
def test_method_picker_recomputes_with_that_method(view: AttributionView, sentiment, method: str) -> None:
    view.method_picker.value = method
    expected = attribute_tokens(sentiment, TEXT, method, view.target, n_steps=32)
    assert view.method == method and view.attribution.method == method
    np.testing.assert_allclose(
        view.heatmap.shown_values, expected.word_scores.astype(np.float32), rtol=1e-5, atol=1e-7
    )
    assert view.heatmap.label.startswith(method)
    assert "convergence delta" not in html.unescape(view.status.value)  # not a path method
    view.method_picker.value = "integrated-gradients"


@pytest.mark.filterwarnings("ignore:convergence delta")
def test_target_picker_recomputes_tokens_layers_and_neurons(sentiment) -> None:
    view = AttributionView(sentiment, TEXT, n_steps=16, neuron_sites="layer.4.mlp")
    assert [v for _, v in view.targets] == [0, 1]  # every class of the classifier
    other = 1 - view.target
    old_table = view.table
    view.target_picker.value = other
    assert view.target == other and view.attribution.target_id == other
    expected = attribute_tokens(sentiment, TEXT, "integrated-gradients", other, n_steps=16)
    np.testing.assert_allclose(view.heatmap.shown_values, expected.word_scores.astype(np.float32), rtol=1e-5)
    layers = attribute_layers(sentiment, TEXT, target=other, n_steps=16)
    np.testing.assert_allclose(
        view.matrix.matrix, layers.word_scores.astype(np.float32), rtol=1e-5, atol=1e-7
    )
    ranking = attribute_neurons(sentiment, TEXT, "layer.4.mlp", target=other, n_steps=16)
    assert view.table is old_table  # updated in place (one message), not replaced
    assert view.table.selected == ranking.neurons[0]
    # 16 steps do not converge for this target: the status line says so and suggests more steps
    assert "increase n_steps" in html.unescape(view.status.value)
    assert view.table.addresses[:10] == list(ranking.neurons[:10])
    assert view.neuron_ranking is not None and view.neuron_ranking.meta["target_id"] == other


def test_a_failed_computation_puts_the_picker_back_and_says_why(sentiment) -> None:
    view = AttributionView(
        sentiment, TEXT, n_steps=8, layers=False, neuron_sites=None,
        method_options={"kernel-shap": {"n_samples": 0}},
    )  # fmt: skip
    before = view.heatmap.shown_values.copy()
    view.method_picker.value = "kernel-shap"  # as the browser would
    assert view.method_picker.value == "integrated-gradients" and view.method == "integrated-gradients"
    assert "n_samples must be at least 1" in html.unescape(view.status.value)
    np.testing.assert_array_equal(view.heatmap.shown_values, before)
    with pytest.raises(ValueError, match="n_samples"):
        view.method = "kernel-shap"  # a Python caller gets the exception too
    assert view.method == "integrated-gradients"
    with pytest.raises(ValueError, match="unknown token attribution method"):
        view.method = "no-such-method"
    assert view.matrix is None and view.table is None
    with pytest.raises(ValueError, match="ranks no neurons"):
        view.send_top_neurons(3)
    assert _no_hooks(sentiment)


def test_send_top_neurons_opens_a_panel_on_them(view: AttributionView, sentiment) -> None:
    panel = view.send_top_neurons(4)
    assert isinstance(panel, AblationPanel) and view.panel is panel
    assert panel.neurons == list(view.neuron_ranking.neurons[:4])
    assert panel.text == TEXT
    view.send_k.value = 6
    view.send_button.click()
    assert view.panel is not panel and view.panel.neurons == list(view.neuron_ranking.neurons[:6])
    # switching the top neurons off lowers the target: the panel computes it live
    view.panel.switch_off_top(6)
    assert view.panel.effects["current"]["delta_prob"] < 0
    with pytest.raises(ValueError, match="k must be from 1"):
        view.send_top_neurons(0)


def test_next_token_targets_on_a_causal_lm(tiny_models) -> None:
    lm = tiny_models["gpt2"]
    view = AttributionView(lm, "the cat sat on the", n_steps=8, layers=True, neuron_sites=None, n_targets=5)
    ids = [v for _, v in view.targets]
    assert len(ids) == 5 and view.target == ids[0]
    view.target_picker.value = ids[3]
    expected = attribute_tokens(lm, "the cat sat on the", "integrated-gradients", ids[3], n_steps=8)
    np.testing.assert_allclose(
        view.heatmap.shown_values, expected.word_scores.astype(np.float32), rtol=1e-5, atol=1e-7
    )
    view.target = 7  # an id not in the list is added to it
    assert view.target_picker.value == 7 and 7 in [v for _, v in view.targets]
    assert view.attribution.target_id == 7


def test_bad_arguments_are_refused_clearly(sentiment) -> None:
    with pytest.raises(TypeError, match="ModelHandle"):
        AttributionView(42, TEXT)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="level"):
        AttributionView(sentiment, TEXT, level="char")
    with pytest.raises(ValueError, match="n_steps"):
        AttributionView(sentiment, TEXT, n_steps=1)
    with pytest.raises(ValueError, match="empty text"):
        AttributionView(sentiment, "   ")
    with pytest.raises(ValueError, match="method_options"):
        AttributionView(sentiment, TEXT, method_options={"nope": {}})
    with pytest.raises(ValueError, match="not a label of minilm-sentiment"):
        AttributionView(sentiment, TEXT, target="enthusiastic")
    assert _no_hooks(sentiment)


def test_a_given_panel_collects_the_neurons_sent(sentiment) -> None:
    panel = AblationPanel(sentiment, "An entirely different review.", ["layer.0.mlp:1"])
    view = AttributionView(sentiment, TEXT, n_steps=8, layers=False, neuron_sites="layer.5.mlp", panel=panel)
    assert view.send_top_neurons(3) is panel and view.panel is panel
    assert panel.neurons == ["layer.0.mlp:1", *view.neuron_ranking.neurons[:3]]
    view.target_picker.value = 1 - view.target  # the user's panel stays as it is
    assert view.panel is panel and len(panel.neurons) == 4
    view.send_top_neurons(2)
    assert panel.neurons[4:] == [n for n in view.neuron_ranking.neurons[:2] if n not in panel.neurons[:4]]
    with pytest.raises(TypeError, match="AblationPanel"):
        AttributionView(sentiment, TEXT, panel="panel")  # type: ignore[arg-type]


def test_faithfulness_line_equals_the_core_at_the_shown_level(view: AttributionView, sentiment) -> None:
    from neuronwidgets.core import faithfulness_curves

    assert view.faithfulness is not None and view.faithfulness.level == view.level
    expected = faithfulness_curves(sentiment, view.attribution, level=view.level, n_random=10).summary()
    got = view.faithfulness.summary()
    for key in ("deletion_auc", "random_deletion_auc", "insertion_auc", "random_insertion_auc"):
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key
    status = html.unescape(view.status.value)
    assert f"deletion AUC {expected['deletion_auc']:.3f} vs {expected['random_deletion_auc']:.3f}" in status
    view.level = "token"  # curves over tokens now, same attribution (not recomputed)
    attr = view.attribution
    assert view.faithfulness.level == "token" and view.attribution is attr
    view.level = "word"


def test_a_failure_late_in_a_recomputation_changes_nothing(sentiment, monkeypatch) -> None:
    from neuronwidgets.widgets import attribution_view as module

    view = AttributionView(sentiment, TEXT, n_steps=8, layers=True, neuron_sites=None)
    before = (view.attribution, view.layer_attribution, view.heatmap.shown_values.copy(), view.faithfulness)

    def broken(*args, **kwargs):
        raise RuntimeError("curves failed")

    monkeypatch.setattr(module, "faithfulness_curves", broken)
    view.target_picker.value = 1 - view.target  # tokens and layers computed, then the curves fail
    assert view.target_picker.value == before[0].target_id and view.target == before[0].target_id
    assert (view.attribution, view.layer_attribution) == before[:2]
    np.testing.assert_array_equal(view.heatmap.shown_values, before[2])
    assert view.faithfulness is before[3]
    assert "curves failed" in html.unescape(view.status.value)


def test_masked_lm_and_llama_views(tiny_dirs) -> None:
    import warnings

    from neuronwidgets.widgets import InteractionView

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlm = load_model(str(tiny_dirs["bert"]), kind="masked-lm")
        text = "the cat sat on the [MASK] ."
        view = AttributionView(mlm, text, n_steps=8, neuron_sites="layer.1.mlp", n_targets=4)
        iview = InteractionView(mlm, text, "shapley-taylor")
    assert view.attribution.words == ["the", "cat", "sat", "on", "the", "[MASK]", "."]
    assert [v for _, v in view.targets] == mlm.predict(text, top_k=4).ids
    expected = attribute_tokens(mlm, text, "integrated-gradients", view.target, n_steps=8)
    np.testing.assert_allclose(
        view.heatmap.shown_values, expected.word_scores.astype(np.float32), rtol=1e-5, atol=1e-7
    )
    assert "[MASK]" in iview.interactions.units
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        llama = load_model(str(tiny_dirs["llama"]))
        view = AttributionView(llama, "the cat sat on the", n_steps=8, neuron_sites="mlp")
    assert view.neuron_ranking is not None and len(view.neuron_ranking) == sum(
        llama.width(s) for s in llama.sites("mlp")
    )
    assert f"baseline: {view.attribution.baseline}" in html.unescape(view.status.value)


def test_status_says_whether_the_prediction_is_right_given_the_true_label(sentiment) -> None:
    """Regression (browser audit): the tour explained a wrong prediction without saying so."""
    pred = sentiment.predict(TEXT)
    top, other = pred.labels[0], pred.labels[1]  # the model's own answer, and a class it did not give
    cheap = dict(n_steps=4, layers=False, neuron_sites=None, faithfulness=False)
    wrong = AttributionView(sentiment, TEXT, label=other, **cheap)
    status = html.unescape(wrong.status.value)
    assert wrong.verdict.correct is False and wrong.verdict.label == other
    assert f"the model predicts {top!r} (p = {float(pred.probs[0]):.3f})" in status
    assert f"the true label is {other!r}: this prediction is WRONG" in status
    assert "nw-status-warning" in wrong.status.value  # flagged, not buried in the status line
    by_index = AttributionView(sentiment, TEXT, label=sentiment.labels.index(top), **cheap)
    assert by_index.verdict.correct is True and "WRONG" not in by_index.status.value
    assert "correct" in html.unescape(by_index.status.value)
    unknown = AttributionView(sentiment, TEXT, **cheap)  # no label: the prediction, no verdict
    assert unknown.verdict.correct is None and "WRONG" not in unknown.status.value
    assert f"the model predicts {top!r}" in html.unescape(unknown.status.value)
    with pytest.raises(ValueError, match="label 'neutral' is not a class"):
        AttributionView(sentiment, TEXT, label="neutral", **cheap)
    with pytest.raises(TypeError, match="label must be"):
        AttributionView(sentiment, TEXT, label=True, **cheap)
