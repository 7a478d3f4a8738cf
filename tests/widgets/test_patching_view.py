"""PatchingView widget model (no browser): the grid is the result's, a cell chosen as the browser chooses it
lists that cell's neurons with scores checked against hand-written hooks, the button opens them in an
AblationPanel, bad choices become ``error``, and the view exports to HTML."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronwidgets.core import MediationResult, NeuronRanking, causal_trace, patch
from neuronwidgets.widgets import PatchingGrid, PatchingView

CLEAN, CORRUPT = "Paris is the capital of", "Berl is the capital of"


@pytest.fixture(scope="module")
def llama(tiny_models):
    return tiny_models["llama"]


@pytest.fixture(scope="module")
def targets(llama):
    with torch.no_grad():
        lg = llama.model(**llama.encode([CLEAN]), use_cache=False).logits[0, -1]
    top = lg.topk(2).indices
    return int(top[0]), int(top[1])


@pytest.fixture(scope="module")
def result(llama, targets):
    return patch(llama, CLEAN, CORRUPT, layers=[-1, 0, 1], target=targets[0], foil=targets[1])


def neuron_share(h, layer: int, position: int, index: int, t: int, f: int) -> float:
    """Share of the clean logit difference restored by one MLP neuron, from plain hooks."""
    store = {}
    proj = h.down_proj(layer)
    r = proj.register_forward_pre_hook(lambda m, a: store.__setitem__("a", a[0].clone()))
    try:
        with torch.no_grad():
            clean = h.model(**h.encode([CLEAN]), use_cache=False).logits[0, -1]
            corrupt = h.model(**h.encode([CORRUPT]), use_cache=False).logits[0, -1]
    finally:
        r.remove()
    src = store["a"][0, position, index]

    def edit(m, a):
        x = a[0].clone()
        x[0, position, index] = src
        return (x,)

    r = proj.register_forward_pre_hook(edit)
    try:
        with torch.no_grad():
            lg = h.model(**h.encode([CORRUPT]), use_cache=False).logits[0, -1]
    finally:
        r.remove()
    diff = lambda x: float(x[t] - x[f])  # noqa: E731
    return (diff(lg) - diff(corrupt)) / (diff(clean) - diff(corrupt))


def test_grid_is_the_results_share_recovered(result) -> None:
    grid = PatchingGrid(result)
    assert grid.row_labels == ["embed.resid", "layer.0.resid", "layer.1.resid"]
    assert grid.col_labels == result.position_labels
    assert grid.values["dtype"] == "float32" and isinstance(grid.values["view"], memoryview)
    np.testing.assert_array_equal(grid.matrix, result.recovered.astype(np.float32))
    assert "recovered" in grid.label and grid.neurons == [] and not grid.can_send


def test_a_cell_chosen_in_the_browser_lists_its_neurons_checked_against_hooks(llama, result, targets) -> None:
    view = PatchingView(result, llama, top_k=5)
    grid = view.grid
    grid.set_state({"selected": [2, 4]})  # layer.1.resid × position 4, as the browser sends it
    assert grid.error == "" and grid.cell == f"layer.1.resid × {result.position_labels[4]}"
    assert len(grid.neurons) == 5 and grid.can_send
    scores = np.frombuffer(bytes(grid.neuron_scores["view"]), dtype="<f4")
    for name, score in zip(grid.neurons[:3], scores[:3]):
        index = int(name.rsplit(":", 1)[1])
        assert name.startswith("layer.1.mlp:")
        assert score == pytest.approx(neuron_share(llama, 1, 4, index, *targets), abs=1e-4)
    assert list(scores) == sorted(scores, reverse=True)
    # the button (the browser increments `send`) opens an ablation panel on exactly these neurons
    grid.set_state({"send": 1})
    assert view.panel is not None and view.panel.neurons == grid.neurons
    assert view.panel.text == CLEAN


def test_bad_or_impossible_cells_become_errors(llama, result) -> None:
    grid = PatchingGrid(result, llama)
    grid.set_state({"selected": [7, 0]})
    assert "inside the 3 ×" in grid.error and grid.selected == []
    grid.set_state({"selected": [0, 1]})  # the embeddings have no MLP neurons
    assert "embeddings have no MLP neurons" in grid.error and grid.neurons == []
    with pytest.raises(ValueError, match="inside the"):
        grid.selected = [0, 99]
    no_model = PatchingView(result)
    no_model.grid.set_state({"selected": [1, 1]})
    assert "needs" in no_model.grid.error or "re-runs the model" in no_model.grid.error
    with pytest.raises(TypeError, match="PatchingResult"):
        PatchingGrid("not a result")  # type: ignore[arg-type]


def test_tracing_cells_rank_neurons_with_the_same_noise(llama, targets) -> None:
    traced = causal_trace(llama, CLEAN, "Paris", target=targets[0], samples=2, seed=1, layers=[0, 1])
    grid = PatchingGrid(traced, llama, top_k=4)
    grid.set_state({"selected": [1, 2]})
    direct = causal_trace(
        llama, CLEAN, "Paris", target=targets[0], samples=2, seed=1, component="mlp", layers=[1],
        positions=[2], neurons="all",
    ).ranking()  # fmt: skip
    assert grid.neurons == list(direct.neurons[:4])
    np.testing.assert_allclose(
        np.frombuffer(bytes(grid.neuron_scores["view"]), dtype="<f4"), direct.scores[:4], rtol=1e-6
    )


def test_mediation_results_list_the_neurons_they_analysed() -> None:
    nie = np.zeros((2, 6))
    nie[1, 3] = 0.5
    neuron_nie = np.array([[0.1, 0.3, -0.2, 0.0]])
    ranking = NeuronRanking.from_scores(
        [f"layer.1.mlp_out:{i}" for i in range(4)], neuron_nie[0], "mediation-nie"
    )
    med = MediationResult(
        cases=("The nurse said that",),
        y_null=np.array([0.5]),
        y_set=np.array([1.0]),
        te=np.array([1.0]),
        head_nie=np.zeros((2, 3)) + np.array([[0.0, 0.1, 0.0], [0.2, 0.0, -0.1]]),
        head_nde=np.zeros((2, 3)),
        neuron_layers=(1,),
        neuron_nie=neuron_nie,
        neuron_nde=np.zeros((1, 4)),
        neurons=ranking,
    )
    grid = PatchingGrid(med, top_k=2)
    assert grid.row_labels == ["layer.0", "layer.1"] and grid.col_labels == ["head 0", "head 1", "head 2"]
    np.testing.assert_array_equal(grid.matrix, med.head_nie.astype(np.float32))
    grid.set_state({"selected": [1, 0]})
    assert grid.neurons == ["layer.1.mlp_out:1", "layer.1.mlp_out:0"]
    grid.set_state({"selected": [0, 1]})
    assert "layers [1] only" in grid.error


def test_exports_to_html(tmp_path, llama, result) -> None:
    view = PatchingView(result, llama, top_k=3)
    view.grid.selected = [1, 3]
    page = view.grid.to_html(tmp_path / "grid.html").read_text()
    assert "nw-state" in page and "layer.0.resid" in page
    composed = view.to_html(tmp_path / "view.html").read_text()
    assert "nw-part-0" in composed
