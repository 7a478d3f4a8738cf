"""Representation similarity (CKA, SVCCA, PWCCA) and cross-model neuron rankings."""

from __future__ import annotations

import numpy as np
import pytest

from neuronwidgets.core import (
    as_activations,
    canonical_correlations,
    linear_cka,
    pwcca,
    rank_cross_model,
    representation_similarity,
    svcca,
)


def orthogonal(p: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((p, p)))
    return q


def test_linear_cka_identity_invariances_and_independence() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1500, 30)) @ rng.standard_normal((30, 30))  # correlated columns
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x @ orthogonal(30, 1)) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, 7.5 * x + 3.0) == pytest.approx(1.0, abs=1e-9)  # isotropic scaling, offset
    assert linear_cka(x, rng.standard_normal((1500, 30))) < 0.05
    # not invariant to arbitrary invertible maps (unlike CCA)
    assert linear_cka(x, x @ np.diag(np.linspace(0.1, 10, 30))) < 0.99
    # the n × n form (fewer rows than columns) gives the same number
    a, b = rng.standard_normal((40, 60)), rng.standard_normal((40, 50))
    b[:, :10] += a[:, :10]
    ac, bc = a - a.mean(0), b - b.mean(0)
    feature_form = np.linalg.norm(bc.T @ ac) ** 2 / (np.linalg.norm(ac.T @ ac) * np.linalg.norm(bc.T @ bc))
    assert linear_cka(a, b) == pytest.approx(feature_form, rel=1e-10)
    assert linear_cka(a, np.ones((40, 3))) == 0.0
    with pytest.raises(ValueError, match="same words"):
        linear_cka(a, b[:-1])


def test_canonical_correlations_svcca_and_pwcca() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    shared = rng.standard_normal((n, 3))
    x = np.hstack([shared, rng.standard_normal((n, 5))]) @ rng.standard_normal((8, 8))
    y = np.hstack([shared @ rng.standard_normal((3, 3)), rng.standard_normal((n, 4))])
    rho = canonical_correlations(x, y)
    assert rho.shape == (7,)
    assert np.allclose(rho[:3], 1.0, atol=1e-8) and rho[3] < 0.2
    # independent check: eigenvalues of Σxx⁻¹ Σxy Σyy⁻¹ Σyx are the squared canonical correlations
    xc, yc = x - x.mean(0), y - y.mean(0)
    sxx, syy, sxy = xc.T @ xc, yc.T @ yc, xc.T @ yc
    eig = np.sort(np.linalg.eigvals(np.linalg.solve(sxx, sxy) @ np.linalg.solve(syy, sxy.T)).real)[::-1]
    np.testing.assert_allclose(rho, np.sqrt(np.clip(eig[:7], 0, 1)), atol=1e-6)
    # CCA-based similarities: 1 for the same representation; PWCCA keeps any invertible linear map,
    # SVCCA (whose SVD step drops low-variance directions) rotations
    m = rng.standard_normal((8, 8))
    assert svcca(x, x) == pytest.approx(1.0, abs=1e-9)
    assert svcca(x, x @ orthogonal(8, 2)) == pytest.approx(1.0, abs=1e-6)
    assert pwcca(x, x @ m) == pytest.approx(1.0, abs=1e-6)
    independent = rng.standard_normal((n, 8))
    assert svcca(x, independent) < 0.1 and pwcca(x, independent) < 0.1
    assert 0.2 < pwcca(x, y) < 0.95


def test_representation_similarity_between_sites() -> None:
    rng = np.random.default_rng(2)
    base = rng.standard_normal((1200, 16)).astype(np.float32)
    arrays = {
        "embed.resid": base,
        "layer.0.resid": (base @ orthogonal(16, 3)).astype(np.float32) * 4,
        "layer.1.resid": rng.standard_normal((1200, 16)).astype(np.float32),
    }
    acts = as_activations(arrays, lengths=[12] * 100)
    sim = representation_similarity(acts)
    assert sim.rows == sim.columns == ("embed.resid", "layer.0.resid", "layer.1.resid")
    np.testing.assert_allclose(np.diag(sim.values), 1.0, atol=1e-9)
    np.testing.assert_allclose(sim.values, sim.values.T, atol=1e-12)
    assert sim.values[0, 1] == pytest.approx(1.0, abs=1e-6) and sim.values[0, 2] < 0.1
    assert sim.to_frame().loc["embed.resid", "layer.1.resid"] == sim.values[0, 2]
    pw = representation_similarity(
        acts, method="pwcca", sites=["embed.resid"], other_sites=acts.sites, max_rows=800
    )
    assert pw.values.shape == (1, 3) and pw.meta["rows"] == 800
    from matplotlib.axes import Axes

    assert isinstance(sim.plot(), Axes)
    other = as_activations(rng.standard_normal((1000, 4)), lengths=[10] * 100)
    with pytest.raises(ValueError, match="different rows"):
        representation_similarity(acts, other)
    with pytest.raises(ValueError, match="unknown method"):
        representation_similarity(acts, method="rsa")


def test_maxcorr_of_a_model_with_itself_puts_duplicated_neurons_first() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2000, 30)).astype(np.float32)
    x[:, 5] = 2.0 * x[:, 17] + 1.0  # an exact (affine) copy
    x[:, 22] = -x[:, 8]  # an anti-correlated copy
    acts = as_activations(x, lengths=[20] * 100)
    r = rank_cross_model(acts, acts, method="maxcorr")
    top = set(r.top(4))
    assert top == {f"layer.0.resid:{i}" for i in (5, 17, 8, 22)}
    np.testing.assert_allclose(r.scores[:4], 1.0, atol=1e-5)
    assert r.scores[4] < 0.2  # a neuron is never matched with itself
    frame = r.to_frame().set_index("neuron")
    assert frame.loc["layer.0.resid:5", "partner"] == "layer.0.resid:17"
    assert frame.loc["layer.0.resid:22", "partner_corr"] == pytest.approx(-1.0, abs=1e-5)


def test_cross_model_rankings_between_two_models() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    a = rng.standard_normal((n, 20)).astype(np.float32)
    b = rng.standard_normal((n, 12)).astype(np.float32)
    c = rng.standard_normal((n, 12)).astype(np.float32)
    b[:, 3] = 0.5 * a[:, 7]  # neuron 7 of A is in both B and C
    c[:, 9] = -a[:, 7] + 2
    b[:, 0] = a[:, 2]  # neuron 2 of A only in B
    b[:, 1:3] = a[:, 11:13] @ np.array([[1.0, 0.5], [-1.0, 2.0]], dtype=np.float32)  # neuron 11: mixed into B
    lens = [10] * 300
    acts_a = as_activations(a, lengths=lens, name="A")
    acts_b = as_activations({"layer.3.resid": b}, lengths=lens, name="B")
    acts_c = as_activations({"layer.1.mlp": c}, lengths=lens, name="C")
    maxc = rank_cross_model(acts_a, [acts_b, acts_c], method="maxcorr")
    assert set(maxc.top(2)) == {"layer.0.resid:7", "layer.0.resid:2"}
    assert maxc.columns["partner"][maxc.rank_of("layer.0.resid:2")] == "layer.3.resid:0"
    minc = rank_cross_model(acts_a, [acts_b, acts_c], method="mincorr")
    assert minc.neurons[0] == "layer.0.resid:7"  # the only one both models reproduce
    assert minc.scores[1] < 0.2
    lin = rank_cross_model(acts_a, acts_b, method="linreg")
    assert set(lin.top(4)) == {f"layer.0.resid:{i}" for i in (7, 2, 11, 12)}  # a mixture is still linear
    np.testing.assert_allclose(lin.scores[:4], 1.0, atol=1e-4)
    assert lin.scores[4] < 0.2
    sv = rank_cross_model(acts_a, acts_b, method="svcca")
    assert set(sv.top(4)) == {f"layer.0.resid:{i}" for i in (7, 2, 11, 12)}
    assert sv.scores[3] > 0.9 > 0.3 > sv.scores[4]
    same = rank_cross_model(acts_a, acts_a, method="linreg")  # each neuron from the *other* neurons
    assert same.scores.max() < 0.3
    with pytest.raises(ValueError, match="unknown method"):
        rank_cross_model(acts_a, acts_b, method="cka")
    with pytest.raises(ValueError, match="at least one"):
        rank_cross_model(acts_a, [])
