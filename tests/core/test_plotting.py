"""Token tick labels of the attribution plots: long labels are turned to fit, a one- or two-character
label stays upright (regression of the browser audit: a ";" turned on its side read as ".")."""

from __future__ import annotations

from matplotlib.figure import Figure

from neuronwidgets.core import attribute_tokens
from neuronwidgets.core.plotting import token_xticks


def _rotations(ax) -> dict[str, float]:
    return {t.get_text(): t.get_rotation() for t in ax.get_xticklabels()}


def test_short_labels_stand_upright() -> None:
    ax = Figure().add_subplot()
    token_xticks(ax, ["It", "was", ";", "'s", "wonderful", ","])
    rot = _rotations(ax)
    assert rot == {"It": 0, "was": 60, ";": 0, "'s": 0, "wonderful": 60, ",": 0}
    centred = {t.get_text(): t.get_horizontalalignment() for t in ax.get_xticklabels()}
    assert centred[";"] == "center" and centred["wonderful"] == "right"


def test_attribution_plot_keeps_a_semicolon_upright(tiny_models) -> None:
    handle = tiny_models["roberta"]  # a classifier head
    attr = attribute_tokens(handle, "it was good ; the film was bad", "saliency")
    assert ";" in attr.words
    rot = _rotations(attr.plot())
    assert rot[";"] == 0 and rot["film"] == 60


def test_ranking_bars_write_a_negative_value_left_of_its_bar() -> None:
    """A negative score's bar grows leftwards: its value is written left of the bar's end, with room on the
    axis for it, instead of on top of the bar."""
    from neuronwidgets.core import NeuronRanking

    ranking = NeuronRanking.from_scores(["layer.0.mlp:1", "layer.0.mlp:2"], [0.5, -0.25], "test")
    ax = ranking.plot(k=2)
    texts = {t.get_text().strip(): t for t in ax.texts}
    assert texts["0.500"].get_horizontalalignment() == "left"
    assert texts["-0.250"].get_horizontalalignment() == "right"
    assert ax.get_xlim()[0] < -0.25
