"""Streaming over an activation set, neuron by neuron, with bounded memory: the machinery shared by corpus
selection, concept alignment and compositional explanations.

- :class:`NeuronSelection` turns ``neurons=`` arguments (``None`` for every neuron, site names such as
  ``"layer.3.mlp"``, neuron addresses, or a list mixing them) into columns per site, in store order.
- :func:`iter_blocks` yields ``(first_unit, site, block)`` for each chunk and selected site, ``block``
  being ``[n_units, n_selected]`` (memory-mapped when stored on disk). Chunks of an on-disk store are
  opened afresh and released after use, so pages read through their memory maps do not pile up.
- :class:`StreamingTopK` keeps each neuron's ``k`` largest values and their unit rows, merging chunk by
  chunk: only values above a neuron's running ``k``-th largest are candidates, so once the running top-k
  has settled a chunk costs one vectorised comparison plus a partition of a handful of candidates.
- :func:`quantile_k` / :func:`quantile_thresholds`: the firing threshold of each neuron, the
  ``ceil(q · N)``-th largest activation over the ``N`` units (exact, via :class:`StreamingTopK`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.addresses import NeuronAddress, Site, parse_neuron, parse_site
from .activations import Activations, Chunk

NeuronSpec = str | NeuronAddress | Site | Sequence[str | NeuronAddress | Site] | None


@dataclass(frozen=True)
class NeuronSelection:
    """Neurons chosen from an activation set, grouped by site in store order.

    ``sites[i]``: a site name; ``columns[i]``: int64 indices into that site (``None``: all of it);
    ``names``: every selected neuron's address, site by site (the order of result rows);
    ``starts`` int64 ``[len(sites) + 1]``: rows of ``names`` belonging to site ``i``.
    """

    sites: tuple[str, ...]
    columns: tuple[np.ndarray | None, ...]
    names: tuple[str, ...]
    starts: np.ndarray

    @classmethod
    def of(cls, acts: Activations, neurons: NeuronSpec = None) -> NeuronSelection:
        """Parse ``neurons``: ``None`` (every neuron), a site (``"layer.3.mlp"``), an address
        (``"layer.3.mlp:117"``), or a list of them. Duplicates are dropped, store order is kept."""
        widths = acts.widths
        chosen: dict[str, set[int] | None] = {}
        if neurons is None:
            items: list[Any] = list(acts.sites)
        elif isinstance(neurons, (str, NeuronAddress, Site)):
            items = [neurons]
        else:
            items = list(neurons)
            if not items:
                raise ValueError("no neurons given: pass None for every neuron, a site, or neuron addresses")
        for item in items:
            if isinstance(item, Site) or (isinstance(item, str) and ":" not in item):
                name = acts.check_site(parse_site(item))
                chosen[name] = None
            else:
                addr = acts.check_neuron(parse_neuron(item))
                cur = chosen.setdefault(addr.site.name, set())
                if cur is not None:
                    cur.add(addr.index)
        sites, columns, names, starts = [], [], [], [0]
        for site in acts.sites:
            if site not in chosen:
                continue
            cols = chosen[site]
            idx = np.arange(widths[site]) if cols is None else np.array(sorted(cols), dtype=np.int64)
            sites.append(site)
            columns.append(None if cols is None or len(idx) == widths[site] else idx)
            names += [f"{site}:{i}" for i in idx]
            starts.append(len(names))
        return cls(tuple(sites), tuple(columns), tuple(names), np.array(starts, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.names)

    def rows(self, i: int) -> slice:
        """Rows of :attr:`names` that belong to site ``i``."""
        return slice(int(self.starts[i]), int(self.starts[i + 1]))


def _chunk_sentence_starts(acts: Activations) -> list[tuple[int, int]]:
    counts = acts.meta.get("chunk_counts") if acts.path is not None else None
    if counts is None:
        counts = [acts.chunk(k).num_sentences for k in range(acts.num_chunks)]
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return [(int(starts[k]), int(counts[k])) for k in range(len(counts))]


def iter_chunks(acts: Activations, sites: Sequence[str]) -> Iterator[tuple[int, int, Chunk]]:
    """Yield ``(first_sentence, first_unit, chunk)`` with only ``sites`` opened.

    On-disk chunks are read afresh (and checked) rather than through :meth:`Activations.chunk`'s cache, so
    they are released once the caller drops the chunk: memory stays bounded by one chunk however large the
    store.
    """
    unit = 0
    for k, (first, _) in enumerate(_chunk_sentence_starts(acts)):
        chunk = acts.read_chunk(k, list(sites))
        yield first, unit, chunk
        unit += int(chunk.offsets[-1])


def iter_blocks(
    acts: Activations, selection: NeuronSelection, progress: Any = None
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(first_unit, site_index, block)`` per chunk and selected site; ``block`` is
    ``[n_units, n_selected_at_site]`` in the stored dtype (memory-mapped on disk)."""
    for _, unit, chunk in iter_chunks(acts, selection.sites):
        for i, site in enumerate(selection.sites):
            arr = chunk.arrays[site]
            cols = selection.columns[i]
            yield unit, i, (arr if cols is None else arr[:, cols])
        if progress is not None:
            progress.update(int(chunk.offsets[-1]))
        del chunk


def progress_bar(
    acts: Activations, n_neurons: int, desc: str, progress: bool | None, per_neuron: bool = False
) -> Any:
    """A tqdm bar over units (or, with ``per_neuron``, over neurons), shown by default when the work is
    large (over ~50M values)."""
    from tqdm.auto import tqdm

    show = progress if progress is not None else acts.num_units * n_neurons > 50_000_000
    if per_neuron:
        return tqdm(total=n_neurons, desc=desc, unit="neuron", disable=not show)
    return tqdm(total=acts.num_units, desc=desc, unit="unit", unit_scale=True, disable=not show)


def as_float32(block: np.ndarray) -> np.ndarray:
    """``block`` as a C-contiguous float32 array (one copy from float16 or a memory map)."""
    return np.ascontiguousarray(block, dtype=np.float32)


@dataclass(frozen=True)
class Candidates:
    """Values of one block that may enter a running top-k, grouped by column.

    Either ``block`` (float32 ``[n_units, width]``: every value is a candidate) or the sparse lists
    ``cols`` (ascending), ``units`` (global rows) and ``values``, all ``[n_candidates]``.
    """

    first_unit: int
    width: int
    block: np.ndarray | None = None
    cols: np.ndarray | None = None
    units: np.ndarray | None = None
    values: np.ndarray | None = None

    @classmethod
    def above(
        cls,
        block: np.ndarray,
        floor: np.ndarray,
        first_unit: int,
        negate: bool = False,
        extreme: np.ndarray | None = None,
    ) -> Candidates | None:
        """The values of ``block`` strictly above their column's ``floor`` (``None`` if there are none);
        ``negate``: of ``-block``, without negating the whole block (``-x > f`` exactly when ``x < -f``);
        ``extreme``: each column's largest value (of ``-block`` with ``negate``) if known, so that only the
        columns that can hold a candidate are scanned (the same result)."""
        n, width = block.shape
        cols_in: np.ndarray | None = None
        if extreme is not None:
            cols_in = np.flatnonzero(~(extreme <= floor))  # a NaN extreme (NaN in the column): scanned
            if len(cols_in) == 0:
                return None
            if len(cols_in) > width // 2:
                cols_in = None  # most columns: one scan of the whole block is cheaper than a gather
        if cols_in is None:
            flat = np.flatnonzero(block < -floor[None, :] if negate else block > floor[None, :])
        else:
            sub = block[:, cols_in]
            hit = np.flatnonzero(sub < -floor[cols_in] if negate else sub > floor[cols_in])
            r, c = np.divmod(hit, len(cols_in))
            flat = r * width + cols_in[c]  # as the whole block's scan finds them: row by row
        if len(flat) == 0:
            return None
        if len(flat) > n * width // 4:  # the first chunks: take whole columns
            return cls(first_unit, width, block=np.negative(block) if negate else block)
        rows, cols = np.divmod(flat, width)
        order = np.argsort(cols.astype(np.int16 if width < 2**15 else np.int64), kind="stable")
        rows, cols = rows[order], cols[order]
        values = block[rows, cols]
        if negate:
            np.negative(values, out=values)
        return cls(first_unit, width, cols=cols, units=first_unit + rows, values=values)

    def filter(self, floor: np.ndarray) -> Candidates | None:
        """Those strictly above a higher ``floor`` (for a smaller top-k fed from the same scan)."""
        if self.block is not None:
            return Candidates.above(self.block, floor, self.first_unit)
        assert self.cols is not None and self.values is not None and self.units is not None
        keep = self.values > floor[self.cols]
        if not keep.any():
            return None
        return Candidates(
            self.first_unit,
            self.width,
            cols=self.cols[keep],
            units=self.units[keep],
            values=self.values[keep],
        )


#: The most bytes of values one slice of a :meth:`StreamingTopK.merge` concatenates (then partitions).
MERGE_BYTES = 16 * 2**20


class StreamingTopK:
    """The ``k`` largest values of each of ``width`` columns (and, with ``keep_units``, their unit rows),
    fed ``[n_units, width]`` blocks in order.

    State: ``values`` float32 ``[width, k]`` and ``units`` int64 ``[width, k]``, unsorted; :attr:`floor`
    ``[width]``: each column's ``k``-th largest so far. A value enters only if strictly above the floor,
    so among equal values the earlier unit is kept.

    Without ``keep_units`` (a threshold: only the ``k``-th value matters, typically with a large ``k``),
    sparse candidates are gathered and merged together once they number a quarter of ``values``:
    merging re-partitions all ``k`` values of every column that has a candidate, which per block cost
    more than the forward pass's spare CPU (the 0.5 % threshold over 100k sentences: k ≈ 6,000). Until
    then new values are screened against the last merged floor (:attr:`lower_bound`, never above the
    exact one), so the result is the same; reading :attr:`floor`, :attr:`values` through
    :meth:`result` merges what is pending first.
    """

    def __init__(self, width: int, k: int, keep_units: bool = True):
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self.keep_units = keep_units
        self.values = np.full((width, k), -np.inf, dtype=np.float32)
        self.units = np.full((width, k if keep_units else 0), -1, dtype=np.int64)
        self._floor = np.full(width, -np.inf, dtype=np.float32)
        self._pending: list[Candidates] = []
        self._pending_n = 0

    @property
    def floor(self) -> np.ndarray:
        """Each column's ``k``-th largest value so far (``-inf`` while fewer were seen)."""
        self.flush()
        return self._floor

    @property
    def lower_bound(self) -> np.ndarray:
        """The floor as of the last merge: at most :attr:`floor` (without merging pending candidates)."""
        return self._floor

    def update(
        self, block: np.ndarray, first_unit: int, negate: bool = False, extreme: np.ndarray | None = None
    ) -> Candidates | None:
        """Merge ``block`` (float32 ``[n_units, width]``, row 0 = unit ``first_unit``; ``negate``: its
        negation, the bottom-k; ``extreme``: as :meth:`Candidates.above`); returns the candidates it
        considered, which a smaller top-k over the same columns can :meth:`merge`."""
        cand = Candidates.above(block, self._floor, first_unit, negate, extreme)
        if cand is not None:
            self.merge(cand, prefiltered=True)
        return cand

    def merge(self, cand: Candidates | None, prefiltered: bool = False) -> None:
        """Merge candidates (from :meth:`Candidates.above` or another top-k's :meth:`update`)."""
        if cand is not None and not prefiltered:
            cand = cand.filter(self._floor)
        if cand is None:
            return
        if cand.block is not None:
            self._merge_block(cand)
        elif self.keep_units:
            self._merge_sparse(cand)
        else:
            self._pending.append(cand)
            self._pending_n += len(cand.values)  # type: ignore[arg-type]
            if self._pending_n >= max(1, self.values.size // 4):
                self.flush()

    def flush(self) -> None:
        """Merge the pending candidates (see the class docstring)."""
        if not self._pending:
            return
        pending, self._pending, self._pending_n = self._pending, [], 0
        cols = np.concatenate([c.cols for c in pending])
        order = np.argsort(cols, kind="stable")
        cand = Candidates(
            pending[0].first_unit,
            pending[0].width,
            cols=cols[order],
            units=np.concatenate([c.units for c in pending])[order],
            values=np.concatenate([c.values for c in pending])[order],
        ).filter(self._floor)
        if cand is not None:
            self._merge_sparse(cand)

    # Columns are merged a slice at a time, each slice's ``[columns, k + candidates]`` values at most
    # ``MERGE_BYTES``: merging all columns at once made a transient of ``width · (k + max candidates)``
    # values twice over (the concatenation and its partition).
    def _merge_block(self, cand: Candidates) -> None:
        assert cand.block is not None
        n = cand.block.shape[0]
        step = max(1, MERGE_BYTES // (4 * (self.k + n)))
        for c0 in range(0, cand.width, step):
            c1 = min(c0 + step, cand.width)
            vals = np.concatenate([self.values[c0:c1], cand.block[:, c0:c1].T], axis=1)
            units = None
            if self.keep_units:
                rows = np.broadcast_to(np.arange(cand.first_unit, cand.first_unit + n), (c1 - c0, n))
                units = np.concatenate([self.units[c0:c1], rows], axis=1)
            self._keep(np.arange(c0, c1), vals, units)

    def _merge_sparse(self, cand: Candidates) -> None:
        assert cand.cols is not None and cand.values is not None and cand.units is not None
        counts = np.bincount(cand.cols, minlength=cand.width)
        cols = np.flatnonzero(counts)
        ends = np.cumsum(counts[cols])  # cand.cols is ascending: column cols[i]'s candidates end at ends[i]
        step = max(1, MERGE_BYTES // (4 * (self.k + int(counts.max()))))
        for i0 in range(0, len(cols), step):
            i1 = min(i0 + step, len(cols))
            a, b = (int(ends[i0 - 1]) if i0 else 0), int(ends[i1 - 1])
            sub, c = cols[i0:i1], counts[cols[i0:i1]]
            m = int(c.max())
            pos = np.arange(b - a) - np.repeat(ends[i0:i1] - c - a, c)
            row = np.repeat(np.arange(i1 - i0), c)
            pad_v = np.full((i1 - i0, m), -np.inf, dtype=np.float32)
            pad_v[row, pos] = cand.values[a:b]
            vals = np.concatenate([self.values[sub], pad_v], axis=1)
            units = None
            if self.keep_units:
                pad_u = np.full((i1 - i0, m), -1, dtype=np.int64)
                pad_u[row, pos] = cand.units[a:b]
                units = np.concatenate([self.units[sub], pad_u], axis=1)
            self._keep(sub, vals, units)

    def _keep(self, cols: np.ndarray, vals: np.ndarray, units: np.ndarray | None) -> None:
        k = self.k
        if units is None:
            kept = np.partition(vals, vals.shape[1] - k, axis=1)[:, -k:]
        else:
            sel = np.argpartition(vals, vals.shape[1] - k, axis=1)[:, -k:]
            kept = np.take_along_axis(vals, sel, axis=1)
            # argpartition breaks ties at the k-th value arbitrarily: where equal values straddle the cut,
            # sort those rows by (value desc, unit) so the earlier units are kept (rare: exact ties)
            low = kept.min(axis=1, keepdims=True)
            tied = np.flatnonzero((vals == low).sum(axis=1) > (kept == low).sum(axis=1))
            if len(tied):
                sel[tied] = np.lexsort((units[tied], -vals[tied]), axis=-1)[:, :k]
                kept[tied] = np.take_along_axis(vals[tied], sel[tied], axis=1)
            self.units[cols] = np.take_along_axis(units, sel, axis=1)
        self.values[cols] = kept
        self._floor[cols] = kept.min(axis=1)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(values, units)``, each ``[width, k]``, sorted by value descending (ties: earlier unit first;
        ``units`` is ``[width, 0]`` without ``keep_units``). Slots never filled (fewer than ``k`` units)
        hold ``-inf`` and unit ``-1``."""
        self.flush()
        if not self.keep_units:
            return -np.sort(-self.values, axis=1), self.units
        order = np.lexsort((self.units, -self.values), axis=1)
        return np.take_along_axis(self.values, order, axis=1), np.take_along_axis(self.units, order, axis=1)


def quantile_k(num_units: int, quantile: float) -> int:
    """How many units fire at ``quantile`` (the top fraction): ``ceil(quantile · num_units)``, at least 1."""
    if not 0.0 < quantile <= 1.0:
        raise ValueError(
            f"quantile must be in (0, 1] (the top fraction of units that fire, e.g. 0.005), got {quantile}"
        )
    return max(1, min(num_units, math.ceil(quantile * num_units - 1e-9)))


def quantile_thresholds(
    acts: Activations, selection: NeuronSelection, quantile: float, progress: bool | None = None
) -> np.ndarray:
    """float32 ``[len(selection)]``: each neuron's ``ceil(quantile · N)``-th largest activation over the
    ``N`` units (the top-``quantile`` firing threshold: a unit fires when its activation ≥ it)."""
    k = quantile_k(acts.num_units, quantile)
    heaps = [
        StreamingTopK(int(selection.starts[i + 1] - selection.starts[i]), k, keep_units=False)
        for i in range(len(selection.sites))
    ]
    bar = progress_bar(acts, len(selection), "activation thresholds", progress)
    try:
        for unit, i, block in iter_blocks(acts, selection, bar):
            heaps[i].update(as_float32(block), unit)
    finally:
        bar.close()
    return np.concatenate([h.floor for h in heaps]).astype(np.float32)  # floor: merges what is pending


def resolve_thresholds(
    acts: Activations,
    selection: NeuronSelection,
    thresholds: Any,
    quantile: float,
    progress: bool | None = None,
) -> tuple[np.ndarray, float | None]:
    """Firing thresholds ``[len(selection)]`` for the selected neurons, and the quantile they stand for
    (``None`` when given explicitly).

    ``thresholds``: ``None`` (computed: the top ``quantile`` of units, one streaming pass); an object with
    ``neurons`` and ``thresholds`` (e.g. :class:`~neuronwidgets.core.concepts.selection.TopActivations` or
    :class:`~neuronwidgets.core.concepts.ConceptAlignment`, which must cover the selection); a mapping
    neuron → threshold; one number for every neuron; or an array aligned with the selection.
    """
    n = len(selection)
    if thresholds is None:
        return quantile_thresholds(acts, selection, quantile, progress), quantile
    if hasattr(thresholds, "neurons") and hasattr(thresholds, "thresholds"):
        lookup = dict(zip(thresholds.neurons, np.asarray(thresholds.thresholds, dtype=np.float32)))
        missing = [name for name in selection.names if name not in lookup]
        if missing:
            raise ValueError(
                f"the thresholds given do not cover {len(missing)} selected neuron(s), e.g. {missing[0]}: "
                "compute them for the same neurons, or pass thresholds=None"
            )
        q = getattr(thresholds, "quantile", None)
        return np.array([lookup[name] for name in selection.names], dtype=np.float32), q
    if isinstance(thresholds, dict):
        lookup = {parse_neuron(k).name: float(v) for k, v in thresholds.items()}
        missing = [name for name in selection.names if name not in lookup]
        if missing:
            raise ValueError(f"no threshold given for {missing[0]} ({len(missing)} neuron(s) missing)")
        return np.array([lookup[name] for name in selection.names], dtype=np.float32), None
    arr = np.asarray(thresholds, dtype=np.float32)
    if arr.ndim == 0:
        return np.full(n, float(arr), dtype=np.float32), None
    if arr.shape != (n,):
        raise ValueError(
            f"expected {n} thresholds (one per selected neuron), got an array of shape {arr.shape}"
        )
    return arr, None
