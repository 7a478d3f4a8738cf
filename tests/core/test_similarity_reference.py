"""Reference values for linear CKA, SVCCA and PWCCA: closed forms on constructed matrices, and the papers'
definitions recomputed here independently (HSIC with a centring matrix for CKA, Kornblith et al. 2019;
CCA by covariance whitening and the projection weights of Morcos et al. 2018 for PWCCA)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuronwidgets.core import linear_cka, pwcca, svcca
from neuronwidgets.core.similarity.measures import canonical_correlations


def centred_orthonormal(n: int, k: int, seed: int = 0) -> np.ndarray:
    """``k`` orthonormal columns of length ``n``, each orthogonal to the all-ones vector (so centring
    leaves them unchanged)."""
    rng = np.random.default_rng(seed)
    a = np.column_stack([np.ones(n), rng.standard_normal((n, k))])
    q, _ = np.linalg.qr(a)
    return q[:, 1:]


def test_linear_cka_closed_form() -> None:
    q = centred_orthonormal(50, 3)
    s1, s2, t1, t2 = 2.0, 0.5, 1.5, 3.0
    x = np.column_stack([s1 * q[:, 0], s2 * q[:, 1]])
    y = np.column_stack([t1 * q[:, 1], t2 * q[:, 2]])  # shares only the direction q1 with x
    expected = (t1 * s2) ** 2 / (math.sqrt(s1**4 + s2**4) * math.sqrt(t1**4 + t2**4))
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-10)
    assert linear_cka(x, x) == pytest.approx(1.0, rel=1e-12)
    assert linear_cka(x, np.column_stack([q[:, 2]])) == pytest.approx(0.0, abs=1e-12)
    # the n × n Gram path (more neurons than rows) gives the same value
    wide_x = np.column_stack([x, np.zeros((50, 60))])
    assert linear_cka(wide_x, y) == pytest.approx(expected, rel=1e-10)


def _hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. (2019), eq. 1-3: HSIC(K, L) = tr(K H L H) / (n-1)², linear kernels, raw inputs."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.trace(a @ h @ b @ h)) / (n - 1) ** 2

    return hsic(k, l_) / math.sqrt(hsic(k, k) * hsic(l_, l_))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_cka_equals_the_hsic_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((40, 7)) * rng.uniform(0.1, 5, 7) + rng.uniform(-20, 20, 7)  # offsets, scales
    y = x[:, :4] @ rng.standard_normal((4, 5)) + 0.7 * rng.standard_normal((40, 5)) + 3.0
    assert linear_cka(x, y) == pytest.approx(_hsic_cka(x, y), rel=1e-9)
    assert linear_cka(x.astype(np.float32), y) == pytest.approx(_hsic_cka(x, y), rel=1e-5)


def rotated_pair(theta: float, phi: float, a: float = 1.0, b: float = 1.0, n: int = 80):
    """x = [a q0, b q1]; y = [q0 cos θ + q2 sin θ, q1 cos φ + q3 sin φ]: canonical correlations cos θ, cos φ
    with canonical variates q0, q1 of x."""
    q = centred_orthonormal(n, 4, seed=3)
    x = np.column_stack([a * q[:, 0], b * q[:, 1]])
    y = np.column_stack(
        [
            q[:, 0] * math.cos(theta) + q[:, 2] * math.sin(theta),
            q[:, 1] * math.cos(phi) + q[:, 3] * math.sin(phi),
        ]
    )
    return x, y, q


def test_canonical_correlations_and_svcca_closed_form() -> None:
    theta, phi = 0.3, 1.1
    x, y, _ = rotated_pair(theta, phi, a=3.0, b=2.0)
    rho = canonical_correlations(x, y)
    np.testing.assert_allclose(rho, [math.cos(theta), math.cos(phi)], atol=1e-10)
    # SVCCA keeps both directions of each side (99 % of the variance needs both) → the mean correlation
    assert svcca(x, y) == pytest.approx((math.cos(theta) + math.cos(phi)) / 2, abs=1e-10)
    # the SV step: shrink x's second direction so that the first explains > 99 % of its variance; only q0
    # is left on x's side, so the one canonical correlation is cos θ
    x_small = np.column_stack([x[:, 0] * 10 / 3, x[:, 1] * 0.05 / 2])
    assert svcca(x_small, y) == pytest.approx(math.cos(theta), abs=1e-10)
    assert svcca(x_small, y, variance=1.0) == pytest.approx((math.cos(theta) + math.cos(phi)) / 2, abs=1e-10)


def test_pwcca_closed_form() -> None:
    """Canonical variates of x are q0 and q1; ⟨q0, a q0⟩ = a and ⟨q1, b q1⟩ = b, so the projection weights
    are a and b: PWCCA = (a cos θ + b cos φ) / (a + b)."""
    theta, phi, a, b = 0.2, 0.9, 4.0, 1.0
    x, y, _ = rotated_pair(theta, phi, a=a, b=b)
    expected = (a * math.cos(theta) + b * math.cos(phi)) / (a + b)
    assert pwcca(x, y) == pytest.approx(expected, abs=1e-10)
    # not symmetric: from y's side the weights are the sums of |⟨h_i, y_j⟩| over y's unit columns
    assert pwcca(y, x) == pytest.approx((math.cos(theta) + math.cos(phi)) / 2, abs=1e-10)


def _pwcca_morcos(x: np.ndarray, y: np.ndarray) -> float:
    """Morcos et al. (2018) recomputed: CCA by whitening the covariances (eigh), canonical variates
    h_i = X_c Σxx^{-1/2} u_i normalised, α_i = Σ_j |⟨h_i, x_j⟩|, PWCCA = Σ α_i ρ_i / Σ α_i."""
    xc, yc = x - x.mean(0), y - y.mean(0)

    def inv_sqrt(c: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(c)
        return v @ np.diag(w**-0.5) @ v.T

    sxx, syy, sxy = xc.T @ xc, yc.T @ yc, xc.T @ yc
    wx = inv_sqrt(sxx)
    u, rho, _ = np.linalg.svd(wx @ sxy @ inv_sqrt(syy))
    r = min(x.shape[1], y.shape[1])
    h = xc @ wx @ u[:, :r]
    h /= np.linalg.norm(h, axis=0)
    alpha = np.abs(h.T @ xc).sum(1)
    return float((alpha * np.clip(rho[:r], 0, 1)).sum() / alpha.sum())


@pytest.mark.parametrize("seed", [0, 1])
def test_pwcca_equals_the_papers_definition_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((500, 6)) * rng.uniform(0.5, 3, 6) + 2.0
    y = x @ rng.standard_normal((6, 8)) + 1.5 * rng.standard_normal((500, 8))
    assert pwcca(x, y) == pytest.approx(_pwcca_morcos(x, y), rel=1e-8)
    rho = canonical_correlations(x, y)
    xc, yc = x - x.mean(0), y - y.mean(0)
    # the first canonical correlation is the largest correlation of any pair of projections; check it
    # against the whitened-SVD value
    w = np.linalg.inv(np.linalg.cholesky(xc.T @ xc)).T
    v = np.linalg.inv(np.linalg.cholesky(yc.T @ yc)).T
    assert rho[0] == pytest.approx(np.linalg.svd(w.T @ xc.T @ yc @ v, compute_uv=False)[0], rel=1e-9)
