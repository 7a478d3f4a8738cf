"""Attribution of a prediction to its input tokens, on Captum: which tokens caused this prediction.

:func:`attribute_tokens` runs one of the input-attribution methods of :data:`METHODS` (the one table that
maps method names to Captum classes) on the **input embeddings** of a text and sums each token's
attribution over the hidden dimension, then sums tokens into words. What is explained, the baseline,
the first-token rule and the word alignment are those of :mod:`neuronwidgets.core.attribution.setup`,
shared with conductance, interactions and faithfulness.

Captum is imported lazily: importing it pulls in IPython, which the headless core never imports.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..display import Result, new_axes, summary
from ..models.handle import ModelHandle
from ..plotting import token_xticks
from .setup import ScoreModule, TextSetup, prepare_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# models whose outputs from inputs_embeds were checked to equal those from input_ids (an architecture fact)
LEVELS: tuple[str, ...] = ("token", "layer", "neuron", "interaction")


# ------------------------------------------------------------------------------------------------
# The one table of methods
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """An attribution method: its name, where it attributes, and what implements it.

    ``captum``: the Captum class (in ``captum.attr``) that computes it (``engine="captum"``) or that our
    batched engine reproduces and is tested against (``engine="batched"``); ``None`` for the interaction
    methods, which Captum lacks and neuronwidgets implements (``engine="neuronwidgets"``, class
    ``implementation`` in ``interactions.py``). ``kind``: ``"path"`` (integrates gradients along a path
    from the baseline; reports a convergence delta), ``"gradient"`` or ``"perturbation"``.
    """

    name: str
    level: str
    kind: str
    captum: str | None
    engine: str
    reference: str
    aliases: tuple[str, ...] = ()
    implementation: str | None = None


_TABLE: tuple[Method, ...] = (
    # inputs (token level): Captum classes run on the input embeddings
    Method("integrated-gradients", "token", "path", "IntegratedGradients", "captum",
           "Sundararajan et al. 2017", ("ig", "integrated_gradients")),
    Method("saliency", "token", "gradient", "Saliency", "captum", "Simonyan et al. 2014", ("gradient",)),
    Method("input-x-gradient", "token", "gradient", "InputXGradient", "captum", "Shrikumar et al. 2016",
           ("inputxgradient", "input×gradient", "gradient-x-input", "ixg")),
    Method("deeplift", "token", "path", "DeepLift", "captum", "Shrikumar et al. 2017", ("deep-lift",)),
    Method("gradient-shap", "token", "path", "GradientShap", "captum", "Lundberg & Lee 2017",
           ("gradientshap", "gradshap")),
    Method("kernel-shap", "token", "perturbation", "KernelShap", "captum", "Lundberg & Lee 2017",
           ("kernelshap", "shap")),
    Method("shapley-sampling", "token", "perturbation", "ShapleyValueSampling", "captum",
           "Castro et al. 2009; Štrumbelj & Kononenko 2010", ("shapley-value-sampling", "shapley")),
    Method("occlusion", "token", "perturbation", "Occlusion", "captum", "Zeiler & Fergus 2014"),
    Method("feature-ablation", "token", "perturbation", "FeatureAblation", "captum", "Captum",
           ("ablation",)),
    # layers: one row per site, batched over steps (see conductance.py)
    Method("layer-conductance", "layer", "path", "LayerConductance", "batched", "Dhamdhere et al. 2018",
           ("conductance",)),
    Method("layer-integrated-gradients", "layer", "path", "LayerIntegratedGradients", "batched",
           "Sundararajan et al. 2017", ("layer-ig", "integrated-gradients", "ig")),
    # neurons: every neuron of a site at once, batched over steps and neurons (see conductance.py).
    # Neuron IG ranks neurons by the integrated gradient of the output along the straight path in the
    # site's activations, i.e. LayerIntegratedGradients per neuron; Captum's NeuronIntegratedGradients
    # attributes a neuron's own activation to the inputs and says nothing about the prediction.
    Method("neuron-conductance", "neuron", "path", "NeuronConductance", "batched", "Dhamdhere et al. 2018",
           ("conductance",)),
    Method("neuron-integrated-gradients", "neuron", "path", "LayerIntegratedGradients", "batched",
           "Sundararajan et al. 2017", ("neuron-ig", "integrated-gradients", "ig")),
    # interactions: not in Captum, implemented in interactions.py with Captum-style classes
    Method("integrated-hessians", "interaction", "path", None, "neuronwidgets", "Janizek et al. 2020",
           ("ih",), "IntegratedHessians"),
    Method("shapley-taylor", "interaction", "perturbation", None, "neuronwidgets",
           "Dhamdhere et al. 2020", ("shapley-taylor-index", "sti"), "ShapleyTaylorInteraction"),
    Method("archipelago", "interaction", "perturbation", None, "neuronwidgets", "Tsang et al. 2020",
           ("archdetect", "arch"), "Archipelago"),
)  # fmt: skip


#: Every token attribution method by name (``attribute_tokens(method=...)``), in one table.
METHODS: dict[str, Method] = {m.name: m for m in _TABLE}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-").replace("×", "-x-").replace("--", "-")


def get_method(name: str, level: str = "token") -> Method:
    """The :class:`Method` called ``name`` (or an alias) at ``level``; the error lists the choices.

    Args:
        name: A method name or alias (``"integrated-gradients"``, ``"ig"``, ...); see :data:`METHODS`.
        level: Where it attributes: ``"token"``, ``"layer"``, ``"neuron"`` or ``"interaction"``.

    Returns:
        The method.

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: For an unknown level or method.

    Example:
        >>> get_method("integrated-gradients").captum"""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}: choose from {', '.join(LEVELS)}")
    if not isinstance(name, str):
        raise TypeError(f"method must be a string such as 'integrated-gradients', got {type(name).__name__}")
    key = _normalise(name)
    here = [m for m in _TABLE if m.level == level]
    for m in here:
        if key == m.name or key in m.aliases or key == m.name.replace("-", ""):
            return m
    names = ", ".join(m.name for m in here)
    elsewhere = [m for m in _TABLE if m.level != level and (key == m.name or key in m.aliases)]
    hint = ""
    if elsewhere:
        fn = {
            "token": "attribute_tokens",
            "layer": "attribute_layers",
            "neuron": "attribute_neurons",
            "interaction": "attribute_interactions",
        }[elsewhere[0].level]
        hint = f" ({elsewhere[0].name!r} is a {elsewhere[0].level}-level method: use {fn})"
    raise ValueError(f"unknown {level} attribution method {name!r}{hint}: choose from {names}")


def captum_class(method: Method) -> Any:
    """The Captum class of ``method`` (imported on first use)."""
    if method.captum is None:
        raise ValueError(
            f"{method.name} is not a Captum method: see neuronwidgets.core.attribution.interactions"
        )
    import captum.attr

    return getattr(captum.attr, method.captum)


@contextmanager
def math_attention() -> Iterator[None]:
    """Run scaled-dot-product attention with its plain-math kernel inside the block.

    Forward-mode AD and second derivatives (conductance tangents, Integrated Hessians) are not
    implemented for PyTorch's fused CPU attention kernels; the math kernel computes the same function
    with ordinary differentiable operations.
    """
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # older torch: no kernel selection, the default path is differentiable
        yield
        return
    with sdpa_kernel([SDPBackend.MATH]):
        yield


# ------------------------------------------------------------------------------------------------
# Token attribution
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenAttribution(Result):
    """How much each input token (and word) contributed to one prediction.

    Made by :func:`attribute_tokens`.

    Attributes:
        text: The input.
        method: The attribution method.
        target: What was explained.
        target_id: Its class index or token id.
        output: ``"prob"``, ``"logit"`` or ``"log-prob"`` (the attributed quantity).
        baseline: The baseline used.
        tokens: The ``T`` model tokens, special tokens included.
        special: Bool ``[T]``, tokens the baseline keeps (their score is 0 by construction).
        token_scores: Float ``[T]``, attribution per token, summed over the hidden dimension.
        words: The ``W`` words of the text.
        word_scores: Float ``[W]`` (sum of their tokens).
        token_words: Int ``[T]``, first word of each token (``-1``: none).
        prob: The target's probability on the input.
        delta: Convergence delta of path methods (``None`` for the others).
        output_difference: ``F(input) − F(baseline)`` where known (path methods), else ``None``.
        params: The method's settings.
    """

    text: str
    method: str
    target: str
    target_id: int
    output: str
    baseline: str
    tokens: list[str]
    special: np.ndarray
    token_scores: np.ndarray
    words: list[str]
    word_scores: np.ndarray
    token_words: np.ndarray
    prob: float
    delta: float | None = None
    output_difference: float | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def scores(self, level: str = "word") -> np.ndarray:
        """Word scores ``[W]`` or token scores ``[T]``."""
        if level == "word":
            return self.word_scores
        if level == "token":
            return self.token_scores
        raise ValueError(f"unknown level {level!r}: choose 'word' or 'token'")

    def units(self, level: str = "word") -> list[str]:
        if level == "word":
            return list(self.words)
        if level == "token":
            return list(self.tokens)
        raise ValueError(f"unknown level {level!r}: choose 'word' or 'token'")

    def top(self, k: int = 5, level: str = "word") -> list[tuple[str, float]]:
        """The ``k`` units with the largest scores, best first."""
        scores = self.scores(level)
        order = np.argsort(-scores, kind="stable")[:k]
        units = self.units(level)
        return [(units[i], float(scores[i])) for i in order]

    def to_frame(self, level: str = "word") -> pd.DataFrame:
        """One row per word (or token): position, text, score."""
        if level == "token":
            return pd.DataFrame(
                {
                    "token": self.tokens,
                    "score": self.token_scores,
                    "special": self.special,
                    "word": self.token_words,
                }
            )
        return pd.DataFrame({"word": self.words, "score": self.scores(level)})

    def plot(self, level: str = "word", ax: Any = None) -> Axes:
        """Bar chart of the scores (positive and negative in distinct colours), drawn into ``ax`` (default:
        a new figure); returns the Axes."""
        ax = new_axes(ax, (max(4.0, 0.45 * len(self.units(level))), 3.0))
        scores = self.scores(level)
        ax.bar(range(len(scores)), scores, color=["#2166ac" if s >= 0 else "#b2182b" for s in scores])
        ax.axhline(0, color="#888888", lw=0.8)
        token_xticks(ax, self.units(level))
        ax.set_ylabel(f"attribution to {self.output}")
        ax.set_title(f"{self.method} → {self.target!r} (p={self.prob:.3f})")
        return ax

    def __repr__(self) -> str:
        shown = ", ".join(f"{w!r}: {s:+.3f}" for w, s in zip(self.words[:8], self.word_scores[:8]))
        more = " …" if len(self.words) > 8 else ""
        delta = "" if self.delta is None else f", delta={self.delta:.2g}"
        return summary(
            f"TokenAttribution({self.method} → {self.target!r}, p={self.prob:.3f}{delta}, {{{shown}{more}}})"
        )


_DEFAULT_SAMPLES = {"gradient-shap": 25, "kernel-shap": 200, "shapley-sampling": 25}


def attribute_tokens(
    model: ModelHandle | str,
    text: str,
    method: str = "integrated-gradients",
    target: str | int | None = None,
    *,
    output: str = "prob",
    baseline: str | int = "pad",
    keep_first: bool | str = "auto",
    n_steps: int = 50,
    n_samples: int | None = None,
    internal_batch_size: int | None = None,
    window: int = 1,
    seed: int = 0,
    delta_tolerance: float = 0.05,
) -> TokenAttribution:
    """Attribute one prediction on ``text`` to its tokens and words with ``method`` (see :data:`METHODS`).

    Args:
        model: A loaded model or a model name, with a prediction head.
        text: The input.
        method: A name in :data:`METHODS`.
        target: A classifier label (name or index), a next token (one-token string or id) for causal
            LMs, the masked token for masked LMs; ``None`` explains the current top prediction.
        output: The explained quantity, ``"prob"`` (default), ``"logit"`` or ``"log-prob"``.
        baseline: ``"pad"`` (default), ``"mask"``, ``"unk"``, ``"zero"`` or a token id; special tokens
            are kept (module docstring).
        keep_first: Keep the first content token too (``True``), never (``False``), or when the model is
            a causal LM without BOS (``"auto"``, default; see ``prepare_text`` in ``setup.py``).
        n_steps: Integration steps of Integrated Gradients.
        n_samples: Samples of GradientSHAP (25), KernelSHAP (200) and Shapley value sampling (25
            permutations).
        internal_batch_size: Rows per forward pass (default about 4,096 tokens per batch).
        window: Tokens per occlusion window.
        seed: For the sampling methods (the global random state is left untouched).
        delta_tolerance: Warn when a path method's ``|delta|`` exceeds this fraction of
            ``|F(input) − F(baseline)|``.

    Returns:
        Scores per token and per word, with the convergence check.

    Raises:
        ValueError: For an unknown method or target, or a bad ``n_steps``, ``window`` or ``n_samples``.

    Example:
        >>> attribution = attribute_tokens("minilm-sentiment", "Not bad at all.", "integrated-gradients")
        >>> attribution.to_frame()  # word scores; attribution.delta is the completeness check
    """
    m = get_method(method, "token")
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 2:
        raise ValueError(f"n_steps must be an int of at least 2, got {n_steps!r}")
    if window < 1:
        raise ValueError(f"window must be at least 1 token, got {window}")
    setup = prepare_text(model, text, target, output=output, baseline=baseline, keep_first=keep_first)
    n_content = len(setup.content)
    if m.name == "occlusion" and window > n_content:
        raise ValueError(f"window={window} is longer than the text's {n_content} content tokens")
    samples = n_samples if n_samples is not None else _DEFAULT_SAMPLES.get(m.name)
    if samples is not None and samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {samples}")
    batch = internal_batch_size or max(1, 4096 // setup.num_tokens)
    attr, delta = _run_captum(m, setup, n_steps, samples, batch, window, seed)
    token_scores = np.zeros(setup.num_tokens)
    token_scores[setup.content.cpu().numpy()] = attr.sum(-1)[0].detach().double().cpu().numpy()
    diff = None
    if delta is not None:
        diff = float(token_scores.sum()) - delta
        if m.name == "integrated-gradients":
            _warn_delta(delta, diff, delta_tolerance, "n_steps", n_steps)
    params: dict[str, Any] = {"baseline": baseline, "keep_first": setup.kept_first}
    if m.name == "integrated-gradients":
        params["n_steps"] = n_steps
    if samples is not None:
        params["n_samples"] = samples
    if m.name == "occlusion":
        params["window"] = window
    return TokenAttribution(
        **setup.explained(),
        method=m.name,
        tokens=setup.tokens,
        special=setup.special.copy(),
        token_scores=token_scores,
        words=setup.words,
        word_scores=setup.word_scores(token_scores),
        token_words=np.array(setup.primary, dtype=np.int64),
        delta=delta,
        output_difference=diff,
        params=params,
    )


def _warn_delta(delta: float, diff: float, tolerance: float, knob: str, value: int) -> None:
    if not math.isfinite(delta):
        warnings.warn(f"the convergence delta is {delta}: the attribution is not reliable", stacklevel=3)
        return
    if abs(delta) > tolerance * abs(diff) and abs(delta) > 1e-6:
        warnings.warn(
            f"convergence delta {delta:.3g} is {abs(delta) / max(abs(diff), 1e-12):.0%} of the output "
            f"difference F(input) − F(baseline) = {diff:.3g}: the integral is not converged; increase {knob} "
            f"(now {value}, try {value * 4})",
            stacklevel=3,
        )


@contextmanager
def _numpy_seeded(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator (Captum's GradientShap draws its path points from it) and restore
    the caller's state afterwards, so ``seed`` makes every sampling method reproducible."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _run_captum(
    m: Method, setup: TextSetup, n_steps: int, samples: int | None, batch: int, window: int, seed: int
) -> tuple[torch.Tensor, float | None]:
    """Run the Captum class of ``m`` on the content embeddings; attributions ``[1, C, H]`` and delta."""
    cls = captum_class(m)
    x, b = setup.content_embeds, setup.content_base
    n_content, hidden = x.shape[1], x.shape[2]
    feature_mask = torch.arange(n_content, device=x.device).view(1, n_content, 1).repeat(1, 1, hidden)
    module = ScoreModule(setup)
    delta: torch.Tensor | None = None
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]), _numpy_seeded(seed):
        # Captum's notes about hooks on nonlinearities and its own internals are not the user's concern
        warnings.filterwarnings("ignore", module=r"captum\..*")
        torch.manual_seed(seed)
        if m.name == "integrated-gradients":
            attr, delta = cls(module).attribute(
                x, baselines=b, n_steps=n_steps, internal_batch_size=batch, return_convergence_delta=True
            )
        elif m.name == "saliency":
            attr = cls(module).attribute(x, abs=True)
        elif m.name == "input-x-gradient":
            attr = cls(module).attribute(x)
        elif m.name == "deeplift":
            attr, delta = cls(module).attribute(x, baselines=b, return_convergence_delta=True)
        elif m.name == "gradient-shap":
            attr, delta = cls(module).attribute(
                x, baselines=b, n_samples=samples, stdevs=0.0, return_convergence_delta=True
            )
        elif m.name == "kernel-shap" or m.name == "shapley-sampling":
            attr = cls(module).attribute(
                x, baselines=b, feature_mask=feature_mask, n_samples=samples, perturbations_per_eval=batch
            )
        elif m.name == "occlusion":
            attr = cls(module).attribute(
                x,
                baselines=b,
                sliding_window_shapes=(window, hidden),
                strides=(1, hidden),
                perturbations_per_eval=batch,
            )
        elif m.name == "feature-ablation":
            attr = cls(module).attribute(
                x, baselines=b, feature_mask=feature_mask, perturbations_per_eval=batch
            )
        else:  # pragma: no cover - the table and this dispatch are edited together
            raise AssertionError(m.name)
    if m.name in ("kernel-shap", "shapley-sampling", "feature-ablation", "occlusion"):
        # Captum gives every element of a token the token's value (occlusion: the mean effect of the
        # windows covering it), so one element per token is the token's score
        attr = attr[..., :1]
    d = None if delta is None else float(delta.float().mean())
    return attr.detach(), d
