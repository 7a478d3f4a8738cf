"""Probing benchmark: ``train_probe`` + the full weight-mass neuron ordering against NeuroX, same data.

MiniLM, the first 1,000 sentences of UD English-EWT dev (sentences over 60 words skipped, as the NeuroX
anchor does), every layer's residual stream (embed + 6 blocks = 7 × 384 = 2,688 features), word-level
mean, UPOS; an 80/20 split by sentence in corpus order (NeuroX's anchor cuts its token list 80/20 in
order too). Prints progress to stderr and ONE JSON line to stdout (the last line):

- ``train_s``: ``train_probe`` (elastic net, default settings, no control/baselines: one probe, as NeuroX
  trains one), median of ``--repeats`` runs after a small warm-up; ``ordering_s``: ``rank_weight_mass``
  (the ordering of all 2,688 neurons); ``test_acc``: held-out accuracy.
- ``control_acc``, ``selectivity``, ``majority_acc``, ``random_features_acc``, ``full_s``: one
  ``train_probe`` with the control task and baselines (three probes).
- ``neurox_*``: NeuroX 1.0.9 via the anchor script ``$NEUROX_BASELINE`` (outside the repository) in its own venv, in the same run
  (``--neurox-python``, ``$NEUROX_PYTHON``, default ``/tmp/neurox-env/bin/python``; null when missing):
  ``neurox_train_s`` (its 10-epoch probe), ``neurox_test_acc``, ``neurox_ordering_s``.
- ``speedup``: ``neurox_train_s / (train_s + ordering_s)`` (target ≥ 2); ``targets_met``: accuracy ≥ 0.93
  and speedup ≥ 2.

Run from the repo root: ``python bench/probing.py [--sentences 1000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from _common import DEV, NEUROX_PYTHON, add_corpus_arguments, load_now, log, machine, run_neurox

from neuronwidgets.core import (
    extract_activations,
    load_conllu,
    load_model,
    rank_weight_mass,
    split_sentences,
    train_probe,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_corpus_arguments(ap)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--neurox-python", default=NEUROX_PYTHON)
    ap.add_argument("--skip-neurox", action="store_true")
    args = ap.parse_args()

    load_start = load_now()
    corpus = load_conllu(
        args.data / DEV, columns=["upos"], max_sentences=args.sentences, max_words=args.max_words
    )
    labels = corpus.flat_labels("upos")
    handle = load_model("minilm")
    log(f"{len(corpus)} sentences, {corpus.num_words} words: extracting 7 residual sites")
    t0 = time.perf_counter()
    acts = extract_activations(handle, corpus, layers="all", components="resid", progress=False)
    extract_s = time.perf_counter() - t0
    split = split_sentences(len(corpus), (0.8, 0.2), shuffle=False)

    warm = extract_activations(handle, corpus[:40], progress=False)  # first-call costs out of the timing
    train_probe(warm, corpus[:40].flat_labels("upos"), split=(0.8, 0.2), control=False, baselines=False)

    train_runs, order_runs = [], []
    result = None
    for r in range(args.repeats):
        t0 = time.perf_counter()
        result = train_probe(acts, labels, split=split, control=False, baselines=False)
        train_runs.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ranking = rank_weight_mass(result)
        order_runs.append(time.perf_counter() - t0)
        if len(ranking) != result.probe.num_features:
            raise RuntimeError("the ordering does not cover every neuron")
        log(
            f"run {r + 1}: train {train_runs[-1]:.2f} s, ordering {order_runs[-1]:.3f} s, test {result.accuracy:.4f}"
        )
    assert result is not None
    t0 = time.perf_counter()
    full = train_probe(acts, labels, split=split)
    full_s = time.perf_counter() - t0
    log(f"with control task and baselines: {full_s:.2f} s, selectivity {full.selectivity:.3f}")

    neurox = (
        None if args.skip_neurox else run_neurox(args.neurox_python, args.data / DEV, args.sentences)
    ) or {}
    train_s = statistics.median(train_runs)
    ordering_s = statistics.median(order_runs)
    nx_train = neurox.get("probe_s")
    speedup = round(nx_train / (train_s + ordering_s), 2) if nx_train else None
    out = {
        "bench": "probing",
        "model": "minilm",
        "sentences": len(corpus),
        "words": corpus.num_words,
        "features": result.probe.num_features,
        "train_words": int(result.train.n),
        "test_words": int(result.test.n),
        "train_s": round(train_s, 3),
        "ordering_s": round(ordering_s, 4),
        "test_acc": round(result.accuracy, 4),
        "train_acc": round(result.train.accuracy, 4),
        "macro_f1": round(result.test.macro_f1, 4),
        "neurox_train_s": nx_train,
        "neurox_test_acc": neurox.get("test_acc"),
        "neurox_ordering_s": neurox.get("ordering_s"),
        "speedup": speedup,
        "targets_met": bool(result.accuracy >= 0.93 and speedup is not None and speedup >= 2),
        "train_s_runs": [round(t, 3) for t in train_runs],
        "iterations": result.probe.meta.get("iterations"),
        "dtype": result.probe.meta.get("dtype"),
        "control_acc": round(full.control.accuracy, 4) if full.control else None,
        "selectivity": round(full.selectivity, 4),
        "majority_acc": round(full.majority, 4),
        "random_features_acc": round(full.random_features.accuracy, 4) if full.random_features else None,
        "full_s": round(full_s, 2),
        "extract_s": round(extract_s, 2),
        "neurox_extract_s": neurox.get("extract_s"),
        "machine": machine(load_start),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
