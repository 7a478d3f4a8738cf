"""Correlation clustering of neurons and probes on cluster representatives."""

from __future__ import annotations

import numpy as np
import pytest

from neuronwidgets.core import as_activations, cluster_neurons, train_redundancy_probes
from neuronwidgets.core.probing.redundancy import _cut, _union, nn_chain_linkage


def grouped(seed: int = 0, n: int = 3000):
    """Neurons 0–4 copy one factor, 5–7 another, 8–9 a third (each with a little noise); 10–19 are
    independent; 20 is constant. Labels follow the first factor."""
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n, 3))
    x = rng.standard_normal((n, 21)).astype(np.float32)
    for cols, k in (((0, 1, 2, 3, 4), 0), ((5, 6, 7), 1), ((8, 9), 2)):
        for c in cols:
            x[:, c] = (rng.choice([-1, 1]) * (1 + c) * f[:, k] + 0.1 * rng.standard_normal(n)).astype(
                np.float32
            )
    x[:, 20] = 3.0
    labels = np.where(f[:, 0] > 0, "pos", "neg")
    return as_activations(x, lengths=[10] * (n // 10), words=[f"w{i % 500}" for i in range(n)]), labels


def test_clusters_recover_correlated_groups() -> None:
    acts, _ = grouped()
    cl = cluster_neurons(acts, threshold=0.3, max_rows=None)
    name = "layer.0.resid:{}".format
    assert cl.num_clusters == 3 + 10 + 1
    assert sorted(cl.sizes.tolist(), reverse=True)[:3] == [5, 3, 2] and cl.sizes[0] == 5
    assert set(cl.members(0)) == {name(i) for i in range(5)}
    assert cl.cluster_of(name(6)) == cl.cluster_of(name(5)) != cl.cluster_of(name(0))
    assert cl.representatives[0] in cl.members(0)
    assert len(set(cl.representatives)) == cl.num_clusters
    assert cl.meta["constant_neurons"] == 1 and len(cl.members(cl.cluster_of(name(20)))) == 1
    frame = cl.to_frame()
    assert frame["representative"].sum() == cl.num_clusters and frame["size"].max() == 5
    # a strict threshold splits nothing correlated below |ρ| = 0.999; a loose one still keeps noise apart
    assert cluster_neurons(acts, threshold=0.0001, max_rows=None).num_clusters == 21
    assert cluster_neurons(acts, threshold=0.6, linkage="complete").num_clusters == 14
    from matplotlib.axes import Axes

    assert isinstance(cl.plot(), Axes)
    with pytest.raises(ValueError, match="threshold"):
        cluster_neurons(acts, threshold=1.5)
    with pytest.raises(ValueError, match="linkage"):
        cluster_neurons(acts, linkage="ward")


@pytest.mark.parametrize("linkage", ["average", "complete", "single"])
def test_nn_chain_matches_scipy(linkage: str) -> None:
    hierarchy = pytest.importorskip("scipy.cluster.hierarchy")
    distance = pytest.importorskip("scipy.spatial.distance")
    rng = np.random.default_rng(7)
    pts = np.vstack([rng.normal(c, 0.3, (15, 2)) for c in ((0, 0), (3, 0), (0, 3), (3, 3))])
    d = distance.squareform(distance.pdist(pts))
    merges = nn_chain_linkage(d.copy(), linkage)
    heights = np.sort(merges[:, 2])
    z = hierarchy.linkage(distance.squareform(d, checks=False), method=linkage)
    np.testing.assert_allclose(heights, np.sort(z[:, 2]), rtol=1e-10)
    for t in (0.3, 0.8, 1.5, 3.0):
        ours = _cut(merges, len(pts), t)
        ref = hierarchy.fcluster(z, t, criterion="distance")
        # the same partition, whatever the label names
        pairs = {(int(a), int(b)) for a, b in zip(ours, ref)}
        assert len(pairs) == len(set(ours)) == len(set(ref))


def test_union_find_joins_chains() -> None:
    parent = _union(np.arange(8), np.array([0, 6, 2, 5]), np.array([3, 7, 6, 3]))
    assert parent.tolist() == [0, 1, 2, 0, 4, 0, 2, 2]


def test_probes_on_representatives_keep_accuracy() -> None:
    acts, labels = grouped(n=2000)
    red = train_redundancy_probes(acts, labels, thresholds=(0.0001, 0.3), max_rows=None, control=False)
    frame = red.to_frame()
    assert frame["neurons"].tolist() == [21, 21, 14]
    assert (
        frame["accuracy"].iloc[2] > 0.9 and abs(frame["accuracy"].iloc[2] - frame["accuracy"].iloc[0]) < 0.05
    )
    assert red.results[1].probe.num_features == 14
    from matplotlib.axes import Axes

    assert isinstance(red.plot(), Axes)
