"""Ablation live-loop benchmark: a new intervention state → its prediction, against a plain forward pass.

For each model (``minilm-sentiment``, ``smollm2``) and a 12-word input, prints ONE JSON line to stdout:

    {"model", "path", "update_ms_p50", "update_ms_p95", "forward_ms_p50", "ratio", "tokens", "threads"}

- ``update``: one state change → prediction, end to end. Each state is new: 20 neurons of a middle
  layer's MLP, each with a random scale factor in [0, 2]. ``path="core.predict"`` measures
  ``predict(model, text, interventions=Intervention.scale(state))`` with the text's prefix cache warm.
  Other paths (the AblationPanel's state change → prediction set) plug in as another ``update`` callable:
  see :func:`bench_update`.
- ``forward``: a plain forward pass of the same tokenised input (``model(**inputs)``), in the same run.
- Both run under ``torch.inference_mode`` with the same threads, warmed up, then interleaved ``--repeats``
  times; ``ratio`` = update p50 / forward p50 (target ≤ 1.2, then < 1.0 with the prefix cache).

Run from the repo root: ``python bench/ablation.py [--repeats 40] [--models minilm-sentiment smollm2]``.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from neuronwidgets.core import Intervention, ModelHandle, load_model, predict

TEXT = "The film was a quiet and moving story about two old friends"  # 12 words
NEURONS_PER_STATE = 20

State = dict[str, float]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def random_states(handle: ModelHandle, n: int, seed: int) -> list[State]:
    """``n`` different slider states over 20 random MLP neurons of the middle layer."""
    rng = np.random.default_rng(seed)
    layer = handle.num_layers // 2
    states = []
    for _ in range(n):
        idx = rng.choice(handle.mlp_size, size=NEURONS_PER_STATE, replace=False)
        states.append(
            {f"layer.{layer}.mlp:{int(i)}": float(f) for i, f in zip(idx, rng.uniform(0, 2, len(idx)))}
        )
    return states


def bench_update(
    forward: Callable[[], Any], update: Callable[[State], Any], states: list[State], warmup: int = 3
) -> dict[str, float]:
    """Time ``update(state)`` for each state (one new state per call) interleaved with ``forward()``.

    ``update`` is the path under test, from a state change to the new prediction being available (for the
    widget: setting the state on the widget model until its prediction trait is set).
    """
    for state in states[:warmup]:
        forward()
        update(state)
    fwd, upd = [], []
    for state in states[warmup:]:
        t0 = time.perf_counter()
        forward()
        t1 = time.perf_counter()
        update(state)
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        upd.append(t2 - t1)
    f50 = statistics.median(fwd) * 1e3
    u50 = statistics.median(upd) * 1e3
    return {
        "update_ms_p50": round(u50, 3),
        "update_ms_p95": round(float(np.percentile(np.array(upd) * 1e3, 95)), 3),
        "forward_ms_p50": round(f50, 3),
        "ratio": round(u50 / f50, 3),
    }


def core_predict_update(handle: ModelHandle, text: str) -> Callable[[State], Any]:
    """The core path: ``predict`` under a new scale state (the prefix cache warm for ``text``)."""
    predict(handle, text)  # the panel shows the clean prediction first: this warms the cache

    def update(state: State) -> Any:
        return predict(handle, text, Intervention.scale(state))

    return update


def run_model(name: str, repeats: int, seed: int) -> None:
    log(f"loading {name}")
    handle = load_model(name)
    inputs = handle.encode([TEXT])

    def forward() -> Any:
        with torch.inference_mode():
            return handle.model(**inputs)

    states = random_states(handle, repeats + 3, seed)
    log(f"{name}: {repeats} updates, {torch.get_num_threads()} threads")
    result = bench_update(forward, core_predict_update(handle, TEXT), states)
    line = {
        "model": name,
        "path": "core.predict",
        **result,
        "tokens": int(inputs["input_ids"].shape[1]),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["minilm-sentiment", "smollm2"])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in args.models:
        run_model(name, args.repeats, args.seed)


if __name__ == "__main__":
    main()
