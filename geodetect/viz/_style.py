"""Colours shared by the kepler.gl maps and the PNG quicklooks: one colour per class, everywhere.

>>> class_colors(["b", "a", "b"])
{'a': '#e6194b', 'b': '#3cb44b'}
"""

from __future__ import annotations

__all__ = ["PALETTE", "SEQUENTIAL", "class_colors"]

# Qualitative, high-contrast on both dark basemaps and imagery (Sasha Trubetskoy's 20 distinct colours).
PALETTE = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
    "#808000", "#ffd8b1", "#000075", "#808080",
)
# Sequential ramps (ColorBrewer), low to high.
SEQUENTIAL = {
    "regions": ("#ffffcc", "#c7e9b4", "#7fcdbb", "#41b6c4", "#2c7fb8", "#253494"),
    "h3": ("#fff7ec", "#fdd49e", "#fdbb84", "#fc8d59", "#e34a33", "#b30000"),
    "heatmap": ("#5A1846", "#900C3F", "#C70039", "#E3611C", "#F1920E", "#FFC300"),
}


def class_colors(classes) -> dict[str, str]:
    """Class name -> hex colour; classes are sorted so the same names always get the same colours."""
    names = sorted({str(c) for c in classes})
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(names)}


def hex_to_rgb(h: str) -> list[int]:
    h = h.lstrip("#")
    return [int(h[i:i + 2], 16) for i in (0, 2, 4)]
