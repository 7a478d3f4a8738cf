"""Data: corpora (CoNLL-U, parallel files, plain text, spaCy annotation) with their per-word labels."""

from .corpus import Corpus, annotate, as_corpus, load_conllu, load_parallel, load_ud_english, ud_english_path

__all__ = [
    "Corpus",
    "annotate",
    "as_corpus",
    "load_conllu",
    "load_parallel",
    "load_ud_english",
    "ud_english_path",
]
