"""Extraction against an independent computation: the test hooks the modules itself (explicit paths per
family), runs each sentence alone (no padding) and aggregates subwords with its own char→word map."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from neuronwidgets.core import Activations, Corpus, extract_activations, resolve_sites
from neuronwidgets.core.store.extraction import row_blocks

BLOCKS = {
    "bert": "encoder.layer",
    "roberta": "roberta.encoder.layer",
    "gpt2": "transformer.h",
    "llama": "model.layers",
}
DOWN = {"bert": "output.dense", "roberta": "output.dense", "gpt2": "mlp.c_proj", "llama": "mlp.down_proj"}

SENTENCES = [
    ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "."],
    ["It's", "not", "bad", "at", "all", ";", "the", "actors", "don't", "disappoint", "."],
    ["Paris", "is", "the", "capital", "of", "France", "."],
    ["state-of-the-art", "e-mails", "3.14"],
]


def reference(handle, family: str, words: list[str], site: str, agg: str = "mean") -> np.ndarray:
    """Activations of one sentence at one site, computed without neuronwidgets' hooks or alignment."""
    text = " ".join(words)
    char_word: list[int] = []
    for i, w in enumerate(words):
        char_word += [i] * len(w) + [-1]
    enc = handle.tokenizer(
        text, return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="pt"
    )
    blocks = handle.model.get_submodule(BLOCKS[family])
    layer_part, _, comp = site.rpartition(".")
    seen: dict[str, torch.Tensor] = {}

    def keep(x: torch.Tensor) -> None:
        seen.setdefault("x", x[0].clone())

    if site == "embed.resid":
        h = blocks[0].register_forward_pre_hook(
            lambda m, a, k: keep(a[0] if a else k["hidden_states"]), with_kwargs=True
        )
    elif comp == "resid":
        idx = int(layer_part.split(".")[1])
        h = blocks[idx].register_forward_hook(lambda m, a, o: keep(o[0] if isinstance(o, tuple) else o))
    else:
        idx = int(layer_part.split(".")[1])
        h = blocks[idx].get_submodule(DOWN[family]).register_forward_pre_hook(lambda m, a: keep(a[0]))
    try:
        with torch.no_grad():
            handle.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    finally:
        h.remove()
    act = seen["x"].numpy()
    rows: dict[int, list[int]] = {i: [] for i in range(len(words))}
    tokens = []
    for t, ((s, e), special) in enumerate(
        zip(enc["offset_mapping"][0].tolist(), enc["special_tokens_mask"][0])
    ):
        if special:
            continue
        tokens.append(t)
        ws = [char_word[c] for c in range(s, e) if char_word[c] >= 0]
        if ws:
            rows[ws[0]].append(t)
    if agg == "token":
        return act[tokens]
    fn = {
        "mean": lambda r: act[r].mean(0),
        "first": lambda r: act[r[0]],
        "last": lambda r: act[r[-1]],
        "max": lambda r: act[r].max(0),
    }[agg]
    return np.stack([fn(rows[i]) for i in range(len(words))])


@pytest.mark.parametrize("agg", ["mean", "first", "last", "max"])
def test_word_activations_match_independent_computation(tiny_models, family: str, agg: str) -> None:
    m = tiny_models[family]
    acts = extract_activations(m, SENTENCES, components="all", aggregation=agg)
    assert acts.sites == ["embed.resid", "layer.0.mlp", "layer.0.resid", "layer.1.mlp", "layer.1.resid"]
    for i, words in enumerate(SENTENCES):
        assert acts.units(i) == words
        for site in acts.sites:
            np.testing.assert_allclose(
                acts.sentence(i, site), reference(m, family, words, site, agg), atol=2e-5
            )


def test_token_activations_match_independent_computation(tiny_models, family: str) -> None:
    m = tiny_models[family]
    acts = extract_activations(m, SENTENCES, components="all", granularity="token")
    for i, words in enumerate(SENTENCES):
        for site in acts.sites:
            np.testing.assert_allclose(
                acts.sentence(i, site), reference(m, family, words, site, "token"), atol=2e-5
            )
        assert "".join(acts.units(i)).replace(" ", "").lower() == "".join(words).lower() or family != "bert"
        assert len(acts.word_ids(i)) == len(acts.units(i))


def test_batch_composition_does_not_change_results(tiny_models, family: str) -> None:
    m = tiny_models[family]
    together = extract_activations(m, SENTENCES, components="all")
    for batch_size in (1, 3):
        apart = extract_activations(m, SENTENCES, components="all", batch_size=batch_size)
        for site in together.sites:
            np.testing.assert_allclose(apart.layer(site), together.layer(site), atol=2e-5)


def test_conll_words_map_one_to_one_whatever_the_tokenizer_does(tiny_models, family: str) -> None:
    m = tiny_models[family]
    weird = [["a", "\u200b", "b"], ["3 1/2", "cups"], ["naïve", "café", "😀", "!!!"], ["x" * 300]]
    with pytest.warns(UserWarning, match="produced no token") if family == "bert" else _nothing():
        acts = extract_activations(m, weird, layers=[0])
    for i, words in enumerate(weird):
        assert acts.units(i) == words
        assert acts.sentence(i, "layer.0.resid").shape == (len(words), 16)
        assert np.isfinite(acts.sentence(i, "layer.0.resid")).all()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_plain_text_is_read_exactly_as_given(tiny_models) -> None:
    m = tiny_models["gpt2"]
    acts = extract_activations(m, ["Hello  world, it's <b>done</b>."], granularity="token")
    assert "".join(acts.units(0)) == "Hello  world, it's <b>done</b>."
    words = extract_activations(m, ["Hello  world, it's <b>done</b>."])
    assert words.units(0) == ["Hello", "world", ",", "it's", "<", "b", ">", "done", "<", "/", "b", ">", "."]


def test_long_texts_are_split_at_word_boundaries_with_a_warning(tiny_models, family: str) -> None:
    m = tiny_models[family]
    words = ("the quick brown fox jumps over the lazy dog . " * 12).split()
    with pytest.warns(UserWarning, match="split into windows"):
        acts = extract_activations(m, [words], max_length=24, components="all")
    assert acts.units(0) == words
    assert np.isfinite(acts.layer("layer.1.resid")).all()
    # the first window holds the most whole words that fit; it is encoded alone, so its rows equal a run
    # over just those words
    tok = m.tokenizer
    budget = 24 - (len(tok("a")["input_ids"]) - len(tok("a", add_special_tokens=False)["input_ids"]))
    k = max(
        k
        for k in range(1, len(words))
        if len(tok(" ".join(words[:k]), add_special_tokens=False)["input_ids"]) <= budget
    )
    assert k < len(words)
    short = extract_activations(m, [words[:k]], components="all")
    for site in acts.sites:
        np.testing.assert_allclose(acts.sentence(0, site)[:k], short.sentence(0, site), atol=2e-5)


def test_layer_and_component_selection(tiny_models) -> None:
    m = tiny_models["llama"]
    assert [s.name for s in resolve_sites(m, [-1, "embed"], "resid")] == ["embed.resid", "layer.1.resid"]
    assert [s.name for s in resolve_sites(m, 0, "mlp")] == ["layer.0.mlp"]
    with pytest.raises(ValueError, match="unknown layer 5"):
        resolve_sites(m, [5])
    with pytest.raises(ValueError, match="unknown component"):
        resolve_sites(m, None, "attn")
    with pytest.raises(ValueError, match="only a residual stream"):
        resolve_sites(m, ["embed"], "mlp")


def test_bad_inputs_get_clear_errors(tiny_models) -> None:
    m = tiny_models["bert"]
    with pytest.raises(ValueError, match="empty"):
        extract_activations(m, [])
    with pytest.raises(ValueError, match="empty"):
        extract_activations(m, ["   "])
    with pytest.raises(ValueError, match="granularity"):
        extract_activations(m, ["a b"], granularity="char")
    with pytest.raises(ValueError, match="aggregation"):
        extract_activations(m, ["a b"], aggregation="median")
    with pytest.raises(TypeError):
        extract_activations(m, [1, 2])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="2 words but 1 'upos' labels"):
        Corpus.from_words([["a", "b"]], {"upos": [["X"]]})


def test_no_hook_is_left_on_the_model_even_after_an_error(tiny_models, monkeypatch) -> None:
    m = tiny_models["gpt2"]
    from neuronwidgets.core.store import extraction

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(extraction._Extractor, "_run_batch", boom)
    with pytest.raises(KeyboardInterrupt):
        extract_activations(m, SENTENCES)
    monkeypatch.undo()
    extract_activations(m, SENTENCES, components="all")
    for mod in m.model.modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks


# -- the on-disk store ----------------------------------------------------------------------------


def _corpus(n: int) -> list[list[str]]:
    rng = np.random.default_rng(0)
    vocab = [
        "the",
        "a",
        "fox",
        "dog",
        "jumps",
        "over",
        "lazy",
        "quick",
        "brown",
        "cat",
        "sat",
        "on",
        "mat",
        ".",
        ",",
        "!",
    ]
    return [list(rng.choice(vocab, size=int(rng.integers(1, 14)))) for _ in range(n)]


def test_store_matches_memory_and_reopens_without_the_model(tiny_models, tmp_path) -> None:
    m = tiny_models["bert"]
    data = _corpus(23)
    mem = extract_activations(m, data, components="all")
    disk = extract_activations(m, data, components="all", store=tmp_path / "acts", chunk_sentences=5)
    assert disk.num_chunks == len(row_blocks([len(w) for w in data], 5)) and disk.num_sentences == 23
    again = Activations.open(tmp_path / "acts")
    for site in mem.sites:
        np.testing.assert_allclose(again.layer(site), mem.layer(site), atol=2e-5)
    assert again.units(17) == data[17]
    np.testing.assert_allclose(again.sentence(17, "layer.1.mlp"), mem.sentence(17, "layer.1.mlp"), atol=2e-5)
    np.testing.assert_allclose(
        again.neuron("layer.0.resid:3", sentences=[2, 19]),
        mem.neuron("layer.0.resid:3", sentences=[2, 19]),
        atol=2e-5,
    )
    assert again.matrix().shape == (sum(map(len, data)), 16 * 3 + 24 * 2)
    assert again.feature_names()[0] == "embed.resid:0"
    # a Zarr v3 store: no pickle, no .npy
    files = [p for p in (tmp_path / "acts").rglob("*") if p.is_file()]
    assert (tmp_path / "acts" / "zarr.json").exists() and not any(p.suffix == ".npy" for p in files)


def _padding(counts: np.ndarray, blocks: list[tuple[int, int]]) -> float:
    rows = np.array([counts[a:b].sum() for a, b in blocks])
    return 1 - rows.sum() / (len(rows) * rows.max())


def test_blocks_are_cut_by_rows_with_little_padding() -> None:
    rng = np.random.default_rng(0)
    # documents of short and of long sentences, as in a real corpus in its order
    counts = np.concatenate(
        [rng.integers(lo, hi, 300) for lo, hi in [(3, 8), (30, 60), (1, 4), (20, 40)] * 3]
    )
    fixed = [(a, min(a + 64, len(counts))) for a in range(0, len(counts), 64)]
    blocks = row_blocks(counts, 64)
    assert blocks[0][0] == 0 and blocks[-1][1] == len(counts)
    assert all(b1 == a2 for (_, b1), (a2, _) in itertools.pairwise(blocks))
    target = -(-counts.sum() * 64 // len(counts))
    assert all(0 < b - a <= 256 for a, b in blocks)
    assert all(counts[a:b].sum() <= target or b - a == 1 for a, b in blocks)
    assert abs(len(blocks) - len(fixed)) <= 0.1 * len(fixed)  # about as many chunks
    assert _padding(counts, fixed) > 0.4 and _padding(counts, blocks) < 0.05
    # equal lengths: exactly chunk_sentences per block; a sentence over the target has a block of its own
    assert row_blocks([7] * 10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert row_blocks([2, 2, 50, 2, 2], 2)[1] == (2, 3)
    assert row_blocks([0] * 19, 2) == [(0, 8), (8, 16), (16, 19)]  # rowless sentences: at most 4x as many
    assert row_blocks([], 5) == []


def test_interrupted_extraction_resumes_with_identical_results(tiny_models, tmp_path, monkeypatch) -> None:
    m = tiny_models["gpt2"]
    data = _corpus(20)
    full = extract_activations(m, data, components="all", store=tmp_path / "full", chunk_sentences=4)

    from neuronwidgets.core.store import zarrstore

    real_write = zarrstore.ZarrStore.write_block
    calls = {"n": 0}

    def write_then_die(self, k, chunk):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_write(self, k, chunk)

    monkeypatch.setattr(zarrstore.ZarrStore, "write_block", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        extract_activations(m, data, components="all", store=tmp_path / "resumed", chunk_sentences=4)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="incomplete"):
        Activations.open(tmp_path / "resumed")
    done = zarrstore.ZarrStore.open(tmp_path / "resumed").done().tolist()
    assert done[:2] == [True, True] and not any(done[2:]) and len(done) >= 4

    resumed = extract_activations(m, data, components="all", store=tmp_path / "resumed", chunk_sentences=4)
    for site in full.sites:
        assert np.array_equal(resumed.layer(site), full.layer(site))  # bit-identical
    assert [resumed.units(i) for i in range(20)] == data


def test_store_refuses_a_different_extraction(tiny_models, tmp_path) -> None:
    m = tiny_models["bert"]
    extract_activations(m, _corpus(5), store=tmp_path / "s")
    with pytest.raises(ValueError, match="different extraction"):
        extract_activations(m, _corpus(6), store=tmp_path / "s")
    # other batches pad each forward pass differently, which changes the last bits of the values
    with pytest.raises(ValueError, match=r"batching \(store: '<= 32 texts.*now: '<= 4 texts"):
        extract_activations(m, _corpus(5), store=tmp_path / "s", batch_size=4)
    again = extract_activations(m, _corpus(6), store=tmp_path / "s", overwrite=True)
    assert again.num_sentences == 6
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an activation store"):
        extract_activations(m, _corpus(5), store=tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_in_memory_activations_save_to_a_store(tiny_models, tmp_path) -> None:
    mem = extract_activations(tiny_models["llama"], _corpus(7), granularity="token")
    saved = mem.save(tmp_path / "saved")
    assert saved.path == tmp_path / "saved"
    assert np.array_equal(saved.layer("layer.1.resid"), mem.layer("layer.1.resid"))
    assert np.array_equal(saved.word_ids(3), mem.word_ids(3))
    with pytest.raises(ValueError, match="not empty"):
        mem.save(tmp_path / "saved")


def test_float16_store_halves_the_bytes(tiny_models, tmp_path) -> None:
    m = tiny_models["bert"]
    a32 = extract_activations(m, _corpus(6))
    a16 = extract_activations(m, _corpus(6), dtype="float16", store=tmp_path / "h")
    assert a16.layer("layer.1.resid").dtype == np.float16
    np.testing.assert_allclose(a16.layer("layer.1.resid"), a32.layer("layer.1.resid"), atol=5e-3)


def test_activation_readers_check_their_arguments(tiny_models) -> None:
    acts = extract_activations(tiny_models["bert"], SENTENCES[:2], layers=[0])
    with pytest.raises(ValueError, match="was not extracted"):
        acts.layer("layer.1.resid")
    with pytest.raises(ValueError, match="out of range"):
        acts.neuron("layer.0.resid:16")
    with pytest.raises(IndexError, match="out of range"):
        acts.units(5)
    frame = acts.to_frame("layer.0.resid:1")
    assert list(frame.columns) == ["sentence", "position", "word", "layer.0.resid:1"]
    assert len(frame) == sum(map(len, SENTENCES[:2]))
