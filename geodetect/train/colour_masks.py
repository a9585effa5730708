"""Images with RGB colour-coded class masks (one colour per class, classes listed in ``classes.json``).

The layout (that of the Humans in the Loop "Semantic segmentation of aerial
imagery" set, ``../shared/data/buildings-dubai``)::

    <root>/classes.json                      {"classes": [{"title": "Building", "color": "#D0021B"}, ...]}
    <root>/<group>/images/<name>.jpg         RGB image (any format PIL reads)
    <root>/<group>/masks/<name>.png          same size, one colour per class (RGB or palette PNG)

``<root>/images`` + ``<root>/masks`` (no group folders) works too.

* :func:`read_classes` reads the class titles and colours of ``classes.json``.
* :func:`pair_colour_masks` pairs images with masks by group and name.
* :func:`mask_palette` decides which colour stands for which class: the colours
  of ``classes.json`` when the masks use them; otherwise a known palette with
  the same class titles (:data:`KNOWN_PALETTES`) that the masks do use, with a
  warning; otherwise an error that lists the colours found.
* :func:`decode_mask` turns an RGB mask into class indexes (-1 for any colour
  not in the palette: unlabelled, ignore it when training and scoring).
* :func:`load_pair` reads one image and its class raster.

Why a second palette: the Dubai set's ``classes.json`` gives Building as
``#D0021B``, but its masks paint buildings ``#3C1098`` (and every other class
in a colour of its own that ``classes.json`` does not list either). The mapping
in :data:`KNOWN_PALETTES` was checked on the images: ``#E2A929`` covers dark,
smooth water (mean RGB 34, 34, 28), ``#8429F6`` bright unpaved sand
(176, 176, 182), ``#FEDD3A`` the green areas, ``#6EC1E4`` the roads, ``#3C1098``
the built-up blocks, and ``#9B9B9B`` is the one colour both agree on.

Examples
--------
>>> from geodetect.train.colour_masks import pair_colour_masks, mask_palette, load_pair   # doctest: +SKIP
>>> pairs = pair_colour_masks("../shared/data/buildings-dubai")                          # doctest: +SKIP
>>> palette = mask_palette("../shared/data/buildings-dubai", pairs)                      # doctest: +SKIP
>>> image, classes = load_pair(pairs[0], palette)                                        # doctest: +SKIP
>>> building = classes == palette.index("Building")                                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geodetect.errors import GeodetectError, RasterReadError

__all__ = ["ColourMaskPair", "Palette", "ColourMaskError", "ColourMaskFileMissingError", "KNOWN_PALETTES",
           "read_classes", "pair_colour_masks", "mask_palette", "decode_mask", "mask_colours", "load_pair"]

log = logging.getLogger("geodetect")

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


class ColourMaskError(GeodetectError, ValueError):
    """A mask has the wrong size or colours that no palette explains."""


class ColourMaskFileMissingError(RasterReadError, FileNotFoundError):
    """A folder, ``classes.json``, image or mask of the layout is missing or unreadable."""


@dataclass(frozen=True)
class ColourMaskPair:
    """One image and its colour mask; ``group`` is the folder above ``images/`` ("" when none)."""

    group: str
    name: str
    image: Path
    mask: Path

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}" if self.group else self.name


@dataclass(frozen=True)
class Palette:
    """Class titles and their mask colours (``#RRGGBB``), in the same order."""

    titles: tuple[str, ...]
    colours: tuple[str, ...]
    source: str = "classes.json"

    def index(self, title: str) -> int:
        """Index of the class whose title is ``title`` or starts with it (case-insensitive)."""
        t = title.lower()
        for i, name in enumerate(self.titles):
            if name.lower() == t:
                return i
        hits = [i for i, name in enumerate(self.titles) if name.lower().startswith(t)]
        if len(hits) == 1:
            return hits[0]
        raise KeyError(f"no single class titled {title!r} among {', '.join(self.titles)}")

    def rgb(self) -> np.ndarray:
        return np.array([_hex_rgb(c) for c in self.colours], np.int64).reshape(-1, 3)


#: palettes that some published sets' masks use in place of their ``classes.json`` colours, by class title
KNOWN_PALETTES: dict[str, dict[str, str]] = {
    # Humans in the Loop, "Semantic segmentation of aerial imagery" (Dubai, MBRSC imagery): checked on the images
    "humans-in-the-loop-dubai": {
        "Water": "#E2A929", "Land (unpaved area)": "#8429F6", "Road": "#6EC1E4",
        "Building": "#3C1098", "Vegetation": "#FEDD3A", "Unlabeled": "#9B9B9B",
    },
}


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    s = str(colour).strip().lstrip("#")
    if len(s) != 6:
        raise ValueError(f"colour {colour!r} is not #RRGGBB")
    return int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16)


def read_classes(root) -> Palette:
    """Class titles and colours from ``<root>/classes.json`` (``{"classes": [{"title", "color"}, ...]}``)."""
    r = Path(os.fspath(root))
    path = r / "classes.json" if r.is_dir() or not r.suffix else r
    if not path.is_file():
        raise ColourMaskFileMissingError(f"{path} not found; the colour-mask layout needs a classes.json listing "
                                         "each class's title and #RRGGBB colour")
    try:
        doc = json.loads(path.read_text())
        entries = doc["classes"] if isinstance(doc, dict) else doc
        titles = tuple(str(e["title"]) for e in entries)
        colours = tuple("#%02X%02X%02X" % _hex_rgb(e["color"]) for e in entries)
    except (ValueError, KeyError, TypeError) as exc:
        raise ColourMaskError(f"{path}: expected {{\"classes\": [{{\"title\": ..., \"color\": \"#RRGGBB\"}}]}} "
                              f"({exc})") from exc
    if not titles:
        raise ColourMaskError(f"{path}: lists no classes")
    return Palette(titles, colours, str(path))


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES}


def pair_colour_masks(root) -> list[ColourMaskPair]:
    """Pair ``<root>/[<group>/]images/<name>.*`` with ``masks/<name>.*`` (sorted by group, then name).

    Raises :class:`ColourMaskFileMissingError` when ``root`` is missing, holds no
    ``images/`` folder, or an image has no mask of the same name.
    """
    r = Path(os.fspath(root))
    if not r.is_dir():
        raise ColourMaskFileMissingError(f"folder {r} not found; point to the folder that holds classes.json and "
                                         "<group>/images, <group>/masks")
    groups = [("", r)] if (r / "images").is_dir() else [
        (d.name, d) for d in sorted(r.iterdir(), key=lambda p: _natural(p.name)) if (d / "images").is_dir()]
    if not groups:
        raise ColourMaskFileMissingError(f"{r}: no images/ folder, neither directly nor in a sub-folder; the layout "
                                         "is <root>/<group>/images/<name>.jpg with <root>/<group>/masks/<name>.png")
    pairs = []
    for g, d in groups:
        if not (d / "masks").is_dir():
            raise ColourMaskFileMissingError(f"{d / 'masks'} not found: the images in {d / 'images'} need their masks")
        images, masks = _files(d / "images"), _files(d / "masks")
        if not images:
            raise ColourMaskFileMissingError(f"{d / 'images'} holds no images")
        for name in sorted(images, key=_natural):
            if name not in masks:
                raise ColourMaskFileMissingError(f"{d / 'masks' / (name + '.png')} missing: the image {images[name]} "
                                                 "needs a mask of the same name (remove the image or add its mask)")
            pairs.append(ColourMaskPair(g, name, images[name], masks[name]))
    return pairs


def _natural(s: str):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - PIL raises several kinds
        raise ColourMaskFileMissingError(f"{path}: not a readable image ({exc})") from exc


def _codes(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb).astype(np.int64)
    return (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]


def mask_colours(mask_rgb: np.ndarray) -> dict[str, int]:
    """Pixel count of each ``#RRGGBB`` colour in an RGB mask."""
    u, c = np.unique(_codes(mask_rgb), return_counts=True)
    return {"#%06X" % int(k): int(n) for k, n in zip(u, c)}


def decode_mask(mask_rgb: np.ndarray, palette: Palette) -> np.ndarray:
    """Class index of each pixel (int8: position in ``palette``; -1 for a colour not in it)."""
    codes = _codes(mask_rgb)
    out = np.full(codes.shape, -1, np.int8)
    for i, (r, g, b) in enumerate(palette.rgb()):
        out[codes == ((r << 16) | (g << 8) | b)] = i
    return out


def mask_palette(root, pairs=None, *, sample: int = 8, max_unknown: float = 0.02) -> Palette:
    """The palette the masks under ``root`` really use.

    ``classes.json``'s colours when at most ``max_unknown`` of the sampled mask
    pixels (``sample`` masks spread over ``pairs``) have other colours; else the
    :data:`KNOWN_PALETTES` entry with the same class titles that explains them (logged
    as a warning); else :class:`ColourMaskError` listing the colours found.
    """
    declared = read_classes(root)
    pairs = pair_colour_masks(root) if pairs is None else list(pairs)
    if not pairs:
        raise ColourMaskFileMissingError(f"{root}: no image/mask pairs")
    picks = [pairs[int(i)] for i in np.unique(np.linspace(0, len(pairs) - 1, min(sample, len(pairs))).round())]
    counts: dict[str, int] = {}
    for p in picks:
        for k, n in mask_colours(_read_rgb(p.mask)).items():
            counts[k] = counts.get(k, 0) + n
    total = sum(counts.values())

    def unknown(colours) -> float:
        return sum(n for k, n in counts.items() if k not in set(colours)) / total

    if unknown(declared.colours) <= max_unknown:
        return declared
    for name, pal in KNOWN_PALETTES.items():
        if set(pal) == set(declared.titles) and unknown(pal.values()) <= max_unknown:
            log.warning("%s: the masks do not use classes.json's colours; they match the known palette %r "
                        "(e.g. %s = %s): using it", root, name, declared.titles[0], pal[declared.titles[0]])
            return Palette(declared.titles, tuple(pal[t] for t in declared.titles), f"KNOWN_PALETTES[{name!r}]")
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:10]
    raise ColourMaskError(
        f"{root}: {unknown(declared.colours):.0%} of the mask pixels sampled have colours classes.json does not list "
        f"({', '.join(f'{k} {n / total:.1%}' for k, n in top)}); fix classes.json or pass a Palette of the colours used")


def load_pair(pair: ColourMaskPair, palette: Palette) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (H, W, 3), class raster int8 (H, W), -1 where the colour is not in ``palette``)."""
    image = _read_rgb(pair.image)
    mask = _read_rgb(pair.mask)
    if mask.shape[:2] != image.shape[:2]:
        raise ColourMaskError(f"{pair.mask}: mask is {mask.shape[1]} x {mask.shape[0]} px but its image {pair.image} "
                              f"is {image.shape[1]} x {image.shape[0]} px; they must match pixel for pixel")
    return image, decode_mask(mask, palette)
