"""Shared fixtures: tiny random models of every supported family, saved to local folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# No test may reach a model hub: unknown names must fail fast and clearly.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import FAMILIES, make_tiny_model


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {f: make_tiny_model(f, root / f) for f in FAMILIES}


@pytest.fixture(scope="session")
def tiny_models(tiny_dirs: dict[str, Path]):
    from neuronwidgets.core import load_model

    return {f: load_model(str(d)) for f, d in tiny_dirs.items()}


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def minilm():
    from neuronwidgets.core import load_model

    return load_model("minilm")


@pytest.fixture(scope="session")
def ud_dev() -> Path:
    """The gold UD English EWT dev file shipped with the package (never skipped: it is package data)."""
    from neuronwidgets.core import ud_english_path

    return ud_english_path("dev")
