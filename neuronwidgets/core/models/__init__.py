"""Models: loading (:func:`load_model` → :class:`ModelHandle`), neuron addresses (``layer.3.mlp:117``),
forward hooks on sites, and the offline model packages.
"""

from .addresses import NeuronAddress, Site, parse_neuron, parse_neurons, parse_site
from .handle import ModelHandle, Prediction
from .loading import EMBEDDED_MODELS, as_handle, load_model
from .runtime import resolve_device
from .wrapping import wrap_model

__all__ = [
    "EMBEDDED_MODELS",
    "ModelHandle",
    "NeuronAddress",
    "Prediction",
    "Site",
    "as_handle",
    "load_model",
    "parse_neuron",
    "parse_neurons",
    "parse_site",
    "resolve_device",
    "wrap_model",
]
