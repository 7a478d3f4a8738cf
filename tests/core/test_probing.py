"""Linear probes: agreement with scikit-learn, baselines and control tasks, splits, saving, streaming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neuronwidgets.core import (
    Activations,
    Probe,
    ProbeResult,
    Split,
    as_activations,
    control_labels,
    split_sentences,
    train_layerwise_probes,
    train_probe,
)
from neuronwidgets.core.store.activations import Chunk


def planted(n_sent: int = 300, width: int = 24, seed: int = 0, noise: float = 0.6):
    """Sentences of 8 words over a 400-word vocabulary; each word type has a fixed class (like POS);
    neurons 3 and 11 carry the class, the rest is noise."""
    rng = np.random.default_rng(seed)
    n = n_sent * 8
    vocab_class = rng.integers(0, 3, 400)
    word_ids = rng.integers(0, 400, n)
    y = vocab_class[word_ids]
    x = rng.standard_normal((n, width)).astype(np.float32)
    x[:, 3] = y + noise * rng.standard_normal(n)
    x[:, 11] = (y == 2) * 1.5 + noise * rng.standard_normal(n)
    words = [f"w{i}" for i in word_ids]
    labels = np.array(["ADJ", "NOUN", "VERB"], dtype=object)[y]
    return as_activations(x, lengths=[8] * n_sent, words=words), labels


def test_probe_agrees_with_scikit_learn() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    acts, labels = planted()
    split = split_sentences(acts.num_sentences, (0.8, 0.2), seed=1)
    res = train_probe(
        acts,
        labels,
        split=split,
        l1=0.0,
        l2=1e-3,
        precision="float32",
        max_iter=200,
        control=False,
        baselines=False,
    )
    tr, _, te = split.rows(acts.offsets)
    x = acts.matrix()
    mu, sd = x[tr].mean(0), x[tr].std(0)
    # sklearn minimises C·Σ CE + ½‖W‖²; ours mean CE + l2·‖W‖², so C = 1 / (2·l2·n)
    clf = sklearn.LogisticRegression(C=1.0 / (2 * 1e-3 * len(tr)), max_iter=2000, tol=1e-8)
    clf.fit((x[tr] - mu) / sd, labels[tr])
    ref = clf.predict((x[te] - mu) / sd)
    ours = res.probe.predict(acts, te)
    assert abs(float(np.mean(ref == labels[te])) - res.accuracy) < 0.02
    assert np.mean(ref == ours) > 0.97
    corr = np.corrcoef(clf.coef_.ravel(), (res.probe.weight - res.probe.weight.mean(0)).ravel())[0, 1]
    assert corr > 0.99  # same solution (up to the softmax's shared offset)


def test_bfloat16_training_matches_float32() -> None:
    acts, labels = planted()
    a = train_probe(acts, labels, precision="float32", control=False, baselines=False)
    b = train_probe(acts, labels, precision="bfloat16", control=False, baselines=False)
    assert abs(a.accuracy - b.accuracy) < 0.02
    assert np.mean(a.probe.predict(acts) == b.probe.predict(acts)) > 0.97


def test_result_has_baselines_control_and_per_class_scores() -> None:
    acts, labels = planted()
    res = train_probe(acts, labels, seed=3)
    assert res.accuracy > 0.85 and res.train.accuracy >= res.accuracy - 0.05
    assert res.dev is not None and res.dev.n > 0
    assert res.control is not None
    # word types decide both the task and control labels, but the features carry only the task
    assert res.selectivity == pytest.approx(res.test.accuracy - res.control.accuracy)
    assert res.selectivity > 0.3
    assert 0.25 < res.majority < 0.5
    assert res.random_features is not None
    frame = res.to_frame()
    assert list(frame.columns)[:5] == ["neurons", "task", "train", "dev", "test"]
    per_class = res.per_class()
    assert list(per_class["class"]) == ["ADJ", "NOUN", "VERB"]
    assert per_class["support"].sum() == res.test.n
    assert 0 < res.test.macro_f1 <= 1


def test_control_task_selectivity_of_random_features_is_near_zero() -> None:
    rng = np.random.default_rng(5)
    n_sent, per = 400, 10
    n = n_sent * per
    vocab_class = rng.choice(4, 2000, p=[0.4, 0.3, 0.2, 0.1])
    word_ids = rng.integers(0, 2000, n)
    labels = np.array(["A", "B", "C", "D"], dtype=object)[vocab_class[word_ids]]
    x = rng.standard_normal((n, 32)).astype(np.float32)  # nothing to read from
    acts = as_activations(x, lengths=[per] * n_sent, words=[f"w{i}" for i in word_ids])
    res = train_probe(acts, labels, seed=2, baselines=False)
    assert res.control is not None
    assert abs(res.selectivity) < 0.05
    assert res.accuracy < 0.5


def test_control_labels_keep_distribution_and_are_fixed_per_type() -> None:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in rng.integers(0, 3000, 30000)]
    labels = rng.choice(["A", "B", "C"], 30000, p=[0.6, 0.3, 0.1])
    ctrl = control_labels(words, labels, seed=4)
    for w in ("w1", "w2", "w77"):
        assert len({c for ww, c in zip(words, ctrl) if ww == w}) == 1
    share = np.mean(ctrl == "A")
    assert 0.5 < share < 0.7
    assert not np.array_equal(ctrl, control_labels(words, labels, seed=5))
    np.testing.assert_array_equal(ctrl, control_labels(words, labels, seed=4))


def test_split_is_by_sentence_and_deterministic() -> None:
    acts, _ = planted(n_sent=50)
    a = split_sentences(50, seed=7)
    assert a.train.tolist() == split_sentences(50, seed=7).train.tolist()
    parts = [set(a.train.tolist()), set(a.dev.tolist()), set(a.test.tolist())]
    assert sum(len(p) for p in parts) == 50 and not (parts[0] & parts[1] or parts[0] & parts[2])
    tr, dv, te = a.rows(acts.offsets)
    assert len(tr) + len(dv) + len(te) == acts.num_units
    for s in a.test:
        assert set(range(acts.offsets[s], acts.offsets[s + 1])) <= set(te.tolist())
    ordered = split_sentences(10, (0.8, 0.2), shuffle=False)
    assert ordered.train.tolist() == list(range(8)) and ordered.test.tolist() == [8, 9]
    assert len(ordered.dev) == 0
    with pytest.raises(ValueError, match="fractions"):
        split_sentences(10, (0.5, 0.2))
    with pytest.raises(ValueError, match="at least 2 sentences"):
        split_sentences(1)


def test_deterministic_and_save_load_round_trip_without_pickle(tmp_path: Path) -> None:
    acts, labels = planted()
    a = train_probe(acts, labels, seed=1)
    b = train_probe(acts, labels, seed=1)
    np.testing.assert_array_equal(a.probe.weight, b.probe.weight)
    assert a.control is not None and b.control is not None and a.control.accuracy == b.control.accuracy
    path = a.probe.save(tmp_path / "pos-probe")
    assert path.suffix == ".safetensors"
    loaded = Probe.load(path)
    np.testing.assert_array_equal(loaded.predict(acts), a.probe.predict(acts))
    np.testing.assert_array_equal(loaded.decision_function(acts), a.probe.decision_function(acts))
    assert loaded.features == a.probe.features and loaded.classes == a.probe.classes
    folder = a.save(tmp_path / "result")
    assert sorted(p.name for p in folder.iterdir()) == ["probe.safetensors", "result.json"]
    json.loads((folder / "result.json").read_text())  # plain JSON
    back = ProbeResult.load(folder)
    assert back.summary() == pytest.approx(a.summary(), nan_ok=True)
    np.testing.assert_array_equal(back.split.test, a.split.test)
    np.testing.assert_array_equal(back.probe.predict(acts), a.probe.predict(acts))
    _, _, te = a.split.rows(acts.offsets)
    assert a.probe.score(acts, labels, rows=te).accuracy == pytest.approx(a.accuracy)
    with pytest.raises(ValueError, match="not a neuronwidgets probe"):
        (tmp_path / "x.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
        Probe.load(tmp_path / "x.safetensors")


def test_streaming_training_equals_in_memory() -> None:
    acts, labels = planted(n_sent=120)
    x = acts.matrix()
    # three chunks, as an on-disk store has
    bounds = [(0, 40), (40, 90), (90, 120)]
    chunks = []
    for a, b in bounds:
        rows = slice(a * 8, b * 8)
        chunks.append(
            Chunk(
                np.arange(0, (b - a) * 8 + 1, 8),
                [[f"u{i}"] * 8 for i in range(a, b)],
                {"layer.0.resid": x[rows]},
            )
        )
    meta = {**acts.meta, "chunk_counts": [b - a for a, b in bounds]}
    chunked = Activations(meta, chunks)
    kw = dict(precision="float32", control=False, baselines=False, seed=4, max_iter=200)
    mem = train_probe(chunked, labels, in_memory=True, **kw)
    stream = train_probe(chunked, labels, in_memory=False, **kw)
    assert stream.probe.meta["streamed"] and not mem.probe.meta["streamed"]
    np.testing.assert_allclose(stream.probe.weight, mem.probe.weight, atol=2e-3)
    plain = train_probe(acts, labels, **kw)
    np.testing.assert_allclose(plain.probe.weight, mem.probe.weight, atol=2e-3)


def test_regression_probe_reports_correlations() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2000, 10)).astype(np.float32)
    target = 3.0 * x[:, 4] - x[:, 7] + 0.3 * rng.standard_normal(2000)
    acts = as_activations(x, lengths=[10] * 200, words=[f"w{i}" for i in range(2000)])
    res = train_probe(acts, target, control=False)
    assert res.probe.task == "regression" and res.control is None
    assert res.test.pearson > 0.95 and res.test.spearman > 0.9
    assert np.isnan(res.test.accuracy)
    pred = res.probe.predict(acts)
    assert pred.dtype == np.float64 and abs(np.mean(pred) - target.mean()) < 0.2
    assert np.argmax(np.abs(res.probe.weight[0])) == 4
    with pytest.raises(ValueError, match="regression probe"):
        res.probe.predict_proba(acts)


def test_neuron_subsets_and_sites() -> None:
    rng = np.random.default_rng(0)
    n = 1600
    y = rng.integers(0, 2, n)
    arrays = {
        "layer.0.resid": rng.standard_normal((n, 8)).astype(np.float32),
        "layer.1.resid": rng.standard_normal((n, 8)).astype(np.float32),
    }
    arrays["layer.1.resid"][:, 5] += 3 * y
    acts = as_activations(arrays, lengths=[8] * 200, words=[f"w{i % 300}" for i in range(n)])
    labels = np.where(y == 1, "yes", "no")
    sub = train_probe(acts, labels, neurons=["layer.1.resid:5", "layer.0.resid:2"], baselines=False)
    assert sub.probe.features == ("layer.1.resid:5", "layer.0.resid:2")
    assert sub.accuracy > 0.9
    site = train_probe(acts, labels, sites="layer.0.resid", control=False, baselines=False)
    assert site.probe.num_features == 8 and site.accuracy < 0.65
    lw = train_layerwise_probes(acts, labels, baselines=False)
    assert lw.sites == ["layer.0.resid", "layer.1.resid"] and lw.best == "layer.1.resid"
    frame = lw.to_frame()
    assert list(frame["layer"]) == [0, 1] and {"selectivity", "control", "test"} <= set(frame.columns)
    # all probes share one split
    np.testing.assert_array_equal(lw["layer.0.resid"].split.test, lw["layer.1.resid"].split.test)
    from matplotlib.axes import Axes

    assert isinstance(lw.plot(), Axes)


def test_clear_errors_for_bad_input() -> None:
    acts, labels = planted(n_sent=20)
    with pytest.raises(ValueError, match="one label per activation row"):
        train_probe(acts, labels[:-1])
    with pytest.raises(ValueError, match="only one class"):
        train_probe(acts, ["X"] * acts.num_units)
    with pytest.raises(ValueError, match="was not extracted"):
        train_probe(acts, labels, sites=["layer.4.mlp"])
    with pytest.raises(ValueError, match="out of range"):
        train_probe(acts, labels, neurons=["layer.0.resid:999"])
    with pytest.raises(ValueError, match="either sites= or neurons="):
        train_probe(acts, labels, sites=["layer.0.resid"], neurons=["layer.0.resid:1"])
    with pytest.raises(ValueError, match="non-negative"):
        train_probe(acts, labels, l2=-1.0)
    with pytest.raises(ValueError, match="precision"):
        train_probe(acts, labels, precision="float8")
    with pytest.raises(ValueError, match="unknown task"):
        train_probe(acts, labels, task="ranking")
    with pytest.raises(TypeError, match="Activations"):
        train_probe(acts.matrix(), labels)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside"):
        train_probe(acts, labels, split=Split(np.arange(5), np.array([], dtype=np.int64), np.array([99])))
    probe = train_probe(acts, labels, control=False, baselines=False).probe
    with pytest.raises(ValueError, match=r"\[rows, 24\]"):
        probe.predict(np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="not among the classes"):
        probe.score(acts, ["ZZZ"] * acts.num_units)
