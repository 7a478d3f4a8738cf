#!/usr/bin/env python3
"""NeuroX 1.0.9's probe, orderings and ablation protocol on activations given as an ``.npz`` (``X``
float32 ``[words, neurons]``, ``y`` int ``[words]``, ``cut``: the first ``cut`` rows train, the rest test).

Run in NeuroX's own interpreter (a bench baseline only, never a dependency). It skips NeuroX's extraction
(one sentence at a time, ~20 min for 1,000 sentences on a loaded 2-core machine) so that both sides
rank the *same* activation matrix; class ids must number the training classes first (NeuroX sizes its
probe by the classes seen in training). Prints one JSON line: NeuroX's probe accuracy and, for its
weight-mass ordering (``linear_probe.get_neuron_ordering``) and its probeless ordering
(``probeless.get_neuron_ordering`` on the training rows), k = ``--percent`` % of the neurons: keep_* (its
probe with every other neuron zeroed, ``ablation.zero_out_activations_keep_neurons``) and retrain_* (a
probe retrained on those neurons) for top / random (3 seeded draws) / bottom.
"""

import argparse
import json
import time

import numpy as np

np.int = int  # NeuroX uses the alias removed in numpy 1.24


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("npz")
    ap.add_argument("--percent", type=float, default=10.0)
    ap.add_argument("--epochs", type=int, default=10)
    a = ap.parse_args()
    from neurox.interpretation import ablation as ab
    from neurox.interpretation import linear_probe, probeless

    d = np.load(a.npz)
    X, y, cut = d["X"].astype(np.float32), d["y"].astype(int), int(d["cut"])
    classes = sorted(set(y[:cut].tolist()))
    label2idx = {str(c): c for c in classes}
    idx2label = {c: str(c) for c in range(int(y.max()) + 1)}

    def train(X_):
        return linear_probe.train_logistic_regression_probe(
            X_[:cut], y[:cut], lambda_l1=0.001, lambda_l2=0.001, num_epochs=a.epochs
        )

    def acc(p, X_):
        return linear_probe.evaluate_probe(p, X_, y[cut:], idx_to_class=idx2label)["__OVERALL__"]

    t0 = time.perf_counter()
    probe = train(X)
    probe_s = time.perf_counter() - t0
    test_acc = acc(probe, X[cut:])
    orders = {
        "weight_mass": np.asarray(linear_probe.get_neuron_ordering(probe, label2idx)[0]),
        "probeless": np.asarray(probeless.get_neuron_ordering(X[:cut], y[:cut])),
    }
    k = max(1, round(X.shape[1] * a.percent / 100))
    rng = np.random.default_rng(0)
    randoms = [rng.choice(X.shape[1], size=k, replace=False) for _ in range(3)]
    out = {"system": "neurox-1.0.9", "test_acc": round(test_acc, 4), "probe_s": round(probe_s, 2), "k": k}
    rand_keep = float(
        np.mean([acc(probe, ab.zero_out_activations_keep_neurons(X[cut:], r)) for r in randoms])
    )
    rand_retrain = float(
        np.mean(
            [
                acc(
                    train(ab.filter_activations_keep_neurons(X, r)),
                    ab.filter_activations_keep_neurons(X, r)[cut:],
                )
                for r in randoms
            ]
        )
    )
    for name, order in orders.items():
        row = {"keep_random": round(rand_keep, 4), "retrain_random": round(rand_retrain, 4)}
        for sel, neurons in (("top", order[:k]), ("bottom", order[-k:])):
            row["keep_" + sel] = round(acc(probe, ab.zero_out_activations_keep_neurons(X[cut:], neurons)), 4)
            Xs = ab.filter_activations_keep_neurons(X, neurons)
            row["retrain_" + sel] = round(acc(train(Xs), Xs[cut:]), 4)
        out[name] = row
    print(json.dumps(out))


if __name__ == "__main__":
    main()
