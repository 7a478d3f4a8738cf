"""Regularisation presets and the exact (proximal) L1 solver: exact zeros, the objective against
independent solvers (scikit-learn's saga; a slow float64 proximal-gradient reference written here), more
λ → more zeros, the ``"neurox"`` λ search and clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from neuronwidgets.core import as_activations, split_sentences, train_layerwise_probes, train_probe
from neuronwidgets.core.probing.regularization import NEUROX_GRID, NEUROX_TOLERANCE, PRESETS, Preset


def planted(n_sent: int = 120, width: int = 16, seed: int = 0):
    """4 classes fixed per word type; neurons 3 and 7 carry them, the rest is noise."""
    rng = np.random.default_rng(seed)
    n = n_sent * 8
    vocab_class = rng.integers(0, 4, 300)
    word_ids = rng.integers(0, 300, n)
    y = vocab_class[word_ids]
    x = rng.standard_normal((n, width)).astype(np.float32)
    x[:, 3] = y + 0.8 * rng.standard_normal(n)
    x[:, 7] = (y == 2) * 1.5 + rng.standard_normal(n)
    words = [f"w{i}" for i in word_ids]
    acts = as_activations(x, lengths=[8] * n_sent, words=words)
    return acts, np.array(list("ABCD"), dtype=object)[y], x, y


def standardised_train(acts, x, split):
    tr, _, _ = split.rows(acts.offsets)
    mu, sd = x[tr].mean(0), x[tr].std(0)
    return tr, ((x[tr] - mu) / sd).astype(np.float64)


def objective(z, y, w, b, l1, l2, l2_norm=False):
    """Mean cross-entropy + l1·Σ|W| + l2·ΣW² (or l2·‖W‖), in float64, from the definitions."""
    logits = z @ w.T + b
    logits = logits - logits.max(1, keepdims=True)
    lse = np.log(np.exp(logits).sum(1))
    ce = float(np.mean(lse - logits[np.arange(len(y)), y]))
    pen2 = np.sqrt((w**2).sum()) if l2_norm else (w**2).sum()
    return ce + l1 * np.abs(w).sum() + l2 * pen2


def fit(acts, labels, split, preset, **kw):
    kw.setdefault("precision", "float32")
    return train_probe(acts, labels, split=split, regularization=preset, control=False, baselines=False, **kw)


@pytest.mark.parametrize("preset,l1,l2", [("elastic-net", 3e-3, 2e-3), ("lasso", 5e-3, 0.0)])
def test_exact_l1_matches_scikit_learn_saga(preset: str, l1: float, l2: float) -> None:
    linear_model = pytest.importorskip("sklearn.linear_model")
    acts, labels, x, y = planted()
    split = split_sentences(acts.num_sentences, (0.8, 0.2), seed=1)
    res = fit(acts, labels, split, preset, l1=l1, l2=l2, max_iter=3000)
    tr, z = standardised_train(acts, x, split)
    w, b = res.probe.weight.astype(np.float64), res.probe.bias.astype(np.float64)
    assert res.probe.meta["solver"] == "owlqn"
    assert np.count_nonzero(w == 0.0) > 0  # exact zeros

    # sklearn: C·Σ CE + ρ‖W‖₁ + (1 − ρ)/2·‖W‖²; ours ×(n·C) with n·C·(l1 + 2·l2) = 1
    n = len(tr)
    kwargs = {"l1_ratio": l1 / (l1 + 2 * l2), "C": 1.0 / (n * (l1 + 2 * l2))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the `penalty` deprecation of recent versions, convergence
        clf = linear_model.LogisticRegression(
            penalty="elasticnet", solver="saga", max_iter=4000, tol=1e-9, **kwargs
        ).fit(z, y[tr])
    ours = objective(z, y[tr], w, b, l1, l2)
    ref = objective(z, y[tr], clf.coef_, clf.intercept_, l1, l2)
    assert ours <= ref + 1e-6
    assert abs(ours - ref) < 1e-5
    if not l2:
        return  # pure L1 multinomial: the minimiser need not be unique (softmax's shared offset)
    assert np.abs(w - clf.coef_).max() < 5e-3
    assert set(zip(*np.nonzero(np.abs(clf.coef_) > 1e-3), strict=True)) <= set(
        zip(*np.nonzero(w), strict=True)
    )


def reference_prox_gradient(z, y, c, l1, l2, steps=20000):
    """Plain proximal gradient (ISTA) in float64 with the fixed step 1/L, L = ½·λmax([Z 1]ᵀ[Z 1]/n)
    (Böhning's bound on the softmax Hessian), for mean CE + l1·Σ|W| + l2·‖W‖."""
    n, f = z.shape
    zb = np.c_[z, np.ones(n)]
    step = 1.0 / (0.5 * np.linalg.eigvalsh(zb.T @ zb / n).max())
    theta = np.zeros((c, f + 1))
    onehot = np.eye(c)[y]
    for _ in range(steps):
        logits = zb @ theta.T
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        v = theta - step * ((p - onehot).T @ zb / n)
        w = np.sign(v[:, :f]) * np.maximum(np.abs(v[:, :f]) - step * l1, 0.0)
        norm = np.sqrt((w**2).sum())
        w *= max(0.0, 1.0 - step * l2 / norm) if norm > 0 else 0.0
        theta = np.c_[w, v[:, f]]
    return theta[:, :f], theta[:, f]


def test_neurox_objective_matches_a_slow_reference() -> None:
    acts, labels, x, y = planted(n_sent=60, width=10)
    split = split_sentences(acts.num_sentences, (0.8, 0.2), seed=1)
    lam = 2e-3
    res = fit(acts, labels, split, "neurox", l1=lam, l2=lam, max_iter=3000)
    assert res.probe.meta["l2_form"] == "norm"
    tr, z = standardised_train(acts, x, split)
    w_ref, b_ref = reference_prox_gradient(z, y[tr], 4, lam, lam)
    w, b = res.probe.weight.astype(np.float64), res.probe.bias.astype(np.float64)
    ours = objective(z, y[tr], w, b, lam, lam, l2_norm=True)
    ref = objective(z, y[tr], w_ref, b_ref, lam, lam, l2_norm=True)
    assert ours <= ref + 1e-6 and abs(ours - ref) < 1e-5
    assert np.abs(w - w_ref).max() < 2e-2  # the unsquared norm curves the objective only weakly
    assert np.count_nonzero(w == 0.0) > 0


def test_owlqn_and_fista_reach_the_same_optimum(monkeypatch: pytest.MonkeyPatch) -> None:
    acts, labels, _, _ = planted()
    split = split_sentences(acts.num_sentences, (0.8, 0.2), seed=1)
    for l2_norm in (False, True):
        monkeypatch.setitem(PRESETS, "fista", Preset("fista", 3e-3, 3e-3, "fista", l2_norm, 5000))
        monkeypatch.setitem(PRESETS, "owlqn", Preset("owlqn", 3e-3, 3e-3, "owlqn", l2_norm, 3000))
        a, b = fit(acts, labels, split, "fista"), fit(acts, labels, split, "owlqn")
        assert a.probe.meta["solver"] == "fista" and b.probe.meta["solver"] == "owlqn"
        assert abs(a.probe.meta["objective"] - b.probe.meta["objective"]) < 1e-5
        assert np.abs(a.probe.weight - b.probe.weight).max() < 2e-2
        assert (np.count_nonzero(a.probe.weight == 0) > 0) and (np.count_nonzero(b.probe.weight == 0) > 0)


def test_more_lambda_gives_more_zeros_and_smooth_gives_none() -> None:
    acts, labels, _, _ = planted()
    split = split_sentences(acts.num_sentences, (0.8, 0.2), seed=1)
    zeros = [
        int(np.count_nonzero(fit(acts, labels, split, "elastic-net", l1=lam).probe.weight == 0))
        for lam in (1e-4, 1e-3, 1e-2, 1e-1)
    ]
    assert zeros == sorted(zeros) and zeros[-1] > zeros[0]
    assert zeros[-1] >= 4 * 14  # at λ = 0.1 every noise neuron is out of every class
    smooth = fit(acts, labels, split, "smooth")
    assert np.count_nonzero(smooth.probe.weight == 0) == 0  # the smoothed L1 never reaches zero
    assert smooth.probe.meta["solver"] == "lbfgs" and smooth.meta["regularization"] == "smooth"
    assert (smooth.probe.l1, smooth.probe.l2) == (1e-5, 3e-3)  # the former default, unchanged


def test_proximal_training_is_deterministic() -> None:
    acts, labels, _, _ = planted()
    a = train_probe(acts, labels, regularization="elastic-net", baselines=False)
    b = train_probe(acts, labels, regularization="elastic-net", baselines=False)
    np.testing.assert_array_equal(a.probe.weight, b.probe.weight)
    assert a.selectivity == b.selectivity


def test_neurox_preset_searches_lambda_on_dev_by_its_rule() -> None:
    acts, labels, _, _ = planted()
    res = train_probe(acts, labels, regularization="neurox", baselines=False)  # 80/10/10
    table = res.meta["lambda_search"]
    assert [r["lambda"] for r in table] == list(NEUROX_GRID)
    best = max(r["dev_accuracy"] for r in table)
    ok = [r for r in table if r["dev_accuracy"] >= best - NEUROX_TOLERANCE]
    chosen = max(ok, key=lambda r: (r["dev_selectivity"], r["lambda"]))
    assert res.probe.l1 == res.probe.l2 == chosen["lambda"]
    for r in table:
        assert r["dev_selectivity"] == pytest.approx(r["dev_accuracy"] - r["dev_control_accuracy"])
    assert table[0]["nonzero_weights"] <= table[-1]["nonzero_weights"]
    assert res.meta["regularization"] == "neurox"

    given = train_probe(acts, labels, regularization="neurox", l1=1e-3, control=False, baselines=False)
    assert (given.probe.l1, given.probe.l2) == (1e-3, 1e-3) and "lambda_search" not in given.meta


def test_presets_in_layerwise_probes() -> None:
    x = np.random.default_rng(0).standard_normal((400, 6)).astype(np.float32)
    labels = np.where(x[:, 0] > 0, "P", "N").astype(object)
    acts = as_activations(x, lengths=[8] * 50, words=[f"w{i % 37}" for i in range(400)])
    lw = train_layerwise_probes(acts, labels, regularization="lasso", l1=0.1, control=False, baselines=False)
    w = next(iter(lw.results.values())).probe.weight
    assert np.all(w[:, 1:] == 0) and np.all(w[:, 0] != 0)  # only the informative neuron survives


def test_clear_errors() -> None:
    acts, labels, _, _ = planted(n_sent=20)
    with pytest.raises(ValueError, match="'smooth', 'elastic-net', 'lasso', 'neurox'") as e:
        train_probe(acts, labels, regularization="NeuroX")
    assert "regularization='NeuroX'" in str(e.value)
    assert set(PRESETS) == {"smooth", "elastic-net", "lasso", "neurox"}
    with pytest.raises(ValueError, match="dev rows"):
        train_probe(acts, labels, regularization="neurox", split=(0.8, 0.2))
    with pytest.raises(TypeError, match="l1 must be"):
        train_probe(acts, labels, l1="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_iter must be"):
        train_probe(acts, labels, max_iter=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="l1 and l2 must be"):
        train_probe(acts, labels, regularization="lasso", l1=-1.0)
