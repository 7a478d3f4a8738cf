"""Probing: linear probes with elastic-net regularisation and control tasks (Dalvi et al. 2019; Hewitt &
Liang 2019), the fitting engine, neuron rankings (weight mass, probeless, IoU, Gaussian), ranking
evaluation by ablation and retraining, minimal subsets and redundancy clustering.
"""

from .clustering import ClusterProbe, cluster_probe
from .evaluation import MinimalSubset, RankingAblation, evaluate_ranking, train_minimal_probe
from .probes import Probe, ProbeResult, control_labels
from .ranking import rank_gaussian, rank_iou, rank_probeless, rank_weight_mass
from .redundancy import NeuronClusters, RedundancyProbes, cluster_neurons, train_redundancy_probes
from .scores import ProbeScores
from .training import LayerwiseProbes, train_layerwise_probes, train_probe

__all__ = [
    "ClusterProbe",
    "LayerwiseProbes",
    "MinimalSubset",
    "NeuronClusters",
    "Probe",
    "ProbeResult",
    "ProbeScores",
    "RankingAblation",
    "RedundancyProbes",
    "cluster_neurons",
    "cluster_probe",
    "control_labels",
    "evaluate_ranking",
    "rank_gaussian",
    "rank_iou",
    "rank_probeless",
    "rank_weight_mass",
    "train_layerwise_probes",
    "train_minimal_probe",
    "train_probe",
    "train_redundancy_probes",
]
