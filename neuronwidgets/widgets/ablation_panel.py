"""AblationPanel: switch neurons off (or scale them) and watch the model's prediction change, live.

One slider per neuron scales its activation in the forward pass (0 = off, 1 = unchanged, 2 = doubled);
a "switch off the top k" slider, a random-k comparison and reset act on all of them. The prediction is
shown as bars, original beside current (and beside k random neurons switched off): every class for a
classifier, the ``top_k`` next tokens for a causal LM, per-word probe tags when a probe is given. KL and
the change in the probability of the original top prediction are computed from the same logits.

Python ↔ browser contract (docs/architecture.md, "The Python ↔ browser contract"), all synced traits:

- the browser's request: ``scales`` (float32 buffer ``[n_neurons]``, aligned with ``neurons``),
  ``random_k``, ``random_seed`` and ``request_id``, set together in one message. The browser debounces
  slider input, keeps at most one request in flight, and makes each id larger than any it has seen.
- Python's answer: ``prediction``, a dict carrying the ``request_id`` it answers (see
  :meth:`AblationPanel._answer`). A request whose id is not newer than the last one answered is stale:
  Python keeps (and re-sends) the newest state instead. A refused or failed request is answered with its
  id and ``error``; the state goes back to the last good one, so what is shown always matches the state.
- Python-side changes (:meth:`set_scales`, :meth:`reset`, ...) take the next id and answer it themselves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import pandas as pd
import torch
import traitlets

from ..core import Intervention, ModelHandle, NeuronAddress, Site, as_handle, parse_neuron
from ..core.interventions.edits import intervene, predict_logits
from ..core.interventions.effects import compare_distributions
from ._assets import bundle_file, decode_array, encode_array, require_bundle
from ._export import write_standalone_html

SCALE_MIN, SCALE_MAX = 0.0, 2.0
#: Neurons taken from a ranking (an object with ``.neurons``) when ``n_neurons`` is not given.
DEFAULT_RANKING_NEURONS = 20
#: At most this many sliders: more do not fit on a screen (pass ``ranking.top(k)``).
MAX_NEURONS = 100
SERIES = ("original", "current", "random")
_STATE = ("scales", "random_k", "random_seed")
_SYNCED = (
    "model_name",
    "kind",
    "text",
    "neurons",
    "scales",
    "random_k",
    "random_seed",
    "request_id",
    "prediction",
)


@dataclass(frozen=True)
class _Distribution:
    """One prediction over every output: ``probs`` float32 ``[V]`` (as :func:`~neuronwidgets.core.predict`
    computes them) and ``logp`` float64 ``[V]`` (as :func:`~neuronwidgets.core.measure_effect` does)."""

    probs: torch.Tensor
    logp: torch.Tensor


@dataclass
class _Answered:
    """The last state answered without error, and the answer shown (possibly an error for a later
    request, over this state's prediction)."""

    scales: np.ndarray  # float32 [n_neurons]
    random_k: int
    random_seed: int
    prediction: dict[str, Any]


@dataclass(frozen=True)
class _Tags:
    """Per-word probe tags: ``words`` ``[W]``, ``index`` int ``[W]`` (class of each word) and ``prob``
    float32 ``[W]`` (its probability)."""

    words: list[str]
    index: np.ndarray
    prob: np.ndarray


class AblationPanel(anywidget.AnyWidget):
    """Sliders that scale neurons in the forward pass, and the prediction they give, live.

    State: :attr:`state`, :attr:`intervention`; shown: :meth:`to_frame`, :attr:`effects`; change it with
    :meth:`set_scales`, :meth:`switch_off_top`, :meth:`compare_random`, :meth:`reset`, :meth:`add_neurons`.

    Args:
        model: A :class:`~neuronwidgets.core.ModelHandle` or a model name, with a prediction head (a
            classifier, a causal or masked LM).
        text: The input.
        neurons: Addresses (``"layer.3.mlp:117"``, at most ``MAX_NEURONS``) or a ranking (``.neurons``).
        probe: A classification :class:`~neuronwidgets.core.Probe` (or its ``ProbeResult``) over this
            model's neurons: its per-word tags are shown too, original and under the intervention.
        top_k: Next tokens shown for a language model (a classifier shows every class).
        n_neurons: How many of a ranking's first neurons get a slider (default 20).
        scales: The initial state, ``{neuron: factor}`` (others 1) or one factor per neuron.
        random_k: Random neurons switched off for comparison, from the sites of the first ``random_k``.
        seed: Seed of the random comparison.
        probe_granularity: The probe's activations: ``"word"`` (subwords averaged) or ``"token"``.

    Raises:
        ValueError: For an empty text, a bad ``top_k``/``scales``/``random_k``, or unknown neurons.

    Example:
        >>> AblationPanel("minilm-sentiment", "Not bad at all.", ranking, n_neurons=10, random_k=10)
    """

    _esm = bundle_file("ablation_panel")
    _css = bundle_file("ablation_panel", ".css")

    model_name = traitlets.Unicode("", help="name of the model").tag(sync=True)
    kind = traitlets.Unicode("", help="'classifier', 'causal-lm' or 'masked-lm'").tag(sync=True)
    text = traitlets.Unicode("", help="the input text").tag(sync=True)
    neurons = traitlets.List(traitlets.Unicode(), help="the panel's neurons, one slider each").tag(sync=True)
    scales = traitlets.Dict(help="{view, dtype, shape}: float32 [n_neurons], the factor of each neuron").tag(
        sync=True
    )
    random_k = traitlets.Int(0, help="random neurons switched off for comparison (0: none)").tag(sync=True)
    random_seed = traitlets.Int(0, help="seed of the random draw").tag(sync=True)
    request_id = traitlets.Int(0, help="id of the newest request (browser or Python)").tag(sync=True)
    prediction = traitlets.Dict(help="the answer to request `request_id` (see _answer)").tag(sync=True)

    def __init__(
        self,
        model: ModelHandle | str,
        text: str,
        neurons: Any,
        *,
        probe: Any = None,
        top_k: int = 10,
        n_neurons: int | None = None,
        scales: Mapping[str, float] | Sequence[float] | None = None,
        random_k: int = 0,
        seed: int = 0,
        probe_granularity: str = "word",
    ) -> None:
        require_bundle("ablation_panel")
        handle = as_handle(model, "AblationPanel(load_model('minilm-sentiment'), text, neurons)")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string: the input whose prediction the panel shows")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        self._handle = handle
        self._text = text
        self._top_k = int(top_k)
        self._addrs = _panel_neurons(handle, neurons, n_neurons)
        self._names = [a.name for a in self._addrs]
        self._probe, self._probe_granularity = _check_probe(handle, probe, probe_granularity)
        self._random_cache: dict[tuple[int, int], tuple[tuple[str, ...], _Distribution]] = {}
        self._clean = self._distribution(None)
        self._clean_tags = self._tags(None) if self._probe is not None else None
        initial = self._check_scales(
            np.ones(len(self._names)) if scales is None else self._scales_from(scales), "scales"
        )
        k, s = self._check_random(random_k, seed)
        answer = self._answer(0, initial, k, s)
        self._good = _Answered(initial, k, s, answer)
        self._answered = 0
        super().__init__(
            model_name=handle.name,
            kind=handle.kind,
            text=text,
            neurons=list(self._names),
            scales=encode_array(initial),
            random_k=k,
            random_seed=s,
            request_id=0,
            prediction=answer,
        )

    # -- reading the state ---------------------------------------------------------------------------
    @property
    def model(self) -> ModelHandle:
        return self._handle

    @property
    def state(self) -> dict[str, float]:
        """The slider state, ``{neuron: factor}`` for every panel neuron (the last state answered)."""
        return {n: float(v) for n, v in zip(self._names, self._good.scales)}

    @property
    def intervention(self) -> Intervention:
        """The intervention the current prediction is computed under, ``Intervention.scale(state)``."""
        return Intervention.scale(self.state)

    @property
    def random_neurons(self) -> list[str]:
        """The random neurons switched off for comparison (empty when ``random_k`` is 0)."""
        return list(self._good.prediction["random_neurons"])

    @property
    def effects(self) -> dict[str, dict[str, Any]]:
        """Per series (``"current"``, and ``"random"`` when shown) vs the original: ``kl`` (nats,
        KL(original ‖ series)), ``delta_prob`` (change in the probability of the original top prediction),
        ``top`` (the series' top prediction) and ``flipped``."""
        return {k: dict(v) for k, v in self._good.prediction["effects"].items()}

    def to_frame(self) -> pd.DataFrame:
        """What the bars show: one row per label, one column per series (probabilities)."""
        p = self._good.prediction
        probs = decode_array(p["probs"])
        return pd.DataFrame(
            {s: probs[i].astype(np.float64) for i, s in enumerate(p["series"])},
            index=pd.Index(p["labels"], name="label"),
        )

    # -- changing the state from Python --------------------------------------------------------------
    def set_scales(self, scales: Mapping[str, float] | Sequence[float] | float) -> None:
        """Set the sliders: ``{neuron: factor}`` (neurons not named keep their factor), one factor per
        neuron, or one factor for all. Factors go from 0 (off) to 2."""
        if isinstance(scales, Mapping):
            current = dict(zip(self._names, self._good.scales.tolist()))
            current.update(self._scales_dict(scales))
            values = np.array([current[n] for n in self._names])
        else:
            values = self._scales_from(scales)
        self._apply(values, self._good.random_k, self._good.random_seed)

    def switch_off_top(self, k: int) -> None:
        """Switch off the first ``k`` panel neurons (the top k of a ranking), every other one at 1, and
        compare with ``k`` random neurons from the same sites."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= len(self._names):
            raise ValueError(f"k must be an integer from 0 to {len(self._names)}, got {k!r}")
        values = np.ones(len(self._names))
        values[: int(k)] = 0.0
        self._apply(values, *self._check_random(int(k), self._good.random_seed))

    def compare_random(self, k: int, seed: int | None = None) -> None:
        """Show ``k`` random neurons (from the sites of the first ``k`` panel neurons) switched off beside
        the current prediction; ``seed`` draws other ones (default: the current seed)."""
        seed = self._good.random_seed if seed is None else seed
        self._apply(self._good.scales, *self._check_random(k, seed))

    def add_neurons(self, neurons: Any, scale: float = 1.0) -> list[str]:
        """Add sliders for ``neurons`` (addresses, or a ranking's ``.neurons``) at factor ``scale`` (1:
        unchanged), after the panel's own; neurons already in the panel are skipped. The prediction is
        recomputed under the new state and the random draw redone (it avoids the panel's neurons), in one
        update. Returns the addresses added (the browser redraws the sliders)."""
        if isinstance(neurons, (str, NeuronAddress)):
            neurons = [neurons]
        elif hasattr(neurons, "neurons") and not isinstance(neurons, (list, tuple)):
            neurons = list(neurons.neurons)
        new = _panel_neurons(self._handle, neurons, None)
        added = [a for a in new if a.name not in self._names]
        if not added:
            return []
        if len(self._names) + len(added) > MAX_NEURONS:
            raise ValueError(
                f"the panel has {len(self._names)} neurons: adding {len(added)} would pass the limit of "
                f"{MAX_NEURONS} sliders (make a new panel for another set)"
            )
        addrs, names = self._addrs + added, self._names + [a.name for a in added]
        old = (self._addrs, self._names, self._random_cache)
        self._addrs, self._names, self._random_cache = addrs, names, {}
        rid = max(self.request_id, self._answered) + 1
        try:
            scales = self._check_scales([*self._good.scales.tolist(), *[scale] * len(added)], "scale")
            k, seed = self._check_random(self._good.random_k, self._good.random_seed)
            answer = self._answer(rid, scales, k, seed)
        except Exception:
            self._addrs, self._names, self._random_cache = old
            raise
        with self.hold_sync():
            self.neurons = list(names)
            self.scales = encode_array(scales)
            self.request_id = rid
            self.prediction = answer
        self._good = _Answered(scales, k, seed, answer)
        self._answered = rid
        return [a.name for a in added]

    def reset(self) -> None:
        """Every neuron back to 1 (unchanged) and no random comparison."""
        self._apply(np.ones(len(self._names)), 0, self._good.random_seed)

    def _apply(self, scales: np.ndarray, random_k: int, seed: int) -> None:
        scales = self._check_scales(scales, "scales")
        rid = max(self.request_id, self._answered) + 1
        answer = self._answer(rid, scales, random_k, seed)
        with self.hold_sync():
            self.scales = encode_array(scales)
            self.random_k = random_k
            self.random_seed = seed
            self.request_id = rid
            self.prediction = answer
        self._good = _Answered(scales, random_k, seed, answer)
        self._answered = rid

    # -- requests from the browser -------------------------------------------------------------------
    def set_state(self, sync_data: dict[str, Any]) -> None:
        """State from the browser; a new ``request_id`` asks for the prediction of the state sent with it."""
        super().set_state(sync_data)
        if "request_id" in sync_data:
            self._on_request()

    def _on_request(self) -> None:
        rid = self.request_id
        if rid <= self._answered:
            # stale: a newer request was answered already; the newest state stays (and goes back)
            self._restore(request_id=self._answered)
            return
        try:
            scales = self._check_scales(_decode_scales(self.scales, len(self._names)), "scales")
            k, seed = self._check_random(self.random_k, self.random_seed)
            answer = self._answer(rid, scales, k, seed)
        except Exception as err:  # refused or failed: say so in the widget, keep the last good state
            msg = str(err) if isinstance(err, (ValueError, TypeError)) else f"{type(err).__name__}: {err}"
            answer = {**self._good.prediction, "request_id": rid, "error": msg}
            self._restore(prediction=answer)
            self._good.prediction = answer
            self._answered = rid
            return
        self.prediction = answer
        self._good = _Answered(scales, k, seed, answer)
        self._answered = rid

    def _restore(self, **extra: Any) -> None:
        with self.hold_sync():
            self.scales = encode_array(self._good.scales)
            self.random_k = self._good.random_k
            self.random_seed = self._good.random_seed
            for key, value in extra.items():
                self.set_trait(key, value)

    # -- checks ----------------------------------------------------------------------------------------
    def _scales_dict(self, scales: Mapping[Any, Any]) -> dict[str, float]:
        out = {}
        for key, value in scales.items():
            name = parse_neuron(key).name
            if name not in self._names:
                raise ValueError(f"{name} is not one of the panel's neurons: {', '.join(self._names[:5])} …")
            out[name] = value
        return out

    def _scales_from(self, scales: Mapping[str, float] | Sequence[float] | float) -> np.ndarray:
        if isinstance(scales, Mapping):
            given = self._scales_dict(scales)
            return np.array([given.get(n, 1.0) for n in self._names], dtype=object)
        if isinstance(scales, (int, float, np.integer, np.floating)) and not isinstance(scales, bool):
            return np.full(len(self._names), float(scales))
        values = np.asarray(scales, dtype=object)
        if values.ndim != 1 or len(values) != len(self._names):
            raise ValueError(f"give one factor per neuron ({len(self._names)}), got shape {values.shape}")
        return values

    def _check_scales(self, values: Any, what: str) -> np.ndarray:
        """float32-exact factors in [0, 2], one per neuron (what the browser's float32 sliders hold)."""
        out = np.empty(len(self._names), dtype=np.float32)
        for i, (name, v) in enumerate(zip(self._names, values)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise TypeError(f"{what}: the factor of {name} must be a number, got {type(v).__name__}")
            if not math.isfinite(float(v)) or not SCALE_MIN <= float(v) <= SCALE_MAX:
                raise ValueError(
                    f"{what}: the factor of {name} is {float(v):g}; the panel's factors go from {SCALE_MIN:g} "
                    f"(off) to {SCALE_MAX:g} (use ablate()/Intervention.scale for others)"
                )
            out[i] = v
        return out

    def _check_random(self, k: Any, seed: Any) -> tuple[int, int]:
        n = len(self._names)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= n:
            raise ValueError(f"random_k must be an integer from 0 to {n} (the panel's neurons), got {k!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"the seed must be a non-negative integer, got {seed!r}")
        return int(k), int(seed)

    # -- computing answers ------------------------------------------------------------------------------
    def _distribution(self, interventions: Intervention | None) -> _Distribution:
        logits = predict_logits(self._handle, self._text, interventions)[0]
        return _Distribution(logits.float().softmax(-1).cpu(), logits.double().log_softmax(-1).cpu())

    def _ranked_ids(self, dist: _Distribution) -> list[int]:
        """The ids a series contributes to the bars: every class, or its ``top_k`` tokens."""
        if self._handle.kind == "classifier":
            return [int(i) for i in torch.argsort(dist.probs, descending=True)]
        return [int(i) for i in dist.probs.topk(min(self._top_k, dist.probs.shape[0])).indices]

    def random_draw(self, k: int, seed: int) -> tuple[str, ...]:
        """``k`` random neurons: as many per site as the first ``k`` panel neurons have there, none of
        the panel's, drawn with ``numpy.random.default_rng(seed)`` site by site in panel order."""
        k, seed = self._check_random(k, seed)
        counts: dict[Site, int] = {}
        for a in self._addrs[:k]:
            counts[a.site] = counts.get(a.site, 0) + 1
        rng = np.random.default_rng(seed)
        out: list[str] = []
        for site, count in counts.items():
            taken = [a.index for a in self._addrs if a.site == site]
            pool = np.setdiff1d(np.arange(self._handle.width(site)), taken)
            if len(pool) < count:
                raise ValueError(f"{site.name} has too few other neurons to draw {count} random ones")
            out += [f"{site.name}:{int(i)}" for i in rng.choice(pool, size=count, replace=False)]
        return tuple(out)

    def _random(self, k: int, seed: int) -> tuple[tuple[str, ...], _Distribution]:
        key = (k, seed)
        if key not in self._random_cache:
            drawn = self.random_draw(k, seed)
            self._random_cache = {key: (drawn, self._distribution(Intervention.zero(drawn)))}
        return self._random_cache[key]

    def _effect(self, dist: _Distribution) -> dict[str, Any]:
        """As :func:`~neuronwidgets.core.measure_effect` computes it, from the same log-probabilities."""
        e = compare_distributions(self._clean.logp, dist.logp)
        return {
            "kl": float(e.kl[0]),
            "delta_prob": float(e.intervened_prob[0] - e.original_prob[0]),
            "prob": float(e.intervened_prob[0]),
            "top": self._handle.output_label(int(e.new_top[0])),
            "top_prob": float(e.new_top_prob[0]),
            "flipped": bool(e.new_top[0] != e.top[0]),
        }

    def _tags(self, interventions: Intervention | None) -> _Tags:
        from ..core import extract_activations

        probe = self._probe
        assert probe is not None
        sites = sorted({parse_neuron(f).site for f in probe.features})
        layers = sorted(
            {"embed" if s.layer < 0 else s.layer for s in sites}, key=lambda x: -1 if x == "embed" else x
        )
        components = sorted({s.component for s in sites})
        with intervene(self._handle, interventions):
            acts = extract_activations(
                self._handle,
                [self._text],
                layers=layers,
                components=components,
                granularity=self._probe_granularity,
                progress=False,
            )
        proba = probe.predict_proba(acts)
        index = proba.argmax(1)
        return _Tags(acts.units(0), index, proba[np.arange(len(index)), index].astype(np.float32))

    def _answer(self, request_id: int, scales: np.ndarray, random_k: int, seed: int) -> dict[str, Any]:
        """The prediction for a state, as the ``prediction`` trait carries it:

        - ``request_id``: the request answered; ``error``: ``""``, or why the request was refused (the
          rest then shows the last good state);
        - ``labels`` / ``ids`` ``[R]``: the bars' rows: the original's top predictions (every class for a
          classifier, ``top_k`` tokens for an LM), then any other top predictions of the other series;
        - ``series``: ``["original", "current"]`` (+ ``"random"``); ``probs``: float32 ``[S, R]`` buffer,
          the probability of each row's label under each series (as ``predict`` computes it);
        - ``target``: the original top prediction; ``effects``: per series but the original,
          ``{kl, delta_prob, prob, top, top_prob, flipped}`` (as ``measure_effect`` computes them);
        - ``random_neurons``: the random neurons switched off; ``tags``: per-word probe tags or None.
        """
        state = {n: float(v) for n, v in zip(self._names, scales)}
        intervention = Intervention.scale(state)
        series: dict[str, _Distribution] = {
            "original": self._clean,
            "current": self._distribution(intervention),
        }
        drawn: tuple[str, ...] = ()
        if random_k > 0:
            drawn, series["random"] = self._random(random_k, seed)
        ids: list[int] = []
        for dist in series.values():
            ids += [i for i in self._ranked_ids(dist) if i not in ids]
        probs = np.stack([dist.probs[ids].numpy() for dist in series.values()]).astype(np.float32)
        tags = None
        if self._probe is not None and self._clean_tags is not None:
            now = self._tags(intervention)
            classes = list(self._probe.classes)
            tags = {
                "words": self._clean_tags.words,
                "classes": classes,
                "original": [int(i) for i in self._clean_tags.index],
                "current": [int(i) for i in now.index],
                "probs": encode_array(np.stack([self._clean_tags.prob, now.prob])),
            }
        return {
            "request_id": int(request_id),
            "error": "",
            "labels": [self._handle.output_label(i) for i in ids],
            "ids": ids,
            "series": list(series),
            "probs": encode_array(probs),
            "target": self._handle.output_label(int(self._clean.logp.argmax())),
            "effects": {name: self._effect(d) for name, d in series.items() if name != "original"},
            "random_neurons": list(drawn),
            "tags": tags,
        }

    # -- export ------------------------------------------------------------------------------------------
    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write a standalone HTML page of the panel as it is now (bundle, CSS and state inlined; works
        offline). Nothing can be recomputed without a kernel, so the page's controls are disabled, with
        a note saying so."""
        return write_standalone_html(self, path, title or f"AblationPanel: {self.model_name}")

    def _export_state(self) -> dict[str, Any]:
        """The state a static page renders from (also used by ``save_html`` for composed views)."""
        state = self.get_state(list(_SYNCED))
        state["export_note"] = (
            "Static export: the sliders show the state when it was saved; run the notebook to change them."
        )
        return state


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _panel_neurons(handle: ModelHandle, neurons: Any, n_neurons: int | None) -> list[NeuronAddress]:
    """The panel's neurons, checked against the model: a list of addresses, or the first ``n_neurons`` of
    a ranking (duck-typed: any object with ``.neurons``, best first)."""
    if n_neurons is not None and (
        isinstance(n_neurons, bool) or not isinstance(n_neurons, (int, np.integer)) or n_neurons < 1
    ):
        raise ValueError(f"n_neurons must be a positive integer, got {n_neurons!r}")
    if isinstance(neurons, (str, NeuronAddress)):
        neurons = [neurons]
    elif isinstance(neurons, Mapping):
        raise TypeError(
            "neurons must be a list of addresses or a ranking (with .neurons), not a dict; for an initial "
            "state pass scales={neuron: factor}"
        )
    elif hasattr(neurons, "neurons") and not isinstance(neurons, (list, tuple)):
        limit = int(n_neurons or DEFAULT_RANKING_NEURONS)
        top = getattr(neurons, "top", None)
        ranked = top(min(limit, len(neurons.neurons))).neurons if callable(top) else neurons.neurons
        neurons = list(ranked)[:limit]
    else:
        try:
            neurons = list(neurons)
        except TypeError:
            raise TypeError(
                f"neurons must be a list of addresses such as 'layer.3.mlp:117' or a ranking, got "
                f"{type(neurons).__name__}"
            ) from None
        if n_neurons is not None:
            neurons = neurons[: int(n_neurons)]
    if not neurons:
        raise ValueError("no neurons given: pass at least one address, e.g. ['layer.3.mlp:117']")
    if len(neurons) > MAX_NEURONS:
        raise ValueError(
            f"{len(neurons)} neurons is too many sliders (at most {MAX_NEURONS}): pass the top ones, e.g. "
            "ranking.top(20) or n_neurons=20"
        )
    out: list[NeuronAddress] = []
    for i, n in enumerate(neurons):
        if not isinstance(n, (str, NeuronAddress)):
            raise TypeError(f"neurons[{i}] must be an address such as 'layer.3.mlp:117', got {n!r}")
        try:
            out.append(handle.check_neuron(n))
        except ValueError as err:
            raise ValueError(f"neurons[{i}] ({n!s}): {err}") from None
    names = [a.name for a in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"{dup} is listed twice in neurons: list each neuron once")
    return out


def _check_probe(handle: ModelHandle, probe: Any, granularity: str) -> tuple[Any, str]:
    """A classification probe over ``handle``'s neurons (a ``Probe`` or a ``ProbeResult``), or None."""
    if probe is None:
        return None, granularity
    probe = getattr(probe, "probe", probe)  # a ProbeResult holds its probe
    if not all(hasattr(probe, a) for a in ("features", "classes", "predict_proba", "task")):
        raise TypeError(
            f"probe must be a Probe from train_probe (or its ProbeResult), got {type(probe).__name__}"
        )
    if probe.task != "classification":
        raise ValueError("the panel shows probe tags, so the probe must classify (this one is a regression)")
    if granularity not in ("word", "token"):
        raise ValueError(f"probe_granularity must be 'word' or 'token', got {granularity!r}")
    trained_on = getattr(probe, "meta", {}).get("model")
    if trained_on and trained_on != handle.name:
        raise ValueError(f"the probe was trained on {trained_on}'s activations, not {handle.name}'s")
    for f in probe.features:
        handle.check_neuron(f)
    return probe, granularity


def _decode_scales(encoded: Any, n: int) -> np.ndarray:
    """The browser's float32 ``[n]`` buffer, checked."""
    if not isinstance(encoded, Mapping) or "view" not in encoded:
        raise TypeError("scales must be an encoded float32 array {view, dtype, shape}")
    if encoded.get("dtype") != "float32" or list(encoded.get("shape", [])) != [n]:
        raise ValueError(
            f"scales must be float32 of shape [{n}] (one factor per neuron), got {encoded.get('dtype')} "
            f"{encoded.get('shape')}"
        )
    return decode_array(dict(encoded)).astype(np.float64)
