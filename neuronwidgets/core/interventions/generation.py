"""Greedy generation under interventions: :func:`generate` continues a prompt with edits applied at every
position and step (steering with :func:`~neuronwidgets.core.interventions.steering_values`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from ..display import Result, clip, summary
from ..models.handle import ModelHandle
from ..models.hooks import site_hooks
from .edits import Intervention, _check_handle, compile_edits


@dataclass(frozen=True)
class Generation(Result):
    """A greedy continuation of ``prompt``: ``text`` (decoded, special tokens left out), the new token
    ``ids`` and their decoded ``tokens`` (one string per id).

    ``str(generation)`` (and :attr:`full_text`) is the prompt followed by the continuation.

    Attributes:
        prompt: The prompt that was continued.
        text: The continuation, decoded with special tokens left out.
        ids: The new token ids, in order.
        tokens: Each new token decoded on its own (one string per id).
    """

    prompt: str
    text: str
    ids: list[int]
    tokens: list[str]

    @property
    def full_text(self) -> str:
        return self.prompt + self.text

    def __str__(self) -> str:
        return self.full_text

    def __repr__(self) -> str:
        return summary(
            f"Generation({len(self.ids)} new tokens)",
            f"prompt: {clip(self.prompt)!r}",
            f"text:   {clip(self.text)!r}",
            doors=".to_frame() · str(generation) for the full text",
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per generated token: its position, id and decoded text."""
        return pd.DataFrame({"position": range(len(self.ids)), "id": self.ids, "token": self.tokens})


def generate(
    model: ModelHandle | str,
    prompt: str | Sequence[str],
    interventions: Intervention | Iterable[Intervention] | None = None,
    *,
    max_new_tokens: int = 20,
) -> Generation | list[Generation]:
    """Continue ``prompt`` greedily (deterministic) with ``interventions`` applied at every position and
    step; a causal LM only. Prompts run one at a time (no padding). A list of prompts gives a list.

    The model's own generation settings are used, made greedy (sampling settings reset); hooks are
    removed after each prompt, whatever happens.

    Args:
        model: A causal language model (a handle, or a name such as ``"smollm2"``).
        prompt: One prompt, or a list of them.
        interventions: Edits applied during generation (:class:`Intervention`, several, or ``None`` for
            the clean model).
        max_new_tokens: How many tokens to add (at least 1; fewer if the model ends the text).

    Returns:
        A :class:`Generation` for one prompt, a list of them (in order) for a list of prompts.

    Raises:
        ValueError: If the model is not a causal LM, ``max_new_tokens`` is below 1, no prompt is
            given, or an intervention names a neuron the model does not have.
        TypeError: For something that is not an :class:`Intervention` in ``interventions``.

    Example:
        >>> lm = load_model("smollm2")
        >>> steer = Intervention.set(steering_values(lm, ["layer.5.mlp:42"], positive_texts))
        >>> print(generate(lm, "The movie was", steer, max_new_tokens=10))
    """
    handle = _check_handle(model)
    if handle.kind != "causal-lm":
        raise ValueError(
            f"{handle.name} is a {handle.kind}, not a causal LM: generation needs one (e.g. 'smollm2')"
        )
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise ValueError("no prompts given")
    config = _greedy_config(handle, max_new_tokens)
    edits = compile_edits(handle, interventions)
    out = []
    for p in prompts:
        enc = handle.encode([p])
        with site_hooks(handle, list(edits), lambda site, act: edits[site](act)), torch.inference_mode():
            seq = handle.model.generate(**enc, generation_config=config)  # type: ignore[operator]
        ids = [int(i) for i in seq[0, enc["input_ids"].shape[1] :]]
        tok = handle.tokenizer
        out.append(
            Generation(
                p,
                tok.decode(ids, skip_special_tokens=True),
                ids,
                [tok.decode([i]) for i in ids],
            )
        )
    return out[0] if isinstance(prompt, str) else out


def _greedy_config(handle: ModelHandle, max_new_tokens: int) -> Any:
    """The model's own generation settings, made greedy (sampling settings reset so none is ignored)."""
    import copy

    from transformers import GenerationConfig

    base: Any = getattr(handle.model, "generation_config", None)
    config: Any = copy.deepcopy(base) if base is not None else GenerationConfig()
    config.do_sample = False
    config.num_beams = 1
    config.max_new_tokens = max_new_tokens
    config.max_length = None
    for name in ("temperature", "top_p", "top_k", "min_p", "typical_p"):
        if hasattr(config, name):
            setattr(config, name, None)
    if config.pad_token_id is None:
        config.pad_token_id = handle.tokenizer.pad_token_id
    return config
