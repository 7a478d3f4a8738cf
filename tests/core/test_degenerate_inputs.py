"""Finite but degenerate activations (a constant neuron, a constant or all-zero matrix, values near the float32
limits, duplicated neurons) through every public function that reads an activation matrix: each returns
finite numbers, or warns saying which numbers are undefined and why, or refuses with a clear error. None
returns NaN or infinity silently."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import neuronwidgets.core as nw

N, D, LEN = 300, 12, 10
LENGTHS = [LEN] * (N // LEN)
WORDS = [[f"w{(i * 7 + j) % 23}" for j in range(LEN)] for i in range(N // LEN)]


def _normal(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, D)).astype(np.float32)


def _matrices() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    x = _normal(1)
    x[:, 3] = 2.5
    out["constant neuron"] = x
    out["constant matrix"] = np.full((N, D), 1.0, np.float32)
    out["all zeros"] = np.zeros((N, D), np.float32)
    out["huge values (1e30)"] = (_normal(2) * 1e30).astype(np.float32)
    out["tiny values (1e-30)"] = (_normal(3) * 1e-30).astype(np.float32)
    x = _normal(4)
    x[:, 5] = x[:, 4]
    out["duplicated neuron"] = x
    x = _normal(5)
    x[:, 2] = 0
    x[0, 2] = 1e-6
    out["almost constant neuron"] = x
    return out


LABELS = np.array(["A", "B", "C"])[np.random.default_rng(0).integers(0, 3, N)]
TARGETS = np.random.default_rng(1).standard_normal(N)


def _other() -> nw.Activations:
    return nw.as_activations(_normal(9), lengths=LENGTHS, words=WORDS)


CALLS: dict[str, Callable[[nw.Activations, np.ndarray], Any]] = {
    "linear_cka": lambda a, x: nw.linear_cka(x, _normal(9)),
    "linear_cka(x, x)": lambda a, x: nw.linear_cka(x, x),
    "svcca": lambda a, x: nw.svcca(x, _normal(9)),
    "pwcca": lambda a, x: nw.pwcca(x, _normal(9)),
    "canonical_correlations": lambda a, x: nw.canonical_correlations(x, _normal(9)),
    "representation_similarity": lambda a, x: nw.representation_similarity(a, _other()),
    "rank_cross_model maxcorr": lambda a, x: nw.rank_cross_model(a, _other(), progress=False),
    "rank_cross_model linreg": lambda a, x: nw.rank_cross_model(a, _other(), method="linreg", progress=False),
    "rank_cross_model svcca": lambda a, x: nw.rank_cross_model(a, _other(), method="svcca", progress=False),
    "rank_probeless": lambda a, x: nw.rank_probeless(a, LABELS),
    "rank_probeless raw": lambda a, x: nw.rank_probeless(a, LABELS, standardize=False),
    "rank_gaussian": lambda a, x: nw.rank_gaussian(a, LABELS, k=3, progress=False),
    "rank_iou": lambda a, x: nw.rank_iou(a, LABELS),
    "train_probe": lambda a, x: nw.train_probe(a, LABELS, progress=False),
    "train_probe regression": lambda a, x: nw.train_probe(a, TARGETS, progress=False),
    "rank_weight_mass": lambda a, x: nw.rank_weight_mass(nw.train_probe(a, LABELS, progress=False)),
    "cluster_neurons": lambda a, x: nw.cluster_neurons(a, progress=False),
    "cluster_probe": lambda a, x: nw.cluster_probe(a, LABELS),
    "top_activations": lambda a, x: nw.top_activations(a, progress=False),
    "quantile_samples": lambda a, x: nw.quantile_samples(a, "layer.0.resid:3"),
}


def _non_finite(value: Any) -> list[str]:
    """Names of the non-finite numbers in a result (its scalar or array, or its table)."""
    if isinstance(value, (float, np.floating)):
        return [] if math.isfinite(value) else ["value"]
    if isinstance(value, np.ndarray):
        return [] if np.all(np.isfinite(value)) else ["array"]
    bad = []
    for name in ("scores", "values", "matrix", "accuracy"):
        v = getattr(value, name, None)
        if isinstance(v, np.ndarray) and v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            bad.append(name)
        if isinstance(v, float) and not math.isfinite(v):
            bad.append(name)
    frame = value.to_frame()
    numbers = frame.select_dtypes("number").to_numpy(dtype=float)
    if numbers.size and not np.all(np.isfinite(numbers)):
        bad.append("to_frame()")
    return bad


@pytest.mark.parametrize("matrix", list(_matrices()))
@pytest.mark.parametrize("call", list(CALLS))
def test_degenerate_activations_never_give_silent_nan(call: str, matrix: str) -> None:
    x = _matrices()[matrix]
    acts = nw.as_activations(x, lengths=LENGTHS, words=WORDS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = CALLS[call](acts, x)
        except (ValueError, TypeError) as err:  # a refusal must say what is wrong, in words
            assert len(str(err)) > 30, f"{call} on {matrix}: unclear error {err!r}"
            return
    bad = _non_finite(result)
    if bad:
        said = [str(w.message) for w in caught if "undefined" in str(w.message) or "NaN" in str(w.message)]
        assert said, f"{call} on {matrix}: non-finite {bad} without a warning saying why"


def test_a_regression_probe_on_constant_activations_warns_that_its_correlations_are_undefined() -> None:
    acts = nw.as_activations(np.zeros((N, D), np.float32), lengths=LENGTHS, words=WORDS)
    with pytest.warns(RuntimeWarning, match="predictions are constant.*undefined"):
        result = nw.train_probe(acts, TARGETS, progress=False, control=False)
    assert math.isnan(result.test.spearman) and math.isfinite(result.test.mse)


def test_a_probe_is_scale_invariant_up_to_the_float32_limits() -> None:
    """Standardisation makes a probe blind to the scale of its inputs: activations × 1e30 (whose squares
    overflow float32) train the same probe as the originals."""
    x = _normal(7)
    x[:, 0] += (LABELS == "A") * 2.0  # some signal
    plain = nw.train_probe(nw.as_activations(x, lengths=LENGTHS, words=WORDS), LABELS, progress=False)
    huge = nw.train_probe(nw.as_activations(x * 1e30, lengths=LENGTHS, words=WORDS), LABELS, progress=False)
    assert huge.test.accuracy == pytest.approx(plain.test.accuracy, abs=0.02)
    assert plain.test.accuracy > 0.5
