"""Ablation live-loop benchmark: a new intervention state → its prediction, against a plain forward pass.

For each model (``minilm-sentiment``, ``smollm2``) and a 12-word input, prints ONE JSON line to stdout:

    {"model", "path", "update_ms_p50", "update_ms_p95", "forward_ms_p50", "ratio", "tokens", "threads"}

(one line per model and path).

- ``update``: one state change → prediction, end to end. Each state is new: 20 neurons of a middle
  layer's MLP, each with a random scale factor in [0, 2]. Two paths, one line each:

  - ``path="core.predict"``: ``predict(model, text, interventions=Intervention.scale(state))`` with the
    text's prefix cache warm (20 random neurons per state);
  - ``path="widget"``: an :class:`~neuronwidgets.widgets.AblationPanel` over 20 random neurons of that
    layer receives the new slider state as the browser sends it (one comm ``update`` message: float32
    scales buffer + request id, through ``_handle_msg``), until its ``prediction`` trait answers that id
    and the answer has been serialised for the comm (buffers split out, as ipywidgets sends it). No
    browser: in process, so it measures the kernel's part of the live loop.
- ``forward``: a plain forward pass of the same tokenised input (``model(**inputs)``), in the same run.
- Both run under ``torch.inference_mode`` with the same threads, warmed up, then interleaved ``--repeats``
  times; ``ratio`` = update p50 / forward p50 (target ≤ 1.2, then < 1.0 with the prefix cache).

Run from the repo root: ``python bench/ablation.py [--repeats 40] [--models minilm-sentiment smollm2]
[--paths core.predict widget]``.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _common import log

from neuronwidgets.core import Intervention, ModelHandle, load_model, predict

TEXT = "The film was a quiet and moving story about two old friends"  # 12 words
NEURONS_PER_STATE = 20
PATHS = ("core.predict", "widget")

State = dict[str, float]


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


def widget_update(handle: ModelHandle, text: str, neurons: list[str]) -> Callable[[State], Any]:
    """The widget path: the browser's comm message with a new state → the panel's answer sent."""
    from ipywidgets.widgets.widget import _remove_buffers

    from neuronwidgets.widgets import AblationPanel

    panel = AblationPanel(handle, text, neurons)  # computes the clean prediction: warms the cache
    sent: list[Any] = []
    panel.comm.send = lambda data=None, metadata=None, buffers=None: sent.append(data)  # type: ignore[method-assign]
    panel.comm.kernel = object()  # as if a kernel were connected: ipywidgets serialises and sends
    counter = iter(range(1, 1 << 30))

    def update(state: State) -> Any:
        rid = next(counter)
        scales = np.array([state[n] for n in neurons], dtype="<f4")
        message, paths, buffers = _remove_buffers(
            {
                "scales": {"dtype": "float32", "shape": [len(neurons)], "view": memoryview(scales.tobytes())},
                "random_k": 0,
                "random_seed": 0,
                "request_id": rid,
            }
        )
        msg = {
            "content": {"data": {"method": "update", "state": message, "buffer_paths": paths}},
            "buffers": buffers,
        }
        sent.clear()
        panel._handle_msg(msg)
        if panel.prediction["request_id"] != rid or panel.prediction["error"]:
            raise RuntimeError(f"the panel did not answer request {rid}: {panel.prediction.get('error')}")
        if not any(d["method"] == "update" and "prediction" in d["state"] for d in sent):
            raise RuntimeError(f"the panel did not send its answer to request {rid}")
        return panel.prediction

    return update


def panel_states(handle: ModelHandle, n: int, seed: int) -> tuple[list[str], list[State]]:
    """20 random MLP neurons of the middle layer (the panel's) and ``n`` slider states over them."""
    rng = np.random.default_rng(seed + 1)
    layer = handle.num_layers // 2
    idx = rng.choice(handle.mlp_size, size=NEURONS_PER_STATE, replace=False)
    neurons = [f"layer.{layer}.mlp:{int(i)}" for i in idx]
    return neurons, [
        {n: float(f) for n, f in zip(neurons, rng.uniform(0, 2, len(neurons)).astype(np.float32))}
        for _ in range(n)
    ]


def run_model(name: str, repeats: int, seed: int, paths: list[str]) -> None:
    log(f"loading {name}")
    handle = load_model(name)
    inputs = handle.encode([TEXT])

    def forward() -> Any:
        with torch.inference_mode():
            return handle.model(**inputs)

    for path in paths:
        log(f"{name} / {path}: {repeats} updates, {torch.get_num_threads()} threads")
        if path == "core.predict":
            states = random_states(handle, repeats + 3, seed)
            update = core_predict_update(handle, TEXT)
        else:
            neurons, states = panel_states(handle, repeats + 3, seed)
            update = widget_update(handle, TEXT, neurons)
        result = bench_update(forward, update, states)
        line = {
            "model": name,
            "path": path,
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
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    args = parser.parse_args()
    for name in args.models:
        run_model(name, args.repeats, args.seed, args.paths)


if __name__ == "__main__":
    main()
