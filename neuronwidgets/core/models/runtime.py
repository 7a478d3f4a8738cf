"""Where models run and how quietly they load: ``device="auto"`` (CUDA, then Apple MPS, then CPU) and no
library progress bar in notebook outputs while weights load."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The device to run on, checked against this machine.

    Args:
        device: ``"auto"`` (or ``None``): CUDA if available, then Apple MPS, then CPU; anything else is
            checked as a ``torch.device`` (``"cpu"``, ``"cuda:1"``, ``"mps"``) and must be available.

    Returns:
        The device.

    Raises:
        ValueError: For a string that is not a device, or a device this machine does not have.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:<i>' or 'mps', got {device!r} ({err})"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r}: CUDA is not available on this machine; use device='auto' or 'cpu'"
        )
    if dev.type == "mps" and not _mps_available():
        raise ValueError(
            f"device {device!r}: Apple MPS is not available on this machine; use 'auto' or 'cpu'"
        )
    return dev


@contextmanager
def quiet_loading() -> Iterator[None]:
    """No transformers progress bar ("Loading weights") while inside; the user's setting comes back after."""
    hf_logging: Any
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
