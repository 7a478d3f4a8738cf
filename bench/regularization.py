"""Regularisation benchmark: the accuracy–selectivity–sparsity trade of the probe presets and λ.

Data: the first ``--sentences`` sentences of gold UD English-EWT dev (≤ 60 words, as the other benches),
``--column`` (default ``upos``); MiniLM, every residual site (7 × 384 = 2,688 neurons), word-level mean;
split by sentence, shuffled with seed 0, 80 % train / 10 % dev / 10 % test (the ``"neurox"`` preset
chooses its λ on dev).

One ``train_probe`` per configuration, with the control task (Hewitt & Liang 2019) and no other
baseline: the ``"smooth"`` default, ``"elastic-net"`` and ``"lasso"`` at each λ of ``--lambdas`` (l1 = λ;
elastic-net keeps l2 = 3e-3), and ``"neurox"`` with its λ search (λ1 = λ2 on the dev rows).

Prints progress to stderr and JSON lines to stdout, one per configuration (``preset``, ``l1``, ``l2``,
``accuracy`` and ``control_accuracy`` on test, ``selectivity`` = their difference, ``nonzero_weights``
of ``weights``, ``active_neurons`` = neurons with a non-zero weight for some class, ``iterations``,
``train_s`` for the probe and its control, ``lambda_search`` for ``"neurox"``), then one summary line with
the machine. Run from the repo root: ``python bench/regularization.py [--sentences 1000]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import DEV, UD, load_now, log, machine

from neuronwidgets.core import extract_activations, load_conllu, load_model, split_sentences, train_probe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=UD, help="UD English-EWT folder")
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--column", default="upos")
    ap.add_argument("--lambdas", default="1e-4,1e-3,1e-2", help="l1 values for elastic-net and lasso")
    ap.add_argument("--presets", default="smooth,elastic-net,lasso,neurox")
    args = ap.parse_args()

    load_start = load_now()
    corpus = load_conllu(args.data / DEV, columns=[args.column], max_sentences=args.sentences, max_words=60)
    labels = corpus.flat_labels(args.column)
    acts = extract_activations(load_model("minilm"), corpus, layers="all", components="resid", progress=False)
    split = split_sentences(len(corpus), (0.8, 0.1, 0.1), seed=0)
    log(f"{len(corpus)} sentences, {corpus.num_words} words, {sum(acts.widths.values())} neurons")

    configs: list[tuple[str, float | None]] = []
    lambdas = [float(v) for v in args.lambdas.split(",") if v]
    for preset in args.presets.split(","):
        if preset in ("elastic-net", "lasso"):
            configs += [(preset, lam) for lam in lambdas]
        else:
            configs.append((preset, None))

    for preset, lam in configs:
        t0 = time.perf_counter()
        res = train_probe(acts, labels, split=split, regularization=preset, l1=lam, baselines=False)
        seconds = time.perf_counter() - t0
        w = res.probe.weight
        assert res.control is not None
        row = {
            "bench": "regularization",
            "preset": preset,
            "l1": res.probe.l1,
            "l2": res.probe.l2,
            "accuracy": round(res.accuracy, 4),
            "control_accuracy": round(res.control.accuracy, 4),
            "selectivity": round(res.selectivity, 4),
            "nonzero_weights": int(np.count_nonzero(w)),
            "weights": int(w.size),
            "active_neurons": int(np.count_nonzero(np.abs(w).sum(0))),
            "iterations": res.probe.meta["iterations"],
            "train_s": round(seconds, 2),
        }
        if "lambda_search" in res.meta:
            row["lambda_search"] = [
                {k: v if k == "lambda" else round(v, 4) for k, v in r.items()}
                for r in res.meta["lambda_search"]
            ]
        log(
            f"{preset} l1={row['l1']:g}: acc {row['accuracy']} sel {row['selectivity']} nz {row['nonzero_weights']}"
        )
        print(json.dumps(row), flush=True)
    summary = {
        "bench": "regularization",
        "summary": True,
        "model": "minilm",
        "sentences": len(corpus),
        "words": corpus.num_words,
        "column": args.column,
        "features": sum(acts.widths.values()),
        "machine": machine(load_start),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
