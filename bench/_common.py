"""Helpers shared by the benches: progress lines on stderr, peak memory, the machine record, and running
the NeuroX anchor (a script outside this repository, named by ``$NEUROX_BASELINE``) in its own
interpreter. The data is the gold UD English EWT shipped with the package."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuronwidgets.core import ud_english_path

if TYPE_CHECKING:
    import torch

    from neuronwidgets.core import Corpus

UD = ud_english_path("dev").parent
DEV, TEST = ud_english_path("dev").name, ud_english_path("test").name
NEUROX_PYTHON = os.environ.get("NEUROX_PYTHON", "/tmp/neurox-env/bin/python")
# NeuroX's side-by-side script is not part of neuronwidgets (the project must not depend on NeuroX)
NEUROX_BASELINE = os.environ.get("NEUROX_BASELINE", "")


BATCH_SIZE, MAX_BATCH_TOKENS = 32, 4096  # extract_activations' defaults, used by the forward baselines


def forward_batches(handle: Any, corpus: Corpus) -> list[dict[str, torch.Tensor]]:
    """The forward baseline's inputs: the texts extraction reads, tokenised with special tokens, sorted
    longest first and grouped by the same rule as ``extract_activations`` (≤ 32 texts, ≤ 4,096 padded
    tokens)."""
    import torch

    ids = sorted(handle.tokenizer(corpus.texts, add_special_tokens=True)["input_ids"], key=len, reverse=True)
    groups: list[list[list[int]]] = []
    for seq in ids:
        if (
            groups
            and len(groups[-1]) < BATCH_SIZE
            and len(groups[-1][0]) * (len(groups[-1]) + 1) <= MAX_BATCH_TOKENS
        ):
            groups[-1].append(seq)
        else:
            groups.append([seq])
    batches = []
    for group in groups:
        width = len(group[0])
        input_ids = torch.full((len(group), width), handle.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for r, seq in enumerate(group):
            input_ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1
        batches.append({"input_ids": input_ids, "attention_mask": mask})
    return batches


def add_corpus_arguments(ap: argparse.ArgumentParser) -> None:
    """``--data``, ``--sentences`` and ``--max-words``: which UD English-EWT sentences a bench reads."""
    ap.add_argument("--data", type=Path, default=UD, help="UD English-EWT folder")
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument(
        "--max-words", type=int, default=60, help="skip longer sentences (as the NeuroX anchor does)"
    )


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: a child started by subprocess
    inherits its parent's ru_maxrss (vfork + exec on Linux), so it could not show a smaller peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def load_now() -> float:
    """The 1-minute load average, with a warning when it exceeds the CPUs (timings will be noisy)."""
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        log(f"load average {load:.1f} exceeds the {os.cpu_count()} CPUs: timings will be noisy")
    return load


def machine(load_start: float) -> dict:
    """What the numbers were measured on, and how busy it was at the start and at the end."""
    import numpy as np
    import torch

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "loadavg_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],
    }


def run_json(cmd: list[str]) -> dict | None:
    """Run a command and parse the JSON on its last stdout line (None, with a log line, if it fails)."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        log(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
        return None
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        log(f"no JSON line from {' '.join(cmd)}: {lines[-1][:200]}")
        return None


def run_neurox(python: str | Path, conllu: Path, sentences: int) -> dict | None:
    """The NeuroX anchor on the first ``sentences`` of ``conllu`` (extraction, probe, ordering), or None
    when its interpreter is missing or it fails."""
    from neuronwidgets.core.models.offline import minilm_path

    python = Path(python)
    if not python.exists():
        log(f"NeuroX interpreter {python} not found: neurox_* fields are null")
        return None
    script = Path(NEUROX_BASELINE)
    if not NEUROX_BASELINE or not script.exists():
        log(
            "NeuroX anchor script not found (set $NEUROX_BASELINE to neurox_baseline.py): neurox_* fields are null"
        )
        return None
    log("NeuroX baseline in its own venv")
    with tempfile.TemporaryDirectory(prefix="nw-neurox-") as tmp:
        cmd = [str(python), str(script), str(minilm_path()), str(conllu), tmp]
        return run_json([*cmd, "--max-sents", str(sentences)])
