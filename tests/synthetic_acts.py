"""Synthetic activation sets and annotated corpora for corpus-selection and concept tests (no model)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from neuronwidgets.core import Activations, Corpus
from neuronwidgets.core.store.activations import FORMAT, FORMAT_VERSION, Chunk

UPOS = ("NOUN", "VERB", "ADJ", "PROPN")
FEATS = ("Number=Plur", "Number=Sing", "_", "Number=Plur|Tense=Past")


def random_corpus(n_sentences: int, seed: int = 0, vocab: int = 40) -> Corpus:
    """Sentences of 3–11 random words with random ``upos`` and ``feats`` labels."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(3, 12, n_sentences)
    words = [[f"w{rng.integers(vocab)}" for _ in range(n)] for n in lens]
    upos = [[str(rng.choice(UPOS)) for _ in range(n)] for n in lens]
    feats = [[str(rng.choice(FEATS)) for _ in range(n)] for n in lens]
    return Corpus.from_words(words, {"upos": upos, "feats": feats})


def make_activations(
    corpus: Corpus,
    arrays: Mapping[str, np.ndarray],
    chunk_sentences: int | Sequence[int],
    store: Path | None = None,
) -> Activations:
    """Word-level activations of ``corpus`` with ``arrays[site]`` ``[num_words, width]``, cut into chunks of
    ``chunk_sentences`` sentences (or the given sizes); saved as an on-disk store when ``store`` is set."""
    n = len(corpus)
    if isinstance(chunk_sentences, int):
        sizes = [min(chunk_sentences, n - a) for a in range(0, n, chunk_sentences)]
    else:
        sizes = list(chunk_sentences)
    assert sum(sizes) == n
    offs = np.concatenate([[0], np.cumsum([len(w) for w in corpus.words])]).astype(np.int64)
    chunks, s = [], 0
    for size in sizes:
        a, b = offs[s], offs[s + size]
        chunks.append(
            Chunk(
                offs[s : s + size + 1] - a,
                [list(w) for w in corpus.words[s : s + size]],
                {site: np.ascontiguousarray(arr[a:b]) for site, arr in arrays.items()},
            )
        )
        s += size
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": "synthetic",
        "sites": list(arrays),
        "widths": {site: int(arr.shape[1]) for site, arr in arrays.items()},
        "granularity": "word",
        "aggregation": "mean",
        "dtype": str(next(iter(arrays.values())).dtype),
        "num_sentences": n,
    }
    acts = Activations(meta, chunks)
    return acts.save(store) if store is not None else acts
