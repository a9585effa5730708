"""The real NOAA photographs for the sea-lion counter: split, placement, patches.

The split is by photograph, fixed here (ids of ``../shared/data/sealions-noaa``,
the Kaggle competition's training images):

* ``TEST``  42, 50: the two photographs that have a plain copy (``Train/``),
  so nothing was painted on them; 23 animals. Only ``evaluate.py``, the model
  card and the quality test look at them.
* ``VAL``   45 (138 animals, painted): every threshold (proposal threshold,
  acceptance) is chosen here or on the training photographs.
* ``TRAIN`` 41, 43, 49 (about 800 animals, painted).

Dots come from :mod:`geodetect.train.kaggle_dotted` (the plain photograph with
the pair's dots where there is one, else the dotted copy with its dots found
alone and painted out). As many *decoy* discs as there are dots are painted
at random places away from the animals of a painted photograph, so that a
painted disc says nothing about an animal being there.

Placement: the photographs have no georeferencing and no published GSD. The
animals' lengths (an adult female about 60-65 px, 2.2 m) give about 3.5 cm
per pixel, :data:`PHOTO_GSD_M`. A photograph is written as a GeoTIFF at that
GSD (:func:`geodetect.train.placement.write_placed`) and read back through
``open_scene`` at the detector's 0.1 m, bilinear, exactly as ``gd.detect``
reads it. Training reads it also at 0.8x and 1.2x that GSD (animals 20 %
smaller and larger: photographs were flown at different heights).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from geodetect_plugins.sea_lion_counter import _LENGTH_PX, CLASSES, PHOTO_GSD_M

__all__ = ["TRAIN", "VAL", "TEST", "PHOTO_GSD_M", "TRAIN_GSDS", "DEFAULT_DATA", "Photo", "load_photos", "read_placed"]

TRAIN = ("41", "43", "49")
VAL = ("45",)
TEST = ("42", "50")
#: placements used in training: the photograph's GSD x 0.8, 1, 1.2
TRAIN_GSDS = (0.028, 0.035, 0.042)
#: the data set, relative to the project root
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sealions-noaa"


class Photo:
    """One photograph ready for patches: ``image`` uint8 (H, W, 3) (painted where it had only a dotted copy),
    ``xy`` the animals' dot positions [col, row] in its pixels, ``class_ids`` (0..4), ``painted``."""

    def __init__(self, train_id: str, image: np.ndarray, xy: np.ndarray, class_ids: np.ndarray, painted: bool):
        self.train_id, self.image, self.xy, self.class_ids, self.painted = train_id, image, xy, class_ids, painted

    def __repr__(self) -> str:
        return f"Photo({self.train_id!r}, {self.image.shape}, {len(self.xy)} animals, painted={self.painted})"


def load_photos(root, ids, *, decoys: bool = True, seed: int = 0) -> list[Photo]:
    """The photographs ``ids`` of the Kaggle layout at ``root`` (see the module docstring)."""
    from scipy.spatial import cKDTree

    from geodetect.train.kaggle_dotted import iter_kaggle_photographs, paint_dots

    out = []
    for tid, img, dots, painted in iter_kaggle_photographs(root, ids):
        xy = dots[["x", "y"]].to_numpy(float)
        ids_ = np.array([CLASSES.index(c) for c in dots["class_name"]], np.int64)
        if painted and decoys and len(xy):
            rng = np.random.default_rng([seed, int(tid)])
            h, w = img.shape[:2]
            cand = rng.uniform([8, 8], [w - 8, h - 8], (4 * len(xy), 2))
            far = cKDTree(xy).query(cand)[0] > 60  # px at 3.5 cm: about 2 m off any animal
            img = paint_dots(img, cand[far][: len(xy)])
        out.append(Photo(tid, img, xy, ids_, painted))
    return out


def read_placed(image: np.ndarray, gsd_m: float, *, workdir=None):
    """``image`` placed at ``gsd_m`` and read as ``gd.detect`` reads it at 0.1 m:
    (float32 (h, w, 3) 0..1, (fx, fy) the factor from photograph to grid pixels)."""
    from geodetect.io.raster import open_scene
    from geodetect.train.placement import write_placed

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = write_placed(image, os.path.join(tmp, "photo.tif"), gsd_m, compress=None)
        with open_scene(path, bands=(1, 2, 3), gsd_m=0.1) as sc:
            grid, _ = sc.read(0, 0, sc.width, sc.height)
            factor = sc.factor
    return grid, factor


def grid_scene(photo: Photo, gsd_m: float, *, workdir=None):
    """A :class:`~geodetect_plugins.sea_lion_counter.dataset.Scene` of ``photo`` placed at ``gsd_m``."""
    from geodetect_plugins.sea_lion_counter.dataset import Scene

    grid, (fx, fy) = read_placed(photo.image, gsd_m, workdir=workdir)
    xy = photo.xy * np.array([fx, fy])
    # nominal body lengths at 0.1 m, scaled as the animals are by the placement
    length = _LENGTH_PX[photo.class_ids] * (gsd_m / PHOTO_GSD_M)
    return Scene(int(photo.train_id), grid, xy, photo.class_ids, length, {"train_id": photo.train_id, "gsd_m": gsd_m})
