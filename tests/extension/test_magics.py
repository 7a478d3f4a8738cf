"""The notebook extension in an in-process IPython shell: formatters on and off, the magics' help and
one-line errors, and magics run on a tiny local model (no embedded model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from IPython import get_ipython
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython

import neuronwidgets
from neuronwidgets.core import NeuronRanking

WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def ip():
    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "neuronwidgets")
    yield shell
    shell.run_line_magic("unload_ext", "neuronwidgets")


def _ranking() -> NeuronRanking:
    return NeuronRanking.from_scores(["layer.0.mlp:1", "layer.0.mlp:2"], np.array([2.0, 1.0]), method="test")


def test_load_and_unload_switch_widget_rendering(ip) -> None:
    data, _ = ip.display_formatter.format(_ranking())
    assert WIDGET in data and "text/plain" in data
    assert "heatmap" in ip.magics_manager.magics["line"]
    assert "explain" in ip.magics_manager.magics["cell"]
    ip.run_line_magic("unload_ext", "neuronwidgets")
    data, _ = ip.display_formatter.format(_ranking())
    assert WIDGET not in data
    assert "heatmap" not in ip.magics_manager.magics["line"]
    assert "ablate" not in ip.magics_manager.magics["cell"]
    ip.run_line_magic("load_ext", "neuronwidgets")  # the fixture unloads again


def test_enable_and_disable_from_code(ip) -> None:
    ip.run_line_magic("unload_ext", "neuronwidgets")
    neuronwidgets.enable()
    assert WIDGET in ip.display_formatter.format(_ranking())[0]
    neuronwidgets.disable()
    assert WIDGET not in ip.display_formatter.format(_ranking())[0]
    ip.run_line_magic("load_ext", "neuronwidgets")


def test_a_failing_widget_falls_back_to_text(ip, monkeypatch) -> None:
    from neuronwidgets.widgets import _show

    def broken(_r):
        raise ValueError("no bundle")

    monkeypatch.setitem(_show.BUILDERS, NeuronRanking, broken)
    with pytest.warns(UserWarning, match="no widget for this NeuronRanking"):
        data, _ = ip.display_formatter.format(_ranking())
    assert WIDGET not in data and "text/plain" in data


@pytest.mark.parametrize(
    "magic", ["%heatmap --help", "%neurons -h", "%%explain --help\nx", "%%ablate --help\nx"]
)
def test_help_prints_usage_and_runs_nothing(ip, capsys, magic) -> None:
    name = magic.lstrip("%").split()[0]
    if magic.startswith("%%"):
        line, cell = magic[2:].split("\n", 1)
        out = ip.run_cell_magic(name, line.split(None, 1)[1], cell)
    else:
        out = ip.run_line_magic(name, magic.split(None, 1)[1])
    assert out is None
    text = capsys.readouterr().out
    assert f"usage: {name}" in text and "example" in text


def test_a_typo_in_the_model_name_names_the_known_models(ip) -> None:
    with pytest.raises(
        UsageError, match=r"unknown model 'minilm-sentimnt' \(did you mean 'minilm-sentiment'\?\)"
    ) as err:
        ip.run_cell_magic("explain", "minilm-sentimnt", "A fine film.")
    message = str(err.value)
    assert "\n" not in message
    for name in ("minilm", "minilm-sentiment", "smollm2"):
        assert name in message


@pytest.mark.parametrize(
    ("name", "line", "cell", "match"),
    [
        ("heatmap", "tiny layer.0.mlp:1", None, "the following arguments are required: text"),
        ("heatmap", "tiny layer0:1 some text", None, "cannot parse site 'layer0'"),
        ("heatmap", "tiny layer.0.mlp:1  | ", None, "an empty text"),
        ("explain", "tiny", "   \n  ", "the cell is empty"),
        ("explain", "tiny --method magic", "A text.", "unknown token attribution method 'magic'"),
        ("explain", "tiny --colour red", "A text.", "unrecognized arguments: --colour red"),
        ("ablate", "tiny", "  \n ", "the cell is empty"),
        ("ablate", "tiny --k 0", "A text.", "--k must be at least 1"),
        ("neurons", "tiny ADJ --corpus nothing_here", None, "not a variable"),
    ],
)
def test_argument_errors_are_one_line_usage_errors(ip, name, line, cell, match) -> None:
    with pytest.raises(UsageError, match=match) as err:
        if cell is None:
            ip.run_line_magic(name, line)
        else:
            ip.run_cell_magic(name, line, cell)
    assert "\n" not in str(err.value)


def test_magics_take_a_model_variable_and_return_their_widget(ip, tiny_models) -> None:
    from neuronwidgets.widgets import AblationPanel, TokenHeatmap

    handle = tiny_models["bert"]
    ip.user_ns["tiny"] = handle
    w = ip.run_line_magic("heatmap", "tiny layer.1.mlp:3 hello world | another short text")
    assert isinstance(w, TokenHeatmap)
    assert w.neuron == "layer.1.mlp:3" and len(w.tokens) == 2
    assert w.sentences == [0, 1]

    ip.user_ns["lm"] = tiny_models["gpt2"]  # ablation needs a prediction head
    panel = ip.run_cell_magic("ablate", "lm layer.0.mlp:1 layer.1.mlp:2", "hello world")
    assert isinstance(panel, AblationPanel)
    assert panel.neurons == ["layer.0.mlp:1", "layer.1.mlp:2"] and panel.text == "hello world"

    ip.user_ns["picked"] = ["layer.1.mlp:4"]
    panel = ip.run_cell_magic("ablate", "lm picked", "hello world")
    assert panel.neurons == ["layer.1.mlp:4"]
