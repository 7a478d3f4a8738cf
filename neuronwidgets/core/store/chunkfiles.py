"""Whole-chunk writes to the store's Zarr v3 arrays, encoded here instead of by Zarr's asyncio machinery.

Zarr-python sends every assignment through its event loop and thread pool (a task per chunk and codec,
thread hand-overs, selection indexing), which cost as much CPU as the compression itself: on MiniLM's
float16 residual activations, 0.65-0.87 s against 0.34-0.38 s per 8 blocks of 7 sites (bench notes in
docs/benchmarks.md). On a 2-core machine every CPU-second of the writer is taken from the forward pass.

:class:`ChunkFile` writes a whole chunk of one array by the Zarr v3 specification, for the codec chain the
store creates and nothing else: ``bytes`` (little endian; ``vlen-utf8`` for strings) → ``blosc`` →
``crc32c``. The chunk's bytes are then the values' little-endian bytes (or numcodecs' ``VLenUTF8``
encoding of the strings), Blosc-compressed by numcodecs (the library Zarr's own codecs call, with the same
configuration) and followed by their CRC-32C as 4 little-endian bytes. The file
goes to the chunk's key (``encode_chunk_key``) through a temporary file and a rename, as Zarr's
``LocalStore`` writes it. An array with any other metadata (codecs, key encoding, a storage transformer)
is written through Zarr. tests/core/test_store.py checks the files are byte-identical to Zarr's.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

#: The codec chains written here, with the Blosc settings read from the array's metadata.
_CHAINS = {("bytes", "blosc", "crc32c"), ("vlen-utf8", "blosc", "crc32c")}
_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


class ChunkFile:
    """Writes whole chunks of the Zarr v3 array ``array`` (opened from ``folder``), row block by row block.

    Args:
        folder: The array's folder (the store's root / the array's name).
        array: The ``zarr.Array``: its metadata says how a chunk is encoded; assignments that cannot be
            encoded here go through it.
    """

    def __init__(self, folder: Path, array: Any):
        self.folder = folder
        self.array = array
        self.meta = array.metadata
        self.strings = np.dtype(array.dtype).kind in "TUO"
        self.dtype = np.dtype(object) if self.strings else np.dtype(array.dtype).newbyteorder("<")
        self.shape = tuple(int(n) for n in self.meta.chunk_grid.chunk_shape)
        self._dirs: set[Path] = set()
        self._scratch: np.ndarray | None = None
        self._blosc = self._codec()
        self._vlen: Any = None
        if self.strings:
            from numcodecs import VLenUTF8

            self._vlen = VLenUTF8()

    def _codec(self) -> Any:
        """The numcodecs Blosc codec of the array's chain, or ``None`` when the chain is another."""
        d = self.meta.to_dict()
        codecs = list(d.get("codecs", ()))
        chain = tuple(c.get("name") for c in codecs)
        if (
            chain not in _CHAINS
            or (chain[0] == "vlen-utf8") != self.strings
            or (codecs[0].get("configuration") or {}).get("endian", "little") != "little"
            or d.get("chunk_key_encoding", {}).get("name") != "default"
            or d.get("storage_transformers")
            or d.get("chunk_grid", {}).get("name") != "regular"
            or not (self.strings or self.dtype.kind in "fiub")
        ):
            return None
        from numcodecs import Blosc

        cfg = codecs[1]["configuration"]
        shuffle = _SHUFFLE.get(str(cfg.get("shuffle")))
        if shuffle is None:
            return None
        return Blosc.from_config(
            {
                "cname": str(cfg["cname"]),
                "clevel": int(cfg["clevel"]),
                "shuffle": shuffle,
                "blocksize": int(cfg.get("blocksize", 0)),
                "typesize": int(cfg.get("typesize", 1 if self.strings else self.dtype.itemsize)),
            }
        )

    def encode(self, block: np.ndarray) -> tuple[bytes, bytes]:
        """The bytes of one whole chunk holding ``block`` (which must have the chunk's shape): the
        compressed values and their CRC-32C."""
        if self.strings:
            raw = np.frombuffer(self._vlen.encode(np.asarray(block, dtype=object)), np.uint8)
        else:
            raw = np.ascontiguousarray(block, dtype=self.dtype).view(np.uint8).reshape(-1)
        data = self._blosc.encode(raw)
        return data, int(google_crc32c.value(data)).to_bytes(4, "little")

    def write_rows(self, k: int, rows: np.ndarray, fill: Any) -> None:
        """Write chunk ``k`` with ``rows`` first and ``fill`` in the rest of the chunk's rows.

        The chunk is assembled in one buffer kept for the next write (a fresh chunk-sized array per write
        costs its page faults every time); it is encoded and written before this returns."""
        if self._scratch is None:
            self._scratch = np.empty(self.shape, dtype=self.dtype)
        block = self._scratch
        block[: len(rows)] = rows
        block[len(rows) :] = fill
        self.write(k, block)

    def write(self, k: int, block: np.ndarray) -> None:
        """Write chunk ``k`` along the first axis (rows ``k·rows`` to ``(k+1)·rows``) with ``block``."""
        if block.shape != self.shape:
            raise ValueError(
                f"chunk {k} of {self.folder.name}: got shape {block.shape}, expected {self.shape}"
            )
        if self._blosc is None:
            rows = self.shape[0]
            self.array[k * rows : (k + 1) * rows] = block
            return
        data, crc = self.encode(block)
        path = self.folder / self.meta.encode_chunk_key((k,) + (0,) * (len(self.shape) - 1))
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.partial")  # the same atomic write as LocalStore's
        try:
            with tmp.open("wb") as f:
                f.write(data)
                f.write(crc)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
