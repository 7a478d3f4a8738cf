"""Exercises of notebook 01 (visualization, corpus and unsupervised methods): the MiniLM layer other
models share most, and the MiniLM layer most similar to one SmolLM2 layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from .checks import as_layer, exercise

SMOL_SITE = "layer.12.resid"


def _layer_of(site: str) -> int:
    return -1 if site.startswith("embed") else int(site.split(".")[1])


def _name(layer: int) -> str:
    return "the embeddings" if layer < 0 else f"layer {layer}"


@exercise(
    "01.1",
    "01_visualization_corpus_unsupervised",
    "The MiniLM layer SmolLM2 shares most (MaxCorr)",
    4,
    ("ranking",),
    "group ranking.to_frame() by 'site' and compare the mean 'score' of each MiniLM layer.",
)
def _shared(answer: Any, ranking: Any) -> tuple[bool, str]:
    frame = ranking.to_frame()
    means = {_layer_of(s): float(v) for s, v in frame.groupby("site")["score"].mean().items()}
    layer = as_layer(answer)
    if layer not in means:
        return (
            False,
            f"{_name(layer)} is not among the ranked MiniLM sites: {sorted(means)} (-1: embeddings).",
        )
    if means[layer] >= max(means.values()) - 1e-9:
        return True, f"{_name(layer)}: mean MaxCorr {means[layer]:.3f}, the highest."
    return False, f"{_name(layer)} has mean MaxCorr {means[layer]:.3f}; another layer is shared more."


@exercise(
    "01.2",
    "01_visualization_corpus_unsupervised",
    f"The MiniLM layer closest to SmolLM2's {SMOL_SITE} (CKA)",
    5,
    ("cka",),
    f"cka.values has one row per MiniLM site and one column per SmolLM2 site: the largest entry of the "
    f"{SMOL_SITE!r} column.",
)
def _closest(answer: Any, cka: Any) -> tuple[bool, str]:
    if SMOL_SITE not in cka.columns:
        return False, f"this similarity matrix has no column {SMOL_SITE!r}: pass the MiniLM × SmolLM2 CKA."
    column = np.asarray(cka.values, dtype=np.float64)[:, list(cka.columns).index(SMOL_SITE)]
    by_layer = {_layer_of(r): float(v) for r, v in zip(cka.rows, column)}
    layer = as_layer(answer)
    if layer not in by_layer:
        return False, f"{_name(layer)} is not a row of the matrix: {sorted(by_layer)} (-1: embeddings)."
    if by_layer[layer] >= max(by_layer.values()) - 1e-9:
        return True, f"{_name(layer)}: CKA {by_layer[layer]:.3f} with SmolLM2's {SMOL_SITE}, the highest."
    return False, f"{_name(layer)} has CKA {by_layer[layer]:.3f}; another MiniLM layer is closer."
