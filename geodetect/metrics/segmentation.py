"""Pixel scores of segmentation polygons: IoU per class and pixel accuracy.

Both sides (detected and true polygons, any CRS) are rasterised on the scene's
own grid, strip by strip, so a scene of any size is scored in bounded memory.
Pixels the scene marks as nodata are left out. Counts are summed over all
scenes before dividing (dataset IoU, not a mean of per-scene IoUs).

Examples
--------
>>> import numpy as np
>>> pred = np.array([[0, 1, 1], [0, 1, 0]], np.uint8)
>>> true = np.array([[0, 1, 0], [0, 1, 1]], np.uint8)
>>> c = PixelCounts(1)
>>> c.add(pred, true)
>>> round(float(c.iou()[0]), 3), round(c.pixel_accuracy(), 3)
(0.5, 0.667)
"""

from __future__ import annotations

import numpy as np

__all__ = ["PixelCounts", "rasterize_classes", "score_scene"]


class PixelCounts:
    """Running confusion counts of class rasters (0 = background, k = class k-1)."""

    def __init__(self, n_classes: int):
        self.n_classes = n_classes
        self.confusion = np.zeros((n_classes + 1, n_classes + 1), np.int64)  # [true, pred]

    def add(self, pred: np.ndarray, true: np.ndarray, valid: np.ndarray | None = None) -> None:
        k = self.n_classes + 1
        p, t = pred.astype(np.int64).ravel(), true.astype(np.int64).ravel()
        if valid is not None:
            ok = valid.ravel()
            p, t = p[ok], t[ok]
        self.confusion += np.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def iou(self) -> np.ndarray:
        """IoU of each class (NaN where a class is in neither raster)."""
        c = self.confusion
        inter = np.diag(c)[1:].astype(float)
        union = c.sum(axis=0)[1:] + c.sum(axis=1)[1:] - np.diag(c)[1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, inter / np.maximum(union, 1), np.nan)

    def pixel_accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    def table(self, classes):
        """Per-class IoU, precision, recall and pixel counts as a DataFrame."""
        import pandas as pd

        c = self.confusion
        tp = np.diag(c)[1:]
        pred = c.sum(axis=0)[1:]
        true = c.sum(axis=1)[1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            return pd.DataFrame({"iou": self.iou(), "precision": np.where(pred > 0, tp / np.maximum(pred, 1), np.nan),
                                 "recall": np.where(true > 0, tp / np.maximum(true, 1), np.nan),
                                 "true_pixels": true, "detected_pixels": pred}, index=pd.Index(list(classes), name="class_name"))


def rasterize_classes(gdf, classes, *, transform, shape, crs) -> np.ndarray:
    """Class raster (uint8, 0 = background, k = ``classes[k-1]``) of polygons on a grid.

    ``gdf`` needs a ``class_name`` column; rows of other classes are ignored.
    Later classes win where polygons of two classes overlap.
    """
    from rasterio.features import rasterize

    out = np.zeros(shape, np.uint8)
    if gdf is None or len(gdf) == 0:
        return out
    g = gdf.to_crs(crs) if gdf.crs is not None and crs is not None else gdf
    shapes = [(geom, k + 1) for k, name in enumerate(classes)
              for geom in g.geometry[g["class_name"].astype(str) == str(name)] if geom is not None and not geom.is_empty]
    if shapes:
        rasterize(shapes, out_shape=shape, transform=transform, out=out, dtype=np.uint8)
    return out


def score_scene(counts: PixelCounts, path, pred, truth, classes, *, crs=None, bounds=None,
                strip_rows: int = 2048) -> None:
    """Add one scene's pixels to ``counts``: ``pred`` and ``truth`` are polygon frames."""
    from affine import Affine
    from rasterio.windows import Window

    from geodetect.io.raster import open_scene

    with open_scene(path, bands=(1,), crs=crs, bounds=bounds) as scene:
        ds = scene.dataset
        for r0 in range(0, scene.height, strip_rows):
            h = min(strip_rows, scene.height - r0)
            t = scene.transform * Affine.translation(0, r0)
            p = rasterize_classes(pred, classes, transform=t, shape=(h, scene.width), crs=scene.crs)
            g = rasterize_classes(truth, classes, transform=t, shape=(h, scene.width), crs=scene.crs)
            valid = ds.dataset_mask(window=Window(0, r0, scene.width, h)) > 0
            counts.add(p, g, valid)
