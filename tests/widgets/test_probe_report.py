"""ProbeReport widget model (no browser): the float32 buffers equal the result objects' frames (computed
independently from ``.to_frame()``), clear errors for bad input, matplotlib figures and static export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers
from matplotlib.figure import Figure

from neuronwidgets.core import (
    LayerwiseProbes,
    RankingAblation,
    as_activations,
    evaluate_ranking,
    rank_weight_mass,
    train_layerwise_probes,
    train_probe,
)
from neuronwidgets.widgets import ProbeReport
from neuronwidgets.widgets._assets import decode_array

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def results() -> tuple[LayerwiseProbes, RankingAblation]:
    rng = np.random.default_rng(0)
    n = 1600
    y = rng.integers(0, 3, n)
    arrays = {f"layer.{i}.resid": rng.standard_normal((n, 10)).astype(np.float32) for i in range(3)}
    arrays["layer.1.resid"][:, 4] += 2.0 * y
    arrays["layer.2.resid"][:, 4] += 3.0 * y
    acts = as_activations(arrays, lengths=[8] * 200, words=[f"w{i % 300}" for i in range(n)])
    labels = np.array(["ADJ", "NOUN", "VERB"], dtype=object)[y]
    layerwise = train_layerwise_probes(acts, labels, baselines=False)
    probe = train_probe(acts, labels, sites="layer.2.resid", control=False, baselines=False)
    ablation = evaluate_ranking(probe, rank_weight_mass(probe), acts, labels, percents=(10, 50, 100), draws=3)
    return layerwise, ablation


def test_layer_buffers_equal_the_frame(results: tuple[LayerwiseProbes, RankingAblation]) -> None:
    layerwise, _ = results
    report = ProbeReport(layerwise)
    frame = layerwise.to_frame()
    assert report.sites == list(frame["site"])
    assert report.layer_series == ["test", "control", "selectivity", "majority"]
    values = decode_array(report.layer_values)
    assert values.dtype == np.float32 and values.shape == (4, len(frame))
    for i, col in enumerate(report.layer_series):
        np.testing.assert_array_equal(values[i], frame[col].to_numpy(dtype=np.float32))
    # selectivity is task minus control, as the core defines it
    np.testing.assert_allclose(values[2], values[0] - values[1], atol=1e-6)
    assert report.layer_metric == "accuracy" and report.modes == []


def test_ablation_buffers_equal_the_frame(results: tuple[LayerwiseProbes, RankingAblation]) -> None:
    _, ablation = results
    report = ProbeReport(ablation=ablation)
    frame = ablation.to_frame()
    mean, std = decode_array(report.curve_mean), decode_array(report.curve_std)
    assert mean.shape == std.shape == (2, 3, 3) and mean.dtype == np.float32
    for i, mode in enumerate(report.modes):
        for j, sel in enumerate(report.selections):
            rows = frame[(frame["mode"] == mode) & (frame["selection"] == sel)]
            np.testing.assert_array_equal(mean[i, j], rows["accuracy"].to_numpy(dtype=np.float32))
            np.testing.assert_array_equal(std[i, j], rows["std"].to_numpy(dtype=np.float32))
            np.testing.assert_array_equal(decode_array(report.percents), rows["percent"].to_numpy(np.float32))
            np.testing.assert_array_equal(decode_array(report.neurons), rows["neurons"].to_numpy(np.float32))
    assert report.modes == ["keep", "zero"] and report.selections == ["top", "random", "bottom"]
    assert std[:, 1].max() >= 0 and np.all(std[:, [0, 2]] == 0)  # a spread only for random draws
    np.testing.assert_array_equal(
        decode_array(report.baselines), np.array([ablation.full, ablation.majority], dtype=np.float32)
    )
    assert report.sites == []


def test_numbers_travel_as_binary_buffers(results: tuple[LayerwiseProbes, RankingAblation]) -> None:
    report = ProbeReport(*results)
    state = report.get_state()
    _, _, buffers = _remove_buffers(state)
    assert len(buffers) == 6
    for key in ("layer_values", "percents", "neurons", "curve_mean", "curve_std", "baselines"):
        assert isinstance(state[key]["view"], memoryview), key


def test_bad_input_gives_clear_errors(results: tuple[LayerwiseProbes, RankingAblation]) -> None:
    layerwise, ablation = results
    with pytest.raises(ValueError, match="needs a LayerwiseProbes, a RankingAblation, or both"):
        ProbeReport()
    with pytest.raises(TypeError, match="layerwise must be a LayerwiseProbes"):
        ProbeReport(layerwise.to_frame())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ablation must be a RankingAblation"):
        ProbeReport(layerwise, layerwise)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no probe results"):
        ProbeReport(LayerwiseProbes({}))
    bad = RankingAblation(
        "x",
        np.array([10.0]),
        np.array([1]),
        *(np.array([np.inf]) if k % 3 != 1 else np.array([[0.5]]) for k in range(6)),
        full=0.9,
    )
    with pytest.raises(ValueError, match="finite"):
        ProbeReport(ablation=bad)
    assert isinstance(ablation, RankingAblation)


def test_figures_are_the_result_objects_plots(results: tuple[LayerwiseProbes, RankingAblation]) -> None:
    figs = ProbeReport(*results).figures()
    assert len(figs) == 2 and all(isinstance(f, Figure) for f in figs)
    assert figs[0].axes[0].get_title() == "probe accuracy by layer"
    assert len(ProbeReport(ablation=results[1]).figures()) == 1


def test_standalone_html_export(results: tuple[LayerwiseProbes, RankingAblation], tmp_path: Path) -> None:
    layerwise, ablation = results
    abl = RankingAblation(**{**ablation.__dict__, "method": XSS})
    out = ProbeReport(layerwise, abl).to_html(tmp_path / "report.html")
    page = out.read_text(encoding="utf-8")
    assert "<script src=" not in page and "http://" not in page.replace("http://www.w3.org", "")
    assert XSS not in page  # escaped inside the JSON state
    state = json.loads(re.search(r'id="nw-state">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert state["state"]["method"] == XSS
    assert len(state["buffers"]) == 6
