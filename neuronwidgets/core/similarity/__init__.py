"""Representation similarity: linear CKA, SVCCA, PWCCA between sites (Wu et al. 2020) and cross-model
neuron rankings (Bau et al. 2019).
"""

from .cross_model import rank_cross_model
from .measures import (
    SimilarityMatrix,
    canonical_correlations,
    linear_cka,
    pwcca,
    representation_similarity,
    svcca,
)

__all__ = [
    "SimilarityMatrix",
    "canonical_correlations",
    "linear_cka",
    "pwcca",
    "rank_cross_model",
    "representation_similarity",
    "svcca",
]
