"""What an activation store's contents depend on, as digests: the model's weights (every tensor of the
state dict), the tokenizer (its full serialisation), the corpus (words, texts, spans, labels); plus the
sites, dtype and settings in plain text, so a mismatch can say what differs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch


def corpus_digest(corpus: Any) -> str:
    """SHA-256 of a corpus's words, texts, spans and labels."""
    h = hashlib.sha256()
    # JSON writes a tuple as a list: the span tuples go in as they are (a copy as lists cost 0.4 s per 8,192
    # sentences and gave the same text)
    h.update(
        json.dumps([corpus.words, corpus.texts, corpus.spans, corpus.labels], ensure_ascii=False).encode()
    )
    return h.hexdigest()


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every tensor of the model's state dict (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().data)
    return h.hexdigest()


def tokenizer_digest(tokenizer: Any) -> str:
    """SHA-256 of the tokenizer's full serialisation (vocabulary, merges, normalisation, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    extra = json.dumps([type(tokenizer).__name__, str(tokenizer.all_special_tokens)])
    return hashlib.sha256((text + extra).encode()).hexdigest()


_WHAT = {
    "weights": "the model's weights (another checkpoint, or the model was changed/fine-tuned)",
    "tokenizer": "the tokenizer",
    "corpus": "the corpus (other sentences, words or labels)",
}


def describe_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key in _WHAT:
            out.append(_WHAT[key])
        elif isinstance(a, dict) and isinstance(b, dict):
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            out += [f"{k} (store: {a.get(k)!r}, now: {b.get(k)!r})" for k in keys]
        else:
            out.append(f"{key} (store: {a!r}, now: {b!r})")
    return out
