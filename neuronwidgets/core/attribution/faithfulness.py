"""Faithfulness of token attributions: deletion and insertion curves, against random orders.

Deletion: start from the text and replace its words (or tokens) by the baseline one at a time, highest
attribution first, measuring the target's probability after each step; a faithful attribution makes it
fall fast (low area under the curve). Insertion: start from the baseline and put the units back in the
same order; it should rise fast (high area). Both are compared with the mean over random orders of the
same units, so users can compare methods on their own example (:func:`compare_faithfulness`).

Units are switched exactly as the attributions' baseline defines them (:meth:`.attribution.TextSetup.mixed`):
special tokens stay, a word switches all the tokens it starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..display import Result, new_axes_row, steps_bar, summary
from ..models.handle import ModelHandle
from ..models.loading import as_handle
from .methods import TokenAttribution, attribute_tokens
from .setup import prepare_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DEFAULT_METHODS: tuple[str, ...] = ("integrated-gradients", "saliency", "input-x-gradient", "occlusion")


def _auc(fractions: np.ndarray, values: np.ndarray) -> float:
    return float(np.sum((values[1:] + values[:-1]) * np.diff(fractions)) / 2)


@dataclass(frozen=True)
class FaithfulnessCurves(Result):
    """Deletion and insertion curves of one attribution; ``n`` units, ``n + 1`` points each.

    Made by :func:`faithfulness_curves`. The ``*_auc`` properties are the areas under each curve
    (trapezoid rule over ``fractions``). Lower ``deletion_auc`` and higher ``insertion_auc`` than the random ones mean a more faithful
    attribution.

    Attributes:
        text: The input.
        method: The attribution method.
        target: What was explained.
        level: ``"word"`` or ``"token"``.
        units: The ``n`` units.
        order: Unit indices, highest score first (the attribution order).
        fractions: Float ``[n + 1]``, share of units removed (deletion) or inserted (insertion).
        deletion: Float ``[n + 1]``, the target's probability along ``order``, removing.
        insertion: Float ``[n + 1]``, the same, inserting.
        random_deletion: Float ``[n + 1]``, the mean over ``n_random`` random orders.
        random_insertion: Float ``[n + 1]``, likewise.
        n_random: Random orders.
    """

    text: str
    method: str
    target: str
    level: str
    units: list[str]
    order: np.ndarray
    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    random_deletion: np.ndarray
    random_insertion: np.ndarray
    n_random: int

    @property
    def deletion_auc(self) -> float:
        return _auc(self.fractions, self.deletion)

    @property
    def insertion_auc(self) -> float:
        return _auc(self.fractions, self.insertion)

    @property
    def random_deletion_auc(self) -> float:
        return _auc(self.fractions, self.random_deletion)

    @property
    def random_insertion_auc(self) -> float:
        return _auc(self.fractions, self.random_insertion)

    def summary(self) -> dict[str, Any]:
        """The four areas and the gains over random order (positive = better than random)."""
        return {
            "method": self.method,
            "deletion_auc": self.deletion_auc,
            "random_deletion_auc": self.random_deletion_auc,
            "deletion_gain": self.random_deletion_auc - self.deletion_auc,
            "insertion_auc": self.insertion_auc,
            "random_insertion_auc": self.random_insertion_auc,
            "insertion_gain": self.insertion_auc - self.random_insertion_auc,
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per step: the unit switched at that step and the four curves."""
        return pd.DataFrame(
            {
                "fraction": self.fractions,
                "unit": ["", *[self.units[i] for i in self.order]],
                "deletion": self.deletion,
                "random_deletion": self.random_deletion,
                "insertion": self.insertion,
                "random_insertion": self.random_insertion,
            }
        )

    def plot(self, ax: Any = None) -> Axes:
        """Deletion and insertion curves, attribution order (solid) against random order (dashed), drawn
        into ``ax`` (two Axes; default: a new figure). Returns the deletion Axes (``.figure`` has both)."""
        axes = new_axes_row(ax, 2, (8.0, 3.0))
        for ax, name, curve, rand, auc, rauc in (
            (
                axes[0],
                "deletion",
                self.deletion,
                self.random_deletion,
                self.deletion_auc,
                self.random_deletion_auc,
            ),
            (
                axes[1],
                "insertion",
                self.insertion,
                self.random_insertion,
                self.insertion_auc,
                self.random_insertion_auc,
            ),
        ):
            ax.plot(self.fractions, curve, label=f"{self.method} (AUC {auc:.3f})")
            ax.plot(self.fractions, rand, "--", color="#888888", label=f"random (AUC {rauc:.3f})")
            ax.set_xlabel(f"fraction of {self.level}s {'removed' if name == 'deletion' else 'inserted'}")
            ax.set_ylabel(f"p({self.target!r})")
            ax.set_title(name)
            ax.legend(fontsize="small")
        return axes[0]

    def __repr__(self) -> str:
        return summary(
            f"FaithfulnessCurves({self.method} → {self.target!r}: deletion AUC {self.deletion_auc:.3f} "
            f"(random {self.random_deletion_auc:.3f}), insertion AUC {self.insertion_auc:.3f} "
            f"(random {self.random_insertion_auc:.3f}))"
        )


def faithfulness_curves(
    model: ModelHandle | str,
    attribution: TokenAttribution,
    *,
    level: str = "word",
    n_random: int = 10,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool | None = None,
) -> FaithfulnessCurves:
    """Deletion and insertion curves of ``attribution`` (from :func:`attribute_tokens` on ``model``),
    by ``level`` (``"word"`` or ``"token"``), against the mean of ``n_random`` random orders.

    Args:
        model: The model the attribution is of.
        attribution: A token attribution.
        level: ``"word"`` or ``"token"``.
        n_random: Random orders.
        seed: Seed of the random orders.
        batch_size: Texts per forward pass.
        progress: A bar over the forward batches (``None``: shown for 20 batches or more).

    Returns:
        The deletion and insertion curves and their random baselines.

    Raises:
        TypeError: If ``attribution`` is not a :class:`TokenAttribution`.
        ValueError: For ``n_random < 1`` or an attribution of another tokenisation.

    Example:
        >>> attribution = attribute_tokens(model, "Not bad at all.")
        >>> faithfulness_curves(model, attribution).plot()"""
    if not isinstance(attribution, TokenAttribution):
        raise TypeError(f"attribution must be a TokenAttribution, got {type(attribution).__name__}")
    if n_random < 1:
        raise ValueError(f"n_random must be at least 1, got {n_random}")
    setup = prepare_text(
        model,
        attribution.text,
        attribution.target_id,
        output="prob",
        baseline=attribution.params.get("baseline", "pad"),
        keep_first=bool(attribution.params.get("keep_first", False)),
    )
    units = setup.units(level)
    if level == "word":
        scores = np.asarray(attribution.word_scores, dtype=np.float64)
    else:
        scores = np.asarray(attribution.token_scores, dtype=np.float64)[setup.content.cpu().numpy()]
    if len(scores) != len(units):
        raise ValueError("the attribution does not belong to this model's tokenisation of its text")
    n = len(units)
    order = np.argsort(-scores, kind="stable")
    rng = np.random.default_rng(seed)
    orders = [order, *[rng.permutation(n) for _ in range(n_random)]]
    steps = np.tril(np.ones((n + 1, n)), k=-1)  # row k: the first k units of an order switched
    rows = []
    for o in orders:
        switched = np.zeros((n + 1, n))
        switched[:, o] = steps
        rows.append(1.0 - switched)  # deletion: switched units go to the baseline
        rows.append(switched)  # insertion: switched units come from the input
    masks = torch.tensor(np.concatenate(rows), dtype=setup.embeds.dtype, device=setup.embeds.device)
    starts = range(0, masks.shape[0], batch_size)
    parts = []
    with steps_bar(len(starts), "faithfulness", progress, auto=len(starts) >= 20, unit="batch") as bar:
        for i in starts:
            parts.append(setup.evaluate(masks[i : i + batch_size], level, batch_size))
            bar.update(1)
    vals = torch.cat(parts).double().cpu().numpy().reshape(len(orders), 2, n + 1)
    return FaithfulnessCurves(
        text=setup.text,
        method=attribution.method,
        target=setup.target,
        level=level,
        units=units,
        order=order,
        fractions=np.arange(n + 1) / n,
        deletion=vals[0, 0],
        insertion=vals[0, 1],
        random_deletion=vals[1:, 0].mean(0),
        random_insertion=vals[1:, 1].mean(0),
        n_random=n_random,
    )


@dataclass(frozen=True)
class FaithfulnessComparison(Result):
    """Faithfulness curves of several methods on the same text, target and random orders (made by
    :func:`compare_faithfulness`).

    Attributes:
        curves: One :class:`FaithfulnessCurves` per method.
        attributions: The attribution each curve is of."""

    curves: tuple[FaithfulnessCurves, ...]
    attributions: tuple[TokenAttribution, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row per method: areas under the curves and gains over random order."""
        return pd.DataFrame([c.summary() for c in self.curves])

    def plot(self, ax: Any = None) -> Axes:
        """Every method's deletion and insertion curves, with the random order dashed, drawn into ``ax``
        (two Axes; default: a new figure). Returns the deletion Axes (``.figure`` has both)."""
        axes = new_axes_row(ax, 2, (8.0, 3.2))
        first = self.curves[0]
        for ax, name in zip(axes, ("deletion", "insertion")):
            for c in self.curves:
                ax.plot(c.fractions, getattr(c, name), label=c.method)
            ax.plot(first.fractions, getattr(first, f"random_{name}"), "--", color="#888888", label="random")
            ax.set_xlabel(f"fraction of {first.level}s {'removed' if name == 'deletion' else 'inserted'}")
            ax.set_ylabel(f"p({first.target!r})")
            ax.set_title(name)
        axes[1].legend(fontsize="small")
        return axes[0]

    def __repr__(self) -> str:
        lines = [
            f"{c.method}: deletion AUC {c.deletion_auc:.3f}, insertion AUC {c.insertion_auc:.3f}"
            for c in self.curves
        ]
        return summary(
            f"FaithfulnessComparison({len(self.curves)} methods, random orders as baseline)", *lines
        )


def compare_faithfulness(
    model: ModelHandle | str,
    text: str,
    methods: Sequence[str] = DEFAULT_METHODS,
    target: str | int | None = None,
    *,
    level: str = "word",
    n_random: int = 10,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool | None = None,
    **attribution_kwargs: Any,
) -> FaithfulnessComparison:
    """Attribute ``text`` with each of ``methods`` and compare their deletion/insertion curves (same target,
    same random orders).

    Args:
        model: A loaded model or a model name.
        text: The input.
        methods: Token attribution methods.
        target: What to explain (``None``: the top prediction).
        level: ``"word"`` or ``"token"``.
        n_random: Random orders.
        seed: Seed of the random orders.
        batch_size: Texts per forward pass.
        progress: A bar over the methods (``None``: shown for 3 methods or more).
        **attribution_kwargs: Go to :func:`attribute_tokens` (e.g. ``baseline``).

    Returns:
        The curves of every method.

    Raises:
        ValueError: For no methods, or as :func:`faithfulness_curves`.

    Example:
        >>> compare_faithfulness("minilm-sentiment", "Not bad at all.").to_frame()"""
    if isinstance(methods, str):
        methods = [methods]
    if not methods:
        raise ValueError("no methods given: pass e.g. ['integrated-gradients', 'saliency']")
    handle = as_handle(model)
    attrs: list[TokenAttribution] = []
    found: list[FaithfulnessCurves] = []
    with steps_bar(len(methods), "faithfulness", progress, auto=len(methods) >= 3, unit="method") as bar:
        for i, m in enumerate(methods):
            # the first attribution fixes the target, so every method explains the same output
            tgt = target if i == 0 else attrs[0].target_id
            attrs.append(attribute_tokens(handle, text, m, tgt, **attribution_kwargs))
            found.append(
                faithfulness_curves(
                    handle,
                    attrs[-1],
                    level=level,
                    n_random=n_random,
                    seed=seed,
                    batch_size=batch_size,
                    progress=False,
                )
            )
            bar.update(1)
    curves = tuple(found)
    return FaithfulnessComparison(curves, tuple(attrs))
