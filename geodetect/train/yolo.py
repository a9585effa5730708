"""YOLO-format box labels: one ``.txt`` per image, ``class x_centre y_centre width height`` normalised.

The layout (Ultralytics/darknet "YOLO txt", used by KIT AIS as shared in the
aerial-cars-dataset repository): images (``.png``, ``.jpg``, ``.tif``) and,
beside each, a text file of the same stem with one object per line::

    0 0.2544 0.7131 0.0240 0.0513

(class index, box centre column and row, box width and height, all divided by
the image's width or height). ``classes.txt`` in the folder names the class
indexes, one per line. An image with no ``.txt`` (or an empty one) has no objects.

* :func:`read_yolo_classes` reads ``classes.txt``;
* :func:`read_yolo_boxes` turns one label file into pixel boxes ``[col_min, row_min, col_max, row_max]``;
* :func:`load_yolo_folder` lists a folder's images with their boxes (images are read on demand);
* :func:`read_image` reads an image as uint8 (H, W, 3);
* :func:`crop_boxes` keeps the boxes of an image window (clipped, with a visible-share rule);
* :func:`measure_gsd` estimates the pixel size from the boxes of objects of known length.

Examples
--------
>>> from geodetect.train.yolo import load_yolo_folder          # doctest: +SKIP
>>> items = load_yolo_folder("../shared/data/vehicles-kit-ais")  # doctest: +SKIP
>>> items[0].name, items[0].boxes.shape, items[0].class_names[:2]   # doctest: +SKIP
('MOS155', (50, 4), ('car', 'truck'))
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geodetect.errors import GeodetectError, RasterReadError

__all__ = ["YoloLabelError", "YoloImage", "read_yolo_classes", "read_yolo_boxes", "load_yolo_folder",
           "read_image", "crop_boxes", "measure_gsd", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class YoloLabelError(GeodetectError, ValueError):
    """A YOLO label file is malformed (wrong number of fields, values outside 0..1, unknown class)."""


@dataclass(frozen=True)
class YoloImage:
    """One labelled image of a YOLO folder: its path, size and boxes in pixels."""

    name: str                   #: file stem
    path: Path                  #: the image file
    width: int
    height: int
    boxes: np.ndarray           #: float64 (K, 4) [col_min, row_min, col_max, row_max] in pixels
    class_ids: np.ndarray       #: int64 (K,) indexes into ``class_names``
    class_names: tuple[str, ...]

    def read(self) -> np.ndarray:
        """The image as uint8 (H, W, 3)."""
        return read_image(self.path)


def read_yolo_classes(path) -> tuple[str, ...]:
    """Class names of a ``classes.txt`` (one per line, blank lines ignored), in index order."""
    p = Path(os.fspath(path))
    if not p.is_file():
        raise YoloLabelError(f"{p}: classes file not found; a YOLO folder names its classes in classes.txt")
    names = tuple(line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
    if not names:
        raise YoloLabelError(f"{p}: no class names")
    if len(set(names)) != len(names):
        raise YoloLabelError(f"{p}: class names must be unique, got {names}")
    return names


def read_yolo_boxes(path, width: int, height: int, n_classes: int | None = None):
    """Boxes of one YOLO label file in the pixels of a ``width`` x ``height`` image.

    Returns ``(boxes, class_ids)``: float64 (K, 4) ``[col_min, row_min, col_max,
    row_max]`` and int64 (K,). A missing or empty file gives no boxes. Values
    must lie in 0..1 (a small rounding excess of 1e-3 is clipped); a class
    index must be below ``n_classes`` when given.
    """
    p = Path(os.fspath(path))
    if not p.is_file():
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    rows = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise YoloLabelError(f"{p}: line {i}: expected 'class x_centre y_centre width height', got {line!r}")
        try:
            cls = int(parts[0])
            xc, yc, w, h = (float(v) for v in parts[1:])
        except ValueError:
            raise YoloLabelError(f"{p}: line {i}: not numbers: {line!r}") from None
        if cls < 0 or (n_classes is not None and cls >= n_classes):
            raise YoloLabelError(f"{p}: line {i}: class {cls} is not one of the {n_classes} classes of classes.txt")
        vals = np.array([xc, yc, w, h])
        if not np.all(np.isfinite(vals)) or vals.min() < -1e-3 or vals.max() > 1 + 1e-3 or w <= 0 or h <= 0:
            raise YoloLabelError(f"{p}: line {i}: centre and size must be normalised to 0..1 (size > 0), got {line!r}")
        rows.append((cls, xc, yc, w, h))
    if not rows:
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    a = np.array(rows, np.float64)
    cx, cy, bw, bh = a[:, 1] * width, a[:, 2] * height, a[:, 3] * width, a[:, 4] * height
    boxes = np.column_stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
    boxes = np.clip(boxes, 0, [width, height, width, height])
    return boxes, a[:, 0].astype(np.int64)


def _image_size(path: Path) -> tuple[int, int]:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                return ds.width, ds.height
    except Exception as exc:  # noqa: BLE001 - rasterio raises several kinds
        raise RasterReadError(f"{path}: not a readable image ({exc})") from exc


def read_image(path) -> np.ndarray:
    """An image file as uint8 (H, W, 3): the first three bands, a one-band image repeated."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    p = Path(os.fspath(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(p) as ds:
                idx = (1, 2, 3) if ds.count >= 3 else (1, 1, 1)
                arr = ds.read(idx)
    except Exception as exc:  # noqa: BLE001
        raise RasterReadError(f"{p}: not a readable image ({exc})") from exc
    if arr.dtype != np.uint8:
        raise RasterReadError(f"{p}: expected 8-bit imagery, got {arr.dtype}")
    return np.ascontiguousarray(np.moveaxis(arr, 0, -1))


def load_yolo_folder(folder, classes_file: str = "classes.txt") -> list[YoloImage]:
    """Every image of a YOLO folder with its boxes, sorted by name.

    Images are the files with a suffix in :data:`IMAGE_SUFFIXES`; each one's
    labels are in ``<stem>.txt`` beside it. Pixels are not read (see
    :meth:`YoloImage.read`), only the image sizes.
    """
    d = Path(os.fspath(folder))
    if not d.is_dir():
        raise YoloLabelError(f"{d}: not a folder; give the folder that holds the images, their .txt labels "
                             "and classes.txt")
    names = read_yolo_classes(d / classes_file)
    items = []
    for p in sorted(d.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        w, h = _image_size(p)
        boxes, ids = read_yolo_boxes(p.with_suffix(".txt"), w, h, len(names))
        items.append(YoloImage(p.stem, p, w, h, boxes, ids, names))
    if not items:
        raise YoloLabelError(f"{d}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return items


def crop_boxes(boxes: np.ndarray, x0: float, y0: float, x1: float, y1: float, min_visible: float = 0.5):
    """Boxes of the window ``x0 <= col < x1, y0 <= row < y1``, in window pixels.

    A box is kept, clipped to the window, when at least ``min_visible`` of its
    area lies inside. Returns ``(clipped boxes, keep mask over the input)``.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    inside = np.column_stack([np.clip(b[:, 0], x0, x1), np.clip(b[:, 1], y0, y1),
                              np.clip(b[:, 2], x0, x1), np.clip(b[:, 3], y0, y1)])
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    vis = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (area > 0) & (vis / area >= min_visible)
    return inside[keep] - np.array([x0, y0, x0, y0], np.float64), keep


def measure_gsd(boxes: np.ndarray, length_m: float, *, width_m: float | None = None,
                min_aspect: float = 1.6) -> dict:
    """Pixel size from the boxes of objects of a known typical size (e.g. cars, 4.5 m x 1.8 m).

    Only boxes longer than ``min_aspect`` times their width are used: those are
    objects lying along a pixel axis, whose box length is the object's length (a
    diagonal object's axis-aligned box is longer and squarer). The GSD is
    ``length_m`` / the median box length; with ``width_m``, the same from the
    median box width is reported beside it.

    Returns a dict: ``gsd_m`` (from lengths), ``gsd_from_width_m``, ``n_boxes``,
    ``n_used``, ``median_length_px``, ``median_width_px``.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    long_, short = np.maximum(w, h), np.minimum(w, h)
    ok = (short > 0) & (long_ >= min_aspect * short)
    if not ok.any():
        raise ValueError(f"no box longer than {min_aspect} x its width: cannot measure the GSD")
    ml, ms = float(np.median(long_[ok])), float(np.median(short[ok]))
    return {"gsd_m": length_m / ml, "gsd_from_width_m": (width_m / ms) if width_m else None,
            "n_boxes": int(len(b)), "n_used": int(ok.sum()), "median_length_px": ml, "median_width_px": ms}
