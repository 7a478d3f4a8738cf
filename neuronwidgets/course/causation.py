"""Exercises of notebook 04 (causation; the ~20-minute practical): enough integration steps, a word
saliency ranks high that pushes against the prediction, and the pair that interacts most negatively."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..core import attribute_interactions, attribute_tokens
from .checks import AnswerError, as_int, as_word, exercise

STEPS = (2, 4, 8, 16, 32, 64)
REVIEW = "The acting was wooden, but the music was wonderful."
TARGET = "positive"


def enough_steps(model: Any, text: str = REVIEW, target: str = TARGET, tolerance: float = 0.01) -> int | None:
    """The fewest ``n_steps`` of :data:`STEPS` for which IG's convergence delta is below ``tolerance`` of
    ``p(input) − p(baseline)`` (``None`` if none)."""
    for n in STEPS:
        if _relative_delta(model, n, text, target) < tolerance:
            return n
    return None


def _relative_delta(model: Any, n_steps: int, text: str = REVIEW, target: str = TARGET) -> float:
    """|convergence delta| / |p(input) − p(baseline)| of IG with ``n_steps``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warning of too few steps is what the exercise measures
        a = attribute_tokens(model, text, "integrated-gradients", target, n_steps=n_steps)
    assert a.delta is not None and a.output_difference is not None
    return abs(a.delta) / max(abs(a.output_difference), 1e-12)


@exercise(
    "04.1",
    "04_causation",
    "Enough integration steps",
    6,
    ("model",),
    f"for n_steps in {STEPS}: attribute_tokens(model, review, 'integrated-gradients', 'positive', "
    "n_steps=n); the first whose |delta| < 1 % of |output_difference|.",
)
def _steps(answer: Any, model: Any) -> tuple[bool, str]:
    n = as_int(answer)
    if n not in STEPS:
        raise AnswerError(f"choose n_steps among {STEPS}, got {answer!r}")
    truth = enough_steps(model)
    if n == truth:
        return True, f"{n} steps: the integral misses p(input) − p(baseline) by less than 1 %."
    rel = _relative_delta(model, n)
    if rel >= 0.01:
        return False, f"with {n} steps the delta is {rel:.1%} of the change: not enough yet."
    return False, f"{n} steps are enough (delta {rel:.2%}), but fewer steps already are: try smaller ones."


@exercise(
    "04.2",
    "04_causation",
    "A word saliency ranks high that argues against the prediction",
    5,
    ("model",),
    "take saliency's top 3 words, then look up their Integrated Gradients scores: which one is negative?",
)
def _blind_spot(answer: Any, model: Any) -> tuple[bool, str]:
    sal = attribute_tokens(model, REVIEW, "saliency", TARGET)
    ig = attribute_tokens(model, REVIEW, "integrated-gradients", TARGET, n_steps=32)
    word = as_word(answer)
    words = [as_word(w) for w in ig.words]
    if word not in words:
        return False, f"{answer!r} is not a word of the review {REVIEW!r}."
    top3 = {as_word(w) for w, _ in sal.top(3)}
    scores = [float(ig.word_scores[i]) for i, w in enumerate(words) if w == word]
    if word not in top3:
        return False, f"{answer!r} is not among saliency's top 3 words: read attributions['saliency'].top(3)."
    if min(scores) < 0:
        return True, (
            f"saliency ranks {answer!r} high, yet IG gives it {min(scores):+.3f}: saliency measures "
            "sensitivity, not direction."
        )
    return (
        False,
        f"IG scores {answer!r} {max(scores):+.3f}: it pushes towards {TARGET}. Another of the top 3?",
    )


def _pair(answer: Any) -> tuple[str, str]:
    if isinstance(answer, str):
        parts = [p for p in answer.replace("×", " ").replace(",", " ").replace(" x ", " ").split() if p]
    else:
        try:
            parts = [str(p) for p in answer]
        except TypeError:
            parts = []
    if len(parts) != 2:
        raise AnswerError(f"expected two words, e.g. ('not', 'bad') or 'not × bad', got {answer!r}")
    return as_word(parts[0]), as_word(parts[1])


@exercise(
    "04.3",
    "04_causation",
    "The most negative interaction",
    7,
    ("model", "text"),
    "attribute_interactions(model, text, 'shapley-taylor', 'positive', level='word', n_samples=None)"
    ".pairs(): the pair with the smallest (most negative) interaction.",
)
def _negative_pair(answer: Any, model: Any, text: str) -> tuple[bool, str]:
    a, b = _pair(answer)
    r = attribute_interactions(model, text, "shapley-taylor", TARGET, level="word", n_samples=None)
    units = [as_word(u) for u in r.units]
    m = np.asarray(r.matrix, dtype=np.float64)
    n = len(units)
    off = m[~np.eye(n, dtype=bool)]
    lowest = float(off.min())
    found = [m[i, j] for i in range(n) for j in range(n) if i != j and {units[i], units[j]} == {a, b}]
    if a == b or not found:
        return False, f"name two different words of {text!r}."
    if min(found) <= lowest + 1e-9:
        return (
            True,
            f"{a} × {b}: {min(found):+.4f}, the most negative pair (each word weakens the other's effect).",
        )
    return (
        False,
        f"{a} × {b} interacts {min(found):+.4f}; one pair is more negative. Sort pairs() by 'interaction'.",
    )
