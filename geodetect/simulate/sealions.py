"""Steller sea-lion rookeries: animals of the five Kaggle classes on rock with surf.

Relative body sizes and pelage colours follow the species: bulls about 3 m,
cows about 2.2 m, pups about 1 m and nearly black. Animals are smooth ellipses
rendered analytically at pixel centres, so an animal's true centre is exactly
its rendered centre.
"""

from __future__ import annotations

import math

import numpy as np

from geodetect.simulate._grid import (
    SimScene,
    blend_ellipse,
    nodata_frame,
    pixels_to_lonlat,
    random_positions,
    scene_transform,
    write_geotiff,
)

__all__ = ["SEA_LION_CLASSES", "SEA_LION_SIZES_M", "SEA_LION_RGB", "make_rookery"]

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
# share of each class in a rookery count (roughly the Kaggle training totals)
SEA_LION_SHARE = (0.08, 0.07, 0.45, 0.15, 0.25)


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


def make_rookery(
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
    classes : optional class names for ``positions`` (default: random, rookery proportions).
    dtype : ``uint8``, ``uint16`` (values x 257) or ``float32`` (0..1).
    nodata_border : width in pixels of a nodata frame (nodata value 0).
    rotation_deg, south_up : grid orientation.
    texture : strength of the rock texture (0 = flat); surf : draw surf along one edge.

    Returns
    -------
    SimScene whose ``truth`` has one point per animal (EPSG:4326) with
    ``class_name``, ``px_col``, ``px_row`` and ``length_m``.
    """
    import geopandas as gpd

    rng = np.random.default_rng(seed)
    w, h = size
    transform, c = scene_transform(crs, center, size, gsd_m, rotation_deg, south_up)
    img = _background(rng, w, h, texture, surf)
    margin = nodata_border + 3.5 / gsd_m / 2 + 2
    if positions is None:
        positions = random_positions(rng, n_objects, w, h, margin, min_spacing_m / gsd_m)
    positions = np.asarray(positions, float).reshape(-1, 2)
    if classes is None:
        classes = rng.choice(SEA_LION_CLASSES, size=len(positions), p=np.array(SEA_LION_SHARE))
    classes = np.asarray(classes, dtype=object)
    lengths = []
    for (cx, cy), cls in zip(positions, classes):
        lm, wm = SEA_LION_SIZES_M[cls]
        scale = rng.uniform(0.9, 1.1)
        rgb = np.array(SEA_LION_RGB[cls]) * rng.uniform(0.92, 1.08)
        blend_ellipse(img, cx, cy, lm * scale / gsd_m, wm * scale / gsd_m, rng.uniform(0, math.pi), rgb)
        lengths.append(lm * scale)
    valid = nodata_frame(h, w, nodata_border)
    path = write_geotiff(path, img, transform, c, dtype=dtype, valid=valid, band_names=("red", "green", "blue"),
                         blocksize=blocksize)
    lon, lat = pixels_to_lonlat(transform, c, positions[:, 0], positions[:, 1])
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
