"""AblationPanel widget model (no browser): requests set as the browser sets them (binary float32 scales
with a request id, some out of order), answers checked against predictions computed independently (the
full forward pass with hooks, no prefix cache), effects against measure_effect, errors, reset, random
comparison, probe tags and the static export."""

from __future__ import annotations

import base64
import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers

from neuronwidgets.core import (
    Intervention,
    NeuronRanking,
    Probe,
    ablate,
    extract_activations,
    load_model,
    measure_effect,
    predict,
)
from neuronwidgets.widgets import AblationPanel, _assets

XSS = "<img src=x onerror=alert(1)>"
TEXT = "A wonderful, moving film with superb acting."
# late layers (the prefix cache reruns few blocks: fast) and both components
NEURONS = [
    "layer.3.mlp:17",
    "layer.3.mlp:250",
    "layer.4.mlp:5",
    "layer.4.mlp:1200",
    "layer.4.resid:42",
    "layer.5.mlp:7",
    "layer.5.mlp:999",
    "layer.5.resid:3",
    "layer.5.resid:100",
    "layer.5.resid:383",
]
pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def sentiment() -> Any:
    return load_model("minilm-sentiment")


@pytest.fixture(scope="module")
def smollm2() -> Any:
    return load_model("smollm2")


class Wire:
    """The widget's comm as the browser sees it: records what Python sends, delivers browser requests
    exactly as the widget manager does (state with the float32 buffer cut out, then put back)."""

    def __init__(self, widget: AblationPanel):
        self.widget = widget
        self.sent: list[tuple[dict[str, Any], list[Any]]] = []
        widget.comm.send = self._record  # type: ignore[method-assign]
        widget.comm.kernel = object()  # a connected kernel, so ipywidgets sends updates

    def _record(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        self.sent.append((data, list(buffers or [])))

    def request(self, rid: int, scales: Any, random_k: int = 0, seed: int = 0, **extra: Any) -> None:
        arr = np.asarray(scales, dtype="<f4")
        state = {
            "scales": {"dtype": "float32", "shape": [len(arr)], "view": memoryview(arr.tobytes())},
            "random_k": random_k,
            "random_seed": seed,
            "request_id": rid,
            **extra,
        }
        plain, paths, buffers = _remove_buffers(state)
        msg = {
            "content": {"data": {"method": "update", "state": plain, "buffer_paths": paths}},
            "buffers": [memoryview(bytes(b)) for b in buffers],
        }
        self.widget._handle_msg(msg)

    def browser_model(self) -> dict[str, Any]:
        """What the browser's model holds after every message Python sent (updates; echoes only for
        keys never updated, as the widget manager applies them)."""
        out: dict[str, Any] = {}
        for data, buffers in self.sent:
            if data.get("method") not in ("update", "echo_update"):
                continue
            state = json.loads(json.dumps(data["state"]))  # plain JSON apart from the buffers
            for path, buf in zip(data["buffer_paths"], buffers):
                obj = state
                for key in path[:-1]:
                    obj = obj[key]
                obj[path[-1]] = bytes(buf)
            out.update(state)
        return out


def probs_of(encoded: dict[str, Any]) -> np.ndarray:
    """Decode a ``{view, dtype, shape}`` float32 buffer independently of the widget's helpers."""
    assert encoded["dtype"] == "float32"
    return np.frombuffer(bytes(encoded["view"]), dtype="<f4").reshape(encoded["shape"])


def check_answer(panel: AblationPanel, model: Any, state: dict[str, float], *, top_k: int = 10) -> None:
    """The shown prediction equals independent predictions for ``state``; effects equal measure_effect."""
    answer = panel.prediction
    assert answer["error"] == ""
    iv = Intervention.scale(state)
    clean = predict(
        model, TEXT if model.kind == "classifier" else panel.text, top_k=top_k, prefix_cache=False
    )
    now = predict(model, panel.text, iv, top_k=top_k, prefix_cache=False)
    now_cached = predict(model, panel.text, iv, top_k=top_k)
    probs = probs_of(answer["probs"])
    labels = answer["labels"]
    assert answer["series"][:2] == ["original", "current"]
    for series, pred, tol in ((0, clean, 2e-6), (1, now, 2e-6), (1, now_cached, 0.0)):
        shown = dict(zip(labels, probs[series].tolist()))
        for label, p in zip(pred.labels, pred.probs.tolist()):
            assert label in shown, f"{label!r} of the top predictions is not shown"
            assert shown[label] == pytest.approx(p, abs=tol + 1e-12)
    assert labels[: len(clean.labels)] == clean.labels  # the original's ranking first
    effect = measure_effect(model, panel.text, iv)
    cur = answer["effects"]["current"]
    assert cur["kl"] == pytest.approx(float(effect.kl[0]), rel=1e-9, abs=1e-12)
    assert cur["delta_prob"] == pytest.approx(float(effect.delta_prob[0]), rel=1e-9, abs=1e-12)
    assert cur["top"] == effect.intervened_labels[0] == now.labels[0]
    assert cur["flipped"] == bool(effect.flipped[0])
    assert answer["target"] == effect.labels[0]


# -- the live loop -------------------------------------------------------------------------------------
def test_initial_answer_is_the_clean_prediction(sentiment: Any) -> None:
    panel = AblationPanel(sentiment, TEXT, NEURONS)
    assert panel.neurons == NEURONS and panel.kind == "classifier" and panel.model_name == "minilm-sentiment"
    assert panel.request_id == 0 and panel.prediction["request_id"] == 0
    np.testing.assert_array_equal(probs_of(panel.scales), np.ones(len(NEURONS), dtype=np.float32))
    check_answer(panel, sentiment, dict.fromkeys(NEURONS, 1.0))
    probs = probs_of(panel.prediction["probs"])
    np.testing.assert_array_equal(probs[0], probs[1])
    assert panel.prediction["effects"]["current"]["kl"] == 0.0
    assert set(panel.prediction["labels"]) == {"positive", "negative"}


def test_200_rapid_requests_some_out_of_order_end_with_the_final_state(sentiment: Any) -> None:
    panel = AblationPanel(sentiment, TEXT, NEURONS)
    wire = Wire(panel)
    rng = random.Random(0)
    steps = np.round(np.arange(0, 2.0001, 0.05), 2)
    states: dict[int, np.ndarray] = {}
    scales = np.ones(len(NEURONS))
    for rid in range(1, 201):
        scales = scales.copy()
        for i in rng.sample(range(len(NEURONS)), rng.randint(1, 3)):  # a slider or a toggle moves
            scales[i] = rng.choice([0.0, float(rng.choice(steps))])
        states[rid] = scales.astype(np.float32)
    order = list(states)
    for i in range(0, 190, 7):  # some requests overtake the one before
        order[i], order[i + 1] = order[i + 1], order[i]
    answered: list[int] = []
    for rid in order:
        wire.sent.clear()
        wire.request(rid, states[rid])
        updates = [d for d, _ in wire.sent if d["method"] == "update"]
        answers = [d["state"]["prediction"]["request_id"] for d in updates if "prediction" in d["state"]]
        if rid > max(answered, default=0):
            assert answers == [rid], f"request {rid} got {answers}"
            answered.append(rid)
        else:  # stale: no answer; the newest state stays, and the browser gets it back
            assert answers == []
            newest = states[max(answered)]
            np.testing.assert_array_equal(probs_of(panel.scales), newest)
            seen = wire.browser_model()
            np.testing.assert_array_equal(np.frombuffer(seen["scales"]["view"], dtype="<f4"), newest)
            assert seen["request_id"] == max(answered)
    final = states[200]
    assert panel.request_id == 200 and panel.prediction["request_id"] == 200
    np.testing.assert_array_equal(probs_of(panel.scales), final)
    state = {n: float(v) for n, v in zip(NEURONS, final)}
    assert panel.state == state
    check_answer(panel, sentiment, state)
    # the browser's copy of the model ends with the same state and answer
    seen = wire.browser_model()
    assert seen["prediction"]["request_id"] == 200
    np.testing.assert_array_equal(np.frombuffer(seen["scales"]["view"], dtype="<f4"), final)
    np.testing.assert_array_equal(
        np.frombuffer(seen["prediction"]["probs"]["view"], dtype="<f4").reshape(2, -1),
        probs_of(panel.prediction["probs"]),
    )


def test_answers_travel_as_binary_buffers_in_one_message(sentiment: Any) -> None:
    panel = AblationPanel(sentiment, TEXT, NEURONS)
    wire = Wire(panel)
    wire.request(1, [0.0] * 3 + [1.0] * 7)
    answers = [(d, b) for d, b in wire.sent if d["method"] == "update" and "prediction" in d["state"]]
    assert len(answers) == 1
    data, buffers = answers[0]
    assert data["buffer_paths"] == [["prediction", "probs", "view"]]
    assert "view" not in data["state"]["prediction"]["probs"]
    assert bytes(buffers[0]) == probs_of(panel.prediction["probs"]).tobytes()
    json.dumps(data["state"])  # everything else is plain JSON


def test_bars_equal_independent_predictions_for_scaled_and_amplified_neurons(sentiment: Any) -> None:
    panel = AblationPanel(sentiment, TEXT, NEURONS)
    wire = Wire(panel)
    scales = np.array([0, 0.5, 2, 1.35, 0, 1.95, 0.05, 2, 0, 1], dtype=np.float32)
    wire.request(1, scales)
    check_answer(panel, sentiment, {n: float(v) for n, v in zip(NEURONS, scales)})
    assert panel.to_frame().columns.tolist() == ["original", "current"]


@pytest.mark.parametrize(
    ("scales", "extra", "message"),
    [
        ([1.0] * 9, {}, r"float32 of shape \[10\]"),
        ([1.0] * 9 + [2.5], {}, r"layer\.5\.resid:383 is 2\.5.*from 0 \(off\) to 2"),
        ([1.0] * 9 + [float("nan")], {}, r"layer\.5\.resid:383 is nan"),
        ([1.0] * 10, {"random_k": 11}, r"random_k must be an integer from 0 to 10"),
        ([1.0] * 10, {"random_seed": -1}, r"seed must be a non-negative integer"),
    ],
)
def test_bad_browser_state_is_answered_with_an_error_and_the_last_good_state(
    sentiment: Any, scales: list[float], extra: dict[str, Any], message: str
) -> None:
    panel = AblationPanel(sentiment, TEXT, NEURONS)
    wire = Wire(panel)
    good = np.array([0.0, 1, 1, 1, 1, 1, 1, 1, 1, 0.5], dtype=np.float32)
    wire.request(1, good)
    before = panel.prediction
    wire.sent.clear()
    arr = np.asarray(scales, dtype="<f4")
    seed = extra.pop("random_seed", 0)
    wire.request(2, arr, seed=seed, **extra)
    answer = panel.prediction
    assert answer["request_id"] == 2
    assert re.search(message, answer["error"]), answer["error"]
    # the rest of the answer is the last good one, and so is the state (sent back to the browser)
    assert answer["labels"] == before["labels"]
    np.testing.assert_array_equal(probs_of(answer["probs"]), probs_of(before["probs"]))
    np.testing.assert_array_equal(probs_of(panel.scales), good)
    assert panel.random_k == 0 and panel.random_seed == 0
    seen = wire.browser_model()
    np.testing.assert_array_equal(np.frombuffer(seen["scales"]["view"], dtype="<f4"), good)
    # the next good request clears the error
    wire.request(3, np.ones(10))
    assert panel.prediction["error"] == "" and panel.prediction["request_id"] == 3


def test_a_failing_computation_is_shown_not_raised(sentiment: Any, monkeypatch: Any) -> None:
    panel = AblationPanel(sentiment, TEXT, NEURONS)
    wire = Wire(panel)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(panel, "_distribution", boom)
    wire.request(1, [0.0] * 10)
    assert panel.prediction["error"] == "RuntimeError: out of memory"
    assert panel.prediction["request_id"] == 1
    np.testing.assert_array_equal(probs_of(panel.scales), np.ones(10, dtype=np.float32))


def test_bad_neurons_raise_clear_errors(sentiment: Any) -> None:
    with pytest.raises(ValueError, match=r"neurons\[1\] \(layer\.9\.mlp:3\): unknown layer 9.*6 layers"):
        AblationPanel(sentiment, TEXT, ["layer.1.mlp:3", "layer.9.mlp:3"])
    with pytest.raises(ValueError, match=r"index 1536 is out of range for layer\.1\.mlp.*0 … 1535"):
        AblationPanel(sentiment, TEXT, ["layer.1.mlp:1536"])
    with pytest.raises(ValueError, match=r"cannot parse|neuron address"):
        AblationPanel(sentiment, TEXT, ["layer.1.mlp"])
    with pytest.raises(ValueError, match=r"listed twice"):
        AblationPanel(sentiment, TEXT, ["layer.1.mlp:3", "layer.1.mlp:3"])
    with pytest.raises(ValueError, match=r"no neurons given"):
        AblationPanel(sentiment, TEXT, [])
    with pytest.raises(ValueError, match=r"too many sliders"):
        AblationPanel(sentiment, TEXT, [f"layer.1.mlp:{i}" for i in range(101)])
    with pytest.raises(TypeError, match=r"not a dict"):
        AblationPanel(sentiment, TEXT, {"layer.1.mlp:3": 0.0})
    with pytest.raises(ValueError, match=r"non-empty string"):
        AblationPanel(sentiment, "  ", NEURONS)
    with pytest.raises(ValueError, match=r"encoder without a prediction head"):
        AblationPanel(load_model("minilm"), TEXT, NEURONS)
    panel = AblationPanel(sentiment, TEXT, NEURONS)
    with pytest.raises(ValueError, match=r"layer\.0\.mlp:1 is not one of the panel's neurons"):
        panel.set_scales({"layer.0.mlp:1": 0.0})
    with pytest.raises(ValueError, match=r"from 0 \(off\) to 2"):
        panel.set_scales(3.0)


def test_reset_restores_the_original(sentiment: Any) -> None:
    panel = AblationPanel(sentiment, TEXT, NEURONS)
    original = probs_of(panel.prediction["probs"])[0].copy()
    wire = Wire(panel)
    wire.request(1, [0.0] * 10, random_k=4)
    assert not np.array_equal(probs_of(panel.prediction["probs"])[1], original)
    assert len(panel.random_neurons) == 4
    # from Python
    wire.sent.clear()
    panel.reset()
    assert panel.state == dict.fromkeys(NEURONS, 1.0) and panel.random_k == 0 and panel.random_neurons == []
    assert panel.request_id == 2 == panel.prediction["request_id"]
    probs = probs_of(panel.prediction["probs"])
    assert probs.shape[0] == 2
    np.testing.assert_array_equal(probs[0], original)
    np.testing.assert_array_equal(probs[1], original)
    assert panel.effects["current"] == {
        **panel.effects["current"],
        "kl": 0.0,
        "delta_prob": 0.0,
        "flipped": False,
    }
    # one message carries the new state and its answer
    updates = [d["state"] for d, _ in wire.sent if d["method"] == "update"]
    assert len(updates) == 1 and {"scales", "random_k", "request_id", "prediction"} <= set(updates[0])
    # from the browser (its reset button sends all ones)
    wire.request(3, [0.0] * 10)
    wire.request(4, np.ones(10))
    np.testing.assert_array_equal(probs_of(panel.prediction["probs"])[1], original)


def test_python_side_changes_take_the_next_id(sentiment: Any) -> None:
    panel = AblationPanel(sentiment, TEXT, NEURONS, scales={"layer.4.mlp:5": 0.0})
    assert panel.state["layer.4.mlp:5"] == 0.0 and panel.request_id == 0
    check_answer(panel, sentiment, panel.state)
    wire = Wire(panel)
    wire.request(7, np.ones(10))
    panel.set_scales({"layer.3.mlp:17": 0.25, "layer.5.resid:3": 2})
    assert panel.request_id == 8 == panel.prediction["request_id"]
    expected = {**dict.fromkeys(NEURONS, 1.0), "layer.3.mlp:17": 0.25, "layer.5.resid:3": 2.0}
    assert panel.state == expected
    check_answer(panel, sentiment, expected)
    wire.request(8, np.zeros(10))  # the browser had not seen id 8 yet: its request is stale
    assert panel.state == expected and panel.request_id == 8
    panel.switch_off_top(3)
    assert list(panel.state.values()) == [0.0] * 3 + [1.0] * 7
    assert panel.random_k == 3 and panel.prediction["series"] == ["original", "current", "random"]
    assert panel.intervention == Intervention.scale(panel.state)


def test_random_comparison_draws_from_the_same_sites_seeded(sentiment: Any) -> None:
    panel = AblationPanel(sentiment, TEXT, NEURONS)
    wire = Wire(panel)
    wire.request(1, [0.0] * 5 + [1.0] * 5, random_k=5, seed=3)
    drawn = panel.random_neurons
    assert panel.prediction["series"] == ["original", "current", "random"]
    sites = sorted(n.rsplit(":", 1)[0] for n in drawn)
    assert sites == sorted(n.rsplit(":", 1)[0] for n in NEURONS[:5])
    assert not set(drawn) & set(NEURONS) and len(set(drawn)) == 5
    assert drawn == list(panel.random_draw(5, 3))  # seeded: the same draw again
    effect = measure_effect(sentiment, TEXT, Intervention.zero(drawn))
    rnd = panel.effects["random"]
    assert rnd["kl"] == pytest.approx(float(effect.kl[0]), rel=1e-9, abs=1e-12)
    assert rnd["delta_prob"] == pytest.approx(float(effect.delta_prob[0]), rel=1e-9, abs=1e-12)
    with ablate(sentiment, drawn):
        reference = sentiment.predict(TEXT)
    shown = dict(zip(panel.prediction["labels"], probs_of(panel.prediction["probs"])[2].tolist()))
    for label, p in zip(reference.labels, reference.probs.tolist()):
        assert shown[label] == pytest.approx(p, abs=2e-6)
    wire.request(2, [0.0] * 5 + [1.0] * 5, random_k=5, seed=4)  # re-draw
    assert panel.random_neurons != drawn


def test_add_neurons_keeps_the_state_and_answers_in_one_message(sentiment: Any) -> None:
    panel = AblationPanel(sentiment, TEXT, NEURONS[:3], scales={NEURONS[0]: 0.0}, random_k=2, seed=1)
    drawn_before = panel.random_neurons
    wire = Wire(panel)
    rid = panel.request_id
    added = panel.add_neurons([NEURONS[1], NEURONS[3], "layer.5.mlp:7"], scale=0.5)
    assert added == [NEURONS[3], "layer.5.mlp:7"]  # a neuron already in the panel is skipped
    assert panel.neurons == [*NEURONS[:3], NEURONS[3], "layer.5.mlp:7"]
    state = {NEURONS[0]: 0.0, NEURONS[1]: 1.0, NEURONS[2]: 1.0, NEURONS[3]: 0.5, "layer.5.mlp:7": 0.5}
    assert panel.state == state
    np.testing.assert_array_equal(probs_of(panel.scales), np.array(list(state.values()), dtype=np.float32))
    assert panel.request_id == panel.prediction["request_id"] == rid + 1
    check_answer(panel, sentiment, state)
    # the random draw is redone without the panel's neurons, as a new panel with the same state draws it
    fresh = AblationPanel(sentiment, TEXT, list(state), scales=state, random_k=2, seed=1)
    assert panel.random_neurons == fresh.random_neurons and not set(panel.random_neurons) & set(state)
    assert len(drawn_before) == 2
    # one update message carries the neurons with their scales and the answer to them
    updates = [d["state"] for d, _ in wire.sent if d["method"] == "update"]
    assert len(updates) == 1 and {"neurons", "scales", "request_id", "prediction"} <= set(updates[0])
    seen = wire.browser_model()
    assert seen["neurons"] == panel.neurons and seen["prediction"]["request_id"] == rid + 1
    # the next browser request has one factor per neuron, the new ones included
    wire.request(rid + 2, [1, 1, 1, 0, 0], random_k=2, seed=1)
    check_answer(panel, sentiment, dict(zip(panel.neurons, [1.0, 1.0, 1.0, 0.0, 0.0])))
    assert panel.add_neurons(NEURONS[0]) == []  # nothing new: nothing changes
    assert panel.request_id == rid + 2


def test_add_neurons_refuses_bad_neurons(sentiment: Any) -> None:
    panel = AblationPanel(sentiment, TEXT, NEURONS[:2])
    before = (list(panel.neurons), panel.state, panel.request_id)
    with pytest.raises(ValueError, match="out of range"):
        panel.add_neurons(["layer.3.mlp:99999"])
    with pytest.raises(ValueError, match="factor of layer.5.mlp:7 is 3"):
        panel.add_neurons(["layer.5.mlp:7"], scale=3.0)
    with pytest.raises(ValueError, match="limit of 100 sliders"):
        panel.add_neurons([f"layer.5.mlp:{i}" for i in range(200, 299)])
    with pytest.raises(TypeError, match="must be an address"):
        panel.add_neurons([7])
    assert (list(panel.neurons), panel.state, panel.request_id) == before
    check_answer(panel, sentiment, before[1])


def test_ranking_objects_give_their_top_neurons(sentiment: Any) -> None:
    scores = np.linspace(1.0, 0.0, 30)
    ranking = NeuronRanking.from_scores([f"layer.2.mlp:{i}" for i in range(30)], scores, "test")
    panel = AblationPanel(sentiment, TEXT, ranking)
    assert panel.neurons == [f"layer.2.mlp:{i}" for i in range(20)]
    panel = AblationPanel(sentiment, TEXT, ranking, n_neurons=5)
    assert panel.neurons == [f"layer.2.mlp:{i}" for i in range(5)]

    class Duck:  # anything with .neurons
        neurons = ("layer.1.resid:3", "layer.0.mlp:9")

    assert AblationPanel(sentiment, TEXT, Duck()).neurons == ["layer.1.resid:3", "layer.0.mlp:9"]


def test_next_token_bars_for_a_causal_lm(smollm2: Any) -> None:
    prompt = "The capital of France is"
    neurons = [f"layer.29.mlp:{i}" for i in (3, 77, 410)] + ["layer.28.resid:12", "layer.29.resid:5"]
    panel = AblationPanel(smollm2, prompt, neurons, top_k=5)
    assert panel.prediction["labels"][0] == " Paris"
    wire = Wire(panel)
    scales = np.array([0, 2, 0.5, 0, 1.5], dtype=np.float32)
    wire.request(1, scales)
    check_answer(panel, smollm2, {n: float(v) for n, v in zip(neurons, scales)}, top_k=5)
    assert 5 <= len(panel.prediction["labels"]) <= 10  # the union of both top-5s


def test_probe_tags_follow_the_intervention(sentiment: Any) -> None:
    features = ("layer.4.mlp:5", "layer.4.mlp:1200", "layer.4.mlp:77")
    rng = np.random.default_rng(0)
    words = extract_activations(sentiment, [TEXT], layers=[4], components="mlp", granularity="word")
    x = np.stack([words.neuron(f) for f in features], 1)
    probe = Probe(
        task="classification",
        features=features,
        classes=("A", "B", XSS),
        mean=x.mean(0).astype(np.float32),
        scale=(x.std(0) + 1e-3).astype(np.float32),
        weight=rng.normal(0, 3, (3, 3)).astype(np.float32),
        bias=np.zeros(3, dtype=np.float32),
    )
    panel = AblationPanel(sentiment, TEXT, [*features[:2], "layer.5.mlp:7"], probe=probe)
    tags = panel.prediction["tags"]
    assert tags["words"] == words.units(0) and tags["classes"] == ["A", "B", XSS]
    expected = probe.predict_proba(x).argmax(1)
    assert tags["original"] == tags["current"] == expected.tolist()
    wire = Wire(panel)
    wire.request(1, [0.0, 2.0, 0.0])
    # independent: the probe reads the edited neurons themselves, so its inputs are the clean word
    # activations with those columns scaled (layer.5 comes after layer.4: it changes nothing here)
    edited = x.copy()
    edited[:, 0] *= 0.0
    edited[:, 1] *= 2.0
    tags = panel.prediction["tags"]
    assert tags["current"] == probe.predict_proba(edited).argmax(1).tolist()
    assert tags["original"] == expected.tolist()
    assert tags["current"] != tags["original"]
    p = probs_of(tags["probs"])
    np.testing.assert_allclose(p[1], probe.predict_proba(edited).max(1), rtol=1e-5)


def test_to_html_is_standalone_with_controls_disabled(tmp_path: Path, sentiment: Any) -> None:
    panel = AblationPanel(sentiment, f"Look {XSS} </script> here", NEURONS)
    panel.switch_off_top(2)
    html = panel.to_html(tmp_path / "panel.html").read_text(encoding="utf-8")
    esm = re.search(r'import\("data:text/javascript;base64,([A-Za-z0-9+/=]+)"\)', html)
    state = re.search(r'<script type="application/json" id="nw-state">(.*?)</script>', html, re.S)
    assert esm and state
    assert base64.b64decode(esm.group(1)).decode() == (_assets.STATIC / "ablation_panel.js").read_text()
    assert "<img" not in html and html.count("</script>") == 2
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html)
    data = json.loads(state.group(1))
    assert data["state"]["text"] == f"Look {XSS} </script> here"
    assert "run the notebook" in data["state"]["export_note"]
    bufs = {tuple(p): base64.b64decode(b) for p, b in zip(data["buffer_paths"], data["buffers"])}
    np.testing.assert_array_equal(
        np.frombuffer(bufs[("scales", "view")], dtype="<f4"), probs_of(panel.scales)
    )
    assert bufs[("prediction", "probs", "view")] == probs_of(panel.prediction["probs"]).tobytes()


def test_top_level_import_is_lazy_and_exports_the_panel() -> None:
    import neuronwidgets

    assert neuronwidgets.AblationPanel is AblationPanel
    assert "AblationPanel" in neuronwidgets.__all__
