"""The diverging palette of every widget, for matplotlib figures (the same ends as js/shared/colour.ts):
negative → purple, zero → white (the paper), positive → orange; symmetric scale."""

from __future__ import annotations

from typing import Any

NEG = "#5e3c99"
POS = "#e66101"
ZERO = "#ffffff"


def diverging_cmap() -> Any:
    """A matplotlib colormap from ``NEG`` through white to ``POS`` (linear in sRGB, like the browser)."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("neuronwidgets_puor", [NEG, ZERO, POS])


def text_colour(rgb: tuple[float, float, float]) -> str:
    """Black or white text, whichever contrasts more with a tile of colour ``rgb`` (0…1 floats, WCAG)."""
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    lum = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return "#000000" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "#ffffff"
