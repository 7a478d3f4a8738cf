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

import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..data.corpus import Corpus
from ..models.handle import ModelHandle
from ..models.loading import as_handle
from ..store.alignment import align_tokens

if TYPE_CHECKING:
    pass

OUTPUTS: tuple[str, ...] = ("prob", "logit", "log-prob")
# models whose outputs from inputs_embeds were checked to equal those from input_ids (an architecture fact)
_EMBEDS_VERIFIED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()
BASELINES: tuple[str, ...] = ("pad", "mask", "unk", "zero")


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
    label = handle.output_label(idx)
    return idx, label
