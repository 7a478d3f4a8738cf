"""Small files shipped inside the package (the sentiment model's fine-tuned weights and model card)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent


def sentiment_weights_path() -> Path:
    """The fine-tuned top blocks and head of ``"minilm-sentiment"`` (a delta over all-MiniLM-L6-v2)."""
    return ASSETS / "minilm_sentiment.safetensors"


def sentiment_meta_path() -> Path:
    """Labels, training settings and measured accuracies of ``"minilm-sentiment"``."""
    return ASSETS / "minilm_sentiment.json"
