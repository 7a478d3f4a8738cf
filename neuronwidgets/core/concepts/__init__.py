"""Concepts: corpus selection (top-activating contexts, quantiles, word types), concept annotations and
their alignment with neurons, compositional explanations (Mu & Andreas 2020) and concept-level
attribution of a prediction.
"""

from .alignment import ConceptAlignment, align_concepts
from .attribution import ConceptAblation, ConceptAttribution, aggregate_by_concept, check_concept_ablation
from .concepts import Concepts, lexicon_sentiment
from .formulas import CompositionalExplanations, Formula, FormulaExplanation, explain_neurons
from .selection import (
    QuantileSamples,
    TopActivations,
    WordTypeSummary,
    quantile_samples,
    top_activations,
    word_types,
)
from .statistics import ActivationStatistics, extract_statistics

__all__ = [
    "ActivationStatistics",
    "CompositionalExplanations",
    "ConceptAblation",
    "ConceptAlignment",
    "ConceptAttribution",
    "Concepts",
    "Formula",
    "FormulaExplanation",
    "QuantileSamples",
    "TopActivations",
    "WordTypeSummary",
    "aggregate_by_concept",
    "align_concepts",
    "check_concept_ablation",
    "explain_neurons",
    "extract_statistics",
    "lexicon_sentiment",
    "quantile_samples",
    "top_activations",
    "word_types",
]
