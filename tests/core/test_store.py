"""The Zarr activation store: read by zarr/xarray/dask directly, resumable after a SIGKILL at every step
of the write protocol, every kind of damage detected (naming store, array and chunk), fingerprint
refusals that say what differs, old-format stores."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from neuronwidgets.core import (
    Activations,
    StoreCorruptionError,
    extract_activations,
    migrate_store,
)
from neuronwidgets.core.store import zarrstore

WORDS = ["the", "a", "fox", "dog", "jumps", "over", "lazy", "quick", "brown", "cat", "sat", "on", "."]


def corpus(n: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [list(rng.choice(WORDS, size=int(rng.integers(1, 9)))) for _ in range(n)]


KW = dict(layers=[0], components="all", chunk_sentences=4)


def same(a: Activations, b: Activations) -> None:
    assert a.sites == b.sites
    for site in a.sites:
        x, y = a.layer(site), b.layer(site)
        assert x.dtype == y.dtype and np.array_equal(x, y)  # bit for bit
    assert [a.units(i) for i in range(a.num_sentences)] == [b.units(i) for i in range(b.num_sentences)]
    assert np.array_equal(a.offsets, b.offsets)


def test_store_is_plain_zarr_readable_by_zarr_xarray_and_dask(tiny_models, tmp_path) -> None:
    import dask.array as da
    import xarray as xr
    import zarr

    data = corpus(10)
    acts = extract_activations(tiny_models["bert"], data, store=tmp_path / "s", **KW)
    want = acts.layer("layer.0.resid")
    # zarr: the site array, rows of padding dropped with the `sentence` array
    root = zarr.open_group(str(tmp_path / "s"), mode="r")
    valid = root["sentence"][:] >= 0
    np.testing.assert_array_equal(root["layer.0.resid"][:][valid], want)
    assert list(root["unit"][:][valid]) == [w for s in data for w in s]
    # xarray: one Dataset, dimension names from the store
    ds = xr.open_zarr(str(tmp_path / "s"), consolidated=False)
    words = ds.isel(row=(ds["sentence"] >= 0).values)
    np.testing.assert_array_equal(words["layer.0.resid"].values, want)
    # dask.array: lazily, block by block
    x = da.from_zarr(str(tmp_path / "s"), component="layer.0.resid")
    assert x.chunks[0][0] == root.attrs["neuronwidgets"]["cap"]
    np.testing.assert_array_equal(x[valid].compute(), want)
    # the corpus travels with the activations
    assert acts.corpus().words == data


@pytest.mark.parametrize("dtype", ["float16", "float32", "int64", "str"])
def test_chunk_files_are_byte_identical_to_zarrs_own_writes(tmp_path, dtype: str) -> None:
    import zarr
    from zarr.codecs import BloscCodec, Crc32cCodec

    from neuronwidgets.core.store.chunkfiles import ChunkFile

    rng = np.random.default_rng(1)
    if dtype == "str":  # the unit array: one dimension, variable-length UTF-8
        words = ["fox", "", "naïve", "🙂", "a b", "x" * 300]
        block = np.array([words[i] for i in rng.integers(0, len(words), size=35)], dtype=object).reshape(5, 7)
    else:
        block = (rng.standard_normal((5, 7)) * 100).astype(dtype)
        block[3] = 0  # a row of zeros: Zarr must not skip anything either
    made = {}
    for how in ("zarr", "here"):
        g = zarr.open_group(str(tmp_path / how), mode="w", zarr_format=3)
        arr = g.create_array(
            "x", shape=(15, 7), chunks=(5, 7), dtype=dtype, fill_value="" if dtype == "str" else 0,
            compressors=zarrstore._codecs()["compressors"], config={"write_empty_chunks": True},
        )  # fmt: skip
        if how == "zarr":
            arr[5:10] = block
        else:
            f = ChunkFile(tmp_path / how / "x", arr)
            assert f._blosc is not None  # the fast path, not the fallback
            f.write(1, block)
        made[how] = (tmp_path / how / "x" / "c" / "1" / "0").read_bytes()
        np.testing.assert_array_equal(zarr.open_array(str(tmp_path / how / "x"))[5:10], block)
    assert made["here"] == made["zarr"]
    assert not list((tmp_path / "here").rglob("*.partial"))
    # another codec chain goes through Zarr (same values, whatever the bytes)
    g = zarr.open_group(str(tmp_path / "other"), mode="w", zarr_format=3)
    arr = g.create_array(
        "x", shape=(15, 7), chunks=(5, 7), dtype=dtype, compressors=[BloscCodec(cname="zstd"), Crc32cCodec()]
    )
    other = ChunkFile(tmp_path / "other" / "x", arr)
    assert other._blosc is not None  # a Blosc setting is read from the metadata...
    other.write(2, block)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "other" / "x"))[10:15], block)
    arr = g.create_array("y", shape=(15, 7), chunks=(5, 7), dtype=dtype, compressors=None)
    plain = ChunkFile(tmp_path / "other" / "y", arr)
    assert plain._blosc is None  # ...a chain without Blosc and CRC-32C is not encoded here
    plain.write(0, block)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "other" / "y"))[0:5], block)
    with pytest.raises(ValueError, match="expected"):
        plain.write(0, block[:2])


def test_kill_at_every_step_of_the_write_protocol_then_resume_bit_for_bit(tiny_models, tmp_path) -> None:
    m = tiny_models["gpt2"]
    data = corpus(10)
    steps: list[str] = []
    zarrstore.trace_steps(steps)
    try:
        clean = extract_activations(m, data, store=tmp_path / "clean", **KW)
    finally:
        zarrstore.trace_steps(None)
    assert steps[0] == "create group" and steps[-1] == "complete"
    assert {"block 1: layer.0.mlp", "block 1: rows", "block 1: checksums"} <= set(steps)
    ctx = multiprocessing.get_context("fork")
    for n, name in enumerate(steps, start=1):
        store = tmp_path / f"killed-{n}"
        child = ctx.Process(target=_extract_then_exit, args=(m, data, store, n))
        child.start()
        child.join(120)
        assert child.exitcode == -signal.SIGKILL, f"the writer was not killed at step {n} ({name})"
        if n > 1:
            with pytest.raises(ValueError, match="incomplete|not an activation store"):
                Activations.open(store)
        resumed = extract_activations(m, data, store=store, **KW)
        same(resumed, clean)


def _extract_then_exit(m, data, store: Path, kill_at: int) -> None:
    os.environ[zarrstore.KILL_ENV] = str(kill_at)
    torch.set_num_threads(1)
    extract_activations(m, data, store=store, **KW)
    os._exit(0)


def test_changing_one_weight_refuses_to_append_and_says_what_differs(tiny_models, tmp_path) -> None:
    m = tiny_models["bert"]
    data = corpus(6)
    extract_activations(m, data, store=tmp_path / "s", **KW)
    param = next(m.model.parameters())
    old = param.data.flatten()[0].item()
    try:
        with torch.no_grad():
            param.data.view(-1)[0] += 1e-3
        with pytest.raises(ValueError, match="weights") as err:
            extract_activations(m, data, store=tmp_path / "s", **KW)
        assert "corpus" not in str(err.value) and "overwrite=True" in str(err.value)
    finally:
        with torch.no_grad():
            param.data.view(-1)[0] = old
    with pytest.raises(ValueError, match=r"corpus.*sites|sites.*corpus"):
        extract_activations(m, corpus(6, seed=1), store=tmp_path / "s", layers=[1], chunk_sentences=4)
    with pytest.raises(ValueError, match="dtype"):
        extract_activations(m, data, store=tmp_path / "s", dtype="float16", **KW)
    assert Activations.open(tmp_path / "s").num_sentences == 6  # untouched


# -- damage: every kind is detected, names the store, the array and the chunk, and says how to recover --


def _file(store: Path, name: str, k: int) -> Path:
    p = store / name / "c" / str(k)
    return p / "0" if p.is_dir() else p


def _truncate(s: Path) -> None:
    f = _file(s, "layer.0.resid", 1)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _flip(s: Path) -> None:
    f = _file(s, "layer.0.resid", 1)
    b = bytearray(f.read_bytes())
    b[len(b) // 2] ^= 0x40
    f.write_bytes(bytes(b))


def _missing(s: Path) -> None:
    _file(s, "layer.0.mlp", 1).unlink()


def _swapped(s: Path) -> None:
    a, b = _file(s, "layer.0.resid", 0), _file(s, "layer.0.resid", 1)
    x, y = a.read_bytes(), b.read_bytes()
    a.write_bytes(y)
    b.write_bytes(x)


def _rewritten_through_zarr(s: Path) -> None:
    import zarr

    arr = zarr.open_array(str(s / "layer.0.resid"), mode="r+")
    cap = arr.chunks[0]
    arr[cap : cap + 2] = 0.5  # valid CRC, wrong values


def _unit_edited(s: Path) -> None:
    import zarr

    arr = zarr.open_array(str(s / "unit"), mode="r+")
    arr[arr.chunks[0]] = "edited"


def _unit_chunk_truncated(s: Path) -> None:
    f = _file(s, "unit", 1)
    f.write_bytes(f.read_bytes()[:5])


def _rows_misaligned(s: Path) -> None:
    import zarr

    arr = zarr.open_array(str(s / "sentence"), mode="r+")
    cap = arr.chunks[0]
    arr[cap] = int(arr[cap]) + 1  # a row moved to the next sentence


def _checksum_row_deleted(s: Path) -> None:
    _file(s, "checksums", 1).unlink()


def _offsets_misaligned(s: Path) -> None:
    import zarr

    arr = zarr.open_array(str(s / "offsets"), mode="r+")
    arr[3] = arr[3] + 1


def _attrs_edited(s: Path) -> None:
    meta = json.loads((s / "zarr.json").read_text())
    meta["attributes"]["neuronwidgets"]["meta"]["widths"]["layer.0.resid"] = 8
    (s / "zarr.json").write_text(json.dumps(meta))


def _array_meta_edited(s: Path) -> None:
    f = s / "layer.0.mlp" / "zarr.json"
    meta = json.loads(f.read_text())
    meta["shape"][0] -= meta["chunk_grid"]["configuration"]["chunk_shape"][0]
    f.write_text(json.dumps(meta))


def _codec_removed(s: Path) -> None:
    f = s / "layer.0.mlp" / "zarr.json"
    meta = json.loads(f.read_text())
    meta["codecs"] = [c for c in meta["codecs"] if c["name"] != "crc32c"]
    f.write_text(json.dumps(meta))


def _root_json_garbage(s: Path) -> None:
    (s / "zarr.json").write_text('{"zarr_format": 3, "node_type": "gro')


def _corpus_edited(s: Path) -> None:
    import zarr

    arr = zarr.open_array(str(s / "corpus" / "word"), mode="r+")
    arr[0] = "edited"


DAMAGE = {
    "truncated chunk": (_truncate, "layer.0.resid", "chunk 1", True),
    "flipped bytes": (_flip, "layer.0.resid", "chunk 1", True),
    "missing chunk": (_missing, "layer.0.mlp", "chunk 1", True),
    "chunks swapped (valid CRCs)": (_swapped, "layer.0.resid", "chunk 0", True),
    "values rewritten through zarr": (_rewritten_through_zarr, "layer.0.resid", "chunk 1", True),
    "unit edited through zarr": (_unit_edited, "unit", "chunk 1", True),
    "unit chunk truncated": (_unit_chunk_truncated, "unit", "chunk 1", True),
    "rows' sentences misaligned": (_rows_misaligned, "sentence", "chunk 1", True),
    "checksum row deleted": (_checksum_row_deleted, "checksums", "chunk 1", True),
    "offsets misaligned": (_offsets_misaligned, "offsets", "chunk c/0", False),
    "store attributes edited": (_attrs_edited, "zarr.json", "", False),
    "array shape edited": (_array_meta_edited, "layer.0.mlp", "", False),
    "checksum codec removed": (_codec_removed, "layer.0.mlp", "", False),
    "root zarr.json truncated": (_root_json_garbage, "zarr.json", "", False),
    "corpus edited": (_corpus_edited, "corpus", "", False),
}


@pytest.fixture(scope="module")
def pristine(tiny_models, tmp_path_factory) -> tuple[Path, list[list[str]]]:
    data = corpus(11)
    path = tmp_path_factory.mktemp("pristine") / "s"
    extract_activations(tiny_models["bert"], data, store=path, **KW)
    return path, data


def _read_everything(path: Path) -> None:
    acts = Activations.open(path)
    for site in acts.sites:
        acts.layer(site)
    for i in range(acts.num_sentences):
        acts.units(i)
    acts.corpus()


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_every_kind_of_damage_is_detected_and_named(tiny_models, pristine, tmp_path, kind: str) -> None:
    damage, array, chunk, repairable = DAMAGE[kind]
    src, data = pristine
    path = tmp_path / "s"
    shutil.copytree(src, path)
    damage(path)
    with pytest.raises(StoreCorruptionError) as err:
        _read_everything(path)
    msg = str(err.value)
    assert str(path) in msg and array in msg and chunk in msg, msg
    assert "re-extract" in msg and "allow_pickle" not in msg
    # recovery as the message says: repair=True re-extracts the damaged blocks, overwrite=True everything
    fix = {"repair": True} if repairable else {"overwrite": True}
    assert ("repair=True" if repairable else "overwrite=True") in msg
    fixed = extract_activations(tiny_models["bert"], data, store=path, **fix, **KW)
    _read_everything(path)
    same(fixed, Activations.open(src))


def test_repair_rewrites_only_the_damaged_blocks(tiny_models, pristine, tmp_path) -> None:
    src, data = pristine
    path = tmp_path / "s"
    shutil.copytree(src, path)
    _flip(path)
    untouched = _file(path, "layer.0.resid", 0).stat().st_mtime_ns
    steps: list[str] = []
    zarrstore.trace_steps(steps)
    try:
        extract_activations(tiny_models["bert"], data, store=path, repair=True, **KW)
    finally:
        zarrstore.trace_steps(None)
    assert [s for s in steps if s.startswith("block")] == [
        "block 1: layer.0.mlp",
        "block 1: layer.0.resid",
        "block 1: rows",
        "block 1: checksums",
    ]
    assert _file(path, "layer.0.resid", 0).stat().st_mtime_ns == untouched


# -- the old format ---------------------------------------------------------------------------------


def _write_legacy(acts: Activations, path: Path) -> None:
    """A format-1 store as neuronwidgets wrote it before the Zarr store (.npy + JSON per chunk)."""
    (path / "chunks").mkdir(parents=True)
    counts = []
    for k in range(acts.num_chunks):
        ch = acts.chunk(k)
        d = path / "chunks" / f"{k:05d}"
        d.mkdir()
        np.save(d / "offsets.npy", ch.offsets)
        (d / "units.json").write_text(json.dumps(ch.units))
        for site in acts.sites:
            np.save(d / f"{site}.npy", np.asarray(ch.arrays[site]))
        counts.append(ch.num_sentences)
    meta = {**acts.meta, "format": "neuronwidgets-activations", "version": 1, "chunk_counts": counts}
    meta.update(complete=True, fingerprint="old")
    (path / "meta.json").write_text(json.dumps(meta))


def test_old_format_stores_are_read_with_a_warning_and_migrate_once(tiny_models, pristine, tmp_path) -> None:
    src, data = pristine
    new = Activations.open(src)
    _write_legacy(new, tmp_path / "old")
    with pytest.warns(UserWarning, match="old-format.*migrate_store"):
        old = Activations.open(tmp_path / "old")
    same(old, new)
    migrated = migrate_store(tmp_path / "old", tmp_path / "migrated")
    assert migrated.store is not None
    same(migrated, new)
    with pytest.raises(ValueError, match="old-format.*overwrite=True"):
        extract_activations(tiny_models["bert"], data, store=tmp_path / "old", **KW)
    again = extract_activations(tiny_models["bert"], data, store=tmp_path / "old", overwrite=True, **KW)
    same(again, new)
