"""Small matplotlib helpers shared by the results' ``.plot()`` methods."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SHORT = 2  # labels of at most this many characters stand upright


def token_xticks(ax: Any, labels: Sequence[str], rotation: float = 60) -> None:
    """Label the x axis with one tick per token, turned by ``rotation`` degrees to fit; a label of one or
    two characters (";", ",", "'s") stays upright and centred: turned on its side, ";" reads as "."."""
    ax.set_xticks(range(len(labels)), list(labels), rotation=rotation, ha="right")
    for tick, label in zip(ax.get_xticklabels(), labels):
        if len(str(label)) <= SHORT:
            tick.set_rotation(0)
            tick.set_horizontalalignment("center")
