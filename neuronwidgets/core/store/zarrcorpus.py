"""The corpus inside an activation store: the Zarr subgroup ``corpus/`` (word, span, offsets, text and one
``label.<column>`` array per label column) that :mod:`~neuronwidgets.core.store.zarrstore` writes with the
activations and reads back (checked against the fingerprint there).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.corpus import SpanInterner


def write_corpus(group: Any, corpus: Any, opts: dict[str, Any]) -> None:
    """Write ``corpus`` (a :class:`~neuronwidgets.core.Corpus`) into the subgroup ``corpus`` of ``group``,
    each array with the Zarr options ``opts`` (codecs)."""
    # strings go to Zarr as object arrays: a fixed-width unicode array is as wide as the longest string
    # (UD EWT has a 473-character URL: 1.9 GB for a million words)
    sub = group.create_group("corpus", attributes={"name": corpus.name, "columns": list(corpus.labels)})
    words = [w for s in corpus.words for w in s]
    offs = np.concatenate([[0], np.cumsum([len(s) for s in corpus.words])]).astype(np.int64)
    spans = np.array([sp for s in corpus.spans for sp in s], dtype=np.int64).reshape(-1, 2)
    n_words, n_sent = max(len(words), 1), max(len(corpus.texts), 1)
    sub.create_array(
        "word",
        shape=(len(words),),
        chunks=(min(n_words, 65536),),
        dtype=str,
        dimension_names=("word",),
        **opts,
    )[:] = np.array(words, dtype=object)
    sub.create_array(
        "span",
        shape=spans.shape,
        chunks=(min(n_words, 65536), 2),
        dtype="int64",
        dimension_names=("word", "edge"),
        **opts,
    )[:] = spans
    sub.create_array(
        "offsets",
        shape=offs.shape,
        chunks=(len(offs),),
        dtype="int64",
        dimension_names=("sentence_edge",),
        **opts,
    )[:] = offs
    sub.create_array(
        "text",
        shape=(len(corpus.texts),),
        chunks=(min(n_sent, 16384),),
        dtype=str,
        dimension_names=("sentence",),
        **opts,
    )[:] = np.array(corpus.texts, dtype=object)
    for col, rows in corpus.labels.items():
        flat = np.array([str(lab) for s in rows for lab in s], dtype=object)
        sub.create_array(
            f"label.{col}",
            shape=flat.shape,
            chunks=(min(n_words, 65536),),
            dtype=str,
            dimension_names=("word",),
            **opts,
        )[:] = flat


def read_corpus(sub: Any) -> dict[str, Any]:
    """The stored corpus as plain lists (words, texts, spans, labels, name)."""
    offs = np.asarray(sub["offsets"][:])
    words = [str(w) for w in sub["word"][:]]
    shared = SpanInterner()
    spans = [shared(int(a), int(b)) for a, b in np.asarray(sub["span"][:]).tolist()]
    cut = lambda xs: [list(xs[offs[i] : offs[i + 1]]) for i in range(len(offs) - 1)]  # noqa: E731
    labels = {c: cut([str(v) for v in sub[f"label.{c}"][:]]) for c in sub.attrs.get("columns", [])}
    return {
        "words": cut(words),
        "texts": [str(t) for t in sub["text"][:]],
        "spans": cut(spans),
        "labels": labels,
        "name": sub.attrs.get("name", ""),
    }
