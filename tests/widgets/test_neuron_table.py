"""NeuronTable widget model (no browser): binary columns, the ``selected`` trait's checks, the link to a
TokenHeatmap (values checked against the core's Activations), a 46,080-row table, and static export."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import traitlets
from ipywidgets.widgets.widget import _remove_buffers

from neuronwidgets.core import Activations, NeuronRanking, extract_activations, load_model, rank_probeless
from neuronwidgets.widgets import NeuronTable, TokenHeatmap
from neuronwidgets.widgets.neuron_table import decode_buffer

XSS = "<img src=x onerror=alert(1)>"
TEXTS = [
    "The movie was unbelievably good .",
    "I did not enjoy the acting at all .",
    "A quiet , thoughtful film .",
    "Nothing happens for two hours .",
]


@pytest.fixture(scope="module")
def acts() -> Activations:
    return extract_activations(
        load_model("minilm"), TEXTS, layers=[1, 3], components="all", granularity="word"
    )


@pytest.fixture(scope="module")
def ranking(acts: Activations) -> NeuronRanking:
    labels = ["long" if len(w) > 4 else "short" for i in range(acts.num_sentences) for w in acts.units(i)]
    return rank_probeless(acts, labels)


def small() -> NeuronRanking:
    return NeuronRanking(
        ("layer.2.mlp:5", "embed.resid:3", "layer.10.resid:7"),
        np.array([0.9, 0.5, -0.25]),
        "hand",
        classes=("NOUN", XSS),
        class_scores=np.array([[0.1, 0.9], [0.5, 0.2], [0.3, 0.1]]),
    )


def test_columns_travel_as_binary_buffers() -> None:
    table = NeuronTable(small(), page_size=7)
    state = table.get_state()
    _, _, buffers = _remove_buffers(state)
    assert len(buffers) >= 5  # ranks, layers, component codes, scores, class codes
    for key in ("ranks", "layers", "component_codes", "scores", "class_codes"):
        assert isinstance(state[key]["view"], memoryview), key
    assert decode_buffer(table.scores).dtype == np.float32
    np.testing.assert_array_equal(decode_buffer(table.scores), np.array([0.9, 0.5, -0.25], dtype=np.float32))
    np.testing.assert_array_equal(decode_buffer(table.layers), [2, -1, 10])
    np.testing.assert_array_equal(decode_buffer(table.ranks), [0, 1, 2])
    assert [table.components[i] for i in decode_buffer(table.component_codes)] == ["mlp", "resid", "resid"]
    assert [table.classes[i] for i in decode_buffer(table.class_codes)] == [XSS, "NOUN", "NOUN"]
    assert table.addresses == ["layer.2.mlp:5", "embed.resid:3", "layer.10.resid:7"]
    assert table.method == "hand" and table.page_size == 7
    assert table.selected == "layer.2.mlp:5"  # the top neuron, so a link starts on a real neuron


def test_from_dataframe_and_bad_inputs() -> None:
    frame = small().to_frame()
    table = NeuronTable(frame)
    assert table.addresses == list(frame["neuron"])
    no_class = NeuronTable(frame.drop(columns=["top_class"]))
    assert no_class.classes == [] and set(decode_buffer(no_class.class_codes)) == {-1}
    with pytest.raises(TypeError, match="NeuronRanking"):
        NeuronTable([1, 2, 3])
    with pytest.raises(ValueError, match="'score'"):
        NeuronTable(pd.DataFrame({"neuron": ["layer.0.mlp:1"]}))
    with pytest.raises(ValueError, match="page_size"):
        NeuronTable(small(), page_size=0)


def test_selected_is_checked() -> None:
    table = NeuronTable(small())
    table.selected = "layer.10.resid:7"
    assert table.selected_rank == 2
    with pytest.raises(ValueError, match="not in this table"):
        table.selected = "layer.3.mlp:1"
    with pytest.raises(ValueError, match="cannot select"):
        table.selected = "neuron seven"
    assert table.selected == "layer.10.resid:7"
    table.selected = ""
    assert table.selected_rank is None
    with pytest.raises(ValueError, match="not in this table"):
        NeuronTable(small(), selected="layer.0.mlp:0")


def test_browser_choice_is_checked_and_shown_as_error() -> None:
    table = NeuronTable(small())
    table.set_state({"selected": "layer.3.mlp:1"})
    assert table.selected == "layer.2.mlp:5"
    assert "not in this table" in table.error
    table.set_state({"selected": "embed.resid:3"})
    assert table.selected == "embed.resid:3" and table.error == ""


def test_set_ranking_replaces_the_rows_in_one_message() -> None:
    table = NeuronTable(small())
    table.selected = "embed.resid:3"
    sent: list[dict[str, Any]] = []
    table.comm.send = lambda data=None, metadata=None, buffers=None: sent.append(data)  # type: ignore[method-assign]
    table.comm.kernel = object()  # a connected kernel, so ipywidgets sends updates
    other = NeuronRanking(("layer.0.mlp:1", "embed.resid:3"), np.array([2.0, 1.0]), "other")
    table.set_ranking(other)
    assert table.addresses == ["layer.0.mlp:1", "embed.resid:3"] and table.method == "other"
    np.testing.assert_array_equal(decode_buffer(table.scores), np.array([2.0, 1.0], dtype=np.float32))
    assert table.selected == "embed.resid:3" and table.selected_rank == 1  # kept: it is in the new ranking
    updates = [d["state"] for d in sent if d["method"] == "update"]
    assert len(updates) == 1 and {"addresses", "scores", "method"} <= set(updates[0])
    table.set_ranking(small(), selected="layer.10.resid:7")
    assert table.selected == "layer.10.resid:7" and table.selected_rank == 2
    table.set_ranking(NeuronRanking(("layer.5.mlp:0",), np.array([1.0]), "one"))
    assert table.selected == "layer.5.mlp:0"  # the old selection is gone: the new top neuron
    with pytest.raises(ValueError, match="not in this table"):
        table.set_ranking(small(), selected="layer.9.mlp:9")
    assert table.addresses == ["layer.5.mlp:0"]  # a refused call changes nothing
    table.set_state({"selected": "layer.2.mlp:5"})  # the browser is checked against the new rows
    assert "not in this table" in table.error and table.selected == "layer.5.mlp:0"


def test_link_drives_a_token_heatmap(acts: Activations, ranking: NeuronRanking) -> None:
    table = NeuronTable(ranking)
    heatmap = TokenHeatmap(acts, sentences=[0, 1, 2, 3])
    link = traitlets.link((table, "selected"), (heatmap, "neuron"))
    try:
        assert heatmap.neuron == ranking.neurons[0]
        for pick in (ranking.neurons[5], ranking.neurons[-1], "layer.3.mlp:17"):
            table.set_state({"selected": pick})  # as the browser does
            assert heatmap.neuron == pick and heatmap.error == ""
            site, index = pick.rsplit(":", 1)
            expected = np.concatenate([acts.layer(site, [i])[:, int(index)] for i in range(4)])
            np.testing.assert_array_equal(heatmap.shown_values, expected.astype(np.float32))
            np.testing.assert_array_equal(heatmap.shown_values, acts.neuron(pick, [0, 1, 2, 3]))
        heatmap.neuron = ranking.neurons[2]  # and back
        assert table.selected == ranking.neurons[2]
    finally:
        link.unlink()


def test_minilm_ranking_columns(ranking: NeuronRanking) -> None:
    table = NeuronTable(ranking)
    frame = ranking.to_frame()
    assert len(table.addresses) == len(ranking) == 2 * 384 + 2 * 1536  # resid + mlp of layers 1 and 3
    np.testing.assert_allclose(decode_buffer(table.scores), frame["score"].to_numpy(np.float32))
    np.testing.assert_array_equal(decode_buffer(table.layers), frame["layer"])
    tops = [table.classes[i] for i in decode_buffer(table.class_codes)]
    assert tops == list(frame["top_class"])


def test_fifty_thousand_rows_build_fast() -> None:
    import time

    n = 46_080
    rng = np.random.default_rng(0)
    neurons = tuple(f"layer.{i // 1536}.mlp:{i % 1536}" for i in range(n))
    big = NeuronRanking(neurons, rng.normal(size=n), "random")
    t0 = time.perf_counter()
    table = NeuronTable(big)
    assert time.perf_counter() - t0 < 10
    _, _, buffers = _remove_buffers(table.get_state())
    assert sum(len(bytes(b)) for b in buffers) == 5 * 4 * n


def test_standalone_html(tmp_path: Any) -> None:
    path = NeuronTable(small()).to_html(tmp_path / "table.html")
    text = path.read_text()
    assert "layer.10.resid:7" in text and "<img src=x" not in text
