"""Attribution on Captum: the shared text/target/baseline set-up (``setup.py``), token attribution
methods, layer and neuron conductance, token interactions (Integrated Hessians, Shapley-Taylor,
Archipelago) and faithfulness curves.
"""

from .conductance import LayerAttribution, attribute_layers, attribute_neurons
from .faithfulness import (
    FaithfulnessComparison,
    FaithfulnessCurves,
    compare_faithfulness,
    faithfulness_curves,
)
from .interactions import Archipelago, IntegratedHessians, ShapleyTaylorInteraction
from .methods import METHODS, TokenAttribution, attribute_tokens, get_method
from .token_interactions import TokenInteractions, attribute_interactions

__all__ = [
    "METHODS",
    "Archipelago",
    "FaithfulnessComparison",
    "FaithfulnessCurves",
    "IntegratedHessians",
    "LayerAttribution",
    "ShapleyTaylorInteraction",
    "TokenAttribution",
    "TokenInteractions",
    "attribute_interactions",
    "attribute_layers",
    "attribute_neurons",
    "attribute_tokens",
    "compare_faithfulness",
    "faithfulness_curves",
    "get_method",
]
