"""Tiny random-initialised models of each supported family, saved to local folders like real ones.

Tokenizers are trained on a few sentences with the ``tokenizers`` library, so nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A wonderful, moving film about friendship and loss!",
    "It's not bad at all; the actors don't disappoint.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "Numbers like 3.14 and 2026 appear in text, as do e-mails and state-of-the-art ideas.",
    "<img src=x onerror=alert(1)> should be shown as text.",
]
FAMILIES = ("bert", "roberta", "gpt2", "llama")


def _train_bpe(byte_level: bool, specials: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None if byte_level else "<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 5, trainer)
    return tok


def make_tiny_model(family: str, folder: Path, seed: int = 0) -> Path:
    """Build and save a tiny random ``family`` model (2 layers, hidden 16, MLP 24) with its tokenizer."""
    import transformers as T
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if family == "bert":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok.train_from_iterator(
            CORPUS * 5, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials)
        )
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        from tokenizers import decoders

        tok.decoder = decoders.WordPiece()
        fast = T.PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            model_max_length=64,
        )
        config = T.BertConfig(
            vocab_size=len(fast),
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=24,
            max_position_embeddings=64,
            architectures=["BertModel"],
        )
        model = T.BertModel(config)
    elif family == "roberta":
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tok = _train_bpe(True, specials)
        tok.post_processor = processors.RobertaProcessing(
            ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>"))
        )
        fast = T.PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            pad_token="<pad>",
            cls_token="<s>",
            sep_token="</s>",
            mask_token="<mask>",
            model_max_length=62,
        )
        config = T.RobertaConfig(
            vocab_size=len(fast),
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=24,
            max_position_embeddings=64,
            pad_token_id=fast.pad_token_id,
            architectures=["RobertaForSequenceClassification"],
            num_labels=3,
            id2label={0: "neg", 1: "neu", 2: "pos"},
            label2id={"neg": 0, "neu": 1, "pos": 2},
        )
        model = T.RobertaForSequenceClassification(config)
    elif family == "gpt2":
        tok = _train_bpe(True, ["<|endoftext|>"])
        fast = T.PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<|endoftext|>",
            eos_token="<|endoftext|>",
            unk_token="<|endoftext|>",
            model_max_length=64,
        )
        config = T.GPT2Config(
            vocab_size=len(fast),
            n_embd=16,
            n_layer=2,
            n_head=2,
            n_inner=24,
            n_positions=64,
            bos_token_id=fast.bos_token_id,
            eos_token_id=fast.eos_token_id,
            architectures=["GPT2LMHeadModel"],
        )
        model = T.GPT2LMHeadModel(config)
    elif family == "llama":
        tok = _train_bpe(True, ["<unk>", "<s>", "</s>"])
        fast = T.PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=64
        )
        config = T.LlamaConfig(
            vocab_size=len(fast),
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=24,
            max_position_embeddings=64,
            bos_token_id=fast.bos_token_id,
            eos_token_id=fast.eos_token_id,
            architectures=["LlamaForCausalLM"],
        )
        model = T.LlamaForCausalLM(config)
    else:
        raise ValueError(family)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
