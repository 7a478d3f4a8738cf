"""The forward passes of an extraction: tokenise a range of sentences, align tokens with words, split long
texts into windows, batch length-sorted segments and pool each site's token activations into word (or
token) rows. Used by :mod:`~neuronwidgets.core.store.extraction` (one process) and by the Dask workers.
"""

from __future__ import annotations

import mmap
import threading
import warnings
import weakref
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import torch

from ..data.corpus import Corpus
from ..models.addresses import Site
from ..models.handle import ModelHandle
from ..models.hooks import run_capturing
from .activations import Chunk
from .alignment import align_many


@dataclass
class _Sentence:
    """One tokenised sentence: content token ids, token→word pairs and the windows it runs in."""

    ids: np.ndarray  # int64 content token ids
    offsets: np.ndarray  # [n_tokens, 2] character offsets in ``text``
    text: str
    pair_token: np.ndarray  # (token, word) pairs: the token overlaps the word
    pair_word: np.ndarray
    primary: np.ndarray  # first word of each token, -1 for none
    windows: list[tuple[int, int]]

    def token_texts(self, tokenizer: Any) -> list[str]:
        """Each token's span of the text; a token with an empty span (e.g. a lone space that the tokenizer
        trims) shows its decoded form instead."""
        return [
            self.text[s:e] or tokenizer.decode([i])
            for i, (s, e) in zip(self.ids.tolist(), self.offsets.tolist())
        ]


def _to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` converted to ``dtype`` by torch (round to nearest even, as NumPy, several times faster
    for float16)."""
    return torch.from_numpy(values).to(getattr(torch, dtype.name)).numpy()


class _MapPool:
    """Group buffers in anonymous memory maps of their own, each handed back here when its last view goes
    and given out again for the same site's next group.

    A group's buffers are hundreds of MB, freed a group later. Allocated with ``malloc`` (``np.zeros``),
    those of a group a little under glibc's adaptive mmap threshold (up to 32 MB per buffer) come from the
    heap, where they leave holes that later allocations fragment: a 100k-sentence run's RSS then crept up
    by ≈ 470 MB (445 MB of it free but held at the end). A map of its own leaves no hole.

    Fresh pages cost a page fault and the kernel's zeroing each: measured, that was more than half of the
    word pooling's time (8.6 against 3.5 ms per batch). So some buffers come back here when freed: a
    float16 extraction's (half the size of float32 rows; a store writer frees them after writing, while the
    next group fills the map it freed before) and those of a consumer that takes a group before the next
    one starts (:attr:`_Extractor.reuse_buffers`, set by the streaming statistics). One free map is kept
    per site and handed out for the next group when it fits.

    Float32 buffers that a store writer consumes while the next group fills are not kept: two full sets
    would stay resident at once (tried: 4-10 % faster, but the peak RSS rose by 320 MB at 10k sentences).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()  # a finalizer may run while this thread holds it
        self._maps: dict[Site, mmap.mmap] = {}

    def clear(self) -> None:
        with self._lock:
            self._maps.clear()

    def _put(self, site: Site, mm: mmap.mmap) -> None:
        with self._lock:
            old = self._maps.get(site)
            if old is None or len(old) < len(mm):  # the larger stays
                self._maps[site] = mm

    def take(
        self, site: Site, shape: tuple[int, int], keep: bool, dtype: np.dtype
    ) -> tuple[torch.Tensor, bool]:
        """A ``dtype`` buffer of ``shape`` (contents undefined) and whether it is fresh (all zeros);
        ``keep``: its map comes back here when the buffer is freed."""
        count = shape[0] * shape[1]
        size = dtype.itemsize
        with self._lock:
            mm = self._maps.pop(site, None)
        if mm is not None and len(mm) < size * count:
            mm = None  # too small: unmapped once this reference goes, before a larger one is made
        fresh = mm is None
        if mm is None:
            # a kept map has room for a group up to 1/8 larger (groups differ by a few % in words): pages
            # never written are never resident, and the next group takes this map, not a fresh one
            mm = mmap.mmap(-1, size * max(count + (count // 8 if keep else 0), 1))
        base = np.frombuffer(mm, dtype, count=count)
        if keep:
            weakref.finalize(base, self._put, site, mm)
        return torch.from_numpy(base.reshape(shape)), fresh


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
        self._pool = _MapPool()
        #: The group buffers go back to the pool when freed even for float32 (see :class:`_MapPool`): only
        #: for a consumer that is done with a group before the next one is extracted.
        self.reuse_buffers = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_pool"]  # a Dask worker gets the extractor, not its buffers
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _pool=_MapPool())

    def __copy__(self) -> _Extractor:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__, _pool=_MapPool())
        return new

    def _buffers(
        self, n_units: int, widths: dict[Site, int], fill: float | None, keep: bool, dtype: np.dtype
    ) -> dict[Site, torch.Tensor]:
        """``dtype`` ``(n_units, width)`` buffers filled with ``fill``, one per site, for a group's rows
        (``None``: every row will be assigned, its starting value does not matter), from the pool of
        released buffers (:class:`_MapPool`; ``keep``: they go back there); fresh ones are zeros."""
        out = {}
        for s in self.sites:
            buf, fresh = self._pool.take(s, (n_units, widths[s]), keep, dtype)
            if fill is not None and not (fresh and fill == 0):
                buf.fill_(fill)
            out[s] = buf
        return out

    # -- tokenisation and alignment --------------------------------------------------------------
    def _encode(self, texts: list[str]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
        """Content token ids and character offsets of each text.

        A fast tokenizer whose backend is set as ``tokenizer(texts, add_special_tokens=False)`` sets it (no
        truncation, no padding, special tokens as the tokenizer says) is called directly: the same
        encodings, without transformers' conversion of each into Python lists and dicts (0.8 s per 4,096
        sentences, as long as the tokenisation itself).
        """
        tok = self.handle.tokenizer
        backend = getattr(tok, "backend_tokenizer", None) if getattr(tok, "is_fast", False) else None
        if (
            backend is not None
            and backend.truncation is None
            and backend.padding is None
            and getattr(backend, "encode_special_tokens", False)
            == bool(getattr(tok, "split_special_tokens", False))
        ):
            encs = backend.encode_batch(texts, add_special_tokens=False)
            return [e.ids for e in encs], [e.offsets for e in encs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sequence longer than the maximum": we split below
            enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), list(enc["offset_mapping"])

    def _sentences(self, texts: list[str], spans: list[list[tuple[int, int]]]) -> list[_Sentence | None]:
        """Tokenise and align ``texts``; ``None`` for a text with a word that no token covers."""
        id_lists, off_lists = self._encode(texts)
        counts = np.fromiter(map(len, id_lists), np.int64, len(texts))
        total = int(counts.sum())
        ids = np.fromiter(chain.from_iterable(id_lists), np.int64, total)
        offs = np.fromiter(chain.from_iterable(chain.from_iterable(off_lists)), np.int64, 2 * total)
        offs = offs.reshape(-1, 2)
        al = align_many(texts, spans, offs, counts)
        tstart = np.r_[0, np.cumsum(counts)]
        pstart = np.searchsorted(al.pair_text, np.arange(len(texts) + 1))
        out: list[_Sentence | None] = []
        for j, text in enumerate(texts):
            if not al.covered[j]:
                out.append(None)
                continue
            a, b, p, q = int(tstart[j]), int(tstart[j + 1]), int(pstart[j]), int(pstart[j + 1])
            primary = al.primary[a:b]
            windows = self._windows(b - a, primary)
            pairs = (al.pair_token[p:q], al.pair_word[p:q])
            out.append(_Sentence(ids[a:b], offs[a:b], text, *pairs, primary, windows))
        return out

    def _tokenise(self, corpus: Corpus, a: int, b: int) -> list[_Sentence]:
        texts = list(corpus.texts[a:b])
        spans = corpus.spans[a:b]
        sents = self._sentences(texts, spans)
        return [s if s is not None else self._align_with_unk(texts[j], spans[j]) for j, s in enumerate(sents)]

    def _align_with_unk(self, text: str, spans: list[tuple[int, int]]) -> _Sentence:
        """Re-tokenise with every word that got no token replaced by the unknown token."""
        offsets = self._encode([text])[1][0]
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
        sent = self._sentences([new_text], [new_spans])[0]
        if sent is None:
            raise ValueError(
                f"cannot align the tokens of {text!r} with its words, even with token-less words replaced by "
                f"{self.unk!r}"
            )
        return sent

    def _windows(self, n: int, primary: np.ndarray) -> list[tuple[int, int]]:
        if n <= self.budget:
            return [(0, n)]
        self.split += 1
        prim = primary.tolist()
        out, a = [], 0
        while a < n:
            b = min(a + self.budget, n)
            if b < n:
                # move the cut back to a word boundary, if the window holds more than one word
                cut = b
                while cut > a + 1 and prim[cut] == prim[cut - 1] and prim[cut] >= 0:
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
        mean = word_mode and self.aggregation == "mean"
        counts = [len(corpus.words[a + j]) if word_mode else len(s.ids) for j, s in enumerate(sents)]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        n_units = int(offsets[-1])
        widths = {s: self.handle.width(s) for s in self.sites}
        # Every row is written once (each word has a token, each token one window), so a buffer needs a
        # starting value only where rows accumulate: -inf for max, 0 for a mean over a sentence split into
        # windows (a word can get tokens from two of them). Without a split, a mean row is assigned its
        # sum (a reused buffer's old values are never read).
        split = any(len(s.windows) > 1 for s in sents)
        fill = float("-inf") if word_mode and self.aggregation == "max" else 0.0 if mean and split else None
        # A float16 extraction pools straight into float16 rows (rounded once, as a float32 row converted
        # afterwards: a mean is divided in float32 before; the max of rounded values is the rounded max),
        # except a mean that accumulates over windows, which is summed in float32 and converted at the end.
        half = dtype == "float16" and not (mean and split)
        buf_dtype = np.dtype(np.float16 if half else np.float32)
        out = self._buffers(n_units, widths, fill, dtype == "float16" or self.reuse_buffers, buf_dtype)

        # For each sentence: which token feeds which output row (and, for mean, how many feed each row).
        src_tokens: list[np.ndarray] = []
        dst_rows: list[np.ndarray] = []
        for j, s in enumerate(sents):
            base = int(offsets[j])
            if not word_mode:
                src_tokens.append(np.arange(len(s.ids), dtype=np.int64))
                dst_rows.append(base + src_tokens[-1])
                continue
            if self.aggregation in ("mean", "max"):
                tokens, words = s.pair_token, s.pair_word
            else:  # pairs run by token: a word's first pair has its first token, its last its last
                if self.aggregation == "first":
                    words, at = np.unique(s.pair_word, return_index=True)
                else:
                    words, at = np.unique(s.pair_word[::-1], return_index=True)
                    at = len(s.pair_word) - 1 - at
                tokens = s.pair_token[at]
            src_tokens.append(tokens)
            dst_rows.append(base + words)
        denom = n_tok = None
        if mean:
            n_tok = np.bincount(np.concatenate([*dst_rows, np.zeros(0, np.int64)]), minlength=n_units)
            if split:  # rows accumulate over windows: divided at the end
                multi = np.flatnonzero(n_tok > 1)  # x / 1 == x: only these rows are divided
                denom = (
                    torch.from_numpy(multi),
                    torch.from_numpy(n_tok[multi].astype(np.float32)).unsqueeze(1),
                )

        segments = [(j, wa, wb) for j, s in enumerate(sents) for wa, wb in s.windows]
        segments.sort(key=lambda seg: seg[2] - seg[1], reverse=True)
        for batch in self._batches(segments):
            self._run_batch(batch, sents, src_tokens, dst_rows, out, accumulate=split, n_tok=n_tok)

        arrays: dict[str, np.ndarray] = {}
        for site in list(out):
            tensor = out.pop(site)  # each float32 buffer is freed as soon as its site is converted
            if denom is not None and len(denom[0]):
                tensor[denom[0]] /= denom[1]
            # torch converts to float16 (round to nearest even, as NumPy) several times faster than NumPy
            arrays[site.name] = (
                tensor.to(torch.float16) if tensor.dtype != torch.float16 and dtype == "float16" else tensor
            ).numpy()
            del tensor
        units = (
            [list(corpus.words[a + j]) for j in range(b - a)]
            if word_mode
            else [s.token_texts(self.handle.tokenizer) for s in sents]
        )
        word_ids = None if word_mode else np.concatenate([np.zeros(0, np.int64), *(s.primary for s in sents)])
        return Chunk(offsets, units, arrays, word_ids)

    #: A forward pass's fixed cost in padded tokens, for :meth:`_batches` (MiniLM on 2 CPU cores: ≈ 10 ms a
    #: call, ≈ 0.28 ms a token; 20-60 batch the same within 0.3 %).
    BATCH_COST_TOKENS = 36

    def _batches(self, segments: list[tuple[int, int, int]]) -> list[list[tuple[int, int, int]]]:
        """Cut length-sorted segments (longest first, so each batch's first fixes its padded length) into
        batches of at most ``batch_size`` texts and ``max_batch_tokens`` padded tokens, with the least
        padded tokens plus :attr:`BATCH_COST_TOKENS` per batch (an exact dynamic programme over the cuts).

        Filling each batch to its limits before starting the next (the usual greedy cut) pads a batch up to
        its first text wherever lengths change inside it: 100k UD English sentences in extraction groups had
        11 % more tokens than sorting the whole corpus; the optimal cuts leave 1.2 %. A segment longer than
        ``max_batch_tokens`` runs alone.
        """
        extra = len(self.prefix) + len(self.suffix)
        lengths = [wb - wa + extra for _, wa, wb in segments]
        n, cap, per = len(lengths), self.max_batch_tokens, self.BATCH_COST_TOKENS
        cost = [0] * (n + 1)  # the least cost of batching segments 0 … i-1
        cut = [0] * (n + 1)  # the best batch ending before segment i starts at segment cut[i]
        for i in range(1, n + 1):
            best, arg = cost[i - 1] + lengths[i - 1] + per, i - 1
            for j in range(i - 2, max(0, i - self.batch_size) - 1, -1):
                padded = lengths[j] * (i - j)
                if padded > cap:  # earlier starts are longer and hold more: all over the cap
                    break
                c = cost[j] + padded + per
                if c < best:
                    best, arg = c, j
            cost[i], cut[i] = best, arg
        batches: list[list[tuple[int, int, int]]] = []
        i = n
        while i > 0:
            batches.append(segments[cut[i] : i])
            i = cut[i]
        return batches[::-1]

    def _run_batch(
        self,
        batch: list[tuple[int, int, int]],
        sents: list[_Sentence],
        src_tokens: list[np.ndarray],
        dst_rows: list[np.ndarray],
        out: dict[Site, torch.Tensor],
        accumulate: bool,
        n_tok: np.ndarray | None = None,
    ) -> None:
        """One forward pass; each site's token rows are pooled into ``out``'s rows (``accumulate``: a mean
        adds to the rows, which start at 0; otherwise it assigns each row its mean, its sum divided by its
        token count ``n_tok[row]`` in float32, then converted to the buffer's dtype)."""
        pre, suf = len(self.prefix), len(self.suffix)
        width = max(wb - wa for _, wa, wb in batch) + pre + suf
        ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        src_parts: list[np.ndarray] = []
        dst_parts: list[np.ndarray] = []
        for r, (j, wa, wb) in enumerate(batch):
            n = wb - wa
            ids[r, :pre] = self.prefix
            ids[r, pre : pre + n] = sents[j].ids[wa:wb]
            ids[r, pre + n : pre + n + suf] = self.suffix
            mask[r, : pre + n + suf] = 1
            src, dst = src_tokens[j], dst_rows[j]
            if wa > 0 or wb < len(sents[j].ids):
                keep = (src >= wa) & (src < wb)
                src, dst = src[keep], dst[keep]
            src_parts.append(src + (r * width + pre - wa))
            dst_parts.append(dst)
        inputs: dict[str, Any] = {
            "input_ids": torch.from_numpy(ids).to(self.handle.device),
            "attention_mask": torch.from_numpy(mask).to(self.handle.device),
        }
        if self.handle.kind == "causal-lm":
            inputs["use_cache"] = False
        src = np.concatenate([np.zeros(0, np.int64), *src_parts])
        rows = np.concatenate([np.zeros(0, np.int64), *dst_parts])
        mean = self.granularity == "word" and self.aggregation == "mean" and len(rows) > 0
        if mean:
            # A word's tokens are consecutive: sum each run of equal rows level by level (the 2nd tokens of
            # every run, then the 3rd, ...: each level's rows are distinct, so buffered fancy-index adds are
            # exact). NumPy here, not torch: torch's small indexing ops (index_add_ with repeated rows,
            # index_select) wait on its thread pool and cost 5-10x more.
            new_run = np.r_[True, rows[1:] != rows[:-1]]
            starts = np.flatnonzero(new_run)
            keys = rows[starts]
            run_of = np.cumsum(new_run) - 1
            rank = np.arange(len(rows)) - starts[run_of]
            levels = [np.flatnonzero(rank == j) for j in range(1, int(rank.max(initial=0)) + 1)]
            distinct = len(np.unique(keys)) == len(keys)  # not when a word is split across two windows
            if not (distinct or accumulate):
                raise AssertionError("a word's tokens are not consecutive in a sentence without windows")
            if not accumulate:
                assert n_tok is not None
                counts = n_tok[keys]
                multi = np.flatnonzero(counts > 1)  # x / 1 == x: only these rows are divided
                per = counts[multi].astype(np.float32)[:, None]
        with torch.inference_mode():
            acts = run_capturing(self.handle, self.sites, inputs)
            for site, act in acts.items():
                flat = act.reshape(-1, act.shape[-1]).float().cpu().numpy()
                target = out[site].numpy()
                if mean:
                    sums = flat[src[starts]]
                    for level in levels:
                        sums[run_of[level]] += flat[src[level]]
                    if not accumulate:
                        if len(multi):
                            sums[multi] /= per
                        # torch's conversion to float16: several times faster than NumPy's
                        target[keys] = sums if target.dtype == sums.dtype else _to(sums, target.dtype)
                    elif distinct:
                        target[keys] += sums
                    else:
                        np.add.at(target, keys, sums)
                    continue
                target_t = out[site]
                picked = torch.from_numpy(flat[src]).to(target_t.dtype)
                rows_t = torch.from_numpy(rows)
                if self.granularity == "word" and self.aggregation == "max":
                    target_t.index_reduce_(0, rows_t, picked, "amax", include_self=True)
                else:
                    target_t.index_copy_(0, rows_t, picked)
