"""The probe fitting engine: full-batch L-BFGS on standardised features with elastic-net regularisation.

Each step streams over blocks of rows, so a store too large for memory trains chunk by chunk from disk
(``in_memory=False``); otherwise the standardised matrix is kept in memory, in bfloat16 where the CPU
multiplies bfloat16 natively (products accumulate in float32; ``precision="float32"`` for exact float32
arithmetic). With L-BFGS the L1 term is smoothed (``sqrt(w² + ε²) − ε``) so that it sees a differentiable
loss (no weight is then exactly zero); the proximal solver (FISTA, float32) solves the exact L1 problem.
Used by :func:`~neuronwidgets.core.probing.train_probe` and the other probe trainers of this package.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..store.activations import Activations
from ..store.design import (
    Design,
    EncodedLabels,
    Split,
    all_units,
    block_tensor,
    compute_threads,
    encode_labels,
    resolve_split,
)
from .probes import _BLOCK_ROWS, Probe, ProbeResult, _outputs, control_labels, string_codes
from .scores import ProbeScores, classification_scores, regression_scores

PRECISIONS = ("auto", "float32", "bfloat16")
_L1_EPS = 1e-3  # smoothing of |w| (sqrt(w² + ε²) − ε) so that L-BFGS sees a differentiable loss
_IN_MEMORY_BYTES = 6 * 1024**3  # above this the training matrix is streamed from the activations
_KEEP_CENTRED_BYTES = 1024**3


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def _bf16_native() -> bool:
    """True where the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX): there it is ~4× faster."""
    cpu = getattr(torch, "cpu", None)
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(cpu, name, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # pragma: no cover - private API, best effort
            continue
    return False


def _compute_dtype(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    if precision == "float32" or (precision == "auto" and not _bf16_native()):
        return torch.float32
    return torch.bfloat16


class _RowSource:
    """What the trainer reads: ``iter_blocks(rows)`` of float32 ``[b, F]`` and ``num_features``."""

    num_features: int

    def iter_blocks(
        self, rows: np.ndarray | None = None, max_rows: int = _BLOCK_ROWS
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:  # pragma: no cover - interface
        raise NotImplementedError


class _TypeTable(_RowSource):
    """Random features: one fixed Gaussian vector per word type (the random-feature baseline)."""

    def __init__(self, type_ids: np.ndarray, width: int, seed: int):
        n_types = int(type_ids.max()) + 1 if len(type_ids) else 1
        rng = np.random.default_rng(seed + 7919)
        self.table = rng.standard_normal((n_types, width), dtype=np.float32)
        self.type_ids = type_ids
        self.num_features = width

    def iter_blocks(
        self, rows: np.ndarray | None = None, max_rows: int = _BLOCK_ROWS
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        ids = np.arange(len(self.type_ids)) if rows is None else rows
        for a in range(0, len(ids), max_rows):
            r = ids[a : a + max_rows]
            yield r, self.table[self.type_ids[r]]


def _column_sums(blocks: Iterable[np.ndarray]) -> tuple[np.ndarray, int]:
    total: np.ndarray | None = None
    n = 0
    for x in blocks:
        b = block_tensor(x).sum(0).double().numpy()  # (var_mean along dim 0 is ~20× slower)
        total = b if total is None else total + b
        n += len(x)
    if total is None or n == 0:
        raise ValueError("no training rows")
    return total, n


def _centred_squares(z: torch.Tensor) -> np.ndarray:
    zn = z.numpy()
    squares = np.einsum("ij,ij->j", zn, zn).astype(np.float64)
    overflow = ~np.isfinite(squares)  # |values| beyond ~1e19: their squares overflow float32
    if overflow.any():
        wide = zn[:, overflow].astype(np.float64)
        squares[overflow] = np.einsum("ij,ij->j", wide, wide)
    return squares


@dataclass
class _Fit:
    weight: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    target_mean: float
    target_scale: float
    iterations: int
    objective: float
    dtype: str
    streamed: bool
    train_outputs: np.ndarray | None  # float32 [n_train, C] at the final weights, when kept in memory


def _fit_linear(
    source: _RowSource,
    rows: np.ndarray,
    y: np.ndarray,
    task: str,
    num_classes: int,
    *,
    l1: float,
    l2: float,
    max_iter: int,
    precision: str,
    in_memory: bool | None,
    progress: bool | None,
    desc: str = "training probe",
    solver: str = "lbfgs",
    l2_norm: bool = False,
    init: np.ndarray | None = None,
) -> _Fit:
    """Elastic-net logistic/linear regression on standardised columns of ``source`` by full-batch L-BFGS.

    Loss: mean cross-entropy (or half mean squared error of the standardised target) + ``l1·Σ|W|`` +
    ``l2·ΣW²`` (``l2·‖W‖`` with ``l2_norm``, NeuroX's unsquared form; bias not penalised). ``rows``
    sorted; ``y`` aligned with ``rows``. ``solver="lbfgs"`` smooths ``|w|`` (never exact zeros);
    ``"owlqn"`` (OWL-QN) and ``"fista"`` (FISTA with soft-thresholding) solve the exact problem (exact
    zeros); OWL-QN smooths only the unsquared norm, at ``‖W‖ = 0`` (``sqrt(‖W‖² + 1e-12)``).
    """
    if solver not in ("lbfgs", "owlqn", "fista"):
        raise ValueError(f"unknown solver {solver!r}: choose from 'lbfgs', 'owlqn', 'fista'")
    proximal = solver != "lbfgs"
    if l2_norm and not proximal:
        raise ValueError("the unsquared L2 norm needs an exact solver ('owlqn' or 'fista')")
    # exact solvers compare losses to ~1e-7 in their step tests: bfloat16 rounding would stall them
    dtype = _compute_dtype("float32" if proximal and precision == "auto" else precision)
    f = source.num_features
    c = num_classes if task == "classification" else 1
    n = len(rows)
    if in_memory is None:
        in_memory = n * f * 4 <= _IN_MEMORY_BYTES  # float32, or bfloat16 in two layouts

    cached: list[tuple[np.ndarray, np.ndarray]] | None = list(source.iter_blocks(rows)) if in_memory else None

    def raw_blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if cached is not None:
            yield from cached
        else:
            yield from source.iter_blocks(rows)

    # two passes (mean, then centred squares): exact for columns with a large offset
    total, _ = _column_sums(x for _, x in raw_blocks())
    mean = total / n
    mean_t = torch.from_numpy(mean.astype(np.float32))
    squares = np.zeros(f)
    centred: list[tuple[int, torch.Tensor]] = []
    # keeping the centred float32 blocks saves a pass over the data, at the cost of their memory
    keep_centred = cached is not None and n * f * 4 <= _KEEP_CENTRED_BYTES
    for ids, x in raw_blocks():
        zc = block_tensor(x) - mean_t
        squares += _centred_squares(zc)
        if keep_centred:
            centred.append((len(ids), zc))
    if keep_centred:
        cached = None
    std = np.sqrt(squares / n)
    scale = np.where(std > 1e-8, std, 1.0)
    inv_t = torch.from_numpy((1.0 / scale).astype(np.float32))

    if task == "regression":
        t_mean, t_scale = float(y.mean()), float(y.std()) or 1.0
        y_all = torch.from_numpy(((y - t_mean) / t_scale).astype(np.float32))
    else:
        t_mean, t_scale = 0.0, 1.0
        y_all = torch.from_numpy(y.astype(np.int64))

    def layouts(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if dtype == torch.float32:
            return z, None
        zb = z.to(dtype)
        return zb, zb.T.contiguous()  # both layouts: each product then runs on its fast path

    Block = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]
    prepared: list[Block] | None = None
    if in_memory:
        prepared = []
        pos = 0
        while centred or cached:
            if centred:
                m, zc = centred.pop(0)  # release each float32 block once converted
            else:
                assert cached is not None
                ids, x = cached.pop(0)
                m, zc = len(ids), block_tensor(x) - mean_t
            z, zt = layouts(zc.mul_(inv_t))
            prepared.append((z, zt, y_all[pos : pos + m]))
            pos += m

    def blocks() -> Iterator[Block]:
        if prepared is not None:
            yield from prepared
            return
        pos = 0
        for ids, x in source.iter_blocks(rows):
            z, zt = layouts(block_tensor(x).sub(mean_t).mul_(inv_t))
            yield z, zt, y_all[pos : pos + len(ids)]
            pos += len(ids)

    def fun(theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        weight = theta[: c * f].view(c, f)
        bias = theta[c * f :]
        wc = weight.to(dtype)
        loss = 0.0
        gw = torch.zeros(f, c)
        gb = torch.zeros(c)
        for z, zt, yb in blocks():
            logits = (z @ wc.T).float() + bias
            if task == "classification":
                lse = torch.logsumexp(logits, 1)
                picked = logits.gather(1, yb[:, None]).squeeze(1)
                loss += float((lse - picked).double().sum())
                r = torch.softmax(logits, 1)
                r[torch.arange(len(yb)), yb] -= 1.0
            else:
                r = logits - yb[:, None]
                loss += 0.5 * float((r.double() ** 2).sum())
            rd = r.to(dtype)
            gw += (zt @ rd if zt is not None else z.T @ rd).float()
            gb += r.sum(0)
        grad = torch.empty_like(theta)
        gwt = grad[: c * f].view(c, f)
        gwt.copy_(gw.T).div_(n)
        grad[c * f :] = gb / n
        total = loss / n
        if l2 and not l2_norm:
            total += l2 * float((weight * weight).sum())
            gwt.add_(weight, alpha=2 * l2)
        elif l2 and solver == "owlqn":
            norm = math.sqrt(float((weight * weight).sum()) + 1e-12)
            total += l2 * norm
            gwt.add_(weight, alpha=l2 / norm)
        if l1 and not proximal:
            soft = torch.sqrt(weight * weight + _L1_EPS**2)
            total += l1 * float((soft - _L1_EPS).sum())
            gwt.add_(l1 * weight / soft)
        return total, grad

    from tqdm.auto import tqdm

    from .optim import fista, lbfgs, owlqn

    def prox(v: torch.Tensor, step: float) -> torch.Tensor:
        w = v[: c * f]  # soft-threshold the weights, then shrink them as a block (exact prox of the sum)
        w.copy_(torch.sign(w) * torch.clamp(w.abs() - step * l1, min=0.0))
        if l2_norm and l2:
            norm = float(w.norm())
            w.mul_(max(0.0, 1.0 - step * l2 / norm) if norm > 0 else 0.0)
        return v

    def penalty(theta: torch.Tensor) -> float:
        w = theta[: c * f]
        return l1 * float(w.abs().sum()) + (l2 * float(w.norm()) if l2_norm else 0.0)

    show = progress if progress is not None else n * f > 2e9
    bar = tqdm(total=max_iter, desc=desc, unit="it", disable=not show)
    try:
        with torch.no_grad():
            x0 = torch.zeros(c * f + c) if init is None else torch.from_numpy(init.astype(np.float32))
            tick = lambda i, _: bar.update(1)  # noqa: E731
            if solver == "owlqn":
                l1w = torch.zeros_like(x0)
                l1w[: c * f] = l1
                res = owlqn(fun, x0, l1w, max_iter=max_iter, callback=tick)
            elif solver == "fista":
                res = fista(fun, prox, penalty, x0, max_iter=max_iter, callback=tick)
            else:
                res = lbfgs(fun, x0, max_iter=max_iter, callback=tick)
    finally:
        bar.close()
    weight = res.x[: c * f].view(c, f)
    bias = res.x[c * f :]
    outputs = None
    if prepared is not None:
        with torch.no_grad():
            wc = weight.to(dtype)
            outputs = torch.cat([(z @ wc.T).float() + bias for z, _, _ in prepared]).numpy()
    return _Fit(
        weight=weight.numpy().astype(np.float32),
        bias=bias.numpy().astype(np.float32),
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        target_mean=t_mean,
        target_scale=t_scale,
        iterations=res.iterations,
        objective=float(res.loss),
        dtype=str(dtype).replace("torch.", ""),
        streamed=prepared is None,
        train_outputs=outputs,
    )


@dataclass
class _Prepared:
    """Everything several probes on the same data share: labels, split rows, control labels, word types."""

    activations: Activations
    labels: EncodedLabels
    split: Split
    train_rows: np.ndarray
    dev_rows: np.ndarray
    test_rows: np.ndarray
    control: EncodedLabels | None
    type_ids: np.ndarray | None
    seed: int


def _prepare(
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    task: str,
    split: Split | Sequence[float] | None,
    seed: int,
    control: bool,
    baselines: bool,
) -> _Prepared:
    if not isinstance(activations, Activations):
        raise TypeError(
            f"expected Activations (from extract_activations, or as_activations(matrix)), got "
            f"{type(activations).__name__}"
        )
    enc = encode_labels(labels, activations.num_units, task)
    sp = resolve_split(split, activations, seed)
    tr, dv, te = sp.rows(activations.offsets)
    if enc.task == "classification" and len(np.unique(enc.y[tr])) < 2:
        raise ValueError(
            "the training part of the split has only one class: use more sentences or another split"
        )
    has_words = activations.meta.get("has_words", True)
    words: list[str] | None = all_units(activations) if has_words else None
    ctrl = None
    if control and enc.task == "classification":
        if words is None:
            warnings.warn(
                "no words for these activations (as_activations(..., words=None)): the control task is skipped",
                stacklevel=3,
            )
        else:
            lab = control_labels(words, np.asarray(enc.classes, dtype=object)[enc.y], seed=seed)
            ctrl = encode_labels(lab, len(lab), "classification", classes=enc.classes)
    type_ids = None
    if baselines:
        if words is None:
            type_ids = np.arange(activations.num_units, dtype=np.int64)
        else:
            type_ids = string_codes(words)[1]
    return _Prepared(activations, enc, sp, tr, dv, te, ctrl, type_ids, seed)


def _scores(probe: Probe, enc: EncodedLabels, rows: np.ndarray, outputs: np.ndarray) -> ProbeScores:
    if len(rows) == 0:
        return ProbeScores(enc.task, 0, classes=enc.classes)
    if enc.task == "classification":
        return classification_scores(enc.y[rows], outputs.argmax(1), enc.classes)
    return regression_scores(enc.y[rows], outputs[:, 0] * probe.target_scale + probe.target_mean)


def _score_rows(
    probe: Probe, source: _RowSource, rows: np.ndarray, enc: EncodedLabels, outputs: np.ndarray | None = None
) -> ProbeScores:
    if outputs is None:
        outputs = _outputs(probe, (x for _, x in source.iter_blocks(rows))) if len(rows) else None
    if outputs is None:
        return ProbeScores(enc.task, 0, classes=enc.classes)
    return _scores(probe, enc, rows, outputs)


class _DesignSource(_RowSource):
    def __init__(self, design: Design):
        self.design = design
        self.num_features = design.num_features

    def iter_blocks(
        self, rows: np.ndarray | None = None, max_rows: int = _BLOCK_ROWS
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.design.iter_blocks(rows, max_rows)


def _train_one(
    prep: _Prepared,
    source: _RowSource,
    features: Sequence[str],
    y: EncodedLabels,
    *,
    l1: float,
    l2: float,
    max_iter: int,
    precision: str,
    in_memory: bool | None,
    progress: bool | None,
    desc: str,
    solver: str = "lbfgs",
    l2_norm: bool = False,
    init: np.ndarray | None = None,
) -> tuple[Probe, _Fit]:
    fit = _fit_linear(
        source,
        prep.train_rows,
        y.y[prep.train_rows],
        y.task,
        len(y.classes),
        l1=l1,
        l2=l2,
        max_iter=max_iter,
        precision=precision,
        in_memory=in_memory,
        progress=progress,
        desc=desc,
        solver=solver,
        l2_norm=l2_norm,
        init=init,
    )
    probe = Probe(
        task=y.task,
        features=tuple(features),
        classes=y.classes,
        mean=fit.mean,
        scale=fit.scale,
        weight=fit.weight,
        bias=fit.bias,
        target_mean=fit.target_mean,
        target_scale=fit.target_scale,
        l1=float(l1),
        l2=float(l2),
        meta={
            "iterations": fit.iterations,
            "objective": fit.objective,
            "solver": solver,
            "l2_form": "norm" if l2_norm else "squared",
            "nonzero_weights": int(np.count_nonzero(fit.weight)),
            "dtype": fit.dtype,
            "streamed": fit.streamed,
            "model": prep.activations.model_name,
            "train_rows": len(prep.train_rows),
        },
    )
    return probe, fit


def _check_hyper(l1: float, l2: float, max_iter: int) -> None:
    if not (l1 >= 0 and l2 >= 0 and math.isfinite(l1) and math.isfinite(l2)):
        raise ValueError(f"l1 and l2 must be finite and non-negative, got l1={l1}, l2={l2}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")


_RANDOM_TABLE_BYTES = 1024**3


def _run(
    prep: _Prepared,
    design: Design,
    *,
    l1: float,
    l2: float,
    max_iter: int,
    control: bool,
    baselines: bool,
    precision: str,
    in_memory: bool | None,
    progress: bool | None,
    solver: str = "lbfgs",
    l2_norm: bool = False,
    init: dict[str, np.ndarray | None] | None = None,
) -> ProbeResult:
    with compute_threads(len(prep.train_rows) * design.num_features):
        return _run_unthreaded(
            prep,
            design,
            l1=l1,
            l2=l2,
            max_iter=max_iter,
            control=control,
            baselines=baselines,
            precision=precision,
            in_memory=in_memory,
            progress=progress,
            solver=solver,
            l2_norm=l2_norm,
            init=init,
        )


def _run_unthreaded(
    prep: _Prepared,
    design: Design,
    *,
    l1: float,
    l2: float,
    max_iter: int,
    control: bool,
    baselines: bool,
    precision: str,
    in_memory: bool | None,
    progress: bool | None,
    solver: str = "lbfgs",
    l2_norm: bool = False,
    init: dict[str, np.ndarray | None] | None = None,
) -> ProbeResult:
    """``init``: starting points ``{"probe": θ, "control": θ}`` (flat weights then bias), e.g. a λ path's."""
    start = init or {}
    enc = prep.labels
    source = _DesignSource(design)
    kw: dict[str, Any] = {
        "l1": l1,
        "l2": l2,
        "max_iter": max_iter,
        "precision": precision,
        "in_memory": in_memory,
        "progress": progress,
        "solver": solver,
        "l2_norm": l2_norm,
    }
    t0 = time.perf_counter()
    probe, fit = _train_one(
        prep, source, design.names, enc, desc="training probe", init=start.get("probe"), **kw
    )
    train_s = time.perf_counter() - t0
    scores = {
        "train": _score_rows(probe, source, prep.train_rows, enc, fit.train_outputs),
        "dev": _score_rows(probe, source, prep.dev_rows, enc),
        "test": _score_rows(probe, source, prep.test_rows, enc),
    }
    control_scores = None
    if control and prep.control is not None:
        cprobe, _ = _train_one(
            prep, source, design.names, prep.control, desc="control task", init=start.get("control"), **kw
        )
        control_scores = _score_rows(cprobe, source, prep.test_rows, prep.control)
    majority = math.nan
    random_scores = None
    meta: dict[str, Any] = {"sites": design.sites}
    if baselines:
        if enc.task == "classification":
            counts = np.bincount(enc.y[prep.train_rows], minlength=len(enc.classes))
            majority = float(np.mean(enc.y[prep.test_rows] == counts.argmax()))
            meta["majority_class"] = enc.classes[int(counts.argmax())]
        assert prep.type_ids is not None
        n_types = int(prep.type_ids.max()) + 1
        width = min(design.num_features, max(1, _RANDOM_TABLE_BYTES // (4 * n_types)))
        table = _TypeTable(prep.type_ids, width, prep.seed)
        rprobe, _ = _train_one(
            prep, table, [f"random:{i}" for i in range(width)], enc, desc="random features", **kw
        )
        random_scores = _score_rows(rprobe, table, prep.test_rows, enc)
        meta["random_width"] = width
    return ProbeResult(
        probe=probe,
        split=prep.split,
        train=scores["train"],
        dev=scores["dev"] if len(prep.dev_rows) else None,
        test=scores["test"],
        control=control_scores,
        majority=majority,
        random_features=random_scores,
        train_s=train_s,
        meta=meta,
    )
