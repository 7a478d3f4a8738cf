"""IPython magics of the notebook extension (``%load_ext neuronwidgets``). Each returns its widget, so
``w = %heatmap ...`` keeps it; ``%heatmap --help`` (any magic) prints its usage.

- ``%heatmap MODEL NEURON TEXT...``: one neuron's activation over the text (several texts separated by
  ``|``) → :class:`~neuronwidgets.widgets.TokenHeatmap`.
- ``%%explain MODEL [--target LABEL] [--method ig|saliency|shap|...] [--fast]``: the cell body holds one
  text per line → :class:`~neuronwidgets.widgets.AttributionView` (a ``VBox`` of them for several lines).
- ``%%ablate MODEL [NEURON ...] [--k K]``: the cell body is the text → :class:`~neuronwidgets.widgets.AblationPanel`
  on those neurons (default: the ``K`` neurons of the last MLP that most support the prediction).
- ``%neurons MODEL CONCEPT_OR_NEURON [--corpus VAR] [--n N] [--layers L ...]``: a
  :class:`~neuronwidgets.widgets.NeuronExplorer` over movie-review snippets (or your corpus), showing that
  neuron, or the neurons that best match that concept (``ADJ``, ``Tense=Past``, ``sentiment:pos``, ...).

``MODEL`` is an embedded model (``minilm``, ``minilm-sentiment``, ``smollm2``), a local model folder, a
Hugging Face name ``org/model``, or the name of a variable holding a ``ModelHandle``. Loaded models are
kept for the session, so a second magic on the same model starts at once. Bad arguments give a one-line
``UsageError`` saying what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import random
import shlex
from pathlib import Path
from typing import Any, NoReturn

import ipywidgets
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from .core import EMBEDDED_MODELS, ModelHandle, get_method, load_model, parse_neuron

_MAGICS = {"line": ("heatmap", "neurons"), "cell": ("explain", "ablate")}


class _HelpShown(Exception):
    """``--help`` was given: the usage is printed, nothing to run."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one-line ``UsageError``\\ s and whose ``--help`` does not exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(
            f"%{self.prog}: {message}. Usage: {self.format_usage().strip()[7:]} (see %{self.prog} --help)"
        )

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise _HelpShown


def _parser(name: str, description: str, epilog: str) -> _Parser:
    return _Parser(
        prog=name,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


_MODEL_HELP = "minilm, minilm-sentiment, smollm2, a model folder, a hub name org/model, or a variable holding a ModelHandle"

HEATMAP = _parser(
    "heatmap",
    "One neuron's activation over a text, as a TokenHeatmap.",
    "example:\n  %heatmap minilm layer.3.mlp:117 The movie was not bad at all.\n"
    "  %heatmap minilm layer.3.mlp:117 A first text. | A second text.",
)
HEATMAP.add_argument("model", help=_MODEL_HELP)
HEATMAP.add_argument("neuron", help="a neuron address, e.g. layer.3.mlp:117 or layer.0.resid:5")
HEATMAP.add_argument("text", nargs="+", help="the text (the rest of the line; '|' separates several texts)")

EXPLAIN = _parser(
    "explain",
    "Attribute a prediction to the words of each line of the cell, as an AttributionView.",
    "example:\n  %%explain minilm-sentiment --method ig\n  A wonderful, moving film.",
)
EXPLAIN.add_argument("model", help=_MODEL_HELP)
EXPLAIN.add_argument(
    "--target", default=None, help="class or next token to explain (default: the top prediction)"
)
EXPLAIN.add_argument(
    "--method",
    default="integrated-gradients",
    help="ig, saliency, input-x-gradient, deeplift, gradient-shap, shap, occlusion, ... (default: ig)",
)
EXPLAIN.add_argument(
    "--fast", action="store_true", help="tokens only: no layer matrix and no neuron ranking (large models)"
)

ABLATE = _parser(
    "ablate",
    "Sliders that scale neurons of the model on the cell's text, with the live prediction (AblationPanel).",
    "example:\n  %%ablate minilm-sentiment layer.5.mlp:1 layer.5.mlp:2\n  A wonderful, moving film.",
)
ABLATE.add_argument("model", help=_MODEL_HELP)
ABLATE.add_argument(
    "neurons",
    nargs="*",
    help="neuron addresses, or a variable holding a ranking (default: the top neurons by conductance)",
)
ABLATE.add_argument("--k", type=int, default=8, help="number of neurons when none are given (default 8)")

NEURONS = _parser(
    "neurons",
    "A NeuronExplorer showing one neuron, or the neurons that best match a concept.",
    "examples:\n  %neurons minilm layer.4.mlp:117\n  %neurons minilm ADJ\n  %neurons minilm Tense=Past --corpus texts",
)
NEURONS.add_argument("model", help=_MODEL_HELP)
NEURONS.add_argument(
    "what", help="a neuron address (layer.4.mlp:117) or a concept (ADJ, Tense=Past, sentiment:pos)"
)
NEURONS.add_argument(
    "--corpus", default=None, help="a variable holding texts or a Corpus (default: movie-review snippets)"
)
NEURONS.add_argument("--n", type=int, default=200, help="sentences of the default corpus (default 200)")
NEURONS.add_argument(
    "--layers", type=int, nargs="+", default=None, help="layers to read (default: the neuron's, or all)"
)


def _split(line: str, parser: _Parser) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as err:
        raise UsageError(f"%{parser.prog}: {err} (quote texts with spaces consistently)") from None


@magics_class
class NeuronMagics(Magics):
    """The magics; ``models`` caches loaded models by name for the session."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.models: dict[str, ModelHandle] = {}

    # -- shared --------------------------------------------------------------------------------------
    @property
    def user_ns(self) -> dict[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    def model(self, name: str, prog: str) -> ModelHandle:
        """The model called ``name`` (see the module docstring), or a one-line ``UsageError``."""
        value = self.user_ns.get(name)
        if isinstance(value, ModelHandle):
            return value
        if name in self.models:
            return self.models[name]
        local = Path(name).expanduser().exists()
        if name not in EMBEDDED_MODELS and not local and "/" not in name:
            close = difflib.get_close_matches(name, list(EMBEDDED_MODELS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(EMBEDDED_MODELS)
            raise UsageError(
                f"%{prog}: unknown model {name!r}{hint}. Known models: {known}; or give a model folder, a hub "
                "name org/model, or a variable holding a ModelHandle"
            )
        try:
            handle = load_model(name)
        except (ValueError, OSError, TypeError) as err:
            raise UsageError(f"%{prog}: {str(err).splitlines()[0]}") from None
        self.models[name] = handle
        return handle

    def _parse(self, parser: _Parser, args: list[str]) -> argparse.Namespace | None:
        try:
            return parser.parse_args(args)
        except _HelpShown:
            return None

    # -- magics --------------------------------------------------------------------------------------
    @line_magic
    def heatmap(self, line: str) -> Any:
        """%heatmap MODEL NEURON TEXT... : one neuron's activation over the text (TokenHeatmap).
        ``%heatmap --help`` for more."""
        head = line.split(None, 2)
        ns = self._parse(HEATMAP, head)
        if ns is None:
            return None
        texts = [t.strip().strip("\"'").strip() for t in head[2].split("|")]
        if not all(texts):
            raise UsageError("%heatmap: an empty text: write the text after the neuron ('|' separates texts)")
        try:
            neuron = parse_neuron(ns.neuron)
        except ValueError as err:
            raise UsageError(f"%heatmap: {err}") from None
        handle = self.model(ns.model, "heatmap")
        from .widgets import TokenHeatmap

        try:
            return TokenHeatmap.from_model(
                handle, texts, neuron=neuron.name, layers=[neuron.layer], components=neuron.component
            )
        except ValueError as err:
            raise UsageError(f"%heatmap: {err}") from None

    @cell_magic
    def explain(self, line: str, cell: str) -> Any:
        """%%explain MODEL [--target LABEL] [--method M] [--fast] : attributions of each line of the cell
        (AttributionView). ``%%explain --help`` for more."""
        ns = self._parse(EXPLAIN, _split(line, EXPLAIN))
        if ns is None:
            return None
        texts = [t.strip() for t in cell.splitlines() if t.strip()]
        if not texts:
            raise UsageError("%%explain: the cell is empty: write one text per line below %%explain MODEL")
        try:
            method = get_method(ns.method, "token").name
        except (ValueError, TypeError) as err:
            raise UsageError(f"%%explain: {err}") from None
        handle = self.model(ns.model, "explain")
        from .widgets import AttributionView

        fast: dict[str, Any] = {"layers": False, "neuron_sites": None} if ns.fast else {}
        try:
            views = [AttributionView(handle, t, method, ns.target, **fast) for t in texts]
        except ValueError as err:
            raise UsageError(f"%%explain: {err}") from None
        return views[0] if len(views) == 1 else ipywidgets.VBox(views)

    @cell_magic
    def ablate(self, line: str, cell: str) -> Any:
        """%%ablate MODEL [NEURON ...] [--k K] : sliders over neurons on the cell's text (AblationPanel).
        ``%%ablate --help`` for more."""
        ns = self._parse(ABLATE, _split(line, ABLATE))
        if ns is None:
            return None
        text = " ".join(cell.split())
        if not text:
            raise UsageError("%%ablate: the cell is empty: write the text below %%ablate MODEL NEURON ...")
        if ns.k < 1:
            raise UsageError(f"%%ablate: --k must be at least 1, got {ns.k}")
        handle = self.model(ns.model, "ablate")
        neurons: Any = ns.neurons
        if len(neurons) == 1 and neurons[0] in self.user_ns:
            neurons = self.user_ns[neurons[0]]  # a ranking or a list in a variable
        from .widgets import AblationPanel

        try:
            if not ns.neurons:
                from .core import attribute_neurons

                neurons = attribute_neurons(handle, text, n_steps=16).top(ns.k)
            return AblationPanel(handle, text, neurons, n_neurons=ns.k if not ns.neurons else None)
        except (ValueError, TypeError) as err:
            raise UsageError(f"%%ablate: {err}") from None

    @line_magic
    def neurons(self, line: str) -> Any:
        """%neurons MODEL CONCEPT_OR_NEURON [--corpus VAR] [--n N] [--layers L ...] : a NeuronExplorer.
        ``%neurons --help`` for more."""
        ns = self._parse(NEURONS, _split(line, NEURONS))
        if ns is None:
            return None
        try:
            neuron = parse_neuron(ns.what)
        except ValueError:
            neuron = None
        if ns.n < 1:
            raise UsageError(f"%neurons: --n must be at least 1, got {ns.n}")
        if ns.corpus is not None and ns.corpus not in self.user_ns:
            raise UsageError(f"%neurons: --corpus {ns.corpus!r} is not a variable of this notebook")
        handle = self.model(ns.model, "neurons")
        corpus = self._corpus(ns.corpus, ns.n)
        layers = ns.layers or ([neuron.layer] if neuron is not None else None)
        try:
            return _explorer(
                handle, corpus, ns.what if neuron is None else neuron.name, neuron is None, layers
            )
        except (ValueError, KeyError) as err:
            raise UsageError(f"%neurons: {str(err).strip(chr(34))}") from None

    def _corpus(self, name: str | None, n: int) -> Any:
        from .core import annotate, as_corpus

        if name is None:
            from .core.models.offline import load_movie_snippets

            texts = [t for t, _ in random.Random(0).sample(load_movie_snippets(), n)]
            return annotate(texts)
        value = self.user_ns[name]
        try:
            corpus = as_corpus(value)
        except (TypeError, ValueError) as err:
            raise UsageError(f"%neurons: --corpus {name}: {err}") from None
        return corpus if corpus.columns else annotate(list(corpus.texts))


def _explorer(handle: ModelHandle, corpus: Any, what: str, is_concept: bool, layers: Any) -> Any:
    from .core import Concepts, align_concepts, extract_activations, top_activations
    from .widgets import NeuronExplorer

    acts = extract_activations(handle, corpus, layers, "mlp", progress=False)
    top = top_activations(acts, k=10)
    concepts = Concepts.from_corpus(corpus, words=100)
    alignment = align_concepts(acts, concepts, thresholds=top, progress=False)
    explorer = NeuronExplorer(acts, alignment=alignment, concepts=concepts, top=top, sentences=[0, 1, 2, 3])
    if is_concept:
        explorer.search(what)
    else:
        explorer.select(what)
    return explorer


def register(ip: Any) -> None:
    ip.register_magics(NeuronMagics(ip))


def unregister(ip: Any) -> None:
    for kind, names in _MAGICS.items():
        for name in names:
            ip.magics_manager.magics[kind].pop(name, None)
