"""Probe and result types: :class:`Probe` (a trained linear probe, saved as safetensors + JSON),
:class:`ProbeResult` (a probe with its control task, baselines and scores) and :func:`control_labels`
(Hewitt & Liang 2019).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..display import Result, TableResult, bar_plot, summary
from ..models.addresses import NeuronAddress, parse_neuron
from ..store.activations import Activations
from ..store.design import (
    Design,
    Split,
    all_units,
    block_tensor,
    encode_labels,
)
from .scores import ProbeScores, _num, classification_scores, regression_scores

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PROBE_FORMAT = "neuronwidgets-probe"
RESULT_FORMAT = "neuronwidgets-probe-result"
_BLOCK_ROWS = 65536


# ------------------------------------------------------------------------------------------------
# The probe
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Probe(TableResult):
    """A trained linear probe (:attr:`ProbeResult.probe`, from :func:`train_probe`).

    ``weight`` and ``bias`` act on standardised inputs, so weight magnitudes compare across neurons.
    Regression predictions are ``(z @ weight.T + bias) * target_scale + target_mean``.

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        features: The neuron addresses of its inputs ``[F]``.
        classes: The ``C`` classes (empty for regression).
        mean: Float32 ``[F]``, standardisation of the inputs.
        scale: Float32 ``[F]``, standardisation of the inputs.
        weight: Float32 ``[C, F]`` (``C = 1`` for regression).
        bias: ``[C]``.
        target_mean: Regression: the target's training mean.
        target_scale: Regression: the target's training scale.
        l1: The elastic-net L1 weight it was trained with.
        l2: The elastic-net L2 weight it was trained with.
        meta: How it was trained.
    """

    _plot_columns = ("neuron", "weight_norm")

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

    def to_frame(self) -> pd.DataFrame:
        """One row per neuron, largest weight first: ``weight_norm`` (L2 norm over classes of its weight on
        standardised inputs) and, for up to 10 classes, the weight of each class."""
        w = np.asarray(self.weight, dtype=np.float64).reshape(-1, self.num_features).T  # [F, C]
        frame = pd.DataFrame({"neuron": list(self.features), "weight_norm": np.linalg.norm(w, axis=1)})
        if self.task == "classification" and len(self.classes) <= 10 and w.shape[1] == len(self.classes):
            for k, c in enumerate(self.classes):
                frame[f"weight[{c}]"] = w[:, k]
        return frame.sort_values("weight_norm", ascending=False, kind="stable").reset_index(drop=True)

    def __repr__(self) -> str:
        what = f"{len(self.classes)} classes" if self.task == "classification" else "regression"
        return summary(f"Probe({what}, {self.num_features} neurons, l1={self.l1:g}, l2={self.l2:g})")

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
class ProbeResult(Result):
    """A probe and how well it does, with the baselines that say what the number means.

    Attributes:
        probe: The trained probe.
        split: The sentence split.
        train: :class:`ProbeScores` on the train part.
        dev: On the dev part (``None`` when the split has none).
        test: On the test part.
        control: Test scores of the same probe architecture trained on control labels (each word type
            gets a fixed random label drawn from the label distribution, Hewitt & Liang 2019);
            ``selectivity = test accuracy − control accuracy`` (high: the probe reads the property from the
            representation rather than memorising word types).
        majority: Test accuracy of always predicting the most frequent training class.
        random_features: Test scores of a probe on random features of the same width (one fixed random
            vector per word type): what word identity alone gives.
        train_s: Seconds spent training the main probe (baselines not included).
        meta: How it was trained.
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

    def plot(self, *, title: str | None = None, ax: Any = None) -> Axes:
        """Bars of the probe's scores (train, dev, test) against its baselines (control task, majority
        class, random features), those that are known, drawn into ``ax`` (default: a new figure)."""
        parts = ["train", "dev", "test", "control", "majority", "random_features"]
        s = self.summary()
        frame = pd.DataFrame({"part": parts, "score": [s.get(p, math.nan) for p in parts]}).dropna()
        metric = "accuracy" if self.probe.task == "classification" else "Pearson r"
        return bar_plot(
            frame, "part", "score", k=len(frame), title=title or f"probe {metric} vs baselines", ax=ax
        )

    def per_class(self) -> pd.DataFrame:
        """Test precision/recall/F1/support per class."""
        return self.test.to_frame()

    def __repr__(self) -> str:
        s = self.summary()
        parts = [f"{s['neurons']} neurons", f"test={s['test']:.4f}"]
        if self.control is not None:
            parts.append(f"selectivity={self.selectivity:.4f}")
        return summary(f"ProbeResult({', '.join(parts)})")

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


def _outputs(probe: Probe, blocks: Iterable[np.ndarray]) -> np.ndarray:
    w, b = probe._folded()
    wt = torch.from_numpy(w)
    parts = [(block_tensor(np.ascontiguousarray(x, dtype=np.float32)) @ wt).numpy() + b for x in blocks]
    if not parts:
        return np.zeros((0, w.shape[1]), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


# ------------------------------------------------------------------------------------------------
# Control tasks
# ------------------------------------------------------------------------------------------------


def control_labels(
    words: Activations | Sequence[str], labels: Sequence[Any] | np.ndarray, *, seed: int = 0
) -> np.ndarray:
    """Control-task labels (Hewitt & Liang 2019): every word type gets one label, drawn at random from the
    empirical distribution of ``labels``, and keeps it wherever it occurs.

    Args:
        words: The word of every row (or the Activations whose units they are).
        labels: The real label of every row.
        seed: Seed of the draw.

    Returns:
        An object array of labels ``[n]``.

    Raises:
        ValueError: If ``words`` and ``labels`` differ in length.

    Example:
        >>> control_labels(["a", "b", "a"], ["X", "Y", "X"], seed=0)  # both "a" rows get one label
    """
    ws = all_units(words) if isinstance(words, Activations) else [str(w) for w in words]
    lab = np.asarray([str(v) for v in np.asarray(labels).tolist()], dtype=object)
    if len(ws) != len(lab):
        raise ValueError(f"{len(ws)} words but {len(lab)} labels: give one label per word")
    classes, counts = np.unique(lab, return_counts=True)
    types, inverse = string_codes(ws)
    rng = np.random.default_rng(seed)
    drawn = rng.choice(len(classes), size=len(types), p=counts / counts.sum())
    return classes.astype(object)[drawn[inverse]]


def string_codes(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(strings, return_inverse=True)`` (sorted distinct strings, each string's index among
    them) without a fixed-width unicode array, whose size is the *longest* string times the count: one
    473-character URL in a million UD words would make it 1.9 GB."""
    codes, uniques = pd.factorize(np.asarray(strings, dtype=object), sort=True)
    return np.asarray(uniques, dtype=object), codes.astype(np.int64)
