"""Extraction on a Dask cluster: the blocks of sentences of a Zarr activation store are shared out to the
workers of a ``distributed.Client``, one task per block, and each worker writes its blocks' chunks (and
their checksum rows) straight into the store, which must be on storage every worker can reach (a shared
filesystem path). Blocks are the same as in one process and each is extracted whole, in the same
batches and with the client's torch thread count (MiniLM's matrix products round differently with 1 and
2 threads), so the store is bit-identical to a single-process run on the same kind of CPU.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .extraction import ExtractionPlan


def extract_on_dask(client: Any, plan: ExtractionPlan, root: Path, todo: list[int]) -> None:
    """Write blocks ``todo`` of the store at ``root`` on ``client``'s workers; returns when all are written
    (a failed task raises here, and the blocks already written stay: call again to resume)."""
    if not hasattr(client, "submit") or not hasattr(client, "scatter"):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    if not todo:
        return
    shared = client.scatter(plan, broadcast=True)
    futures = [
        client.submit(
            _write_block, shared, str(root.resolve()), k, pure=False, key=f"nw-block-{k}-{root.name}"
        )
        for k in todo
    ]
    replaced = split = 0
    for r, s in client.gather(futures):
        replaced += r
        split += s
    if replaced or split:
        plan.extractor.replaced, plan.extractor.split = replaced, split
        plan.warn()


def _write_block(plan: ExtractionPlan, root: str, k: int) -> tuple[int, int]:
    """On a worker: extract block ``k`` and write it; returns the block's (replaced words, split texts)."""
    import torch

    from .zarrstore import ZarrStore

    ex = plan.extractor
    before = (ex.replaced, ex.split)
    threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)  # the client's count: other counts round matrix products differently
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chunk = plan.run_block(k)
    finally:
        torch.set_num_threads(threads)
    ZarrStore.open(root, mode="r+").write_block(k, chunk)
    return ex.replaced - before[0], ex.split - before[1]
