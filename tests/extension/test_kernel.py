"""The extension in a real Jupyter kernel (nbclient): after ``%load_ext neuronwidgets`` the main results are
widget views as cell values, ``%%explain`` shows an AttributionView, ``%neurons`` a NeuronExplorer on the
neuron or concept asked for, a result's ``.plot()`` (an Axes) shows its figure as PNG, and a misspelt model
is a one-line error naming the known models, not a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.real_model

REPO = Path(__file__).resolve().parents[2]
WIDGET = "application/vnd.jupyter.widget-view+json"

SETUP = """
import numpy as np, torch
torch.set_num_threads(1)
import neuronwidgets as nw
sentiment = nw.load_model("minilm-sentiment")
texts = ["The cat sat on the mat.", "A dog ran very fast.", "Birds sing in the early morning.",
         "She reads long books.", "We walked home together.", "It rained all day long."] * 3
acts = nw.extract_activations(sentiment, texts, layers=[1], components="resid", progress=False)
labels = ["long" if len(w) > 3 else "short" for i in range(acts.num_sentences) for w in acts.units(i)]
"""

CELLS = {
    "ranking": "ranking = nw.NeuronRanking.from_scores(['layer.0.mlp:1', 'layer.0.mlp:2'], np.array([2.0, 1.0]), method='test')\nranking",
    "probe": "probe = nw.train_probe(acts, labels, control=False, baselines=False, progress=False)\nprobe",
    "attribution": "attribution = nw.attribute_tokens(sentiment, 'A wonderful, moving film.', method='saliency')\nattribution",
    "effect": "effect = nw.measure_effect(sentiment, ['A wonderful film.', 'A dull film.'], nw.Intervention.zero(['layer.5.mlp:1', 'layer.5.mlp:2']))\neffect",
    "explain": "%%explain minilm-sentiment\nA wonderful, moving film.",
    "typo": "%%explain minilm-sentimnt\nA wonderful, moving film.",
    "reprs": "print([len(repr(x).splitlines()) for x in (ranking, probe, attribution, effect)])",
    "plot": "ranking.plot()",
    "neurons_neuron": "explorer = %neurons minilm layer.3.mlp:117 --n 20\nexplorer",
    "neurons_neuron_check": "print(type(explorer).__name__, explorer.selected, explorer.heatmap.neuron)",
    "neurons_concept": "%neurons minilm ADJ --n 20 --layers 3",
    "neurons_concept_check": (
        "found = _\n"
        "best = found.alignment.search('ADJ', 'iou').neurons[0]\n"
        "print(type(found).__name__, found.selected == best, found.selected.startswith('layer.3.mlp:'), "
        "'<b>ADJ</b>' in found.search_status.value)"
    ),
    "neurons_typo": "%neurons minlm ADJ",
}


@pytest.fixture(scope="module")
def executed() -> dict[str, nbformat.NotebookNode]:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("%load_ext neuronwidgets\n" + SETUP)]
    nb.cells += [nbformat.v4.new_code_cell(src, metadata={"name": name}) for name, src in CELLS.items()]
    env_path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    os.environ["PYTHONPATH"] = env_path  # the kernel imports this checkout
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()
    return {c.metadata.get("name", "setup"): c for c in nb.cells}


@pytest.mark.parametrize(
    "name", ["ranking", "probe", "attribution", "effect", "explain", "neurons_neuron", "neurons_concept"]
)
def test_result_is_a_widget_view(executed, name) -> None:
    outputs = executed[name].outputs
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    values = [o for o in outputs if o.output_type == "execute_result"]
    assert values, outputs
    assert WIDGET in values[-1].data, values[-1].data.keys()


@pytest.mark.parametrize(
    ("cell", "typo", "meant"),
    [("typo", "minilm-sentimnt", "minilm-sentiment"), ("neurons_typo", "minlm", "minilm")],
)
def test_model_typo_is_one_line_naming_the_known_models(executed, cell, typo, meant) -> None:
    outputs = executed[cell].outputs
    assert not [o for o in outputs if o.output_type == "execute_result"]
    text = "".join(o.get("text", "") for o in outputs) + "".join(
        o.get("evalue", "") for o in outputs if o.output_type == "error"
    )
    assert f"unknown model {typo!r}" in text
    assert f"did you mean {meant!r}" in text
    assert "Known models: minilm, minilm-sentiment, smollm2" in text
    assert "Traceback" not in text and "\n" not in text.strip()
    tb = [o for o in outputs if o.output_type == "error"]
    assert all(len(o.traceback) <= 1 for o in tb), tb


def _printed(executed, cell) -> str:
    outputs = executed[cell].outputs
    assert not [o for o in outputs if o.output_type == "error"], outputs
    return "".join(o.get("text", "") for o in outputs).strip()


def test_neurons_magic_shows_the_neuron_asked_for(executed) -> None:
    assert _printed(executed, "neurons_neuron_check") == "NeuronExplorer layer.3.mlp:117 layer.3.mlp:117"


def test_neurons_magic_ranks_by_the_concept_asked_for(executed) -> None:
    # the explorer selects the best neuron of its alignment for ADJ, on the layer asked for
    assert _printed(executed, "neurons_concept_check") == "NeuronExplorer True True True"


def test_plot_axes_shows_its_figure(executed) -> None:
    values = [o for o in executed["plot"].outputs if o.output_type == "execute_result"]
    assert values and "image/png" in values[-1].data, executed["plot"].outputs


def test_reprs_are_at_most_12_lines(executed) -> None:
    text = "".join(o.get("text", "") for o in executed["reprs"].outputs)
    counts = [int(n) for n in text.strip().strip("[]").split(",")]
    assert len(counts) == 4 and max(counts) <= 12, text
