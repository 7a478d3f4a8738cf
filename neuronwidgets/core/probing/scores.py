"""Scores of a probe's predictions: accuracy and macro-F1 for classes, R², Pearson and Spearman for
real values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..display import TableResult, listing, number, summary

if TYPE_CHECKING:
    pass


# ------------------------------------------------------------------------------------------------
# Scores
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeScores(TableResult):
    """Scores of predictions against gold labels. Unused fields are NaN or empty.

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        n: Rows scored.
        accuracy: Classification accuracy.
        macro_f1: Mean F1 over classes present in gold or predictions, as scikit-learn.
        classes: The ``C`` classes, in the order of the per-class arrays.
        precision: Float64 ``[C]``.
        recall: Float64 ``[C]``.
        f1: Float64 ``[C]``.
        support: Int64 ``[C]``, gold rows per class.
        pearson: Regression: Pearson's r.
        spearman: Regression: Spearman's ρ.
        mse: Regression: mean squared error.
    """

    _plot_columns = ("class", "f1")

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

    def __repr__(self) -> str:
        if self.task == "classification":
            head = f"ProbeScores(classification, {self.n} rows: accuracy {number(self.accuracy)}, macro F1 {number(self.macro_f1)})"
            return summary(head, f"{len(self.classes)} classes: {listing(self.classes)}")
        return summary(
            f"ProbeScores(regression, {self.n} rows: pearson {number(self.pearson)}, "
            f"spearman {number(self.spearman)}, mse {number(self.mse)})"
        )

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
    constant = [name for name, v in (("targets", y_true), ("predictions", y_pred)) if np.ptp(v) == 0]
    if constant:
        warnings.warn(
            f"regression scores on {len(y_true)} rows: the {' and the '.join(constant)} are constant, so "
            "Pearson's r and Spearman's ρ are undefined (NaN); the mean squared error is still reported "
            "(constant predictions usually mean the activations carry no signal, e.g. a constant or "
            "all-zero matrix)",
            RuntimeWarning,
            stacklevel=2,
        )
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
