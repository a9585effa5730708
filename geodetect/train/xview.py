"""xView labels and image chips (DIUx xView 2018, 0.3 m WorldView-3, 60 classes).

The labels come as one GeoJSON FeatureCollection (``xView_train.geojson``);
each feature is one object, with properties ``bounds_imcoords``
(``"xmin,ymin,xmax,ymax"`` in the image's pixel columns and rows),
``type_id`` (the class, e.g. 18 small car, 19 bus, 23 truck) and ``image_id``
(the image's file name, e.g. ``"104.tif"``). Images are 3-band uint8 GeoTIFFs.

* :func:`read_xview_labels` keeps the classes asked for and counts the rest.
* :func:`cut_chips` cuts an image into overlapping chips (the same grid as
  :func:`geodetect.detect`'s tiles: edge chips shifted inside the image) with
  each chip's boxes in chip pixels. A box cut by a chip border is clipped to
  the chip and kept only when at least half of its area (``min_visible``,
  default 0.5) lies inside the chip; the rest are dropped from that chip (they
  appear whole in a neighbouring chip when the overlap is larger than the object).

Examples
--------
>>> from geodetect.train.xview import read_xview_labels, cut_chips     # doctest: +SKIP
>>> labels = read_xview_labels("xView_train.geojson")                   # doctest: +SKIP
>>> for chip, boxes, type_ids in cut_chips("train_images/104.tif", labels, 256, 64):  # doctest: +SKIP
...     ...
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from geodetect.errors import ConfigError, GeodetectError, RasterReadError

__all__ = ["XVIEW_VEHICLES", "XViewLabelError", "XViewImageMissingError", "read_xview_labels", "cut_chips"]

log = logging.getLogger("geodetect")

#: the seed talk's vehicle classes: xView type_id -> name
XVIEW_VEHICLES = {18: "car", 23: "truck", 19: "bus"}


class XViewLabelError(GeodetectError, ValueError):
    """An xView label file is malformed (not a FeatureCollection, bad ``bounds_imcoords``...)."""


class XViewImageMissingError(RasterReadError, FileNotFoundError):
    """The image a chip is cut from does not exist."""


def _parse_bounds(value, i: int, path) -> tuple[float, float, float, float]:
    try:
        parts = [float(v) for v in str(value).split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4:
        raise XViewLabelError(f"{path}: feature {i}: bounds_imcoords must be 'xmin,ymin,xmax,ymax', got {value!r}")
    return parts[0], parts[1], parts[2], parts[3]


def read_xview_labels(path, classes: dict[int, str] | None = XVIEW_VEHICLES):
    """Read xView labels into a DataFrame, one row per kept object.

    Parameters
    ----------
    path : the GeoJSON label file.
    classes : ``type_id -> class name`` to keep (default: car 18, truck 23, bus 19);
        ``None`` keeps every type id, named by its number.

    Returns
    -------
    pandas.DataFrame with columns ``image_id`` (str), ``type_id`` (int),
    ``class_name``, ``xmin``, ``ymin``, ``xmax``, ``ymax`` (float, image pixels).
    ``df.attrs`` holds ``ignored_type_ids`` (``{type_id: count}`` of objects of
    other classes, left out), ``n_ignored`` and ``n_degenerate`` (boxes with no
    area, left out).
    """
    import pandas as pd

    p = Path(os.fspath(path))
    if not p.is_file():
        raise XViewImageMissingError(f"xView label file {p} not found")
    try:
        with open(p, encoding="utf-8") as f:
            doc = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise XViewLabelError(f"{p}: not valid JSON ({exc}); expected an xView GeoJSON FeatureCollection") from exc
    feats = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(feats, list):
        raise XViewLabelError(f"{p}: expected a GeoJSON FeatureCollection with a 'features' list")
    wanted = None if classes is None else {int(k): str(v) for k, v in classes.items()}
    rows, ignored, degenerate = [], {}, 0
    for i, feat in enumerate(feats):
        props = (feat or {}).get("properties") or {}
        missing = [k for k in ("bounds_imcoords", "type_id", "image_id") if k not in props]
        if missing:
            raise XViewLabelError(f"{p}: feature {i} lacks {', '.join(missing)}")
        try:
            tid = int(props["type_id"])
        except (TypeError, ValueError):
            raise XViewLabelError(f"{p}: feature {i}: type_id must be an integer, got {props['type_id']!r}") from None
        if wanted is not None and tid not in wanted:
            ignored[tid] = ignored.get(tid, 0) + 1
            continue
        x0, y0, x1, y1 = _parse_bounds(props["bounds_imcoords"], i, p)
        if not (x1 > x0 and y1 > y0):
            degenerate += 1
            continue
        name = wanted[tid] if wanted is not None else str(tid)
        rows.append((str(props["image_id"]), tid, name, x0, y0, x1, y1))
    df = pd.DataFrame(rows, columns=["image_id", "type_id", "class_name", "xmin", "ymin", "xmax", "ymax"])
    df = df.astype({"type_id": np.int64, "xmin": np.float64, "ymin": np.float64, "xmax": np.float64, "ymax": np.float64})
    df.attrs["ignored_type_ids"] = dict(sorted(ignored.items()))
    df.attrs["n_ignored"] = int(sum(ignored.values()))
    df.attrs["n_degenerate"] = degenerate
    if ignored or degenerate:
        log.info("%s: kept %d objects; ignored %d of other type ids %s; %d without area",
                 p.name, len(df), df.attrs["n_ignored"], sorted(ignored), degenerate)
    return df


def cut_chips(image_path, labels, chip_size: int, overlap: int = 0, *, min_visible: float = 0.5,
              with_offsets: bool = False):
    """Yield ``(chip, boxes, type_ids)`` for overlapping chips of one xView image.

    Parameters
    ----------
    image_path : the image; its file name is the labels' ``image_id``.
    labels : the DataFrame of :func:`read_xview_labels` (rows of other images are ignored).
    chip_size, overlap : chip edge and the pixels shared by neighbouring chips.
    min_visible : a box cut by the chip border is kept (clipped) when at least
        this share of its area lies inside the chip (default 0.5); otherwise dropped.
    with_offsets : also yield the chip's (col_off, row_off) in the image.

    Yields
    ------
    chip : uint8 (chip_size, chip_size, 3); chips of images smaller than
        ``chip_size`` are padded with zeros.
    boxes : float64 (K, 4) [xmin, ymin, xmax, ymax] in chip pixels, clipped to the chip.
    type_ids : int64 (K,) xView type ids of the boxes.
    """
    import rasterio
    from rasterio.windows import Window

    from geodetect.io.tiling import Tiling
    from geodetect.train.yolo import crop_boxes

    if not (chip_size > overlap >= 0):
        raise ConfigError(f"need chip_size > overlap >= 0, got chip_size={chip_size}, overlap={overlap}")
    if not (0 < min_visible <= 1):
        raise ConfigError(f"min_visible must be in (0, 1], got {min_visible}")
    p = Path(os.fspath(image_path))
    if not p.is_file():
        raise XViewImageMissingError(f"xView image {p.name} not found at {p}; download the xView images "
                                     "and point to the folder that holds it")
    rows = labels[labels["image_id"].astype(str) == p.name]
    boxes = rows[["xmin", "ymin", "xmax", "ymax"]].to_numpy(np.float64).reshape(-1, 4)
    tids = rows["type_id"].to_numpy(np.int64)
    try:
        ds = rasterio.open(p)
    except Exception as exc:  # noqa: BLE001 - rasterio raises several kinds
        raise RasterReadError(f"{p}: not a readable image ({exc})") from exc
    with ds:
        if ds.count < 3:
            raise RasterReadError(f"{p}: xView images have 3 bands (RGB), this one has {ds.count}")
        tiling = Tiling(ds.width, ds.height, chip_size, overlap)
        for i in range(len(tiling)):
            x0, y0, w, h = tiling.tile(i)
            data = ds.read((1, 2, 3), window=Window(x0, y0, w, h))
            chip = np.zeros((chip_size, chip_size, 3), np.uint8)
            chip[:h, :w] = np.moveaxis(data, 0, -1).astype(np.uint8, copy=False)
            c, keep = crop_boxes(boxes, x0, y0, x0 + chip_size, y0 + chip_size, min_visible)
            # clip to the image too (chips of small images are padded)
            c = np.minimum(c, np.array([w, h, w, h], np.float64))
            item = (chip, c, tids[keep])
            yield item + ((x0, y0),) if with_offsets else item
