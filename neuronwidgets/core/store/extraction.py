"""Activation extraction: batched, length-sorted, padding-aware forward passes that read the chosen sites
and align model tokens to the corpus words exactly.

Alignment works on character offsets: every token is matched with the words its characters overlap, so
pre-split words (CoNLL-U) map one-to-one to output rows whatever the tokenizer does, and plain text is
read exactly as given. A word the tokenizer drops entirely (e.g. a lone zero-width character) is fed to
the model as the unknown token instead, with a warning, so it still gets a row.

Texts longer than the model's maximum are split into windows at word boundaries (with a warning) and
their rows concatenated, so the output still has one row per word.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.corpus import Corpus, as_corpus
from ..models.addresses import COMPONENTS, DEFAULT_COMPONENTS, Site, forward_order
from ..models.handle import ModelHandle
from ..models.loading import as_handle
from .activations import FORMAT, FORMAT_VERSION, Activations, Chunk
from .alignment import special_template
from .extractor import _Extractor
from .fingerprint import corpus_digest, describe_differences, tokenizer_digest, weights_digest
from .pipeline import consume_overlapped
from .zarrstore import Layout, ZarrStore, is_legacy_store, is_zarr_store

GRANULARITIES = ("word", "token")
AGGREGATIONS = ("mean", "first", "last", "max")
#: Blocks are computed in groups of consecutive blocks (see ``ExtractionPlan.groups``) of at most this many
#: sentences and this many bytes of float32 rows: the unit of length sorting, and the memory it costs.
GROUP_SENTENCES = 2048
GROUP_BYTES = 256 * 2**20
#: How the corpus is cut into stored blocks (recorded in the store's fingerprint: another rule, other chunks).
BLOCK_RULE = (
    "consecutive sentences, about chunk_sentences sentences' rows each (at most four times as many sentences)"
)


def row_blocks(counts: Sequence[int] | np.ndarray, chunk_sentences: int) -> list[tuple[int, int]]:
    """Cut sentences with ``counts`` rows each into blocks ``(first, end)`` of consecutive sentences that
    hold about as many rows as ``chunk_sentences`` sentences of average length, and at most
    ``4 * chunk_sentences`` sentences.

    Every block of a Zarr array has the rows of the largest one (a regular chunk grid), so blocks of a fixed
    number of sentences pad every chunk up to the block of longest sentences: on 100k UD English sentences
    in corpus order (documents of short and of long sentences), 256-sentence blocks held 1,620 to 5,117
    words and 39 % of the stored rows were padding, compressed and written all the same. Blocks filled up
    to a row target leave less than one sentence of padding each. A sentence with more rows than the
    target gets a block of its own (and sets the chunk size).

    Example:
        >>> row_blocks([3, 3, 1, 1, 1, 1, 1, 1], 2)
        [(0, 1), (1, 2), (2, 4), (4, 8)]
    """
    ends = np.cumsum(np.asarray(counts, dtype=np.int64))
    n = len(ends)
    if n == 0:
        return []
    target = max(1, -(-int(ends[-1]) * chunk_sentences // n))  # rows of chunk_sentences average sentences
    out: list[tuple[int, int]] = []
    a = 0
    while a < n:
        before = int(ends[a - 1]) if a else 0
        b = int(np.searchsorted(ends, before + target, side="right"))  # sentences a .. b-1 fit the target
        b = min(max(b, a + 1), a + 4 * chunk_sentences, n)
        out.append((a, b))
        a = b
    return out


def resolve_sites(
    handle: ModelHandle, layers: Any = None, components: Sequence[str] | str | None = "resid"
) -> list[Site]:
    """Sites for ``layers`` × ``components`` in forward order.

    Args:
        handle: The model.
        layers: ``None``/``"all"`` (embeddings and every block), an int, or a list of ints and
            ``"embed"``; negative ints count from the last block (-1 is the last).
        components: ``"resid"``, ``"mlp"``, ``"mlp_out"`` (the MLP output), a list of them, or
            ``"all"``/``None`` for ``resid`` and ``mlp``.

    Returns:
        The sites that exist (the embeddings have no MLP), in forward order.

    Raises:
        ValueError: For an unknown component or a layer the model does not have.

    Example:
        >>> [s.name for s in resolve_sites(load_model("minilm"), [0, -1], "mlp")]
        ['layer.0.mlp', 'layer.5.mlp']
    """
    if components is None or components == "all":
        comps: tuple[str, ...] = DEFAULT_COMPONENTS
    elif isinstance(components, str):
        comps = (components,)
    else:
        comps = tuple(components)
    if not comps:
        raise ValueError("no components given: choose 'resid', 'mlp' or both")
    for c in comps:
        if c not in COMPONENTS:
            raise ValueError(f"unknown component {c!r}: choose from {', '.join(COMPONENTS)}")
    n = handle.num_layers
    if layers is None or layers == "all":
        layer_ids: list[int] = [-1, *range(n)]
    else:
        if isinstance(layers, (int, str, np.integer)):
            raw = [layers]
        elif isinstance(layers, Iterable):
            raw = list(layers)
        else:
            raise ValueError(
                f"layers must be None/'all', an int, 'embed' or a list of them, got {layers!r} ({type(layers).__name__})"
            )
        if not raw:
            raise ValueError("no layers given: pass layers=None for all, or a list such as [0, 3, 'embed']")
        layer_ids = []
        for lay in raw:
            if lay == "embed":
                layer_ids.append(-1)
            elif isinstance(lay, (int, np.integer)) and not isinstance(lay, bool):
                idx = int(lay) + n if lay < 0 else int(lay)
                if not 0 <= idx < n:
                    raise ValueError(
                        f"unknown layer {lay}: {handle.name} has {n} layers (0 … {n - 1}, negative counts from "
                        "the end, 'embed' for the embeddings)"
                    )
                layer_ids.append(idx)
            else:
                raise ValueError(f"unknown layer {lay!r}: use an int (0 … {n - 1}) or 'embed'")
    sites = [Site(lay, c) for lay in sorted(set(layer_ids)) for c in comps if not (lay < 0 and c != "resid")]
    if not sites:
        raise ValueError("the embeddings have only a residual stream: add 'resid' to components")
    return sorted(sites, key=forward_order)


def extract_activations(
    model: ModelHandle | str,
    data: Corpus | str | Sequence[str] | Sequence[Sequence[str]],
    layers: Any = None,
    components: Sequence[str] | str | None = "resid",
    *,
    granularity: str = "word",
    aggregation: str = "mean",
    store: str | Path | None = None,
    overwrite: bool = False,
    repair: bool = False,
    client: Any = None,
    chunk_sentences: int = 256,
    batch_size: int = 32,
    max_batch_tokens: int = 4096,
    max_length: int | None = None,
    dtype: str = "float32",
    progress: bool | None = None,
) -> Activations:
    """Activations of ``data`` at the chosen sites, one row per word (or per token).

    Batched and length-sorted; words are aligned with tokens by character offsets.

    Args:
        model: A loaded model or a name for :func:`~neuronwidgets.core.load_model`.
        data: A :class:`~neuronwidgets.core.Corpus`, a text, texts, or sentences as lists of words.
        layers: See :func:`resolve_sites` (default: every layer).
        components: See :func:`resolve_sites` (default: the residual stream).
        granularity: ``"word"`` (subwords aggregated by ``aggregation``) or ``"token"`` (one row per
            model token, special tokens left out).
        aggregation: ``"mean"``, ``"first"``, ``"last"`` or ``"max"`` over a word's subwords.
        store: A folder to stream to, a Zarr v3 store (memory bounded by ``chunk_sentences``; resumable:
            calling again with the same arguments continues where an interrupted run stopped, and refuses,
            saying what differs, when the model's weights, tokenizer, corpus, sites, dtype or settings
            changed); ``None`` keeps it in memory.
        overwrite: Replace what is in ``store``.
        repair: Check every block of an existing store and re-extract the damaged ones.
        client: A ``distributed.Client``: the blocks of sentences are shared out to its workers, each
            writing its own blocks into ``store`` (required); the result is bit-identical to one process (the
            workers run with this process's torch thread count: matrix products round differently with
            another count).
        chunk_sentences: About this many sentences per stored chunk: blocks of consecutive sentences are
            cut by rows, each with about the words (tokens) of ``chunk_sentences`` average sentences
            (``row_blocks`` in ``store/extraction.py``), so that chunks carry little padding.
        batch_size: Texts per forward pass.
        max_batch_tokens: Most (padded) tokens per forward pass.
        max_length: Tokens per forward pass (default the model's maximum); longer texts are split.
        dtype: ``"float32"`` or ``"float16"`` for the stored values.
        progress: Show a progress bar (default: for more than a few batches).

    Returns:
        The activations, in memory or backed by the store.

    Raises:
        TypeError: If ``store`` is not a path.
        ValueError: For an unknown granularity, aggregation, dtype, site or layer, a non-positive size,
            a ``store`` that is a file, or a ``max_length`` with no room for text.

    Example:
        >>> acts = extract_activations("minilm", ["A wonderful film!"], components="all", store="acts/")
        >>> acts.matrix().shape  # 4 words x (7 x 384 resid + 6 x 1536 mlp)
        (4, 11904)
    """
    if store is not None:
        if not isinstance(store, (str, Path)):
            raise TypeError(f"store must be a folder path (str or Path), got {type(store).__name__}")
        if Path(store).exists() and not Path(store).is_dir():
            raise ValueError(f"store must be a folder, but {store} is a file: choose a folder path")
    plan = ExtractionPlan.make(
        model, data, layers, components, granularity, aggregation, chunk_sentences, batch_size,
        max_batch_tokens, max_length, dtype, in_memory=store is None,
    )  # fmt: skip
    if store is None:
        if client is not None:
            raise ValueError(
                "client= needs store=: each worker writes its blocks of sentences into the store"
            )
        chunk = plan.run_block(0)
        plan.warn()
        return Activations(plan.meta, [chunk])
    root = Path(store)
    opened = _prepare_store(root, plan, overwrite, repair)
    if isinstance(opened, Activations):
        return opened
    todo = [k for k, done in enumerate(opened.done()) if not done]
    if client is not None:
        from .sharding import extract_on_dask

        extract_on_dask(client, plan, root, todo)
    else:
        show = progress if progress is not None else len(plan.corpus) >= 256
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(plan.corpus), desc=f"extracting {plan.handle.name}", unit="sent", disable=not show
        )

        def write(blocks: list[tuple[int, Chunk]]) -> None:
            for k, chunk in blocks:
                opened.write_block(k, chunk)
                bar.update(plan.bounds[k][1] - plan.bounds[k][0])

        try:  # each group's chunks are written while the next group goes through the model
            groups = plan.groups(todo, opened.layout)
            consume_overlapped((plan.run_group(g, todo) for g in groups), write, overlap=len(groups) > 1)
        finally:
            bar.close()
        plan.warn()
    opened.mark_complete()
    return Activations.open(root)


@dataclass
class ExtractionPlan:
    """Everything an extraction needs, checked: model, corpus, sites, meta, blocks of sentences and the
    extractor (also what a Dask worker receives)."""

    handle: ModelHandle
    corpus: Corpus
    sites: list[Site]
    meta: dict[str, Any]
    extractor: _Extractor
    threads: int = 1  # torch threads where the plan was made: Dask workers use as many (same bits)
    _bounds: list[tuple[int, int]] | None = field(default=None, repr=False)
    _counts: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def make(
        cls,
        model: ModelHandle | str,
        data: Any,
        layers: Any,
        components: Any,
        granularity: str,
        aggregation: str,
        chunk_sentences: int,
        batch_size: int,
        max_batch_tokens: int,
        max_length: int | None,
        dtype: str,
        in_memory: bool = False,
    ) -> ExtractionPlan:
        handle = as_handle(model)
        corpus = as_corpus(data)
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}: choose 'word' or 'token'")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}: choose from {', '.join(AGGREGATIONS)}")
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
        for name, v in (
            ("chunk_sentences", chunk_sentences),
            ("batch_size", batch_size),
            ("max_batch_tokens", max_batch_tokens),
        ):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r} ({type(v).__name__})")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 1
        ):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        sites = resolve_sites(handle, layers, components)
        limit = max_length or handle.max_length
        template = special_template(handle)
        budget = limit - len(template[0]) - len(template[1])
        if budget < 1:
            raise ValueError(f"max_length={limit} leaves no room for text after the special tokens")
        if in_memory:
            chunk_sentences = len(corpus)  # one chunk: best length sorting, memory is the corpus anyway
        meta: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model": handle.name,
            "sites": [s.name for s in sites],
            "widths": {s.name: handle.width(s) for s in sites},
            "granularity": granularity,
            "aggregation": aggregation if granularity == "word" else None,
            "dtype": dtype,
            "num_sentences": len(corpus),
            "max_length": limit,
            "chunk_sentences": chunk_sentences,
        }
        extractor = _Extractor(
            handle, sites, granularity, aggregation, template, budget, batch_size, max_batch_tokens
        )
        plan = cls(handle, corpus, sites, meta, extractor, torch.get_num_threads())
        if in_memory:
            plan._bounds = [(0, len(corpus))] if len(corpus) else []
        return plan

    @property
    def bounds(self) -> list[tuple[int, int]]:
        """The blocks of sentences ``(first, end)`` (``row_blocks``; counting tokens needs one
        tokenisation of the corpus at token granularity, done once)."""
        if self._bounds is None:
            self._bounds = row_blocks(self.unit_counts(), self.meta["chunk_sentences"])
        return self._bounds

    def unit_counts(self) -> np.ndarray:
        """Rows of each sentence: its words, or at token granularity its tokens (tokenised once)."""
        if self._counts is None:
            if self.meta["granularity"] == "word":
                counts = [len(w) for w in self.corpus.words]
            else:
                counter = copy.copy(self.extractor)
                counts = []
                for a in range(0, len(self.corpus), GROUP_SENTENCES):
                    b = min(a + GROUP_SENTENCES, len(self.corpus))
                    counts += [len(s.ids) for s in counter._tokenise(self.corpus, a, b)]
            self._counts = np.asarray(counts, dtype=np.int64)
        return self._counts

    def run_block(self, k: int) -> Chunk:
        a, b = self.bounds[k]
        return self.extractor.run(self.corpus, a, b, self.meta["dtype"])

    def groups(self, todo: Sequence[int], layout: Layout) -> list[list[int]]:
        """The groups of consecutive blocks computed together that hold a block of ``todo``.

        A group's sentences are length-sorted and batched together, which wastes far less padding than
        sorting each block alone (on UD English, 256-sentence blocks padded 23 % more tokens than 2,048-
        sentence groups). Groups depend only on the layout (at most ``GROUP_SENTENCES`` sentences and
        ``GROUP_BYTES`` of float32 rows), never on which blocks are missing, so a resumed or distributed
        run batches every sentence exactly as an uninterrupted one and stores the same bits.
        """
        row_bytes = 4 * sum(self.meta["widths"].values())
        groups: list[list[int]] = []
        sents = size = 0
        for k, (a, b) in enumerate(self.bounds):
            u0, u1 = layout.units(k)
            n, nbytes = b - a, (u1 - u0) * row_bytes
            if groups and (sents + n > GROUP_SENTENCES or size + nbytes > GROUP_BYTES):
                groups.append([])
                sents = size = 0
            if not groups:
                groups.append([])
            groups[-1].append(k)
            sents, size = sents + n, size + nbytes
        wanted = set(todo)
        return [g for g in groups if wanted.intersection(g)]

    def run_group(self, group: Sequence[int], todo: Sequence[int]) -> list[tuple[int, Chunk]]:
        """Extract the blocks of ``group`` in one pass; returns ``(k, chunk)`` for the blocks in ``todo``."""
        a, b = self.bounds[group[0]][0], self.bounds[group[-1]][1]
        whole = self.extractor.run(self.corpus, a, b, self.meta["dtype"])
        wanted = set(todo)
        return [
            (k, whole.sentences(self.bounds[k][0] - a, self.bounds[k][1] - a)) for k in group if k in wanted
        ]

    def fingerprint(self) -> dict[str, Any]:
        """What the store's contents depend on: weights, tokenizer, corpus, sites, dtype and settings."""
        settings = {k: v for k, v in self.meta.items() if k not in ("format", "version", "sites", "dtype")}
        # how texts are batched changes the padding of each forward pass, hence the last bits of values
        ex = self.extractor
        settings["blocks"] = BLOCK_RULE
        settings["batching"] = (
            f"<= {ex.batch_size} texts, <= {ex.max_batch_tokens} tokens, least padding + "
            f"{ex.BATCH_COST_TOKENS} tokens per batch, in groups of <= {GROUP_SENTENCES} sentences and "
            f"<= {GROUP_BYTES // 2**20} MB of float32 rows"
        )
        return {
            "weights": weights_digest(self.handle.model),
            "tokenizer": tokenizer_digest(self.handle.tokenizer),
            "corpus": corpus_digest(self.corpus),
            "sites": list(self.meta["sites"]),
            "dtype": self.meta["dtype"],
            "settings": settings,
        }

    def layout(self) -> Layout:
        """Blocks and unit offsets; token granularity tokenises the corpus once to count the tokens."""
        offsets = np.concatenate([[0], np.cumsum(self.unit_counts())]).astype(np.int64)
        return Layout.of([(a, b - a) for a, b in self.bounds], offsets)

    def warn(self) -> None:
        ex, handle = self.extractor, self.handle
        if ex.replaced:
            warnings.warn(
                f"{ex.replaced} word(s) produced no token (e.g. zero-width characters) and were fed to the "
                f"model as {handle.tokenizer.unk_token or '?'!r} so that every word has a row",
                stacklevel=3,
            )
        if ex.split:
            warnings.warn(
                f"{ex.split} sentence(s) are longer than {self.meta['max_length']} tokens and were split into "
                "windows at word boundaries (each window is encoded separately)",
                stacklevel=3,
            )


def _prepare_store(
    root: Path, plan: ExtractionPlan, overwrite: bool, repair: bool
) -> ZarrStore | Activations:
    """Create the store, or check an existing one holds the same extraction (then resume, repair or reopen)."""
    fingerprint = plan.fingerprint()
    if is_legacy_store(root):
        if not overwrite:
            raise ValueError(
                f"{root} is an old-format activation store (NumPy + JSON, format 1), which cannot be resumed or "
                "appended to: pass overwrite=True to re-extract it as a Zarr store, or another folder "
                "(migrate_store(old, new) converts an old store without the model)"
            )
        shutil.rmtree(root)
    elif is_zarr_store(root):
        store = None
        if not overwrite:
            store = ZarrStore.open(root, mode="r+")
        if store is not None:
            diff = describe_differences(store.info.get("fingerprint", {}), fingerprint)
            if not diff and store.ready:
                if repair:
                    for k, _ in store.verify():
                        store.invalidate(k)
                elif store.complete:
                    return Activations.open(root)
                return store
            if diff:
                raise ValueError(
                    f"the store {root} holds a different extraction; what differs: {'; '.join(diff)}. Refusing "
                    "to append to it: pass a new folder, or overwrite=True to replace it"
                )
        shutil.rmtree(root)
    elif root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} exists and is not an activation store: choose an empty or new folder")
    return ZarrStore.create(root, plan.meta, fingerprint, plan.layout(), plan.corpus)
