#!/usr/bin/env python3
"""Side-by-side anchor: NeuroX 1.0.9 extraction + elastic-net probe + neuron ordering on a CoNLL-U file.

Run in its own interpreter (NeuroX is a bench baseline only, never a dependency of neuronwidgets); see
bench/README section in docs/benchmarks.md for the environment. With --ablation, NeuroX's probeless
ordering (Antverg & Belinkov 2022, ``neurox.interpretation.probeless``) is evaluated the same way as its
weight-mass ordering, under "ablation_probeless".

Usage: python neurox_baseline.py MODEL_DIR CONLLU OUT_DIR [--max-sents N] [--column upos] [--ablation 1,5,10]
Prints one JSON line: sentences, tokens, extract_s, tokens_per_s, probe_s, train_acc, test_acc, peak_rss_mb.
The split is by sentence: the first 80% of the sentences train, the rest test.
With --ablation P,..: for each percentage P, NeuroX's own protocol (Dalvi et al. 2019) on the k = P% of
neurons that are first, random (3 seeded draws) and last in NeuroX's neuron ordering: the trained probe
re-evaluated with every other neuron zeroed (keep_*), and a probe retrained on those k neurons only
(retrain_*); reported under "ablation".
NeuroX pins torch 1.8 / numpy 1.19; install it with `pip install --no-deps neurox==1.0.9` next to
modern torch/transformers/h5py/scikit-learn/seaborn/svgwrite/imbalanced-learn; np.int is shimmed below.
"""

import argparse
import json
import os
import resource
import time

import numpy as np

np.int = int  # NeuroX uses the alias removed in numpy 1.24
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def read_conllu(path, column, max_sents):
    import conllu

    sents, labels = [], []
    with open(path, encoding="utf-8") as f:
        for tl in conllu.parse_incr(f):
            toks = [t for t in tl if isinstance(t["id"], int)]
            if not toks or len(toks) > 60:
                continue
            sents.append([t["form"].replace(" ", "_") for t in toks])
            labels.append([t[column] for t in toks])
            if len(sents) >= max_sents:
                break
    return sents, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("conllu")
    ap.add_argument("out")
    ap.add_argument("--max-sents", type=int, default=1000)
    ap.add_argument("--column", default="upos")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--ablation", default="", help="comma-separated percentages, e.g. 1,5,10")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    sents, labels = read_conllu(a.conllu, a.column, a.max_sents)
    sp, lp = os.path.join(a.out, "sents.txt"), os.path.join(a.out, "labels.txt")
    with open(sp, "w") as f:
        f.write("\n".join(" ".join(s) for s in sents) + "\n")
    with open(lp, "w") as f:
        f.write("\n".join(" ".join(lab) for lab in labels) + "\n")
    ntok = sum(map(len, sents))
    import neurox.data.loader as dl
    import torch
    from neurox.data.extraction import transformers_extractor as te
    from neurox.interpretation import linear_probe, utils

    torch.set_num_threads(os.cpu_count())
    acts_path = os.path.join(a.out, "acts.hdf5")
    t0 = time.perf_counter()
    te.extract_representations(a.model, sp, acts_path, aggregation="average", device="cpu")
    extract_s = time.perf_counter() - t0
    acts, _ = dl.load_activations(acts_path)
    tokens = dl.load_data(sp, lp, acts, 512)
    X, y, mapping = utils.create_tensors(tokens, acts, "NN")
    label2idx, idx2label = mapping[0], mapping[1]
    n = len(y)
    cut = sum(len(s_) for s_ in sents[: int(len(sents) * 0.8)])  # whole sentences
    assert n == ntok, f"NeuroX kept {n} of {ntok} tokens: the sentence split would be misaligned"
    t0 = time.perf_counter()
    probe = linear_probe.train_logistic_regression_probe(
        X[:cut], y[:cut], lambda_l1=0.001, lambda_l2=0.001, num_epochs=a.epochs
    )
    probe_s = time.perf_counter() - t0
    tr = linear_probe.evaluate_probe(probe, X[:cut], y[:cut], idx_to_class=idx2label)["__OVERALL__"]
    te_ = linear_probe.evaluate_probe(probe, X[cut:], y[cut:], idx_to_class=idx2label)["__OVERALL__"]
    t0 = time.perf_counter()
    ordering, _ = linear_probe.get_neuron_ordering(probe, label2idx)
    order_s = time.perf_counter() - t0
    ablation = {}
    ablation_pl = {}
    if a.ablation:
        from neurox.interpretation import ablation as ab
        from neurox.interpretation import probeless

        rng = np.random.default_rng(0)

        def acc(p, X_):
            return linear_probe.evaluate_probe(p, X_, y[cut:], idx_to_class=idx2label)["__OVERALL__"]

        def evaluate(order):
            out = {}
            for pct in (float(v) for v in a.ablation.split(",")):
                k = max(1, round(X.shape[1] * pct / 100))
                picks = {"top": order[:k], "bottom": order[-k:]}
                picks.update({f"random{i}": rng.choice(X.shape[1], size=k, replace=False) for i in range(3)})
                row = {"k": k}
                for name, neurons in picks.items():
                    row["keep_" + name] = round(
                        acc(probe, ab.zero_out_activations_keep_neurons(X[cut:], neurons)), 4
                    )
                    Xs = ab.filter_activations_keep_neurons(X, neurons)
                    p2 = linear_probe.train_logistic_regression_probe(
                        Xs[:cut], y[:cut], lambda_l1=0.001, lambda_l2=0.001, num_epochs=a.epochs
                    )
                    row["retrain_" + name] = round(acc(p2, Xs[cut:]), 4)
                for kind in ("keep", "retrain"):
                    row[f"{kind}_random"] = round(
                        float(np.mean([row.pop(f"{kind}_random{i}") for i in range(3)])), 4
                    )
                out[f"{pct:g}%"] = row
            return out

        ablation = evaluate(np.asarray(ordering))
        pl_order = np.asarray(probeless.get_neuron_ordering(X[:cut], y[:cut]))  # training rows only
        ablation_pl = evaluate(pl_order)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            dict(
                ablation=ablation or None,
                ablation_probeless=ablation_pl or None,
                system="neurox-1.0.9",
                sentences=len(sents),
                tokens=ntok,
                features=int(X.shape[1]),
                extract_s=round(extract_s, 2),
                tokens_per_s=round(ntok / extract_s, 1),
                probe_s=round(probe_s, 2),
                ordering_s=round(order_s, 2),
                train_acc=round(tr, 4),
                test_acc=round(te_, 4),
                peak_rss_mb=round(rss),
            )
        )
    )


if __name__ == "__main__":
    main()
