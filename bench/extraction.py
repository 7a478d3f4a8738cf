"""Extraction benchmark: ``extract_activations`` against a plain batched forward pass and against NeuroX.

MiniLM, the first 1,000 sentences of UD English-EWT dev (sentences over 60 words skipped, as the NeuroX
anchor does), every layer's residual stream (embed + 6 blocks = 7 × 384 = 2,688 features), word-level
mean. Prints progress to stderr and ONE JSON line to stdout (the last line):

- ``words_per_s``: in-memory extraction; ``forward_words_per_s``: a batched, length-sorted forward pass of
  the same model over the same tokenised sentences (no alignment or aggregation), in the same process;
  ``ratio`` = the two (target ≥ 0.85). Both are warmed up once over the whole corpus; then each piece of
  ``--piece`` sentences is timed both ways, back to back, ``--repeats`` times, and the sum of each piece's
  best time counts: on a shared 2-core machine other work comes in bursts of seconds and only ever adds
  time, so short interleaved pieces find the quiet moments for both. ``ratio_median`` uses medians
  instead, and ``machine.loadavg_1m`` (at start and end) tells whether the machine was busy.
- ``peak_rss_mb``: peak memory of this process (model, corpus, in-memory activations, forward baseline).
- ``stream_*_1x`` / ``stream_*_4x``: streaming extraction to a temporary store over 1× and 4× the
  sentences (dev + test), each in its own subprocess so each has its own peak memory.
- ``neurox_*``: NeuroX 1.0.9 on the same sentences, via the anchor script ``$NEUROX_BASELINE`` (outside the repository) in its
  own venv (``--neurox-python``, ``$NEUROX_PYTHON``, default ``/tmp/neurox-env/bin/python``); null when
  that interpreter is missing.

Run from the repo root: ``python bench/extraction.py [--sentences 1000] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import (
    DEV,
    NEUROX_PYTHON,
    TEST,
    add_corpus_arguments,
    forward_batches,
    load_now,
    log,
    machine,
    peak_rss_mb,
    run_json,
    run_neurox,
)

from neuronwidgets.core import Corpus, extract_activations, load_conllu, load_model


def load_corpus(data: Path, sentences: int, max_words: int) -> Corpus:
    """The first ``sentences`` sentences of dev, continuing into test when dev runs out."""
    corpus = load_conllu(data / DEV, columns=["upos"], max_sentences=sentences, max_words=max_words)
    if len(corpus) < sentences:
        test = load_conllu(
            data / TEST, columns=["upos"], max_sentences=sentences - len(corpus), max_words=max_words
        )
        corpus = Corpus.from_words(corpus.words + test.words, name=f"{DEV}+{TEST}")
    return corpus


def time_forward(handle, batches: list[dict[str, torch.Tensor]]) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for inputs in batches:
            handle.model(**inputs, output_hidden_states=True)
    return time.perf_counter() - start


def time_extract(handle, corpus: Corpus, **kw) -> tuple[float, int]:
    start = time.perf_counter()
    acts = extract_activations(handle, corpus, layers="all", components="resid", progress=False, **kw)
    elapsed = time.perf_counter() - start
    return elapsed, sum(acts.widths.values())


def stream_child(args: argparse.Namespace) -> None:
    """Subprocess mode: one streaming extraction to a temporary store; prints its words/s and peak memory."""
    handle = load_model("minilm")
    corpus = load_corpus(args.data, args.stream_child, args.max_words)
    time_extract(handle, corpus[:64])  # warm-up, small enough not to raise the peak
    with tempfile.TemporaryDirectory(prefix="nw-bench-") as tmp:
        elapsed, _ = time_extract(handle, corpus, store=Path(tmp) / "store")
    out = {
        "sentences": len(corpus),
        "words": corpus.num_words,
        "words_per_s": round(corpus.num_words / elapsed, 1),
    }
    print(json.dumps({**out, "peak_rss_mb": peak_rss_mb()}))


def run_stream(args: argparse.Namespace, sentences: int) -> dict | None:
    log(f"streaming extraction of {sentences} sentences in a subprocess")
    cmd = [sys.executable, __file__, "--data", str(args.data), "--max-words", str(args.max_words)]
    return run_json([*cmd, "--stream-child", str(sentences)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_corpus_arguments(ap)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--piece", type=int, default=200, help="sentences per timed piece")
    ap.add_argument("--neurox-python", default=NEUROX_PYTHON)
    ap.add_argument("--stream-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stream_child:
        return stream_child(args)

    load_start = load_now()
    # Subprocesses first, while this process is small: NeuroX's script reads ru_maxrss, which a child
    # inherits from its parent.
    side: dict = {}
    for label, n in (("1x", args.sentences), ("4x", 4 * args.sentences)):
        stream = run_stream(args, n) or {}
        side[f"stream_sentences_{label}"] = stream.get("sentences")
        side[f"stream_words_per_s_{label}"] = stream.get("words_per_s")
        side[f"stream_peak_rss_mb_{label}"] = stream.get("peak_rss_mb")
    neurox = run_neurox(args.neurox_python, args.data / DEV, args.sentences) or {}
    side["neurox_words_per_s"] = neurox.get("tokens_per_s")
    side["neurox_words"] = neurox.get("tokens")
    side["neurox_peak_rss_mb"] = neurox.get("peak_rss_mb")

    handle = load_model("minilm")
    corpus = load_corpus(args.data, args.sentences, args.max_words)
    log(f"{len(corpus)} sentences, {corpus.num_words} words; warm-up over all of them")
    time_forward(handle, forward_batches(handle, corpus))
    _, features = time_extract(handle, corpus)  # also the in-memory extraction behind peak_rss_mb
    pieces = [corpus[a : a + args.piece] for a in range(0, len(corpus), args.piece)]
    inputs = [forward_batches(handle, piece) for piece in pieces]
    extract_s: list[list[float]] = [[] for _ in pieces]
    forward_s: list[list[float]] = [[] for _ in pieces]
    for r in range(args.repeats):  # piece by piece, alternating which goes first
        for i, (piece, batches) in enumerate(zip(pieces, inputs)):
            for which in ("forward", "extract") if (r + i) % 2 == 0 else ("extract", "forward"):
                if which == "forward":
                    forward_s[i].append(time_forward(handle, batches))
                else:
                    extract_s[i].append(time_extract(handle, piece)[0])
        log(
            f"round {r + 1}: extract {sum(t[-1] for t in extract_s):.2f} s, forward {sum(t[-1] for t in forward_s):.2f} s"
        )
    words = corpus.num_words
    best_extract, best_forward = sum(map(min, extract_s)), sum(map(min, forward_s))
    median_ratio = sum(map(statistics.median, forward_s)) / sum(map(statistics.median, extract_s))
    result = {
        "bench": "extraction",
        "model": "minilm",
        "sentences": len(corpus),
        "words": words,
        "features": features,
        "words_per_s": round(words / best_extract, 1),
        "forward_words_per_s": round(words / best_forward, 1),
        "ratio": round(best_forward / best_extract, 3),
        "ratio_median": round(median_ratio, 3),
        "repeats": args.repeats,
        "piece_sentences": args.piece,
        "peak_rss_mb": peak_rss_mb(),
        **side,
        "machine": machine(load_start),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
