"""A model the user already has: :func:`wrap_model` turns a loaded ``transformers`` model and its tokenizer
into a :class:`~neuronwidgets.core.ModelHandle`, accepted everywhere a model name is."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .handle import KINDS, ModelHandle
from .loading import _detect_kind, _make_handle
from .runtime import resolve_device


def wrap_model(
    model: nn.Module,
    tokenizer: Any,
    *,
    name: str | None = None,
    kind: str | None = None,
    device: str | torch.device | None = None,
) -> ModelHandle:
    """A :class:`ModelHandle` over an already loaded ``transformers`` model and its (fast) tokenizer.

    The model is put in eval mode; the tokenizer gets a pad token if it has none and pads on the right
    (neuronwidgets aligns tokens with words that way). The model itself is not copied.

    Args:
        model: A ``transformers`` model (an ``nn.Module`` with a ``.config``).
        tokenizer: Its fast tokenizer.
        name: Shown in reprs and widgets (default: the config's ``_name_or_path``).
        kind: ``"encoder"``, ``"classifier"``, ``"masked-lm"`` or ``"causal-lm"``; by default read from the
            config's ``architectures`` (e.g. ``BertForSequenceClassification`` → classifier).
        device: ``None`` keeps the model where it is; ``"auto"``, ``"cpu"``, ``"cuda"``, ... move it.

    Returns:
        The handle, over the same model object.

    Raises:
        TypeError: If ``model`` or ``tokenizer`` is not a ``transformers`` one.
        ValueError: For a slow tokenizer or an unknown ``kind``.

    Example:
        >>> from transformers import AutoModelForSequenceClassification, AutoTokenizer
        >>> hf = AutoModelForSequenceClassification.from_pretrained("my-model-folder")
        >>> model = wrap_model(hf, AutoTokenizer.from_pretrained("my-model-folder"))
    """
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise TypeError(
            f"model must be a transformers model (an nn.Module with a .config), got {type(model).__name__}: "
            "e.g. wrap_model(AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path))"
        )
    if not callable(tokenizer) or not hasattr(tokenizer, "convert_ids_to_tokens"):
        raise TypeError(f"tokenizer must be a transformers tokenizer, got {type(tokenizer).__name__}")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            "tokenizer must be a fast tokenizer (AutoTokenizer.from_pretrained(..., use_fast=True)): "
            "neuronwidgets needs its offsets to align tokens with words"
        )
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: choose from {', '.join(KINDS)}")
    kind = kind or _detect_kind(model.config)
    display = name or str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
    where = resolve_device(device) if device is not None else next(model.parameters()).device
    return _make_handle(display, model, tokenizer, kind, str(where))
