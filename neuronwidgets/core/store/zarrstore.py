"""The on-disk activation store: a Zarr v3 group that checks everything it hands back.

Layout (a plain Zarr v3 group, readable by ``zarr``, ``xarray`` and ``dask.array``; see docs/store.md)::

    store/
      zarr.json          group attributes ``neuronwidgets``: meta (model, sites, widths, granularity,
                         aggregation, dtype, ...), the fingerprint of the inputs, the block layout, a
                         CRC-32C of all of that, and ``complete``
      <site>             float32/float16 [n_blocks · cap, width], one chunk per block of sentences
      unit               str   [n_blocks · cap]  the word (or token) of each row
      sentence           int64 [n_blocks · cap]  the sentence of each row, -1 on padding rows
      word_id            int64 [n_blocks · cap]  token granularity: the word of each token (-1: none)
      offsets            int64 [num_sentences + 1] rows of sentence i, counted without padding
      checksums          int64 [n_blocks, n_sites + 2] per block: CRC-32C of each site's values, of the
                         unit/sentence/word_id rows, and the block's number of rows; -1 = not written
      corpus/            word, text, span, offsets, label.<column>: the corpus that was read

Block ``k`` holds sentences ``blocks[k]`` and occupies rows ``[k·cap, k·cap + n_k)``; the rest of its
chunk is padding (``sentence == -1``). Every chunk goes through a CRC-32C codec, so storage-level damage
is caught by Zarr; the per-block checksums catch anything else (a chunk swapped, rewritten through Zarr,
a misaligned ``offsets``). A block counts as written only once its checksum row exists, which is written
last and atomically, so a run killed at any point resumes at the first block without one.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from .chunkfiles import ChunkFile
from .zarrcorpus import read_corpus, write_corpus

FORMAT = "neuronwidgets-activations"
ZARR_FORMAT_VERSION = 2  # 1 was the NumPy + JSON chunk folder
ATTR = "neuronwidgets"
KILL_ENV = "NEURONWIDGETS_STORE_KILL_AT_STEP"


class StoreCorruptionError(ValueError):
    """Raised when a store's data or metadata does not match its checksums or its own description.

    The message names the store, the array (a site such as ``layer.3.resid``, or ``unit``, ``offsets``,
    ...) and the chunk (block of sentences), and says how to recover: ``repair=True`` re-extracts the
    damaged blocks, ``overwrite=True`` everything when the store's description itself is damaged.

    Args:
        message: What is damaged, where, and how to recover.

    Example:
        >>> try:  # doctest: +SKIP
        ...     Activations.open("acts.zarr").layer("layer.3.resid")
        ... except StoreCorruptionError as err:
        ...     print(err)  # names store, site and chunk; then:
        ...     extract_activations(model, corpus, store="acts.zarr", repair=True)
    """

    def __init__(self, message: str):
        super().__init__(message)


# -- the write protocol's named steps (a test kills the writer at each one) -------------------------

_trace: list[str] | None = None
_count = [0]


def trace_steps(into: list[str] | None) -> None:
    """Record the names of the write steps into ``into`` (``None`` stops recording); for tests."""
    global _trace
    _trace = into


def reset_steps() -> None:
    _count[0] = 0


def step(name: str) -> None:
    """A named point of the write protocol, reached just before the write it names. With
    ``$NEURONWIDGETS_STORE_KILL_AT_STEP=N`` the process SIGKILLs itself on reaching the N-th step."""
    _count[0] += 1
    if _trace is not None:
        _trace.append(name)
    kill = os.environ.get(KILL_ENV)
    if kill and int(kill) == _count[0]:
        os.kill(os.getpid(), signal.SIGKILL)


def crc32c(*parts: bytes | np.ndarray) -> int:
    c = 0
    for p in parts:
        c = google_crc32c.extend(c, np.ascontiguousarray(p).tobytes() if isinstance(p, np.ndarray) else p)
    return int(c)


def _json_crc(obj: Any) -> int:
    return crc32c(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode())


def _units_crc(units: np.ndarray, sentence: np.ndarray, word_id: np.ndarray | None) -> int:
    text = "\x1f".join(str(u) for u in units).encode("utf-8", "surrogatepass")
    parts: list[bytes | np.ndarray] = [sentence.astype(np.int64), text]
    if word_id is not None:
        parts.append(word_id.astype(np.int64))
    return crc32c(*parts)


def _codecs() -> dict[str, Any]:
    """Blosc LZ4 with *bit* shuffle, then CRC-32C. On MiniLM's float16 residual activations byte shuffle
    saved 0.1 % (LZ4 finds nothing in shuffled mantissa bytes) and bit shuffle 8.6 %, at 1.0 GB/s against
    1.3 GB/s (zstd level 1: 9.1 % at 0.5 GB/s); see docs/store.md."""
    from zarr.codecs import BloscCodec, Crc32cCodec

    return {"compressors": [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"), Crc32cCodec()]}


def is_legacy_store(root: Path) -> bool:
    """A folder written by neuronwidgets before the Zarr format (``meta.json`` + ``chunks/``)."""
    return (root / "meta.json").exists() and not (root / "zarr.json").exists()


def is_zarr_store(root: Path) -> bool:
    return (root / "zarr.json").exists()


@dataclass(frozen=True)
class Layout:
    """Which sentences each block holds (``blocks[k] = (first, count)``), the unit offsets of every
    sentence (without padding) and ``cap``, the rows reserved per block."""

    blocks: tuple[tuple[int, int], ...]
    offsets: np.ndarray
    cap: int

    @classmethod
    def of(cls, blocks: Sequence[tuple[int, int]], offsets: np.ndarray) -> Layout:
        rows = [int(offsets[a + n] - offsets[a]) for a, n in blocks]
        return cls(tuple((int(a), int(n)) for a, n in blocks), np.asarray(offsets, np.int64), max([*rows, 1]))

    def units(self, k: int) -> tuple[int, int]:
        a, n = self.blocks[k]
        return int(self.offsets[a]), int(self.offsets[a + n])

    def sentences(self, k: int) -> tuple[int, int]:
        a, n = self.blocks[k]
        return a, a + n


class ZarrStore:
    """One activation store on disk (a local folder), opened for reading and resuming.

    Use :meth:`create` or :meth:`open`; :meth:`write_block` / :meth:`read_rows` and :meth:`read_site` move one block of
    sentences; every read is checked and any mismatch raises :class:`StoreCorruptionError` naming the
    store, the array (site) and the chunk, with how to recover.
    """

    def __init__(self, root: Path, group: Any, info: dict[str, Any], layout: Layout):
        self.root = root
        self.group = group
        self.info = info
        self.layout = layout
        self.meta: dict[str, Any] = info["meta"]
        self.sites: list[str] = list(self.meta["sites"])
        self._arrays: dict[str, Any] = {}
        self._files: dict[str, ChunkFile] = {}

    def array(self, name: str) -> Any:
        """The Zarr array ``name``, opened once (``group[name]`` re-parses its metadata every time) with
        ``write_empty_chunks``, a run-time setting the metadata does not keep: without it Zarr compares
        every chunk with the fill value before writing it (a third of the writer's time)."""
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._arrays[name] = self.group[name].with_config({"write_empty_chunks": True})
        return arr

    def chunk_file(self, name: str) -> ChunkFile:
        """Whole-chunk writer of array ``name`` (:mod:`~neuronwidgets.core.store.chunkfiles`)."""
        f = self._files.get(name)
        if f is None:
            f = self._files[name] = ChunkFile(self.root / name, self.array(name))
        return f

    # -- creating ---------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        root: Path,
        meta: dict[str, Any],
        fingerprint: dict[str, Any],
        layout: Layout,
        corpus: Any = None,
    ) -> ZarrStore:
        """Lay out an empty store: attributes, the arrays, the offsets and the corpus (no activations)."""
        import zarr

        reset_steps()
        info: dict[str, Any] = {
            "format": FORMAT,
            "version": ZARR_FORMAT_VERSION,
            "meta": meta,
            "fingerprint": fingerprint,
            "blocks": [list(b) for b in layout.blocks],
            "cap": layout.cap,
            "offsets_crc32c": crc32c(layout.offsets),
        }
        info["crc32c"] = _json_crc(info)
        step("create group")
        group = zarr.open_group(
            str(root), mode="w", zarr_format=3, attributes={ATTR: {**info, "complete": False}}
        )
        rows = len(layout.blocks) * layout.cap
        opts: dict[str, Any] = {**_codecs(), "config": {"write_empty_chunks": True}}
        for site in meta["sites"]:
            step(f"create array {site}")
            group.create_array(
                site,
                shape=(rows, int(meta["widths"][site])),
                chunks=(layout.cap, int(meta["widths"][site])),
                dtype=meta["dtype"],
                fill_value=0,
                dimension_names=("row", f"{site}.neuron"),
                **opts,
            )
        step("create row arrays")
        group.create_array(
            "unit", shape=(rows,), chunks=(layout.cap,), dtype=str, dimension_names=("row",), **opts
        )
        group.create_array(
            "sentence", shape=(rows,), chunks=(layout.cap,), dtype="int64", fill_value=-1,
            dimension_names=("row",), **opts,
        )  # fmt: skip
        if meta["granularity"] == "token":
            group.create_array(
                "word_id", shape=(rows,), chunks=(layout.cap,), dtype="int64", fill_value=-1,
                dimension_names=("row",), **opts,
            )  # fmt: skip
        width = len(meta["sites"]) + 2
        step("create checksums")
        group.create_array(
            "checksums", shape=(len(layout.blocks), width), chunks=(1, width), dtype="int64", fill_value=-1,
            dimension_names=("block", "checksum"), **opts,
        )  # fmt: skip
        step("write offsets")
        off = group.create_array(
            "offsets", shape=(len(layout.offsets),), chunks=(max(len(layout.offsets), 1),), dtype="int64",
            dimension_names=("sentence_edge",), **opts,
        )  # fmt: skip
        off[:] = layout.offsets
        if corpus is not None:
            step("write corpus")
            write_corpus(group, corpus, opts)
        step("ready")
        group.attrs[ATTR] = {**info, "complete": False, "ready": True}
        return cls(root, group, info, layout)

    # -- opening ----------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, mode: str = "r") -> ZarrStore:
        """Open and check a store's metadata (attributes, array shapes, dtypes, codecs, offsets)."""
        import zarr

        root = Path(root)
        if not is_zarr_store(root):
            raise ValueError(f"{root} is not an activation store (no zarr.json)")
        try:
            group: Any = zarr.open_group(str(root), mode=mode)  # type: ignore[arg-type]
            info: dict[str, Any] = dict(group.attrs[ATTR])
        except Exception as exc:
            raise _corrupt(
                root, "the group's zarr.json (the store's metadata)", None, exc, whole=True
            ) from exc
        if info.get("format") != FORMAT:
            raise ValueError(f"{root} is not a neuronwidgets activation store")
        body = {k: v for k, v in info.items() if k not in ("crc32c", "complete", "ready")}
        if _json_crc(body) != info.get("crc32c"):
            raise _corrupt(
                root,
                "zarr.json (attributes 'neuronwidgets')",
                None,
                "its CRC-32C does not match: it was edited",
                whole=True,
            )
        blocks = [(int(a), int(n)) for a, n in info["blocks"]]
        if not info.get("ready"):  # created up to the attributes only (a run killed while laying it out)
            return cls(root, group, info, Layout(tuple(blocks), np.zeros(1, np.int64), int(info["cap"])))
        try:
            offsets = np.asarray(group["offsets"][:], dtype=np.int64)
        except Exception as exc:
            raise _corrupt(root, "offsets", "chunk c/0", exc, whole=True) from exc
        if crc32c(offsets) != info["offsets_crc32c"]:
            raise _corrupt(
                root,
                "offsets",
                "chunk c/0",
                "the sentence offsets do not match their CRC-32C (misaligned)",
                whole=True,
            )
        layout = Layout(tuple(blocks), offsets, int(info["cap"]))
        store = cls(root, group, info, layout)
        store._check_arrays()
        return store

    def _check_arrays(self) -> None:
        rows = len(self.layout.blocks) * self.layout.cap
        meta = self.meta
        want: dict[str, tuple[tuple[int, ...], str]] = {
            s: ((rows, int(meta["widths"][s])), str(meta["dtype"])) for s in self.sites
        }
        want["sentence"] = ((rows,), "int64")
        want["checksums"] = ((len(self.layout.blocks), len(self.sites) + 2), "int64")
        if meta["granularity"] == "token":
            want["word_id"] = ((rows,), "int64")
        for name, (shape, dtype) in want.items():
            try:
                arr = self.array(name)
                codecs = [c.get("name") for c in arr.metadata.to_dict()["codecs"]]
            except Exception as exc:
                raise _corrupt(self.root, name, None, exc, whole=True) from exc
            problem = None
            if tuple(arr.shape) != shape:
                problem = f"its shape is {tuple(arr.shape)}, the store's layout says {shape}"
            elif str(arr.dtype) != dtype:
                problem = f"its dtype is {arr.dtype}, the store says {dtype}"
            elif arr.chunks[0] != (self.layout.cap if name != "checksums" else 1):
                problem = f"its chunks are {arr.chunks}, the store's layout says {self.layout.cap} rows"
            elif "crc32c" not in codecs:
                problem = "its codecs lost the crc32c checksum"
            if problem:
                raise _corrupt(self.root, name, None, f"{name}/zarr.json was edited: {problem}", whole=True)

    @property
    def complete(self) -> bool:
        return bool(self.group.attrs[ATTR].get("complete"))

    @property
    def ready(self) -> bool:
        return bool(self.group.attrs[ATTR].get("ready"))

    # -- blocks -----------------------------------------------------------------------------------
    def done(self) -> np.ndarray:
        """bool ``[n_blocks]``: blocks whose checksum row is written."""
        try:
            rows = np.asarray(self.array("checksums")[:])
        except Exception as exc:
            raise _corrupt(self.root, "checksums", None, exc) from exc
        return np.asarray((rows >= 0).all(axis=1))

    def _chunk_exists(self, name: str, k: int) -> bool:
        key = self.array(name).metadata.encode_chunk_key((k, 0) if name in self.sites else (k,))
        return (self.root / name / key).exists()

    def write_block(self, k: int, chunk: Any) -> None:
        """Write block ``k`` (a :class:`~neuronwidgets.core.store.activations.Chunk`): every site, the rows'
        unit/sentence/word_id, then the checksum row that marks it written."""
        a, b = self.layout.sentences(k)
        u0, u1 = self.layout.units(k)
        n = u1 - u0
        if chunk.num_sentences != b - a or int(chunk.offsets[-1]) != n:
            raise ValueError(
                f"block {k} has {chunk.num_sentences} sentences / {chunk.offsets[-1]} rows, expected {b - a} / {n}"
            )
        sums = []
        for site in self.sites:
            arr = np.ascontiguousarray(chunk.arrays[site], dtype=self.meta["dtype"])
            step(f"block {k}: {site}")
            self.chunk_file(site).write_rows(k, arr, 0)
            sums.append(crc32c(arr))
        units = np.array([u for sent in chunk.units for u in sent], dtype=object)
        sentence = np.repeat(np.arange(a, b, dtype=np.int64), np.diff(chunk.offsets))
        word_id = None if chunk.word_ids is None else np.asarray(chunk.word_ids, dtype=np.int64)
        step(f"block {k}: rows")
        self.chunk_file("unit").write_rows(k, units, "")
        self.chunk_file("sentence").write_rows(k, sentence, -1)
        if self.meta["granularity"] == "token":
            self.chunk_file("word_id").write_rows(k, word_id if word_id is not None else np.full(n, -1), -1)
        sums += [_units_crc(units, sentence, word_id if self.meta["granularity"] == "token" else None), n]
        step(f"block {k}: checksums")
        self.chunk_file("checksums").write(k, np.array([sums], dtype=np.int64))

    def invalidate(self, k: int) -> None:
        """Forget block ``k`` (its checksum row), so the next extraction writes it again."""
        self.array("checksums")[k] = np.full(len(self.sites) + 2, -1, dtype=np.int64)

    def mark_complete(self) -> None:
        step("complete")
        self.group.attrs[ATTR] = {**self.info, "complete": True, "ready": True}

    def _sums(self, k: int) -> np.ndarray:
        try:
            sums = np.asarray(self.array("checksums")[k])
        except Exception as exc:
            raise self.damaged("checksums", k, exc) from exc
        if (sums < 0).any():
            raise self.damaged(
                "checksums", k, "the block is not marked as written (its checksum row is missing)"
            )
        return sums

    def read_rows(self, k: int) -> tuple[np.ndarray, list[list[str]], np.ndarray | None]:
        """Block ``k``'s local offsets, unit strings per sentence and word ids (checked)."""
        a, b = self.layout.sentences(k)
        u0, u1 = self.layout.units(k)
        n = u1 - u0
        sums = self._sums(k)
        if int(sums[-1]) != n:
            raise self.damaged(
                "offsets",
                k,
                f"the offsets give the block {n} rows but {int(sums[-1])} were written (misaligned offsets)",
            )
        r0 = k * self.layout.cap
        token = self.meta["granularity"] == "token"
        names = ["unit", "sentence"] + (["word_id"] if token else [])
        got: dict[str, np.ndarray] = {}
        for name in names:
            if not self._chunk_exists(name, k):
                raise self.damaged(name, k, "its chunk file is missing")
            try:
                got[name] = np.asarray(self.array(name)[r0 : r0 + n])
            except Exception as exc:
                raise self.damaged(name, k, exc) from exc
        local = self.layout.offsets[a : b + 1] - u0
        expect = np.repeat(np.arange(a, b, dtype=np.int64), np.diff(local))
        if not np.array_equal(got["sentence"], expect):
            raise self.damaged(
                "sentence", k, "the rows' sentence numbers do not match the offsets (misaligned)"
            )
        word_id = got.get("word_id")
        if _units_crc(got["unit"], got["sentence"], word_id) != int(sums[len(self.sites)]):
            raise self.damaged("unit", k, "the unit/sentence/word_id rows do not match their checksum")
        flat = [str(u) for u in got["unit"]]
        units = [flat[int(local[j]) : int(local[j + 1])] for j in range(b - a)]
        return local, units, word_id

    def read_site(self, k: int, site: str) -> np.ndarray:
        """Block ``k``'s values at ``site`` (checked against the block's checksum)."""
        u0, u1 = self.layout.units(k)
        i = self.sites.index(site)
        sums = self._sums(k)
        if not self._chunk_exists(site, k):
            raise self.damaged(site, k, "its chunk file is missing")
        r0 = k * self.layout.cap
        try:
            arr = np.asarray(self.array(site)[r0 : r0 + (u1 - u0)])
        except Exception as exc:
            raise self.damaged(site, k, exc) from exc
        if crc32c(arr) != int(sums[i]):
            raise self.damaged(site, k, "its values do not match the checksum written with them")
        return arr

    def damaged(self, name: str, k: int, why: Any) -> StoreCorruptionError:
        a, b = self.layout.sentences(k)
        return _corrupt(
            self.root, name, f"chunk {k} (rows {k * self.layout.cap}…, sentences {a}–{b - 1})", why
        )

    def verify(self) -> list[tuple[int, str]]:
        """Check every written block; returns ``(block, error message)`` for each damaged one."""
        bad = []
        for k in np.flatnonzero(self.done()):
            try:
                self.read_rows(int(k))
                for site in self.sites:
                    self.read_site(int(k), site)
            except StoreCorruptionError as exc:
                bad.append((int(k), str(exc)))
        return bad

    def corpus(self) -> Any:
        """The stored :class:`~neuronwidgets.core.Corpus` (checked against the fingerprint), or
        ``None`` when the store has none."""
        from ..data.corpus import Corpus

        if "corpus" not in self.group:
            return None
        try:
            corpus = Corpus(**read_corpus(self.group["corpus"]))
        except Exception as exc:
            raise _corrupt(self.root, "corpus", None, exc, whole=True) from exc
        from .fingerprint import corpus_digest

        want = self.info["fingerprint"].get("corpus")
        if want is not None and corpus_digest(corpus) != want:
            raise _corrupt(
                self.root, "corpus", None, "the stored corpus does not match the fingerprint", whole=True
            )
        return corpus


def _corrupt(root: Path, name: str, where: str | None, why: Any, whole: bool = False) -> StoreCorruptionError:
    what = f"{type(why).__name__}: {why}" if isinstance(why, BaseException) else str(why)
    place = (name if "zarr.json" in name else f"array {name!r}") + (f", {where}" if where else "")
    if whole:
        fix = (
            "the store's description cannot be trusted: re-extract everything with extract_activations(..., "
            f"store={str(root)!r}, overwrite=True)"
        )
    else:
        fix = (
            "re-extract those sentences: call extract_activations again with the same model, data and "
            f"arguments and store={str(root)!r}, repair=True (it re-extracts only the damaged blocks)"
        )
    return StoreCorruptionError(f"activation store {root}: {place} is damaged ({what}); {fix}")


class LazySites(Mapping[str, np.ndarray]):
    """A block's per-site arrays, read (and checked) on first access."""

    def __init__(self, store: ZarrStore, k: int, sites: Sequence[str]):
        self._store, self._k, self._sites = store, k, list(sites)
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, site: str) -> np.ndarray:
        if site not in self._sites:
            raise KeyError(site)
        if site not in self._cache:
            self._cache[site] = self._store.read_site(self._k, site)
        return self._cache[site]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sites)

    def __len__(self) -> int:
        return len(self._sites)
