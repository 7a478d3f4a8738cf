"""The checking machinery: exercises are registered with :func:`exercise`; :func:`evaluate` runs one's
checker on an answer and the objects it needs, :func:`check` prints the result for a student.

A checker gets the answer and the context objects and returns ``(correct, message)``: when wrong, the
message is a hint that never contains the answer (the tests check that it does not).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..core import parse_neuron

Checker = Callable[..., tuple[bool, str]]


@dataclass(frozen=True)
class Exercise:
    """One exercise: ``id`` ("02.1"), its ``notebook``, a ``title``, ``minutes`` it takes, the context
    objects its checker ``needs`` (keyword arguments of :func:`check`), and a first ``hint``."""

    id: str
    notebook: str
    title: str
    minutes: int
    needs: tuple[str, ...]
    hint: str
    checker: Checker


@dataclass(frozen=True)
class Feedback:
    """What :func:`check` says: ``correct`` is ``True``, ``False``, or ``None`` (not answered yet)."""

    exercise: str
    correct: bool | None
    message: str

    def __str__(self) -> str:
        head = {True: "✅ right", False: "❌ not yet", None: "… not answered yet"}[self.correct]
        return f"{head} ({self.exercise}): {self.message}"


EXERCISES: dict[str, Exercise] = {}


def exercise(
    id: str, notebook: str, title: str, minutes: int, needs: tuple[str, ...], hint: str
) -> Callable[[Checker], Checker]:
    """Register the decorated checker as exercise ``id``."""

    def register(fn: Checker) -> Checker:
        if id in EXERCISES:
            raise ValueError(f"exercise {id!r} is registered twice")
        EXERCISES[id] = Exercise(id, notebook, title, minutes, needs, hint, fn)
        return fn

    return register


def exercises(notebook: str | None = None) -> pd.DataFrame:
    """The exercises (of one notebook, e.g. ``"02"``): id, notebook, title, minutes, what to pass."""
    rows = [
        {
            "id": e.id,
            "notebook": e.notebook,
            "title": e.title,
            "minutes": e.minutes,
            "pass": ", ".join(e.needs),
        }
        for e in sorted(EXERCISES.values(), key=lambda e: e.id)
        if notebook is None or e.notebook.startswith(str(notebook))
    ]
    return pd.DataFrame(rows, columns=["id", "notebook", "title", "minutes", "pass"])


def evaluate(exercise_id: str, answer: Any, **context: Any) -> Feedback:
    """Check ``answer`` to exercise ``exercise_id`` with the objects it needs (see :func:`exercises`)."""
    ex = EXERCISES.get(str(exercise_id))
    if ex is None:
        raise ValueError(f"unknown exercise {exercise_id!r}: choose from {', '.join(EXERCISES)}")
    missing = [n for n in ex.needs if n not in context]
    if missing:
        call = ", ".join(["answer", *(f"{n}={n}" for n in ex.needs)])
        raise TypeError(
            f"check({exercise_id!r}, ...) needs {', '.join(missing)}: call check({exercise_id!r}, {call})"
        )
    unknown = [n for n in context if n not in ex.needs]
    if unknown:
        raise TypeError(f"check({exercise_id!r}, ...) takes {', '.join(ex.needs)}, not {', '.join(unknown)}")
    if answer is None or answer is Ellipsis:
        return Feedback(ex.id, None, f"replace ... with your answer. Hint: {ex.hint}")
    try:
        ok, message = ex.checker(answer, **context)
    except AnswerError as err:  # the answer has the wrong form: say which form is expected
        return Feedback(ex.id, False, str(err))
    return Feedback(ex.id, bool(ok), message)


def check(exercise_id: str, answer: Any, **context: Any) -> None:
    """Print whether ``answer`` to exercise ``exercise_id`` is right and, if not, a hint."""
    print(evaluate(exercise_id, answer, **context))


class AnswerError(ValueError):
    """An answer in a form the exercise cannot read (the message says which form it expects)."""


# -- reading answers in any equivalent form ---------------------------------------------------------


def as_neuron(answer: Any, site: str | None = None) -> str:
    """A neuron address (``"layer.3.resid:42"``), or an index into ``site``, as the canonical address."""
    if isinstance(answer, bool):
        raise AnswerError(f"expected a neuron address such as 'layer.3.resid:42', got {answer!r}")
    if isinstance(answer, int) or (isinstance(answer, str) and answer.strip().isdigit()):
        if site is None:
            raise AnswerError(f"give the neuron's full address (e.g. 'layer.3.resid:42'), not {answer!r}")
        return f"{site}:{int(answer)}"
    if not isinstance(answer, str):
        name = getattr(answer, "name", None)  # a NeuronAddress
        if isinstance(name, str):
            return name
        raise AnswerError(f"expected a neuron address such as 'layer.3.resid:42', got {answer!r}")
    try:
        return parse_neuron(answer.strip().strip("'\"")).name
    except ValueError as err:
        raise AnswerError(f"{answer!r} is not a neuron address: {err}") from None


def as_layer(answer: Any) -> int:
    """A layer: ``3``, ``"3"``, ``"L3"``, ``"layer.3"``, ``"layer.3.resid"`` → 3; ``"embed"`` → -1."""
    if isinstance(answer, bool):
        raise AnswerError(f"expected a layer such as 3 or 'layer.3.resid', got {answer!r}")
    if isinstance(answer, int):
        return int(answer)
    text = str(answer).strip().strip("'\"").lower()
    if text.startswith("embed"):
        return -1
    m = re.fullmatch(r"(?:layer\.?|l)?\s*(\d+)(?:\.\w+)?(?::\d+)?", text)
    if not m:
        raise AnswerError(f"expected a layer such as 3 or 'layer.3.resid', got {answer!r}")
    return int(m.group(1))


def as_fraction(answer: Any) -> float:
    """A share: ``0.91``, ``91`` (percent) or ``"91%"`` → 0.91."""
    text = str(answer).strip()
    percent = text.endswith("%")
    try:
        value = float(text.rstrip("%")) if isinstance(answer, str) else float(answer)
    except (TypeError, ValueError):
        raise AnswerError(f"expected a number such as 0.91 or 91 (%), got {answer!r}") from None
    return value / 100 if percent or value > 1 else value


def as_word(answer: Any) -> str:
    """A word as typed: quotes, edge spaces and edge punctuation other than the word itself ignored,
    lower case."""
    if not isinstance(answer, str) or not answer.strip():
        raise AnswerError(f"expected a word (a string), got {answer!r}")
    text = answer.strip().strip("'\"").strip()
    core = text.strip(".,!?:;\"'") or text  # "wonderful," → "wonderful"; ";" stays ";"
    return core.lower()


def same_word(answer: Any, word: str) -> bool:
    return as_word(answer) == as_word(word)


def as_int(answer: Any) -> int:
    if isinstance(answer, bool):
        raise AnswerError(f"expected a whole number, got {answer!r}")
    try:
        value = float(answer)
    except (TypeError, ValueError):
        raise AnswerError(f"expected a whole number, got {answer!r}") from None
    if value != int(value):
        raise AnswerError(f"expected a whole number, got {answer!r}")
    return int(value)
