"""The :class:`ModelHandle`: one object that knows a model's tokenizer, blocks and sites (whose neurons
can be read or changed), and how to turn a forward pass into labelled probabilities (:class:`Prediction`).
Built by :func:`~neuronwidgets.core.models.load_model` or :func:`~neuronwidgets.core.models.wrap_model`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..display import TableResult, summary
from .addresses import COMPONENTS, DEFAULT_COMPONENTS, NeuronAddress, Site, parse_neuron, parse_site

KINDS = ("encoder", "classifier", "masked-lm", "causal-lm")


@dataclass(frozen=True)
class Prediction(TableResult):
    """Labelled probabilities for one text (what :meth:`ModelHandle.predict` returns).

    Attributes:
        text: The text predicted on.
        kind: The model's kind (``"classifier"``, ``"masked-lm"``, ``"causal-lm"``).
        labels: Class names (classifier) or decoded tokens (language models), best first.
        probs: Float array ``[len(labels)]`` of probabilities, aligned with ``labels``.
        ids: Token ids for language models, class indices for classifiers.
    """

    _plot_columns = ("label", "prob")

    text: str
    kind: str
    labels: list[str]
    probs: np.ndarray
    ids: list[int]

    @property
    def top(self) -> str:
        return self.labels[0]

    @property
    def top_prob(self) -> float:
        return float(self.probs[0])

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"label": self.labels, "prob": self.probs, "id": self.ids})

    def __repr__(self) -> str:
        shown = ", ".join(f"{lab!r}: {p:.3f}" for lab, p in zip(self.labels[:5], self.probs[:5]))
        return summary(f"Prediction({self.kind}, {{{shown}}})")


class MeanPoolClassifier(nn.Module):
    """Encoder + mean pooling + L2 normalisation + linear head (how the sentiment head was trained)."""

    def __init__(self, encoder: nn.Module, num_labels: int):
        super().__init__()
        self.encoder = encoder
        config: Any = encoder.config
        self.config = config
        self.head = nn.Linear(int(config.hidden_size), num_labels)

    @staticmethod
    def pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        out = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
        )
        if attention_mask is None:
            ref = input_ids if input_ids is not None else inputs_embeds[..., 0]  # type: ignore[index]
            attention_mask = torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device)
        logits = self.head(self.pool(out.last_hidden_state, attention_mask))
        return SequenceClassifierOutput(logits=logits)


@dataclass(eq=False)
class ModelHandle:
    """A loaded model and everything neuronwidgets needs to know about it (made by :func:`load_model`).

    Attributes:
        name: The name it was loaded by.
        model: The ``nn.Module``, in eval mode.
        tokenizer: A fast tokenizer (character offsets align words).
        kind: ``"encoder"``, ``"classifier"``, ``"masked-lm"`` or ``"causal-lm"``.
        blocks: The transformer blocks in order.
        labels: Class names for classifiers (empty otherwise).
    """

    name: str
    model: nn.Module
    tokenizer: Any
    kind: str
    blocks: nn.ModuleList
    labels: list[str] = field(default_factory=list)
    _down_proj_path: str = ""

    # -- pickling ---------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The model and its blocks travel as one pickle that survives transformers' output-capturing
        hooks (:mod:`~neuronwidgets.core.models.shipping`); Dask ships a handle to its workers this way."""
        from .shipping import dumps

        state = dict(self.__dict__)
        state["_modules"] = dumps((state.pop("model"), state.pop("blocks")))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import pickle

        state = dict(state)
        model, blocks = pickle.loads(state.pop("_modules"))
        self.__dict__.update(state, model=model, blocks=blocks)

    def __copy__(self) -> ModelHandle:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)  # shallow: the same model
        return new

    # -- structure -------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def mlp_size(self) -> int:
        proj = self.down_proj(0)
        if isinstance(proj, nn.Linear):
            return int(proj.in_features)
        weight: Any = proj.weight
        return int(weight.shape[0])  # GPT-2's Conv1D stores its weight as [in, out]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def components(self) -> tuple[str, ...]:
        return COMPONENTS

    @property
    def layer_names(self) -> list[str]:
        return ["embed"] + [f"layer.{i}" for i in range(self.num_layers)]

    def sites(self, components: Sequence[str] | str | None = None) -> list[Site]:
        """All sites in forward order: ``embed.resid``, then per block ``mlp``, ``mlp_out``, ``resid``
        (default: ``resid`` and ``mlp``)."""
        comps = _as_components(components)
        out: list[Site] = []
        if "resid" in comps:
            out.append(Site(-1, "resid"))
        for i in range(self.num_layers):
            for c in ("mlp", "mlp_out", "resid"):
                if c in comps:
                    out.append(Site(i, c))
        return out

    def width(self, site: Site | str) -> int:
        site = self.check_site(site)
        return self.mlp_size if site.component == "mlp" else self.hidden_size

    def check_site(self, site: Site | str) -> Site:
        """Parse a site and check it exists in this model; the error names what does."""
        site = parse_site(site)
        if site.layer >= self.num_layers:
            raise ValueError(
                f"unknown layer {site.layer} in {site.name!r}: {self.name} has {self.num_layers} layers "
                f"(layer.0 … layer.{self.num_layers - 1}, plus 'embed')"
            )
        return site

    def check_neuron(self, neuron: NeuronAddress | str) -> NeuronAddress:
        """Parse a neuron address and check its layer and index against this model."""
        addr = parse_neuron(neuron)
        self.check_site(addr.site)
        width = self.width(addr.site)
        if addr.index >= width:
            raise ValueError(
                f"neuron index {addr.index} is out of range for {addr.site.name} of {self.name}: "
                f"valid indices are 0 … {width - 1}"
            )
        return addr

    def block(self, layer: int) -> nn.Module:
        return self.blocks[layer]

    def down_proj(self, layer: int) -> nn.Module:
        return self.blocks[layer].get_submodule(self._down_proj_path)

    @property
    def max_length(self) -> int:
        """Most tokens one forward pass accepts, special tokens included."""
        limits = []
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
            limits.append(tok_max)
        pos = getattr(self.config, "max_position_embeddings", None) or getattr(
            self.config, "n_positions", None
        )
        if pos:
            # RoBERTa-style position ids start after the padding index
            offset = (
                2 if getattr(self.config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"} else 0
            )
            limits.append(int(pos) - offset)
        return min(limits) if limits else 512

    # -- inputs ----------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], truncate: bool = True) -> dict[str, torch.Tensor]:
        """Tokenise a batch for a forward pass, truncating (with a warning) to :attr:`max_length`."""
        texts = _check_texts(texts)
        enc = self.tokenizer(list(texts), padding=True, truncation=False, return_tensors="pt")
        if enc["input_ids"].shape[1] > self.max_length:
            if not truncate:
                raise ValueError(
                    f"a text has {enc['input_ids'].shape[1]} tokens, more than {self.name}'s maximum of "
                    f"{self.max_length}: shorten it or split it into sentences"
                )
            warnings.warn(
                f"a text is longer than {self.name}'s maximum of {self.max_length} tokens; it was truncated "
                "(extract_activations splits long texts instead)",
                stacklevel=3,
            )
            enc = self.tokenizer(
                list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
        return {
            k: v.to(self.device)
            for k, v in enc.items()
            if k in ("input_ids", "attention_mask", "token_type_ids")
        }

    # -- predictions -----------------------------------------------------------------------------
    def logits(self, texts: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Output logits for a batch: ``[batch, labels]`` for classifiers, ``[batch, vocab]`` at the
        predicted position for language models (last real token / first mask). Computed without autograd:
        the tensors are detached (attribution methods run the model themselves when they need gradients)."""
        if self.kind == "encoder":
            raise ValueError(
                f"{self.name} is an encoder without a prediction head, so it has nothing to predict: use it to "
                "extract activations, or load 'minilm-sentiment' (a classifier) or a causal/masked LM"
            )
        enc = self.encode(texts)
        with torch.no_grad():
            logits = self.model(**enc).logits
        if self.kind == "classifier":
            return logits, enc
        return logits[torch.arange(logits.shape[0]), self.positions(enc)], enc

    def positions(self, enc: dict[str, torch.Tensor]) -> torch.Tensor:
        """The predicted position of each row of an encoded batch: the last real token for causal LMs
        (right padding, see ``_make_handle``), the first mask token for masked LMs."""
        if self.kind == "causal-lm":
            return enc["attention_mask"].sum(1) - 1
        is_mask = enc["input_ids"] == self.tokenizer.mask_token_id
        if not bool(is_mask.any(1).all()):
            raise ValueError(
                f"a masked-LM prediction needs a {self.tokenizer.mask_token} token in every text"
            )
        return is_mask.float().argmax(1)

    def predict(self, text: str | Sequence[str], top_k: int = 5) -> Prediction | list[Prediction]:
        """Labelled probabilities: every class for a classifier, the ``top_k`` next (or masked) tokens
        for a language model. A list of texts gives a list of predictions."""
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or int(top_k) < 1:
            raise ValueError(f"top_k must be a positive int (how many predictions to list), got {top_k!r}")
        top_k = int(top_k)
        single = isinstance(text, str)
        texts: list[str] = [text] if isinstance(text, str) else list(text)
        with torch.inference_mode():
            logits, _ = self.logits(texts)
            probs = logits.float().softmax(-1).cpu()
        preds = [self._prediction(t, p, top_k) for t, p in zip(texts, probs)]
        return preds[0] if single else preds

    def output_label(self, index: int) -> str:
        """The name of output ``index``: a classifier's label, or a causal/masked LM's decoded token."""
        if self.kind == "classifier":
            return str(self.labels[index])
        return str(self.tokenizer.decode([int(index)]))

    def _prediction(self, text: str, probs: torch.Tensor, top_k: int) -> Prediction:
        if self.kind == "classifier":
            order = torch.argsort(probs, descending=True)
            return Prediction(
                text,
                self.kind,
                [self.labels[int(i)] for i in order],
                probs[order].numpy(),
                [int(i) for i in order],
            )
        values, ids = probs.topk(min(top_k, probs.shape[0]))
        labels = [self.output_label(int(i)) for i in ids]
        return Prediction(text, self.kind, labels, values.numpy(), [int(i) for i in ids])

    def __repr__(self) -> str:
        return (
            f"ModelHandle({self.name!r}, kind={self.kind!r}, layers={self.num_layers}, hidden={self.hidden_size}, "
            f"mlp={self.mlp_size}, device={str(self.device)!r})"
        )


def _as_components(components: Sequence[str] | str | None) -> tuple[str, ...]:
    if components is None:
        return DEFAULT_COMPONENTS
    if isinstance(components, str):
        components = [components]
    for c in components:
        if c not in COMPONENTS:
            raise ValueError(f"unknown component {c!r}: choose from {', '.join(COMPONENTS)}")
    return tuple(components)


def _check_texts(texts: Sequence[str]) -> Sequence[str]:
    if isinstance(texts, str):
        texts = [texts]
    if len(texts) == 0:
        raise ValueError("no texts given: pass at least one non-empty string")
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"texts must be strings, got {type(t).__name__}")
        if not t.strip():
            raise ValueError("empty text: every text needs at least one non-space character")
    return texts
