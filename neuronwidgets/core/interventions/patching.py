"""Activation patching (interchange intervention): run a clean and a corrupted prompt, copy one activation
from one run into the other, and measure how much of the clean behaviour comes back.

:func:`patch` sweeps a grid of units × positions, where a unit is

- a residual-stream state (``component="resid"``: the output of block ``L``; layer ``-1`` is the
  embeddings), or single dimensions of it (``neurons=[...]``);
- one attention head (``component="attn"``): its slice of the attention output before the output
  projection mixes the heads, so grouped-query attention (SmolLM2: 9 query heads on 3 key/value heads)
  needs nothing special;
- the MLP activation of a block (``component="mlp"``), or its single neurons (``neurons=[...]`` or
  ``"all"``: addresses ``layer.L.mlp:i``, the activations that feed the down projection);
- the MLP output of a block (``component="mlp_out"``: the down projection's output, ``d_model`` wide,
  before it is added to the residual stream), or its single dimensions (``layer.L.mlp_out:i``).

``direction="restore"`` (default, "denoising") runs the corrupted prompt and restores one clean activation;
``direction="break"`` runs the clean prompt and inserts one corrupted activation. The metric is read at the
predicted (last) position: ``"logit_diff"`` (logit of ``target`` minus logit of ``foil``), ``"prob"``
(probability of ``target``), ``"logprob"``, ``"kl"`` (KL(clean ‖ patched) in nats) or any callable mapping
logits ``[batch, vocab]`` to ``[batch]``.

Speed: see :mod:`~neuronwidgets.core.patch_engine` — every patched pass recomputes only the blocks after
its patch and, in causal LMs, only the positions from the patch on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..display import Result, listing, new_axes, number, summary
from ..models.handle import ModelHandle
from ..results import NeuronRanking
from .edits import _check_handle
from .patch_engine import Engine, Row, Run, num_heads

if TYPE_CHECKING:
    from matplotlib.axes import Axes

METRICS = ("logit_diff", "prob", "logprob", "kl")
COMPONENTS = ("resid", "attn", "mlp", "mlp_out")
DIRECTIONS = ("restore", "break")

MetricFn = Callable[[torch.Tensor], torch.Tensor]
PositionsLike = Sequence[int | Sequence[int]] | None


@dataclass(frozen=True)
class PatchingResult(Result):
    """Patching effects over units × positions (from :func:`patch` or :func:`causal_trace`).

    ``effect`` ``[U, P]`` = ``values - base``; ``recovered`` ``[U, P]`` = ``(values - corrupted) /
    (clean - corrupted)`` (1: the clean behaviour is fully back; NaN when clean equals corrupted).

    Attributes:
        units: What was patched ``[U]``, e.g. ``"layer.3.resid"``, ``"layer.3.head.5"``, ``"layer.3.mlp:117"``.
        layers: int ``[U]``, the block of each unit (``-1``: the embeddings).
        positions: ``[P]`` token positions each column patches (one, or a group patched together).
        tokens: ``[T]`` the clean prompt's tokens.
        values: float64 ``[U, P]``, the metric with that patch applied.
        metric: The metric's name (``"logit_diff"``, ``"prob"``, ``"logprob"``, ``"kl"`` or a function's).
        clean: The metric on the unpatched clean run.
        corrupted: The metric on the unpatched corrupted run (tracing: the mean over noise samples).
        direction: ``"restore"`` (the corrupted run was patched with clean values) or ``"break"``.
        component: ``"resid"``, ``"attn"``, ``"mlp"`` or ``"mlp_out"``.
        target: The target token (decoded), if the metric has one.
        foil: The foil token of ``"logit_diff"``.
        method: ``"activation patching"``, ``"causal tracing"`` or ``"attribution patching"``.
        meta: The prompts and settings, enough to re-run a cell (JSON-serialisable).

    Example:
        >>> res = patch(lm, "The Eiffel Tower is in", "The Colosseum is in", target=" Paris", foil=" Rome")  # doctest: +SKIP
        >>> res.to_frame().sort_values("recovered").tail()  # doctest: +SKIP
    """

    units: tuple[str, ...]
    layers: np.ndarray
    positions: tuple[tuple[int, ...], ...]
    tokens: tuple[str, ...]
    values: np.ndarray
    metric: str
    clean: float
    corrupted: float
    direction: str = "restore"
    component: str = "resid"
    target: str | None = None
    foil: str | None = None
    method: str = "activation patching"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float64)
        if v.shape != (len(self.units), len(self.positions)):
            raise ValueError(f"values must be [{len(self.units)}, {len(self.positions)}], got {v.shape}")
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "layers", np.asarray(self.layers, dtype=np.int64))

    @property
    def base(self) -> float:
        return self.corrupted if self.direction == "restore" else self.clean

    @property
    def effect(self) -> np.ndarray:
        return self.values - self.base

    @property
    def recovered(self) -> np.ndarray:
        span = self.clean - self.corrupted
        if span == 0:
            return np.full_like(self.values, np.nan)
        return (self.values - self.corrupted) / span

    @property
    def importance(self) -> np.ndarray:
        """``[U, P]``: how much each patch matters, higher = more: the share of the clean behaviour restored
        (``"restore"``) or destroyed (``"break"``); the absolute effect when clean equals corrupted."""
        if self.clean == self.corrupted:
            return np.abs(self.effect)
        return self.recovered if self.direction == "restore" else 1.0 - self.recovered

    @property
    def position_labels(self) -> list[str]:
        return [f"{g[0]}:{self.tokens[g[0]]}" if len(g) == 1 else f"{g[0]}–{g[-1]}" for g in self.positions]

    def ranking(self) -> NeuronRanking:
        """The neuron units (``layer.L.mlp:i`` / ``layer.L.resid:i``) ranked by their largest importance
        over the positions; a ``ValueError`` when the units are not neurons (heads, whole sites)."""
        if not self.units or ":" not in self.units[0]:
            raise ValueError(
                f"this result patches {self.component} units such as {self.units[:1]}, not single neurons: "
                "patch with neurons=[...] (or neurons='all') for a neuron ranking"
            )
        imp = self.importance
        best = np.nanmax(np.where(np.isnan(imp), -np.inf, imp), axis=1)
        return NeuronRanking.from_scores(
            self.units,
            best,
            "activation-patching",
            columns={"effect": self.effect[np.arange(len(self.units)), np.argmax(imp, axis=1)]},
            meta={"metric": self.metric, "direction": self.direction, "target": self.target},
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per unit × position: unit, layer, position, token, value, effect, recovered."""
        u, p = np.meshgrid(np.arange(len(self.units)), np.arange(len(self.positions)), indexing="ij")
        labels = self.position_labels
        return pd.DataFrame(
            {
                "unit": [self.units[i] for i in u.ravel()],
                "layer": self.layers[u.ravel()],
                "position": [labels[j] for j in p.ravel()],
                "value": self.values.ravel(),
                "effect": self.effect.ravel(),
                "recovered": self.recovered.ravel(),
            }
        )

    def plot(self, ax: Any = None, what: str = "effect") -> Axes:
        """Heatmap of units × positions (``what``: ``"effect"``, ``"recovered"`` or ``"values"``), drawn into
        ``ax`` (default: a new figure); returns the Axes."""
        grid = {"effect": self.effect, "recovered": self.recovered, "values": self.values}.get(what)
        if grid is None:
            raise ValueError(f"what must be 'effect', 'recovered' or 'values', got {what!r}")
        ax = new_axes(ax, (max(4.0, 0.5 * len(self.positions) + 2), max(3.0, 0.18 * len(self.units) + 1)))
        lim = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
        im = ax.imshow(grid, cmap="RdBu_r", vmin=-(lim or 1.0), vmax=lim or 1.0, aspect="auto")
        ax.set_xticks(range(len(self.positions)), self.position_labels, rotation=60, ha="right")
        step = max(1, len(self.units) // 30)
        ax.set_yticks(range(0, len(self.units), step), self.units[::step])
        ax.set_title(f"{self.method}: {self.metric} ({self.direction})")
        ax.figure.colorbar(im, ax=ax, label=what)
        return ax

    def __repr__(self) -> str:
        imp = np.where(np.isnan(self.importance), -np.inf, self.importance)
        u, p = np.unravel_index(int(np.argmax(imp)), imp.shape) if imp.size else (0, 0)
        best = f"strongest cell: {self.units[u]} × {self.position_labels[p]}" if imp.size else ""
        return summary(
            f"PatchingResult: {self.method}, {len(self.units)} {self.component} units × {len(self.positions)} positions",
            f"{self.metric}{f' of {self.target!r}' if self.target else ''}: clean {number(self.clean)}, "
            f"corrupted {number(self.corrupted)} ({self.direction})",
            best,
            f"units: {listing(self.units, 4)}",
        )


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------


def _module(model: Any, getter: str) -> Any:
    """``model.get_input_embeddings()`` and the like (transformers' getters, untyped for mypy)."""
    return getattr(model, getter)()


def token_id(handle: ModelHandle, token: str | int, what: str) -> int:
    """A single vocabulary id from an id or a string that is exactly one token."""
    if isinstance(token, (int, np.integer)) and not isinstance(token, bool):
        vocab = int(_module(handle.model, "get_output_embeddings").weight.shape[0])
        if not 0 <= int(token) < vocab:
            raise ValueError(f"{what} id {token} is out of range (0 … {vocab - 1})")
        return int(token)
    if not isinstance(token, str):
        raise TypeError(f"{what} must be a token string or id, got {type(token).__name__}")
    ids = handle.tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(
            f"{what} {token!r} is {len(ids)} tokens for {handle.name}, expected exactly one "
            "(mind the leading space, e.g. ' Paris')"
        )
    return int(ids[0])


@dataclass(frozen=True)
class Metric:
    """A metric of the logits at the predicted position: ``fn`` maps logits ``[batch, vocab]`` to
    ``[batch]``; when ``columns`` is set, ``on_columns`` gives the same from those vocabulary columns only
    (``[batch, len(columns)]``), so patched runs compute a few logits instead of the whole vocabulary."""

    name: str
    fn: MetricFn
    columns: tuple[int, ...] | None = None
    on_columns: MetricFn | None = None


def make_metric(
    metric: str | MetricFn, target: int | None, foil: int | None, reference: torch.Tensor | None
) -> Metric:
    """The metric called ``metric`` (or a callable of logits ``[batch, vocab]`` → ``[batch]``)."""
    if callable(metric):
        return Metric(getattr(metric, "__name__", "custom"), metric)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: choose from {', '.join(METRICS)} or pass a callable")
    if metric == "kl":
        if reference is None:
            raise ValueError("metric 'kl' needs the clean run's logits")
        ref = reference.float().log_softmax(-1)
        return Metric("kl", lambda lg: (ref.exp() * (ref - lg.float().log_softmax(-1))).sum(-1))
    if target is None:
        raise ValueError(f"metric {metric!r} needs a target token")
    if metric == "prob":
        return Metric("prob", lambda lg: lg.float().softmax(-1)[:, target])
    if metric == "logprob":
        return Metric("logprob", lambda lg: lg.float().log_softmax(-1)[:, target])
    if foil is None or foil == target:
        raise ValueError(
            "metric 'logit_diff' needs a foil token different from the target (by default the corrupted "
            "run's top prediction): pass foil=' Rome', or use metric='prob'"
        )
    return Metric(
        "logit_diff",
        lambda lg: lg[:, target].float() - lg[:, foil].float(),
        (target, foil),
        lambda lg: lg[:, 0].float() - lg[:, 1].float(),
    )


def _checked(fn: MetricFn, logits: torch.Tensor) -> torch.Tensor:
    out = torch.as_tensor(fn(logits)).reshape(-1)
    if out.shape[0] != logits.shape[0]:
        raise ValueError(
            f"the metric must return one number per row ([{logits.shape[0]}]), got shape {tuple(out.shape)}"
        )
    return out


def _metric_value(fn: MetricFn, logits: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        out = fn(logits)
    out = torch.as_tensor(out).reshape(-1)
    if out.shape[0] != logits.shape[0]:
        raise ValueError(
            f"the metric must return one number per row ([{logits.shape[0]}]), got shape {tuple(out.shape)}"
        )
    return out.detach().double().cpu().numpy()


# ------------------------------------------------------------------------------------------------
# Grids of patches
# ------------------------------------------------------------------------------------------------


def check_positions(positions: PositionsLike, length: int, what: str = "positions") -> list[tuple[int, ...]]:
    """Position groups: each entry an int (one position) or a sequence (patched together)."""
    if positions is None:
        return [(i,) for i in range(length)]
    if isinstance(positions, (int, str)):
        raise TypeError(
            f"{what} must be a list of positions (ints, or lists patched together), got {positions!r}"
        )
    out: list[tuple[int, ...]] = []
    for g in positions:
        group = (g,) if isinstance(g, (int, np.integer)) else tuple(g)
        if not group:
            raise ValueError(f"an empty group in {what}")
        for p in group:
            if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not -length <= int(p) < length:
                raise ValueError(
                    f"position {p!r} in {what} is out of range for {length} tokens (0 … {length - 1})"
                )
        out.append(tuple(sorted({int(p) % length for p in group})))
    if not out:
        raise ValueError(f"{what} is empty: give at least one position, or None for all")
    return out


def check_layers(layers: Sequence[int] | int | None, n: int, allow_embed: bool) -> list[int]:
    if layers is None:
        return list(range(n))
    if isinstance(layers, (int, np.integer)):
        layers = [int(layers)]
    low = -1 if allow_embed else 0
    out = []
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not low <= int(layer) < n:
            where = "-1 (embeddings) … " if allow_embed else "0 … "
            raise ValueError(f"layer {layer!r} is out of range: valid layers are {where}{n - 1}")
        out.append(int(layer))
    if not out:
        raise ValueError("layers is empty: give at least one layer, or None for all")
    return out


@dataclass(frozen=True)
class Unit:
    """One patched unit: ``kind`` of ``layer``, dimensions ``dims`` of it."""

    label: str
    layer: int
    kind: str
    dims: torch.Tensor


def make_units(
    handle: ModelHandle,
    component: str,
    layers: Sequence[int] | int | None,
    heads: Sequence[int] | None,
    neurons: Sequence[int] | str | None,
) -> list[Unit]:
    """The units of a patching grid, in layer order."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}: choose from {', '.join(COMPONENTS)}")
    lay = check_layers(layers, handle.num_layers, allow_embed=component == "resid")
    if component == "attn":
        if neurons is not None:
            raise ValueError(
                "neurons= applies to component 'resid', 'mlp' or 'mlp_out'; heads are chosen with heads="
            )
        nh = num_heads(handle)
        hs = list(range(nh)) if heads is None else list(heads)
        for h in hs:
            if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or not 0 <= int(h) < nh:
                raise ValueError(
                    f"head {h!r} is out of range: {handle.name} has {nh} heads per layer (0 … {nh - 1})"
                )
        width = handle.hidden_size // nh
        return [
            Unit(f"layer.{L}.head.{h}", L, "attn", torch.arange(h * width, (h + 1) * width))
            for L in lay
            for h in hs
        ]
    if heads is not None:
        raise ValueError(f"heads= applies to component 'attn', not {component!r}")
    width = handle.mlp_size if component == "mlp" else handle.hidden_size
    prefix = {L: ("embed" if L < 0 else f"layer.{L}") for L in lay}
    if neurons is None:
        return [Unit(f"{prefix[L]}.{component}", L, component, torch.arange(width)) for L in lay]
    idx = list(range(width)) if isinstance(neurons, str) and neurons == "all" else neurons
    if isinstance(idx, str):
        raise ValueError(f"neurons must be a list of indices or 'all', got {neurons!r}")
    for i in idx:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < width:
            raise ValueError(f"neuron {i!r} is out of range for {component} (0 … {width - 1})")
    return [
        Unit(f"{prefix[L]}.{component}:{int(i)}", L, component, torch.tensor([int(i)]))
        for L in lay
        for i in idx
    ]


def source_act(run: Run, unit: Unit) -> torch.Tensor:
    """The unit's activation ``[T, width]`` in ``run`` (the site's whole vector)."""
    if unit.kind == "resid":
        n = len(run.hidden)
        return (run.hidden[unit.layer + 1] if unit.layer + 1 < n else run.final)[0]
    return run.acts[(unit.kind, unit.layer)][0]


def sweep(
    engine: Engine,
    base: Run,
    source: Run,
    units: Sequence[Unit],
    groups: Sequence[tuple[int, ...]],
    metric: Metric,
) -> np.ndarray:
    """The metric ``[U, P]`` of ``base`` with each unit × position group set to its value in ``source``.
    A patch that writes what is already there is not run: its value is the base run's, exactly."""
    rows: list[Row] = []
    where: list[tuple[int, int]] = []
    for u, unit in enumerate(units):
        src, dst = source_act(source, unit), source_act(base, unit)
        for g, group in enumerate(groups):
            pos = torch.tensor(group)
            values = src[pos][:, unit.dims]
            if torch.equal(values, dst[pos][:, unit.dims]):
                continue
            k = len(group) * len(unit.dims)
            rows.append(
                Row(
                    unit.layer,
                    unit.kind,
                    pos.repeat_interleave(len(unit.dims)),
                    unit.dims.repeat(len(group)),
                    values.reshape(k),
                )
            )
            where.append((u, g))
    out = np.full((len(units), len(groups)), _metric_value(metric.fn, base.logits.float())[0])
    for (u, g), v in zip(where, row_values(engine, base, rows, metric)):
        out[u, g] = v
    return out


def row_values(engine: Engine, base: Run, rows: Sequence[Row], metric: Metric) -> np.ndarray:
    """The metric ``[len(rows)]`` of ``base`` under each row's patch (a few logits only when the metric
    allows)."""
    if not rows:
        return np.zeros(0)
    fn = metric.on_columns if metric.columns is not None and metric.on_columns is not None else metric.fn
    values = engine.run_rows(
        base,
        rows,
        reduce=lambda lg: _checked(fn, lg),
        columns=metric.columns if fn is not metric.fn else None,
    )
    return _metric_value(lambda x: x, values)


def _tokens(handle: ModelHandle, enc: dict[str, torch.Tensor]) -> tuple[str, ...]:
    return tuple(handle.tokenizer.decode([int(i)]) for i in enc["input_ids"][0])


def encode_pair(
    handle: ModelHandle, clean: str, corrupted: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Encode two prompts that must have the same number of tokens."""
    for name, text in (("clean", clean), ("corrupted", corrupted)):
        if not isinstance(text, str):
            raise TypeError(f"{name} must be one prompt (a string), got {type(text).__name__}")
    a, b = handle.encode([clean], truncate=False), handle.encode([corrupted], truncate=False)
    la, lb = a["input_ids"].shape[1], b["input_ids"].shape[1]
    if la != lb:
        raise ValueError(
            f"clean and corrupted prompts must have the same number of tokens, got {la} and {lb}: "
            "swap words that are single tokens (e.g. ' Paris' ↔ ' Rome')"
        )
    return a, b


def patch(
    model: ModelHandle,
    clean: str,
    corrupted: str,
    *,
    component: str = "resid",
    layers: Sequence[int] | int | None = None,
    positions: PositionsLike = None,
    heads: Sequence[int] | None = None,
    neurons: Sequence[int] | str | None = None,
    metric: str | MetricFn = "logit_diff",
    target: str | int | None = None,
    foil: str | int | None = None,
    direction: str = "restore",
    chunk_tokens: int = 4096,
) -> PatchingResult:
    """Patch every unit × position of ``component`` between a clean and a corrupted prompt (same token
    count) and measure ``metric`` at the predicted position. See the module docstring for units,
    directions and metrics.

    Args:
        model: A causal or masked language model (:class:`~neuronwidgets.core.ModelHandle`).
        clean: The prompt with the behaviour of interest.
        corrupted: A prompt with the same number of tokens that lacks it.
        component: ``"resid"`` (residual stream after each block), ``"attn"`` (each head), ``"mlp"`` (MLP neurons) or ``"mlp_out"`` (MLP output).
        layers: Blocks to patch (default all; ``-1`` is the embeddings for ``"resid"``).
        positions: Token positions (default all); an entry may be a list of positions patched together.
        heads: Heads to patch (``component="attn"``; default all).
        neurons: Single dimensions to patch one at a time (indices or ``"all"``); default the whole site.
        metric: ``"logit_diff"``, ``"prob"``, ``"logprob"``, ``"kl"`` or a callable of logits
            ``[batch, vocab]`` → ``[batch]``.
        target: The target token (string or id); default the clean run's top token.
        foil: The foil of ``"logit_diff"``; default the corrupted run's top token.
        direction: ``"restore"`` (run corrupted, insert clean values) or ``"break"`` (the reverse).
        chunk_tokens: Most rows × positions re-run at once (bounds memory).

    Returns:
        A :class:`PatchingResult` with the grid, both baselines and the settings.

    Example:
        >>> res = patch(lm, "The Eiffel Tower is in", "The Colosseum is in", target=" Paris", foil=" Rome")  # doctest: +SKIP
        >>> res.plot(what="recovered")  # doctest: +SKIP
    """
    handle = _check_handle(model)
    if direction not in DIRECTIONS:
        raise ValueError(
            f"unknown direction {direction!r}: choose 'restore' (corrupted run, clean value) or 'break'"
        )
    enc_clean, enc_corr = encode_pair(handle, clean, corrupted)
    units = make_units(handle, component, layers, heads, neurons)
    length = enc_clean["input_ids"].shape[1]
    groups = check_positions(positions, length)
    engine = Engine(handle, chunk_tokens)
    sites = sorted({(u.kind, u.layer) for u in units if u.kind != "resid"})
    run_clean = engine.record(enc_clean, sites)
    run_corr = engine.record(enc_corr, sites)
    tid = token_id(handle, target, "target") if target is not None else int(run_clean.logits.argmax())
    fid = token_id(handle, foil, "foil") if foil is not None else int(run_corr.logits.argmax())
    m = make_metric(metric, tid, fid, run_clean.logits)
    name, fn = m.name, m.fn
    base, source = (run_corr, run_clean) if direction == "restore" else (run_clean, run_corr)
    values = sweep(engine, base, source, units, groups, m)
    # the unpatched runs' metric, from the same logits the no-op cells reuse
    clean_v = float(_metric_value(fn, run_clean.logits.float())[0])
    corr_v = float(_metric_value(fn, run_corr.logits.float())[0])
    return PatchingResult(
        units=tuple(u.label for u in units),
        layers=np.array([u.layer for u in units]),
        positions=tuple(groups),
        tokens=_tokens(handle, enc_clean),
        values=values,
        metric=name,
        clean=clean_v,
        corrupted=corr_v,
        direction=direction,
        component=component,
        target=handle.tokenizer.decode([tid]),
        foil=handle.tokenizer.decode([fid]) if name == "logit_diff" else None,
        meta={
            "clean_text": clean,
            "corrupted_text": corrupted,
            "corrupted_tokens": list(_tokens(handle, enc_corr)),
            "suffix_reruns": bool(engine.suffix_ok),
        },
    )
