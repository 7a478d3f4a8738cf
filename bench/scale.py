"""Scale benchmark: extraction to a Zarr store, streaming statistics (no store) and extraction on a Dask
LocalCluster, against the bare forward pass, in one run.

MiniLM, every layer's residual stream (embed + 6 blocks = 7 × 384 = 2,688 neurons), word-level mean,
float16 store values; the corpus is UD English-EWT dev + test (sentences over 60 words skipped) repeated
until it has ``--sentences`` sentences (repetition changes nothing for throughput: every sentence is
encoded again). Each mode runs in its own subprocess, so each line's ``peak_rss_mb`` (VmHWM) is that
mode's own peak, model included. Prints one JSON line per mode to stdout (progress on stderr):

- ``forward``: a plain batched forward pass (``output_hidden_states=True``, length-sorted batches grouped
  by the same rule as extraction, inputs tokenised before timing): the baseline;
- ``store``: ``extract_activations(..., store=tmp)`` (chunks of 256 sentences);
- ``stream``: ``extract_statistics(...)`` (moments, a 4,096-unit quantile sample, top-20 contexts and the
  0.5% firing threshold of every neuron; no store);
- ``dask``: ``extract_activations(..., store=tmp, client=Client(LocalCluster(n_workers=2,
  threads_per_worker=1)))``, the workers started without Dask's ``MALLOC_TRIM_THRESHOLD_`` (docs/store.md); ``identical``: every value, unit and offset equals the ``store`` run's.

``ratio_vs_forward`` = a mode's words/s over the forward pass's, same run: the forward pass runs first
and again last, and the ratio is over the mean of the two (``forward_words_per_s`` lists both). ``loadavg_1m`` (start, end)
says how busy the shared machine was.

Run from the repo root: ``python bench/scale.py --sentences 10000 [--modes forward,store,stream,dask]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import forward_batches, load_now, log, machine, peak_rss_mb, run_json

from neuronwidgets.core import Corpus, load_ud_english

MODES = ("forward", "store", "stream", "dask")


def load_corpus(sentences: int, max_words: int = 60) -> Corpus:
    """UD English-EWT dev + test (shipped with the package), repeated up to ``sentences`` sentences."""
    parts = [load_ud_english(split, columns=(), max_words=max_words) for split in ("dev", "test")]
    words = parts[0].words + parts[1].words
    reps = -(-sentences // len(words))
    return Corpus.from_words((words * reps)[:sentences], name=f"UD EWT dev+test x{reps}")


def child(mode: str, sentences: int, workdir: Path, workers: int) -> dict:
    """One mode, in this (sub)process; returns its JSON record."""
    import torch

    from neuronwidgets.core import extract_activations, extract_statistics, load_model

    handle = load_model("minilm")
    corpus = load_corpus(sentences)
    kw = dict(layers="all", components="resid", progress=False)
    extract_activations(handle, corpus[:32], **kw)  # warm-up, small enough not to raise the peak
    extra: dict = {}
    start = time.perf_counter()
    if mode == "forward":
        batches = forward_batches(handle, corpus)
        start = time.perf_counter()
        with torch.inference_mode():
            for inputs in batches:
                handle.model(**inputs, output_hidden_states=True)
    elif mode == "store":
        acts = extract_activations(handle, corpus, store=workdir / "store", dtype="float16", **kw)
        extra["store_gb"] = round(
            sum(f.stat().st_size for f in (workdir / "store").rglob("*") if f.is_file()) / 1e9, 3
        )
        extra["chunks"] = acts.num_chunks
    elif mode == "stream":
        st = extract_statistics(handle, corpus, k=20, sample=4096, **kw)
        extra["neurons"] = len(st.neurons)
    elif mode == "dask":
        import dask
        from distributed import Client, LocalCluster

        with (
            # without Dask's default MALLOC_TRIM_THRESHOLD_, which slows torch 1.5x (see docs/store.md)
            dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}),
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cl,
            Client(cl) as client,
        ):
            start = time.perf_counter()  # the cluster's start-up is not counted; shipping the model is
            extract_activations(handle, corpus, store=workdir / "dask", dtype="float16", client=client, **kw)
        extra["workers"] = workers
    elapsed = time.perf_counter() - start
    return {
        "mode": mode,
        "sentences": len(corpus),
        "words": corpus.num_words,
        "seconds": round(elapsed, 2),
        "words_per_s": round(corpus.num_words / elapsed, 1),
        "peak_rss_mb": peak_rss_mb(),
        "torch_threads": torch.get_num_threads(),
        **extra,
    }


def identical(a: Path, b: Path) -> bool:
    """Every value, unit and offset of two stores equal, block by block (both read through their checks)."""
    import numpy as np

    from neuronwidgets.core import Activations

    x, y = Activations.open(a), Activations.open(b)
    if x.sites != y.sites or x.num_chunks != y.num_chunks or not np.array_equal(x.offsets, y.offsets):
        return False
    for k in range(x.num_chunks):
        cx, cy = x.read_chunk(k, x.sites), y.read_chunk(k, y.sites)
        if cx.units != cy.units:
            return False
        for s in x.sites:
            if not np.array_equal(cx.arrays[s], cy.arrays[s]):
                return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, nargs="+", default=[10_000])
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None, help="where the temporary stores go")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.sentences[0], args.workdir, args.workers)))
        return
    modes = args.modes.split(",")
    # the forward baseline runs first and again last (this VM's forward pass varies by about ±10 % from
    # one run to the next): each ratio is over the mean of the two
    runs = [*modes, "forward"] if "forward" in modes and len(modes) > 1 else modes
    for n in args.sentences:
        load_start = load_now()
        tmp = Path(tempfile.mkdtemp(prefix="nw-scale-", dir=args.workdir))
        records = []
        try:
            for mode in runs:
                log(f"{mode}: {n} sentences")
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    mode,
                    "--sentences",
                    str(n),
                    "--workdir",
                    str(tmp),
                ]
                rec = run_json([*cmd, "--workers", str(args.workers)])
                if rec is None:
                    continue
                if mode == "dask":
                    rec["identical"] = (
                        identical(tmp / "store", tmp / "dask") if (tmp / "store").exists() else None
                    )
                log(json.dumps(rec))  # as soon as it is measured
                records.append(rec)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        forwards = [r["words_per_s"] for r in records if r["mode"] == "forward"]
        forward = sum(forwards) / len(forwards) if forwards else None
        for rec in records:
            rec["forward_words_per_s"] = forwards
            rec["ratio_vs_forward"] = round(rec["words_per_s"] / forward, 3) if forward else None
            rec["machine"] = machine(load_start)
            print(json.dumps({"bench": "scale", **rec}), flush=True)


if __name__ == "__main__":
    main()
