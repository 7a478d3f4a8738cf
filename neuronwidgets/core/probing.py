"""Linear probes: which neurons encode a property, how well, and whether the probe learns the property or
memorises words.

- :func:`train_probe`: logistic regression (classes) or linear regression (real values) with elastic-net
  regularisation (L1 + L2) on all neurons, chosen sites or a neuron subset; train/dev/test split by
  sentence; deterministic. Beside every result: a control task (Hewitt & Liang 2019) and its
  selectivity, the majority-class baseline and a probe on random features of the same width.
- :func:`train_layerwise_probes`: one probe per site in one call, with a table and a plot.

Training is full-batch L-BFGS on standardised features (mean/std stored in the probe). Each step streams
over blocks of rows, so a store too large for memory trains chunk by chunk from disk (``in_memory=False``);
otherwise the standardised matrix is kept in memory, in bfloat16 where the CPU multiplies bfloat16 natively
(products accumulate in float32; ``precision="float32"`` for exact float32 arithmetic).

Probes and results save to safetensors + JSON (no pickle).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from .activations import Activations
from .addresses import NeuronAddress, Site, parse_neuron, parse_site
from .design import (
    Design,
    EncodedLabels,
    Split,
    all_units,
    block_tensor,
    compute_threads,
    encode_labels,
    resolve_split,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PROBE_FORMAT = "neuronwidgets-probe"
RESULT_FORMAT = "neuronwidgets-probe-result"
PRECISIONS = ("auto", "float32", "bfloat16")
_L1_EPS = 1e-3  # smoothing of |w| (sqrt(w² + ε²) − ε) so that L-BFGS sees a differentiable loss
_IN_MEMORY_BYTES = 6 * 1024**3  # above this the training matrix is streamed from the activations
_BLOCK_ROWS = 65536
_KEEP_CENTRED_BYTES = 1024**3


# ------------------------------------------------------------------------------------------------
# Scores
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeScores:
    """Scores of predictions against gold labels.

    Classification: ``accuracy``, ``macro_f1`` (over classes present in gold or predictions, as
    scikit-learn), and per class ``precision``, ``recall``, ``f1`` (float64 ``[C]``) and ``support``
    (int64 ``[C]``) in the order of ``classes``. Regression: ``pearson``, ``spearman``, ``mse``.
    Unused fields are NaN or empty.
    """

    task: str
    n: int
    accuracy: float = math.nan
    macro_f1: float = math.nan
    classes: tuple[str, ...] = ()
    precision: np.ndarray = field(default_factory=lambda: np.zeros(0))
    recall: np.ndarray = field(default_factory=lambda: np.zeros(0))
    f1: np.ndarray = field(default_factory=lambda: np.zeros(0))
    support: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pearson: float = math.nan
    spearman: float = math.nan
    mse: float = math.nan

    @property
    def main(self) -> float:
        """Accuracy for classes, Pearson's r for regression."""
        return self.accuracy if self.task == "classification" else self.pearson

    def to_frame(self) -> pd.DataFrame:
        """Per-class precision/recall/F1/support (classification) or one row of regression scores."""
        if self.task == "classification":
            return pd.DataFrame(
                {
                    "class": list(self.classes),
                    "precision": self.precision,
                    "recall": self.recall,
                    "f1": self.f1,
                    "support": self.support,
                }
            )
        return pd.DataFrame(
            [{"n": self.n, "pearson": self.pearson, "spearman": self.spearman, "mse": self.mse}]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "n": self.n,
            "accuracy": _num(self.accuracy),
            "macro_f1": _num(self.macro_f1),
            "classes": list(self.classes),
            "precision": self.precision.tolist(),
            "recall": self.recall.tolist(),
            "f1": self.f1.tolist(),
            "support": self.support.tolist(),
            "pearson": _num(self.pearson),
            "spearman": _num(self.spearman),
            "mse": _num(self.mse),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbeScores:
        def f(k: str) -> float:
            v = d.get(k)
            return math.nan if v is None else float(v)

        return cls(
            task=str(d["task"]),
            n=int(d["n"]),
            accuracy=f("accuracy"),
            macro_f1=f("macro_f1"),
            classes=tuple(d.get("classes", ())),
            precision=np.asarray(d.get("precision", []), dtype=np.float64),
            recall=np.asarray(d.get("recall", []), dtype=np.float64),
            f1=np.asarray(d.get("f1", []), dtype=np.float64),
            support=np.asarray(d.get("support", []), dtype=np.int64),
            pearson=f("pearson"),
            spearman=f("spearman"),
            mse=f("mse"),
        )


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> ProbeScores:
    """Accuracy, macro-F1 and per-class scores of integer predictions (indices into ``classes``)."""
    c = len(classes)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        return ProbeScores("classification", 0, classes=tuple(classes))
    cm = np.bincount(y_true * c + y_pred, minlength=c * c).reshape(c, c)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1)
    predicted = cm.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (support > 0) | (predicted > 0)
    return ProbeScores(
        "classification",
        len(y_true),
        accuracy=float(tp.sum() / len(y_true)),
        macro_f1=float(f1[present].mean()) if present.any() else math.nan,
        classes=tuple(classes),
        precision=precision,
        recall=recall,
        f1=f1,
        support=support.astype(np.int64),
    )


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> ProbeScores:
    """Pearson's r, Spearman's ρ and mean squared error."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if len(y_true) < 2:
        return ProbeScores("regression", len(y_true))
    return ProbeScores(
        "regression",
        len(y_true),
        pearson=_pearson(y_true, y_pred),
        spearman=_pearson(_ranks(y_true), _ranks(y_pred)),
        mse=float(np.mean((y_true - y_pred) ** 2)),
    )


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 0 else math.nan


def _ranks(x: np.ndarray) -> np.ndarray:
    return pd.Series(x).rank(method="average").to_numpy()


# ------------------------------------------------------------------------------------------------
# The probe
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Probe:
    """A trained linear probe.

    ``features``: the neuron addresses of its inputs ``[F]``. ``mean``/``scale`` (float32 ``[F]``):
    standardisation of the inputs. ``weight`` (float32 ``[C, F]``, ``C = 1`` for regression) and ``bias``
    (``[C]``) act on standardised inputs, so weight magnitudes compare across neurons. Regression
    predictions are ``(z @ weight.T + bias) * target_scale + target_mean``.
    """

    task: str
    features: tuple[str, ...]
    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    target_mean: float = 0.0
    target_scale: float = 1.0
    l1: float = 0.0
    l2: float = 0.0
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_features(self) -> int:
        return len(self.features)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        what = f"{len(self.classes)} classes" if self.task == "classification" else "regression"
        return f"Probe({what}, {self.num_features} neurons, l1={self.l1:g}, l2={self.l2:g})"

    # -- prediction ------------------------------------------------------------------------------
    def _inputs(self, x: Activations | np.ndarray, rows: np.ndarray | None) -> Iterator[np.ndarray]:
        if isinstance(x, Activations):
            design = Design(x, neurons=list(self.features))
            for _, block in design.iter_blocks(None if rows is None else np.asarray(rows, dtype=np.int64)):
                yield block
            return
        arr = np.asarray(x, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.num_features:
            raise ValueError(
                f"expected a matrix [rows, {self.num_features}] with the probe's features as columns, got "
                f"shape {arr.shape}; pass Activations to select the columns by address"
            )
        if rows is not None:
            arr = arr[np.asarray(rows)]
        for a in range(0, len(arr), _BLOCK_ROWS):
            yield arr[a : a + _BLOCK_ROWS]

    def _folded(self) -> tuple[np.ndarray, np.ndarray]:
        """Weights ``[F, C]`` and bias ``[C]`` acting on raw inputs: standardisation folded in, so
        scoring is one product per block."""
        inv = (1.0 / self.scale.astype(np.float64))[:, None]
        w = self.weight.T.astype(np.float64) * inv
        b = self.bias.astype(np.float64) - self.mean.astype(np.float64) @ w
        return np.ascontiguousarray(w, dtype=np.float32), b.astype(np.float32)

    def decision_function(
        self, x: Activations | np.ndarray, rows: Sequence[int] | np.ndarray | None = None
    ) -> np.ndarray:
        """float32 ``[n, C]``: class scores (logits) for activations or a ``[n, F]`` matrix."""
        return _outputs(self, self._inputs(x, _rows(rows)))

    def predict_index(
        self, x: Activations | np.ndarray, rows: Sequence[int] | np.ndarray | None = None
    ) -> np.ndarray:
        """int64 ``[n]``: predicted class indices (classification only)."""
        self._need_classes()
        return self.decision_function(x, rows).argmax(1).astype(np.int64)

    def predict(
        self, x: Activations | np.ndarray, rows: Sequence[int] | np.ndarray | None = None
    ) -> np.ndarray:
        """``[n]``: predicted class names (object array) or real values (float64)."""
        scores = self.decision_function(x, rows)
        if self.task == "classification":
            return np.asarray(self.classes, dtype=object)[scores.argmax(1)]
        return scores[:, 0].astype(np.float64) * self.target_scale + self.target_mean

    def predict_proba(
        self, x: Activations | np.ndarray, rows: Sequence[int] | np.ndarray | None = None
    ) -> np.ndarray:
        """float32 ``[n, C]``: class probabilities."""
        self._need_classes()
        s = self.decision_function(x, rows)
        s = s - s.max(1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(1, keepdims=True)

    def score(
        self,
        x: Activations | np.ndarray,
        labels: Sequence[Any] | np.ndarray,
        rows: Sequence[int] | None = None,
    ) -> ProbeScores:
        """Scores of this probe on ``x`` against ``labels`` (one per row of ``x``); ``rows`` restricts both
        to some rows."""
        n_rows = x.num_units if isinstance(x, Activations) else len(x)
        r = _rows(rows)
        if self.task == "classification":
            enc = encode_labels(labels, n_rows, "classification", classes=self.classes)
            y = enc.y if r is None else enc.y[r]
            return classification_scores(y, self.predict_index(x, r), self.classes)
        enc = encode_labels(np.asarray(labels, dtype=np.float64), n_rows, "regression")
        y = enc.y if r is None else enc.y[r]
        return regression_scores(y, self.predict(x, r))

    def _need_classes(self) -> None:
        if self.task != "classification":
            raise ValueError("this is a regression probe: it has no classes; use predict()")

    # -- derived probes --------------------------------------------------------------------------
    def masked(self, keep: np.ndarray | Sequence[bool]) -> Probe:
        """The same probe with the inputs where ``keep`` is False ablated: their standardised values are
        set to 0 (the training mean), which is the same as zeroing their weights."""
        k = np.asarray(keep, dtype=bool)
        if k.shape != (self.num_features,):
            raise ValueError(
                f"keep must be a boolean mask of {self.num_features} entries, got shape {k.shape}"
            )
        return _replace(self, weight=self.weight * k[None, :].astype(np.float32))

    def feature_index(self, neurons: Iterable[str | NeuronAddress]) -> np.ndarray:
        """Column positions of neuron addresses in :attr:`features` (ValueError for unknown ones)."""
        pos = {f: i for i, f in enumerate(self.features)}
        out = []
        for n in neurons:
            name = parse_neuron(n).name
            if name not in pos:
                raise ValueError(f"neuron {name} is not an input of this probe")
            out.append(pos[name])
        return np.asarray(out, dtype=np.int64)

    # -- saving ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write one ``.safetensors`` file (arrays, with the rest as JSON metadata). No pickle."""
        from safetensors.numpy import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            path = (
                path.with_suffix(path.suffix + ".safetensors")
                if path.suffix
                else path.with_suffix(".safetensors")
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "format": PROBE_FORMAT,
            "version": 1,
            "task": self.task,
            "features": list(self.features),
            "classes": list(self.classes),
            "target_mean": self.target_mean,
            "target_scale": self.target_scale,
            "l1": self.l1,
            "l2": self.l2,
            "meta": dict(self.meta),
        }
        tensors = {
            "mean": np.ascontiguousarray(self.mean, dtype=np.float32),
            "scale": np.ascontiguousarray(self.scale, dtype=np.float32),
            "weight": np.ascontiguousarray(self.weight, dtype=np.float32),
            "bias": np.ascontiguousarray(self.bias, dtype=np.float32),
        }
        save_file(tensors, str(path), metadata={"neuronwidgets": json.dumps(info)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Probe:
        """Read a probe written by :meth:`save`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.exists() and path.with_suffix(".safetensors").exists():
            path = path.with_suffix(".safetensors")
        if not path.exists():
            raise ValueError(f"no probe file at {path}")
        with safe_open(str(path), framework="numpy") as f:
            md = f.metadata() or {}
            if "neuronwidgets" not in md:
                raise ValueError(f"{path} is not a neuronwidgets probe (no metadata)")
            info = json.loads(md["neuronwidgets"])
            if info.get("format") != PROBE_FORMAT:
                raise ValueError(f"{path} is not a neuronwidgets probe")
            arrays = {k: f.get_tensor(k) for k in ("mean", "scale", "weight", "bias")}
        return cls(
            task=info["task"],
            features=tuple(info["features"]),
            classes=tuple(info["classes"]),
            target_mean=float(info["target_mean"]),
            target_scale=float(info["target_scale"]),
            l1=float(info["l1"]),
            l2=float(info["l2"]),
            meta=info.get("meta", {}),
            **arrays,
        )


def _replace(probe: Probe, **changes: Any) -> Probe:
    from dataclasses import replace

    return replace(probe, **changes)


def _rows(rows: Sequence[int] | np.ndarray | None) -> np.ndarray | None:
    if rows is None:
        return None
    r = np.asarray(rows, dtype=np.int64)
    if r.ndim != 1:
        raise ValueError("rows must be a flat list of row indices")
    return r


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """A probe and how well it does, with the baselines that say what the number means.

    - ``train``/``dev``/``test``: :class:`ProbeScores` on the sentence split ``split`` (``dev`` is None
      when the split has no dev part).
    - ``control``: test scores of the same probe architecture trained on control labels (each word type
      gets a fixed random label drawn from the label distribution, Hewitt & Liang 2019);
      ``selectivity = test accuracy − control accuracy`` (high: the probe reads the property from the
      representation rather than memorising word types).
    - ``majority``: test accuracy of always predicting the most frequent training class.
    - ``random_features``: test scores of a probe on random features of the same width (one fixed random
      vector per word type): what word identity alone gives.
    - ``train_s``: seconds spent training the main probe (baselines not included).
    """

    probe: Probe
    split: Split
    train: ProbeScores
    dev: ProbeScores | None
    test: ProbeScores
    control: ProbeScores | None = None
    majority: float = math.nan
    random_features: ProbeScores | None = None
    train_s: float = math.nan
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        """Held-out (test) accuracy, or Pearson's r for regression."""
        return self.test.main

    @property
    def selectivity(self) -> float:
        """Test accuracy minus control-task accuracy (NaN without a control task)."""
        return self.test.accuracy - self.control.accuracy if self.control is not None else math.nan

    @property
    def features(self) -> tuple[str, ...]:
        return self.probe.features

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a flat dict."""
        d: dict[str, Any] = {
            "neurons": self.probe.num_features,
            "task": self.probe.task,
            "train": self.train.main,
            "dev": self.dev.main if self.dev is not None else math.nan,
            "test": self.test.main,
        }
        if self.probe.task == "classification":
            d["macro_f1"] = self.test.macro_f1
            d["control"] = self.control.accuracy if self.control is not None else math.nan
            d["selectivity"] = self.selectivity
            d["majority"] = self.majority
        else:
            d["spearman"] = self.test.spearman
        d["random_features"] = self.random_features.main if self.random_features is not None else math.nan
        d["train_s"] = self.train_s
        return d

    def to_frame(self) -> pd.DataFrame:
        """One row: neurons, train/dev/test accuracy, macro-F1, control accuracy, selectivity, majority and
        random-feature baselines."""
        return pd.DataFrame([self.summary()])

    def per_class(self) -> pd.DataFrame:
        """Test precision/recall/F1/support per class."""
        return self.test.to_frame()

    def __repr__(self) -> str:
        s = self.summary()
        parts = [f"{s['neurons']} neurons", f"test={s['test']:.4f}"]
        if self.control is not None:
            parts.append(f"selectivity={self.selectivity:.4f}")
        return f"ProbeResult({', '.join(parts)})"

    def save(self, folder: str | Path) -> Path:
        """Write ``probe.safetensors``, ``result.json`` (scores, split) to ``folder``. No pickle."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.probe.save(folder / "probe.safetensors")
        doc = {
            "format": RESULT_FORMAT,
            "version": 1,
            "split": self.split.to_dict(),
            "train": self.train.to_dict(),
            "dev": self.dev.to_dict() if self.dev is not None else None,
            "test": self.test.to_dict(),
            "control": self.control.to_dict() if self.control is not None else None,
            "majority": _num(self.majority),
            "random_features": self.random_features.to_dict() if self.random_features is not None else None,
            "train_s": _num(self.train_s),
            "meta": dict(self.meta),
        }
        (folder / "result.json").write_text(json.dumps(doc), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ProbeResult:
        folder = Path(folder)
        f = folder / "result.json"
        if not f.exists():
            raise ValueError(f"{folder} holds no probe result (no result.json)")
        doc = json.loads(f.read_text(encoding="utf-8"))
        if doc.get("format") != RESULT_FORMAT:
            raise ValueError(f"{f} is not a neuronwidgets probe result")

        def opt(k: str) -> ProbeScores | None:
            return ProbeScores.from_dict(doc[k]) if doc.get(k) is not None else None

        dev, control, rnd = opt("dev"), opt("control"), opt("random_features")
        return cls(
            probe=Probe.load(folder / "probe.safetensors"),
            split=Split.from_dict(doc["split"]),
            train=ProbeScores.from_dict(doc["train"]),
            dev=dev,
            test=ProbeScores.from_dict(doc["test"]),
            control=control,
            majority=math.nan if doc.get("majority") is None else float(doc["majority"]),
            random_features=rnd,
            train_s=math.nan if doc.get("train_s") is None else float(doc["train_s"]),
            meta=doc.get("meta", {}),
        )


# ------------------------------------------------------------------------------------------------
# Control tasks
# ------------------------------------------------------------------------------------------------


def control_labels(
    words: Activations | Sequence[str], labels: Sequence[Any] | np.ndarray, *, seed: int = 0
) -> np.ndarray:
    """Control-task labels (Hewitt & Liang 2019): every word type gets one label, drawn at random from the
    empirical distribution of ``labels``, and keeps it wherever it occurs. ``words``: the word of every
    row (or the Activations whose units they are). Returns an object array of labels ``[n]``."""
    ws = all_units(words) if isinstance(words, Activations) else [str(w) for w in words]
    lab = np.asarray([str(v) for v in np.asarray(labels).tolist()], dtype=object)
    if len(ws) != len(lab):
        raise ValueError(f"{len(ws)} words but {len(lab)} labels: give one label per word")
    classes, counts = np.unique(lab.astype(str), return_counts=True)
    types, inverse = np.unique(np.asarray(ws, dtype=str), return_inverse=True)
    rng = np.random.default_rng(seed)
    drawn = rng.choice(len(classes), size=len(types), p=counts / counts.sum())
    return classes.astype(object)[drawn[inverse]]


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
    return np.einsum("ij,ij->j", zn, zn).astype(np.float64)


@dataclass
class _Fit:
    weight: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    target_mean: float
    target_scale: float
    iterations: int
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
) -> _Fit:
    """Elastic-net logistic/linear regression on standardised columns of ``source`` by full-batch L-BFGS.

    Loss: mean cross-entropy (or half mean squared error of the standardised target) + ``l1·Σ|W|`` +
    ``l2·ΣW²`` (bias not penalised). ``rows`` sorted; ``y`` aligned with ``rows``.
    """
    dtype = _compute_dtype(precision)
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
        if l2:
            total += l2 * float((weight * weight).sum())
            gwt.add_(weight, alpha=2 * l2)
        if l1:
            soft = torch.sqrt(weight * weight + _L1_EPS**2)
            total += l1 * float((soft - _L1_EPS).sum())
            gwt.add_(l1 * weight / soft)
        return total, grad

    from tqdm.auto import tqdm

    from .optim import lbfgs

    show = progress if progress is not None else n * f > 2e9
    bar = tqdm(total=max_iter, desc=desc, unit="it", disable=not show)
    try:
        with torch.no_grad():
            res = lbfgs(fun, torch.zeros(c * f + c), max_iter=max_iter, callback=lambda i, _: bar.update(1))
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
            _, type_ids = np.unique(np.asarray(words, dtype=str), return_inverse=True)
            type_ids = type_ids.astype(np.int64)
    return _Prepared(activations, enc, sp, tr, dv, te, ctrl, type_ids, seed)


def _outputs(probe: Probe, blocks: Iterable[np.ndarray]) -> np.ndarray:
    w, b = probe._folded()
    wt = torch.from_numpy(w)
    parts = [(block_tensor(np.ascontiguousarray(x, dtype=np.float32)) @ wt).numpy() + b for x in blocks]
    if not parts:
        return np.zeros((0, w.shape[1]), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


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
) -> ProbeResult:
    enc = prep.labels
    source = _DesignSource(design)
    kw: dict[str, Any] = {
        "l1": l1,
        "l2": l2,
        "max_iter": max_iter,
        "precision": precision,
        "in_memory": in_memory,
        "progress": progress,
    }
    t0 = time.perf_counter()
    probe, fit = _train_one(prep, source, design.names, enc, desc="training probe", **kw)
    train_s = time.perf_counter() - t0
    scores = {
        "train": _score_rows(probe, source, prep.train_rows, enc, fit.train_outputs),
        "dev": _score_rows(probe, source, prep.dev_rows, enc),
        "test": _score_rows(probe, source, prep.test_rows, enc),
    }
    control_scores = None
    if control and prep.control is not None:
        cprobe, _ = _train_one(prep, source, design.names, prep.control, desc="control task", **kw)
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


def train_probe(
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    *,
    sites: Sequence[str | Site] | str | Site | None = None,
    neurons: Iterable[str | NeuronAddress] | None = None,
    task: str = "auto",
    l1: float = 1e-5,
    l2: float = 3e-3,
    split: Split | Sequence[float] | None = None,
    seed: int = 0,
    control: bool = True,
    baselines: bool = True,
    max_iter: int = 30,
    precision: str = "auto",
    in_memory: bool | None = None,
    progress: bool | None = None,
) -> ProbeResult:
    """Train a linear probe from activations to one label per row.

    - ``labels``: one per activation row, e.g. ``corpus.flat_labels("upos")``; strings/ints are classes
      (logistic regression), floats a real target (linear regression); force with ``task=``.
    - ``sites`` / ``neurons``: probe whole sites (default all of them) or given neuron addresses.
    - ``l1``, ``l2``: elastic-net weights on the standardised-feature weights (mean loss + l1·Σ|w| + l2·Σw²).
    - ``split``: a :class:`Split`, fractions ``(train, dev, test)`` or ``(train, test)``, or None for
      80/10/10; always by sentence, shuffled with ``seed``.
    - ``control`` / ``baselines``: also train the control-task probe and the random-feature probe, and
      compute the majority baseline (each extra probe costs one more training).
    - ``max_iter``: L-BFGS iterations (each one pass over the training rows).
    - ``precision``: ``"auto"`` (bfloat16 products where the CPU supports them natively), ``"float32"``
      or ``"bfloat16"``. ``in_memory``: keep the standardised training matrix in memory (default: when
      it takes at most 6 GB), else stream it from the activations at every step.

    Deterministic for a given ``seed``, data and machine.
    """
    _check_hyper(l1, l2, max_iter)
    design = Design(activations, sites=sites, neurons=neurons)
    prep = _prepare(activations, labels, task, split, seed, control, baselines)
    return _run(
        prep,
        design,
        l1=l1,
        l2=l2,
        max_iter=int(max_iter),
        control=control,
        baselines=baselines,
        precision=precision,
        in_memory=in_memory,
        progress=progress,
    )


# ------------------------------------------------------------------------------------------------
# Layer-wise probing
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LayerwiseProbes:
    """One :class:`ProbeResult` per site (``results[site]``, in forward order), all on the same split
    and the same control labels, so the numbers compare across layers."""

    results: Mapping[str, ProbeResult]

    @property
    def sites(self) -> list[str]:
        return list(self.results)

    def __getitem__(self, site: str) -> ProbeResult:
        return self.results[site]

    def to_frame(self) -> pd.DataFrame:
        """One row per site: site, layer, component, test accuracy, macro-F1, control accuracy,
        selectivity, majority and random-feature baselines."""
        rows = []
        for s, r in self.results.items():
            site = parse_site(s)
            rows.append({"site": s, "layer": site.layer, "component": site.component, **r.summary()})
        return pd.DataFrame(rows)

    @property
    def best(self) -> str:
        """The site with the highest test accuracy."""
        return max(self.results, key=lambda s: self.results[s].accuracy)

    def plot(self, *, title: str | None = None) -> Figure:
        """Test accuracy, control accuracy and selectivity by site (matplotlib Figure)."""
        from matplotlib.figure import Figure

        df = self.to_frame()
        fig = Figure(figsize=(max(5.0, 0.55 * len(df) + 2), 3.6), layout="constrained")
        ax = fig.add_subplot()
        x = np.arange(len(df))
        ax.plot(x, df["test"], marker="o", label="probe (test)")
        if "control" in df and df["control"].notna().any():
            ax.plot(x, df["control"], marker="s", linestyle="--", label="control task")
            ax.bar(x, df["selectivity"], alpha=0.25, color="tab:green", label="selectivity")
        if "majority" in df and df["majority"].notna().any():
            ax.axhline(float(df["majority"].iloc[0]), color="grey", linestyle=":", label="majority class")
        if df["random_features"].notna().any():
            ax.plot(
                x,
                df["random_features"],
                marker="^",
                linestyle="-.",
                color="tab:purple",
                label="random features",
            )
        ax.set_xticks(x, [s.replace(".resid", "").replace("layer.", "L") for s in df["site"]], rotation=45)
        ax.set_ylabel("accuracy" if self.results[df["site"].iloc[0]].probe.task == "classification" else "r")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize="small", loc="lower right")
        ax.set_title(title or "probe accuracy by layer")
        return fig


def train_layerwise_probes(
    activations: Activations,
    labels: Sequence[Any] | np.ndarray,
    *,
    sites: Sequence[str | Site] | None = None,
    task: str = "auto",
    l1: float = 1e-5,
    l2: float = 3e-3,
    split: Split | Sequence[float] | None = None,
    seed: int = 0,
    control: bool = True,
    baselines: bool = True,
    max_iter: int = 30,
    precision: str = "auto",
    in_memory: bool | None = None,
    progress: bool | None = None,
) -> LayerwiseProbes:
    """One probe per site (default every extracted site) in one call, all on the same sentence split and
    the same control labels, so accuracy and selectivity compare across layers. Arguments as
    :func:`train_probe`."""
    chosen = [activations.check_site(s) for s in sites] if sites is not None else activations.sites
    if not chosen:
        raise ValueError("no sites to probe")
    _check_hyper(l1, l2, max_iter)
    prep = _prepare(activations, labels, task, split, seed, control, baselines)
    from tqdm.auto import tqdm

    results: dict[str, ProbeResult] = {}
    show = progress if progress is not None else len(chosen) > 2
    for s in tqdm(chosen, desc="layer-wise probes", disable=not show):
        results[s] = _run(
            prep,
            Design(activations, sites=[s]),
            l1=l1,
            l2=l2,
            max_iter=int(max_iter),
            control=control,
            baselines=baselines,
            precision=precision,
            in_memory=in_memory,
            progress=False,
        )
    return LayerwiseProbes(results)


__all__ = [
    "LayerwiseProbes",
    "Probe",
    "ProbeResult",
    "ProbeScores",
    "classification_scores",
    "control_labels",
    "regression_scores",
    "train_layerwise_probes",
    "train_probe",
]
