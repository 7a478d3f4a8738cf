"""Jupyter widgets (anywidget) over the headless core: each one does one thing well and composes with
``ipywidgets.HBox``/``VBox`` and ``traitlets.link``."""

from .ablation_panel import AblationPanel
from .neuron_table import NeuronTable
from .probe_report import ProbeReport
from .token_heatmap import TokenHeatmap

__all__ = ["AblationPanel", "NeuronTable", "ProbeReport", "TokenHeatmap"]
