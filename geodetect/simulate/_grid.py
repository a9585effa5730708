"""Shared machinery of the simulator: scene grids, GeoTIFF writing, ground truth in lon/lat.

Ground truth is computed with ``affine`` and ``pyproj`` directly, never through
:mod:`geodetect.georef`, so tests that compare the two check the pipeline
independently.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from geodetect.errors import ConfigError

__all__ = ["SimScene", "scene_transform", "write_geotiff", "pixels_to_lonlat", "nodata_frame",
           "random_positions", "blend_ellipse", "seam_positions"]


@dataclass
class SimScene:
    """A written scene and its ground truth (GeoDataFrame in EPSG:4326)."""

    path: str
    truth: object
    crs: str
    transform: object
    width: int
    height: int
    gsd_m: float


def seam_positions(length: int, tile_size: int, overlap: int) -> np.ndarray:
    """Pixel coordinates along an axis that sit on tile seams: tile edges and overlap middles."""
    from geodetect.io.tiling import axis_starts

    starts = axis_starts(length, tile_size, overlap)
    ends = np.minimum(starts + tile_size, length)
    mids = (ends[:-1] + starts[1:]) / 2.0
    pos = np.concatenate([starts[1:], ends[:-1], mids])
    return np.unique(pos[(pos > 0) & (pos < length)])


#: the largest synthetic scene (pixels): it is drawn in memory
MAX_SIM_PIXELS = 250_000_000


def check_scene_args(crs, center, size, gsd_m):
    """Validate what places a synthetic scene; returns (pyproj CRS, (lon, lat), (w, h), gsd_m) or ConfigError."""
    from pyproj import CRS

    try:
        c = CRS.from_user_input(crs)
    except Exception:  # noqa: BLE001
        raise ConfigError(f"simulate: --crs {crs!r} is not a CRS pyproj knows; give one like EPSG:32633") from None
    try:
        lon, lat = (float(v) for v in center)
    except (TypeError, ValueError):
        raise ConfigError(f"simulate: --center must be two numbers LON LAT, got {center!r}") from None
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -89 <= lat <= 89):
        raise ConfigError(f"simulate: --center {lon:g} {lat:g} is not on the Earth; LON must be in -180..180 "
                          "and LAT in -89..89 (degrees)")
    try:
        w, h = (int(v) for v in size)
        ok = all(float(v) == int(v) for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok or w < 1 or h < 1:
        raise ConfigError(f"simulate: --size must be two whole numbers of pixels W H >= 1, got {size!r}")
    if w * h > MAX_SIM_PIXELS:
        raise ConfigError(f"simulate: --size {w} {h} is {w * h:,} pixels; synthetic scenes are drawn in memory, "
                          f"at most {MAX_SIM_PIXELS:,}")
    try:
        g = float(gsd_m)
    except (TypeError, ValueError):
        g = float("nan")
    if not (math.isfinite(g) and g > 0):
        raise ConfigError(f"simulate: --gsd must be a positive number of metres per pixel, got {gsd_m!r}")
    return c, (lon, lat), (w, h), g


def scene_transform(crs, center, size, gsd_m, rotation_deg=0.0, south_up=False):
    """Affine of a ``size`` = (w, h) grid whose centre pixel sits at ``center`` (lon, lat), and the CRS."""
    from affine import Affine
    from pyproj import CRS, Transformer

    c, (lon, lat), (w, h), gsd_m = check_scene_args(crs, center, size, gsd_m)
    x, y = Transformer.from_crs("EPSG:4326", c, always_xy=True).transform(lon, lat, errcheck=False)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ConfigError(f"simulate: the centre ({lon:g}, {lat:g}) cannot be placed in {c.to_string()} "
                          "(outside the CRS's area); choose a --center inside it, or another --crs")
    if c.is_geographic:
        px = gsd_m / (111_320.0 * math.cos(math.radians(lat)))
        py = gsd_m / 110_574.0
    else:
        unit = c.axis_info[0].unit_conversion_factor or 1.0
        px = py = gsd_m / unit
    w, h = size
    sign = 1.0 if south_up else -1.0
    t = (
        Affine.translation(x, y)
        @ Affine.rotation(rotation_deg)
        @ Affine.scale(px, sign * py)
        @ Affine.translation(-w / 2.0, -h / 2.0)
    )
    return t, c


def pixels_to_lonlat(transform, crs, cols, rows):
    """Continuous pixel coordinates -> lon, lat (wrapped to [-180, 180))."""
    from pyproj import Transformer

    cols, rows = np.asarray(cols, float), np.asarray(rows, float)
    xs = transform.a * cols + transform.b * rows + transform.c
    ys = transform.d * cols + transform.e * rows + transform.f
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    return ((np.asarray(lon) + 180.0) % 360.0) - 180.0, np.asarray(lat)


def nodata_frame(h: int, w: int, border: int) -> np.ndarray:
    """Validity mask with a nodata frame ``border`` pixels wide."""
    valid = np.ones((h, w), bool)
    if border:
        valid[:border] = valid[-border:] = False
        valid[:, :border] = valid[:, -border:] = False
    return valid


def random_positions(rng, n: int, w: int, h: int, margin: float, spacing: float) -> np.ndarray:
    """Up to ``n`` random positions at least ``spacing`` px apart and ``margin`` px from the edges."""
    pts: list = []
    tries = 0
    while len(pts) < n and tries < n * 200:
        tries += 1
        p = rng.uniform([margin, margin], [w - margin, h - margin])
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= spacing**2 for q in pts):
            pts.append(p)
    return np.array(pts).reshape(-1, 2)


def blend_ellipse(img, cx, cy, length_px, width_px, angle, rgb, shade: float = 0.15):
    """Blend one smooth ellipse, centred at continuous pixel (cx, cy), into img (H, W, 3)."""
    h, w = img.shape[:2]
    r = int(math.ceil(length_px / 2 + 3))
    c0, c1 = max(0, int(cx) - r), min(w, int(cx) + r + 1)
    r0, r1 = max(0, int(cy) - r), min(h, int(cy) + r + 1)
    if c0 >= c1 or r0 >= r1:
        return
    yy, xx = np.mgrid[r0:r1, c0:c1]
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    ca, sa = math.cos(angle), math.sin(angle)
    u = (dx * ca + dy * sa) / (length_px / 2)
    v = (-dx * sa + dy * ca) / (width_px / 2)
    q = u * u + v * v
    wgt = np.exp(-(q**2))[..., None]  # flat-topped, smooth, symmetric
    col = np.asarray(rgb, float) * (1.0 - shade * np.clip(q, 0, 1))[..., None]  # darker towards the rim
    img[r0:r1, c0:c1] = img[r0:r1, c0:c1] * (1 - wgt) + col * wgt


def write_geotiff(path, img, transform, crs, *, dtype="uint8", valid=None, band_names=None, blocksize=256):
    """Write ``img`` (H, W, B), values on a 0..255 scale, as a tiled deflate GeoTIFF with nodata 0.

    ``uint16`` stores values x 257, ``float32`` stores 0..1. Valid pixels are
    never 0 so that nodata stays unambiguous.
    """
    import rasterio

    h, w, b = img.shape
    if dtype == "uint8":
        arr = np.clip(np.rint(img), 1, 255).astype(np.uint8)
    elif dtype == "uint16":
        arr = np.clip(np.rint(img * 257), 1, 65535).astype(np.uint16)
    elif dtype == "float32":
        arr = np.clip(img / 255.0, 1e-3, 1).astype(np.float32)
    else:
        raise ValueError(f"dtype must be uint8, uint16 or float32, got {dtype!r}")
    if valid is not None:
        arr[~valid] = 0
    profile = dict(
        driver="GTiff", width=w, height=h, count=b, dtype=dtype, crs=crs.to_wkt(), transform=transform,
        nodata=0, compress="deflate",
        photometric="RGB" if (dtype == "uint8" and b == 3) else "MINISBLACK",
    )
    if w >= blocksize and h >= blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(arr, -1, 0))
        if band_names:
            dst.descriptions = tuple(band_names)
    return path
