"""Headless core of neuronwidgets: models, neuron addresses, corpora and activation extraction.

Never imports a widget library (ipywidgets, anywidget, traitlets, IPython), so it runs in scripts and
batch jobs. Widgets in :mod:`neuronwidgets.widgets` consume its results.
"""

from .activations import Activations
from .addresses import NeuronAddress, Site, parse_neuron, parse_neurons, parse_site
from .corpus import Corpus, annotate, as_corpus, load_conllu, load_parallel
from .extraction import extract_activations, resolve_sites
from .models import EMBEDDED_MODELS, ModelHandle, Prediction, load_model

__all__ = [
    "EMBEDDED_MODELS",
    "Activations",
    "Corpus",
    "ModelHandle",
    "NeuronAddress",
    "Prediction",
    "Site",
    "annotate",
    "as_corpus",
    "extract_activations",
    "load_conllu",
    "load_model",
    "load_parallel",
    "parse_neuron",
    "parse_neurons",
    "parse_site",
    "resolve_sites",
]
