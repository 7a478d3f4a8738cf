"""The checkers that need a model, on the offline models: each accepts answers computed here
independently (numpy over activations, `ablate` + `predict`, brute force over word changes), rejects
wrong ones with a hint that does not give the answer away."""

from __future__ import annotations

import numpy as np
import pytest

from neuronwidgets.core import (
    NeuronRanking,
    ablate,
    annotate,
    attribute_interactions,
    attribute_tokens,
    extract_activations,
    load_model,
)
from neuronwidgets.course import evaluate, tour
from neuronwidgets.course.causation import REVIEW, STEPS

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def sentiment():
    return load_model("minilm-sentiment")


def test_punctuation_neuron_of_layer_3(minilm) -> None:
    texts = [
        "A wonderful, moving film: I loved it!",
        "The plot is thin; the acting wooden.",
        "Paris, London and Berlin.",
    ]
    corpus = annotate(texts)
    acts = extract_activations(minilm, corpus, layers=[3], components="resid", progress=False)
    x = acts.layer("layer.3.resid")
    punct = np.array(corpus.flat_labels("upos")) == "PUNCT"
    gap = np.abs(x[punct].mean(0) - x[~punct].mean(0))
    best, worst = int(np.argmax(gap)), int(np.argmin(gap))
    for form in (f"layer.3.resid:{best}", best, str(best)):
        assert evaluate("00.1", form, acts=acts, corpus=corpus).correct, form
    wrong = evaluate("00.1", worst, acts=acts, corpus=corpus)
    assert wrong.correct is False and str(best) not in wrong.message
    assert evaluate("00.1", "layer.2.resid:3", acts=acts, corpus=corpus).correct is False


def test_flip_with_one_word_accepts_any_flip(sentiment) -> None:
    words = tour.FLIP_TEXT.split()
    flips = []
    for i in range(len(words)):
        for new in ("terrible", "boring", "hated", "awful", "never", "dull"):
            text = " ".join([*words[:i], new, *words[i + 1 :]])
            if sentiment.predict(text).labels[0] == "negative":
                flips.append(text)
    assert flips, "no one-word change flips the model: the exercise needs another sentence"
    for text in flips[:3]:
        assert evaluate("00.2", text, model=sentiment).correct, text
    two = tour.FLIP_TEXT.replace("charming", "terrible").replace("great", "awful")
    assert "exactly one word" in evaluate("00.2", two, model=sentiment).message
    assert evaluate("00.2", tour.FLIP_TEXT, model=sentiment).correct is False


def test_top_word_of_the_tour_review(sentiment) -> None:
    attr = attribute_tokens(sentiment, tour.TOUR_REVIEW, "integrated-gradients", None, n_steps=32)
    order = np.argsort(-attr.word_scores)
    top, second = attr.words[order[0]], attr.words[order[1]]
    assert evaluate("00.3", top.upper(), model=sentiment).correct  # any case
    wrong = evaluate("00.3", second, model=sentiment)
    assert wrong.correct is False and repr(top) not in wrong.message


def test_neurons_to_flip_counts_like_ablate(sentiment) -> None:
    text = "Charming and funny, though a little too long."
    rng = np.random.default_rng(0)
    names = [f"layer.5.mlp:{i}" for i in rng.permutation(sentiment.width("layer.5.mlp"))[:300]]
    ranking = NeuronRanking.from_scores(names, np.linspace(1, 0, len(names)), "random order")
    original = sentiment.predict(text).labels[0]
    truth = None
    for k in range(1, 201):
        with ablate(sentiment, names[:k]):
            if sentiment.predict(text).labels[0] != original:
                truth = k
                break
    answer = "none" if truth is None else truth
    assert evaluate("03.1", answer, model=sentiment, text=text, ranking=ranking).correct
    wrong = evaluate("03.1", 1 if truth != 1 else 2, model=sentiment, text=text, ranking=ranking)
    assert wrong.correct is False and (truth is None or str(truth) not in wrong.message)


def test_lm_token_without_neurons(tiny_models) -> None:
    lm = tiny_models["gpt2"]
    prompt = "the cat sat on the"
    neurons = ["layer.0.mlp:1", "layer.1.mlp:3", "layer.1.mlp:7"]
    with ablate(lm, neurons):
        token = lm.predict(prompt, top_k=1).labels[0]
    assert evaluate("03.3", token, model=lm, prompt=prompt, neurons=neurons).correct
    assert evaluate("03.3", token + "zz", model=lm, prompt=prompt, neurons=neurons).correct is False


def test_enough_steps_and_saliency_blind_spot(sentiment) -> None:
    rel = {}
    for n in STEPS:
        a = attribute_tokens(sentiment, REVIEW, "integrated-gradients", "positive", n_steps=n)
        rel[n] = abs(a.delta) / abs(a.output_difference)
    truth = next(n for n in STEPS if rel[n] < 0.01)
    assert evaluate("04.1", truth, model=sentiment).correct
    for n in STEPS:
        if n != truth:
            fb = evaluate("04.1", n, model=sentiment)
            assert fb.correct is False and str(truth) not in fb.message.replace(str(n), "")
    sal = attribute_tokens(sentiment, REVIEW, "saliency", "positive")
    ig = attribute_tokens(sentiment, REVIEW, "integrated-gradients", "positive", n_steps=32)
    top3 = [w for w, _ in sal.top(3)]
    against = [w for w in top3 if ig.word_scores[ig.words.index(w)] < 0]
    towards = [w for w in top3 if ig.word_scores[ig.words.index(w)] > 0]
    assert against, "the review no longer shows saliency's blind spot"
    for w in against:
        assert evaluate("04.2", w, model=sentiment).correct
    for w in towards:
        assert evaluate("04.2", w, model=sentiment).correct is False


def test_most_negative_pair_in_either_order(sentiment) -> None:
    text = "The movie was not bad at all."
    r = attribute_interactions(sentiment, text, "shapley-taylor", "positive", level="word", n_samples=None)
    pairs = r.pairs().sort_values("interaction")
    low = pairs.iloc[0]
    a, b = low.unit_i, low.unit_j
    for form in ((a, b), [b, a], f"{a} × {b}", f"{b}, {a}"):
        assert evaluate("04.3", form, model=sentiment, text=text).correct, form
    high = pairs.iloc[-1]
    wrong = evaluate("04.3", (high.unit_i, high.unit_j), model=sentiment, text=text)
    assert wrong.correct is False
