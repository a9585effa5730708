"""Water on land seen by a 30 m multispectral sensor (or a C-band SAR): lakes, rivers and coast.

The water layout is drawn first as polygons in pixel space (a meandering
river that crosses the whole scene, lakes with irregular shores, a stretch of
sea behind a wavy coastline), then rasterised at pixel centres, so the truth
polygons are exactly the water the image shows.

Optical scenes have four bands (``blue``, ``green``, ``red``, ``nir``; band
descriptions set) on a uint8 scale of reflectance x 600: water is dark in the
NIR and brighter in green than in NIR (turbidity varies per water body),
vegetation is bright in the NIR, bare soil and urban surfaces are bright in
every band with NIR slightly above green. Land cover is a smooth random
patchwork of vegetation, crops, soil and built-up areas, with texture and
sensor noise. Values are typical of surface reflectance, not of any one
sensor's calibration.

SAR scenes (``sar=True``) have one float32 band ``vv``: linear backscatter
(sigma0, power). Every pixel is a gamma-distributed speckle sample (``looks``
looks) around a mean: about 0.004 (-24 dB) on calm water, 0.03-0.25 (-15 to
-6 dB) on land with texture. No real SAR pixels were available to tune this
(see ``shared/DATA.md``): it is a textbook speckle model, not a sensor model.
"""

from __future__ import annotations

import math
import os

import numpy as np

from geodetect.simulate._grid import SimScene, pixels_to_lonlat, scene_transform, write_geotiff

__all__ = ["make_water", "WATER_BANDS", "REFLECTANCE"]

WATER_BANDS = ("blue", "green", "red", "nir")
#: surface reflectance (blue, green, red, nir) of the cover types
REFLECTANCE = {
    "clear water": (0.07, 0.065, 0.04, 0.015),
    "turbid water": (0.09, 0.11, 0.09, 0.04),
    "vegetation": (0.04, 0.085, 0.05, 0.36),
    "crop": (0.05, 0.10, 0.08, 0.28),
    "soil": (0.11, 0.15, 0.19, 0.25),
    "urban": (0.14, 0.15, 0.16, 0.19),
}
_SCALE = 600.0  # reflectance -> uint8 value


def _smooth_field(rng, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth random field (zero mean, unit-ish std, float32) with features about ``cell`` pixels wide.

    Cubic interpolation of a coarse normal grid, in two stages for large
    ``cell`` (cubic to 1/8 resolution, then linear), which keeps big scenes fast.
    """
    from scipy import ndimage

    gh, gw = h // cell + 3, w // cell + 3
    g = rng.normal(size=(gh, gw)).astype(np.float32)
    if cell >= 16:
        f = ndimage.zoom(g, cell / 8, order=3, mode="nearest")
        f = ndimage.zoom(f, 8, order=1, mode="nearest")
    else:
        f = ndimage.zoom(g, cell, order=3, mode="nearest")
    return f[cell: cell + h, cell: cell + w]


def _river(rng, w: int, h: int, width_px: float):
    """A meandering river crossing the whole scene (left to right or top to bottom), as a polygon."""
    import shapely

    horizontal = bool(rng.integers(2))
    length, across = (w, h) if horizontal else (h, w)
    t = np.linspace(-0.05 * length, 1.05 * length, 400)
    c0 = rng.uniform(0.3, 0.7) * across
    amp = rng.uniform(0.05, 0.15) * across
    wl = rng.uniform(0.5, 1.2) * length
    centre = c0 + amp * np.sin(2 * math.pi * t / wl + rng.uniform(0, 2 * math.pi)) \
        + 0.3 * amp * np.sin(2 * math.pi * t / (wl / 2.7) + rng.uniform(0, 2 * math.pi))
    xy = np.column_stack([t, centre]) if horizontal else np.column_stack([centre, t])
    line = shapely.LineString(xy)
    return line.buffer(width_px / 2.0, quad_segs=4, cap_style="flat")


def _blob(rng, cx: float, cy: float, r: float):
    """An irregular closed shore: a circle whose radius wobbles with a few harmonics."""
    import shapely

    a = np.linspace(0, 2 * math.pi, 90, endpoint=False)
    rr = np.ones_like(a)
    for k in (2, 3, 5):
        rr += rng.uniform(0, 0.25 / k * 2) * np.cos(k * a + rng.uniform(0, 2 * math.pi))
    rr *= r
    poly = shapely.Polygon(np.column_stack([cx + rr * np.cos(a), cy + rr * np.sin(a) * rng.uniform(0.6, 1.0)]))
    return shapely.make_valid(poly)


def _coast(rng, w: int, h: int, depth: float):
    """Sea behind a wavy coastline along one random edge of the scene."""
    import shapely

    side = int(rng.integers(4))
    length = w if side in (0, 1) else h
    t = np.linspace(-10, length + 10, 300)
    d = depth * (1 + 0.35 * np.sin(2 * math.pi * t / rng.uniform(0.4, 1.0) / length + rng.uniform(0, 6.3))
                 + 0.1 * np.sin(2 * math.pi * t / rng.uniform(40, 90) + rng.uniform(0, 6.3)))
    far = -10.0
    if side == 0:    # top
        pts = [(far, far)] + list(zip(t, d)) + [(t[-1], far)]
    elif side == 1:  # bottom
        pts = [(far, h - far)] + list(zip(t, h - d)) + [(t[-1], h - far)]
    elif side == 2:  # left
        pts = [(far, far)] + list(zip(d, t)) + [(far, t[-1])]
    else:            # right
        pts = [(w - far, far)] + list(zip(w - d, t)) + [(w - far, t[-1])]
    return shapely.make_valid(shapely.Polygon(pts))


def water_layout(rng, w: int, h: int, *, n_lakes: int, river: bool, coast: bool, gsd_m: float):
    """Water bodies in pixel space, clipped to the scene: a list of (polygon, kind) with kind river/lake/sea."""
    import shapely

    frame = shapely.box(0, 0, w, h)
    parts = []
    if river:
        parts.append((_river(rng, w, h, rng.uniform(150, 600) / gsd_m + 3), "river"))
    if coast:
        parts.append((_coast(rng, w, h, rng.uniform(0.08, 0.2) * min(w, h)), "sea"))
    for _ in range(n_lakes):
        r = rng.uniform(0.015, 0.07) * min(w, h) + 3
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        parts.append((_blob(rng, cx, cy, r), "lake"))
    out = []
    for g, kind in parts:
        g = shapely.intersection(g, frame)
        if not g.is_empty:
            out.append((g, kind))
    return out


def _landcover(rng, h: int, w: int, gsd_m: float) -> np.ndarray:
    """(H, W, 4) land reflectance: a smooth patchwork of cover types with texture."""
    cell = max(4, int(round(rng.uniform(1500, 4000) / gsd_m)))
    names = ("vegetation", "crop", "soil", "urban")
    weights = np.array([1.0, 0.8, 0.5, 0.45]) * rng.uniform(0.5, 1.5, 4)
    best = cover = None
    for k, wt in enumerate(weights):
        f = _smooth_field(rng, h, w, cell) + np.float32(math.log(wt))
        if best is None:
            best, cover = f, np.zeros((h, w), np.uint8)
        else:
            win = f > best
            best = np.where(win, f, best)
            cover[win] = k
    del best
    spectra = np.array([REFLECTANCE[n] for n in names], np.float32)
    img = spectra[cover]
    # texture: brightness variation within a cover type, and field-scale variation
    tex = 1.0 + 0.12 * _smooth_field(rng, h, w, max(2, cell // 6)) + 0.05 * rng.standard_normal((h, w), np.float32)
    img *= tex[..., None]
    return img


def make_water(
    path,
    *,
    crs="EPSG:32610",
    center=(-121.9, 38.05),
    size=(1024, 1024),
    gsd_m: float = 30.0,
    seed: int = 0,
    sar: bool = False,
    n_lakes: int | None = None,
    n_objects: int | None = None,
    river: bool = True,
    coast: bool | None = None,
    noise: float = 0.004,
    looks: float = 4.4,
    blocksize: int = 256,
) -> SimScene:
    """Write a synthetic water scene (lakes, a river, coast) and return it with its truth.

    Parameters
    ----------
    path : output GeoTIFF.
    crs, center : any CRS pyproj knows; ``center`` is (lon, lat) of the scene centre.
    size : (width, height) in pixels; ``gsd_m`` metres per pixel (Landsat: 30).
    seed : everything follows from it.
    sar : one float32 band ``vv`` (linear sigma0 with gamma speckle) instead of four optical bands.
    n_lakes : number of lakes (default: drawn from the seed, 2-8 per megapixel-ish).
    n_objects : the same as ``n_lakes`` (what ``geodetect simulate --objects`` passes).
    river : draw a river crossing the whole scene.
    coast : put sea along one edge (default: drawn from the seed, half the scenes).
    noise : optical sensor noise, reflectance units (standard deviation).
    looks : SAR equivalent number of looks (Sentinel-1 GRD IW: about 4.4).

    Returns
    -------
    SimScene whose ``truth`` has one row per connected water body (EPSG:4326),
    ``class_name`` ``"water"``, ``kind`` the bodies it contains (``river``, ``lake``,
    ``sea``, joined with ``+`` where they touch), ``area_px`` the water pixels.

    Examples
    --------
    >>> from geodetect.simulate import make_scene
    >>> sim = make_scene("/tmp/w.tif", kind="water", size=(512, 512), seed=3)  # doctest: +SKIP
    >>> set(sim.truth.class_name)                                             # doctest: +SKIP
    {'water'}
    """
    import geopandas as gpd
    import shapely
    from rasterio.features import rasterize

    rng = np.random.default_rng(seed)
    w, h = (int(v) for v in size)
    transform, c = scene_transform(crs, center, (w, h), gsd_m)
    if n_lakes is None:
        n_lakes = n_objects
    if n_lakes is None:
        n_lakes = int(rng.integers(2, 9) * max(0.3, math.sqrt(w * h) / 1024))
    if coast is None:
        coast = bool(rng.random() < 0.5)
    parts = water_layout(rng, w, h, n_lakes=n_lakes, river=river, coast=coast, gsd_m=gsd_m)

    # connected water bodies: union, then one row per polygon
    union = shapely.union_all([g for g, _ in parts]) if parts else shapely.Polygon()
    bodies = [g for g in getattr(union, "geoms", [union]) if not g.is_empty and g.area > 0]
    water = np.zeros((h, w), np.uint8)
    if bodies:
        water = rasterize([(g, 1) for g in bodies], out_shape=(h, w), fill=0, dtype="uint8")
    # truth polygons: exactly the rasterised pixels (pixel-centre rule), so image and truth agree
    truth_geoms, npx = _polygons_of(water)
    kinds = ["+".join(sorted({k for pg, k in parts if pg.intersects(g)})) or "water" for g in truth_geoms]
    if sar:
        img = _sar_image(rng, water.astype(bool), h, w, gsd_m, looks)
        _write_float(path, img, transform, c, "vv", blocksize)
    else:
        img = _landcover(rng, h, w, gsd_m)
        wmask = water.astype(bool)
        turb = np.clip(0.5 + 0.35 * _smooth_field(rng, h, w, max(4, int(2000 / gsd_m))), 0, 1)
        clear = np.asarray(REFLECTANCE["clear water"], np.float32)
        turbid = np.asarray(REFLECTANCE["turbid water"], np.float32)
        wat = clear + (turbid - clear) * turb[..., None].astype(np.float32)
        img[wmask] = wat[wmask]
        # one-pixel mixing along shores (the sensor's point spread), pixel truth unchanged
        from scipy import ndimage

        img = ndimage.uniform_filter(img, size=(3, 3, 1), mode="nearest") * np.float32(0.35) + img * np.float32(0.65)
        img *= np.float32(rng.uniform(0.9, 1.1))
        img += rng.standard_normal(img.shape, np.float32) * np.float32(noise)
        write_geotiff(path, np.clip(img * _SCALE, 1, 255), transform, c, band_names=WATER_BANDS, blocksize=blocksize)
        del img
    lon_lat = []
    for g in truth_geoms:
        lon_lat.append(_to_lonlat(g, transform, c))
    truth = gpd.GeoDataFrame({"class_name": ["water"] * len(lon_lat), "kind": kinds,
                              "area_px": np.asarray(npx, np.int64)}, geometry=lon_lat, crs="EPSG:4326")
    return SimScene(os.fspath(path), truth, c.to_string(), transform, w, h, gsd_m)


def _polygons_of(mask: np.ndarray):
    """Polygons (pixel coordinates) of the connected 1-regions of ``mask``, with their pixel counts."""
    import shapely
    from rasterio.features import shapes
    from scipy import ndimage

    lab, n = ndimage.label(mask, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    if n == 0:
        return [], []
    cnt = ndimage.sum_labels(np.ones_like(lab), lab, np.arange(1, n + 1))
    geoms, npx = [], []
    for g, v in shapes(lab.astype(np.int32), mask=lab > 0, connectivity=4):
        geoms.append(shapely.geometry.shape(g))
        npx.append(int(cnt[int(v) - 1]))
    return geoms, npx


def _to_lonlat(geom, transform, crs):
    """Pixel-space polygon -> EPSG:4326 (edges densified every 4 px so curved projections stay true)."""
    import shapely

    geom = shapely.segmentize(geom, 4.0)

    def f(coords):
        lon, lat = pixels_to_lonlat(transform, crs, coords[:, 0], coords[:, 1])
        return np.column_stack([lon, lat])

    return shapely.transform(geom, f)


def _sar_image(rng, water: np.ndarray, h: int, w: int, gsd_m: float, looks: float) -> np.ndarray:
    """Mean backscatter (linear) per pixel times gamma speckle with ``looks`` looks."""
    cell = max(4, int(round(rng.uniform(500, 1500) / gsd_m)))
    land_db = -10.5 + 2.5 * _smooth_field(rng, h, w, cell) + 1.0 * _smooth_field(rng, h, w, max(2, cell // 5))
    land_db = np.clip(land_db, -16, -5)
    water_db = -24.0 + 1.0 * _smooth_field(rng, h, w, max(4, int(3000 / gsd_m)))  # calm water, some wind
    mean = np.where(water, 10 ** (water_db / 10), 10 ** (land_db / 10)).astype(np.float32)
    speckle = rng.gamma(looks, 1.0 / looks, size=(h, w)).astype(np.float32)
    return mean * speckle


def _write_float(path, img, transform, crs, name: str, blocksize: int) -> None:
    import rasterio

    h, w = img.shape
    profile = dict(driver="GTiff", width=w, height=h, count=1, dtype="float32", crs=crs.to_wkt(),
                   transform=transform, compress="deflate")
    if w >= blocksize and h >= blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(img[None].astype(np.float32))
        dst.descriptions = (name,)
