"""Models the user already has (wrap_model), names accepted everywhere, and device selection ("auto":
CUDA, then MPS, then CPU) with availability mocked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neuronwidgets.core as nw
from neuronwidgets.core.models import loading, runtime


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, no_accelerators) -> None:
    assert nw.resolve_device("auto") == torch.device("cpu")
    assert nw.resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(runtime, "_mps_available", lambda: True)
    assert nw.resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert nw.resolve_device("AUTO") == torch.device("cuda")


def test_explicit_devices_are_checked(no_accelerators) -> None:
    assert nw.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        nw.resolve_device("cuda")
    with pytest.raises(ValueError, match="MPS is not available"):
        nw.resolve_device("mps")
    with pytest.raises(ValueError, match="device must be 'auto'"):
        nw.resolve_device("gpu please")


def test_load_model_auto_on_cpu_names_the_device(tiny_dirs, no_accelerators) -> None:
    handle = nw.load_model(str(tiny_dirs["gpt2"]))  # device="auto" by default
    assert handle.device == torch.device("cpu")
    assert "device='cpu'" in repr(handle)


def test_loading_shows_no_transformers_progress_bar(tiny_dirs, capfd) -> None:
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    nw.load_model(str(tiny_dirs["bert"]))
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the user's setting is back


def test_wrap_model_is_accepted_like_a_loaded_model(tiny_dirs) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = str(tiny_dirs["gpt2"])
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    handle = nw.wrap_model(model, tokenizer, name="my-gpt2")
    assert handle.model is model and handle.kind == "causal-lm" and handle.name == "my-gpt2"
    reference = nw.load_model(folder, device="cpu")
    text = "the cat sat"
    a = nw.predict(handle, text)
    b = nw.predict(reference, text)
    assert a.labels == b.labels
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    with pytest.raises(TypeError, match="wrap_model"):
        nw.predict(model, text)
    with pytest.raises(TypeError, match="transformers tokenizer"):
        nw.wrap_model(model, "not a tokenizer")
    with pytest.raises(ValueError, match="unknown kind"):
        nw.wrap_model(model, tokenizer, kind="vision")


def test_names_are_accepted_and_shared(tiny_dirs, monkeypatch) -> None:
    monkeypatch.setattr(loading, "_HANDLES", {})
    folder = str(tiny_dirs["gpt2"])
    text = "the cat sat"
    clean = nw.predict(folder, text)
    handle = nw.as_handle(folder)
    assert nw.as_handle(folder) is handle  # one model per name: hooks and predictions meet
    neurons = ["layer.1.mlp:0", "layer.1.mlp:1", "layer.1.mlp:2"]
    with nw.ablate(folder, neurons):
        ablated = nw.predict(folder, text)
    expected = nw.predict(handle, text, nw.Intervention.zero(neurons))
    np.testing.assert_allclose(ablated.probs, expected.probs, atol=1e-6)
    effect = nw.measure_effect(folder, [text], nw.Intervention.zero(neurons))
    assert effect.labels == [clean.labels[0]]
