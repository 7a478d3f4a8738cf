"""Prefix caching for live interventions: recompute only from the first intervened block.

A live panel asks for the same text's prediction again and again under changing interventions. Every
block before the first intervened site computes exactly what the clean forward pass computed, so a
:class:`PrefixCache` keeps, per text batch, what each block received in one clean pass (the hidden state
and every other argument: attention masks, rotary position embeddings, position ids, in whatever form the
architecture passes them) and the clean prediction. An intervened prediction then runs only blocks
``start … L-1`` with the cached arguments (hidden state replaced) and the model's head at the predicted
positions.

Correctness first: the first time a model is used, the cache checks on that input that re-running every
block from the cached arguments reproduces the clean final hidden state, and it picks the head (final norm,
LM head, classifier, pooling) among a few known layouts by which one reproduces the clean logits. If either
check fails, or the model carries hooks of its own (an enclosing :func:`~neuronwidgets.core.ablate`, an
attribution method), the cache reports itself unusable and callers run the full forward pass instead.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models.addresses import Site
from ..models.handle import MeanPoolClassifier, ModelHandle
from ..models.hooks import site_hooks

# An edit maps one site's activation ``[batch, seq, width]`` to its replacement.
Edit = Callable[[torch.Tensor], torch.Tensor]
# A head maps the last block's hidden state and the encoding to logits at the predicted positions.
Head = Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]

_FINAL_NORMS = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f", "layer_norm")
_MAX_BYTES = 256 * 2**20
_MAX_ENTRIES = 16


@dataclass
class _Entry:
    """The clean forward pass of one batch of texts."""

    enc: dict[str, torch.Tensor]
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]]  # each block's (args, kwargs)
    hidden: list[torch.Tensor]  # the hidden state entering each block, [batch, seq, hidden]
    final: torch.Tensor  # the hidden state leaving the last block
    logits: torch.Tensor  # clean logits at the predicted positions, [batch, outputs]
    nbytes: int


class PrefixCache:
    """Clean forward passes of recent inputs of one model, and partial re-runs from them.

    ``status`` is ``"unverified"`` until the first input is cached, then ``"ok"`` or the reason the cache
    cannot be used for this model (callers then run the full forward pass).
    """

    def __init__(self, max_entries: int = _MAX_ENTRIES, max_bytes: int = _MAX_BYTES):
        self.status = "unverified"
        self.head_name: str | None = None
        self._head: Head | None = None
        self._entries: OrderedDict[tuple[str, ...], _Entry] = OrderedDict()
        self._state: int | None = None
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    # -- public --------------------------------------------------------------------------------
    def logits(
        self, handle: ModelHandle, texts: Sequence[str], edits: Mapping[Site, Edit]
    ) -> torch.Tensor | None:
        """Logits ``[batch, outputs]`` at the predicted positions with ``edits`` applied, or ``None`` when
        the cache cannot serve this call (unverifiable model, training mode, hooks of someone else): run
        the full forward pass then."""
        if self.status not in ("ok", "unverified") or handle.kind == "encoder" or handle.model.training:
            return None
        state = _model_state(handle.model)
        if state is None:
            return None
        entry = self._entry(handle, tuple(texts), state)
        if entry is None:
            return None
        if not edits:
            return entry.logits
        n = handle.num_layers
        # a site's first block: an MLP site (neurons or output) is inside block L; a residual site (the output of block L,
        # layer -1 for the embeddings) is the input of block L+1, so it is edited directly
        start = min(s.layer if s.component != "resid" else s.layer + 1 for s in edits)
        manual = next((s for s in edits if s.component == "resid" and s.layer + 1 == start), None)
        h = entry.hidden[start] if start < n else entry.final
        if manual is not None:
            h = edits[manual](h)
        hooked = [s for s in edits if s != manual]
        with site_hooks(handle, hooked, lambda site, act: edits[site](act)):
            h = _run_blocks(handle, entry, start, h)
        assert self._head is not None
        return self._head(h, entry.enc)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    # -- entries -------------------------------------------------------------------------------
    def _entry(self, handle: ModelHandle, key: tuple[str, ...], state: int) -> _Entry | None:
        if state != self._state:  # weights edited or replaced since: nothing cached is valid
            self._entries.clear()
            self._state = state
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        entry, problem = _capture(handle, list(key))
        if problem is None and self.status == "unverified":
            problem = self._verify(handle, entry)
        if problem is not None:
            self.status = problem
            self._entries.clear()
            return None
        self.status = "ok"
        if entry.nbytes <= self.max_bytes:
            self._entries[key] = entry
            total = sum(e.nbytes for e in self._entries.values())
            while len(self._entries) > self.max_entries or total > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                total -= old.nbytes
        return entry

    def _verify(self, handle: ModelHandle, entry: _Entry) -> str | None:
        """Check, once per model, that cached block arguments and a known head reproduce the clean pass."""
        rerun = _run_blocks(handle, entry, 0, entry.hidden[0])
        if not _close(rerun, entry.final):
            return "re-running the blocks from their recorded arguments does not reproduce the forward pass"
        for name, head in _head_candidates(handle):
            try:
                out = head(entry.final, entry.enc)
            except Exception:
                continue
            if out.shape == entry.logits.shape and _close(out, entry.logits):
                self._head, self.head_name = head, name
                return None
        return f"no known head layout of {type(handle.model).__name__} reproduces its logits"


_CACHES: weakref.WeakKeyDictionary[ModelHandle, PrefixCache] = weakref.WeakKeyDictionary()


def prefix_cache(handle: ModelHandle) -> PrefixCache:
    """The prefix cache of ``handle`` (created on first use, dropped with the handle)."""
    cache = _CACHES.get(handle)
    if cache is None:
        cache = _CACHES[handle] = PrefixCache()
    return cache


# ------------------------------------------------------------------------------------------------
# Capturing and re-running blocks
# ------------------------------------------------------------------------------------------------


def _capture(handle: ModelHandle, texts: list[str]) -> tuple[_Entry, str | None]:
    """One clean forward pass recording every block's arguments and output."""
    enc = handle.encode(texts)
    n = handle.num_layers
    calls: list[tuple[tuple[Any, ...], dict[str, Any]] | None] = [None] * n
    outputs: list[torch.Tensor | None] = [None] * n
    removers = []

    def pre(i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            calls[i] = (args, dict(kwargs))

        return hook

    def post(i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            outputs[i] = output[0] if isinstance(output, tuple) else output

        return hook

    extra: dict[str, Any] = {"use_cache": False} if handle.kind == "causal-lm" else {}
    try:
        for i, block in enumerate(handle.blocks):
            removers.append(block.register_forward_pre_hook(pre(i), with_kwargs=True))
            removers.append(block.register_forward_hook(post(i)))
        out = handle.model(**enc, **extra)
    finally:
        for r in removers:
            r.remove()
    logits = _select(handle, enc, out.logits)
    if any(c is None for c in calls) or any(o is None for o in outputs):
        return _Entry(enc, [], [], logits, logits, 0), "the forward pass skipped a block"
    done_calls = [c for c in calls if c is not None]
    done_outputs = [o for o in outputs if o is not None]
    hidden = [_hidden_of(a, k) for a, k in done_calls]
    entry = _Entry(enc, done_calls, hidden, done_outputs[-1], logits, 0)
    for i in range(n - 1):
        if not (done_outputs[i] is hidden[i + 1] or torch.equal(done_outputs[i], hidden[i + 1])):
            return entry, f"block {i + 1} does not receive block {i}'s output"
    if any(_holds_state(v) for a, k in done_calls for v in (*a, *k.values())):
        return entry, "the blocks receive a key/value cache, which a re-run would extend"
    tensors = {id(t): t for a, k in done_calls for t in (*a, *k.values()) if isinstance(t, torch.Tensor)}
    tensors.update({id(t): t for t in hidden})
    entry.nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    return entry, None


def _hidden_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _with_hidden(
    args: tuple[Any, ...], kwargs: dict[str, Any], h: torch.Tensor
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if args:
        return (h, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": h}


def _run_blocks(handle: ModelHandle, entry: _Entry, start: int, h: torch.Tensor) -> torch.Tensor:
    for i in range(start, handle.num_layers):
        args, kwargs = _with_hidden(*entry.calls[i], h)
        out = handle.blocks[i](*args, **kwargs)
        h = out[0] if isinstance(out, tuple) else out
    return h


def _holds_state(value: Any) -> bool:
    """A stateful cache object (e.g. transformers' ``DynamicCache``) that blocks would update."""
    return type(value).__name__.endswith("Cache") and not isinstance(value, torch.Tensor)


# ------------------------------------------------------------------------------------------------
# Heads: from the last block's hidden state to the logits ModelHandle.logits returns
# ------------------------------------------------------------------------------------------------


def _select(handle: ModelHandle, enc: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    """Logits at the predicted positions, as :meth:`ModelHandle.logits` selects them."""
    if handle.kind == "classifier":
        return logits
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, handle.positions(enc)]


def _at_positions(handle: ModelHandle, h: torch.Tensor, enc: dict[str, torch.Tensor]) -> torch.Tensor:
    rows = torch.arange(h.shape[0], device=h.device)
    return h[rows, handle.positions(enc)]


def _head_candidates(handle: ModelHandle) -> list[tuple[str, Head]]:
    """Known head layouts; the first that reproduces the clean logits is used."""
    model = handle.model
    if isinstance(model, MeanPoolClassifier):
        return [("mean pooling + head", lambda h, enc: model.head(model.pool(h, enc["attention_mask"])))]
    base = getattr(model, "base_model", model)
    norm = next(
        (m for m in (getattr(base, name, None) for name in _FINAL_NORMS) if isinstance(m, nn.Module)), None
    )
    norms: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [("", lambda h: h)]
    if norm is not None:
        norms.insert(0, ("final norm + ", norm))
    out: list[tuple[str, Head]] = []
    if handle.kind in ("causal-lm", "masked-lm"):
        heads = [
            (name, m)
            for name in ("lm_head", "cls", "vocab_projector")
            if isinstance(m := getattr(model, name, None), nn.Module)
        ]
        for name, head in heads:
            for label, f in norms:
                out.append((f"{label}{name}", _lm_head(handle, f, head)))
    elif handle.kind == "classifier":
        classifier = getattr(model, "classifier", None)
        pooler = getattr(base, "pooler", None)
        if isinstance(classifier, nn.Module):
            out.append(("classifier", lambda h, enc: classifier(h)))
            if isinstance(pooler, nn.Module):
                out.append(("pooler + classifier", lambda h, enc: classifier(pooler(h))))
        score = getattr(model, "score", None)
        if isinstance(score, nn.Module):
            for label, f in norms:
                out.append((f"{label}score", _last_token_score(handle, f, score)))
    return out


def _lm_head(handle: ModelHandle, norm: Callable[[torch.Tensor], torch.Tensor], head: nn.Module) -> Head:
    # the head only at the predicted positions: a vocabulary projection of every token is wasted work
    return lambda h, enc: head(norm(_at_positions(handle, h, enc)))


def _last_token_score(
    handle: ModelHandle, norm: Callable[[torch.Tensor], torch.Tensor], score: nn.Module
) -> Head:
    def head(h: torch.Tensor, enc: dict[str, torch.Tensor]) -> torch.Tensor:
        last = enc["attention_mask"].sum(1) - 1
        return score(norm(h[torch.arange(h.shape[0], device=h.device), last]))

    return head


# ------------------------------------------------------------------------------------------------
# Guards
# ------------------------------------------------------------------------------------------------


def has_hooks(model: nn.Module) -> bool:
    """Whether any forward hook is registered on ``model``'s modules or globally (then activations may
    differ from a clean pass, so nothing may be cached or reused)."""
    return _model_state(model) is None


def _model_state(model: nn.Module) -> int | None:
    """A key that changes whenever a parameter or buffer is edited in place or replaced; ``None`` when
    forward hooks are registered (one pass over the modules: this runs on every live update)."""
    from torch.nn.modules import module as nn_module

    if getattr(nn_module, "_global_forward_hooks", None) or getattr(
        nn_module, "_global_forward_pre_hooks", None
    ):
        return None
    key = []
    for m in model.modules():
        if m._forward_hooks or m._forward_pre_hooks:
            return None
        for group in (m._parameters, m._buffers):
            for t in group.values():
                if t is not None:
                    key.append((t.data_ptr(), t._version))
    return hash(tuple(key))


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    scale = float(b.abs().max()) if b.numel() else 0.0
    return bool(torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-5 * max(1.0, scale)))
