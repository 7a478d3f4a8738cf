"""The tutorial's practicals: exercises at the end of each notebook, and checkers a student calls.

``check("02.1", answer, layerwise=layerwise)`` prints whether the answer is right and, if not, a hint; it
never prints the answer. Each checker computes the truth from the objects it is given (the model, the
activations, the results of the notebook), so any correct answer is accepted — a neuron by address or by
index, a layer as ``3``, ``"layer.3"`` or ``"layer.3.resid"``, an accuracy as ``0.91`` or ``91`` (%) —
and open questions ("change one word so the prediction flips") accept every answer that works.

Headless (no widget imports): usable from scripts and graders too. :func:`evaluate` returns the
:class:`Feedback` instead of printing it; :func:`exercises` lists the exercises of a notebook.
"""

from __future__ import annotations

from . import ablation, causation, concepts, probing, tour, unsupervised  # noqa: F401  (each registers its exercises)
from .checks import EXERCISES, Exercise, Feedback, check, evaluate, exercises

__all__ = ["EXERCISES", "Exercise", "Feedback", "check", "evaluate", "exercises"]
