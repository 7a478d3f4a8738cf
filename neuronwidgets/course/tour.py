"""Exercises of notebook 00 (the tour): a neuron found by hand, a prediction flipped by one word, the
word an attribution puts first."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import attribute_tokens
from .checks import AnswerError, as_neuron, as_word, exercise

FLIP_TEXT = "A charming, funny film with a great cast."
TOUR_REVIEW = "It's not bad at all; the actors don't disappoint."
SITE = "layer.3.resid"


def punctuation_gaps(acts: Any, corpus: Any, site: str = SITE) -> np.ndarray:
    """float ``[width]``: each neuron's mean activation on punctuation minus its mean elsewhere."""
    x = np.asarray(acts.layer(site), dtype=np.float64)
    punct = np.asarray(corpus.flat_labels("upos")) == "PUNCT"
    return x[punct].mean(0) - x[~punct].mean(0)


@exercise(
    "00.1",
    "00_tour",
    "The punctuation neuron of layer 3",
    4,
    ("acts", "corpus"),
    f"like the punctuation cell, but only over acts.layer({SITE!r}): the neuron with the largest |gap|.",
)
def _punctuation(answer: Any, acts: Any, corpus: Any) -> tuple[bool, str]:
    name = as_neuron(answer, SITE)
    if not name.startswith(SITE + ":"):
        return False, f"{name} is not a neuron of {SITE}: search that site only."
    gaps = np.abs(punctuation_gaps(acts, corpus))
    index = int(name.rsplit(":", 1)[1])
    if index >= len(gaps):
        return False, f"{SITE} has {len(gaps)} neurons (0 … {len(gaps) - 1})."
    if gaps[index] >= gaps.max() - 1e-9:
        return (
            True,
            f"{name}: |mean on punctuation − mean elsewhere| = {gaps[index]:.3f}, the largest of {SITE}.",
        )
    better = int((gaps > gaps[index]).sum())
    return False, (
        f"{better} neurons of {SITE} separate punctuation better (|gap| {gaps[index]:.3f} here). Compare the "
        "absolute gap of every neuron: np.argmax(np.abs(gap))."
    )


@exercise(
    "00.2",
    "00_tour",
    "Flip the sentiment with one word",
    5,
    ("model",),
    f"change exactly one word of {FLIP_TEXT!r} so that the sentiment model predicts 'negative'.",
)
def _flip(answer: Any, model: Any) -> tuple[bool, str]:
    if not isinstance(answer, str) or not answer.strip():
        raise AnswerError(f"expected the changed sentence (a string), got {answer!r}")
    old, new = FLIP_TEXT.split(), answer.split()
    if len(old) != len(new):
        return (
            False,
            f"keep the {len(old)} words of the sentence and change one of them ({len(new)} words given).",
        )
    changed = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
    if len(changed) != 1:
        return False, f"change exactly one word ({len(changed)} changed)."
    pred = model.predict(answer)
    if pred.labels[0] == "negative":
        return True, (
            f"{old[changed[0]]!r} → {new[changed[0]]!r} makes the model say negative "
            f"(p = {float(pred.probs[0]):.3f})."
        )
    return False, (
        f"the model still says {pred.labels[0]} (p = {float(pred.probs[0]):.3f}). Which word carries the "
        "positive sentiment? Try its opposite."
    )


@exercise(
    "00.3",
    "00_tour",
    "The word the explanation puts first",
    4,
    ("model",),
    "in the AttributionView (Integrated Gradients, the predicted class), which word has the largest score?",
)
def _top_word(answer: Any, model: Any) -> tuple[bool, str]:
    attr = attribute_tokens(model, TOUR_REVIEW, "integrated-gradients", None, n_steps=32)
    scores = np.asarray(attr.word_scores, dtype=np.float64)
    words = [as_word(w) for w in attr.words]
    said = as_word(answer)
    if said not in words:
        return False, f"{answer!r} is not a word of the review: {TOUR_REVIEW!r}."
    best = max(scores[i] for i, w in enumerate(words) if w == said)
    if best >= scores.max() - 1e-6:
        return True, f"{answer!r} pushes {attr.target!r} the most (IG score {best:+.3f})."
    rank = int((scores > best).sum()) + 1
    return False, (
        f"{answer!r} is number {rank} (score {best:+.3f}). Hover the words of the heatmap, or read "
        "attribute_tokens(...).top(3)."
    )
