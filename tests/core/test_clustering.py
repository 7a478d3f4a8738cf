"""The clustering probe: k-means, purity and NMI against scikit-learn as the independent computation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from neuronwidgets.core import as_activations, cluster_probe
from neuronwidgets.core.probing.clustering import kmeans, nmi, purity


def test_nmi_and_purity_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        clusters = rng.integers(0, 6, 300)
        labels = np.array(list("ABCD"))[rng.integers(0, 4, 300)]
        assert nmi(clusters, labels) == pytest.approx(
            normalized_mutual_info_score(labels, clusters), abs=1e-10
        )
        table = contingency_matrix(labels, clusters)
        assert purity(clusters, labels) == pytest.approx(table.max(0).sum() / table.sum())
    same = rng.integers(0, 4, 100)
    assert nmi(same, same.astype(str)) == pytest.approx(1.0)


def test_kmeans_reaches_sklearns_objective_on_blobs() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 6, (5, 8))
    truth = rng.integers(0, 5, 500)
    x = centres[truth] + rng.normal(0, 1, (500, 8))
    ours = kmeans(x, 5, seed=0)
    theirs = KMeans(5, n_init=5, random_state=0).fit(x)
    inertia = sum(((x[ours == j] - x[ours == j].mean(0)) ** 2).sum() for j in range(5))
    assert inertia <= theirs.inertia_ * 1.0001
    assert normalized_mutual_info_score(truth, ours) > 0.99
    with pytest.raises(ValueError, match="k must be between 1 and the number of rows"):
        kmeans(x[:3], 4)


def test_cluster_probe_finds_the_site_that_encodes_the_tags() -> None:
    rng = np.random.default_rng(2)
    n = 600
    tags = np.array(list("XYZ"))[rng.integers(0, 3, n)]
    signal = np.eye(3)[np.searchsorted(["X", "Y", "Z"], tags)] * 5 + rng.normal(0, 0.5, (n, 3))
    noise = rng.normal(0, 1, (n, 3))
    acts = as_activations(
        {"layer.0.resid": noise.astype(np.float32), "layer.1.resid": signal.astype(np.float32)}
    )
    result = cluster_probe(acts, tags)
    frame = result.to_frame()
    assert list(frame.site) == ["layer.0.resid", "layer.1.resid"] and result.k == 3
    assert result.best_site() == "layer.1.resid"
    assert result.nmi[1] > 0.95 and result.purity[1] > 0.98
    assert result.nmi[0] < 0.05 and result.nmi_random[1] < 0.05
    table = result.contingency()
    assert table.to_numpy().sum() == n and sorted(table.columns) == ["X", "Y", "Z"]
    assert result.nmi[1] == pytest.approx(nmi(result.clusters[1], tags))
    result.plot()
    with pytest.raises(ValueError, match="one entry per activation row"):
        cluster_probe(acts, tags[:-1])
