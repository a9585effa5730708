"""The real Dubai building masks: the fixed split by image, the declared GSD, and loading.

Data: ``../shared/data/buildings-dubai`` (Humans in the Loop, "Semantic
segmentation of aerial imagery", MBRSC satellite imagery of Dubai, stated
CC0): 8 tiles x 9 images, RGB JPEG with RGB-coded 6-class masks, read with
:mod:`geodetect.train.colour_masks`. Only the Building class is used here.

Split, by whole image, fixed by name before any training (the 9 images of a
tile are neighbouring parts of one area; every tile gives images to every split):

* test: ``image_part_003`` and ``image_part_007`` of every tile (16 images);
* validation: ``image_part_005`` of every tile (8 images);
* training: the other six of every tile (48 images).

GSD: not published. Estimated here at about 1.0 m for every tile (see
MODEL_CARD.md): the median road width in the masks is 7-10 px in all eight
tiles (residential streets of 7-10 m), a 4-lane carriageway with shoulders is
about 18 px across in tile 7, cars are about 4 px long. The tiles' images
differ in size (509 to 2,149 px wide) because they cover different areas,
not because their pixels differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["DUBAI_GSD_M", "TEST_PARTS", "VAL_PARTS", "split_of", "load_split", "DEFAULT_ROOT", "QUICK_TEST"]

#: declared ground sample distance of the Dubai images (estimated, see the module docstring)
DUBAI_GSD_M = 1.0
TEST_PARTS = ("image_part_003", "image_part_007")
VAL_PARTS = ("image_part_005",)
#: the project's default data folder, relative to the project root
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "buildings-dubai"
#: fixed subset of the test split that the real-data test (tests/test_buildings.py) scores in under a minute
QUICK_TEST = ("tile_1/image_part_003", "tile_2/image_part_003", "tile_2/image_part_007", "tile_3/image_part_007",
              "tile_4/image_part_003", "tile_6/image_part_003")


def split_of(name: str) -> str:
    """``"test"``, ``"val"`` or ``"train"`` for an image name (``image_part_NNN``)."""
    if name in TEST_PARTS:
        return "test"
    if name in VAL_PARTS:
        return "val"
    return "train"


def load_split(root, split: str, *, keys=None):
    """The images of one split: list of ``(key, image uint8 (H, W, 3), target uint8 (H, W))``.

    ``target`` is 1 for Building, 0 for any other class and 255 where the mask is
    unlabelled (``Unlabeled`` or a colour not in the palette): left out of the loss and the scores.
    ``keys`` restricts the list to those ``group/name`` keys (in that order).
    """
    from geodetect.train.colour_masks import load_pair, mask_palette, pair_colour_masks

    pairs = pair_colour_masks(root)
    palette = mask_palette(root, pairs)
    b, u = palette.index("Building"), palette.index("Unlabeled")
    chosen = [p for p in pairs if split_of(p.name) == split]
    if keys is not None:
        by_key = {p.key: p for p in chosen}
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise KeyError(f"{root}: no {split} image(s) {', '.join(missing)}")
        chosen = [by_key[k] for k in keys]
    out = []
    for p in chosen:
        image, cls = load_pair(p, palette)
        t = (cls == b).astype(np.uint8)
        t[(cls < 0) | (cls == u)] = 255
        out.append((p.key, image, t))
    return out


def road_widths_px(root) -> dict:
    """Road widths in the masks, per tile: quartiles of twice the distance to the road edge on each road's
    ridge (its centre line), in pixels. The evidence for the declared GSD (streets of 7-10 m)."""
    from scipy import ndimage

    from geodetect.train.colour_masks import load_pair, mask_palette, pair_colour_masks

    pairs = pair_colour_masks(root)
    palette = mask_palette(root, pairs)
    road = palette.index("Road")
    widths: dict[str, list] = {}
    for p in pairs:
        _, cls = load_pair(p, palette)
        d = ndimage.distance_transform_edt(cls == road)
        ridge = (d >= ndimage.maximum_filter(d, size=3)) & (d > 1)
        widths.setdefault(p.group, []).append(2 * d[ridge])
    return {g: dict(zip(("p25", "median", "p75"), np.percentile(np.concatenate(w), [25, 50, 75]).round(1).tolist()))
            for g, w in widths.items()}
