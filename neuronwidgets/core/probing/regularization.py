"""Named regularisation presets of the probe trainers (``regularization=`` of
:func:`~neuronwidgets.core.train_probe`) and the λ search of the ``"neurox"`` preset.

Every preset penalises the weights on *standardised* neurons (zero mean, unit variance on the training
rows), never the bias, and adds its penalty to the *mean* loss over the training rows:

- ``"smooth"`` (the default): ``mean CE + l1·Σ|W| + l2·ΣW²`` with ``l1 = 1e-5``, ``l2 = 3e-3``, solved by
  30 L-BFGS steps with ``|w|`` smoothed as ``sqrt(w² + 1e-6) − 1e-3``. Fast and accurate, but the
  smoothing means no weight is ever exactly zero.
- ``"elastic-net"``: the same objective solved exactly by OWL-QN (Andrew & Gao 2007: L-BFGS restricted to
  an orthant, coordinates that cross zero are set to exactly zero; float32, up to 300 steps), ``l1 = 1e-3``,
  ``l2 = 3e-3``: weights the L1 term does not pay for are exactly zero.
- ``"lasso"``: as ``"elastic-net"`` with ``l2 = 0``.
- ``"neurox"``: Dalvi et al. (2019) / NeuroX's probe objective, ``mean CE + λ·Σ|W| + λ·‖W‖`` (λ1 = λ2;
  ``‖W‖`` the *unsquared* Frobenius norm, as NeuroX's ``l2_penalty``), solved exactly by OWL-QN (the norm
  smoothed only at ``W = 0``, as ``sqrt(‖W‖² + 1e-12)``). λ is chosen on the dev rows of the split from
  ``NEUROX_GRID`` (1e-1 … 1e-5, each fit warm-started from the previous, larger λ): a probe and a
  control-task probe per λ; among the λ whose dev accuracy is within ``NEUROX_TOLERANCE`` (0.01) of the
  best, the one with the highest dev selectivity (ties, or no control task: the larger λ). Giving
  ``l1``/``l2`` skips the search (λ1 = λ2 = the one given).

The exact solvers run in float32 (``precision="auto"``): their step tests compare losses to ~1e-7, which
bfloat16 products would blur. ``precision="bfloat16"`` is ~4× faster on CPUs with native bfloat16 but
stops short of the optimum (on MiniLM × UD EWT: objective 1e-4 higher, ~3 % more non-zero weights).
The engine's other exact solver, FISTA with soft-thresholding (``Preset(..., solver="fista", ...)``), solves
the same problems (the unsquared norm by its exact proximal map) and cross-checks OWL-QN in the tests.

Where ``"neurox"`` deviates from NeuroX 1.0.9 (``neurox.interpretation.linear_probe``): NeuroX trains on
raw activations by Adam (lr 1e-3, batches of 32, 10 epochs, never to convergence), so its λ act on raw
weights and its solution depends on the data order; here λ act on standardised weights (comparable
across neurons, layers and models) and the convex problem is solved to tolerance, deterministically.
NeuroX's code takes λ1, λ2 as arguments and ships no search: the search follows the papers' description
(grid search on held-out data, trading accuracy against selectivity), with the grid and tolerance above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..store.design import Design, compute_threads
from .engine import _DesignSource, _Prepared, _run, _score_rows, _train_one
from .probes import ProbeResult


@dataclass(frozen=True)
class Preset:
    """One named regularisation: penalty weights, L2 form, solver and its step budget."""

    name: str
    l1: float
    l2: float
    solver: str  # "lbfgs" (|w| smoothed), "owlqn" or "fista" (exact L1, exact zeros)
    l2_norm: bool  # True: l2·‖W‖ (NeuroX); False: l2·ΣW²
    max_iter: int
    search: bool = False  # choose λ1 = λ2 on the dev rows (NEUROX_GRID)


PRESETS: dict[str, Preset] = {
    "smooth": Preset("smooth", 1e-5, 3e-3, "lbfgs", False, 30),
    "elastic-net": Preset("elastic-net", 1e-3, 3e-3, "owlqn", False, 300),
    "lasso": Preset("lasso", 1e-3, 0.0, "owlqn", False, 300),
    "neurox": Preset("neurox", 1e-3, 1e-3, "owlqn", True, 300, search=True),
}
NEUROX_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
NEUROX_TOLERANCE = 0.01


def resolve_preset(
    regularization: str, l1: float | None, l2: float | None, max_iter: int | None
) -> tuple[Preset, bool]:
    """The preset with the given overrides, and whether its λ search still runs (not when λ is given)."""
    if not isinstance(regularization, str) or regularization not in PRESETS:
        raise ValueError(
            f"regularization={regularization!r} is not a known preset: expected one of "
            f"{', '.join(repr(k) for k in PRESETS)}"
        )
    for name, value in (("l1", l1), ("l2", l2)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float, np.floating))
        ):
            raise TypeError(f"{name} must be a non-negative number or None, got {value!r}")
    if max_iter is not None and (
        isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1
    ):
        raise ValueError(f"max_iter must be a positive integer or None, got {max_iter!r}")
    p = PRESETS[regularization]
    search = p.search and l1 is None and l2 is None
    if p.search and (l1 is None) != (l2 is None):
        l1 = l2 if l1 is None else l1  # NeuroX's setting: λ1 = λ2
        l2 = l1
    return (
        Preset(
            p.name,
            p.l1 if l1 is None else float(l1),
            p.l2 if l2 is None else float(l2),
            p.solver,
            p.l2_norm,
            p.max_iter if max_iter is None else int(max_iter),
            p.search,
        ),
        search,
    )


def search_neurox_lambda(
    prep: _Prepared,
    design: Design,
    preset: Preset,
    kw: dict[str, Any],
    grid: Sequence[float] = NEUROX_GRID,
    tolerance: float = NEUROX_TOLERANCE,
) -> tuple[float, list[dict[str, float]], dict[str, np.ndarray | None]]:
    """λ (= λ1 = λ2) of the ``"neurox"`` preset, chosen on the dev rows, the table of the search, and the
    search's solutions at that λ (the final fit starts from them)."""
    if len(prep.dev_rows) == 0:
        raise ValueError(
            "regularization='neurox' chooses λ on the dev rows, but the split has none: use a split with a "
            "dev part, e.g. split=(0.8, 0.1, 0.1), or give l1= (and l2=) to skip the search"
        )
    source = _DesignSource(design)
    opts = {**kw, "max_iter": preset.max_iter, "solver": preset.solver, "l2_norm": preset.l2_norm}
    table: list[dict[str, float]] = []
    warm: dict[str, np.ndarray | None] = {"probe": None, "control": None}  # the path, largest λ first
    inits: dict[float, dict[str, np.ndarray | None]] = {}
    for lam in sorted(grid, reverse=True):
        probe, fit = _train_one(
            prep,
            source,
            design.names,
            prep.labels,
            l1=lam,
            l2=lam,
            desc="λ search",
            init=warm["probe"],
            **opts,
        )
        warm["probe"] = np.concatenate([fit.weight.ravel(), fit.bias])
        dev = _score_rows(probe, source, prep.dev_rows, prep.labels).accuracy
        row = {
            "lambda": float(lam),
            "dev_accuracy": float(dev),
            "nonzero_weights": probe.meta["nonzero_weights"],
        }
        if prep.control is not None:
            cprobe, cfit = _train_one(
                prep,
                source,
                design.names,
                prep.control,
                l1=lam,
                l2=lam,
                desc="λ search (control)",
                init=warm["control"],
                **opts,
            )
            warm["control"] = np.concatenate([cfit.weight.ravel(), cfit.bias])
            ctrl = _score_rows(cprobe, source, prep.dev_rows, prep.control).accuracy
            row.update(dev_control_accuracy=float(ctrl), dev_selectivity=float(dev - ctrl))
        inits[lam] = dict(warm)
        table.append(row)
    best = max(r["dev_accuracy"] for r in table)
    ok = [r for r in table if r["dev_accuracy"] >= best - tolerance]
    chosen = max(ok, key=lambda r: (r.get("dev_selectivity", 0.0), r["lambda"]))
    return chosen["lambda"], table, inits[chosen["lambda"]]


def run_preset(
    prep: _Prepared,
    design: Design,
    preset: Preset,
    search: bool,
    *,
    control: bool,
    baselines: bool,
    precision: str,
    in_memory: bool | None,
    progress: bool | None,
) -> ProbeResult:
    """Train with a resolved preset (running its λ search first where it has one)."""
    kw: dict[str, Any] = {"precision": precision, "in_memory": in_memory, "progress": progress}
    l1, l2 = preset.l1, preset.l2
    meta: dict[str, Any] = {"regularization": preset.name}
    init: dict[str, np.ndarray | None] | None = None
    if search:
        with compute_threads(len(prep.train_rows) * design.num_features):
            lam, table, init = search_neurox_lambda(prep, design, preset, {**kw, "progress": False})
        l1 = l2 = lam
        meta["lambda_search"] = table
    result = _run(
        prep,
        design,
        l1=l1,
        l2=l2,
        max_iter=preset.max_iter,
        control=control,
        baselines=baselines,
        solver=preset.solver,
        l2_norm=preset.l2_norm,
        init=init,
        **kw,
    )
    return replace(result, meta={**result.meta, **meta})
