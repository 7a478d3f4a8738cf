"""Causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT").

Corrupt the subject tokens' input embeddings with Gaussian noise (standard deviation ``3 ×`` the standard
deviation of the model's embedding matrix, as in the paper), then restore one clean hidden state at a time
and read the probability of the clean answer: the layer × position map of where a fact is carried. Noise
is seeded; several noise samples are averaged (each sample's corrupted run is patched separately).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..models.handle import ModelHandle
from .edits import _check_handle
from .patch_engine import Engine
from .patching import (
    MetricFn,
    PatchingResult,
    PositionsLike,
    _metric_value,
    _module,
    _tokens,
    check_positions,
    make_metric,
    make_units,
    sweep,
    token_id,
)

NOISE_FACTOR = 3.0


def subject_positions(handle: ModelHandle, text: str, subject: str | Sequence[int]) -> list[int]:
    """Token positions of ``subject`` in ``text``: a substring (its first occurrence) or explicit positions."""
    enc = handle.tokenizer([text], add_special_tokens=True, return_offsets_mapping=True)
    offsets = enc["offset_mapping"][0]
    n = len(offsets)
    if isinstance(subject, str):
        if not subject.strip():
            raise ValueError("subject is empty: pass the subject's words as they appear in the text")
        start = text.find(subject)
        if start < 0:
            raise ValueError(f"subject {subject!r} does not occur in the text {text!r}")
        end = start + len(subject)
        pos = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
    else:
        pos = sorted({int(p) for p in subject})
        bad = [p for p in pos if not 0 <= p < n]
        if bad:
            raise ValueError(f"subject position {bad[0]} is out of range for {n} tokens (0 … {n - 1})")
    if not pos:
        raise ValueError(f"subject {subject!r} covers no token of the text")
    return pos


def embedding_std(handle: ModelHandle) -> float:
    """Standard deviation of all entries of the input embedding matrix."""
    weight = _module(handle.model, "get_input_embeddings").weight
    return float(weight.detach().float().std())


def causal_trace(
    model: ModelHandle,
    text: str,
    subject: str | Sequence[int],
    *,
    target: str | int | None = None,
    samples: int = 10,
    noise: float | None = None,
    seed: int = 0,
    component: str = "resid",
    layers: Sequence[int] | int | None = None,
    positions: PositionsLike = None,
    heads: Sequence[int] | None = None,
    neurons: Sequence[int] | str | None = None,
    metric: str | MetricFn = "prob",
    chunk_tokens: int = 4096,
) -> PatchingResult:
    """Trace where ``text``'s prediction of ``target`` is carried (Meng et al. 2022).

    The corrupted run adds ``N(0, noise²)`` to the subject tokens' embeddings; each of ``samples`` seeded
    noise draws is patched unit by unit and the metric averaged. ``corrupted`` in the result is the mean
    over samples.

    Args:
        model: A causal LM (:class:`~neuronwidgets.core.ModelHandle`).
        text: The prompt, e.g. ``"The Eiffel Tower is located in the city of"``.
        subject: The subject as it appears in ``text`` (its tokens are noised), or its token positions.
        target: The answer token (string or id); default the clean top token.
        samples: Noise draws averaged.
        noise: Standard deviation of the noise; default ``3 ×`` the embedding matrix's std.
        seed: Seed of the noise.
        component: ``"resid"``, ``"attn"`` or ``"mlp"``, as in :func:`patch`.
        layers: Blocks to restore, as in :func:`patch`.
        positions: Positions to restore, as in :func:`patch`.
        heads: Heads (``component="attn"``), as in :func:`patch`.
        neurons: Single neurons, as in :func:`patch`.
        metric: Default ``"prob"`` of ``target``; any metric of :func:`patch`.
        chunk_tokens: Most rows × positions re-run at once.

    Returns:
        A :class:`PatchingResult` with ``method="causal tracing"``.

    Example:
        >>> t = causal_trace(lm, "The Eiffel Tower is located in the city of", "The Eiffel Tower")  # doctest: +SKIP
        >>> t.plot(what="values")  # doctest: +SKIP
    """
    handle = _check_handle(model)
    if handle.kind != "causal-lm":
        raise ValueError(f"causal tracing needs a causal LM, but {handle.name} is a {handle.kind}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive int, got {samples!r}")
    if noise is not None and not (isinstance(noise, (int, float)) and noise > 0):
        raise ValueError(
            f"noise must be a positive standard deviation (or None for 3 × embedding std), got {noise!r}"
        )
    subj = subject_positions(handle, text, subject)
    enc = handle.encode([text], truncate=False)
    units = make_units(handle, component, layers, heads, neurons)
    groups = check_positions(positions, enc["input_ids"].shape[1])
    scale = float(noise) if noise is not None else NOISE_FACTOR * embedding_std(handle)
    engine = Engine(handle, chunk_tokens)
    sites = sorted({(u.kind, u.layer) for u in units if u.kind != "resid"})
    clean = engine.record(enc, sites)
    tid = token_id(handle, target, "target") if target is not None else int(clean.logits.argmax())
    m = make_metric(metric, tid, None, clean.logits)
    name, fn = m.name, m.fn
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        embeds = _module(handle.model, "get_input_embeddings")(enc["input_ids"])
    total = np.zeros((len(units), len(groups)))
    corrupted = []
    for _ in range(samples):
        noisy = embeds.clone()
        draw = torch.randn((len(subj), embeds.shape[-1]), generator=gen) * scale
        noisy[0, subj] += draw.to(noisy.dtype).to(noisy.device)
        base = engine.record(enc, sites, inputs_embeds=noisy)
        corrupted.append(float(_metric_value(fn, base.logits.float())[0]))
        total += sweep(engine, base, clean, units, groups, m)
    return PatchingResult(
        units=tuple(u.label for u in units),
        layers=np.array([u.layer for u in units]),
        positions=tuple(groups),
        tokens=_tokens(handle, enc),
        values=total / samples,
        metric=name,
        clean=float(_metric_value(fn, clean.logits.float())[0]),
        corrupted=float(np.mean(corrupted)),
        direction="restore",
        component=component,
        target=handle.tokenizer.decode([tid]),
        method="causal tracing",
        meta={
            "text": text,
            "subject_positions": subj,
            "noise_std": scale,
            "samples": samples,
            "seed": seed,
            "corrupted_per_sample": corrupted,
        },
    )
