"""Design matrices for probes and neuron analyses: which columns (neurons) of an activation set, which rows
(words), their labels, and sentence-level splits.

Everything here reads :class:`~neuronwidgets.core.store.activations.Activations` chunk by chunk, so a large
on-disk store is never loaded whole unless a caller asks for it: probes, rankings, clustering and
similarity all take their data through :class:`Design`.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import torch

from ..models.addresses import NeuronAddress, Site, parse_neurons, parse_site
from ..store.activations import Activations, Chunk

TASKS = ("classification", "regression")


# ------------------------------------------------------------------------------------------------
# Activations from plain arrays
# ------------------------------------------------------------------------------------------------


def as_activations(
    matrix: np.ndarray | Mapping[str, np.ndarray],
    *,
    site: str = "layer.0.resid",
    lengths: Sequence[int] | None = None,
    words: Sequence[Sequence[str]] | Sequence[str] | None = None,
    name: str = "array",
) -> Activations:
    """In-memory :class:`Activations` from a matrix ``[n_rows, width]`` (at ``site``) or a mapping
    ``{site: [n_rows, width]}``, so arrays from anywhere can go through the same probes and rankings.

    Args:
        matrix: ``[n_rows, width]`` at ``site``, or ``{site: [n_rows, width]}`` (same rows everywhere).
        site: The site name of a single matrix.
        lengths: Words per sentence (default: every row its own sentence).
        words: The word of each row (flat, or one list per sentence); control tasks and the
            random-feature baseline use them as word types.
        name: A name for reprs and messages.

    Returns:
        In-memory activations.

    Raises:
        ValueError: For no arrays, a non-2-D or non-float array, row counts that differ, or ``lengths``
            that do not sum to the rows.

    Example:
        >>> acts = as_activations(np.random.randn(100, 16), lengths=[10] * 10)
        >>> ranking = rank_probeless(acts, labels)
    """
    arrays = {site: matrix} if not isinstance(matrix, Mapping) else dict(matrix)
    if not arrays:
        raise ValueError("no arrays given: pass a matrix or a {site: matrix} mapping")
    clean: dict[str, np.ndarray] = {}
    n_rows = None
    for s, arr in arrays.items():
        name_s = parse_site(s).name
        a = np.asarray(arr)
        if a.ndim != 2:
            raise ValueError(f"activations for {name_s} must be 2-D [rows, neurons], got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float32)
        if n_rows is None:
            n_rows = a.shape[0]
        elif a.shape[0] != n_rows:
            raise ValueError(
                f"every site needs the same number of rows: {name_s} has {a.shape[0]}, not {n_rows}"
            )
        clean[name_s] = a
    assert n_rows is not None
    if n_rows == 0:
        raise ValueError("the matrix has no rows")
    lens = np.ones(n_rows, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    if lens.ndim != 1 or (lens < 1).any() or int(lens.sum()) != n_rows:
        raise ValueError(
            f"lengths must be positive and sum to the number of rows ({n_rows}), got a sum of {int(lens.sum())}"
        )
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    if words is None:
        flat = [f"<{i}>" for i in range(n_rows)]
    else:
        flat = (
            [str(w) for w in words]
            if words and isinstance(words[0], str)
            else [str(w) for s in words for w in s]
        )
        if len(flat) != n_rows:
            raise ValueError(f"words has {len(flat)} entries but the matrix has {n_rows} rows")
    units = [flat[offsets[i] : offsets[i + 1]] for i in range(len(lens))]
    meta: dict[str, Any] = {
        "format": "neuronwidgets-activations",
        "model": name,
        "sites": list(clean),
        "widths": {s: int(a.shape[1]) for s, a in clean.items()},
        "granularity": "word",
        "aggregation": None,
        "num_sentences": len(lens),
        "has_words": words is not None,
    }
    return Activations(meta, [Chunk(offsets, units, clean)])


def all_units(activations: Activations) -> list[str]:
    """The word (or token) of every row, in row order."""
    return [u for _, ch in activations.iter_chunks() for sent in ch.units for u in sent]


# ------------------------------------------------------------------------------------------------
# Columns
# ------------------------------------------------------------------------------------------------


class Design:
    """A choice of neurons (columns) of an :class:`Activations`, read chunk by chunk.

    ``sites``: whole sites (default all of them); ``neurons``: explicit addresses (their order is the
    column order). Columns are grouped by site in the order given, so reading stays cheap.
    """

    def __init__(
        self,
        activations: Activations,
        sites: Sequence[str | Site] | str | Site | None = None,
        neurons: Iterable[str | NeuronAddress] | None = None,
    ):
        if not isinstance(activations, Activations):
            raise TypeError(
                f"expected Activations (from extract_activations or as_activations), got {type(activations).__name__}"
            )
        self.activations = activations
        if neurons is not None and sites is not None:
            raise ValueError("pass either sites= or neurons=, not both")
        self.groups: list[tuple[str, np.ndarray]] = []  # (site, column indices) in column order
        if neurons is not None:
            addrs = parse_neurons(neurons if isinstance(neurons, (str, NeuronAddress)) else list(neurons))
            if not addrs:
                raise ValueError("neurons= is empty: pass at least one neuron address")
            for a in addrs:
                activations.check_neuron(a)
            names = [a.name for a in addrs]
            for a in addrs:
                s = a.site.name
                if self.groups and self.groups[-1][0] == s:
                    self.groups[-1] = (s, np.append(self.groups[-1][1], a.index))
                else:
                    self.groups.append((s, np.array([a.index], dtype=np.int64)))
            self.names = names
        else:
            if isinstance(sites, (str, Site)):
                sites = [sites]
            chosen = [activations.check_site(s) for s in sites] if sites is not None else activations.sites
            if not chosen:
                raise ValueError("sites= is empty: pass at least one site")
            if len(set(chosen)) != len(chosen):
                raise ValueError("a site is listed twice in sites=")
            widths = activations.widths
            self.groups = [(s, np.arange(widths[s], dtype=np.int64)) for s in chosen]
            self.names = [f"{s}:{i}" for s in chosen for i in range(widths[s])]
        self._full = {
            s: len(idx) == activations.widths[s] and bool((idx == np.arange(len(idx))).all())
            for s, idx in self.groups
        }

    @property
    def num_rows(self) -> int:
        return self.activations.num_units

    @property
    def num_features(self) -> int:
        return len(self.names)

    @property
    def sites(self) -> list[str]:
        return list(dict.fromkeys(s for s, _ in self.groups))

    def nbytes(self, rows: int | None = None, itemsize: int = 4) -> int:
        return (self.num_rows if rows is None else rows) * self.num_features * itemsize

    def _chunk_block(self, ch: Chunk, local: np.ndarray | None) -> np.ndarray:
        sel: np.ndarray | slice | None = local
        if local is not None and len(local) and int(local[-1]) - int(local[0]) + 1 == len(local):
            sel = slice(int(local[0]), int(local[-1]) + 1)  # a run of rows: a view, no copy
        parts = []
        for s, idx in self.groups:
            arr = ch.arrays[s]
            if sel is not None:
                arr = arr[sel]
            parts.append(np.asarray(arr if self._full[s] else arr[:, idx], dtype=np.float32))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def iter_blocks(
        self, rows: np.ndarray | None = None, max_rows: int = 65536
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(row_ids, X)``: ``X`` float32 ``[len(row_ids), num_features]`` for the given sorted row
        ids (default all rows), one chunk (or at most ``max_rows`` rows) at a time."""
        base = 0
        for _, ch in self.activations.iter_chunks():
            n = int(ch.offsets[-1])
            if rows is None:
                local = None
                ids = np.arange(base, base + n)
            else:
                lo, hi = np.searchsorted(rows, [base, base + n])
                ids = rows[lo:hi]
                local = ids - base
            base += n
            if len(ids) == 0:
                continue
            for a in range(0, len(ids), max_rows):
                sl = slice(a, a + max_rows)
                if local is None and len(ids) <= max_rows:
                    yield ids, self._chunk_block(ch, None)
                else:
                    loc = local[sl] if local is not None else np.arange(a, min(a + max_rows, len(ids)))
                    yield ids[sl], self._chunk_block(ch, loc)

    def matrix(self, rows: np.ndarray | None = None) -> np.ndarray:
        """float32 ``[len(rows), num_features]`` in memory (default all rows)."""
        n = self.num_rows if rows is None else len(rows)
        out = np.empty((n, self.num_features), dtype=np.float32)
        pos = 0
        for ids, x in self.iter_blocks(rows):
            out[pos : pos + len(ids)] = x
            pos += len(ids)
        return out

    def subset(self, columns: Sequence[int] | np.ndarray) -> Design:
        """The same activations restricted to some of these columns (by position)."""
        return Design(self.activations, neurons=[self.names[int(c)] for c in columns])


@contextmanager
def compute_threads(elements: int, limit: int = 200_000_000) -> Iterator[None]:
    """Run an analysis of a matrix with ``elements`` entries on one thread unless it is large.

    Below ``limit`` (a float32 matrix under 800 MB), waking threads for each of the many small tensor
    operations of a probe costs more than they save, and on a busy machine (other processes on every
    core) each wake-up can wait a whole scheduler slice: measured here, a probe on 10,704 × 2,688 took
    7 s on two threads under load and 1.2 s on one. Large problems keep torch's thread setting.
    """
    before = torch.get_num_threads()
    if elements >= limit or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_F = TypeVar("_F", bound=Callable[..., Any])


def threads_by_size(fn: _F) -> _F:
    """Decorate a function whose first argument is an :class:`Activations`: it runs under
    :func:`compute_threads` sized by all of those activations (rows × every site's width)."""

    @functools.wraps(fn)
    def wrapper(activations: Any, *args: Any, **kwargs: Any) -> Any:
        size = (
            activations.num_units * sum(activations.widths.values())
            if isinstance(activations, Activations)
            else 0
        )
        with compute_threads(size):
            return fn(activations, *args, **kwargs)

    return cast(_F, wrapper)


def block_tensor(x: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``x``'s memory, read-only memory-mapped blocks of a store included (callers only
    read it; torch warns about non-writable arrays otherwise)."""
    if x.flags.writeable:
        return torch.from_numpy(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(x)


# ------------------------------------------------------------------------------------------------
# Labels
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedLabels:
    """Labels as numbers. Classification: ``y`` int64 ``[n]`` indices into ``classes``. Regression:
    ``y`` float64 ``[n]`` and ``classes == ()``."""

    task: str
    y: np.ndarray
    classes: tuple[str, ...]


def encode_labels(
    labels: Sequence[Any] | np.ndarray,
    num_rows: int,
    task: str = "auto",
    classes: Sequence[str] | None = None,
) -> EncodedLabels:
    """Check and encode one label per row. ``task="auto"``: floats are a regression target, strings,
    integers and booleans are classes."""
    if task not in ("auto", *TASKS):
        raise ValueError(f"unknown task {task!r}: choose 'auto', 'classification' or 'regression'")
    if isinstance(labels, (str, bytes)):
        raise TypeError("labels must be a sequence with one label per row, not a single string")
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(
            f"labels must be flat, one per row, got shape {arr.shape}: use corpus.flat_labels(column)"
        )
    if len(arr) != num_rows:
        raise ValueError(
            f"{len(arr)} labels for {num_rows} rows: give exactly one label per activation row "
            "(corpus.flat_labels(column) for word-level activations of the same corpus)"
        )
    if task == "auto":
        task = "regression" if np.issubdtype(arr.dtype, np.floating) else "classification"
    if task == "regression":
        try:
            y = arr.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError("regression labels must be numbers") from err
        if not np.isfinite(y).all():
            raise ValueError("regression labels contain NaN or infinity")
        if np.ptp(y) == 0:
            raise ValueError("every regression label has the same value: there is nothing to predict")
        return EncodedLabels("regression", y, ())
    values = arr.tolist()
    missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and math.isnan(v))]
    if missing:
        raise ValueError(
            f"labels must not be missing: label {missing[0]} is {values[missing[0]]!r} ({len(missing)} missing "
            "in all); drop those rows or give them a class name such as 'none'"
        )
    strs = np.array([str(v) for v in values], dtype=object)
    if classes is None:
        cls = tuple(sorted(set(strs.tolist())))
        if len(cls) < 2:
            raise ValueError(
                f"only one class ({cls[0]!r}) in the labels: a probe needs at least two classes"
                if cls
                else "no labels"
            )
    else:
        cls = tuple(str(c) for c in classes)
        unknown = set(strs.tolist()) - set(cls)
        if unknown:
            raise ValueError(f"labels {sorted(unknown)[:5]} are not among the classes {list(cls)[:10]}")
    index = {c: i for i, c in enumerate(cls)}
    y = np.fromiter((index[s] for s in strs), dtype=np.int64, count=len(strs))
    return EncodedLabels("classification", y, cls)


# ------------------------------------------------------------------------------------------------
# Splits by sentence
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Sentence indices of the train, dev and test parts (made by :func:`split_sentences`). Words of one
    sentence are never in two parts, so a probe cannot score by remembering a sentence's context.

    Attributes:
        train: Int64 sentence indices, sorted.
        dev: Int64 sentence indices, sorted (may be empty).
        test: Int64 sentence indices, sorted.
    """

    train: np.ndarray
    dev: np.ndarray
    test: np.ndarray

    def __repr__(self) -> str:
        return f"Split(sentences: train {len(self.train)}, dev {len(self.dev)}, test {len(self.test)})"

    def rows(self, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row indices (sorted) of the three parts, given ``Activations.offsets``."""

        def expand(sents: np.ndarray) -> np.ndarray:
            if len(sents) == 0:
                return np.zeros(0, dtype=np.int64)
            starts, ends = offsets[sents], offsets[sents + 1]
            lens = ends - starts
            rep = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
            return (np.arange(int(lens.sum())) + rep).astype(np.int64)

        return expand(self.train), expand(self.dev), expand(self.test)

    def to_dict(self) -> dict[str, list[int]]:
        return {"train": self.train.tolist(), "dev": self.dev.tolist(), "test": self.test.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[int]]) -> Split:
        return cls(*(np.asarray(d[k], dtype=np.int64) for k in ("train", "dev", "test")))


def split_sentences(
    num_sentences: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    shuffle: bool = True,
    seed: int = 0,
) -> Split:
    """Split sentences ``0 … num_sentences-1`` into train/dev/test by ``fractions`` (dev may be 0).

    Args:
        num_sentences: How many sentences there are.
        fractions: ``(train, dev, test)`` or ``(train, test)``, summing to 1.
        shuffle: ``False`` keeps corpus order (train first, then dev, then test), as NeuroX's cut does.
        seed: Seed of the shuffle.

    Returns:
        The three parts.

    Raises:
        ValueError: For fractions that do not sum to 1, an empty train or test part, or too few sentences.

    Example:
        >>> split = split_sentences(10, (0.8, 0.1, 0.1), seed=0)
        >>> len(split.train), len(split.dev), len(split.test)
        (8, 1, 1)
    """
    fr = [float(f) for f in fractions]
    if len(fr) == 2:
        fr = [fr[0], 0.0, fr[1]]
    if len(fr) != 3 or any(f < 0 for f in fr) or not 0.999 <= sum(fr) <= 1.001:
        raise ValueError(
            f"fractions must be (train, dev, test) or (train, test), non-negative and summing to 1, got {fractions}"
        )
    if fr[0] == 0 or fr[2] == 0:
        raise ValueError("the train and test fractions must both be above 0")
    if num_sentences < 2:
        raise ValueError(f"need at least 2 sentences to split into train and test, got {num_sentences}")
    order = np.random.default_rng(seed).permutation(num_sentences) if shuffle else np.arange(num_sentences)
    n_train = max(1, round(fr[0] * num_sentences))
    n_dev = round(fr[1] * num_sentences) if fr[1] > 0 else 0
    if n_dev == 0 and fr[1] > 0 and num_sentences >= 3:
        n_dev = 1
    n_train = min(n_train, num_sentences - 1 - n_dev)
    if n_train < 1:
        raise ValueError(f"{num_sentences} sentences are too few for the split {fractions}")
    parts = order[:n_train], order[n_train : n_train + n_dev], order[n_train + n_dev :]
    return Split(*(np.sort(p).astype(np.int64) for p in parts))


def resolve_split(split: Split | Sequence[float] | None, activations: Activations, seed: int) -> Split:
    """A :class:`Split` from a Split, fractions, or ``None`` (80/10/10 shuffled with ``seed``)."""
    n = activations.num_sentences
    if split is None:
        split = split_sentences(n, seed=seed)
    elif not isinstance(split, Split):
        split = split_sentences(n, split, seed=seed)
    allidx = np.concatenate([split.train, split.dev, split.test])
    if len(allidx) and (allidx.min() < 0 or allidx.max() >= n):
        raise ValueError(f"the split refers to sentences outside 0 … {n - 1}")
    if len(split.train) == 0 or len(split.test) == 0:
        raise ValueError("the split needs at least one train and one test sentence")
    if len(np.unique(allidx)) != len(allidx):
        raise ValueError("a sentence is in two parts of the split")
    return split


def sample_rows(num_rows: int, max_rows: int | None, seed: int) -> np.ndarray:
    """Sorted row ids: all of them, or ``max_rows`` drawn without replacement."""
    if max_rows is None or num_rows <= max_rows:
        return np.arange(num_rows, dtype=np.int64)
    if max_rows < 2:
        raise ValueError(f"max_rows must be at least 2, got {max_rows}")
    return np.sort(np.random.default_rng(seed).choice(num_rows, max_rows, replace=False)).astype(np.int64)
