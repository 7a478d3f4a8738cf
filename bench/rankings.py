"""Ranking benchmark: does each ranking method put useful neurons first? Top-10 % vs random-10 % vs
bottom-10 %, after retraining and under zero-ablation, side by side with NeuroX in the same run.

Data: the first ``--sentences`` sentences of gold UD English-EWT dev (≤ 60 words, as the NeuroX anchor),
``--column`` (default ``xpos``, Penn Treebank POS); split by sentence in corpus order, first 80 % train,
last 20 % held-out test (NeuroX's anchor cuts the same way). MiniLM, every residual site (7 × 384 = 2,688
neurons), word-level mean.

Methods: ``weight_mass`` (Dalvi et al. 2019, on our full probe), ``probeless`` (Antverg & Belinkov 2022,
standardised, training rows), ``probeless_raw`` (the paper's/NeuroX's unstandardised definition),
``gaussian`` (Torroba Hennigen et al. 2020, k greedy steps then information alone), ``iou`` (training
rows), ``attribution`` (input × gradient of the full probe's true-class logit, mean |w_y,j · z_j| over the
training rows). Every ranking sees training rows only.

For each method and ``k`` = 10 % of the neurons: ``retrain_*`` is the test accuracy of a probe retrained
on the top / random (mean of ``--draws`` draws) / bottom k neurons; ``keep_*`` the full probe's test
accuracy keeping only those k neurons and zero-ablating the rest (raw activation 0, NeuroX's
``zero_out_activations_keep_neurons``); ``ablate_*`` zero-ablating those k and keeping the rest. ``pass``:
retrain and keep both ordered top > random > bottom (ablate: top < random < bottom is reported, not
required). NeuroX 1.0.9 (``bench/neurox_probe_anchor.py`` in its own interpreter, ``--neurox-python``,
default ``$NEUROX_PYTHON`` or ``/tmp/neurox-env/bin/python``): its probe, weight-mass and probeless
orderings, retrain and keep (zero) on the *same* activation matrix and split (its own extraction is
skipped: one sentence at a time, it takes ~20 min here).

Prints progress to stderr and JSON lines to stdout: one per method, one for NeuroX, one summary (last).
Run from the repo root: ``python bench/rankings.py [--sentences 1000]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import DEV, NEUROX_PYTHON, load_now, log, machine, run_json

from neuronwidgets.core import (
    NeuronRanking,
    evaluate_ranking,
    extract_activations,
    load_conllu,
    load_model,
    load_ud_english,
    rank_gaussian,
    rank_iou,
    rank_probeless,
    rank_weight_mass,
    split_sentences,
    train_probe,
)
from neuronwidgets.core.store.design import Design

HERE = Path(__file__).resolve().parent


def attribution_ranking(result, acts, labels, train_rows) -> NeuronRanking:
    probe = result.probe
    x = Design(acts, neurons=list(probe.features)).matrix(train_rows).astype(np.float64)
    z = (x - probe.mean) / probe.scale
    cls = {c: i for i, c in enumerate(probe.classes)}
    y = np.array([cls.get(str(v), -1) for v in np.asarray(labels, dtype=object)[train_rows]])
    keep = y >= 0
    contrib = np.abs(probe.weight.astype(np.float64)[y[keep]] * z[keep])  # |w_{y,j} z_j| per row
    return NeuronRanking.from_scores(probe.features, contrib.mean(0), "attribution")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data", type=Path, default=None, help="a UD English-EWT folder (default: the copy in the repo)"
    )
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--column", default="xpos")
    ap.add_argument("--percent", type=float, default=10.0)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--gaussian-k", type=int, default=20)
    ap.add_argument("--neurox-python", default=NEUROX_PYTHON)
    ap.add_argument("--skip-neurox", action="store_true")
    ap.add_argument(
        "--neurox-json",
        type=Path,
        help="use this NeuroX anchor output (its last line) instead of running it (e.g. run concurrently)",
    )
    args = ap.parse_args()

    load_start = load_now()
    t_all = time.perf_counter()
    if args.data is None:
        corpus = load_ud_english("dev", columns=[args.column], max_sentences=args.sentences, max_words=60)
    else:
        corpus = load_conllu(
            args.data / DEV, columns=[args.column], max_sentences=args.sentences, max_words=60
        )
    labels = np.asarray(corpus.flat_labels(args.column), dtype=object)
    acts = extract_activations(load_model("minilm"), corpus, layers="all", components="resid", progress=False)
    split = split_sentences(len(corpus), (0.8, 0.2), shuffle=False)
    tr, _, _ = split.rows(acts.offsets)
    names = Design(acts).names
    f = len(names)
    k = max(1, round(f * args.percent / 100))
    log(f"{len(corpus)} sentences, {corpus.num_words} words, {f} neurons, k = {k}")
    full = train_probe(acts, labels, split=split, control=False, baselines=False)
    log(f"full probe: test {full.accuracy:.4f}")

    rankings = {
        "weight_mass": lambda: rank_weight_mass(full),
        "probeless": lambda: rank_probeless(acts, labels, split=split),
        "probeless_raw": lambda: rank_probeless(acts, labels, split=split, standardize=False),
        "gaussian": lambda: rank_gaussian(acts, labels, k=args.gaussian_k, split=split),
        "iou": lambda: rank_iou(acts, labels, split=split),
        "attribution": lambda: attribution_ranking(full, acts, labels, tr),
    }
    rng = np.random.default_rng(0)
    random_sets = [rng.choice(f, k, replace=False) for _ in range(args.draws)]

    def retrain(neurons: list[str]) -> float:
        r = train_probe(acts, labels, neurons=neurons, split=split, control=False, baselines=False)
        return round(float(r.accuracy), 4)

    retrain_random = round(float(np.mean([retrain([names[i] for i in s]) for s in random_sets])), 4)
    log(f"retrain random {retrain_random}")
    summary = {}
    for name, make in rankings.items():
        t0 = time.perf_counter()
        ranking = make()
        rank_s = time.perf_counter() - t0
        abl = evaluate_ranking(full, ranking, acts, labels, percents=(args.percent,), draws=args.draws)
        row = {
            "bench": "rankings",
            "method": name,
            "k": k,
            "retrain_top": retrain(list(ranking.top(k))),
            "retrain_random": retrain_random,
            "retrain_bottom": retrain(list(ranking.bottom(k))),
            "keep_top": round(float(abl.keep_top[0]), 4),
            "keep_random": round(float(abl.keep_random.mean()), 4),
            "keep_bottom": round(float(abl.keep_bottom[0]), 4),
            "ablate_top": round(float(abl.zero_top[0]), 4),
            "ablate_random": round(float(abl.zero_random.mean()), 4),
            "ablate_bottom": round(float(abl.zero_bottom[0]), 4),
            "ranking_s": round(rank_s, 2),
        }
        row["pass"] = bool(
            row["retrain_top"] > row["retrain_random"] > row["retrain_bottom"]
            and row["keep_top"] > row["keep_random"] > row["keep_bottom"]
        )
        summary[name] = row["pass"]
        log(json.dumps(row))
        print(json.dumps(row), flush=True)

    neurox = None
    if args.neurox_json is not None:
        neurox = json.loads(args.neurox_json.read_text(encoding="utf-8").strip().splitlines()[-1])
    elif not args.skip_neurox and Path(args.neurox_python).exists():
        log("NeuroX's probe, orderings and ablation on the same activations, in its own interpreter")
        train_cls = sorted(set(labels[tr].tolist()))
        ids = {c: i for i, c in enumerate(train_cls + sorted(set(labels.tolist()) - set(train_cls)))}
        with tempfile.TemporaryDirectory(prefix="nw-neurox-") as tmp:
            npz = Path(tmp) / "acts.npz"
            y = np.array([ids[c] for c in labels.tolist()])
            np.savez(npz, X=Design(acts).matrix(None), y=y, cut=len(tr))
            cmd = [str(args.neurox_python), str(HERE / "neurox_probe_anchor.py"), str(npz)]
            neurox = run_json([*cmd, "--percent", f"{args.percent:g}"])
    elif not args.skip_neurox:
        log(f"NeuroX interpreter {args.neurox_python} not found: no NeuroX lines")
    if neurox is not None:
        for kind in ("weight_mass", "probeless"):
            line = {
                "bench": "rankings",
                "system": neurox.get("system"),
                "method": kind,
                "k": neurox.get("k"),
                "full_test_acc": neurox.get("test_acc"),
                **neurox.get(kind, {}),
            }
            print(json.dumps(line), flush=True)
    out = {
        "bench": "rankings",
        "summary": True,
        "column": args.column,
        "sentences": len(corpus),
        "words": corpus.num_words,
        "features": f,
        "k": k,
        "full_test_acc": round(float(full.accuracy), 4),
        "pass": summary,
        "total_s": round(time.perf_counter() - t_all, 1),
        "machine": machine(load_start),
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
