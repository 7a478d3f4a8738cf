"""Token × token interactions of a text: :func:`attribute_interactions` runs Integrated Hessians,
Shapley-Taylor or Archipelago (:mod:`.interactions`) on a prepared text and returns
:class:`TokenInteractions` (word pairs, phrases, a table and a plot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..display import Result, new_axes, summary
from ..models.handle import ModelHandle
from ..plotting import token_xticks
from .interactions import Archipelago, IntegratedHessians, ShapleyTaylorInteraction
from .methods import _warn_delta, get_method, math_attention
from .setup import prepare_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes


# ------------------------------------------------------------------------------------------------
# Text: token × token interactions
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenInteractions(Result):
    """Pairwise interactions between the tokens (or words) of one text, for one prediction.

    - ``units``: the ``n`` content tokens (``level="token"``) or words (``"word"``);
    - ``matrix``: float ``[n, n]``, symmetric, zero diagonal: each pair's interaction. Integrated
      Hessians: ``Γ_ij + Γ_ji``; Shapley-Taylor: ``I_ij``; Archipelago: the ArchDetect strength (≥ 0,
      squared, not on the output's scale);
    - ``main``: float ``[n]``, each unit's own effect (``Γ_ii``; ``I_i``; Archipelago: inserting the
      unit alone into the baseline);
    - ``sets`` / ``set_scores``: Archipelago's merged unit sets and their ArchAttribute scores (empty
      for the other methods);
    - ``output_difference``: ``F(input) − F(baseline)``; ``delta``: for Integrated Hessians and
      Shapley-Taylor, ``main.sum() + upper triangle of matrix − output_difference`` (completeness /
      efficiency), else ``None``;
    - ``standard_error``: float ``[n, n]`` for a *sampled* Shapley-Taylor estimate (the standard error of
      each pair's value over the sampled permutations), ``None`` when the values are exact or not sampled.
      :attr:`is_estimate` says which.

    Attributes:
        text: The input.
        method: ``"integrated-hessians"``, ``"shapley-taylor"`` or ``"archipelago"``.
        target: What was explained.
        target_id: Its class index or token id.
        output: ``"prob"``, ``"logit"`` or ``"log-prob"`` (the explained quantity).
        baseline: The baseline used.
        level: ``"token"`` or ``"word"``.
        units: The ``n`` content tokens or words.
        matrix: Float ``[n, n]``, symmetric, zero diagonal: each pair's interaction.
        main: Float ``[n]``: each unit's own effect.
        sets: Archipelago's merged unit sets (indices into ``units``); empty for the other methods.
        set_scores: Float ``[len(sets)]``: ArchAttribute score of each set; empty for the other methods.
        output_difference: ``F(input) − F(baseline)``.
        prob: The target's probability on the input.
        delta: The completeness / efficiency gap (Integrated Hessians, Shapley-Taylor), else ``None``.
        params: The method's settings (``keep_first`` and ``n_steps``, ``n_samples`` / ``exact`` or
            ``threshold`` / ``max_pairs``).
        standard_error: Float ``[n, n]`` for a sampled Shapley-Taylor estimate, else ``None``.
    """

    text: str
    method: str
    target: str
    target_id: int
    output: str
    baseline: str
    level: str
    units: list[str]
    matrix: np.ndarray
    main: np.ndarray
    sets: tuple[tuple[int, ...], ...]
    set_scores: np.ndarray
    output_difference: float
    prob: float
    delta: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    standard_error: np.ndarray | None = None

    @property
    def is_estimate(self) -> bool:
        """True when the pair values are a sampled estimate (Shapley-Taylor with ``n_samples``)."""
        return self.standard_error is not None

    def pairs(self) -> pd.DataFrame:
        """Every pair ``i < j``, strongest (by absolute value) first; with a ``standard_error`` column when
        the values are a sampled estimate."""
        n = len(self.units)
        iu, ju = np.triu_indices(n, 1)
        scores = self.matrix[iu, ju]
        order = np.argsort(-np.abs(scores), kind="stable")
        data = {
            "i": iu[order],
            "j": ju[order],
            "unit_i": [self.units[k] for k in iu[order]],
            "unit_j": [self.units[k] for k in ju[order]],
            "interaction": scores[order],
        }
        if self.standard_error is not None:
            data["standard_error"] = self.standard_error[iu, ju][order]
        return pd.DataFrame(data).reset_index(drop=True)

    def top_pairs(self, k: int = 5) -> list[tuple[str, str, float]]:
        """The ``k`` strongest pairs as ``(unit_i, unit_j, interaction)``."""
        df = self.pairs().head(k)
        return [(r.unit_i, r.unit_j, float(r.interaction)) for r in df.itertuples()]

    def to_frame(self) -> pd.DataFrame:
        return self.pairs()

    def plot(self, ax: Any = None) -> Axes:
        """Heatmap of the pair matrix (diverging colours, zero white), drawn into ``ax`` (default: a new
        figure); returns the Axes."""
        n = len(self.units)
        ax = new_axes(ax, (max(3.5, 0.45 * n + 1.5), max(3.0, 0.45 * n + 1.0)))
        lim = float(np.abs(self.matrix).max()) or 1.0
        im = ax.imshow(self.matrix, cmap="RdBu_r", vmin=-lim, vmax=lim)
        token_xticks(ax, self.units)
        ax.set_yticks(range(n), self.units)
        ax.set_title(f"{self.method} → {self.target!r} (p={self.prob:.3f})")
        ax.figure.colorbar(im, ax=ax, label="interaction")
        return ax

    def __repr__(self) -> str:
        top = ", ".join(f"({a!r}, {b!r}): {s:+.3g}" for a, b, s in self.top_pairs(3))
        return summary(
            f"TokenInteractions({self.method} → {self.target!r}, {len(self.units)} {self.level}s, top {top})"
        )


#: ``attribute_interactions(..., "shapley-taylor")`` is exact up to this many units by default
EXACT_UNITS = 12
#: permutations sampled beyond :data:`EXACT_UNITS`
DEFAULT_PERMUTATIONS = 25


def _shapley_samples(n_samples: int | str | None, n: int) -> int | None:
    if n_samples == "auto":
        return None if n <= EXACT_UNITS else DEFAULT_PERMUTATIONS
    if n_samples is None:
        return None
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be 'auto', None (exact) or a positive int, got {n_samples!r}")
    return int(n_samples)


def attribute_interactions(
    model: ModelHandle | str,
    text: str,
    method: str = "integrated-hessians",
    target: str | int | None = None,
    *,
    level: str = "token",
    output: str = "prob",
    baseline: str | int = "pad",
    keep_first: bool | str = "auto",
    n_steps: int = 64,
    n_samples: int | str | None = "auto",
    threshold: float = 0.1,
    max_pairs: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    delta_tolerance: float = 0.05,
) -> TokenInteractions:
    """Pairwise interactions between the tokens (``level="token"``) or words (``"word"``) of ``text`` for
    one prediction: ``"integrated-hessians"`` (default), ``"shapley-taylor"`` or ``"archipelago"``.

    Each unit is switched between its input and baseline embeddings (special tokens stay), so
    interactions say how two units' effects on the output depend on each other (e.g. "not" and "bad").
    ``n_steps``: Integrated Hessians' path points (each costs one second-order backward pass per unit);
    ``n_samples``: Shapley-Taylor permutations; ``"auto"`` (default) computes the index exactly (all
    ``2^n`` subsets) up to :data:`EXACT_UNITS` = 12 units and estimates it from 25 sampled permutations
    beyond; ``None`` forces the exact index (up to 14 units). A sampled result carries the standard error
    of every pair (``standard_error``, ``is_estimate``); ``threshold`` /
    ``max_pairs``: Archipelago's merging. Target, output, baseline and ``keep_first`` as in
    :func:`~neuronwidgets.core.attribute_tokens` (a kept first token is no unit at token level; at word
    level a word made only of it switches nothing, so its interactions are 0).

    Args:
        model: A loaded model or a model name, with a prediction head.
        text: The input.
        method: ``"integrated-hessians"`` (default), ``"shapley-taylor"`` or ``"archipelago"``.
        target: A classifier label (name or index), a next token (one-token string or id) for causal
            LMs, the masked token for masked LMs; ``None`` explains the current top prediction.
        level: ``"token"`` (default) or ``"word"``: the units that interact.
        output: The explained quantity, ``"prob"`` (default), ``"logit"`` or ``"log-prob"``.
        baseline: ``"pad"`` (default), ``"mask"``, ``"unk"``, ``"zero"`` or a token id; special tokens
            are kept.
        keep_first: Keep the first content token too (``True``), never (``False``), or when the model is
            a causal LM without BOS (``"auto"``, default).
        n_steps: Integrated Hessians' path points.
        n_samples: Shapley-Taylor permutations: ``"auto"`` (exact up to :data:`EXACT_UNITS` units, 25
            permutations beyond), ``None`` (exact) or a positive int.
        threshold: Archipelago merges the pairs at least this fraction of the strongest pair's strength.
        max_pairs: Archipelago merges at most this many pairs (strongest first); ``None``: no limit.
        batch_size: Path points or coalitions per forward pass.
        seed: For Shapley-Taylor's sampled permutations.
        delta_tolerance: Warn when Integrated Hessians' ``|delta|`` exceeds this fraction of
            ``|F(input) − F(baseline)|``.

    Returns:
        The pair matrix, main effects (and Archipelago's sets) with the completeness check.

    Raises:
        ValueError: For an unknown method, level or target, a bad ``n_steps``, ``n_samples`` or
            ``threshold``, or too many units for the exact Shapley-Taylor index.

    Example:
        >>> inter = attribute_interactions("minilm-sentiment", "not bad at all", level="word")
        >>> inter.top_pairs(3)  # e.g. ("not", "bad", ...) first
        >>> inter.plot()
    """
    m = get_method(method, "interaction")
    setup = prepare_text(model, text, target, output=output, baseline=baseline, keep_first=keep_first)
    units = setup.units(level)
    n = len(units)
    f = setup.unit_function(level)
    ones = torch.ones(1, n, dtype=setup.embeds.dtype, device=setup.embeds.device)
    zeros = torch.zeros_like(ones)
    ends = setup.evaluate(torch.cat([ones, zeros]), level)
    diff = float(ends[0] - ends[1])
    sets: tuple[tuple[int, ...], ...] = ()
    set_scores = np.zeros(0)
    standard_error: np.ndarray | None = None
    delta: float | None = None
    params: dict[str, Any] = {"keep_first": setup.kept_first}
    if m.name == "integrated-hessians":
        with math_attention():  # second derivatives through attention need the math kernel
            gam = IntegratedHessians(f).attribute(
                ones, zeros, n_steps=n_steps, internal_batch_size=batch_size
            )
        g = gam[0].numpy()
        matrix = g + g.T
        np.fill_diagonal(matrix, 0.0)
        main = np.diag(g).copy()
        delta = float(g.sum() - diff)
        _warn_delta(delta, diff, delta_tolerance, "n_steps", n_steps)
        params["n_steps"] = n_steps
    elif m.name == "shapley-taylor":
        samples = _shapley_samples(n_samples, n)
        st_t, se_t = ShapleyTaylorInteraction(
            lambda mm: setup.scores(setup.mixed(mm, level))
        ).attribute_with_error(ones, zeros, n_samples=samples, perturbations_per_eval=batch_size, seed=seed)
        st = st_t[0].numpy()
        main = np.diag(st).copy()
        matrix = st.copy()
        np.fill_diagonal(matrix, 0.0)
        delta = float(main.sum() + np.triu(matrix, 1).sum() - diff)
        params["n_samples"] = samples
        params["exact"] = samples is None
        if samples is not None:
            standard_error = se_t[0].numpy()
    else:
        arch = Archipelago(f).attribute(
            ones, zeros, threshold=threshold, max_pairs=max_pairs, perturbations_per_eval=batch_size
        )
        matrix = arch.strengths[0].numpy()
        groups = arch.groups[0].numpy()
        sets = tuple(tuple(int(i) for i in np.flatnonzero(groups == k)) for k in range(int(groups.max()) + 1))
        set_scores = np.array([float(arch.attributions[0, s[0]]) for s in sets])
        singles = setup.evaluate(torch.cat([zeros, torch.eye(n).to(ones)]), level, batch_size)
        main = (singles[1:] - singles[0]).double().cpu().numpy()
        params.update(threshold=threshold, max_pairs=max_pairs)
    return TokenInteractions(
        **setup.explained(),
        method=m.name,
        level=level,
        units=units,
        matrix=matrix,
        main=main,
        sets=sets,
        set_scores=set_scores,
        output_difference=diff,
        delta=delta,
        params=params,
        standard_error=standard_error,
    )
