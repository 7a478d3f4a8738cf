"""Extraction on a Dask cluster: the blocks of sentences of a Zarr activation store are shared out to the
workers of a ``distributed.Client``, one task per group of consecutive blocks (the unit one process batches together), and each worker writes its blocks' chunks (and
their checksum rows) straight into the store, which must be on storage every worker can reach (a shared
filesystem path). Groups are the same as in one process and each is extracted whole, in the same
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
    from .zarrstore import ZarrStore

    _warn_malloc_trim(client)
    _ = plan.bounds  # the blocks are cut here, once, not again on every worker
    shared = client.scatter(plan, broadcast=True)
    layout = ZarrStore.open(root, mode="r").layout
    futures = [
        client.submit(
            _write_group,
            shared,
            str(root.resolve()),
            group,
            [k for k in group if k in todo],
            pure=False,
            key=f"nw-blocks-{group[0]}-{group[-1]}-{root.name}",
        )
        for group in plan.groups(todo, layout)
    ]
    replaced = split = 0
    for r, s in client.gather(futures):
        replaced += r
        split += s
    if replaced or split:
        plan.extractor.replaced, plan.extractor.split = replaced, split
        plan.warn()


def _trim_threshold() -> str | None:
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def _warn_malloc_trim(client: Any) -> None:
    """Warn when workers run with glibc's ``MALLOC_TRIM_THRESHOLD_`` set, as Dask's nannies do by default
    (``distributed.nanny.pre-spawn-environ``). Setting it switches off glibc's adaptive mmap threshold, so
    every tensor over 128 kB of every layer is mapped and unmapped again: MiniLM's forward pass ran 1.5×
    slower on such a worker than in the client (4.2 s against 2.8 s for the same batches; 3.1 s against 3.0
    s with the variable unset)."""
    try:
        found = {v for v in client.run(_trim_threshold).values() if v is not None}
    except Exception:  # a client without run(): nothing to check
        return
    if found:
        warnings.warn(
            f"the Dask workers run with MALLOC_TRIM_THRESHOLD_={sorted(found)[0]} (Dask's nanny default), which "
            "makes torch's forward passes up to 1.5x slower on them; start the cluster under "
            "dask.config.set({'distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_': None}) "
            "(see docs/store.md)",
            stacklevel=3,
        )


def _write_group(plan: ExtractionPlan, root: str, group: list[int], todo: list[int]) -> tuple[int, int]:
    """On a worker: extract the blocks of ``group`` together (as one process does) and write those in
    ``todo``; returns the group's (replaced words, split texts)."""
    import torch

    from .zarrstore import ZarrStore

    ex = plan.extractor
    before = (ex.replaced, ex.split)
    threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)  # the client's count: other counts round matrix products differently
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chunks = plan.run_group(group, todo)
    finally:
        torch.set_num_threads(threads)
    store = ZarrStore.open(root, mode="r+")
    for k, chunk in chunks:
        store.write_block(k, chunk)
    return ex.replaced - before[0], ex.split - before[1]
