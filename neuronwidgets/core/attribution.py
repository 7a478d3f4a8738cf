"""Attribution of a prediction to its input tokens, on Captum: which tokens caused this prediction.

:func:`attribute_tokens` runs one of the input-attribution methods of :data:`METHODS` (the one table that
maps method names to Captum classes) on the **input embeddings** of a text and sums each token's
attribution over the hidden dimension, then sums tokens into words.

Design, shared by :mod:`.conductance`, :mod:`.interactions` and :mod:`.faithfulness` through
:class:`TextSetup`:

- **What is explained**: one number, the model's ``output`` (``"prob"``: softmax probability, the default;
  ``"logit"``; ``"log-prob"``) for a ``target``: a classifier label (name or index), a next token (string
  or id) of a causal LM, the masked token of a masked LM, or by default the current top prediction.
- **Inputs**: the word embeddings of the text's tokens, fed to the model as ``inputs_embeds`` (positions,
  token types and attention mask are those of the text, for the input and the baseline alike).
- **Baseline** (``baseline=``): every content token's embedding replaced by the embedding of the pad token
  (``"pad"``, the default; causal LMs without one use their EOS token, as :func:`load_model` sets it),
  the mask token (``"mask"``), the unknown token (``"unk"``), a token id, or zeros (``"zero"``). Special
  tokens ([CLS], [SEP], <s>, BOS …) and, for masked LMs, the [MASK] being predicted are kept in the
  baseline, so their attribution is exactly 0 and the attributions of the content tokens carry the whole
  difference ``F(input) − F(baseline)``.
- **First token** (``keep_first=``): a causal LM without a BOS token (SmolLM2, GPT-2 as its tokenizer
  ships) sees a text's first word at position 0, where the model parks the attention it does not need
  (the "attention sink"). Replacing that token by pad changes what every later position attends to, so
  a large share of ``F(input) − F(baseline)`` lands on the first word, whatever it is. ``"auto"`` (the
  default) keeps the first token in the baseline of such models, like a BOS token: its score is 0 by
  construction and it is marked in ``special``; ``True`` keeps the first content token of any model,
  ``False`` never does. The measurement behind the default is in :func:`prepare_text`.
- **Words**: a token's score goes to the words its characters overlap (split evenly if it overlaps
  several, so word scores sum to token scores), with the offsets-based alignment of extraction.
- **Convergence delta** for path methods: ``sum(attributions) − (F(input) − F(baseline))``; a warning
  suggests more steps when ``|delta|`` exceeds ``delta_tolerance`` × ``|F(input) − F(baseline)|``.

Captum is imported lazily: importing it pulls in IPython, which the headless core never imports.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .corpus import Corpus
from .extraction import align_tokens
from .models import ModelHandle, as_handle

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OUTPUTS: tuple[str, ...] = ("prob", "logit", "log-prob")
# models whose outputs from inputs_embeds were checked to equal those from input_ids (an architecture fact)
_EMBEDS_VERIFIED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()
BASELINES: tuple[str, ...] = ("pad", "mask", "unk", "zero")
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
    ``implementation`` in :mod:`.interactions`). ``kind``: ``"path"`` (integrates gradients along a path
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

METHODS: dict[str, Method] = {m.name: m for m in _TABLE}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-").replace("×", "-x-").replace("--", "-")


def get_method(name: str, level: str = "token") -> Method:
    """The :class:`Method` called ``name`` (or an alias) at ``level``; the error lists the choices."""
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
        raise ValueError(f"{method.name} is not a Captum method: see neuronwidgets.core.interactions")
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
# A text, a target and a baseline, ready for any attribution engine
# ------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class TextSetup:
    """One text prepared for attribution: its tokens and words, input and baseline embeddings, the target
    and the function being explained. Built by :func:`prepare_text`; used by every attribution engine.

    Shapes: ``T`` model tokens (special tokens included), ``C`` content tokens (the ones the baseline
    replaces), ``H`` hidden size, ``W`` words.

    - ``embeds`` / ``base``: ``[1, T, H]`` input and baseline embeddings (equal at fixed positions);
    - ``content``: ``[C]`` long tensor of the positions the baseline replaces;
    - ``special``: bool ``[T]``, tokens kept in the baseline (special tokens, a masked LM's [MASK], the
      first token when ``kept_first``);
    - ``tokens``: ``T`` strings; ``words``: ``W`` strings; ``pairs``: ``(token, word)`` overlaps;
      ``primary``: ``[T]`` first word of each token, ``-1`` for none.
    """

    handle: ModelHandle
    text: str
    input_ids: torch.Tensor
    extra: dict[str, torch.Tensor]
    embeds: torch.Tensor
    base: torch.Tensor
    content: torch.Tensor
    special: np.ndarray
    tokens: list[str]
    words: list[str]
    pairs: list[tuple[int, int]]
    primary: list[int]
    position: int | None
    target_id: int
    target: str
    output: str
    baseline: str
    prob: float  # the target's probability on the clean input
    clean_output: float  # F(input)
    kept_first: bool = False  # the first content token is kept in the baseline (``keep_first``)
    _assign: dict[str, torch.Tensor] = field(default_factory=dict)

    # -- the function being explained ------------------------------------------------------------
    def explained(self) -> dict[str, Any]:
        """What every result computed on this setup records about the prediction it explains."""
        return {
            "text": self.text,
            "target": self.target,
            "target_id": self.target_id,
            "output": self.output,
            "baseline": self.baseline,
            "prob": self.prob,
        }

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[1])

    def logits(self, full: torch.Tensor) -> torch.Tensor:
        """Logits at the predicted position for full embeddings ``[B, T, H]`` → ``[B, outputs]``."""
        b = full.shape[0]
        kw: dict[str, Any] = {k: v.expand(b, -1) for k, v in self.extra.items()}
        if self.handle.kind == "causal-lm":
            kw["use_cache"] = False
        out = self.handle.model(inputs_embeds=full, **kw).logits
        if self.position is not None:
            out = out[:, self.position]
        return out.float()

    def scores(self, full: torch.Tensor) -> torch.Tensor:
        """The explained output (``output`` of ``target``) for full embeddings ``[B, T, H]`` → ``[B]``."""
        return select_output(self.logits(full), self.target_id, self.output)

    def full(self, content: torch.Tensor) -> torch.Tensor:
        """Full embeddings ``[B, T, H]`` from content-token embeddings ``[B, C, H]`` (differentiable)."""
        whole = self.embeds.expand(content.shape[0], -1, -1)
        return whole.index_copy(1, self.content, content.to(whole.dtype))

    @property
    def content_embeds(self) -> torch.Tensor:
        return self.embeds[:, self.content]

    @property
    def content_base(self) -> torch.Tensor:
        return self.base[:, self.content]

    # -- units: tokens or words switched between input and baseline ------------------------------
    def units(self, level: str) -> list[str]:
        """The units of ``level`` (``"token"``: content tokens, ``"word"``: words)."""
        if level == "token":
            return [self.tokens[i] for i in self.content.tolist()]
        if level == "word":
            return list(self.words)
        raise ValueError(f"unknown level {level!r}: choose 'token' or 'word'")

    def assignment(self, level: str) -> torch.Tensor:
        """``[units, C]`` 0/1 matrix: which content tokens each unit switches. A word switches the tokens
        whose first word it is; a content token that starts no word is always kept as in the input, and a
        word made only of kept tokens (a kept first token) switches nothing."""
        if level not in self._assign:
            content = self.content.tolist()
            if level == "token":
                a = torch.eye(len(content))
            else:
                a = torch.zeros(len(self.words), len(content))
                for c, t in enumerate(content):
                    if self.primary[t] >= 0:
                        a[self.primary[t], c] = 1.0
            self._assign[level] = a.to(self.embeds.device)
        return self._assign[level]

    def mixed(self, m: torch.Tensor, level: str = "token") -> torch.Tensor:
        """Full embeddings ``[B, T, H]`` for unit weights ``m`` ``[B, units]``: 1 keeps a unit's input
        embeddings, 0 replaces them by the baseline, values in between interpolate (differentiable)."""
        a = self.assignment(level)
        kept = 1.0 - a.sum(0).clamp(max=1.0)  # content tokens outside every unit stay as they are
        w = (m.to(a.dtype) @ a + kept).unsqueeze(-1)  # [B, C, 1]
        x, b = self.content_embeds, self.content_base
        return self.full(b + w * (x - b))

    def unit_function(self, level: str = "token") -> Callable[[torch.Tensor], torch.Tensor]:
        """``f(m) → [B]``: the explained output as a function of unit weights ``m`` ``[B, units]``."""

        def f(m: torch.Tensor) -> torch.Tensor:
            return self.scores(self.mixed(m, level))

        return f

    def evaluate(self, m: torch.Tensor, level: str = "token", batch_size: int = 64) -> torch.Tensor:
        """The explained output for many unit weight rows ``[N, units]`` → ``[N]``, in batches, no grad."""
        outs = []
        with torch.no_grad():
            for i in range(0, m.shape[0], batch_size):
                outs.append(self.scores(self.mixed(m[i : i + batch_size], level)))
        return torch.cat(outs) if outs else torch.zeros(0)

    # -- words -----------------------------------------------------------------------------------
    def word_scores(self, token_scores: np.ndarray) -> np.ndarray:
        """Word scores ``[W]`` from token scores ``[..., T]`` (sum; a token shared by words is split)."""
        scores = np.asarray(token_scores, dtype=np.float64)
        share = np.zeros(self.num_tokens)
        for t, _ in self.pairs:
            share[t] += 1
        out = np.zeros((*scores.shape[:-1], len(self.words)))
        for t, w in self.pairs:
            out[..., w] += scores[..., t] / share[t]
        return out


class ScoreModule(nn.Module):
    """The explained output as an ``nn.Module`` of content embeddings ``[B, C, H]`` → ``[B]``.

    Captum's DeepLift needs a module (it hooks the model's nonlinearities); the other methods accept it
    as a plain function.
    """

    def __init__(self, setup: TextSetup):
        super().__init__()
        self.model = setup.handle.model
        self._setup = setup

    def forward(self, content: torch.Tensor) -> torch.Tensor:
        return self._setup.scores(self._setup.full(content))


def select_output(logits: torch.Tensor, target_id: int, output: str) -> torch.Tensor:
    """``[B, outputs]`` logits → ``[B]``: the target's probability, logit or log-probability."""
    if output == "prob":
        return logits.softmax(-1)[:, target_id]
    if output == "log-prob":
        return logits.log_softmax(-1)[:, target_id]
    if output == "logit":
        return logits[:, target_id]
    raise ValueError(f"unknown output {output!r}: choose from {', '.join(OUTPUTS)}")


def input_embeddings(model: nn.Module) -> nn.Module:
    """The word-embedding module of ``model`` (or of the first submodule that has one)."""
    for mod in model.modules():
        getter = getattr(mod, "get_input_embeddings", None)
        if getter is None:
            continue
        try:
            emb = getter()
        except (NotImplementedError, AttributeError):
            continue
        if isinstance(emb, nn.Module):
            return emb
    raise ValueError(
        f"cannot find the input embeddings of {type(model).__name__}: attribution needs a model with "
        "get_input_embeddings() (every Hugging Face model has one)"
    )


def prepare_text(
    model: ModelHandle | str,
    text: str,
    target: str | int | None = None,
    *,
    output: str = "prob",
    baseline: str | int = "pad",
    keep_first: bool | str = "auto",
) -> TextSetup:
    """Tokenise ``text``, build its input and baseline embeddings, run it once, and resolve ``target``.

    ``keep_first``: keep the first content token in the baseline (``True``), never (``False``), or
    (``"auto"``, the default) exactly when the model is a causal LM whose tokenizer adds no BOS token and
    the text has more than one token. Why ``"auto"`` keeps it, measured on SmolLM2 (no BOS) with 50-step
    Integrated Gradients: for "The capital of France is" → " Paris" (p=0.773), replacing every word by pad
    gives "The" +0.61 of the 0.77 to explain (79%) and "France" +0.03, an explanation by the sink
    position rather than by the words; keeping "The" gives "of" +0.37, "capital" +0.28, "France" +0.11.
    For "The Eiffel Tower is located in the city of" → " Paris", "The" is second (+0.26) without and
    "Eiffel" first (+0.45, from +0.28) with it kept. Completeness does not decide between them: the
    convergence delta is under 0.5% of ``F(x) − F(x')`` either way.

    Raises ``ValueError`` for an encoder without a head, an empty or too long text, an unknown target,
    output or baseline. See the module docstring for what each choice means.
    """
    handle = as_handle(model)
    if handle.kind == "encoder":
        raise ValueError(
            f"{handle.name} is an encoder without a prediction head, so there is no prediction to attribute: "
            "load a classifier (e.g. 'minilm-sentiment') or a causal/masked LM, or load this model with "
            "kind='classifier' after training a head"
        )
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("empty text: attribution needs at least one non-space character")
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}: choose from {', '.join(OUTPUTS)}")
    tok = handle.tokenizer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "longer than the maximum": checked below with a clearer message
        enc = tok(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    if len(ids) > handle.max_length:
        raise ValueError(
            f"the text has {len(ids)} tokens, more than {handle.name}'s maximum of {handle.max_length}: "
            "attribute a shorter passage (e.g. one sentence)"
        )
    special = np.array(enc["special_tokens_mask"], dtype=bool)
    position: int | None = None
    if handle.kind == "causal-lm":
        position = len(ids) - 1
    elif handle.kind == "masked-lm":
        masks = [i for i, t in enumerate(ids) if t == tok.mask_token_id]
        if not masks:
            raise ValueError(
                f"a masked-LM prediction needs a {tok.mask_token} token in the text, e.g. "
                f"'The movie was {tok.mask_token}.'"
            )
        position = masks[0]
        special[masks] = True  # the [MASK] being predicted stays a [MASK] in the baseline
    kept = np.zeros(len(ids), dtype=bool)
    first = _first_kept(handle, keep_first, special)
    if first is not None:
        kept[first] = special[first] = True
    content_pos = [i for i in range(len(ids)) if not special[i]]
    if not content_pos:
        raise ValueError(f"{text!r} has no content tokens to attribute (only special tokens)")

    device = handle.device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    extra = {"attention_mask": torch.ones_like(input_ids)}
    if "token_type_ids" in enc:
        extra["token_type_ids"] = torch.tensor([enc["token_type_ids"]], dtype=torch.long, device=device)
    emb = input_embeddings(handle.model)
    base_ids, base_name = _baseline_ids(handle, baseline, ids, special)
    if first is not None:
        base_name += f", first token {text[offsets[first][0] : offsets[first][1]]!r} kept"
    with torch.no_grad():
        embeds = emb(input_ids).detach()
        base = embeds.clone() if base_ids is None else emb(torch.tensor([base_ids], device=device)).detach()
        if base_ids is None:
            base[:, content_pos] = 0.0

    # special tokens written in the text (a masked LM's [MASK]) are one word each, not "[", "MASK", "]"
    corpus = Corpus.from_texts(text, keep=[t for t in tok.all_special_tokens if t and t in text])
    words, spans = corpus.words[0], corpus.spans[0]
    in_text = ~special | kept  # a kept first token still belongs to its word (its score is 0 there)
    pairs, primary = align_tokens(text, spans, [o if in_text[i] else (0, 0) for i, o in enumerate(offsets)])
    raw = tok.convert_ids_to_tokens(ids)
    tokens = [
        (text[s:e] or tok.decode([i])) if in_text[t] else str(raw[t])
        for t, (i, (s, e)) in enumerate(zip(ids, offsets))
    ]
    setup = TextSetup(
        handle=handle,
        text=text,
        input_ids=input_ids,
        extra=extra,
        embeds=embeds,
        base=base,
        content=torch.tensor(content_pos, dtype=torch.long, device=device),
        special=special,
        tokens=tokens,
        words=list(words),
        pairs=pairs,
        primary=primary,
        position=position,
        target_id=-1,
        target="",
        output=output,
        baseline=base_name,
        prob=float("nan"),
        clean_output=float("nan"),
        kept_first=first is not None,
    )
    with torch.no_grad():
        logits = setup.logits(embeds)
        if handle.model not in _EMBEDS_VERIFIED:
            check = handle.model(input_ids=input_ids, **extra).logits
            check = (check[:, position] if position is not None else check).float()
            tol = 1e-3 * max(1.0, float(check.abs().max()))
            _EMBEDS_VERIFIED[handle.model] = bool(torch.allclose(logits, check, rtol=1e-3, atol=tol))
    if not _EMBEDS_VERIFIED[handle.model]:
        raise ValueError(
            f"{handle.name} computes different outputs from input_ids and from inputs_embeds (it rescales or "
            "adds to its embeddings after the lookup), so embedding attributions would explain the wrong "
            "function; this architecture is not supported for attribution"
        )
    setup.target_id, setup.target = resolve_target(handle, target, logits[0])
    setup.prob = float(logits[0].softmax(-1)[setup.target_id])
    setup.clean_output = float(select_output(logits, setup.target_id, output)[0])
    return setup


KEEP_FIRST: tuple[bool | str, ...] = (True, False, "auto")


def _first_kept(handle: ModelHandle, keep_first: bool | str, special: np.ndarray) -> int | None:
    """Position of the first content token if ``keep_first`` keeps it in the baseline, else ``None``."""
    if isinstance(keep_first, str):
        if keep_first != "auto":
            raise ValueError(f"unknown keep_first {keep_first!r}: choose True, False or 'auto'")
    elif not isinstance(keep_first, (bool, np.bool_)):
        raise TypeError(f"keep_first must be True, False or 'auto', got {type(keep_first).__name__}")
    content = np.flatnonzero(~special)
    if not keep_first or len(content) == 0:
        return None
    if keep_first == "auto":
        # only a causal LM without BOS sees a content token at the attention-sink position 0; a one-token
        # text keeps its token as content (else there would be nothing to attribute)
        if handle.kind != "causal-lm" or content[0] != 0 or len(content) < 2:
            return None
        return 0
    if len(content) < 2:
        raise ValueError(
            "keep_first=True would keep the text's only content token, leaving nothing to attribute: "
            "pass keep_first=False or a longer text"
        )
    return int(content[0])


def _baseline_ids(
    handle: ModelHandle, baseline: str | int, ids: list[int], special: np.ndarray
) -> tuple[list[int] | None, str]:
    """Baseline token ids (content tokens replaced, special tokens kept) or ``None`` for zeros."""
    tok = handle.tokenizer
    if isinstance(baseline, (bool, np.bool_)):
        raise TypeError("baseline must be 'pad', 'mask', 'unk', 'zero' or a token id, not a bool")
    if isinstance(baseline, (int, np.integer)):
        weight: Any = input_embeddings(handle.model).weight
        vocab = int(weight.shape[0])
        if not 0 <= int(baseline) < vocab:
            raise ValueError(f"baseline token id {baseline} is out of range: the vocabulary has {vocab} ids")
        rid, name = int(baseline), f"token {int(baseline)} ({tok.convert_ids_to_tokens(int(baseline))})"
    elif baseline == "zero":
        return None, "zero embeddings"
    elif baseline in ("pad", "mask", "unk"):
        rid = getattr(tok, f"{baseline}_token_id")
        if rid is None:
            raise ValueError(
                f"{handle.name}'s tokenizer has no {baseline} token: use baseline='pad', 'zero' or a token id"
            )
        name = f"{baseline} token {getattr(tok, f'{baseline}_token')!r}"
    else:
        raise ValueError(
            f"unknown baseline {baseline!r}: choose from {', '.join(BASELINES)} or pass a token id"
        )
    return [i if special[t] else rid for t, i in enumerate(ids)], name


def resolve_target(handle: ModelHandle, target: str | int | None, logits: torch.Tensor) -> tuple[int, str]:
    """``(index, label)`` of ``target`` among the model's outputs; ``None`` is the top prediction."""
    n = int(logits.shape[-1])
    if target is None:
        idx = int(logits.argmax())
    elif isinstance(target, (bool, np.bool_)):
        raise TypeError("target must be a label, a token string, an index or None, not a bool")
    elif isinstance(target, (int, np.integer)):
        idx = int(target)
        if not 0 <= idx < n:
            what = "label index" if handle.kind == "classifier" else "token id"
            raise ValueError(f"{what} {idx} is out of range: {handle.name} has {n} outputs (0 … {n - 1})")
    elif isinstance(target, str):
        if handle.kind == "classifier":
            if target not in handle.labels:
                raise ValueError(
                    f"target {target!r} is not a label of {handle.name}: choose from {handle.labels} or pass an "
                    "index"
                )
            idx = handle.labels.index(target)
        else:
            ids = handle.tokenizer.encode(target, add_special_tokens=False)
            if len(ids) != 1:
                pieces = handle.tokenizer.convert_ids_to_tokens(ids)
                raise ValueError(
                    f"target {target!r} is {len(ids)} tokens {pieces} for {handle.name}, and a next-token target "
                    "must be one token: pass a single token (mind the leading space, e.g. ' Paris') or its id"
                )
            idx = int(ids[0])
    else:
        raise TypeError(
            f"target must be a label, a token string, an index or None, got {type(target).__name__}"
        )
    label = handle.labels[idx] if handle.kind == "classifier" else handle.tokenizer.decode([idx])
    return idx, label


# ------------------------------------------------------------------------------------------------
# Token attribution
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenAttribution:
    """How much each input token (and word) contributed to one prediction.

    - ``tokens``: the ``T`` model tokens, special tokens included; ``special``: bool ``[T]``, tokens the
      baseline keeps (their score is 0 by construction);
    - ``token_scores``: float ``[T]``, attribution per token, summed over the hidden dimension;
    - ``words`` / ``word_scores``: ``W`` words of the text and float ``[W]`` scores (sum of their tokens);
    - ``token_words``: int ``[T]``, first word of each token (``-1``: none);
    - ``target`` / ``target_id``: what was explained; ``prob``: its probability on the input;
      ``output``: ``"prob"``, ``"logit"`` or ``"log-prob"`` (the attributed quantity);
    - ``delta``: convergence delta of path methods (``None`` for the others); ``output_difference``:
      ``F(input) − F(baseline)`` where known (path methods), else ``None``.
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

    def plot(self, level: str = "word", ax: Any = None) -> Figure:
        """Bar chart of the scores (positive and negative in distinct colours)."""
        fig, ax = _figure(ax, (max(4.0, 0.45 * len(self.units(level))), 3.0))
        scores = self.scores(level)
        ax.bar(range(len(scores)), scores, color=["#2166ac" if s >= 0 else "#b2182b" for s in scores])
        ax.axhline(0, color="#888888", lw=0.8)
        ax.set_xticks(range(len(scores)), self.units(level), rotation=60, ha="right")
        ax.set_ylabel(f"attribution to {self.output}")
        ax.set_title(f"{self.method} → {self.target!r} (p={self.prob:.3f})")
        fig.tight_layout()
        return fig

    def __repr__(self) -> str:
        shown = ", ".join(f"{w!r}: {s:+.3f}" for w, s in zip(self.words[:8], self.word_scores[:8]))
        more = " …" if len(self.words) > 8 else ""
        delta = "" if self.delta is None else f", delta={self.delta:.2g}"
        return (
            f"TokenAttribution({self.method} → {self.target!r}, p={self.prob:.3f}{delta}, {{{shown}{more}}})"
        )


def _figure(ax: Any, size: tuple[float, float]) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size)
    return fig, fig.subplots()


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

    - ``target``: a classifier label (name or index), a next token (one-token string or id) for causal
      LMs, the masked token for masked LMs; ``None`` explains the current top prediction.
    - ``output``: the explained quantity, ``"prob"`` (default), ``"logit"`` or ``"log-prob"``.
    - ``baseline``: ``"pad"`` (default), ``"mask"``, ``"unk"``, ``"zero"`` or a token id; special tokens
      are kept (module docstring). ``keep_first``: keep the first content token too (``True``), never
      (``False``), or when the model is a causal LM without BOS (``"auto"``, default; see
      :func:`prepare_text`).
    - ``n_steps``: integration steps of Integrated Gradients; ``n_samples``: samples of GradientSHAP (25),
      KernelSHAP (200) and Shapley value sampling (25 permutations); ``window``: tokens per occlusion
      window; ``internal_batch_size``: rows per forward pass (default about 4,096 tokens per batch);
      ``seed``: for the sampling methods (the global random state is left untouched).
    - ``delta_tolerance``: warn when a path method's ``|delta|`` exceeds this fraction of
      ``|F(input) − F(baseline)|``.
    """
    m = get_method(method, "token")
    if n_steps < 2:
        raise ValueError(f"n_steps must be at least 2, got {n_steps}")
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
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
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
