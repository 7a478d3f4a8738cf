from __future__ import annotations

import pytest

from neuronwidgets.core import (
    Corpus,
    annotate,
    as_corpus,
    load_conllu,
    load_parallel,
    load_ud_english,
    ud_english_path,
)
from neuronwidgets.core.data.corpus import feature_values

SAMPLE = """# sent_id = 1
# text = I don't like it.
1\tI\tI\tPRON\tPRP\tCase=Nom|Number=Sing|Person=1\t4\tnsubj\t4:nsubj\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\tMood=Ind|Tense=Pres\t4\taux\t4:aux\t_
3\tn't\tnot\tPART\tRB\tPolarity=Neg\t4\tadvmod\t4:advmod\t_
4\tlike\tlike\tVERB\tVB\tVerbForm=Inf\t0\troot\t0:root\t_
5\tit\tit\tPRON\tPRP\tCase=Acc\t4\tobj\t4:obj\tSpaceAfter=No
6\t.\t.\tPUNCT\t.\t_\t4\tpunct\t4:punct\t_

# sent_id = 2
1\tHello\thello\tINTJ\tUH\t_\t0\troot\t0:root\t_
1.1\tghost\t_\t_\t_\t_\t_\t_\t_\t_
2\t!\t!\tPUNCT\t.\t_\t1\tpunct\t1:punct\t_
"""


def test_conllu_reads_syntactic_words_and_any_column(tmp_path) -> None:
    path = tmp_path / "s.conllu"
    path.write_text(SAMPLE)
    c = load_conllu(path)
    assert c.words == [["I", "do", "n't", "like", "it", "."], ["Hello", "!"]]
    assert c.labels["upos"][0] == ["PRON", "AUX", "PART", "VERB", "PRON", "PUNCT"]
    assert c.labels["xpos"][1] == ["UH", "."]
    assert c.labels["deprel"][0][3] == "root"
    assert c.labels["feats"][0][2] == "Polarity=Neg"
    assert feature_values(c.labels["feats"][0][0], "Person") == "1"
    assert feature_values("_", "Person") == "_"
    assert c.texts[0] == "I do n't like it ."
    assert c.spans[0][2] == (5, 8)
    only = load_conllu(path, columns=["upos"], max_sentences=1)
    assert only.columns == ["upos"] and len(only) == 1
    assert load_conllu(path, max_words=3).words == [["Hello", "!"]]


def test_conllu_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_conllu(tmp_path / "missing.conllu")
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tword\tonly three\n")
    with pytest.raises(ValueError, match="expected 10 tab-separated"):
        load_conllu(bad)
    with pytest.raises(ValueError, match="unknown CoNLL-U column"):
        load_conllu(bad, columns=["pos"])
    empty = tmp_path / "empty.conllu"
    empty.write_text("# only a comment\n")
    with pytest.raises(ValueError, match="no sentences"):
        load_conllu(empty)


def test_real_ud_file_loads(ud_dev) -> None:
    c = load_conllu(ud_dev, max_sentences=50)
    assert len(c) == 50 and c.num_words > 500
    frame = c.to_frame()
    assert len(frame) == c.num_words and {"word", "upos", "xpos"} <= set(frame.columns)
    assert len(c.flat_labels("upos")) == c.num_words


def test_ud_english_splits_are_shipped_whole() -> None:
    """Both gold splits load from the package data, with the sizes the UD release states, and the counts
    match an independent line count of the files (one token line per syntactic word)."""
    for split, sentences in (("dev", 2001), ("test", 2077)):
        path = ud_english_path(split)
        assert (path.parent / "LICENSE.txt").exists() and (path.parent / "README.md").exists()
        c = load_ud_english(split)
        assert len(c) == sentences and c.name == f"UD English EWT {split}"
        assert set(c.columns) == {"upos", "xpos"}
        lines = path.read_text(encoding="utf-8").splitlines()
        ids = [ln.split("\t", 1)[0] for ln in lines if ln and not ln.startswith("#")]
        assert c.num_words == sum(1 for i in ids if i.isdigit())
        assert sum(1 for ln in lines if ln.startswith("# sent_id")) == sentences
    assert load_ud_english("dev").num_words == 25147
    first = load_ud_english("dev", columns=["upos", "xpos", "deprel"], max_sentences=1)
    assert first.words == [["From", "the", "AP", "comes", "this", "story", ":"]]
    assert first.labels["upos"][0] == ["ADP", "DET", "PROPN", "VERB", "DET", "NOUN", "PUNCT"]
    assert first.labels["xpos"][0] == ["IN", "DT", "NNP", "VBZ", "DT", "NN", ":"]
    assert len(load_ud_english("test", max_sentences=10, max_words=8)) == 10
    with pytest.raises(ValueError, match="split must be one of 'dev', 'test', got 'train'"):
        load_ud_english("train")


def test_parallel_files(tmp_path) -> None:
    (tmp_path / "s.txt").write_text("the cat sat\nhello world\n")
    (tmp_path / "l.txt").write_text("DT NN VBD\nUH NN\n")
    c = load_parallel(tmp_path / "s.txt", tmp_path / "l.txt", column="pos")
    assert c.words == [["the", "cat", "sat"], ["hello", "world"]]
    assert c.labels["pos"] == [["DT", "NN", "VBD"], ["UH", "NN"]]
    (tmp_path / "bad.txt").write_text("DT NN\nUH NN\n")
    with pytest.raises(ValueError, match="sentence 0: 3 words but 2 'pos' labels"):
        load_parallel(tmp_path / "s.txt", tmp_path / "bad.txt", column="pos")
    (tmp_path / "short.txt").write_text("DT NN VBD\n")
    with pytest.raises(ValueError, match="2 lines but short.txt has 1"):
        load_parallel(tmp_path / "s.txt", tmp_path / "short.txt")


def test_plain_texts_and_word_lists() -> None:
    c = as_corpus(["Don't panic: it's state-of-the-art!", "Hi"])
    assert c.words[0] == ["Don't", "panic", ":", "it's", "state-of-the-art", "!"]
    assert all(c.texts[0][s:e] == w for w, (s, e) in zip(c.words[0], c.spans[0]))
    assert as_corpus([["a", "b"]]).texts == ["a b"]
    assert as_corpus("one text").words == [["one", "text"]]
    sub = c[[1]]
    assert sub.words == [["Hi"]]
    labelled = c.with_labels("x", [["1"] * 6, ["2"]])
    assert labelled.flat_labels("x") == ["1"] * 6 + ["2"]
    with pytest.raises(ValueError, match="no label column 'y'"):
        labelled.flat_labels("y")


@pytest.mark.parametrize(
    "bad, exc, message",
    [
        ([], ValueError, "empty corpus"),
        (["ok", ""], ValueError, "text 1 is empty"),
        ([["a"], []], ValueError, "sentence 1 has no words"),
        ([["a", " "]], ValueError, "blank word"),
        (42, TypeError, "expected a Corpus"),
        (["a", ["b"]], TypeError, "mixed input"),
    ],
)
def test_bad_corpora(bad, exc, message) -> None:
    with pytest.raises(exc, match=message):
        as_corpus(bad)


def test_label_sentence_count_mismatch() -> None:
    with pytest.raises(ValueError, match="has 1 sentences but the corpus has 2"):
        Corpus.from_words([["a"], ["b"]], {"upos": [["X"]]})


@pytest.mark.real_model
def test_annotate_with_spacy() -> None:
    c = annotate(["Apple is buying a U.K. startup for $1 billion.", "She   walked home yesterday."])
    assert c.words[0][:3] == ["Apple", "is", "buying"]
    assert c.labels["upos"][0][0] == "PROPN"
    assert c.labels["ent"][0][0] == "ORG"
    assert c.labels["ent_iob"][0][0] == "B-ORG"
    assert "Tense=Past" in c.labels["feats"][1][1]
    assert c.labels["deprel"][0][2] == "ROOT"
    assert c.words[1] == ["She", "walked", "home", "yesterday", "."]  # whitespace tokens dropped
    assert all(c.texts[1][s:e] == w for w, (s, e) in zip(c.words[1], c.spans[1]))
    heads = [int(h) for h in c.labels["head"][1]]
    assert heads[1] == 0 and heads[0] == 2  # "walked" is the root; "She" attaches to it
    with pytest.raises(ValueError, match="empty"):
        annotate(["fine", "  "])


def test_annotate_a_corpus_keeps_its_words() -> None:
    """Silver spaCy tags of gold UD words line up one to one (no re-tokenisation), and agree with the
    gold UPOS on most words but not all (an independent count over the flat labels)."""
    gold = load_ud_english("dev", max_sentences=60)
    silver = annotate(gold)
    assert silver.words == gold.words and silver.texts == gold.texts and silver.spans == gold.spans
    assert silver.num_words == gold.num_words
    g, s = gold.flat_labels("upos"), silver.flat_labels("upos")
    agree = sum(a == b for a, b in zip(g, s)) / len(g)
    assert 0.85 < agree < 1.0
    # a word spaCy alone would split stays one word: the corpus decides the tokens
    odd = Corpus.from_words([["can't", "stop"]])
    assert annotate(odd).words == [["can't", "stop"]]


def test_from_texts_keeps_given_strings_whole() -> None:
    from neuronwidgets.core import Corpus

    c = Corpus.from_texts(["a [MASK] b", "x <mask>y"], keep=["[MASK]", "<mask>", ""])
    assert c.words == [["a", "[MASK]", "b"], ["x", "<mask>", "y"]]
    assert c.spans[0][1] == (2, 8)
    assert Corpus.from_texts("a [MASK] b").words == [["a", "[", "MASK", "]", "b"]]


def test_equal_spans_are_one_shared_tuple() -> None:
    """A corpus keeps one tuple per distinct (start, end): 1.2M spans of a 100k corpus took 77 MB."""
    from neuronwidgets.core import Corpus

    c = Corpus.from_words([["the", "cat"], ["the", "dog"]])
    assert c.spans == [[(0, 3), (4, 7)], [(0, 3), (4, 7)]]
    assert c.spans[0][1] is c.spans[1][1]
    t = Corpus.from_texts(["a cat.", "a dog."])
    assert t.spans[0][0] is t.spans[1][0] and t.spans[0] == [(0, 1), (2, 5), (5, 6)]
