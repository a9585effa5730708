"""Land-use patchworks at 1 m: zones of the six NLCD-derived classes with their own textures.

The six classes of the land-use seed (NLCD-derived): ``developed`` (grey
pavement, a road grid, buildings with shadows), ``cultivated`` (rectangular
fields with crop rows in seasonal colours), ``forest`` (dense dark-green
crowns), ``shrub`` (sparse bushes on bare soil), ``barren`` (rock and sand)
and ``herbaceous`` (smooth green to straw grass).

Zones are either cells of a regular grid (``layout="grid"``, ``zone_px`` a
multiple of the classifier's 224-px tile makes every tile's label
unambiguous) or irregular Voronoi regions (``layout="irregular"``, more
realistic, tiles can straddle zones). The truth is one polygon per zone with
``class_name`` in EPSG:4326.

``epoch`` makes a second survey of the same ground: the same zones (and the
same grid) seen in another season with other random textures, and with a
share ``change_fraction`` of the zones converted to ``developed`` or
``cultivated`` (the seed's "recently developed land").
"""

from __future__ import annotations

import math

import numpy as np

from geodetect.simulate._grid import SimScene, pixels_to_lonlat, scene_transform, write_geotiff

__all__ = ["LAND_USE_CLASSES", "SEASONS", "NLCD_CODES", "make_landuse"]

LAND_USE_CLASSES = ("developed", "cultivated", "forest", "shrub", "barren", "herbaceous")
SEASONS = ("spring", "summer", "autumn", "winter")
#: an NLCD code standing for each class (for label rasters written beside a scene)
NLCD_CODES = {"developed": 22, "cultivated": 82, "forest": 41, "shrub": 52, "barren": 31, "herbaceous": 71}


def _noise(rng, h, w, scale, octaves=1):
    """Smooth noise of roughly unit std with features of ``scale`` pixels (bicubic-upsampled grid)."""
    from scipy import ndimage

    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, int(math.ceil(h / scale)) + 2), max(2, int(math.ceil(w / scale)) + 2)
        g = rng.normal(0, 1, (gh, gw)).astype(np.float32)
        up = ndimage.zoom(g, (h + 2 * scale) / gh, order=3)[:h + 2 * scale, :w + 2 * scale]
        oy, ox = rng.integers(0, scale + 1, 2)
        up = up[oy:oy + h, ox:ox + w]
        if up.shape != (h, w):
            up = np.pad(up, ((0, h - up.shape[0]), (0, w - up.shape[1])), mode="edge")
        out += amp * up / (up.std() + 1e-6)
        total += amp
        amp, scale = amp * 0.5, max(2, scale // 2)
    return out / total


def _blobs(rng, h, w, density, sigma):
    """Sum of Gaussian blobs at random points (``density`` blobs per pixel), peak ~1."""
    from scipy import ndimage

    imp = (rng.random((h, w)) < density).astype(np.float32) * rng.uniform(0.6, 1.0, (h, w)).astype(np.float32)
    f = ndimage.gaussian_filter(imp, sigma) * (2 * math.pi * sigma * sigma)
    return np.clip(f, 0, 1.5)


def _rgb(*c):
    return np.array(c, np.float32)


def _tex_developed(rng, h, w, season):
    img = np.empty((h, w, 3), np.float32)
    base = rng.uniform(105, 150)
    img[:] = _rgb(base, base, base * rng.uniform(0.97, 1.05))
    img += _noise(rng, h, w, 24)[..., None] * 10 + rng.normal(0, 5, (h, w, 1))
    # lawns and street trees between the buildings
    green = _noise(rng, h, w, 18) > rng.uniform(0.6, 1.2)
    img[green] = _rgb(80, 110, 60) if season != "winter" else _rgb(120, 115, 90)
    yy, xx = np.mgrid[0:h, 0:w]
    ang = rng.uniform(-0.6, 0.6) if rng.random() < 0.5 else 0.0
    u = xx * math.cos(ang) + yy * math.sin(ang)
    v = -xx * math.sin(ang) + yy * math.cos(ang)
    sp_u, sp_v = rng.uniform(55, 110), rng.uniform(55, 110)
    rw = rng.uniform(7, 13)
    road = ((u + rng.uniform(0, sp_u)) % sp_u < rw) | ((v + rng.uniform(0, sp_v)) % sp_v < rw)
    img[road] = rng.uniform(55, 85) + rng.normal(0, 3, (int(road.sum()), 1))
    # buildings: rectangles with roof colours and a shadow
    roofs = [(150, 150, 152), (95, 95, 100), (160, 85, 70), (200, 200, 198), (120, 100, 85), (70, 72, 78)]
    n = int(h * w / rng.uniform(550, 900))
    sun = rng.uniform(0, 2 * math.pi)
    sdx, sdy = math.cos(sun), math.sin(sun)
    for _ in range(n):
        bw, bh = rng.uniform(8, 34), rng.uniform(8, 28)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r0, r1 = int(max(0, cy - bh / 2)), int(min(h, cy + bh / 2))
        c0, c1 = int(max(0, cx - bw / 2)), int(min(w, cx + bw / 2))
        if r1 <= r0 or c1 <= c0 or road[(r0 + r1) // 2, (c0 + c1) // 2]:
            continue
        sh = rng.uniform(3, 7)
        s0, s1 = int(np.clip(r0 + sdy * sh, 0, h)), int(np.clip(r1 + sdy * sh, 0, h))
        t0, t1 = int(np.clip(c0 + sdx * sh, 0, w)), int(np.clip(c1 + sdx * sh, 0, w))
        img[s0:s1, t0:t1] *= 0.55
        col = np.array(roofs[rng.integers(len(roofs))], np.float32) * rng.uniform(0.85, 1.15)
        img[r0:r1, c0:c1] = col
        if rng.random() < 0.5:  # a ridge line
            mid = (r0 + r1) // 2 if bw > bh else None
            if mid is not None:
                img[mid:mid + 1, c0:c1] *= 0.8
    return img


_CROPS = {
    "spring": [(120, 100, 75), (95, 130, 70), (140, 120, 90), (110, 150, 80)],
    "summer": [(70, 130, 50), (95, 150, 55), (190, 170, 90), (60, 110, 45), (150, 160, 70)],
    "autumn": [(185, 160, 95), (150, 120, 80), (200, 180, 110), (90, 110, 60), (130, 100, 70)],
    "winter": [(150, 130, 105), (125, 110, 90), (170, 160, 140), (110, 100, 85)],
}


def _tex_cultivated(rng, h, w, season):
    img = np.empty((h, w, 3), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    # parcels: a jittered rectangular partition
    xs = np.sort(np.r_[0, rng.uniform(0, w, max(1, int(w / rng.uniform(70, 180)))), w])
    ys = np.sort(np.r_[0, rng.uniform(0, h, max(1, int(h / rng.uniform(70, 180)))), h])
    crops = _CROPS[season]
    for i in range(len(ys) - 1):
        for j in range(len(xs) - 1):
            r0, r1, c0, c1 = int(ys[i]), int(ys[i + 1]), int(xs[j]), int(xs[j + 1])
            if r1 <= r0 or c1 <= c0:
                continue
            col = np.array(crops[rng.integers(len(crops))], np.float32) * rng.uniform(0.88, 1.12, 3)
            ang = rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.05)
            period = rng.uniform(3, 9)
            u = xx[r0:r1, c0:c1] * math.cos(ang) + yy[r0:r1, c0:c1] * math.sin(ang)
            rows = np.sin(2 * math.pi * u / period)
            img[r0:r1, c0:c1] = col * (1 + rng.uniform(0.06, 0.16) * rows)[..., None]
            # a field boundary (track / hedge)
            edge = rng.uniform(35, 60) if rng.random() < 0.5 else rng.uniform(60, 95)
            img[r0:r0 + 2, c0:c1] = edge
            img[r0:r1, c0:c0 + 2] = edge
    img += _noise(rng, h, w, 40)[..., None] * 6 + rng.normal(0, 3, (h, w, 1))
    return img


def _tex_forest(rng, h, w, season):
    crowns = _blobs(rng, h, w, rng.uniform(0.010, 0.02), rng.uniform(2.0, 3.2))
    base = {"spring": (60, 100, 50), "summer": (40, 75, 35), "autumn": (70, 70, 35), "winter": (55, 60, 45)}[season]
    base = np.array(base, np.float32) * rng.uniform(0.85, 1.15, 3)
    img = base * (0.35 + 0.75 * np.clip(crowns, 0, 1.1))[..., None]
    if season in ("autumn", "winter"):  # some broadleaf crowns turn orange / grey-brown
        turn = _noise(rng, h, w, 6) > rng.uniform(0.4, 1.0)
        tint = _rgb(150, 95, 45) if season == "autumn" else _rgb(105, 95, 85)
        img[turn] = img[turn] * 0.4 + tint * 0.6 * (0.4 + 0.7 * np.clip(crowns[turn], 0, 1.1))[..., None]
    img += _noise(rng, h, w, 30)[..., None] * 5 + rng.normal(0, 3, (h, w, 1))
    return img


def _tex_shrub(rng, h, w, season):
    soil = np.array([rng.uniform(150, 190), rng.uniform(130, 160), rng.uniform(100, 125)], np.float32)
    img = soil * (1 + 0.06 * _noise(rng, h, w, 20))[..., None] + rng.normal(0, 5, (h, w, 1))
    bush = _blobs(rng, h, w, rng.uniform(0.002, 0.005), rng.uniform(1.6, 2.8))
    m = np.clip(bush * 1.6, 0, 1)[..., None]
    col = {"spring": (85, 100, 55), "summer": (75, 90, 50), "autumn": (95, 90, 60), "winter": (95, 85, 65)}[season]
    col = np.array(col, np.float32) * rng.uniform(0.85, 1.15, 3)
    img = img * (1 - m) + col * m
    # bush shadows
    from scipy import ndimage

    shadow = ndimage.shift(m[..., 0], (1.5, 1.5), order=1)
    return img * (1 - 0.25 * np.clip(shadow - m[..., 0], 0, 1))[..., None]


def _tex_barren(rng, h, w, season):
    kind = rng.random()
    if kind < 0.5:  # sand
        base = np.array([rng.uniform(195, 225), rng.uniform(175, 200), rng.uniform(135, 160)], np.float32)
    else:  # rock
        g = rng.uniform(140, 185)
        base = np.array([g, g * rng.uniform(0.95, 1.0), g * rng.uniform(0.88, 0.97)], np.float32)
    img = base * (1 + 0.12 * _noise(rng, h, w, int(rng.integers(20, 60)), octaves=3))[..., None]
    img += rng.normal(0, rng.uniform(4, 9), (h, w, 1))
    if kind >= 0.5:  # cracks and boulders
        cracks = np.abs(_noise(rng, h, w, 12)) < 0.05
        img[cracks] *= 0.7
    if season == "winter" and rng.random() < 0.3:  # a dusting of frost
        img = img * 0.8 + 45
    return img


def _tex_herbaceous(rng, h, w, season):
    col = {"spring": (110, 160, 70), "summer": (120, 150, 65), "autumn": (175, 160, 95), "winter": (165, 150, 110)}[season]
    col = np.array(col, np.float32) * rng.uniform(0.9, 1.1, 3)
    dry = np.array([190, 175, 120], np.float32)
    mix = np.clip(0.5 + 0.3 * _noise(rng, h, w, int(rng.integers(40, 90))), 0, 1)[..., None] * rng.uniform(0.1, 0.5)
    img = col * (1 - mix) + dry * mix
    img *= (1 + 0.03 * _noise(rng, h, w, 8))[..., None]
    return img + rng.normal(0, 2.5, (h, w, 1))


_TEXTURES = {
    "developed": _tex_developed, "cultivated": _tex_cultivated, "forest": _tex_forest,
    "shrub": _tex_shrub, "barren": _tex_barren, "herbaceous": _tex_herbaceous,
}
#: conversions applied to changed zones in a later epoch
_CHANGE_TO = {"forest": "developed", "shrub": "developed", "herbaceous": "cultivated", "barren": "developed",
              "cultivated": "developed", "developed": "developed"}


def _zones(rng, h, w, layout, zone_px, n_zones):
    """Zone id raster (H, W) int32 and the number of zones."""
    if layout == "grid":
        ny, nx = -(-h // zone_px), -(-w // zone_px)
        rows = np.minimum(np.arange(h) // zone_px, ny - 1)
        cols = np.minimum(np.arange(w) // zone_px, nx - 1)
        return (rows[:, None] * nx + cols[None, :]).astype(np.int32), ny * nx
    from scipy.spatial import cKDTree

    n = n_zones or max(4, int(h * w / (zone_px * zone_px)))
    pts = rng.uniform([0, 0], [w, h], (n, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    # wobble the borders so zones are not straight-edged Voronoi cells
    wob = 0.12 * zone_px
    qx = xx + 0.5 + wob * _noise(rng, h, w, max(8, zone_px // 4))
    qy = yy + 0.5 + wob * _noise(rng, h, w, max(8, zone_px // 4))
    _, idx = cKDTree(pts).query(np.c_[qx.ravel(), qy.ravel()])
    return idx.reshape(h, w).astype(np.int32), n


def make_landuse(
    path,
    *,
    crs="EPSG:32619",
    center=(-71.35, 42.45),
    size=(1344, 1344),
    gsd_m: float = 1.0,
    seed: int = 0,
    epoch: int = 0,
    season: str | None = None,
    layout: str = "grid",
    zone_px: int = 224,
    n_zones: int | None = None,
    class_weights=None,
    change_fraction: float = 0.15,
    label_path=None,
    dtype: str = "uint8",
) -> SimScene:
    """Write a land-use patchwork GeoTIFF (RGB, 1 m by default) and return it with its zone polygons.

    Parameters
    ----------
    path : the GeoTIFF to write.
    crs, center, size, gsd_m : the grid (``size`` = (width, height) in pixels, centred at ``center`` lon/lat;
        the default is Middlesex County, MA, the seed's study area, in UTM 19N).
    seed : the landscape: zone layout and each zone's class.
    epoch : the survey: 0 is the first; a later epoch keeps the zones and grid, draws new textures,
        a new season (unless ``season`` is given), and converts ``change_fraction`` of the zones.
    season : one of SEASONS; default drawn from ``seed`` and ``epoch``.
    layout : ``"grid"`` (square zones of ``zone_px``, aligned to pixel (0, 0)) or ``"irregular"``.
    class_weights : relative frequency of the six classes (default equal).
    label_path : also write an aligned single-band label raster of NLCD codes (see NLCD_CODES) there.

    The truth GeoDataFrame (EPSG:4326) has one row per zone: ``zone_id``, ``class_name``, ``changed``.
    """
    import geopandas as gpd
    import rasterio.features
    import shapely
    from affine import Affine
    from scipy import ndimage

    from geodetect.errors import ConfigError

    if layout not in ("grid", "irregular"):
        raise ConfigError(f"layout must be 'grid' or 'irregular', got {layout!r}")
    if season is not None and season not in SEASONS:
        raise ConfigError(f"season must be one of {', '.join(SEASONS)}, got {season!r}")
    if int(zone_px) < 16:
        raise ConfigError(f"zone_px must be at least 16, got {zone_px}")
    w, h = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    weights = np.ones(6) if class_weights is None else np.asarray(class_weights, float)
    if weights.shape != (6,) or weights.min() < 0 or weights.sum() <= 0:
        raise ConfigError("class_weights must be 6 non-negative numbers, in the order of LAND_USE_CLASSES")
    land = np.random.default_rng([seed, 7])  # the landscape: same for every epoch
    zone, n = _zones(land, h, w, layout, int(zone_px), n_zones)
    classes = land.choice(6, size=n, p=weights / weights.sum())
    changed = np.zeros(n, bool)
    if epoch:
        chg = np.random.default_rng([seed, 11, epoch])
        changed = chg.random(n) < change_fraction
        for z in np.nonzero(changed)[0]:
            classes[z] = LAND_USE_CLASSES.index(_CHANGE_TO[LAND_USE_CLASSES[classes[z]]])
    rng = np.random.default_rng([seed, 13, epoch])  # textures of this survey
    season = season or SEASONS[int(rng.integers(4))]
    img = np.zeros((h, w, 3), np.float32)
    objs = ndimage.find_objects(zone + 1)
    for z, sl in enumerate(objs):
        if sl is None:
            continue
        sub = zone[sl] == z
        tex = _TEXTURES[LAND_USE_CLASSES[classes[z]]](rng, sub.shape[0], sub.shape[1], season)
        img[sl][sub] = tex[sub]
    # the whole scene: exposure, colour cast, haze, slight blur, sensor noise
    img = img * rng.uniform(0.85, 1.15) * rng.uniform(0.94, 1.06, 3) + rng.uniform(0, 15)
    img = ndimage.gaussian_filter(img, (rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.8), 0))
    img += rng.normal(0, rng.uniform(1, 3), img.shape)
    transform, c = scene_transform(crs, center, (w, h), gsd_m)
    write_geotiff(path, img, transform, c, dtype=dtype)
    if label_path is not None:
        import rasterio

        codes = np.array([NLCD_CODES[LAND_USE_CLASSES[k]] for k in classes], np.uint8)[zone]
        with rasterio.open(label_path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8",
                           crs=c.to_wkt(), transform=transform, nodata=0, compress="deflate") as dst:
            dst.write(codes[None])
    # zone polygons, pixel -> lon/lat vertex by vertex
    geoms, zids = [], []
    for geom, val in rasterio.features.shapes(zone, transform=Affine.identity()):
        poly = shapely.geometry.shape(geom)
        coords = shapely.get_coordinates(poly)
        lon, lat = pixels_to_lonlat(transform, c, coords[:, 0], coords[:, 1])
        geoms.append(shapely.set_coordinates(poly, np.c_[lon, lat]))
        zids.append(int(val))
    zids = np.array(zids, int)
    truth = gpd.GeoDataFrame(
        {"zone_id": zids, "class_name": [LAND_USE_CLASSES[classes[z]] for z in zids], "changed": changed[zids],
         "season": season, "epoch": int(epoch)},
        geometry=geoms, crs="EPSG:4326",
    ).sort_values("zone_id", kind="stable").reset_index(drop=True)
    return SimScene(path=str(path), truth=truth, crs=c.to_string(), transform=transform, width=w, height=h,
                    gsd_m=float(gsd_m))
