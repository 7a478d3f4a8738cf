"""Headless core of neuronwidgets: models, neuron addresses, corpora and activation extraction.

Never imports a widget library (ipywidgets, anywidget, traitlets, IPython), so it runs in scripts and
batch jobs. Widgets in :mod:`neuronwidgets.widgets` consume its results.
"""

from .activations import Activations
from .addresses import NeuronAddress, Site, parse_neuron, parse_neurons, parse_site
from .corpus import Corpus, annotate, as_corpus, load_conllu, load_parallel
from .effects import AblationComparison, InterventionEffect, compare_ablations, measure_effect
from .extraction import extract_activations, resolve_sites
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
from .models import EMBEDDED_MODELS, ModelHandle, Prediction, load_model

__all__ = [
    "EMBEDDED_MODELS",
    "AblationComparison",
    "Activations",
    "Corpus",
    "Generation",
    "Intervention",
    "InterventionEffect",
    "ModelHandle",
    "NeuronAddress",
    "Prediction",
    "Site",
    "ablate",
    "annotate",
    "as_corpus",
    "compare_ablations",
    "extract_activations",
    "generate",
    "intervene",
    "load_conllu",
    "load_model",
    "load_parallel",
    "measure_effect",
    "parse_neuron",
    "parse_neurons",
    "parse_site",
    "predict",
    "predict_logits",
    "resolve_sites",
    "steering_values",
]
