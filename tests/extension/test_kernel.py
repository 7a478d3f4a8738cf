"""The extension in a real Jupyter kernel (nbclient): after ``%load_ext neuronwidgets`` the main results are
widget views as cell values, ``%%explain`` shows an AttributionView, and a misspelt model is a one-line
error, not a traceback."""

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


@pytest.mark.parametrize("name", ["ranking", "probe", "attribution", "effect", "explain"])
def test_result_is_a_widget_view(executed, name) -> None:
    outputs = executed[name].outputs
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    values = [o for o in outputs if o.output_type == "execute_result"]
    assert values, outputs
    assert WIDGET in values[-1].data, values[-1].data.keys()


def test_model_typo_is_one_line(executed) -> None:
    outputs = executed["typo"].outputs
    assert not [o for o in outputs if o.output_type == "execute_result"]
    text = "".join(o.get("text", "") for o in outputs) + "".join(
        o.get("evalue", "") for o in outputs if o.output_type == "error"
    )
    assert "unknown model 'minilm-sentimnt'" in text
    assert "did you mean 'minilm-sentiment'" in text
    assert "Traceback" not in text
    tb = [o for o in outputs if o.output_type == "error"]
    assert all(len(o.traceback) <= 1 for o in tb), tb


def test_reprs_are_at_most_12_lines(executed) -> None:
    text = "".join(o.get("text", "") for o in executed["reprs"].outputs)
    counts = [int(n) for n in text.strip().strip("[]").split(",")]
    assert len(counts) == 4 and max(counts) <= 12, text
