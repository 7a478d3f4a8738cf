"""The intervention spec: :class:`Intervention` (which neurons, which mode, which values) and the checks
of its values; applied by :mod:`~neuronwidgets.core.interventions.edits`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..display import Result, summary
from ..models.addresses import NeuronAddress, parse_neurons

MODES: tuple[str, ...] = ("zero", "mean", "value", "scale")

NeuronLike = str | NeuronAddress
# neuron → number (a slider state, steering values); Mapping is invariant in its key type, hence the union
NeuronValues = Mapping[str, float] | Mapping[NeuronAddress, float] | Mapping[NeuronLike, float]


@dataclass(frozen=True, init=False)
class Intervention(Result):
    """What to do to which neurons.

    ``neurons``: canonical addresses (``"layer.3.mlp:117"``); ``mode``: ``"zero"``, ``"mean"``,
    ``"value"`` or ``"scale"``; ``values``: one value (``"value"``) or factor (``"scale"``) per neuron,
    empty for the other modes; ``reference``: the texts whose mean activation ``"mean"`` uses.

    Build one with :meth:`zero`, :meth:`mean`, :meth:`set` or :meth:`scale`, or directly, e.g.
    ``Intervention(neurons, "scale", 0.5)`` (one number for every neuron, or one each). Instances are
    hashable and round-trip through :meth:`to_dict` / :meth:`from_dict` (JSON). No neurons means no change.

    Args:
        neurons: One neuron address (``"layer.3.mlp:117"`` or a ``NeuronAddress``) or several; stored
            in canonical form.
        mode: ``"zero"``, ``"mean"``, ``"value"`` or ``"scale"``.
        values: For ``"value"`` / ``"scale"``: one number for every neuron, or one per neuron (finite and
            within float32's range); ``None`` (or empty) for ``"zero"`` and ``"mean"``.
        reference: For ``"mean"`` only: the texts (a list, not one string) whose mean activation
            replaces the neurons'.

    Raises:
        ValueError: For an unknown ``mode``, values missing, given to a mode that takes none, of the
            wrong count, not finite or beyond float32, a ``"mean"`` without ``reference``, or a
            ``reference`` for another mode.
        TypeError: For values that are not numbers, or a ``reference`` that is one string or holds
            something that is not a string.

    Example:
        >>> off = Intervention(["layer.3.mlp:117", "layer.5.resid:42"])  # zeroed
        >>> half = Intervention.scale({"layer.3.mlp:117": 0.5})  # a panel's slider state
        >>> Intervention.from_dict(half.to_dict()) == half
        True
        >>> predict(model, "a wonderful film", [off, half])
    """

    neurons: tuple[str, ...]
    mode: str
    values: tuple[float, ...]
    reference: tuple[str, ...]

    def __init__(
        self,
        neurons: NeuronLike | Iterable[NeuronLike],
        mode: str = "zero",
        values: float | Iterable[float] | None = None,
        reference: Iterable[str] | None = None,
    ) -> None:
        if isinstance(neurons, (str, NeuronAddress)):
            neurons = [neurons]
        names = tuple(n.name for n in parse_neurons(neurons))
        if mode not in MODES:
            raise ValueError(f"unknown intervention mode {mode!r}: choose from {', '.join(MODES)}")
        what = "factor" if mode == "scale" else "value"
        vals: tuple[float, ...]
        if mode in ("zero", "mean"):
            if values is not None and (isinstance(values, (int, float)) or len(tuple(values))):
                raise ValueError(f"mode {mode!r} takes no values; use mode 'value' or 'scale' to give some")
            vals = ()
        elif values is None:
            raise ValueError(f"mode {mode!r} needs a {what} per neuron (or one for all)")
        elif isinstance(values, (int, float, np.floating, np.integer)) and not isinstance(values, bool):
            vals = (float(values),) * len(names)
        else:
            vals = tuple(_number(v, what) for v in _values_list(values, what))
        if mode in ("value", "scale") and len(vals) != len(names):
            raise ValueError(f"got {len(vals)} {what}s for {len(names)} neurons: give one per neuron")
        bad = [n for n, v in zip(names, vals) if not math.isfinite(v)]
        if bad:
            raise ValueError(f"the {what} for {bad[0]} is not a finite number")
        big = [(n, v) for n, v in zip(names, vals) if abs(v) > FLOAT32_MAX]
        if big:
            raise ValueError(
                f"the {what} for {big[0][0]} is {big[0][1]:g}, beyond float32's largest number "
                f"({FLOAT32_MAX:.3g}): the model computes in float32 or narrower, so it would become inf/NaN"
            )
        if isinstance(reference, str):
            raise TypeError("reference must be a list of texts, not one string")
        ref = tuple(reference or ())
        if mode == "mean":
            if not ref and names:
                raise ValueError(
                    "mode 'mean' needs a reference corpus: pass reference=[texts...] whose mean activation "
                    "replaces the neurons'"
                )
            if not all(isinstance(t, str) for t in ref):
                raise TypeError("reference texts must be strings")
        elif ref:
            raise ValueError(f"only mode 'mean' uses a reference corpus, not mode {mode!r}")
        object.__setattr__(self, "neurons", names)
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "values", vals)
        object.__setattr__(self, "reference", ref)

    # -- constructors ----------------------------------------------------------------------------
    @classmethod
    def zero(cls, neurons: NeuronLike | Iterable[NeuronLike]) -> Intervention:
        """Set the neurons to zero."""
        return cls(neurons, "zero")

    @classmethod
    def mean(cls, neurons: NeuronLike | Iterable[NeuronLike], reference: Sequence[str]) -> Intervention:
        """Set the neurons to their mean activation over the ``reference`` texts."""
        return cls(neurons, "mean", reference=reference)

    @classmethod
    def set(cls, values: NeuronValues) -> Intervention:
        """Set each neuron to its value (e.g. from :func:`steering_values`)."""
        return cls(_names(values), "value", [_number(v, "value") for v in _mapping(values).values()])

    @classmethod
    def scale(cls, factors: NeuronValues) -> Intervention:
        """Multiply each neuron by its factor: a panel's slider state ``{neuron: factor}``."""
        return cls(_names(factors), "scale", [_number(v, "factor") for v in _mapping(factors).values()])

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"neurons": list(self.neurons), "mode": self.mode}
        if self.values:
            out["values"] = list(self.values)
        if self.reference:
            out["reference"] = list(self.reference)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Intervention:
        unknown = set(data) - {"neurons", "mode", "values", "reference"}
        if unknown:
            raise ValueError(f"unknown intervention field(s): {', '.join(sorted(unknown))}")
        return cls(data["neurons"], data.get("mode", "zero"), data.get("values"), data.get("reference"))

    def __len__(self) -> int:
        return len(self.neurons)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{n}={v:g}" if self.values else n for n, v in zip(self.neurons[:4], self.values or self.neurons)
        )
        more = f", … ({len(self.neurons)} neurons)" if len(self.neurons) > 4 else ""
        ref = f", reference of {len(self.reference)} texts" if self.reference else ""
        return summary(
            f"Intervention({self.mode}: {shown}{more}{ref})",
            doors=".to_frame() · measure_effect(model, texts, this)",
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per neuron: its address, the mode and the value (set) or factor (scale), if any."""
        frame = pd.DataFrame({"neuron": list(self.neurons), "mode": self.mode})
        if self.values:
            frame["value"] = list(self.values)
        return frame


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _values_list(values: Any, what: str) -> list[Any]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{what}s must be numbers, got the string {values!r}: pass e.g. 0.0, not '0.0'")
    if isinstance(values, Mapping):
        raise TypeError(f"{what}s must be numbers or a list of numbers here, got a dict")
    try:
        return list(values)
    except TypeError:
        raise TypeError(
            f"{what}s must be a number or a list of numbers, got {type(values).__name__}"
        ) from None


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"each {what} must be a number, got {v!r} ({type(v).__name__})")
    return float(v)


def _mapping(values: Any) -> Mapping[Any, Any]:
    if not isinstance(values, Mapping):
        raise TypeError(f"expected a dict neuron → number, got {type(values).__name__}")
    return values


def _names(neurons: Any) -> tuple[str, ...]:
    if isinstance(neurons, (str, NeuronAddress)):
        neurons = [neurons]
    if neurons is None or not isinstance(neurons, Iterable):
        raise TypeError(
            f"neurons must be a neuron address like 'layer.3.mlp:117' or a list of them, got {neurons!r}"
        )
    return tuple(str(n) for n in neurons)


def as_interventions(interventions: Intervention | Iterable[Intervention] | None) -> tuple[Intervention, ...]:
    """Normalise ``None`` / one :class:`Intervention` / several into a tuple."""
    if interventions is None:
        return ()
    if isinstance(interventions, Intervention):
        return (interventions,)
    if isinstance(interventions, Mapping):
        raise TypeError(
            "pass an Intervention, not a dict: e.g. Intervention.scale({neuron: factor}) for a slider state"
        )
    out = tuple(interventions)
    for iv in out:
        if not isinstance(iv, Intervention):
            raise TypeError(f"expected Intervention objects, got {type(iv).__name__}")
    return out
