"""Activation sets: per-word (or per-token) activations at chosen sites, in memory or in an on-disk
Zarr v3 store with the same interface.

The on-disk format (one array per site, chunked by blocks of sentences, compressed, CRC-32C checked, with
the words, offsets and corpus alongside) is described in :mod:`neuronwidgets.core.store.zarrstore` and
docs/store.md. Every read from a store is checked: damage raises
:class:`~neuronwidgets.core.store.zarrstore.StoreCorruptionError` naming the store, the site and the chunk.

Stores written before the Zarr format (``meta.json`` + ``chunks/`` of ``.npy`` files, format 1) still
open, read-only and without checksums, with a warning; :func:`migrate_store` converts one once.
"""

from __future__ import annotations

import json
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..display import Result, bar_plot, listing, summary
from ..models.addresses import NeuronAddress, Site, parse_neuron, parse_site
from .zarrstore import FORMAT, ZARR_FORMAT_VERSION, Layout, LazySites, ZarrStore, is_legacy_store

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FORMAT_VERSION = ZARR_FORMAT_VERSION
LEGACY_VERSION = 1
CACHED_CHUNKS = 8


@dataclass
class Chunk:
    """Activations of consecutive sentences: ``arrays[site]`` is ``[n_units, width]``; ``offsets`` is
    ``[n_sentences + 1]``; ``units`` the strings; ``word_ids`` ``[n_units]`` (token granularity)."""

    offsets: np.ndarray
    units: list[list[str]]
    arrays: Mapping[str, np.ndarray]
    word_ids: np.ndarray | None = None

    @property
    def num_sentences(self) -> int:
        return len(self.offsets) - 1

    def sentences(self, a: int, b: int) -> Chunk:
        """Sentences ``a`` to ``b`` (exclusive) of this chunk, as a chunk of their own (views of the rows)."""
        u0, u1 = int(self.offsets[a]), int(self.offsets[b])
        return Chunk(
            self.offsets[a : b + 1] - u0,
            self.units[a:b],
            {site: arr[u0:u1] for site, arr in self.arrays.items()},
            None if self.word_ids is None else self.word_ids[u0:u1],
        )

    @classmethod
    def read_legacy(cls, folder: Path, sites: Sequence[str]) -> Chunk:
        """A chunk of a format-1 store (``.npy`` + JSON, memory-mapped; no checksums)."""
        try:
            offsets = np.load(folder / "offsets.npy", allow_pickle=False)
            units = json.loads((folder / "units.json").read_text(encoding="utf-8"))
            wid = folder / "word_ids.npy"
            arrays = {s: np.load(folder / f"{s}.npy", mmap_mode="r", allow_pickle=False) for s in sites}
            word_ids = np.load(wid, allow_pickle=False) if wid.exists() else None
        except Exception as exc:
            raise ValueError(
                f"old-format activation store: chunk folder {folder} cannot be read ({type(exc).__name__}: "
                f"{exc}); this format has no checksums, so re-extract into a new store (a Zarr store)"
            ) from exc
        return cls(offsets, units, arrays, word_ids)


class Activations(Result):
    """Activations of a corpus at a set of sites, one row per unit (word or token).

    Rows follow the corpus order: sentence 0's units, then sentence 1's, and so on, so row ``r`` of
    :meth:`layer` matches label ``r`` of ``corpus.flat_labels(column)``.

    Build one with :func:`~neuronwidgets.core.store.extraction.extract_activations` (or
    :func:`~neuronwidgets.core.as_activations` from arrays); reopen a stored one with :meth:`open` (no
    model needed). The constructor is internal.

    Args:
        meta: The store's description (sites, widths, granularity, sentences and their units).
        chunks: The chunks of an in-memory result (``None`` for a store on disk).
        path: The store's folder (``None`` in memory).
        store: The opened Zarr store behind ``path`` (``None`` in memory or for an old-format store).

    Raises:
        ValueError: From the readers, for a site, neuron or sentence the activations do not have.
        IndexError: For a row or sentence index out of range.

    Example:
        >>> acts = extract_activations(load_model("minilm"), ["Not bad at all."], layers=[3])
        >>> acts.neuron("layer.3.resid:42").shape, acts.matrix().shape
        ((5,), (5, 384))
    """

    def __init__(
        self,
        meta: dict[str, Any],
        chunks: list[Chunk] | None = None,
        path: Path | None = None,
        store: ZarrStore | None = None,
    ):
        self.meta = meta
        self.path = path
        self.store = store
        self._chunks = chunks
        self._chunk_cache: OrderedDict[int, Chunk] = OrderedDict()
        per_chunk = self._chunk_sentence_counts()
        self._chunk_starts = np.concatenate([[0], np.cumsum(per_chunk)]).astype(np.int64)
        self._unit_starts: np.ndarray | None = None if store is None else store.layout.offsets

    # -- opening and saving ----------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> Activations:
        """Open a store written by ``extract_activations(..., store=path)``; arrays load lazily and every
        read is checked against the store's checksums."""
        path = Path(path)
        if is_legacy_store(path):
            return cls._open_legacy(path)
        store = ZarrStore.open(path)
        if not store.complete:
            raise ValueError(
                f"the activation store at {path} is incomplete (an extraction was interrupted): run "
                "extract_activations again with the same arguments and store path to resume it"
            )
        meta = {**store.meta, "chunk_counts": [n for _, n in store.layout.blocks]}
        return cls(meta, None, path, store)

    @classmethod
    def _open_legacy(cls, path: Path) -> Activations:
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}/meta.json cannot be read ({exc}): re-extract into a new store") from exc
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a neuronwidgets activation store")
        if not meta.get("complete"):
            raise ValueError(
                f"{path} is an incomplete old-format (NumPy + JSON) store: it cannot be resumed; re-extract "
                "with extract_activations(..., store=<a new folder>)"
            )
        warnings.warn(
            f"{path} is an old-format activation store (NumPy + JSON chunks, format 1): it is read as it is, "
            "without checksums. Convert it once with neuronwidgets.core.migrate_store(path, new_path) (a "
            "checked Zarr store), or re-extract",
            UserWarning,
            stacklevel=3,
        )
        return cls(meta, None, path)

    def save(self, path: str | Path) -> Activations:
        """Write these activations as an on-disk (Zarr) store and return it opened from there."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise ValueError(f"{path} already exists and is not empty: choose a new folder")
        counts = [self.chunk(k).num_sentences for k in range(self.num_chunks)]
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        layout = Layout.of([(int(starts[k]), counts[k]) for k in range(len(counts))], self.offsets)
        keep = ("chunk_counts", "complete", "format", "version")
        meta = {k: v for k, v in self.meta.items() if k not in keep}
        meta.update(format=FORMAT, version=FORMAT_VERSION)
        fingerprint = meta.pop("fingerprint", None) or {}
        if not isinstance(fingerprint, dict):
            fingerprint = {"legacy": str(fingerprint)}
        corpus = self.store.corpus() if self.store is not None else None
        store = ZarrStore.create(path, meta, fingerprint, layout, corpus)
        for k in range(self.num_chunks):
            store.write_block(k, self.read_chunk(k, self.sites))
        store.mark_complete()
        return Activations.open(path)

    def corpus(self) -> Any:
        """The :class:`~neuronwidgets.core.Corpus` stored with the activations (``None`` when the
        store has none, e.g. one written by :meth:`save` from in-memory activations)."""
        return self.store.corpus() if self.store is not None else None

    # -- description -----------------------------------------------------------------------------
    @property
    def sites(self) -> list[str]:
        return list(self.meta["sites"])

    @property
    def widths(self) -> dict[str, int]:
        return dict(self.meta["widths"])

    @property
    def granularity(self) -> str:
        """``"word"`` or ``"token"``."""
        return str(self.meta["granularity"])

    @property
    def aggregation(self) -> str | None:
        return self.meta.get("aggregation")

    @property
    def model_name(self) -> str:
        return str(self.meta.get("model", ""))

    @property
    def num_sentences(self) -> int:
        return int(self._chunk_starts[-1])

    @property
    def num_units(self) -> int:
        return int(self._unit_offsets()[-1])

    @property
    def num_chunks(self) -> int:
        return len(self._chunk_starts) - 1

    def __len__(self) -> int:
        return self.num_sentences

    def __repr__(self) -> str:
        where = f", store={str(self.path)!r}" if self.path else ""
        widths = ", ".join(f"{w}" for w in list(self.widths.values())[:1])
        return summary(
            f"Activations({self.num_sentences} sentences, {self.num_units} {self.granularity}s, "
            f"{len(self.sites)} sites of {widths} neurons{where})",
            f"sites: {listing(self.sites, n=4)}",
            doors=".to_frame(neuron) · .plot(neuron) · .show() · .layer(site) (array)",
        )

    # -- chunks ----------------------------------------------------------------------------------
    def _chunk_sentence_counts(self) -> list[int]:
        if self._chunks is not None:
            return [c.num_sentences for c in self._chunks]
        return list(self.meta["chunk_counts"])

    def chunk(self, k: int) -> Chunk:
        """Chunk ``k`` (a block of sentences); from a store, its arrays are read and checked on first use
        and the last few chunks are cached."""
        if self._chunks is not None:
            return self._chunks[k]
        if k in self._chunk_cache:
            self._chunk_cache.move_to_end(k)
            return self._chunk_cache[k]
        chunk = self.read_chunk(k, self.sites)
        self._chunk_cache[k] = chunk
        while len(self._chunk_cache) > CACHED_CHUNKS:
            self._chunk_cache.popitem(last=False)
        return chunk

    def read_chunk(self, k: int, sites: Sequence[str]) -> Chunk:
        """Chunk ``k`` with only ``sites`` readable, bypassing the cache (for streaming passes)."""
        if self._chunks is not None:
            return self._chunks[k]
        if not 0 <= k < self.num_chunks:
            raise IndexError(f"chunk {k} is out of range: there are {self.num_chunks} chunks")
        if self.store is None:
            assert self.path is not None
            return Chunk.read_legacy(self.path / "chunks" / f"{k:05d}", list(sites))
        local, units, word_ids = self.store.read_rows(k)
        return Chunk(local, units, LazySites(self.store, k, sites), word_ids)

    def iter_chunks(self) -> Iterator[tuple[int, Chunk]]:
        """Yield ``(first_sentence, chunk)`` in order: the streaming way through a large store."""
        for k in range(self.num_chunks):
            yield int(self._chunk_starts[k]), self.chunk(k)

    def _locate(self, sentence: int) -> tuple[Chunk, int]:
        if not 0 <= sentence < self.num_sentences:
            raise IndexError(f"sentence {sentence} is out of range: there are {self.num_sentences} sentences")
        k = int(np.searchsorted(self._chunk_starts, sentence, side="right") - 1)
        return self.chunk(k), sentence - int(self._chunk_starts[k])

    def _unit_offsets(self) -> np.ndarray:
        if self._unit_starts is None:
            parts = [np.zeros(1, dtype=np.int64)]
            base = 0
            for _, ch in self.iter_chunks():
                parts.append(ch.offsets[1:] + base)
                base += int(ch.offsets[-1])
            self._unit_starts = np.concatenate(parts)
        return self._unit_starts

    @property
    def offsets(self) -> np.ndarray:
        """int64 ``[num_sentences + 1]``: rows of sentence ``i`` are ``offsets[i]:offsets[i+1]``."""
        return self._unit_offsets()

    # -- checks ----------------------------------------------------------------------------------
    def check_site(self, site: str | Site) -> str:
        name = parse_site(site).name
        if name not in self.meta["sites"]:
            raise ValueError(
                f"site {name!r} was not extracted: these activations have {', '.join(self.sites)}; "
                "pass it in layers=/components= when extracting"
            )
        return name

    def check_neuron(self, neuron: str | NeuronAddress) -> NeuronAddress:
        addr = parse_neuron(neuron)
        width = self.widths[self.check_site(addr.site)]
        if not 0 <= addr.index < width:
            raise ValueError(
                f"neuron index {addr.index} is out of range for {addr.site.name}: valid indices are 0 … {width - 1}"
            )
        return addr

    # -- reading ---------------------------------------------------------------------------------
    def units(self, sentence: int) -> list[str]:
        """The words (or tokens) of one sentence."""
        ch, j = self._locate(sentence)
        return list(ch.units[j])

    def word_ids(self, sentence: int) -> np.ndarray:
        """For token granularity: the word index of each token of one sentence (-1 for none)."""
        ch, j = self._locate(sentence)
        if ch.word_ids is None:
            return np.arange(len(ch.units[j]))
        return np.asarray(ch.word_ids[ch.offsets[j] : ch.offsets[j + 1]])

    def sentence(self, sentence: int, site: str | Site) -> np.ndarray:
        """float ``[n_units, width]``: one sentence at one site."""
        name = self.check_site(site)
        ch, j = self._locate(sentence)
        return np.asarray(ch.arrays[name][ch.offsets[j] : ch.offsets[j + 1]])

    def layer(self, site: str | Site, sentences: Sequence[int] | None = None) -> np.ndarray:
        """float ``[n_units, width]``: every unit (or those of ``sentences``) at one site."""
        name = self.check_site(site)
        if sentences is not None:
            return (
                np.concatenate([self.sentence(i, name) for i in sentences])
                if len(sentences)
                else np.zeros((0, self.widths[name]), dtype=np.float32)
            )
        return np.concatenate([np.asarray(ch.arrays[name]) for _, ch in self.iter_chunks()])

    def neuron(self, neuron: str | NeuronAddress, sentences: Sequence[int] | None = None) -> np.ndarray:
        """float ``[n_units]``: one neuron over every unit (or over ``sentences``, concatenated)."""
        addr = self.check_neuron(neuron)
        name = addr.site.name
        if sentences is not None:
            return (
                np.concatenate([self.sentence(i, name)[:, addr.index] for i in sentences])
                if len(sentences)
                else np.zeros(0, dtype=np.float32)
            )
        return np.concatenate([np.asarray(ch.arrays[name][:, addr.index]) for _, ch in self.iter_chunks()])

    def matrix(self, sites: Sequence[str | Site] | None = None) -> np.ndarray:
        """float ``[num_units, sum of widths]``: the sites side by side (the probe's design matrix).
        Column names are :meth:`feature_names`."""
        names = [self.check_site(s) for s in sites] if sites is not None else self.sites
        return np.concatenate([self.layer(n) for n in names], axis=1)

    def feature_names(self, sites: Sequence[str | Site] | None = None) -> list[str]:
        """Neuron addresses of the columns of :meth:`matrix`."""
        names = [self.check_site(s) for s in sites] if sites is not None else self.sites
        return [f"{n}:{i}" for n in names for i in range(self.widths[n])]

    def split(self, values: np.ndarray) -> list[np.ndarray]:
        """Split a per-unit array (e.g. :meth:`neuron`'s) into one array per sentence."""
        offs = self.offsets
        if len(values) != offs[-1]:
            raise ValueError(f"expected {offs[-1]} values (one per unit), got {len(values)}")
        return [values[offs[i] : offs[i + 1]] for i in range(len(offs) - 1)]

    def plot(
        self,
        neuron: str | NeuronAddress | None = None,
        sentence: int = 0,
        *,
        title: str | None = None,
        ax: Any = None,
    ) -> Axes:
        """Bars of ``neuron``'s activation (default: neuron 0 of the first site) over the units of one
        ``sentence``, drawn into ``ax`` (default: a new figure); returns the Axes."""
        addr = self.check_neuron(neuron if neuron is not None else f"{self.sites[0]}:0")
        if not 0 <= sentence < self.num_sentences:
            raise ValueError(f"sentence {sentence} is out of range: there are {self.num_sentences} sentences")
        units = self.units(sentence)
        values = self.neuron(addr, [sentence])
        frame = pd.DataFrame({"unit": [f"{i}: {u}" for i, u in enumerate(units)], addr.name: values})
        return bar_plot(
            frame,
            "unit",
            addr.name,
            k=len(frame),
            title=title or f"{addr.name} on sentence {sentence}",
            ax=ax,
        )

    def to_frame(self, neuron: str | NeuronAddress) -> pd.DataFrame:
        """One row per unit: sentence, position, unit text and the neuron's activation."""
        addr = self.check_neuron(neuron)
        sent, pos, text = [], [], []
        for i in range(self.num_sentences):
            us = self.units(i)
            sent += [i] * len(us)
            pos += list(range(len(us)))
            text += us
        return pd.DataFrame(
            {"sentence": sent, "position": pos, self.granularity: text, addr.name: self.neuron(addr)}
        )


def migrate_store(old: str | Path, new: str | Path) -> Activations:
    """Convert an old-format (NumPy + JSON) store into a checked Zarr store, once.

    Args:
        old: The folder of the format-1 store (``meta.json`` + ``chunks/``); left untouched.
        new: An empty or new folder for the Zarr store.

    Returns:
        The new store, opened (:class:`Activations`).

    Example:
        >>> acts = migrate_store("old_acts", "acts.zarr")  # doctest: +SKIP
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        acts = Activations.open(old)
    if acts.store is not None:
        raise ValueError(f"{old} is already a Zarr activation store: nothing to migrate")
    return acts.save(new)
