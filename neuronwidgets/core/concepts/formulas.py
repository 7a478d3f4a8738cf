"""Compositional explanations of neurons (Mu & Andreas 2020): logical forms over concepts, such as
``(NOUN AND NOT Number=Plur) OR PROPN``, whose units best match the units a neuron fires on.

For each neuron, :func:`explain_neurons` runs a beam search over formulas built left to right from
*primitives* (single concepts) with the operators ``AND``, ``OR`` and ``AND NOT`` (``OR NOT`` on request),
maximising the IoU between the formula's units and the neuron's firing units (activation ≥ its
threshold, by default the top 0.5% of units):

1. the primitives are the concepts that best match the neuron alone: the top ``primitives`` by IoU, plus
   the top third as many by precision (concepts most firing units have: good ``AND`` partners) and by
   recall (concepts whose units mostly fire: good ``OR`` partners);
   Concepts on every unit or on none of the firing units are left out;
2. the beam starts with the ``beam_size`` best primitives; each step combines every beam formula with
   every primitive under every operator and keeps, as the next beam, the ``beam_size`` best new formulas
   that beat each of their parts: the formula they extend and, for ``AND``/``OR``, the concept added (a
   longer formula with a lower IoU than one of its parts is never the answer, and would crowd out useful
   steps such as ``NOUN AND NOT Number=Plur`` on the way to ``(NOUN AND NOT Number=Plur) OR PROPN``).
   Formulas with the same units as one already found are dropped, so the beam holds different
   explanations, not rewordings;
3. the answer is the best formula found of at most ``max_length`` concepts (ties: the shorter, then the
   earlier found); the ``beam_size`` best of all lengths are kept for display.

Like any beam search this is a heuristic: a wider beam (``beam_size``) or more primitives find more.

Masks are bitsets over units (``uint64`` words), so one step for one neuron costs a few vectorised
``AND``/``OR`` and popcounts over ``[primitives, units / 64]``; neurons are read in batches, streaming.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..display import TableResult, listing, summary
from ..models.addresses import NeuronAddress, parse_neuron
from ..store.activations import Activations
from ..store.streaming import (
    NeuronSelection,
    NeuronSpec,
    as_float32,
    iter_blocks,
    progress_bar,
    resolve_thresholds,
)
from .concepts import Concepts

DEFAULT_QUANTILE = 0.005
OPS = ("and", "or", "and not", "or not")
_WORDS = {"and": "AND", "or": "OR"}


# ------------------------------------------------------------------------------------------------
# Formulas
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Formula:
    """A logical form over concept names: a concept (``op="concept"``, ``name``), ``NOT`` of a formula,
    or ``AND`` / ``OR`` of two. ``str()`` prints it with parentheses around inner ``AND``/``OR``:
    ``(NOUN AND NOT Number=Plur) OR PROPN``; :meth:`parse` reads that form back.

    Attributes:
        op: ``"concept"``, ``"not"``, ``"and"`` or ``"or"``.
        name: The concept name (``op="concept"``).
        args: The operands (one for ``NOT``, two for ``AND``/``OR``)."""

    op: str
    name: str = ""
    args: tuple[Formula, ...] = ()

    @classmethod
    def concept(cls, name: str) -> Formula:
        return cls("concept", name)

    def __and__(self, other: Formula) -> Formula:
        return Formula("and", args=(self, other))

    def __or__(self, other: Formula) -> Formula:
        return Formula("or", args=(self, other))

    def __invert__(self) -> Formula:
        return Formula("not", args=(self,))

    def __str__(self) -> str:
        return self._text(top=True)

    def __repr__(self) -> str:
        return f"Formula({str(self)!r})"

    def _text(self, top: bool = False) -> str:
        if self.op == "concept":
            return self.name
        if self.op == "not":
            return f"NOT {self.args[0]._text()}"
        text = f"{self.args[0]._text()} {_WORDS[self.op]} {self.args[1]._text()}"
        return text if top else f"({text})"

    @property
    def length(self) -> int:
        """Number of concepts in the formula (with repeats)."""
        return 1 if self.op == "concept" else sum(a.length for a in self.args)

    def concepts(self) -> list[str]:
        """The concept names used, left to right."""
        return [self.name] if self.op == "concept" else [n for a in self.args for n in a.concepts()]

    def mask(self, concepts: Concepts) -> np.ndarray:
        """bool ``[num_units]``: the units where the formula holds."""
        if self.op == "concept":
            return concepts.mask(self.name)
        if self.op == "not":
            return ~self.args[0].mask(concepts)
        a, b = (x.mask(concepts) for x in self.args)
        return a & b if self.op == "and" else a | b

    @classmethod
    def parse(cls, text: str) -> Formula:
        """Read a formula such as ``(NOUN AND NOT Number=Plur) OR PROPN`` (``NOT`` binds tightest, then
        ``AND``, then ``OR``; concept names are runs of characters other than spaces and parentheses)."""
        tokens = re.findall(r"\(|\)|[^\s()]+", text)
        if not tokens:
            raise ValueError("empty formula")
        parser = _Parser(tokens, text)
        out = parser.disjunction()
        if parser.pos != len(tokens):
            raise ValueError(f"unexpected {tokens[parser.pos]!r} in formula {text!r}")
        return out


class _Parser:
    def __init__(self, tokens: list[str], text: str):
        self.tokens, self.text, self.pos = tokens, text, 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def disjunction(self) -> Formula:
        out = self.conjunction()
        while self._peek() == "OR":
            self.pos += 1
            out = out | self.conjunction()
        return out

    def conjunction(self) -> Formula:
        out = self.negation()
        while self._peek() == "AND":
            self.pos += 1
            out = out & self.negation()
        return out

    def negation(self) -> Formula:
        tok = self._peek()
        if tok is None:
            raise ValueError(f"formula {self.text!r} ends too early")
        self.pos += 1
        if tok == "NOT":
            return ~self.negation()
        if tok == "(":
            out = self.disjunction()
            if self._peek() != ")":
                raise ValueError(f"missing ')' in formula {self.text!r}")
            self.pos += 1
            return out
        if tok in (")", "AND", "OR"):
            raise ValueError(f"unexpected {tok!r} in formula {self.text!r}")
        return Formula.concept(tok)


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormulaExplanation(TableResult):
    """One neuron's compositional explanation: the best ``formula`` with its ``iou``, ``precision``
    (share of firing units where it holds) and ``recall`` (share of its units where the neuron fires);
    ``beam``: the final beam, ``(formula, iou)`` best first; ``threshold`` and ``fires`` describe the
    neuron's firing units.

    Attributes:
        neuron: The address.
        formula: The best formula.
        iou: Its IoU with the firing units.
        precision: Share of firing units where it holds.
        recall: Share of its units where the neuron fires.
        threshold: The firing threshold.
        fires: Firing units.
        beam: The final beam."""

    _plot_columns = ("formula", "iou")

    neuron: str
    formula: Formula
    iou: float
    precision: float
    recall: float
    threshold: float
    fires: int
    beam: tuple[tuple[Formula, float], ...]

    def __str__(self) -> str:
        return f"{self.neuron}: {self.formula} (IoU {self.iou:.3f})"

    def __repr__(self) -> str:
        return summary(
            f"FormulaExplanation({self.neuron}: {self.formula}, IoU {self.iou:.3f})",
            f"precision {self.precision:.3f}, recall {self.recall:.3f}, fires on {self.fires} units",
            f"beam of {len(self.beam)}: {listing(str(f) for f, _ in self.beam[:3])}",
        )

    def to_frame(self) -> pd.DataFrame:
        """The final beam, best first: one row per formula with its IoU."""
        return pd.DataFrame(
            {"formula": [str(f) for f, _ in self.beam], "iou": [float(v) for _, v in self.beam]}
        )


@dataclass(frozen=True)
class CompositionalExplanations(TableResult):
    """Compositional explanations of ``n`` neurons.

    Made by :func:`explain_neurons`; every array is ``[n]``, one entry per neuron.

    Attributes:
        neurons: Addresses.
        formulas: The best :class:`Formula` of each.
        iou: Float32.
        precision: Float32.
        recall: Float32.
        lengths: Int64, concepts in each formula.
        thresholds: Float32, firing thresholds.
        fires: Int64, firing units.
        single: The best single concept.
        single_iou: Float32, its IoU, for comparison.
        beams: Each final beam, ``(formula, iou)`` best first.
        max_length: The search setting.
        beam_size: The search setting.
        quantile: The firing quantile (``None`` for given thresholds).
    """

    _plot_columns = ("neuron", "iou")

    neurons: tuple[str, ...]
    formulas: tuple[Formula, ...]
    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    lengths: np.ndarray
    thresholds: np.ndarray
    fires: np.ndarray
    single: tuple[str, ...]
    single_iou: np.ndarray
    beams: tuple[tuple[tuple[Formula, float], ...], ...]
    max_length: int
    beam_size: int
    quantile: float | None

    def __len__(self) -> int:
        return len(self.neurons)

    def __getitem__(self, neuron: str | NeuronAddress | int) -> FormulaExplanation:
        if isinstance(neuron, (int, np.integer)):
            i = int(neuron)
        else:
            name = parse_neuron(neuron).name
            if name not in self.neurons:
                raise KeyError(f"neuron {name} was not explained: pass it in neurons= to explain_neurons")
            i = self.neurons.index(name)
        return FormulaExplanation(
            self.neurons[i],
            self.formulas[i],
            float(self.iou[i]),
            float(self.precision[i]),
            float(self.recall[i]),
            float(self.thresholds[i]),
            int(self.fires[i]),
            self.beams[i],
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per neuron: ``neuron``, ``formula`` (text), ``length``, ``iou``, ``precision``,
        ``recall``, the best ``single`` concept and its ``single_iou``, ``threshold``, ``fires``."""
        return pd.DataFrame(
            {
                "neuron": list(self.neurons),
                "formula": [str(f) for f in self.formulas],
                "length": self.lengths,
                "iou": self.iou,
                "precision": self.precision,
                "recall": self.recall,
                "single": list(self.single),
                "single_iou": self.single_iou,
                "threshold": self.thresholds,
                "fires": self.fires,
            }
        )

    def __repr__(self) -> str:
        mean = float(self.iou.mean()) if len(self.iou) else 0.0
        return summary(
            f"CompositionalExplanations({len(self.neurons)} neurons, formulas of ≤ {self.max_length} concepts, "
            f"mean IoU {mean:.3f} vs {float(self.single_iou.mean()) if len(self.iou) else 0.0:.3f} for one concept)"
        )


# ------------------------------------------------------------------------------------------------
# Search
# ------------------------------------------------------------------------------------------------


def _pack(mask: np.ndarray, words: int) -> np.ndarray:
    """bool ``[..., n_units]`` → uint64 ``[..., words]`` bitsets (padding bits zero)."""
    packed = np.packbits(mask, axis=-1, bitorder="little")
    pad = words * 8 - packed.shape[-1]
    if pad:
        packed = np.concatenate([packed, np.zeros((*packed.shape[:-1], pad), dtype=np.uint8)], axis=-1)
    return np.ascontiguousarray(packed).view(np.uint64)


def _popcount(bits: np.ndarray) -> np.ndarray:
    return np.bitwise_count(bits).sum(axis=-1, dtype=np.int64)


@dataclass
class _Entry:
    formula: Formula
    bits: np.ndarray
    iou: float
    inter: int
    size: int
    order: int


class _Searcher:
    """Beam search for one neuron at a time over bitsets of all concepts."""

    def __init__(
        self,
        concepts: Concepts,
        max_length: int,
        beam_size: int,
        primitives: int,
        ops: Sequence[str],
    ):
        self.concepts = concepts
        self.max_length = max_length
        self.beam_size = beam_size
        self.primitives = primitives
        self.ops = tuple(ops)
        n = concepts.num_units
        self.words = max(1, (n + 63) // 64)
        colptr, rows = concepts._columns
        self.bits = np.zeros((len(concepts), self.words), dtype=np.uint64)
        row = np.zeros(self.words * 64, dtype=bool)
        for c in range(len(concepts)):
            units = rows[colptr[c] : colptr[c + 1]]
            row[units] = True
            self.bits[c] = _pack(row, self.words)
            row[units] = False
        valid = np.zeros(self.words * 64, dtype=bool)
        valid[:n] = True
        self.valid = _pack(valid, self.words)
        self.counts = concepts.counts

    def explain(self, firing: np.ndarray) -> tuple[list[_Entry], int, int, float]:
        """``firing``: int64 unit rows where the neuron fires. Returns the best formulas (best first, at
        most ``beam_size``), the best single concept, the number of firing units and that concept's IoU."""
        n_fire = len(firing)
        n_c = len(self.counts)
        _, ids = self.concepts.expand(firing)
        inter = np.bincount(ids, minlength=n_c).astype(np.int64)
        union = n_fire + self.counts - inter
        iou = inter / np.maximum(union, 1)
        prec = inter / max(n_fire, 1)
        rec = inter / np.maximum(self.counts, 1)
        ties = np.arange(n_c)
        rank = np.lexsort((ties, -iou))
        # a concept on every unit (or none) says nothing and only crowds the beam
        useful = (self.counts > 0) & (self.counts < self.concepts.num_units) & (inter > 0)
        third = max(1, self.primitives // 3)
        chosen = [
            *[c for c in rank if useful[c]][: self.primitives],
            *[c for c in np.lexsort((ties, -prec)) if useful[c]][:third],
            *[c for c in np.lexsort((ties, -rec)) if useful[c]][:third],
        ]
        prim = np.array(list(dict.fromkeys(chosen)) or [int(rank[0])], dtype=np.int64)
        prim = prim[np.lexsort((np.arange(len(prim)), -iou[prim]))]
        prim_iou = iou[prim]
        pbits = self.bits[prim]
        not_pbits = ~pbits & self.valid
        neuron = np.zeros(self.words * 64, dtype=bool)
        neuron[firing] = True
        nbits = _pack(neuron, self.words)
        counter = 0
        beam: list[_Entry] = []
        seen: set[bytes] = set()
        for c in prim[: self.beam_size]:
            e = _Entry(
                Formula.concept(self.concepts.names[c]),
                self.bits[c],
                float(iou[c]),
                int(inter[c]),
                int(self.counts[c]),
                counter,
            )
            counter += 1
            beam.append(e)
            seen.add(e.bits.tobytes())
        kept = list(beam)
        for _ in range(self.max_length - 1):
            cands: list[tuple[float, int, _Entry, str, int, np.ndarray, int, int]] = []
            for e in beam:
                for op in self.ops:
                    if op == "and":
                        cb = e.bits & pbits
                    elif op == "or":
                        cb = e.bits | pbits
                    elif op == "and not":
                        cb = e.bits & not_pbits
                    else:
                        cb = e.bits | not_pbits
                    c_inter = _popcount(cb & nbits)
                    c_size = _popcount(cb)
                    c_iou = c_inter / np.maximum(c_size + n_fire - c_inter, 1)
                    # only formulas that beat each of their parts (the formula they extend and, for AND /
                    # OR, the concept added): a longer, worse formula is never the answer, and keeping it
                    # would crowd out useful intermediate steps
                    floor = e.iou if op.endswith("not") else np.maximum(e.iou, prim_iou)
                    better = np.flatnonzero(c_iou > floor)
                    for j in better[np.argsort(-c_iou[better], kind="stable")][: self.beam_size * 3]:
                        cands.append(
                            (float(c_iou[j]), counter, e, op, int(j), cb[j], int(c_inter[j]), int(c_size[j]))
                        )
                        counter += 1
            cands.sort(key=lambda t: (-t[0], t[1]))
            beam = []
            for f_iou, order, e, op, j, f_bits, f_inter, f_size in cands:
                if len(beam) >= self.beam_size:
                    break
                key = f_bits.tobytes()
                if key in seen:
                    continue
                seen.add(key)
                leaf = Formula.concept(self.concepts.names[prim[j]])
                if op.endswith("not"):
                    leaf = ~leaf
                formula = e.formula & leaf if op.startswith("and") else e.formula | leaf
                beam.append(_Entry(formula, f_bits.copy(), f_iou, f_inter, f_size, order))
            if not beam:
                break
            kept += beam
        best = sorted(kept, key=lambda x: (-x.iou, x.formula.length, x.order))[: self.beam_size]
        top = int(rank[0]) if n_c else 0
        return best, top, n_fire, float(iou[top]) if n_c else 0.0


def explain_neurons(
    acts: Activations,
    concepts: Concepts,
    neurons: NeuronSpec,
    *,
    max_length: int = 3,
    beam_size: int = 10,
    primitives: int = 30,
    ops: Sequence[str] = ("and", "or", "and not"),
    quantile: float = DEFAULT_QUANTILE,
    thresholds: Any = None,
    max_batch_bytes: int = 256 * 2**20,
    progress: bool | None = None,
) -> CompositionalExplanations:
    """Compositional explanations (Mu & Andreas 2020) of ``neurons``: for each, the formula of at most
    ``max_length`` concepts whose units best match (IoU) the units where it fires.

    Firing: activation ≥ threshold, by default the top ``quantile`` of units. Firing masks are read in
    batches of at most ``max_batch_bytes`` (one streaming pass per batch).

    Args:
        acts: The activations.
        concepts: The concepts of the same corpus.
        neurons: A site, addresses, or a list of them (``None``: every neuron, which takes a while).
        max_length: Most concepts in a formula.
        beam_size: Formulas kept per search step.
        primitives: Best single concepts a formula is built from.
        ops: From ``"and"``, ``"or"``, ``"and not"``, ``"or not"``.
        quantile: The top fraction of units a neuron fires on.
        thresholds: Reuses those of a :class:`~neuronwidgets.core.concepts.selection.TopActivations` or
            :class:`~neuronwidgets.core.concepts.ConceptAlignment` (no extra pass), or takes values.
        max_batch_bytes: Memory for one batch of firing masks.
        progress: A bar over the neurons.

    Returns:
        One formula per neuron, with its scores and beam.

    Raises:
        TypeError: If ``concepts`` is not :class:`~neuronwidgets.core.Concepts`.
        ValueError: For sizes below 1, an unknown operator, or no concepts.

    Example:
        >>> explained = explain_neurons(acts, Concepts.from_corpus(corpus), "layer.3.mlp", max_length=3)
        >>> explained.to_frame().head()
    """
    if not isinstance(concepts, Concepts):
        raise TypeError(f"expected Concepts (Concepts.from_corpus(corpus)), got {type(concepts).__name__}")
    if max_length < 1 or beam_size < 1 or primitives < 1:
        raise ValueError("max_length, beam_size and primitives must be at least 1")
    for op in ops:
        if op not in OPS:
            raise ValueError(f"unknown operator {op!r}: choose from {', '.join(OPS)}")
    if len(concepts) == 0:
        raise ValueError("there are no concepts to explain with: lower min_count or add label columns")
    units = concepts.for_activations(acts)
    sel = NeuronSelection.of(acts, neurons)
    thr, q = resolve_thresholds(acts, sel, thresholds, quantile, progress)
    searcher = _Searcher(units, max_length, beam_size, primitives, ops)
    n_units = acts.num_units
    per_batch = max(1, int(max_batch_bytes // max(n_units, 1)))
    names = list(sel.names)
    thr_of = dict(zip(names, thr))
    results: list[tuple[list[_Entry], int, int, float]] = []
    bar = progress_bar(acts, len(names), "compositional explanations", progress, per_neuron=True)
    try:
        for a in range(0, len(names), per_batch):
            batch = names[a : a + per_batch]
            bsel = NeuronSelection.of(acts, batch)
            bthr = np.array([thr_of[n] for n in bsel.names], dtype=np.float32)
            firing: list[list[np.ndarray]] = [[] for _ in bsel.names]
            for first, i, block in iter_blocks(acts, bsel):
                rows = bsel.rows(i)
                x = as_float32(block)
                unit, col = np.divmod(np.flatnonzero(x >= bthr[rows][None, :]), x.shape[1])
                order = np.argsort(col, kind="stable")
                unit, col = unit[order], col[order]
                bounds = np.searchsorted(col, np.arange(x.shape[1] + 1))
                for j in range(x.shape[1]):
                    firing[rows.start + j].append(first + unit[bounds[j] : bounds[j + 1]])
            by_name = dict(zip(bsel.names, firing))
            for n in batch:
                results.append(searcher.explain(np.concatenate(by_name[n]).astype(np.int64)))
                bar.update(1)
    finally:
        bar.close()
    formulas, iou, prec, rec, lengths, fires, single, single_iou, beams = [], [], [], [], [], [], [], [], []
    for beam, top, n_fire, s_iou in results:
        best = beam[0]
        formulas.append(best.formula)
        iou.append(best.iou)
        prec.append(best.inter / max(n_fire, 1))
        rec.append(best.inter / max(best.size, 1))
        lengths.append(best.formula.length)
        fires.append(n_fire)
        single.append(units.names[top])
        single_iou.append(s_iou)
        beams.append(tuple((e.formula, e.iou) for e in beam))
    f32 = np.float32
    return CompositionalExplanations(
        tuple(names),
        tuple(formulas),
        np.array(iou, f32),
        np.array(prec, f32),
        np.array(rec, f32),
        np.array(lengths, np.int64),
        thr.astype(f32),
        np.array(fires, np.int64),
        tuple(single),
        np.array(single_iou, f32),
        tuple(beams),
        max_length,
        beam_size,
        q,
    )
