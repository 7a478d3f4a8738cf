"""The result type every neuron-level method shares: :class:`NeuronRanking`.

Probe rankings (:mod:`neuronwidgets.core.probing`), cross-model rankings
(:mod:`neuronwidgets.core.similarity`), conductance (:mod:`neuronwidgets.core.attribution`) and concept
rankings all return a :class:`NeuronRanking`; every view (``NeuronTable``, ``NeuronExplorer``, the
``AblationPanel``) consumes one. It lives here, outside any method family, so that no method family
imports another to name its result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .display import Result, new_axes, summary
from .models.addresses import NeuronAddress, parse_neuron

if TYPE_CHECKING:
    from matplotlib.axes import Axes


RANKING_FORMAT = "neuronwidgets-ranking"


# ------------------------------------------------------------------------------------------------
# The result type
# ------------------------------------------------------------------------------------------------


def _float_scores(scores: Any) -> np.ndarray:
    arr = np.asarray(scores)
    if arr.dtype == object and all(
        isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in arr.flat
    ):
        arr = arr.astype(np.float64)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.number) or arr.size == 0):
        example = repr(arr.flat[0]) if arr.size else ""
        raise TypeError(
            f"scores must be numbers, one per neuron, got an array of {arr.dtype} (e.g. {example})"
        )
    if np.iscomplexobj(arr):
        raise TypeError("scores must be real numbers, got complex ones")
    return arr.astype(np.float64)


@dataclass(frozen=True, eq=False)
class NeuronRanking(Result):
    """Neurons in order of importance, best first.

    Made by every ranking method (``rank_*``, :func:`neuronwidgets.core.attribute_neurons`, concept
    rankings); shown by ``NeuronTable``, ``NeuronExplorer`` and ``AblationPanel``.

    Attributes:
        neurons: Addresses ``[N]``, best first; this order is the ranking.
        scores: Float64 ``[N]``, the method's number for each neuron (higher = more important). For most
            methods it decreases along the ranking; greedy methods (Gaussian) store each neuron's marginal
            gain, which need not.
        method: E.g. ``"weight_mass"``, ``"probeless"``, ``"iou"``, ``"gaussian"``, ``"maxcorr"``.
        classes: Class names ``[C]`` where the method has per-class scores (else empty).
        class_scores: Float64 ``[N, C]`` (rows aligned with ``neurons``) or ``None``; they give each
            neuron's top class and each class's top neurons.
        columns: Extra per-neuron columns ``[N]`` shown by :meth:`to_frame` (e.g. the best-matching
            neuron of another model and its correlation).
        meta: JSON-serialisable details of how the ranking was made.
    """

    neurons: tuple[str, ...]
    scores: np.ndarray
    method: str
    classes: tuple[str, ...] = ()
    class_scores: np.ndarray | None = None
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.neurons)
        object.__setattr__(self, "neurons", tuple(parse_neuron(x).name for x in self.neurons))
        object.__setattr__(self, "scores", _float_scores(self.scores))
        if self.scores.shape != (n,):
            raise ValueError(f"scores must have one entry per neuron ({n}), got shape {self.scores.shape}")
        if len(set(self.neurons)) != n:
            raise ValueError("a neuron appears twice in the ranking")
        if self.class_scores is not None:
            cs = np.asarray(self.class_scores, dtype=np.float64)
            if cs.shape != (n, len(self.classes)):
                raise ValueError(f"class_scores must be [{n}, {len(self.classes)}], got {cs.shape}")
            object.__setattr__(self, "class_scores", cs)
        cols = {}
        for k, v in self.columns.items():
            arr = np.asarray(v)
            if arr.shape != (n,):
                raise ValueError(f"column {k!r} must have one entry per neuron ({n}), got shape {arr.shape}")
            cols[str(k)] = arr
        object.__setattr__(self, "columns", cols)

    @classmethod
    def from_scores(
        cls,
        neurons: Sequence[str | NeuronAddress],
        scores: np.ndarray | Sequence[float],
        method: str,
        *,
        classes: Sequence[str] = (),
        class_scores: np.ndarray | None = None,
        columns: Mapping[str, np.ndarray] | None = None,
        meta: Mapping[str, Any] | None = None,
        order: np.ndarray | None = None,
    ) -> NeuronRanking:
        """Build a ranking from unordered neurons and scores: sorted by score, highest first (stable: ties
        keep the given order; NaN last), or by an explicit ``order`` (positions, best first)."""
        sc = _float_scores(scores)
        names = [parse_neuron(x).name for x in neurons]
        if sc.shape != (len(names),):
            raise ValueError(f"{len(names)} neurons but {sc.shape} scores")
        if order is None:
            key = np.where(np.isnan(sc), -np.inf, sc)
            order = np.argsort(-key, kind="stable")
        order = np.asarray(order, dtype=np.int64)
        if sorted(order.tolist()) != list(range(len(names))):
            raise ValueError("order must be a permutation of the neuron positions")
        return cls(
            neurons=tuple(names[i] for i in order),
            scores=sc[order],
            method=method,
            classes=tuple(classes),
            class_scores=None if class_scores is None else np.asarray(class_scores)[order],
            columns={k: np.asarray(v)[order] for k, v in (columns or {}).items()},
            meta=dict(meta or {}),
        )

    # -- access ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.neurons)

    def __iter__(self) -> Iterator[str]:
        return iter(self.neurons)

    def __repr__(self) -> str:
        head = ", ".join(self.neurons[:3]) + (", …" if len(self) > 3 else "")
        return summary(f"NeuronRanking({self.method!r}, {len(self)} neurons: {head})")

    def _check_k(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, got {type(k).__name__}; use top_percent() for a share")
        if not 0 <= int(k) <= len(self):
            raise ValueError(f"k={k} is out of range: this ranking has {len(self)} neurons (0 … {len(self)})")
        return int(k)

    def _take(self, positions: np.ndarray) -> NeuronRanking:
        return NeuronRanking(
            neurons=tuple(self.neurons[i] for i in positions),
            scores=self.scores[positions],
            method=self.method,
            classes=self.classes,
            class_scores=None if self.class_scores is None else self.class_scores[positions],
            columns={k: v[positions] for k, v in self.columns.items()},
            meta=self.meta,
        )

    def top(self, k: int) -> NeuronRanking:
        """The ``k`` best neurons, best first, as a ranking (iterate it, or pass it wherever neuron
        addresses are expected)."""
        return self._take(np.arange(self._check_k(k)))

    def bottom(self, k: int) -> NeuronRanking:
        """The ``k`` worst neurons (in ranking order: the very worst last)."""
        k = self._check_k(k)
        return self._take(np.arange(len(self) - k, len(self)))

    def count(self, percent: float) -> int:
        """How many neurons ``percent`` % of the ranking is (rounded up, at least 1)."""
        if not (isinstance(percent, (int, float, np.number)) and 0 < float(percent) <= 100):
            raise ValueError(f"percent must be in (0, 100], got {percent}")
        return max(1, math.ceil(float(percent) / 100 * len(self) - 1e-9))

    def top_percent(self, percent: float) -> NeuronRanking:
        """The best ``percent`` % of neurons."""
        return self.top(self.count(percent))

    def rank_of(self, neuron: str | NeuronAddress) -> int:
        """0-based position of a neuron (ValueError if it is not ranked)."""
        name = parse_neuron(neuron).name
        try:
            return self.neurons.index(name)
        except ValueError:
            raise ValueError(f"neuron {name} is not in this ranking") from None

    @property
    def top_class(self) -> np.ndarray | None:
        """Object array ``[N]``: each neuron's highest-scoring class (None without per-class scores)."""
        if self.class_scores is None or not self.classes:
            return None
        return np.asarray(self.classes, dtype=object)[np.argmax(self.class_scores, axis=1)]

    def per_class(self, k: int = 10) -> dict[str, list[str]]:
        """The ``k`` top neurons of each class by its per-class score (empty without per-class scores)."""
        if self.class_scores is None:
            return {}
        k = self._check_k(k)
        out = {}
        for j, c in enumerate(self.classes):
            order = np.argsort(-self.class_scores[:, j], kind="stable")[:k]
            out[c] = [self.neurons[i] for i in order]
        return out

    def restrict(self, neurons: Sequence[str | NeuronAddress]) -> NeuronRanking:
        """The same ranking over a subset of its neurons (order kept); ValueError if one is missing."""
        want = {parse_neuron(n).name for n in neurons}
        missing = want - set(self.neurons)
        if missing:
            raise ValueError(
                f"{len(missing)} neurons are not in this ranking (e.g. {sorted(missing)[:3]}): rank the same "
                "neurons you evaluate"
            )
        return self._take(np.array([i for i, n in enumerate(self.neurons) if n in want], dtype=np.int64))

    # -- views -----------------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """One row per neuron: rank, neuron, site, layer, component, index, score, top_class (when per-class
        scores exist) and the extra columns."""
        addrs = [parse_neuron(n) for n in self.neurons]
        data: dict[str, Any] = {
            "rank": np.arange(len(self)),
            "neuron": list(self.neurons),
            "site": [a.site.name for a in addrs],
            "layer": [a.layer for a in addrs],
            "component": [a.component for a in addrs],
            "index": [a.index for a in addrs],
            "score": self.scores,
        }
        tc = self.top_class
        if tc is not None:
            data["top_class"] = tc
        for k, v in self.columns.items():
            data[k] = v
        return pd.DataFrame(data)

    def plot(self, k: int = 20, *, title: str | None = None, ax: Any = None) -> Axes:
        """Horizontal bars of the ``k`` top neurons' scores, labelled with their top class if known, each
        bar's value written at its end, into ``ax`` (default: a new figure); returns the Axes.

        When the shown scores differ by little next to their size (weight mass gives 1 − entry share:
        every top neuron ≈ 1.0), bars from 0 would all look equal: the axis then starts just below the
        smallest shown score, and its label says so.
        """
        k = self._check_k(
            min(k, len(self)) if isinstance(k, (int, np.integer)) and not isinstance(k, bool) else k
        )
        scores = np.asarray(self.scores[:k], dtype=np.float64)
        ax = new_axes(ax, (6.0, 0.28 * k + 1.2))
        y = np.arange(k)[::-1]
        base, digits = _bar_base(scores)
        ax.barh(y, scores - base, left=base, color="tab:blue")
        for yi, v in zip(y, scores):  # the value at the bar's outer end: right of it, or left if negative
            text, side = (f"{v:.{digits}f} ", "right") if v < base else (f" {v:.{digits}f}", "left")
            ax.text(v, yi, text, va="center", ha=side, fontsize="x-small")
        if k:
            hi = float(max(scores.max(), base))
            lo = float(min(scores.min(), base))
            room = 0.18 * max(hi - lo, 1e-12)  # room for the values
            ax.set_xlim(lo - (room if lo < base else 0.0), hi + room)
        tc = self.top_class
        labels = [f"{n}  ({tc[i]})" if tc is not None else n for i, n in enumerate(self.neurons[:k])]
        ax.set_yticks(y, labels, fontsize="small")
        ax.set_xlabel("score" if base == 0 else f"score (the axis starts at {base:.{digits}f}, not 0)")
        ax.set_title(title or f"top {k} neurons by {self.method}")
        return ax

    # -- saving ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """One ``.safetensors`` file: arrays as tensors, names and metadata as JSON. No pickle."""
        from safetensors.numpy import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"scores": np.ascontiguousarray(self.scores)}
        if self.class_scores is not None:
            tensors["class_scores"] = np.ascontiguousarray(self.class_scores)
        text_cols = {}
        for k, v in self.columns.items():
            if np.issubdtype(v.dtype, np.number) or v.dtype == bool:
                tensors[f"column.{k}"] = np.ascontiguousarray(v)
            else:
                text_cols[k] = [str(x) for x in v.tolist()]
        info = {
            "format": RANKING_FORMAT,
            "version": 1,
            "neurons": list(self.neurons),
            "method": self.method,
            "classes": list(self.classes),
            "text_columns": text_cols,
            "column_order": list(self.columns),
            "meta": dict(self.meta),
        }
        save_file(tensors, str(path), metadata={"neuronwidgets": json.dumps(info)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> NeuronRanking:
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise ValueError(f"no ranking file at {path}")
        with safe_open(str(path), framework="numpy") as f:
            md = f.metadata() or {}
            info = json.loads(md.get("neuronwidgets", "{}"))
            if info.get("format") != RANKING_FORMAT:
                raise ValueError(f"{path} is not a neuronwidgets ranking")
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        cols: dict[str, np.ndarray] = {}
        for k in info["column_order"]:
            if k in info["text_columns"]:
                cols[k] = np.asarray(info["text_columns"][k], dtype=object)
            else:
                cols[k] = tensors[f"column.{k}"]
        return cls(
            neurons=tuple(info["neurons"]),
            scores=tensors["scores"],
            method=info["method"],
            classes=tuple(info["classes"]),
            class_scores=tensors.get("class_scores"),
            columns=cols,
            meta=info.get("meta", {}),
        )


def _bar_base(scores: np.ndarray) -> tuple[float, int]:
    """Where bars of ``scores`` start (0, or just below the smallest when they differ by little next to
    their size) and how many decimals tell them apart."""
    if scores.size == 0:
        return 0.0, 3
    lo, hi = float(scores.min()), float(scores.max())
    spread = hi - lo
    gaps = np.diff(np.unique(scores))
    gaps = gaps[gaps > 0]
    digits = 3 if gaps.size == 0 else int(min(8, max(3, math.ceil(-math.log10(float(gaps.min()))))))
    same_sign = lo > 0 or hi < 0
    if not same_sign or spread <= 0 or spread >= 0.25 * max(abs(lo), abs(hi)):
        return 0.0, digits
    if lo > 0:
        return lo - 0.1 * spread, digits
    return hi + 0.1 * spread, digits
