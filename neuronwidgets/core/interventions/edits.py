"""Interventions on neurons in the forward pass: ablate, scale and steer, scoped and fast.

- :class:`Intervention` is a frozen, hashable, JSON-serialisable spec: neuron addresses, a mode and
  per-neuron values. ``Intervention.scale({"layer.3.mlp:117": 0.0, ...})`` turns a panel's slider state
  into one.
- :func:`ablate` / :func:`intervene` apply interventions to every forward pass inside a ``with`` block
  (hooks from :func:`~neuronwidgets.core.models.hooks.site_hooks`, removed on exit whatever happens).
- :func:`predict` / :func:`predict_logits` give predictions under interventions; repeated calls on the same
  text re-run only the blocks from the first intervened one (:mod:`~neuronwidgets.core.interventions.prefix`).
- :func:`generate` continues a prompt greedily under interventions (causal LMs); :func:`steering_values`
  gives neurons' mean activations on texts that have a property, to set them to (Bau et al. 2019,
  Suau et al. 2020).

Modes, applied to every token position of the chosen neurons (``x`` is the activation):

- ``"zero"``  → 0;
- ``"mean"``  → the neuron's mean activation over a reference corpus (model tokens, special tokens left
  out), computed once per model, corpus and site and cached;
- ``"value"`` → a given value per neuron;
- ``"scale"`` → ``factor · x`` (0 = off, 1 = unchanged, 2 = amplified).

Several interventions compose in order (e.g. scale some neurons, then set others).
"""

from __future__ import annotations

import hashlib
import json
import math
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..display import Result, summary
from ..models.addresses import NeuronAddress, Site, parse_neurons
from ..models.handle import ModelHandle, Prediction
from ..models.hooks import site_hooks
from ..models.loading import as_handle
from .prefix import Edit, has_hooks, prefix_cache

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


# ------------------------------------------------------------------------------------------------
# Compiling interventions into per-site edits
# ------------------------------------------------------------------------------------------------


class SiteEdit:
    """``x[..., idx] ← a · x[..., idx] + b`` for the neurons of one site (every token position)."""

    def __init__(self, idx: list[int], a: list[float], b: list[float]):
        self.idx = torch.tensor(idx, dtype=torch.long)
        self.a = torch.tensor(a, dtype=torch.float32)
        self.b = torch.tensor(b, dtype=torch.float32)
        self.sets = all(x == 0.0 for x in a)  # pure assignment: no multiply (and no 0 · inf)
        self._cast: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, ...]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.dtype, x.device)
        if key not in self._cast:
            a, b = self.a.to(x), self.b.to(x)
            for name, t, src in (("factor", a, self.a), ("value", b, self.b)):
                bad = ~torch.isfinite(t)
                if bool(bad.any()):
                    i = int(bad.nonzero()[0, 0])
                    raise ValueError(
                        f"the {name} {float(src[i]):g} for neuron {int(self.idx[i])} of this site is not "
                        f"representable in the model's dtype {x.dtype} (it becomes {float(t[i])}): use a "
                        "smaller number"
                    )
            self._cast[key] = (self.idx.to(x.device), a, b)
        idx, a, b = self._cast[key]
        y = x.clone()
        if self.sets:
            y[..., idx] = b.expand(*x.shape[:-1], len(b))
        else:
            new = x[..., idx] * a + b
            if not bool(torch.isfinite(new).all()) and bool(torch.isfinite(x[..., idx]).all()):
                raise ValueError(
                    f"scaling overflows {x.dtype}: a factor times an activation is beyond its largest number; "
                    "use a smaller factor"
                )
            y[..., idx] = new
        return y


def compile_edits(
    handle: ModelHandle, interventions: Intervention | Iterable[Intervention] | None
) -> dict[Site, SiteEdit]:
    """Check the neurons against ``handle`` and fold the interventions into one edit per site.

    Each neuron's interventions compose into ``a · x + b``; neurons left unchanged (``a = 1, b = 0``,
    e.g. scale 1) are dropped, so a site with no change gets no hook.
    """
    ivs = as_interventions(interventions)
    affine: dict[Site, dict[int, tuple[float, float]]] = {}
    for iv in ivs:
        addrs = [handle.check_neuron(n) for n in iv.neurons]
        means: dict[Site, np.ndarray] = {}
        if iv.mode == "mean" and addrs:
            means = reference_means(handle, iv.reference, sorted({a.site for a in addrs}))
        for k, addr in enumerate(addrs):
            if iv.mode == "zero":
                new = (0.0, 0.0)
            elif iv.mode == "mean":
                new = (0.0, float(means[addr.site][addr.index]))
            elif iv.mode == "value":
                new = (0.0, iv.values[k])
            else:
                new = (iv.values[k], 0.0)
            per_neuron = affine.setdefault(addr.site, {})
            a0, b0 = per_neuron.get(addr.index, (1.0, 0.0))
            per_neuron[addr.index] = (new[0] * a0, new[0] * b0 + new[1])
    edits: dict[Site, SiteEdit] = {}
    for site in sorted(affine, key=lambda s: (s.layer, 0 if s.component == "mlp" else 1)):
        kept = sorted((i, ab) for i, ab in affine[site].items() if ab != (1.0, 0.0))
        if kept:
            edits[site] = SiteEdit([i for i, _ in kept], [a for _, (a, _) in kept], [b for _, (_, b) in kept])
    return edits


# ------------------------------------------------------------------------------------------------
# Mean activations over a reference corpus (cached)
# ------------------------------------------------------------------------------------------------

_MEANS: weakref.WeakKeyDictionary[ModelHandle, dict[tuple[str, str], np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


def corpus_fingerprint(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()


def reference_means(
    handle: ModelHandle, texts: Sequence[str], sites: Sequence[Site]
) -> dict[Site, np.ndarray]:
    """Mean activation ``[width]`` of each site over the model tokens of ``texts`` (special tokens left
    out), cached per model, corpus and site."""
    from ..store.extraction import extract_activations

    texts = list(texts)
    if not texts:
        raise ValueError("the reference corpus is empty: pass at least one text")
    fp = corpus_fingerprint(texts)
    store = _MEANS.setdefault(handle, {})
    missing = [s for s in sites if (fp, s.name) not in store]
    if missing:
        # under someone else's hooks the activations are not the model's own: use them, never cache them
        cacheable = not has_hooks(handle.model)
        out: dict[Site, np.ndarray] = {}
        for comp in ("resid", "mlp"):
            layers = sorted({s.layer for s in missing if s.component == comp})
            if not layers:
                continue
            acts = extract_activations(
                handle,
                texts,
                layers=["embed" if lay < 0 else lay for lay in layers],
                components=comp,
                granularity="token",
                progress=False,
            )
            for s in missing:
                if s.component == comp:
                    out[s] = acts.layer(s).astype(np.float64).mean(0).astype(np.float32)
        if not cacheable:
            return {s: store[(fp, s.name)] if (fp, s.name) in store else out[s] for s in sites}
        for s, mean in out.items():
            store[(fp, s.name)] = mean
    return {s: store[(fp, s.name)] for s in sites}


def steering_values(
    model: ModelHandle, neurons: NeuronLike | Iterable[NeuronLike], texts: Sequence[str]
) -> dict[str, float]:
    """Each neuron's mean activation over ``texts`` (e.g. texts that have a property): the values to set
    them to for steering, ``Intervention.set(steering_values(...))`` (Bau et al. 2019; Suau et al. 2020)."""
    handle = _check_handle(model)
    if isinstance(texts, str):
        raise TypeError("texts must be a list of texts, not one string")
    addrs = [handle.check_neuron(n) for n in parse_neurons(neurons)]
    means = reference_means(handle, texts, sorted({a.site for a in addrs}))
    return {a.name: float(means[a.site][a.index]) for a in addrs}


# ------------------------------------------------------------------------------------------------
# Scoped interventions
# ------------------------------------------------------------------------------------------------


@contextmanager
def intervene(
    model: ModelHandle | str, interventions: Intervention | Iterable[Intervention] | None
) -> Iterator[dict[Site, SiteEdit]]:
    """Apply ``interventions`` to every forward pass of ``model`` inside the ``with`` block.

    Neurons are checked (and mean activations computed) before any hook is registered; hooks are removed
    on exit, after an exception or a KeyboardInterrupt, and the weights are never touched.
    """
    handle = _check_handle(model)
    edits = compile_edits(handle, interventions)
    with site_hooks(handle, list(edits), lambda site, act: edits[site](act)):
        yield edits


@contextmanager
def ablate(
    model: ModelHandle | str,
    neurons: NeuronLike | Iterable[NeuronLike],
    mode: str = "zero",
    *,
    value: float | Sequence[float] | NeuronValues | None = None,
    factor: float | Sequence[float] | NeuronValues | None = None,
    reference: Sequence[str] | None = None,
) -> Iterator[Intervention]:
    """Intervene on ``neurons`` in every forward pass inside the ``with`` block.

    ``mode``: ``"zero"``; ``"mean"`` (needs ``reference``, a list of texts); ``"value"`` (needs ``value``)
    or ``"scale"`` (needs ``factor``). ``value``/``factor`` is one number for all neurons, one per neuron,
    or a dict neuron → number. Yields the :class:`Intervention` applied::

        with ablate(model, ["layer.3.mlp:117", "layer.5.resid:42"]):
            model.predict("a wonderful film")
    """
    names = _names(neurons)
    if mode not in MODES:
        raise ValueError(f"unknown ablation mode {mode!r}: choose from {', '.join(MODES)}")
    given = {"value": value, "factor": factor}
    wanted = {"value": "value", "scale": "factor"}.get(mode)
    for key, v in given.items():
        if v is not None and key != wanted:
            raise ValueError(f"{key}= is for mode {'value' if key == 'value' else 'scale'!r}, not {mode!r}")
    if reference is not None and mode != "mean":
        raise ValueError(f"reference= is for mode 'mean', not {mode!r}")
    values: Any = None
    if wanted is not None:
        v = given[wanted]
        if v is None:
            raise ValueError(f"mode {mode!r} needs {wanted}=: one number for all neurons, a list or a dict")
        if isinstance(v, Mapping):
            lookup = {parse_neurons(k)[0].name: _number(x, wanted) for k, x in v.items()}
            canonical = [n.name for n in parse_neurons(names)]
            missing = [n for n in canonical if n not in lookup]
            if missing:
                raise ValueError(f"no {wanted} given for {missing[0]}")
            values = tuple(lookup[n] for n in canonical)
        else:
            values = v
    if mode == "mean" and reference is None:
        raise ValueError("mode 'mean' needs reference=[texts...]: the corpus whose mean activation to use")
    spec = Intervention(names, mode, values, reference)
    with intervene(model, spec):
        yield spec


# ------------------------------------------------------------------------------------------------
# Predictions and generation under interventions
# ------------------------------------------------------------------------------------------------


def predict_logits(
    model: ModelHandle | str,
    texts: str | Sequence[str],
    interventions: Intervention | Iterable[Intervention] | None = None,
    *,
    batch_size: int = 32,
    prefix_cache: bool = True,
) -> torch.Tensor:
    """Logits ``[batch, outputs]`` at the predicted positions (as :meth:`ModelHandle.logits`) under
    ``interventions``: every class for a classifier, the vocabulary at the last token (causal LM) or the
    mask (masked LM).

    With ``prefix_cache`` (the default) the clean forward pass of each batch of texts is cached and an
    intervened prediction re-runs only the blocks from the first intervened one; otherwise (or when the
    model carries other hooks) the full forward pass runs with the interventions hooked in.
    """
    handle = _check_handle(model)
    text_list = [texts] if isinstance(texts, str) else list(texts)
    if not text_list:
        raise ValueError("no texts given: pass at least one non-empty string")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if handle.kind == "encoder":
        handle.logits(text_list[:1])  # raises the explanation
    edits = compile_edits(handle, interventions)
    out = []
    with torch.inference_mode():
        for a in range(0, len(text_list), batch_size):
            out.append(_batch_logits(handle, text_list[a : a + batch_size], edits, prefix_cache))
    return torch.cat(out) if len(out) > 1 else out[0]


def _batch_logits(
    handle: ModelHandle, texts: list[str], edits: Mapping[Site, Edit], use_cache: bool
) -> torch.Tensor:
    if use_cache:
        logits = prefix_cache(handle).logits(handle, texts, edits)
        if logits is not None:
            return logits
    with site_hooks(handle, list(edits), lambda site, act: edits[site](act)):
        logits, _ = handle.logits(texts)
    return logits


def predict(
    model: ModelHandle | str,
    text: str | Sequence[str],
    interventions: Intervention | Iterable[Intervention] | None = None,
    *,
    top_k: int = 5,
    batch_size: int = 32,
    prefix_cache: bool = True,
) -> Prediction | list[Prediction]:
    """Labelled probabilities under ``interventions``, as :meth:`ModelHandle.predict` gives them without:
    every class for a classifier, the ``top_k`` next (or masked) tokens for a language model. A list of
    texts gives a list of predictions. Fast when called repeatedly on one text (see :func:`predict_logits`).
    """
    handle = _check_handle(model)
    texts = [text] if isinstance(text, str) else list(text)
    logits = predict_logits(handle, texts, interventions, batch_size=batch_size, prefix_cache=prefix_cache)
    probs = logits.float().softmax(-1).cpu()
    preds = [handle._prediction(t, p, top_k) for t, p in zip(texts, probs)]
    return preds[0] if isinstance(text, str) else preds


def _check_handle(model: Any) -> ModelHandle:
    """A handle, or the shared handle of a model name or folder (:func:`as_handle`)."""
    return as_handle(model, "model = load_model('minilm-sentiment')")
