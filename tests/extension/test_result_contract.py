"""The result contract: every public result type of ``neuronwidgets.core`` has ``.to_frame()``, ``.plot()``
(a matplotlib Axes, drawn into ``ax=`` when given, else on a new headless figure that a notebook shows as
PNG), ``.show()`` (a widget) and a text repr of at most 12 lines that never dumps an array, unless a written
reason below says why a door does not apply."""

from __future__ import annotations

import dataclasses
import inspect
import sys

import ipywidgets
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from results_zoo import build_results

import neuronwidgets.core as core
from neuronwidgets.core.display import MAX_LINES

DOORS = ("to_frame", "plot", "show")

#: public classes that are not results (no door applies), with the reason
NOT_RESULTS = {
    "ModelHandle": "a loaded model, not a result; its repr names the device",
    "NeuronAddress": "a value (a neuron's address), shown as its string",
    "Site": "a value (a layer and component), shown as its string",
    "Split": "sentence indices of a train/dev/test split, a parameter of the probes (see .to_dict())",
    "Formula": "a value (a logical form over concept names); FormulaExplanation is its result",
    "Archipelago": "an algorithm class (Captum style); attribute_interactions returns its TokenInteractions",
    "IntegratedHessians": "an algorithm class (Captum style); attribute_interactions returns its TokenInteractions",
    "ShapleyTaylorInteraction": "an algorithm class (Captum style); attribute_interactions returns its TokenInteractions",
    "StoreCorruptionError": "an exception (a damaged activation store), not a result",
}

#: doors that do not apply to one result type, with the reason
NO_DOOR = {
    ("Corpus", "plot"): "a text collection: plot what is computed from it (Concepts(...).plot(), ...)",
    ("Generation", "plot"): "generated text: no numbers to plot",
    ("Intervention", "plot"): "a specification of an edit, not a measurement (measure_effect(...).plot())",
}


def public_classes() -> list[str]:
    return [n for n in core.__all__ if inspect.isclass(getattr(core, n))]


@pytest.fixture(scope="module")
def results(tiny_models):
    return build_results(tiny_models["gpt2"])


def test_the_lists_name_only_public_classes() -> None:
    names = set(public_classes())
    assert set(NOT_RESULTS) <= names
    assert {c for c, _ in NO_DOOR} <= names
    assert not set(NOT_RESULTS) & {c for c, _ in NO_DOOR}


@pytest.mark.parametrize("name", public_classes())
def test_every_public_result_has_the_three_doors(name) -> None:
    if name in NOT_RESULTS:
        return
    cls = getattr(core, name)
    missing = [d for d in DOORS if (name, d) not in NO_DOOR and not callable(getattr(cls, d, None))]
    assert not missing, f"{name} lacks {missing}: add them, or a reason to NO_DOOR / NOT_RESULTS"


@pytest.mark.parametrize("name", [n for n in public_classes() if n not in NOT_RESULTS])
def test_doors_open_and_repr_is_short(results, name) -> None:
    assert name in results, f"add an instance of {name} to results_zoo.build_results"
    result = results[name]
    assert type(result).__name__ == name
    text = repr(result)
    lines = text.splitlines()
    assert len(lines) <= MAX_LINES, text
    assert "array(" not in text and "\n       " not in text, text
    assert ".to_frame(" in text, f"the repr of {name} should say what to call next:\n{text}"
    if (name, "to_frame") not in NO_DOOR and name != "Activations":  # Activations.to_frame(neuron)
        assert isinstance(result.to_frame(), pd.DataFrame)
    if (name, "plot") not in NO_DOOR:
        check_plot(result)
    widget = result.show()
    assert isinstance(widget, ipywidgets.Widget)
    html = result._repr_html_()
    assert html.startswith('<div class="nw-result">') and "<script" not in html


def _pyplot_figures() -> list[int]:
    pyplot = sys.modules.get("matplotlib.pyplot")
    return list(pyplot.get_fignums()) if pyplot is not None else []


def check_plot(result) -> None:
    """``plot()`` returns an Axes on a new Figure that shows itself as PNG (no pyplot); ``plot(ax=...)``
    draws into the given Axes (or, for a figure of panels, the given row of Axes) and returns one of them."""
    before = _pyplot_figures()
    ax = result.plot()
    assert isinstance(ax, Axes), f"{type(result).__name__}.plot() returned {type(ax).__name__}, not an Axes"
    assert _pyplot_figures() == before, (
        f"{type(result).__name__}.plot() made a pyplot figure (keep core headless)"
    )
    assert isinstance(ax.figure, Figure) and ax.has_data()
    assert ax._repr_png_().startswith(b"\x89PNG"), "a new figure's Axes must show the figure in a notebook"
    n = sum(1 for a in ax.figure.axes if a.get_label() != "<colorbar>")
    given = [Figure().add_subplot() for _ in range(n)]
    drawn = result.plot(ax=given[0] if n == 1 else given)
    assert drawn in given, f"{type(result).__name__}.plot(ax=...) must draw into the given Axes"
    assert all(a.has_data() for a in given)


def test_results_are_still_dataclasses_or_documented() -> None:
    for name in public_classes():
        if name in NOT_RESULTS or name == "Activations":  # a lazy store reader, not a frozen record
            continue
        assert dataclasses.is_dataclass(getattr(core, name)), name
