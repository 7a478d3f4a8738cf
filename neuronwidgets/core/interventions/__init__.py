"""Interventions on a model: scoped edits (ablate, scale, set, steer) with a prefix cache that reruns only
the changed blocks, prediction and generation under edits, and their effects (Δp, KL, flips).
"""

from .edits import (
    Generation,
    Intervention,
    ablate,
    generate,
    intervene,
    predict,
    predict_logits,
    steering_values,
)
from .effects import AblationComparison, InterventionEffect, compare_ablations, measure_effect

__all__ = [
    "AblationComparison",
    "Generation",
    "Intervention",
    "InterventionEffect",
    "ablate",
    "compare_ablations",
    "generate",
    "intervene",
    "measure_effect",
    "predict",
    "predict_logits",
    "steering_values",
]
