"""TokenHeatmap: the tokens of several sentences coloured by one neuron's activation (Karpathy et al. 2015)
or by any per-token score (saliency, attributions), on a symmetric diverging scale.

The browser chooses the neuron (site + index) and the word/subword view through synced traits; Python
checks the choice and answers with the values (a float32 binary buffer), or with ``error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import traitlets

from ..core import Activations, ModelHandle, NeuronAddress, extract_activations, load_model, parse_neuron
from ..core.display import new_axes
from ._assets import BrowserStateGuard, bundle_file, decode_array, encode_array, require_bundle
from ._export import write_standalone_html
from ._palette import diverging_cmap, text_colour

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DEFAULT_SENTENCES = 10
#: A static export embeds every neuron of the current site when they take at most this many bytes.
EXPORT_EMBED_LIMIT = 4 * 1024 * 1024
_GRANULARITIES = ("word", "token")
_SYNCED = (
    "tokens",
    "word_ids",
    "sentences",
    "values",
    "label",
    "neuron",
    "sites",
    "widths",
    "granularity",
    "granularities",
    "marked",
    "error",
)


@dataclass(frozen=True)
class _Scores:
    """Per-token scores for :meth:`TokenHeatmap.from_scores`: ``values[i]`` is float32 ``[len(tokens[i])]``."""

    tokens: list[list[str]]
    values: list[np.ndarray]
    label: str


class TokenHeatmap(BrowserStateGuard, anywidget.AnyWidget):
    """Tokens of several sentences coloured by one neuron's activation, with controls to choose the
    site (layer and component), the neuron index and the word/subword view.

    ``TokenHeatmap(activations, neuron="layer.3.resid:42", sentences=[0, 5])`` shows word- or token-level
    :class:`~neuronwidgets.core.Activations`; pass a word-level and a token-level set of the same texts
    (as :meth:`from_model` does) to toggle between words and subword tokens. By default the first 10
    sentences and neuron 0 of the first site are shown.

    Synced traits: ``neuron`` (``"site:index"``), ``granularity`` (``"word"``/``"token"``) and
    ``sentences`` can be set from Python (a bad value raises ``ValueError``) or by the browser (a bad value
    sets ``error``). ``tokens``, ``word_ids``, ``values`` (float32 buffer), ``label``, ``sites``,
    ``widths`` and ``granularities`` are answers.

    Args:
        activations: Word- or token-level :class:`~neuronwidgets.core.Activations`, or a word-level and
            a token-level set of the same texts (a word/subword toggle); :meth:`from_scores` and
            :meth:`from_model` build the other inputs.
        neuron: The neuron shown, ``"site:index"`` (default neuron 0 of the first site).
        sentences: The sentences shown (default the first 10).
        granularity: ``"word"`` or ``"token"`` (default: the first set's).
        marked: Tokens to outline, as ``[row, index]`` pairs (``row``: position among the shown
            sentences, ``index``: the token's position in it, in the current word/token view), e.g. the
            firing token of a top-activating context. When the shown sentences change, marks on sentences
            still shown follow them and the others are dropped; a word/subword switch maps each mark to
            the same word's units (all subword tokens of a marked word; the word of a marked token).

    Raises:
        ValueError: For an unknown neuron, sentence or granularity, or activation sets of different texts.

    Example:
        >>> acts = extract_activations("minilm", ["A wonderful, moving film!", "Not bad at all."])
        >>> TokenHeatmap(acts, neuron="layer.3.resid:42")
    """

    _esm = bundle_file("token_heatmap")
    _css = bundle_file("token_heatmap", ".css")

    tokens = traitlets.List(traitlets.List(traitlets.Unicode()), help="units of the shown sentences").tag(
        sync=True
    )
    word_ids = traitlets.List(traitlets.List(traitlets.Int()), help="word index of each token").tag(sync=True)
    sentences = traitlets.List(traitlets.Int(), help="indices of the shown sentences").tag(sync=True)
    values = traitlets.Dict(help="{view, dtype, shape}: float32 [n_units], one value per shown unit").tag(
        sync=True
    )
    label = traitlets.Unicode("", help="what the values are, e.g. 'layer.3.resid:42'").tag(sync=True)
    neuron = traitlets.Unicode("", help="the neuron shown, e.g. 'layer.3.resid:42'").tag(sync=True)
    sites = traitlets.List(traitlets.Unicode(), help="sites that can be chosen").tag(sync=True)
    widths = traitlets.Dict(value_trait=traitlets.Int(), help="number of neurons of each site").tag(sync=True)
    granularity = traitlets.Unicode("", help="'word' or 'token' (subwords)").tag(sync=True)
    granularities = traitlets.List(traitlets.Unicode(), help="granularities that can be chosen").tag(
        sync=True
    )
    # elements unchecked by traitlets: _check_marked gives the messages (ValueError, or error for the browser)
    marked: traitlets.List[Any] = traitlets.List(
        help="[row, index] of each token to outline (row: among the shown sentences)"
    ).tag(sync=True)
    error = traitlets.Unicode("", help="why the last choice made in the browser was refused").tag(sync=True)

    def __init__(
        self,
        activations: Activations | Sequence[Activations] | _Scores,
        neuron: str | NeuronAddress | None = None,
        sentences: Sequence[int] | None = None,
        granularity: str | None = None,
        *,
        marked: Sequence[Sequence[int]] | None = None,
    ) -> None:
        require_bundle("token_heatmap")
        self._ready = False
        self._acts: dict[str, Activations] = {}
        self._scores: _Scores | None = None
        if isinstance(activations, _Scores):
            self._scores = activations
            self._num_sentences = len(activations.tokens)
            state: dict[str, Any] = {"neuron": "", "granularity": "", "label": activations.label}
            default = list(range(self._num_sentences))
        else:
            self._acts = _by_granularity(activations)
            first = next(iter(self._acts.values()))
            self._num_sentences = first.num_sentences
            state = {
                "sites": first.sites,
                "widths": first.widths,
                "granularities": list(self._acts),
                "granularity": self._check_granularity(granularity or next(iter(self._acts))),
                "neuron": self._check_neuron(str(neuron) if neuron is not None else f"{first.sites[0]}:0"),
            }
            default = list(range(min(DEFAULT_SENTENCES, self._num_sentences)))
        state["sentences"] = self._check_sentences(
            [int(i) for i in sentences] if sentences is not None else default
        )
        state.update(self._answer(state["neuron"], state["granularity"], state["sentences"]))
        state["marked"] = self._check_marked(list(marked or []), state["tokens"])
        self._good = {k: state[k] for k in ("neuron", "granularity", "sentences", "marked")}
        super().__init__(**state)
        self._ready = True

    # -- constructors --------------------------------------------------------------------------------
    @classmethod
    def from_model(
        cls,
        model: ModelHandle | str,
        texts: Sequence[str] | Any,
        neuron: str | NeuronAddress | None = None,
        layers: Any = None,
        components: Sequence[str] | str | None = "all",
        sentences: Sequence[int] | None = None,
    ) -> TokenHeatmap:
        """Extract word-level (subword mean) and token-level activations of ``texts`` (any input
        :func:`~neuronwidgets.core.extract_activations` takes) and show them, with a word/subword toggle.

        Everything is kept in memory: for a large corpus, extract once to a store and pass the
        :class:`~neuronwidgets.core.Activations`.
        """
        handle = load_model(model) if isinstance(model, str) else model
        word = extract_activations(handle, texts, layers, components, granularity="word", aggregation="mean")
        token = extract_activations(handle, texts, layers, components, granularity="token")
        return cls([word, token], neuron=neuron, sentences=sentences)

    @classmethod
    def from_scores(
        cls,
        tokens: Sequence[Sequence[str]] | Sequence[str],
        scores: Sequence[Any] | Any,
        label: str = "score",
        sentences: Sequence[int] | None = None,
        *,
        marked: Sequence[Sequence[int]] | None = None,
    ) -> TokenHeatmap:
        """Show any per-token scores (e.g. attributions): ``tokens[i]`` are the tokens of sentence ``i`` and
        ``scores[i]`` one number per token (list, NumPy array or tensor). One sentence may be given as a
        plain token list and a 1-D array. All sentences are shown unless ``sentences`` picks some.
        ``marked``: ``[row, index]`` pairs of tokens to outline (``row`` among the shown sentences)."""
        return cls(_make_scores(tokens, scores, label), sentences=sentences, marked=marked)

    def set_scores(
        self,
        tokens: Sequence[Sequence[str]] | Sequence[str],
        scores: Sequence[Any] | Any,
        label: str | None = None,
        *,
        marked: Sequence[Sequence[int]] | None = None,
    ) -> None:
        """Replace the scores of a :meth:`from_scores` heatmap (same checks as there) and show all of its
        sentences, in one update: e.g. another neuron's top contexts in the same view."""
        if self._scores is None:
            raise ValueError(
                "set_scores is for heatmaps made with TokenHeatmap.from_scores; this one shows activations "
                "(set .neuron or .sentences instead)"
            )
        new = _make_scores(tokens, scores, self._scores.label if label is None else label)
        shown = list(range(len(new.tokens)))
        answer = _scores_answer(new, shown)
        marks = self._check_marked([list(m) for m in marked or []], answer["tokens"])
        self._scores, self._num_sentences = new, len(new.tokens)
        with self.hold_sync():
            self._ready = False  # the new state is consistent as a whole: no per-trait recomputation
            try:
                self.sentences = shown
                for key, value in answer.items():
                    self.set_trait(key, value)
                self.label = new.label
                self.marked = marks
                self.error = ""
            finally:
                self._ready = True
        self._good = {"neuron": "", "granularity": "", "sentences": shown, "marked": marks}

    # -- validation: Python callers get ValueError, the browser gets ``error`` ---------------------
    def _check_neuron(self, value: str) -> str:
        if self._scores is not None:
            if value:
                raise ValueError(
                    "this heatmap shows scores (from_scores), not neurons: there is no neuron to set"
                )
            return value
        return next(iter(self._acts.values())).check_neuron(value).name

    def _check_granularity(self, value: str) -> str:
        if self._scores is not None:
            if value:
                raise ValueError("this heatmap shows scores (from_scores): it has no word/token views")
            return value
        if value not in self._acts:
            have = " and ".join(f"{g}-level" for g in self._acts)
            raise ValueError(
                f"granularity {value!r} is not available: this heatmap has {have} activations (choose from "
                f"{', '.join(map(repr, self._acts))}); TokenHeatmap.from_model(...) extracts both word and token ones"
            )
        return value

    def _check_sentences(self, value: list[int]) -> list[int]:
        n = self._num_sentences
        if not value:
            raise ValueError("no sentences chosen: pass at least one sentence index")
        for i in value:
            if not 0 <= i < n:
                raise ValueError(f"sentence {i} is out of range: there are {n} sentences (0 … {n - 1})")
        if len(set(value)) != len(value):
            raise ValueError("a sentence is listed twice in sentences: list each index once")
        return value

    def _check_marked(self, value: list[Any], tokens: list[list[str]]) -> list[list[int]]:
        out: list[list[int]] = []
        seen: set[tuple[int, int]] = set()
        for m in value:
            if isinstance(m, (str, bytes)) or not hasattr(m, "__len__") or len(m) != 2:
                raise ValueError(f"marked: {m!r} is not a [row, index] pair: give [[row, index], ...]")
            if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in m):
                raise ValueError(f"marked: {list(m)!r} must hold two integers, [row, index]")
            row, index = int(m[0]), int(m[1])
            if not 0 <= row < len(tokens):
                raise ValueError(
                    f"marked: row {row} is out of range: {len(tokens)} sentences are shown (rows 0 … "
                    f"{len(tokens) - 1}; a row is a position among the shown sentences, not a sentence index)"
                )
            if not 0 <= index < len(tokens[row]):
                raise ValueError(
                    f"marked: token {index} is out of range for row {row}, which has {len(tokens[row])} "
                    f"units (0 … {len(tokens[row]) - 1})"
                )
            if (row, index) in seen:
                raise ValueError(f"marked: [{row}, {index}] is listed twice: list each token once")
            seen.add((row, index))
            out.append([row, index])
        return out

    def _validated(self, name: str, check: Any, value: Any) -> Any:
        try:
            return check(value)
        except (ValueError, TypeError) as err:
            if not self._from_frontend:
                raise ValueError(str(err)) from None
            self.error = str(err)  # shown in the widget; the trait keeps (and re-sends) the last good value
            return self._good[name]

    @traitlets.validate("neuron")
    def _valid_neuron(self, proposal: Any) -> str:
        return str(self._validated("neuron", self._check_neuron, proposal["value"]))

    @traitlets.validate("granularity")
    def _valid_granularity(self, proposal: Any) -> str:
        return str(self._validated("granularity", self._check_granularity, proposal["value"]))

    @traitlets.validate("sentences")
    def _valid_sentences(self, proposal: Any) -> list[int]:
        return list(self._validated("sentences", self._check_sentences, list(proposal["value"])))

    @traitlets.validate("marked")
    def _valid_marked(self, proposal: Any) -> list[list[int]]:
        check = lambda v: self._check_marked(v, self.tokens)  # noqa: E731
        return list(self._validated("marked", check, list(proposal["value"])))

    # -- answers ------------------------------------------------------------------------------------
    @traitlets.observe("neuron", "granularity", "sentences")
    def _on_choice(self, change: Any) -> None:
        if not self._ready or change["old"] == change["new"]:
            return
        try:
            answer = self._answer(self.neuron, self.granularity, self.sentences)
        except Exception as err:  # e.g. an unreadable store: say so in the widget, never fail silently
            self.error = f"cannot compute the values: {err}"
            if self._from_frontend:
                return
            raise
        old = self._good
        with self.hold_sync():
            for key, value in answer.items():
                self.set_trait(key, value)
            self.marked = self._carry_marks(old)
            self.error = ""
        self._good = {
            "neuron": self.neuron,
            "granularity": self.granularity,
            "sentences": list(self.sentences),
            "marked": [list(m) for m in self.marked],
        }

    @traitlets.observe("marked")
    def _on_marked(self, change: Any) -> None:
        if self._ready:
            self._good["marked"] = [list(m) for m in change["new"]]

    def _carry_marks(self, old: dict[str, Any]) -> list[list[int]]:
        """The marks of the last good state on the new sentences / view: marks on sentences still shown
        follow them; a word/subword switch maps a mark to the units of the same word."""
        rows = {s: r for r, s in enumerate(self.sentences)}
        out: list[list[int]] = []
        for row, index in old["marked"]:
            if row >= len(old["sentences"]) or old["sentences"][row] not in rows:
                continue
            sentence = old["sentences"][row]
            new_row = rows[sentence]
            if old["granularity"] == self.granularity:
                out.append([new_row, index])
            elif self.granularity == "token":  # a word: all its subword tokens
                wid = self._acts["token"].word_ids(sentence)
                out += [[new_row, int(i)] for i in np.flatnonzero(wid == index)]
            else:  # a token: its word (none for special tokens)
                word = int(self._acts["token"].word_ids(sentence)[index])
                if word >= 0:
                    out.append([new_row, word])
        unique: list[list[int]] = []
        for m in out:
            if m not in unique and m[1] < len(self.tokens[m[0]]):
                unique.append(m)
        return unique

    def _answer(self, neuron: str, granularity: str, sentences: list[int]) -> dict[str, Any]:
        """Tokens, word ids, values and label for a choice (already checked)."""
        if self._scores is not None:
            return _scores_answer(self._scores, sentences)
        acts = self._acts[granularity]
        return {
            "tokens": [acts.units(i) for i in sentences],
            "word_ids": [acts.word_ids(i).tolist() for i in sentences] if granularity == "token" else [],
            "values": encode_array(acts.neuron(neuron, sentences)),
            "label": neuron,
        }

    @property
    def shown_values(self) -> np.ndarray:
        """float32 ``[n_units]``: the values shown now (decoded from the ``values`` buffer)."""
        return decode_array(self.values)

    # -- export -------------------------------------------------------------------------------------
    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write a standalone HTML page of this heatmap (bundle, CSS and data inlined; works offline).

        Every neuron of the current site is embedded for the shown sentences when that stays under
        ``EXPORT_EMBED_LIMIT`` bytes, so the neuron index can still be changed in the page; otherwise the
        neuron controls are disabled there, with a note.
        """
        return write_standalone_html(self, path, title or f"TokenHeatmap: {self.label}")

    def _export_state(self) -> dict[str, Any]:
        """The state a static page renders from (also used by ``save_html`` for composed views)."""
        state = self.get_state(list(_SYNCED))
        state.update(self._export_extras())
        return state

    def _export_extras(self) -> dict[str, Any]:
        if self._scores is not None:
            return {}
        addr = parse_neuron(self.neuron)
        site, width = addr.site.name, self.widths[addr.site.name]
        n_units = sum(len(a.units(i)) for a in self._acts.values() for i in self.sentences)
        full = n_units * width * 4 <= EXPORT_EMBED_LIMIT
        units = {}
        for g, acts in self._acts.items():
            matrix = acts.layer(site, self.sentences) if full else acts.neuron(addr, self.sentences)[:, None]
            answer = self._answer(self.neuron, g, self.sentences)
            units[g] = {
                "tokens": answer["tokens"],
                "word_ids": answer["word_ids"],
                "matrix": encode_array(matrix),
                "columns": list(range(width)) if full else [addr.index],
            }
        note = (
            f"Static export: any neuron of {site} can be shown here; other sites need the notebook."
            if full
            else "Static export: run the notebook to explore other neurons."
        )
        return {
            "_offline": {"site": site, "width": width, "units": units},
            "sites": [site],
            "widths": {site: width},
            "export_note": note,
            "export_fixed": not full,
        }

    # -- figure -------------------------------------------------------------------------------------
    def plot(self, *, width: float = 10.0, fontsize: float = 11.0) -> Axes:
        """The shown heatmap drawn with matplotlib (same palette and symmetric scale), for papers: returns
        the Axes of the tokens, on a new headless figure (``.figure``, colour bar included) that shows
        itself as a notebook cell's value, like the results' ``plot()``. ``width`` is in inches; the height
        follows from the text."""
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        from matplotlib.font_manager import FontProperties
        from matplotlib.patches import Rectangle
        from matplotlib.textpath import TextToPath

        values = self.shown_values.astype(np.float64)
        scale = float(np.abs(values).max()) if values.size else 0.0
        norm = Normalize(-scale, scale) if scale > 0 else Normalize(-1.0, 1.0)
        cmap = diverging_cmap()
        prop = FontProperties(size=fontsize)
        measure = TextToPath()
        pad, gap, line = 2.0, 4.0, fontsize * 1.7  # in points
        left, right = fontsize * 2.6, width * 72 - 6
        boxes: list[tuple[float, float, float, str, float]] = []  # x, y, w, token, value
        y, k = 0.0, 0
        labels: list[tuple[float, str]] = []
        for s, toks in enumerate(self.tokens):
            labels.append((y, str(self.sentences[s])))
            wid = self.word_ids[s] if self.word_ids else []
            x = left
            for i, tok in enumerate(toks):
                w = measure.get_text_width_height_descent(tok, prop, ismath=False)[0] + 2 * pad
                joined = bool(wid) and i > 0 and wid[i] >= 0 and wid[i] == wid[i - 1]
                x += 1.0 if joined else (gap if i else 0.0)
                if x + w > right and x > left + 1.0:
                    x, y = left, y + line
                boxes.append((x, y, w, tok, float(values[k])))
                x, k = x + w, k + 1
            y += line * 1.3
        bar_h = 64.0
        ax = new_axes(None, (width, (y + bar_h) / 72))
        fig: Any = ax.figure  # a root Figure (new_axes makes one)
        fig.set_layout_engine("none")  # the token boxes are placed in points: fixed positions
        ax.set_position((0.0, bar_h / (y + bar_h), 1.0, y / (y + bar_h)))
        ax.set_xlim(0, width * 72)
        ax.set_ylim(y, 0)
        ax.axis("off")
        for ly, text in labels:
            ax.text(
                left - 6,
                ly + line / 2,
                text,
                ha="right",
                va="center",
                fontsize=fontsize * 0.7,
                color="#5f6368",
            )
        for x, by, w, tok, v in boxes:
            colour = cmap(norm(v))
            ax.add_patch(Rectangle((x, by + 1), w, line - 4, facecolor=colour, edgecolor="none"))
            ink = text_colour(colour[:3])
            ax.text(
                x + pad, by + line / 2, tok, fontproperties=prop, color=ink, va="center", parse_math=False
            )
        cax = fig.add_axes((0.3, 22 / (y + bar_h), 0.4, 8 / (y + bar_h)))
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, orientation="horizontal")
        if scale > 0:
            bar.set_ticks([-scale, 0.0, scale], labels=[f"{-scale:.3g}", "0", f"{scale:.3g}"])
        else:
            bar.set_ticks([0.0], labels=["0"])
        bar.ax.tick_params(labelsize=fontsize * 0.75)
        cax.set_title(self.label, fontsize=fontsize * 0.8)
        return ax


def _by_granularity(activations: Activations | Sequence[Activations]) -> dict[str, Activations]:
    """Index one or two Activations (word- and token-level of the same texts) by granularity, word first."""
    items = [activations] if isinstance(activations, Activations) else list(activations)
    if not items or not all(isinstance(a, Activations) for a in items):
        raise TypeError(
            "TokenHeatmap needs Activations from extract_activations (or a word-level and a token-level one "
            "of the same texts); for other per-token numbers use TokenHeatmap.from_scores"
        )
    out: dict[str, Activations] = {}
    for a in items:
        if a.granularity in out:
            raise ValueError(
                f"two {a.granularity}-level Activations given: pass at most one word- and one token-level"
            )
        out[a.granularity] = a
    first = items[0]
    for a in items[1:]:
        if (a.sites, a.widths, a.num_sentences, a.model_name) != (
            first.sites,
            first.widths,
            first.num_sentences,
            first.model_name,
        ):
            raise ValueError(
                "the word- and token-level Activations must come from the same model, texts and sites"
            )
    return {g: out[g] for g in _GRANULARITIES if g in out}


def _scores_answer(scores: _Scores, sentences: list[int]) -> dict[str, Any]:
    return {
        "tokens": [scores.tokens[i] for i in sentences],
        "word_ids": [],
        "values": encode_array(np.concatenate([scores.values[i] for i in sentences])),
    }


def _make_scores(tokens: Sequence[Any], scores: Sequence[Any] | Any, label: str) -> _Scores:
    """Check per-token scores: one finite number per token, one array per sentence."""
    if len(tokens) and isinstance(tokens[0], str):  # a single sentence
        tokens, scores = [tokens], [scores]
    if not len(tokens):
        raise ValueError("no sentences: pass a list of token lists and one score array per sentence")
    if len(tokens) != len(scores):
        raise ValueError(
            f"got {len(tokens)} token lists but {len(scores)} score arrays: pass one per sentence"
        )
    toks: list[list[str]] = []
    vals: list[np.ndarray] = []
    for i, (t, s) in enumerate(zip(tokens, scores)):
        if isinstance(t, str) or not all(isinstance(x, str) for x in t):
            raise TypeError(f"tokens[{i}] must be a list of strings")
        if hasattr(s, "detach"):  # a torch tensor, maybe requiring grad
            s = s.detach().cpu().numpy()
        arr = np.asarray(s, dtype=np.float64)
        if arr.ndim != 1 or len(arr) != len(t):
            raise ValueError(
                f"sentence {i} has {len(t)} tokens but scores of shape {arr.shape}: give one score per token"
            )
        v32 = arr.astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(v32))
        if bad.size:
            raise ValueError(f"scores[{i}] has a NaN or infinite (or beyond float32) value at token {bad[0]}")
        toks.append(list(t))
        vals.append(v32)
    return _Scores(toks, vals, str(label))
