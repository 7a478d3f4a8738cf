"""Interventions on a model: scoped edits (ablate, scale, set, steer) with a prefix cache that reruns only
the changed blocks, prediction and generation under edits, and their effects (Δp, KL, flips); and
interventional causation: activation patching, causal tracing (Meng et al. 2022), causal mediation
(Vig et al. 2020) and attribution patching.
"""

from .edits import (
    Intervention,
    ablate,
    intervene,
    predict,
    predict_logits,
    steering_values,
)
from .effects import AblationComparison, InterventionEffect, compare_ablations, measure_effect
from .generation import Generation, generate
from .mediation import MediationResult, mediate
from .patch_attribution import AttributionPatching, attribution_patch
from .patching import PatchingResult, patch
from .tracing import causal_trace

__all__ = [
    "AblationComparison",
    "AttributionPatching",
    "Generation",
    "Intervention",
    "InterventionEffect",
    "MediationResult",
    "PatchingResult",
    "ablate",
    "attribution_patch",
    "causal_trace",
    "compare_ablations",
    "generate",
    "intervene",
    "measure_effect",
    "mediate",
    "patch",
    "predict",
    "predict_logits",
    "steering_values",
]
