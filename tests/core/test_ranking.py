"""Neuron rankings, ablation on the probe and minimal neuron subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuronwidgets.core import (
    NeuronRanking,
    as_activations,
    evaluate_ranking,
    extract_activations,
    load_conllu,
    rank_gaussian,
    rank_iou,
    rank_probeless,
    rank_weight_mass,
    train_minimal_probe,
    train_probe,
)
from neuronwidgets.core.probing.probes import Probe

PLANTED = "layer.0.resid:13"


def planted_data(seed: int = 0, n_sent: int = 250, width: int = 40):
    """Four classes; neuron 13 = class index + noise, every other neuron is noise (some with a large
    scale or offset, so a ranking cannot win by scale)."""
    rng = np.random.default_rng(seed)
    n = n_sent * 10
    y = rng.integers(0, 4, n)
    x = rng.standard_normal((n, width)).astype(np.float32)
    x[:, :5] *= 20.0
    x[:, 5:10] += 50.0
    x[:, 13] = y + 0.35 * rng.standard_normal(n)
    labels = np.array(["DET", "NOUN", "PUNCT", "VERB"], dtype=object)[y]
    words = [f"w{i}" for i in rng.integers(0, 600, n)]
    return as_activations(x, lengths=[10] * n_sent, words=words), labels


def test_planted_neuron_ranks_first_under_every_method() -> None:
    acts, labels = planted_data()
    result = train_probe(acts, labels, control=False, baselines=False)
    rankings = {
        "weight_mass": rank_weight_mass(result),
        "weight_mass/100": rank_weight_mass(result.probe, search_stride=100),
        "probeless": rank_probeless(acts, labels),
        "iou": rank_iou(acts, labels),
        "iou/q": rank_iou(acts, labels, quantile=0.9),
        "gaussian": rank_gaussian(acts, labels, k=3),
        "gaussian/diag": rank_gaussian(acts, labels, k=3, covariance="diag"),
    }
    for name, r in rankings.items():
        assert r.neurons[0] == PLANTED, name
        assert len(r) == 40 and sorted(r.neurons) == sorted(acts.feature_names()), name
    # unstandardised (the paper's raw definition), noise neurons of scale 20 can outscore it: that is why
    # standardize=True is the default
    assert rank_probeless(acts, labels, standardize=False).rank_of(PLANTED) <= 5
    # the per-class view: the planted neuron separates DET (lowest) and VERB (highest) best of all
    iou = rankings["iou"]
    assert iou.per_class(1)["VERB"] == [PLANTED] and iou.per_class(1)["DET"] == [PLANTED]
    gauss = rankings["gaussian"]
    info = gauss.meta["information"]
    assert len(info) == 3 and info[0] > 1.0  # bits: most of the 2 bits of 4 balanced classes
    assert gauss.scores[0] == pytest.approx(info[0])


def _neurox_ordering(weight: np.ndarray, search_stride: int = 100) -> tuple[list[int], list[int]]:
    """NeuroX 1.0.9's ``get_neuron_ordering`` (top neurons at each weight-mass percentage, accumulated),
    written out from its published algorithm as an independent reference."""
    w = np.abs(weight)

    def top_neurons(p: float) -> set[int]:
        union: set[int] = set()
        for c in range(w.shape[0]):
            total = w[c].sum()
            order = np.argsort(w[c])[::-1]
            cums = np.cumsum(w[c, order])
            unselected = np.where(cums >= total * p)[0]
            chosen = np.arange(cums.shape[0]) if unselected.shape[0] == 0 else np.arange(unselected[0] + 1)
            union |= {int(i) for i in order[chosen]}
        return union

    seen: set[int] = set()
    ordering: list[int] = []
    cutoffs = []
    for k in range(search_stride + 1):
        new = top_neurons(k / search_stride) - seen
        ordering += sorted(new)
        seen |= new
        cutoffs.append(len(ordering))
    return ordering, cutoffs


def test_weight_mass_ordering_matches_neurox_sweep() -> None:
    rng = np.random.default_rng(3)
    weight = (rng.standard_normal((5, 300)) * rng.exponential(1.0, 300)).astype(np.float32)
    probe = Probe(
        task="classification",
        features=tuple(f"layer.2.mlp:{i}" for i in range(300)),
        classes=tuple("ABCDE"),
        mean=np.zeros(300, np.float32),
        scale=np.ones(300, np.float32),
        weight=weight,
        bias=np.zeros(5, np.float32),
    )
    ref, cutoffs = _neurox_ordering(weight)
    ours = [int(n.rsplit(":", 1)[1]) for n in rank_weight_mass(probe, search_stride=100).neurons]
    assert len(ours) == 300
    start = 0
    for (
        end
    ) in cutoffs:  # the same neurons enter at every percentage step (NeuroX orders within a step arbitrarily)
        assert set(ours[start:end]) == set(ref[start:end])
        start = end
    exact = rank_weight_mass(probe)
    assert exact.scores[0] == 1.0 and np.all(np.diff(exact.scores) <= 1e-12)
    # per class: the class's largest weight is its top neuron
    top_b = exact.per_class(1)["B"][0]
    assert top_b == f"layer.2.mlp:{int(np.argmax(np.abs(weight[1])))}"
    assert exact.top_class is not None and len(exact.top_class) == 300


def test_neuron_ranking_type(tmp_path: Path) -> None:
    r = NeuronRanking.from_scores(
        ["layer.1.mlp:0", "layer.1.mlp:1", "embed.resid:2", "layer.0.resid:3"],
        [0.1, np.nan, 0.9, 0.5],
        "test",
        classes=("x", "y"),
        class_scores=np.array([[1, 0], [0, 1], [0.2, 0.9], [0.7, 0.1]]),
        columns={"partner": np.array(["a", "b", "c", "d"], dtype=object), "corr": np.array([1.0, 2, 3, 4])},
        meta={"why": "test"},
    )
    assert r.neurons == ("embed.resid:2", "layer.0.resid:3", "layer.1.mlp:0", "layer.1.mlp:1")  # NaN last
    assert list(r.top(2)) == ["embed.resid:2", "layer.0.resid:3"]
    assert r.top(2).scores.tolist() == [0.9, 0.5]
    assert list(r.bottom(1)) == ["layer.1.mlp:1"]
    assert r.count(50) == 2 and r.count(1) == 1 and list(r.top_percent(100)) == list(r.neurons)
    assert r.rank_of("layer.1.mlp:0") == 2
    assert r.per_class(1) == {"x": ["layer.1.mlp:0"], "y": ["layer.1.mlp:1"]}
    assert list(r.restrict(["layer.1.mlp:1", "embed.resid:2"])) == ["embed.resid:2", "layer.1.mlp:1"]
    frame = r.to_frame()
    assert list(frame.columns) == [
        "rank", "neuron", "site", "layer", "component", "index", "score", "top_class", "partner", "corr",
    ]  # fmt: skip
    assert frame["layer"].tolist() == [-1, 0, 1, 1] and frame["top_class"].tolist() == ["y", "x", "x", "y"]
    back = NeuronRanking.load(r.save(tmp_path / "r"))
    assert back.neurons == r.neurons and back.meta == {"why": "test"}
    np.testing.assert_array_equal(back.scores, r.scores)
    np.testing.assert_array_equal(back.class_scores, r.class_scores)
    assert back.columns["partner"].tolist() == ["c", "d", "a", "b"]
    np.testing.assert_array_equal(back.columns["corr"], r.columns["corr"])
    from matplotlib.axes import Axes

    assert isinstance(r.plot(3), Axes)
    with pytest.raises(ValueError, match="out of range"):
        r.top(5)
    with pytest.raises(TypeError, match="int"):
        r.top(0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="percent"):
        r.top_percent(0)
    with pytest.raises(ValueError, match="twice"):
        NeuronRanking(("layer.0.mlp:1", "layer.0.mlp:1"), np.zeros(2), "x")
    with pytest.raises(ValueError, match="one entry per neuron"):
        NeuronRanking(("layer.0.mlp:1",), np.zeros(2), "x")
    with pytest.raises(ValueError, match="not in this ranking"):
        r.restrict(["layer.5.mlp:0"])
    with pytest.raises(ValueError, match="cannot parse"):
        NeuronRanking(("neuron seven",), np.zeros(1), "x")


def test_ablation_curves_and_minimal_subset_on_planted_data() -> None:
    acts, labels = planted_data(seed=1)
    result = train_probe(acts, labels, baselines=True, control=False)
    ranking = rank_weight_mass(result)
    # mean-ablation: the offset neurons (+50) stay neutral when ablated
    abl = evaluate_ranking(
        result, ranking, acts, labels, percents=(2.5, 5, 50, 100), draws=4, ablation="mean"
    )
    assert abl.ablation == "mean" and abl.counts.tolist() == [1, 2, 20, 40]
    assert abl.keep_top[0] > 0.8 > abl.keep_bottom[0]  # the planted neuron alone does the job
    assert abl.zero_top[0] < 0.5 < abl.zero_bottom[0]  # and removing it breaks the probe
    assert abl.keep_top[-1] == pytest.approx(abl.full) and abl.zero_top[-1] <= 0.5
    mean, std = abl.curve("keep", "random")
    assert mean.shape == (4,) and (std >= 0).all() and abl.keep_random.shape == (4, 4)
    frame = abl.to_frame()
    assert len(frame) == 2 * 3 * 4 and set(frame["selection"]) == {"top", "random", "bottom"}
    from matplotlib.axes import Axes

    assert isinstance(abl.plot(), Axes)
    minimal = train_minimal_probe(acts, labels, ranking, reference=result, target=0.97)
    assert minimal.reached and minimal.size <= 3 and minimal.neurons[0] == PLANTED
    assert minimal.accuracy >= 0.97 * minimal.full and minimal.test_accuracy > 0.8
    assert isinstance(minimal.plot(), Axes) and len(minimal.to_frame()) == len(minimal.sizes)
    with pytest.raises(ValueError, match="percents"):
        evaluate_ranking(result, ranking, acts, labels, percents=(0, 10))
    with pytest.raises(ValueError, match="ablation must be one of"):
        evaluate_ranking(result, ranking, acts, labels, ablation="none")
    with pytest.raises(ValueError, match="draws must be an int"):
        evaluate_ranking(result, ranking, acts, labels, draws=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ranking must be a NeuronRanking"):
        evaluate_ranking(result, list(ranking), acts, labels)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not in this ranking"):
        evaluate_ranking(result, ranking.top(5), acts, labels)
    with pytest.raises(ValueError, match="target"):
        train_minimal_probe(acts, labels, ranking, target=1.5)


def test_zero_ablation_is_the_default_and_equals_zeroing_raw_inputs() -> None:
    """Zero-ablation (NeuroX, Dalvi et al. 2019) checked against an independent computation: the probe
    folded into raw-input weights, the ablated raw activations set to 0, the argmax accuracy counted."""
    acts, labels = planted_data(seed=2)
    result = train_probe(acts, labels, baselines=False, control=False)
    ranking = rank_weight_mass(result)
    abl = evaluate_ranking(result, ranking, acts, labels, percents=(5, 25, 50), draws=2, seed=3)
    assert abl.ablation == "zero"
    probe = result.probe
    w = probe.weight.astype(np.float64) / probe.scale.astype(np.float64)  # raw-input weights [C, F]
    b = probe.bias.astype(np.float64) - w @ probe.mean.astype(np.float64)
    _, _, te = result.split.rows(acts.offsets)
    x = acts.matrix()[te].astype(np.float64)
    y = np.searchsorted(np.asarray(probe.classes), labels[te])
    order = probe.feature_index(ranking.neurons)

    def acc(keep: np.ndarray) -> float:
        xz = np.where(keep[None, :], x, 0.0)
        return float(((xz @ w.T + b).argmax(1) == y).mean())

    f = probe.num_features
    perm = np.random.default_rng(3).permutation(f)  # the first of the evaluation's random draws
    for i, k in enumerate(abl.counts):
        top = np.isin(np.arange(f), order[:k])
        bottom = np.isin(np.arange(f), order[f - k :])
        rand = np.isin(np.arange(f), perm[:k])
        assert abl.keep_top[i] == pytest.approx(acc(top), abs=1e-3)
        assert abl.keep_bottom[i] == pytest.approx(acc(bottom), abs=1e-3)
        assert abl.zero_top[i] == pytest.approx(acc(~top), abs=1e-3)
        assert abl.zero_bottom[i] == pytest.approx(acc(~bottom), abs=1e-3)
        assert abl.keep_random[0, i] == pytest.approx(acc(rand), abs=1e-3)
        assert abl.zero_random[0, i] == pytest.approx(acc(~rand), abs=1e-3)
    assert abl.full == pytest.approx(acc(np.ones(f, dtype=bool)), abs=1e-3)


def test_ranking_errors() -> None:
    acts, labels = planted_data(n_sent=30)
    with pytest.raises(ValueError, match="one label per activation row"):
        rank_probeless(acts, labels[:10])
    with pytest.raises(ValueError, match="out of range"):
        rank_gaussian(acts, labels, k=0)
    with pytest.raises(ValueError, match="covariance"):
        rank_gaussian(acts, labels, covariance="banded")
    with pytest.raises(ValueError, match="quantile"):
        rank_iou(acts, labels, quantile=1.5)
    with pytest.raises(ValueError, match="was not extracted"):
        rank_iou(acts, labels, sites=["layer.3.mlp"])
    with pytest.raises(ValueError, match="only one class"):
        rank_probeless(acts, ["X"] * acts.num_units)
    with pytest.raises(TypeError, match="Probe"):
        rank_weight_mass("probe")  # type: ignore[arg-type]


@pytest.mark.real_model
def test_real_pos_top_neurons_beat_random_beat_bottom(minilm, ud_dev) -> None:
    corpus = load_conllu(ud_dev, columns=["upos"], max_sentences=300)
    acts = extract_activations(minilm, corpus, layers=[2, 5])
    labels = corpus.flat_labels("upos")
    result = train_probe(acts, labels, seed=0, baselines=False)
    assert result.accuracy > 0.85 and result.selectivity > 0.05
    ranking = rank_weight_mass(result)
    abl = evaluate_ranking(result, ranking, acts, labels, percents=(5, 10, 20), draws=3)
    rand = abl.keep_random.mean(0)
    assert (abl.keep_top >= rand).all(), (abl.keep_top, rand)
    assert (rand >= abl.keep_bottom).all(), (rand, abl.keep_bottom)
    assert (abl.zero_top <= abl.zero_bottom).all()
    # a ranking without a probe agrees on the direction
    probeless = evaluate_ranking(result, rank_probeless(acts, labels), acts, labels, percents=(10,), draws=3)
    assert probeless.keep_top[0] >= probeless.keep_bottom[0]


def test_probeless_sees_only_training_rows_by_default_and_matches_the_papers_definition() -> None:
    acts, labels = planted_data(seed=3, n_sent=120)
    result = train_probe(acts, labels, control=False, baselines=False)  # default split and seed
    tr, dv, te = result.split.rows(acts.offsets)
    default = rank_probeless(acts, labels)
    assert default.meta["rows"] == "train" and default.meta["num_rows"] == len(tr)
    # garbage in the test and dev labels cannot change the default ranking: those rows are never read
    scrambled = labels.copy()
    held_out = np.concatenate([dv, te])
    scrambled[held_out] = np.random.default_rng(0).permutation(scrambled[held_out])
    again = rank_probeless(acts, scrambled)
    assert again.neurons == default.neurons and np.array_equal(again.scores, default.scores)
    assert rank_probeless(acts, labels, rows=tr).neurons == default.neurons
    everything = rank_probeless(acts, scrambled, rows="all")
    assert everything.meta["num_rows"] == acts.num_units and not np.array_equal(
        everything.scores, default.scores
    )
    assert rank_iou(acts, scrambled).neurons == rank_iou(acts, labels).neurons
    # Antverg & Belinkov (2022) / NeuroX probeless.get_neuron_ordering, recomputed here on the training rows
    x = acts.matrix()[tr].astype(np.float64)
    y = labels[tr]
    q = np.stack([x[y == c].mean(0) for c in sorted(set(y))])
    ref = sum(np.abs(q[i] - q[j]) for i in range(len(q)) for j in range(i + 1, len(q)))
    raw = rank_probeless(acts, labels, standardize=False)
    names = acts.feature_names()
    got = np.array([raw.scores[raw.rank_of(n)] for n in names])
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert [names[i] for i in np.argsort(-ref, kind="stable")] == list(raw.neurons)
    std = rank_probeless(acts, labels)
    got_std = np.array([std.scores[std.rank_of(n)] for n in names])
    np.testing.assert_allclose(got_std, ref / x.std(0), rtol=1e-4)
    with pytest.raises(ValueError, match="rows must be 'train'"):
        rank_probeless(acts, labels, rows="test")
    with pytest.raises(ValueError, match="not both"):
        rank_probeless(acts, labels, rows=tr, split=(0.5, 0.5))
    with pytest.raises(TypeError, match="integer row positions"):
        rank_probeless(acts, labels, rows=np.ones(acts.num_units, dtype=bool))


def test_plot_tells_close_scores_apart() -> None:
    """Regression (browser audit): weight-mass scores (1 − entry share) of the top neurons are all ≈ 1.0,
    and bars from 0 drew them all the same length."""
    entry = np.array([0.0, 0.0004, 0.001, 0.003, 0.006, 0.012])
    r = NeuronRanking.from_scores([f"layer.1.mlp:{i}" for i in range(6)], 1.0 - entry, "weight_mass")
    ax = r.plot(6)
    bars = ax.patches
    ends = sorted(b.get_x() + b.get_width() for b in bars)
    np.testing.assert_allclose(ends, np.sort(1.0 - entry))  # each bar ends at its score
    widths = [b.get_width() for b in bars]
    assert max(widths) > 5 * min(widths) > 0  # the differences are visible
    base = bars[0].get_x()
    assert 0.98 < base < 1.0 - entry.max() and ax.get_xlim()[0] == pytest.approx(base)
    assert "not 0" in ax.get_xlabel()
    texts = [t.get_text().strip() for t in ax.texts]
    assert texts == [f"{v:.4f}" for v in 1.0 - entry]  # the values, written with enough digits
    # scores far apart (or of both signs) keep bars from 0
    wide = NeuronRanking.from_scores(["layer.1.mlp:0", "layer.1.mlp:1"], np.array([2.0, 0.5]), "x")
    assert all(b.get_x() == 0 for b in wide.plot(2).patches)
    mixed = NeuronRanking.from_scores(["layer.1.mlp:0", "layer.1.mlp:1"], np.array([0.3, -0.2]), "x")
    assert mixed.plot(2).get_xlabel() == "score"
