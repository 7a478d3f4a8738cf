"""Compositional explanations: planted neurons that fire exactly on a formula get it back with IoU 1."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_acts import make_activations, random_corpus

from neuronwidgets.core.concepts.concepts import Concepts
from neuronwidgets.core.concepts.formulas import Formula, explain_neurons
from neuronwidgets.core.concepts.selection import top_activations


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    corpus = random_corpus(400, seed=7)
    upos = np.array(corpus.flat_labels("upos"))
    feats = np.array(corpus.flat_labels("feats"))
    plural = np.array(["Number=Plur" in f.split("|") for f in feats])
    n = corpus.num_words
    rng = np.random.default_rng(8)
    x = rng.normal(0.0, 0.2, size=(n, 5)).astype(np.float32)
    x[:, 0] += 2.0 * ((upos == "NOUN") & plural)  # NOUN AND Number=Plur
    x[:, 1] += 2.0 * (((upos == "NOUN") & ~plural) | (upos == "PROPN"))  # (NOUN AND NOT Number=Plur) OR PROPN
    x[:, 2] += 2.0 * (upos == "VERB")  # a single concept
    acts = make_activations(corpus, {"layer.1.mlp": x}, 90, store=tmp_path_factory.mktemp("f") / "store")
    concepts = Concepts.from_corpus(corpus, min_count=3)
    return corpus, acts, concepts, x


def test_planted_conjunction_gets_its_formula(planted) -> None:
    _, acts, concepts, _ = planted
    res = explain_neurons(acts, concepts, "layer.1.mlp:0", thresholds=1.0)
    e = res["layer.1.mlp:0"]
    assert str(e.formula) in ("NOUN AND Number=Plur", "Number=Plur AND NOUN")
    assert e.iou == 1.0 and e.precision == 1.0 and e.recall == 1.0
    assert res.single_iou[0] < 0.6  # no single concept explains it


def test_planted_three_concept_formula(planted) -> None:
    _, acts, concepts, x = planted
    res = explain_neurons(acts, concepts, ["layer.1.mlp:1", "layer.1.mlp:2"], thresholds=1.0)
    assert str(res.formulas[0]) == "(NOUN AND NOT Number=Plur) OR PROPN"
    assert res.iou[0] == 1.0 and res.lengths[0] == 3
    assert str(res.formulas[1]) == "VERB" and res.iou[1] == 1.0  # no longer formula beats one concept
    # the formula's units are exactly the firing units
    np.testing.assert_array_equal(res.formulas[0].mask(concepts), x[:, 1] >= 1.0)
    beam = res["layer.1.mlp:1"].beam
    assert beam[0][0] == res.formulas[0]
    masks = [f.mask(concepts).tobytes() for f, _ in beam]
    assert len(set(masks)) == len(masks)  # the beam holds different explanations
    assert [iou for _, iou in beam] == sorted((iou for _, iou in beam), reverse=True)
    frame = res.to_frame()
    assert frame["formula"].tolist() == ["(NOUN AND NOT Number=Plur) OR PROPN", "VERB"]


def test_max_length_limits_the_search(planted) -> None:
    _, acts, concepts, _ = planted
    res = explain_neurons(acts, concepts, "layer.1.mlp:1", thresholds=1.0, max_length=2)
    assert res.lengths[0] <= 2 and res.iou[0] < 1.0


def test_default_thresholds_are_the_top_quantile(planted) -> None:
    _, acts, concepts, _ = planted
    top = top_activations(acts, "layer.1.mlp", k=2, quantile=0.02)
    a = explain_neurons(acts, concepts, "layer.1.mlp:3", quantile=0.02)
    b = explain_neurons(acts, concepts, "layer.1.mlp:3", thresholds=top)
    assert a.thresholds[0] == b.thresholds[0] == top.threshold("layer.1.mlp:3")
    assert a.fires[0] == int(np.ceil(0.02 * acts.num_units))
    assert str(a.formulas[0]) == str(b.formulas[0])


def test_formula_text_and_parse() -> None:
    noun, plur, propn = (Formula.concept(c) for c in ("NOUN", "Number=Plur", "PROPN"))
    f = (noun & ~plur) | propn
    assert str(f) == "(NOUN AND NOT Number=Plur) OR PROPN"
    assert Formula.parse(str(f)) == f
    assert Formula.parse("NOUN AND NOT Number=Plur OR PROPN") == f  # NOT > AND > OR
    g = Formula.parse("NOT (A OR B) AND C")
    assert g == ~(Formula.concept("A") | Formula.concept("B")) & Formula.concept("C")
    assert str(g) == "NOT (A OR B) AND C" and Formula.parse(str(g)) == g
    assert f.length == 3 and f.concepts() == ["NOUN", "Number=Plur", "PROPN"]
    for bad in ("", "A AND", "(A OR B", "A B", "AND A"):
        with pytest.raises(ValueError):
            Formula.parse(bad)


def test_bad_arguments(planted) -> None:
    _, acts, concepts, _ = planted
    with pytest.raises(ValueError, match="unknown operator"):
        explain_neurons(acts, concepts, "layer.1.mlp:0", ops=("xor",))
    with pytest.raises(TypeError, match="expected Concepts"):
        explain_neurons(acts, {}, "layer.1.mlp:0")  # type: ignore[arg-type]
