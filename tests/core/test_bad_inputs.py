"""Hostile inputs, table-driven: every public argument type gets bad values, and each must give a clear error
that names the argument (or the bad value) and says what is expected, never silent garbage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from neuronwidgets.core import (
    Intervention,
    NeuronRanking,
    ablate,
    as_activations,
    attribute_layers,
    attribute_neurons,
    attribute_tokens,
    evaluate_ranking,
    extract_activations,
    load_conllu,
    predict_logits,
    rank_iou,
    rank_probeless,
    rank_weight_mass,
    train_probe,
)
from neuronwidgets.core.interventions.edits import SiteEdit
from neuronwidgets.core.models.addresses import parse_neuron, parse_site

NEURON = "layer.0.mlp:1"


@pytest.fixture(scope="module")
def lm(tiny_models):
    return tiny_models["gpt2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-inputs")
    binary = root / "binary.conllu"
    binary.write_bytes(bytes(range(256)) * 8)
    plain = root / "a_file.txt"
    plain.write_text("not a folder\n", encoding="utf-8")
    wrong = root / "wrong.conllu"
    wrong.write_text("1\tword\tonly three\n\n", encoding="utf-8")
    return {"binary": binary, "file": plain, "folder": root, "wrong": wrong}


def small_acts(n_sent: int = 20, width: int = 6):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_sent * 5, width)).astype(np.float32)
    labels = np.array(["A", "B"] * (n_sent * 5 // 2), dtype=object)
    return as_activations(x, lengths=[5] * n_sent), labels


# (id, call(fixtures) -> anything, exception type, regex the message must match)
Case = tuple[str, Callable[[dict[str, Any]], Any], type[Exception], str]

ADDRESS_CASES: list[Case] = [
    ("unicode superscript index", lambda f: parse_neuron("layer.1.mlp:²"), ValueError, "cannot parse neuron"),
    ("arabic-indic index", lambda f: parse_neuron("layer.1.mlp:٣"), ValueError, "cannot parse neuron"),
    ("unicode layer digit", lambda f: parse_site("layer.٣.mlp"), ValueError, "cannot parse site"),
    ("negative index", lambda f: parse_neuron("layer.1.mlp:-3"), ValueError, "cannot parse neuron"),
    ("float index", lambda f: parse_neuron("layer.1.mlp:1.5"), ValueError, "cannot parse neuron"),
    ("no index", lambda f: parse_neuron("layer.1.mlp"), ValueError, "expected '<site>:<index>'"),
    ("int address", lambda f: parse_neuron(5), TypeError, "a neuron address is a string"),
    ("None address", lambda f: parse_neuron(None), TypeError, "a neuron address is a string"),
    ("unknown component", lambda f: parse_neuron("layer.1.attn:3"), ValueError, "unknown component"),
]

CORPUS_CASES: list[Case] = [
    ("conllu binary file", lambda f: load_conllu(f["binary"]), ValueError, "not a UTF-8 text file"),
    ("conllu folder", lambda f: load_conllu(f["folder"]), ValueError, "is a folder"),
    ("conllu missing", lambda f: load_conllu(f["folder"] / "nope.conllu"), ValueError, "does not exist"),
    ("conllu 3 columns", lambda f: load_conllu(f["wrong"]), ValueError, "10 tab-separated"),
    (
        "conllu bad column",
        lambda f: load_conllu(f["wrong"], columns=["pos"]),
        ValueError,
        "unknown CoNLL-U column",
    ),
]

EXTRACTION_CASES: list[Case] = [
    (
        "store is a file",
        lambda f: extract_activations(f["lm"], ["a b"], store=f["file"]),
        ValueError,
        "store must be a folder",
    ),
    (
        "store is an int",
        lambda f: extract_activations(f["lm"], ["a b"], store=3),
        TypeError,
        "store must be a folder path",
    ),
    ("layers=1.5", lambda f: extract_activations(f["lm"], ["a b"], layers=1.5), ValueError, "layers must be"),
    (
        "layers=[1.5]",
        lambda f: extract_activations(f["lm"], ["a b"], layers=[1.5]),
        ValueError,
        "unknown layer 1.5",
    ),
    ("layers=99", lambda f: extract_activations(f["lm"], ["a b"], layers=99), ValueError, "unknown layer 99"),
    ("layers=[]", lambda f: extract_activations(f["lm"], ["a b"], layers=[]), ValueError, "no layers given"),
    (
        "layers=True",
        lambda f: extract_activations(f["lm"], ["a b"], layers=[True]),
        ValueError,
        "unknown layer True",
    ),
    (
        'batch_size="32"',
        lambda f: extract_activations(f["lm"], ["a b"], batch_size="32"),
        ValueError,
        "batch_size must be a positive int",
    ),
    (
        "batch_size=0",
        lambda f: extract_activations(f["lm"], ["a b"], batch_size=0),
        ValueError,
        "batch_size must be a positive int",
    ),
    (
        "batch_size=2.5",
        lambda f: extract_activations(f["lm"], ["a b"], batch_size=2.5),
        ValueError,
        "batch_size must be a positive int",
    ),
    (
        "chunk_sentences=None",
        lambda f: extract_activations(f["lm"], ["a b"], chunk_sentences=None),
        ValueError,
        "chunk_sentences must be",
    ),
    (
        "max_length=-1",
        lambda f: extract_activations(f["lm"], ["a b"], max_length=-1),
        ValueError,
        "max_length must be",
    ),
    ('texts ["ok", 5]', lambda f: extract_activations(f["lm"], ["ok", 5]), TypeError, r"data\[1\] is 5"),
    ("texts [None]", lambda f: extract_activations(f["lm"], [None]), TypeError, r"data\[0\] is None"),
    ("texts bytes", lambda f: extract_activations(f["lm"], b"abc"), TypeError, "expected a Corpus"),
    ("texts []", lambda f: extract_activations(f["lm"], []), ValueError, "empty corpus"),
    (
        "granularity",
        lambda f: extract_activations(f["lm"], ["a b"], granularity="char"),
        ValueError,
        "unknown granularity",
    ),
    (
        "aggregation",
        lambda f: extract_activations(f["lm"], ["a b"], aggregation="median"),
        ValueError,
        "unknown aggregation",
    ),
    ("dtype", lambda f: extract_activations(f["lm"], ["a b"], dtype="int8"), ValueError, "dtype must be"),
    (
        "component",
        lambda f: extract_activations(f["lm"], ["a b"], components="attn"),
        ValueError,
        "unknown component",
    ),
]

INTERVENTION_CASES: list[Case] = [
    (
        "ablate(model, None)",
        lambda f: ablate(f["lm"], None).__enter__(),
        TypeError,
        "neurons must be a neuron address",
    ),
    (
        "ablate(model, 3)",
        lambda f: ablate(f["lm"], 3).__enter__(),
        TypeError,
        "neurons must be a neuron address",
    ),
    (
        'value="000"',
        lambda f: ablate(f["lm"], [NEURON], "value", value="000").__enter__(),
        TypeError,
        "the string '000'",
    ),
    (
        'value=["1"]',
        lambda f: Intervention([NEURON], "value", ["1"]),
        TypeError,
        "each value must be a number",
    ),
    ("value=True", lambda f: Intervention([NEURON], "value", True), TypeError, "must be a number"),
    ("value=1e39", lambda f: Intervention([NEURON], "value", 1e39), ValueError, "beyond float32's largest"),
    ("scale=1e39", lambda f: Intervention.scale({NEURON: 1e39}), ValueError, "beyond float32's largest"),
    ("value=nan", lambda f: Intervention([NEURON], "value", float("nan")), ValueError, "not a finite number"),
    (
        "value=inf",
        lambda f: Intervention([NEURON], "value", [float("inf")]),
        ValueError,
        "not a finite number",
    ),
    ('set({n: "2"})', lambda f: Intervention.set({NEURON: "2"}), TypeError, "each value must be a number"),
    ("set([..])", lambda f: Intervention.set([NEURON]), TypeError, "expected a dict"),
    (
        "dict value str",
        lambda f: ablate(f["lm"], [NEURON], "value", value={NEURON: "0"}).__enter__(),
        TypeError,
        "each value must be a number",
    ),
    (
        "unknown mode",
        lambda f: ablate(f["lm"], [NEURON], "noise").__enter__(),
        ValueError,
        "unknown ablation mode",
    ),
    (
        "neuron out of range",
        lambda f: predict_logits(f["lm"], "a b", Intervention.zero("layer.0.mlp:9999")),
        ValueError,
        "9999",
    ),
    ("batch_size=0", lambda f: predict_logits(f["lm"], "a b", batch_size=0), ValueError, "batch_size"),
    (
        "predict top_k=0",
        lambda f: f["lm"].predict("a b", top_k=0),
        ValueError,
        "top_k must be a positive int",
    ),
    (
        "predict top_k=-1",
        lambda f: f["lm"].predict("a b", top_k=-1),
        ValueError,
        "top_k must be a positive int",
    ),
    (
        'predict top_k="3"',
        lambda f: f["lm"].predict("a b", top_k="3"),
        ValueError,
        "top_k must be a positive int",
    ),
]


def _probe_cases() -> list[Case]:
    acts, labels = small_acts()

    def with_none():
        bad = labels.copy()
        bad[3] = None
        return train_probe(acts, bad, control=False, baselines=False)

    def with_nan():
        bad = labels.copy()
        bad[7] = float("nan")
        return train_probe(acts, bad, control=False, baselines=False)

    def ranking_eval(**kw: Any):
        res = train_probe(acts, labels, control=False, baselines=False)
        return evaluate_ranking(res, rank_weight_mass(res), acts, labels, **kw)

    return [
        ("None labels", lambda f: with_none(), ValueError, "labels must not be missing: label 3 is None"),
        ("NaN labels", lambda f: with_nan(), ValueError, "labels must not be missing: label 7 is nan"),
        ("labels one string", lambda f: train_probe(acts, "AB" * 50), TypeError, "not a single string"),
        (
            "labels too few",
            lambda f: train_probe(acts, labels[:10]),
            ValueError,
            "one label per activation row",
        ),
        (
            "labels 2-D",
            lambda f: train_probe(acts, np.stack([labels, labels], 1)),
            ValueError,
            "labels must be flat",
        ),
        (
            "regression inf",
            lambda f: train_probe(acts, np.r_[np.inf, np.arange(99.0)]),
            ValueError,
            "NaN or infinity",
        ),
        ("ablation mode", lambda f: ranking_eval(ablation="random"), ValueError, "ablation must be one of"),
        ("percents strings", lambda f: ranking_eval(percents=["a"]), ValueError, "percents must be numbers"),
        ("percents nan", lambda f: ranking_eval(percents=[float("nan")]), ValueError, "percents must be in"),
        ("draws=0", lambda f: ranking_eval(draws=0), ValueError, "draws must be an int"),
        ("draws=1.5", lambda f: ranking_eval(draws=1.5), ValueError, "draws must be an int"),
        (
            "k=-1 top",
            lambda f: NeuronRanking.from_scores(["layer.0.resid:0"], [1.0], "x").top(-1),
            ValueError,
            "out of range",
        ),
        (
            "k=1.5 top",
            lambda f: NeuronRanking.from_scores(["layer.0.resid:0"], [1.0], "x").top(1.5),
            TypeError,
            "k must be an int",
        ),
    ]


ATTRIBUTION_CASES: list[Case] = [
    (
        "IG n_steps=2.5",
        lambda f: attribute_tokens(f["lm"], "a b", "integrated-gradients", n_steps=2.5),
        ValueError,
        "n_steps must be an int",
    ),
    (
        "IG n_steps=1",
        lambda f: attribute_tokens(f["lm"], "a b", "integrated-gradients", n_steps=1),
        ValueError,
        "n_steps must be an int",
    ),
    (
        'conductance n_steps="8"',
        lambda f: attribute_neurons(f["lm"], "a b", n_steps="8"),
        ValueError,
        "n_steps must be an int",
    ),
    (
        "layers n_steps=True",
        lambda f: attribute_layers(f["lm"], "a b", n_steps=True),
        ValueError,
        "n_steps must be an int",
    ),
    (
        "unknown integration",
        lambda f: attribute_layers(f["lm"], "a b", integration="simpson"),
        ValueError,
        "unknown integration",
    ),
]


def _ranking_cases() -> list[Case]:
    acts, labels = small_acts()
    return [
        (
            "from_scores strings",
            lambda f: NeuronRanking.from_scores(["layer.0.resid:0"], ["a"], "x"),
            TypeError,
            "scores must be numbers",
        ),
        (
            "from_scores bools",
            lambda f: NeuronRanking.from_scores(["layer.0.resid:0"], [True], "x"),
            TypeError,
            "scores must be numbers",
        ),
        (
            "probeless rows=test",
            lambda f: rank_probeless(acts, labels, rows="test"),
            ValueError,
            "rows must be 'train'",
        ),
        (
            "probeless rows floats",
            lambda f: rank_probeless(acts, labels, rows=[0.5, 1.5]),
            TypeError,
            "integer row positions",
        ),
        (
            "probeless None labels",
            lambda f: rank_probeless(acts, [None] * acts.num_units),
            ValueError,
            "must not be missing",
        ),
        (
            "iou rows+split",
            lambda f: rank_iou(acts, labels, rows=[0, 1], split=(0.5, 0.5)),
            ValueError,
            "not both",
        ),
    ]


ALL = (
    ADDRESS_CASES
    + CORPUS_CASES
    + EXTRACTION_CASES
    + INTERVENTION_CASES
    + ATTRIBUTION_CASES
    + _probe_cases()
    + _ranking_cases()
)


@pytest.mark.parametrize(("name", "call", "exc", "pattern"), ALL, ids=[c[0] for c in ALL])
def test_bad_input_gives_a_clear_error(
    name: str, call: Callable[[dict[str, Any]], Any], exc: type[Exception], pattern: str, lm, files
) -> None:
    with pytest.raises(exc, match=pattern):
        call({**files, "lm": lm})


def test_values_beyond_the_applied_dtype_are_refused_not_turned_into_inf() -> None:
    """The finite check happens in the dtype the edit is applied in: 1e5 fits float32 but not float16,
    and a factor whose product overflows is refused instead of giving inf/NaN predictions."""
    x16 = torch.zeros(2, 3, 4, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"value 100000 .* torch.float16"):
        SiteEdit([1], [0.0], [1e5])(x16)
    assert torch.isfinite(SiteEdit([1], [0.0], [1e5])(x16.float())).all()
    x = torch.full((1, 2, 4), 1e3)
    with pytest.raises(ValueError, match="scaling overflows torch.float32"):
        SiteEdit([0], [1e37], [0.0])(x)


def test_logits_are_detached(lm) -> None:
    logits, _ = lm.logits(["a b"])
    assert not logits.requires_grad and logits.grad_fn is None
