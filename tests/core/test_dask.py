"""Extraction on a Dask LocalCluster (2 worker processes) writes the same store, bit for bit, as one
process, each worker writing its own blocks."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from neuronwidgets.core import Activations, extract_activations

distributed = pytest.importorskip("distributed")


def _corpus(n: int) -> list[list[str]]:
    rng = np.random.default_rng(3)
    vocab = ["the", "a", "fox", "dog", "jumps", "over", "lazy", "quick", "brown", "cat", "sat", "on", "."]
    return [list(rng.choice(vocab, size=int(rng.integers(1, 12)))) for _ in range(n)]


def test_dask_extraction_is_bit_identical_to_one_process(tiny_models, tmp_path, monkeypatch) -> None:
    # groups of 2 blocks (10 sentences), so the 8 blocks make 4 tasks for the 2 workers
    monkeypatch.setattr("neuronwidgets.core.store.extraction.GROUP_SENTENCES", 10)
    m = copy.deepcopy(tiny_models["llama"])
    # once called with output_hidden_states, transformers leaves closures hooked on the blocks: the handle
    # must still travel to the workers
    m.model(**m.tokenizer(["a b"], return_tensors="pt"), output_hidden_states=True)
    data = _corpus(40)
    kw = dict(components="all", granularity="token", chunk_sentences=5)
    one = extract_activations(m, data, store=tmp_path / "one", **kw)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
        distributed.get_task_stream(client) as tasks,
        # Dask's nannies set MALLOC_TRIM_THRESHOLD_ by default: the extraction says what it costs
        pytest.warns(UserWarning, match=r"MALLOC_TRIM_THRESHOLD_=65536 .*pre-spawn-environ"),
    ):
        many = extract_activations(m, data, store=tmp_path / "dask", client=client, **kw)
    writers = {t["worker"] for t in tasks.data if str(t["key"]).startswith("nw-block")}
    assert len(writers) == 2  # both workers wrote blocks
    assert many.num_chunks == one.num_chunks >= 4
    for site in one.sites:
        a, b = one.layer(site), many.layer(site)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert [many.units(i) for i in range(40)] == [one.units(i) for i in range(40)]
    assert np.array_equal(many.word_ids(7), one.word_ids(7))
    # the stores hold the same bytes of activations: same per-block checksums
    assert np.array_equal(
        Activations.open(tmp_path / "dask").store.group["checksums"][:],
        Activations.open(tmp_path / "one").store.group["checksums"][:],
    )


def test_no_warning_for_workers_started_without_the_trim_threshold(
    tiny_models, tmp_path, recwarn, monkeypatch
) -> None:
    import dask

    # a nanny writes its variables into this process's environment too, which workers inherit
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}),
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        extract_activations(tiny_models["bert"], _corpus(6), store=tmp_path / "s", client=client)
    assert not [w for w in recwarn if "MALLOC_TRIM" in str(w.message)]


def test_client_needs_a_store(tiny_models) -> None:
    with pytest.raises(ValueError, match="client= needs store="):
        extract_activations(tiny_models["bert"], [["a", "b"]], client=object())
