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
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from ..models.addresses import Site, forward_order, parse_neurons
from ..models.handle import ModelHandle, Prediction
from ..models.hooks import site_hooks
from ..models.loading import as_handle
from .intervention import (
    MODES,
    Intervention,
    NeuronLike,
    NeuronValues,
    _names,
    _number,
    as_interventions,
)
from .prefix import Edit, has_hooks, prefix_cache

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
    for site in sorted(affine, key=forward_order):
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
        for comp in ("resid", "mlp", "mlp_out"):
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
    them to for steering, ``Intervention.set(steering_values(...))`` (Bau et al. 2019; Suau et al. 2020).

    The means are over the model tokens of ``texts`` (special tokens left out) and cached per model,
    texts and site, as ``"mean"`` interventions use them.

    Args:
        model: The model (a handle, or a name or folder :func:`~neuronwidgets.core.load_model` takes).
        neurons: One neuron address or several.
        texts: The texts to average over (a list, not one string).

    Returns:
        ``{neuron: mean activation}`` with canonical addresses, in the order of ``neurons``.

    Raises:
        TypeError: If ``texts`` is one string.
        ValueError: If ``texts`` is empty or a neuron is not in the model.

    Example:
        >>> lm = load_model("smollm2")
        >>> values = steering_values(lm, ["layer.5.mlp:42", "layer.5.mlp:7"], positive_texts)
        >>> generate(lm, "The movie was", Intervention.set(values))
    """
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

    Args:
        model: The model (a handle, or a name or folder :func:`~neuronwidgets.core.load_model` takes).
        interventions: One :class:`Intervention`, several (applied in order), or ``None`` (no change).

    Yields:
        The edits hooked in: one ``SiteEdit`` per site that changes (a site left unchanged, e.g. scaled
        by 1, gets no hook).

    Raises:
        ValueError: If a neuron is not in the model (before any hook is registered).
        TypeError: For something that is not an :class:`Intervention` (e.g. a dict of slider values).

    Example:
        >>> with intervene(model, Intervention.scale({"layer.3.mlp:117": 2.0})):
        ...     model.predict("a wonderful film")
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
    or a dict neuron → number. Hooks are removed on exit, whatever happens.

    Args:
        model: The model (a handle, or a name or folder :func:`~neuronwidgets.core.load_model` takes).
        neurons: One neuron address or several.
        mode: ``"zero"``, ``"mean"``, ``"value"`` or ``"scale"``.
        value: For mode ``"value"``: one number, one per neuron, or a dict neuron → number.
        factor: For mode ``"scale"``: one number, one per neuron, or a dict neuron → number.
        reference: For mode ``"mean"``: the texts whose mean activation the neurons are set to.

    Yields:
        The :class:`Intervention` applied.

    Raises:
        ValueError: For an unknown ``mode``, a missing or misplaced ``value`` / ``factor`` /
            ``reference``, a dict that leaves a neuron out, or a neuron not in the model.
        TypeError: For values that are not numbers.

    Example:
        >>> with ablate(model, ["layer.3.mlp:117", "layer.5.resid:42"]):
        ...     model.predict("a wonderful film")
        >>> with ablate(model, "layer.3.mlp:117", "mean", reference=texts):
        ...     model.predict("a wonderful film")
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

    Args:
        model: A classifier or language model (a handle, or a name or folder
            :func:`~neuronwidgets.core.load_model` takes); an encoder without a head has no logits.
        texts: One text or a list of them.
        interventions: One :class:`Intervention`, several (applied in order), or ``None`` (the clean
            model).
        batch_size: Texts per forward pass.
        prefix_cache: Reuse the clean forward pass and re-run only the blocks from the first intervened
            one.

    Returns:
        A float tensor ``[len(texts), outputs]`` (one row for one text).

    Raises:
        ValueError: If no texts are given, ``batch_size`` is below 1, the model is an encoder without
            a head, or a neuron is not in the model.
        TypeError: For something that is not an :class:`Intervention`.

    Example:
        >>> off = Intervention.zero(["layer.3.mlp:117"])
        >>> clean = predict_logits(model, texts)
        >>> delta = predict_logits(model, texts, off) - clean
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

    Args:
        model: A classifier or language model (a handle, or a name or folder
            :func:`~neuronwidgets.core.load_model` takes).
        text: One text or a list of them.
        interventions: One :class:`Intervention`, several (applied in order), or ``None`` (the clean
            model).
        top_k: For a language model, how many tokens to keep.
        batch_size: Texts per forward pass.
        prefix_cache: Reuse the clean forward pass and re-run only the blocks from the first intervened
            one.

    Returns:
        A :class:`~neuronwidgets.core.models.Prediction` for one text, a list of them for a list.

    Raises:
        ValueError: If no texts are given, ``batch_size`` is below 1, the model is an encoder without
            a head, or a neuron is not in the model.
        TypeError: For something that is not an :class:`Intervention`.

    Example:
        >>> model = load_model("minilm-sentiment")
        >>> predict(model, "a wonderful film", Intervention.scale({"layer.3.mlp:117": 0.0}))
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
