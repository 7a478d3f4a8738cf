"""Small files shipped inside the package (the sentiment head's weights and model card)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent


def sentiment_head_path() -> Path:
    return ASSETS / "minilm_sentiment_head.safetensors"
