"""Activation extraction: batched, length-sorted, padding-aware forward passes that read the chosen sites
and align model tokens to the corpus words exactly.

Alignment works on character offsets: every token is matched with the words its characters overlap, so
pre-split words (CoNLL-U) map one-to-one to output rows whatever the tokenizer does, and plain text is
read exactly as given. A word the tokenizer drops entirely (e.g. a lone zero-width character) is fed to
the model as the unknown token instead, with a warning, so it still gets a row.

Texts longer than the model's maximum are split into windows at word boundaries (with a warning) and
their rows concatenated, so the output still has one row per word.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.corpus import Corpus, as_corpus
from ..models.addresses import COMPONENTS, Site
from ..models.handle import ModelHandle
from ..models.hooks import run_capturing
from ..models.loading import as_handle
from .activations import FORMAT, FORMAT_VERSION, Activations, Chunk
from .alignment import align_tokens, special_template
from .fingerprint import corpus_digest, describe_differences, tokenizer_digest, weights_digest
from .zarrstore import Layout, ZarrStore, is_legacy_store, is_zarr_store

GRANULARITIES = ("word", "token")
AGGREGATIONS = ("mean", "first", "last", "max")


@dataclass
class _Sentence:
    """One tokenised sentence: content token ids, token→word pairs and the windows it runs in."""

    ids: list[int]
    token_texts: list[str]
    pairs: list[tuple[int, int]]  # (token, word): token overlaps word
    primary: list[int]  # first word of each token, -1 for none
    windows: list[tuple[int, int]]


def resolve_sites(
    handle: ModelHandle, layers: Any = None, components: Sequence[str] | str | None = "resid"
) -> list[Site]:
    """Sites for ``layers`` × ``components`` in forward order.

    Args:
        handle: The model.
        layers: ``None``/``"all"`` (embeddings and every block), an int, or a list of ints and
            ``"embed"``; negative ints count from the last block (-1 is the last).
        components: ``"resid"``, ``"mlp"``, a list of them, or ``"all"``/``None`` for both.

    Returns:
        The sites that exist (the embeddings have no MLP), in forward order.

    Raises:
        ValueError: For an unknown component or a layer the model does not have.

    Example:
        >>> [s.name for s in resolve_sites(load_model("minilm"), [0, -1], "mlp")]
        ['layer.0.mlp', 'layer.5.mlp']
    """
    if components is None or components == "all":
        comps: tuple[str, ...] = COMPONENTS
    elif isinstance(components, str):
        comps = (components,)
    else:
        comps = tuple(components)
    if not comps:
        raise ValueError("no components given: choose 'resid', 'mlp' or both")
    for c in comps:
        if c not in COMPONENTS:
            raise ValueError(f"unknown component {c!r}: choose from {', '.join(COMPONENTS)}")
    n = handle.num_layers
    if layers is None or layers == "all":
        layer_ids: list[int] = [-1, *range(n)]
    else:
        if isinstance(layers, (int, str, np.integer)):
            raw = [layers]
        elif isinstance(layers, Iterable):
            raw = list(layers)
        else:
            raise ValueError(
                f"layers must be None/'all', an int, 'embed' or a list of them, got {layers!r} ({type(layers).__name__})"
            )
        if not raw:
            raise ValueError("no layers given: pass layers=None for all, or a list such as [0, 3, 'embed']")
        layer_ids = []
        for lay in raw:
            if lay == "embed":
                layer_ids.append(-1)
            elif isinstance(lay, (int, np.integer)) and not isinstance(lay, bool):
                idx = int(lay) + n if lay < 0 else int(lay)
                if not 0 <= idx < n:
                    raise ValueError(
                        f"unknown layer {lay}: {handle.name} has {n} layers (0 … {n - 1}, negative counts from "
                        "the end, 'embed' for the embeddings)"
                    )
                layer_ids.append(idx)
            else:
                raise ValueError(f"unknown layer {lay!r}: use an int (0 … {n - 1}) or 'embed'")
    sites = [Site(lay, c) for lay in sorted(set(layer_ids)) for c in comps if not (lay < 0 and c != "resid")]
    if not sites:
        raise ValueError("the embeddings have only a residual stream: add 'resid' to components")
    return sorted(sites, key=lambda s: (s.layer, 0 if s.component == "mlp" else 1))


def extract_activations(
    model: ModelHandle | str,
    data: Corpus | str | Sequence[str] | Sequence[Sequence[str]],
    layers: Any = None,
    components: Sequence[str] | str | None = "resid",
    *,
    granularity: str = "word",
    aggregation: str = "mean",
    store: str | Path | None = None,
    overwrite: bool = False,
    repair: bool = False,
    client: Any = None,
    chunk_sentences: int = 256,
    batch_size: int = 32,
    max_batch_tokens: int = 4096,
    max_length: int | None = None,
    dtype: str = "float32",
    progress: bool | None = None,
) -> Activations:
    """Activations of ``data`` at the chosen sites, one row per word (or per token).

    Batched and length-sorted; words are aligned with tokens by character offsets.

    Args:
        model: A loaded model or a name for :func:`~neuronwidgets.core.load_model`.
        data: A :class:`~neuronwidgets.core.Corpus`, a text, texts, or sentences as lists of words.
        layers: See :func:`resolve_sites` (default: every layer).
        components: See :func:`resolve_sites` (default: the residual stream).
        granularity: ``"word"`` (subwords aggregated by ``aggregation``) or ``"token"`` (one row per
            model token, special tokens left out).
        aggregation: ``"mean"``, ``"first"``, ``"last"`` or ``"max"`` over a word's subwords.
        store: A folder to stream to, a Zarr v3 store (memory bounded by ``chunk_sentences``; resumable:
            calling again with the same arguments continues where an interrupted run stopped, and refuses,
            saying what differs, when the model's weights, tokenizer, corpus, sites, dtype or settings
            changed); ``None`` keeps it in memory.
        overwrite: Replace what is in ``store``.
        repair: Check every block of an existing store and re-extract the damaged ones.
        client: A ``distributed.Client``: the blocks of sentences are shared out to its workers, each
            writing its own blocks into ``store`` (required); the result is bit-identical to one process (the
            workers run with this process's torch thread count: matrix products round differently with
            another count).
        chunk_sentences: Sentences per stored chunk.
        batch_size: Texts per forward pass.
        max_batch_tokens: Most (padded) tokens per forward pass.
        max_length: Tokens per forward pass (default the model's maximum); longer texts are split.
        dtype: ``"float32"`` or ``"float16"`` for the stored values.
        progress: Show a progress bar (default: for more than a few batches).

    Returns:
        The activations, in memory or backed by the store.

    Raises:
        TypeError: If ``store`` is not a path.
        ValueError: For an unknown granularity, aggregation, dtype, site or layer, a non-positive size,
            a ``store`` that is a file, or a ``max_length`` with no room for text.

    Example:
        >>> acts = extract_activations("minilm", ["A wonderful film!"], components="all", store="acts/")
        >>> acts.matrix().shape  # 4 words x (7 x 384 resid + 6 x 1536 mlp)
        (4, 11904)
    """
    if store is not None:
        if not isinstance(store, (str, Path)):
            raise TypeError(f"store must be a folder path (str or Path), got {type(store).__name__}")
        if Path(store).exists() and not Path(store).is_dir():
            raise ValueError(f"store must be a folder, but {store} is a file: choose a folder path")
    plan = ExtractionPlan.make(
        model, data, layers, components, granularity, aggregation, chunk_sentences, batch_size,
        max_batch_tokens, max_length, dtype, in_memory=store is None,
    )  # fmt: skip
    if store is None:
        if client is not None:
            raise ValueError(
                "client= needs store=: each worker writes its blocks of sentences into the store"
            )
        chunk = plan.run_block(0)
        plan.warn()
        return Activations(plan.meta, [chunk])
    root = Path(store)
    opened = _prepare_store(root, plan, overwrite, repair)
    if isinstance(opened, Activations):
        return opened
    todo = [k for k, done in enumerate(opened.done()) if not done]
    if client is not None:
        from .sharding import extract_on_dask

        extract_on_dask(client, plan, root, todo)
    else:
        show = progress if progress is not None else len(plan.corpus) >= 256
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(plan.corpus), desc=f"extracting {plan.handle.name}", unit="sent", disable=not show
        )
        try:
            for k in todo:
                opened.write_block(k, plan.run_block(k))
                bar.update(plan.bounds[k][1] - plan.bounds[k][0])
        finally:
            bar.close()
        plan.warn()
    opened.mark_complete()
    return Activations.open(root)


@dataclass
class ExtractionPlan:
    """Everything an extraction needs, checked: model, corpus, sites, meta, blocks of sentences and the
    extractor (also what a Dask worker receives)."""

    handle: ModelHandle
    corpus: Corpus
    sites: list[Site]
    meta: dict[str, Any]
    bounds: list[tuple[int, int]]
    extractor: _Extractor
    threads: int = 1  # torch threads where the plan was made: Dask workers use as many (same bits)

    @classmethod
    def make(
        cls,
        model: ModelHandle | str,
        data: Any,
        layers: Any,
        components: Any,
        granularity: str,
        aggregation: str,
        chunk_sentences: int,
        batch_size: int,
        max_batch_tokens: int,
        max_length: int | None,
        dtype: str,
        in_memory: bool = False,
    ) -> ExtractionPlan:
        handle = as_handle(model)
        corpus = as_corpus(data)
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}: choose 'word' or 'token'")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}: choose from {', '.join(AGGREGATIONS)}")
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
        for name, v in (
            ("chunk_sentences", chunk_sentences),
            ("batch_size", batch_size),
            ("max_batch_tokens", max_batch_tokens),
        ):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r} ({type(v).__name__})")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 1
        ):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        sites = resolve_sites(handle, layers, components)
        limit = max_length or handle.max_length
        template = special_template(handle)
        budget = limit - len(template[0]) - len(template[1])
        if budget < 1:
            raise ValueError(f"max_length={limit} leaves no room for text after the special tokens")
        if in_memory:
            chunk_sentences = len(corpus)  # one chunk: best length sorting, memory is the corpus anyway
        meta: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model": handle.name,
            "sites": [s.name for s in sites],
            "widths": {s.name: handle.width(s) for s in sites},
            "granularity": granularity,
            "aggregation": aggregation if granularity == "word" else None,
            "dtype": dtype,
            "num_sentences": len(corpus),
            "max_length": limit,
            "chunk_sentences": chunk_sentences,
        }
        bounds = [(a, min(a + chunk_sentences, len(corpus))) for a in range(0, len(corpus), chunk_sentences)]
        extractor = _Extractor(
            handle, sites, granularity, aggregation, template, budget, batch_size, max_batch_tokens
        )
        return cls(handle, corpus, sites, meta, bounds, extractor, torch.get_num_threads())

    def run_block(self, k: int) -> Chunk:
        a, b = self.bounds[k]
        return self.extractor.run(self.corpus, a, b, self.meta["dtype"])

    def fingerprint(self) -> dict[str, Any]:
        """What the store's contents depend on: weights, tokenizer, corpus, sites, dtype and settings."""
        settings = {k: v for k, v in self.meta.items() if k not in ("format", "version", "sites", "dtype")}
        return {
            "weights": weights_digest(self.handle.model),
            "tokenizer": tokenizer_digest(self.handle.tokenizer),
            "corpus": corpus_digest(self.corpus),
            "sites": list(self.meta["sites"]),
            "dtype": self.meta["dtype"],
            "settings": settings,
        }

    def layout(self) -> Layout:
        """Blocks and unit offsets; token granularity tokenises the corpus once to count the tokens."""
        if self.meta["granularity"] == "word":
            counts = [len(w) for w in self.corpus.words]
        else:
            counter = copy.copy(self.extractor)
            counts = []
            for a, b in self.bounds:
                counts += [len(s.ids) for s in counter._tokenise(self.corpus, a, b)]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return Layout.of([(a, b - a) for a, b in self.bounds], offsets)

    def warn(self) -> None:
        ex, handle = self.extractor, self.handle
        if ex.replaced:
            warnings.warn(
                f"{ex.replaced} word(s) produced no token (e.g. zero-width characters) and were fed to the "
                f"model as {handle.tokenizer.unk_token or '?'!r} so that every word has a row",
                stacklevel=3,
            )
        if ex.split:
            warnings.warn(
                f"{ex.split} sentence(s) are longer than {self.meta['max_length']} tokens and were split into "
                "windows at word boundaries (each window is encoded separately)",
                stacklevel=3,
            )


def _prepare_store(
    root: Path, plan: ExtractionPlan, overwrite: bool, repair: bool
) -> ZarrStore | Activations:
    """Create the store, or check an existing one holds the same extraction (then resume, repair or reopen)."""
    fingerprint = plan.fingerprint()
    if is_legacy_store(root):
        if not overwrite:
            raise ValueError(
                f"{root} is an old-format activation store (NumPy + JSON, format 1), which cannot be resumed or "
                "appended to: pass overwrite=True to re-extract it as a Zarr store, or another folder "
                "(migrate_store(old, new) converts an old store without the model)"
            )
        shutil.rmtree(root)
    elif is_zarr_store(root):
        store = None
        if not overwrite:
            store = ZarrStore.open(root, mode="r+")
        if store is not None:
            diff = describe_differences(store.info.get("fingerprint", {}), fingerprint)
            if not diff and store.ready:
                if repair:
                    for k, _ in store.verify():
                        store.invalidate(k)
                elif store.complete:
                    return Activations.open(root)
                return store
            if diff:
                raise ValueError(
                    f"the store {root} holds a different extraction; what differs: {'; '.join(diff)}. Refusing "
                    "to append to it: pass a new folder, or overwrite=True to replace it"
                )
        shutil.rmtree(root)
    elif root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} exists and is not an activation store: choose an empty or new folder")
    return ZarrStore.create(root, plan.meta, fingerprint, plan.layout(), plan.corpus)


class _Extractor:
    def __init__(
        self,
        handle: ModelHandle,
        sites: list[Site],
        granularity: str,
        aggregation: str,
        template: tuple[list[int], list[int]],
        budget: int,
        batch_size: int,
        max_batch_tokens: int,
    ):
        self.handle = handle
        self.sites = sites
        self.granularity = granularity
        self.aggregation = aggregation
        self.prefix, self.suffix = template
        self.budget = budget
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.replaced = 0
        self.split = 0
        tok = handle.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self.unk = tok.unk_token or "?"

    # -- tokenisation and alignment --------------------------------------------------------------
    def _tokenise(self, corpus: Corpus, a: int, b: int) -> list[_Sentence]:
        tok = self.handle.tokenizer
        texts = corpus.texts[a:b]
        spans = corpus.spans[a:b]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sequence longer than the maximum": we split below
            enc = tok(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        out = []
        for j in range(b - a):
            ids, offs = list(enc["input_ids"][j]), list(enc["offset_mapping"][j])
            sent = self._align(texts[j], spans[j], ids, offs)
            if sent is None:
                sent = self._align_with_unk(texts[j], spans[j])
            out.append(sent)
        return out

    def _align(
        self, text: str, spans: list[tuple[int, int]], ids: list[int], offs: list[tuple[int, int]]
    ) -> _Sentence | None:
        pairs, primary = align_tokens(text, spans, offs)
        covered = {w for _, w in pairs}
        if len(covered) < len(spans):
            return None
        # a token's text is its span of the input; a token with an empty span (e.g. a lone space that the
        # tokenizer trims) shows its decoded form instead
        texts = [text[s:e] or self.handle.tokenizer.decode([i]) for i, (s, e) in zip(ids, offs)]
        return _Sentence(ids, texts, pairs, primary, self._windows(len(ids), primary))

    def _align_with_unk(self, text: str, spans: list[tuple[int, int]]) -> _Sentence:
        """Re-tokenise with every word that got no token replaced by the unknown token."""
        tok = self.handle.tokenizer
        offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        covered = {w for s, e in offsets for w, (ws, we) in enumerate(spans) if ws < e and s < we}
        pieces, new_spans, pos, last = [], [], 0, 0
        for w, (ws, we) in enumerate(spans):
            pieces.append(text[last:ws])
            pos += ws - last
            word = text[ws:we] if w in covered else self.unk
            self.replaced += w not in covered
            pieces.append(word)
            new_spans.append((pos, pos + len(word)))
            pos += len(word)
            last = we
        pieces.append(text[last:])
        new_text = "".join(pieces)
        enc = tok(new_text, add_special_tokens=False, return_offsets_mapping=True)
        sent = self._align(new_text, new_spans, list(enc["input_ids"]), list(enc["offset_mapping"]))
        if sent is None:
            raise ValueError(
                f"cannot align the tokens of {text!r} with its words, even with token-less words replaced by "
                f"{self.unk!r}"
            )
        return sent

    def _windows(self, n: int, primary: list[int]) -> list[tuple[int, int]]:
        if n <= self.budget:
            return [(0, n)]
        self.split += 1
        out, a = [], 0
        while a < n:
            b = min(a + self.budget, n)
            if b < n:
                # move the cut back to a word boundary, if the window holds more than one word
                cut = b
                while cut > a + 1 and primary[cut] == primary[cut - 1] and primary[cut] >= 0:
                    cut -= 1
                if cut > a + 1:
                    b = cut
            out.append((a, b))
            a = b
        return out

    # -- forward passes --------------------------------------------------------------------------
    def run(self, corpus: Corpus, a: int, b: int, dtype: str) -> Chunk:
        sents = self._tokenise(corpus, a, b)
        word_mode = self.granularity == "word"
        counts = [len(corpus.words[a + j]) if word_mode else len(s.ids) for j, s in enumerate(sents)]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        n_units = int(offsets[-1])
        widths = {s: self.handle.width(s) for s in self.sites}
        fill = float("-inf") if word_mode and self.aggregation == "max" else 0.0
        out = {s: torch.full((n_units, widths[s]), fill, dtype=torch.float32) for s in self.sites}

        # For each sentence: which token feeds which output row (and, for mean, how many feed each row).
        src_tokens: list[list[int]] = []
        dst_rows: list[list[int]] = []
        for j, s in enumerate(sents):
            base = int(offsets[j])
            if not word_mode:
                src_tokens.append(list(range(len(s.ids))))
                dst_rows.append([base + t for t in range(len(s.ids))])
                continue
            if self.aggregation in ("mean", "max"):
                chosen = s.pairs
            else:
                best: dict[int, int] = {}
                for t, w in s.pairs:
                    if w not in best or (t < best[w] if self.aggregation == "first" else t > best[w]):
                        best[w] = t
                chosen = [(t, w) for w, t in best.items()]
            src_tokens.append([t for t, _ in chosen])
            dst_rows.append([base + w for _, w in chosen])
        denom = None
        if word_mode and self.aggregation == "mean":
            denom = torch.bincount(torch.tensor([r for rows in dst_rows for r in rows]), minlength=n_units)
            denom = denom.clamp(min=1).to(torch.float32).unsqueeze(1)

        segments = [(j, wa, wb) for j, s in enumerate(sents) for wa, wb in s.windows]
        segments.sort(key=lambda seg: seg[2] - seg[1], reverse=True)
        for batch in self._batches(segments):
            self._run_batch(batch, sents, src_tokens, dst_rows, out)

        arrays: dict[str, np.ndarray] = {}
        for site, tensor in out.items():
            if denom is not None:
                tensor /= denom
            arr = tensor.numpy()
            arrays[site.name] = arr.astype(np.float16) if dtype == "float16" else arr
        units = (
            [list(corpus.words[a + j]) for j in range(b - a)] if word_mode else [s.token_texts for s in sents]
        )
        word_ids = None if word_mode else np.array([w for s in sents for w in s.primary], dtype=np.int64)
        return Chunk(offsets, units, arrays, word_ids)

    def _batches(self, segments: list[tuple[int, int, int]]) -> list[list[tuple[int, int, int]]]:
        """Group length-sorted segments (longest first, so the first one fixes the padded length)."""
        extra = len(self.prefix) + len(self.suffix)
        batches: list[list[tuple[int, int, int]]] = []
        cur: list[tuple[int, int, int]] = []
        for seg in segments:
            padded = (cur[0] if cur else seg)[2] - (cur[0] if cur else seg)[1] + extra
            if cur and (len(cur) >= self.batch_size or padded * (len(cur) + 1) > self.max_batch_tokens):
                batches.append(cur)
                cur = []
            cur.append(seg)
        if cur:
            batches.append(cur)
        return batches

    def _run_batch(
        self,
        batch: list[tuple[int, int, int]],
        sents: list[_Sentence],
        src_tokens: list[list[int]],
        dst_rows: list[list[int]],
        out: dict[Site, torch.Tensor],
    ) -> None:
        extra = len(self.prefix) + len(self.suffix)
        width = max(wb - wa for _, wa, wb in batch) + extra
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        src_pos: list[int] = []
        dst: list[int] = []
        for r, (j, wa, wb) in enumerate(batch):
            seq = self.prefix + sents[j].ids[wa:wb] + self.suffix
            ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1
            shift = r * width + len(self.prefix) - wa
            for t, row in zip(src_tokens[j], dst_rows[j]):
                if wa <= t < wb:
                    src_pos.append(shift + t)
                    dst.append(row)
        inputs: dict[str, Any] = {
            "input_ids": ids.to(self.handle.device),
            "attention_mask": mask.to(self.handle.device),
        }
        if self.handle.kind == "causal-lm":
            inputs["use_cache"] = False
        with torch.inference_mode():
            acts = run_capturing(self.handle, self.sites, inputs)
            src = torch.tensor(src_pos, dtype=torch.long)
            rows = torch.tensor(dst, dtype=torch.long)
            for site, act in acts.items():
                flat = act.reshape(-1, act.shape[-1]).float().cpu()
                picked = flat.index_select(0, src)
                target = out[site]
                if self.granularity == "word" and self.aggregation == "mean":
                    target.index_add_(0, rows, picked)
                elif self.granularity == "word" and self.aggregation == "max":
                    target.index_reduce_(0, rows, picked, "amax", include_self=True)
                else:
                    target.index_copy_(0, rows, picked)
