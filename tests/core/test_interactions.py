"""Interaction methods on functions with planted interactions, their axioms, and on text models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronwidgets.core import (
    Archipelago,
    IntegratedHessians,
    ModelHandle,
    ShapleyTaylorInteraction,
    attribute_interactions,
    load_model,
)
from neuronwidgets.core.attribution.interactions import merge_pairs

X = torch.tensor([[1.5, -2.0, 0.7, 0.3, 1.1]], dtype=torch.float64)


def planted(x: torch.Tensor) -> torch.Tensor:
    """x0·x1 + x2: exactly one interacting pair, (0, 1); x3 and x4 do nothing."""
    return x[:, 0] * x[:, 1] + x[:, 2]


def nonlinear_planted(x: torch.Tensor) -> torch.Tensor:
    """One non-polynomial interaction (0, 3) among non-linear main effects."""
    return torch.tanh(2 * x[:, 0] * x[:, 3]) + torch.sin(x[:, 1]) + x[:, 2] ** 2 + 0.5 * x[:, 4]


def coupled(w: torch.Tensor):
    """Every feature interacts with every other (no planted structure): for the axioms."""
    return lambda x: torch.tanh(x @ w).prod(-1) + x[:, 0] * x[:, 3] * x[:, 5]


def _off_diagonal(m: np.ndarray) -> np.ndarray:
    return m[~np.eye(m.shape[0], dtype=bool)]


def _only_pair(m: np.ndarray, i: int, j: int, tol: float) -> bool:
    rest = m.copy()
    rest[i, j] = rest[j, i] = 0.0
    np.fill_diagonal(rest, 0.0)
    return abs(m[i, j]) > 10 * tol and np.abs(rest).max() <= tol


# -- the planted pair --------------------------------------------------------------------------------


def test_integrated_hessians_recovers_the_planted_pair() -> None:
    gam, delta = IntegratedHessians(planted).attribute(X, return_convergence_delta=True)
    g = gam[0].numpy()
    x0, x1, x2 = X[0, :3].tolist()
    # Γ_01 = Γ_10 = x0·x1 ∫∫αβ = x0·x1 / 4 (baseline 0); nothing else interacts
    assert g[0, 1] == pytest.approx(x0 * x1 / 4) and g[1, 0] == pytest.approx(x0 * x1 / 4)
    assert _only_pair(g, 0, 1, 1e-12)
    np.testing.assert_allclose(np.diag(g), [x0 * x1 / 4, x0 * x1 / 4, x2, 0, 0], atol=1e-9)
    assert abs(float(delta[0])) < 1e-8


def test_shapley_taylor_recovers_the_planted_pair() -> None:
    x0, x1, x2 = X[0, :3].tolist()
    for n_samples in (None, 1, 7):
        st = ShapleyTaylorInteraction(planted).attribute(X, n_samples=n_samples, seed=3)[0].numpy()
        assert st[0, 1] == pytest.approx(x0 * x1) and _only_pair(st, 0, 1, 1e-12)
        np.testing.assert_allclose(np.diag(st), [0, 0, x2, 0, 0], atol=1e-12)


def test_archipelago_recovers_the_planted_pair() -> None:
    out = Archipelago(planted).attribute(X)
    x0, x1, x2 = X[0, :3].tolist()
    assert _only_pair(out.strengths[0].numpy(), 0, 1, 1e-12)
    groups = out.groups[0].tolist()
    assert groups[0] == groups[1] and len(set(groups)) == 4  # {0, 1}, {2}, {3}, {4}
    np.testing.assert_allclose(out.attributions[0].numpy(), [x0 * x1, x0 * x1, x2, 0, 0], atol=1e-12)
    # sets that separate f additively: ArchAttribute is complete
    per_set = {g: float(a) for g, a in zip(groups, out.attributions[0])}
    assert sum(per_set.values()) == pytest.approx(float(planted(X) - planted(torch.zeros_like(X))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_method_finds_a_non_polynomial_planted_pair(seed: int) -> None:
    x = torch.randn(1, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) + 0.5
    ih = IntegratedHessians(nonlinear_planted).attribute(x)[0].numpy()
    st = ShapleyTaylorInteraction(nonlinear_planted).attribute(x, n_samples=5, seed=0)[0].numpy()
    arch = Archipelago(nonlinear_planted).attribute(x)
    # additively separable parts interact with nothing: those entries are exactly zero
    assert _only_pair(ih + ih.T, 0, 3, 1e-9)
    assert _only_pair(st, 0, 3, 1e-9)
    assert _only_pair(arch.strengths[0].numpy(), 0, 3, 1e-9)
    assert arch.groups[0, 0] == arch.groups[0, 3] and len(set(arch.groups[0].tolist())) == 4


# -- axioms ------------------------------------------------------------------------------------------


def test_integrated_hessians_completeness_and_rows_are_integrated_gradients() -> None:
    from captum.attr import IntegratedGradients

    gen = torch.Generator().manual_seed(0)
    f = coupled(torch.randn(6, 6, dtype=torch.float64, generator=gen))
    x = torch.randn(2, 6, dtype=torch.float64, generator=gen)
    base = 0.1 * torch.randn(1, 6, dtype=torch.float64, generator=gen)
    gam, delta = IntegratedHessians(f).attribute(x, base, n_steps=32, return_convergence_delta=True)
    total = f(x) - f(base)
    np.testing.assert_allclose(gam.sum((1, 2)).numpy(), total.numpy(), atol=1e-6)
    assert float(delta.abs().max()) < 1e-6
    ig = IntegratedGradients(f).attribute(x, base, n_steps=200)
    np.testing.assert_allclose(gam.sum(2).numpy(), ig.numpy(), atol=1e-6)
    # symmetric off the diagonal
    g0 = gam[0].numpy()
    np.testing.assert_allclose(_off_diagonal(g0), _off_diagonal(g0.T), atol=1e-9)


def test_shapley_taylor_efficiency_exact_and_sampled() -> None:
    gen = torch.Generator().manual_seed(1)
    f = coupled(torch.randn(6, 6, dtype=torch.float64, generator=gen))
    x = torch.randn(1, 6, dtype=torch.float64, generator=gen)
    total = float(f(x) - f(torch.zeros_like(x)))
    exact = ShapleyTaylorInteraction(f).attribute(x, n_samples=None)[0].numpy()

    def efficiency(m: np.ndarray) -> float:
        return float(np.diag(m).sum() + np.triu(m, 1).sum())

    assert efficiency(exact) == pytest.approx(total, abs=1e-12)
    # the permutation estimator is efficient for every sample, and unbiased
    for n in (1, 3):
        assert efficiency(
            ShapleyTaylorInteraction(f).attribute(x, n_samples=n, seed=n)[0].numpy()
        ) == pytest.approx(total, abs=1e-12)
    many = ShapleyTaylorInteraction(f).attribute(x, n_samples=3000, seed=0)[0].numpy()
    assert np.abs(many - exact).max() < 0.05 * np.abs(exact).max()
    # with only pairwise terms, every permutation gives the exact index
    quad = lambda z: 2 * z[:, 0] * z[:, 1] - z[:, 1] * z[:, 2] + z[:, 3]  # noqa: E731
    q = ShapleyTaylorInteraction(quad).attribute(x[:, :4], n_samples=1, seed=5)[0].numpy()
    np.testing.assert_allclose(
        q, ShapleyTaylorInteraction(quad).attribute(x[:, :4], n_samples=None)[0].numpy(), atol=1e-12
    )


def test_targets_additional_args_batches_and_errors() -> None:
    def multi(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0] * x[:, 1] * scale, x[:, 2] * x[:, 3] * scale], dim=1)

    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [2.0, 1.0, -1.0, 1.0]], dtype=torch.float64)
    scale = torch.tensor([1.0, 10.0], dtype=torch.float64)
    for target, pair in ((0, (0, 1)), (1, (2, 3))):
        st = ShapleyTaylorInteraction(multi).attribute(
            x, target=target, additional_forward_args=scale, n_samples=None
        )
        ih = IntegratedHessians(multi).attribute(x, target=target, additional_forward_args=scale)
        assert isinstance(ih, torch.Tensor)
        for b in range(2):
            assert _only_pair(st[b].numpy(), *pair, tol=1e-9)
            expected = float(x[b, pair[0]] * x[b, pair[1]] * scale[b])
            assert st[b, pair[0], pair[1]] == pytest.approx(expected)
            assert float((ih[b] + ih[b].T)[pair]) == pytest.approx(expected / 2)
    with pytest.raises(ValueError, match="target="):
        ShapleyTaylorInteraction(multi).attribute(x, additional_forward_args=scale)
    with pytest.raises(ValueError, match="do not match"):
        IntegratedHessians(planted).attribute(X, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="n_samples"):
        ShapleyTaylorInteraction(planted).attribute(torch.zeros(1, 20), n_samples=None)
    with pytest.raises(ValueError, match="threshold"):
        Archipelago(planted).attribute(X, threshold=2.0)


def test_merge_pairs() -> None:
    s = np.zeros((5, 5))
    s[0, 1] = s[1, 0] = 1.0
    s[1, 2] = s[2, 1] = 0.5
    s[3, 4] = s[4, 3] = 0.01
    assert merge_pairs(s, threshold=0.1) == [(0, 1, 2), (3,), (4,)]
    assert merge_pairs(s, threshold=0.0) == [(0, 1, 2), (3, 4)]
    assert merge_pairs(s, threshold=0.0, max_pairs=1) == [(0, 1), (2,), (3,), (4,)]


# -- text --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["integrated-hessians", "shapley-taylor", "archipelago"])
@pytest.mark.parametrize("family", ["roberta", "llama"])
def test_token_interactions_on_tiny_models(
    tiny_models: dict[str, ModelHandle], family: str, method: str
) -> None:
    handle = tiny_models[family]
    text = "not bad at all"
    r = attribute_interactions(handle, text, method, n_steps=12, n_samples=3)
    n = len(r.units)
    assert r.matrix.shape == (n, n) and r.main.shape == (n,)
    np.testing.assert_allclose(r.matrix, r.matrix.T, atol=1e-12)
    assert np.all(np.diag(r.matrix) == 0) and np.isfinite(r.matrix).all()
    assert len(r.pairs()) == n * (n - 1) // 2
    if method == "archipelago":
        assert sorted(i for s in r.sets for i in s) == list(range(n)) and len(r.set_scores) == len(r.sets)
        assert r.delta is None
    else:
        # completeness (IH, up to integration error) and efficiency (ST, exact)
        tol = 1e-6 if method == "shapley-taylor" else 0.02 * abs(r.output_difference) + 1e-7
        assert abs(r.delta) <= tol
    words = attribute_interactions(handle, text, method, level="word", n_steps=8, n_samples=2)
    assert words.units == ["not", "bad", "at", "all"]


@pytest.mark.real_model
def test_token_interactions_minilm_negation() -> None:
    handle = load_model("minilm-sentiment")
    ih = attribute_interactions(handle, "not bad", "integrated-hessians", target="positive", n_steps=64)
    st = attribute_interactions(handle, "not bad", "shapley-taylor", target="positive", n_samples=None)
    assert ih.units == st.units == ["not", "bad"]
    assert abs(ih.delta) < 0.02 * abs(ih.output_difference)
    assert abs(st.delta) < 1e-6  # exact up to float32 round-off
    # with two units, the pair's Shapley-Taylor index is the full discrete interaction
    arch = attribute_interactions(handle, "not bad", "archipelago", target="positive")
    assert arch.matrix[0, 1] == pytest.approx(st.matrix[0, 1] ** 2, rel=1e-4)


def test_shapley_taylor_standard_error_equals_the_per_permutation_spread() -> None:
    """f = x0·x1·x2 on binary masks: for the pair (0, 1) each permutation contributes 1 when feature 2
    comes before both, else 0; the estimate is their mean and its standard error their standard deviation
    over √K, recomputed here from the same seeded permutations."""
    import math

    def triple(m: torch.Tensor) -> torch.Tensor:
        return m[:, 0] * m[:, 1] * m[:, 2]

    k, seed = 9, 11
    est, se = ShapleyTaylorInteraction(triple).attribute_with_error(
        torch.ones(1, 4), torch.zeros(1, 4), n_samples=k, seed=seed
    )
    gen = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(4, generator=gen).tolist() for _ in range(k)]
    d = np.array([1.0 if p.index(2) < min(p.index(0), p.index(1)) else 0.0 for p in perms])
    assert float(est[0, 0, 1]) == pytest.approx(d.mean(), abs=1e-12)
    assert float(se[0, 0, 1]) == pytest.approx(d.std(ddof=1) / math.sqrt(k), abs=1e-12)
    assert float(se[0, 0, 0]) == 0.0 and float(se[0, 0, 3]) == 0.0  # main effects exact; 3 never interacts
    exact, exact_se = ShapleyTaylorInteraction(triple).attribute_with_error(
        torch.ones(1, 4), torch.zeros(1, 4), n_samples=None
    )
    assert float(exact[0, 0, 1]) == pytest.approx(1 / 3, abs=1e-12) and float(exact_se.abs().max()) == 0.0
