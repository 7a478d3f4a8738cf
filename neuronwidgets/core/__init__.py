"""Headless core of neuronwidgets: models, neuron addresses, corpora and activation extraction.

Never imports a widget library (ipywidgets, anywidget, traitlets, IPython), so it runs in scripts and
batch jobs. Widgets in :mod:`neuronwidgets.widgets` consume its results.
"""

from .activations import Activations
from .addresses import NeuronAddress, Site, parse_neuron, parse_neurons, parse_site
from .attribution import METHODS, TokenAttribution, attribute_tokens, get_method
from .concept_attribution import (
    ConceptAblation,
    ConceptAttribution,
    aggregate_by_concept,
    check_concept_ablation,
)
from .concepts import ConceptAlignment, Concepts, align_concepts, lexicon_sentiment
from .conductance import LayerAttribution, attribute_layers, attribute_neurons
from .corpus import Corpus, annotate, as_corpus, load_conllu, load_parallel
from .design import Split, as_activations, split_sentences
from .effects import AblationComparison, InterventionEffect, compare_ablations, measure_effect
from .extraction import extract_activations, resolve_sites
from .faithfulness import (
    FaithfulnessComparison,
    FaithfulnessCurves,
    compare_faithfulness,
    faithfulness_curves,
)
from .formulas import CompositionalExplanations, Formula, FormulaExplanation, explain_neurons
from .interactions import (
    Archipelago,
    IntegratedHessians,
    ShapleyTaylorInteraction,
    TokenInteractions,
    attribute_interactions,
)
from .interventions import (
    Generation,
    Intervention,
    ablate,
    generate,
    intervene,
    predict,
    predict_logits,
    steering_values,
)
from .models import EMBEDDED_MODELS, ModelHandle, Prediction, as_handle, load_model
from .probing import (
    LayerwiseProbes,
    Probe,
    ProbeResult,
    ProbeScores,
    control_labels,
    train_layerwise_probes,
    train_probe,
)
from .ranking import NeuronRanking, rank_gaussian, rank_iou, rank_probeless, rank_weight_mass
from .ranking_eval import MinimalSubset, RankingAblation, evaluate_ranking, train_minimal_probe
from .redundancy import NeuronClusters, RedundancyProbes, cluster_neurons, train_redundancy_probes
from .selection import (
    QuantileSamples,
    TopActivations,
    WordTypeSummary,
    quantile_samples,
    top_activations,
    word_types,
)
from .similarity import (
    SimilarityMatrix,
    canonical_correlations,
    linear_cka,
    pwcca,
    rank_cross_model,
    representation_similarity,
    svcca,
)

__all__ = [
    "EMBEDDED_MODELS",
    "METHODS",
    "AblationComparison",
    "Activations",
    "Archipelago",
    "CompositionalExplanations",
    "ConceptAblation",
    "ConceptAlignment",
    "ConceptAttribution",
    "Concepts",
    "Corpus",
    "FaithfulnessComparison",
    "FaithfulnessCurves",
    "Formula",
    "FormulaExplanation",
    "Generation",
    "IntegratedHessians",
    "Intervention",
    "InterventionEffect",
    "LayerAttribution",
    "LayerwiseProbes",
    "MinimalSubset",
    "ModelHandle",
    "NeuronAddress",
    "NeuronClusters",
    "NeuronRanking",
    "Prediction",
    "Probe",
    "ProbeResult",
    "ProbeScores",
    "QuantileSamples",
    "RankingAblation",
    "RedundancyProbes",
    "ShapleyTaylorInteraction",
    "SimilarityMatrix",
    "Site",
    "Split",
    "TokenAttribution",
    "TokenInteractions",
    "TopActivations",
    "WordTypeSummary",
    "ablate",
    "aggregate_by_concept",
    "align_concepts",
    "annotate",
    "as_activations",
    "as_corpus",
    "as_handle",
    "attribute_interactions",
    "attribute_layers",
    "attribute_neurons",
    "attribute_tokens",
    "canonical_correlations",
    "check_concept_ablation",
    "cluster_neurons",
    "compare_ablations",
    "compare_faithfulness",
    "control_labels",
    "evaluate_ranking",
    "explain_neurons",
    "extract_activations",
    "faithfulness_curves",
    "generate",
    "get_method",
    "intervene",
    "lexicon_sentiment",
    "linear_cka",
    "load_conllu",
    "load_model",
    "load_parallel",
    "measure_effect",
    "parse_neuron",
    "parse_neurons",
    "parse_site",
    "predict",
    "predict_logits",
    "pwcca",
    "quantile_samples",
    "rank_cross_model",
    "rank_gaussian",
    "rank_iou",
    "rank_probeless",
    "rank_weight_mass",
    "representation_similarity",
    "resolve_sites",
    "split_sentences",
    "steering_values",
    "svcca",
    "top_activations",
    "train_layerwise_probes",
    "train_minimal_probe",
    "train_probe",
    "train_redundancy_probes",
    "word_types",
]
