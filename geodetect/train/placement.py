"""Placing unreferenced training or evaluation images on the map.

The real labelled sets (NOAA sea lions, KIT AIS vehicles, Dubai buildings, AID
land use) are plain JPEG/PNG files with no georeferencing. To run one through
``gd.detect`` (scenes in, detections out) it is written as a GeoTIFF at a
declared ground sample distance, north up, in a metric CRS, so that the host
resamples it to the detector's own GSD exactly as it would a user's scene.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["write_placed", "pixel_to_map", "PLACEMENT_CRS", "PLACEMENT_ORIGIN"]

#: UTM zone 33N, and an origin on land near Munich: any metric CRS would do
PLACEMENT_CRS = "EPSG:32633"
PLACEMENT_ORIGIN = (690000.0, 5340000.0)


def write_placed(image: np.ndarray, path, gsd_m: float, *, crs: str = PLACEMENT_CRS,
                 origin: tuple[float, float] = PLACEMENT_ORIGIN, compress: str = "deflate") -> Path:
    """Write ``image`` ((H, W) or (H, W, C), any dtype) as a north-up GeoTIFF with square
    ``gsd_m`` pixels whose top-left corner is ``origin`` (x, y) in ``crs``; returns the path.

    The transform is ``from_origin(x0, y0, gsd_m, gsd_m)``: pixel (col, row) covers
    ``x0 + col * gsd_m .. x0 + (col + 1) * gsd_m`` and ``y0 - (row + 1) * gsd_m .. y0 - row * gsd_m``.
    """
    import rasterio
    from rasterio.transform import from_origin

    if not (np.isfinite(gsd_m) and gsd_m > 0):
        raise ValueError(f"gsd_m must be a positive number of metres, got {gsd_m!r}")
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {arr.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w, c = arr.shape
    profile = dict(driver="GTiff", width=w, height=h, count=c, dtype=arr.dtype, crs=crs,
                   transform=from_origin(origin[0], origin[1], gsd_m, gsd_m), compress=compress,
                   tiled=True, blockxsize=256, blockysize=256)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(np.moveaxis(arr, -1, 0))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def pixel_to_map(xy: np.ndarray, gsd_m: float, origin: tuple[float, float] = PLACEMENT_ORIGIN) -> np.ndarray:
    """Continuous pixel coordinates [col, row] of a placed image -> map coordinates [x, y]."""
    xy = np.asarray(xy, float).reshape(-1, 2)
    return np.column_stack([origin[0] + xy[:, 0] * gsd_m, origin[1] - xy[:, 1] * gsd_m])
