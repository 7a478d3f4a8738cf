"""The embedded ``"minilm-sentiment"`` model: its shipped head, its labels, and its measured accuracy.

The held-out test split is re-derived with ``split`` from ``scripts/train_sentiment_head.py`` (the script
that trained the head), and predicted through the package path (``load_model`` + ``predict`` on raw texts),
which checks that the loader reproduces the pooling the head was trained on.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from neuronwidgets.core import load_model
from neuronwidgets.core.assets import sentiment_head_path

pytestmark = pytest.mark.real_model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_sentiment_head.py"


@pytest.fixture(scope="module")
def model():
    return load_model("minilm-sentiment")


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads(sentiment_head_path().with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def trainer():
    spec = importlib.util.spec_from_file_location("train_sentiment_head", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_labels(model, meta):
    assert model.kind == "classifier"
    assert model.labels == ["negative", "positive"] == meta["labels"]


def test_head_file_is_small():
    assert sentiment_head_path().stat().st_size < 4096


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("a wonderful, moving film", "positive"),
        ("one of the best movies of the year: funny, smart and beautifully acted", "positive"),
        ("a dull, tedious mess", "negative"),
        ("boring, badly written and far too long", "negative"),
    ],
)
def test_clear_examples(model, text, label):
    pred = model.predict(text)
    assert pred.top == label, pred
    assert pred.top_prob > 0.8
    assert sorted(pred.labels) == ["negative", "positive"]
    assert float(pred.probs.sum()) == pytest.approx(1.0, abs=1e-5)


def test_batch_predict(model):
    texts = ["a wonderful, moving film", "a dull, tedious mess", "it is a movie"]
    preds = model.predict(texts)
    assert isinstance(preds, list) and len(preds) == len(texts)
    assert [p.text for p in preds] == texts
    for p in preds:
        assert float(p.probs.sum()) == pytest.approx(1.0, abs=1e-5)
    assert [p.top for p in preds[:2]] == ["positive", "negative"]


def test_held_out_accuracy_matches_model_card(model, meta, trainer):
    texts, labels = trainer.test_split(meta["seed"])
    assert len(texts) == meta["test_size"]
    preds = model.predict(texts[:200])
    got = np.array([p.ids[0] for p in preds])
    accuracy = float((got == labels[:200]).mean())
    assert abs(accuracy - meta["test_accuracy"]) <= 0.03
    # the same 200 snippets scored by the training script: only float noise may flip a borderline one
    assert abs(accuracy - meta["test_first200_accuracy"]) <= 0.011
