"""Exercises of notebook 03 (switching neurons off): how many top neurons flip a prediction, which review
moves most, and what SmolLM2 says without its top neurons."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import Intervention, predict
from .checks import AnswerError, as_int, exercise

MAX_K = 200


def neurons_to_flip(model: Any, text: str, ranking: Any, max_k: int = MAX_K) -> int | None:
    """The smallest ``k`` whose top-``k`` neurons of ``ranking``, switched off, change the top prediction
    of ``text`` (``None`` if none up to ``max_k``)."""
    original = _top(model, text).labels[0]
    neurons = list(ranking.neurons)
    for k in range(1, min(max_k, len(neurons)) + 1):
        if _top(model, text, Intervention.zero(neurons[:k])).labels[0] != original:
            return k
    return None


def _top(model: Any, text: str, intervention: Intervention | None = None) -> Any:
    pred = predict(model, text, intervention, top_k=1)
    assert not isinstance(pred, list)
    return pred


@exercise(
    "03.1",
    "03_ablation",
    "How many neurons flip a prediction?",
    6,
    ("model", "text", "ranking"),
    "switch off ranking.neurons[:k] with Intervention.zero for k = 1, 2, 3, … until the top class changes.",
)
def _flip(answer: Any, model: Any, text: str, ranking: Any) -> tuple[bool, str]:
    truth = neurons_to_flip(model, text, ranking)
    if isinstance(answer, str) and answer.strip().lower() in {"none", "never"}:
        k: int | None = None
    else:
        k = as_int(answer)
    if k == truth:
        if truth is None:
            return True, f"right: even the top {MAX_K} neurons off do not change the prediction."
        return True, f"the top {truth} neurons off change the prediction, {truth - 1} do not."
    if truth is None:
        return False, f"with the top {k} off the prediction is the same: is it ever different up to {MAX_K}?"
    if k is None or k > truth:
        return False, "fewer neurons are enough: try smaller k, one at a time from 1."
    return (
        False,
        f"with the top {k} off the prediction does not change yet: the smallest k that changes it is larger.",
    )


@exercise(
    "03.2",
    "03_ablation",
    "The review its top neurons move most",
    3,
    ("table",),
    "compare the 'KL top-20' column of the table above: which row is largest?",
)
def _most_moved(answer: Any, table: Any) -> tuple[bool, str]:
    kl = np.asarray(table["KL top-20"], dtype=np.float64)
    texts = [str(t) for t in table.index]
    if isinstance(answer, str) and not answer.strip().isdigit():
        matches = [i for i, t in enumerate(texts) if answer.strip().strip("'\"") == t]
        if not matches:
            raise AnswerError(f"give the review's row number (0 … {len(texts) - 1}) or its exact text")
        i = matches[0]
    else:
        i = as_int(answer)
        if not 0 <= i < len(texts):
            raise AnswerError(f"the table has rows 0 … {len(texts) - 1}, got {answer!r}")
    if kl[i] >= kl.max() - 1e-12:
        return True, f"{texts[i]!r}: KL {kl[i]:.4f} nats, the largest change."
    return False, f"KL of that review is {kl[i]:.4f} nats; one review changes more. KL, not Δp."


@exercise(
    "03.3",
    "03_ablation",
    "SmolLM2 without its top 20 neurons",
    4,
    ("model", "prompt", "neurons"),
    "predict(lm, prompt, Intervention.zero(neurons)).labels[0]: the new top next token.",
)
def _lm_token(answer: Any, model: Any, prompt: str, neurons: Any) -> tuple[bool, str]:
    if not isinstance(answer, str) or not answer:
        raise AnswerError(f"expected the next token as a string (e.g. ' the'), got {answer!r}")
    pred = _top(model, prompt, Intervention.zero(list(neurons)))
    token = str(pred.labels[0])
    if answer == token or answer.strip() == token.strip():
        return True, f"{token!r} (p = {float(pred.probs[0]):.3f}) instead of the original prediction."
    return False, "not the top token with those neurons off. Mind the leading space of tokens (' Paris')."
