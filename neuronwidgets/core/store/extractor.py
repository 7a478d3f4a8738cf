"""The forward passes of an extraction: tokenise a range of sentences, align tokens with words, split long
texts into windows, batch length-sorted segments and pool each site's token activations into word (or
token) rows. Used by :mod:`~neuronwidgets.core.store.extraction` (one process) and by the Dask workers.
"""

from __future__ import annotations

import mmap
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.corpus import Corpus
from ..models.addresses import Site
from ..models.handle import ModelHandle
from ..models.hooks import run_capturing
from .activations import Chunk
from .alignment import align_tokens


@dataclass
class _Sentence:
    """One tokenised sentence: content token ids, token→word pairs and the windows it runs in."""

    ids: list[int]
    token_texts: list[str]
    pairs: list[tuple[int, int]]  # (token, word): token overlaps word
    primary: list[int]  # first word of each token, -1 for none
    windows: list[tuple[int, int]]


def _mapped(shape: tuple[int, ...], dtype: type[np.generic]) -> torch.Tensor:
    """Zeros of ``shape`` in their own anonymous memory map, as a tensor (the NumPy view shares it).

    A group's buffers are hundreds of MB, freed a group later. Allocated with ``malloc`` (``np.zeros``),
    those of a group a little under glibc's adaptive mmap threshold (up to 32 MB per buffer) come from the
    heap, where they leave holes that later allocations fragment: a 100k-sentence run's RSS then crept up
    by ≈ 470 MB (445 MB of it free but held at the end). A memory map of their own is returned to the
    system when the last view of it goes, and its pages, like ``calloc``'s, become resident only as batches
    fill them.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes == 0:
        return torch.from_numpy(np.zeros(shape, dtype))
    return torch.from_numpy(np.frombuffer(mmap.mmap(-1, nbytes), dtype).reshape(shape))


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
        self._scratch: dict[Site, torch.Tensor] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_scratch": {}}  # a Dask worker gets the extractor, not its buffers

    def _buffers(
        self, n_units: int, widths: dict[Site, int], reuse: bool, fill: float
    ) -> dict[Site, torch.Tensor]:
        """Float32 ``(n_units, width)`` buffers filled with ``fill``, one per site, for a group's rows.

        ``reuse``: the buffers do not leave :meth:`run` (they are converted to float16 there), so they are
        kept for the next group and filled again. Fresh pages cost a page fault and the kernel's zeroing
        each; measured, that was more than half of the aggregation's time (8.6 against 3.5 ms per batch).
        Fresh buffers are zeros already and are written only when ``fill`` is not 0.
        """
        out = {}
        if not reuse:
            self._scratch.clear()
        for s in self.sites:
            if reuse:
                buf = self._scratch.get(s)
                if buf is None or buf.shape[0] < n_units:
                    self._scratch.pop(s, None)  # the smaller one goes before the larger one is mapped
                    buf = self._scratch[s] = _mapped((max(n_units, 1), widths[s]), np.float32)
                out[s] = buf[:n_units].fill_(fill)
            else:
                out[s] = _mapped((n_units, widths[s]), np.float32)
                if fill != 0:
                    out[s].fill_(fill)
        return out

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
        out = self._buffers(n_units, widths, reuse=dtype == "float16", fill=fill)

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
        for site in list(out):
            tensor = out.pop(site)  # each float32 buffer is freed as soon as its site is converted
            if denom is not None:
                tensor /= denom
            # torch converts to float16 (round to nearest even, as NumPy) several times faster than NumPy
            arrays[site.name] = (tensor.to(torch.float16) if dtype == "float16" else tensor).numpy()
            del tensor
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
        mean = self.granularity == "word" and self.aggregation == "mean"
        src = np.asarray(src_pos, dtype=np.int64)
        rows = np.asarray(dst, dtype=np.int64)
        mean = mean and len(rows) > 0
        if mean:
            # A word's tokens are consecutive: sum each run of equal rows level by level (the 2nd tokens of
            # every run, then the 3rd, ...: each level's rows are distinct, so buffered fancy-index adds are
            # exact), then add the sums to the output rows. NumPy here, not torch: torch's small indexing
            # ops (index_add_ with repeated rows, index_select) wait on its thread pool and cost 5-10x more.
            new_run = np.r_[True, rows[1:] != rows[:-1]]
            starts = np.flatnonzero(new_run)
            keys = rows[starts]
            run_of = np.cumsum(new_run) - 1
            rank = np.arange(len(rows)) - starts[run_of]
            levels = [np.flatnonzero(rank == j) for j in range(1, int(rank.max(initial=0)) + 1)]
            distinct = len(np.unique(keys)) == len(keys)  # not when a word is split across two windows
        with torch.inference_mode():
            acts = run_capturing(self.handle, self.sites, inputs)
            for site, act in acts.items():
                flat = act.reshape(-1, act.shape[-1]).float().cpu().numpy()
                target = out[site].numpy()
                if mean:
                    sums = flat[src[starts]]
                    for level in levels:
                        sums[run_of[level]] += flat[src[level]]
                    if distinct:
                        target[keys] += sums
                    else:
                        np.add.at(target, keys, sums)
                    continue
                picked = torch.from_numpy(flat[src])
                rows_t = torch.from_numpy(rows)
                target_t = out[site]
                if self.granularity == "word" and self.aggregation == "max":
                    target_t.index_reduce_(0, rows_t, picked, "amax", include_self=True)
                else:
                    target_t.index_copy_(0, rows_t, picked)
