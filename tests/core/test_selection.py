"""Corpus selection against brute force: top/bottom units, thresholds, contexts, quantile samples and word
types, on an on-disk store of several chunks so that the streaming merges are exercised."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_acts import make_activations, random_corpus

from neuronwidgets.core.concepts.selection import quantile_samples, top_activations, word_types
from neuronwidgets.core.store import streaming
from neuronwidgets.core.store.streaming import Candidates, NeuronSelection, StreamingTopK

SITES = {"layer.0.mlp": 7, "layer.1.resid": 5}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    corpus = random_corpus(120, seed=1)
    n = corpus.num_words
    rng = np.random.default_rng(2)
    arrays = {site: rng.normal(size=(n, w)).astype(np.float32) for site, w in SITES.items()}
    # a neuron whose activations grow through the corpus, so the last chunks keep displacing the top-k,
    # and one whose top units all sit in the first chunk
    arrays["layer.0.mlp"][:, 3] += np.linspace(0, 4, n, dtype=np.float32)
    arrays["layer.0.mlp"][:, 4] -= np.linspace(0, 4, n, dtype=np.float32)
    store = tmp_path_factory.mktemp("sel") / "store"
    acts = make_activations(corpus, arrays, [25, 40, 1, 30, 24], store=store)
    assert acts.path is not None and acts.num_chunks == 5
    return corpus, arrays, acts


def brute_top(col: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((np.arange(len(col)), -col))[:k]
    return col[order], order


def assert_streamed_top_k(x: np.ndarray, k: int, block: int, keep_units: bool = True, columns=None) -> None:
    """Feed ``x`` to a StreamingTopK ``block`` rows at a time; its top k equal the brute-force one."""
    heap = StreamingTopK(x.shape[1], k, keep_units=keep_units)
    for a in range(0, len(x), block):
        heap.update(x[a : a + block], a)
    values, units = heap.result()
    for j in range(x.shape[1]) if columns is None else columns:
        v, u = brute_top(x[:, j], k)
        np.testing.assert_array_equal(values[j], v)
        if keep_units:
            np.testing.assert_array_equal(units[j], u)


@pytest.mark.parametrize("quantile", [0.005, 0.05, 0.3])
def test_top_activations_equal_brute_force(data, quantile: float) -> None:
    corpus, arrays, acts = data
    k = 12
    top = top_activations(acts, k=k, quantile=quantile)
    n = corpus.num_words
    assert top.num_units == n
    assert top.neurons == tuple(f"{s}:{i}" for s, w in SITES.items() for i in range(w))
    kk = math.ceil(quantile * n)
    for row, name in enumerate(top.neurons):
        site, idx = name.split(":")
        col = arrays[site][:, int(idx)]
        values, units = brute_top(col, k)
        np.testing.assert_array_equal(top.top_values[row], values)
        np.testing.assert_array_equal(top.top_units[row], units)
        low_values, low_units = brute_top(-col, k)
        np.testing.assert_array_equal(top.bottom_values[row], -low_values)
        np.testing.assert_array_equal(top.bottom_units[row], low_units)
        assert top.thresholds[row] == np.sort(col)[::-1][kk - 1]
        assert (col >= top.thresholds[row]).sum() == kk


def test_selected_neurons_and_contexts(data) -> None:
    corpus, arrays, acts = data
    top = top_activations(acts, ["layer.1.resid:2", "layer.0.mlp:3"], k=5, bottom=False)
    assert top.neurons == ("layer.0.mlp:3", "layer.1.resid:2")  # store order
    assert top.bottom_units.shape == (2, 0)
    col = arrays["layer.1.resid"][:, 2]
    ctx = top.contexts("layer.1.resid:2", window=2)
    assert list(ctx.columns) == ["rank", "activation", "sentence", "position", "left", "word", "right"]
    offs = np.cumsum([0] + [len(w) for w in corpus.words])
    for r in ctx.itertuples():
        unit = offs[r.sentence] + r.position
        assert col[unit] == pytest.approx(r.activation)
        words = corpus.words[r.sentence]
        assert r.word == words[r.position]
        assert r.left == " ".join(words[max(0, r.position - 2) : r.position])
        assert r.right == " ".join(words[r.position + 1 : r.position + 3])
    sentence, pos = top.context_units("layer.1.resid:2", 0)
    assert sentence == corpus.words[ctx.sentence[0]] and pos == ctx.position[0]
    frame = top.to_frame()
    assert len(frame) == 2 * 5 and set(frame["which"]) == {"top"}
    with pytest.raises(ValueError, match=r"layer\.0\.mlp:0 is not in these results"):
        top.contexts("layer.0.mlp:0")


def test_fewer_units_than_k(tmp_path: Path) -> None:
    corpus = random_corpus(2, seed=3)
    n = corpus.num_words
    acts = make_activations(corpus, {"layer.0.mlp": np.arange(n, dtype=np.float32)[:, None]}, 1)
    top = top_activations(acts, k=n + 3)
    assert list(top.top_units[0, :n]) == list(range(n - 1, -1, -1))
    assert np.all(top.top_units[0, n:] == -1) and np.all(np.isinf(top.top_values[0, n:]))
    assert len(top.contexts("layer.0.mlp:0")) == n


def test_neuron_selection_errors(data) -> None:
    _, _, acts = data
    with pytest.raises(ValueError, match="out of range"):
        NeuronSelection.of(acts, "layer.0.mlp:99")
    with pytest.raises(ValueError, match="was not extracted"):
        NeuronSelection.of(acts, "layer.5.mlp")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        top_activations(acts, k=0)
    with pytest.raises(ValueError, match="quantile must be in"):
        top_activations(acts, quantile=0.0)


def test_streaming_topk_sparse_and_full_paths() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)).astype(np.float32)
    assert_streamed_top_k(x, 8, 37)  # first block: every value a candidate; later: a few per column


@pytest.mark.parametrize("keep_units", [True, False])
def test_streaming_topk_merges_wide_blocks_a_slice_of_columns_at_a_time(
    keep_units: bool, monkeypatch
) -> None:
    # merge slices of 256 columns for whole blocks (and fewer for the sparse path, whose columns hold up
    # to 50 candidates), with a sparse column pattern in later blocks: every column's top k equals the
    # brute-force one
    monkeypatch.setattr(streaming, "MERGE_BYTES", 4 * (11 + 50) * 256)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 700)).astype(np.float32)
    x[200:, 300:310] += 5.0  # late candidates in a few columns of the second slice only
    assert_streamed_top_k(x, 11, 50, keep_units, columns=(0, 255, 256, 305, 511, 512, 699))


@pytest.mark.parametrize("merge_bytes", [1, 4 * (9 + 40) * 3, 2**30])
def test_streaming_topk_any_merge_slice_gives_the_same_top_k(merge_bytes: int, monkeypatch) -> None:
    # one column per slice, three, or all at once; columns with very different numbers of candidates
    # (a drifting scale per column), ties included: values and units equal the brute-force top k
    monkeypatch.setattr(streaming, "MERGE_BYTES", merge_bytes)
    rng = np.random.default_rng(3)
    scale = np.linspace(0, 3, 600)[:, None] ** (np.arange(40) % 4)
    x = (rng.integers(0, 50, size=(600, 40)) * scale).astype(np.float32)
    assert_streamed_top_k(x, 9, 40)


@pytest.mark.parametrize("read_every_block", [False, True])
def test_threshold_topk_merges_pending_candidates_exactly(read_every_block: bool) -> None:
    # values only, k large against the blocks: sparse candidates wait (screened against the last merged
    # floor) and are merged together; the floor read at any time is the exact k-th largest so far
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3000, 30)) * np.linspace(1, 4, 3000)[:, None]).astype(np.float32)
    x[:, 7] = np.round(x[:, 7])  # ties
    heap = StreamingTopK(30, 200, keep_units=False)
    for a in range(0, 3000, 60):
        heap.update(x[a : a + 60], a)
        if read_every_block and a >= 200:
            np.testing.assert_array_equal(heap.floor, -np.sort(-x[: a + 60], axis=0)[199])
    assert read_every_block or heap._pending  # the lazy path was taken
    np.testing.assert_array_equal(heap.floor, -np.sort(-x, axis=0)[199])
    np.testing.assert_array_equal(heap.result()[0], -np.sort(-x, axis=0)[:200].T)


@pytest.mark.parametrize("block", [1, 7, 37, 500])
def test_streaming_topk_ties_keep_the_earlier_units(block: int) -> None:
    # many equal values within one block: the earliest units are kept, whatever the block size
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(500, 5)).astype(np.float32)
    assert_streamed_top_k(x, 9, block)


def test_quantile_samples_fall_in_their_bins(data) -> None:
    _, arrays, acts = data
    col = arrays["layer.0.mlp"][:, 1]
    qs = quantile_samples(acts, "layer.0.mlp:1", quantiles=[0, 0.5, 0.9, 0.99, 1], per_bin=4, seed=3)
    np.testing.assert_allclose(qs.edges, np.quantile(col, [0, 0.5, 0.9, 0.99, 1]), rtol=1e-6)
    assert np.bincount(qs.bins, minlength=4).tolist() == [4, 4, 4, 4]
    assert np.array_equal(qs.values, col[qs.units])
    for b, v in zip(qs.bins, qs.values):
        assert qs.edges[b] <= v <= qs.edges[b + 1]
    again = quantile_samples(acts, "layer.0.mlp:1", quantiles=[0, 0.5, 0.9, 0.99, 1], per_bin=4, seed=3)
    assert np.array_equal(again.units, qs.units)
    frame = qs.to_frame()
    assert len(frame) == 16 and frame["unit"].tolist() == list(qs.texts)
    assert len(quantile_samples(acts, "layer.0.mlp:1", 10, per_bin=1).units) == 10


def test_word_types_equal_groupby(data) -> None:
    corpus, arrays, acts = data
    col = arrays["layer.1.resid"][:, 4]
    summary = word_types(acts, "layer.1.resid:4", min_count=5, threshold=1.0)
    df = pd.DataFrame({"type": [w.lower() for s in corpus.words for w in s], "v": col})
    g = df.groupby("type")["v"]
    expected = pd.DataFrame(
        {"count": g.size(), "mean": g.mean(), "max": g.max(), "fires": g.apply(lambda v: (v >= 1.0).sum())}
    )
    expected = expected[expected["count"] >= 5]
    got = summary.to_frame().set_index("type").loc[expected.index]
    np.testing.assert_array_equal(got["count"], expected["count"])
    np.testing.assert_allclose(got["mean"], expected["mean"], rtol=1e-5)
    np.testing.assert_array_equal(got["max"], expected["max"])
    np.testing.assert_array_equal(got["fires"], expected["fires"])
    np.testing.assert_allclose(got["fire_rate"], expected["fires"] / expected["count"])
    frame = summary.to_frame("fire_rate")
    assert frame["fire_rate"].is_monotonic_decreasing
    default = word_types(acts, "layer.1.resid:4")
    assert default.threshold == top_activations(acts, "layer.1.resid:4").threshold("layer.1.resid:4")


@pytest.mark.parametrize("negate", [False, True])
def test_screening_by_column_extremes_finds_the_same_candidates(negate: bool) -> None:
    """``Candidates.above(..., extreme=)`` scans only the columns whose extreme passes the floor: the same
    candidates, in the same order, as the scan of the whole block (few columns, most, none; ties; a column
    with a NaN, whose extreme is NaN, is scanned)."""
    rng = np.random.default_rng(3)
    block = rng.standard_normal((300, 40)).astype(np.float32)
    block[5, 7] = np.nan
    block[:, 9] = 1.5  # a column of ties
    signed = -block if negate else block
    extreme = signed.max(axis=0)  # NaN for column 7
    for q, open_cols in [(0.0, None), (0.9, None), (0.9, [2, 7, 9, 11]), (0.999, [7, 30]), (1.0, None)]:
        floor = np.nanquantile(signed, q, axis=0).astype(np.float32)
        if q == 0.0:
            floor[:] = -np.inf
        if open_cols is not None:  # a few columns can hold candidates: only they are scanned
            floor[np.setdiff1d(np.arange(40), open_cols)] = np.inf
        want = Candidates.above(block, floor, 100, negate)
        got = Candidates.above(block, floor, 100, negate, extreme=extreme)
        if want is None:
            assert got is None
            continue
        assert got is not None
        for field in ("block", "cols", "units", "values"):
            a, b = getattr(want, field), getattr(got, field)
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)
