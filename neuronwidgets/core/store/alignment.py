"""Token ↔ word alignment by character offsets, shared by extraction and attribution: which tokens make
up which words, and the special tokens a tokenizer wraps a text in.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from ..models.handle import ModelHandle


def special_template(handle: ModelHandle) -> tuple[list[int], list[int]]:
    """Special token ids the tokenizer puts before and after a text (e.g. [CLS] … [SEP])."""
    enc = handle.tokenizer("a", add_special_tokens=True, return_special_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["special_tokens_mask"]
    content = [i for i, m in enumerate(mask) if not m]
    if not content:
        return [], []
    return list(ids[: content[0]]), list(ids[content[-1] + 1 :])


def align_tokens(
    text: str, spans: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]]
) -> tuple[list[tuple[int, int]], list[int]]:
    """Match tokens to words by character offsets: ``(token, word)`` for every token whose characters
    (leading spaces ignored) overlap a word's span, and each token's first word (``-1`` for none).

    ``spans``: sorted ``(start, end)`` of the words in ``text``; ``offsets``: each token's ``(start, end)``.
    """
    starts = [s for s, _ in spans]
    pairs: list[tuple[int, int]] = []
    primary: list[int] = []
    for t, (s, e) in enumerate(offsets):
        while s < e and text[s].isspace():
            s += 1
        first = -1
        if s < e:
            w = max(bisect.bisect_right(starts, s) - 1, 0)
            if spans[w][1] <= s:
                w += 1
            while w < len(spans) and spans[w][0] < e:
                if spans[w][1] > s:
                    pairs.append((t, w))
                    if first < 0:
                        first = w
                w += 1
        primary.append(first)
    return pairs, primary


_SPACES: np.ndarray | None = None


def _space_codes() -> np.ndarray:
    """The code points ``str.isspace`` accepts (all of them lie below U+3001; a test checks)."""
    global _SPACES
    if _SPACES is None:
        _SPACES = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)
    return _SPACES


@dataclass
class Alignment:
    """:func:`align_tokens` for many texts at once, as flat arrays (``pair_text`` says whose pair).

    ``pair_token`` / ``pair_word``: each text's ``(token, word)`` pairs, local indices, in ``align_tokens``'
    order; ``primary``: every token's first word (``-1``: none), text after text; ``covered[i]``: every word
    of text ``i`` got a token.
    """

    pair_text: np.ndarray
    pair_token: np.ndarray
    pair_word: np.ndarray
    primary: np.ndarray
    covered: np.ndarray


def align_many(
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
    offsets: np.ndarray,
    counts: np.ndarray,
) -> Alignment:
    """:func:`align_tokens` for every text at once, vectorised (the same pairs, bit for bit).

    ``offsets``: ``[n_tokens, 2]`` the tokens' character offsets, text after text (``counts[i]`` tokens of
    text ``i``). A word ``w`` and a token ``(s, e)`` (leading spaces skipped) overlap when
    ``start_w < e`` and ``end_w > s``; with each text's spans sorted and not overlapping, the words of a
    token are a range found by binary search. Texts whose spans are not sorted, or leave the text, are
    aligned one by one with :func:`align_tokens`.
    """
    n = len(texts)
    lens = np.fromiter(map(len, texts), np.int64, n)
    tbase = np.zeros(n + 1, np.int64)
    np.cumsum(lens, out=tbase[1:])
    wcount = np.fromiter(map(len, spans), np.int64, n)
    wbase = np.zeros(n + 1, np.int64)
    np.cumsum(wcount, out=wbase[1:])
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(spans)), np.int64, 2 * int(wbase[-1]))
    flat = flat.reshape(-1, 2)
    word_text = np.repeat(np.arange(n), wcount)
    tok_text = np.repeat(np.arange(n), counts)
    ws, we = flat[:, 0], flat[:, 1]
    bad = (ws < 0) | (we < ws) | (we > lens[word_text])
    same = word_text[1:] == word_text[:-1]
    bad_pairs = same & ((ws[1:] < we[:-1]) | (we[1:] < we[:-1]))  # unsorted or overlapping spans
    slow = np.zeros(n, bool)
    slow[word_text[bad]] = True
    slow[word_text[1:][bad_pairs]] = True
    gws, gwe = ws + tbase[word_text], we + tbase[word_text]
    if slow.any():  # keep the global order monotonic: the slow texts' words are never searched
        gws = np.where(slow[word_text], tbase[word_text], gws)
        gwe = np.where(slow[word_text], tbase[word_text], gwe)
    codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), np.uint32)
    pos = np.arange(len(codes) + 1, dtype=np.int64)
    nonspace = np.where(np.r_[np.isin(codes, _space_codes()), False], len(codes), pos)
    next_nonspace = np.minimum.accumulate(nonspace[::-1])[::-1]  # first non-space at or after each position
    s = offsets[:, 0] + tbase[tok_text]
    e = offsets[:, 1] + tbase[tok_text]
    s = np.where(s < e, np.minimum(next_nonspace[np.clip(s, 0, len(codes))], e), s)
    lo = np.searchsorted(gwe, s, side="right")
    hi = np.searchsorted(gws, e, side="left")
    cnt = np.where((s < e) & ~slow[tok_text], np.maximum(hi - lo, 0), 0)
    tok_index = np.arange(len(s), dtype=np.int64)
    pair_tok_g = np.repeat(tok_index, cnt)
    first_pair = np.cumsum(cnt) - cnt
    pair_word_g = np.repeat(lo, cnt) + (np.arange(len(pair_tok_g)) - np.repeat(first_pair, cnt))
    pair_text = tok_text[pair_tok_g]
    tstart = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=tstart[1:])
    primary = np.where(cnt > 0, lo - wbase[tok_text], -1)
    hits = np.bincount(pair_word_g, minlength=int(wbase[-1])) > 0
    covered = np.ones(n, bool)
    covered[word_text[~hits]] = False
    out = Alignment(
        pair_text, pair_tok_g - tstart[pair_text], pair_word_g - wbase[pair_text], primary, covered
    )
    if slow.any():
        out = _realign(out, texts, spans, offsets, tstart, np.flatnonzero(slow))
    return out


def _realign(
    out: Alignment,
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
    offsets: np.ndarray,
    tstart: np.ndarray,
    which: np.ndarray,
) -> Alignment:
    """``out`` with the pairs of the texts ``which`` replaced by :func:`align_tokens`' own."""
    keep = ~np.isin(out.pair_text, which)
    parts = [(out.pair_text[keep], out.pair_token[keep], out.pair_word[keep])]
    primary, covered = out.primary.copy(), out.covered.copy()
    for i in which.tolist():
        a, b = int(tstart[i]), int(tstart[i + 1])
        pairs, prim = align_tokens(texts[i], spans[i], [tuple(o) for o in offsets[a:b].tolist()])
        arr = np.array(pairs, np.int64).reshape(-1, 2)
        parts.append((np.full(len(arr), i, np.int64), arr[:, 0], arr[:, 1]))
        primary[a:b] = prim
        covered[i] = len({w for _, w in pairs}) >= len(spans[i])
    cat = [np.concatenate(x) for x in zip(*parts)]
    order = np.argsort(cat[0], kind="stable")
    return Alignment(cat[0][order], cat[1][order], cat[2][order], primary, covered)
