"""Token ↔ word alignment by character offsets, shared by extraction and attribution: which tokens make
up which words, and the special tokens a tokenizer wraps a text in.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

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
