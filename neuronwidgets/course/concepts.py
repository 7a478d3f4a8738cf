"""Exercises of notebook 05 (what neurons respond to): the best neuron for a concept, and a formula that
describes a neuron better than any single concept (any such formula is accepted)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import Formula
from .checks import AnswerError, as_neuron, exercise

CONCEPT = "Tense=Past"


@exercise(
    "05.1",
    "05_concepts",
    f"The neuron that fires on {CONCEPT}",
    4,
    ("alignment",),
    f"alignment.iou has one column per concept: the neuron with the largest IoU in the {CONCEPT!r} column.",
)
def _best_neuron(answer: Any, alignment: Any) -> tuple[bool, str]:
    name = as_neuron(answer)
    if CONCEPT not in alignment.concepts:
        raise AnswerError(f"this alignment has no concept {CONCEPT!r}")
    if name not in alignment.neurons:
        return False, f"{name} was not aligned: choose among alignment.neurons."
    c = alignment.concepts.index(CONCEPT)
    iou = np.asarray(alignment.iou[:, c], dtype=np.float64)
    mine = float(iou[alignment.index(name)])
    if mine >= iou.max() - 1e-9:
        return True, f"{name}: IoU {mine:.3f} with {CONCEPT}, the highest."
    return (
        False,
        f"{name} has IoU {mine:.3f} with {CONCEPT}; another neuron has more (not precision, not recall).",
    )


def formula_iou(formula: Formula, acts: Any, concepts: Any, alignment: Any, neuron: str) -> float:
    """IoU of the units where ``formula`` holds with the units where ``neuron`` fires."""
    fires = np.asarray(acts.neuron(neuron)) >= float(alignment.thresholds[alignment.index(neuron)])
    holds = np.asarray(formula.mask(concepts), dtype=bool)
    union = int((fires | holds).sum())
    return int((fires & holds).sum()) / union if union else 0.0


@exercise(
    "05.2",
    "05_concepts",
    "A formula better than any single concept",
    8,
    ("acts", "concepts", "alignment", "neuron"),
    "choose a neuron that one concept does not describe fully, then combine its best concepts "
    "(alignment.concepts_of(neuron)) with AND, OR, AND NOT, e.g. 'ADJ AND NOT word:good'.",
)
def _formula(answer: Any, acts: Any, concepts: Any, alignment: Any, neuron: str) -> tuple[bool, str]:
    if isinstance(answer, Formula):
        formula = answer
    elif isinstance(answer, str):
        try:
            formula = Formula.parse(answer)
        except ValueError as err:
            raise AnswerError(f"cannot read the formula {answer!r}: {err}") from None
    else:
        raise AnswerError(f"expected a formula as text, e.g. 'ADJ AND NOT word:good', got {answer!r}")
    if neuron is Ellipsis or neuron is None:
        raise AnswerError("choose the neuron too: neuron=... (e.g. one of the candidates of section 3)")
    neuron = as_neuron(neuron)
    if neuron not in alignment.neurons:
        raise AnswerError(f"{neuron} was not aligned with the concepts: choose among alignment.neurons")
    unknown = [c for c in formula.concepts() if c not in concepts.names]
    if unknown:
        return False, f"unknown concepts {unknown}: use names from concepts.names (e.g. 'ADJ', 'word:good')."
    best = float(alignment.iou[alignment.index(neuron)].max())
    mine = formula_iou(formula, acts, concepts, alignment, neuron)
    if mine > best + 1e-9:
        return True, f"{formula}: IoU {mine:.3f}, above the best single concept's {best:.3f}."
    return False, (
        f"{formula} has IoU {mine:.3f}, not above the best single concept's {best:.3f}. Add what the "
        "neuron fires on too (OR), or remove what it does not fire on (AND NOT)."
    )
