"""TokenHeatmap widget model (no browser): state set as the browser sets it, answers checked against the
core's Activations, binary buffers, errors, static HTML export and figure."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ipywidgets.widgets.widget import _remove_buffers

from neuronwidgets.core import Activations, Corpus, extract_activations, load_model
from neuronwidgets.widgets import TokenHeatmap, _assets
from neuronwidgets.widgets import token_heatmap as th_module

XSS = "<img src=x onerror=alert(1)>"
TEXTS = [
    "The movie was unbelievably good.",
    "I did not enjoy the acting at all.",
    "Tokenization splits rare words.",
    "A quiet, thoughtful film.",
    "Nothing happens for two hours.",
    "The soundtrack is wonderful.",
    "Critics loved it; audiences did not.",
    "An overlong, uneven sequel.",
    "Brilliant performances throughout.",
    "It was fine.",
    "The eleventh sentence is not shown by default.",
    "Twelve.",
]


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm() -> Any:
    return load_model("minilm")


@pytest.fixture(scope="module")
def word_acts(minilm: Any) -> Activations:
    return extract_activations(minilm, TEXTS, layers=[0, 2], components="all", granularity="word")


@pytest.fixture(scope="module")
def token_acts(minilm: Any) -> Activations:
    return extract_activations(minilm, TEXTS, layers=[0, 2], components="all", granularity="token")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> Path:
    """A 2-layer random BERT saved as a local model folder (MiniLM's fast tokenizer)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=minilm.tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=64,
    )
    folder = tmp_path_factory.mktemp("tiny_bert")
    BertModel(config).save_pretrained(folder)
    minilm.tokenizer.save_pretrained(folder)
    return folder


class Wire:
    """The widget's comm as the browser sees it: records what Python sends, delivers browser updates."""

    def __init__(self, widget: TokenHeatmap):
        self.widget = widget
        self.sent: list[tuple[dict[str, Any], list[Any]]] = []
        widget.comm.send = self._record  # type: ignore[method-assign]
        widget.comm.kernel = object()  # a connected kernel, so ipywidgets sends updates

    def _record(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        self.sent.append((data, list(buffers or [])))

    def browser_sets(self, **state: Any) -> None:
        self.sent.clear()
        msg = {"content": {"data": {"method": "update", "state": state, "buffer_paths": []}}, "buffers": []}
        self.widget._handle_msg(msg)

    def updates(self) -> list[tuple[dict[str, Any], list[list[Any]], list[Any]]]:
        """(state, buffer_paths, buffers) of every 'update' message sent since the last browser message."""
        return [(d["state"], d["buffer_paths"], b) for d, b in self.sent if d["method"] == "update"]

    def received(self) -> dict[str, Any]:
        """What the browser's model holds from the updates: buffers decoded to float32 arrays."""
        out: dict[str, Any] = {}
        for state, paths, buffers in self.updates():
            state = json.loads(json.dumps(state))  # must be plain JSON apart from the buffers
            for path, buf in zip(paths, buffers):
                assert path[-1] == "view"
                obj = state
                for key in path[:-1]:
                    obj = obj[key]
                obj["array"] = np.frombuffer(bytes(buf), dtype="<f4").reshape(obj["shape"])
            out.update(state)
        return out


def shown(widget: TokenHeatmap) -> np.ndarray:
    """Decode the values buffer independently of the widget's helpers."""
    v = widget.values
    assert v["dtype"] == "float32"
    return np.frombuffer(bytes(v["view"]), dtype="<f4").reshape(v["shape"])


# -- values follow the neuron the browser chooses ----------------------------------------------------
def test_defaults_show_first_ten_sentences_and_first_neuron(word_acts: Activations) -> None:
    w = TokenHeatmap(word_acts)
    assert w.sentences == list(range(10))
    assert w.neuron == "layer.0.mlp:0" == w.label
    assert w.sites == ["layer.0.mlp", "layer.0.resid", "layer.2.mlp", "layer.2.resid"]
    assert w.widths == {"layer.0.mlp": 1536, "layer.0.resid": 384, "layer.2.mlp": 1536, "layer.2.resid": 384}
    assert w.granularities == ["word"] and w.granularity == "word"
    assert w.tokens == [word_acts.units(i) for i in range(10)]
    np.testing.assert_array_equal(shown(w), word_acts.neuron("layer.0.mlp:0", list(range(10))))


def test_browser_neuron_change_recomputes_values(word_acts: Activations) -> None:
    w = TokenHeatmap(word_acts, sentences=[1, 4, 10])
    wire = Wire(w)
    wire.browser_sets(neuron="layer.2.resid:7")
    expected = word_acts.neuron("layer.2.resid:7", [1, 4, 10])
    np.testing.assert_array_equal(shown(w), expected)
    assert w.label == "layer.2.resid:7" and w.error == ""
    # what travelled back to the browser: the values as one binary buffer, with the label, in one message
    answers = [u for u in wire.updates() if "values" in u[0]]
    assert len(answers) == 1
    state, paths, buffers = answers[0]
    assert paths == [["values", "view"]] and "view" not in state["values"]
    assert state["label"] == "layer.2.resid:7"
    assert bytes(buffers[0]) == expected.astype("<f4").tobytes()
    assert "tokens" not in state  # same sentences and granularity: only values change


def test_browser_changes_follow_each_other(word_acts: Activations) -> None:
    w = TokenHeatmap(word_acts, sentences=[0, 2])
    wire = Wire(w)
    for neuron in ["layer.0.resid:5", "layer.2.mlp:1535", "layer.0.resid:383", "layer.2.mlp:0"]:
        wire.browser_sets(neuron=neuron)
        got = wire.received()
        np.testing.assert_array_equal(got["values"]["array"], word_acts.neuron(neuron, [0, 2]))
        assert got["label"] == neuron


@pytest.mark.parametrize(
    ("neuron", "message"),
    [
        (
            "layer.2.resid:384",
            r"neuron index 384 is out of range for layer\.2\.resid: valid indices are 0 … 383",
        ),
        ("layer.1.resid:0", r"site 'layer\.1\.resid' was not extracted"),
        ("layer.2.resid:-1", r"cannot parse neuron address"),
        ("layer.2.attn:3", r"unknown component 'attn'"),
    ],
)
def test_bad_neuron_from_browser_sets_error_and_keeps_last_good(
    word_acts: Activations, neuron: str, message: str
) -> None:
    w = TokenHeatmap(word_acts, neuron="layer.2.resid:7", sentences=[0, 1])
    before = shown(w).copy()
    wire = Wire(w)
    wire.browser_sets(neuron=neuron)
    assert re.search(message, w.error), w.error
    assert w.neuron == "layer.2.resid:7" and w.label == "layer.2.resid:7"
    np.testing.assert_array_equal(shown(w), before)
    got = wire.received()
    assert re.search(message, got["error"])
    assert got["neuron"] == "layer.2.resid:7"  # the browser's controls are put back
    # a good choice afterwards clears the error
    wire.browser_sets(neuron="layer.2.resid:8")
    assert w.error == "" and wire.received()["error"] == ""
    np.testing.assert_array_equal(shown(w), word_acts.neuron("layer.2.resid:8", [0, 1]))


def test_bad_neuron_from_python_raises(word_acts: Activations) -> None:
    w = TokenHeatmap(word_acts, neuron="layer.2.resid:7")
    with pytest.raises(ValueError, match=r"out of range for layer\.2\.resid: valid indices are 0 … 383"):
        w.neuron = "layer.2.resid:999"
    with pytest.raises(ValueError, match="was not extracted"):
        w.neuron = "layer.5.mlp:1"
    with pytest.raises(ValueError, match="cannot parse"):
        TokenHeatmap(word_acts, neuron="seven")
    assert w.neuron == "layer.2.resid:7" and w.error == ""
    w.neuron = "layer.0.mlp:3"  # a good one from Python works like the browser's
    np.testing.assert_array_equal(shown(w), word_acts.neuron("layer.0.mlp:3", list(range(10))))


def test_word_subword_toggle(word_acts: Activations, token_acts: Activations) -> None:
    w = TokenHeatmap([word_acts, token_acts], neuron="layer.2.mlp:11", sentences=[0, 2])
    assert w.granularities == ["word", "token"] and w.granularity == "word"
    assert w.word_ids == []
    wire = Wire(w)
    wire.browser_sets(granularity="token")
    assert w.tokens == [token_acts.units(0), token_acts.units(2)]
    assert len(w.tokens[0]) > len(word_acts.units(0))  # "unbelievably" is several subword tokens
    assert w.word_ids == [token_acts.word_ids(0).tolist(), token_acts.word_ids(2).tolist()]
    np.testing.assert_array_equal(shown(w), token_acts.neuron("layer.2.mlp:11", [0, 2]))
    got = wire.received()
    assert got["tokens"] == w.tokens
    np.testing.assert_array_equal(got["values"]["array"], token_acts.neuron("layer.2.mlp:11", [0, 2]))
    wire.browser_sets(granularity="sentence")
    assert "granularity 'sentence' is not available" in w.error and w.granularity == "token"
    wire.browser_sets(granularity="word")
    assert w.tokens == [word_acts.units(0), word_acts.units(2)] and w.error == ""
    np.testing.assert_array_equal(shown(w), word_acts.neuron("layer.2.mlp:11", [0, 2]))


def test_single_granularity_refuses_the_other(token_acts: Activations) -> None:
    w = TokenHeatmap(token_acts)
    assert w.granularities == ["token"] and w.granularity == "token"
    with pytest.raises(ValueError, match="token-level activations"):
        w.granularity = "word"
    Wire(w).browser_sets(granularity="word")
    assert "not available" in w.error and w.granularity == "token"


def test_sentences_trait(word_acts: Activations) -> None:
    w = TokenHeatmap(word_acts, neuron="layer.0.resid:2", sentences=[11, 3])
    assert w.tokens == [word_acts.units(11), word_acts.units(3)]
    np.testing.assert_array_equal(shown(w), word_acts.neuron("layer.0.resid:2", [11, 3]))
    w.sentences = [5]
    np.testing.assert_array_equal(shown(w), word_acts.neuron("layer.0.resid:2", [5]))
    with pytest.raises(ValueError, match=r"sentence 12 is out of range: there are 12 sentences"):
        w.sentences = [12]
    with pytest.raises(ValueError, match="at least one"):
        TokenHeatmap(word_acts, sentences=[])


def test_composes_with_traitlets_link(word_acts: Activations, token_acts: Activations) -> None:
    import traitlets

    words, tokens = TokenHeatmap(word_acts, sentences=[0]), TokenHeatmap(token_acts, sentences=[0])
    traitlets.link((words, "neuron"), (tokens, "neuron"))
    Wire(words).browser_sets(neuron="layer.2.mlp:99")
    assert tokens.neuron == "layer.2.mlp:99" == tokens.label
    np.testing.assert_array_equal(shown(tokens), token_acts.neuron("layer.2.mlp:99", [0]))


def test_values_travel_as_binary_buffers(word_acts: Activations) -> None:
    w = TokenHeatmap(word_acts, neuron="layer.2.resid:3")
    state, paths, buffers = _remove_buffers(w.get_state())
    assert ["values", "view"] in paths
    assert set(state["values"]) == {"dtype", "shape"}
    assert isinstance(w.values["view"], memoryview)
    n = sum(len(t) for t in w.tokens)
    assert state["values"]["shape"] == [n]
    assert len(bytes(buffers[paths.index(["values", "view"])])) == 4 * n
    json.dumps(state)  # everything else is plain JSON


def test_mismatched_activations_are_refused(word_acts: Activations, minilm: Any) -> None:
    other = extract_activations(minilm, TEXTS[:3], layers=[0, 2], components="all", granularity="token")
    with pytest.raises(ValueError, match="same model, texts and sites"):
        TokenHeatmap([word_acts, other])
    with pytest.raises(ValueError, match="two word-level"):
        TokenHeatmap([word_acts, word_acts])
    with pytest.raises(TypeError, match="from_scores"):
        TokenHeatmap([[0.1, 0.2]])  # type: ignore[list-item]


# -- constructors ------------------------------------------------------------------------------------
def test_from_model_with_tiny_random_bert(tiny_bert: Path) -> None:
    handle = load_model(str(tiny_bert))
    texts = ["a tiny random model", "unbelievably small"]
    w = TokenHeatmap.from_model(handle, texts, neuron="layer.1.mlp:3")
    assert w.granularities == ["word", "token"]
    assert w.sites == ["embed.resid", "layer.0.mlp", "layer.0.resid", "layer.1.mlp", "layer.1.resid"]
    ref_word = extract_activations(handle, texts, None, "all", granularity="word")
    ref_token = extract_activations(handle, texts, None, "all", granularity="token")
    np.testing.assert_allclose(shown(w), ref_word.neuron("layer.1.mlp:3"), rtol=1e-6, atol=1e-6)
    w.granularity = "token"
    np.testing.assert_allclose(shown(w), ref_token.neuron("layer.1.mlp:3"), rtol=1e-6, atol=1e-6)
    Wire(w).browser_sets(neuron="layer.0.resid:15")
    np.testing.assert_allclose(shown(w), ref_token.neuron("layer.0.resid:15"), rtol=1e-6, atol=1e-6)


def test_from_model_minilm_name(minilm: Any) -> None:
    w = TokenHeatmap.from_model(minilm, TEXTS[:2], neuron="layer.3.resid:42", layers=[3], components="resid")
    assert w.sites == ["layer.3.resid"] and w.label == "layer.3.resid:42"
    ref = extract_activations(minilm, TEXTS[:2], [3], "resid")
    np.testing.assert_allclose(shown(w), ref.neuron("layer.3.resid:42"), rtol=1e-6, atol=1e-6)


def test_from_scores() -> None:
    tokens = [["Great", XSS, "film"], ["bad"]]
    scores = [np.array([0.5, -1.25, 2.0]), torch.tensor([-0.1], requires_grad=True)]
    w = TokenHeatmap.from_scores(tokens, scores, label="integrated gradients")
    assert w.tokens == tokens and w.sentences == [0, 1] and w.sites == [] and w.neuron == ""
    assert w.label == "integrated gradients"
    np.testing.assert_array_equal(shown(w), np.array([0.5, -1.25, 2.0, -0.1], dtype=np.float32))
    with pytest.raises(ValueError, match="scores"):
        w.neuron = "layer.0.resid:1"
    one = TokenHeatmap.from_scores(["a", "b"], [1, 2])
    assert one.tokens == [["a", "b"]]
    with pytest.raises(ValueError, match="2 tokens but scores of shape"):
        TokenHeatmap.from_scores([["a", "b"]], [[1.0]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        TokenHeatmap.from_scores([["a"]], [[float("nan")]])
    with pytest.raises(ValueError, match="2 token lists but 1 score arrays"):
        TokenHeatmap.from_scores([["a"], ["b"]], [[1.0]])


# -- marked tokens ---------------------------------------------------------------------------------
def test_marked_follows_sentences_and_views(word_acts: Activations, token_acts: Activations) -> None:
    w = TokenHeatmap(
        [word_acts, token_acts], neuron="layer.2.mlp:11", sentences=[0, 2], marked=[[0, 3], [1, 0]]
    )
    assert w.marked == [[0, 3], [1, 0]]
    wire = Wire(w)
    # a neuron change keeps the marks
    wire.browser_sets(neuron="layer.2.mlp:12")
    assert w.marked == [[0, 3], [1, 0]] and "marked" not in wire.received()
    # "unbelievably" (word 3 of sentence 0) is several subword tokens: all of them are marked
    wire.browser_sets(granularity="token")
    wid0, wid2 = token_acts.word_ids(0), token_acts.word_ids(2)
    expected = [[0, int(i)] for i in np.flatnonzero(wid0 == 3)] + [
        [1, int(i)] for i in np.flatnonzero(wid2 == 0)
    ]
    assert len(expected) > 2 and w.marked == expected
    assert wire.received()["marked"] == expected  # sent with the new tokens, in the same message
    assert len(wire.updates()) == 1
    # back to words: each marked token marks its word, once
    wire.browser_sets(granularity="word")
    assert w.marked == [[0, 3], [1, 0]]
    # sentences change: marks follow their sentence to its new row; marks of hidden sentences go
    w.sentences = [2, 5]
    assert w.marked == [[0, 0]]
    w.sentences = [7]
    assert w.marked == []


def test_marked_validation(word_acts: Activations) -> None:
    w = TokenHeatmap(word_acts, sentences=[0, 11])
    n0 = len(word_acts.units(0))
    w.marked = [[1, 0], [0, n0 - 1]]
    assert w.marked == [[1, 0], [0, n0 - 1]]
    bad = [
        ([[2, 0]], r"row 2 is out of range: 2 sentences are shown \(rows 0 … 1; a row is a position"),
        ([[0, n0]], rf"token {n0} is out of range for row 0, which has {n0} units"),
        ([[0, 1], [0, 1]], r"\[0, 1\] is listed twice"),
        ([[0]], r"not a \[row, index\] pair"),
        ([[0, 1.5]], r"two integers"),
    ]
    for value, message in bad:
        with pytest.raises(ValueError, match=message):
            w.marked = value
    with pytest.raises(ValueError, match="row 5 is out of range"):
        TokenHeatmap(word_acts, sentences=[0], marked=[[5, 0]])
    assert w.marked == [[1, 0], [0, n0 - 1]]
    wire = Wire(w)
    wire.browser_sets(marked=[[0, 99]])  # the browser gets error, the last good marks stay
    assert "token 99 is out of range" in w.error
    assert w.marked == [[1, 0], [0, n0 - 1]] and wire.received()["marked"] == w.marked
    wire.browser_sets(marked=[[0, 0]])
    assert w.marked == [[0, 0]]


def test_from_scores_marked_and_set_scores() -> None:
    w = TokenHeatmap.from_scores([["a", "b"], ["c", "d", XSS]], [[1, 2], [3, 4, 5]], marked=[[1, 2]])
    assert w.marked == [[1, 2]]
    w.sentences = [1]
    assert w.marked == [[0, 2]] and w.tokens == [["c", "d", XSS]]
    with pytest.raises(ValueError, match="token 2 is out of range for row 0, which has 2 units"):
        TokenHeatmap.from_scores([["a", "b"]], [[1, 2]], marked=[[0, 2]])
    wire = Wire(w)
    w.set_scores([["x"], ["y", "z"]], [np.array([0.5]), [-1.0, 2.0]], label="top contexts", marked=[[1, 1]])
    assert w.tokens == [["x"], ["y", "z"]] and w.sentences == [0, 1] and w.label == "top contexts"
    assert w.marked == [[1, 1]] and w.error == ""
    np.testing.assert_array_equal(shown(w), np.array([0.5, -1.0, 2.0], dtype=np.float32))
    got = wire.received()
    assert len(wire.updates()) == 1  # one consistent message: tokens, values, marks together
    assert got["tokens"] == w.tokens and got["marked"] == [[1, 1]] and got["sentences"] == [0, 1]
    np.testing.assert_array_equal(got["values"]["array"], np.array([0.5, -1.0, 2.0], dtype=np.float32))
    with pytest.raises(ValueError, match="row 3 is out of range"):
        w.set_scores([["x"]], [[1.0]], marked=[[3, 0]])
    assert w.tokens == [["x"], ["y", "z"]]  # a refused call changes nothing


def test_set_scores_needs_a_scores_heatmap(word_acts: Activations) -> None:
    with pytest.raises(ValueError, match="set_scores is for heatmaps made with TokenHeatmap.from_scores"):
        TokenHeatmap(word_acts).set_scores([["a"]], [[1.0]])


# -- static export --------------------------------------------------------------------------------
def _page_parts(html: str) -> tuple[str, dict[str, Any]]:
    esm = re.search(r'import\("data:text/javascript;base64,([A-Za-z0-9+/=]+)"\)', html)
    state = re.search(r'<script type="application/json" id="nw-state">(.*?)</script>', html, re.S)
    assert esm and state
    return base64.b64decode(esm.group(1)).decode("utf-8"), json.loads(state.group(1))


def test_to_html_is_standalone_and_escapes_tokens(tmp_path: Path, minilm: Any) -> None:
    corpus = Corpus.from_words([["Look", XSS, "</script>", "here"], ["plain", "words"]])
    acts = extract_activations(minilm, corpus, layers=[1], components="resid")
    w = TokenHeatmap(acts, neuron="layer.1.resid:9")
    out = w.to_html(tmp_path / "heatmap.html")
    html = out.read_text(encoding="utf-8")
    esm, data = _page_parts(html)
    assert esm == (_assets.STATIC / "token_heatmap.js").read_text(encoding="utf-8")
    assert (_assets.STATIC / "token_heatmap.css").read_text(encoding="utf-8")[:200] in html
    assert "<img" not in html and html.count("</script>") == 2  # tokens only inside escaped JSON
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in html
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html)  # nothing fetched from the network
    state = data["state"]
    assert state["tokens"][0] == ["Look", XSS, "</script>", "here"]
    assert state["export_fixed"] is False and "layer.1.resid" in state["export_note"]
    # the embedded data: every neuron of the site for the shown sentences, identical to the core's
    bufs = {tuple(p): base64.b64decode(b) for p, b in zip(data["buffer_paths"], data["buffers"])}
    values = np.frombuffer(bufs[("values", "view")], dtype="<f4")
    np.testing.assert_array_equal(values, acts.neuron("layer.1.resid:9"))
    unit = state["_offline"]["units"]["word"]
    matrix = np.frombuffer(bufs[("_offline", "units", "word", "matrix", "view")], dtype="<f4")
    np.testing.assert_array_equal(matrix.reshape(unit["matrix"]["shape"]), acts.layer("layer.1.resid"))
    assert unit["columns"] == list(range(384))


def test_to_html_large_site_disables_controls(
    tmp_path: Path, word_acts: Activations, monkeypatch: Any
) -> None:
    monkeypatch.setattr(th_module, "EXPORT_EMBED_LIMIT", 1000)
    w = TokenHeatmap(word_acts, neuron="layer.2.mlp:17", sentences=[0, 1])
    _, data = _page_parts(w.to_html(tmp_path / "big.html").read_text(encoding="utf-8"))
    state = data["state"]
    assert state["export_fixed"] is True and "run the notebook" in state["export_note"]
    unit = state["_offline"]["units"]["word"]
    assert unit["columns"] == [17] and unit["matrix"]["shape"] == [
        len(word_acts.neuron("layer.2.mlp:17", [0, 1])),
        1,
    ]


def test_from_scores_export_has_no_controls(tmp_path: Path) -> None:
    w = TokenHeatmap.from_scores([[XSS, "ok"]], [[1.0, -1.0]], label="saliency")
    html = w.to_html(tmp_path / "s.html").read_text(encoding="utf-8")
    _, data = _page_parts(html)
    assert "_offline" not in data["state"] and data["state"]["sites"] == []
    assert "<img" not in html


# -- figure, packaging --------------------------------------------------------------------------------
def test_plot_uses_the_same_palette(word_acts: Activations) -> None:
    from matplotlib.axes import Axes
    from matplotlib.colors import to_hex
    from matplotlib.patches import Rectangle

    w = TokenHeatmap(word_acts, neuron="layer.2.resid:7", sentences=[0, 1])
    ax = w.plot()
    assert isinstance(ax, Axes) and ax._repr_png_().startswith(b"\x89PNG")
    patches = [p for p in ax.patches if isinstance(p, Rectangle)]
    values = shown(w)
    assert len(patches) == len(values)
    assert to_hex(patches[int(np.argmax(np.abs(values)))].get_facecolor()) in {"#5e3c99", "#e66101"}
    texts = [t.get_text() for t in ax.texts]
    assert all(tok in texts for sent in w.tokens for tok in sent)


def test_missing_bundle_says_how_to_build(word_acts: Activations, monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setattr(_assets, "STATIC", tmp_path)
    with pytest.raises(_assets.BundleMissingError, match=r"cd js && npm ci && npm run build"):
        TokenHeatmap(word_acts)


def test_core_import_stays_headless() -> None:
    code = (
        "import sys, neuronwidgets.core, neuronwidgets; "
        "bad = [m for m in ('ipywidgets', 'anywidget', 'traitlets', 'IPython') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
