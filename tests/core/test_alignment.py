"""The vectorised token↔word alignment of extraction equals ``align_tokens`` (the per-text reference that
attribution uses) pair for pair, on real tokenizers and on hand-made offsets the tokenizers never produce."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest

from neuronwidgets.core.store.alignment import _space_codes, align_many, align_tokens


def reference(texts, spans, offsets):
    out = []
    for text, sp, offs in zip(texts, spans, offsets):
        pairs, primary = align_tokens(text, sp, offs)
        out.append((pairs, primary, len({w for _, w in pairs}) >= len(sp)))
    return out


def vectorised(texts, spans, offsets):
    counts = np.array([len(o) for o in offsets], np.int64)
    flat = np.array([p for o in offsets for p in o], np.int64).reshape(-1, 2)
    al = align_many(texts, spans, flat, counts)
    starts = np.r_[0, np.cumsum(counts)]
    out = []
    for i in range(len(texts)):
        sel = al.pair_text == i
        pairs = list(zip(al.pair_token[sel].tolist(), al.pair_word[sel].tolist()))
        out.append((pairs, al.primary[starts[i] : starts[i + 1]].tolist(), bool(al.covered[i])))
    return out


def test_the_space_table_is_every_code_point_isspace_accepts() -> None:
    want = [c for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    assert _space_codes().tolist() == want


def random_case(rng: np.random.Generator):
    """A text of words and runs of (unicode) spaces, its spans, and tokens cut anywhere: across words,
    starting in spaces, empty, covering several words, some words never covered."""
    pieces, spans, pos = [], [], 0
    for _ in range(int(rng.integers(0, 8))):
        gap = "".join(rng.choice([" ", "\u3000", "\u00a0", "\t", ""], size=int(rng.integers(0, 3))))
        word = "".join(rng.choice(list("abcé🙂"), size=int(rng.integers(1, 5))))
        pieces += [gap, word]
        pos += len(gap)
        spans.append((pos, pos + len(word)))
        pos += len(word)
    text = "".join(pieces) + " " * int(rng.integers(0, 2))
    cuts = sorted(set(rng.integers(0, len(text) + 1, size=int(rng.integers(0, 2 * len(text) + 2))).tolist()))
    bounds = [0, *cuts, len(text)]
    offsets = [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if rng.random() < 0.9]
    offsets += [(int(x), int(x)) for x in rng.integers(0, len(text) + 1, size=int(rng.integers(0, 2)))]
    return text, spans, offsets


def test_random_texts_and_tokens_align_as_the_reference() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        cases = [random_case(rng) for _ in range(int(rng.integers(1, 40)))]
        texts, spans, offsets = (list(x) for x in zip(*cases))
        assert vectorised(texts, spans, offsets) == reference(texts, spans, offsets)


def test_unsorted_or_out_of_range_spans_fall_back_to_the_reference() -> None:
    texts = ["ab cd ef", "ab cd", "xy", "", "ab cd"]
    spans = [[(3, 5), (0, 2), (6, 8)], [(0, 4), (2, 5)], [(0, 9)], [], [(0, 2), (3, 5)]]
    offsets = [[(0, 2), (3, 5), (6, 8)], [(0, 2), (3, 5)], [(0, 2)], [], [(0, 1), (1, 2), (3, 5)]]
    assert vectorised(texts, spans, offsets) == reference(texts, spans, offsets)


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama"])
def test_real_tokenizers_align_as_the_reference(tiny_models, name: str) -> None:
    tok = tiny_models[name].tokenizer
    texts = ["The quick brown fox's e-mail: a@b.com !!", "  Café \u3000 naïve\u00a0x ", "don't stop", ""]
    spans = [[(m, m + len(w)) for m, w in _words(t)] for t in texts]
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [[tuple(o) for o in offs] for offs in enc["offset_mapping"]]
    assert vectorised(texts, spans, offsets) == reference(texts, spans, offsets)


def _words(text: str):
    import re

    return [(m.start(), m.group()) for m in re.finditer(r"\S+", text)]
