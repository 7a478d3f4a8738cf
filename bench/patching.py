"""Activation-patching sweep benchmark: our :func:`~neuronwidgets.core.patch` against nnsight's batched
pattern and a plain one-forward-per-cell hook loop, in the same run, with the same thread count.

The sweep: SmolLM2-135M, one prompt pair ("The Eiffel Tower is located in the city of" / "The Colosseum
is located in the city of", 10 tokens each), the residual stream after each of the 30 blocks × every
position (300 patches), restoring the clean state into the corrupted run; the metric is the logit
difference " Paris" − " Rome" at the last position.

- ``ours``: ``patch(model, clean, corrupted, target=" Paris", foil=" Rome")`` (recording both runs
  included);
- ``nnsight``: nnsight's batched pattern: one ``trace`` of the clean prompt saving every block's output,
  then one ``trace`` (``logits_to_keep=1``) with one ``invoke`` per patch, each writing one clean state and
  saving the last position's logits (nnsight from PyPI, in the bench only; it wraps the already-loaded
  model, ``LanguageModel(hf_model, tokenizer=tok)``, so it works offline);
- ``loop``: one full forward pass per cell with a forward hook (how TransformerLens's patching helpers
  work).

Prints ONE JSON line per repeat: ``ours_s``, ``nnsight_s``, ``loop_s``, ``ratio_vs_nnsight`` (ours /
nnsight), ``ratio_vs_loop``, ``max_abs_diff`` (largest |ours − nnsight| over the grid),
``max_abs_diff_loop``, ``cells``, ``threads``, ``machine``. Run from the repo root:
``python bench/patching.py [--repeats 1] [--threads 1] [--skip-loop]``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _common import load_now, log, machine

CLEAN = "The Eiffel Tower is located in the city of"
CORRUPT = "The Colosseum is located in the city of"
TARGET, FOIL = " Paris", " Rome"


def ours(handle) -> np.ndarray:
    from neuronwidgets.core import patch

    return patch(handle, CLEAN, CORRUPT, target=TARGET, foil=FOIL).values


def clean_states(handle) -> list[torch.Tensor]:
    """Every block's output on the clean prompt (one plain forward pass with hooks)."""
    states: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, a, o: states.append(o.detach())) for b in handle.blocks]
    try:
        with torch.no_grad():
            handle.model(**handle.encode([CLEAN]), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return states


def nnsight_sweep(
    handle, lm, t: int, f: int, layers: int | None = None, positions: int | None = None
) -> np.ndarray:
    """nnsight's batched pattern: one trace, one invoke per patch, logits of the last position saved."""
    blocks = lm.model.layers
    n = layers or handle.num_layers
    length = positions or handle.encode([CLEAN])["input_ids"].shape[1]
    clean = clean_states(handle)
    with torch.no_grad():  # noqa: SIM117  (nnsight reads the trace block's own source)
        with lm.trace(logits_to_keep=1) as tracer:
            saved = [].save()
            for i in range(n):
                for p in range(length):
                    with tracer.invoke(CORRUPT):
                        blocks[i].output[:, p] = clean[i][:, p]
                        saved.append(lm.lm_head.output[:, -1])
    logits = torch.stack([torch.as_tensor(s).reshape(-1) for s in saved])
    return (logits[:, t] - logits[:, f]).reshape(n, length).double().numpy()


def loop(handle, t: int, f: int) -> np.ndarray:
    n = handle.num_layers
    clean_enc, corrupt_enc = handle.encode([CLEAN]), handle.encode([CORRUPT])
    length = clean_enc["input_ids"].shape[1]
    out = np.zeros((n, length))
    states = clean_states(handle)  # block outputs (hidden_states[-1] would carry the final norm)
    with torch.no_grad():
        for i in range(n):
            for p in range(length):

                def hook(module, args, output, i=i, p=p):
                    edited = output.clone()
                    edited[:, p] = states[i][:, p]
                    return edited

                r = handle.blocks[i].register_forward_hook(hook)
                try:
                    lg = handle.model(**corrupt_enc, use_cache=False).logits[0, -1]
                finally:
                    r.remove()
                out[i, p] = float(lg[t] - lg[f])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-loop", action="store_true", help="leave out the slow one-forward-per-cell loop")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_start = load_now()
    from nnsight import LanguageModel

    from neuronwidgets.core import load_model

    handle = load_model("smollm2")
    tok = handle.tokenizer
    t = tok(TARGET, add_special_tokens=False)["input_ids"][0]
    f = tok(FOIL, add_special_tokens=False)["input_ids"][0]
    lm = LanguageModel(handle.model, tokenizer=tok)
    log("warm-up")
    ours(handle)
    for r in range(args.repeats):
        log(f"repeat {r + 1}: ours")
        t0 = time.perf_counter()
        grid = ours(handle)
        ours_s = time.perf_counter() - t0
        log(f"ours {ours_s:.2f} s; nnsight")
        t0 = time.perf_counter()
        nn_grid = nnsight_sweep(handle, lm, t, f)
        nnsight_s = time.perf_counter() - t0
        log(f"nnsight {nnsight_s:.2f} s")
        loop_s = None
        diff_loop = None
        if not args.skip_loop:
            log("one forward per cell")
            t0 = time.perf_counter()
            loop_grid = loop(handle, t, f)
            loop_s = time.perf_counter() - t0
            diff_loop = float(np.abs(grid - loop_grid).max())
            log(f"loop {loop_s:.2f} s")
        print(
            json.dumps(
                {
                    "bench": "patching",
                    "model": "smollm2",
                    "cells": int(grid.size),
                    "ours_s": round(ours_s, 3),
                    "nnsight_s": round(nnsight_s, 3),
                    "loop_s": None if loop_s is None else round(loop_s, 3),
                    "ratio_vs_nnsight": round(ours_s / nnsight_s, 3),
                    "ratio_vs_loop": None if loop_s is None else round(ours_s / loop_s, 4),
                    "max_abs_diff": float(np.abs(grid - nn_grid).max()),
                    "max_abs_diff_loop": diff_loop,
                    "threads": torch.get_num_threads(),
                    "machine": machine(load_start),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
