"""Jupyter widgets (anywidget) over the headless core: each one does one thing well and composes with
``ipywidgets.HBox``/``VBox`` and ``traitlets.link``."""

from ._export import save_html
from .ablation_panel import AblationPanel
from .attribution_view import AttributionView
from .interaction_view import InteractionView
from .matrix_view import MatrixView
from .neuron_explorer import NeuronExplorer
from .neuron_table import NeuronTable
from .patching_view import PatchingGrid, PatchingView
from .probe_report import ProbeReport
from .token_heatmap import TokenHeatmap

__all__ = [
    "AblationPanel",
    "AttributionView",
    "InteractionView",
    "MatrixView",
    "NeuronExplorer",
    "NeuronTable",
    "PatchingGrid",
    "PatchingView",
    "ProbeReport",
    "TokenHeatmap",
    "save_html",
]
