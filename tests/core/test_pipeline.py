"""consume_overlapped: the plain loop's results, in order, with errors raised and no thread left."""

from __future__ import annotations

import threading

import pytest
import torch

from neuronwidgets.core.store.extraction import ExtractionPlan
from neuronwidgets.core.store.pipeline import consume_overlapped


def _threads() -> int:
    return sum(t.name == "neuronwidgets-consumer" for t in threading.enumerate())


@pytest.mark.parametrize("overlap", [True, False])
def test_items_are_consumed_in_order(overlap) -> None:
    out: list[int] = []
    consume_overlapped((i for i in range(50)), out.append, overlap=overlap)
    assert out == list(range(50)) and _threads() == 0


def test_a_consumer_error_stops_the_producer_and_is_raised() -> None:
    produced: list[int] = []

    def items():
        for i in range(100):
            produced.append(i)
            yield i

    def consume(i: int) -> None:
        if i == 3:
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        consume_overlapped(items(), consume)
    assert len(produced) < 10 and _threads() == 0


def test_a_producer_error_is_raised_after_the_consumer_finished() -> None:
    seen: list[int] = []

    def items():
        yield 1
        yield 2
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        consume_overlapped(items(), seen.append)
    assert seen == [1, 2] and _threads() == 0


def test_groups_do_not_depend_on_what_is_left_to_do(tiny_models, monkeypatch) -> None:
    """A resumed run batches sentences as an uninterrupted one: groups come from the layout only."""
    monkeypatch.setattr("neuronwidgets.core.store.extraction.GROUP_SENTENCES", 7)
    data = [["a", "b"]] * 23
    plan = ExtractionPlan.make(
        tiny_models["bert"], data, None, "resid", "word", "mean", 3, 4, 64, None, "float32"
    )
    layout = plan.layout()
    every = plan.groups(range(8), layout)
    assert every == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert plan.groups([3, 6], layout) == [[2, 3], [6, 7]]
    whole = {k: c for g in every for k, c in plan.run_group(g, range(8))}
    for k, chunk in plan.run_group([2, 3], [3]):
        assert k == 3
        for site, arr in chunk.arrays.items():
            assert (arr == whole[3].arrays[site]).all()


def test_torch_float16_conversion_rounds_as_numpy() -> None:
    """Extraction converts float32 → float16 with torch (faster); it must give NumPy's bits exactly."""
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.standard_normal(100_000).astype(np.float32) * 10,
            np.float32([6.1e-5, 5.9e-8, 3e-8, 65504, 65519, 65520, 1e6, -1e6, 0.0, -0.0, np.inf, -np.inf]),
            rng.uniform(-1e-4, 1e-4, 10_000).astype(np.float32),  # subnormals of float16
        ]
    )
    ours = torch.from_numpy(x).to(torch.float16).numpy()
    assert np.array_equal(ours.view(np.uint16), x.astype(np.float16).view(np.uint16))


def test_at_most_two_items_live_at_once() -> None:
    """An item is handed over, not queued: while the consumer works on item g the producer may finish
    g + 1 but not start g + 2 (a waiting slot would keep three groups of activations in memory)."""
    import time
    import weakref

    class Item:
        pass

    live: weakref.WeakSet[Item] = weakref.WeakSet()
    most = [0]

    def items():
        for _ in range(12):
            item = Item()
            live.add(item)
            most[0] = max(most[0], len(live))
            yield item
            del item

    def consume(item: Item) -> None:
        most[0] = max(most[0], len(live))
        time.sleep(0.02)  # a consumer slower than the producer: the worst case for memory

    consume_overlapped(items(), consume)
    assert most[0] <= 2


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize(
    "granularity, aggregation, max_length",
    [("word", "mean", None), ("word", "max", None), ("word", "first", None), ("word", "last", None),
     ("token", "mean", None), ("word", "mean", 8)],
)  # fmt: skip
def test_groups_reuse_their_buffers(
    tiny_models, monkeypatch, granularity, aggregation, max_length, dtype
) -> None:
    """A float16 extraction (and a float32 one whose consumer is done with each group before the next, as
    the streaming statistics) keeps its float32 group buffers for the next group, and fills them only where
    rows accumulate (max; a mean over a sentence split into windows, ``max_length=8``): a group after a
    larger one (stale rows in the kept buffer) and one after a smaller one (a larger buffer mapped) must
    give exactly what each group gives from fresh buffers."""
    import numpy as np

    monkeypatch.setattr("neuronwidgets.core.store.extraction.GROUP_SENTENCES", 4)
    long = ["a", "bb", "ccc", "dddd", "e", "ff"]
    data = [["a", "bb", "ccc", "dddd"]] * 4 + [["e"]] * 4 + [long * (2 if max_length else 1)] * 4
    plan = ExtractionPlan.make(
        tiny_models["bert"], data, None, "resid", granularity, aggregation, 4, 4, 64, max_length, dtype
    )
    plan._bounds = [(0, 4), (4, 8), (8, 12)]  # one block (and group) of each kind, whatever the row rule
    plan.extractor.reuse_buffers = dtype == "float32"
    groups = plan.groups(range(len(plan.bounds)), plan.layout())
    assert len(groups) == 3
    reused = []
    for g in groups:  # each group's values copied and its buffers freed before the next one
        chunks = plan.run_group(g, g)
        reused.append([{site: arr.copy() for site, arr in c.arrays.items()} for _, c in chunks])
        del chunks
    assert len(plan.extractor._pool._maps) == len(plan.sites)  # the buffers came back
    assert bool(plan.extractor.split) == bool(max_length)
    for g, blocks in zip(groups, reused):
        plan.extractor._pool.clear()  # fresh buffers
        fresh = plan.run_group(g, g)
        assert len(fresh) == len(blocks)
        for arrays, (_, chunk) in zip(blocks, fresh):
            for site, arr in arrays.items():
                assert arr.dtype == np.dtype(dtype)
                assert np.array_equal(arr.view(np.uint8), chunk.arrays[site].view(np.uint8))
    if dtype == "float16":  # pooled straight into float16 rows: the float32 rows, rounded once
        plan.meta["dtype"] = "float32"
        for g, blocks in zip(groups, reused):
            for arrays, (_, chunk) in zip(blocks, plan.run_group(g, g)):
                for site, arr in arrays.items():
                    want = torch.from_numpy(chunk.arrays[site]).half().numpy()
                    assert np.array_equal(arr.view(np.uint8), want.view(np.uint8))
