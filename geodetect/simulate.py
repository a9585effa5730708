"""Georeferenced synthetic scenes with exact ground truth.

Scenes are real GeoTIFFs (tiled, deflate-compressed) in any CRS, with objects
at known positions: sub-pixel exact, rendered analytically at pixel centres so
an object's true centre is its rendered centre. Ground truth is computed with
``affine`` and ``pyproj`` directly (not through :mod:`geodetect.georef`), so
tests that compare the two check the pipeline independently.

Kinds of object so far: Steller sea lions of the five Kaggle classes with
their relative sizes and colours, on rock with surf.

Examples
--------
>>> from geodetect.simulate import make_scene
>>> sim = make_scene("/tmp/sim.tif", crs="EPSG:32606", center=(-150.0, 60.0),
...                  size=(512, 512), n_objects=20, seed=1)            # doctest: +SKIP
>>> len(sim.truth)                                                     # doctest: +SKIP
20
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["SEA_LION_CLASSES", "SEA_LION_SIZES_M", "SimScene", "make_scene", "seam_positions"]

SEA_LION_CLASSES = ("adult_males", "subadult_males", "adult_females", "juveniles", "pups")
# body length x width in metres (Steller sea lion: bulls ~3 m, cows ~2.3-2.5 m, pups ~1 m)
SEA_LION_SIZES_M = {
    "adult_males": (3.0, 1.3),
    "subadult_males": (2.5, 1.05),
    "adult_females": (2.2, 0.85),
    "juveniles": (1.6, 0.65),
    "pups": (1.0, 0.5),
}
# mean RGB of dry pelage seen from above: bulls and cows tan/buff, pups nearly black
SEA_LION_RGB = {
    "adult_males": (165, 125, 88),
    "subadult_males": (178, 138, 96),
    "adult_females": (196, 160, 118),
    "juveniles": (150, 118, 90),
    "pups": (48, 38, 32),
}


@dataclass
class SimScene:
    """A written scene and its ground truth (GeoDataFrame, EPSG:4326 points)."""

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


def _transform(crs, center, size, gsd_m, rotation_deg, south_up):
    from affine import Affine
    from pyproj import CRS, Transformer

    c = CRS.from_user_input(crs)
    lon, lat = center
    x, y = Transformer.from_crs("EPSG:4326", c, always_xy=True).transform(lon, lat)
    if c.is_geographic:
        px = gsd_m / (111_320.0 * math.cos(math.radians(lat)))
        py = gsd_m / 110_574.0
    else:
        unit = c.axis_info[0].unit_conversion_factor or 1.0
        px = py = gsd_m / unit
    w, h = size
    sign = 1.0 if south_up else -1.0
    # centre pixel at (x, y); rotation about the scene centre
    t = (
        Affine.translation(x, y)
        @ Affine.rotation(rotation_deg)
        @ Affine.scale(px, sign * py)
        @ Affine.translation(-w / 2.0, -h / 2.0)
    )
    return t, c


def _background(rng, w, h, texture: float = 1.0, surf: bool = True):
    """Dark rock with smooth texture, and a band of surf along one edge."""
    from scipy import ndimage

    rock = rng.normal(0, 1, (h // 8 + 2, w // 8 + 2))
    rock = ndimage.zoom(ndimage.gaussian_filter(rock, 1.5), 8, order=1)[:h, :w]
    base = 78 + texture * (14 * rock / (rock.std() + 1e-9) + rng.normal(0, 3, (h, w)))
    img = np.repeat(base[..., None], 3, axis=2) * np.array([1.0, 0.98, 0.95])
    if surf:
        yy, xx = np.mgrid[0:h, 0:w]
        edge = (xx + 0.3 * yy) / max(w, 1)
        churn = ndimage.gaussian_filter(rng.random((h, w)), 10)
        churn = (churn - churn.mean()) / (churn.std() + 1e-9)
        foam = np.clip((edge - 0.85) * 12 + 0.08 * churn, 0, 1)
        img = img * (1 - foam[..., None]) + 225 * foam[..., None]
    return np.clip(img, 1, 255)


def _render(img, cx, cy, length_px, width_px, angle, rgb):
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
    # a little shading: darker towards the rim
    col = np.asarray(rgb, float) * (1.0 - 0.15 * np.clip(q, 0, 1))[..., None]
    img[r0:r1, c0:c1] = img[r0:r1, c0:c1] * (1 - wgt) + col * wgt


def make_scene(
    path,
    *,
    crs="EPSG:32606",
    center=(-150.0, 60.0),
    size=(1024, 1024),
    gsd_m: float = 0.1,
    n_objects: int = 50,
    positions=None,
    classes=None,
    seed: int = 0,
    dtype: str = "uint8",
    nodata_border: int = 0,
    rotation_deg: float = 0.0,
    south_up: bool = False,
    min_spacing_m: float = 3.5,
    texture: float = 1.0,
    surf: bool = True,
    blocksize: int = 256,
) -> SimScene:
    """Write a synthetic sea-lion rookery scene and return it with its ground truth.

    Parameters
    ----------
    path : output GeoTIFF.
    crs : any CRS pyproj knows; ``center`` is (lon, lat) of the scene centre.
    size : (width, height) in pixels; ``gsd_m`` metres per pixel.
    n_objects : number of animals placed at random (ignored when ``positions`` is given).
    positions : optional (K, 2) continuous pixel positions [col, row] of the animals.
    classes : optional class names for ``positions`` (default: random).
    dtype : ``uint8``, ``uint16`` (values x 257) or ``float32`` (0..1).
    nodata_border : width in pixels of a nodata frame (nodata value 0).
    rotation_deg, south_up : grid orientation.
    texture : strength of the rock texture (0 = flat); surf : draw surf along one edge.
    """
    import geopandas as gpd
    import rasterio
    from pyproj import Transformer

    rng = np.random.default_rng(seed)
    w, h = size
    transform, c = _transform(crs, center, size, gsd_m, rotation_deg, south_up)
    img = _background(rng, w, h, texture, surf)
    margin = nodata_border + 3.5 / gsd_m / 2 + 2
    if positions is None:
        pts: list = []
        spacing = min_spacing_m / gsd_m
        tries = 0
        while len(pts) < n_objects and tries < n_objects * 200:
            tries += 1
            p = rng.uniform([margin, margin], [w - margin, h - margin])
            if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= spacing**2 for q in pts):
                pts.append(p)
        positions = np.array(pts).reshape(-1, 2)
    positions = np.asarray(positions, float).reshape(-1, 2)
    if classes is None:
        weights = np.array([0.08, 0.07, 0.45, 0.15, 0.25])
        classes = rng.choice(SEA_LION_CLASSES, size=len(positions), p=weights)
    classes = np.asarray(classes, dtype=object)
    lengths = []
    for (cx, cy), cls in zip(positions, classes):
        lm, wm = SEA_LION_SIZES_M[cls]
        scale = rng.uniform(0.9, 1.1)
        rgb = np.array(SEA_LION_RGB[cls]) * rng.uniform(0.92, 1.08)
        _render(img, cx, cy, lm * scale / gsd_m, wm * scale / gsd_m, rng.uniform(0, math.pi), rgb)
        lengths.append(lm * scale)
    valid = np.ones((h, w), bool)
    if nodata_border:
        valid[:nodata_border] = valid[-nodata_border:] = False
        valid[:, :nodata_border] = valid[:, -nodata_border:] = False
    if dtype == "uint8":
        arr = np.clip(np.rint(img), 1, 255).astype(np.uint8)
    elif dtype == "uint16":
        arr = np.clip(np.rint(img * 257), 1, 65535).astype(np.uint16)
    elif dtype == "float32":
        arr = np.clip(img / 255.0, 1e-3, 1).astype(np.float32)
    else:
        raise ValueError(f"dtype must be uint8, uint16 or float32, got {dtype!r}")
    arr[~valid] = 0
    profile = dict(
        driver="GTiff", width=w, height=h, count=3, dtype=dtype, crs=c.to_wkt(), transform=transform,
        nodata=0, compress="deflate", photometric="RGB" if dtype == "uint8" else "MINISBLACK",
    )
    if w >= blocksize and h >= blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(arr, -1, 0))
        dst.descriptions = ("red", "green", "blue")
    # ground truth: affine and pyproj directly
    xs, ys = [], []
    for cx, cy in positions:
        x, y = transform @ (cx, cy)
        xs.append(x)
        ys.append(y)
    lon, lat = Transformer.from_crs(c, "EPSG:4326", always_xy=True).transform(np.array(xs), np.array(ys))
    lon = ((np.asarray(lon) + 180.0) % 360.0) - 180.0
    truth = gpd.GeoDataFrame(
        {
            "class_name": classes.astype(str),
            "px_col": positions[:, 0],
            "px_row": positions[:, 1],
            "length_m": np.asarray(lengths, float),
        },
        geometry=gpd.points_from_xy(lon, lat),
        crs="EPSG:4326",
    )
    return SimScene(path, truth, c.to_string(), transform, w, h, gsd_m)
