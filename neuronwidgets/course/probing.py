"""Exercises of notebook 02 (probing and ranking neurons): the most selective layer, where the top
neurons live, and how well a probe does on a few of them (the fine-grained practical, ~15 minutes)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..core import parse_neuron, train_probe
from .checks import as_fraction, as_int, as_layer, exercise

TOP_K = 100
FEW = 30


def _layer_of(site: str) -> int:
    return -1 if site.startswith("embed") else int(site.split(".")[1])


def _layer_name(layer: int) -> str:
    return "the embeddings" if layer < 0 else f"layer {layer}"


@exercise(
    "02.1",
    "02_probing",
    "The most selective layer",
    3,
    ("layerwise",),
    "selectivity = task accuracy − control accuracy: read layerwise.to_frame() and find its largest value.",
)
def _selective(answer: Any, layerwise: Any) -> tuple[bool, str]:
    frame = layerwise.to_frame()
    sel = {_layer_of(s): float(v) for s, v in zip(frame["site"], frame["selectivity"])}
    layer = as_layer(answer)
    if layer not in sel:
        return False, f"{_layer_name(layer)} was not probed: choose among {sorted(sel)} (-1: embeddings)."
    best = max(sel.values())
    if sel[layer] >= best - 1e-9:
        return True, f"{_layer_name(layer)}: selectivity {sel[layer]:.3f}, the highest."
    return False, (
        f"{_layer_name(layer)} has selectivity {sel[layer]:.3f}; another layer is higher. Not the test "
        "accuracy: the gap between the task and the control task."
    )


@exercise(
    "02.2",
    "02_probing",
    f"Where the top {TOP_K} neurons live",
    4,
    ("by_weight",),
    f"count the layers of by_weight.top({TOP_K}).neurons (parse_neuron(n).layer) and take the most common.",
)
def _where(answer: Any, by_weight: Any) -> tuple[bool, str]:
    counts = Counter(_layer_of(parse_neuron(n).site.name) for n in by_weight.top(TOP_K).neurons)
    layer = as_layer(answer)
    most = max(counts.values())
    if counts.get(layer, 0) == most:
        return True, f"{_layer_name(layer)} holds {most} of the top {TOP_K} neurons, more than any other."
    return False, (
        f"{_layer_name(layer)} holds {counts.get(layer, 0)} of the top {TOP_K}; another layer holds more. "
        "collections.Counter counts them for you."
    )


def few_neuron_accuracy(acts: Any, labels: Any, by_weight: Any, k: int = FEW) -> float:
    """Test accuracy of a probe on the ``k`` top neurons by weight mass (same split as the notebook's)."""
    neurons = list(by_weight.top(min(k, len(by_weight))).neurons)
    return float(train_probe(acts, labels, neurons=neurons, control=False, baselines=False).accuracy)


@exercise(
    "02.3",
    "02_probing",
    f"A probe on {FEW} neurons",
    6,
    ("acts", "labels", "by_weight"),
    f"train_probe(acts, labels, neurons=by_weight.top({FEW}).neurons) and read its .accuracy.",
)
def _few(answer: Any, acts: Any, labels: Any, by_weight: Any) -> tuple[bool, str]:
    value = as_fraction(answer)
    truth = few_neuron_accuracy(acts, labels, by_weight)
    if abs(value - truth) <= 0.01:
        return True, (
            f"{FEW} of {len(by_weight)} neurons give {truth:.3f} test accuracy: a few neurons carry most of "
            "the part of speech."
        )
    direction = "lower" if value > truth else "higher"
    return (
        False,
        f"the accuracy of that probe is {direction}. Did you use the top {FEW} by weight mass, on the test split?",
    )


@exercise(
    "02.4",
    "02_probing",
    "Neurons to 97 %",
    2,
    ("minimal",),
    "the minimal-neuron-set cell printed it: len(minimal.neurons).",
)
def _minimal(answer: Any, minimal: Any) -> tuple[bool, str]:
    n = as_int(answer)
    truth = len(minimal.neurons)
    if n == truth:
        return True, f"{n} neurons reach {minimal.accuracy:.3f} ({minimal.target:.0%} of the full probe)."
    return (
        False,
        "not that number: read len(minimal.neurons) (the fewest top-ranked neurons that reach the target).",
    )
